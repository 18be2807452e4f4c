"""Progress bars only where someone watches, so that none is stored frozen in a notebook's outputs."""
from __future__ import annotations

import io
import sys

import pytest

from kdcore.train import progress_enabled


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("setting,session,tty,expected", [
    (None, False, False, False),   # nbclient / nbval / CI / output redirected: no bar
    (None, True, False, True),     # a notebook open in JupyterLab: tqdm.auto draws a widget
    (None, False, True, True),     # a terminal
    ("0", True, True, False), ("1", False, False, True), ("off", False, True, False),
])
def test_bars_follow_the_watcher(monkeypatch, setting, session, tty, expected):
    monkeypatch.delenv("KDCORE_PROGRESS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    if setting is not None:
        monkeypatch.setenv("KDCORE_PROGRESS", setting)
    if session:
        monkeypatch.setenv("JPY_SESSION_NAME", "/course/notebooks/03_training_a_student.ipynb")
    monkeypatch.setattr(sys, "stderr", _Tty() if tty else io.StringIO())
    assert progress_enabled(None) is expected
    assert progress_enabled(True) is True and progress_enabled(False) is False   # an explicit argument wins
