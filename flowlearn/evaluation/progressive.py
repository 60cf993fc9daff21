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

**Pipelines of online stages.** ``estimator`` may also be a ``fl.Pipeline`` whose last stage is
such an online learner and whose other stages are transformers, fitted models (both fixed) or
online feature estimators with a ``trainer()`` (``OnlineStandardScaler``), which learn as the
rows go by. Each row is predicted before *any* stage learns from it: the rows are taken in
chunks of the learner's ``global_batch_size`` (one row at a time with ``global_batch_size=1``);
a chunk is transformed by every stage as it is (an online feature stage by its statistics of
the rows before the chunk; before its first row an ``OnlineStandardScaler`` outputs zeros, as
River's), predicted and learned by the learner, and only then learned by the feature stages.

**Data.** Besides tables and streams, ``data`` may be an iterable of ``(x, y)`` pairs with ``x``
a dict of feature values, as River's datasets yield: each key becomes a column, ``y`` goes to
``label_col``, and numeric ``x`` also becomes one dense vector column ``features`` (keys in the
first pair's order), so a pipeline may start from either.

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

    A pipeline whose scaler learns online too, and River-style ``(x, y)`` pairs:

    >>> from flowlearn.classification.logistic_regression import LogisticRegressionModel
    >>> from flowlearn.feature.online_scalers import OnlineStandardScaler
    >>> pipe = fl.Pipeline([fl.feature.VectorAssembler(input_cols=["a"], output_col="x"),
    ...                     OnlineStandardScaler(input_col="x", output_col="features", with_mean=True),
    ...                     OnlineLearning(LogisticRegressionModel(), optim_method="sgd", global_batch_size=1)])
    >>> pairs = [({"a": 10.0 + i % 2}, i % 2) for i in range(400)]
    >>> round(progressive_validation(pipe, pairs, metrics="accuracy")["accuracy"], 3)
    0.99
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.api import Estimator, _is_stream
from flowlearn.builder import Pipeline, PipelineModel
from flowlearn.data.columns import numeric_column
from flowlearn.data.table import is_table_like
from flowlearn.data.table import table as to_table
from flowlearn.evaluation import metrics as _m
from flowlearn.linalg import from_numpy

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


_PAIR_CHUNK = 4096   # (x, y) pairs per table built from them


def _pair_tables(first: tuple, rest: Iterator[Any], label_col: str) -> Iterator[pa.Table]:
    """Tables of ``_PAIR_CHUNK`` rows from River-style ``(x dict, y)`` pairs: a column per key of
    ``x``, ``label_col``, and, when every value is a number, ``features``: the values as one dense
    vector in the key order of the first pair."""
    keys = list(first[0])

    def table(pairs: list) -> pa.Table:
        rows = [dict(x) for x, _ in pairs]
        for r, (_, y) in zip(rows, pairs):
            r[label_col] = float(y)
        t = to_table(rows)
        if keys and "features" not in t.column_names and all(
                k in t.column_names and (pa.types.is_integer(t.schema.field(k).type) or
                                         pa.types.is_floating(t.schema.field(k).type)) for k in keys):
            x = np.column_stack([t.column(k).to_numpy(zero_copy_only=False).astype(np.float64) for k in keys])
            t = t.append_column("features", from_numpy(x))
        return t

    chunk = [first]
    for item in rest:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], dict)):
            raise TypeError(f"progressive_validation: an iterable of (x, y) pairs holds {type(item).__name__} after "
                            f"{len(chunk)} pairs; every item must be an (x dict, y) pair")
        chunk.append(item)
        if len(chunk) == _PAIR_CHUNK:
            yield table(chunk)
            chunk = []
    if chunk:
        yield table(chunk)


def _tables(data: Any, batch_size: int | None, label_col: str = "label") -> Iterator[pa.Table]:
    if isinstance(data, Iterable) and not _is_stream(data) and not isinstance(data, (pa.Table, pa.RecordBatch, str, bytes)) \
            and not is_table_like(data):
        it = iter(data)
        first = next(it, None)
        if first is None:
            return
        if isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], dict):
            data = _pair_tables(first, it, label_col)
        else:
            data = _chain(first, it)
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


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


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


class _FeatureStage:
    """A stage before the learner in a pipeline given to progressive_validation: fixed (a
    transformer or fitted model) or online (an estimator with ``trainer()``, whose current
    statistics transform a chunk before it learns from the chunk)."""

    def __init__(self, stage: Any, index: int) -> None:
        self.stage, self.index = stage, index
        self.trainer = stage.trainer() if isinstance(stage, Estimator) else None
        self._model: Any = None
        self._model_rows = -1

    def _current_model(self, x: pa.Table) -> Any:
        tr, est = self.trainer, self.stage
        if self._model is not None and self._model_rows == tr.rows_seen:
            return self._model
        model = est.model_class()
        est.copy_params_to(model)
        if tr._has_model():
            model.set_model_data(tr._current_version())
        else:
            model.set_model_data(_zero_state(est, x, self.index))
        self._model, self._model_rows = model, tr.rows_seen
        return model

    def transform(self, x: pa.Table) -> pa.Table:
        if self.trainer is None:
            return self.stage.transform(x)
        return self._current_model(x).transform(x)

    def learn(self, x: pa.Table) -> None:
        if self.trainer is not None:
            self.trainer.partial_fit(x)

    @property
    def vectorized(self) -> bool:
        """Whether :meth:`progressive` transforms a whole table at once (no chunk loop needed)."""
        if self.trainer is None:
            return True
        from flowlearn.feature.online_scalers import OnlineStandardScaler

        est = self.stage
        # statistics that take in every row at once (event-time windows hold rows back)
        return isinstance(est, OnlineStandardScaler) and est.windows != "event_time" and est.time_col is None

    def progressive(self, x: pa.Table, chunk: int) -> pa.Table:
        """``x`` transformed as the chunk loop would: row ``i`` by the statistics of every row learned
        before plus the rows of ``x`` before its chunk (``chunk`` rows each). One vectorized pass:
        prefix sums (shifted by the prior mean, against cancellation) merged with the prior
        statistics by Chan's rule."""
        if self.trainer is None:
            return self.stage.transform(x)
        from flowlearn.data.columns import vector_column, with_column
        from flowlearn.linalg import from_numpy

        est, tr = self.stage, self.trainer
        X = vector_column(x, est.input_col, type(est).__name__, param="input_col", dense=True)
        n, d = X.shape
        n0 = tr.rows_seen if tr._has_model() else 0
        if n0:
            prior = tr.model_data()
            mean0 = np.asarray(prior.column("mean")[0].as_py(), dtype=np.float64)
            std0 = np.asarray(prior.column("std")[0].as_py(), dtype=np.float64)
            m2_0 = std0 ** 2 * (n0 - 1)
        shift = mean0 if n0 else (X[0] if n else np.zeros(d))
        Y = X - shift
        starts = (np.arange(n) // chunk) * chunk          # rows of x each row's statistics include
        P1 = np.vstack([np.zeros((1, d)), np.cumsum(Y, axis=0)])[starts]
        P2 = np.vstack([np.zeros((1, d)), np.cumsum(Y * Y, axis=0)])[starts]
        cnt = starts[:, None].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mb = np.where(cnt > 0, P1 / cnt, 0.0)
            m2b = np.maximum(P2 - P1 * mb, 0.0)
            if n0:
                total = n0 + cnt
                delta = mb - (mean0 - shift)
                mean = np.where(cnt > 0, (mean0 - shift) + delta * cnt / total, mean0 - shift)
                m2 = np.where(cnt > 0, m2_0 + m2b + delta ** 2 * n0 * cnt / total, m2_0)
            else:
                total, mean, m2 = cnt, mb, m2b
            std = np.where(total > 1, np.sqrt(m2 / (total - 1)), 0.0)
            scale = np.divide(1.0, std, out=np.zeros_like(std), where=std != 0)
        out = (Y - mean) if est.with_mean else X
        if est.with_std:
            out = out * scale
        return with_column(x, est.output_col, from_numpy(np.ascontiguousarray(out)))


def _zero_state(est: Any, x: pa.Table, index: int) -> pa.Table:
    """The model data an online feature stage transforms with before its first row."""
    from flowlearn.feature.online_scalers import OnlineStandardScaler

    if isinstance(est, OnlineStandardScaler):   # zero mean and deviation: outputs zeros, as River's scaler
        from flowlearn.data.columns import vector_column
        from flowlearn.linalg import dense_vector_type

        d = vector_column(x, est.input_col, type(est).__name__, param="input_col").shape[1]
        zeros = pa.array([[0.0] * d], dense_vector_type(d))
        return pa.table({"mean": zeros, "std": zeros, "model_version": pa.array([0], pa.int64())})
    raise ValueError(f"progressive_validation: pipeline stage {index} ({type(est).__name__}) has no model before "
                     f"its first rows, so the first rows cannot be predicted before it learns them; give it an "
                     f"initial model (set_initial_model_data) or put a fitted model in the pipeline")


def _split_online_pipeline(pipe: Any) -> tuple[list[_FeatureStage], Any]:
    stages = list(pipe.stages)
    if not stages:
        raise ValueError("progressive_validation: the pipeline has no stages; its last stage must be an online "
                         "learner (e.g. OnlineLogisticRegression, OnlineLearning)")
    features = []
    for i, s in enumerate(stages[:-1]):
        if isinstance(s, Estimator) and not hasattr(s, "trainer"):
            raise TypeError(f"progressive_validation: pipeline stage {i} ({type(s).__name__}) is a batch estimator, "
                            f"which cannot learn row by row; use its online counterpart "
                            f"({s.online_counterpart or 'an estimator with trainer()'}) or fit it on other data and "
                            f"put the fitted model in the pipeline")
        if isinstance(s, Estimator) and getattr(s, "model_class", None) is None:
            raise TypeError(f"progressive_validation: pipeline stage {i} ({type(s).__name__}) learns online but "
                            f"has no model_class to transform with; only the last stage may be such a learner")
        features.append(_FeatureStage(s, i))
    return features, stages[-1]


def progressive_validation(estimator: Any, data: Any, metrics: Sequence[str] | str | None = None,
                           batch_size: int | None = None) -> dict[str, float]:
    """Evaluate an online estimator by predicting each row before learning from it.

    Args:
        estimator: an online estimator whose ``trainer()`` has ``predict_and_partial_fit``
            (``OnlineLogisticRegression``, ``OnlineLearning``); its parameters and initial model
            are used, the estimator is not changed. Or a ``Pipeline`` of online stages ending in
            one (see the module docstring).
        data: a table (or anything ``fl.table`` accepts), a record batch, an iterable of them,
            a bounded stream, or an iterable of ``(x dict, y)`` pairs (River's datasets), in
            arrival order.
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
    features: list[_FeatureStage] = []
    if isinstance(estimator, (Pipeline, PipelineModel)):
        features, estimator = _split_online_pipeline(estimator)
        stage = f"{type(estimator).__name__} (last stage of the pipeline)"
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
    # with online feature stages, a chunk is one mini-batch of the learner (the rows it predicts alike);
    # stages that transform progressively in one vectorized pass need no loop over the chunks
    online = any(f.trainer is not None for f in features)
    chunk = int(getattr(estimator, "global_batch_size", 1)) if online else None
    vectorized = all(f.vectorized for f in features)
    for t in _tables(data, batch_size, label_col):
        if t.num_rows == 0:
            continue
        if vectorized:
            ys.append(_labels(t, label_col, trainer, stage))
            inputs, x = [], t
            for f in features:
                inputs.append(x)
                x = f.progressive(x, chunk or 1)
            p, _ = trainer.predict_and_partial_fit(x)
            preds.append(np.asarray(p, dtype=np.float64))
            for f, x_in in zip(features, inputs):
                f.learn(x_in)
            continue
        for part in ([t] if chunk is None else (t.slice(i, chunk) for i in range(0, t.num_rows, chunk))):
            ys.append(_labels(part, label_col, trainer, stage))
            inputs = []
            x = part
            for f in features:   # every stage as it is before this chunk
                inputs.append(x)
                x = f.transform(x)
            p, _ = trainer.predict_and_partial_fit(x)
            preds.append(np.asarray(p, dtype=np.float64))
            for f, x_in in zip(features, inputs):   # then the feature stages learn the chunk
                f.learn(x_in)
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
