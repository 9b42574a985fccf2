import numpy as np
import pytest

from rcert.errors import RcertError
from rcert.statistics.embedding import tsne


def two_clusters(n=20, d=6, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.vstack([rng.normal(0.0, 1.0, (n, d)), rng.normal(12.0, 1.0, (n, d))])
    return codes, np.repeat([0, 1], n)


def test_same_seed_same_embedding_of_shape_n_by_2():
    codes, _ = two_clusters()
    first = tsne(codes, seed=3)
    assert first.shape == (40, 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, tsne(codes, seed=3))


def test_separated_clusters_stay_separated():
    codes, labels = two_clusters(seed=1)
    y = tsne(codes, seed=0)
    distances = np.linalg.norm(y[:, None] - y[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(1)
    assert (labels[nearest] == labels).all()


def test_few_rows_lower_the_perplexity():
    codes, _ = two_clusters(n=2)
    assert tsne(codes, seed=0, perplexity=30.0).shape == (4, 2)


def test_codes_of_two_or_fewer_dimensions_are_returned_as_they_are():
    codes = np.arange(10.0).reshape(5, 2)
    np.testing.assert_array_equal(tsne(codes, seed=0), codes)
    one = tsne(codes[:, :1], seed=0)
    np.testing.assert_array_equal(one, np.column_stack([codes[:, 0], np.zeros(5)]))


@pytest.mark.parametrize(("codes", "message"), [
    (np.zeros((2, 4)), "at least 3 codes"),
    (np.array([[0.0, 1, np.nan]] * 4), "NaN or infinite"),
    (np.zeros(5), r"shape \(N, d_z\)"),
])
def test_refuses_codes_it_cannot_embed(codes, message):
    with pytest.raises(RcertError, match=message):
        tsne(codes, seed=0)
