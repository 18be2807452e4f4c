"""The learner's first hour in a real browser: JupyterLab started as ``make lab`` starts it, driven by Chromium.

On a copy of the course: open a learner notebook whose ``magnitude_mask`` holds a typical mistake, press Run All
(menu Run → Run All Cells), and check that the last cell ran and the check's hint is on screen; then solve
``softmax_t`` in notebook 01, run the home page, and check that its progress table ticks it. Also: no nbgrader
menu, and ``solutions/`` in the file browser.

Chromium is Debian's package (``make ci-deps`` installs it), driven by Playwright through ``executable_path``
(Playwright's own browser download is not needed). Without Chromium or Playwright the test is skipped with the
reason. ``KDCORE_SCREENSHOTS=DIR`` keeps screenshots of both pages in DIR.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import nbformat
import pytest

from kdcore.hints import solution_source

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
WAIT_MS = 240_000   # a loaded 2-core machine needs minutes for a kernel start plus a notebook run

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: `make ci-deps`, i.e. "
                                                 "apt-get install chromium)"),
]

WRONG_MAGNITUDE_MASK = '''import torch


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    n_prune = round(sparsity * weight.numel())
    order = torch.argsort(weight.detach().abs().flatten(), descending=True)   # largest first: the mistake
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[order[:n_prune]] = False
    return mask.view(weight.shape)
'''


def _put(path: Path, function: str, source: str) -> None:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and f"def {function}(" in c.source)
    cell.source = source
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A copy of the course (notebooks, solutions, quiz data) served by ``python -m kdcore.lab``."""
    root = tmp_path_factory.mktemp("course")
    for folder in ("notebooks", "solutions"):
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copytree(ROOT / "quiz", root / "quiz", ignore=shutil.ignore_patterns("__pycache__"))
    _put(root / "notebooks" / "05_pruning_types.ipynb", "magnitude_mask", WRONG_MAGNITUDE_MASK)
    _put(root / "notebooks" / "01_soft_labels.ipynb", "softmax_t", "import torch\n\n" + solution_source("softmax_t"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "KDCORE_CHECK")}
    # no background warm-up (it would train notebooks 03 and 08 while the browser waits on kernels); a workspace
    # folder of its own, so no tab saved by an earlier JupyterLab session reopens beside the page under test
    env.update(PYTHONPATH=str(ROOT), KDCORE_PROGRESS="0", JUPYTER_RUNTIME_DIR=str(root / ".runtime"), KDCORE_WARM="0")
    proc = subprocess.Popen([sys.executable, "-m", "kdcore.lab", f"--port={port}", "--ServerApp.port_retries=0",
                             f"--LabApp.workspaces_dir={root / '.workspaces'}"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: Queue = Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    url, log = None, []
    deadline = time.monotonic() + 300
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            log.append(lines.get(timeout=5))
        except Empty:
            continue
        if len(log) >= 3 and "The course is running" in log[-3]:
            url = log[-1].strip()
    if url is None:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("JupyterLab did not print its URL:\n" + "".join(log)[-3000:])
    yield root, url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                                                  "(requirements-instructor.txt)")
    with sync_api.sync_playwright() as playwright:
        args = ["--disable-dev-shm-usage", "--disable-gpu"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


def _open(browser, url: str, notebook: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(url.replace("notebooks/00_start_here.ipynb", notebook))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    # the kernel has started: the status bar reads "Python 3 (ipykernel) | Idle"
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle")).first.wait_for()
    return page


PROMPTS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt"


def _prompts(page) -> list[str]:
    """The execution prompts of every code cell ("[12]:", "[*]:" or empty), read from the DOM (cells scrolled
    out of view are not painted, so their inner text is empty; their textContent is not)."""
    return page.eval_on_selector_all(PROMPTS, "els => els.map(e => e.textContent.trim())")


def _run_all(page) -> None:
    started = "() => [...document.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('[*]'))"
    for attempt in range(3):
        # the menu acts on the focused notebook: focus it first (a click that lands while JupyterLab is still
        # restoring its layout can leave the file browser focused, and then "Run All Cells" does nothing)
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:   # the last code cell gets an execution count "[n]:" once it has run ("[*]:" while it waits or runs)
            page.wait_for_function(started, timeout=20_000)                              # Run All started
            break
        except Exception:                                                                # noqa: BLE001
            if attempt == 2:
                _screenshot(page, "run_all_did_not_start.png")
                raise
            page.keyboard.press("Escape")                                                # close a menu left open
    page.wait_for_function(f"""() => {{
        const p = document.querySelectorAll({PROMPTS!r});
        return p.length > 0 && /\\[\\d+\\]/.test(p[p.length - 1].textContent);
    }}""", timeout=WAIT_MS)


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("KDCORE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=False)


def test_run_all_reaches_the_last_cell_and_shows_the_hint(course, browser):
    _, url = course
    page = _open(browser, url, "notebooks/05_pruning_types.ipynb")
    menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
    assert "Run" in menus and not any("nbgrader" in m.lower() for m in menus)   # no instructor menu
    assert page.locator("text=Validate").count() == 0
    _run_all(page)
    prompts = _prompts(page)
    assert prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), prompts  # every code cell ran
    report = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text="magnitude_mask:").first
    report.scroll_into_view_if_needed()
    assert report.is_visible()
    text = report.text_content()
    assert text.splitlines()[1].strip().startswith("hint: you pruned the largest weights")   # the hint first
    outputs = " ".join(page.eval_on_selector_all(".jp-OutputArea-output", "els => els.map(e => e.textContent)"))
    assert "ExerciseFailed" not in outputs and "Traceback" not in outputs               # nothing raised
    _screenshot(page, "05_run_all_hint.png")
    page.close()


def test_home_page_ticks_a_solved_exercise_and_solutions_are_reachable(course, browser):
    _, url = course
    # One retry with a fresh page: about one run in ten, on a loaded 2-core machine, the page waited past
    # WAIT_MS with no cause found in the product (the retry's own failure is the one reported).
    for attempt in range(2):
        page = None
        try:
            page = _open(browser, url, "notebooks/00_start_here.ipynb")
            _run_all(page)
            break
        except Exception:                                                                # noqa: BLE001
            if page is not None:
                _screenshot(page, f"home_run_all_attempt{attempt}.png")
                page.close()
            if attempt == 1:
                raise
    table = page.locator(".jp-RenderedMarkdown table", has_text="Soft labels and temperature")
    table.scroll_into_view_if_needed()
    row = table.locator("tr", has_text="01 · Soft labels and temperature").inner_text()
    assert "✓ softmax_t" in row and "○ kl_divergence" in row, row
    assert "05 · Types of pruning" in table.inner_text()
    summary = page.locator(".jp-RenderedMarkdown", has_text="exercises solved").last.inner_text()
    assert re.search(r"1 of \d+ exercises solved\. Next: 01 · Soft labels and temperature", summary), summary
    _screenshot(page, "00_home_progress.png")
    page.locator(".jp-BreadCrumbs-home").first.click()                     # the file browser at the course root
    listing = page.locator(".jp-DirListing-itemText")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-DirListing-itemText')]"
                           ".some(e => e.textContent.trim() === 'solutions')")
    assert "solutions" in [t.strip() for t in listing.all_inner_texts()]
    page.close()
