"""LogisticRegression / LogisticRegressionModel.

Oracles: scikit-learn's LogisticRegression configured to the same objective (lbfgs for L2,
saga for elastic net, multinomial on iris), the KKT conditions of the objective computed
here with NumPy, and exact identities (row duplication == integer weights, sparse == dense).
"""
from __future__ import annotations

import doctest
import warnings

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.special import expit, logsumexp, softmax
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SkLR
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.classification import LogisticRegression, LogisticRegressionModel
from flowlearn.linalg import SparseVector


# ---------------------------------------------------------------- data and independent formulas

@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(float)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(float)


def table(X, y=None, **cols):
    d = {"features": X if not sps.issparse(X) else sps.csr_matrix(X)}
    if y is not None:
        d["label"] = y
    d.update(cols)
    return fl.table(d)


def coef(model):
    md = model.get_model_data()[0]
    return fl.linalg.to_numpy(md.column("coefficient")), np.asarray(md.column("intercept").to_numpy())


def probs(model, t):
    return fl.linalg.to_numpy(model.transform(t).column("raw_prediction"))


def binary_objective(X, y, s, w, b, reg, en):
    s = s / s.sum()
    z = X @ w + b
    return float(s @ (np.logaddexp(0, z) - y * z) + reg * (en * np.abs(w).sum() + (1 - en) / 2 * w @ w))


def multinomial_objective(X, y, W, b, reg):
    Z = X @ W.T + b
    return float(np.mean(logsumexp(Z, axis=1) - Z[np.arange(len(y)), y.astype(int)]) + reg / 2 * (W * W).sum())


def binary_kkt(X, y, s, w, b, reg, en):
    """Largest violation of the optimality conditions (subgradient for the L1 part)."""
    s = s / s.sum()
    r = s * (expit(X @ w + b) - y)
    g = X.T @ r + reg * (1 - en) * w
    l1 = reg * en
    viol = np.where(w != 0, np.abs(g + l1 * np.sign(w)), np.maximum(np.abs(g) - l1, 0))
    return max(viol.max(), abs(r.sum()))


def sk_fit(X, y, reg, en=0.0, sample_weight=None, tol=None, **kw):
    """scikit-learn on the same objective: C = 1 / (reg * sum of weights), l1_ratio = elastic_net."""
    total = len(y) if sample_weight is None else sample_weight.sum()
    solver = "lbfgs" if en == 0 else "saga"
    tol = tol if tol is not None else (1e-12 if en == 0 else 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SkLR(C=1.0 / (reg * total), l1_ratio=en, solver=solver, tol=tol,
                    max_iter=20000, **kw).fit(X, y, sample_weight=sample_weight)


# ---------------------------------------------------------------- params

def test_param_defaults():
    p = LogisticRegression().get_params()
    assert p == {"features_col": "features", "label_col": "label", "weight_col": None,
                 "prediction_col": "prediction", "raw_prediction_col": "raw_prediction", "max_iter": 100,
                 "reg": 0.0, "elastic_net": 0.0, "tol": 1e-6, "fit_intercept": True, "multi_class": "auto",
                 "solver": "lbfgs", "learning_rate": 0.1, "global_batch_size": 32, "seed": None}
    assert LogisticRegression.online_counterpart == "OnlineLogisticRegression"
    assert set(LogisticRegressionModel().get_params()) == {"features_col", "prediction_col", "raw_prediction_col"}


# ---------------------------------------------------------------- output schema

def test_output_schema_binary_and_multinomial(cancer, iris):
    X, y = cancer
    t = table(X[:100], y[:100], id=np.arange(100))
    out = LogisticRegression(reg=0.1).fit(t).transform(t)
    assert out.column_names == ["features", "label", "id", "prediction", "raw_prediction"]
    assert out.schema.field("prediction").type == pa.float64()
    assert out.schema.field("raw_prediction").type == pa.list_(pa.float64(), 2)
    Xi, yi = iris
    out = LogisticRegression(reg=0.1).fit(table(Xi, yi)).transform(table(Xi))
    assert out.schema.field("raw_prediction").type == pa.list_(pa.float64(), 3)
    assert set(out.column("prediction").to_pylist()) == {0.0, 1.0, 2.0}
    # existing output column is replaced, not duplicated
    again = LogisticRegression(reg=0.1).fit(table(Xi, yi)).transform(out)
    assert again.column_names.count("prediction") == 1


# ---------------------------------------------------------------- fit against the oracles

@pytest.mark.parametrize("reg", [0.001, 0.05])
def test_binary_l2_matches_sklearn(cancer, reg):
    X, y = cancer
    t = table(X, y)
    model = LogisticRegression(reg=reg, tol=1e-10, max_iter=1000).fit(t)
    sk = sk_fit(X, y, reg)
    w, b = coef(model)
    assert w.shape == (1, 30)
    np.testing.assert_allclose(probs(model, t)[:, 1], sk.predict_proba(X)[:, 1], atol=1e-4)
    np.testing.assert_allclose(probs(model, t)[:, 0], sk.predict_proba(X)[:, 0], atol=1e-4)
    f_fl = binary_objective(X, y, np.ones(len(y)), w[0], b[0], reg, 0.0)
    f_sk = binary_objective(X, y, np.ones(len(y)), sk.coef_[0], sk.intercept_[0], reg, 0.0)
    assert f_fl <= f_sk + 1e-10
    assert f_fl == pytest.approx(f_sk, rel=1e-8)
    np.testing.assert_allclose(model.transform(t).column("prediction").to_numpy(), sk.predict(X))


@pytest.mark.parametrize("en", [0.5, 1.0])
def test_binary_elastic_net_matches_sklearn_saga(cancer, en):
    X, y = cancer
    reg = 0.01
    t = table(X, y)
    model = LogisticRegression(reg=reg, elastic_net=en, tol=1e-10, max_iter=2000).fit(t)
    sk = sk_fit(X, y, reg, en)
    w, b = coef(model)
    np.testing.assert_allclose(probs(model, t)[:, 1], sk.predict_proba(X)[:, 1], atol=1e-4)
    f_fl = binary_objective(X, y, np.ones(len(y)), w[0], b[0], reg, en)
    f_sk = binary_objective(X, y, np.ones(len(y)), sk.coef_[0], sk.intercept_[0], reg, en)
    assert f_fl == pytest.approx(f_sk, rel=1e-6)
    assert f_fl <= f_sk + 1e-9
    # exact zeros, on the same coordinates as saga's proximal solution
    assert (w[0] == 0).sum() > 0
    np.testing.assert_array_equal(w[0] == 0, sk.coef_[0] == 0)


@pytest.mark.parametrize("reg,en", [(0.0, 0.0), (0.02, 0.0), (0.02, 0.3), (0.02, 1.0)])
def test_kkt_conditions_hold(cancer, reg, en):
    X, y = cancer
    if reg == 0.0:  # the standardized data is separable-ish without a penalty: use a harder subset
        X, y = X[:, :3], y
    model = LogisticRegression(reg=reg, elastic_net=en, tol=1e-9, max_iter=5000).fit(table(X, y))
    w, b = coef(model)
    assert binary_kkt(X, y, np.ones(len(y)), w[0], b[0], reg, en) < 1e-6


def test_no_intercept_matches_sklearn(cancer):
    X, y = cancer
    t = table(X, y)
    model = LogisticRegression(reg=0.01, fit_intercept=False, tol=1e-10).fit(t)
    sk = sk_fit(X, y, 0.01, fit_intercept=False)
    w, b = coef(model)
    assert b.tolist() == [0.0]
    np.testing.assert_allclose(w[0], sk.coef_[0], atol=1e-5)
    # the NumPy view of the weights: 1-D coefficients and a float intercept for a binary model
    assert model.coefficients.shape == (30,) and model.intercept == 0.0
    np.testing.assert_allclose(model.coefficients, sk.coef_[0], atol=1e-5)
    np.testing.assert_allclose(probs(model, t)[:, 1], sk.predict_proba(X)[:, 1], atol=1e-4)


@pytest.mark.parametrize("reg", [0.001, 0.03])
def test_multinomial_matches_sklearn(iris, reg):
    X, y = iris
    t = table(X, y)
    model = LogisticRegression(reg=reg, tol=1e-10, max_iter=1000).fit(t)
    sk = sk_fit(X, y, reg)
    W, b = coef(model)
    assert W.shape == (3, 4) and b.shape == (3,)
    assert model.coefficients.shape == (3, 4) and model.intercept.shape == (3,)
    # an L2 penalty makes the softmax weights unique (centered per feature), so they equal scikit-learn's
    np.testing.assert_allclose(model.coefficients, sk.coef_, atol=2e-3)
    np.testing.assert_allclose(model.intercept, sk.intercept_ - sk.intercept_.mean(), atol=2e-3)
    np.testing.assert_allclose(probs(model, t), sk.predict_proba(X), atol=1e-4)
    f_fl = multinomial_objective(X, y, W, b, reg)
    f_sk = multinomial_objective(X, y, sk.coef_, sk.intercept_, reg)
    assert f_fl == pytest.approx(f_sk, rel=1e-7)
    assert abs(b.sum()) < 1e-12  # intercepts are centered (softmax is shift invariant)
    np.testing.assert_allclose(model.transform(t).column("prediction").to_numpy(), sk.predict(X))
    # the raw prediction is a probability vector, its argmax is the prediction
    P = probs(model, t)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)


def test_multinomial_on_two_classes_equals_binomial_at_half_reg(cancer):
    """With W = [-v/2, v/2] the softmax is sigmoid(v.x) and the L2 term halves: an exact identity."""
    X, y = cancer
    t = table(X, y)
    multi = LogisticRegression(reg=0.02, multi_class="multinomial", tol=1e-10).fit(t)
    binom = LogisticRegression(reg=0.01, multi_class="binomial", tol=1e-10).fit(t)
    assert coef(multi)[0].shape == (2, 30)
    np.testing.assert_allclose(probs(multi, t), probs(binom, t), atol=1e-6)


def test_sgd_converges_close_to_optimum(cancer):
    X, y = cancer
    reg = 0.01
    t = table(X, y)
    est = LogisticRegression(reg=reg, elastic_net=0.2, solver="sgd", learning_rate=0.05, global_batch_size=16,
                             max_iter=200, tol=0.0, seed=7)
    model = est.fit(t)
    sk = sk_fit(X, y, reg, 0.2)
    w, b = coef(model)
    f_sgd = binary_objective(X, y, np.ones(len(y)), w[0], b[0], reg, 0.2)
    f_opt = binary_objective(X, y, np.ones(len(y)), sk.coef_[0], sk.intercept_[0], reg, 0.2)
    assert f_opt <= f_sgd < f_opt + 5e-3
    assert np.abs(probs(model, t)[:, 1] - sk.predict_proba(X)[:, 1]).max() < 0.05
    # deterministic for a seed, different for another seed
    np.testing.assert_array_equal(coef(est.fit(t))[0], w)
    assert not np.array_equal(coef(est.set(seed=8).fit(t))[0], w)


def test_sgd_multinomial_and_sparse(iris):
    X, y = iris
    reg = 0.1
    dense = LogisticRegression(reg=reg, solver="sgd", learning_rate=0.1, max_iter=150, tol=0.0, seed=1)
    m_dense = dense.fit(table(X, y))
    m_sparse = dense.fit(table(sps.csr_matrix(X), y))
    np.testing.assert_allclose(coef(m_sparse)[0], coef(m_dense)[0], atol=1e-10)
    sk = sk_fit(X, y, reg)
    W, b = coef(m_dense)
    f_opt = multinomial_objective(X, y, sk.coef_, sk.intercept_, reg)
    assert f_opt <= multinomial_objective(X, y, W, b, reg) < f_opt + 1e-3
    assert np.abs(probs(m_dense, table(X)) - sk.predict_proba(X)).max() < 0.03


# ---------------------------------------------------------------- sparse, weights

def test_sparse_input_equals_dense(cancer):
    X, y = cancer
    Xs = np.where(X > 0.5, X, 0.0)  # ~70% zeros
    dense_t, sparse_t = table(Xs, y), table(sps.csr_matrix(Xs), y)
    assert fl.linalg.is_sparse(sparse_t.schema.field("features").type)
    for kw in [dict(reg=0.01), dict(reg=0.01, elastic_net=0.5)]:
        md = LogisticRegression(tol=1e-10, **kw).fit(dense_t)
        ms = LogisticRegression(tol=1e-10, **kw).fit(sparse_t)
        np.testing.assert_allclose(coef(ms)[0], coef(md)[0], atol=1e-7)
        np.testing.assert_allclose(probs(ms, sparse_t), probs(md, dense_t), atol=1e-9)
        np.testing.assert_allclose(probs(md, sparse_t), probs(md, dense_t), atol=1e-12)


def test_hashed_sparse_2_pow_18_dims_matches_sklearn():
    rng = np.random.default_rng(3)
    n, d, nnz = 2000, 1 << 18, 20
    rows = np.repeat(np.arange(n), nnz)
    cols = rng.integers(0, d, n * nnz)
    X = sps.csr_matrix((np.ones(n * nnz), (rows, cols)), shape=(n, d))
    X.sum_duplicates()
    w_true = rng.standard_normal(d)
    y = (rng.random(n) < expit(X @ w_true * 0.5 - 1.0)).astype(float)
    t = table(X, y)
    reg = 1e-3
    model = LogisticRegression(reg=reg, tol=1e-9, max_iter=500).fit(t)
    w, b = coef(model)
    assert w.shape == (1, d)
    sk = sk_fit(X, y, reg, tol=1e-8)
    np.testing.assert_allclose(probs(model, t)[:, 1], sk.predict_proba(X)[:, 1], atol=1e-4)
    assert binary_kkt(X, y, np.ones(n), w[0], b[0], reg, 0.0) < 1e-6
    # elastic net on the hashed space (OWL-QN): a sparse model satisfying the KKT conditions
    m1 = LogisticRegression(reg=1e-3, elastic_net=0.5, tol=1e-7, max_iter=500).fit(t)
    w1, b1 = coef(m1)
    assert 10 < (w1 != 0).sum() < 2000
    assert binary_kkt(X, y, np.ones(n), w1[0], b1[0], 1e-3, 0.5) < 1e-6


@pytest.mark.parametrize("which", ["binary", "multinomial"])
def test_weight_col_equals_row_duplication(cancer, iris, which):
    X, y = cancer if which == "binary" else iris
    rng = np.random.default_rng(0)
    wts = rng.integers(0, 4, len(y)).astype(float)
    rep = np.repeat(np.arange(len(y)), wts.astype(int))
    weighted = LogisticRegression(reg=0.01, tol=1e-10, weight_col="w").fit(table(X, y, w=wts))
    duplicated = LogisticRegression(reg=0.01, tol=1e-10).fit(table(X[rep], y[rep]))
    np.testing.assert_allclose(coef(weighted)[0], coef(duplicated)[0], atol=1e-6)
    np.testing.assert_allclose(coef(weighted)[1], coef(duplicated)[1], atol=1e-6)
    if which == "binary":  # and the oracle agrees on the weighted fit
        sk = sk_fit(X, y, 0.01, sample_weight=wts)
        np.testing.assert_allclose(probs(weighted, table(X))[:, 1], sk.predict_proba(X)[:, 1], atol=1e-4)


# ---------------------------------------------------------------- persistence and model data


def test_model_data_schema_and_set(cancer, iris):
    X, y = cancer
    model = LogisticRegression(reg=0.01).fit(table(X, y))
    (md,) = model.get_model_data()
    assert md.schema.field("coefficient").type == pa.list_(pa.float64(), 30)
    assert md.schema.field("intercept").type == pa.float64()
    assert md.schema.field("model_version").type == pa.int64()
    assert md.num_rows == 1 and md.column("model_version").to_pylist() == [0]
    other = LogisticRegressionModel().set_model_data(md)
    t = table(X)
    assert other.transform(t).equals(model.transform(t))
    # a hand-made model: p1 = sigmoid(w.x + b), the Flink ML layout [p0, p1]
    hand = LogisticRegressionModel().set_model_data(
        {"coefficient": [[0.5, -2.0]], "intercept": [0.25], "model_version": [3]})
    out = hand.transform({"features": [[1.0, 1.0], [4.0, 0.0]]})
    p = expit(np.array([0.5 - 2.0 + 0.25, 2.0 + 0.25]))
    np.testing.assert_allclose(fl.linalg.to_numpy(out.column("raw_prediction")), np.c_[1 - p, p])
    assert out.column("prediction").to_pylist() == [0.0, 1.0]
    Xi, yi = iris
    (mdi,) = LogisticRegression(reg=0.01).fit(table(Xi, yi)).get_model_data()
    assert mdi.num_rows == 3 and mdi.schema.field("coefficient").type == pa.list_(pa.float64(), 4)
    hand3 = LogisticRegressionModel().set_model_data(mdi)
    W, b = fl.linalg.to_numpy(mdi.column("coefficient")), mdi.column("intercept").to_numpy()
    np.testing.assert_allclose(probs(hand3, table(Xi)), softmax(Xi @ W.T + b, axis=1), atol=1e-12)


def test_bad_model_data():
    with pytest.raises(ValueError, match="model data has no 'intercept' column"):
        LogisticRegressionModel().set_model_data({"coefficient": [[1.0]]})
    with pytest.raises(ValueError, match="model data table has no rows"):
        LogisticRegressionModel().set_model_data(
            pa.table({"coefficient": pa.array([], pa.list_(pa.float64(), 2)), "intercept": pa.array([], pa.float64())}))
    with pytest.raises(ValueError, match="model data has not been set"):
        LogisticRegressionModel().transform({"features": [[1.0]]})


# ---------------------------------------------------------------- empty and bad input


def test_bad_labels_name_row_and_value():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"column 'label' \(parameter 'label_col'\) has label 2.0 at row 2; binomial"):
        LogisticRegression(multi_class="binomial").fit(table(X, np.array([0.0, 1.0, 2.0, 1.0])))
    with pytest.raises(ValueError, match=r"has label -1.0 at row 1; labels must be class indices 0, 1, ..., k-1"):
        LogisticRegression().fit(table(X, np.array([0.0, -1.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match=r"has label 0.5 at row 3"):
        LogisticRegression(multi_class="multinomial").fit(table(X, np.array([0.0, 1.0, 2.0, 0.5])))
    with pytest.raises(ValueError, match=r"column 'label' has a null at row 1"):
        LogisticRegression().fit(fl.table({"features": X[:2], "label": pa.array([1.0, None])}))


def test_labels_one_to_k_are_refused_with_the_way_to_index_them(iris):
    X, y = iris
    with pytest.raises(ValueError, match=r"has labels up to 3 but class\(es\) 0 never occur; labels must be the class "
                                         r"indices 0, 1, ..., k-1, each occurring. Index the labels with "
                                         r"fl.feature.StringIndexer"):
        LogisticRegression().fit(table(X, y + 1.0))
    with pytest.raises(ValueError, match=r"class\(es\) 1 never occur"):
        LogisticRegression().fit(table(X, np.where(y == 1, 2.0, y)))
    # indexed by StringIndexer (alphabetical order keeps 1 < 2 < 3), the same labels train 3 classes like scikit-learn
    t = fl.table({"features": X, "label": (y + 1.0).astype(str)})
    idx = fl.feature.StringIndexer(input_cols=["label"], output_cols=["label_idx"], string_order_type="alphabetAsc")
    indexed = idx.fit(t).transform(t)
    model = LogisticRegression(reg=0.01, label_col="label_idx", tol=1e-10).fit(indexed)
    assert model.num_classes == 3
    np.testing.assert_allclose(probs(model, indexed), sk_fit(X, y, 0.01).predict_proba(X), atol=1e-4)
    # binary data with one class only stays a (binomial) model: 0/1 labels are class indices
    assert LogisticRegression(reg=0.1).fit(table(X[:5], np.ones(5))).num_classes == 2


def test_bad_features_and_weights():
    X = np.ones((4, 2))
    X[2, 1] = np.nan
    y = np.array([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="LogisticRegression: column 'features' has NaN or infinity at row 2"):
        LogisticRegression().fit(table(X, y))
    with pytest.raises(ValueError, match=r"input column 'x' \(parameter 'features_col'\) is missing"):
        LogisticRegression(features_col="x").fit(table(np.ones((4, 2)), y))
    with pytest.raises(TypeError, match="column 'label' has type string, expected a vector column"):
        LogisticRegression(features_col="label").fit(fl.table({"label": ["a", "b"]}))
    with pytest.raises(ValueError,
                       match=r"column 'w' \(parameter 'weight_col'\) has the negative weight -1.0 at row 3"):
        LogisticRegression(weight_col="w").fit(table(np.ones((4, 2)), y, w=[1.0, 1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="sum to 0"):
        LogisticRegression(weight_col="w").fit(table(np.ones((4, 2)), y, w=[0.0] * 4))
    model = LogisticRegression().fit(table(np.eye(4)[:, :2], y))
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        model.transform({"features": [[1.0, 2.0, 3.0]]})


def test_separable_data_without_penalty_stays_finite():
    t = table(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0.0, 0.0, 1.0, 1.0]))
    model = LogisticRegression().fit(t)
    w, b = coef(model)
    assert np.isfinite(w).all() and np.isfinite(b).all()
    assert model.transform(t).column("prediction").to_pylist() == [0.0, 0.0, 1.0, 1.0]


# ---------------------------------------------------------------- row kernel

def test_row_fn_equals_batch(cancer, iris):
    for X, y in (cancer, iris):
        model = LogisticRegression(reg=0.01).fit(table(X, y))
        Xs = np.where(X > 0.3, X, 0.0)
        batch = model.transform(table(Xs))
        P = fl.linalg.to_numpy(batch.column("raw_prediction"))
        pred = batch.column("prediction").to_numpy()
        fn = model.row_fn()
        for i in range(0, len(y), 7):
            nz = np.flatnonzero(Xs[i])
            for x in (Xs[i], list(Xs[i]), SparseVector(X.shape[1], nz, Xs[i, nz])):
                row = {"features": x, "other": 1}
                fn(row)
                assert row["prediction"] == pred[i]
                assert isinstance(row["raw_prediction"], np.ndarray)
                np.testing.assert_allclose(row["raw_prediction"], P[i], rtol=1e-12, atol=1e-15)
                assert row["other"] == 1
        pred0 = fl.LocalPredictor(model).predict({"features": Xs[0]})
        assert pred0["prediction"] == pred[0]


def test_row_fn_bad_rows(cancer):
    X, y = cancer
    fn = LogisticRegression(reg=0.1).fit(table(X, y)).row_fn()
    with pytest.raises(ValueError, match=r"input column 'features' \(parameter 'features_col'\) is missing"):
        fn({"x": X[0]})
    with pytest.raises(ValueError, match="the model expects size 30"):
        fn({"features": X[0, :5]})
    with pytest.raises(ValueError, match="the model expects size 30"):
        fn({"features": SparseVector(31, [0], [1.0])})
    bad = X[0].copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn({"features": bad})


def test_zero_width_features_give_the_intercept_only_model():
    """Was: pyarrow's ArrowInvalid 'list_size needs to be a strict positive integer' writing the
    model data (optim.linear_model_table of a (1, 0) coefficient matrix). The fit is then the
    null model: intercept logit(3/4) = log 3, p = 3/4 for every row."""
    t = fl.table({"features": pa.array([[]] * 4, fl.linalg.dense_vector_type(0)), "label": [0.0, 1.0, 1.0, 1.0]})
    model = LogisticRegression().fit(t)
    (md,) = model.get_model_data()
    assert md.schema.field("coefficient").type == pa.list_(pa.float64(), 0)
    assert md.column("intercept")[0].as_py() == pytest.approx(np.log(3.0), abs=1e-9)
    np.testing.assert_allclose(model.transform(t).column("raw_prediction").to_pylist(), [[0.25, 0.75]] * 4,
                               atol=1e-9)
    row = fl.LocalPredictor(model).predict({"features": np.zeros(0)})
    assert row["prediction"] == 1.0 and row["raw_prediction"] == pytest.approx([0.25, 0.75], abs=1e-9)


def test_doctests():
    import flowlearn.classification.logistic_regression as mod
    import flowlearn.optim as optim

    for m in (mod, optim):
        assert doctest.testmod(m).failed == 0


# ---------------------------------------------------------------- SGD on the iteration engine

def numpy_prox_sgd(X, y, s, W, b, loss, lr, batch, l2, l1, max_iter, tol, seed):
    """Proximal mini-batch SGD written here with NumPy: per epoch a permutation from
    default_rng(seed); per mini-batch a step of lr along the weighted-mean gradient taken at the
    weights from before the batch, then soft-thresholding by lr * l1 and shrinking by
    1 / (1 + lr * l2) (intercepts unpenalized); stops after max_iter epochs or when the epoch's
    objective (losses seen during the epoch + penalty) changes by <= tol * max(1, |objective|).
    Returns (W, b, epochs)."""
    rng = np.random.default_rng(seed)
    W, b = W.copy(), b.copy()
    s = s / s.sum()
    n = X.shape[0]
    prev = None
    for epoch in range(1, max_iter + 1):
        perm = rng.permutation(n)
        loss_sum = w_sum = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            Xb, yb, sb = X[idx], y[idx], s[idx]
            Z = np.asarray(Xb @ W.T) + b
            if loss == "logistic":
                z = Z[:, 0]
                losses, R = np.logaddexp(0.0, z) - yb * z, (expit(z) - yb)[:, None]
            else:  # multinomial
                c = yb.astype(int)
                losses = logsumexp(Z, axis=1) - Z[np.arange(len(c)), c]
                R = softmax(Z, axis=1)
                R[np.arange(len(c)), c] -= 1.0
            loss_sum += sb @ losses
            w_sum += sb.sum()
            G = sb[:, None] * R
            step = lr / sb.sum()
            b = b - step * G.sum(axis=0)
            W = W - step * np.asarray((Xb.T @ G).T)
            W = np.sign(W) * np.maximum(np.abs(W) - lr * l1, 0.0) / (1.0 + lr * l2)
        cur = loss_sum / w_sum + 0.5 * l2 * (W * W).sum() + l1 * np.abs(W).sum()
        if prev is not None and abs(prev - cur) <= tol * max(1.0, abs(cur)):
            break
        prev = cur
    return W, b, epoch


def committed_sgd_loop(obj, x0, lr, batch, max_iter, tol, seed):
    """The epoch loop of the solver as committed before it moved onto the iteration engine: a plain
    Python loop around the same Numba epoch kernels. Returns (W, b, epochs)."""
    from flowlearn import optim

    rng = np.random.default_rng(seed)
    W, b = obj.unpack(np.array(x0, dtype=np.float64))
    W, b = np.ascontiguousarray(W).copy(), np.array(b, dtype=np.float64)
    batch = int(min(max(1, batch), max(1, obj.n)))
    prev = None
    for epoch in range(1, max_iter + 1):
        perm = rng.permutation(obj.n).astype(np.int64)
        if obj.sparse:
            loss, wsum = optim._sgd_epoch_sparse(obj.X.indptr, obj.X.indices, obj.X.data, obj.y, obj.s, W, b, obj.kind,
                                                 obj.fit_intercept, perm, batch, float(lr), obj.l2, obj.l1)
        else:
            loss, wsum = optim._sgd_epoch_dense(obj.X, obj.y, obj.s, W, b, obj.kind, obj.fit_intercept, perm, batch,
                                                float(lr), obj.l2, obj.l1)
        cur = loss / wsum + 0.5 * obj.l2 * float(np.vdot(W, W)) + obj.l1 * float(np.abs(W).sum())
        if prev is not None and abs(prev - cur) <= tol * max(1.0, abs(cur)):
            break
        prev = cur
    return W, b, epoch


@pytest.fixture
def bounded_iterations(monkeypatch):
    """The results of every iterate_bounded call made by flowlearn.optim."""
    from flowlearn import optim

    results = []

    def spy(*args, **kwargs):
        results.append(fl.iteration.iterate_bounded(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(optim, "iterate_bounded", spy)
    return results


@pytest.mark.parametrize("data, sparse, params, epochs", [
    ("cancer", False, dict(reg=0.01, elastic_net=0.2, global_batch_size=16, max_iter=30, tol=0.0), 30),
    ("cancer", False, dict(reg=0.01, global_batch_size=32, max_iter=200, tol=1e-4), 39),     # stopped by tol
    ("cancer", True, dict(reg=0.02, global_batch_size=8, max_iter=12, tol=0.0), 12),         # lazy L2 scaling
    ("cancer", True, dict(reg=0.02, elastic_net=0.5, global_batch_size=8, max_iter=12, tol=0.0), 12),
    ("iris", False, dict(reg=0.1, learning_rate=0.1, max_iter=25, tol=0.0), 25),            # multinomial
])
def test_sgd_epochs_are_rounds_of_the_iteration_engine(request, bounded_iterations, data, sparse, params, epochs):
    from flowlearn.optim import LinearObjective

    X, y = request.getfixturevalue(data)
    if sparse:
        X = sps.csr_matrix(np.where(X > 0.5, X, 0.0))
    params = dict(dict(solver="sgd", learning_rate=0.05, seed=3), **params)
    model = LogisticRegression(**params).fit(table(X, y))
    W, b = coef(model)
    (res,) = bounded_iterations
    assert res.rounds == epochs and res.termination == "criteria"  # one round per epoch, ended by the criteria
    multinomial = data == "iris"
    K = 3 if multinomial else 1
    reg, en = params["reg"], params.get("elastic_net", 0.0)
    with LinearObjective(X, y, None, "multinomial" if multinomial else "logistic", K, True, reg * (1 - en),
                         reg * en) as obj:
        x0 = obj.initial()
        # SGD starts from zero weights and the class-prior intercepts (closed form, not the solver's word)
        W_init, b_init = obj.unpack(x0)
        assert not np.any(W_init)
        freq = np.bincount(np.asarray(y, dtype=int)) / len(y)
        if multinomial:
            np.testing.assert_allclose(np.exp(b_init) / np.exp(b_init).sum(), freq, rtol=1e-9)
        else:
            np.testing.assert_allclose(b_init, np.log(freq[1] / freq[0]), rtol=1e-9)
        Wc, bc, ec = committed_sgd_loop(obj, x0, params["learning_rate"], params.get("global_batch_size", 32),
                                        params["max_iter"], params["tol"], params["seed"])
        W0, b0 = obj.unpack(x0)
    Wn, bn, en_ = numpy_prox_sgd(X, y, np.ones(len(y)), W0, b0, obj.loss, params["learning_rate"],
                                 params.get("global_batch_size", 32), reg * (1 - en), reg * en, params["max_iter"],
                                 params["tol"], params["seed"])
    if multinomial:  # the estimator centres the (unpenalized, shift-invariant) intercepts
        bc, bn = bc - bc.mean(), bn - bn.mean()
    assert ec == en_ == epochs
    np.testing.assert_array_equal(W, Wc)  # bit for bit the committed solver's result
    np.testing.assert_array_equal(b, bc)
    np.testing.assert_allclose(W, Wn, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, bn, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("estimator", ["LogisticRegression", "LinearSVC", "LinearRegression"])
@pytest.mark.parametrize("sparse", [False, True])
def test_features_whose_squares_overflow_are_refused_naming_the_value(cancer, estimator, sparse):
    """Finite features near 1e308 made L-BFGS stop at once with an all-zero model and only a warning
    (LogisticRegression) or SciPy's 'illegal value in 4-th argument' (LinearRegression)."""
    est = {"LogisticRegression": fl.classification.LogisticRegression, "LinearSVC": fl.classification.LinearSVC,
           "LinearRegression": fl.regression.LinearRegression}[estimator]()
    x, y = cancer
    x = x.copy()
    x[7, 3] = -3e307
    features = fl.linalg.from_csr(sps.csr_matrix(x)) if sparse else fl.linalg.from_numpy(x)
    with pytest.raises(ValueError, match=rf"{estimator}: column 'features' \(parameter 'features_col'\) holds "
                                         r"-3e\+307 at row 7, index 3; values this large overflow"):
        est.fit(fl.table({"features": features, "label": y}))
    # a label that overflows the squared residuals of a regression
    if estimator == "LinearRegression":
        with pytest.raises(ValueError, match=r"column 'label' \(parameter 'label_col'\) holds 1e\+200 at row 2;"):
            est.fit(fl.table({"features": fl.linalg.from_numpy(x[:, :2] * 0), "label": np.r_[0, 0, 1e200, y[3:]]}))
