"""``python -m kdcore.doctor``: check that this machine can run the course, and say what to fix.

Prints one ``[OK]`` / ``[FAIL]`` line per check; exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
FIX = "run `make setup` (or `pip install -r requirements.txt -e .`) in the course folder"


def _pinned() -> dict[str, str]:
    """Package → pinned version from requirements.txt (empty when installed without the repo)."""
    pins: dict[str, str] = {}
    if REQUIREMENTS.exists():
        for line in REQUIREMENTS.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[name.strip().lower()] = version.strip()
    return pins


def check_python() -> str:
    if sys.version_info < (3, 11):
        raise RuntimeError(f"Python {sys.version.split()[0]} found; the course needs 3.11 or newer")
    return f"Python {sys.version.split()[0]}"


def check_torch() -> str:
    import torch

    want = _pinned().get("torch")
    have = torch.__version__.split("+")[0]
    if want and have != want:
        raise RuntimeError(f"torch {torch.__version__} found, the course pins {want}: {FIX}")
    x = torch.randn(4, 3)
    if not torch.allclose(torch.softmax(x, 1).sum(1), torch.ones(4)):
        raise RuntimeError("torch computes wrong results on this machine")
    return f"torch {torch.__version__} (threads: {torch.get_num_threads()})"


def check_package(name: str) -> Callable[[], str]:
    def run() -> str:
        module = importlib.import_module(name.replace("-", "_").replace("scikit_learn", "sklearn"))
        return f"{name} {getattr(module, '__version__', '')}".strip()
    run.__name__ = f"check_{name}"
    return run


def check_digits() -> str:
    from .data import load_digits

    split = load_digits()
    return f"digits: {len(split.x_train)} train / {len(split.x_test)} test (bundled with scikit-learn)"


def check_mnist1d() -> str:
    from .data import cache_dir, load_mnist1d

    split = load_mnist1d()
    return f"MNIST-1D: {len(split.x_train)} train / {len(split.x_test)} test (generated, cache {cache_dir()})"


def check_kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if "python3" not in specs:
        raise RuntimeError(f"no 'python3' Jupyter kernel found: {FIX}")
    return f"Jupyter kernels: {', '.join(sorted(specs))}"


def check_lab() -> str:
    import jupyterlab

    from .lab import HOME_PAGE, course_root

    home = course_root() / HOME_PAGE
    if not home.exists():
        raise RuntimeError(f"the course home {home} is missing: run `make notebooks` (python -m kdcore.assign)")
    return f"JupyterLab {jupyterlab.__version__}; course home {HOME_PAGE}"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("python", check_python),
    ("torch", check_torch),
    *[(name, check_package(name)) for name in ("numpy", "scikit-learn", "matplotlib", "tqdm", "mnist1d")],
    ("digits", check_digits),
    ("mnist1d data", check_mnist1d),
    ("jupyter", check_kernel),
    ("jupyterlab", check_lab),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only failures")
    args = parser.parse_args(argv)
    failed = 0
    for name, fn in CHECKS:
        try:
            detail = fn()
        except Exception as exc:  # every failure is reported, none stops the others
            failed += 1
            print(f"[FAIL] {name}: {type(exc).__name__}: {exc}")
        else:
            if not args.quiet:
                print(f"[OK]   {detail}")
    if failed:
        print(f"\n{failed} check(s) failed. Fix: {FIX}.")
    elif not args.quiet:
        print("\nAll checks passed: `make lab` opens the course (as root too; it prints the URL to open).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
