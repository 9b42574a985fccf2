"""The cases on Lu & Chen's latent attacks: ``rcert latent-attack`` and ``rcert
latent-margin`` with impossible budgets, choices, targets, scores, limit lines and sections,
on a model without the sigma they need; ``rcert plot`` of latent results that lack what the
plot draws."""

from __future__ import annotations

from pathlib import Path

from .core import GOOD, OUT, M, case, plot
from .make_files import margin_doc, result_file
from .make_models import save_model

CATEGORY = "latent attacks"
#: Two good inputs, two budgets, two steps: a case that does not fail early still ends fast.
FAST = ("--data", GOOD, "--epsilons", "0,0.5", "--steps", "2", "--quiet", *OUT)


def latent(model: str = M, *extra: str, window: tuple[str, ...] = ("--ssim-window", "7")
           ) -> tuple[str, ...]:
    """``rcert latent-attack`` of ``model`` on the good inputs, into ``result.txt``."""
    return ("latent-attack", "--model", model, *FAST, *window, *extra)


def margin(model: str, *extra: str) -> tuple[str, ...]:
    """``rcert latent-margin`` of ``model`` on the good inputs, into ``result.txt``."""
    return ("latent-margin", "--model", model, "--data", GOOD, "--n-samples", "50",
            "--steps", "2", "--restarts", "1", "--n-noise", "4", "--quiet", *OUT, *extra)


def deterministic(t: Path) -> None:
    """An untrained 8x8 MLP with a deterministic encoder (what ``rcert train --family
    mmd-dae`` makes) as ``t/dae.safetensors``."""
    import rcert

    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,),
                              sigma_mode="none")
    save_model(t, "dae.safetensors", model=model, recommended_r=None)


def latent_doc() -> dict:
    """A hand-made ``rcert latent-attack`` result without sections: two inputs, two budgets."""
    rows = [{"seed": 0, "index": i, "batch": 0, "epsilon": e, "shift_l2": e, "loss": e / 10,
             "mse": e / 10, "ssim": 1 - e / 2} for i in (0, 1) for e in (0.0, 0.5)]
    return {"schema_version": 1, "kind": "latent",
            "config": {"goal": "untargeted", "fidelity": {"limits": ["ssim=0.4"]}},
            "model": {"path": "x.safetensors"}, "summary": {}, "inputs": rows}


def latent_attacks() -> None:
    """Budgets, choices, targets, scores, limit lines, seeds and sections that cannot be."""
    dae = "{t}/dae.safetensors"
    cases = [
        ("epsilons_negative", latent(M, "--epsilons=-1"), None, r"epsilons.*>= 0"),
        ("norm_unknown", latent(M, "--norm", "l3"), None, r"--norm.*l3|l3.*--norm"),
        ("target_unknown", latent(M, "--goal", "targeted", "--target", "grey"), None,
         r"--target.*grey|grey.*--target"),
        ("targets_wrong_shape", latent(M, "--goal", "targeted", "--target", "other",
                                       "--targets", "dsprites:test:n=4:res=16"), None,
         r"targets have shape \(1, 1, 16, 16\).*\(batch, 1, 8, 8\)"),
        ("targets_untargeted", latent(M, "--targets", "digits:test"), None,
         r"targets apply to a targeted attack"),
        ("ssim_default_window_on_8x8", latent(M, window=()), None,
         r"11-pixel window does not fit 8x8 images.*--ssim-window 7"),
        ("ssim_window_even", latent(M, window=("--ssim-window", "4")), None, r"odd"),
        ("lpips_without_weights", latent(M, "--metrics", "lpips"), None,
         r"lpips needs its weights.*--lpips-weights"),
        ("lpips_weights_missing", latent(M, "--metrics", "lpips", "--lpips-weights",
                                         "{t}/nope.safetensors"), None,
         r"LPIPS weights .*does not exist.*--lpips-weights"),
        ("limit_above_the_whole_curve", latent(M, "--limits", "ssim=1.5"), None,
         r"ssim limit line 1\.5 lies above its whole DD-curve"),
        ("limit_unknown_metric", latent(M, "--limits", "fid=3"), None, r"unknown metric 'fid'"),
        ("statistics_off_the_grid", latent(M, "--statistics-at", "0.25"), None,
         r"statistics_at 0\.25 is not on the epsilon grid"),
        ("tsne_off_the_grid", latent(M, "--tsne-at", "2"), None,
         r"tsne_at 2 is not on the epsilon grid"),
        ("untargeted_without_random_start",
         latent(M, "--goal", "untargeted", "--no-random-start"), None, r"needs random_start"),
        ("seeds_fractional", latent(M, "--seeds", "1.5"), None,
         r"--seeds takes comma-separated integers"),
        ("seeds_empty", latent(M, "--seeds", ","), None, r"seeds needs at least one seed"),
        ("seeds_negative", latent(M, "--seeds", "0,-1"), None, r"--seeds must be an integer"),
        ("r_nan", latent(M, "--r", "nan"), None, r"\br must be a finite number > 0"),
        ("scale_sigma_deterministic", latent(dae, "--scale", "sigma"), deterministic,
         r"--scale sigma needs the encoder's sigma.*deterministic encoder"),
        ("code_sample_deterministic", latent(dae, "--code", "sample"), deterministic,
         r"--code sample needs the encoder's sigma"),
        ("margin_deterministic", margin(dae, "--r", "0.5"), deterministic,
         r"deterministic encoder.*latent certificate needs sigma"),
    ]
    for id, argv, setup, match in cases:
        case(f"latent_{id}", argv, setup, match=match, category=CATEGORY)
    plots = [
        ("statistics_without_sections", "latent-statistics", latent_doc,
         r"has no statistics.*--statistics-at"),
        ("tsne_without_sections", "tsne", latent_doc, r"has no embedding.*--tsne-at"),
        ("dd_of_a_margin_result", "dd", margin_doc, r"dd needs a latent result"),
    ]
    for id, kind, make, match in plots:
        case(f"plot_latent_{id}", plot("{t}/r.json", kind=kind), result_file("r.json", make),
             match=match, category=CATEGORY)
