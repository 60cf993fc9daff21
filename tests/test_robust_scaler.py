"""RobustScaler against scikit-learn's RobustScaler on bundled data, and the approximate
quantiles against exact ranks (the summary's error bound).

scikit-learn interpolates percentiles linearly; flowlearn (like Flink ML and Spark) returns the
value of rank ceil(q * n). They agree when every quantile asked for falls on an order statistic:
the quartiles and deciles of 441 = 4 * 110 + 1 = 10 * 44 + 1 values. scikit-learn leaves a
dimension with a zero quantile range unscaled, Flink ML scales it to 0: the oracle is corrected
for that in test_zero_range_scales_to_zero. Spark MLlib's RobustScaler (through pyspark) returns
order statistics as flowlearn does, so it is the oracle on data that is not 4m + 1 rows."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import RobustScaler as SkRobustScaler

import flowlearn as fl
from flowlearn.feature.robust_scaler import RobustScaler, RobustScalerModel
from spark_oracle import spark_vectors


def table(x, name="input"):
    return pa.table({name: fl.linalg.from_numpy(x)})


def out(model, t, col="output"):
    return fl.linalg.to_numpy(model.transform(t).column(col))


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes().data[:441]


@pytest.mark.parametrize("relative_error", [0.0, 0.001])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_matches_sklearn(diabetes, relative_error, center, scale):
    m = RobustScaler(relative_error=relative_error, with_centering=center, with_scaling=scale).fit(table(diabetes))
    sk = SkRobustScaler(with_centering=center, with_scaling=scale).fit(diabetes)
    np.testing.assert_allclose(out(m, table(diabetes)), sk.transform(diabetes), rtol=1e-12, atol=1e-15)
    data = m.get_model_data()[0]
    np.testing.assert_allclose(data.column("medians").to_pylist()[0], np.median(diabetes, axis=0), rtol=1e-15)


def test_other_quantile_range_matches_sklearn(diabetes):
    m = RobustScaler(lower=0.1, upper=0.9, relative_error=0.0).fit(table(diabetes))
    sk = SkRobustScaler(with_centering=False, quantile_range=(10.0, 90.0)).fit(diabetes)
    np.testing.assert_allclose(out(m, table(diabetes)), sk.transform(diabetes), rtol=1e-12)


def test_nan_ignored_by_fit_as_sklearn(diabetes):
    x = diabetes.copy()
    x[::7, 2] = np.nan  # 63 NaN: 378 values remain in column 2
    x = x[:, [2]]
    keep = ~np.isnan(x[:, 0])
    m = RobustScaler(relative_error=0.0, with_centering=True).fit(table(x))
    sk = SkRobustScaler().fit(x)  # scikit-learn ignores NaN too (nanpercentile)
    # 378 values: the median and quartiles are not order statistics, so compare with exact ranks
    v = np.sort(x[keep, 0])
    med, lo, hi = (v[int(np.ceil(q * len(v))) - 1] for q in (0.5, 0.25, 0.75))
    got = m.get_model_data()[0]
    assert got.column("medians").to_pylist() == [[med]]
    np.testing.assert_allclose(got.column("ranges").to_pylist()[0], [hi - lo], rtol=1e-15)
    # the NaN-free rows transform as scikit-learn would with these order statistics
    np.testing.assert_allclose(out(m, table(x[keep]))[:, 0], (x[keep, 0] - med) / (hi - lo), rtol=1e-12)
    assert np.isclose(sk.center_[0], np.nanmedian(x))


def test_approximate_quantiles_within_the_rank_bound():
    rng = np.random.default_rng(1)
    n, eps = 20001, 0.01
    x = rng.standard_cauchy((n, 3))
    t = table(x)
    est = RobustScaler(relative_error=eps, lower=0.1, upper=0.8, with_centering=True)
    state = est.merge([est.partial(t.slice(i, 2999)) for i in range(0, n, 2999)])
    assert max(len(v) for v in state.column("values").to_pylist()) < n / 20  # a summary, not the data
    model = est.finish(state)
    med = np.array(model.get_model_data()[0].column("medians").to_pylist()[0])
    ranges = np.array(model.get_model_data()[0].column("ranges").to_pylist()[0])
    for j in range(3):
        s = np.sort(x[:, j])
        rank = np.searchsorted(s, med[j]) + 1
        assert abs(rank - np.ceil(0.5 * n)) <= eps * n
        # the range is the difference of two values whose ranks are within eps * n of 0.1 n and 0.8 n
        lo_ok = s[max(0, int(np.ceil(0.1 * n - eps * n)) - 1)], s[int(np.ceil(0.1 * n + eps * n)) - 1]
        hi_ok = s[int(np.ceil(0.8 * n - eps * n)) - 1], s[min(n - 1, int(np.ceil(0.8 * n + eps * n)) - 1)]
        assert hi_ok[0] - lo_ok[1] <= ranges[j] <= hi_ok[1] - lo_ok[0]


def test_exact_summary_merge_equals_whole_fit(diabetes):
    t = table(diabetes)
    est = RobustScaler(relative_error=0.0)
    merged = est.finish(est.merge([est.partial(t.slice(0, 150)), est.partial(t.slice(150, 0)),
                                   est.partial(t.slice(150))]))
    assert merged.get_model_data()[0].equals(est.fit(t).get_model_data()[0])


def test_zero_range_scales_to_zero(diabetes):
    x = np.c_[diabetes[:, 0], np.r_[np.zeros(400), np.arange(41.0)]]  # column 1: quartiles both 0
    m = RobustScaler(relative_error=0.0).fit(table(x))
    sk = SkRobustScaler(with_centering=False).fit(x)
    want = sk.transform(x)
    want[:, 1] = 0.0  # Flink ML: a zero range scales to 0; scikit-learn would leave the column unscaled
    np.testing.assert_allclose(out(m, table(x)), want, rtol=1e-12)


def test_sparse_stays_sparse_without_centering(diabetes):
    x = np.where(np.abs(diabetes) < 0.03, 0.0, diabetes)
    t_sp = pa.table({"input": fl.linalg.from_csr(sps.csr_matrix(x))})
    m = RobustScaler(relative_error=0.0).fit(t_sp)
    got = m.transform(t_sp).column("output")
    assert fl.linalg.is_sparse(got.type)
    sk = SkRobustScaler(with_centering=False).fit(x)
    np.testing.assert_allclose(fl.linalg.to_numpy(got), sk.transform(x), rtol=1e-12)
    centered = RobustScaler(relative_error=0.0, with_centering=True).fit(t_sp).transform(t_sp).column("output")
    assert pa.types.is_fixed_size_list(centered.type)


def test_bad_input_named():
    with pytest.raises(ValueError, match=r"RobustScaler: column 'input' has infinity at row 1"):
        RobustScaler().fit(table(np.array([[1.0], [np.inf]])))
    with pytest.raises(ValueError, match="dimension 0 of column 'input' holds only NaN"):
        RobustScaler().fit(table(np.array([[np.nan], [np.nan]])))
    with pytest.raises(ValueError, match=r"parameter 'lower' = 0.8 must be less than parameter 'upper' = 0.75"):
        RobustScaler(lower=0.8).fit(table(np.ones((2, 1))))
    with pytest.raises(ValueError, match=r"parameter 'relative_error' = 2.0 violates in_range\(0.0, 1.0\)"):
        RobustScaler(relative_error=2.0)
    m = RobustScalerModel().set_model_data({"medians": [[0.0]], "ranges": [[1.0]]})
    with pytest.raises(ValueError, match="column 'input' has NaN or infinity at row 0"):
        m.transform(table(np.array([[np.nan]])))



def test_fits_in_concurrent_threads_match_sklearn(diabetes):
    # the fit spreads the columns over a shared thread pool; fits from several threads at once (as
    # CrossValidator's parallel candidates) must each get the whole-data answer
    from concurrent.futures import ThreadPoolExecutor

    x = np.c_[diabetes, diabetes[:, ::-1] * 3.0]   # 20 columns
    x[::5, 3] = np.nan                              # column 3 keeps 352 values: NaN handled per column
    want = SkRobustScaler(with_centering=True).fit(x[:, [0, 1, 2] + list(range(4, 20))])

    def fit(_):
        m = RobustScaler(relative_error=0.0, with_centering=True).fit(table(x))
        return np.array(m.get_model_data()[0].column("medians").to_pylist()[0])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fit, range(8)))
    keep = [0, 1, 2] + list(range(4, 20))
    for med in results:
        np.testing.assert_array_equal(med[keep], want.center_)
        assert med[3] == np.sort(x[~np.isnan(x[:, 3]), 3])[175]   # rank ceil(0.5 * 352) = 176


def test_huge_finite_values_are_kept(diabetes):
    # column sums that overflow must not be taken for infinity (the fit only refuses real infinities)
    x = np.array([[1e308], [1e308], [-1e308], [0.0], [5.0]])
    m = RobustScaler(relative_error=0.0, with_centering=True, with_scaling=False).fit(table(x))
    assert m.get_model_data()[0].column("medians").to_pylist() == [[5.0]]


@pytest.mark.parametrize("relative_error", [0.0, 0.001])
def test_large_columns_match_sklearn_and_sorted_order_statistics(relative_error):
    # 40,001 rows (4m + 1: scikit-learn's interpolated quartiles are order statistics): long columns
    # take the fit's radix sort; heavy tails, ties, signed zeros and subnormals included
    rng = np.random.default_rng(3)
    n = 40_001
    x = np.c_[rng.standard_cauchy(n) * 1e200, rng.integers(-3, 4, n).astype(float), rng.standard_normal(n)]
    x[:50, 2] = -0.0
    x[50:100, 2] = 0.0
    x[100:110, 2] = 5e-324
    est = RobustScaler(relative_error=relative_error, with_centering=True)
    state = est.partial(table(x))
    for j in range(3):
        kept = np.array(state.column("values")[j].as_py())
        ranks = np.array(state.column("rmin")[j].as_py())
        np.testing.assert_array_equal(kept, np.sort(x[:, j])[ranks - 1])   # exact order statistics
    if relative_error == 0.0:
        sk = SkRobustScaler(with_centering=True).fit(x)
        data = est.finish(state).get_model_data()[0]
        np.testing.assert_array_equal(data.column("medians").to_pylist()[0], sk.center_)
        np.testing.assert_allclose(data.column("ranges").to_pylist()[0], sk.scale_, rtol=1e-15)

# --- Spark MLlib itself (pyspark on local[1]; skipped without pyspark or Java) ------------------


@pytest.mark.parametrize("lower,upper", [(0.25, 0.75), (0.1, 0.6)])
def test_spark_robust_scaler(spark, lower, upper):
    # all 442 diabetes rows: not 4m + 1, so linear interpolation (scikit-learn) would differ; Spark
    # returns order statistics as flowlearn does
    from pyspark.ml.feature import RobustScaler as SparkRobustScaler

    x = load_diabetes().data
    sm = SparkRobustScaler(inputCol="features", outputCol="out", lower=lower, upper=upper, withCentering=True,
                           relativeError=0.001).fit(spark_vectors(spark, x))
    m = RobustScaler(lower=lower, upper=upper, with_centering=True).fit(table(x))
    data = m.get_model_data()[0]
    np.testing.assert_array_equal(data.column("medians").to_pylist()[0], sm.median.toArray())
    np.testing.assert_allclose(data.column("ranges").to_pylist()[0], sm.range.toArray(), rtol=1e-15)
