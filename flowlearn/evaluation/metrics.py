"""Vectorized metric functions shared by the batch evaluators and the streaming evaluation.

Binary metrics take labels in {0, 1} and positive-class scores; ties in the score are
grouped, as Flink ML's and Alink's evaluators do.

Example:
    >>> import numpy as np
    >>> round(binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
    0.75
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "Evaluator",
    "binary_auc",
    "binary_ks",
    "log_loss",
    "binary_threshold_metrics",
    "multiclass_metrics",
    "regression_metrics",
    "BINARY_METRICS",
    "MULTICLASS_METRICS",
    "REGRESSION_METRICS",
]

class Evaluator:
    """Mix-in of the batch evaluators: ``evaluate(table) -> {metric: float}``, plain Python numbers,
    besides ``transform(table)``, Flink ML's one-row table of metrics (one double column each).

    Example:
        >>> import flowlearn as fl
        >>> ev = fl.evaluation.BinaryClassificationEvaluator(raw_prediction_col="score")
        >>> ev.evaluate({"label": [0, 0, 1, 1], "score": [0.1, 0.4, 0.35, 0.8]})
        {'areaUnderROC': 0.75, 'areaUnderPR': 0.7916666666666666}
    """

    def evaluate(self, table) -> dict[str, float]:
        """The metrics of ``table`` as ``{name: float}``, in the order of the output columns."""
        out = self.transform(table)
        if getattr(out, "_flowlearn_stream", False):
            raise TypeError(f"{type(self).__name__}.evaluate takes a table; for a stream use "
                            f"fl.evaluation.StreamingEvaluator, or transform(stream) for one table per input")
        return {name: float(out.column(name)[0].as_py()) for name in out.column_names}


BINARY_METRICS = ("auc", "log_loss", "accuracy", "precision", "recall", "f1", "ks")
MULTICLASS_METRICS = ("accuracy", "macro_f1", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")

_EPS = 1e-15


def _roc_points(y: np.ndarray, s: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (false positive, true positive) weights at each distinct score, descending."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    w = np.ones_like(s) if w is None else w[order]
    tp = np.cumsum(w * y)
    fp = np.cumsum(w * (1 - y))
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    return np.r_[0.0, fp[last_of_group]], np.r_[0.0, tp[last_of_group]]


def binary_auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve (trapezoids over tied-score groups); NaN if one class is absent."""
    if len(y) == 0:
        return float("nan")
    fp, tp = _roc_points(y.astype(np.float64), score.astype(np.float64), weight)
    if fp[-1] == 0 or tp[-1] == 0:
        return float("nan")
    x, h = fp / fp[-1], tp / tp[-1]
    return float(np.sum(np.diff(x) * (h[1:] + h[:-1])) / 2.0)


def binary_ks(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Kolmogorov-Smirnov statistic: max(TPR - FPR) over thresholds."""
    if len(y) == 0:
        return float("nan")
    fp, tp = _roc_points(y.astype(np.float64), score.astype(np.float64), weight)
    if fp[-1] == 0 or tp[-1] == 0:
        return float("nan")
    return float(np.max(tp / tp[-1] - fp / fp[-1]))


def log_loss(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Mean log loss. ``p`` is the positive probability (1-D) or class probabilities (2-D)."""
    if len(y) == 0:
        return float("nan")
    if p.ndim == 2:
        py = p[np.arange(len(y)), y.astype(np.int64)]
    else:
        py = np.where(y > 0.5, p, 1.0 - p)
    losses = -np.log(np.clip(py, _EPS, 1.0))
    return float(np.average(losses, weights=weight))


def binary_threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of predicting 1 when ``p >= threshold``."""
    if len(y) == 0:
        return {k: float("nan") for k in ("accuracy", "precision", "recall", "f1")}
    pred = p >= threshold
    pos = y > 0.5
    tp = float(np.sum(pred & pos))
    fp = float(np.sum(pred & ~pos))
    fn = float(np.sum(~pred & pos))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float(np.mean(pred == pos)), "precision": precision, "recall": recall, "f1": f1}


def multiclass_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-averaged F1 and log loss of class-probability rows."""
    if len(y) == 0:
        return {k: float("nan") for k in MULTICLASS_METRICS}
    yi = y.astype(np.int64)
    k = proba.shape[1]
    pred = np.argmax(proba, axis=1)
    conf = np.bincount(yi * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(conf).astype(float)
    prec = np.divide(tp, conf.sum(0), out=np.zeros(k), where=conf.sum(0) > 0)
    rec = np.divide(tp, conf.sum(1), out=np.zeros(k), where=conf.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=prec + rec > 0)
    present = (conf.sum(1) > 0) | (conf.sum(0) > 0)  # labels seen in truth or prediction, as sklearn
    return {"accuracy": float(np.mean(pred == yi)), "macro_f1": float(f1[present].mean()),
            "log_loss": log_loss(y, proba)}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R2."""
    if len(y) == 0:
        return {k: float("nan") for k in REGRESSION_METRICS}
    err = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "r2": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else float("nan")}
