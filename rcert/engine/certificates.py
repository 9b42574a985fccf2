"""The certificates rcert computes, and which model families each one covers.

One registry, read by :func:`rcert.engine.certify.certify`: a certificate lists the columns it
produces and the model traits it needs (:class:`rcert.models.contract.ModelTraits`). A
family that a certificate does not cover gets no column, never a number computed outside
the certificate's assumptions. New families plug in through their traits, not through
branches in ``certify``.

What each column guarantees (SPEC sections 3-5; docs/statistics.md):

==================  ========================================================================
certificate         guarantee
==================  ========================================================================
``jacobian``        exact: ``||J||_F`` and ``||J||_2`` of ``J = d mu / d x`` (torch.func)
``encoder``         exact: the encoder's ``sigma`` at ``x``
``monte_carlo``     ``p_lower``, ``r_min_upper``: hold with probability >= 1 - alpha over the
                    draws; ``p_hat``, ``r_min``: point estimates
``theorem1``        ``bound`` (with ``p_hat``): the paper's number, first order only;
                    ``bound_certified`` (with ``p_lower``): probability >= 1 - alpha, up to
                    the theorem's first-order O(eps) term
``spectral``,       as ``bound_certified``: probability >= 1 - alpha, first order
``whitened``
``latent``          ``latent_margin``: exact (no linearisation), probability >= 1 - alpha
==================  ========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rcert.models.contract import ModelTraits

#: Columns of :func:`rcert.engine.certify.certify`'s DataFrame, a public contract
#: (docs/api.md), in this order; a model gets the subset its certificates cover.
COLUMNS = (
    "index", "sigma_min", "sigma_mean", "jacobian_fro", "jacobian_spec", "jacobian_whitened",
    "k", "n", "p_hat", "p_lower", "r_min", "r_min_upper",
    "bound", "bound_certified", "bound_spectral", "bound_whitened", "latent_margin", "abstain",
)


def _always(traits: ModelTraits) -> bool:
    return True


def _stochastic(traits: ModelTraits) -> bool:
    return traits.stochastic


def _first_layer(traits: ModelTraits) -> bool:
    # SPEC section 8: the theorem's argument needs the perturbation to shift only the
    # first layer's mean; where x feeds the upper layers no written derivation supports it.
    return traits.perturbation_reaches_first_layer_only


@dataclass(frozen=True)
class Certificate:
    """A named group of columns and the model traits it needs."""

    name: str
    columns: tuple[str, ...]
    applies: Callable[[ModelTraits], bool]


REGISTRY: tuple[Certificate, ...] = (
    Certificate("jacobian", ("jacobian_fro", "jacobian_spec"), _always),
    Certificate("encoder", ("sigma_min", "sigma_mean", "jacobian_whitened"), _stochastic),
    Certificate("monte_carlo", ("k", "n", "p_hat", "p_lower", "r_min", "r_min_upper",
                                "abstain"), _stochastic),
    Certificate("theorem1", ("bound", "bound_certified"), _first_layer),
    Certificate("spectral", ("bound_spectral",), _first_layer),
    Certificate("whitened", ("bound_whitened",), _first_layer),
    Certificate("latent", ("latent_margin",), _first_layer),
)


def applicable(traits: ModelTraits) -> tuple[Certificate, ...]:
    """The certificates that cover a model with these traits."""
    return tuple(c for c in REGISTRY if c.applies(traits))


def columns_for(traits: ModelTraits) -> tuple[str, ...]:
    """``index`` and the columns of every applicable certificate, in :data:`COLUMNS` order."""
    wanted = {"index", *(col for c in applicable(traits) for col in c.columns)}
    return tuple(col for col in COLUMNS if col in wanted)
