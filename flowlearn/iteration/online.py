"""Bounded training of online estimators on ``iterate_unbounded``, shared by every online
estimator (``OnlineLogisticRegression``, ``OnlineKMeans``, ``OnlineStandardScaler``,
``OnlineLearning``): their ``fit_versions`` cut a bounded input into mini-batches that each run
the trainer's kernel against the shared model state.

The trainers are :class:`flowlearn.trainer.Trainer` subclasses, the protocol the stream engine
drives too.

Example:
    >>> import flowlearn as fl
    >>> [t.num_rows for t in iter_input_tables(fl.table({"x": [1, 2, 3]}), "Demo", batch_size=2)]
    [2, 1]
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

from flowlearn.api import Estimator, Model, Stage
from flowlearn.data.table import is_table_like
from flowlearn.data.table import table as to_table
from flowlearn.iteration.engine import IterationBodyResult
from flowlearn.iteration.operators import IterationOperator, OperatorContext
from flowlearn.iteration.streams import BatchStream
from flowlearn.iteration.unbounded import iterate_unbounded

__all__ = ["OnlineEstimator", "HasInitialModelData", "as_table", "iter_input_tables",
           "initial_model", "initial_model_data", "train_versions", "step_rows", "version_period", "MIN_STEP_ROWS"]


def _is_stream(x: Any) -> bool:
    return getattr(x, "_flowlearn_stream", False)


def as_table(batch: Any) -> pa.Table:
    """A table from a table, a record batch or anything ``fl.table`` accepts."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    return to_table(batch)


def initial_model(obj: Any, stage: str) -> Any:
    """What an online estimator starts from, unwrapped: a model store (anything with ``latest()``:
    its newest valid version) or a model version (anything with ``.model``) becomes its model;
    other objects are returned as they are."""
    if callable(getattr(obj, "latest", None)) and callable(getattr(obj, "versions", None)):
        latest = obj.latest()
        if latest is None:
            raise ValueError(f"{stage}: the model store {obj!r} has no valid version to start from; publish one "
                             f"(e.g. a batch model) first")
        obj = latest
    if not isinstance(obj, Stage) and isinstance(getattr(obj, "model", None), Stage):
        obj = obj.model
    return obj


def initial_model_data(obj: Any, stage: str, models: str) -> pa.Table:
    """The model data table an online estimator starts from: a table(-like), a ``Model`` (``models``
    names the expected ones in errors), a ``PipelineModel`` (its last stage; the stages before it
    are the user's to apply upstream), a model version or a model store (:func:`initial_model`)."""
    obj = initial_model(obj, stage)
    stages = getattr(obj, "stages", None)
    if isinstance(obj, Stage) and stages:
        obj = stages[-1]
    if isinstance(obj, Model):
        return obj.get_model_data()[0]
    if isinstance(obj, pa.Table):
        return obj
    if is_table_like(obj):
        return to_table(obj)
    raise TypeError(f"{stage}: initial model data must be {models}, a PipelineModel ending in one, a model version, "
                    f"a model store or a model data table; got {type(obj).__name__}")


def iter_input_tables(data: Any, stage: str, batch_size: int | None = None) -> Iterator[pa.Table]:
    """Tables from a table-like object or an iterable of them, sliced to ``batch_size`` rows."""
    if _is_stream(data):
        it = data.iter_batches() if hasattr(data, "iter_batches") else iter(data)
        items: Iterable[Any] = it
    elif isinstance(data, (pa.Table, pa.RecordBatch)) or is_table_like(data):
        items = [data]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        items = data
    else:
        raise TypeError(f"{stage}: expected a table, a record batch or an iterable of them; got {type(data).__name__}")
    for item in items:
        t = as_table(item)
        if batch_size is None or t.num_rows <= batch_size:
            yield t
        else:
            for start in range(0, t.num_rows, batch_size):
                yield t.slice(start, batch_size)





# A step of the iteration (a mini-batch: engine bookkeeping and partial_fit calls) costs about 0.1 ms
# on top of training its rows. One step per model version would make small version periods (e.g.
# OnlineKMeans' default, a version every 32 rows) up to 2.5x slower, so a step holds as many whole
# version periods as make at least this many rows; larger periods get one version per step.
MIN_STEP_ROWS = 65536


def step_rows(period: int | None) -> int:
    """Rows per step of :func:`train_versions` for a trainer that emits a version every ``period``
    rows (``None``: only at the end): the smallest multiple of ``period`` that is at least
    :data:`MIN_STEP_ROWS`, so steps end on version boundaries."""
    if period is None:
        return MIN_STEP_ROWS
    return period * -(-MIN_STEP_ROWS // period)


def version_period(emit_every: int | None, global_batch_size: int) -> int | None:
    """Rows between two model versions of a fresh trainer that emits at the first mini-batch
    boundary at least ``emit_every`` rows after the last version (``None``: no periodic versions)."""
    if emit_every is None:
        return None
    return -(-int(emit_every) // global_batch_size) * global_batch_size


class _PartialFit(IterationOperator):
    """Holds an online trainer (the shared model state of the iteration): feeds every batch of a
    mini-batch to ``trainer.partial_fit`` and emits the model versions it makes (as tables, through
    ``to_table``), the mini-batch's last one also on the side output ``"model"``; when the input
    ends, ``trainer.finish()``'s final version."""

    def __init__(self, trainer: Any, to_table: Callable[[Any], pa.Table]) -> None:
        self.trainer = trainer
        self.to_table = to_table
        self._last: pa.Table | None = None

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        for v in self.trainer.partial_fit(batch):
            self._last = self.to_table(v)
            ctx.emit(self._last)

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        if self._last is not None:
            ctx.output("model", self._last)
            self._last = None

    def on_iteration_terminated(self, ctx: OperatorContext) -> None:
        for v in self.trainer.finish():
            ctx.emit(self.to_table(v))


def _split_versions(t: pa.Table) -> list[pa.Table]:
    """The model versions in a step's output (consecutive rows with the same ``model_version``)."""
    if t.num_rows == 0:
        return []
    col = t.column("model_version")
    if col[0] == col[-1]:  # one version (the usual case)
        return [t]
    v = col.to_numpy()
    cuts = [0, *(np.flatnonzero(np.diff(v)) + 1).tolist(), len(v)]
    return [t.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])]


def train_versions(trainer: Any, tables: Iterable[Any], mini_batch_size: int | None,
                   to_table: Callable[[Any], pa.Table] = lambda v: v) -> Iterator[pa.Table]:
    """Train an online ``trainer`` (the protocol of :class:`OnlineLogisticRegressionTrainer`) on a
    bounded input with ``flowlearn.iteration.iterate_unbounded`` and yield each model version.

    The input (tables or record batches) is cut into mini-batches of ``mini_batch_size`` rows
    (:func:`step_rows`: whole version periods of the algorithm, so a step ends on a version
    boundary; ``None``: every input batch is a mini-batch). Each mini-batch is one step of the
    iteration: an all-round operator holding the trainer (the shared model state) runs its
    ``partial_fit`` on the mini-batch's batches; the versions it makes are the step's output and
    the last of them its feedback (the variable stream is the current model data: the latest
    version, or the trainer's initial model). When the input ends, the operator's
    ``on_iteration_terminated`` runs ``trainer.finish()``, whose version is the output of the final
    step. Versions are model data tables (``to_table`` turns a trainer's version into one).
    Trainers give the same versions however their input is cut into batches (except the versions
    ``emit_every_seconds`` adds by processing time), so these equal the versions of the trainer
    driven by hand.
    """
    init = trainer.model_data() if trainer.dim is not None else pa.table({})
    op = _PartialFit(trainer, to_table)

    def body(variables: list[BatchStream], data: list[BatchStream], epoch: int) -> IterationBodyResult:
        versions = data[0].process(op)
        return IterationBodyResult([versions.side_output("model")], outputs=[versions])

    with iterate_unbounded([init], tables, body, mini_batch_size=mini_batch_size) as steps:
        for step in steps:
            yield from _split_versions(step.outputs[0])




class OnlineEstimator(Estimator):
    """Base of online estimators (they offer ``trainer()`` and ``fit_versions(data)``).

    ``fit`` on a bounded input (a table, or an iterable of tables / record batches, in order)
    trains through ``fit_versions`` and returns ``model_class`` holding the last version; a
    ``Stream`` input is handed to the stream layer, which trains inside the job.
    """

    model_class: type

    def fit(self, *inputs: Any) -> Any:
        name = type(self).__name__
        if not inputs:
            raise TypeError(f"{name}.fit needs an input table")
        if any(_is_stream(x) for x in inputs):
            return super().fit(*inputs)
        if len(inputs) != 1:
            raise TypeError(f"{name}.fit takes one input (a table or an iterable of tables), got {len(inputs)}")
        last = None
        for last in self.fit_versions(inputs[0]):
            pass
        model = self.model_class()
        self.copy_params_to(model)
        return model.set_model_data(last)

    def _fit(self, *tables: pa.Table) -> Any:
        return self.fit(tables[0])

    def fit_versions(self, data: Any) -> Iterator[Any]:  # pragma: no cover - every estimator defines it
        raise NotImplementedError


class HasInitialModelData:
    """Mix-in for online estimators that can start from a model: the initial model data is set
    with ``set_initial_model_data`` (checked by ``_initial_model_table``) and saved with the stage."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._model_data: list[pa.Table] | None = None

    def _initial_model_table(self, model_or_table: Any) -> pa.Table:  # pragma: no cover - defined by users
        raise NotImplementedError

    def set_initial_model_data(self, model_or_table: Any) -> Any:
        """Start training from a model (batch or online; a ``PipelineModel``'s last stage), a model
        version, the newest version of a model store, or a model data table."""
        self._model_data = None if model_or_table is None else [self._initial_model_table(model_or_table)]
        return self

    def get_initial_model_data(self) -> pa.Table | None:
        return self._model_data[0] if self._model_data else None

    @classmethod
    def _from_saved(cls, params: dict, model_data: list[pa.Table], stages: list, extra: dict) -> Any:
        est = cls(**params)
        if model_data:
            est.set_initial_model_data(model_data[0])
        return est
