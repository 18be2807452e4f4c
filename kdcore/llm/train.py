"""Training the course's GPTs, saving / loading them as ``safetensors``, and the shipped teacher.

The teacher is trained once (``python -m kdcore.llm.train``, about 10–20 min on 2 cores) and shipped as
``kdcore/llm/checkpoints/teacher.safetensors`` (fp32, ~5 MB). Its metadata holds the recipe
(:data:`TEACHER_RECIPE`), the recipe's SHA-256 (a test checks the shipped file was made by the recipe in
this file), the corpus hash and Python version it was trained on, its validation loss and training time.
Notebooks call :func:`load_teacher` and never train it.

Optimiser: AdamW (β = 0.9, 0.95; weight decay 0.1 on matrices only), linear warm-up then cosine decay to
``min_lr``, gradient norm clipped to 1, batches of random windows of the training split. Schedules are
step-based (a run's length does not depend on the machine's speed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdcore import _validate as v

from .corpus import CORPUS_RECIPE, Corpus, load_corpus, random_windows
from .eval import mean_nats, val_windows
from .gpt import GPT, TEACHER_CONFIG, GPTConfig

__all__ = ["TEACHER_RECIPE", "TEACHER_PATH", "recipe_hash", "train_gpt", "save_checkpoint",
           "load_checkpoint", "load_teacher", "lr_at"]

TEACHER_PATH = Path(__file__).with_name("checkpoints") / "teacher.safetensors"

TEACHER_RECIPE: dict = {
    "config": TEACHER_CONFIG.to_dict(),
    "corpus": {"name": CORPUS_RECIPE["name"], "version": CORPUS_RECIPE["version"]},
    "steps": 2500, "batch_size": 16, "context": 128,
    "lr": 3e-3, "min_lr": 3e-4, "warmup": 200, "weight_decay": 0.1, "betas": [0.9, 0.95],
    "grad_clip": 1.0, "seed": 0,
}


def recipe_hash(recipe: dict) -> str:
    """SHA-256 of the recipe's canonical JSON (sorted keys): what the shipped checkpoint is keyed by."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def lr_at(step: int, *, steps: int, lr: float, min_lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``min_lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def train_gpt(config: GPTConfig, corpus: Corpus, *, steps: int, batch_size: int = 16, context: int = 128,
              lr: float = 3e-3, min_lr: float = 3e-4, warmup: int = 200, weight_decay: float = 0.1,
              betas: tuple[float, float] | list[float] = (0.9, 0.95), grad_clip: float = 1.0, seed: int = 0,
              eval_every: int = 0, progress: bool | None = None, desc: str = "train_gpt") -> tuple[GPT, list]:
    """Train a fresh :class:`GPT` on ``corpus.train``; returns ``(model, log)`` with ``log`` a list of
    ``(step, train_loss, val_nats or None)``. ``eval_every > 0`` scores the validation windows that often."""
    from tqdm.auto import tqdm

    from kdcore.train import progress_enabled

    v.integer("steps", steps, minimum=1)
    v.integer("batch_size", batch_size, minimum=1)
    v.integer("context", context, minimum=1, maximum=config.block_size)
    v.integer("warmup", warmup, minimum=0)
    v.integer("eval_every", eval_every, minimum=0)
    v.positive("lr", lr)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GPT(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=tuple(betas))
    windows = val_windows(corpus) if eval_every else None
    log: list = []
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress_enabled(progress), leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps=steps, lr=lr, min_lr=min_lr, warmup=warmup)
        batch = random_windows(corpus.train, batch_size, context, gen)   # [B, context + 1]
        logits = model(batch[:, :-1])                                     # [B, context, V]
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        val = None
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            val = mean_nats(model, windows)
            model.train()
            bar.set_postfix(val=f"{val:.3f}")
        log.append((step, loss.item(), val))
    model.eval()
    return model, log


def save_checkpoint(model: GPT, path: str | Path, metadata: dict | None = None) -> None:
    """Write ``model`` to ``path`` (safetensors; a tied head is stored once). ``metadata`` values are stored
    as JSON strings, with the model's config under ``"config"``."""
    from safetensors.torch import save_model

    meta = {"config": json.dumps(model.config.to_dict(), sort_keys=True)}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path), metadata=meta)


def load_checkpoint(path: str | Path) -> tuple[GPT, dict]:
    """``(model in eval mode, metadata)`` from a file written by :func:`save_checkpoint`; JSON metadata
    values are decoded."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {str(path)!r}")
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if "config" not in raw:
        raise ValueError(f"path: {str(path)!r} has no 'config' metadata; not a kdcore GPT checkpoint")
    meta = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    model = GPT(GPTConfig(**meta["config"]))
    load_model(model, str(path))
    model.eval()
    return model, meta


def load_teacher() -> GPT:
    """The shipped teacher (eval mode), checked against :data:`TEACHER_RECIPE`'s hash."""
    model, meta = load_checkpoint(TEACHER_PATH)
    if meta.get("recipe_hash") != recipe_hash(TEACHER_RECIPE):
        raise RuntimeError(f"{TEACHER_PATH} was trained with another recipe than TEACHER_RECIPE; rebuild it "
                           "with `python -m kdcore.llm.train`")
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's GPT teacher and write its checkpoint.")
    parser.add_argument("--out", default=str(TEACHER_PATH), help="checkpoint path (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps (for a trial; "
                        "the file then records a different recipe hash)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = dict(TEACHER_RECIPE)
    if args.steps is not None:
        recipe["steps"] = args.steps
    corpus = load_corpus()
    train_args = {k: recipe[k] for k in ("steps", "batch_size", "context", "lr", "min_lr", "warmup",
                                         "weight_decay", "betas", "grad_clip", "seed")}
    start = time.perf_counter()
    model, log = train_gpt(GPTConfig(**recipe["config"]), corpus, eval_every=500, desc="teacher", **train_args)
    seconds = time.perf_counter() - start
    val = mean_nats(model, val_windows(corpus))
    curve = [(s, round(val_, 4)) for s, _, val_ in log if val_ is not None]
    save_checkpoint(model, args.out, {
        "recipe": recipe, "recipe_hash": recipe_hash(recipe), "val_nats": round(val, 4),
        "corpus_sha256": corpus.sha256, "corpus_info": corpus.info, "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "val_curve": curve,
    })
    print(f"{model.num_parameters():,} parameters, {seconds:.0f} s, validation {val:.4f} nats "
          f"(perplexity {math.exp(val):.3f}) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
