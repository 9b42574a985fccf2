import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rcert.errors import RcertError
from rcert.evaluation.classifiers import (
    CLASSIFIERS,
    accuracy,
    accuracy_under_attack,
    build_classifier,
    train_classifier,
)


def _blobs(n, seed, d=10, k=3):
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.eye(k, d)
    labels = torch.randint(0, k, (n,), generator=g)
    return centres[labels] + torch.randn(n, d, generator=g), labels


def _quadrants(n, seed):
    """8x8 images, class = the bright quadrant (0 top-left, 1 top-right, 2, 3 below)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    rows, cols = (labels // 2) * 4, (labels % 2) * 4
    r = torch.arange(8)
    in_rows = (r >= rows[:, None]) & (r < rows[:, None] + 4)  # (n, 8)
    in_cols = (r >= cols[:, None]) & (r < cols[:, None] + 4)
    bright = in_rows[:, :, None] & in_cols[:, None, :]
    return images + 0.7 * bright[:, None].float(), labels


def test_mlp_separates_gaussian_blobs():
    x, y = _blobs(300, seed=0)
    model = train_classifier("mlp", x, y, epochs=20, batch_size=32, hidden=64, seed=1)
    assert not model.training
    assert accuracy(model, *_blobs(500, seed=1)) >= 0.95


def test_conv_net_finds_the_bright_quadrant():
    x, y = _quadrants(400, seed=0)
    model = train_classifier("conv", x, y, epochs=15, batch_size=32, hidden=32, lr=3e-3, seed=2)
    assert accuracy(model, *_quadrants(400, seed=1)) >= 0.9


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_training_is_deterministic_whatever_the_global_generator(kind):
    x, y = _quadrants(64, seed=3)
    torch.manual_seed(123)
    first = train_classifier(kind, x, y, epochs=2, batch_size=16, hidden=8, seed=5)
    state = torch.get_rng_state()
    torch.manual_seed(999)
    second = train_classifier(kind, x, y, epochs=2, batch_size=16, hidden=8, seed=5)
    other = train_classifier(kind, x, y, epochs=2, batch_size=16, hidden=8, seed=6)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    torch.manual_seed(123)
    train_classifier(kind, x, y, epochs=1, hidden=8, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched


def _identity():
    """Logits = the input itself: the prediction is the larger coordinate."""
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(2))
    return layer


CLEAN = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [5.0, 1.0]])
ATTACKED = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0], [0.0, 5.0]])
LABELS = torch.tensor([0, 1, 0, 0])


@pytest.mark.parametrize("batch_size", [1, 3, 1024])
def test_accuracy_of_a_known_classifier_by_hand(batch_size):
    model = _identity().train()
    # predictions 0, 1, 1, 0 against labels 0, 1, 0, 0: three of four right
    assert accuracy(model, CLEAN, LABELS, batch_size=batch_size) == 0.75
    assert model.training  # the caller's mode is restored


def test_accuracy_under_attack_by_hand():
    # attacked predictions 1, 1, 1, 1: only the second is right
    assert accuracy_under_attack(_identity(), CLEAN, ATTACKED, LABELS) == {
        "accuracy_clean": 0.75, "accuracy_attacked": 0.25, "accuracy_drop": -0.5}


def test_the_mlp_has_two_hidden_layers_and_the_conv_net_none_dense():
    mlp = build_classifier("mlp", (3, 4, 4), 5, hidden=16)
    linear = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(48, 16), (16, 16), (16, 5)]
    conv = build_classifier("conv", (3, 4, 4), 5, hidden=16)
    assert not any(isinstance(m, nn.Linear) for m in conv.modules())


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(CLASSIFIERS), channels=st.integers(1, 3), height=st.integers(1, 12),
       width=st.integers(1, 12), n_classes=st.integers(2, 6), hidden=st.integers(1, 16))
def test_any_image_shape_gives_one_logit_per_class(kind, channels, height, width, n_classes,
                                                   hidden):
    model = build_classifier(kind, (channels, height, width), n_classes, hidden=hidden)
    assert model(torch.zeros(2, channels, height, width)).shape == (2, n_classes)


X, Y = _blobs(20, seed=4)


@pytest.mark.parametrize(("kind", "inputs", "labels", "kwargs", "words"), [
    ("conv", X, Y, {}, "conv classifier needs"),
    ("svm", X, Y, {}, "unknown classifier"),
    ("mlp", X, torch.zeros(20, dtype=torch.long), {}, "single class"),
    ("mlp", X, Y[:10], {}, "one label per input"),
    ("mlp", X, Y.float(), {}, "integer"),
    ("mlp", X, Y - 1, {}, ">= 0"),
    ("mlp", X.clone().index_fill_(0, torch.tensor([3]), float("nan")), Y, {}, "NaN"),
    ("mlp", X.numpy(), Y, {}, "torch tensors"),
    ("mlp", X, Y, {"epochs": 0}, "epochs"),
    ("mlp", X, Y, {"lr": -1.0}, "lr"),
    ("mlp", X, Y, {"seed": -1}, "seed"),
    ("mlp", X, Y, {"hidden": 0}, "hidden"),
])
def test_bad_training_arguments_are_refused(kind, inputs, labels, kwargs, words):
    with pytest.raises(RcertError, match=words):
        train_classifier(kind, inputs, labels, **kwargs)


def test_bad_evaluation_arguments_are_refused():
    with pytest.raises(RcertError, match="at least 2"):
        build_classifier("mlp", (4,), 1)
    with pytest.raises(RcertError, match="input_shape"):
        build_classifier("mlp", (0, 3), 2)
    with pytest.raises(RcertError, match="same shape"):
        accuracy_under_attack(_identity(), CLEAN, ATTACKED[:3], LABELS)
    with pytest.raises(RcertError, match="one label per input"):
        accuracy(_identity(), CLEAN, LABELS[:2])
    with pytest.raises(RcertError, match="batch_size"):
        accuracy(_identity(), CLEAN, LABELS, batch_size=0)
