"""csr_bytes — what a sparse weight costs in CSR format. Taught in notebook 07; reference
``kdcore.measure.csr_bytes``.

Contract (docs/EXERCISES.md): ``nnz·(value_bytes + index_bytes) + (rows + 1)·index_bytes`` for a 2-D weight;
byte sizes below 1 raise ValueError.
"""
from __future__ import annotations

import torch

from kdcore.checking.cases import cases, gen, randn
from kdcore.checking.catalogue import correct, wrong


def _build(seed: int, *, shape: tuple[int, int], density: float, sign: str = "any", offset: float = 0.0,
           value_bytes: int | None = None, index_bytes: int | None = None):
    """A ``shape`` weight with about ``density`` non-zeros (Gaussian; ``sign="negative"``: all ≤ 0)."""
    w = randn(*shape, seed=seed) + offset
    w = w * (torch.rand(*shape, generator=gen(seed + 1)) < density)
    if sign == "negative":
        w = -w.abs()
    kwargs = {k: v for k, v in {"value_bytes": value_bytes, "index_bytes": index_bytes}.items() if v is not None}
    return (w,), kwargs


CASES = cases(_build, [
    dict(shape=(8, 10), density=0.5),
    dict(shape=(4, 5), density=0.0, note="all zeros: only the row pointers"),
    dict(shape=(3, 3), density=1.0, offset=5.0, note="dense"),
    dict(shape=(6, 6), density=0.7, sign="negative", note="negative values are non-zeros too"),
    dict(shape=(5, 7), density=0.3, value_bytes=2, index_bytes=2, note="fp16 values, 2-byte indices"),
    dict(shape=(6, 4), density=0.5, value_bytes=1, index_bytes=4),
    dict(shape=(6, 4), density=0.5, value_bytes=4, index_bytes=1),
    dict(shape=(1, 12), density=0.4, note="single row"),
    dict(shape=(20, 2), density=0.5, note="tall"),
    dict(shape=(3, 3), density=0.5, value_bytes=0, raises=True),
    dict(shape=(3, 3), density=0.5, index_bytes=0, raises=True),
], rtol=0.0, atol=0.0)

EQUIVALENT_MUTANTS = {
    "line +10, col 10: `int(torch.count_nonzero(weight))` → `torch.count_nonzero(weight)`":
        "the result is then a 0-dim integer tensor of the same value; the grader compares values, and a 0-dim "
        "tensor and a number are interchangeable in the contract",
}


def _honest(weight, value_bytes=4, index_bytes=4):
    if value_bytes < 1 or index_bytes < 1:
        raise ValueError("value_bytes and index_bytes must be >= 1")
    nnz = int(torch.count_nonzero(weight))
    return nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("rows instead of rows + 1", hint="the row-pointer array has rows + 1 entries (the last marks the end of "
                                       "the last row)"
      ).edit(_honest, "(weight.shape[0] + 1)", "weight.shape[0]")

wrong("column pointers (CSC)", hint="CSR stores row pointers: (rows + 1) of them, not cols + 1"
      ).edit(_honest, "weight.shape[0] + 1", "weight.shape[1] + 1")

wrong("all entries stored", hint="CSR stores only the non-zeros: nnz = torch.count_nonzero(weight)"
      ).edit(_honest, "int(torch.count_nonzero(weight))", "weight.numel()")

wrong("row pointers forgotten", hint="add the (rows + 1) row pointers of index_bytes each"
      ).edit(_honest, " + (weight.shape[0] + 1) * index_bytes", "")

wrong("column indices forgotten", hint="every non-zero also stores its column index: nnz·(value_bytes + "
                                       "index_bytes)"
      ).edit(_honest, "nnz * (value_bytes + index_bytes)", "nnz * value_bytes")

wrong("row pointers sized as values", hint="row pointers are indices: index_bytes each"
      ).edit(_honest, "(weight.shape[0] + 1) * index_bytes", "(weight.shape[0] + 1) * value_bytes")

wrong("byte sizes hard-coded", hint="use the value_bytes and index_bytes arguments"
      ).edit(_honest, "nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes",
             "nnz * 8 + (weight.shape[0] + 1) * 4")

wrong("positive entries only", hint="count every non-zero entry, negative ones included (weight != 0, not "
                                    "weight > 0)"
      ).edit(_honest, "int(torch.count_nonzero(weight))", "int((weight > 0).sum())")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently
# ----------------------------------------------------------------------------------------------------------
@correct("torch CSR tensor")
def ok_torch_csr(weight, value_bytes=4, index_bytes=4):
    if value_bytes <= 0 or index_bytes <= 0:
        raise ValueError(f"byte sizes must be positive, got {value_bytes}, {index_bytes}")
    csr = weight.to_sparse_csr()
    return (csr.values().numel() * value_bytes + csr.col_indices().numel() * index_bytes
            + csr.crow_indices().numel() * index_bytes)


@correct("count != 0")
def ok_count(weight, value_bytes=4, index_bytes=4):
    if min(value_bytes, index_bytes) < 1:
        raise ValueError("value_bytes and index_bytes must be at least 1")
    rows = weight.size(0)
    nnz = (weight != 0).sum().item()
    return nnz * value_bytes + nnz * index_bytes + (rows + 1) * index_bytes
