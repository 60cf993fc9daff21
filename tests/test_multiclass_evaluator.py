"""MulticlassClassificationEvaluator (Spark MLlib's metric names).

Oracles: scikit-learn's metrics on the iris data scored by a scikit-learn classifier fitted on
half of it, with random sample weights: f1_score / fbeta_score / precision_score /
recall_score (average="weighted" and per label, zero_division=0 as Spark), accuracy_score,
multilabel_confusion_matrix (false positive rates), log_loss and hamming_loss; and the
confusion-matrix example of Spark's MulticlassMetricsSuite, worked by hand.
"""
from __future__ import annotations

import doctest
import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, f1_score, fbeta_score, hamming_loss, log_loss,
                             multilabel_confusion_matrix, precision_score, recall_score)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.evaluation import multiclass as mc_module
from flowlearn.evaluation.multiclass import MULTICLASS_METRICS_NAMES, MulticlassClassificationEvaluator

ALL = MULTICLASS_METRICS_NAMES


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(x[::2], y[::2])
    proba = clf.predict_proba(x)
    pred = clf.predict(x)
    w = np.random.default_rng(0).uniform(0.1, 3.0, len(y))
    return y.astype(np.float64), pred.astype(np.float64), proba, w


def table(y, pred, proba=None, w=None):
    cols = {"label": y, "prediction": pred}
    if proba is not None:
        cols["raw_prediction"] = proba
    if w is not None:
        cols["weight"] = w
    return fl.table(cols)


def sk_oracle(y, pred, proba, w, label, beta):
    labels = np.unique(np.concatenate([y, pred]))
    kw = dict(sample_weight=w, zero_division=0, labels=labels)
    mcm = multilabel_confusion_matrix(y, pred, sample_weight=w, labels=labels)
    fpr = mcm[:, 0, 1] / (mcm[:, 0, 1] + mcm[:, 0, 0])
    support = mcm[:, 1, 1] + mcm[:, 1, 0]
    at = int(np.searchsorted(labels, label))
    return {
        "f1": f1_score(y, pred, average="weighted", **kw),
        "accuracy": accuracy_score(y, pred, sample_weight=w),
        "weightedPrecision": precision_score(y, pred, average="weighted", **kw),
        "weightedRecall": recall_score(y, pred, average="weighted", **kw),
        "weightedTruePositiveRate": recall_score(y, pred, average="weighted", **kw),
        "weightedFalsePositiveRate": float(support @ fpr / support.sum()),
        "weightedFMeasure": fbeta_score(y, pred, beta=beta, average="weighted", **kw),
        "truePositiveRateByLabel": recall_score(y, pred, average=None, **kw)[at],
        "falsePositiveRateByLabel": fpr[at],
        "precisionByLabel": precision_score(y, pred, average=None, **kw)[at],
        "recallByLabel": recall_score(y, pred, average=None, **kw)[at],
        "fMeasureByLabel": fbeta_score(y, pred, beta=beta, average=None, **kw)[at],
        "logLoss": log_loss(y, proba, sample_weight=w, labels=[0, 1, 2]),
        "hammingLoss": hamming_loss(y, pred, sample_weight=w),
    }


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label,beta", [(0.0, 1.0), (1.0, 0.5), (2.0, 2.0)])
def test_every_metric_matches_sklearn(iris, weighted, label, beta):
    y, pred, proba, w = iris
    w = w if weighted else None
    ev = MulticlassClassificationEvaluator(metrics_names=ALL, metric_label=label, beta=beta,
                                           weight_col="weight" if weighted else None)
    got = ev.evaluate(table(y, pred, proba, w))
    expected = sk_oracle(y, pred, proba, w, label, beta)
    assert list(got) == ALL
    for name in ALL:
        assert got[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name


def test_transform_is_one_row_in_metric_order(iris):
    y, pred, proba, _ = iris
    names = ["logLoss", "accuracy", "f1"]
    ev = MulticlassClassificationEvaluator(metrics_names=names)
    out = ev.transform(table(y, pred, proba))
    assert out.column_names == names and out.num_rows == 1
    assert out.schema == ev.output_schema(table(y, pred, proba).schema)
    assert out.to_pylist()[0] == ev.evaluate(table(y, pred, proba))


def test_label_only_predicted_counts_zero_in_weighted_averages():
    # label 3 is never true: sklearn (support 0) and Spark (labels come from the true labels) agree
    y = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    pred = np.array([0.0, 3.0, 1.0, 1.0, 2.0, 0.0])
    got = MulticlassClassificationEvaluator(metrics_names=["f1", "weightedPrecision"]).evaluate(table(y, pred))
    assert got["f1"] == pytest.approx(f1_score(y, pred, average="weighted", zero_division=0))
    assert got["weightedPrecision"] == pytest.approx(precision_score(y, pred, average="weighted", zero_division=0))


@pytest.mark.parametrize("shift", [-3.0, 2.0 ** 21])
def test_labels_that_are_not_small_class_indices(iris, shift):
    # negative and large label values take the sorting path instead of counting
    y, pred, _, w = iris
    y, pred = y + shift, pred + shift
    got = MulticlassClassificationEvaluator(metrics_names=["f1", "weightedFalsePositiveRate"], weight_col="w") \
        .evaluate({"label": y, "prediction": pred, "w": w})
    assert got["f1"] == pytest.approx(f1_score(y, pred, average="weighted", sample_weight=w), rel=1e-12)
    labels = np.unique(y)
    mcm = multilabel_confusion_matrix(y, pred, sample_weight=w, labels=labels)
    fpr = mcm[:, 0, 1] / (mcm[:, 0, 1] + mcm[:, 0, 0])
    support = mcm[:, 1, 1] + mcm[:, 1, 0]
    assert got["weightedFalsePositiveRate"] == pytest.approx(support @ fpr / support.sum(), rel=1e-12)


def test_spark_multiclass_metrics_suite_example():
    # Spark MulticlassMetricsSuite: (prediction, label) pairs, confusion matrix [[2,1,1],[1,3,0],[0,0,1]]
    pairs = [(0.0, 0.0), (0.0, 1.0), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (2.0, 2.0),
             (2.0, 0.0)]
    t = fl.table({"prediction": [p for p, _ in pairs], "label": [lab for _, lab in pairs]})
    ev = MulticlassClassificationEvaluator(metrics_names=ALL[:-2] + ["hammingLoss"])
    precision = [2.0 / 3, 3.0 / 4, 1.0 / 2]
    recall = [2.0 / 4, 3.0 / 4, 1.0]
    fpr = [1.0 / 5, 1.0 / 5, 1.0 / 8]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    share = [4.0 / 9, 4.0 / 9, 1.0 / 9]
    for lab in range(3):
        got = ev.set(metric_label=float(lab)).evaluate(t)
        assert got["precisionByLabel"] == pytest.approx(precision[lab])
        assert got["recallByLabel"] == pytest.approx(recall[lab])
        assert got["truePositiveRateByLabel"] == pytest.approx(recall[lab])
        assert got["falsePositiveRateByLabel"] == pytest.approx(fpr[lab])
        assert got["fMeasureByLabel"] == pytest.approx(f1[lab])
    assert got["accuracy"] == pytest.approx(6.0 / 9) and got["hammingLoss"] == pytest.approx(3.0 / 9)
    assert got["weightedPrecision"] == pytest.approx(np.dot(share, precision))
    assert got["weightedRecall"] == pytest.approx(np.dot(share, recall))
    assert got["weightedFalsePositiveRate"] == pytest.approx(np.dot(share, fpr))
    assert got["f1"] == pytest.approx(np.dot(share, f1))


def test_metric_label_absent_gives_zero():
    got = MulticlassClassificationEvaluator(metrics_names=["precisionByLabel", "recallByLabel"], metric_label=7.0) \
        .evaluate({"label": [0.0, 1.0], "prediction": [0.0, 1.0]})
    assert got == {"precisionByLabel": 0.0, "recallByLabel": 0.0}


def test_log_loss_clips_at_eps():
    t = {"label": [0.0, 1.0], "prediction": [1.0, 1.0], "raw_prediction": [[0.0, 1.0], [0.0, 1.0]]}
    got = MulticlassClassificationEvaluator(metrics_names=["logLoss"], eps=1e-4).evaluate(t)["logLoss"]
    assert got == pytest.approx(-math.log(1e-4) / 2)


def test_log_loss_needs_no_prediction_column():
    t = {"label": [0.0, 1.0], "raw_prediction": [[0.8, 0.2], [0.4, 0.6]]}
    got = MulticlassClassificationEvaluator(metrics_names=["logLoss"]).evaluate(t)["logLoss"]
    assert got == pytest.approx(log_loss([0, 1], [[0.8, 0.2], [0.4, 0.6]]))


def test_is_larger_better_as_spark():
    ev = MulticlassClassificationEvaluator()
    smaller = {"weightedFalsePositiveRate", "falsePositiveRateByLabel", "logLoss", "hammingLoss"}
    assert {m for m in ALL if not ev.is_larger_better(m)} == smaller
    assert ev.is_larger_better() is True
    assert MulticlassClassificationEvaluator(metrics_names=["logLoss", "f1"]).is_larger_better() is False
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        ev.is_larger_better("auc")


def test_params_and_save_load(tmp_path):
    ev = MulticlassClassificationEvaluator(metrics_names=["recallByLabel"], metric_label=2.0, beta=0.5,
                                           weight_col="w", eps=1e-6)
    ev.save(str(tmp_path / "ev"))
    loaded = fl.load(str(tmp_path / "ev"))
    assert loaded.get_params() == ev.get_params()
    assert MulticlassClassificationEvaluator().get_params() == {
        "label_col": "label", "prediction_col": "prediction", "raw_prediction_col": "raw_prediction",
        "weight_col": None, "metrics_names": ["f1"], "metric_label": 0.0, "beta": 1.0, "eps": 1e-15}


@pytest.mark.parametrize("kw,rule", [({"metrics_names": ["auc"]}, "in_array"), ({"beta": 0.0}, "gt\\(0\\)"),
                                     ({"eps": 0.5}, "in_range"), ({"metric_label": -1.0}, "gt_eq\\(0\\)")])
def test_bad_params_are_named(kw, rule):
    with pytest.raises(ValueError, match=f"MulticlassClassificationEvaluator: parameter '{next(iter(kw))}'.*{rule}"):
        MulticlassClassificationEvaluator(**kw)


def test_bad_input_is_named():
    ev = MulticlassClassificationEvaluator(metrics_names=["accuracy"])
    with pytest.raises(ValueError, match="input column 'prediction' \\(parameter 'prediction_col'\\) is missing"):
        ev.evaluate({"label": [1.0]})
    with pytest.raises(ValueError, match="needs at least one row"):
        ev.evaluate(pa.table({"label": pa.array([], pa.float64()), "prediction": pa.array([], pa.float64())}))
    with pytest.raises(ValueError, match="column 'label' has a null at row 1"):
        ev.evaluate({"label": [1.0, None], "prediction": [1.0, 0.0]})
    with pytest.raises(ValueError, match="negative weight -1.0 at row 1"):
        MulticlassClassificationEvaluator(weight_col="w").evaluate({"label": [1.0, 0.0], "prediction": [1.0, 0.0],
                                                                    "w": [1.0, -1.0]})
    with pytest.raises(ValueError, match="repeats a metric"):
        MulticlassClassificationEvaluator(metrics_names=["f1", "f1"]).evaluate({"label": [1.0], "prediction": [1.0]})
    ll = MulticlassClassificationEvaluator(metrics_names=["logLoss"])
    with pytest.raises(ValueError, match="holds 2.0 at row 1; 'logLoss' reads the label as an index"):
        ll.evaluate({"label": [0.0, 2.0], "raw_prediction": [[0.5, 0.5], [0.5, 0.5]]})
    with pytest.raises(TypeError, match="needs a vector of class probabilities"):
        ll.evaluate({"label": [0.0], "raw_prediction": [0.5]})


def test_doctests():
    assert doctest.testmod(mc_module).failed == 0
