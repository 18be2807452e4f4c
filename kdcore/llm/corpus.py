"""The LLM track's corpus: the docstrings of Python's own standard library, character level.

Why this text
    It ships with every Python installation (no download, no licence question for the repo: nothing is
    copied into it), it is real English prose mixed with code (``>>> f(x)``, argument lists, indentation),
    and it is large enough: on CPython 3.11 about 1.8 MB after cleaning. A model trained on it learns
    English words, Python identifiers and layout, so quantization or pruning damage shows up as a
    measurable loss increase, and a sample is readable enough to judge by eye.

Why characters, not a learned tokenizer
    A 96-symbol vocabulary (printable ASCII + newline) is fixed in advance: it does not depend on the
    Python version the corpus was read from, needs no tokenizer training or extra package, and keeps the
    embedding and output layers small (96 × d), so almost every parameter sits in the blocks' ``nn.Linear``
    layers, which is where GPTQ, AWQ, SmoothQuant and Wanda act. The price is longer sequences per word;
    at this scale that is the right trade. Losses are therefore **nats per character**.

Recipe (deterministic; :data:`CORPUS_RECIPE` names it, its hash keys the cache)
    1. every ``*.py`` file under the standard library folder (``sysconfig.get_paths()["stdlib"]``), sorted
       by relative path, skipping ``site-packages`` and test folders (``test``, ``tests``, ``idle_test``);
    2. ``ast.get_docstring(node, clean=True)`` of the module and of every class / function, in ``ast.walk``
       order; tabs expanded to 4 spaces;
    3. docstrings under 20 characters, docstrings with a character outside the vocabulary, and exact
       duplicates (first occurrence kept) are dropped;
    4. docstring ``i`` (0-based, in that order) goes to *validation* if ``i % 10 == 0``, to *calibration* if
       ``i % 20 == 5``, otherwise to *train*: three disjoint splits, 90 / 5 / 5 % of the docstrings;
    5. each split is the concatenation of its docstrings, each followed by a blank line (``"\\n\\n"``).

The text differs slightly between Python versions (the standard library changes);
:func:`load_corpus` records the version and a SHA-256 of the text, so a result can name its corpus.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from kdcore import _validate as v

__all__ = ["VOCAB", "CORPUS_RECIPE", "Corpus", "load_corpus", "build_corpus", "encode", "decode",
           "cache_dir", "random_windows", "fixed_windows"]

# Printable ASCII (space .. '~', 95 characters) and newline: id = position in this string.
VOCAB: str = "\n" + "".join(chr(c) for c in range(32, 127))
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}
_LOOKUP = torch.full((256,), -1, dtype=torch.long)   # byte value -> id (vectorised encode)
for _ch, _i in _INDEX.items():
    _LOOKUP[ord(_ch)] = _i

CORPUS_RECIPE: dict = {
    "name": "stdlib-docstrings",
    "version": 1,          # bump when the recipe below changes (the cache key changes with it)
    "min_chars": 20,
    "skip_dirs": ["site-packages", "test", "tests", "idle_test"],
    "val_every": 10,       # i % 10 == 0 -> validation
    "calib_every": 20, "calib_offset": 5,   # i % 20 == 5 -> calibration
    "separator": "\n\n",
}


def cache_dir() -> Path:
    """``$KDCORE_CACHE`` if set, else ``$XDG_CACHE_HOME/kdcore`` or ``~/.cache/kdcore`` (created)."""
    root = os.environ.get("KDCORE_CACHE")
    if root is None:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "kdcore")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def encode(text: str) -> torch.Tensor:
    """Characters → ids ``[len(text)]`` (int64); a character outside :data:`VOCAB` is an error."""
    if not text:
        return torch.zeros(0, dtype=torch.long)
    raw = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()  # [n] byte values
    ids = _LOOKUP[raw]                                                               # [n], -1 = not in VOCAB
    if len(raw) != len(text) or (ids < 0).any():
        bad = next(c for c in text if c not in _INDEX)
        raise ValueError(f"text has a character outside the vocabulary (printable ASCII + newline): {bad!r}")
    return ids


def decode(ids: torch.Tensor | list[int]) -> str:
    """Ids → characters (any shape flattened to one string)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.reshape(-1).tolist()
    return "".join(VOCAB[int(i)] for i in ids)


def _stdlib_files(stdlib: Path, skip: set[str]) -> list[Path]:
    files = []
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        if any(part in skip for part in rel.parts[:-1]):
            continue
        files.append(rel)
    return sorted(files, key=lambda p: p.as_posix())


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):   # a few files are deliberately invalid (lib2to3 fixtures, bad encodings)
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append(doc.expandtabs(4))
    return out


def build_corpus(stdlib: str | Path | None = None) -> tuple[dict[str, str], dict]:
    """Read the standard library and return ``({"train": ..., "val": ..., "calib": ...}, info)``.

    Slow (parses ~700 files, a few seconds): :func:`load_corpus` caches the result.
    """
    r = CORPUS_RECIPE
    root = Path(stdlib) if stdlib is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ValueError(f"stdlib must be a folder of Python sources, got {str(root)!r}")
    files = _stdlib_files(root, set(r["skip_dirs"]))
    seen: set[str] = set()
    docs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences etc. in old modules
        for rel in files:
            try:
                source = (root / rel).read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for doc in _docstrings(source):
                if len(doc) < r["min_chars"] or doc in seen or any(c not in _INDEX for c in doc):
                    continue
                seen.add(doc)
                docs.append(doc)
    splits: dict[str, list[str]] = {"train": [], "val": [], "calib": []}
    for i, doc in enumerate(docs):
        if i % r["val_every"] == 0:
            splits["val"].append(doc)
        elif i % r["calib_every"] == r["calib_offset"]:
            splits["calib"].append(doc)
        else:
            splits["train"].append(doc)
    text = {name: "".join(d + r["separator"] for d in parts) for name, parts in splits.items()}
    info = {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "files": len(files),
            "docstrings": len(docs), **{f"{k}_chars": len(t) for k, t in text.items()}}
    return text, info


@dataclass
class Corpus:
    """Encoded splits (``train``, ``val``, ``calib``: 1-D int64 ids) with their provenance.

    ``sha256`` hashes the three texts; ``info`` has the Python version, file / docstring / character counts.
    """

    train: torch.Tensor
    val: torch.Tensor
    calib: torch.Tensor
    sha256: str
    info: dict

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)

    def __repr__(self) -> str:
        return (f"Corpus(python {self.info['python']}, {self.info['docstrings']} docstrings, "
                f"train={len(self.train):,} val={len(self.val):,} calib={len(self.calib):,} chars, "
                f"vocab={len(VOCAB)}, sha256={self.sha256[:12]})")


def _recipe_key() -> str:
    blob = json.dumps(CORPUS_RECIPE, sort_keys=True) + f"|py{sys.version_info.major}.{sys.version_info.minor}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_corpus(cache: bool = True) -> Corpus:
    """The corpus of :data:`CORPUS_RECIPE`, from the cache folder if built before (keyed by the recipe and
    the Python minor version), else built (a few seconds) and cached as ``stdlib-docstrings-<key>.json``."""
    path = cache_dir() / f"stdlib-docstrings-{_recipe_key()}.json" if cache else None
    text = info = None
    if path is not None and path.is_file():
        try:
            blob = json.loads(path.read_text(encoding="utf-8"))
            text, info = blob["text"], blob["info"]
        except (ValueError, KeyError):
            text = None  # a damaged cache file is rebuilt, never trusted
    if text is None:
        text, info = build_corpus()
        if path is not None:
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"text": text, "info": info}), encoding="utf-8")
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    digest = hashlib.sha256("\x00".join(text[k] for k in ("train", "val", "calib")).encode()).hexdigest()
    return Corpus(encode(text["train"]), encode(text["val"]), encode(text["calib"]), digest, info)


def fixed_windows(ids: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """``n`` evenly spaced windows of ``length + 1`` ids ``[n, length + 1]`` (inputs ``[:, :-1]``, targets
    ``[:, 1:]``): the same windows on every call, used for validation and calibration."""
    v.tensor("ids", ids, ndim=1)
    v.integer("n", n, minimum=1)
    v.integer("length", length, minimum=1)
    span = len(ids) - (length + 1)
    if span < 0:
        raise ValueError(f"length + 1 = {length + 1} exceeds the {len(ids)} ids available")
    starts = torch.linspace(0, span, n).round().long()  # [n]
    return torch.stack([ids[s:s + length + 1] for s in starts.tolist()])


def random_windows(ids: torch.Tensor, batch_size: int, length: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A training batch: ``batch_size`` windows ``[batch_size, length + 1]`` at random offsets."""
    v.tensor("ids", ids, ndim=1)
    v.integer("batch_size", batch_size, minimum=1)
    v.integer("length", length, minimum=1)
    if len(ids) < length + 1:
        raise ValueError(f"length + 1 = {length + 1} exceeds the {len(ids)} ids available")
    starts = torch.randint(0, len(ids) - length, (batch_size,), generator=generator)  # [B]
    offsets = torch.arange(length + 1)  # [L+1]
    return ids[starts[:, None] + offsets[None, :]]  # [B, L+1]
