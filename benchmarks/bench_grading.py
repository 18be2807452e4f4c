"""Batch-grading speed: ``python -m kdcore.grade`` on 30 generated submissions, with and without the sandbox.

    .venv/bin/python benchmarks/bench_grading.py [--n 30] [--rounds 3] [--fresh-rounds 1] [--notebook ...]

End to end through the command line (what an instructor waits for), ``--jobs 2``, interleaved so that a
change in the machine's load hits every configuration alike; each round prints its own ratios:

- ``no sandbox``     ``--no-sandbox``: one pre-loaded zygote per job, no isolation       (the baseline)
- ``sandbox``        the default: the same zygotes, each inside its own bubblewrap sandbox  (target: <= 1.3x)
- ``sandbox, fresh`` ``KDCORE_GRADE_FORK=0``: a new sandbox and interpreter per submission (what the
                     zygote saves: importing torch once per sandbox instead of once per submission)

and the per-submission time (wall time / submissions). Besides wall time it reports the CPU time of the
whole process tree, which a busy machine disturbs far less. Submissions: copies of a solution notebook; every
third one is the learner notebook (all exercises unsolved), so the batch mixes full and zero scores.
"""
from __future__ import annotations

import argparse
import os
import resource
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the whole process tree (the grader, its sandboxes and every grading
    process: each is reaped by its parent, so its time adds up into the grader's)."""
    cpu, start = _children_cpu(), time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "kdcore.grade", *args], capture_output=True, text=True,
                         env={**os.environ, "KDCORE_PROGRESS": "0", **(env or {})}, cwd=ROOT)
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if run.returncode != 0:
        raise SystemExit(f"grading failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return elapsed, cpu


CONFIGS = {  # name -> (extra arguments, extra environment)
    "no sandbox": (["--no-sandbox"], {}),
    "sandbox": ([], {}),
    "sandbox, fresh": ([], {"KDCORE_GRADE_FORK": "0"}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh-rounds", type=int, default=1,
                        help="rounds that also run 'sandbox, fresh' (slow, informative only)")
    parser.add_argument("--notebook", type=Path, default=ROOT / "solutions" / "01_soft_labels.ipynb")
    args = parser.parse_args()
    probe = sandbox.probe()
    if not probe.available:
        raise SystemExit(f"no sandbox here ({probe.reason}): {sandbox.install_hint()}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; notebook {args.notebook.name}; "
          f"{args.n} submissions, --jobs 2")
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    cpus: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        make_submissions(args.notebook, folder, args.n)
        gradebooks = set()
        for round_ in range(args.rounds):
            names = [n for n in CONFIGS if n != "sandbox, fresh" or round_ < args.fresh_rounds]
            for name in names:
                extra, env = CONFIGS[name]
                csv = Path(tmp) / f"grades-{round_}-{name.replace(' ', '').replace(',', '-')}.csv"
                seconds, cpu = run_cli([str(folder), "--jobs", "2", "--csv", str(csv), *extra], env)
                times[name].append(seconds)
                cpus[name].append(cpu)
                gradebooks.add(csv.read_text())
            base, base_cpu = times["no sandbox"][-1], cpus["no sandbox"][-1]
            print(f"round {round_ + 1} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
                f"{n} {times[n][-1]:.1f} s wall ({times[n][-1] / base:.2f}x), {cpus[n][-1]:.1f} s CPU "
                f"({cpus[n][-1] / base_cpu:.2f}x)" for n in names))
        assert len(gradebooks) == 1, "the configurations disagree on the gradebook"
    print(f"\n{'configuration':16s} {'wall s':>7s} {'per submission':>15s} {'wall ratio':>11s} {'CPU s':>7s} "
          f"{'CPU ratio':>10s}   (medians)")
    base, base_cpu = statistics.median(times["no sandbox"]), statistics.median(cpus["no sandbox"])
    for name in CONFIGS:
        wall, cpu = statistics.median(times[name]), statistics.median(cpus[name])
        print(f"{name:16s} {wall:7.1f} {wall / args.n:13.2f} s {wall / base:10.2f}x {cpu:7.1f} {cpu / base_cpu:9.2f}x")
    ratios = [s / b for s, b in zip(times["sandbox"], times["no sandbox"])]
    print(f"\nsandbox overhead: {statistics.median(ratios):.2f}x the unsandboxed batch's wall time (median of the "
          f"per-round ratios {', '.join(f'{r:.2f}' for r in ratios)}), "
          f"{statistics.median(cpus['sandbox']) / base_cpu:.2f}x its CPU time; target <= 1.3x. "
          "Identical gradebooks in every configuration.")


if __name__ == "__main__":
    main()
