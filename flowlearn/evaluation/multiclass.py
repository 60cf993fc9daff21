"""Multiclass classification metrics with Spark MLlib's names: ``MulticlassClassificationEvaluator``.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.evaluation.multiclass import MulticlassClassificationEvaluator
    >>> t = {"label": [0.0, 1.0, 2.0, 2.0], "prediction": [0.0, 2.0, 2.0, 2.0]}
    >>> ev = MulticlassClassificationEvaluator(metrics_names=["accuracy", "hammingLoss"])
    >>> ev.evaluate(t)
    {'accuracy': 0.75, 'hammingLoss': 0.25}
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.api import AlgoOperator, SchemaError
from flowlearn.data.columns import numeric_column, require_column, vector_column
from flowlearn.data.table import table as to_table
from flowlearn.evaluation.metrics import Evaluator
from flowlearn.linalg import is_vector_type
from flowlearn.params import (HasLabelCol, HasPredictionCol, HasRawPredictionCol, HasWeightCol, Param, gt, gt_eq,
                              in_array, in_range)

__all__ = ["MulticlassClassificationEvaluator", "multiclass_evaluator_metrics", "MULTICLASS_METRICS_NAMES"]

MULTICLASS_METRICS_NAMES = [
    "f1", "accuracy", "weightedPrecision", "weightedRecall", "weightedTruePositiveRate",
    "weightedFalsePositiveRate", "weightedFMeasure", "truePositiveRateByLabel", "falsePositiveRateByLabel",
    "precisionByLabel", "recallByLabel", "fMeasureByLabel", "logLoss", "hammingLoss",
]
_SMALLER_BETTER = {"weightedFalsePositiveRate", "falsePositiveRateByLabel", "logLoss", "hammingLoss"}


class _MetricsEvaluator(Evaluator, AlgoOperator):
    """Shared frame of the multiclass, regression and clustering evaluators: ``metrics_names``
    chooses the output columns, ``transform`` returns them as a one-row table, ``evaluate`` as a
    dict of floats computed from arrays (no table in between), ``is_larger_better`` the direction
    of each metric (subclasses implement ``_metrics(table, names) -> dict``)."""

    _ALL: list[str] = []
    _SMALLER: set[str] = set()

    def _names(self) -> list[str]:
        stage = type(self).__name__
        names = self.metrics_names
        if not names:
            raise ValueError(f"{stage}: parameter 'metrics_names' is empty; choose metrics from {self._ALL}")
        if len(set(names)) != len(names):
            raise ValueError(f"{stage}: parameter 'metrics_names' = {names} repeats a metric; "
                             f"each output column must have a distinct name")
        return names

    def evaluate(self, table: Any) -> dict[str, float]:
        """The metrics of ``metrics_names`` on ``table``, in that order, as plain floats."""
        if getattr(table, "_flowlearn_stream", False):
            raise TypeError(f"{type(self).__name__}.evaluate takes a table; for a stream use "
                            f"fl.evaluation.StreamingEvaluator, or transform(stream) for one table per input")
        t = table if isinstance(table, pa.Table) else to_table(table)
        names = self._names()
        values = self._metrics(t, names)
        return {n: float(values[n]) for n in names}

    def is_larger_better(self, metric: str | None = None) -> bool:
        """Whether a larger value of ``metric`` (default: the first of ``metrics_names``) is better,
        as Spark's ``Evaluator.isLargerBetter`` (model selection maximizes or minimizes by it)."""
        metric = self._names()[0] if metric is None else metric
        if metric not in self._ALL:
            raise ValueError(f"{type(self).__name__}: unknown metric {metric!r}; metrics are {self._ALL}")
        return metric not in self._SMALLER

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._check_schema(input_schema)
        return pa.schema([(n, pa.float64()) for n in self._names()])

    def _check_schema(self, schema: pa.Schema) -> None:
        stage = type(self).__name__
        for param, col in self._input_cols():
            if col not in schema.names:
                raise SchemaError(f"{stage}: input column '{col}' (parameter '{param}') is missing; the input has "
                                  f"columns {schema.names}")

    def _input_cols(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _transform(self, *tables: pa.Table) -> pa.Table:
        if len(tables) != 1:
            raise TypeError(f"{type(self).__name__}.transform takes exactly one input table, got {len(tables)}")
        values = self.evaluate(tables[0])
        return pa.table({n: pa.array([v], pa.float64()) for n, v in values.items()})

    def _metrics(self, t: pa.Table, names: list[str]) -> dict[str, float]:
        raise NotImplementedError

    def _weights(self, t: pa.Table) -> np.ndarray | None:
        if self.weight_col is None:
            return None
        stage = type(self).__name__
        w = numeric_column(t, self.weight_col, stage, param="weight_col")
        if (w < 0).any():
            row = int(np.flatnonzero(w < 0)[0])
            raise ValueError(f"{stage}: column '{self.weight_col}' (parameter 'weight_col') has the negative weight "
                             f"{float(w[row])!r} at row {row}; weights must be >= 0")
        return w

    def _require_rows(self, t: pa.Table, w: np.ndarray | None) -> None:
        stage = type(self).__name__
        if t.num_rows == 0:
            raise ValueError(f"{stage}: needs at least one row to evaluate; the input table is empty")
        if w is not None and not w.sum() > 0:
            raise ValueError(f"{stage}: the weights in column '{self.weight_col}' (parameter 'weight_col') sum to 0; "
                             f"at least one row must have a positive weight")


class MulticlassClassificationEvaluator(HasLabelCol, HasPredictionCol, HasRawPredictionCol, HasWeightCol,
                                        _MetricsEvaluator):
    """Metrics of a multiclass classifier's predictions, as Spark MLlib's
    ``MulticlassClassificationEvaluator`` (and its ``MulticlassMetrics``).

    ``transform(table)`` returns a one-row table with one double column per name in
    ``metrics_names``; ``evaluate(table)`` returns the same values as a dict. Rows weigh
    ``weight_col`` (non-negative), or 1. With ``w(l)`` the weight of rows labelled ``l``,
    ``tp(l)`` of those predicted ``l`` and ``fp(l)`` of rows predicted ``l`` with another label:

    * ``precision(l) = tp/(tp + fp)``, ``recall(l) = truePositiveRate(l) = tp/w(l)``,
      ``falsePositiveRate(l) = fp/(W - w(l))``, ``fMeasure(l) = (1 + b^2) p r / (b^2 p + r)``
      (each 0 where its denominator is 0), ``b = beta``;
    * ``weightedX`` averages ``X(l)`` over the labels weighted by ``w(l) / W`` (labels seen only
      as predictions weigh 0); ``f1`` is ``weightedFMeasure`` with ``b = 1`` (scikit-learn's
      ``f1_score(average="weighted")``);
    * ``XByLabel`` is ``X(metric_label)``;
    * ``accuracy`` = weight of correct rows / W, ``hammingLoss`` = 1 - accuracy;
    * ``logLoss`` = weighted mean of ``-log(max(p[label], eps))`` with ``p`` the probability
      vector in ``raw_prediction_col`` indexed by the label (labels must be 0, 1, ..., k-1).

    ``is_larger_better(metric)`` is False for ``weightedFalsePositiveRate``,
    ``falsePositiveRateByLabel``, ``logLoss`` and ``hammingLoss``, as in Spark.

    Example:
        >>> from flowlearn.evaluation.multiclass import MulticlassClassificationEvaluator
        >>> t = {"label": [0.0, 0.0, 1.0, 1.0], "prediction": [0.0, 1.0, 1.0, 1.0],
        ...      "raw_prediction": [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]]}
        >>> ev = MulticlassClassificationEvaluator(metrics_names=["precisionByLabel", "logLoss"], metric_label=1.0)
        >>> {k: round(v, 4) for k, v in ev.evaluate(t).items()}
        {'precisionByLabel': 0.6667, 'logLoss': 0.4004}
        >>> ev.transform(t).column_names, ev.is_larger_better("logLoss")
        (['precisionByLabel', 'logLoss'], False)
    """

    _ALL = MULTICLASS_METRICS_NAMES
    _SMALLER = _SMALLER_BETTER

    metrics_names = Param(list[str], default=["f1"], validator=in_array(MULTICLASS_METRICS_NAMES),
                          doc=f"Names of the output metrics, a non-empty subset of {MULTICLASS_METRICS_NAMES}.")
    metric_label = Param(float, default=0.0, validator=gt_eq(0),
                         doc="The class whose metric the '...ByLabel' metrics report (a label value, >= 0).")
    beta = Param(float, default=1.0, validator=gt(0),
                 doc="The beta of the F-measure in 'weightedFMeasure' and 'fMeasureByLabel' (> 0).")
    eps = Param(float, default=1e-15, validator=in_range(0, 0.5, lo_inclusive=False, hi_inclusive=False),
                doc="Probabilities are clipped to at least eps in 'logLoss' (0 < eps < 0.5).")

    def _input_cols(self) -> list[tuple[str, str]]:
        cols = [("label_col", self.label_col)]
        names = self._names()
        if any(n != "logLoss" for n in names):
            cols.append(("prediction_col", self.prediction_col))
        if "logLoss" in names:
            cols.append(("raw_prediction_col", self.raw_prediction_col))
        if self.weight_col is not None:
            cols.append(("weight_col", self.weight_col))
        return cols

    def _metrics(self, t: pa.Table, names: list[str]) -> dict[str, float]:
        stage = type(self).__name__
        self._check_schema(t.schema)
        label = numeric_column(t, self.label_col, stage, param="label_col")
        w = self._weights(t)
        need_pred = any(n != "logLoss" for n in names)
        pred = numeric_column(t, self.prediction_col, stage, param="prediction_col") if need_pred else None
        proba = self._probabilities(t, label) if "logLoss" in names else None
        self._require_rows(t, w)
        return multiclass_evaluator_metrics(label, pred, w, names, metric_label=self.metric_label, beta=self.beta,
                                            eps=self.eps, probability=proba)

    def _probabilities(self, t: pa.Table, label: np.ndarray) -> np.ndarray:
        stage = type(self).__name__
        col = require_column(t, self.raw_prediction_col, stage, "raw_prediction_col")
        if not is_vector_type(col.type):
            raise TypeError(f"{stage}: column '{self.raw_prediction_col}' (parameter 'raw_prediction_col') has type "
                            f"{col.type}; 'logLoss' needs a vector of class probabilities per row")
        p = vector_column(t, self.raw_prediction_col, stage, param="raw_prediction_col", dense=True)
        bad = (label != np.floor(label)) | (label < 0) | (label >= p.shape[1])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{stage}: column '{self.label_col}' (parameter 'label_col') holds {float(label[row])!r} "
                             f"at row {row}; 'logLoss' reads the label as an index into the {p.shape[1]} probabilities "
                             f"of '{self.raw_prediction_col}', so labels must be integers in [0, {p.shape[1] - 1}]")
        return p


def _class_codes(label: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classes seen in either array (sorted) and each array's index into them. Class indices
    (small non-negative integers, the usual case) are counted in O(n); anything else is sorted."""
    lo = min(label.min(), prediction.min())
    hi = max(label.max(), prediction.max())
    if lo >= 0 and hi < 1 << 20:
        li, pi = label.astype(np.int64), prediction.astype(np.int64)
        if (li == label).all() and (pi == prediction).all():
            seen = np.bincount(li, minlength=int(hi) + 1) + np.bincount(pi, minlength=int(hi) + 1)
            present = np.flatnonzero(seen)
            index = np.zeros(int(hi) + 1, dtype=np.int64)
            index[present] = np.arange(len(present))
            return present.astype(np.float64), index[li], index[pi]
    classes, codes = np.unique(np.concatenate([label, prediction]), return_inverse=True)
    codes = codes.ravel()
    return classes, codes[:len(label)], codes[len(label):]


def multiclass_evaluator_metrics(label: np.ndarray, prediction: np.ndarray | None,
                                 weight: np.ndarray | None = None, names: list[str] | None = None,
                                 metric_label: float = 0.0, beta: float = 1.0, eps: float = 1e-15,
                                 probability: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of :class:`MulticlassClassificationEvaluator` from arrays (one weighted
    confusion matrix over the labels seen in either array).

    Example:
        >>> import numpy as np
        >>> m = multiclass_evaluator_metrics(np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0]))
        >>> round(m["accuracy"], 4), round(m["weightedRecall"], 4)
        (0.6667, 0.6667)
    """
    if names is None:  # every metric the arrays given allow
        names = [n for n in MULTICLASS_METRICS_NAMES if n != "logLoss" or probability is not None]
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    total = float(len(label)) if w is None else float(w.sum())
    out: dict[str, float] = {}
    if "logLoss" in names:
        if probability is None:
            raise ValueError("multiclass_evaluator_metrics: 'logLoss' needs the class probabilities")
        p = probability[np.arange(len(label)), label.astype(np.int64)]
        loss = -np.log(np.maximum(p, eps))
        out["logLoss"] = float((loss if w is None else w * loss).sum() / total)
    if all(n == "logLoss" for n in names):
        return out
    classes, li, pi = _class_codes(label, prediction)
    k = len(classes)
    conf = np.bincount(li * k + pi, weights=w, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(conf)
    per_label = conf.sum(axis=1)        # w(l)
    per_pred = conf.sum(axis=0)         # tp + fp
    fp = per_pred - tp

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    precision = ratio(tp, per_pred)
    recall = ratio(tp, per_label)
    fpr = ratio(fp, total - per_label)

    def f_measure(b: float) -> np.ndarray:
        b2 = b * b
        return ratio((1 + b2) * precision * recall, b2 * precision + recall)

    share = per_label / total
    at = np.searchsorted(classes, metric_label)
    has_label = at < k and classes[at] == metric_label

    def by_label(values: np.ndarray) -> float:
        return float(values[at]) if has_label else 0.0

    accuracy = float(tp.sum() / total)
    table = {
        "f1": lambda: float(share @ f_measure(1.0)),
        "accuracy": lambda: accuracy,
        "weightedPrecision": lambda: float(share @ precision),
        "weightedRecall": lambda: float(share @ recall),
        "weightedTruePositiveRate": lambda: float(share @ recall),
        "weightedFalsePositiveRate": lambda: float(share @ fpr),
        "weightedFMeasure": lambda: float(share @ f_measure(beta)),
        "truePositiveRateByLabel": lambda: by_label(recall),
        "falsePositiveRateByLabel": lambda: by_label(fpr),
        "precisionByLabel": lambda: by_label(precision),
        "recallByLabel": lambda: by_label(recall),
        "fMeasureByLabel": lambda: by_label(f_measure(beta)),
        "hammingLoss": lambda: float((total - tp.sum()) / total),
    }
    for n in names:
        if n != "logLoss":
            out[n] = table[n]()
    return out
