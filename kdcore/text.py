"""Character-level text and tiny character language models (notebook 11: distilling language models).

The corpus is *generated*: a small probabilistic grammar writes English-like sentences
("the old farmer carries a red box near the river."), seeded, so every machine gets the same text
without a download. Word choices follow Zipf-like weights, so the true next-character distribution
after a space is spread over many words: exactly the information a teacher's soft targets carry and
a one-hot label does not.

Data layout (one sentence per row, right-padded):

* ``inputs  [N, L]``  ``BOS c1 c2 ... cn PAD ...``
* ``targets [N, L]``  ``c1 c2 ... cn EOS PAD ...``
* ``mask    [N, L]``  1.0 on real target positions (n characters + EOS), 0.0 on padding.

Token ids: 0 = padding, 1 = sentence boundary (used as BOS on the input side and EOS on the target
side), then the characters. A model's logits ``[B, L, V]`` cover every id; padding is never a target.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v

__all__ = ["generate_corpus", "CharVocab", "TextData", "load_text", "encode", "CharGRU", "lm_loss",
           "perplexity", "train_lm", "sample"]

PAD, BOUNDARY = 0, 1

# ------------------------------------------------------------------------------------------ grammar
# Words are listed most frequent first; word i of a list is drawn with weight 1 / (i + 1) (Zipf).
_NOUNS = ["cat", "dog", "farmer", "child", "robot", "teacher", "bird", "king", "sailor", "baker",
          "doctor", "fox", "painter", "girl", "boy", "horse", "owl", "queen", "miner", "poet"]
_OBJECTS = ["box", "ball", "apple", "book", "letter", "lamp", "cake", "coin", "map", "key",
            "shoe", "cup", "flower", "stone", "basket", "ring", "bell", "kite", "drum", "rope"]
_ADJECTIVES = ["old", "small", "red", "happy", "quiet", "green", "tall", "brave", "little", "blue",
               "heavy", "strange", "yellow", "clever", "dark"]
_VERBS = ["sees", "finds", "carries", "likes", "holds", "drops", "takes", "wants", "paints", "buys",
          "loses", "opens", "hides", "sells", "throws"]
_PLACES = ["in the garden", "near the river", "at the market", "on the hill", "in the kitchen",
           "by the sea", "under the bridge", "in the forest", "at school", "behind the house"]
_TIMES = ["today", "every morning", "at night", "again", "slowly", "quickly"]


def _pick(rng: random.Random, words: Sequence[str]) -> str:
    return rng.choices(words, weights=[1.0 / (i + 1) for i in range(len(words))])[0]


def _noun_phrase(rng: random.Random, nouns: Sequence[str]) -> str:
    words = [_pick(rng, _ADJECTIVES)] if rng.random() < 0.5 else []
    words.append(_pick(rng, nouns))
    det = rng.choices(["the", "a", "my", "every"], weights=[6, 3, 1, 1])[0]
    if det == "a" and words[0][0] in "aeiou":
        det = "an"
    return " ".join([det, *words])


def _sentence(rng: random.Random) -> str:
    parts = [_noun_phrase(rng, _NOUNS), _pick(rng, _VERBS), _noun_phrase(rng, _OBJECTS)]
    if rng.random() < 0.5:
        parts.append(_pick(rng, _PLACES))
    if rng.random() < 0.25:
        parts.append(_pick(rng, _TIMES))
    return " ".join(parts) + "."


def generate_corpus(n_sentences: int, seed: int = 0) -> list[str]:
    """``n_sentences`` sentences from the course grammar; the same list for the same seed everywhere.

    Uses its own ``random.Random(seed)``: the global random state is left untouched.
    """
    v.integer("n_sentences", n_sentences, minimum=1, maximum=1_000_000)
    v.integer("seed", seed, minimum=0)
    rng = random.Random(seed)
    return [_sentence(rng) for _ in range(n_sentences)]


# ------------------------------------------------------------------------------------------ encoding
class CharVocab:
    """Character ↔ id map: 0 = padding, 1 = sentence boundary, then the characters in sorted order."""

    def __init__(self, chars: Sequence[str]) -> None:
        chars = sorted(set(chars))
        if any(len(c) != 1 for c in chars):
            raise ValueError("chars must be single characters")
        self.chars = chars
        self.index = {c: i + 2 for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.chars) + 2

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} ids: PAD, BOUNDARY, {''.join(self.chars)!r})"

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as err:
            raise ValueError(f"text has a character outside the vocabulary: {err.args[0]!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of ``ids`` up to the first boundary or padding id."""
        out = []
        for i in ids:
            i = int(i)
            if i in (PAD, BOUNDARY):
                break
            out.append(self.chars[i - 2])
        return "".join(out)


def encode(sentences: Sequence[str], vocab: CharVocab, max_len: int | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(inputs, targets, mask)``, each ``[N, L]`` with ``L = max_len or longest + 1``.

    Sentences longer than ``max_len - 1`` characters are cut (their EOS is then dropped too).
    """
    if not sentences:
        raise ValueError("sentences must not be empty")
    ids = [vocab.encode(s) for s in sentences]
    L = max(len(s) for s in ids) + 1 if max_len is None else v.integer("max_len", max_len, minimum=2)
    inputs = torch.full((len(ids), L), PAD, dtype=torch.long)
    targets = torch.full((len(ids), L), PAD, dtype=torch.long)
    for row, s in enumerate(ids):
        seq_in = [BOUNDARY, *s][:L]
        seq_out = [*s, BOUNDARY][:L]
        inputs[row, :len(seq_in)] = torch.tensor(seq_in)
        targets[row, :len(seq_out)] = torch.tensor(seq_out)
    mask = (targets != PAD).float()
    return inputs, targets, mask


@dataclass
class TextData:
    """Encoded train / validation sentences of the generated corpus, with their vocabulary."""

    vocab: CharVocab
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    train_text: list[str]
    val_text: list[str]

    def __repr__(self) -> str:
        return (f"TextData(vocab={len(self.vocab)}, train={tuple(self.train[0].shape)}, "
                f"val={tuple(self.val[0].shape)}, train_chars={int(self.train[2].sum())})")


def load_text(n_train: int = 500, n_val: int = 500, seed: int = 0) -> TextData:
    """Generated corpus split into ``n_train`` training and ``n_val`` validation sentences.

    Both splits come from one generated list, validation first: the validation set depends only on
    ``n_val`` and ``seed``, and a larger ``n_train`` extends the training set (nested sets), so a teacher
    trained on more sentences never sees the validation sentences. The vocabulary covers every
    character the grammar can produce.
    """
    v.integer("n_train", n_train, minimum=1)
    v.integer("n_val", n_val, minimum=1)
    sentences = generate_corpus(n_val + n_train, seed)
    vocab = CharVocab(sorted(set("".join(_NOUNS + _OBJECTS + _ADJECTIVES + _VERBS + _PLACES + _TIMES
                                     + ["the", "a", "an", "my", "every"])) | {" ", "."}))
    val, train = sentences[:n_val], sentences[n_val:]
    return TextData(vocab, encode(train, vocab), encode(val, vocab), train, val)


# ------------------------------------------------------------------------------------------ model
class CharGRU(nn.Module):
    """Embedding → one-layer GRU → Linear: ``tokens [B, L]`` (int64) → ``logits [B, L, V]``.

    Position t sees tokens 0..t only (a GRU is causal), so logits[:, t] predicts targets[:, t].
    """

    def __init__(self, vocab_size: int, hidden: int = 128, embed_dim: int = 16) -> None:
        super().__init__()
        v.integer("vocab_size", vocab_size, minimum=3)
        v.integer("hidden", hidden, minimum=1)
        v.integer("embed_dim", embed_dim, minimum=1)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None,
                return_state: bool = False):
        out, state = self.gru(self.embed(tokens), state)  # out [B, L, hidden]
        logits = self.head(out)  # [B, L, V]
        return (logits, state) if return_state else logits


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in nats averaged over real tokens only (``mask`` 1); padding contributes nothing."""
    v.tensor("logits", logits, ndim=3, floating=True)
    v.tensor("targets", targets, ndim=2)
    v.tensor("mask", mask, ndim=2)
    if logits.shape[:2] != targets.shape or targets.shape != mask.shape:
        raise ValueError(f"logits [B, L, V], targets and mask [B, L] must agree, got "
                         f"{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(mask.shape)}")
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [B, L]
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum().clamp_min(1.0)


@torch.no_grad()
def perplexity(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
               batch_size: int = 512) -> float:
    """Per-character perplexity ``exp(total NLL / number of real tokens)``; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0.0
        for i in range(0, len(inputs), batch_size):
            m = mask[i:i + batch_size]
            total += lm_loss(model(inputs[i:i + batch_size]), targets[i:i + batch_size], m).item() * m.sum().item()
            count += m.sum().item()
        return math.exp(total / count)
    finally:
        model.train(was_training)


def train_lm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *,
             teacher: nn.Module | None = None, T: float = 1.0, alpha: float = 1.0, steps: int = 300,
             batch_size: int = 32, lr: float = 3e-3, seed: int = 0, progress: bool | None = None,
             desc: str = "train_lm") -> list[float]:
    """Train a character LM in place with Adam; returns the per-step losses.

    Without ``teacher``: masked cross-entropy on the targets. With a frozen ``teacher`` (token-level KD):
    ``alpha·sequence_kd_loss(student, teacher, mask, T) + (1 − alpha)·cross-entropy``, the teacher's
    logits computed once in eval mode without gradients. Gradients are clipped to norm 1 (RNNs).
    """
    from tqdm.auto import tqdm

    from .distill import sequence_kd_loss
    from .train import progress_enabled

    v.integer("steps", steps, minimum=1)
    v.integer("batch_size", batch_size, minimum=1)
    v.positive("lr", lr)
    T = v.positive("T", T)
    alpha = v.in_unit_interval("alpha", alpha)
    t_logits = None
    if teacher is not None:
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            t_logits = torch.cat([teacher(inputs[i:i + 512]) for i in range(0, len(inputs), 512)])
        teacher.train(was_training)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    perm, pos = torch.randperm(len(inputs), generator=gen), 0
    for _ in tqdm(range(steps), desc=desc, disable=not progress_enabled(progress), leave=False):
        if pos + batch_size > len(inputs):
            perm, pos = torch.randperm(len(inputs), generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        # Trim the batch to its longest row: padding columns cost time and carry no signal.
        width = int(mask[idx].sum(1).max().item())
        x, y, m = inputs[idx, :width], targets[idx, :width], mask[idx, :width]
        logits = model(x)
        loss = lm_loss(logits, y, m)
        if t_logits is not None:
            soft = sequence_kd_loss(logits, t_logits[idx, :width], m, T=T)
            loss = alpha * soft + (1 - alpha) * loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def sample(model: nn.Module, vocab: CharVocab, n: int, max_len: int = 80, temperature: float = 1.0,
           seed: int = 0) -> list[str]:
    """``n`` sentences sampled from the model (ancestral sampling at ``temperature``), seeded.

    ``model`` is called as ``model(tokens, state, return_state=True)`` (as :class:`CharGRU`). Each
    sentence stops at its first boundary token; padding is never sampled.
    """
    v.integer("n", n, minimum=1)
    v.integer("max_len", max_len, minimum=1)
    temperature = v.positive("temperature", temperature)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        token = torch.full((n, 1), BOUNDARY, dtype=torch.long)
        state, out = None, []
        for _ in range(max_len):
            logits, state = model(token, state, return_state=True)
            logits = logits[:, -1] / temperature
            logits[:, PAD] = float("-inf")
            token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)
            out.append(token)
        ids = torch.cat(out, dim=1)
        return [vocab.decode(row.tolist()) for row in ids]
    finally:
        model.train(was_training)
