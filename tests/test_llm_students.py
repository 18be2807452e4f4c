"""Notebook 14's students: the shipped files match the recipe, the training step's pieces do what they say."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kdcore.distill import sequence_kd_loss
from kdcore.llm import students as st
from kdcore.llm.distill import generalized_jsd_loss, reverse_kl_loss, topk_kd_loss
from kdcore.llm.gpt import GPT, TEACHER_CONFIG, GPTConfig
from kdcore.llm.train import TEACHER_RECIPE, recipe_hash


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{"vocab_size": 11, "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 8, **kw})).eval()


# ------------------------------------------------------------------------------------------ the shipped files
@pytest.mark.parametrize("seed", st.DISTILL_RECIPE["seeds"])
def test_shipped_students_were_made_by_the_recipe_in_this_module(seed):
    from safetensors import safe_open
    path = st.student_path(seed)
    assert path.is_file(), f"{path} missing: run python -m kdcore.llm.students --seeds {seed}"
    assert path.stat().st_size < 8e6
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        names = {key.split("/", 1)[0] for key in f.keys()}
    assert meta["recipe_hash"] == '"' + recipe_hash(st.DISTILL_RECIPE) + '"'
    assert st.DISTILL_RECIPE["teacher_recipe_hash"] == recipe_hash(TEACHER_RECIPE)
    assert names == {"base", *st.VARIANTS}
    models, meta = st.load_students(seed, ["base", "fkl"])
    assert meta["seed"] == seed and set(models) == {"base", "fkl"}
    ratio = GPT(TEACHER_CONFIG).num_parameters() / models["base"].num_parameters()
    assert 4 <= ratio <= 8, ratio
    # every variant moved away from the base it continued from
    base, fkl = models["base"].state_dict(), models["fkl"].state_dict()
    assert any(not torch.equal(base[k], fkl[k]) for k in base)


def test_load_refuses_a_file_of_another_recipe(tmp_path):
    models = {"base": GPT(GPTConfig(**st.DISTILL_RECIPE["config"]))}
    path = tmp_path / "students.safetensors"
    st.save_students(models, path, {"recipe": st.DISTILL_RECIPE, "recipe_hash": "0" * 64, "seed": 0})
    with pytest.raises(RuntimeError, match="another recipe"):
        st.load_students(0, path=path)
    with pytest.raises(FileNotFoundError, match="seed"):
        st.load_students(0, path=tmp_path / "missing.safetensors")


def test_save_and_load_round_trip_in_float16(tmp_path):
    torch.manual_seed(3)
    model = GPT(GPTConfig(**st.DISTILL_RECIPE["config"])).eval()
    path = tmp_path / "s.safetensors"
    st.save_students({"fkl": model}, path, {"recipe": st.DISTILL_RECIPE, "recipe_hash": recipe_hash(st.DISTILL_RECIPE),
                                            "seed": 0})
    loaded, meta = st.load_students(0, path=path)
    assert meta["seed"] == 0
    assert path.stat().st_mode & 0o777 == 0o644          # readable by a grader's sandbox user, as shipped
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded["fkl"].state_dict()[key], value.half().float())
    assert loaded["fkl"].lm_head.weight is loaded["fkl"].wte.weight            # the tie survives
    with pytest.raises(ValueError, match="names"):
        st.load_students(0, ["nope"], path=path)


# ------------------------------------------------------------------------------------------ training pieces
def test_continuation_mask_covers_the_positions_that_predict_continuation_tokens():
    m = st.continuation_mask(2, prompt=3, continuation=4)
    assert m.shape == (2, 6)
    assert m.tolist()[0] == [False, False, True, True, True, True]          # position 2 predicts token 3


def test_sample_continuations_returns_the_logits_that_produced_each_token():
    model = tiny(1)
    prompts = torch.randint(0, 11, (3, 4), generator=torch.Generator().manual_seed(0))
    seqs, logits = st.sample_continuations(model, prompts, 5, 1.0, torch.Generator().manual_seed(1))
    assert seqs.shape == (3, 9) and logits.shape == (3, 5, 11) and torch.equal(seqs[:, :4], prompts)
    with torch.no_grad():
        full = model(seqs[:, :-1])                                           # no cache: one pass
    torch.testing.assert_close(logits, full[:, 3:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(st.VARIANTS))
def test_variant_loss_is_the_library_loss_on_the_masked_positions(name):
    spec = st.VARIANTS[name]
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(2, 6, 24, generator=g), torch.randn(2, 6, 24, generator=g)    # V = 24 >= k = 20
    y = torch.randint(0, 24, (2, 6), generator=g)
    mask = st.continuation_mask(2, 3, 4)
    got = st.variant_loss(spec, s, y, t, mask, T=1.5, beta=0.3)
    expected = {"ce": lambda: F.cross_entropy(s[mask], y[mask]),
                "fkl": lambda: sequence_kd_loss(s, t, mask, 1.5),
                "rkl": lambda: reverse_kl_loss(s, t, mask, 1.5),
                "jsd": lambda: generalized_jsd_loss(s, t, mask, 0.3, 1.5),
                "topk": lambda: topk_kd_loss(s, *t.topk(spec.get("k", 1), -1), mask, 1.5)}[spec["loss"]]()
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="spec"):
        st.variant_loss({"loss": "mse"}, s, y, t, mask, T=1.0, beta=0.5)


def test_train_students_smoke_every_variant_trains_from_the_same_base():
    """Two base steps and two distillation steps per variant on a random text, with a random teacher."""
    recipe = copy.deepcopy(st.DISTILL_RECIPE)
    recipe["config"] = {**recipe["config"], "vocab_size": 24, "block_size": 32, "n_layer": 1, "n_embd": 8, "n_head": 2}
    recipe["base"].update(steps=2, batch_size=2, context=16, warmup=1)
    recipe["distill"].update(steps=2, batch_size=2, prompt=4, continuation=6, warmup=1)

    class Text:   # the corpus interface train_students uses
        train = torch.randint(0, 24, (500,), generator=torch.Generator().manual_seed(2))

    teacher = tiny(7, n_embd=16, vocab_size=24)
    models, seconds = st.train_students(teacher, Text(), seed=0, recipe=recipe, progress=False)
    assert set(models) == {"base", *st.VARIANTS} and set(seconds) == {"base", *st.VARIANTS}
    base = models["base"].state_dict()
    for name in st.VARIANTS:
        state = models[name].state_dict()
        assert not models[name].training
        assert all(torch.isfinite(v).all() for v in state.values())
        assert any(not torch.equal(base[k], state[k]) for k in base), name


# ------------------------------------------------------------------------------------------ judging samples
def test_distinct_ngrams_counts_different_ngrams_over_all_sequences():
    seqs = torch.tensor([[1, 2, 1, 2, 1], [3, 3, 3, 3, 3]])
    # 2-grams: (1,2) (2,1) (1,2) (2,1) | (3,3) ×4 → 3 different of 8
    assert st.distinct_ngrams(seqs, 2) == 3 / 8
    assert st.distinct_ngrams(torch.arange(10)[None], 3) == 1.0
    with pytest.raises(ValueError, match="n must be in"):
        st.distinct_ngrams(seqs, 6)


def test_continuation_nats_is_the_cross_entropy_of_the_continuation_only():
    model = tiny(4)
    seqs = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(seqs[:, :-1])
    manual = -F.log_softmax(logits, -1)[:, 3:].gather(-1, seqs[:, 4:, None]).mean()
    assert st.continuation_nats(model, seqs, 4) == pytest.approx(manual.item(), rel=1e-5)


def test_mean_entropy_is_log_v_for_a_uniform_model():
    model = tiny(5)
    with torch.no_grad():
        model.lm_head.weight.zero_()                                         # tied: embeddings zero too
    windows = torch.randint(0, 11, (2, 8))
    assert st.mean_entropy(model, windows) == pytest.approx(math.log(11), rel=1e-5)
