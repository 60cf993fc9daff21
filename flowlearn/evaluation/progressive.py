"""Progressive validation ("test then train") of online estimators, as River's
``evaluate.progressive_val_score``.

Every row is predicted by the model *before* the model learns from it, so the metrics are an
honest estimate of the online model's performance on unseen data. With
``global_batch_size=1`` that is per row; with mini-batches a row is predicted by the model as it
was when the row's mini-batch started (the model does not change inside a mini-batch). The
prediction and the update run in one fused Numba kernel (the estimator's trainer), so this
evaluates at training speed.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
    >>> from flowlearn.evaluation.progressive import progressive_validation
    >>> t = fl.table({"features": [[1.0], [-1.0]] * 200, "label": [1.0, 0.0] * 200})
    >>> res = progressive_validation(OnlineLogisticRegression(global_batch_size=1), t)
    >>> sorted(res), res["accuracy"] > 0.99
    (['accuracy', 'auc', 'log_loss'], True)
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.api import _is_stream
from flowlearn.data.columns import numeric_column
from flowlearn.data.table import is_table_like
from flowlearn.data.table import table as to_table

__all__ = ["progressive_validation", "PROGRESSIVE_METRICS"]

PROGRESSIVE_METRICS = ("log_loss", "auc", "accuracy")
_EPS = 1e-15  # probabilities are clamped to [eps, 1 - eps] in log loss, as River and scikit-learn do


def _tables(data: Any, batch_size: int | None) -> Iterator[pa.Table]:
    if _is_stream(data):
        items: Iterable[Any] = data.iter_batches() if hasattr(data, "iter_batches") else iter(data)
    elif isinstance(data, (pa.Table, pa.RecordBatch)) or is_table_like(data):
        items = [data]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        items = data
    else:
        raise TypeError(f"progressive_validation: expected a table, a record batch, a bounded stream or an iterable "
                        f"of tables; got {type(data).__name__}")
    for item in items:
        t = pa.Table.from_batches([item]) if isinstance(item, pa.RecordBatch) else (
            item if isinstance(item, pa.Table) else to_table(item))
        if batch_size is None or t.num_rows <= batch_size:
            yield t
        else:
            for start in range(0, t.num_rows, batch_size):
                yield t.slice(start, batch_size)


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """Exact ROC AUC: the probability that a random positive scores above a random negative,
    ties counting one half (Mann-Whitney U); NaN with a single class."""
    pos = y == 1.0
    a, b = np.sort(p[pos]), np.sort(p[~pos])
    if len(a) == 0 or len(b) == 0:
        return math.nan
    below = np.searchsorted(b, a, side="left")  # negatives strictly below each positive
    tied = np.searchsorted(b, a, side="right") - below
    return (float(below.sum()) + 0.5 * float(tied.sum())) / (len(a) * len(b))


def progressive_validation(estimator: Any, data: Any, metrics: Sequence[str] = PROGRESSIVE_METRICS,
                           batch_size: int | None = None) -> dict[str, float]:
    """Evaluate an online estimator by predicting each row before learning from it.

    Args:
        estimator: an online estimator with a ``trainer()`` (``OnlineLogisticRegression``);
            its parameters and initial model data are used, the estimator is not changed.
        data: a table (or anything ``fl.table`` accepts), a record batch, an iterable of them,
            or a bounded stream, in arrival order.
        metrics: any of ``"log_loss"`` (mean, probabilities clamped to [1e-15, 1 - 1e-15]),
            ``"auc"`` (exact ROC AUC), ``"accuracy"`` (class 1 when p >= 0.5).
        batch_size: cut the input into chunks of at most this many rows (bounds memory); the
            result does not depend on it.

    Returns:
        ``{metric: value}`` in the order asked. Rows are unweighted, as in River.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in PROGRESSIVE_METRICS]
    if unknown or not metrics:
        raise ValueError(f"progressive_validation: unknown metric(s) {unknown}; choose from {list(PROGRESSIVE_METRICS)}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(f"progressive_validation: batch_size = {batch_size!r} must be a positive int or None")
    if not hasattr(estimator, "trainer"):
        raise TypeError(f"progressive_validation needs an online estimator with a trainer() "
                        f"(e.g. OnlineLogisticRegression); got {type(estimator).__name__}")
    stage = type(estimator).__name__
    label_col = estimator.label_col
    trainer = estimator.trainer()
    want_auc = "auc" in metrics
    n = 0
    loss_sum = 0.0
    correct = 0
    ps: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for t in _tables(data, batch_size):
        if t.num_rows == 0:
            continue
        p, _ = trainer.predict_and_partial_fit(t)
        y = numeric_column(t, label_col, stage, param="label_col")
        pc = np.clip(p, _EPS, 1.0 - _EPS)
        loss_sum += float(-(np.log(pc[y == 1.0]).sum() + np.log1p(-pc[y != 1.0]).sum()))
        correct += int(((p >= 0.5) == (y == 1.0)).sum())
        n += len(p)
        if want_auc:
            ps.append(p)
            ys.append(y)
    if n == 0:
        raise ValueError(f"progressive_validation: the input has no rows; {stage} needs at least one row")
    out: dict[str, float] = {}
    for m in metrics:
        if m == "log_loss":
            out[m] = loss_sum / n
        elif m == "accuracy":
            out[m] = correct / n
        else:
            out[m] = _auc(np.concatenate(ps), np.concatenate(ys))
    return out
