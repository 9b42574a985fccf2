"""Fidelity scores of a reconstruction against a reference, one value per image: MSE, the L2
distance, SSIM and PSNR (Lu & Chen spec section 4.1).

PSNR comes from torchmetrics (imported on first use). SSIM is computed here, as torchmetrics
computes it (reflection padding, the Gaussian-weighted statistics over the whole image), but
with the Gaussian window of the size asked for: torchmetrics' ``gaussian_kernel=True``
ignores ``kernel_size`` and sizes its window from sigma alone (11 pixels for sigma 1.5), so
a smaller window for small images would be silently ignored, or fail inside torchmetrics.
Both always take the data range given explicitly: left to infer it from the images, SSIM
shifts when both are nearly constant (a near-black reconstruction against a black target).
Images are first shifted so that the data range starts at 0, so a score does not depend on
where the range lies: SSIM on ``[-1, 1]`` data equals SSIM on the same images mapped to
``[0, 1]``. Everything is differentiable, so ``1 - ssim`` serves as an attack distance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rcert.errors import RcertError

#: PSNR's floor on the mean squared error, as a share of the squared range: identical
#: images score 100 dB, not infinity.
MSE_FLOOR = 1e-10


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error per image, ``(B,)``."""
    return (a - b).square().flatten(1).mean(1)


def l2(a: Tensor, b: Tensor) -> Tensor:
    """``||a - b||_2`` per image, ``(B,)``: the distance r-robustness thresholds."""
    return (a - b).flatten(1).norm(dim=1)


def check_window(shape: tuple[int, ...], window: int) -> None:
    """Refuse SSIM where it is undefined: inputs that are not ``(C, H, W)`` images, or images
    smaller than the window (the score would be computed from padding)."""
    if len(shape) != 3:
        raise RcertError(f"SSIM needs image inputs (channels, height, width), got inputs of "
                         f"shape {tuple(shape)}; drop ssim from the metrics")
    side = min(shape[1:])
    if window > side:
        fit = side if side % 2 else side - 1
        raise RcertError(f"SSIM's {window}-pixel window does not fit {shape[1]}x{shape[2]} "
                         f"images; pass --ssim-window {fit} or less (odd)")


def ssim(a: Tensor, b: Tensor, *, data_range: tuple[float, float], window: int,
         sigma: float) -> Tensor:
    """Structural similarity per image, ``(B,)`` (Wang et al. 2004, Eq 13; Gaussian window of
    ``window`` pixels and standard deviation ``sigma``, ``K1 = 0.01``, ``K2 = 0.03``, the
    dynamic range ``L = high - low``), for ``(B, C, H, W)`` images, averaged over every pixel
    and channel of the reflection-padded image (as torchmetrics does). 1 for identical
    images; higher is better."""
    check_window(tuple(a.shape[1:]), window)
    low, span = _range(data_range)
    a, b = a - low, b - low
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    dist = torch.arange(window, dtype=a.dtype, device=a.device) - (window - 1) / 2
    gauss = torch.exp(-0.5 * (dist / sigma) ** 2)
    gauss = gauss / gauss.sum()
    channels = a.shape[1]
    kernel = (gauss[:, None] * gauss[None, :]).expand(channels, 1, window, window)
    pad = (window - 1) // 2
    stack = torch.nn.functional.pad(torch.cat((a, b, a * a, b * b, a * b)), (pad,) * 4,
                                    mode="reflect")
    mu_a, mu_b, aa, bb, ab = torch.nn.functional.conv2d(stack, kernel,
                                                        groups=channels).split(len(a))
    var_a = (aa - mu_a.square()).clamp_min(0.0)
    var_b = (bb - mu_b.square()).clamp_min(0.0)
    cov = ab - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(1)


def psnr(a: Tensor, b: Tensor, *, data_range: tuple[float, float]) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, ``(B,)``:
    ``10 log10(L^2 / max(MSE, MSE_FLOOR L^2))``; at most 100 dB. Higher is better."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    low, span = _range(data_range)
    value = peak_signal_noise_ratio(a - low, b - low, data_range=span, reduction="none",
                                    dim=tuple(range(1, a.dim())))
    return value.clamp_max(-10.0 * torch.log10(torch.tensor(MSE_FLOOR)).item())


def _range(data_range: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(v) for v in data_range)
    if not high > low:
        raise RcertError(f"a data range needs low < high, got {list(data_range)}")
    return low, high - low
