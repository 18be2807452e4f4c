"""Stage 1, discover: which notebooks are submissions, and whose.

PATH is a notebook or a folder searched recursively for ``*.ipynb`` (``.ipynb_checkpoints`` ignored). The
student is the file stem for a notebook directly inside PATH (``submissions/alice.ipynb`` -> ``alice``) and
the first sub-folder name otherwise (``submissions/alice/02_kd.ipynb`` -> ``alice``, nbgrader's layout); a
notebook given directly on the command line is named by its stem.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Submission", "UsageError", "discover", "sha256_file"]


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    label: str  # the path as shown in reports


def _notebooks_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb")
                  if p.is_file() and not p.is_symlink()
                  and ".ipynb_checkpoints" not in p.relative_to(folder).parts)


def discover(paths: list[Path]) -> list[Submission]:
    """Submissions named by student, sorted by (student, path); raises ``UsageError`` for bad paths."""
    found: list[Submission] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            if path.suffix != ".ipynb":
                raise UsageError(f"PATH {path} is not a notebook (*.ipynb) or a folder")
            found.append(Submission(path.stem, path, str(path)))
        elif path.is_dir():
            notebooks = _notebooks_under(path)
            if not notebooks:
                raise UsageError(f"PATH {path} contains no *.ipynb submissions")
            for notebook in notebooks:
                relative = notebook.relative_to(path)
                student = relative.parts[0] if len(relative.parts) > 1 else notebook.stem
                found.append(Submission(student, notebook, str(notebook)))
        else:
            raise UsageError(f"PATH {path} does not exist")
    unique = {s.path.resolve(): s for s in found}
    return sorted(unique.values(), key=lambda s: (s.student, s.label))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()
