"""UnivariateFeatureSelector and VarianceThresholdSelector against scikit-learn's SelectKBest /
SelectPercentile / SelectFpr / SelectFdr / SelectFwe (with f_classif and f_regression) and
VarianceThreshold, and the chi-squared selection against scipy.stats.chi2_contingency.

Flink ML's categorical/categorical test is Pearson's chi-squared test of independence (Spark's
ChiSqTest), not scikit-learn's chi2 (which sums feature values per class as counts), so its
oracle is chi2_contingency without Yates' correction per feature. Flink ML ranks by p-value
(ties by index) where scikit-learn's SelectKBest ranks by score; with the F tests' common degrees
of freedom the orders agree on data whose p-values are distinct and non-zero (wine, breast
cancer, diabetes). Spark MLlib's UnivariateFeatureSelector (through pyspark) shares Flink ML's
definitions, chi-squared test included."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sps
import scipy.stats
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.feature_selection import (SelectFdr, SelectFpr, SelectFwe, SelectKBest, SelectPercentile,
                                       VarianceThreshold, f_classif, f_regression)

import flowlearn as fl
from flowlearn.feature.selectors import (UnivariateFeatureSelector, UnivariateFeatureSelectorModel,
                                         VarianceThresholdSelector, anova_f_test, chi2_independence_test,
                                         f_regression_test)
from spark_oracle import spark_vectors


def table(x, y=None, sparse=False):
    col = fl.linalg.from_csr(sps.csr_matrix(x)) if sparse else fl.linalg.from_numpy(x)
    cols = {"features": col}
    if y is not None:
        cols["label"] = np.asarray(y, dtype=np.float64)
    return pa.table(cols)


def selected(model):
    return model.get_model_data()[0].column("indices")[0].as_py()


def selector(feature_type, label_type, mode, threshold=None):
    return UnivariateFeatureSelector(feature_type=feature_type, label_type=label_type, selection_mode=mode,
                                     selection_threshold=threshold)


@pytest.fixture(scope="module")
def wine():
    return load_wine(return_X_y=True)


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


# ------------------------------------------------------------------------------------- kernels


def test_kernels_match_sklearn_and_scipy(wine, diabetes):
    x, y = wine
    f, p, dof = anova_f_test(x, y)
    F, P = f_classif(x, y)
    np.testing.assert_allclose(f, F, rtol=1e-12)
    np.testing.assert_allclose(p, P, rtol=1e-9)
    assert (dof == len(y) - 1).all()  # Flink ML's ANOVATest reports n - 1
    fs, ps, _ = anova_f_test(sps.csr_matrix(x), y)
    np.testing.assert_allclose(fs, F, rtol=1e-9)
    x, y = diabetes
    f, p, dof = f_regression_test(x, y)
    F, P = f_regression(x, y)
    np.testing.assert_allclose(f, F, rtol=1e-12)
    np.testing.assert_allclose(p, P, rtol=1e-9)
    assert (dof == len(y) - 2).all()


def test_chi2_kernel_matches_chi2_contingency():
    x, y = load_digits(return_X_y=True)
    x = x[:, :24]
    stat, p, dof = chi2_independence_test(x, y)
    stat_sp, p_sp, dof_sp = chi2_independence_test(sps.csr_matrix(x), y)
    for j in range(x.shape[1]):
        ct = pd.crosstab(x[:, j], y).to_numpy()
        if ct.shape[0] < 2:  # a constant pixel: no degrees of freedom, statistic 0 and p = 1 (Flink ML)
            assert (stat[j], p[j], dof[j]) == (0.0, 1.0, 0)
            continue
        want = scipy.stats.chi2_contingency(ct, correction=False)
        assert dof[j] == want.dof == dof_sp[j]
        np.testing.assert_allclose([stat[j], stat_sp[j]], want.statistic, rtol=1e-10)
        np.testing.assert_allclose([p[j], p_sp[j]], want.pvalue, rtol=1e-7, atol=1e-300)


# ------------------------------------------------------------------------ UnivariateFeatureSelector


@pytest.mark.parametrize("k", [1, 4, 13])
def test_anova_top_features_match_select_k_best(wine, k):
    x, y = wine
    m = selector("continuous", "categorical", "numTopFeatures", k).fit(table(x, y))
    sk = SelectKBest(f_classif, k=k).fit(x, y)
    assert selected(m) == np.flatnonzero(sk.get_support()).tolist()
    np.testing.assert_array_equal(fl.linalg.to_numpy(m.transform(table(x, y)).column("output")), sk.transform(x))


def test_anova_percentile_matches_select_percentile(cancer):
    x, y = cancer
    m = selector("continuous", "categorical", "percentile", 0.2).fit(table(x, y))
    sk = SelectPercentile(f_classif, percentile=20).fit(x, y)  # 6 of 30 both ways
    assert selected(m) == np.flatnonzero(sk.get_support()).tolist()


@pytest.mark.parametrize("mode,sk_cls,alpha", [("fpr", SelectFpr, 1e-3), ("fdr", SelectFdr, 1e-3),
                                                ("fwe", SelectFwe, 1e-3), ("fpr", SelectFpr, 0.5),
                                                ("fdr", SelectFdr, 0.5)])
def test_regression_modes_match_sklearn(diabetes, mode, sk_cls, alpha):
    x, y = diabetes
    m = selector("continuous", "continuous", mode, alpha).fit(table(x, y))
    sk = sk_cls(f_regression, alpha=alpha).fit(x, y)
    assert selected(m) == np.flatnonzero(sk.get_support()).tolist()


def test_regression_top_features_match_select_k_best(diabetes):
    x, y = diabetes
    m = selector("continuous", "continuous", "numTopFeatures", 3).fit(table(x, y))
    assert selected(m) == np.flatnonzero(SelectKBest(f_regression, k=3).fit(x, y).get_support()).tolist()


def test_default_thresholds(cancer):
    x, y = cancer
    p = f_classif(x, y)[1]
    assert selected(selector("continuous", "categorical", "numTopFeatures").fit(table(x, y))) == list(range(30))
    assert len(selected(selector("continuous", "categorical", "percentile").fit(table(x, y)))) == 3
    fpr = selected(selector("continuous", "categorical", "fpr").fit(table(x, y)))
    assert fpr == np.flatnonzero(p < 0.05).tolist()


def test_chi2_selection_by_contingency_p_values():
    x, y = load_digits(return_X_y=True)
    x = x[:, 16:40]
    p = np.array([scipy.stats.chi2_contingency(pd.crosstab(x[:, j], y).to_numpy(), correction=False).pvalue
                  if len(np.unique(x[:, j])) > 1 else 1.0 for j in range(x.shape[1])])
    order = np.lexsort((np.arange(len(p)), p))  # lowest p first, ties by index (Flink ML)
    m = selector("categorical", "categorical", "numTopFeatures", 5).fit(table(x, y))
    assert selected(m) == sorted(order[:5].tolist())
    m = selector("categorical", "categorical", "fwe", 1e-10).fit(table(x, y, sparse=True))
    assert selected(m) == np.flatnonzero(p < 1e-10 / len(p)).tolist()


@pytest.mark.parametrize("ftype,ltype", [("continuous", "categorical"), ("continuous", "continuous"),
                                         ("categorical", "categorical")])
def test_partials_merge_and_sparse(ftype, ltype):
    x, y = load_digits(return_X_y=True)
    x, y = x[:400, 8:40], y[:400].astype(float)
    t, ts = table(x, y), table(x, y, sparse=True)
    est = selector(ftype, ltype, "numTopFeatures", 7)
    whole = selected(est.fit(t))
    merged = est.finish(est.merge([est.partial(t.slice(0, 150)), est.partial(ts.slice(150, 0)),
                                   est.partial(ts.slice(150))]))
    assert selected(merged) == whole
    out = merged.transform(ts).column("output")
    assert fl.linalg.is_sparse(out.type)
    np.testing.assert_array_equal(fl.linalg.to_numpy(out), x[:, whole])


def test_selector_errors():
    t = table(np.eye(3), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="feature_type='categorical' with label_type='continuous' has no test"):
        selector("categorical", "continuous", "fpr").fit(t)
    with pytest.raises(ValueError, match=r"'selection_threshold' = 2.5 must be a positive integer"):
        selector("continuous", "categorical", "numTopFeatures", 2.5).fit(t)
    with pytest.raises(ValueError, match=r"'selection_threshold' = 3.0 must be in \[0, 1\] for selection_mode='fdr'"):
        selector("continuous", "categorical", "fdr", 3.0).fit(t)
    with pytest.raises(ValueError, match="parameter 'selection_mode' = 'kbest'"):
        selector("continuous", "categorical", "kbest")
    with pytest.raises(ValueError, match="needs at least 2 distinct labels in column 'label'"):
        selector("continuous", "categorical", "fpr").fit(table(np.eye(3), [1.0, 1.0, 1.0]))
    # was (found by tests/test_properties_stages.py): "ANOVA F test needs at least 2 classes and more rows than
    # classes; got 3 classes and 3 rows", naming neither the stage nor the label column
    with pytest.raises(ValueError, match="UnivariateFeatureSelector: the ANOVA F test needs more rows than distinct "
                                         "labels in column 'label', got 3 rows and 3 labels"):
        selector("continuous", "categorical", "fpr").fit(table(np.eye(3), [0.0, 1.0, -1.0]))
    m = UnivariateFeatureSelectorModel().set_model_data({"num_features": [3], "indices": [[0, 2]]})
    with pytest.raises(ValueError, match="holds vectors of size 2, the model expects size 3"):
        m.transform(table(np.eye(2)))
    with pytest.raises(ValueError, match="strictly increasing in"):
        UnivariateFeatureSelectorModel().set_model_data({"num_features": [3], "indices": [[2, 0]]})


# ------------------------------------------------------------------------ VarianceThresholdSelector


@pytest.mark.parametrize("threshold", [0.0, 1.0, 10.0, 30.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_variance_threshold_matches_sklearn(threshold, sparse):
    x = load_digits().data
    m = VarianceThresholdSelector(input_col="features", variance_threshold=threshold).fit(table(x, sparse=sparse))
    sk = VarianceThreshold(threshold).fit(x)
    assert selected(m) == np.flatnonzero(sk.get_support()).tolist()
    out = m.transform(table(x, sparse=sparse)).column("output")
    assert fl.linalg.is_sparse(out.type) == sparse
    np.testing.assert_array_equal(fl.linalg.to_numpy(out), sk.transform(x))


def test_variance_is_the_population_one():
    # column 0: population variance 0.25, sample variance 0.5; column 1 is kept either way
    x = np.array([[0.0, 0.0], [1.0, 5.0]])
    assert selected(VarianceThresholdSelector(variance_threshold=0.3).fit(table(x).rename_columns(["input"]))) == [1]
    assert VarianceThreshold(0.3).fit(x).get_support().tolist() == [False, True]


def test_variance_threshold_merge_and_nothing_kept():
    x = load_digits().data[:300]
    t = table(x).rename_columns(["input"])
    est = VarianceThresholdSelector(variance_threshold=5.0)
    merged = est.finish(est.merge([est.partial(t.slice(0, 100)), est.partial(t.slice(100))]))
    assert selected(merged) == selected(est.fit(t))
    none = VarianceThresholdSelector(variance_threshold=1e6).fit(t)
    assert none.transform(t).column("output").type == pa.list_(pa.float64(), 0)


# --- Spark MLlib itself (pyspark on local[1]; skipped without pyspark or Java) ------------------


@pytest.mark.parametrize("ftype,ltype,mode,threshold", [
    ("continuous", "continuous", "numTopFeatures", 4), ("continuous", "continuous", "fpr", 0.01),
    ("continuous", "categorical", "percentile", 0.3), ("continuous", "categorical", "fwe", 0.05),
    ("categorical", "categorical", "numTopFeatures", 5), ("categorical", "categorical", "fdr", 0.05),
])
def test_spark_univariate_feature_selector(spark, ftype, ltype, mode, threshold):
    # p-values well above 1e-16 here: Spark's 1 - cdf and flowlearn's survival functions rank alike
    from pyspark.ml.feature import UnivariateFeatureSelector as SparkSelector

    if ftype == "categorical":
        x, y = load_digits(return_X_y=True)
        x, y = x[:150, 16:32] // 4, (y[:150] % 3).astype(float)
    else:
        x, y = load_diabetes(return_X_y=True)
        x, y = x[:80], (y[:80] if ltype == "continuous" else (y[:80] > 140).astype(float))
    sm = (SparkSelector(featuresCol="features", labelCol="label", outputCol="out", selectionMode=mode)
          .setFeatureType(ftype).setLabelType(ltype).setSelectionThreshold(threshold)
          .fit(spark_vectors(spark, x, label=y)))
    m = selector(ftype, ltype, mode, threshold).fit(table(x, y))
    assert selected(m) == sorted(sm.selectedFeatures)


@pytest.mark.parametrize("threshold", [0.0, 5.0, 20.0])
def test_spark_variance_threshold_uses_the_sample_variance(spark, threshold):
    # Spark MLlib divides by n - 1, Flink ML (and flowlearn, scikit-learn) by n: population variance
    # > t is sample variance > t * n / (n - 1)
    from pyspark.ml.feature import VarianceThresholdSelector as SparkVarianceThreshold

    x = load_digits().data[:300]
    n = len(x)
    sm = SparkVarianceThreshold(featuresCol="features", outputCol="out",
                                varianceThreshold=threshold * n / (n - 1)).fit(spark_vectors(spark, x))
    m = VarianceThresholdSelector(input_col="features", variance_threshold=threshold).fit(table(x))
    assert selected(m) == sorted(sm.selectedFeatures)
