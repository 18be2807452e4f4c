"""Stage 2b, the grading process: runs one submission's functions on the exercises' cases.

    python -m kdcore.classroom.worker NOTEBOOK OUT_DIR [--exercises a,b] [--skip a,b] [--case-timeout S]
                                      [--memory-mb MB] [--threads N]

Normally started as a fork of the pre-loaded :mod:`kdcore.classroom.zygote`, inside the sandbox, with the
scratch folder as OUT_DIR. This is the only code that runs learner code; it writes results into OUT_DIR
(names in :mod:`kdcore.classroom.protocol`) and the grader judges them elsewhere, computing the references
itself: nothing done here can change the reference or anyone else's grade.

Fast path: the notebook is not run. Only the top-level imports, ``def``/``class`` statements and constant
assignments of its code cells run, in notebook order (a duplicated cell's last definition wins), each
statement on its own so that one failing import does not hide the other exercises. Then, for every
exercise whose function is defined, ``run_candidate`` records the function's outputs on the exercise's
cases. While the notebook's statements run, every kdcore reference is denied (a learner's code has no use
for it then); while an exercise runs, its own reference is (:mod:`kdcore.classroom.reference_use`).
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import re
import sys
import threading
import traceback
from pathlib import Path

from .._notebook import cell_source, check_calls, definitions
from . import protocol

_DEF_NAME = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)|^\s*class\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*=",
                       re.M)


def _limit_resources(memory_mb: int) -> bool:
    """Cap the address space at ``memory_mb`` MiB and file sizes; False where the OS refuses (macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return False
    enforced = True
    for limit, value in ((resource.RLIMIT_AS, memory_mb * 2**20),
                         (resource.RLIMIT_FSIZE, protocol.MAX_FILE_BYTES)):
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
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text)


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
    with open(path, "rb") as handle:
        nb = json.loads(handle.read().decode("utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("the file is JSON but not a notebook (no 'cells' list)")
    return [c for c in nb["cells"] if isinstance(c, dict)]


def names_bound(source: str) -> list[str]:
    """Top-level names a cell binds (``def``, ``class``, ``name =``), found by a regex so that a cell with a
    syntax error still says which function it was meant to define."""
    return sorted({next(g for g in match.groups() if g) for match in _DEF_NAME.finditer(source)})


def define(cells: list[dict], namespace: dict) -> tuple[list[str], list[dict], bool]:
    """Run the fast-path statements of the code cells into ``namespace``.

    Returns the check-cell exercise ids, the cell errors (``{"cell", "binds", "message"}``: ``binds`` lets
    the grader show an error under the exercise whose cell it is, and nowhere else) and whether a memory
    error occurred.
    """
    checks: list[str] = []
    errors: list[dict] = []
    memory = False
    code_cells = [c for c in cells if c.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, start=1):
        source = cell_source(cell)
        checks.extend(call.exercise_id for call in check_calls(source))
        statements, syntax_error = definitions(source)
        if syntax_error is not None:
            errors.append({"cell": number, "binds": names_bound(source),
                           "message": f"SyntaxError: {syntax_error.msg} (line {syntax_error.lineno})"})
            continue
        for statement in statements:
            module = ast.Module(body=[statement], type_ignores=[])
            try:
                exec(compile(module, f"<code cell {number}>", "exec"), namespace)  # noqa: S102 - the point
            except BaseException as error:  # SystemExit at definition time included
                memory = memory or _is_memory_error(error)
                errors.append({"cell": number, "binds": names_bound(source),
                               "message": f"line {statement.lineno}: {type(error).__name__}: {error}"[:500]})
    return checks, errors, memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore.classroom.worker")
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
        _write_json(out / protocol.INFO_FILE, {"invalid": f"{type(error).__name__}: {error}"[:500]})
        return 0

    # Bind the grader before any learner code runs: re-binding these names later changes nothing here.
    import torch

    from .catalogue import EXERCISES, run_candidate
    from .reference_use import reference_use, watching
    torch.set_num_threads(max(1, args.threads))

    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    with watching(list(EXERCISES), deny=True) as at_definition:
        checks, errors, memory = define(cells, namespace)
    wanted = [e for e in args.exercises.split(",") if e] or list(EXERCISES)
    skip = {e for e in args.skip.split(",") if e}
    defined = [e for e in wanted if e in EXERCISES and callable(namespace.get(e))]
    _write_json(out / protocol.INFO_FILE, {"checks": checks, "defined": defined, "cell_errors": errors,
                                           "memory": memory, "memory_limited": limited})

    todo = [e for e in defined if e not in skip]
    for position, exercise_id in enumerate(todo):
        threads_before = threading.active_count()
        _write_atomic(out / protocol.RUNNING_FILE, exercise_id.encode())
        flags = {"memory": False}
        record: dict = {"observations": [], "error": None, "memory": False, "reference": None}
        fn = namespace[exercise_id]
        try:
            record["reference"] = reference_use(exercise_id, fn)
            if exercise_id in at_definition.called:
                record["reference"] = "the notebook called that reference while its functions were defined"
            if record["reference"] is None:
                limit = args.case_timeout or EXERCISES[exercise_id].timeout
                with watching(exercise_id, deny=True) as during:
                    record["observations"] = run_candidate(exercise_id, _guard(fn, flags), case_timeout=limit)
                if during.called:
                    record["reference"] = "it called that reference while the cases ran"
        except BaseException as error:  # the learner's code may raise anything, SystemExit included
            record["error"] = "".join(traceback.format_exception_only(type(error), error)).strip()[:2000]
            flags["memory"] = flags["memory"] or _is_memory_error(error)
        record["memory"] = flags["memory"]
        path = out / protocol.record_name(exercise_id)
        tmp = path.with_name(path.name + ".tmp")
        try:
            torch.save(record, tmp)
        except Exception as error:  # an observation torch cannot save
            torch.save({"observations": [], "error": f"outputs could not be saved: {error}"[:2000],
                        "memory": record["memory"], "reference": record["reference"]}, tmp)
        os.replace(tmp, path)
        if threading.active_count() > threads_before and position + 1 < len(todo):
            os._exit(protocol.EXIT_RESTART)
    (out / protocol.DONE_FILE).write_bytes(b"")
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: a case the grader timed out may still be running in a thread.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
