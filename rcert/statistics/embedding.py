"""Two-dimensional embeddings of latent codes for plots: t-SNE (van der Maaten and Hinton
2008), as in Lu & Chen's Fig. 9 of clean against adversarial codes (spec section 4.4), whose
t-SNE settings the paper does not give.
"""

from __future__ import annotations

import numpy as np

from rcert.errors import RcertError
from rcert.values import check_seed, positive_float

#: scikit-learn takes a random_state below 2**32; larger rcert seeds are folded into it.
_STATE_LIMIT = 2**32


def tsne(codes: np.ndarray, *, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """The t-SNE embedding of ``codes`` in two dimensions (van der Maaten and Hinton 2008, the
    KL objective of their Eq 2), ``(N, 2)``, by scikit-learn's ``TSNE`` with PCA
    initialisation and ``random_state=seed`` (modulo ``2**32``).

    Parameters
    ----------
    codes
        ``(N, d_z)`` finite latent codes, ``N >= 3``. With ``d_z <= 2`` they are returned
        as they are (a copy, as float64), padded with a column of zeros when ``d_z == 1``:
        nothing needs embedding.
    seed
        Fixes the embedding: the same seed gives the same result.
    perplexity
        t-SNE's effective number of neighbours. scikit-learn needs it below ``N``, and with
        few points a large one blurs every neighbourhood into one, so it is lowered to
        ``(N - 1) / 3`` when larger (e.g. 2.33 for ``N = 8``, the paper's batch).

    Raises
    ------
    RcertError
        Codes that are not a 2-D array of finite numbers with at least 3 rows, a bad seed or
        perplexity.
    """
    try:
        x = np.asarray(codes, dtype=np.float64)
    except (TypeError, ValueError):
        raise RcertError("t-SNE needs numeric codes; convert them to an array first") from None
    if x.ndim != 2 or x.shape[1] == 0:
        raise RcertError(f"t-SNE needs codes of shape (N, d_z), got {x.shape}; flatten each "
                         f"code to one row")
    if x.shape[0] < 3:
        raise RcertError(f"t-SNE needs at least 3 codes, got {x.shape[0]}; embed more rows")
    if not np.isfinite(x).all():
        raise RcertError(f"t-SNE codes hold {int((~np.isfinite(x)).sum())} NaN or infinite "
                         f"value(s); drop the rows whose encoding or attack failed")
    seed = check_seed(seed)
    perplexity = positive_float(perplexity, "perplexity")
    if x.shape[1] <= 2:
        return np.hstack([x, np.zeros((x.shape[0], 2 - x.shape[1]))])
    from sklearn.manifold import TSNE

    model = TSNE(n_components=2, perplexity=min(perplexity, (x.shape[0] - 1) / 3),
                 init="pca", random_state=seed % _STATE_LIMIT)
    return np.asarray(model.fit_transform(x), dtype=np.float64)
