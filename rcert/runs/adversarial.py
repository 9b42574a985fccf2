"""Latent adversarial training (Lu & Chen 2023, Algorithm 1): after every training step,
``repeats`` times, attack a fresh code of each input of the batch with untargeted latent
PGD and take a decoder-only step on the reconstruction loss of the attacked code.

Executable reading (Lu & Chen spec section 5), every unstated choice a field of
:class:`rcert.settings.AdversarialTrainingConfig`:

* the attacked code ``z0`` is a fresh reparameterised sample ``mu + sigma * eps`` of the
  batch (the mean for a deterministic encoder), detached: the encoder gets no gradient;
* the attack is :func:`rcert.attacks.latent_pgd.latent_pgd`, untargeted, from a random
  start in the ball around ``z0`` (Algorithm 1 gets its first gradient from comparing two
  different samples; from ``z0`` itself the gradient is 0), distance ``1 - SSIM`` by
  default, in eval mode;
* the decoder step minimises ``-log p(x | z*)`` (the training objective's reconstruction
  term; the paper's MSE for a Gaussian likelihood) or the MSE, with Adam over the
  decoder's parameters only and its own optimiser state (``decoder_lr``).

The random starts come from the per-input noise of :mod:`rcert.engine.noise`, keyed by the
training seed, the step's count and the inputs' positions, so the same seed trains the
same weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from rcert.attacks.latent_pgd import latent_pgd
from rcert.errors import RcertError
from rcert.models.nets import VAE
from rcert.settings import AdversarialTrainingConfig, LatentAttackConfig, as_dict
from rcert.statistics.fidelity import check_window

#: Attack calls a training run makes before its starts could repeat another seed's.
_CALL_STRIDE = 2**20


class LatentAdversary:
    """The decoder-only half of Algorithm 1, called after each training step of
    :func:`rcert.fit` (its ``after_step``).

    Parameters
    ----------
    model
        A one-layer rcert architecture (its ``decoder`` module is what the steps update).
    config
        The attack and the decoder step.
    seed
        The training seed; each call's random starts are keyed by it and the call's count.
    """

    def __init__(self, model: VAE, config: AdversarialTrainingConfig, seed: int) -> None:
        decoder = getattr(model, "decoder", None)
        if not isinstance(decoder, torch.nn.Module) or model.traits.stochastic_layers > 1:
            raise RcertError("latent adversarial training updates a one-layer model's decoder "
                             "(Lu & Chen Algorithm 1); this model has none it can isolate")
        if config.distance == "ssim":
            _check_ssim(tuple(model.input_shape), config.ssim_window)
        self.model, self.config, self.seed = model, config, seed
        self.optimizer = torch.optim.Adam(decoder.parameters(), lr=config.decoder_lr)
        self.attack = LatentAttackConfig(
            goal="untargeted", norm=config.norm, step=config.step,
            step_size=config.step_size, steps=config.steps, distance=config.distance,
            epsilons=(config.epsilon,))
        self.calls = 0

    def __call__(self, x: Tensor, index: Tensor, generator: torch.Generator) -> None:
        """``repeats`` attack-and-decoder steps on the batch ``x`` (positions ``index``)."""
        for _ in range(self.config.repeats):
            z_adv = self._attacked_codes(x, index, generator)
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            self._loss(x, z_adv).backward()
            self.optimizer.step()
            self.calls += 1
        # The encoder's gradients from the decoder step are not applied; drop them.
        self.model.zero_grad(set_to_none=True)

    def _attacked_codes(self, x: Tensor, index: Tensor, generator: torch.Generator) -> Tensor:
        self.model.eval()
        with torch.no_grad():
            mu, sigma = self.model.encode(x)
            z0 = mu
            if self.model.traits.stochastic:
                z0 = mu + sigma * torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                                              device=mu.device)
        # Each call's starts are its own: the count is mixed into the seed, with a stride
        # so that two training seeds share no starts within _CALL_STRIDE calls.
        attack = dataclasses.replace(self.attack, seed=self.seed * _CALL_STRIDE + self.calls)
        result = latent_pgd(self.model.decode, z0, torch.tensor([self.config.epsilon],
                                                                dtype=z0.dtype,
                                                                device=z0.device),
                            config=attack, index=index.to(z0.device),
                            data_range=self.model.data_range,
                            ssim=(self.config.ssim_window, self.config.ssim_sigma))
        return result.z[:, 0]

    def _loss(self, x: Tensor, z_adv: Tensor) -> Tensor:
        if self.config.loss == "mse":
            return (self.model.decode(z_adv) - x).square().flatten(1).sum(1).mean()
        return -self.model.log_likelihood(x, z_adv).mean()

    def record(self) -> dict[str, Any]:
        """What the checkpoint card records: every setting of the defence."""
        return {"algorithm": "Lu & Chen 2023, Algorithm 1", **as_dict(self.config)}


def _check_ssim(shape: tuple[int, ...], window: int) -> None:
    """Refuse an SSIM attack distance that is undefined on the model's inputs, naming the
    defence's own settings (``rcert train`` has no ``--ssim-window``)."""
    try:
        check_window(shape, window)
    except RcertError:
        if len(shape) != 3:
            raise RcertError(f"adversarial training's SSIM distance needs image inputs "
                             f"(channels, height, width), got inputs of shape {shape}; pass "
                             f"distance 'mse' (--adversarial-distance mse)") from None
        side = min(shape[1:])
        fit = side if side % 2 else side - 1
        raise RcertError(f"adversarial training's {window}-pixel SSIM window does not fit "
                         f"{shape[1]}x{shape[2]} images; pass ssim_window {fit} or less "
                         f"(odd; --adversarial-ssim-window {fit}), or distance 'mse'") from None
