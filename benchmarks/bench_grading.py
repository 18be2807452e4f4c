"""Batch-grading speed: ``python -m kdcore.grade`` on 30 generated submissions.

    .venv/bin/python benchmarks/bench_grading.py [--n 30] [--notebook solutions/01_soft_labels.ipynb]

Measures, end to end through the command line (what an instructor waits for):
1. one submission alone                                   (target: < 15 s);
2. 30 submissions serially (``--jobs 1``)                 (the baseline);
3. 30 submissions with ``--jobs 2``                       (target: < 3 min on 2 cores), ratio vs 2.;
4. 30 submissions with ``--jobs 2`` and every grading process a new interpreter instead of a fork of
   the pre-loaded server (``KDCORE_GRADE_FORK=0``), ratio vs 3.;
and one in-process ``kdcore.checking.check`` call per exercise on the reference itself.

Submissions: copies of a solution notebook (``solutions/01_soft_labels.ipynb`` by default); every third
one is the learner notebook (all exercises unsolved) and every third+1 has its outputs and counts
cleared, so the batch mixes full, partial and zero scores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcore.assign import learner_notebook  # noqa: E402


def make_submissions(solution: Path, folder: Path, n: int) -> list[Path]:
    nb = nbformat.read(solution, as_version=4)
    learner = learner_notebook(nb, solution)
    paths = []
    for i in range(n):
        path = folder / f"student{i:02d}.ipynb"
        nbformat.write(learner if i % 3 == 0 else nb, path)
        paths.append(path)
    return paths


def run_cli(args: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "kdcore.grade", *args], capture_output=True, text=True,
                         env={**os.environ, "KDCORE_PROGRESS": "0", **(env or {})}, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"grading failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return elapsed


def time_checks() -> list[tuple[str, float]]:
    import torch

    from kdcore.checking import EXERCISES, REFERENCES, check
    torch.set_num_threads(1)
    rows = []
    for exercise_id in EXERCISES:
        reference = REFERENCES.get(exercise_id)
        if reference is None:
            continue
        start = time.perf_counter()
        result = check(exercise_id, reference, raise_on_fail=False, verbose=False)
        rows.append((exercise_id, time.perf_counter() - start, result.score))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--notebook", type=Path, default=ROOT / "solutions" / "01_soft_labels.ipynb")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; notebook {args.notebook.name}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        paths = make_submissions(args.notebook, folder, args.n)
        csv = Path(tmp) / "grades.csv"
        one = run_cli([str(paths[1]), "--csv", str(csv)])
        serial = run_cli([str(folder), "--jobs", "1", "--csv", str(csv)])
        parallel = run_cli([str(folder), "--jobs", "2", "--csv", str(csv)])
        fresh = run_cli([str(folder), "--jobs", "2", "--csv", str(csv)], env={"KDCORE_GRADE_FORK": "0"})
        print(csv.read_text().splitlines()[0])
        print(csv.read_text().splitlines()[2])
    print(f"\none submission (CLI, end to end)      {one:7.1f} s   target < 15 s")
    print(f"{args.n} submissions, --jobs 1 (baseline)  {serial:7.1f} s")
    print(f"{args.n} submissions, --jobs 2              {parallel:7.1f} s   speed-up vs --jobs 1: "
          f"{serial / parallel:.2f}x   target < 180 s")
    print(f"{args.n} submissions, --jobs 2, no fork     {fresh:7.1f} s   fork server speed-up: "
          f"{fresh / parallel:.2f}x")
    print("\nin-process check() of each reference (1 thread):")
    for exercise_id, seconds, score in time_checks():
        print(f"  {exercise_id:24s} {seconds:6.2f} s  score {score:.2f}")


if __name__ == "__main__":
    main()
