"""ANOVATest, ChiSqTest, FValueTest (Flink ML 2.x semantics).

Oracles: scikit-learn's ``f_classif`` and SciPy's ``f_oneway`` (ANOVA, iris), scikit-learn's
``f_regression`` and ``scipy.stats.linregress`` (F-test, diabetes), and SciPy's
``chi2_contingency`` with ``correction=False`` on each feature's (value x label) contingency
table (digits pixels as categories). Flink ML's ChiSqTest is a contingency test over categorical
values, not scikit-learn's ``chi2`` (which reads features as counts); a test shows they differ.
Flink ML's degrees of freedom are kept: ANOVA reports ``n - 1`` (its between + within parts;
the F distribution has ``(k - 1, n - k)``), the F-test ``n - 2``. Flink ML rounds ChiSqTest's
values to 11 decimals; flowlearn does not.
"""
from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
import scipy.stats
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.feature_selection import chi2, f_classif, f_regression

import flowlearn as fl
from flowlearn.linalg import from_csr
from flowlearn.stats import univariate as uni_module
from flowlearn.stats.univariate import ANOVATest, ChiSqTest, FValueTest


def table(x, y, sparse=False):
    return fl.table({"features": from_csr(sps.csr_matrix(x)) if sparse else x, "label": y})


def single_row(t):
    assert t.num_rows == 1
    row = t.to_pylist()[0]
    return {k: np.asarray(v) for k, v in row.items()}


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return x, y.astype(float)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:400], y[:400].astype(float)


# ---------------------------------------------------------------- ANOVATest

@pytest.mark.parametrize("sparse", [False, True])
def test_anova_matches_f_classif_and_f_oneway(iris, sparse):
    x, y = iris
    r = single_row(ANOVATest().transform(table(x, y, sparse)))
    f_sk, p_sk = f_classif(x, y)
    np.testing.assert_allclose(r["f_values"], f_sk, rtol=1e-10)
    np.testing.assert_allclose(r["p_values"], p_sk, rtol=1e-6, atol=1e-300)
    for j in range(x.shape[1]):
        ref = scipy.stats.f_oneway(*[x[y == c, j] for c in np.unique(y)])
        assert r["f_values"][j] == pytest.approx(ref.statistic, rel=1e-10)
    assert r["degrees_of_freedom"].tolist() == [len(y) - 1] * x.shape[1]   # Flink ML: (k - 1) + (n - k)


def test_anova_flatten_and_types(iris):
    x, y = iris
    t = table(x, y)
    out = ANOVATest(flatten=True).transform(t)
    assert out.column_names == ["feature_index", "p_value", "degree_of_freedom", "f_value"]
    assert out.schema.field("feature_index").type == pa.int32()
    assert out.schema.field("degree_of_freedom").type == pa.int64()
    assert out.column("feature_index").to_pylist() == [0, 1, 2, 3]
    np.testing.assert_allclose(out.column("f_value").to_numpy(), f_classif(x, y)[0], rtol=1e-10)
    one = ANOVATest().transform(t)
    assert one.schema == ANOVATest().output_schema(t.schema)
    assert out.schema == ANOVATest(flatten=True).output_schema(t.schema)
    assert one.schema.field("p_values").type == pa.list_(pa.float64(), 4)


# ---------------------------------------------------------------- FValueTest

@pytest.mark.parametrize("sparse", [False, True])
def test_fvalue_matches_f_regression(diabetes, sparse):
    x, y = diabetes
    r = single_row(FValueTest().transform(table(x, y, sparse)))
    f_sk, p_sk = f_regression(x, y)
    np.testing.assert_allclose(r["f_values"], f_sk, rtol=1e-9)
    np.testing.assert_allclose(r["p_values"], p_sk, rtol=1e-6, atol=1e-300)
    assert r["degrees_of_freedom"].tolist() == [len(y) - 2] * x.shape[1]
    for j in range(3):   # the F-test's p-value is the two-sided p of the slope's t-test
        assert r["p_values"][j] == pytest.approx(scipy.stats.linregress(x[:, j], y).pvalue, rel=1e-6)


def test_fvalue_flatten(diabetes):
    x, y = diabetes
    out = FValueTest(flatten=True).transform(table(x[:, :3], y))
    assert out.column_names == ["feature_index", "p_value", "degree_of_freedom", "f_value"]
    np.testing.assert_allclose(out.column("f_value").to_numpy(), f_regression(x[:, :3], y)[0], rtol=1e-9)


# ---------------------------------------------------------------- ChiSqTest

def contingency_oracle(x, y):
    stats, ps, dofs = [], [], []
    for j in range(x.shape[1]):
        values, vi = np.unique(x[:, j], return_inverse=True)
        labels, li = np.unique(y, return_inverse=True)
        obs = np.zeros((len(values), len(labels)))
        np.add.at(obs, (vi, li), 1)
        if len(values) < 2:          # dof 0: Flink ML reports statistic 0 and p-value 1
            stats.append(0.0), ps.append(1.0), dofs.append(0)
            continue
        res = scipy.stats.chi2_contingency(obs, correction=False)
        stats.append(res.statistic), ps.append(res.pvalue), dofs.append(res.dof)
    return np.array(stats), np.array(ps), np.array(dofs)


@pytest.mark.parametrize("sparse", [False, True])
def test_chisq_matches_chi2_contingency(digits, sparse):
    x, y = digits
    r = single_row(ChiSqTest().transform(table(x, y, sparse)))
    s, p, dof = contingency_oracle(x, y)
    assert (dof == 0).any()            # digits has blank pixels: the dof-0 rule is exercised
    np.testing.assert_allclose(r["statistics"], s, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r["p_values"], p, rtol=1e-6, atol=1e-12)
    assert r["degrees_of_freedom"].tolist() == dof.tolist()


def test_chisq_is_not_sklearn_chi2(digits):
    x, y = digits
    r = single_row(ChiSqTest().transform(table(x[:, 10:14], y)))
    assert not np.allclose(r["statistics"], chi2(x[:, 10:14], y)[0], rtol=1e-3)


def test_chisq_flatten_and_schema(digits):
    x, y = digits
    t = table(x[:, 20:24], y)
    out = ChiSqTest(flatten=True).transform(t)
    assert out.column_names == ["feature_index", "p_value", "degree_of_freedom", "statistic"]
    assert out.schema.field("degree_of_freedom").type == pa.int32()
    s, p, dof = contingency_oracle(x[:, 20:24], y)
    np.testing.assert_allclose(out.column("statistic").to_numpy(), s, rtol=1e-9)
    one = ChiSqTest().transform(t)
    assert one.column_names == ["p_values", "degrees_of_freedom", "statistics"]
    assert one.schema == ChiSqTest().output_schema(t.schema)


def test_chisq_two_by_two_without_yates():
    # a 2 x 2 table: chi2_contingency would apply Yates' correction by default; Flink ML does not
    x = np.array([[0.0], [0.0], [0.0], [1.0], [1.0], [0.0], [1.0], [1.0]])
    y = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    r = single_row(ChiSqTest().transform(table(x, y)))
    obs = np.array([[3, 1], [1, 3]])
    assert r["statistics"][0] == pytest.approx(scipy.stats.chi2_contingency(obs, correction=False).statistic)
    assert r["statistics"][0] != pytest.approx(scipy.stats.chi2_contingency(obs).statistic)


# ---------------------------------------------------------------- common

@pytest.mark.parametrize("cls", [ANOVATest, ChiSqTest, FValueTest])
def test_params_save_load(cls, tmp_path):
    stage = cls(features_col="f", label_col="y", flatten=True)
    stage.save(str(tmp_path / "s"))
    loaded = fl.load(str(tmp_path / "s"))
    assert type(loaded) is cls and loaded.get_params() == {"features_col": "f", "label_col": "y", "flatten": True}
    assert cls().get_params() == {"features_col": "features", "label_col": "label", "flatten": False}


def test_registered_under_fl_stats():
    assert fl.stats.ANOVATest is ANOVATest and ChiSqTest._registered_name == "flowlearn.stats.ChiSqTest"


def test_sparse_schema_needs_declared_size():
    from flowlearn.data.schema import vector_field

    s = pa.schema([pa.field("features", fl.linalg.SPARSE_VECTOR), pa.field("label", pa.float64())])
    with pytest.raises(ValueError, match="ChiSqTest: the size of the vectors in column 'features'"):
        ChiSqTest().output_schema(s)
    declared = pa.schema([vector_field("features", fl.linalg.SPARSE_VECTOR, size=5), pa.field("label", pa.float64())])
    assert ChiSqTest().output_schema(declared).field("statistics").type == pa.list_(pa.float64(), 5)
    assert ChiSqTest(flatten=True).output_schema(s).names[0] == "feature_index"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="ANOVATest: .*2 classes.*columns 'features' and 'label'"):
        ANOVATest().transform({"features": [[1.0], [2.0]], "label": [1.0, 1.0]})
    with pytest.raises(ValueError, match="FValueTest: .*at least 3 rows"):
        FValueTest().transform({"features": [[1.0], [2.0]], "label": [1.0, 2.0]})
    with pytest.raises(ValueError, match="ChiSqTest: input column 'features' \\(parameter 'features_col'\\) is "
                                         "missing"):
        ChiSqTest().transform({"label": [1.0]})
    with pytest.raises(TypeError, match="ChiSqTest: column 'features' has type double, expected a vector column"):
        ChiSqTest().transform({"features": [1.0], "label": [1.0]})
    with pytest.raises(ValueError, match="FValueTest: column 'label' has NaN or infinity at row 1"):
        FValueTest().transform({"features": [[1.0], [2.0], [3.0]], "label": [1.0, float("nan"), 2.0]})
    with pytest.raises(ValueError, match="needs at least one row"):
        ChiSqTest().transform(pa.table({"features": pa.array([], pa.list_(pa.float64(), 2)),
                                        "label": pa.array([], pa.float64())}))
    with pytest.raises(ValueError, match="ANOVATest: column 'features' \\(parameter 'features_col'\\) holds vectors of "
                                         "size 0"):
        ANOVATest().transform(pa.table({"features": pa.array([[], []], pa.list_(pa.float64(), 0)),
                                        "label": [0.0, 1.0]}))
    with pytest.raises(ValueError, match="parameter 'flatten' = 'yes' has type str"):
        ChiSqTest(flatten="yes")


def test_doctests():
    assert doctest.testmod(uni_module).failed == 0
