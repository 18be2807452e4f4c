"""``make lab``: the command line it builds, and the real thing: start the server, fetch the page, stop it.

The server test runs ``make lab`` exactly as a learner types it (with ``JUPYTER_ARGS`` for a free port), as the
current user and, when that is root (Docker, CI), also as the unprivileged user ``nobody``. ``make -o
.venv/.installed`` keeps make from reinstalling the environment the tests run in; nothing else differs.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from queue import Empty, Queue

import pytest

from kdcore import lab

ROOT = Path(__file__).resolve().parents[1]


# --- the command line --------------------------------------------------------------------------------------

def test_root_gets_allow_root_and_a_headless_machine_gets_no_browser():
    cmd = lab.lab_command([], root=ROOT, is_root_user=True, browser=False, python="py")
    assert cmd[:3] == ["py", "-m", "jupyterlab"]
    assert "--allow-root" in cmd and "--no-browser" in cmd
    assert f"--ServerApp.root_dir={ROOT}" in cmd
    assert f"--LabApp.default_url=/lab/tree/{lab.HOME_PAGE}" in cmd
    plain = lab.lab_command([], root=ROOT, is_root_user=False, browser=True, python="py")
    assert "--allow-root" not in plain and "--no-browser" not in plain


def test_extra_options_pass_through_last_and_win_over_the_defaults():
    extra = ["--port=9000", "--ip=0.0.0.0", "--browser=firefox", "--ServerApp.root_dir=/data"]
    cmd = lab.lab_command(extra, root=ROOT, is_root_user=False, browser=False, python="py")
    assert cmd[-4:] == extra
    assert "--no-browser" not in cmd                       # the user chose a browser
    assert not any(a.startswith("--ServerApp.root_dir=") for a in cmd[:-4])


@pytest.mark.parametrize("env,platform,expected", [
    ({}, "linux", False), ({"DISPLAY": ":0"}, "linux", True), ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({"BROWSER": "firefox"}, "linux", True), ({}, "darwin", True), ({}, "win32", True),
])
def test_a_browser_opens_only_where_one_can(env, platform, expected):
    assert lab.can_open_browser(env, platform) is expected


def test_the_course_configuration_comes_first_and_switches_nbgrader_off():
    env = lab.lab_environment({"JUPYTER_CONFIG_PATH": "/mine"})
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(lab.LAB_CONFIG), "/mine"]
    assert lab.lab_environment(env) == env  # idempotent
    page = json.loads((lab.LAB_CONFIG / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyter/nbgrader": True,             # menus, panels, Validate
                                          "@jupyterlab/apputils-extension:announcements": True}  # news pop-up
    server = json.loads((lab.LAB_CONFIG / "jupyter_server_config.json").read_text())
    assert set(server["ServerApp"]["jpserver_extensions"].values()) == {False}


def test_doctor_names_a_missing_home_page(monkeypatch):
    from kdcore import doctor

    monkeypatch.setattr(lab, "HOME_PAGE", "notebooks/00_missing.ipynb")
    with pytest.raises(RuntimeError, match=r"00_missing.ipynb is missing: run `make notebooks`"):
        doctor.check_lab()


# --- the real server ---------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def _as_nobody() -> tuple[list[str], dict[str, str], str]:
    """A command prefix, environment and home folder for running as the unprivileged user ``nobody``."""
    home = tempfile.mkdtemp(prefix="kdcore-lab-nobody-", dir="/tmp")
    os.chmod(home, 0o755)
    cache = Path(home) / "cache"
    cache.mkdir()
    for npz in (Path.home() / ".cache" / "kdcore").glob("mnist1d_*.npz"):  # spare the doctor the generation
        shutil.copy(npz, cache / npz.name)
    for path in [Path(home), *Path(home).rglob("*")]:
        os.chown(path, 65534, 65534)
    env = {"HOME": home, "KDCORE_CACHE": str(cache), "XDG_CACHE_HOME": str(Path(home) / ".cache")}
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], env, home


USERS = ["current user"] + (["nobody (unprivileged)"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("user", USERS)
def test_make_lab_starts_serves_the_course_home_and_stops(user):
    if user.startswith("nobody") and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run as another user")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "KDCORE_CHECK")}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(ROOT), KDCORE_WARM="0")   # warm-up: tested below
    prefix, home = [], None
    if user.startswith("nobody"):
        prefix, extra, home = _as_nobody()
        env.update(extra)
        probe = subprocess.run(prefix + ["sh", "-c", ".venv/bin/python -c 'import kdcore; print(\"ok\")'"],
                               cwd=ROOT, env=env, capture_output=True, text=True)
        if probe.stdout.strip() != "ok":
            shutil.rmtree(home, ignore_errors=True)
            pytest.skip(f"user nobody cannot run this checkout's .venv/bin/python (an interpreter or folder "
                        f"readable by root only?): {probe.stderr.strip()[-200:]}")
    cmd = prefix + ["make", "--no-print-directory", "-o", ".venv/.installed", "lab",
                    f"JUPYTER_ARGS=--port={port} --ServerApp.port_retries=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    queue: Queue = Queue()
    threading.Thread(target=lambda: [queue.put(line) for line in proc.stdout], daemon=True).start()
    url = None
    try:
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            try:
                line = queue.get(timeout=5)
            except Empty:
                if proc.poll() is not None:
                    break
                continue
            lines.append(line)
            if lines[-3:-2] and "The course is running" in lines[-3]:
                url = line.strip()
        log = "".join(lines)
        assert url, f"no URL printed within the time limit:\n{log[-4000:]}"
        started = next(line for line in lines if line.startswith("Starting JupyterLab:"))
        assert "--no-browser" in started                  # no display in this environment
        assert ("--allow-root" in started) == (user == "current user" and os.geteuid() == 0)
        assert re.fullmatch(rf"http://(localhost|127\.0\.0\.1):{port}/lab/tree/{lab.HOME_PAGE}\?token=\w+", url), url
        token = url.split("token=")[1]

        status, page = _get(url)
        assert status == 200 and "<title>JupyterLab</title>" in page
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
        assert "@jupyter/nbgrader" in config["disabledExtensions"]      # no nbgrader menu, panel or Validate
        base = f"http://127.0.0.1:{port}"
        status, body = _get(f"{base}/api/contents/{lab.HOME_PAGE}?token={token}")
        assert status == 200 and json.loads(body)["type"] == "notebook"  # the server's root is the course
        status, body = _get(f"{base}/api/contents/solutions?token={token}")
        assert status == 200 and any(i["name"] == "01_soft_labels.ipynb" for i in json.loads(body)["content"])
        assert _get(f"{base}/formgrader?token={token}")[0] == 404       # nbgrader's server extension is off
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if home:
            shutil.rmtree(home, ignore_errors=True)
    with socket.socket() as s:  # the server is gone: nothing listens on its port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


# ------------------------------------------------------------------------------------------ background warm-up
def _notebook(path: Path, *sources: str) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nbformat.write(new_notebook(cells=[new_code_cell(src) for src in sources]), path)


def test_warm_runs_the_notebooks_in_their_folder_and_writes_nothing_back(tmp_path):
    from kdcore import warm
    _notebook(tmp_path / "a.ipynb", "import pathlib", "pathlib.Path('ran.txt').write_text('yes')")
    _notebook(tmp_path / "b.ipynb", "raise RuntimeError('broken cell')")
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    log = io.StringIO()
    seconds = warm.warm(tmp_path, ["b.ipynb", "a.ipynb", "missing.ipynb"], log=log)
    assert set(seconds) == {"a.ipynb"}                                 # the broken one is reported, not fatal
    assert (tmp_path / "ran.txt").read_text() == "yes"                 # executed with its folder as cwd
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")} == before   # outputs thrown away
    text = log.getvalue()
    assert "b.ipynb failed" in text and "missing.ipynb not found" in text


def test_warm_starts_only_when_enabled_and_there_is_something_to_warm(tmp_path, monkeypatch):
    from kdcore import warm
    monkeypatch.setenv("KDCORE_CACHE", str(tmp_path / "cache"))
    assert warm.start_in_background(ROOT, {"KDCORE_WARM": "0"}) is None
    assert warm.start_in_background(tmp_path, {}) is None              # no solutions/ here
    (tmp_path / "solutions").mkdir()
    _notebook(tmp_path / "solutions" / warm.SLOW_FIRST_RUN[0], "x = 1")
    started = warm.start_in_background(tmp_path, {**os.environ, "PYTHONPATH": str(ROOT)})
    assert started is not None
    proc, log_path = started
    assert proc.wait(timeout=120) == 0
    assert f"{warm.SLOW_FIRST_RUN[0]} done" in log_path.read_text()
