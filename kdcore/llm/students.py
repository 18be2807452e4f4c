"""The distilled students of notebook 14: one recipe, trained once, shipped as small safetensors files.

Every student is the ``tiny`` configuration of :data:`kdcore.llm.gpt.STUDENT_CONFIGS` (about 8× fewer
parameters than the teacher). Per seed:

1. **base**: cross-entropy on the training text (:func:`kdcore.llm.train.train_gpt`, ``base`` steps): a
   student that has learned some English and Python, the way LLM distillation starts from a pre-trained or
   instruction-tuned student (GKD, MiniLLM);
2. from that base, one continuation per **variant** for ``distill.steps`` steps. Every batch is 16
   sequences of a 32-token prompt (training text) and a 48-token continuation; the loss covers the 48
   continuation positions only (``mask``). Variants differ in the loss and in where the continuation comes
   from: the training text (off-policy, "dataset"), the teacher's samples (off-policy, "teacher"), or the
   student's own samples at the time of the step (on-policy, "student"). All dataset variants see the same
   batches (paired comparisons); a step's teacher logits are computed once and shared.

The notebook loads the result with :func:`load_students`; it never trains. ``python -m kdcore.llm.students``
rebuilds the files (about an hour on one thread); each file records the recipe and its SHA-256, checked at
load time and by a test, so a shipped file always matches the recipe in this module. Weights are stored as
float16 (half the bytes; the rounding changes validation loss by less than 1e-3 nats) and loaded as float32.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdcore.distill import sequence_kd_loss

from .distill import generalized_jsd_loss, reverse_kl_loss, topk_kd_loss
from .gpt import GPT, STUDENT_CONFIGS, GPTConfig, KVCache
from .train import TEACHER_RECIPE, lr_at, recipe_hash

__all__ = ["DISTILL_RECIPE", "VARIANTS", "STUDENTS_DIR", "student_path", "load_students", "save_students",
           "train_students", "continuation_batch", "continuation_mask", "variant_loss", "sample_continuations",
           "distinct_ngrams", "continuation_nats", "mean_entropy"]

STUDENTS_DIR = Path(__file__).with_name("checkpoints")

# name -> (loss, data source, extra arguments).  "fkl" is token-level KD (notebook 11's sequence_kd_loss).
VARIANTS: dict[str, dict] = {
    "ce": {"loss": "ce", "data": "dataset"},              # control: more cross-entropy, no teacher
    "fkl": {"loss": "fkl", "data": "dataset"},            # forward KL(teacher ‖ student)
    "rkl": {"loss": "rkl", "data": "dataset"},            # reverse KL(student ‖ teacher)
    "jsd": {"loss": "jsd", "data": "dataset"},            # generalized JSD, beta = DISTILL_RECIPE beta
    "top1": {"loss": "topk", "k": 1, "data": "dataset"},  # teacher's top-k logits only, renormalised
    "top5": {"loss": "topk", "k": 5, "data": "dataset"},
    "top20": {"loss": "topk", "k": 20, "data": "dataset"},
    "fkl_teacher": {"loss": "fkl", "data": "teacher"},    # continuations sampled from the teacher
    "fkl_student": {"loss": "fkl", "data": "student"},    # continuations sampled from the student (on-policy)
    "rkl_student": {"loss": "rkl", "data": "student"},    # on-policy reverse KL (MiniLLM's / GKD's setting)
}

DISTILL_RECIPE: dict = {
    "student": "tiny",
    "config": STUDENT_CONFIGS["tiny"].to_dict(),
    "teacher_recipe_hash": recipe_hash(TEACHER_RECIPE),
    "seeds": [0, 1, 2],
    "base": {"steps": 800, "batch_size": 16, "context": 128, "lr": 3e-3, "min_lr": 3e-4, "warmup": 100,
             "weight_decay": 0.1, "betas": [0.9, 0.95], "grad_clip": 1.0},
    "distill": {"steps": 300, "batch_size": 16, "prompt": 32, "continuation": 48, "lr": 1e-3,
                "min_lr": 1e-4, "warmup": 20, "weight_decay": 0.1, "betas": [0.9, 0.95], "grad_clip": 1.0,
                "T": 1.0, "beta": 0.5, "sample_temperature": 1.0},
    "variants": VARIANTS,
    "dtype": "float16",
}


def student_path(seed: int) -> Path:
    return STUDENTS_DIR / f"students_seed{seed}.safetensors"


# ---------------------------------------------------------------------------------------------------
# one distillation step's pieces
# ---------------------------------------------------------------------------------------------------
def continuation_batch(text: torch.Tensor, batch_size: int, prompt: int, continuation: int,
                       generator: torch.Generator) -> torch.Tensor:
    """``[batch_size, prompt + continuation]`` windows of the training text at random offsets."""
    length = prompt + continuation
    starts = torch.randint(0, len(text) - length, (batch_size,), generator=generator)
    return text[starts[:, None] + torch.arange(length)[None, :]]


def continuation_mask(batch_size: int, prompt: int, continuation: int) -> torch.Tensor:
    """``[B, prompt + continuation − 1]`` bool: True at the positions whose *next* token is a continuation
    token (positions prompt − 1 .. end), i.e. the positions the loss covers."""
    mask = torch.zeros(batch_size, prompt + continuation - 1, dtype=torch.bool)
    mask[:, prompt - 1:] = True
    return mask


@torch.no_grad()
def sample_continuations(model: GPT, prompts: torch.Tensor, n_new: int, temperature: float,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n_new`` tokens after each prompt ``[B, P]`` with a KV cache; returns
    ``(sequences [B, P + n_new], logits [B, n_new, V])``, the logits being the model's next-token logits at
    the positions that produced the samples (so a teacher's samples come with the teacher's logits for free)."""
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(model.config.n_layer)
        logits = model(prompts, cache=cache)[:, -1]                        # [B, V]
        seq, all_logits = prompts, []
        for i in range(n_new):
            all_logits.append(logits)
            nxt = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=generator)  # [B, 1]
            seq = torch.cat([seq, nxt], dim=1)
            if i + 1 < n_new:
                logits = model(nxt, cache=cache)[:, -1]
        return seq, torch.stack(all_logits, dim=1)
    finally:
        model.train(was_training)


def variant_loss(spec: dict, student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor,
                 mask: torch.Tensor, *, T: float, beta: float) -> torch.Tensor:
    """The loss of one variant on positions ``mask`` (``[B, L]``), logits ``[B, L, V]``, targets ``[B, L]``."""
    loss = spec["loss"]
    if loss == "ce":
        return F.cross_entropy(student_logits[mask], targets[mask])
    if loss == "fkl":
        return sequence_kd_loss(student_logits, teacher_logits, mask, T)
    if loss == "rkl":
        return reverse_kl_loss(student_logits, teacher_logits, mask, T)
    if loss == "jsd":
        return generalized_jsd_loss(student_logits, teacher_logits, mask, beta, T)
    if loss == "topk":
        values, indices = teacher_logits.topk(spec["k"], dim=-1)             # what would be stored offline
        return topk_kd_loss(student_logits, values, indices, mask, T)
    raise ValueError(f"spec['loss'] must be one of ce, fkl, rkl, jsd, topk, got {loss!r}")


# ---------------------------------------------------------------------------------------------------
# judging a student's samples: diversity and a quality proxy under the teacher
# ---------------------------------------------------------------------------------------------------
def distinct_ngrams(seqs: torch.Tensor, n: int) -> float:
    """Distinct-n (Li et al., 2016, NAACL): the number of different n-grams over all sequences ``[N, L]``
    divided by the number of n-grams; 1 = nothing repeats, near 0 = the same few n-grams over and over."""
    from kdcore import _validate as v
    seqs = v.tensor("seqs", seqs, ndim=2)
    n = v.integer("n", n, minimum=1, maximum=seqs.shape[1])
    grams = seqs.unfold(1, n, 1).reshape(-1, n)                          # [N·(L − n + 1), n]
    return len(set(map(tuple, grams.tolist()))) / grams.shape[0]


@torch.no_grad()
def continuation_nats(model: GPT, seqs: torch.Tensor, prompt: int) -> float:
    """Mean nats per token that ``model`` assigns to ``seqs[:, prompt:]`` given what precedes them: with the
    teacher as ``model`` and a student's samples as ``seqs``, a proxy of their quality (text the teacher finds
    likely); lower is better, but a degenerate loop also scores low, so read it with :func:`distinct_ngrams`."""
    was_training = model.training
    model.eval()
    try:
        logits = model(seqs[:, :-1])                                     # [N, L − 1, V]
        nats = F.cross_entropy(logits[:, prompt - 1:].flatten(0, 1), seqs[:, prompt:].flatten())
        return nats.item()
    finally:
        model.train(was_training)


@torch.no_grad()
def mean_entropy(model: GPT, windows: torch.Tensor) -> float:
    """Mean entropy (nats) of the model's next-token distribution over every position of ``windows [N, L + 1]``
    (inputs ``[:, :-1]``): how spread out its predictions are."""
    was_training = model.training
    model.eval()
    try:
        log_p = F.log_softmax(model(windows[:, :-1]), dim=-1)
        return -(log_p.exp() * log_p).sum(-1).mean().item()
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------------
# training all variants of one seed
# ---------------------------------------------------------------------------------------------------
def _optimizer(model: GPT, lr: float, weight_decay: float, betas) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=tuple(betas))


def train_students(teacher: GPT, corpus, seed: int, recipe: dict = DISTILL_RECIPE,
                   variants: list[str] | None = None, progress: bool | None = None) -> tuple[dict[str, GPT], dict]:
    """Train the base student and every variant for one ``seed``; returns ``({name: model}, info)`` with
    ``info[name]`` the seconds each took (generation included) and the base's seconds."""
    from tqdm.auto import tqdm

    from kdcore.train import progress_enabled

    from .train import train_gpt

    config = GPTConfig(**recipe["config"])
    b, d = recipe["base"], recipe["distill"]
    names = list(recipe["variants"]) if variants is None else variants
    start = time.perf_counter()
    base, _ = train_gpt(config, corpus, steps=b["steps"], batch_size=b["batch_size"], context=b["context"],
                        lr=b["lr"], min_lr=b["min_lr"], warmup=b["warmup"], weight_decay=b["weight_decay"],
                        betas=b["betas"], grad_clip=b["grad_clip"], seed=seed, progress=progress,
                        desc=f"base seed {seed}")
    info: dict = {"base": time.perf_counter() - start}
    students = {name: copy.deepcopy(base) for name in names}
    optimizers = {name: _optimizer(students[name], d["lr"], d["weight_decay"], d["betas"]) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    gen_data = torch.Generator().manual_seed(1000 + seed)                  # the batches: shared by all
    gen_sample = {name: torch.Generator().manual_seed(2000 + 10 * seed + i) for i, name in enumerate(names)}
    P, C, B = d["prompt"], d["continuation"], d["batch_size"]
    mask = continuation_mask(B, P, C)                                       # [B, P + C − 1]
    teacher.eval()
    for model in students.values():
        model.train()
    bar = tqdm(range(d["steps"]), desc=f"distill seed {seed}", disable=not progress_enabled(progress),
               leave=False)
    for step in bar:
        lr = lr_at(step, steps=d["steps"], lr=d["lr"], min_lr=d["min_lr"], warmup=d["warmup"])
        batch = continuation_batch(corpus.train, B, P, C, gen_data)        # [B, P + C]
        t0 = time.perf_counter()
        with torch.no_grad():
            dataset_teacher = teacher(batch[:, :-1])                         # [B, P + C − 1, V], shared
        shared_seconds = time.perf_counter() - t0
        for name in names:
            spec, model = recipe["variants"][name], students[name]
            t0 = time.perf_counter()
            if spec["data"] == "dataset":
                seq, t_logits = batch, dataset_teacher
            elif spec["data"] == "teacher":                                   # teacher samples + its logits
                seq, gen_logits = sample_continuations(teacher, batch[:, :P], C, d["sample_temperature"],
                                                       gen_sample[name])
                t_logits = torch.cat([torch.zeros(B, P - 1, gen_logits.shape[-1]), gen_logits], dim=1)
            elif spec["data"] == "student":                                   # on-policy: the student's samples
                seq, _ = sample_continuations(model, batch[:, :P], C, d["sample_temperature"], gen_sample[name])
                with torch.no_grad():
                    t_logits = teacher(seq[:, :-1])
            else:
                raise ValueError(f"unknown data source {spec['data']!r} in variant {name!r}")
            for group in optimizers[name].param_groups:
                group["lr"] = lr
            logits = model(seq[:, :-1])                                       # [B, P + C − 1, V]
            loss = variant_loss(spec, logits, seq[:, 1:], t_logits, mask, T=d["T"], beta=d["beta"])
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), d["grad_clip"])
            optimizers[name].step()
            seconds[name] += time.perf_counter() - t0
            if spec["data"] == "dataset":
                seconds[name] += shared_seconds                                # each pays the teacher's pass
    for model in students.values():
        model.eval()
    base.eval()
    info.update(seconds)
    return {"base": base, **students}, info


# ---------------------------------------------------------------------------------------------------
# files: one per seed, every variant inside, float16
# ---------------------------------------------------------------------------------------------------
def _state(model: GPT) -> dict[str, torch.Tensor]:
    state = {k: t for k, t in model.state_dict().items() if k != "lm_head.weight" or not model.config.tie_weights}
    return {k: t.detach().to(torch.float16).contiguous() for k, t in state.items()}


def save_students(models: dict[str, GPT], path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"{name}/{key}": t for name, model in models.items() for key, t in _state(model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={k: json.dumps(v, sort_keys=True) for k, v in metadata.items()})
    path.chmod(0o644)          # safetensors writes 0600; a grader's sandbox user must be able to read a shipped file


def load_students(seed: int, names: list[str] | None = None, path: Path | None = None) -> tuple[dict[str, GPT], dict]:
    """``({name: GPT in eval mode, float32}, metadata)`` for one seed of the shipped students; raises if the
    file was made by a different recipe than :data:`DISTILL_RECIPE`."""
    from safetensors import safe_open

    path = Path(path) if path is not None else student_path(seed)
    if not path.is_file():
        raise FileNotFoundError(f"seed: no students file at {str(path)!r}; build it with "
                                f"`python -m kdcore.llm.students --seeds {seed}`")
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        if meta.get("recipe_hash") != recipe_hash(DISTILL_RECIPE):
            raise RuntimeError(f"{path} was trained with another recipe than DISTILL_RECIPE; rebuild it with "
                               f"`python -m kdcore.llm.students --seeds {seed}`")
        available = sorted({key.split("/", 1)[0] for key in f.keys()})
        wanted = available if names is None else names
        missing = sorted(set(wanted) - set(available))
        if missing:
            raise ValueError(f"names: {missing} not in {path.name}; available: {available}")
        config = GPTConfig(**meta["recipe"]["config"])
        models = {}
        for name in wanted:
            model = GPT(config)
            state = {key.split("/", 1)[1]: f.get_tensor(key).float() for key in f.keys()
                     if key.startswith(name + "/")}
            if config.tie_weights:
                state["lm_head.weight"] = state["wte.weight"]
            model.load_state_dict(state)
            models[name] = model.eval()
    return models, meta


def main(argv: list[str] | None = None) -> None:
    from .corpus import load_corpus
    from .eval import mean_nats, val_windows
    from .train import load_teacher

    parser = argparse.ArgumentParser(description="Train notebook 14's students and write their checkpoints.")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="default: the recipe's seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=str(STUDENTS_DIR))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    teacher, corpus = load_teacher(), load_corpus()
    windows = val_windows(corpus)
    for seed in args.seeds if args.seeds is not None else DISTILL_RECIPE["seeds"]:
        start = time.perf_counter()
        models, seconds = train_students(teacher, corpus, seed)
        val = {name: round(mean_nats(m, windows), 4) for name, m in models.items()}
        path = Path(args.out_dir) / student_path(seed).name
        save_students(models, path, {"recipe": DISTILL_RECIPE, "recipe_hash": recipe_hash(DISTILL_RECIPE),
                                     "seed": seed, "seconds": {k: round(s, 1) for k, s in seconds.items()},
                                     "val_nats_fp32": val, "corpus_sha256": corpus.sha256,
                                     "threads": torch.get_num_threads(), "torch": torch.__version__})
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s, val nats {val} -> {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
