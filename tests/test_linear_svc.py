"""LinearSVC / LinearSVCModel (hinge loss).

Oracles: scikit-learn's ``LinearSVC(loss="hinge")`` (liblinear) on the breast-cancer data for the
objective value without intercept (``C = 1 / (reg * n)``; with an intercept scikit-learn
penalizes it, so its solution can only be worse for flowlearn's objective; liblinear visits the
rows in a random order and at some seeds stops at max_iter short of the optimum, hence the fixed
``random_state``), and a subgradient
optimality certificate (the KKT conditions of the hinge / elastic-net problem, checked by a
bounded least-squares fit of the free subgradient coefficients) for every solver path.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.optimize import lsq_linear
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC as SkLinearSVC

import flowlearn as fl
from flowlearn.classification.linear_svc import LinearSVC, LinearSVCModel
from flowlearn.linalg import SparseVector, from_csr


def hinge_objective(X, y, w, b, reg=0.0, elastic_net=0.0, sample_weight=None):
    """The objective written out here from its definition (weighted mean hinge loss on labels
    mapped to -1/+1, plus reg * (elastic_net * |w|_1 + (1 - elastic_net) / 2 * |w|_2^2), intercept
    unpenalized), independent of the code under test."""
    t = np.where(np.asarray(y) > 0.5, 1.0, -1.0)
    m = np.asarray(X @ np.asarray(w)).ravel() + b
    s = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    hinge = np.maximum(0.0, 1.0 - t * m)
    w = np.asarray(w, dtype=float)
    return float(np.sum(s * hinge) / np.sum(s)) + reg * (elastic_net * np.sum(np.abs(w))
                                                        + 0.5 * (1 - elastic_net) * float(w @ w))


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(np.float64)


def coef(model):
    row = model.get_model_data()[0].to_pylist()[0]
    return np.array(row["coefficient"]), row["intercept"]


def kkt_residual(X, y, w, b, reg, en, s=None, fit_intercept=True, margin_tol=1e-6, zero_tol=1e-9):
    """Largest violation of 0 in the subdifferential of the objective at (w, b): rows on the margin
    (|t m - 1| <= margin_tol) and zero coefficients (with an L1 part) get their subgradient
    coefficient in [0, 1] resp. [-1, 1] fitted by bounded least squares."""
    t = 2 * y - 1
    s = np.ones(len(y)) if s is None else s
    S = s.sum()
    m = t * (X @ w + b)
    l1, l2 = reg * en, reg * (1 - en)
    on = np.abs(m - 1) <= margin_tol
    beta = (m < 1 - margin_tol).astype(float)
    zero = (np.abs(w) <= zero_tol) if l1 > 0 else np.zeros(len(w), bool)
    fixed = -(X.T @ (s * beta * t)) / S + l2 * w + l1 * np.sign(w) * ~zero
    cols = [-(X[on].T * (s[on] * t[on])) / S]
    if zero.any():
        cols.append(l1 * np.eye(len(w))[:, zero])
    A = np.hstack(cols)
    target = -fixed
    if fit_intercept:
        A = np.vstack([A, np.r_[-(s[on] * t[on]) / S, np.zeros(int(zero.sum()))]])
        target = np.r_[target, (s * beta * t).sum() / S]
    lo = np.r_[np.zeros(int(on.sum())), -np.ones(int(zero.sum()))]
    hi = np.ones(A.shape[1])
    if A.shape[1] == 0:
        return float(np.abs(target).max())
    res = lsq_linear(A, target, bounds=(lo, hi), tol=1e-12, lsmr_tol="auto", max_iter=10_000)
    return float(np.abs(A @ res.x - target).max())


def test_params_defaults_and_bad_values():
    p = LinearSVC().get_params()
    assert (p["threshold"], p["reg"], p["elastic_net"], p["learning_rate"], p["global_batch_size"], p["tol"]) == \
        (0.0, 0.0, 0.0, 0.1, 32, 1e-6)
    assert p["solver"] == "exact" and p["max_iter"] == 100 and p["fit_intercept"] is True
    assert (p["features_col"], p["label_col"], p["prediction_col"], p["raw_prediction_col"]) == \
        ("features", "label", "prediction", "raw_prediction")
    assert LinearSVCModel().threshold == 0.0
    with pytest.raises(ValueError, match=r"LinearSVC: parameter 'solver' = 'newton' violates in_array"):
        LinearSVC(solver="newton")
    with pytest.raises(ValueError, match=r"parameter 'elastic_net' = 2.0 violates in_range\(0, 1\)"):
        LinearSVC(elastic_net=2.0)


@pytest.mark.parametrize("reg", [0.01, 0.05])
def test_matches_sklearn_liblinear_without_intercept(cancer, reg):
    X, y = cancer
    n = len(y)
    model = LinearSVC(reg=reg, fit_intercept=False, tol=1e-10).fit(fl.table({"features": X, "label": y}))
    w, b = coef(model)
    assert b == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkLinearSVC(loss="hinge", C=1 / (reg * n), fit_intercept=False, tol=1e-12, max_iter=200_000,
                             random_state=0).fit(X, y)
    ours = hinge_objective(X, y, w, 0.0, reg)
    theirs = hinge_objective(X, y, sk.coef_[0], 0.0, reg)
    assert ours <= theirs + 1e-10
    assert ours == pytest.approx(theirs, rel=1e-6)
    np.testing.assert_allclose(w, sk.coef_[0], atol=2e-3 * np.abs(w).max())
    np.testing.assert_allclose(model.coefficients, sk.coef_[0], atol=2e-3 * np.abs(w).max())
    assert model.intercept == 0.0
    assert kkt_residual(X, y, w, 0.0, reg, 0.0, fit_intercept=False) < 1e-8


def test_intercept_is_unpenalized_and_optimal(cancer):
    X, y = cancer
    n = len(y)
    reg = 0.01
    model = LinearSVC(reg=reg, tol=1e-10).fit(fl.table({"features": X, "label": y}))
    w, b = coef(model)
    assert kkt_residual(X, y, w, b, reg, 0.0) < 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkLinearSVC(loss="hinge", C=1 / (reg * n), tol=1e-12, max_iter=200_000, random_state=0).fit(X, y)
    assert hinge_objective(X, y, w, b, reg) <= hinge_objective(X, y, sk.coef_[0], sk.intercept_[0], reg) + 1e-12


@pytest.mark.parametrize("reg,en", [(0.02, 0.5), (0.0, 0.0), (0.01, 1.0)])
def test_elastic_net_and_linear_program_paths_are_optimal(cancer, reg, en):
    """Dual L-BFGS-B with soft-thresholding (elastic net) and the HiGHS linear program (no L2 part)."""
    X, y = cancer
    X, y = X[:150, :10], y[:150]
    w, b = coef(LinearSVC(reg=reg, elastic_net=en, tol=1e-10).fit(fl.table({"features": X, "label": y})))
    assert kkt_residual(X, y, w, b, reg, en) < 1e-7
    if en == 1.0:
        assert (w == 0).sum() >= 1          # L1 gives exact zeros


def test_sample_weights_equal_repeated_rows(cancer):
    X, y = cancer
    X, y = X[:200], y[:200]
    rep = np.where(np.arange(200) % 4 == 0, 3, 1)
    a = LinearSVC(reg=0.01, weight_col="w", tol=1e-10).fit(fl.table({"features": X, "label": y, "w": rep * 1.0}))
    b = LinearSVC(reg=0.01, tol=1e-10).fit(fl.table({"features": np.repeat(X, rep, axis=0),
                                                     "label": np.repeat(y, rep)}))
    wa, ba = coef(a)
    wb, bb = coef(b)
    obj_b = hinge_objective(np.repeat(X, rep, axis=0), np.repeat(y, rep), wb, bb, 0.01)
    assert hinge_objective(X, y, wa, ba, 0.01, sample_weight=rep * 1.0) == pytest.approx(obj_b, rel=1e-8)
    np.testing.assert_allclose(wa, wb, atol=1e-5)


def test_sparse_input_equals_dense(cancer):
    X, y = cancer
    Xs = X.copy()
    Xs[np.abs(Xs) < 0.5] = 0.0
    dense = LinearSVC(reg=0.01, tol=1e-10).fit(fl.table({"features": Xs, "label": y}))
    sparse = LinearSVC(reg=0.01, tol=1e-10).fit(fl.table({"features": from_csr(sps.csr_matrix(Xs)), "label": y}))
    np.testing.assert_allclose(coef(sparse)[0], coef(dense)[0], atol=1e-7)
    assert coef(sparse)[1] == pytest.approx(coef(dense)[1], abs=1e-7)
    out = sparse.transform(fl.table({"features": from_csr(sps.csr_matrix(Xs[:5]))}))
    assert out.column("prediction").to_pylist() == dense.transform(fl.table({"features": Xs[:5]})).column(
        "prediction").to_pylist()


def test_sgd_solver_is_deterministic_and_near_optimal(cancer):
    X, y = cancer
    t = fl.table({"features": X, "label": y})
    est = LinearSVC(reg=0.01, solver="sgd", learning_rate=0.05, max_iter=100, seed=7)
    a, b = coef(est.fit(t)), coef(est.fit(t))
    np.testing.assert_array_equal(a[0], b[0])
    exact = hinge_objective(X, y, *coef(LinearSVC(reg=0.01, tol=1e-9).fit(t)), 0.01)
    assert hinge_objective(X, y, a[0], a[1], 0.01) < exact * 1.05


def test_transform_outputs_threshold_row_fn_and_schema():
    m = LinearSVCModel(threshold=0.5).set_model_data({"coefficient": [[1.0, -2.0]], "intercept": [0.25],
                                                      "model_version": [0]})
    t = fl.table({"features": [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]})
    out = m.transform(t)
    assert out.schema.field("prediction").type == pa.float64()
    assert out.schema.field("raw_prediction").type == pa.list_(pa.float64(), 2)
    assert out.column("raw_prediction").to_pylist() == [[-1.25, 1.25], [-0.25, 0.25], [1.75, -1.75]]
    assert out.column("prediction").to_pylist() == [1.0, 0.0, 0.0]   # margin >= threshold 0.5
    for thr, expect in [(0.5, [1.0, 0.0, 0.0]), (0.0, [1.0, 1.0, 0.0])]:
        m.set(threshold=thr)
        out = m.transform(t)
        assert out.column("prediction").to_pylist() == expect
        fn = m.row_fn()
        for i, x in enumerate([np.array([1.0, 0.0]), [0.0, 0.0], SparseVector(2, [1], [1.0])]):
            row = {"features": x}
            fn(row)
            assert row["prediction"] == expect[i]
            assert list(row["raw_prediction"]) == out.column("raw_prediction")[i].as_py()


def test_save_load_and_model_data_round_trip(tmp_path, cancer):
    X, y = cancer
    t = fl.table({"features": X[:100], "label": y[:100]})
    model = LinearSVC(reg=0.05, threshold=0.1, prediction_col="p").fit(t)
    model.save(str(tmp_path / "svc"))
    back = fl.load(str(tmp_path / "svc"))
    assert isinstance(back, LinearSVCModel) and back.threshold == 0.1 and back.prediction_col == "p"
    assert back.transform(t).column("raw_prediction").to_pylist() == model.transform(t).column(
        "raw_prediction").to_pylist()
    md = model.get_model_data()
    assert md[0].column_names == ["coefficient", "intercept", "model_version"]
    again = LinearSVCModel(threshold=0.1, prediction_col="p").set_model_data(*md)
    assert again.transform(t).column("p").to_pylist() == model.transform(t).column("p").to_pylist()
    est = LinearSVC(reg=0.5, solver="sgd")
    est.save(str(tmp_path / "est"))
    assert fl.load(str(tmp_path / "est")).get_params() == est.get_params()


def test_empty_and_bad_input():
    m = LinearSVCModel().set_model_data({"coefficient": [[1.0]], "intercept": [0.0], "model_version": [0]})
    empty = m.transform(fl.table({"features": pa.array([], pa.list_(pa.float64(), 1))}))
    assert empty.num_rows == 0 and empty.schema.field("raw_prediction").type == pa.list_(pa.float64(), 2)
    with pytest.raises(ValueError, match="fit needs at least one row"):
        LinearSVC().fit(fl.table({"features": pa.array([], pa.list_(pa.float64(), 1)),
                                  "label": pa.array([], pa.float64())}))
    with pytest.raises(ValueError, match=r"column 'label' \(parameter 'label_col'\) has label 2.0 at row 1; "
                                         r"LinearSVC is a binary classifier"):
        LinearSVC().fit({"features": [[1.0], [2.0]], "label": [0.0, 2.0]})
    with pytest.raises(ValueError, match=r"holds vectors of size 2, the model expects size 1"):
        m.transform({"features": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match=r"NaN or infinity at row 1"):
        LinearSVC().fit({"features": [[1.0], [math.inf]], "label": [0.0, 1.0]})
    with pytest.raises(ValueError, match="exactly one row"):
        LinearSVCModel().set_model_data({"coefficient": [[1.0], [2.0]], "intercept": [0.0, 0.0],
                                         "model_version": [0, 0]})


# ---------------------------------------------------------------- SGD on the iteration engine

def numpy_hinge_sgd(X, y, lr, batch, l2, l1, max_iter, tol, seed):
    """Flink ML's mini-batch SGD on the hinge loss written here with NumPy (unit weights): per epoch
    a permutation from default_rng(seed); per mini-batch a step of lr along the mean subgradient
    at the weights from before the batch, then soft-thresholding by lr * l1 and shrinking by
    1 / (1 + lr * l2); stops after max_iter epochs or when the epoch's objective changes by
    <= tol * max(1, |objective|). Returns (w, b, epochs)."""
    rng = np.random.default_rng(seed)
    t = 2 * y - 1
    n, d = X.shape
    w, b = np.zeros(d), 0.0
    prev = None
    for epoch in range(1, max_iter + 1):
        perm = rng.permutation(n)
        loss_sum = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            m = t[idx] * (np.asarray(X[idx] @ w).ravel() + b)
            loss_sum += np.maximum(0.0, 1.0 - m).sum()
            g = np.where(m <= 1.0, -t[idx], 0.0)
            b -= lr / len(idx) * g.sum()
            w = w - lr / len(idx) * np.asarray(X[idx].T @ g).ravel()
            w = np.sign(w) * np.maximum(np.abs(w) - lr * l1, 0.0) / (1.0 + lr * l2)
        cur = loss_sum / n + 0.5 * l2 * w @ w + l1 * np.abs(w).sum()
        if prev is not None and abs(prev - cur) <= tol * max(1.0, abs(cur)):
            break
        prev = cur
    return w, b, epoch


def committed_hinge_sgd_loop(X, y, l1, l2, lr, batch, max_iter, tol, seed):
    """The epoch loop of LinearSVC's SGD as a plain Python loop around the linear models' Numba
    epoch kernels with the hinge loss (unit weights, from zero). Returns (w, b, epochs)."""
    from flowlearn import optim

    with optim.LinearObjective(X, y, None, "hinge", 1, True, l2, l1) as obj:
        rng = np.random.default_rng(seed)
        W, b = np.zeros((1, obj.d)), np.zeros(1)
        prev = None
        for epoch in range(1, max_iter + 1):
            perm = rng.permutation(obj.n).astype(np.int64)
            if obj.sparse:
                loss, wsum = optim._sgd_epoch_sparse(obj.X.indptr, obj.X.indices, obj.X.data, obj.y, obj.s, W, b, 3,
                                                     True, perm, batch, lr, l2, l1)
            else:
                loss, wsum = optim._sgd_epoch_dense(obj.X, obj.y, obj.s, W, b, 3, True, perm, batch, lr, l2, l1)
            cur = loss / wsum + 0.5 * l2 * float(np.vdot(W, W)) + l1 * float(np.abs(W).sum())
            if prev is not None and abs(prev - cur) <= tol * max(1.0, abs(cur)):
                break
            prev = cur
    return W[0], float(b[0]), epoch


@pytest.mark.parametrize("sparse, en, tol, max_iter, epochs", [
    (False, 0.0, 0.0, 15, 15),
    (False, 0.5, 0.0, 15, 15),
    (True, 0.0, 0.0, 15, 15),
    (False, 0.0, 1e-3, 300, 10),   # stopped by tol
])
def test_sgd_epochs_are_rounds_of_the_iteration_engine(monkeypatch, cancer, sparse, en, tol, max_iter, epochs):
    from flowlearn import optim

    results = []

    def spy(*args, **kwargs):
        results.append(fl.iteration.iterate_bounded(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(optim, "iterate_bounded", spy)
    X, y = cancer
    if sparse:
        X = sps.csr_matrix(np.where(X > 0.5, X, 0.0))
    reg, lr, batch = 0.01, 0.05, 16
    w, b = coef(LinearSVC(reg=reg, elastic_net=en, solver="sgd", learning_rate=lr, global_batch_size=batch,
                          max_iter=max_iter, tol=tol, seed=9).fit(fl.table({"features": X, "label": y})))
    (res,) = results
    assert res.rounds == epochs and res.termination == "criteria"  # one round per epoch, ended by the criteria
    wc, bc, ec = committed_hinge_sgd_loop(X, y, reg * en, reg * (1 - en), lr, batch, max_iter, tol, 9)
    wn, bn, en_ = numpy_hinge_sgd(X, y, lr, batch, reg * (1 - en), reg * en, max_iter, tol, 9)
    assert ec == en_ == epochs
    np.testing.assert_array_equal(w, wc)  # bit for bit the committed solver's result
    assert b == bc
    np.testing.assert_allclose(w, wn, rtol=1e-9, atol=1e-12)
    assert b == pytest.approx(bn, rel=1e-9)
