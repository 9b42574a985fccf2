"""The cases on latent adversarial training (Lu & Chen Algorithm 1, ``rcert train
--adversarial``): its options without the flag, impossible budgets and windows, a model
whose decoder it cannot isolate; and ``rcert measure`` and ``rcert curve`` on a
deterministic autoencoder, which has no sigma for them."""

from __future__ import annotations

import numpy as np

from .core import GOOD, OUT, case, curve, train
from .make_files import good_inputs, npy
from .make_models import dae_checkpoint

CATEGORY = "adversarial training and sigma"
#: The training attack, cheap, with an SSIM window that fits the 8x8 inputs.
ADV = ("--adversarial", "--adversarial-ssim-window", "7", "--adversarial-steps", "2")


def adversarial_training() -> None:
    """``rcert train --adversarial`` with settings that cannot be; measure and curve on a
    DAE."""
    many = npy("x.npy", good_inputs(40))
    vectors = npy("x.npy", np.random.default_rng(0).random((40, 64)).astype(np.float32))
    epsilon = r"--adversarial-epsilon must be a finite number > 0"
    trains = [
        ("option_without_flag", train("{t}/x.npy", "--adversarial-epsilon", "0.1"), many,
         r"--adversarial-epsilon applies to latent adversarial training.*add --adversarial"),
        ("steps_without_flag", train("{t}/x.npy", "--adversarial-steps", "3"), many,
         r"--adversarial-steps applies to latent adversarial training"),
        ("epsilon_negative", train("{t}/x.npy", *ADV, "--adversarial-epsilon=-1"), many,
         epsilon),
        ("epsilon_zero", train("{t}/x.npy", *ADV, "--adversarial-epsilon", "0"), many,
         epsilon),
        ("epsilon_nan", train("{t}/x.npy", *ADV, "--adversarial-epsilon", "nan"), many,
         epsilon),
        ("repeats_zero", train("{t}/x.npy", *ADV, "--adversarial-repeats", "0"), many,
         r"--adversarial-repeats must be an integer >= 1"),
        ("window_even", train("{t}/x.npy", "--adversarial", "--adversarial-ssim-window", "8"),
         many, r"--adversarial-ssim-window must be odd"),
        # The default 11-pixel window on 8x8 inputs: the message names train's own option.
        ("window_larger_than_images", train("{t}/x.npy", "--adversarial"), many,
         r"11-pixel SSIM window does not fit 8x8 images.*--adversarial-ssim-window 7"),
        ("ssim_on_vectors", train("{t}/x.npy", "--adversarial"), vectors,
         r"SSIM distance needs image inputs.*--adversarial-distance mse"),
        ("distance_unknown", train("{t}/x.npy", "--adversarial", "--adversarial-distance",
                                   "l1"), many, r"--adversarial-distance"),
        ("hierarchical_model", train("{t}/x.npy", *ADV, "--family", "seatbelt"), many,
         r"one-layer model's decoder"),
    ]
    for id, argv, setup, match in trains:
        case(f"adversarial_{id}", argv, setup, match=match, category=CATEGORY)

    dae, ckpt = "{t}/dae.safetensors", dae_checkpoint()
    needs = r"deterministic (autoencoder|encoder).*no sigma.*needs sigma"
    measure = ("measure", "--model", dae, "--data", GOOD, "--quiet", *OUT)
    sigma_cases = [
        ("dae_measure", measure, needs + r".*rcert latent-attack"),
        ("dae_measure_with_draws", (*measure, "--draws", "2", "--levels", "0.5"), needs),
        # Without --r a DAE has no recommended r; it must hear that the curve needs sigma,
        # not be sent for an r that would then be refused.
        ("dae_curve_without_r", curve(dae), needs + r".*rcert attack --kind damage"),
        ("dae_curve", curve(dae, "--r", "0.5"), needs + r".*rcert attack --kind damage"),
        ("dae_curve_max_damage", curve(dae, "--r", "0.5", "--direction", "max-damage"),
         needs),
    ]
    for id, argv, match in sigma_cases:
        case(id, argv, ckpt, match=match, category=CATEGORY)
