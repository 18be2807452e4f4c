"""Root conftest: applies to the tests and to the notebooks nbval runs (kernels inherit the environment)."""
import os

import pytest

# Silence progress bars and use a non-interactive plotting backend in every test and notebook run.
os.environ.setdefault("KDCORE_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
# A failed kd.check raises in every test and every notebook nbval runs (graders count it as failed), even when
# pytest itself is started from a notebook kernel whose environment says "interactive" (kdcore.checking.core).
os.environ["KDCORE_CHECK"] = "raise"

# Under pytest-xdist (`make test` runs 2 workers on 2 cores) one thread per worker avoids oversubscription;
# notebook kernels inherit it. Latency measurements fix their own thread count.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# nbval makes every notebook cell a test. Report the cells that are not check cells (setup, definitions,
# experiments) as "cells run" rather than "passed", so that the summary of `pytest --nbval-lax NOTEBOOK` counts
# exercises: "2 passed, 1 failed, 9 cells run". A cell that raises still fails.
def _not_a_check_cell(item) -> bool:
    cell = getattr(item, "cell", None)
    if cell is None or not type(item).__module__.startswith("nbval"):
        return False
    from kdcore._notebook import parse_check_cell

    return parse_check_cell(cell.get("source", "")) is None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call" and _not_a_check_cell(item):
        outcome.get_result().user_properties.append(("kdcore_cell", "not a check"))


def pytest_report_teststatus(report, config):
    marked = any(tuple(prop) == ("kdcore_cell", "not a check") for prop in report.user_properties)  # xdist: lists
    if report.when == "call" and report.passed and marked:
        return "cells run", ".", "RAN"
    return None
