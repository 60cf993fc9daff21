"""RegressionEvaluator (Spark MLlib's rmse / mse / r2 / mae / var).

Oracles: scikit-learn's mean_squared_error, root of it, mean_absolute_error and r2_score with
sample weights on the diabetes data scored by a scikit-learn least-squares fit; Spark's ``var``
(explained variance = weighted mean of (prediction - label mean)^2) is not scikit-learn's
explained_variance_score (a ratio), but for least squares with an intercept scored on its own
training data it equals ``explained_variance_score * Var(y)`` (weighted alike), which is the
oracle used; Spark's RegressionMetricsSuite vector for an unbiased predictor.
"""
from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression as SkLinearRegression
from sklearn.metrics import explained_variance_score, mean_absolute_error, mean_squared_error, r2_score

import flowlearn as fl
from flowlearn.evaluation import regression as reg_module
from flowlearn.evaluation.regression import REGRESSION_METRICS_NAMES, RegressionEvaluator

ALL = REGRESSION_METRICS_NAMES


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    w = np.random.default_rng(1).uniform(0.2, 4.0, len(y))
    return x, y, w


@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_match_sklearn(diabetes, weighted):
    x, y, w = diabetes
    w = w if weighted else None
    p = SkLinearRegression().fit(x, y, sample_weight=w).predict(x)
    t = fl.table({"label": y, "prediction": p, **({"w": w} if weighted else {})})
    got = RegressionEvaluator(metrics_names=ALL, weight_col="w" if weighted else None).evaluate(t)
    var_y = np.average((y - np.average(y, weights=w)) ** 2, weights=w)
    assert got["mse"] == pytest.approx(mean_squared_error(y, p, sample_weight=w), rel=1e-12)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p, sample_weight=w)), rel=1e-12)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, p, sample_weight=w), rel=1e-12)
    assert got["r2"] == pytest.approx(r2_score(y, p, sample_weight=w), rel=1e-12)
    assert got["var"] == pytest.approx(explained_variance_score(y, p, sample_weight=w) * var_y, rel=1e-9)


def test_var_is_not_sklearn_explained_variance(diabetes):
    x, y, _ = diabetes
    p = SkLinearRegression().fit(x[::2], y[::2]).predict(x[1::2])       # held-out: the identity above fails
    got = RegressionEvaluator(metrics_names=["var"]).evaluate({"label": y[1::2], "prediction": p})["var"]
    assert got == pytest.approx(np.mean((p - y[1::2].mean()) ** 2))
    assert got != pytest.approx(explained_variance_score(y[1::2], p) * np.var(y[1::2]), rel=1e-3)


def test_spark_regression_metrics_suite_unbiased_predictor():
    # Spark RegressionMetricsSuite "regression metrics for unbiased (includes intercept term) predictor"
    t = {"prediction": [2.25, -0.25, 1.75, 7.75], "label": [3.0, -0.5, 2.0, 7.0]}
    got = RegressionEvaluator(metrics_names=["var", "mae", "mse", "rmse", "r2"]).evaluate(t)
    expected = {"var": 8.79687, "mae": 0.5, "mse": 0.3125, "rmse": 0.55901, "r2": 0.95717}
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-5), k


def test_through_origin_r2(diabetes):
    x, y, _ = diabetes
    p = SkLinearRegression(fit_intercept=False).fit(x, y).predict(x)
    got = RegressionEvaluator(metrics_names=["r2"], through_origin=True).evaluate({"label": y, "prediction": p})
    assert got["r2"] == pytest.approx(1.0 - np.sum((y - p) ** 2) / np.sum(y ** 2))


def test_transform_and_is_larger_better():
    ev = RegressionEvaluator(metrics_names=["r2", "rmse"])
    t = fl.table({"label": [1.0, 2.0, 4.0], "prediction": [1.0, 3.0, 3.0]})
    out = ev.transform(t)
    assert out.column_names == ["r2", "rmse"] and out.num_rows == 1
    assert out.schema == ev.output_schema(t.schema)
    assert [m for m in ALL if ev.is_larger_better(m)] == ["r2", "var"]
    assert ev.is_larger_better() is True and RegressionEvaluator().is_larger_better() is False


def test_integer_columns_and_save_load(tmp_path):
    ev = RegressionEvaluator(metrics_names=["mae"], label_col="y", prediction_col="p", through_origin=True)
    assert ev.evaluate({"y": [1, 2, 3], "p": [1, 2, 5]}) == {"mae": pytest.approx(2 / 3)}
    ev.save(str(tmp_path / "r"))
    assert fl.load(str(tmp_path / "r")).get_params() == ev.get_params()


def test_bad_input_is_named():
    ev = RegressionEvaluator()
    with pytest.raises(ValueError, match="RegressionEvaluator: parameter 'metrics_names'.*in_array"):
        RegressionEvaluator(metrics_names=["mape"])
    with pytest.raises(ValueError, match="input column 'prediction' \\(parameter 'prediction_col'\\) is missing"):
        ev.evaluate({"label": [1.0]})
    with pytest.raises(ValueError, match="column 'prediction' has NaN or infinity at row 1"):
        ev.evaluate({"label": [1.0, 2.0], "prediction": [1.0, float("nan")]})
    with pytest.raises(TypeError, match="column 'label' has type string, expected a numeric column"):
        ev.evaluate({"label": ["a"], "prediction": [1.0]})
    with pytest.raises(ValueError, match="needs at least one row"):
        ev.evaluate(pa.table({"label": pa.array([], pa.float64()), "prediction": pa.array([], pa.float64())}))
    with pytest.raises(ValueError, match="weights in column 'w' \\(parameter 'weight_col'\\) sum to 0"):
        RegressionEvaluator(weight_col="w").evaluate({"label": [1.0], "prediction": [1.0], "w": [0.0]})


def test_doctests():
    assert doctest.testmod(reg_module).failed == 0
