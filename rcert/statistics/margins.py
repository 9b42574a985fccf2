"""The Theorem 1 family of margins [C Eq 4] and the exact latent margin (SPEC sections 4-5).

Plain numpy functions over arrays of inputs. Conventions shared by every margin:

* a margin is never negative: when ``t(p) <= 0`` the input is not r-robust even
  unperturbed and its margin is 0 (Theorem 1 says nothing there);
* a zero Jacobian with ``t(p) > 0`` gives an unbounded margin, ``inf``, never a division
  by zero.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def capped_p_hat(p_hat: np.ndarray, n: int) -> np.ndarray:
    """``p_hat`` capped at ``1 - 1/(2n)`` so that ``Phi^{-1}`` stays finite (SPEC section 4)."""
    return np.minimum(np.asarray(p_hat, dtype=np.float64), 1.0 - 0.5 / n)


def probit_gap(p: np.ndarray, m: float) -> np.ndarray:
    """``t(p) = Phi^{-1}(p) - Phi^{-1}(m)``, the numerator of Theorem 1 over ``s_min``."""
    return stats.norm.ppf(np.asarray(p, dtype=np.float64)) - stats.norm.ppf(m)


def _margin(numerator: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """``numerator / norm``, with the conventions above for ``numerator <= 0`` and ``norm = 0``."""
    numerator = np.asarray(numerator, dtype=np.float64)
    norm = np.asarray(norm, dtype=np.float64)
    positive = numerator > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(norm > 0, numerator / np.where(norm > 0, norm, 1.0), np.inf)
    return np.where(positive, ratio, 0.0)


def theorem1(sigma_min: np.ndarray, t: np.ndarray, jacobian_fro: np.ndarray) -> np.ndarray:
    """Theorem 1 as published [C Eq 4]: ``s_min * t(p0) / ||J||_F``."""
    return _margin(np.asarray(sigma_min) * np.asarray(t), jacobian_fro)


def spectral(sigma_min: np.ndarray, t: np.ndarray, jacobian_spec: np.ndarray) -> np.ndarray:
    """Spectral relative of Theorem 1: ``s_min * t(p0) / ||J||_2`` (SPEC section 4)."""
    return _margin(np.asarray(sigma_min) * np.asarray(t), jacobian_spec)


def whitened(t: np.ndarray, jacobian_whitened: np.ndarray) -> np.ndarray:
    """Whitened relative of Theorem 1: ``t(p0) / ||diag(1/sigma) J||_2`` (SPEC section 4)."""
    return _margin(t, jacobian_whitened)


def latent_margin(sigma_min: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Exact latent certificate ``R_z(x) >= s_min * t(p0)`` (SPEC section 5), no linearisation."""
    return np.maximum(np.asarray(sigma_min, dtype=np.float64) * np.asarray(t), 0.0)
