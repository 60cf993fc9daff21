"""OnlineLearning: online training of a pipeline's linear last stage.

Oracles:
* River's ``linear_model.LogisticRegression`` / ``LinearRegression`` with ``optim.SGD``,
  ``Momentum``, ``AdaGrad``, ``RMSProp``, ``Adam`` (and ``loss=Hinge`` for the linear SVM), fed
  the same rows one at a time on River's bundled Phishing and TrumpApproval datasets. Mapping of
  conventions (flowlearn -> River):
  - ``global_batch_size=1`` -> ``learn_one``; ``intercept_lr=r`` -> River's ``intercept_lr=r``
    (River always steps the intercept with plain SGD, never with its optimizer);
  - ``reg=r, elastic_net=0`` -> River ``l2=r`` (both add ``l2 * w`` to the gradient of the
    features present); ``reg=r, elastic_net=1`` -> River ``l1=r`` (both use the cumulative L1
    penalty of Tsuruoka et al. with the base learning rate);
  - ``gamma`` -> River's ``rho`` (Momentum, RMSProp); ``beta1/beta2/epsilon`` -> ``beta_1/beta_2/eps``;
  - linear regression: flowlearn's loss is half the squared error (gradient ``z - y``), River's
    ``Squared`` loss is the full one (gradient ``2 (z - y)``). For SGD, River with ``lr``,
    ``intercept_lr`` and ``l2`` equals flowlearn with ``2 lr``, ``2 intercept_lr`` and ``l2 / 2``;
    for AdaGrad (scale-invariant up to epsilon) flowlearn's ``epsilon`` is River's ``eps / 4``.
  - the warm start from a batch model is given to River by setting its weights and intercept.
* The sequential FTRL-Proximal of McMahan et al. (2013), Algorithm 1, written out in Python.
* Closed-form one-step (and two-step) updates for momentum, RMSProp, softmax with SGD and Adam.
* A drifting ClickStream: online training beats the frozen batch pipeline on post-drift data.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps

import flowlearn as fl
from flowlearn.trainer import OperatorState
from online_steps import versions_of_step  # noqa: E402
from flowlearn.classification.linear_svc import LinearSVCModel
from flowlearn.classification.logistic_regression import LogisticRegression, LogisticRegressionModel
from flowlearn.classification.online_learning import OnlineLearning, OnlineLearningTrainer
from flowlearn.datasets import ClickStream
from flowlearn.linalg import from_csr
from flowlearn.regression.linear_regression import LinearRegression, LinearRegressionModel

river = pytest.importorskip("river")
from river import datasets as rdatasets  # noqa: E402
from river import linear_model as rlinear  # noqa: E402
from river import optim as roptim  # noqa: E402


# ------------------------------------------------------------------------------------------------
# data and helpers
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phishing():
    rows = list(rdatasets.Phishing())
    keys = list(rows[0][0])
    X = np.array([[x[k] for k in keys] for x, _ in rows], dtype=np.float64)
    y = np.array([float(v) for _, v in rows])
    return keys, X, y


def linear_model(cls, W, b, version=0, **params):
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    return cls(**params).set_model_data({"coefficient": W.tolist(), "intercept": b.tolist(),
                                         "model_version": [version] * len(b)})


def last_version(pm: fl.PipelineModel) -> int:
    return pm.stages[-1].get_model_data()[0].column("model_version")[0].as_py()


def last_weights(pm: fl.PipelineModel):
    row = pm.stages[-1].get_model_data()[0].to_pylist()
    return np.array([r["coefficient"] for r in row]), np.array([r["intercept"] for r in row])


def river_warm_start(model, keys, w, b):
    """Give a River linear model the batch model's weights (River has no public setter)."""
    for k, v in zip(keys, w):
        model._weights[k] = float(v)
    model.intercept = float(b)


def log_loss(pm, t):
    p = np.array([r[1] for r in pm.transform(t).column("raw_prediction").to_pylist()])
    p = np.clip(p, 1e-15, 1 - 1e-15)
    y = t.column("label").to_numpy()
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


# ------------------------------------------------------------------------------------------------
# params
# ------------------------------------------------------------------------------------------------

def test_params_defaults_set_and_bad_values():
    est = OnlineLearning()
    p = est.get_params()
    assert p["optim_method"] == "ftrl" and p["learning_rate"] == 0.1 and p["global_batch_size"] == 32
    assert (p["gamma"], p["beta1"], p["beta2"], p["epsilon"]) == (0.9, 0.9, 0.999, 1e-8)
    assert (p["alpha"], p["beta"], p["reg"], p["elastic_net"]) == (0.1, 1.0, 0.0, 0.0)
    assert p["emit_every"] is None and p["intercept_lr"] is None and p["fit_intercept"] is True
    assert p["label_col"] == "label" and p["weight_col"] is None
    est.set(optim_method="adam", beta2=0.99)
    assert est.optim_method == "adam" and est.beta2 == 0.99
    with pytest.raises(ValueError, match=r"OnlineLearning: parameter 'optim_method' = 'lbfgs' violates in_array"):
        OnlineLearning(optim_method="lbfgs")
    with pytest.raises(ValueError, match=r"parameter 'beta2' = 1.0 violates in_range\(0, 1\)"):
        OnlineLearning(beta2=1.0)
    with pytest.raises(ValueError, match=r"parameter 'global_batch_size' = 0 violates gt\(0\)"):
        OnlineLearning(global_batch_size=0)
    with pytest.raises(TypeError, match="has no parameter 'lr'"):
        OnlineLearning(lr=0.1)


# ------------------------------------------------------------------------------------------------
# River oracles (per-example updates)
# ------------------------------------------------------------------------------------------------

RIVER_CASES = {
    "sgd": (dict(optim_method="sgd", learning_rate=0.1), lambda: roptim.SGD(0.1)),
    "momentum": (dict(optim_method="momentum", learning_rate=0.05, gamma=0.8), lambda: roptim.Momentum(0.05, rho=0.8)),
    "adagrad": (dict(optim_method="adagrad", learning_rate=0.1, epsilon=1e-6), lambda: roptim.AdaGrad(0.1, eps=1e-6)),
    "rmsprop": (dict(optim_method="rmsprop", learning_rate=0.01, gamma=0.95),
                lambda: roptim.RMSProp(0.01, rho=0.95, eps=1e-8)),
    "adam": (dict(optim_method="adam", learning_rate=0.01, beta1=0.8, beta2=0.99),
             lambda: roptim.Adam(0.01, beta_1=0.8, beta_2=0.99)),
}


@pytest.mark.parametrize("name", list(RIVER_CASES))
@pytest.mark.parametrize("l2", [0.0, 0.01])
def test_logistic_regression_matches_river_per_example(phishing, name, l2):
    """A pipeline (VectorAssembler -> batch LogisticRegression) trained online row by row equals River's
    LogisticRegression started from the same weights, row by row, to 1e-9; so do the progressive
    predictions (each row predicted before it is learned)."""
    keys, X, y = phishing
    raw = fl.table({**{k: X[:, i] for i, k in enumerate(keys)}, "label": y})
    head = raw.slice(0, 250)
    pm = fl.Pipeline([fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="features"),
                      LogisticRegression(reg=0.01)]).fit(head)
    W0, b0 = last_weights(pm)
    ours_params, make_opt = RIVER_CASES[name]
    tr = OnlineLearning(pm, global_batch_size=1, reg=l2, intercept_lr=0.05, **ours_params).trainer()
    rv = rlinear.LogisticRegression(optimizer=make_opt(), l2=l2, intercept_lr=0.05)
    river_warm_start(rv, keys, W0[0], b0[0])
    stream = raw.slice(250)
    river_p = []
    for i in range(250, len(y)):
        x = dict(zip(keys, X[i]))
        river_p.append(rv.predict_proba_one(x)[True])
        rv.learn_one(x, bool(y[i]))
    ours_p = np.concatenate([tr.predict_and_partial_fit(stream.slice(s, 200))[0]
                             for s in range(0, stream.num_rows, 200)])
    np.testing.assert_allclose(tr.coefficient, [rv.weights[k] for k in keys], rtol=0, atol=1e-9)
    assert tr.intercept == pytest.approx(rv.intercept, abs=1e-9)
    np.testing.assert_allclose(ours_p, river_p, rtol=0, atol=1e-9)
    # the weights actually moved away from the batch model
    assert np.abs(tr.coefficient - W0[0]).max() > 1e-2


def test_sample_weights_and_l1_match_river(phishing):
    """weight_col scales a row's gradient as River's learn_one(x, y, w); elastic_net=1 is River's
    cumulative L1 penalty."""
    keys, X, y = phishing
    w = np.where(np.arange(len(y)) % 3 == 0, 2.5, 0.5)
    t = fl.table({"features": X, "label": y, "w": w})
    start = linear_model(LogisticRegressionModel, np.zeros((1, X.shape[1])), [0.0])
    tr = OnlineLearning(fl.PipelineModel([start]), optim_method="sgd", learning_rate=0.1, global_batch_size=1,
                        reg=0.002, elastic_net=1.0, intercept_lr=0.01, weight_col="w").trainer()
    tr.partial_fit(t)
    rv = rlinear.LogisticRegression(optimizer=roptim.SGD(0.1), l1=0.002, intercept_lr=0.01)
    for i in range(len(y)):
        rv.learn_one(dict(zip(keys, X[i])), bool(y[i]), w=float(w[i]))
    np.testing.assert_allclose(tr.coefficient, [rv.weights[k] for k in keys], rtol=0, atol=1e-9)
    assert tr.intercept == pytest.approx(rv.intercept, abs=1e-9)


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_sparse_features_update_lazily_like_river_dicts(phishing, name):
    """Sparse rows that do not store zeros step only their stored coordinates, exactly as River's
    dict learners step only the keys present in x (the moments of absent features do not decay)."""
    keys, X, y = phishing
    t = fl.table({"features": from_csr(sps.csr_matrix(X)), "label": y})
    start = linear_model(LogisticRegressionModel, np.zeros((1, X.shape[1])), [0.0])
    ours, make_opt = RIVER_CASES[name]
    tr = OnlineLearning(fl.PipelineModel([start]), global_batch_size=1, intercept_lr=0.02, reg=0.01,
                        **ours).trainer()
    tr.partial_fit(t)
    rv = rlinear.LogisticRegression(optimizer=make_opt(), l2=0.01, intercept_lr=0.02)
    for i in range(len(y)):
        rv.learn_one({k: v for k, v in zip(keys, X[i]) if v != 0.0}, bool(y[i]))
    np.testing.assert_allclose(tr.coefficient, [rv.weights.get(k, 0.0) for k in keys], rtol=0, atol=1e-9)
    assert tr.intercept == pytest.approx(rv.intercept, abs=1e-9)
    # and the dense path (every coordinate stepped) is a different algorithm for momentum/adam
    dense = OnlineLearning(fl.PipelineModel([start]), global_batch_size=1, intercept_lr=0.02, reg=0.01,
                           **ours).trainer()
    dense.partial_fit(fl.table({"features": X, "label": y}))
    assert np.abs(dense.coefficient - tr.coefficient).max() > 1e-6


def test_dense_and_fully_stored_sparse_agree(phishing):
    keys, X, y = phishing
    X = X + 0.25  # no zeros: every coordinate is stored in the sparse rows
    start = linear_model(LogisticRegressionModel, np.zeros((1, X.shape[1])), [0.0])
    est = OnlineLearning(fl.PipelineModel([start]), optim_method="adam", learning_rate=0.01, global_batch_size=7)
    a, b = est.trainer(), est.trainer()
    a.partial_fit(fl.table({"features": X, "label": y}))
    b.partial_fit(fl.table({"features": from_csr(sps.csr_matrix(X)), "label": y}))
    np.testing.assert_allclose(a.coefficient, b.coefficient, rtol=0, atol=1e-12)


def test_linear_svm_last_stage_matches_river_hinge(phishing):
    """A LinearSVCModel last stage learns with the hinge loss: River's GLM with loss=Hinge()."""
    keys, X, y = phishing
    start = linear_model(LinearSVCModel, np.zeros((1, X.shape[1])), [0.0])
    tr = OnlineLearning(fl.PipelineModel([start]), optim_method="adagrad", learning_rate=0.05, global_batch_size=1,
                        intercept_lr=0.01, reg=0.001).trainer()
    margins, _ = tr.predict_and_partial_fit(fl.table({"features": X, "label": y}))
    rv = rlinear.LogisticRegression(optimizer=roptim.AdaGrad(0.05), loss=roptim.losses.Hinge(), l2=0.001,
                                    intercept_lr=0.01)
    river_margin = []
    for i in range(len(y)):
        x = dict(zip(keys, X[i]))
        river_margin.append(rv._raw_dot_one(x))
        rv.learn_one(x, bool(y[i]))
    np.testing.assert_allclose(tr.coefficient, [rv.weights[k] for k in keys], rtol=0, atol=1e-9)
    np.testing.assert_allclose(margins, river_margin, rtol=0, atol=1e-9)
    assert tr.kind == "hinge"


@pytest.mark.parametrize("opt", ["sgd", "adagrad"])
def test_linear_regression_matches_river_with_half_squared_mapping(opt):
    """LinearRegressionModel last stage after StandardScaler feature stages vs River's LinearRegression.
    River's Squared loss has gradient 2 (z - y), flowlearn's half squared error z - y: see the module
    docstring for the parameter mapping."""
    rows = list(rdatasets.TrumpApproval())
    keys = list(rows[0][0])
    raw = fl.table({**{k: np.array([float(x[k]) for x, _ in rows]) for k in keys},
                    "label": np.array([float(v) for _, v in rows])})
    head = raw.slice(0, 300)
    pm = fl.Pipeline([fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="raw"),
                      fl.feature.StandardScaler(input_col="raw", output_col="features", with_mean=True),
                      LinearRegression(reg=0.1)]).fit(head)
    W0, b0 = last_weights(pm)
    feats = fl.PipelineModel(pm.stages[:-1]).transform(raw).column("features").to_pylist()
    if opt == "sgd":
        ours = dict(optim_method="sgd", learning_rate=0.02, intercept_lr=0.02, reg=0.005)
        rv = rlinear.LinearRegression(optimizer=roptim.SGD(0.01), intercept_lr=0.01, l2=0.01)
    else:
        ours = dict(optim_method="adagrad", learning_rate=0.3, epsilon=1e-8 / 4, intercept_lr=0.02, reg=0.005)
        rv = rlinear.LinearRegression(optimizer=roptim.AdaGrad(0.3, eps=1e-8), intercept_lr=0.01, l2=0.01)
    tr = OnlineLearning(pm, global_batch_size=1, **ours).trainer()
    idx = list(range(len(keys)))
    river_warm_start(rv, idx, W0[0], b0[0])
    preds = []
    for i in range(300, len(rows)):
        x = dict(zip(idx, feats[i]))
        preds.append(rv.predict_one(x))
        rv.learn_one(x, rows[i][1])
    ours_pred, _ = tr.predict_and_partial_fit(raw.slice(300))
    np.testing.assert_allclose(tr.coefficient, [rv.weights[k] for k in idx], rtol=0, atol=1e-9)
    assert tr.intercept == pytest.approx(rv.intercept, abs=1e-9)
    np.testing.assert_allclose(ours_pred, preds, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# FTRL and closed forms
# ------------------------------------------------------------------------------------------------

def ftrl_reference(X, y, alpha, beta, l1, l2, w0, b0):
    """McMahan et al. (2013), Algorithm 1, per coordinate, one row at a time; the intercept is a
    coordinate without penalty. Warm start: the z whose weights are w0 (n = 0)."""
    d = X.shape[1]
    z = np.concatenate([-w0 * (beta / alpha + l2) - np.sign(w0) * l1, [-b0 * beta / alpha]])
    n = np.zeros(d + 1)
    pen1 = np.r_[np.full(d, l1), 0.0]
    pen2 = np.r_[np.full(d, l2), 0.0]

    def weights():
        w = np.zeros(d + 1)
        for i in range(d + 1):
            if abs(z[i]) > pen1[i]:
                w[i] = -(z[i] - math.copysign(pen1[i], z[i])) / ((beta + math.sqrt(n[i])) / alpha + pen2[i])
        return w

    w = weights()
    for r in range(len(y)):
        xr = np.r_[X[r], 1.0]
        p = 1.0 / (1.0 + math.exp(-float(xr @ w)))
        for i in range(d + 1):
            if xr[i] == 0.0:
                continue
            g = (p - y[r]) * xr[i]
            sigma = (math.sqrt(n[i] + g * g) - math.sqrt(n[i])) / alpha
            z[i] += g - sigma * w[i]
            n[i] += g * g
        w = weights()
    return w[:d], w[d]


def test_ftrl_equals_sequential_ftrl_proximal(phishing):
    keys, X, y = phishing
    X, y = X[:600], y[:600]
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(0, 0.3, X.shape[1]), -0.2
    start = linear_model(LogisticRegressionModel, [w0], [b0], version=5)
    est = OnlineLearning(fl.PipelineModel([start]), optim_method="ftrl", alpha=0.3, beta=1.0, reg=0.02,
                         elastic_net=0.25, global_batch_size=1)
    final = est.fit(fl.table({"features": X, "label": y}))
    W, b = last_weights(final)
    w_ref, b_ref = ftrl_reference(X, y, 0.3, 1.0, 0.02 * 0.25, 0.02 * 0.75, w0, b0)
    np.testing.assert_allclose(W[0], w_ref, rtol=0, atol=1e-9)
    assert b[0] == pytest.approx(b_ref, abs=1e-9)
    assert last_version(final) == 6          # numbered from the initial model's version


def test_ftrl_matches_online_logistic_regression_without_penalty(phishing):
    """Cross-check with flowlearn's FTRL estimator (an independent implementation): equal with
    global_batch_size=1 and no penalty (the two differ only in whether the intercept is penalized)."""
    import flowlearn.classification.ftrl as ftrl
    keys, X, y = phishing
    t = fl.table({"features": X, "label": y})
    start = linear_model(LogisticRegressionModel, np.zeros((1, X.shape[1])), [0.0])
    ours = OnlineLearning(fl.PipelineModel([start]), optim_method="ftrl", alpha=0.2, beta=0.5,
                          global_batch_size=1).fit(t)
    theirs = ftrl.OnlineLogisticRegression(alpha=0.2, beta=0.5, global_batch_size=1).fit(t)
    row = theirs.get_model_data()[0].to_pylist()[0]
    W, b = last_weights(ours)
    np.testing.assert_allclose(W[0], row["coefficient"], rtol=0, atol=1e-9)
    assert b[0] == pytest.approx(row["intercept"], abs=1e-9)


def _regression_pm(w, b):
    return fl.PipelineModel([linear_model(LinearRegressionModel, [w], [b])])


def test_momentum_two_steps_closed_form():
    """Mini-batches of 2 rows: g = mean((z - y) x) + l2 w; s = gamma s + lr g; w -= s (intercept alike)."""
    X = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0], [-1.0, 1.0]])
    y = np.array([1.0, -2.0, 0.5, 3.0])
    w, b = np.array([0.3, -0.1]), 0.2
    lr, gamma, l2 = 0.1, 0.7, 0.05
    tr = OnlineLearning(_regression_pm(w, b), optim_method="momentum", learning_rate=lr, gamma=gamma, reg=l2,
                        global_batch_size=2).trainer()
    tr.partial_fit(fl.table({"features": X, "label": y}))
    s, sb = np.zeros(2), 0.0
    for rows in ([0, 1], [2, 3]):
        r = X[rows] @ w + b - y[rows]
        g = (r[:, None] * X[rows]).mean(axis=0) + l2 * w
        gb = r.mean()
        s, sb = gamma * s + lr * g, gamma * sb + lr * gb
        w, b = w - s, b - sb
    np.testing.assert_allclose(tr.coefficient, w, rtol=0, atol=1e-14)
    assert tr.intercept == pytest.approx(b, abs=1e-14)


def test_rmsprop_two_steps_closed_form():
    X = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0], [-1.0, 1.0]])
    y = np.array([1.0, -2.0, 0.5, 3.0])
    w, b = np.array([0.3, -0.1]), 0.2
    lr, gamma, eps = 0.05, 0.9, 1e-6
    tr = OnlineLearning(_regression_pm(w, b), optim_method="rmsprop", learning_rate=lr, gamma=gamma, epsilon=eps,
                        global_batch_size=2).trainer()
    tr.partial_fit(fl.table({"features": X, "label": y}))
    s, sb = np.zeros(2), 0.0
    for rows in ([0, 1], [2, 3]):
        r = X[rows] @ w + b - y[rows]
        g = (r[:, None] * X[rows]).mean(axis=0)
        gb = r.mean()
        s, sb = gamma * s + (1 - gamma) * g * g, gamma * sb + (1 - gamma) * gb * gb
        w, b = w - lr * g / np.sqrt(s + eps), b - lr * gb / math.sqrt(sb + eps)
    np.testing.assert_allclose(tr.coefficient, w, rtol=0, atol=1e-14)
    assert tr.intercept == pytest.approx(b, abs=1e-14)


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_softmax_one_step_closed_form(opt):
    """A multinomial LogisticRegressionModel (3 rows) with one 4-row mini-batch:
    G = mean((softmax(W x + b) - e_y) x^T); SGD: W -= lr G; Adam's first step: W -= lr * sqrt(1 - b2) / (1 - b1)
    * m / (sqrt(v) + eps) with m = (1 - b1) G, v = (1 - b2) G^2. Also the dense/sparse paths agree."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 5))
    y = np.array([0.0, 2.0, 1.0, 2.0])
    W, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    lr = 0.2
    pm = fl.PipelineModel([linear_model(LogisticRegressionModel, W, b)])
    est = OnlineLearning(pm, optim_method=opt, learning_rate=lr, global_batch_size=4, beta1=0.9, beta2=0.999,
                         epsilon=1e-8)
    tr = est.trainer()
    probs, versions = tr.predict_and_partial_fit(fl.table({"features": X, "label": y}))
    assert versions == [] and tr.kind == "multinomial"
    P = _softmax(X @ W.T + b)
    np.testing.assert_allclose(probs, P, rtol=0, atol=1e-14)
    R = P.copy()
    R[np.arange(4), y.astype(int)] -= 1.0
    G, gb = R.T @ X / 4, R.mean(axis=0)
    if opt == "sgd":
        W1, b1 = W - lr * G, b - lr * gb
    else:
        step = lr * math.sqrt(1 - 0.999) / (1 - 0.9)
        W1 = W - step * (0.1 * G) / (np.sqrt(0.001 * G * G) + 1e-8)
        b1 = b - step * (0.1 * gb) / (np.sqrt(0.001 * gb * gb) + 1e-8)
    np.testing.assert_allclose(tr.coefficient, W1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr.intercept, b1, rtol=0, atol=1e-12)
    sp = est.trainer()
    sp.partial_fit(fl.table({"features": from_csr(sps.csr_matrix(X)), "label": y}))
    np.testing.assert_allclose(sp.coefficient, W1, rtol=0, atol=1e-12)
    final = tr.finish()[0]
    Wv, bv = last_weights(final)
    np.testing.assert_allclose(Wv, W1, atol=1e-12)
    assert final.transform(fl.table({"features": X})).column("raw_prediction").type == pa.list_(pa.float64(), 3)


# ------------------------------------------------------------------------------------------------
# the stream story: drift, versions, persistence, rebase, checkpoints
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clicks():
    gen = ClickStream(seed=3, drift_at=10000, drift=0.7)
    hist, stream, test = gen.table(10000), gen.table(20000), gen.table(5000)
    cats = ClickStream.categorical
    pm = fl.Pipeline([fl.feature.FeatureHasher(input_cols=cats, categorical_cols=cats, output_col="features",
                                               num_features=1024),
                      LogisticRegression(reg=1e-3)]).fit(hist)
    return pm, stream, test


@pytest.mark.parametrize("opt,kw", [("adagrad", dict(learning_rate=0.05)), ("ftrl", dict(alpha=0.3))])
def test_online_training_recovers_from_drift(clicks, opt, kw):
    """After the generating weights drift, the frozen batch pipeline's log loss on new data is far from
    the best achievable; the online versions (hashed sparse features) close most of the gap and keep
    improving version after version."""
    pm, stream, test = clicks
    batch_weights = last_weights(pm)[0].copy()
    frozen = log_loss(pm, test)
    best = ClickStream.best_log_loss(test)
    est = OnlineLearning(pm, optim_method=opt, global_batch_size=16, emit_every=5000, **kw)
    versions = list(est.fit_versions(stream.slice(i, 1000) for i in range(0, stream.num_rows, 1000)))
    assert [last_version(v) for v in versions] == [1, 2, 3, 4]
    losses = [log_loss(v, test) for v in versions]
    assert losses[-1] < losses[0]
    assert losses[-1] < frozen - 0.1
    assert (losses[-1] - best) < 0.5 * (frozen - best)
    # the feature stage is the batch pipeline's, and the batch model itself is left as it was
    assert all(v.stages[0] is pm.stages[0] for v in versions)
    np.testing.assert_array_equal(last_weights(pm)[0], batch_weights)


def test_emitted_versions_save_and_load(tmp_path, phishing):
    keys, X, y = phishing
    raw = fl.table({**{k: X[:, i] for i, k in enumerate(keys)}, "label": y})
    pm = fl.Pipeline([fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="features"),
                      LogisticRegression(reg=0.01, prediction_col="pred")]).fit(raw.slice(0, 200))
    est = OnlineLearning(pm, optim_method="adam", learning_rate=0.01, global_batch_size=10, emit_every=400)
    versions = list(est.fit_versions(raw.slice(200)))
    assert [last_version(v) for v in versions] == [1, 2, 3]
    probe = raw.slice(0, 50)
    for i, v in enumerate(versions):
        assert isinstance(v, fl.PipelineModel) and type(v.stages[-1]) is LogisticRegressionModel
        assert v.stages[-1].prediction_col == "pred"            # last-stage params carried over
        path = str(tmp_path / f"v{i}")
        v.save(path)
        back = fl.load(path)
        assert isinstance(back, fl.PipelineModel) and last_version(back) == i + 1
        a, b = v.transform(probe), back.transform(probe)
        assert a.column("pred").to_pylist() == b.column("pred").to_pylist()
        assert a.column("raw_prediction").to_pylist() == b.column("raw_prediction").to_pylist()
    # versions are snapshots: later training does not change an earlier version
    assert not np.allclose(last_weights(versions[0])[0], last_weights(versions[-1])[0])
    # the single-row kernel of a version agrees with its batch path
    row = {k: float(X[7, i]) for i, k in enumerate(keys)}
    versions[-1].row_fn()(row)
    assert row["raw_prediction"][1] == pytest.approx(
        versions[-1].transform(raw.slice(7, 1)).column("raw_prediction")[0].as_py()[1], abs=1e-12)


def test_estimator_save_load_round_trip(tmp_path, phishing):
    keys, X, y = phishing
    t = fl.table({"features": X, "label": y})
    start = fl.PipelineModel([linear_model(LogisticRegressionModel, np.full((1, X.shape[1]), 0.1), [0.0])])
    est = OnlineLearning(start, optim_method="rmsprop", learning_rate=0.02, global_batch_size=5)
    est.save(str(tmp_path / "est"))
    back = fl.load(str(tmp_path / "est"))
    assert isinstance(back, OnlineLearning) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(last_weights(back.fit(t))[0], last_weights(est.fit(t))[0])


def test_emit_every_finish_and_emit():
    """Versions fall on the first mini-batch boundary at or after every emit_every rows (rows 12 and 24
    here); emit() emits the applied rows now; finish applies the incomplete mini-batch and emits the
    final version; neither emits when nothing new was learned."""
    pm = _regression_pm([0.0], 0.0)
    t = fl.table({"features": [[1.0]] * 30, "label": [1.0] * 30})
    tr = OnlineLearning(pm, optim_method="sgd", learning_rate=0.1, global_batch_size=4, emit_every=10).trainer()
    seen = []
    for s in range(0, 30, 7):  # input batches do not align with mini-batches
        seen += [last_version(v) for v in tr.partial_fit(t.slice(s, 7))]
    assert seen == [1, 2] and tr.rows_seen == 30
    # reference: the same rows in one table with emit_every=None, cut after 24 rows
    ref = OnlineLearning(pm, optim_method="sgd", learning_rate=0.1, global_batch_size=4).trainer()
    ref.partial_fit(t.slice(0, 24))
    v2 = tr.pipeline_model()
    assert last_version(v2) == 2
    v = tr.emit()                                   # rows 25..28 form a applied mini-batch; 29..30 are open
    assert last_version(v) == 3
    ref.partial_fit(t.slice(24, 4))
    np.testing.assert_array_equal(last_weights(v)[0][0], ref.coefficient)
    assert tr.emit() is None
    final = tr.finish()
    assert [last_version(v) for v in final] == [4]
    ref.partial_fit(t.slice(28, 2))
    ref.finish()
    np.testing.assert_array_equal(last_weights(final[0])[0][0], ref.coefficient)
    assert tr.finish() == [] and tr.emit() is None
    tr.partial_fit(t.slice(0, 4))                   # one full mini-batch
    assert last_version(tr.emit()) == 5


def test_rebase_swaps_feature_stages_and_resets_state(phishing):
    """After rebase the trainer is exactly a fresh trainer started from the new pipeline (optimizer
    state reset, open mini-batch dropped, new feature stages used), and version numbers keep rising."""
    keys, X, y = phishing
    raw = fl.table({**{k: X[:, i] for i, k in enumerate(keys)}, "label": y})
    va = fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="raw")
    pipe_a = fl.Pipeline([va, fl.feature.StandardScaler(input_col="raw", output_col="features"),
                          LogisticRegression(reg=0.01)]).fit(raw.slice(0, 300))
    pipe_b = fl.Pipeline([va, fl.feature.StandardScaler(input_col="raw", output_col="features", with_mean=True),
                          LogisticRegression(reg=0.05)]).fit(raw.slice(300, 300))
    est = OnlineLearning(pipe_a, optim_method="adam", learning_rate=0.01, global_batch_size=8, emit_every=100)
    tr = est.trainer()
    emitted = tr.partial_fit(raw.slice(0, 403))   # ends inside a mini-batch
    assert [last_version(v) for v in emitted] == [1, 2, 3]     # at rows 104, 208, 312
    tr.rebase(pipe_b)
    assert tr.emit() is None                       # nothing learned since the rebase
    fresh = OnlineLearning(pipe_b, optim_method="adam", learning_rate=0.01, global_batch_size=8).trainer()
    np.testing.assert_array_equal(tr.coefficient, fresh.coefficient)
    rest = raw.slice(600)
    after = tr.partial_fit(rest)
    fresh.partial_fit(rest)
    np.testing.assert_array_equal(tr.coefficient, fresh.coefficient)   # same state evolution (Adam's t reset too)
    assert len(after) >= 5 and [last_version(v) for v in after] == list(range(4, 4 + len(after)))
    assert after[-1].stages[1].with_mean is True    # the new feature stages travel with the versions
    # a rebase onto a model with a higher model_version continues above it
    bumped = fl.PipelineModel(pipe_b.stages[:-1] + [linear_model(LogisticRegressionModel, *last_weights(pipe_b),
                                                                   version=50)])
    tr.rebase(bumped)
    tr.partial_fit(raw.slice(0, 8))
    assert last_version(tr.emit()) == 51
    # the stream layer's TrainerOp passes the version to continue above
    tr.rebase(pipe_b, version=70)
    tr.partial_fit(raw.slice(0, 8))
    assert last_version(tr.emit()) == 71
    # a model data table (or a lone linear model) replaces only the last stage's weights
    W_new = np.full((1, len(keys)), 0.5)
    tr.rebase(pa.table({"coefficient": pa.array(W_new.tolist(), pa.list_(pa.float64(), len(keys))),
                        "intercept": [0.0], "model_version": pa.array([0], pa.int64())}))
    assert tr.feature_stages[1] is pipe_b.stages[1]
    np.testing.assert_array_equal(tr.coefficient, W_new[0])


@pytest.mark.parametrize("opt,sparse", [("adam", False), ("ftrl", True), ("sgd", True)])
def test_snapshot_restore_continues_exactly(phishing, opt, sparse):
    keys, X, y = phishing
    feats = from_csr(sps.csr_matrix(X)) if sparse else X
    t = fl.table({"features": feats, "label": y})
    start = fl.PipelineModel([linear_model(LogisticRegressionModel, np.zeros((1, X.shape[1])), [0.1])])
    est = OnlineLearning(start, optim_method=opt, learning_rate=0.05, global_batch_size=6, emit_every=200,
                         reg=0.01, elastic_net=0.5)
    whole = est.trainer()
    v_whole = whole.partial_fit(t) + whole.finish()
    a = est.trainer()
    v_a = a.partial_fit(t.slice(0, 517))           # 517 = 86 * 6 + 1: an open mini-batch in the snapshot
    # round-trip the state through bytes (JSON + Arrow IPC), as a checkpoint does
    state = OperatorState.from_bytes(a.snapshot_state().to_bytes())
    assert state.data["format"] == "flowlearn.online_learning_state"
    assert state.data["open_batch_rows"] == 1 and state.data["optim_method"] == opt
    b = est.trainer().restore_state(state)
    v_b = b.partial_fit(t.slice(517)) + b.finish()
    assert [last_version(v) for v in v_a + v_b] == [last_version(v) for v in v_whole]
    np.testing.assert_array_equal(b.coefficient, whole.coefficient)
    assert b.intercept == whole.intercept and b.rows_seen == whole.rows_seen


def test_restore_brings_back_rebased_feature_stages(phishing):
    keys, X, y = phishing
    raw = fl.table({**{k: X[:, i] for i, k in enumerate(keys)}, "label": y})
    va = fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="features")
    pipe_a = fl.Pipeline([va, LogisticRegression()]).fit(raw.slice(0, 200))
    scaled = fl.Pipeline([fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="r"),
                          fl.feature.MinMaxScaler(input_col="r", output_col="features"),
                          LogisticRegression()]).fit(raw.slice(200, 200))
    est = OnlineLearning(pipe_a, optim_method="sgd", global_batch_size=4)
    tr = est.trainer()
    tr.partial_fit(raw.slice(0, 100))
    tr.rebase(scaled)
    tr.partial_fit(raw.slice(100, 50))
    back = est.trainer().restore_state(tr.snapshot_state())
    assert [type(s).__name__ for s in back.feature_stages] == ["VectorAssembler", "MinMaxScalerModel"]
    back.partial_fit(raw.slice(150))
    tr.partial_fit(raw.slice(150))
    np.testing.assert_array_equal(back.coefficient, tr.coefficient)


def test_stream_engine_drives_the_trainer_and_progressive_validation(phishing):
    """fit(stream) goes through the stream layer's trainer operator: a model stream of whole pipelines;
    progressive_validation drives predict_and_partial_fit like any online estimator's."""
    import flowlearn.evaluation.progressive as progressive
    import flowlearn.stream as fls
    keys, X, y = phishing
    raw = fl.table({**{k: X[:, i] for i, k in enumerate(keys)}, "label": y})
    pm = fl.Pipeline([fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="features"),
                      LogisticRegression(reg=0.01)]).fit(raw.slice(0, 200))
    est = OnlineLearning(pm, optim_method="adagrad", learning_rate=0.1, global_batch_size=10, emit_every=500)
    model = est.fit(fls.from_table(raw.slice(200), batch_size=128))
    versions = fls.model_stream(model).to_table()
    assert sorted(set(versions.column("model_version").to_pylist())) == [1, 2, 3]
    out = model.transform(fls.from_table(raw.slice(0, 5))).to_table()
    used = out.column("model_version")[0].as_py()           # the newest version that had arrived
    expect = list(est.fit_versions(raw.slice(200)))[used - 1].transform(raw.slice(0, 5))
    assert out.column("raw_prediction").to_pylist() == expect.column("raw_prediction").to_pylist()
    # progressive validation: the online model predicts unseen rows better than the frozen one
    res = progressive.progressive_validation(OnlineLearning(pm, optim_method="adagrad", learning_rate=0.1,
                                                            global_batch_size=1), raw.slice(200))
    frozen = log_loss(pm, raw.slice(200))
    assert res["log_loss"] < frozen


# ------------------------------------------------------------------------------------------------
# empty and bad input
# ------------------------------------------------------------------------------------------------

def test_empty_input():
    pm = _regression_pm([1.0, 2.0], 0.0)
    tr = OnlineLearning(pm, optim_method="sgd").trainer()
    empty = fl.table({"features": pa.array([], pa.list_(pa.float64(), 2)), "label": pa.array([], pa.float64())})
    assert tr.partial_fit(empty) == [] and tr.rows_seen == 0
    p, v = tr.predict_and_partial_fit(empty)
    assert p.shape == (0,) and v == []
    assert tr.finish() == []
    with pytest.raises(ValueError, match="the input has no rows"):
        OnlineLearning(pm).fit(empty)


def test_bad_input_messages():
    scaler = fl.feature.StandardScaler(input_col="x", output_col="features").fit({"x": [[1.0], [2.0]]})
    with pytest.raises(ValueError, match=r"last stage of the pipeline model \(stage 0\) is a StandardScalerModel.*"
                                         r"must be a linear model \(LogisticRegressionModel, LinearRegressionModel"):
        OnlineLearning(fl.PipelineModel([scaler]))
    with pytest.raises(TypeError, match="must be a fitted PipelineModel"):
        OnlineLearning("model.ak")
    with pytest.raises(ValueError, match="no initial pipeline model"):
        OnlineLearning().trainer()
    lr = linear_model(LogisticRegressionModel, [[0.0, 0.0]], [0.0])
    tr = OnlineLearning(fl.PipelineModel([lr])).trainer()
    with pytest.raises(ValueError, match=r"column 'label' \(parameter 'label_col'\) has value 2.0 at row 1; .* "
                                         r"labels 0 or 1"):
        tr.partial_fit({"features": [[1.0, 0.0], [0.0, 1.0]], "label": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"holds vectors of size 3, the model expects size 2"):
        tr.partial_fit({"features": [[1.0, 0.0, 1.0]], "label": [1.0]})
    with pytest.raises(ValueError, match=r"input column 'label' \(parameter 'label_col'\) is missing"):
        tr.partial_fit({"features": [[1.0, 0.0]]})
    with pytest.raises(ValueError, match=r"NaN or infinity at row 0"):
        tr.partial_fit({"features": [[math.nan, 0.0]], "label": [1.0]})
    soft = linear_model(LogisticRegressionModel, np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"has 3 classes, so labels must be class indices 0..2"):
        OnlineLearning(fl.PipelineModel([soft])).trainer().partial_fit({"features": [[1.0, 0.0]], "label": [3.0]})
    state = OnlineLearning(fl.PipelineModel([lr]), optim_method="adam").trainer().snapshot_state()
    with pytest.raises(ValueError, match="optim_method='adam', this trainer has optim_method='sgd'"):
        OnlineLearning(fl.PipelineModel([lr]), optim_method="sgd").trainer().restore_state(state)
    with pytest.raises(ValueError, match="weights became NaN or infinite"):
        OnlineLearning(_regression_pm([0.0], 0.0), optim_method="sgd", learning_rate=1e3,
                       global_batch_size=1).fit({"features": [[1e3]] * 50, "label": [1.0] * 50})


def test_public_names():
    from flowlearn.classification import online_learning

    assert set(online_learning.__all__) == {"OnlineLearning", "OnlineLearningTrainer"}
    assert online_learning.OPTIM_METHODS == ("sgd", "momentum", "adagrad", "rmsprop", "adam", "ftrl")
    assert OnlineLearning._registered_name == "flowlearn.classification.OnlineLearning"
    assert isinstance(OnlineLearning(_regression_pm([0.0], 0.0)).trainer(), OnlineLearningTrainer)


# ------------------------------------------------------------------------------------------------
# bounded training on the unbounded iteration engine
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opt, emit_every, min_step_rows, step_rows, versions_per_step", [
    ("adam", 10, 1, 12, 1),     # a version at the first mini-batch boundary >= 10 rows; one step per version
    ("sgd", 10, 30, 36, 3),     # steps of whole version periods, >= MIN_STEP_ROWS rows
    ("ftrl", None, 64, 64, 0),  # one version, from finish
])
def test_fit_versions_are_outputs_of_unbounded_iteration_steps(monkeypatch, unbounded_steps, opt, emit_every,
                                                               min_step_rows, step_rows, versions_per_step):
    import flowlearn.iteration.online as online_module

    monkeypatch.setattr(online_module, "MIN_STEP_ROWS", min_step_rows)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    t = fl.table({"features": X, "label": X @ [1.0, -2.0, 0.5] + 0.3})
    pm = fl.PipelineModel([linear_model(LinearRegressionModel, [[0.1, 0.0, 0.0]], [0.0], version=4)])
    inputs = [t.slice(0, 50), t.slice(50, 1), t.slice(51)]
    est = OnlineLearning(pm, optim_method=opt, learning_rate=0.05, global_batch_size=4, emit_every=emit_every)
    versions = list(est.fit_versions(inputs))
    steps = unbounded_steps
    assert [s.num_rows for s in steps if not s.final] == [step_rows] * (200 // step_rows) + [200 % step_rows]
    assert all(len(versions_of_step(s)) == versions_per_step for s in steps if s.num_rows == step_rows)
    assert steps[-1].final and len(versions_of_step(steps[-1])) == 1  # finish(): the rest of the input
    from_steps = [v for s in steps for v in versions_of_step(s)]
    assert len(from_steps) == len(versions)
    assert all(isinstance(v, fl.PipelineModel) and v.stages[-1].get_model_data()[0].equals(s)
               for v, s in zip(versions, from_steps))
    latest = versions[versions_per_step - 1] if versions_per_step else pm  # the variable: the latest model
    assert steps[0].variables[0].equals(latest.stages[-1].get_model_data()[0])
    tr = est.trainer()  # the trainer driven by hand gives the same versions
    by_hand = [v for x in inputs for v in tr.partial_fit(x)] + tr.finish()
    assert [last_version(v) for v in by_hand] == [last_version(v) for v in versions]
    assert all(a.stages[-1].get_model_data()[0].equals(b.stages[-1].get_model_data()[0])
               for a, b in zip(by_hand, versions))


def test_emit_every_seconds_closed_form():
    """Alink's timeInterval: a version once emit_every_seconds of processing time passed. Plain SGD on
    half the squared error with x = 1, y = 2, lr = 0.25 from w = b = 0 gives w = b = 1 - 0.5^k after k
    rows; each version holds the rows learned when it was emitted."""
    pm = _regression_pm([0.0], 0.0)
    now = [100.0]
    tr = OnlineLearning(pm, optim_method="sgd", learning_rate=0.25, global_batch_size=1,
                        emit_every_seconds=2.0).trainer(clock=lambda: now[0])
    row = {"features": [[1.0]], "label": [2.0]}
    assert tr.partial_fit(row) == [] and tr.poll() == []
    now[0] = 102.0
    (v1,) = tr.partial_fit(row)
    assert last_version(v1) == 1
    np.testing.assert_allclose(last_weights(v1)[0][0], [1 - 0.5 ** 2], rtol=1e-15)
    assert tr.poll(now=103.0) == []
    tr.partial_fit(row)
    (v2,) = tr.poll(now=104.0)
    assert last_version(v2) == 2
    np.testing.assert_allclose(last_weights(v2)[0][0], [1 - 0.5 ** 3], rtol=1e-15)
    np.testing.assert_allclose(last_weights(v2)[1], [1 - 0.5 ** 3], rtol=1e-15)
    assert tr.poll(now=200.0) == []                      # nothing learned since version 2


def test_starts_from_the_latest_version_in_a_store(tmp_path):
    """OnlineLearning(store): the store's newest valid version is the starting pipeline. SGD on half the
    squared error with x = 1, y = 2, lr = 0.25 from w = b = 0.5 gives w = b = 1 - 0.5^(k+1) after k rows."""
    store = fl.ModelStore(str(tmp_path / "store"))
    with pytest.raises(ValueError, match="no valid version to start from"):
        OnlineLearning(store)
    store.publish(_regression_pm([3.0], 3.0), {"kind": "batch"})
    store.publish(_regression_pm([0.5], 0.5), {"kind": "batch"})
    est = OnlineLearning(store, optim_method="sgd", learning_rate=0.25, global_batch_size=1)
    pm = est.fit(fl.table({"features": [[1.0]] * 4, "label": [2.0] * 4}))
    w, b = last_weights(pm)
    np.testing.assert_allclose([w[0][0], b[0]], [1 - 0.5 ** 5] * 2, rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# starting from zero weights (no model data)
# ------------------------------------------------------------------------------------------------

def test_an_unfitted_last_stage_starts_from_zero_weights_like_river(phishing):
    """OnlineLearning(LogisticRegressionModel()) needs no model data: the first batch sizes zero weights.
    Oracle: River's LogisticRegression, which starts from zero weights, row by row."""
    keys, X, y = phishing
    t = fl.table({**{k: X[:, i] for i, k in enumerate(keys)}, "label": y})
    asm = fl.feature.VectorAssembler(input_cols=keys, input_sizes=[1] * len(keys), output_col="features")
    est = OnlineLearning(fl.PipelineModel([asm, LogisticRegressionModel()]), optim_method="sgd", learning_rate=0.01,
                         intercept_lr=0.01, global_batch_size=1)
    tr = est.trainer()
    assert tr.dim is None
    fresh = OnlineLearningTrainer.restore_state(est.trainer(), tr.snapshot_state())   # a state before any row
    ours_p = np.concatenate([tr.predict_and_partial_fit(t.slice(s, 300))[0] for s in range(0, t.num_rows, 300)])
    rv = rlinear.LogisticRegression(optimizer=roptim.SGD(0.01), intercept_lr=0.01)
    river_p = []
    for x, label in zip(X, y):
        row = dict(zip(keys, x))
        river_p.append(rv.predict_proba_one(row)[True])
        rv.learn_one(row, bool(label))
    np.testing.assert_allclose(ours_p, river_p, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tr.coefficient, [rv.weights[k] for k in keys], rtol=0, atol=1e-9)
    # the restored pre-data state trains exactly as the original
    fresh.partial_fit(t)
    np.testing.assert_array_equal(fresh.coefficient, tr.coefficient)
    # num_features sizes the zero weights up front; the final pipeline's model exposes them as NumPy
    sized = OnlineLearning(LinearRegressionModel(), num_features=3).trainer()
    assert sized.dim == 3 and sized.coefficient.tolist() == [0.0, 0.0, 0.0]
    model = est.fit(t)
    np.testing.assert_allclose(model.stages[-1].coefficients, tr.coefficient, rtol=0, atol=1e-12)
    assert model.stages[-1].intercept == pytest.approx(tr.intercept, abs=1e-12)
