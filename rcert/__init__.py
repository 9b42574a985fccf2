"""rcert: certify how robust a variational autoencoder is to input perturbations.

The public API (see docs/api.md)::

    model = rcert.load("models/vae-digits.rcert")
    df = rcert.certify(model, x, r=4.0, m=0.5, n_samples=1000, alpha=0.001, seed=0)
    summary = rcert.summarize(df)
"""

from importlib.metadata import PackageNotFoundError, version

from rcert.adapters import wrap
from rcert.attacks import attack
from rcert.checkpoint import load, save
from rcert.data import load_data
from rcert.empirical import curve, empirical_margin
from rcert.errors import RcertError
from rcert.margin import certify, recommend_r
from rcert.nets import build_model
from rcert.report import summarize
from rcert.train import fit, train_checkpoint

try:
    __version__ = version("rcert")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "RcertError", "__version__", "attack", "build_model", "certify", "curve",
    "empirical_margin", "fit", "load", "load_data", "recommend_r", "save", "summarize",
    "train_checkpoint", "wrap",
]
