import math

import pytest
import safetensors.torch
import torch
from torch.nn import functional as F

from rcert.errors import RcertError
from rcert.statistics.lpips import LPIPS, load_lpips, smallest_side

# torchvision's layer tables, written out here independently of rcert: (features index,
# out channels, in channels, kernel) of each convolution.
ALEX = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]
VGG_BLOCKS = [[(0, 64, 3), (2, 64, 64)], [(5, 128, 64), (7, 128, 128)],
              [(10, 256, 128), (12, 256, 256), (14, 256, 256)],
              [(17, 512, 256), (19, 512, 512), (21, 512, 512)],
              [(24, 512, 512), (26, 512, 512), (28, 512, 512)]]
VGG = [(i, out, inp, 3) for block in VGG_BLOCKS for i, out, inp in block]
LIN_WIDTHS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}


def random_state(net, seed=0):
    """Random float32 weights of the real shapes; convolutions scaled by 1/sqrt(fan-in) so
    activations stay near unit size, lin weights >= 0 as lpips' are."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, out, inp, k in ALEX if net == "alex" else VGG:
        state[f"features.{index}.weight"] = torch.randn(out, inp, k, k, generator=g) \
            * math.sqrt(2.0 / (inp * k * k))
        state[f"features.{index}.bias"] = 0.1 * torch.randn(out, generator=g)
    for k, width in enumerate(LIN_WIDTHS[net]):
        state[f"lin{k}.model.1.weight"] = torch.rand(1, width, 1, 1, generator=g)
    return state


def reference(state, net, a, b, data_range):
    """LPIPS computed step by step with explicit functional calls, in float64."""
    w = {k: v.double() for k, v in state.items()}
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def conv(x, i, stride=1, padding=1):
        return F.relu(F.conv2d(x, w[f"features.{i}.weight"], w[f"features.{i}.bias"],
                               stride=stride, padding=padding))

    def features(x):
        low, high = data_range
        x = 2 * (x.double() - low) / (high - low) - 1
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = (x - shift) / scale
        taps = []
        if net == "alex":
            x = conv(x, 0, stride=4, padding=2)
            taps.append(x)
            x = conv(F.max_pool2d(x, 3, 2), 3, padding=2)
            taps.append(x)
            x = conv(F.max_pool2d(x, 3, 2), 6)
            taps.append(x)
            x = conv(x, 8)
            taps.append(x)
            taps.append(conv(x, 10))
            return taps
        for n, block in enumerate(VGG_BLOCKS):
            if n:
                x = F.max_pool2d(x, 2, 2)
            for i, _, _ in block:
                x = conv(x, i)
            taps.append(x)
        return taps

    total = torch.zeros(a.shape[0], dtype=torch.float64)
    for k, (fa, fb) in enumerate(zip(features(a), features(b), strict=True)):
        na = fa / (torch.sqrt(torch.sum(fa ** 2, dim=1, keepdim=True)) + 1e-10)
        nb = fb / (torch.sqrt(torch.sum(fb ** 2, dim=1, keepdim=True)) + 1e-10)
        per_pixel = F.conv2d((na - nb) ** 2, w[f"lin{k}.model.1.weight"])
        total += per_pixel.mean(dim=(1, 2, 3))
    return total


@pytest.fixture(scope="module")
def alex(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips")
    state = random_state("alex")
    safetensors.torch.save_file(state, folder / "alex.safetensors")
    torch.save(state, folder / "alex.pt")
    return state, folder


def images(shape, seed, low=0.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g)


@pytest.mark.parametrize("name", ["alex.safetensors", "alex.pt"])
def test_loads_either_file_format_frozen_and_in_eval_mode(alex, name):
    state, folder = alex
    model = load_lpips(folder / name)
    assert model.net == "alex" and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert set(model.state_dict()) == set(state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("name", ["alex.safetensors", "alex.pt"])
@pytest.mark.parametrize("data_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_agrees_with_a_step_by_step_reference_in_float64(alex, name, data_range):
    state, folder = alex
    model = load_lpips(folder / name).double()
    a = images((3, 3, 64, 64), 1, *data_range).double()
    b = images((3, 3, 64, 64), 2, *data_range).double()
    got = model(a, b, data_range=data_range)
    assert got.shape == (3,) and got.dtype == torch.float64
    torch.testing.assert_close(got, reference(state, "alex", a, b, data_range),
                               atol=1e-6, rtol=0)


def test_zero_for_identical_images_symmetric_and_nonnegative(alex):
    model = load_lpips(alex[1] / "alex.safetensors")
    a, b = images((4, 3, 64, 64), 3), images((4, 3, 64, 64), 4)
    assert torch.equal(model(a, a, data_range=(0, 1)), torch.zeros(4))
    ab, ba = model(a, b, data_range=(0, 1)), model(b, a, data_range=(0, 1))
    assert torch.equal(ab, ba)
    assert (ab > 0).all()


def test_grey_images_score_as_their_three_channel_repetition(alex):
    model = load_lpips(alex[1] / "alex.safetensors").double()
    a, b = images((2, 1, 40, 48), 5).double(), images((2, 1, 40, 48), 6).double()
    grey = model(a, b, data_range=(0, 1))
    rgb = model(a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1), data_range=(0, 1))
    torch.testing.assert_close(grey, rgb, atol=1e-12, rtol=0)


def test_is_differentiable_with_finite_gradients(alex):
    model = load_lpips(alex[1] / "alex.safetensors")
    a = images((2, 1, 32, 32), 7).requires_grad_(True)
    model(a, images((2, 1, 32, 32), 8), data_range=(0, 1)).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def _side_after(n, layers):
    for kernel, stride, padding in layers:
        n = (n + 2 * padding - kernel) // stride + 1
    return n


def test_smallest_side_matches_the_output_size_formula():
    alex_layers = [(11, 4, 2), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1)]
    expected = next(n for n in range(1, 100) if _side_after(n, alex_layers) >= 1
                    and _side_after(n, alex_layers[:2]) >= 1)
    assert smallest_side("alex") == expected == 31
    assert smallest_side("vgg") == 16  # four 2x2 pools before relu5_3


def test_refuses_images_too_small_for_alexnet(alex):
    model = load_lpips(alex[1] / "alex.safetensors")
    x = images((1, 1, 28, 28), 9)
    with pytest.raises(RcertError, match=r"at least 31x31 .* got 28x28; use vgg") as info:
        model(x, x, data_range=(0, 1))
    assert "\n" not in str(info.value)
    y = images((1, 1, 31, 31), 9)
    assert model(y, y, data_range=(0, 1)).shape == (1,)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("lin2.model.1.weight"), r"lack lin2\.model\.1\.weight; .*alexnet features"),
    (lambda s: s.update({"classifier.1.weight": torch.zeros(2, 2)}),
     r"unexpected tensors classifier\.1\.weight"),
    (lambda s: s.update({"lin1.model.1.weight": torch.zeros(1, 64, 1, 1)}),
     r"lin1\.model\.1\.weight .*shape \[1, 64, 1, 1\], alex LPIPS needs .*\[1, 192, 1, 1\]"),
    (lambda s: s.update({"features.0.bias": torch.full((64,), math.nan)}), r"holds NaN"),
])
def test_refuses_weights_that_do_not_fit(tmp_path, edit, message):
    state = random_state("alex")
    edit(state)
    safetensors.torch.save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(RcertError, match=message) as info:
        load_lpips(tmp_path / "w.safetensors", net="alex")
    assert "\n" not in str(info.value)


def test_refuses_a_missing_file_the_wrong_backbone_and_unknown_tensors(tmp_path, alex):
    with pytest.raises(RcertError, match="does not exist"):
        load_lpips(tmp_path / "nothing.safetensors")
    with pytest.raises(RcertError, match=r"lack features\.2\.weight, .*vgg16 features"):
        load_lpips(alex[1] / "alex.pt", net="vgg")
    with pytest.raises(RcertError, match="unknown LPIPS backbone 'squeeze'"):
        load_lpips(alex[1] / "alex.pt", net="squeeze")
    safetensors.torch.save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(RcertError, match=r"cannot tell the backbone .*net='alex'"):
        load_lpips(tmp_path / "other.safetensors")


def test_refuses_pickled_code(tmp_path):
    torch.save({"lin0.model.1.weight": torch.zeros(1), "x": LPIPS}, tmp_path / "code.pt")
    with pytest.raises(RcertError, match="never unpickles code"):
        load_lpips(tmp_path / "code.pt")


def test_vgg16_is_told_from_its_keys_and_matches_the_reference(tmp_path):
    state = random_state("vgg", seed=1)
    safetensors.torch.save_file(state, tmp_path / "vgg.safetensors")
    model = load_lpips(tmp_path / "vgg.safetensors").double()
    assert model.net == "vgg"
    a, b = images((2, 1, 16, 20), 10).double(), images((2, 1, 16, 20), 11).double()
    torch.testing.assert_close(model(a, b, data_range=(0, 1)),
                               reference(state, "vgg", a, b, (0, 1)), atol=1e-6, rtol=0)
    with pytest.raises(RcertError, match=r"at least 16x16 .* got 15x20; use alex"):
        model(a[..., 1:, :], b[..., 1:, :], data_range=(0, 1))
