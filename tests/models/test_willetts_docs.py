"""The figures that docs/models.md and docs/willetts.md print for the models of Willetts et
al. agree with their sources: the model cards, and docs/figures/willetts.json, which
docs/figures/willetts.py writes."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = json.loads((ROOT / "docs" / "figures" / "willetts.json").read_text())
WILLETTS = (ROOT / "docs" / "willetts.md").read_text()


def _row(text: str, label: str) -> list[str]:
    """The cells after the first of a Markdown table row that starts with ``| label |``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


@pytest.mark.parametrize("name", ["tcvae1", "tcvae8", "seatbelt1", "seatbelt8", "dlgm8"])
def test_the_models_table_is_the_cards(name):
    card = json.loads((ROOT / "models" / f"{name}-dsprites.json").read_text())
    cells = _row((ROOT / "docs" / "models.md").read_text(), f"`{name}-dsprites.safetensors`")
    assert float(cells[2]) == round(card["metrics"]["best_val_elbo"], 1)
    assert float(cells[3]) == round(card["metrics"]["test_elbo"], 1)
    assert float(cells[4]) == card["recommended_r"]


@pytest.mark.parametrize("beta", [1, 2, 4, 8])
def test_the_c1_and_c2_tables_are_the_scripts_numbers(beta):
    run = RESULTS["attacks"][f"tcvae{beta}"]
    label = f"β-TCVAE β = {beta}" + (" (a VAE)" if beta == 1 else "")
    median, interval = _row(WILLETTS, label)
    assert float(median) == round(run["delta_median"][0], 2)
    assert [float(v) for v in interval.split(" – ")] == [round(v, 2)
                                                         for v in run["delta_median"][1:]]
    mean, interval = _row(WILLETTS.split("## C2")[1], f"β-TCVAE β = {beta}")
    assert int(mean) == round(run["neg_log_lik_mean"][0])
    assert [int(v) for v in interval.split(" – ")] == [round(v)
                                                       for v in run["neg_log_lik_mean"][1:]]


@pytest.mark.parametrize(("name", "label"), [
    ("tcvae1", "VAE (β-TCVAE β = 1)"), ("tcvae8", "β-TCVAE β = 8"),
    ("seatbelt1", "Seatbelt β = 1"), ("seatbelt8", "Seatbelt β = 8"), ("dlgm8", "DLGM β = 8")])
def test_the_certificate_table_is_the_scripts_numbers(name, label):
    got = RESULTS["certificates"][name]
    cells = _row(WILLETTS.split("## What the certificates add")[1], label)
    shown = [float(re.sub(r"[^0-9.]", "", c)) for c in cells]
    expected = [100 * got["certified_share"], got["sigma_min_median"],
                got["jacobian_whitened_median"], got["bound_whitened_median"],
                got["latent_margin_median"], got["margin_empirical_median"], got["violations"]]
    for value, want in zip(shown, expected, strict=True):
        assert value == pytest.approx(want, rel=0.01, abs=6e-4)
