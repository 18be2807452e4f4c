"""``python -m kdcore.grade``: the batch grader's command (the pipeline is :mod:`kdcore.classroom`)."""
from __future__ import annotations

import sys

from .classroom.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
