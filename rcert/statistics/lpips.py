"""LPIPS, the learned perceptual distance of Zhang et al. (2018), from weights the user supplies
(Lu & Chen spec section 4.1: "lower is better").

Nothing is downloaded and torchvision is not needed: the backbones are rebuilt here as plain
modules whose tensor names are torchvision's (``features.0.weight``, ... of ``alexnet`` or
``vgg16``), and the linear layers are named as in the official ``lpips`` package
(``lin0.model.1.weight`` ... ``lin4``, 1x1 convolutions without bias). A weights file is
torchvision's backbone ``features.*`` tensors plus lpips' ``lin0``-``lin4`` tensors, saved as
safetensors or as a ``torch.save`` state dict (read with ``weights_only=True``).

The distance follows lpips v0.1 (Zhang et al. 2018, Eq 1): inputs mapped from the data range
to ``[-1, 1]``, grey images repeated to three channels, lpips' scaling layer, five backbone
taps, each unit-normalised over channels, squared differences weighted by the linear layer,
averaged over space and summed over taps.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.models.statedict import find_state_dict, read_weights, refuse_nonfinite
from rcert.reading import check_regular
from rcert.values import choice

NETS = ("alex", "vgg")
#: lpips' ScalingLayer: the ImageNet statistics of ``[-1, 1]`` inputs.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: lpips' normalisation floor, ``x / (||x|| + EPS)`` over channels.
EPS = 1e-10
#: Indices of ``features`` after which lpips taps a backbone: relu1-relu5 of AlexNet,
#: relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of VGG16.
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
# torchvision's layer lists: (out_channels, kernel, stride, padding) of a convolution (a ReLU
# follows each), or "M" for a max-pool (AlexNet's 3x3 stride 2, VGG's 2x2 stride 2).
_ALEX = ((64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1),
         (256, 3, 1, 1))
_VGG16 = ((64,), (64,), "M", (128,), (128,), "M", (256,), (256,), (256,), "M", (512,), (512,),
          (512,), "M", (512,), (512,), (512,))
_DOC_HINT = "see docs/latent.md"
# Widest image side searched for the smallest one a backbone accepts.
_MAX_SIDE = 4096


def _features(net: str) -> nn.Sequential:
    """torchvision's ``features`` of ``net``, up to its last lpips tap (so with the same
    indices, hence the same tensor names); ReLUs are not in place, for autograd."""
    layers: list[nn.Module] = []
    channels = 3
    for spec in _ALEX if net == "alex" else _VGG16:
        if spec == "M":
            layers.append(nn.MaxPool2d(3, 2) if net == "alex" else nn.MaxPool2d(2, 2))
            continue
        out, kernel, stride, padding = spec if net == "alex" else (spec[0], 3, 1, 1)
        layers += [nn.Conv2d(channels, out, kernel, stride, padding), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers[:TAPS[net][-1] + 1])


class _Linear(nn.Module):
    """lpips' NetLinLayer: ``model.1`` is a 1x1 convolution to one channel, without bias.
    Its dropout (``model.0``, identity in eval mode) is an identity here, so the score is
    the same in either mode."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """The LPIPS distance (Zhang et al. 2018, Eq 1) on an AlexNet or VGG16 backbone.

    Built with :func:`load_lpips`; ``LPIPS(net)`` alone holds random weights. Its tensors are
    named as in torchvision (``features.*``) and lpips (``lin0.model.1.weight`` ...).

    Parameters
    ----------
    net
        ``"alex"`` or ``"vgg"`` (VGG16).
    """

    def __init__(self, net: str) -> None:
        super().__init__()
        self.net = choice(net, "LPIPS backbone", NETS)
        self.features = _features(net)
        widths = [self.features[i - 1].out_channels for i in TAPS[net]]
        for k, width in enumerate(widths):
            setattr(self, f"lin{k}", _Linear(width))

    def check_size(self, height: int, width: int) -> None:
        """Refuse images too small for the backbone: a tap's feature map would be empty (an
        AlexNet at 28x28, spec section 4.1). The smallest side is found by passing shapes
        through the layers (:func:`smallest_side`)."""
        need = smallest_side(self.net)
        if min(height, width) < need:
            other = "vgg" if self.net == "alex" else "alex"
            raise RcertError(
                f"LPIPS on the {self.net} backbone needs images of at least {need}x{need} "
                f"pixels, got {height}x{width}; use {other} LPIPS weights (from "
                f"{smallest_side(other)}x{smallest_side(other)}) or upsample the images")

    def forward(self, a: Tensor, b: Tensor, *, data_range: tuple[float, float]) -> Tensor:
        """LPIPS per image pair, ``(B,)``, of ``(B, C, H, W)`` images in ``data_range``
        (``C`` is 1 or 3); 0 for identical images, lower is better; differentiable.

        Zhang et al. (2018) Eq 1: ``sum_l mean_hw ||w_l * (y_hat_l(a) - y_hat_l(b))||^2``,
        ``y_hat_l`` the unit-normalised features of tap ``l``. The images are cast to the
        weights' dtype.
        """
        self._check_inputs(a, b)
        total = a.new_zeros(a.shape[0], dtype=self.lin0.model[1].weight.dtype)
        taps = zip(self._taps(a, data_range), self._taps(b, data_range), strict=True)
        for k, (fa, fb) in enumerate(taps):
            lin = getattr(self, f"lin{k}")
            total = total + lin((_unit(fa) - _unit(fb)).square()).mean((1, 2, 3))
        return total

    def _check_inputs(self, a: Tensor, b: Tensor) -> None:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] not in (1, 3):
            raise RcertError(
                f"LPIPS compares two batches of grey or RGB images of one shape (B, 1 or 3, "
                f"H, W), got {tuple(a.shape)} and {tuple(b.shape)}; drop lpips from the "
                f"metrics for other data")
        self.check_size(a.shape[2], a.shape[3])

    def _taps(self, x: Tensor, data_range: tuple[float, float]) -> list[Tensor]:
        low, high = (float(v) for v in data_range)
        if not high > low:
            raise RcertError(f"a data range needs low < high, got {list(data_range)}")
        weight = self.features[0].weight
        x = (2.0 * (x - low) / (high - low) - 1.0).to(weight.dtype)
        x = x.expand(-1, 3, -1, -1)  # grey: the one channel repeated, RGB: unchanged
        shift = torch.tensor(SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor(SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - shift) / scale
        found = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS[self.net]:
                found.append(x)
        return found


def _unit(x: Tensor) -> Tensor:
    # lpips' normalize_tensor exactly. sqrt has an infinite slope at 0, but a channel vector
    # is 0 only where every ReLU before the tap is off, and the ReLU's backward zeroes that.
    return x / (x.square().sum(1, keepdim=True).sqrt() + EPS)


@functools.cache
def smallest_side(net: str) -> int:
    """The smallest image side (pixels) at which every lpips tap of ``net``'s backbone has a
    non-empty feature map, found by passing shapes through its layers on the meta device."""
    choice(net, "LPIPS backbone", NETS)
    with torch.device("meta"):
        features = _features(net)

    def fits(side: int) -> bool:
        try:
            x = torch.empty(1, 3, side, side, device="meta")
            for layer in features:
                x = layer(x)
                if x.numel() == 0:
                    return False
        except RuntimeError:  # torch refuses an output size below 1
            return False
        return True

    # Every layer's output side grows with its input side, so fitting is monotone.
    low, high = 1, _MAX_SIDE
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return low


@functools.cache
def _shapes(net: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {name: tuple(t.shape) for name, t in LPIPS(net).state_dict().items()}


def _detect(state: Mapping[str, Tensor], path: Path) -> str:
    """The backbone whose tensor names and shapes ``state`` matches best."""
    fit = {net: sum(tuple(state[k].shape) == shape for k, shape in _shapes(net).items()
                    if k in state) for net in NETS}
    best = max(NETS, key=fit.__getitem__)
    if fit[best] == 0 or list(fit.values()).count(fit[best]) > 1:
        raise RcertError(
            f"cannot tell the backbone of LPIPS weights {path} from its tensors (torchvision's "
            f"features.* and lpips' lin0-lin4); pass net='alex' or net='vgg', {_DOC_HINT}")
    return best


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" (and {len(names) - 3} more)" if len(names) > 3 else "")


def _check_state(state: Mapping[str, Tensor], net: str, path: Path) -> None:
    """Refuse missing, unexpected, non-float or misshapen tensors, naming them."""
    expected = _shapes(net)
    backbone = "alexnet" if net == "alex" else "vgg16"
    needs = (f"the file needs the backbone (torchvision's {backbone} features.*) and lpips' "
             f"lin0-lin4 layers, {_DOC_HINT}")
    missing = [name for name in expected if name not in state]
    if missing:
        raise RcertError(f"LPIPS weights {path} lack {_few(missing)}; {needs}")
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise RcertError(f"LPIPS weights {path} hold unexpected tensors {_few(unexpected)}; "
                         f"keep only those of {net} LPIPS: {needs}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape or not state[name].is_floating_point():
            raise RcertError(
                f"LPIPS weights {path}: {name} is a {state[name].dtype} tensor of shape "
                f"{list(state[name].shape)}, {net} LPIPS needs floats of shape {list(shape)}; "
                f"{needs}")


def load_lpips(path: str | os.PathLike[str], *, net: str | None = None) -> LPIPS:
    """The LPIPS distance (Zhang et al. 2018, Eq 1) with the weights in ``path``, in eval mode,
    its parameters frozen (``requires_grad_(False)``), as float32 on the CPU.

    Parameters
    ----------
    path
        A safetensors file or a ``torch.save`` state dict (read with ``weights_only=True``,
        never unpickled): torchvision's ``features.*`` tensors of ``alexnet`` or ``vgg16``
        and lpips' ``lin0.model.1.weight`` ... ``lin4.model.1.weight``.
    net
        ``"alex"`` or ``"vgg"``; None tells it from the tensors' names and shapes.

    Raises
    ------
    RcertError
        A missing, unreadable or unsafe file; tensors missing, unexpected, misshapen or
        non-finite; a backbone that cannot be told.
    """
    path = check_regular(path, "LPIPS weights", "pass the file of --lpips-weights, "
                         + _DOC_HINT)
    held, _ = read_weights(path)
    state = find_state_dict(held, path)
    refuse_nonfinite(state, "LPIPS weights", path)
    net = _detect(state, path) if net is None else choice(net, "LPIPS backbone", NETS)
    _check_state(state, net, path)
    # Built on the meta device: no time spent on random weights that are replaced at once.
    with torch.device("meta"):
        model = LPIPS(net)
    model = model.to_empty(device="cpu")
    model.load_state_dict(dict(state))
    return model.eval().requires_grad_(False)
