"""progressive_validation: predict each row, then learn from it (River's progressive_val_score).

Oracles, per kind of prediction:
* binary (class-1 probabilities): River's ``evaluate.progressive_val_score`` on its bundled Phishing
  data with ``LogisticRegression(optimizer=FTRLProximal)`` (configured as described in test_ftrl.py),
  scikit-learn's metrics on River's per-row predictions, and a NumPy closed form of the mini-batch rule;
* regression (values): River's ``progressive_val_score`` with ``LinearRegression(optim.SGD)`` and
  ``RMSE + MAE + R2`` on TrumpApproval (flowlearn's half squared loss: flowlearn ``lr``,
  ``intercept_lr`` = 2x River's, ``reg`` = River ``l2`` / 2; see test_online_learning.py), and
  scikit-learn's metrics on the predictions of a NumPy mini-batch SGD loop on load_diabetes;
* multiclass ((n, k) probabilities): River's ``progressive_val_score`` with ``SoftmaxRegression``
  (all classes present from the start, the intercept as an always-1 'bias' feature) and
  ``CrossEntropy + Accuracy + MacroF1`` on ImageSegments, and scikit-learn's metrics on the
  predictions of a NumPy mini-batch softmax SGD loop on load_wine;
* linear SVM margins: scikit-learn's metrics on the margins of a plain-Python per-row hinge SGD
  loop on load_breast_cancer.
Tests needing River skip without it; the scikit-learn ones run everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.classification.ftrl import OnlineLogisticRegression
from flowlearn.classification.linear_svc import LinearSVCModel
from flowlearn.classification.logistic_regression import LogisticRegressionModel
from flowlearn.classification.online_learning import OnlineLearning
from flowlearn.evaluation.progressive import progressive_validation
from flowlearn.regression.linear_regression import LinearRegressionModel

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
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

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
    more = progressive_validation(ours(), {"features": X, "label": y},
                                  metrics=["precision", "recall", "f1", "accuracy", "auc"])
    assert list(more) == ["precision", "recall", "f1", "accuracy", "auc"]
    pred = (p >= 0.5).astype(float)
    assert more["precision"] == pytest.approx(precision_score(y, pred), abs=1e-12)
    assert more["recall"] == pytest.approx(recall_score(y, pred), abs=1e-12)
    assert more["f1"] == pytest.approx(f1_score(y, pred), abs=1e-12)
    assert (more["accuracy"], more["auc"]) == (res["accuracy"], res["auc"])


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
    with pytest.raises(ValueError, match=r"unknown metric 'f2' for kind 'binary': OnlineLogisticRegression predicts "
                                         r"the probability of class 1; valid metrics for kind 'binary': \['log_loss', "
                                         r"'auc', 'accuracy', 'precision', 'recall', 'f1'\]"):
        progressive_validation(ours(), t, metrics=["log_loss", "f2"])
    with pytest.raises(ValueError, match=r"metric 'rmse' does not fit kind 'binary'.*valid metrics for kind 'binary'"):
        progressive_validation(ours(), t, metrics="rmse")
    with pytest.raises(ValueError, match=r"no metrics asked; for kind 'binary' choose from \['log_loss'"):
        progressive_validation(ours(), t, metrics=[])
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


# ------------------------------------------------------------------------------------------------
# other kinds of prediction: regression, multiclass, linear SVM margins
# ------------------------------------------------------------------------------------------------

def online(last_stage, **params):
    """OnlineLearning of a one-stage pipeline (or of ``feature stages + last_stage``)."""
    stages = last_stage if isinstance(last_stage, list) else [last_stage]
    return OnlineLearning(fl.PipelineModel(stages), **params)


def linear(cls, W, b, **params):
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    return cls(**params).set_model_data({"coefficient": W.tolist(), "intercept": b.tolist(),
                                         "model_version": [0] * len(b)})


def standardized(X):
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


@pytest.mark.parametrize("opt", ["sgd", "adagrad"])
def test_regression_equals_river_progressive_val_score(opt):
    """LinearRegression warm-started from least squares on the first 300 TrumpApproval rows, then
    progressive RMSE, MAE and R2 on the rest equal River's."""
    pytest.importorskip("river")
    from river import datasets, evaluate, linear_model, metrics, optim

    rows = list(datasets.TrumpApproval())
    keys = list(rows[0][0])
    X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
    y = np.array([float(v) for _, v in rows])
    H = 300
    Xs = (X - X[:H].mean(axis=0)) / X[:H].std(axis=0)
    coef = np.linalg.lstsq(np.hstack([Xs[:H], np.ones((H, 1))]), y[:H], rcond=None)[0]
    w0, b0 = coef[:-1], coef[-1]
    if opt == "sgd":
        ours = dict(optim_method="sgd", learning_rate=0.02, intercept_lr=0.02, reg=0.005)
        rv = linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.01, l2=0.01)
    else:
        ours = dict(optim_method="adagrad", learning_rate=0.3, epsilon=1e-8 / 4, intercept_lr=0.02, reg=0.005)
        rv = linear_model.LinearRegression(optimizer=optim.AdaGrad(0.3, eps=1e-8), intercept_lr=0.01, l2=0.01)
    for k, v in zip(keys, w0):  # River's warm start (it has no public setter)
        rv._weights[k] = float(v)
    rv.intercept = float(b0)
    river = metrics.RMSE() + metrics.MAE() + metrics.R2()
    evaluate.progressive_val_score([(dict(zip(keys, Xs[i])), y[i]) for i in range(H, len(y))], rv, river)
    est = online(linear(LinearRegressionModel, w0, b0), global_batch_size=1, **ours)
    res = progressive_validation(est, {"features": Xs[H:], "label": y[H:]})
    assert list(res) == ["rmse", "mae", "r2"]  # the defaults of a regressor
    for name, m in zip(res, river):
        assert res[name] == pytest.approx(m.get(), rel=1e-9), name
    # learning online beats the frozen warm start
    frozen = np.sqrt(np.mean((Xs[H:] @ w0 + b0 - y[H:]) ** 2))
    assert res["rmse"] < frozen / 2


def test_regression_minibatches_equal_sklearn_metrics_of_a_reference_loop():
    """load_diabetes, SGD with mini-batches of 8: a row is predicted with the weights from before its
    mini-batch; then w -= lr * (mean((p - y) x) + l2 w), b -= lr * mean(p - y)."""
    from sklearn.datasets import load_diabetes
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    X, y = load_diabetes(return_X_y=True)
    X = standardized(X)
    lr, l2, B = 0.05, 0.01, 8
    w, b = np.zeros(X.shape[1]), 100.0
    preds = []
    for s in range(0, len(y), B):
        xb, yb = X[s:s + B], y[s:s + B]
        p = xb @ w + b
        preds.append(p)
        r = p - yb
        w, b = w - lr * (xb.T @ r / len(yb) + l2 * w), b - lr * r.mean()
    p = np.concatenate(preds)
    est = online(linear(LinearRegressionModel, np.zeros(X.shape[1]), 100.0), optim_method="sgd",
                 learning_rate=lr, reg=l2, global_batch_size=B)
    t = fl.table({"features": X, "label": y})
    res = progressive_validation(est, t, metrics=["r2", "mae", "rmse"], batch_size=37)
    assert list(res) == ["r2", "mae", "rmse"]
    assert res["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=1e-10)
    assert res["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-10)
    assert res["r2"] == pytest.approx(r2_score(y, p), rel=1e-10)
    assert res["r2"] > 0.3
    for wrong in ("log_loss", "auc", "accuracy", "macro_f1"):
        with pytest.raises(ValueError, match=rf"metric '{wrong}' does not fit kind 'regression': OnlineLearning "
                                             rf"predicts values; valid metrics for kind 'regression': "
                                             rf"\['rmse', 'mae', 'r2'\]"):
            progressive_validation(est, t, metrics=["rmse", wrong])


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_multiclass_equals_river_progressive_val_score(opt):
    """A softmax LogisticRegressionModel (7 classes, zero start) on ImageSegments vs River's
    SoftmaxRegression: progressive cross-entropy, accuracy and macro F1 equal River's."""
    pytest.importorskip("river")
    from river import compose, datasets, evaluate, linear_model, metrics, optim

    rows = list(datasets.ImageSegments())
    keys = list(rows[0][0])
    classes = sorted({c for _, c in rows})
    X = standardized(np.array([[float(x[k]) for k in keys] for x, _ in rows]))
    y = np.array([float(classes.index(c)) for _, c in rows])
    K, d = len(classes), X.shape[1]
    ours, make_opt = {"sgd": (dict(optim_method="sgd", learning_rate=0.05), lambda: optim.SGD(0.05)),
                      "adam": (dict(optim_method="adam", learning_rate=0.01), lambda: optim.Adam(0.01))}[opt]
    softmax = linear_model.SoftmaxRegression(optimizer=make_opt())
    for c in range(K):  # every class in the softmax from the start, as flowlearn's K-row model
        softmax.weights[c]
    model = compose.FuncTransformer(lambda x: {**x, "bias": 1.0}) | softmax
    river = metrics.CrossEntropy() + metrics.Accuracy() + metrics.MacroF1()
    evaluate.progressive_val_score([(dict(zip(keys, X[i])), int(y[i])) for i in range(len(y))], model, river)
    est = online(linear(LogisticRegressionModel, np.zeros((K, d)), np.zeros(K)), global_batch_size=1, **ours)
    res = progressive_validation(est, {"features": X, "label": y})
    assert list(res) == ["log_loss", "accuracy", "macro_f1"]  # the defaults of a multiclass model
    assert res["log_loss"] == pytest.approx(river[0].get(), rel=1e-9)
    assert res["accuracy"] == pytest.approx(river[1].get(), abs=1e-12)
    assert res["macro_f1"] == pytest.approx(river[2].get(), abs=1e-12)
    assert res["accuracy"] > 0.8


def softmax_minibatch_predictions(X, y, K, lr, B):
    """SGD on the softmax cross-entropy with mini-batches of B rows (intercept stepped alike)."""
    W, b = np.zeros((K, X.shape[1])), np.zeros(K)
    out = []
    for s in range(0, len(y), B):
        xb, yb = X[s:s + B], y[s:s + B].astype(int)
        Z = xb @ W.T + b
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        out.append(P)
        R = P.copy()
        R[np.arange(len(yb)), yb] -= 1.0
        W, b = W - lr * R.T @ xb / len(yb), b - lr * R.mean(axis=0)
    return np.vstack(out)


def test_multiclass_minibatches_equal_sklearn_metrics_with_a_string_label_stage():
    """load_wine (shuffled), labels made from strings by a StringIndexerModel feature stage, mini-batches
    of 4: scikit-learn's log loss, accuracy and macro F1 of a NumPy reference loop's probabilities."""
    from sklearn.datasets import load_wine
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    X, y = load_wine(return_X_y=True)
    order = np.random.default_rng(7).permutation(len(y))
    X, y = standardized(X)[order], y[order].astype(float)
    P = softmax_minibatch_predictions(X, y, 3, 0.1, 4)
    raw = fl.table({"features": X, "cultivar": [f"class_{int(v)}" for v in y]})
    indexer = fl.feature.StringIndexerModel(input_cols=["cultivar"], output_cols=["label"]).set_model_data(
        pa.table({"string_arrays": [[["class_0", "class_1", "class_2"]]]}))
    est = online([indexer, linear(LogisticRegressionModel, np.zeros((3, X.shape[1])), np.zeros(3))],
                 optim_method="sgd", learning_rate=0.1, global_batch_size=4)
    res = progressive_validation(est, raw)
    assert res["log_loss"] == pytest.approx(log_loss(y, P, labels=[0, 1, 2]), rel=1e-10)
    pred = P.argmax(axis=1)
    assert res["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert res["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert res["accuracy"] > 0.9
    chunked = progressive_validation(est, raw.to_batches(max_chunksize=25), metrics=["macro_f1", "accuracy"])
    assert chunked == {"macro_f1": res["macro_f1"], "accuracy": res["accuracy"]}
    for wrong in ("auc", "rmse", "f1", "precision"):
        with pytest.raises(ValueError, match=rf"metric '{wrong}' does not fit kind 'multiclass': OnlineLearning "
                                             rf"predicts \(n, k\) class probabilities; valid metrics for kind "
                                             rf"'multiclass': \['log_loss', 'accuracy', 'macro_f1'\]"):
            progressive_validation(est, raw, metrics=[wrong])


def hinge_reference(X, y, lr, l2):
    """Per-row SGD on the hinge loss, in plain Python: margin m = w . x + b (recorded before the update);
    t = 2y - 1; g = -t if t m <= 1 else 0; w -= lr (g x + l2 w); b -= lr g."""
    d = len(X[0])
    w, b = [0.0] * d, 0.0
    margins = []
    for x, yy in zip(X.tolist(), y.tolist()):
        m = sum(wi * xi for wi, xi in zip(w, x)) + b
        margins.append(m)
        t = 2.0 * yy - 1.0
        g = -t if t * m <= 1.0 else 0.0
        w = [wi - lr * (g * xi + l2 * wi) for wi, xi in zip(w, x)]
        b -= lr * g
    return np.array(margins)


@pytest.mark.parametrize("threshold", [0.0, 0.3])
def test_linear_svm_margins_equal_sklearn_metrics_of_a_reference_loop(threshold):
    """load_breast_cancer, a LinearSVCModel last stage: accuracy, precision, recall and F1 of predicting 1
    when the margin is >= the model's threshold, and the AUC of the margins (rank-based)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    X, y = load_breast_cancer(return_X_y=True)
    X, y = standardized(X), y.astype(float)
    m = hinge_reference(X, y, 0.01, 0.001)
    est = online(linear(LinearSVCModel, np.zeros(X.shape[1]), 0.0, threshold=threshold), optim_method="sgd",
                 learning_rate=0.01, reg=0.001, global_batch_size=1)
    t = fl.table({"features": X, "label": y})
    assert list(progressive_validation(est, t)) == ["accuracy", "auc"]  # the defaults for margins
    res = progressive_validation(est, t, metrics=["accuracy", "auc", "precision", "recall", "f1"])
    pred = (m >= threshold).astype(float)
    assert res["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert res["precision"] == pytest.approx(precision_score(y, pred), abs=1e-12)
    assert res["recall"] == pytest.approx(recall_score(y, pred), abs=1e-12)
    assert res["f1"] == pytest.approx(f1_score(y, pred), abs=1e-12)
    assert res["auc"] == pytest.approx(roc_auc_score(y, m), abs=1e-12)
    assert res["accuracy"] > 0.9
    with pytest.raises(ValueError, match=r"metric 'log_loss' does not fit kind 'margin': OnlineLearning predicts "
                                         r"linear SVM margins \(w \. x \+ b\), not probabilities \(log_loss needs "
                                         r"probabilities\); valid metrics for kind 'margin': \['accuracy', 'auc', "
                                         r"'precision', 'recall', 'f1'\]"):
        progressive_validation(est, t, metrics=["auc", "log_loss"])


def test_metrics_are_checked_before_any_row_is_read_and_non_predicting_trainers_are_refused():
    def rows():
        raise AssertionError("the input was read before the metrics were checked")
        yield  # pragma: no cover

    est = online(linear(LinearRegressionModel, [0.0], 0.0), optim_method="sgd")
    with pytest.raises(ValueError, match="metric 'auc' does not fit kind 'regression'"):
        progressive_validation(est, rows(), metrics=["auc"])
    km = fl.clustering.OnlineKMeans(k=2)
    with pytest.raises(TypeError, match=r"needs an online estimator with a trainer\(\) that predicts rows before "
                                        r"learning them \(predict_and_partial_fit\).*OnlineKMeans's trainer does "
                                        r"not predict"):
        progressive_validation(km, {"features": [[0.5]]})


# ---------------------------------------------------------------- pipelines of online stages

def _scaler_pipeline(names, batch=1, with_mean=True, lr=0.01):
    from flowlearn.feature.online_scalers import OnlineStandardScaler

    return fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=names, output_col="x", input_sizes=[1] * len(names)),
        OnlineStandardScaler(input_col="x", output_col="features", with_mean=with_mean),
        OnlineLearning(LogisticRegressionModel(), optim_method="sgd", learning_rate=lr, intercept_lr=lr,
                       global_batch_size=batch),
    ])


def test_river_standard_scaler_then_logistic_regression_on_phishing():
    """River's `StandardScaler | LogisticRegression` (89.3% on Phishing) has an equivalent: a pipeline of
    online stages. River's scaler learns a row before transforming it for the learner's update (and after
    the prediction), ours learns it after both, so the numbers are close, not equal."""
    pytest.importorskip("river")
    from river import compose, datasets, evaluate, linear_model, metrics, preprocessing

    rows, _, _ = phishing()
    river = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    acc = evaluate.progressive_val_score(datasets.Phishing(), river, metrics.Accuracy()).get()
    river = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    ll = evaluate.progressive_val_score(datasets.Phishing(), river, metrics.LogLoss()).get()
    res = progressive_validation(_scaler_pipeline(list(rows[0][0])), datasets.Phishing(),
                                 metrics=["accuracy", "log_loss"])
    assert acc == pytest.approx(0.8928, abs=1e-4)
    assert abs(res["accuracy"] - acc) <= 0.005
    assert abs(res["log_loss"] - ll) / ll < 0.01


@pytest.mark.parametrize("batch,with_mean", [(1, True), (7, True), (5, False)])
def test_pipeline_scaler_statistics_are_those_of_the_rows_before_each_chunk(batch, with_mean, monkeypatch):
    """The scaled features each row is predicted with: NumPy mean and std (ddof=1) of the rows before
    the row's chunk (zeros before any row), computed here row by row; and the vectorized pass equals
    the chunk-by-chunk loop of the same pipeline."""
    from flowlearn.evaluation import progressive as pv

    rng = np.random.default_rng(3)
    X = rng.normal(50.0, 4.0, size=(60, 3))
    t = fl.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": (X[:, 0] > 50).astype(float)})
    pipe = _scaler_pipeline(["a", "b", "c"], batch, with_mean)
    features, _ = pv._split_online_pipeline(pipe)
    x = features[0].progressive(t, batch)
    got = fl.linalg.to_numpy(features[1].progressive(x.slice(0, 40), batch)["features"])
    features[1].learn(x.slice(0, 40))
    got = np.vstack([got, fl.linalg.to_numpy(features[1].progressive(x.slice(40), batch)["features"])])
    want = np.zeros_like(X)
    for i in range(len(X)):
        start = (i // batch) * batch if i < 40 else 40 + ((i - 40) // batch) * batch
        if start > 1:
            mean, std = X[:start].mean(axis=0), X[:start].std(axis=0, ddof=1)
            want[i] = ((X[i] - mean) if with_mean else X[i]) / std
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    fast = progressive_validation(pipe, t, metrics=["log_loss", "accuracy"])
    monkeypatch.setattr(pv._FeatureStage, "vectorized", property(lambda self: self.trainer is None))  # chunk loop
    slow = progressive_validation(pipe, t, metrics=["log_loss", "accuracy"])
    assert fast == pytest.approx(slow, rel=1e-10)


def test_pairs_equal_a_table_and_batch_stages_are_refused():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] - X[:, 1] > 0).astype(float)
    pairs = [({"a": float(a), "b": float(b)}, bool(lab)) for (a, b), lab in zip(X, y)]
    table = fl.table({"a": X[:, 0], "b": X[:, 1], "label": y})
    assert progressive_validation(_scaler_pipeline(["a", "b"], lr=0.1), pairs) == \
        progressive_validation(_scaler_pipeline(["a", "b"], lr=0.1), table)
    batch_scaler = fl.Pipeline([fl.feature.StandardScaler(input_col="x", output_col="features"),
                                OnlineLearning(LogisticRegressionModel())])
    with pytest.raises(TypeError, match=r"pipeline stage 0 \(StandardScaler\) is a batch estimator, which cannot "
                                        r"learn row by row; use its online counterpart"):
        progressive_validation(batch_scaler, table)
