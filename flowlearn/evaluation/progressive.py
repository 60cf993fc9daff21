"""Progressive validation ("test then train") of online estimators, as River's
``evaluate.progressive_val_score``.

Every row is predicted by the model *before* the model learns from it, so the metrics are an
honest estimate of the online model's performance on unseen data. With
``global_batch_size=1`` that is per row; with mini-batches a row is predicted by the model as it
was when the row's mini-batch started (the model does not change inside a mini-batch). The
prediction and the update run in one fused Numba kernel (the estimator's trainer), so this
evaluates at training speed.

What the metrics are computed on depends on what the trainer predicts, its *kind* (from the
trainer's ``kind``, the loss it trains); ``metrics=None`` computes the defaults (listed first):

* ``binary``: the probability of class 1 (``OnlineLogisticRegression``; ``OnlineLearning`` of a
  binary logistic model). ``log_loss``, ``auc``, ``accuracy``; also ``precision``, ``recall``, ``f1``.
* ``multiclass``: ``(n, k)`` class probabilities (``OnlineLearning`` of a softmax
  ``LogisticRegressionModel``; labels are class indices). ``log_loss``, ``accuracy``, ``macro_f1``.
* ``regression``: the value (``OnlineLearning`` of a ``LinearRegressionModel``). ``rmse``,
  ``mae``, ``r2``.
* ``margin``: the margin ``w . x + b`` (``OnlineLearning`` of a ``LinearSVCModel``). ``accuracy``,
  ``auc``; also ``precision``, ``recall``, ``f1``.

Definitions (the functions of :mod:`flowlearn.evaluation.metrics`): ``log_loss`` is the mean
negative log probability of the true class, probabilities clipped below at 1e-15;
``auc`` the exact ROC AUC (ties count one half); ``accuracy``, ``precision``, ``recall`` and
``f1`` predict class 1 when the probability is >= 0.5 (binary) or the margin is >= the linear
SVM's ``threshold`` (0 by default: the sign); multiclass predicts the most probable class (the
first on ties) and ``macro_f1`` is the unweighted mean F1 over the classes seen in the labels
or the predictions (scikit-learn's and River's ``MacroF1``); ``rmse``, ``mae`` and ``r2``
(``1 - SS_res / SS_tot``, NaN when the labels are constant) are the usual ones. A margin is not
a probability, so ``log_loss`` is refused for a linear SVM; ``auc`` only ranks, so it is fine.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
    >>> from flowlearn.evaluation.progressive import progressive_validation
    >>> t = fl.table({"features": [[1.0], [-1.0]] * 200, "label": [1.0, 0.0] * 200})
    >>> res = progressive_validation(OnlineLogisticRegression(global_batch_size=1), t)
    >>> sorted(res), res["accuracy"] > 0.99
    (['accuracy', 'auc', 'log_loss'], True)

    A regression: SGD from w = b = 0 with rate 0.5 predicts 0, then 2 (w = b = 1) for y = 2 at x = 1:

    >>> from flowlearn.classification.online_learning import OnlineLearning
    >>> from flowlearn.regression.linear_regression import LinearRegressionModel
    >>> start = LinearRegressionModel().set_model_data(
    ...     {"coefficient": [[0.0]], "intercept": [0.0], "model_version": [0]})
    >>> reg = OnlineLearning(fl.PipelineModel([start]), optim_method="sgd", learning_rate=0.5, global_batch_size=1)
    >>> res = progressive_validation(reg, {"features": [[1.0]] * 3, "label": [2.0] * 3})
    >>> list(res), round(res["mae"], 4)
    (['rmse', 'mae', 'r2'], 0.6667)
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.api import _is_stream
from flowlearn.data.columns import numeric_column
from flowlearn.data.table import is_table_like
from flowlearn.data.table import table as to_table
from flowlearn.evaluation import metrics as _m

__all__ = ["progressive_validation", "PROGRESSIVE_METRICS", "DEFAULT_METRICS"]

#: The metrics that fit each kind of prediction (``{kind: names}``; before OnlineLearning's kinds
#: were evaluated this was the tuple of binary metrics, now ``PROGRESSIVE_METRICS["binary"]``).
PROGRESSIVE_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("log_loss", "auc", "accuracy", "precision", "recall", "f1"),
    "multiclass": ("log_loss", "accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
    "margin": ("accuracy", "auc", "precision", "recall", "f1"),
}
#: The metrics computed when ``metrics=None``.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("log_loss", "auc", "accuracy"),
    "multiclass": ("log_loss", "accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
    "margin": ("accuracy", "auc"),
}
# trainer.kind (the loss it trains) -> what it predicts
_KIND_OF_LOSS = {"logistic": "binary", "multinomial": "multiclass", "squared": "regression", "hinge": "margin"}
_PREDICTS = {
    "binary": "the probability of class 1",
    "multiclass": "(n, k) class probabilities",
    "regression": "values",
    "margin": "linear SVM margins (w . x + b), not probabilities",
}
_THRESHOLD_METRICS = ("accuracy", "precision", "recall", "f1")


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


def _prediction_kind(trainer: Any, stage: str) -> str:
    """'binary', 'multiclass', 'regression' or 'margin': what ``predict_and_partial_fit`` returns.
    A trainer without a ``kind`` (``OnlineLogisticRegression``'s) predicts class-1 probabilities."""
    loss = getattr(trainer, "kind", "logistic")
    if loss not in _KIND_OF_LOSS:
        raise TypeError(f"progressive_validation: {stage}'s trainer has kind {loss!r}; it evaluates trainers of "
                        f"kind {sorted(_KIND_OF_LOSS)}")
    return _KIND_OF_LOSS[loss]


def _check_metrics(metrics: Sequence[str] | str | None, kind: str, stage: str) -> list[str]:
    if metrics is None:
        return list(DEFAULT_METRICS[kind])
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    valid = PROGRESSIVE_METRICS[kind]
    if not metrics:
        raise ValueError(f"progressive_validation: no metrics asked; for kind '{kind}' choose from {list(valid)} "
                         f"(or pass metrics=None for {list(DEFAULT_METRICS[kind])})")
    known = {m for names in PROGRESSIVE_METRICS.values() for m in names}
    for m in metrics:
        if m in valid:
            continue
        what = (f"metric {m!r} does not fit kind '{kind}'" if m in known else f"unknown metric {m!r} for kind '{kind}'")
        why = " (log_loss needs probabilities)" if kind == "margin" and m == "log_loss" else ""
        raise ValueError(f"progressive_validation: {what}: {stage} predicts {_PREDICTS[kind]}{why}; valid metrics "
                         f"for kind '{kind}': {list(valid)}")
    return metrics


def _margin_threshold(trainer: Any) -> float:
    """The linear SVM's own decision threshold (``LinearSVCModel.threshold``, 0 by default)."""
    pm = trainer.pipeline_model() if hasattr(trainer, "pipeline_model") else None
    last = pm.stages[-1] if pm is not None and getattr(pm, "stages", None) else None
    return float(getattr(last, "threshold", 0.0) or 0.0)


def _labels(t: pa.Table, label_col: str, trainer: Any, stage: str) -> np.ndarray:
    """The labels of ``t``; when the raw rows lack the label column, the trainer's feature stages
    (``OnlineLearning``'s) may make it (e.g. a ``StringIndexerModel``), so they are applied."""
    if label_col not in t.column_names:
        for s in getattr(trainer, "feature_stages", []):
            t = s.transform(t)
    return numeric_column(t, label_col, stage, param="label_col")


def progressive_validation(estimator: Any, data: Any, metrics: Sequence[str] | str | None = None,
                           batch_size: int | None = None) -> dict[str, float]:
    """Evaluate an online estimator by predicting each row before learning from it.

    Args:
        estimator: an online estimator whose ``trainer()`` has ``predict_and_partial_fit``
            (``OnlineLogisticRegression``, ``OnlineLearning``); its parameters and initial model
            are used, the estimator is not changed.
        data: a table (or anything ``fl.table`` accepts), a record batch, an iterable of them,
            or a bounded stream, in arrival order.
        metrics: names valid for what the trainer predicts (see the module docstring):
            binary ``log_loss``, ``auc``, ``accuracy``, ``precision``, ``recall``, ``f1``;
            multiclass ``log_loss``, ``accuracy``, ``macro_f1``; regression ``rmse``, ``mae``,
            ``r2``; linear SVM margins ``accuracy``, ``auc``, ``precision``, ``recall``, ``f1``.
            ``None`` (default) computes ``DEFAULT_METRICS`` of the kind. A name that does not
            fit the kind raises ``ValueError`` naming it, the kind and the valid names.
        batch_size: cut the input into chunks of at most this many rows (bounds the memory of
            the features); the result does not depend on it.

    Returns:
        ``{metric: value}`` in the order asked. Rows are unweighted, as in River. The
        predictions (one float a row, ``k`` for multiclass) and labels are kept to compute the
        metrics at the end.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(f"progressive_validation: batch_size = {batch_size!r} must be a positive int or None")
    stage = type(estimator).__name__
    if not hasattr(estimator, "trainer"):
        raise TypeError(f"progressive_validation needs an online estimator with a trainer() "
                        f"(e.g. OnlineLogisticRegression, OnlineLearning); got {stage}")
    trainer = estimator.trainer()
    if not getattr(trainer, "predicts", False):   # declared by flowlearn.trainer.Trainer subclasses
        raise TypeError(f"progressive_validation needs an online estimator with a trainer() that predicts rows "
                        f"before learning them (predict_and_partial_fit), e.g. OnlineLogisticRegression or "
                        f"OnlineLearning; {stage}'s trainer does not predict")
    kind = _prediction_kind(trainer, stage)
    metrics = _check_metrics(metrics, kind, stage)
    label_col = estimator.label_col
    preds: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for t in _tables(data, batch_size):
        if t.num_rows == 0:
            continue
        p, _ = trainer.predict_and_partial_fit(t)
        preds.append(np.asarray(p, dtype=np.float64))
        ys.append(_labels(t, label_col, trainer, stage))
    if not preds:
        raise ValueError(f"progressive_validation: the input has no rows; {stage} needs at least one row")
    p, y = np.concatenate(preds), np.concatenate(ys)
    if kind == "regression":
        values = _m.regression_metrics(y, p)
    elif kind == "multiclass":
        values = _m.multiclass_metrics(y, p)
    else:
        values = {}
        if any(m in _THRESHOLD_METRICS for m in metrics):
            threshold = 0.5 if kind == "binary" else _margin_threshold(trainer)
            values.update(_m.binary_threshold_metrics(y, p, threshold))
        if "auc" in metrics:
            values["auc"] = _m.binary_auc(y, p)
        if "log_loss" in metrics:
            values["log_loss"] = _m.log_loss(y, p)
    return {m: float(values[m]) for m in metrics}
