"""KBinsDiscretizer against scikit-learn's KBinsDiscretizer(encode="ordinal") on bundled data, and
Flink ML's quantile rule for repeated edges worked out by hand.

scikit-learn interpolates its quantile edges linearly (quantile_method="linear"); Flink ML takes
the order statistics v[int(i * n / k)]. Both agree when n - 1 is a multiple of k, so the oracle
comparison uses 441 = 5 * 88 + 1 diabetes rows. Where ties make edges repeat, scikit-learn drops
the bins narrower than 1e-8 and Flink ML moves the repeated edge to its neighbours' mean; that
case is checked against a hand computation instead."""
import warnings

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import KBinsDiscretizer as SkKBins

import flowlearn as fl
from flowlearn.feature.kbins import KBinsDiscretizer, KBinsDiscretizerModel


def table(x, name="input"):
    return pa.table({name: fl.linalg.from_numpy(x)})


def bins(model, t, col="output"):
    return fl.linalg.to_numpy(model.transform(t).column(col))


def edges(model):
    return [np.asarray(e) for e in model.get_model_data()[0].column("bin_edges")[0].as_py()]


def sk_fit(x, strategy, k=5):
    kw = {"quantile_method": "linear"} if strategy == "quantile" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SkKBins(n_bins=k, encode="ordinal", strategy=strategy, subsample=None, **kw).fit(x)


@pytest.fixture(scope="module")
def diabetes():
    return np.delete(load_diabetes().data[:441], 1, axis=1)  # column 1 (sex) has 2 values: ties


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_uniform_and_quantile_match_sklearn(diabetes, strategy):
    m = KBinsDiscretizer(strategy=strategy).fit(table(diabetes))
    sk = sk_fit(diabetes, strategy)
    np.testing.assert_array_equal(bins(m, table(diabetes)), sk.transform(diabetes))
    for got, want in zip(edges(m), sk.bin_edges_):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # unseen values: below the first edge -> bin 0, above the last -> the last bin, as both do
    probe = np.vstack([diabetes.min(axis=0) - 1.0, diabetes.max(axis=0) + 1.0])
    np.testing.assert_array_equal(bins(m, table(probe)), sk.transform(probe))


def test_many_bins_match_sklearn():
    # more than 32 edges: the binning kernel searches instead of counting
    x = np.random.default_rng(2).random((3000, 3))
    m = KBinsDiscretizer(strategy="uniform", num_bins=100).fit(table(x))
    np.testing.assert_array_equal(bins(m, table(x)), sk_fit(x, "uniform", k=100).transform(x))


def test_kmeans_matches_sklearn_on_separated_clusters():
    # five well-separated clusters per column: Flink ML's k-means (started at the quantiles) and
    # scikit-learn's (started at the uniform bin centres) reach the same partition
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, (200, 3)) * [1.0, 2.0, -1.0] for c in [0, 5, 10, 15, 20]])
    x = x[rng.permutation(len(x))]
    m = KBinsDiscretizer(strategy="kmeans").fit(table(x))
    sk = sk_fit(x, "kmeans")
    np.testing.assert_array_equal(bins(m, table(x)), sk.transform(x))
    for got, want in zip(edges(m), sk.bin_edges_):
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_quantile_repeated_edges_follow_flink_ml():
    # n = 10, k = 5: candidate edges v[0], v[2], v[4], v[6], v[8], max = [0, 0, 1, 1, 1, 2]; each value
    # kept at most twice -> [0, 0, 1, 1, 2]; a repeat moves to its neighbours' mean: e[1] = (1 + 0) / 2,
    # e[3] = (2 + 1) / 2 -> [0, 0.5, 1, 1.5, 2]
    v = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2], dtype=float)
    m = KBinsDiscretizer(num_bins=5).fit(table(v[:, None]))
    np.testing.assert_array_equal(edges(m)[0], [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(bins(m, table(v[:, None])).ravel(), [0, 0, 0, 0, 2, 2, 2, 2, 2, 3])


def test_kmeans_with_few_distinct_values_uses_uniform_edges():
    v = np.array([[1.0], [1.0], [2.0], [3.0], [3.0]])  # 3 distinct values <= 4 bins
    m = KBinsDiscretizer(strategy="kmeans", num_bins=4).fit(table(v))
    np.testing.assert_allclose(edges(m)[0], [1.0, 1.5, 2.0, 2.5, 3.0])


@pytest.mark.parametrize("strategy", ["uniform", "quantile", "kmeans"])
def test_constant_dimension_goes_to_bin_zero(strategy):
    x = np.c_[np.arange(12.0), np.full(12, 7.0)]
    m = KBinsDiscretizer(strategy=strategy, num_bins=3).fit(table(x))
    assert edges(m)[1].tolist() == [-np.inf, np.inf]
    out = bins(m, table(np.array([[0.0, -1e300], [5.0, 1e300]])))
    assert out[:, 1].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("strategy", ["uniform", "quantile", "kmeans"])
def test_partials_merged_equal_the_whole_fit(diabetes, strategy):
    t = table(diabetes)
    est = KBinsDiscretizer(strategy=strategy, num_bins=4)
    parts = [est.partial(t.slice(0, 100)), est.partial(t.slice(100, 0)), est.partial(t.slice(100))]
    merged = est.finish(est.merge(parts))
    for a, b in zip(edges(merged), edges(est.fit(t))):
        np.testing.assert_array_equal(a, b)


def test_sub_samples_bounds_the_sample_and_keeps_quantiles():
    rng = np.random.default_rng(3)
    x = rng.random((20000, 2))
    t = table(x)
    est = KBinsDiscretizer(num_bins=4, sub_samples=2000)
    state = est.merge([est.partial(t.slice(i, 5000)) for i in range(0, 20000, 5000)])
    assert state.num_rows == 2000
    for e in edges(est.finish(state)):
        # quantiles of a 2000-row uniform sample: standard error sqrt(q(1-q)/2000) < 0.012
        np.testing.assert_allclose(e[1:-1], [0.25, 0.5, 0.75], atol=0.05)


def test_sparse_input_is_densified(diabetes):
    x = np.where(np.abs(diabetes) < 0.02, 0.0, diabetes)
    dense = KBinsDiscretizer().fit(table(x))
    t_sp = pa.table({"input": fl.linalg.from_csr(sps.csr_matrix(x))})
    sparse = KBinsDiscretizer().fit(t_sp)
    np.testing.assert_array_equal(bins(sparse, t_sp), bins(dense, table(x)))
    assert pa.types.is_fixed_size_list(sparse.transform(t_sp).schema.field("output").type)


def test_bad_input_named():
    with pytest.raises(ValueError, match=r"KBinsDiscretizer: column 'input' has NaN or infinity at row 1"):
        KBinsDiscretizer().fit(table(np.array([[1.0], [np.nan]])))
    with pytest.raises(ValueError, match=r"parameter 'num_bins' = 1 violates in_range\(2, 65536\)"):
        KBinsDiscretizer(num_bins=1)
    # was (found by tests/test_properties_stages.py): num_bins = 2**63 - 1 reached NumPy's "array is too big"
    # in the uniform fit, naming no parameter; 10**9 allocated 8 GB of edges per element
    with pytest.raises(ValueError, match=r"parameter 'num_bins' = 9223372036854775807 violates in_range"):
        KBinsDiscretizer(num_bins=2 ** 63 - 1, strategy="uniform")
    with pytest.raises(ValueError, match="parameter 'strategy' = 'median'"):
        KBinsDiscretizer(strategy="median")
    m = KBinsDiscretizerModel().set_model_data({"bin_edges": [[[0.0, 1.0], [0.0, 1.0]]]})
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        m.transform(table(np.zeros((1, 3))))
    with pytest.raises(ValueError, match="dimension 0 must hold at least 2 non-decreasing"):
        KBinsDiscretizerModel().set_model_data({"bin_edges": [[[2.0, 1.0]]]})


@pytest.mark.parametrize("strategy", ["uniform", "quantile", "kmeans"])
def test_values_near_the_float64_limit_give_finite_edges(strategy):
    """Was (kmeans, found by tests/test_properties_stages.py): -1e308 among small values summed to -inf in the
    centroid update, and the fit ended in "KBinsDiscretizerModel: model data 'bin_edges' ... got [-1e+308, -inf,
    nan, ...]" (naming no input column); uniform edges were inf. The edges of x equal 2**1000 times the edges of
    x / 2**1000 (a power of 2 scales exactly), where nothing overflows."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2)) * 1e307
    x[[2, 5, 7], 0] = -1e308
    x[[1, 9], 1] = 1.7976931348623157e308
    kw = dict(strategy=strategy, num_bins=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # no overflow warning either
        got = edges(KBinsDiscretizer(**kw).fit(table(x)))
    scaled = edges(KBinsDiscretizer(**kw).fit(table(x / 2.0 ** 1000)))
    for g, s in zip(got, scaled):
        assert np.isfinite(g).all() and (np.diff(g) >= 0).all(), g
        np.testing.assert_allclose(g, s * 2.0 ** 1000, rtol=1e-12)


def test_kmeans_clusters_small_values_next_to_a_huge_one():
    """Lloyd's iterations by hand: from the centroids v[0], v[1], v[2] the clusters are {-1e308}, {-1.25} and
    {-0.25, 0.75} (centroid 0.25) and stay so; the edges are the minimum, the midpoints and the maximum. (Cluster
    sums taken as differences of prefix sums cancelled the small values against -1e308.)"""
    x = np.array([[-1e308], [-1.25], [-0.25], [0.75]])
    got = edges(KBinsDiscretizer(strategy="kmeans", num_bins=3).fit(table(x)))[0]
    np.testing.assert_allclose(got, [-1e308, (-1e308 - 1.25) / 2, (-1.25 + 0.25) / 2, 0.75], rtol=1e-15)
