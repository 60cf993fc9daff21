"""Conformance cases for the statistics tests (ANOVATest, ChiSqTest, FValueTest), the multiclass,
regression and clustering evaluators, and model selection (CrossValidator, TrainValidationSplit
and their models), on small slices of scikit-learn's bundled data."""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
from sklearn.datasets import load_diabetes, load_iris

import flowlearn as fl
from flowlearn.evaluation.clustering import ClusteringEvaluator
from flowlearn.evaluation.multiclass import MulticlassClassificationEvaluator
from flowlearn.evaluation.regression import RegressionEvaluator
from flowlearn.linalg import from_numpy
from flowlearn.stats.univariate import ANOVATest, ChiSqTest, FValueTest
from flowlearn.tuning.selection import CrossValidator, TrainValidationSplit


@functools.lru_cache(maxsize=None)
def iris() -> pa.Table:
    """30 iris rows (10 per class): features, label 0..2."""
    d = load_iris()
    idx = np.r_[0:10, 50:60, 100:110]
    return pa.table({"features": from_numpy(d.data[idx]), "label": d.target[idx].astype(float)})


@functools.lru_cache(maxsize=None)
def discrete_iris() -> pa.Table:
    t = iris()
    return t.set_column(0, "features", from_numpy(np.floor(fl.linalg.to_numpy(t.column("features")))))


@functools.lru_cache(maxsize=None)
def diabetes() -> pa.Table:
    d = load_diabetes()
    return pa.table({"features": from_numpy(d.data[:40, :4]), "label": d.target[:40]})


@functools.lru_cache(maxsize=None)
def scored_iris() -> pa.Table:
    """iris with a prediction (some wrong), class probabilities and a weight."""
    t = iris()
    y = t.column("label").to_numpy()
    pred = y.copy()
    pred[[3, 14, 25]] = [1.0, 2.0, 0.0]
    proba = np.full((len(y), 3), 0.1)
    proba[np.arange(len(y)), pred.astype(int)] = 0.8
    return t.append_column("prediction", pa.array(pred)).append_column("raw_prediction", from_numpy(proba)) \
        .append_column("weight", pa.array(np.linspace(0.5, 1.5, len(y))))


@functools.lru_cache(maxsize=None)
def regression_scored() -> pa.Table:
    t = diabetes()
    y = t.column("label").to_numpy()
    return t.append_column("prediction", pa.array(y + np.sin(np.arange(len(y))) * 20.0))


@functools.lru_cache(maxsize=None)
def clustered_iris() -> pa.Table:
    t = iris()
    return t.append_column("prediction", pa.array(t.column("label").to_numpy().astype(np.int32)))


def _cv():
    lr = fl.regression.LinearRegression(max_iter=20)
    return CrossValidator(estimator=lr, estimator_param_maps=[{"reg": 0.0}, {"reg": 0.5}],
                          evaluator=RegressionEvaluator(metrics_names=["rmse"]), num_folds=2, seed=3)


def _tvs():
    lr = fl.classification.LogisticRegression(max_iter=30)
    return TrainValidationSplit(estimator=lr, estimator_param_maps=[{"reg": 0.01}, {"reg": 1.0}],
                                evaluator=MulticlassClassificationEvaluator(metrics_names=["logLoss"]), seed=5)


CASES = {
    "ANOVATest": lambda: (ANOVATest(), iris()),
    "ANOVATest/flatten": lambda: (ANOVATest(flatten=True), iris()),
    "ChiSqTest": lambda: (ChiSqTest(), discrete_iris()),
    "ChiSqTest/flatten": lambda: (ChiSqTest(flatten=True), discrete_iris()),
    "FValueTest": lambda: (FValueTest(), diabetes()),
    "FValueTest/flatten": lambda: (FValueTest(flatten=True), diabetes()),
    "MulticlassClassificationEvaluator": lambda: (MulticlassClassificationEvaluator(
        metrics_names=["f1", "accuracy", "logLoss", "precisionByLabel"], metric_label=1.0, weight_col="weight"),
        scored_iris()),
    "RegressionEvaluator": lambda: (RegressionEvaluator(metrics_names=["rmse", "r2", "var"]), regression_scored()),
    "ClusteringEvaluator": lambda: (ClusteringEvaluator(), clustered_iris()),
    "ClusteringEvaluator/cosine": lambda: (ClusteringEvaluator(distance_measure="cosine"), clustered_iris()),
    "CrossValidator": lambda: (_cv(), diabetes()),
    "CrossValidatorModel": lambda: (_cv().fit(diabetes()), diabetes()),
    "TrainValidationSplit": lambda: (_tvs(), iris()),
    "TrainValidationSplitModel": lambda: (_tvs().fit(iris()), iris()),
}
