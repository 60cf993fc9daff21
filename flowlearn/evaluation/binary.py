"""Binary classification metrics as in Flink ML 2.x: ``BinaryClassificationEvaluator``.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"label": [1.0, 0.0, 1.0, 0.0],
    ...               "raw_prediction": [[0.1, 0.9], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]})
    >>> r = fl.evaluation.BinaryClassificationEvaluator().transform(t)
    >>> r.column_names, r.column("areaUnderROC").to_pylist()
    (['areaUnderROC', 'areaUnderPR'], [0.75])
"""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import AlgoOperator
from flowlearn.data.columns import check_finite, numeric_column, require_column, vector_column
from flowlearn.evaluation.metrics import Evaluator
from flowlearn.linalg import is_vector_type
from flowlearn.params import HasLabelCol, HasRawPredictionCol, HasWeightCol, Param, in_array

__all__ = ["BinaryClassificationEvaluator", "binary_metrics", "METRICS_NAMES"]

_log = logging.getLogger(__name__)

METRICS_NAMES = ["areaUnderROC", "areaUnderPR", "ks", "areaUnderLorenz"]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


class BinaryClassificationEvaluator(HasLabelCol, HasRawPredictionCol, HasWeightCol, Evaluator, AlgoOperator):
    """Metrics of a binary classifier's scores (Flink ML ``BinaryClassificationEvaluator``).

    ``transform(table)`` returns a one-row table with one double column per name in
    ``metrics_names``, in that order; ``evaluate(table)`` returns them as ``{name: float}``. A row is positive when its label equals 1.0 (any other
    value is negative). Its score is ``raw_prediction_col`` itself when that is a numeric
    column, or element 1 of the vector when it is a vector column (``[p0, p1]``). Rows weigh
    ``weight_col`` (non-negative), or 1.

    Rows are sorted by descending score and rows with equal scores form one step; at each step
    ``TPR = TP/P``, ``FPR = FP/N``, ``precision = TP/(TP+FP)`` and the positive rate
    ``(TP+FP)/(P+N)``, with TP, FP, P, N sums of weights. The curves start at TPR = FPR =
    positive rate = 0 and precision = 1 (TPR is 1 throughout when P = 0, FPR when N = 0, as in
    Flink ML), and the areas are trapezoid sums:

    * ``areaUnderROC``: area under (FPR, TPR); NaN without positives or without negatives.
      With unit weights this is Flink ML's rank (Mann-Whitney) formula with ties at their
      average rank; with weights it equals the weighted ROC area of scikit-learn.
    * ``areaUnderPR``: area under (recall = TPR, precision).
    * ``ks``: ``max |TPR - FPR|`` (Kolmogorov-Smirnov).
    * ``areaUnderLorenz``: area under (positive rate, TPR).

    Flink ML computes the last three per row (ties not grouped, weights ignored); grouping
    ties makes the result independent of the order of equal scores.

    Example:
        >>> import flowlearn as fl
        >>> ev = fl.evaluation.BinaryClassificationEvaluator(raw_prediction_col="score",
        ...                                                  metrics_names=["ks", "areaUnderLorenz"])
        >>> ev.transform({"label": [0, 0, 1, 1], "score": [0.1, 0.4, 0.35, 0.8]}).to_pylist()
        [{'ks': 0.5, 'areaUnderLorenz': 0.625}]
    """

    metrics_names = Param(list[str], default=["areaUnderROC", "areaUnderPR"], validator=in_array(METRICS_NAMES),
                          doc="Names of the output metrics, a non-empty subset of "
                              "['areaUnderROC', 'areaUnderPR', 'ks', 'areaUnderLorenz'].")

    def _scores(self, t: pa.Table) -> np.ndarray:
        stage = type(self).__name__
        col = require_column(t, self.raw_prediction_col, stage, "raw_prediction_col")
        if not is_vector_type(col.type):
            return numeric_column(t, self.raw_prediction_col, stage, param="raw_prediction_col")
        x = vector_column(t, self.raw_prediction_col, stage, param="raw_prediction_col", finite=False)
        if x.shape[0] and x.shape[1] < 2:
            raise ValueError(f"{stage}: column '{self.raw_prediction_col}' (parameter 'raw_prediction_col') holds "
                             f"vectors of size {x.shape[1]}; a vector raw prediction needs at least 2 elements "
                             f"(element 1 is the score of the positive class)")
        s = np.asarray(x[:, 1].toarray()).reshape(-1) if sps.issparse(x) else np.ascontiguousarray(x[:, 1])
        check_finite(s, self.raw_prediction_col, stage)
        return s

    def output_schema(self, input_schema, *other_schemas) -> pa.Schema:
        """One double column per name in ``metrics_names``, after checking the input columns."""
        from flowlearn.api import SchemaError, _as_schema

        stage = type(self).__name__
        schema = _as_schema(input_schema, stage)
        for col, param in ((self.label_col, "label_col"), (self.raw_prediction_col, "raw_prediction_col"),
                           (self.weight_col, "weight_col")):
            if col is None:
                continue
            if col not in schema.names:
                raise SchemaError(f"{stage}: input column '{col}' (parameter '{param}') is missing; the input has "
                                  f"columns {schema.names}")
            t = schema.field(col).type
            numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
            if not (numeric or (param == "raw_prediction_col" and is_vector_type(t))):
                raise SchemaError(f"{stage}: column '{col}' (parameter '{param}') has type {t}, expected "
                                  f"{'a number or a vector' if param == 'raw_prediction_col' else 'a number'}")
        return pa.schema([(name, pa.float64()) for name in self.metrics_names])

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        stage = type(self).__name__
        names = self.metrics_names
        if not names:
            raise ValueError(f"{stage}: parameter 'metrics_names' is empty; choose metrics from {METRICS_NAMES}")
        if len(set(names)) != len(names):
            raise ValueError(f"{stage}: parameter 'metrics_names' = {names} repeats a metric; "
                             f"each output column must have a distinct name")
        score = self._scores(t)
        label = numeric_column(t, self.label_col, stage, param="label_col")
        if self.weight_col is not None:
            w = numeric_column(t, self.weight_col, stage, param="weight_col")
            if (w < 0).any():
                row = int(np.flatnonzero(w < 0)[0])
                raise ValueError(f"{stage}: column '{self.weight_col}' (parameter 'weight_col') has the negative "
                                 f"weight {float(w[row])!r} at row {row}; weights must be >= 0")
        else:
            w = None
        if t.num_rows == 0:
            raise ValueError(f"{stage}: needs at least one row to evaluate; the input table is empty")
        values = binary_metrics(score, label == 1.0, w)
        return pa.table({name: pa.array([values[name]], pa.float64()) for name in names})


def binary_metrics(score: np.ndarray, positive: np.ndarray, weight: np.ndarray | None = None) -> dict[str, float]:
    """The four metrics of :class:`BinaryClassificationEvaluator` from arrays (sort + cumsum).

    Example:
        >>> import numpy as np
        >>> m = binary_metrics(np.array([0.9, 0.8, 0.3]), np.array([True, False, True]))
        >>> round(m["areaUnderROC"], 4), round(m["ks"], 4)
        (0.5, 0.5)
    """
    order = np.argsort(-score, kind="stable")
    s = score[order]
    pos = positive[order]
    w = np.ones(len(s)) if weight is None else np.asarray(weight, dtype=np.float64)[order]
    wp = np.where(pos, w, 0.0)
    # last index of each run of equal scores
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.r_[0.0, np.cumsum(wp)[ends]]
    fp = np.r_[0.0, np.cumsum(w - wp)[ends]]
    p, n = tp[-1], fp[-1]
    if p == 0:
        _log.warning("BinaryClassificationEvaluator: there is no positive sample in the data")
    if n == 0:
        _log.warning("BinaryClassificationEvaluator: there is no negative sample in the data")
    tpr = tp / p if p > 0 else np.ones_like(tp)
    fpr = fp / n if n > 0 else np.ones_like(fp)
    predicted = tp + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 1.0)
    precision[0] = 1.0
    total = p + n
    rate = predicted / total if total > 0 else np.zeros_like(predicted)
    return {
        "areaUnderROC": _trapezoid(fpr, tpr) if p > 0 and n > 0 else float("nan"),
        "areaUnderPR": _trapezoid(tpr, precision),
        "ks": float(np.max(np.abs(tpr[1:] - fpr[1:]))),  # over the steps, as Flink ML
        "areaUnderLorenz": _trapezoid(rate, tpr),
    }
