"""Tests for kdcore.llm.corpus: the standard library's docstrings, character level, three disjoint splits."""
from __future__ import annotations

import torch

from kdcore.llm import corpus as C


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_vocab_is_printable_ascii_and_newline_and_encoding_round_trips():
    assert len(C.VOCAB) == 96 and C.VOCAB[0] == "\n" and C.VOCAB[1] == " " and C.VOCAB[-1] == "~"
    text = "def f(x):\n    return {'a': 1}  # ~"
    ids = C.encode(text)
    assert ids.dtype == torch.long and ids.shape == (len(text),)
    assert C.decode(ids) == text
    assert C.encode("").shape == (0,)


def test_encode_names_the_unknown_character():
    for bad in ("caf\u00e9", "a\tb"):
        try:
            C.encode(bad)
        except ValueError as err:
            assert "outside the vocabulary" in str(err)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_build_corpus_recipe_on_a_small_fake_stdlib(tmp_path):
    docs = [f'"""Docstring number {i:02d}, long enough to keep."""' for i in range(40)]
    _write(tmp_path, "a.py", docs[0] + "\ndef f():\n    " + docs[1] + "\n    pass\nclass K:\n    " + docs[2] + "\n")
    _write(tmp_path, "b.py", "\n".join(f"def g{i}():\n    {d}\n" for i, d in enumerate(docs[3:30], 3)))
    _write(tmp_path, "c.py", '"""short"""\ndef h():\n    """Docstring number 05, long enough to keep."""\n'
                             'def u():\n    """Caf\u00e9 is not ASCII, so this docstring is dropped."""\n')
    _write(tmp_path, "test/t.py", docs[30])          # a test folder: skipped
    _write(tmp_path, "site-packages/p.py", docs[31])  # installed packages: skipped
    _write(tmp_path, "bad.py", "def (:\n")             # unparsable: skipped
    text, info = C.build_corpus(tmp_path)
    assert info["docstrings"] == 30                    # 0..29; duplicate 05, short and non-ASCII ones dropped
    split = {name: [d for d in t.split("\n\n") if d] for name, t in text.items()}
    kept = [d.strip('"') for d in docs[:30]]
    assert split["val"] == kept[0::10]
    assert split["calib"] == kept[5::20]
    assert split["train"] == [d for i, d in enumerate(kept) if i % 10 and i % 20 != 5]
    assert all(t.endswith("\n\n") for t in text.values())


def test_load_corpus_matches_a_fresh_build_and_is_large_enough():
    cached = C.load_corpus()                # from the user cache folder when built before
    text, info = C.build_corpus()           # from the sources, now
    for split in ("train", "val", "calib"):
        assert torch.equal(getattr(cached, split), C.encode(text[split])), split
    assert cached.info == info
    total = len(cached.train) + len(cached.val) + len(cached.calib)
    assert total >= 1_000_000 and info["docstrings"] > 5000
    assert 0.07 < len(cached.val) / total < 0.14 and 0.02 < len(cached.calib) / total < 0.08
    assert C.load_corpus().sha256 == cached.sha256


def test_cache_is_written_read_and_a_damaged_file_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCORE_CACHE", str(tmp_path))
    builds = []

    def fake_build():
        builds.append(1)
        return {"train": "train text\n\n", "val": "val text\n\n", "calib": "calib\n\n"}, {"python": "x"}

    monkeypatch.setattr(C, "build_corpus", fake_build)
    first = C.load_corpus()
    (path,) = tmp_path.glob("stdlib-docstrings-*.json")
    assert C.decode(first.val) == "val text\n\n" and len(builds) == 1
    assert C.load_corpus().sha256 == first.sha256 and len(builds) == 1      # read back, not rebuilt
    path.write_text("{not json", encoding="utf-8")
    assert C.load_corpus().sha256 == first.sha256 and len(builds) == 2      # damaged: rebuilt
    assert C.load_corpus(cache=False).sha256 == first.sha256 and len(builds) == 3


def test_windows_fixed_and_random():
    ids = torch.arange(1000)
    w = C.fixed_windows(ids, 5, 10)
    assert w.shape == (5, 11) and w[0, 0] == 0 and w[-1, -1] == 999
    assert torch.equal(w, C.fixed_windows(ids, 5, 10))
    assert torch.equal(w[:, 1:] - w[:, :-1], torch.ones(5, 10, dtype=torch.long))   # contiguous
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    r = C.random_windows(ids, 8, 16, g1)
    assert r.shape == (8, 17) and torch.equal(r, C.random_windows(ids, 8, 16, g2))
    assert torch.equal(r[:, 1:] - r[:, :-1], torch.ones(8, 16, dtype=torch.long))
    for call in (lambda: C.fixed_windows(ids, 2, 1000), lambda: C.random_windows(ids, 0, 4)):
        try:
            call()
        except ValueError as err:
            assert "length" in str(err) or "batch_size" in str(err)
        else:
            raise AssertionError("accepted")
