"""The grading child process: one submission, fresh interpreter, limited memory (used by ``kdcore.grade``).

    python -m kdcore._grade_worker NOTEBOOK OUT_DIR [--exercises a,b] [--skip a,b] [--case-timeout S]
                                   [--memory-mb MB] [--threads N]

Fast path: the notebook is not run. Only the top-level imports, ``def``/``class`` statements and constant
assignments of its code cells run, in notebook order (so a duplicated cell's last definition wins), each
statement on its own so that one failing import does not hide the other exercises. Then, for every
exercise whose function is defined, ``kdcore.checking.run_candidate`` records the function's outputs on the
exercise's cases; they are saved with ``torch.save`` and judged by the parent process, which computes the
references itself: patching ``kdcore`` here cannot change a grade.

Files written in OUT_DIR (the parent reads them, never trusting more than the data):
``info.json``            what the notebook defines, its check cells and the cell errors (or ``invalid``);
``running.txt``          the exercise being run (tells the parent which one a crash or timeout hit);
``obs-<id>.pt``          ``{"observations": [...], "error": str | None, "memory": bool}`` per exercise;
``done``                 written last.
The parent gives this process a copy of the submission, never the original.
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import sys
import threading
import traceback
from pathlib import Path

from ._notebook import cell_source, check_calls, definitions

#: RLIMIT_FSIZE: no file this process writes (stderr included) may exceed this size.
MAX_FILE_BYTES = 64 * 2**20
#: Exit code asking the parent for a fresh process for the remaining exercises: a case that timed out
#: keeps running in its (unkillable) thread and would slow every later case down.
RESTART = 75


def _limit_resources(memory_mb: int) -> bool:
    """Cap the address space at ``memory_mb`` MiB and file sizes; False where the OS refuses (macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return False
    enforced = True
    for limit, value in ((resource.RLIMIT_AS, memory_mb * 2**20), (resource.RLIMIT_FSIZE, MAX_FILE_BYTES)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            enforced = enforced and limit != resource.RLIMIT_AS
    return enforced


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: dict) -> None:
    _write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))


def _is_memory_error(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text
                                                or "not enough memory" in text)


def _guard(fn, flags: dict):
    """Wrap the learner's function: ``sys.exit`` becomes an ordinary error of that case, and memory
    errors are remembered (the submission's status becomes ``memory``)."""
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SystemExit as exit_:
            raise RuntimeError(f"the function called sys.exit({exit_.code!r})") from None
        except BaseException as error:
            if _is_memory_error(error):
                flags["memory"] = True
            raise
    return guarded


def load_cells(path: Path) -> list[dict]:
    """The cells of a notebook file, leniently (only ``cells[*].cell_type/source`` are needed)."""
    with open(path, "rb") as handle:  # read-only; the parent gave us a copy anyway
        nb = json.loads(handle.read().decode("utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("the file is JSON but not a notebook (no 'cells' list)")
    return [c for c in nb["cells"] if isinstance(c, dict)]


def define(cells: list[dict], namespace: dict) -> tuple[list[str], list[str], bool]:
    """Run the fast-path statements of the code cells into ``namespace``.

    Returns the check-cell exercise ids, one message per failing cell or statement, and whether a
    memory error occurred.
    """
    checks: list[str] = []
    errors: list[str] = []
    memory = False
    code_cells = [c for c in cells if c.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, start=1):
        source = cell_source(cell)
        checks.extend(call.exercise_id for call in check_calls(source))
        statements, syntax_error = definitions(source)
        if syntax_error is not None:
            errors.append(f"code cell {number}: SyntaxError: {syntax_error.msg} (line {syntax_error.lineno})")
            continue
        for statement in statements:
            module = ast.Module(body=[statement], type_ignores=[])
            try:
                exec(compile(module, f"<code cell {number}>", "exec"), namespace)
            except BaseException as error:  # SystemExit at definition time included
                memory = memory or _is_memory_error(error)
                errors.append(f"code cell {number}, line {statement.lineno}: "
                              f"{type(error).__name__}: {error}"[:500])
    return checks, errors, memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore._grade_worker")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--exercises", default="")
    parser.add_argument("--skip", default="")
    parser.add_argument("--case-timeout", type=float, default=0.0, help="0: each exercise's own limit")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    out: Path = args.out
    limited = _limit_resources(args.memory_mb) if args.memory_mb > 0 else False

    try:
        cells = load_cells(args.notebook)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as error:
        _write_json(out / "info.json", {"invalid": f"{type(error).__name__}: {error}"[:500]})
        return 0

    # Bind the grader before any learner code runs: a submission that replaces
    # kdcore.checking.run_candidate afterwards does not change what runs here.
    import torch
    from kdcore.checking import EXERCISES, run_candidate
    torch.set_num_threads(max(1, args.threads))

    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    checks, errors, memory = define(cells, namespace)
    wanted = [e for e in args.exercises.split(",") if e] or list(EXERCISES)
    skip = {e for e in args.skip.split(",") if e}
    defined = [e for e in wanted if e in EXERCISES and callable(namespace.get(e))]
    _write_json(out / "info.json", {"checks": checks, "defined": defined, "cell_errors": errors,
                                    "memory": memory, "memory_limited": limited})

    todo = [e for e in defined if e not in skip]
    for position, exercise_id in enumerate(todo):
        threads_before = threading.active_count()
        _write_atomic(out / "running.txt", exercise_id.encode())
        flags = {"memory": False}
        record: dict = {"observations": [], "error": None, "memory": False}
        try:
            limit = args.case_timeout or EXERCISES[exercise_id].timeout
            record["observations"] = run_candidate(exercise_id, _guard(namespace[exercise_id], flags),
                                                   case_timeout=limit)
        except BaseException as error:  # the learner's code may raise anything, SystemExit included
            record["error"] = "".join(traceback.format_exception_only(type(error), error)).strip()[:2000]
            flags["memory"] = flags["memory"] or _is_memory_error(error)
        record["memory"] = flags["memory"]
        tmp = out / f"obs-{exercise_id}.pt.tmp"
        try:
            torch.save(record, tmp)
        except Exception as error:  # an observation torch cannot save
            torch.save({"observations": [], "error": f"outputs could not be saved: {error}"[:2000],
                        "memory": record["memory"]}, tmp)
        os.replace(tmp, out / f"obs-{exercise_id}.pt")
        if threading.active_count() > threads_before and position + 1 < len(todo):
            os._exit(RESTART)
    (out / "done").write_bytes(b"")
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: a case the grader timed out may still be running in a thread.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
