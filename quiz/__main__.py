"""``python -m quiz``: see quiz/cli.py."""
from .cli import main

raise SystemExit(main())
