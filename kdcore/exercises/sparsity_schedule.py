"""sparsity_schedule — Zhu & Gupta's cubic gradual-pruning schedule. Taught in notebook 06; reference
``kdcore.prune.sparsity_schedule``.

Contract (docs/EXERCISES.md): ``s_final + (s_initial − s_final)·(1 − (step − t0)/(n·dt))³`` with ``step`` clamped to
``[t0, t0 + n·dt]``: ``n`` pruning events ``dt`` steps apart, starting at step ``t0``; ``t0 < 0``, ``n < 1`` or
``dt < 1`` raise ValueError.
"""
from __future__ import annotations

from kdcore.checking.cases import cases
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases: plain numbers
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, step: float, s_initial: float, s_final: float, t0: int, n: int, dt: int):
    return (step, s_initial, s_final, t0, n, dt), {}


CASES = cases(_build, [
    dict(step=0, s_initial=0.0, s_final=0.9, t0=0, n=10, dt=100, note="at t0: s_initial"),
    dict(step=100, s_initial=0.0, s_final=0.9, t0=0, n=10, dt=100, note="first event"),
    dict(step=500, s_initial=0.0, s_final=0.9, t0=0, n=10, dt=100, note="half-way"),
    dict(step=1000, s_initial=0.0, s_final=0.9, t0=0, n=10, dt=100, note="the end, t0 + n·dt"),
    dict(step=50, s_initial=0.1, s_final=0.9, t0=200, n=10, dt=100, note="before t0: clamped"),
    dict(step=5000, s_initial=0.1, s_final=0.9, t0=200, n=10, dt=100, note="after the end: clamped"),
    dict(step=150, s_initial=0.2, s_final=0.8, t0=100, n=5, dt=20),
    dict(step=3, s_initial=0.0, s_final=0.5, t0=0, n=8, dt=1),
    dict(step=250, s_initial=0.05, s_final=0.95, t0=0, n=10, dt=100, note="between two events"),
    dict(step=2, s_initial=0.0, s_final=0.6, t0=0, n=1, dt=5, note="a single event"),
    dict(step=0, s_initial=0.0, s_final=0.9, t0=-1, n=10, dt=100, raises=True),
    dict(step=0, s_initial=0.0, s_final=0.9, t0=0, n=0, dt=100, raises=True),
    dict(step=0, s_initial=0.0, s_final=0.9, t0=0, n=10, dt=0, raises=True),
], rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); the wrong variants below are one-line edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("min/max clamp")
def _honest(step, s_initial, s_final, t0, n, dt):
    if t0 < 0 or n < 1 or dt < 1:
        raise ValueError(f"need t0 >= 0, n >= 1 and dt >= 1, got t0={t0}, n={n}, dt={dt}")
    span = n * dt                                    # n pruning events, dt steps apart
    t = min(max(step, t0), t0 + span)                # clamp the step to [t0, t0 + n·dt]
    progress = (t - t0) / span
    return s_final + (s_initial - s_final) * (1 - progress) ** 3


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("exponent 2", hint="Zhu & Gupta's schedule is cubic: (1 − progress)**3, not **2"
      ).edit(_honest, "(1 - progress) ** 3", "(1 - progress) ** 2")

wrong("linear", hint="the schedule is cubic, (1 − progress)**3: it prunes fast early, slowly late"
      ).edit(_honest, "(1 - progress) ** 3", "(1 - progress)")

wrong("no clamping", hint="clamp step to [t0, t0 + n·dt]: before t0 the sparsity is s_initial, after the end s_final"
      ).edit(_honest, "t = min(max(step, t0), t0 + span)", "t = step")

wrong("clamped at the end only", hint="also clamp below: before t0 the sparsity stays s_initial"
      ).edit(_honest, "t = min(max(step, t0), t0 + span)", "t = min(step, t0 + span)")

wrong("dt ignored", hint="progress is (step − t0) / (n·dt): n events dt steps apart"
      ).edit(_honest, "span = n * dt", "span = n")

wrong("s_initial and s_final swapped", hint="s_t = s_final + (s_initial − s_final)·(1 − progress)³: it starts at "
                                            "s_initial and ends at s_final"
      ).edit(_honest, "s_final + (s_initial - s_final)", "s_initial + (s_final - s_initial)")

wrong("t0 ignored", hint="pruning starts at step t0: progress is (step − t0) / (n·dt)"
      ).edit(_honest, "    span = n * dt", "    t0 = 0\n    span = n * dt")

wrong("s_initial ignored", hint="the schedule starts from s_initial: s_final + (s_initial − s_final)·(1 − progress)³"
      ).edit(_honest, "s_final + (s_initial - s_final) * (1 - progress) ** 3", "s_final * (1 - (1 - progress) ** 3)")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("if/else branches")
def ok_branches(step, s_initial, s_final, t0, n, dt):
    if t0 < 0:
        raise ValueError(f"t0 must be >= 0, got {t0}")
    if n < 1 or dt < 1:
        raise ValueError(f"n and dt must be >= 1, got n={n}, dt={dt}")
    if step <= t0:
        return float(s_initial)
    if step >= t0 + n * dt:
        return float(s_final)
    return s_final + (s_initial - s_final) * (1 - (step - t0) / (n * dt)) ** 3
