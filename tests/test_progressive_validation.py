"""progressive_validation: predict each row, then learn from it (River's progressive_val_score).

Oracles: River's ``evaluate.progressive_val_score`` on its bundled Phishing data with
``LogisticRegression(optimizer=FTRLProximal)`` (configured as described in test_ftrl.py), River's
and scikit-learn's metrics, and a NumPy closed form of the mini-batch rule.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.classification.ftrl import OnlineLogisticRegression
from flowlearn.evaluation.progressive import progressive_validation

ALPHA, BETA, L2 = 0.1, 1.0, 1.0


def phishing():
    pytest.importorskip("river")
    from river import datasets

    rows = list(datasets.Phishing())
    keys = list(rows[0][0])
    X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
    y = np.array([float(yy) for _, yy in rows])
    return rows, X, y


def river_model(eager: bool):
    """River LogisticRegression + FTRLProximal with the intercept as an always-1 'bias' feature
    (intercept_lr=0), which is fit_intercept=True. ``eager``: the weight of a coordinate is
    recomputed right after its update (the paper's and Flink ML's order) by running River's own
    step again with a zero gradient (z and n unchanged); stock River recomputes it lazily at the
    coordinate's next update, so its predictions use weights one update stale."""
    from river import compose, linear_model, optim

    class EagerFTRLProximal(optim.FTRLProximal):
        def _step_with_dict(self, w, g):
            w = super()._step_with_dict(w, g)
            return super()._step_with_dict(w, {i: 0.0 for i in g})

    opt = (EagerFTRLProximal if eager else optim.FTRLProximal)(alpha=ALPHA, beta=BETA, l1=0.0, l2=L2)
    return compose.FuncTransformer(lambda x: {**x, "bias": 1.0}) | linear_model.LogisticRegression(
        optimizer=opt, intercept_lr=0.0)


def ours(batch=1):
    return OnlineLogisticRegression(global_batch_size=batch, alpha=ALPHA, beta=BETA, reg=L2, elastic_net=0.0)


def test_log_loss_equals_river_progressive_val_score():
    pytest.importorskip("river")
    from river import datasets, evaluate, metrics

    _, X, y = phishing()
    river_ll = evaluate.progressive_val_score(datasets.Phishing(), river_model(eager=True), metrics.LogLoss()).get()
    res = progressive_validation(ours(), fl.table({"features": X, "label": y}))
    assert res["log_loss"] == pytest.approx(river_ll, rel=1e-10)


def test_close_to_stock_river():
    pytest.importorskip("river")
    from river import datasets, evaluate, metrics

    _, X, y = phishing()
    river_ll = evaluate.progressive_val_score(datasets.Phishing(), river_model(eager=False), metrics.LogLoss()).get()
    res = progressive_validation(ours(), fl.table({"features": X, "label": y}), metrics=["log_loss"])
    assert abs(res["log_loss"] - river_ll) / river_ll < 0.005


def test_auc_and_accuracy_equal_sklearn_on_river_predictions():
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    rows, X, y = phishing()
    model = river_model(eager=True)
    p = []
    for x, yy in rows:
        p.append(model.predict_proba_one(x)[True])
        model.learn_one(x, yy)
    p = np.array(p)
    res = progressive_validation(ours(), {"features": X, "label": y})
    assert list(res) == ["log_loss", "auc", "accuracy"]
    assert res["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert res["accuracy"] == pytest.approx(accuracy_score(y, (p >= 0.5).astype(float)), abs=1e-12)
    assert res["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-10)


def test_auc_with_ties_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    from flowlearn.evaluation.progressive import _auc

    rng = np.random.default_rng(0)
    p = rng.integers(0, 5, 500) / 4.0
    y = (rng.random(500) < 0.3 + 0.1 * p).astype(float)
    assert _auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert math.isnan(_auc(p, np.ones(500)))


def minibatch_predictions(X, y, B, alpha, beta, l2):
    """Closed form of the mini-batch rule on dense data: a mini-batch is predicted with the weights
    from before it; then one FTRL step with the batch-mean gradient (intercept = last coordinate)."""
    A = np.hstack([X, np.ones((len(y), 1))])
    z, n, w = (np.zeros(A.shape[1]) for _ in range(3))
    out = []
    for s in range(0, len(y), B):
        a, yb = A[s:s + B], y[s:s + B]
        p = 1 / (1 + np.exp(-(a @ w)))
        out.append(p)
        g = a.T @ (p - yb) / len(yb)
        sigma = (np.sqrt(n + g * g) - np.sqrt(n)) / alpha
        z, n = z + g - sigma * w, n + g * g
        w = -z / ((beta + np.sqrt(n)) / alpha + l2)
    return np.concatenate(out)


def test_minibatch_rows_are_predicted_with_the_batch_start_model():
    _, X, y = phishing()
    p = minibatch_predictions(X, y, 32, ALPHA, BETA, L2)
    pc = np.clip(p, 1e-15, 1 - 1e-15)
    ref = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    res = progressive_validation(ours(batch=32), {"features": X, "label": y}, metrics=["log_loss"])
    assert res["log_loss"] == pytest.approx(ref, rel=1e-10)


def closed_form_metrics(X, y, B):
    """log loss, AUC and accuracy of the closed-form mini-batch predictions, by scikit-learn."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    p = minibatch_predictions(X, y, B, ALPHA, BETA, L2)
    return log_loss(y, p), roc_auc_score(y, p), accuracy_score(y, (p >= 0.5).astype(float))


def test_result_does_not_depend_on_input_batching():
    _, X, y = phishing()
    t = fl.table({"features": X, "label": y})
    est = ours(batch=8)
    whole = progressive_validation(est, t)
    ll, auc, acc = closed_form_metrics(X, y, 8)
    assert whole["log_loss"] == pytest.approx(ll, rel=1e-10)
    assert whole["auc"] == pytest.approx(auc, abs=1e-12) and whole["accuracy"] == pytest.approx(acc, abs=1e-12)
    for other in (progressive_validation(est, t, batch_size=37),
                  progressive_validation(est, t.to_batches(max_chunksize=100)),
                  progressive_validation(est, iter([t.slice(0, 5), t.slice(5)]))):
        # same predictions; only the order of the floating-point loss sum differs
        assert other["log_loss"] == pytest.approx(whole["log_loss"], rel=1e-13)
        assert (other["auc"], other["accuracy"]) == (whole["auc"], whole["accuracy"])


def test_uses_the_initial_model_and_leaves_the_estimator_alone():
    X = np.array([[1.0, 2.0]])
    init = {"coefficient": [[0.5, -1.0]], "intercept": [0.25], "model_version": [0]}
    est = OnlineLogisticRegression(global_batch_size=1).set_initial_model_data(init)
    res = progressive_validation(est, {"features": X, "label": [1.0]}, metrics="log_loss")
    assert res["log_loss"] == pytest.approx(math.log1p(math.exp(1.25)), rel=1e-12)  # -log sigmoid(-1.25)
    assert est.get_initial_model_data().column("intercept").to_pylist() == [0.25]


def test_bad_arguments():
    t = {"features": [[1.0]], "label": [1.0]}
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['f2'\]; choose from \['log_loss', 'auc', 'accuracy'\]"):
        progressive_validation(ours(), t, metrics=["log_loss", "f2"])
    with pytest.raises(ValueError, match="batch_size = 0 must be a positive int"):
        progressive_validation(ours(), t, batch_size=0)
    with pytest.raises(TypeError, match="needs an online estimator with a trainer"):
        progressive_validation(fl.feature.StandardScaler(), t)
    empty = pa.table({"features": pa.array([], fl.linalg.dense_vector_type(1)), "label": pa.array([], pa.float64())})
    with pytest.raises(ValueError, match="the input has no rows"):
        progressive_validation(ours(), empty)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        progressive_validation(ours(), {"features": [[1.0]], "label": [3.0]})


def test_bounded_stream_input():
    _, X, y = phishing()
    t = fl.table({"features": X, "label": y})
    res = progressive_validation(ours(batch=8), fls.from_table(t, batch_size=100))
    whole = progressive_validation(ours(batch=8), t)
    assert res["log_loss"] == pytest.approx(whole["log_loss"], rel=1e-13)
    assert (res["auc"], res["accuracy"]) == (whole["auc"], whole["accuracy"])
    ll, auc, acc = closed_form_metrics(X, y, 8)
    assert res["log_loss"] == pytest.approx(ll, rel=1e-10) and res["auc"] == pytest.approx(auc, abs=1e-12)
