"""Batch-grading speed: ``python -m kdcore.grade`` on 30 generated submissions, with and without the sandbox.

    .venv/bin/python benchmarks/bench_grading.py [--n 30] [--rounds 2] [--notebook solutions/01_soft_labels.ipynb]

End to end through the command line (what an instructor waits for), ``--jobs 2``, interleaved so that a
change in the machine's load hits every configuration alike; each round prints its own ratios:

- ``no sandbox``     ``--no-sandbox``: one pre-loaded zygote per job, no isolation       (the baseline)
- ``sandbox``        the default: the same zygotes, each inside its own bubblewrap sandbox  (target: <= 1.3x)
- ``sandbox, fresh`` ``KDCORE_GRADE_FORK=0``: a new sandbox and interpreter per submission (what the
                     zygote saves: importing torch once per sandbox instead of once per submission)

and the per-submission time (wall time / submissions). Submissions: copies of a solution notebook; every
third one is the learner notebook (all exercises unsolved), so the batch mixes full and zero scores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcore.assign import learner_notebook  # noqa: E402
from kdcore.classroom import sandbox  # noqa: E402


def make_submissions(solution: Path, folder: Path, n: int) -> list[Path]:
    nb = nbformat.read(solution, as_version=4)
    learner = learner_notebook(nb, solution)
    paths = []
    for i in range(n):
        path = folder / f"student{i:02d}.ipynb"
        nbformat.write(learner if i % 3 == 0 else nb, path)
        paths.append(path)
    return paths


def run_cli(args: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "kdcore.grade", *args], capture_output=True, text=True,
                         env={**os.environ, "KDCORE_PROGRESS": "0", **(env or {})}, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"grading failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return elapsed, run.stdout


CONFIGS = {  # name -> (extra arguments, extra environment)
    "no sandbox": (["--no-sandbox"], {}),
    "sandbox": ([], {}),
    "sandbox, fresh": ([], {"KDCORE_GRADE_FORK": "0"}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--notebook", type=Path, default=ROOT / "solutions" / "01_soft_labels.ipynb")
    args = parser.parse_args()
    probe = sandbox.probe()
    if not probe.available:
        raise SystemExit(f"no sandbox here ({probe.reason}): {sandbox.install_hint()}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; notebook {args.notebook.name}; "
          f"{args.n} submissions, --jobs 2")
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        make_submissions(args.notebook, folder, args.n)
        gradebooks = set()
        for round_ in range(args.rounds):
            for name, (extra, env) in CONFIGS.items():
                csv = Path(tmp) / f"grades-{round_}-{name.replace(' ', '').replace(',', '-')}.csv"
                seconds, _ = run_cli([str(folder), "--jobs", "2", "--csv", str(csv), *extra], env)
                times[name].append(seconds)
                gradebooks.add(csv.read_text())
            base = times["no sandbox"][-1]
            print(f"round {round_ + 1}: " + ", ".join(f"{name} {times[name][-1]:.1f} s ({times[name][-1] / base:.2f}x)"
                                                    for name in CONFIGS))
        assert len(gradebooks) == 1, "the configurations disagree on the gradebook"
    print(f"\n{'configuration':16s} {'median s':>9s} {'per submission':>15s} {'vs no sandbox':>14s}")
    base = statistics.median(times["no sandbox"])
    for name in CONFIGS:
        median = statistics.median(times[name])
        print(f"{name:16s} {median:9.1f} {median / args.n:13.2f} s {median / base:13.2f}x")
    print(f"\nsandbox overhead: {statistics.median(times['sandbox']) / base:.2f}x the unsandboxed batch "
          "(target <= 1.3x); identical gradebooks in every configuration")


if __name__ == "__main__":
    main()
