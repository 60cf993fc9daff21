"""OnlineLogisticRegression (FTRL-Proximal) and its model.

Oracles, none derived from the code under test:
(a) a plain-Python per-example FTRL-Proximal written from Algorithm 1 of McMahan et al. (2013);
(b) River's ``LogisticRegression(optimizer=optim.FTRLProximal(...))`` on River's bundled Phishing data;
(c) a NumPy closed form of Flink ML's mini-batch rule (per-coordinate averaged gradients);
(d) for a warm start with l1 = l2 = 0, the closed form FTRL-Proximal reduces to: per-coordinate
    adaptive gradient steps ``w -= alpha * g / (beta + sqrt(sum g^2))`` from the initial model.
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
from flowlearn.classification.ftrl import (
    OnlineLogisticRegression,
    OnlineLogisticRegressionModel,
    OnlineLogisticRegressionTrainer,
)

# ---------------------------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------------------------


def paper_ftrl(rows, alpha, beta, l1, l2, w0=None):
    """Algorithm 1 of McMahan et al. (2013), per example, in plain Python. ``rows`` is a list of
    ``(x: dict[int, float], y)``; the bias is passed by the caller as an ordinary feature.
    Returns the final weights (dict) and the progressive predictions."""
    z, n = {}, {}
    preds = []

    def weight(i):
        zi, ni = z.get(i, 0.0), n.get(i, 0.0)
        if abs(zi) <= l1:
            return 0.0
        return -(zi - math.copysign(l1, zi)) / ((beta + math.sqrt(ni)) / alpha + l2)

    for x, y in rows:
        w = {i: weight(i) for i in x}
        p = 1.0 / (1.0 + math.exp(-sum(w[i] * v for i, v in x.items())))
        preds.append(p)
        for i, v in x.items():
            g = (p - y) * v
            sigma = (math.sqrt(n.get(i, 0.0) + g * g) - math.sqrt(n.get(i, 0.0))) / alpha
            z[i] = z.get(i, 0.0) + g - sigma * w[i]
            n[i] = n.get(i, 0.0) + g * g
    return {i: weight(i) for i in z}, np.array(preds)


def minibatch_reference(X, y, batch, alpha, beta, l1, l2, sparse):
    """Flink ML's mini-batch FTRL in closed form with NumPy: each mini-batch is predicted with the
    weights from before it; the gradient sum of each coordinate is divided by the number of rows
    of the batch carrying it (every row for dense vectors, rows storing it for sparse ones).
    The intercept is the last coordinate (an always-1 feature). Returns (w, predictions)."""
    N, d = X.shape
    Xb = np.hstack([X, np.ones((N, 1))])
    z, nn, w = np.zeros(d + 1), np.zeros(d + 1), np.zeros(d + 1)
    preds = []
    for s in range(0, N, batch):
        A, yb = Xb[s:s + batch], y[s:s + batch]
        p = 1.0 / (1.0 + np.exp(-(A @ w)))
        preds.append(p)
        cnt = (A != 0).sum(axis=0).astype(float) if sparse else np.full(d + 1, float(len(yb)))
        on = cnt > 0
        g = np.zeros(d + 1)
        g[on] = (A.T @ (p - yb))[on] / cnt[on]
        sigma = (np.sqrt(nn + g * g) - np.sqrt(nn)) / alpha
        z = z + g - sigma * w
        nn = nn + g * g
        w = np.where(np.abs(z) <= l1, 0.0, -(z - np.sign(z) * l1) / ((beta + np.sqrt(nn)) / alpha + l2))
    return w, np.concatenate(preds)


def data(n=400, d=12, density=0.4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * (rng.random((n, d)) < density)
    w_true = rng.normal(size=d) * 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w_true - 0.3)))).astype(float)
    return X, y


def as_rows(X, y, bias=True):
    d = X.shape[1]
    rows = []
    for xi, yi in zip(X, y):
        x = {j: float(v) for j, v in enumerate(xi) if v != 0.0}
        if bias:
            x[d] = 1.0
        rows.append((x, float(yi)))
    return rows


def coef_of(model):
    t = model.get_model_data()[0]
    return np.asarray(t.column("coefficient")[0].as_py()), t.column("intercept")[0].as_py()


def phishing():
    pytest.importorskip("river")
    from river import datasets

    rows = list(datasets.Phishing())
    keys = list(rows[0][0])
    X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
    y = np.array([float(yy) for _, yy in rows])
    return rows, keys, X, y


def eager_ftrl_class():
    """River's FTRLProximal computes a coordinate's weight lazily, at the start of its *next*
    update, so River predicts with the weight from before the coordinate's previous update.
    The paper (and Flink ML) set the weight right after the update. This subclass adds only that:
    after River's own step it runs River's step again with a zero gradient, which recomputes the
    weights from the new z, n with River's own formula and leaves z and n unchanged."""
    from river import optim

    class EagerFTRLProximal(optim.FTRLProximal):
        def _step_with_dict(self, w, g):
            w = super()._step_with_dict(w, g)
            return super()._step_with_dict(w, {i: 0.0 for i in g})

    return EagerFTRLProximal


# ---------------------------------------------------------------------------------------------
# Params
# ---------------------------------------------------------------------------------------------


def test_param_defaults_follow_flink_ml():
    p = OnlineLogisticRegression().get_params()
    assert p["alpha"] == 0.1 and p["beta"] == 0.1 and p["reg"] == 0.0 and p["elastic_net"] == 0.0
    assert p["global_batch_size"] == 32 and p["emit_every"] is None and p["fit_intercept"] is True
    assert (p["features_col"], p["label_col"], p["weight_col"]) == ("features", "label", None)
    assert (p["prediction_col"], p["raw_prediction_col"], p["model_version_col"]) == (
        "prediction", "raw_prediction", "model_version")
    est = OnlineLogisticRegression().set(alpha=0.5, reg=0.2, elastic_net=0.25, emit_every=100)
    assert (est.alpha, est.reg, est.elastic_net, est.emit_every) == (0.5, 0.2, 0.25, 100)


# ---------------------------------------------------------------------------------------------
# (a) the paper's sequential algorithm, global_batch_size = 1
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("reg,elastic_net", [(0.0, 0.0), (0.3, 0.5), (4.0, 1.0)])
def test_sequential_equals_paper_algorithm(sparse, reg, elastic_net):
    X, y = data()
    alpha, beta = 0.2, 0.7
    l1, l2 = reg * elastic_net, reg * (1 - elastic_net)
    w_ref, p_ref = paper_ftrl(as_rows(X, y), alpha, beta, l1, l2)
    t = fl.table({"features": sps.csr_matrix(X) if sparse else X, "label": y})
    est = OnlineLogisticRegression(global_batch_size=1, alpha=alpha, beta=beta, reg=reg, elastic_net=elastic_net)
    coef, b = coef_of(est.fit(t))
    d = X.shape[1]
    np.testing.assert_allclose(coef, [w_ref.get(j, 0.0) for j in range(d)], rtol=0, atol=1e-9)
    assert abs(b - w_ref[d]) < 1e-9
    p, _ = est.trainer().predict_and_partial_fit(t)
    np.testing.assert_allclose(p, p_ref, rtol=0, atol=1e-9)
    if elastic_net == 1.0:
        assert (coef == 0).any()  # L1 produces exact zeros


def test_sequential_without_intercept_is_flink_ml():
    X, y = data(seed=3)
    w_ref, _ = paper_ftrl(as_rows(X, y, bias=False), 0.1, 0.1, 0.0, 0.0)
    coef, b = coef_of(OnlineLogisticRegression(global_batch_size=1, fit_intercept=False).fit({"features": X, "label": y}))
    np.testing.assert_allclose(coef, [w_ref.get(j, 0.0) for j in range(X.shape[1])], atol=1e-9)
    assert b == 0.0


def test_hashed_sparse_features_2_pow_18():
    rng = np.random.default_rng(5)
    N, D = 300, 2 ** 18
    idx = np.sort(rng.choice(D, size=(N, 6), replace=True), axis=1)
    X = sps.csr_matrix((np.ones(N * 6), idx.ravel(), np.arange(0, N * 6 + 1, 6)), shape=(N, D))
    X.sum_duplicates()  # hashing collisions inside a row add up
    y = (rng.random(N) < 0.4).astype(float)
    rows = []
    for r in range(N):
        x = {int(i): float(v) for i, v in zip(X.indices[X.indptr[r]:X.indptr[r + 1]], X.data[X.indptr[r]:X.indptr[r + 1]])}
        x[D] = 1.0
        rows.append((x, y[r]))
    w_ref, _ = paper_ftrl(rows, 0.1, 1.0, 0.01, 0.1)
    coef, b = coef_of(OnlineLogisticRegression(global_batch_size=1, beta=1.0, reg=0.11, elastic_net=1 / 11)
                      .fit({"features": X, "label": y}))
    nz = sorted(k for k in w_ref if k < D)
    np.testing.assert_allclose(coef[nz], [w_ref[k] for k in nz], atol=1e-9)
    assert np.count_nonzero(np.delete(coef, nz)) == 0
    assert abs(b - w_ref[D]) < 1e-9


def test_duplicate_indices_are_refused_in_vectors_and_summed_from_scipy():
    with pytest.raises(ValueError, match="index 1 appears twice; sort each vector's indices"):
        fl.linalg.SparseVector(3, [1, 1, 2], [0.5, 0.5, 1.0])  # as Spark MLlib: strictly increasing indices
    # a SciPy matrix with index 1 stored twice per row means their sum; fl.table keeps that meaning
    m = sps.csr_matrix((np.array([0.5, 0.5, 1.0] * 2), np.array([1, 1, 2] * 2), np.array([0, 3, 6])), shape=(2, 3))
    t = fl.table({"features": m, "label": [1.0, 0.0]})
    dense = fl.table({"features": [[0.0, 1.0, 1.0]] * 2, "label": [1.0, 0.0]})
    est = OnlineLogisticRegression(global_batch_size=1)
    np.testing.assert_allclose(coef_of(est.fit(t))[0], coef_of(est.fit(dense))[0], atol=1e-15)


# ---------------------------------------------------------------------------------------------
# (b) River's FTRLProximal on the Phishing data set
# ---------------------------------------------------------------------------------------------
# Mapping: River FTRLProximal(alpha, beta, l1, l2) == ours alpha, beta, reg = l1 + l2,
# elastic_net = l1 / (l1 + l2). River's LogisticRegression learns its intercept by SGD apart from
# the optimizer; we set intercept_lr=0 and give River an explicit always-1 "bias" feature, which
# is what fit_intercept=True is. River's LogisticRegression(l2=...) (a gradient penalty) stays 0.


def river_ftrl_run(rows, alpha, beta, l1, l2, eager, weights=None):
    from river import linear_model, optim

    opt = (eager_ftrl_class() if eager else optim.FTRLProximal)(alpha=alpha, beta=beta, l1=l1, l2=l2)
    model = linear_model.LogisticRegression(optimizer=opt, intercept_lr=0.0)
    preds = []
    for k, (x, y) in enumerate(rows):
        x = dict(x, bias=1.0)
        preds.append(model.predict_proba_one(x)[True])
        model.learn_one(x, y, **({} if weights is None else {"w": float(weights[k])}))
    return model.weights, np.array(preds)


def test_equals_river_ftrl_with_eager_weights_on_phishing():
    rows, keys, X, y = phishing()
    alpha, beta, l2 = 0.1, 1.0, 1.0
    w_river, p_river = river_ftrl_run(rows, alpha, beta, 0.0, l2, eager=True)
    est = OnlineLogisticRegression(global_batch_size=1, alpha=alpha, beta=beta, reg=l2, elastic_net=0.0)
    t = fl.table({"features": X, "label": y})
    coef, b = coef_of(est.fit(t))
    np.testing.assert_allclose(coef, [w_river[k] for k in keys], atol=1e-9)
    assert abs(b - w_river["bias"]) < 1e-9
    p, _ = est.trainer().predict_and_partial_fit(t)
    np.testing.assert_allclose(p, p_river, atol=1e-9)


def test_close_to_stock_river_ftrl_on_phishing():
    # Stock River predicts with weights one update stale per coordinate (see eager_ftrl_class),
    # so it is close to, not equal to, the paper's algorithm.
    rows, keys, X, y = phishing()
    w_river, p_river = river_ftrl_run(rows, 0.1, 1.0, 0.0, 1.0, eager=False)
    est = OnlineLogisticRegression(global_batch_size=1, alpha=0.1, beta=1.0, reg=1.0)
    t = fl.table({"features": X, "label": y})
    coef, b = coef_of(est.fit(t))
    np.testing.assert_allclose(coef, [w_river[k] for k in keys], atol=5e-3)
    p, _ = est.trainer().predict_and_partial_fit(t)

    def ll(q):
        q = np.clip(q, 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    assert abs(ll(p) - ll(p_river)) / ll(p_river) < 0.005


def test_importance_weights_equal_river_sample_weights():
    rows, keys, X, y = phishing()
    rows, X, y = rows[:400], X[:400], y[:400]
    w = np.random.default_rng(1).choice([0.0, 0.5, 1.0, 3.0], size=len(y))
    w_river, _ = river_ftrl_run(rows, 0.3, 1.0, 0.0, 0.5, eager=True, weights=w)
    est = OnlineLogisticRegression(global_batch_size=1, alpha=0.3, beta=1.0, reg=0.5, weight_col="w")
    coef, b = coef_of(est.fit({"features": X, "label": y, "w": w}))
    np.testing.assert_allclose(coef, [w_river[k] for k in keys], atol=1e-9)
    assert abs(b - w_river["bias"]) < 1e-9


# ---------------------------------------------------------------------------------------------
# (c) mini-batches: per-coordinate averaged gradients (Flink ML)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("batch", [4, 32])
def test_minibatch_equals_closed_form(sparse, batch):
    X, y = data(n=250, density=0.3, seed=7)  # 250 rows: the last mini-batch is incomplete
    alpha, beta, reg, en = 0.3, 0.5, 0.2, 0.3
    w_ref, p_ref = minibatch_reference(X, y, batch, alpha, beta, reg * en, reg * (1 - en), sparse)
    t = fl.table({"features": sps.csr_matrix(X) if sparse else X, "label": y})
    est = OnlineLogisticRegression(global_batch_size=batch, alpha=alpha, beta=beta, reg=reg, elastic_net=en)
    coef, b = coef_of(est.fit(t))
    np.testing.assert_allclose(np.append(coef, b), w_ref, atol=1e-9)
    p, _ = est.trainer().predict_and_partial_fit(t)
    np.testing.assert_allclose(p, p_ref, atol=1e-9)


def test_dense_minibatch_equals_river_learn_many():
    pd = pytest.importorskip("pandas")
    linear_model = pytest.importorskip("river.linear_model")

    rows, keys, X, y = phishing()
    B = 16
    model = linear_model.LogisticRegression(optimizer=eager_ftrl_class()(alpha=0.2, beta=1.0, l1=0.0, l2=0.5),
                                            intercept_lr=0.0)
    frame = pd.DataFrame(X, columns=keys).assign(bias=1.0)
    for s in range(0, len(y), B):
        model.learn_many(frame.iloc[s:s + B], pd.Series(y[s:s + B] == 1.0))
    est = OnlineLogisticRegression(global_batch_size=B, alpha=0.2, beta=1.0, reg=0.5)
    coef, b = coef_of(est.fit({"features": X, "label": y}))
    np.testing.assert_allclose(coef, [model.weights[k] for k in keys], atol=1e-9)
    assert abs(b - model.weights["bias"]) < 1e-9


def test_minibatches_run_across_input_batches():
    X, y = data(n=300, seed=2)
    t = fl.table({"features": sps.csr_matrix(X), "label": y})
    est = OnlineLogisticRegression(global_batch_size=7, reg=0.1, elastic_net=0.5)
    whole = coef_of(est.fit(t))
    cuts = [0, 1, 5, 6, 50, 51, 199, 300]
    pieces = coef_of(est.fit([t.slice(a, b - a) for a, b in zip(cuts, cuts[1:])]))
    np.testing.assert_array_equal(whole[0], pieces[0])
    assert whole[1] == pieces[1]


# ---------------------------------------------------------------------------------------------
# sparse == dense
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch,density", [(1, 0.3), (8, 1.0)])
def test_sparse_equals_dense(batch, density):
    # With global_batch_size=1 always; with mini-batches when every row stores every coordinate
    # (otherwise Flink ML's averaging deliberately differs: see test_minibatch_equals_closed_form).
    X, y = data(n=200, density=density, seed=4)
    est = OnlineLogisticRegression(global_batch_size=batch, reg=0.1, elastic_net=0.5)
    cd, bd = coef_of(est.fit({"features": X, "label": y}))
    cs, bs = coef_of(est.fit({"features": sps.csr_matrix(X), "label": y}))
    np.testing.assert_allclose(cd, cs, atol=1e-12)
    assert abs(bd - bs) < 1e-12


# ---------------------------------------------------------------------------------------------
# starting points and versions
# ---------------------------------------------------------------------------------------------


def adaptive_ogd(X, y, w0, b0, alpha, beta):
    """(d): FTRL-Proximal without regularization == per-coordinate adaptive OGD from (w0, b0)."""
    w = np.append(w0, b0).astype(float)
    n = np.zeros_like(w)
    for xi, yi in zip(X, y):
        a = np.append(xi, 1.0)
        p = 1 / (1 + math.exp(-(a @ w)))
        g = (p - yi) * a
        n += g * g
        on = g != 0
        w[on] -= alpha * g[on] / (beta + np.sqrt(n[on]))
    return w


def test_warm_start_from_model_data_table():
    X, y = data(n=150, seed=9)
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=X.shape[1]), 0.7
    init = pa.table({"coefficient": pa.array([w0.tolist()], fl.linalg.dense_vector_type(len(w0))),
                     "intercept": [b0], "model_version": pa.array([5], pa.int64())})
    est = OnlineLogisticRegression(global_batch_size=1, alpha=0.4, beta=0.8).set_initial_model_data(init)
    tr = est.trainer()
    np.testing.assert_array_equal(coef_of(OnlineLogisticRegressionModel().set_model_data(tr.model_data()))[0], w0)
    model = est.fit({"features": X, "label": y})
    coef, b = coef_of(model)
    ref = adaptive_ogd(X, y, w0, b0, 0.4, 0.8)
    np.testing.assert_allclose(np.append(coef, b), ref, atol=1e-9)
    assert model.get_model_data()[0].column("model_version").to_pylist() == [6]


def test_warm_start_from_batch_logistic_regression_model():
    LR = fl.classification.LogisticRegression
    X, y = data(n=300, seed=11)
    batch_model = LR().fit({"features": X[:200], "label": y[:200]})
    bt = batch_model.get_model_data()[0]
    w0, b0 = np.asarray(bt.column("coefficient")[0].as_py()), bt.column("intercept")[0].as_py()
    est = OnlineLogisticRegression(global_batch_size=1, alpha=0.05, beta=1.0).set_initial_model_data(batch_model)
    model = est.fit({"features": X[200:], "label": y[200:]})
    np.testing.assert_allclose(np.append(*coef_of(model)), adaptive_ogd(X[200:], y[200:], w0, b0, 0.05, 1.0),
                               atol=1e-9)
    # the online model data is in the batch model's format: the batch model can apply it
    bm = type(batch_model)().set_model_data(model.get_model_data()[0])
    a, b = bm.transform({"features": X}), model.transform({"features": X})
    assert a.column("prediction").equals(b.column("prediction"))
    np.testing.assert_allclose(fl.linalg.to_numpy(a.column("raw_prediction")),
                               fl.linalg.to_numpy(b.column("raw_prediction")), atol=1e-15)


def test_warm_start_from_the_latest_version_in_a_store(tmp_path):
    """A store's newest valid version (here a whole PipelineModel: scaler + batch model) is the start;
    the weights are its last stage's, and training equals adaptive OGD from them (the closed form)."""
    X, y = data(n=300, seed=17)
    store = fl.ModelStore(str(tmp_path / "store"))
    with pytest.raises(ValueError, match="no valid version to start from"):
        OnlineLogisticRegression().set_initial_model_data(store)
    first = fl.classification.LogisticRegression().fit({"features": X[:100], "label": y[:100]})
    store.publish(first, {"kind": "batch"})
    scaler = fl.feature.StandardScalerModel(input_col="raw", output_col="features")
    scaler.set_model_data({"mean": [[0.0] * X.shape[1]], "std": [[1.0] * X.shape[1]]})
    second = fl.classification.LogisticRegression().fit({"features": X[:200], "label": y[:200]})
    store.publish(fl.PipelineModel([scaler, second]), {"kind": "batch"})
    bt = second.get_model_data()[0]
    w0, b0 = np.asarray(bt.column("coefficient")[0].as_py()), bt.column("intercept")[0].as_py()
    est = OnlineLogisticRegression(global_batch_size=1, alpha=0.05, beta=1.0).set_initial_model_data(store)
    model = est.fit({"features": X[200:], "label": y[200:]})
    np.testing.assert_allclose(np.append(*coef_of(model)), adaptive_ogd(X[200:], y[200:], w0, b0, 0.05, 1.0),
                               atol=1e-9)
    # a model version and a PipelineModel work the same way
    for start in (store.latest(), fl.PipelineModel([scaler, second])):
        again = OnlineLogisticRegression(global_batch_size=1, alpha=0.05, beta=1.0).set_initial_model_data(start)
        assert again.fit({"features": X[200:], "label": y[200:]}).get_model_data()[0].equals(model.get_model_data()[0])


def test_fixed_intercept_when_fit_intercept_false():
    X, y = data(n=100, seed=12)
    init = {"coefficient": [[0.0] * X.shape[1]], "intercept": [0.4], "model_version": [0]}
    est = OnlineLogisticRegression(fit_intercept=False, global_batch_size=1).set_initial_model_data(init)
    coef, b = coef_of(est.fit({"features": X, "label": y}))
    assert b == 0.4
    # reference: the intercept enters as a feature whose weight never moves
    z, n, w = np.zeros(X.shape[1]), np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for xi, yi in zip(X, y):
        p = 1 / (1 + math.exp(-(xi @ w + 0.4)))
        g = (p - yi) * xi
        sig = (np.sqrt(n + g * g) - np.sqrt(n)) / 0.1
        z += g - sig * w
        n += g * g
        w = -z / ((0.1 + np.sqrt(n)) / 0.1)
    np.testing.assert_allclose(coef, w, atol=1e-9)


def test_emit_every_versions_at_minibatch_boundaries():
    X, y = data(n=40, seed=13)
    est = OnlineLogisticRegression(global_batch_size=4, emit_every=10, alpha=0.3)
    versions = list(est.fit_versions({"features": X, "label": y}))
    assert [v.column("model_version")[0].as_py() for v in versions] == [1, 2, 3, 4]
    # a version is due at the first mini-batch boundary at least emit_every rows after the last
    for v, rows in zip(versions, [12, 24, 36, 40]):
        w_ref, _ = minibatch_reference(X[:rows], y[:rows], 4, 0.3, 0.1, 0.0, 0.0, sparse=False)
        np.testing.assert_allclose(np.append(v.column("coefficient")[0].as_py(), v.column("intercept")[0].as_py()),
                                   w_ref, atol=1e-9)
    # the same versions whatever the input batches look like
    t = fl.table({"features": X, "label": y})
    again = list(est.fit_versions([t.slice(0, 3), t.slice(3, 20), t.slice(23)]))
    assert all(a.equals(b) for a, b in zip(versions, again)) and len(again) == 4
    # one version at the end without emit_every
    assert len(list(OnlineLogisticRegression().fit_versions(t))) == 1


def test_trainer_emit_and_finish():
    X, y = data(n=10, seed=14)
    tr = OnlineLogisticRegression(global_batch_size=4).trainer()
    assert tr.emit() is None and tr.finish() == []
    assert tr.partial_fit({"features": X, "label": y}) == []
    v = tr.emit()  # 8 rows are in the weights, 2 wait in the open mini-batch
    assert v.column("model_version")[0].as_py() == 1 and tr.emit() is None
    (last,) = tr.finish()
    assert last.column("model_version")[0].as_py() == 2 and tr.finish() == []
    w_ref, _ = minibatch_reference(X, y, 4, 0.1, 0.1, 0.0, 0.0, sparse=False)
    np.testing.assert_allclose(np.append(last.column("coefficient")[0].as_py(), last.column("intercept")[0].as_py()),
                               w_ref, atol=1e-9)


def test_snapshot_restore_continues_exactly():
    X, y = data(n=300, seed=15)
    t = fl.table({"features": sps.csr_matrix(X), "label": y})
    est = OnlineLogisticRegression(global_batch_size=8, emit_every=50, reg=0.1, elastic_net=0.5)
    straight = est.trainer()
    v_straight = straight.partial_fit(t) + straight.finish()

    first = est.trainer()
    v1 = first.partial_fit(t.slice(0, 123))  # 123 = 15 * 8 + 3: an open mini-batch
    # through bytes (JSON + Arrow IPC), as a checkpoint or an engine's managed state stores it
    stored = OperatorState.from_bytes(first.snapshot_state().to_bytes())
    assert stored.data["open_batch_rows"] == 3 and stored.data["rows_seen"] == 123
    assert stored.data["format"] == "flowlearn.ftrl_state"
    second = est.trainer().restore_state(stored)
    v2 = second.partial_fit(t.slice(123)) + second.finish()
    assert len(v1 + v2) == len(v_straight)
    assert all(a.equals(b) for a, b in zip(v1 + v2, v_straight))


def test_restore_rejects_other_batch_size():
    tr = OnlineLogisticRegression(global_batch_size=8).trainer()
    tr.partial_fit({"features": [[1.0]] * 3, "label": [1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match="open mini-batch of global_batch_size=8"):
        OnlineLogisticRegression(global_batch_size=4).trainer().restore_state(tr.snapshot_state())


# ---------------------------------------------------------------------------------------------
# model: schema, persistence, model data, row kernel
# ---------------------------------------------------------------------------------------------


def test_output_schema_and_conventions():
    model = OnlineLogisticRegressionModel().set_model_data(
        {"coefficient": [[1.0, -2.0]], "intercept": [0.5], "model_version": [3]})
    out = model.transform({"features": [[1.0, 0.0], [0.0, 1.0], [0.0, 0.25]], "id": [1, 2, 3]})
    assert out.column_names == ["features", "id", "prediction", "raw_prediction", "model_version"]
    assert out.schema.field("prediction").type == pa.float64()
    assert out.schema.field("raw_prediction").type == fl.linalg.dense_vector_type(2)
    assert out.schema.field("model_version").type == pa.int64()
    margins = np.array([1.5, -1.5, 0.0])
    p = 1 / (1 + np.exp(-margins))
    np.testing.assert_allclose(fl.linalg.to_numpy(out.column("raw_prediction")), np.c_[1 - p, p], atol=1e-15)
    assert out.column("prediction").to_pylist() == [1.0, 0.0, 1.0]  # margin >= 0 -> 1
    assert out.column("model_version").to_pylist() == [3, 3, 3]


@pytest.mark.filterwarnings("ignore:overflow encountered")     # the row path's NumPy dot overflows first
def test_model_refuses_scores_that_overflow():
    """Was: NaN probabilities from transform (2e308 - 2e308 in the margin of finite features)
    while the row path said 'has NaN or infinity'; both now refuse as LogisticRegressionModel does."""
    model = OnlineLogisticRegressionModel().set_model_data(
        {"coefficient": [[2.0, 2.0]], "intercept": [0.0], "model_version": [3]})
    x = [1e308, -1e308]
    with pytest.raises(ValueError, match=r"column 'features' .*so large at row 1 that the model's scores overflow"):
        model.transform({"features": [[0.0, 0.0], x]})
    with pytest.raises(ValueError, match=r"column 'features' .*scores overflow"):
        fl.LocalPredictor(model).predict({"features": x})


def test_model_data_format_and_get_set():
    X, y = data(n=50, seed=16)
    model = OnlineLogisticRegression(global_batch_size=1).fit({"features": X, "label": y})
    (md,) = model.get_model_data()
    assert md.schema.field("coefficient").type == fl.linalg.dense_vector_type(X.shape[1])
    assert md.schema.field("intercept").type == pa.float64()
    assert md.schema.field("model_version").type == pa.int64() and md.num_rows == 1
    other = OnlineLogisticRegressionModel().set_model_data(md)
    assert other.transform({"features": X}).equals(model.transform({"features": X}))
    assert other.get_model_data()[0].equals(md)


def test_save_load_round_trip(tmp_path):
    X, y = data(n=60, seed=17)
    model = OnlineLogisticRegression(global_batch_size=2, prediction_col="pred").fit({"features": X, "label": y})
    model.save(str(tmp_path / "m"))
    loaded = fl.load(str(tmp_path / "m"))
    assert isinstance(loaded, OnlineLogisticRegressionModel) and loaded.prediction_col == "pred"
    assert loaded.transform({"features": X}).equals(model.transform({"features": X}))
    est = OnlineLogisticRegression(alpha=0.3, emit_every=7).set_initial_model_data(model)
    est.save(str(tmp_path / "e"))
    est2 = fl.load(str(tmp_path / "e"))
    assert isinstance(est2, OnlineLogisticRegression) and est2.get_params() == est.get_params()
    assert est2.get_initial_model_data().equals(model.get_model_data()[0])


@pytest.mark.parametrize("sparse", [False, True])
def test_row_kernel_equals_batch(sparse):
    X, y = data(n=30, seed=18)
    model = OnlineLogisticRegression(global_batch_size=1).fit({"features": X, "label": y})
    t = fl.table({"features": sps.csr_matrix(X) if sparse else X})
    batch = model.transform(t)
    fn = model.row_fn()
    for r in range(X.shape[0]):
        if sparse:
            nz = np.flatnonzero(X[r])
            row = {"features": fl.linalg.SparseVector(X.shape[1], nz, X[r, nz])}
        else:
            row = {"features": X[r].tolist()}
        fn(row)
        assert row["prediction"] == batch.column("prediction")[r].as_py()
        np.testing.assert_allclose(row["raw_prediction"], batch.column("raw_prediction")[r].as_py(), rtol=0,
                                   atol=1e-15)
        assert row["model_version"] == batch.column("model_version")[r].as_py()
    assert fl.LocalPredictor(model).predict({"features": X[0]})["prediction"] == batch.column("prediction")[0].as_py()


def test_fit_accepts_iterables_and_record_batches():
    X, y = data(n=90, seed=19)
    t = fl.table({"features": X, "label": y})
    est = OnlineLogisticRegression(global_batch_size=5)
    a = coef_of(est.fit(t))
    b = coef_of(est.fit(iter(t.to_batches(max_chunksize=13))))
    c = coef_of(est.fit([t.slice(0, 40), {"features": X[40:], "label": y[40:]}]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0], c[0])


# ---------------------------------------------------------------------------------------------
# empty and bad input
# ---------------------------------------------------------------------------------------------


def test_empty_input():
    empty = fl.table({"features": pa.array([], fl.linalg.dense_vector_type(2)), "label": pa.array([], pa.float64())})
    with pytest.raises(ValueError, match="OnlineLogisticRegression.fit: the input has no rows"):
        OnlineLogisticRegression().fit(empty)
    with pytest.raises(ValueError, match="no rows"):
        OnlineLogisticRegression().fit([])
    model = OnlineLogisticRegressionModel().set_model_data({"coefficient": [[1.0, 1.0]], "intercept": [0.0],
                                                            "model_version": [1]})
    out = model.transform(empty)
    assert out.num_rows == 0 and {"prediction", "raw_prediction", "model_version"} <= set(out.column_names)


def test_bad_input_messages():
    est = OnlineLogisticRegression()
    with pytest.raises(ValueError, match=r"column 'label' \(parameter 'label_col'\) has value 2.0 at row 1; "
                                         r"labels must be 0 or 1"):
        est.fit({"features": [[1.0], [2.0]], "label": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"input column 'x' \(parameter 'features_col'\) is missing"):
        OnlineLogisticRegression(features_col="x").fit({"features": [[1.0]], "label": [1.0]})
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 1"):
        est.fit({"features": [[1.0], [float("nan")]], "label": [1.0, 0.0]})
    with pytest.raises(ValueError, match=r"column 'w' \(parameter 'weight_col'\) has weight -1.0 at row 0"):
        OnlineLogisticRegression(weight_col="w").fit({"features": [[1.0]], "label": [1.0], "w": [-1.0]})
    init = {"coefficient": [[0.0, 0.0]], "intercept": [0.0], "model_version": [0]}
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        OnlineLogisticRegression().set_initial_model_data(init).fit({"features": [[1.0, 2.0, 3.0]], "label": [1.0]})
    with pytest.raises(ValueError, match="model data must have exactly one row, got 2"):
        OnlineLogisticRegression().set_initial_model_data(
            {"coefficient": [[0.0], [1.0]], "intercept": [0.0, 0.0], "model_version": [0, 0]})
    with pytest.raises(ValueError, match="model data has not been set"):
        OnlineLogisticRegressionModel().transform({"features": [[1.0]]})
    assert isinstance(OnlineLogisticRegression().trainer(), OnlineLogisticRegressionTrainer)


# ---------------------------------------------------------------------------------------------
# bounded training on the unbounded iteration engine
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse, batch, emit_every, min_step_rows, step_rows, versions_per_step", [
    (True, 1, 50, 1, 50, 1),      # one step per version
    (False, 8, 30, 1, 32, 1),     # a version at the first mini-batch boundary >= 30 rows; a final one from finish
    (True, 4, 30, 100, 128, 4),   # steps of whole version periods, >= MIN_STEP_ROWS rows
    (True, 4, None, 100, 100, 0),  # one version, from finish
])
def test_fit_versions_are_outputs_of_unbounded_iteration_steps(monkeypatch, unbounded_steps, sparse, batch,
                                                               emit_every, min_step_rows, step_rows,
                                                               versions_per_step):
    import flowlearn.iteration.online as online_module

    monkeypatch.setattr(online_module, "MIN_STEP_ROWS", min_step_rows)
    X, y = data(n=400, seed=21)
    t = fl.table({"features": sps.csr_matrix(X) if sparse else X, "label": y})
    inputs = [t.slice(0, 150), t.slice(150, 7), t.slice(157)]
    est = OnlineLogisticRegression(global_batch_size=batch, emit_every=emit_every, alpha=0.3, reg=0.01)
    versions = list(est.fit_versions(inputs))
    steps = unbounded_steps
    assert [s.num_rows for s in steps if not s.final] == [step_rows] * (400 // step_rows) + (
        [400 % step_rows] if 400 % step_rows else [])
    from_steps = [v for s in steps for v in versions_of_step(s)]
    assert len(from_steps) == len(versions) and all(a.equals(b) for a, b in zip(from_steps, versions))
    full = [s for s in steps if s.num_rows == step_rows]
    assert all(len(versions_of_step(s)) == versions_per_step for s in full)
    if 400 % step_rows or emit_every is None:  # the rest of the input: a final step with finish()'s version
        assert steps[-1].final and len(versions_of_step(steps[-1])) == 1
    else:
        assert len(steps) == len(versions)
    emitted = [v for s in steps if not s.final for v in versions_of_step(s)]
    variable = [s for s in steps if not s.final][-1].variables[0]  # the variable stream: the latest version
    assert variable.equals(emitted[-1]) if emitted else variable.num_rows == 0
    tr = est.trainer()  # the trainer driven by hand gives the same versions
    by_hand = [v for x in inputs for v in tr.partial_fit(x)] + tr.finish()
    assert len(by_hand) == len(versions) and all(a.equals(b) for a, b in zip(by_hand, versions))


def test_emit_every_seconds_versions_by_processing_time():
    """A version at the end of the first partial_fit call (or engine poll) once emit_every_seconds have
    passed since the last version, holding the rows of the applied mini-batches (closed form); any
    version restarts the interval; a due time with nothing new stays due."""
    X, y = data(n=60, seed=21)
    t = fl.table({"features": X, "label": y})
    now = [0.0]
    tr = OnlineLogisticRegression(global_batch_size=4, emit_every_seconds=10.0, alpha=0.3).trainer(
        clock=lambda: now[0])

    def weights(v):
        return np.append(v.column("coefficient")[0].as_py(), v.column("intercept")[0].as_py())

    def ref(rows):
        return minibatch_reference(X[:rows], y[:rows], 4, 0.3, 0.1, 0.0, 0.0, sparse=False)[0]

    now[0] = 9.9
    assert tr.partial_fit(t.slice(0, 10)) == [] and tr.poll() == []
    now[0] = 10.0
    (v1,) = tr.partial_fit(t.slice(10, 10))         # 20 rows: 5 mini-batches applied
    assert v1.column("model_version")[0].as_py() == 1
    np.testing.assert_allclose(weights(v1), ref(20), atol=1e-9)
    now[0] = 19.0
    assert tr.partial_fit(t.slice(20, 6)) == [] and tr.poll() == []
    (v2,) = tr.poll(now=20.0)                        # an engine timer on a quiet stream: rows 21..24
    assert v2.column("model_version")[0].as_py() == 2
    np.testing.assert_allclose(weights(v2), ref(24), atol=1e-9)
    now[0] = 35.0
    assert tr.poll() == []                           # due, but rows 25..26 wait in the open mini-batch
    (v3,) = tr.partial_fit(t.slice(26, 2))           # still due: the completed mini-batch is emitted
    np.testing.assert_allclose(weights(v3), ref(28), atol=1e-9)
    assert tr.poll(now=44.9) == []                   # restarted at 35

    # with emit_every too: whichever comes first, and a count version restarts the interval
    now[0] = 0.0
    both = OnlineLogisticRegression(global_batch_size=4, emit_every=8, emit_every_seconds=10.0,
                                    alpha=0.3).trainer(clock=lambda: now[0])
    assert [v.column("model_version")[0].as_py() for v in both.partial_fit(t.slice(0, 8))] == [1]
    now[0] = 9.0
    assert both.partial_fit(t.slice(8, 4)) == [] and both.poll(now=9.5) == []
    now[0] = 10.0
    (v,) = both.poll()                               # 10 s after the count version at 0 s
    np.testing.assert_allclose(weights(v), ref(12), atol=1e-9)
    # None (the default) never looks at the clock
    assert OnlineLogisticRegression(global_batch_size=4).trainer(clock=lambda: 1 / 0).partial_fit(t) == []
