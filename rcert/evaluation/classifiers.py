"""Downstream classifiers, and how much an attack on the VAE costs them.

Willetts et al. (2021, "Improving VAEs' robustness to adversarial attack", Table 1) judge an
attack by the accuracy of "2-layer MLPs and fully-convolutional nets trained on the
reconstructions or on the embeddings": a classifier is trained on clean reconstructions
(or latent means), then scored on the reconstructions of clean and of attacked inputs.
:func:`train_classifier` builds and trains those nets, :func:`accuracy_under_attack`
gives the clean and attacked accuracies and their difference, the figure the paper prints
in parentheses.
"""

from __future__ import annotations

import itertools
import math
import numbers

import torch
from torch import nn

from rcert.errors import RcertError
from rcert.validate import int_tuple
from rcert.values import check_seed, choice, positive_float, positive_int

CLASSIFIERS = ("mlp", "conv")


def _conv_net(shape: tuple[int, ...], n_classes: int, hidden: int) -> nn.Module:
    """Three stride-2 3x3 convolutions, a 1x1 convolution to the classes, average pooling.

    Fully convolutional, so any ``H, W`` works (a 1x1 map stays 1x1 under padding 1).
    """
    if len(shape) != 3:
        raise RcertError(f"the conv classifier needs (C, H, W) inputs, got input shape "
                         f"{shape}; use kind='mlp' for flat inputs such as embeddings")
    widths = (shape[0], max(hidden // 4, 1), max(hidden // 2, 1), hidden)
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(widths):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(hidden, n_classes, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def build_classifier(kind: str, input_shape: tuple[int, ...], n_classes: int, *,
                     hidden: int = 256) -> nn.Module:
    """An untrained downstream classifier of Willetts et al. (2021), Table 1.

    Parameters
    ----------
    kind
        ``"mlp"``: flatten, then ``Linear(hidden)``, ReLU, ``Linear(hidden)``, ReLU,
        ``Linear(n_classes)``. The paper's "2-layer MLP" is read as two hidden layers
        (three weight layers), the usual sense of counting hidden layers.
        ``"conv"``: fully convolutional: three 3x3 stride-2 convolutions with ReLU
        (``hidden // 4``, ``hidden // 2`` and ``hidden`` channels), a 1x1 convolution to
        ``n_classes`` channels and global average pooling. It needs ``(C, H, W)`` inputs.
    input_shape
        Shape of one input, no batch axis: ``(d,)`` for embeddings, ``(C, H, W)`` for images.
    n_classes
        Number of classes, at least 2.
    hidden
        Width of the MLP's hidden layers; channels of the last convolution.

    Returns
    -------
    torch.nn.Module
        Maps ``(n, *input_shape)`` to ``(n, n_classes)`` logits. Its initial weights come
        from torch's global generator: seed it, or use :func:`train_classifier`.
    """
    kind = choice(kind, "classifier", CLASSIFIERS)
    single = isinstance(input_shape, numbers.Integral)
    shape = int_tuple((input_shape,) if single else input_shape, "input_shape",
                      allow_empty=False)
    n_classes = positive_int(n_classes, "n_classes")
    if n_classes < 2:
        raise RcertError("n_classes must be at least 2; a classifier needs two classes")
    hidden = positive_int(hidden, "hidden")
    if kind == "conv":
        return _conv_net(shape, n_classes, hidden)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def _check_data(inputs: torch.Tensor, labels: torch.Tensor, what: str = "inputs"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as finite float32 ``(n, ...)``, labels as int64 ``(n,)`` >= 0, n >= 1."""
    if not isinstance(inputs, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise RcertError(f"{what} and labels must be torch tensors; convert arrays with "
                         f"torch.as_tensor")
    if inputs.ndim < 2 or len(inputs) == 0:
        raise RcertError(f"{what} must be a non-empty batch (n, ...), got shape "
                         f"{tuple(inputs.shape)}")
    if labels.ndim != 1 or len(labels) != len(inputs):
        raise RcertError(f"labels must be 1-D with one label per input ({len(inputs)}), got "
                         f"shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise RcertError(f"labels must be integer class indices, got dtype {labels.dtype}; "
                         f"convert them with labels.long()")
    if (labels < 0).any():
        raise RcertError("labels must be class indices >= 0; map them to 0 .. n_classes - 1")
    inputs = inputs.to(torch.float32)
    if not torch.isfinite(inputs).all():
        raise RcertError(f"{what} hold NaN or inf; drop or fix those inputs first")
    return inputs, labels.long().to(inputs.device)


def _fit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, epochs: int,
         batch_size: int, lr: float, seed: int) -> None:
    """Adam on the cross-entropy, minibatches in a seeded order, in place."""
    shuffle = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(inputs), generator=shuffle).to(inputs.device)
        for batch in order.split(batch_size):
            loss = nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            if not torch.isfinite(loss):
                raise RcertError(f"classifier training diverged (non-finite loss in epoch "
                                 f"{epoch}); lower lr (now {lr:g})")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def train_classifier(kind: str, inputs: torch.Tensor, labels: torch.Tensor, *,
                     epochs: int = 20, batch_size: int = 128, lr: float = 1e-3,
                     seed: int = 0, hidden: int = 256) -> nn.Module:
    """Build a downstream classifier (:func:`build_classifier`) and train it.

    Adam on the cross-entropy for ``epochs`` passes over the data in minibatches, as for the
    classifiers of Willetts et al. (2021), Table 1.

    Parameters
    ----------
    kind
        ``"mlp"`` or ``"conv"``.
    inputs
        ``(n, *input_shape)``: reconstructions or embeddings; cast to float32, on any
        device (the classifier is moved there). NaN or inf is refused.
    labels
        ``(n,)`` integer class indices; there are ``labels.max() + 1`` classes, and at
        least two distinct labels are needed.
    epochs, batch_size, lr
        Training length, minibatch size and Adam's learning rate.
    seed
        Seeds the initial weights and the minibatch order, whatever the state of torch's
        global generator: the same seed gives bitwise-identical weights on CPU.
    hidden
        Width of the classifier (:func:`build_classifier`).

    Returns
    -------
    torch.nn.Module
        The trained classifier, in eval mode.
    """
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    lr = positive_float(lr, "lr")
    seed = check_seed(seed)
    inputs, labels = _check_data(inputs, labels)
    if len(torch.unique(labels)) < 2:
        raise RcertError("labels hold a single class; a classifier needs at least two")
    # Initialise from the seed alone, leaving the caller's global generator as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(kind, tuple(inputs.shape[1:]), int(labels.max()) + 1,
                                 hidden=hidden)
    model.to(inputs.device)
    _fit(model, inputs, labels, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return model


def _device(classifier: nn.Module, inputs: torch.Tensor) -> torch.device:
    """Where the classifier's weights are; the inputs' device if it has none."""
    first = next(classifier.parameters(), None)
    return inputs.device if first is None else first.device


def accuracy(classifier: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 1024) -> float:
    """Share of ``inputs`` whose largest logit is at their label.

    Evaluated in eval mode without gradients, ``batch_size`` inputs at a time; the
    classifier's mode is restored afterwards.
    """
    batch_size = positive_int(batch_size, "batch_size")
    inputs, labels = _check_data(inputs, labels)
    device = _device(classifier, inputs)
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            right = sum(int((classifier(x.to(device)).argmax(dim=1) == y.to(device)).sum())
                        for x, y in zip(inputs.split(batch_size), labels.split(batch_size),
                                        strict=True))
    finally:
        classifier.train(was_training)
    return right / len(inputs)


def accuracy_under_attack(classifier: nn.Module, clean: torch.Tensor, attacked: torch.Tensor,
                          labels: torch.Tensor) -> dict[str, float]:
    """Accuracy on clean and on attacked inputs, and the change the attack made.

    Parameters
    ----------
    classifier
        A trained classifier (:func:`train_classifier`).
    clean, attacked
        The classifier's inputs (reconstructions or embeddings) of the clean inputs and
        of their attacked versions, in the same order and shape.
    labels
        The true class of each input.

    Returns
    -------
    dict
        ``accuracy_clean``, ``accuracy_attacked`` and ``accuracy_drop =
        accuracy_attacked - accuracy_clean``: negative when the attack hurts, as in the
        parentheses of Willetts et al. (2021), Table 1.
    """
    if not isinstance(clean, torch.Tensor) or not isinstance(attacked, torch.Tensor) \
            or clean.shape != attacked.shape:
        raise RcertError("clean and attacked must be tensors of the same shape, one attacked "
                         "input per clean input")
    clean_acc = accuracy(classifier, clean, labels)
    attacked_acc = accuracy(classifier, attacked, labels)
    return {"accuracy_clean": clean_acc, "accuracy_attacked": attacked_acc,
            "accuracy_drop": attacked_acc - clean_acc}
