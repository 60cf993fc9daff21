"""LinearRegression / LinearRegressionModel.

Oracles: scikit-learn's Ridge (alpha = reg * sum of weights) and ElasticNet (alpha = reg,
l1_ratio = elastic_net) on the diabetes data, NumPy's least squares for OLS, the KKT
conditions of the objective computed here, and exact identities (row duplication ==
integer weights, sparse == dense).
"""
from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet, Ridge
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.linalg import SparseVector
from flowlearn.regression import LinearRegression, LinearRegressionModel

SOLVERS = ["normal", "lbfgs"]


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, y


def table(X, y=None, **cols):
    d = {"features": X}
    if y is not None:
        d["label"] = y
    d.update(cols)
    return fl.table(d)


def coef(model):
    md = model.get_model_data()[0]
    return fl.linalg.to_numpy(md.column("coefficient"))[0], md.column("intercept")[0].as_py()


def pred(model, t):
    return model.transform(t).column("prediction").to_numpy()


def objective(X, y, s, w, b, reg, en):
    s = s / s.sum()
    r = y - X @ w - b
    return float(0.5 * s @ (r * r) + reg * (en * np.abs(w).sum() + (1 - en) / 2 * w @ w))


def kkt(X, y, s, w, b, reg, en):
    """Largest violation of the optimality conditions, relative to the gradient scale."""
    s = s / s.sum()
    r = s * (X @ w + b - y)
    g = X.T @ r + reg * (1 - en) * w
    l1 = reg * en
    viol = np.where(w != 0, np.abs(g + l1 * np.sign(w)), np.maximum(np.abs(g) - l1, 0))
    return max(viol.max(), abs(r.sum()))


# ---------------------------------------------------------------- params

def test_param_defaults():
    p = LinearRegression().get_params()
    assert p == {"features_col": "features", "label_col": "label", "weight_col": None,
                 "prediction_col": "prediction", "max_iter": 100, "reg": 0.0, "elastic_net": 0.0, "tol": 1e-6,
                 "fit_intercept": True, "solver": "auto", "learning_rate": 0.1, "global_batch_size": 32,
                 "seed": None}
    assert set(LinearRegressionModel().get_params()) == {"features_col", "prediction_col"}
    m = LinearRegression(prediction_col="yhat", reg=0.5).fit(table(np.eye(3), np.arange(3.0)))
    assert m.prediction_col == "yhat"


def test_output_schema(diabetes):
    X, y = diabetes
    t = table(X, y, id=np.arange(len(y)))
    out = LinearRegression().fit(t).transform(t)
    assert out.column_names == ["features", "label", "id", "prediction"]
    assert out.schema.field("prediction").type == pa.float64()


# ---------------------------------------------------------------- oracles

def test_ols_matches_numpy_lstsq(diabetes):
    X, y = diabetes
    A = np.c_[X, np.ones(len(y))]
    expected = np.linalg.lstsq(A, y, rcond=None)[0]
    for solver in SOLVERS:
        model = LinearRegression(solver=solver, tol=1e-12, max_iter=5000).fit(table(X, y))
        w, b = coef(model)
        np.testing.assert_allclose(np.r_[w, b], expected, rtol=1e-5, atol=1e-3)
        assert model.coefficients.shape == (X.shape[1],) and isinstance(model.intercept, float)
        np.testing.assert_allclose(np.r_[model.coefficients, model.intercept], expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_matches_sklearn(diabetes, solver, fit_intercept):
    X, y = diabetes
    reg = 0.001
    t = table(X, y)
    model = LinearRegression(reg=reg, solver=solver, fit_intercept=fit_intercept, tol=1e-12, max_iter=5000).fit(t)
    sk = Ridge(alpha=reg * len(y), fit_intercept=fit_intercept, solver="cholesky").fit(X, y)
    w, b = coef(model)
    np.testing.assert_allclose(pred(model, t), sk.predict(X), rtol=1e-6, atol=1e-4)  # y is ~150
    np.testing.assert_allclose(w, sk.coef_, rtol=1e-4)
    ones = np.ones(len(y))
    assert objective(X, y, ones, w, b, reg, 0) == pytest.approx(objective(X, y, ones, sk.coef_, sk.intercept_, reg, 0),
                                                                rel=1e-10)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg,en", [(0.01, 0.5), (0.1, 1.0), (0.001, 0.9)])
def test_elastic_net_matches_sklearn(diabetes, solver, reg, en):
    X, y = diabetes
    t = table(X, y)
    model = LinearRegression(reg=reg, elastic_net=en, solver=solver, tol=1e-10, max_iter=20000).fit(t)
    sk = ElasticNet(alpha=reg, l1_ratio=en, tol=1e-14, max_iter=200000).fit(X, y)
    w, b = coef(model)
    ones = np.ones(len(y))
    f_fl, f_sk = objective(X, y, ones, w, b, reg, en), objective(X, y, ones, sk.coef_, sk.intercept_, reg, en)
    assert f_fl == pytest.approx(f_sk, rel=1e-8)
    np.testing.assert_allclose(pred(model, t), sk.predict(X), atol=1e-3)
    np.testing.assert_array_equal(w == 0, sk.coef_ == 0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_kkt_conditions_hold(diabetes, solver):
    X, y = diabetes
    Xs = StandardScaler().fit_transform(X)
    for reg, en in [(0.5, 0.0), (0.5, 0.5), (2.0, 1.0)]:
        w, b = coef(LinearRegression(reg=reg, elastic_net=en, solver=solver, tol=1e-10, max_iter=5000)
                    .fit(table(Xs, y)))
        assert kkt(Xs, y, np.ones(len(y)), w, b, reg, en) < 1e-5  # gradients scale with y (~150)
        if en == 1.0:
            assert (w == 0).any()


def test_collinear_features_without_penalty_give_a_least_squares_solution(diabetes):
    X, y = diabetes
    Xd = np.c_[X, X[:, :2]]  # duplicated columns: the normal equations are singular
    model = LinearRegression(solver="normal").fit(table(Xd, y))
    expected = np.linalg.lstsq(np.c_[X, np.ones(len(y))], y, rcond=None)[0]
    A = np.c_[X, np.ones(len(y))]
    np.testing.assert_allclose(pred(model, table(Xd)), A @ expected, rtol=1e-6)


def test_sgd_converges_close_to_optimum(diabetes):
    X, y = diabetes
    Xs = StandardScaler().fit_transform(X)
    reg = 0.1
    t = table(Xs, y)
    est = LinearRegression(reg=reg, solver="sgd", learning_rate=0.01, global_batch_size=32, max_iter=100, tol=0.0,
                           seed=0)
    model = est.fit(t)
    sk = Ridge(alpha=reg * len(y)).fit(Xs, y)
    w, b = coef(model)
    ones = np.ones(len(y))
    f_opt = objective(Xs, y, ones, sk.coef_, sk.intercept_, reg, 0)
    assert f_opt <= objective(Xs, y, ones, w, b, reg, 0) < f_opt * (1 + 1e-3)
    assert np.abs(pred(model, t) - sk.predict(Xs)).max() < 2.0
    np.testing.assert_array_equal(coef(est.fit(t))[0], w)  # deterministic for a seed
    sparse = est.fit(table(sps.csr_matrix(Xs), y))
    np.testing.assert_allclose(coef(sparse)[0], w, atol=1e-9)


def test_sgd_divergence_is_reported(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="SGD diverged at epoch .* lower learning_rate"):
        LinearRegression(solver="sgd", learning_rate=1e6, max_iter=5).fit(table(X * 100, y))


# ---------------------------------------------------------------- sparse, weights

@pytest.mark.parametrize("solver", SOLVERS)
def test_sparse_input_equals_dense(diabetes, solver):
    X, y = diabetes
    Xz = np.where(X > 0.01, X, 0.0)
    dense_t, sparse_t = table(Xz, y), table(sps.csr_matrix(Xz), y)
    assert fl.linalg.is_sparse(sparse_t.schema.field("features").type)
    for kw in [dict(reg=0.001), dict(reg=0.01, elastic_net=0.5)]:
        md = LinearRegression(solver=solver, tol=1e-12, max_iter=5000, **kw).fit(dense_t)
        ms = LinearRegression(solver=solver, tol=1e-12, max_iter=5000, **kw).fit(sparse_t)
        np.testing.assert_allclose(coef(ms)[0], coef(md)[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(pred(ms, sparse_t), pred(md, dense_t), rtol=1e-8)
        np.testing.assert_allclose(pred(md, sparse_t), pred(md, dense_t), rtol=1e-12)


def test_hashed_sparse_features_use_lbfgs_and_match_ridge():
    rng = np.random.default_rng(5)
    n, d, nnz = 2000, 1 << 18, 10
    rows = np.repeat(np.arange(n), nnz)
    X = sps.csr_matrix((rng.standard_normal(n * nnz), (rows, rng.integers(0, d, n * nnz))), shape=(n, d))
    X.sum_duplicates()
    y = X @ rng.standard_normal(d) + 3.0 + 0.1 * rng.standard_normal(n)
    reg = 1e-2
    model = LinearRegression(reg=reg, tol=1e-10, max_iter=2000).fit(table(X, y))  # auto -> lbfgs for 2^18 dims
    w, b = coef(model)
    assert w.shape == (d,)
    assert kkt(X, y, np.ones(n), w, b, reg, 0.0) < 1e-7
    sk = Ridge(alpha=reg * n, solver="sparse_cg", tol=1e-12, max_iter=100000).fit(X, y)
    np.testing.assert_allclose(pred(model, table(X)), sk.predict(X), atol=1e-3)


@pytest.mark.parametrize("solver", SOLVERS + ["sgd"])
def test_weight_col_equals_row_duplication(diabetes, solver):
    X, y = diabetes
    Xs = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(1)
    wts = rng.integers(0, 4, len(y)).astype(float)
    rep = np.repeat(np.arange(len(y)), wts.astype(int))
    kw = dict(reg=0.05, elastic_net=0.3, solver=solver, tol=1e-12, max_iter=2000)
    if solver == "sgd":  # SGD visits rows differently; compare both to the optimum instead
        kw.update(learning_rate=0.01, max_iter=100, tol=0.0)
    weighted = LinearRegression(weight_col="w", **kw).fit(table(Xs, y, w=wts))
    duplicated = LinearRegression(**kw).fit(table(Xs[rep], y[rep]))
    if solver == "sgd":
        sk = ElasticNet(alpha=0.05, l1_ratio=0.3, tol=1e-12).fit(Xs[rep], y[rep])
        f_opt = objective(Xs, y, wts, sk.coef_, sk.intercept_, 0.05, 0.3)
        for m in (weighted, duplicated):
            assert f_opt <= objective(Xs, y, wts, *coef(m), 0.05, 0.3) < f_opt * (1 + 2e-3)
        return
    np.testing.assert_allclose(coef(weighted)[0], coef(duplicated)[0], rtol=1e-6, atol=1e-6)
    assert coef(weighted)[1] == pytest.approx(coef(duplicated)[1], rel=1e-9)
    sk = ElasticNet(alpha=0.05, l1_ratio=0.3, tol=1e-14, max_iter=100000).fit(Xs, y, sample_weight=wts)
    np.testing.assert_allclose(pred(weighted, table(Xs)), sk.predict(Xs), rtol=1e-6, atol=1e-3)


# ---------------------------------------------------------------- persistence, model data


def test_model_data(diabetes):
    X, y = diabetes
    model = LinearRegression().fit(table(X, y))
    (md,) = model.get_model_data()
    assert md.schema.field("coefficient").type == pa.list_(pa.float64(), 10)
    assert md.schema.field("intercept").type == pa.float64()
    assert md.schema.field("model_version").type == pa.int64()
    assert md.num_rows == 1 and md.column("model_version").to_pylist() == [0]
    assert LinearRegressionModel().set_model_data(md).transform(table(X)).equals(model.transform(table(X)))
    hand = LinearRegressionModel().set_model_data({"coefficient": [[1.0, 2.0]], "intercept": [-1.0]})
    assert pred(hand, table(np.array([[1.0, 1.0], [0.0, 0.5]]))).tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="exactly one row, got 2"):
        LinearRegressionModel().set_model_data({"coefficient": [[1.0], [2.0]], "intercept": [0.0, 0.0]})
    with pytest.raises(ValueError, match="model data has no 'coefficient' column"):
        LinearRegressionModel().set_model_data({"weights": [[1.0]], "intercept": [0.0]})


# ---------------------------------------------------------------- empty, bad input


def test_bad_input(diabetes):
    X, y = diabetes
    yb = y.copy()
    yb[7] = np.inf
    with pytest.raises(ValueError, match="LinearRegression: column 'label' has NaN or infinity at row 7"):
        LinearRegression().fit(table(X, yb))
    Xb = X.copy()
    Xb[4, 2] = np.nan
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 4"):
        LinearRegression().fit(table(Xb, y))
    Xsp = sps.csr_matrix(Xb)
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 4"):
        LinearRegression().fit(table(Xsp, y))
    with pytest.raises(ValueError, match=r"input column 'target' \(parameter 'label_col'\) is missing"):
        LinearRegression(label_col="target").fit(table(X, y))
    with pytest.raises(ValueError, match=r"negative weight -2.0 at row 1"):
        LinearRegression(weight_col="w").fit(table(X[:3], y[:3], w=[1.0, -2.0, 1.0]))
    model = LinearRegression().fit(table(X, y))
    with pytest.raises(ValueError, match="holds vectors of size 2, the model expects size 10"):
        model.transform(table(np.ones((3, 2))))


# ---------------------------------------------------------------- row kernel

def test_row_fn_equals_batch(diabetes):
    X, y = diabetes
    model = LinearRegression(reg=0.001).fit(table(X, y))
    Xz = np.where(X > 0, X, 0.0)
    batch = pred(model, table(Xz))
    fn = model.row_fn()
    for i in range(0, len(y), 11):
        nz = np.flatnonzero(Xz[i])
        for x in (Xz[i], Xz[i].tolist(), SparseVector(10, nz, Xz[i, nz])):
            row = {"features": x}
            fn(row)
            assert row["prediction"] == pytest.approx(batch[i], rel=1e-12, abs=1e-9)
    assert fl.LocalPredictor(model).predict({"features": Xz[0]})["prediction"] == pytest.approx(batch[0], rel=1e-12)
    with pytest.raises(ValueError, match="is missing from the row"):
        fn({})
    with pytest.raises(ValueError, match="the model expects size 10"):
        fn({"features": np.ones(3)})
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn({"features": np.full(10, np.nan)})


def test_doctests():
    import flowlearn.regression.linear_regression as mod

    assert doctest.testmod(mod).failed == 0


# ---------------------------------------------------------------- SGD on the iteration engine

def numpy_prox_sgd(X, y, s, w, b, lr, batch, l2, l1, max_iter, tol, seed):
    """Proximal mini-batch SGD on half the squared error, written here with NumPy: per epoch a
    permutation from default_rng(seed); per mini-batch a step of lr along the weighted-mean
    gradient at the weights from before the batch, then soft-thresholding by lr * l1 and shrinking
    by 1 / (1 + lr * l2) (intercept unpenalized); stops after max_iter epochs or when the epoch's
    objective changes by <= tol * max(1, |objective|). Returns (w, b, epochs)."""
    rng = np.random.default_rng(seed)
    s = s / s.sum()
    n = X.shape[0]
    prev = None
    for epoch in range(1, max_iter + 1):
        perm = rng.permutation(n)
        loss_sum = w_sum = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            r = np.asarray(X[idx] @ w).ravel() + b - y[idx]
            loss_sum += s[idx] @ (0.5 * r * r)
            w_sum += s[idx].sum()
            g = s[idx] * r
            step = lr / s[idx].sum()
            b -= step * g.sum()
            w = w - step * np.asarray(X[idx].T @ g).ravel()
            w = np.sign(w) * np.maximum(np.abs(w) - lr * l1, 0.0) / (1.0 + lr * l2)
        cur = loss_sum / w_sum + 0.5 * l2 * w @ w + l1 * np.abs(w).sum()
        if prev is not None and abs(prev - cur) <= tol * max(1.0, abs(cur)):
            break
        prev = cur
    return w, b, epoch


@pytest.mark.parametrize("sparse, reg, en, tol, epochs", [
    (False, 0.1, 0.3, 0.0, 20),
    (False, 0.1, 0.0, 1e-3, 11),   # stopped by tol
    (True, 0.1, 0.0, 0.0, 20),     # lazy L2 scaling of the sparse kernel
])
def test_sgd_epochs_are_rounds_of_the_iteration_engine(monkeypatch, diabetes, sparse, reg, en, tol, epochs):
    from flowlearn import optim

    results = []

    def spy(*args, **kwargs):
        results.append(fl.iteration.iterate_bounded(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(optim, "iterate_bounded", spy)
    X, y = diabetes
    Xs = StandardScaler().fit_transform(X)
    if sparse:
        Xs = sps.csr_matrix(np.where(np.abs(Xs) > 0.5, Xs, 0.0))
    est = LinearRegression(reg=reg, elastic_net=en, solver="sgd", learning_rate=0.01, global_batch_size=16,
                           max_iter=20 if tol == 0.0 else 500, tol=tol, seed=4)
    w, b = coef(est.fit(table(Xs, y)))
    (res,) = results
    assert res.rounds == epochs and res.termination == "criteria"  # one round per epoch, ended by the criteria
    w_ref, b_ref, e_ref = numpy_prox_sgd(Xs, y, np.ones(len(y)), np.zeros(Xs.shape[1]), float(y.mean()), 0.01, 16,
                                         reg * (1 - en), reg * en, est.max_iter, tol, 4)
    assert e_ref == epochs
    np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-9)
    assert b == pytest.approx(b_ref, rel=1e-12)
