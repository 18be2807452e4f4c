"""kdcore.train: seeded, learns, masks hold, the teacher is never touched."""
import copy

import pytest
import torch
import kdcore as kd
import torch.nn.functional as F

import kdcore.train as train
from kdcore.data import load_digits
from kdcore.models import MLP


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_fit_learns_and_is_deterministic(digits):
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLP()
        losses = train.fit(model, digits.x_train, digits.y_train, steps=200, seed=1, progress=False)
        models.append(model)
    assert len(losses) == 200 and losses[-1] < losses[0] / 2
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    assert train.evaluate(models[0], digits.x_test, digits.y_test) > 0.85


def test_epochs_and_steps_are_exclusive(digits):
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        train.fit(MLP(), digits.x_train, digits.y_train, progress=False)
    losses = train.fit(MLP(), digits.x_train[:100], digits.y_train[:100], epochs=2, batch_size=32, progress=False)
    assert len(losses) == 2 * 4  # ceil(100 / 32) batches per epoch


def test_masks_hold_pruned_weights_at_zero(digits):
    torch.manual_seed(0)
    model = MLP()
    mask = torch.rand_like(model.layers[0].weight) > 0.7
    train.fit(model, digits.x_train, digits.y_train, steps=50, progress=False, masks={"layers.0.weight": mask})
    assert torch.all(model.layers[0].weight[~mask] == 0)
    assert torch.count_nonzero(model.layers[0].weight[mask]) == mask.sum()
    with pytest.raises(ValueError, match="not a parameter"):
        train.fit(model, digits.x_train, digits.y_train, steps=1, progress=False, masks={"nope": mask})


def test_distill_leaves_teacher_untouched_and_matches_kd_loss(digits):
    torch.manual_seed(0)
    teacher = MLP((64, 64, 10))
    train.fit(teacher, digits.x_train, digits.y_train, steps=100, progress=False)
    teacher.zero_grad(set_to_none=True)
    teacher.train()  # distill must not rely on, or change, the teacher's mode
    before = copy.deepcopy(teacher.state_dict())
    torch.manual_seed(1)
    student = MLP()
    start = copy.deepcopy(student)
    losses = train.distill(student, teacher, digits.x_train, digits.y_train, T=4.0, alpha=0.7, steps=30,
                           batch_size=1347, progress=False)
    assert teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in teacher.parameters())
    # first full-batch loss equals the closed form alpha*T^2*KL + (1-alpha)*CE
    s = start(digits.x_train)
    with torch.no_grad():
        t = train.predict_logits(teacher, digits.x_train)
    kl = F.kl_div(F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), reduction="batchmean", log_target=True)
    expected = 0.7 * 16 * kl + 0.3 * F.cross_entropy(s, digits.y_train)
    assert losses[0] == pytest.approx(expected.item(), rel=1e-5)
    assert losses[-1] < losses[0]


def test_distill_with_labelled_and_unlabelled_rows_weights_the_hard_term_by_the_whole_batch(digits):
    torch.manual_seed(0)
    teacher = MLP((64, 10))
    student = MLP()
    start = copy.deepcopy(student)
    x, y, x_unl = digits.x_train[:20], digits.y_train[:20], digits.x_train[20:64]
    losses = train.distill(student, teacher, x, y, x_unlabelled=x_unl, T=2.0, alpha=0.3, steps=1,
                           batch_size=64, progress=False)       # one batch holding all 64 rows
    x_all = torch.cat([x, x_unl])
    s, t = start(x_all), teacher(x_all)
    kl = F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean")
    hard = F.cross_entropy(s[:20], y, reduction="sum") / 64          # the batch order does not change sums
    assert losses[0] == pytest.approx((0.3 * 4 * kl + 0.7 * hard).item(), rel=1e-5)
    with pytest.raises(ValueError, match="class indices"):
        train.distill(MLP(), teacher, x, y + 10, steps=1, progress=False)


def test_distill_on_unlabelled_rows_uses_soft_term_only(digits):
    torch.manual_seed(0)
    teacher = MLP((64, 10))
    student = MLP()
    start = copy.deepcopy(student)
    losses = train.distill(student, teacher, digits.x_train[:64], None, T=2.0, alpha=0.5, steps=1,
                           batch_size=64, progress=False)
    s, t = start(digits.x_train[:64]), teacher(digits.x_train[:64])
    kl = F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean")
    assert losses[0] == pytest.approx(4 * kl.item(), rel=1e-5)


def test_pretrained_teacher_is_accurate_and_copied():
    split = load_digits(flat=False)
    a = train.pretrained_digits_teacher()
    b = train.pretrained_digits_teacher()
    assert a is not b
    with torch.no_grad():
        a.fc.weight.zero_()
    assert train.evaluate(b, split.x_test, split.y_test) > 0.95


def test_cached_model_trains_once_per_recipe_and_never_loads_a_stale_model(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCORE_CACHE", str(tmp_path))
    monkeypatch.delenv("KDCORE_MODEL_CACHE", raising=False)
    calls = []

    def make():
        torch.manual_seed(0)
        return kd.models.MLP((4, 3, 2))

    def train_(model):                        # a "training" whose result depends on how often it ran
        calls.append(1)
        with torch.no_grad():
            model.layers[0].weight.fill_(float(len(calls)))

    a = train.cached_model("toy", {"lr": 0.1}, make, train_)
    b = train.cached_model("toy", {"lr": 0.1}, make, train_)
    assert len(calls) == 1 and not b.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    files = list((tmp_path / "models").glob("toy-*.pt"))
    assert len(files) == 1
    train.cached_model("toy", {"lr": 0.2}, make, train_)                          # new recipe: trains
    train.cached_model("toy", {"lr": 0.1}, lambda: kd.models.MLP((4, 5, 2)), train_)   # new architecture: trains
    assert len(calls) == 3

    def train_edited(model):                  # same recipe, edited training code: trains again
        calls.append(1)
        with torch.no_grad():
            model.layers[0].weight.fill_(-1.0)

    train.cached_model("toy", {"lr": 0.1}, make, train_edited)
    assert len(calls) == 4
    calls.pop()
    files[0].write_bytes(b"not a checkpoint")                                        # corrupt: retrains
    c = train.cached_model("toy", {"lr": 0.1}, make, train_)
    assert len(calls) == 4 and c.layers[0].weight.detach()[0, 0].item() == 4.0
    monkeypatch.setenv("KDCORE_MODEL_CACHE", "0")                                    # disabled: always trains
    train.cached_model("toy", {"lr": 0.1}, make, train_)
    assert len(calls) == 5
    with pytest.raises(ValueError, match="name"):
        train.cached_model("a/b", {}, make, train_)
    with pytest.raises(TypeError, match="recipe"):
        train.cached_model("toy", {"x": object()}, make, train_)


def test_state_digest_tells_models_apart_and_thread_count_is_part_of_the_cache_key(tmp_path, monkeypatch):
    a, b = MLP((4, 3, 2)), MLP((4, 3, 2))
    assert train.state_digest(a) == train.state_digest(copy.deepcopy(a)) != train.state_digest(b)
    monkeypatch.setenv("KDCORE_CACHE", str(tmp_path))
    calls = []
    make = lambda: MLP((4, 3, 2))
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            train.cached_model("threads", {}, make, lambda m: calls.append(n))
    finally:
        torch.set_num_threads(threads)
    assert calls == [1, 2]            # trained once per thread count, then loaded


def test_cache_key_ignores_documentation_but_not_code():
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # comment\n'
    assert train._code_only(base) == train._code_only(base.replace("Doc.", "Other doc.").replace("comment", "c"))
    assert train._code_only(base) != train._code_only(base.replace("x + 1", "x + 2"))


def test_accuracy_is_evaluate_on_the_test_split():
    split = kd.data.load_digits()
    model = kd.models.MLP((64, 10))
    assert kd.train.accuracy(model, split) == kd.train.evaluate(model, split.x_test, split.y_test)
