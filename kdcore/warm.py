"""``python -m kdcore.warm``: train and cache, ahead of time, the models that make a notebook's first run slow.

Notebooks 03 and 08 train a few dozen small students across seeds. :func:`kdcore.train.cached_model` stores each
one after its first training, so every later run only loads them; but the very first run pays for all of it
(on an idle 2-core machine, 03 took 82 s cold against 16 s warm, 08 106 s against 20 s). ``make lab``
(:mod:`kdcore.lab`) therefore starts this module in the background while the learner reads the first
notebooks: it executes the listed *solution* notebooks headless, in a fresh kernel each, and throws their
outputs away. Nothing in the course folder is written; the trained models land in the model cache
(``~/.cache/kdcore/models``, see :func:`kdcore.data.cache_dir`), exactly where the learner's own run will look
for them, because the same code computes the same cache keys. A notebook opened before the warm-up reaches
it simply trains what it needs itself (cache writes are atomic, so two writers never corrupt a file).

``KDCORE_WARM=0`` switches it off (``make lab`` then starts nothing). The log goes to
``<cache_dir>/warm.log``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["SLOW_FIRST_RUN", "warm", "warm_enabled", "start_in_background", "main"]

# solution notebooks whose first run trains and caches models (the rest load a shipped checkpoint or train
# nothing that takes long)
SLOW_FIRST_RUN = ("03_training_a_student.ipynb", "08_pruning_and_kd.ipynb")


def warm_enabled(env: Mapping[str, str]) -> bool:
    return env.get("KDCORE_WARM", "1").lower() not in {"0", "false", "no", "off"}


def warm(folder: Path, names: Sequence[str] = SLOW_FIRST_RUN, timeout: int = 900,
         log=sys.stdout) -> dict[str, float]:
    """Execute each notebook ``folder/name`` in a fresh kernel (working directory ``folder``), outputs
    discarded and the file left untouched; returns ``{name: seconds}``. A notebook that fails is reported
    and skipped: the warm-up is an optimisation, never a reason to stop."""
    import nbclient
    import nbformat

    folder = Path(folder)
    seconds: dict[str, float] = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            print(f"warm: {path} not found, skipped", file=log, flush=True)
            continue
        nb = nbformat.read(path, as_version=4)            # in memory: the file on disk is never written
        start = time.perf_counter()
        try:
            nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                                    resources={"metadata": {"path": str(folder)}}).execute()
        except Exception as err:                          # noqa: BLE001 (any failure: report, go on)
            print(f"warm: {name} failed after {time.perf_counter() - start:.0f} s: "
                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=log, flush=True)
            continue
        seconds[name] = time.perf_counter() - start
        print(f"warm: {name} done in {seconds[name]:.0f} s; its models are cached", file=log, flush=True)
    return seconds


def start_in_background(root: Path, env: Mapping[str, str]):
    """Start ``python -m kdcore.warm`` for ``root/solutions`` detached from the terminal (its own session, so
    Ctrl-C in the terminal that runs Jupyter does not reach it), logging to ``<cache_dir>/warm.log``.
    Returns ``(process, log path)``, or ``None`` when switched off or when there is nothing to warm."""
    import subprocess

    from .data import cache_dir

    if not warm_enabled(env) or not any((Path(root) / "solutions" / n).is_file() for n in SLOW_FIRST_RUN):
        return None
    try:
        log_path = cache_dir() / "warm.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w", encoding="utf-8")        # noqa: SIM115 (handed to the child)
    except OSError:
        return None                                        # no writable cache: nothing could be cached anyway
    child_env = {**env, "KDCORE_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "kdcore.warm", str(Path(root) / "solutions")], cwd=root,
                            env=child_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    return proc, log_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="solutions", help="folder of the solution notebooks")
    parser.add_argument("--notebooks", nargs="*", default=list(SLOW_FIRST_RUN))
    args = parser.parse_args(argv)
    os.environ.setdefault("KDCORE_PROGRESS", "0")
    warm(Path(args.folder), args.notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
