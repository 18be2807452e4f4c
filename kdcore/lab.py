"""``python -m kdcore.lab [JUPYTER OPTIONS...]``: open the course in JupyterLab (``make lab`` runs this).

What it adds to a bare ``jupyter lab``:

* the course folder is the server's root, so ``notebooks/``, ``solutions/`` and ``quiz/`` are all in the file
  browser, and the first page is the course home, ``notebooks/00_start_here.ipynb``;
* ``--allow-root`` when run as root (Docker containers, cloud VMs), where Jupyter refuses to start without it;
* ``--no-browser`` where no browser can open (Linux without ``$DISPLAY``/``$WAYLAND_DISPLAY``/``$BROWSER``),
  so Jupyter never starts a text-mode browser in the terminal;
* once the server answers, one line with the URL to open (token included);
* in the background, :mod:`kdcore.warm` trains and caches the models that notebooks 03 and 08 would otherwise
  train on their first run (``KDCORE_WARM=0`` turns it off);
* instructor tooling (nbgrader's menus, panels and its *Validate* button, whose "passes all the tests" is
  wrong for this course) and JupyterLab's news pop-up (the course is offline) are switched off for the
  learner: ``kdcore/lab_config`` comes first on ``$JUPYTER_CONFIG_PATH``.

Every other option goes to Jupyter unchanged (``make lab JUPYTER_ARGS="--port=9000 --ip=0.0.0.0"``); an
option given there wins over the defaults above (``--browser``/``--no-browser`` included).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["HOME_PAGE", "course_root", "lab_command", "lab_environment", "can_open_browser", "main"]

HOME_PAGE = "notebooks/00_start_here.ipynb"
LAB_CONFIG = Path(__file__).resolve().parent / "lab_config"
READY_TIMEOUT_S = 120.0


def course_root(start: Path | None = None) -> Path:
    """The course folder: the working folder if it holds ``notebooks/`` and ``solutions/``, else the folder
    above the ``kdcore`` package (an editable install of a clone)."""
    here = Path(start or Path.cwd()).resolve()
    if (here / "notebooks").is_dir() and (here / "solutions").is_dir():
        return here
    return Path(__file__).resolve().parents[1]


def can_open_browser(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether a graphical browser can open: macOS and Windows always; elsewhere only with a display (or a
    ``$BROWSER`` the user chose)."""
    if platform.startswith(("darwin", "win", "cygwin")):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("BROWSER"))


def _given(args: Sequence[str], *names: str) -> bool:
    """Whether one of the options ``names`` is among ``args`` (``--name`` or ``--name=value``)."""
    return any(arg == name or arg.startswith(name + "=") for arg in args for name in names)


def lab_command(extra_args: Sequence[str] = (), *, root: Path, is_root_user: bool, browser: bool,
                python: str = sys.executable) -> list[str]:
    """The ``jupyter lab`` command line; ``extra_args`` come last, and a default they set is not added."""
    extra = list(extra_args)
    cmd = [python, "-m", "jupyterlab"]
    if not _given(extra, "--ServerApp.root_dir", "--notebook-dir", "--ServerApp.notebook_dir"):
        cmd.append(f"--ServerApp.root_dir={root}")
    if not _given(extra, "--LabApp.default_url", "--ServerApp.default_url"):
        cmd.append(f"--LabApp.default_url=/lab/tree/{HOME_PAGE}")
    if is_root_user and not _given(extra, "--allow-root", "--ServerApp.allow_root"):
        cmd.append("--allow-root")
    if not browser and not _given(extra, "--browser", "--no-browser", "--ServerApp.open_browser"):
        cmd.append("--no-browser")
    return cmd + extra


def lab_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the course's Jupyter configuration first on ``JUPYTER_CONFIG_PATH``."""
    out = dict(env)
    rest = [p for p in out.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p and p != str(LAB_CONFIG)]
    out["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(LAB_CONFIG), *rest])
    return out


def _server_url(pid: int) -> str | None:
    """The URL of the course home on the server with process id ``pid``, once it is running."""
    from jupyter_server.serverapp import list_running_servers

    for info in list_running_servers():
        if info.get("pid") == pid:
            token = info.get("token") or ""
            return f"{info['url']}lab/tree/{HOME_PAGE}" + (f"?token={token}" if token else "")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    root = course_root()
    if not (root / HOME_PAGE).exists():
        print(f"warning: {root / HOME_PAGE} is missing; `make notebooks` (python -m kdcore.assign) writes it",
              file=sys.stderr)
    env = lab_environment(os.environ)
    is_root_user = hasattr(os, "geteuid") and os.geteuid() == 0
    cmd = lab_command(args, root=root, is_root_user=is_root_user, browser=can_open_browser(env))
    from .warm import SLOW_FIRST_RUN, start_in_background

    warming = start_in_background(root, env)
    if warming:
        print(f"Training the models of notebooks {', '.join(n[:2] for n in SLOW_FIRST_RUN)} in the background, so "
              f"their first run loads them (a few minutes; KDCORE_WARM=0 turns this off; log: {warming[1]})",
              flush=True)
    print("Starting JupyterLab: jupyter lab", " ".join(cmd[3:]), flush=True)
    child = subprocess.Popen(cmd, cwd=root, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = None
    while child.poll() is None and url is None and time.monotonic() < deadline:
        try:
            time.sleep(0.5)
            url = _server_url(child.pid)
        except KeyboardInterrupt:  # Ctrl-C reaches Jupyter too; it asks whether to stop
            pass
    if url:
        print(f"\n    The course is running. Open this URL in your browser:\n\n    {url}\n", flush=True)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


if __name__ == "__main__":
    sys.exit(main())
