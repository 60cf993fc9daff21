"""Regression metrics with Spark MLlib's names: ``RegressionEvaluator``.

Example:
    >>> from flowlearn.evaluation.regression import RegressionEvaluator
    >>> ev = RegressionEvaluator(metrics_names=["mse", "mae"])
    >>> ev.evaluate({"label": [1.0, 2.0, 3.0], "prediction": [1.0, 2.0, 5.0]})
    {'mse': 1.3333333333333333, 'mae': 0.6666666666666666}
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from flowlearn.data.columns import numeric_column
from flowlearn.evaluation.multiclass import _MetricsEvaluator
from flowlearn.params import HasLabelCol, HasPredictionCol, HasWeightCol, Param, in_array

__all__ = ["RegressionEvaluator", "regression_evaluator_metrics", "REGRESSION_METRICS_NAMES"]

REGRESSION_METRICS_NAMES = ["rmse", "mse", "r2", "mae", "var"]


class RegressionEvaluator(HasLabelCol, HasPredictionCol, HasWeightCol, _MetricsEvaluator):
    """Metrics of a regressor's predictions, as Spark MLlib's ``RegressionEvaluator`` (and its
    ``RegressionMetrics``).

    ``transform(table)`` returns a one-row table with one double column per name in
    ``metrics_names``; ``evaluate(table)`` returns the same values as a dict. With weights
    ``w`` (``weight_col``, non-negative, or 1), ``W = sum(w)`` and the weighted label mean ``m``:

    * ``mse = sum(w (y - p)^2) / W``, ``rmse = sqrt(mse)``, ``mae = sum(w |y - p|) / W``;
    * ``r2 = 1 - sum(w (y - p)^2) / sum(w (y - m)^2)`` (with ``through_origin``: the denominator
      is ``sum(w y^2)``, for models without an intercept);
    * ``var = sum(w (p - m)^2) / W``, Spark's explained variance: the variance of the predictions
      around the label mean. It is not scikit-learn's ``explained_variance_score`` (a ratio); for
      least squares with an intercept scored on its training data, ``var`` equals
      ``explained_variance_score * Var(y)``.

    ``is_larger_better(metric)`` is True for ``r2`` and ``var``, False for the errors.

    Example:
        >>> from flowlearn.evaluation.regression import RegressionEvaluator
        >>> t = {"label": [1.0, 2.0, 3.0, 4.0], "prediction": [1.5, 2.0, 2.5, 4.5]}
        >>> {k: round(v, 4) for k, v in RegressionEvaluator(metrics_names=["rmse", "r2", "var"]).evaluate(t).items()}
        {'rmse': 0.433, 'r2': 0.85, 'var': 1.3125}
    """

    _ALL = REGRESSION_METRICS_NAMES
    _SMALLER = {"rmse", "mse", "mae"}

    metrics_names = Param(list[str], default=["rmse"], validator=in_array(REGRESSION_METRICS_NAMES),
                          doc=f"Names of the output metrics, a non-empty subset of {REGRESSION_METRICS_NAMES}.")
    through_origin = Param(bool, default=False,
                           doc="Whether 'r2' is measured around 0 (a model without intercept) instead of the "
                               "label mean.")

    def _input_cols(self) -> list[tuple[str, str]]:
        cols = [("label_col", self.label_col), ("prediction_col", self.prediction_col)]
        return cols + ([("weight_col", self.weight_col)] if self.weight_col is not None else [])

    def _metrics(self, t: pa.Table, names: list[str]) -> dict[str, float]:
        stage = type(self).__name__
        self._check_schema(t.schema)
        y = numeric_column(t, self.label_col, stage, param="label_col")
        p = numeric_column(t, self.prediction_col, stage, param="prediction_col")
        w = self._weights(t)
        self._require_rows(t, w)
        return regression_evaluator_metrics(y, p, w, through_origin=self.through_origin, names=names)


def regression_evaluator_metrics(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None,
                                 through_origin: bool = False, names: list[str] | None = None) -> dict[str, float]:
    """The metrics ``names`` (default: all) of :class:`RegressionEvaluator` from arrays.

    Example:
        >>> import numpy as np
        >>> regression_evaluator_metrics(np.array([0.0, 2.0]), np.array([1.0, 1.0]))["r2"]
        0.0
    """
    names = REGRESSION_METRICS_NAMES if names is None else names
    w = None if weight is None else np.asarray(weight, dtype=np.float64)

    def wsum(v: np.ndarray) -> float:   # elementwise, not BLAS dot: no thread pool for a one-pass sum
        return float(v.sum() if w is None else (w * v).sum())

    total = float(len(y)) if w is None else float(w.sum())
    err = y - p
    out: dict[str, float] = {}
    if {"mse", "rmse", "r2"} & set(names):
        sse = wsum(err * err)
        out["mse"] = sse / total
        out["rmse"] = float(np.sqrt(sse / total))
    if {"r2", "var"} & set(names):
        mean = wsum(y) / total
    if "r2" in names:
        dev = y - mean
        ss_tot = wsum(y * y) if through_origin else wsum(dev * dev)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["r2"] = float(1.0 - np.float64(sse) / np.float64(ss_tot))
    if "mae" in names:
        out["mae"] = wsum(np.abs(err)) / total
    if "var" in names:
        reg = p - mean
        out["var"] = wsum(reg * reg) / total
    return {n: out[n] for n in names}
