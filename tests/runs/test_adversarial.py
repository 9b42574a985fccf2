"""Latent adversarial training (Lu & Chen 2023, Algorithm 1; spec section 5):
:class:`rcert.runs.adversarial.LatentAdversary` as :func:`rcert.fit`'s ``after_step``, its
settings (:class:`rcert.settings.AdversarialTrainingConfig`), its record in the model card
(:func:`rcert.train_checkpoint`) and ``rcert train --adversarial``.

What is checked independently of the implementation: the decoder-only step (the encoder's
weights bit for bit, no gradient left on it), the attacked codes recomputed with
:func:`rcert.attacks.latent_pgd.latent_pgd` from the same noise and seed, the ball they lie
in, and the closed form ``-log N(x; g, s^2 I) = ||x - g||^2 / (2 s^2) + const``, which makes
the likelihood step's decoder gradient the MSE step's times ``1 / (2 s^2)``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from conftest import assert_one_error_line, strict_json
from hypothesis import given, settings
from hypothesis import strategies as st

import rcert
import rcert.runs.adversarial as adversarial_module
from rcert.attacks.latent_pgd import latent_pgd
from rcert.errors import RcertError
from rcert.models.training import fit
from rcert.runs.adversarial import LatentAdversary
from rcert.settings import AdversarialTrainingConfig, LatentAttackConfig, TrainConfig, as_dict
from rcert.settings.fields import option_name

#: Settings quick enough for many runs: MSE distance, few PGD steps.
FAST = AdversarialTrainingConfig(distance="mse", steps=2)
#: The paper's SSIM distance, with a window that fits 8x8 digits.
SSIM = AdversarialTrainingConfig(ssim_window=7, steps=3)
#: The digits model's shape, with a Gaussian likelihood of standard deviation 0.1.
TINY = {"input_shape": (1, 8, 8), "latent_dim": 3, "hidden": (16,), "likelihood": "gaussian"}
ENCODER = ("trunk", "mu_head", "sigma_head")


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return rcert.load_data("digits:train").subset(64).x


def tiny_model(seed: int = 0, **changes) -> rcert.models.nets.VAE:
    """The tiny MLP with seeded initial weights (the global generator left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return rcert.build_model("mlp", **{**TINY, **changes})


def encoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(ENCODER)}


def decoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("decoder.")}


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def noise(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def half_squared_error(model, x: torch.Tensor, z: torch.Tensor) -> float:
    """``mean_i ||x_i - g(z_i)||^2``, the Gaussian reconstruction loss up to its scale and
    constant, computed here from the decoder's output alone."""
    with torch.no_grad():
        return float((x - model.decode(z)).square().flatten(1).sum(1).mean())


class PgdRecorder:
    """Wraps the latent PGD the adversary calls: its inputs and the codes it returns."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, decode, z0, epsilons, *, config, index, **kw):
        result = latent_pgd(decode, z0, epsilons, config=config, index=index, **kw)
        self.calls.append({"z0": z0.detach().clone(), "epsilons": epsilons.clone(),
                           "config": config, "index": index.clone(), "z": result.z.clone()})
        return result


@pytest.fixture
def recorder(monkeypatch) -> PgdRecorder:
    rec = PgdRecorder()
    monkeypatch.setattr(adversarial_module, "latent_pgd", rec)
    return rec


def record_steps(adversary: LatentAdversary) -> list[dict[str, torch.Tensor]]:
    """The decoder gradients each of the adversary's optimiser steps sees (one dict a step)."""
    grads: list[dict[str, torch.Tensor]] = []
    step = adversary.optimizer.step

    def counting_step(*args, **kwargs):
        grads.append({n: p.grad.clone() for n, p in adversary.model.decoder.named_parameters()})
        return step(*args, **kwargs)

    adversary.optimizer.step = counting_step
    return grads


# ------------------------------------------------------------------ one call


def test_one_call_steps_the_decoder_alone_on_the_attacked_codes(digits):
    model = tiny_model()
    x, index = digits, torch.arange(len(digits)) + 100
    config = replace(SSIM, decoder_lr=1e-4)
    adversary = LatentAdversary(model, config, seed=11)
    before = copy.deepcopy(model)
    encoder, decoder = encoder_state(model), decoder_state(model)
    assert encoder and decoder and len(encoder) + len(decoder) == len(model.state_dict())

    generator = noise()
    state = generator.get_state()
    adversary(x, index, generator)

    # The encoder bit for bit, with no gradient left behind; every decoder tensor moved.
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in encoder.items())
    assert all(not torch.equal(after[k], v) for k, v in decoder.items())
    assert all(p.grad is None for p in model.parameters())
    assert adversary.calls == 1

    # The attacked codes, recomputed: a fresh reparameterised sample from the same noise,
    # attacked by untargeted latent PGD keyed by the training seed and the call's count.
    before.eval()
    with torch.no_grad():
        mu, sigma = before.encode(x)
        z0 = mu + sigma * torch.randn(mu.shape, generator=torch.Generator().set_state(state))
    attack = LatentAttackConfig(goal="untargeted", norm=config.norm, step=config.step,
                                step_size=config.step_size, steps=config.steps,
                                distance="ssim", epsilons=(config.epsilon,), seed=11)
    z_adv = latent_pgd(before.decode, z0, torch.tensor([config.epsilon]), config=attack,
                       index=index, data_range=before.data_range,
                       ssim=(config.ssim_window, config.ssim_sigma)).z[:, 0]
    assert not torch.equal(z_adv, z0)
    # A small decoder step lowers the attacked reconstruction loss on that batch.
    assert half_squared_error(model, x, z_adv) < half_squared_error(before, x, z_adv)


def test_the_decoder_step_takes_the_recomputed_codes(digits, recorder, monkeypatch):
    model = tiny_model()
    x, index = digits[:16], torch.arange(16)
    adversary = LatentAdversary(model, FAST, seed=3)
    seen: list[torch.Tensor] = []
    decode_logits = model.decode_logits

    def watched(z):
        if model.training:  # the decoder step runs in train mode, the attack in eval mode
            seen.append(z.detach().clone())
        return decode_logits(z)

    monkeypatch.setattr(model, "decode_logits", watched)
    generator = noise(9)
    state = generator.get_state()
    with torch.no_grad():
        mu, sigma = model.encode(x)
    adversary(x, index, generator)
    (call,) = recorder.calls
    fresh = mu + sigma * torch.randn(mu.shape, generator=torch.Generator().set_state(state))
    assert torch.equal(call["z0"], fresh)
    assert call["config"].goal == "untargeted" and call["config"].seed == 3 * 2**20
    assert call["config"].distance == "mse" and call["config"].steps == FAST.steps
    assert torch.equal(call["index"], index)
    assert len(seen) == 1 and torch.equal(seen[0], call["z"][:, 0])


@settings(max_examples=12, deadline=None)
@given(epsilon=st.floats(0.01, 2.0), norm=st.sampled_from(["l2", "linf"]),
       step=st.sampled_from(["sign", "l2"]), steps=st.integers(1, 3),
       step_size=st.floats(0.1, 3.0), seed=st.integers(0, 2**32))
def test_attacked_codes_lie_within_epsilon_of_the_fresh_code(digits, epsilon, norm, step,
                                                            steps, step_size, seed):
    model = tiny_model()
    config = AdversarialTrainingConfig(epsilon=epsilon, norm=norm, step=step, steps=steps,
                                       step_size=step_size, distance="mse")
    adversary = LatentAdversary(model, config, seed=seed)
    rec = PgdRecorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adversarial_module, "latent_pgd", rec)
        adversary(digits[:12], torch.arange(12), noise(seed % 1000))
    (call,) = rec.calls
    assert call["epsilons"].tolist() == [pytest.approx(epsilon)]
    shift = call["z"][:, 0] - call["z0"]
    assert shift.abs().max() > 0
    slack = 1 + 1e-5
    if norm == "l2":
        assert (shift.norm(dim=1) <= epsilon * slack).all()
    assert (shift.abs().amax(dim=1) <= epsilon * slack).all()  # linf <= l2 in any case


def test_a_deterministic_encoder_is_attacked_at_its_code(digits, recorder):
    model = tiny_model(sigma_mode="none")
    adversary = LatentAdversary(model, FAST, seed=0)
    generator = noise()
    state = generator.get_state()
    adversary(digits[:8], torch.arange(8), generator)
    (call,) = recorder.calls
    # The code is the encoder's output, taken before the decoder step (the encoder is
    # not updated by it, so it is still the code now).
    with torch.no_grad():
        assert torch.equal(call["z0"], model.encode(digits[:8])[0])
    # No noise is drawn for the fresh code: the training noise stream is left untouched.
    assert torch.equal(generator.get_state(), state)


# ------------------------------------------------------------------ inside fit


def adversarial_fit(x, seed: int, config=FAST, *, model_seed: int = 0, epochs: int = 2):
    model = tiny_model(model_seed)
    adversary = LatentAdversary(model, config, seed=seed)
    history = fit(model, x[:48], x[48:], epochs=epochs, batch_size=16, patience=10,
                  seed=seed, progress=False, after_step=adversary)
    return model, adversary, history


def test_training_is_deterministic_and_the_defence_changes_it(digits):
    a, _, _ = adversarial_fit(digits, seed=4)
    b, _, _ = adversarial_fit(digits, seed=4)
    assert same_weights(a, b)
    c, _, _ = adversarial_fit(digits, seed=5)
    assert not same_weights(a, c)
    plain = tiny_model(0)
    fit(plain, digits[:48], digits[48:], epochs=2, batch_size=16, patience=10, seed=4,
        progress=False)
    assert not same_weights(a, plain)
    # The decoder-only steps reach the decoder; and since the training step after them
    # starts from that decoder, the encoder too ends elsewhere.
    assert any(not torch.equal(v, decoder_state(plain)[k])
               for k, v in decoder_state(a).items())


def test_ssim_training_is_deterministic(digits):
    a, _, _ = adversarial_fit(digits, seed=2, config=SSIM, epochs=1)
    b, _, _ = adversarial_fit(digits, seed=2, config=SSIM, epochs=1)
    assert same_weights(a, b)


@settings(max_examples=3, deadline=None)
@given(repeats=st.integers(1, 4))
def test_repeats_make_that_many_decoder_steps_per_training_step(digits, repeats):
    config = replace(FAST, repeats=repeats)
    model = tiny_model()
    adversary = LatentAdversary(model, config, seed=0)
    grads = record_steps(adversary)
    rec = PgdRecorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adversarial_module, "latent_pgd", rec)
        history = fit(model, digits[:48], digits[48:], epochs=1, batch_size=16, patience=10,
                      seed=0, progress=False, after_step=adversary)
    training_steps = 3 * history["epochs_run"]  # 48 inputs in batches of 16
    assert len(grads) == adversary.calls == len(rec.calls) == repeats * training_steps
    # Each repeat attacks afresh: its own random starts (seed) and its own fresh code.
    assert [c["config"].seed for c in rec.calls] == list(range(repeats * training_steps))
    first = rec.calls[:repeats]
    assert all(not torch.equal(first[0]["z0"], c["z0"]) for c in first[1:])


# ------------------------------------------------------------------ the decoder's loss


def first_gradients(model, config, x) -> dict[str, torch.Tensor]:
    adversary = LatentAdversary(model, config, seed=1)
    grads = record_steps(adversary)
    adversary(x, torch.arange(len(x)), noise(2))
    (first,) = grads
    return first


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for _, g in sorted(grads.items())]).double()


@settings(max_examples=6, deadline=None)
@given(scale=st.floats(0.05, 2.0), seed=st.integers(0, 100))
def test_likelihood_and_mse_steps_are_parallel_for_a_gaussian_likelihood(digits, scale, seed):
    model = tiny_model(seed, gaussian_scale=scale)
    x = digits[:16]
    mse = flat(first_gradients(copy.deepcopy(model), replace(FAST, loss="mse"), x))
    lik = flat(first_gradients(copy.deepcopy(model), replace(FAST, loss="likelihood"), x))
    # -log N(x; g, s^2) = ||x - g||^2 / (2 s^2) + const: the same direction, scaled.
    cosine = float(mse @ lik / (mse.norm() * lik.norm()))
    assert cosine == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(lik.numpy(), mse.numpy() / (2 * scale**2), rtol=1e-3,
                               atol=1e-5 * float(lik.abs().max()))


def test_likelihood_and_mse_steps_differ_for_a_bernoulli_likelihood(digits):
    # The negative control: -log Bernoulli is not a scaled squared error. (Away from
    # logits near 0, where the sigmoid's slope is about constant and the two nearly agree.)
    model = tiny_model(likelihood="bernoulli")
    last = [m for m in model.decoder if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(20.0)
    mse = flat(first_gradients(copy.deepcopy(model), replace(FAST, loss="mse"), digits[:16]))
    lik = flat(first_gradients(copy.deepcopy(model), replace(FAST, loss="likelihood"),
                               digits[:16]))
    assert float(mse @ lik / (mse.norm() * lik.norm())) < 0.999


# ------------------------------------------------------------------ refusals


def one_line(info) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_a_hierarchical_model_is_refused():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = rcert.build_model("hierarchical", input_shape=(1, 8, 8), latent_dim=3,
                                  upper_dims=(2,), hidden=(16,), conditional_hidden=(8,),
                                  likelihood="gaussian")
    with pytest.raises(RcertError) as info:
        LatentAdversary(model, FAST, seed=0)
    assert "one-layer" in one_line(info)


@pytest.mark.parametrize("window", [9, 11, 13])
def test_an_ssim_window_larger_than_the_images_is_refused_at_construction(window):
    with pytest.raises(RcertError) as info:
        LatentAdversary(tiny_model(), AdversarialTrainingConfig(ssim_window=window), seed=0)
    message = one_line(info)
    assert f"{window}-pixel" in message and "8x8" in message
    assert "--adversarial-ssim-window 7" in message
    # The same window with the MSE distance needs no window at all.
    LatentAdversary(tiny_model(), AdversarialTrainingConfig(ssim_window=window,
                                                            distance="mse"), seed=0)


def test_ssim_on_vectors_is_refused_and_mse_is_not():
    vectors = tiny_model(input_shape=(10,))
    with pytest.raises(RcertError) as info:
        LatentAdversary(vectors, AdversarialTrainingConfig(ssim_window=3), seed=0)
    assert "image inputs" in one_line(info) and "mse" in str(info.value)
    adversary = LatentAdversary(vectors, FAST, seed=0)
    x = torch.rand(6, 10, generator=noise())
    adversary(x, torch.arange(6), noise())
    assert adversary.calls == 1


@settings(max_examples=15, deadline=None)
@given(epsilon=st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf),
                         st.just(True), st.just("0.05"), st.none()))
def test_a_budget_that_is_not_positive_and_finite_is_refused(epsilon):
    with pytest.raises(RcertError, match=r"^epsilon must be a finite number > 0") as info:
        AdversarialTrainingConfig(epsilon=epsilon)
    one_line(info)


@pytest.mark.parametrize(("changes", "match"), [
    ({"steps": 0}, r"^steps"), ({"repeats": 0}, r"^repeats"), ({"repeats": 1.5}, r"^repeats"),
    ({"step_size": -1.0}, r"^step_size"), ({"decoder_lr": 0.0}, r"^decoder_lr"),
    ({"ssim_window": 8}, r"^ssim_window must be odd"), ({"ssim_sigma": 0.0}, r"^ssim_sigma"),
    ({"loss": "l1"}, r"loss"), ({"distance": "l1"}, r"distance"), ({"norm": "l3"}, r"norm"),
    ({"step": "adam"}, r"step"),
])
def test_other_impossible_settings_are_refused(changes, match):
    with pytest.raises(RcertError, match=match) as info:
        AdversarialTrainingConfig(**changes)
    one_line(info)


# ------------------------------------------------------------------ the card


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory, digits) -> str:
    path = tmp_path_factory.mktemp("adv_data") / "x.npy"
    np.save(path, digits.numpy())
    return str(path)


def train(data: str, out, adversarial=None) -> dict:
    return rcert.train_checkpoint(data, out, hparams={"latent_dim": 3, "hidden": [16],
                                                      "likelihood": "gaussian"},
                                  config=TrainConfig(epochs=2, batch_size=16, seed=3),
                                  progress=False, adversarial=adversarial)


def test_the_card_records_every_setting_and_the_checkpoint_loads(digits_file, tmp_path):
    config = AdversarialTrainingConfig(epsilon=0.2, steps=2, repeats=2, norm="linf",
                                       distance="mse", loss="mse", decoder_lr=3e-4)
    out = tmp_path / "adv.safetensors"
    card = train(digits_file, out, config)
    record = card["adversarial_training"]
    assert {k: v for k, v in record.items() if k != "algorithm"} == as_dict(config)
    assert set(record) - {"algorithm"} == {f.name for f in fields(config)}
    assert "Algorithm 1" in record["algorithm"]
    assert strict_json(out.with_suffix(".json").read_text()) == card
    model = rcert.load(out)
    assert model.meta["extra"]["adversarial_training"] == record
    x = torch.from_numpy(np.load(digits_file))[:4]
    assert torch.isfinite(model.decode(model.encode(x)[0])).all()

    plain_out = tmp_path / "plain.safetensors"
    plain = train(digits_file, plain_out)
    assert "adversarial_training" not in plain
    assert "adversarial_training" not in rcert.load(plain_out).meta["extra"]
    assert not same_weights(model, rcert.load(plain_out))


# ------------------------------------------------------------------ the command line


def test_rcert_train_adversarial_prints_the_settings(run, tmp_path):
    out = tmp_path / "adv.safetensors"
    code, stdout, err = run("train", "--data", "digits:train", "--epochs", "2", "--adversarial",
                            "--adversarial-ssim-window", "7", "--adversarial-steps", "2",
                            "--latent-dim", "3", "--hidden", "16", "--out", out, "--quiet")
    assert code == 0, err
    card = strict_json(stdout)
    expected = as_dict(AdversarialTrainingConfig(ssim_window=7, steps=2))
    assert {k: v for k, v in card["adversarial_training"].items() if k != "algorithm"} \
        == expected
    assert json.loads(out.with_suffix(".json").read_text()) == card
    assert rcert.load(out).meta["extra"]["adversarial_training"] == card["adversarial_training"]


@pytest.mark.parametrize("name", [f.name for f in fields(AdversarialTrainingConfig)])
def test_an_adversarial_option_without_the_flag_is_refused(run, tmp_path, name):
    value = {"norm": "linf", "step": "l2", "distance": "mse", "loss": "mse"}.get(name, "3")
    option = option_name(f"adversarial_{name}")
    code, out, err = run("train", "--data", "digits:train", "--out", tmp_path / "m.safetensors",
                         option, value, "--quiet")
    line = assert_one_error_line(code, out, err)
    assert option in line and "--adversarial" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("value", "match"), [("-1", r"--adversarial-epsilon must be"),
                                              ("0", r"--adversarial-epsilon must be"),
                                              ("nan", r"--adversarial-epsilon must be")])
def test_a_bad_budget_on_the_command_line_is_refused(run, tmp_path, value, match):
    code, out, err = run("train", "--data", "digits:train", "--out", tmp_path / "m.safetensors",
                         "--adversarial", f"--adversarial-epsilon={value}", "--quiet")
    line = assert_one_error_line(code, out, err)
    assert re.search(match, line)


def test_the_help_lists_every_adversarial_option(run):
    code, out, err = run("train", "--help")
    assert code == 0, err
    assert "--adversarial " in out or "--adversarial\n" in out
    for f in fields(AdversarialTrainingConfig):
        assert option_name(f"adversarial_{f.name}") in out
