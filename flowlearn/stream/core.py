"""``Stream``: a lazy node of a dataflow plan, and the stateless operators.

A ``Stream`` is the user's handle on a :class:`~flowlearn.stream.plan.PlanNode` (``stream.node``):
a spec of plain values, its input nodes and its output schema. Nothing runs until
``fl.run(*sinks)`` (or ``to_table()`` / ``sink.result()`` for a bounded plan) hands the plan to the
current engine (``fl.set_engine``). One stream may feed several consumers; each sees every batch.

Example:
    >>> import pyarrow.compute as pc
    >>> import flowlearn.stream as fls
    >>> s = fls.from_table({"x": [1.0, 2.0, 3.0, 4.0]}, batch_size=3)
    >>> s.filter(lambda t: pc.greater(t["x"], 1.5)).map_batches(
    ...     lambda t: t.append_column("y", pc.multiply(t["x"], 2.0))).to_table().to_pydict()
    {'x': [2.0, 3.0, 4.0], 'y': [4.0, 6.0, 8.0]}
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.data.schema import parse_schema
from flowlearn.data.table import table as to_table
from flowlearn.stream.operator import Operator, OperatorState
from flowlearn.stream.plan import PlanNode, SideOutputSpec, Spec, current_engine, explain, register_operator

__all__ = ["Stream", "Sink", "MapOp", "FilterOp", "StageOp", "check_schema", "MapSpec", "FilterSpec",
           "SelectSpec", "UnionSpec", "StageSpec", "StatefulMapSpec", "StatelessSpec"]


def check_schema(expected: pa.Schema, got: pa.Schema, where: str) -> None:
    """Raise ``ValueError`` saying which column changed how, when ``got`` differs from ``expected``."""
    if expected.equals(got):
        return
    for f in expected:
        if f.name not in got.names:
            raise ValueError(f"schema changed in {where}: column '{f.name}' ({f.type}) disappeared; "
                             f"now {got.names}")
        g = got.field(f.name)
        if not g.type.equals(f.type):
            raise ValueError(f"schema changed in {where}: column '{f.name}' changed from {f.type} to {g.type}")
    extra = [n for n in got.names if n not in expected.names]
    if extra:
        raise ValueError(f"schema changed in {where}: new column(s) {extra} appeared; expected {expected.names}")
    if got.names != expected.names:
        raise ValueError(f"schema changed in {where}: column order changed from {expected.names} to {got.names}")


def _as_table(x: Any, where: str) -> pa.Table:
    if isinstance(x, pa.Table):
        return x
    if isinstance(x, pa.RecordBatch):
        return pa.Table.from_batches([x])
    try:
        return to_table(x)
    except TypeError as e:
        raise TypeError(f"{where} must return a table (pyarrow Table/RecordBatch, dict of columns, ...): {e}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class StatelessSpec(Spec):
    """A spec whose operator is a pure function of each batch, ``apply(table) -> table | None``:
    engines may fuse chains of them into one operator, and the plan infers the output schema by
    applying it to an empty table."""

    def apply(self, table: pa.Table) -> pa.Table | None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def output_schema(self, inputs: Sequence[pa.Schema | None]) -> pa.Schema | None:
        if not inputs or inputs[0] is None:
            return None
        out = self.apply(inputs[0].empty_table())
        return None if out is None else out.schema


@dataclasses.dataclass(frozen=True, eq=False)
class MapSpec(StatelessSpec):
    """``fn(table) -> table`` (or anything ``fl.table`` accepts, or ``None``) per batch."""

    fn: Callable[[pa.Table], Any]
    name: str

    def apply(self, table: pa.Table) -> pa.Table | None:
        out = self.fn(table)
        return None if out is None else _as_table(out, f"map_batches function {self.name}")


@dataclasses.dataclass(frozen=True, eq=False)
class FilterSpec(StatelessSpec):
    """Rows where ``predicate`` (a callable returning a boolean mask, or a ``pc.Expression``) is
    true; nulls count as false."""

    predicate: Any

    def apply(self, table: pa.Table) -> pa.Table:
        if isinstance(self.predicate, pc.Expression):
            return table.filter(self.predicate)
        mask = self.predicate(table)
        if isinstance(mask, np.ndarray):
            mask = pa.array(mask, pa.bool_())
        return table.filter(mask, null_selection_behavior="drop")

    def describe(self) -> dict[str, Any]:
        if isinstance(self.predicate, pc.Expression):
            return {"predicate": str(self.predicate)}
        return super().describe()


@dataclasses.dataclass(frozen=True, eq=False)
class SelectSpec(StatelessSpec):
    """``columns`` in this order, renamed by ``rename`` (old -> new)."""

    columns: tuple[str, ...]
    rename: dict[str, str]

    def apply(self, table: pa.Table) -> pa.Table:
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise ValueError(f"select: column(s) {missing} not in the stream; it has {table.column_names}")
        out = table.select(list(self.columns))
        if self.rename:
            out = out.rename_columns([self.rename.get(c, c) for c in out.column_names])
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class UnionSpec(Spec):
    """Every batch of every input, in arrival order; ``schema`` (when known) is checked."""

    schema: pa.Schema | None

    def output_schema(self, inputs: Sequence[pa.Schema | None]) -> pa.Schema | None:
        return self.schema


@dataclasses.dataclass(frozen=True, eq=False)
class StageSpec(StatelessSpec):
    """A ``Transformer``/``Model``/``AlgoOperator`` applied to each batch with its table kernels;
    ``others`` are its further (table) inputs. Extra outputs go to side outputs ``output_1``, ..."""

    stage: Any
    others: tuple = ()

    def transform(self, table: pa.Table) -> Any:
        return self.stage.transform(table, *self.others)

    def apply(self, table: pa.Table) -> pa.Table:
        out = self.transform(table)
        return out[0] if isinstance(out, tuple) else out

    def describe(self) -> dict[str, Any]:
        return {"stage": type(self.stage).__name__, "others": len(self.others)}

    def output_schema(self, inputs: Sequence[pa.Schema | None]) -> pa.Schema | None:
        return _stage_schema(self.stage, inputs[0] if inputs else None, self.others)


@dataclasses.dataclass(frozen=True, eq=False)
class StatefulMapSpec(Spec):
    """A stateful per-batch computation (see :class:`StatefulMapOp`)."""

    obj: Any
    name: str
    state: ClassVar[str] = "the object's snapshot_state()"


class MapOp(Operator):
    """A :class:`StatelessSpec` applied per batch."""

    def __init__(self, spec: StatelessSpec) -> None:
        super().__init__()
        self.spec = spec

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        out = self.spec.apply(table)
        return [] if out is None else [out]


class StatefulMapOp(Operator):
    """Runs an object with ``update(table)`` / ``flush()`` (each returning a table, a list of
    row dicts, or None) and
    ``snapshot_state() -> OperatorState`` / ``restore_state(state)``: a stateful per-batch
    computation whose state goes into checkpoints (streaming evaluators use it)."""

    def __init__(self, obj: Any, name: str) -> None:
        super().__init__()
        self.obj, self.name = obj, name

    @staticmethod
    def _out(out: Any) -> list[pa.Table]:
        if isinstance(out, list):  # rows as dicts
            out = pa.Table.from_pylist(out) if out else None
        return [] if out is None or out.num_rows == 0 else [out]

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        return self._out(self.obj.update(table))

    def on_end(self) -> list[pa.Table]:
        return self._out(self.obj.flush())

    def snapshot_state(self) -> OperatorState:
        return self.obj.snapshot_state()

    def restore_state(self, state: OperatorState) -> None:
        self.obj.restore_state(state)


class FilterOp(MapOp):
    """A :class:`FilterSpec`; counts the rows it drops (metric ``filtered_out``)."""

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        out = self.spec.apply(table)
        self.ctx.count("filtered_out", table.num_rows - out.num_rows)
        return [out]


class UnionOp(Operator):
    def __init__(self, schema: pa.Schema | None) -> None:
        super().__init__()
        self.schema = schema

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if self.schema is not None and not table.schema.equals(self.schema):
            check_schema(self.schema, table.schema, f"union input {input_index}")
        return [table]


class StageOp(MapOp):
    """A :class:`StageSpec`: extra outputs of a multi-output stage go to side outputs ``output_1``, ..."""

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        out = self.spec.transform(table)
        if isinstance(out, tuple):
            for i, extra in enumerate(out[1:], 1):
                self.ctx.side(f"output_{i}", extra)
            out = out[0]
        return [out]


register_operator(MapSpec, MapOp)
register_operator(FilterSpec, FilterOp)
register_operator(SelectSpec, MapOp)
register_operator(StageSpec, StageOp)
register_operator(UnionSpec, lambda s: UnionOp(s.schema))
register_operator(StatefulMapSpec, lambda s: StatefulMapOp(s.obj, s.name))
register_operator(SideOutputSpec, lambda s: Operator())


def _stage_schema(stage: Any, schema: pa.Schema | None, others: Sequence[Any]) -> pa.Schema | None:
    """The output schema of ``stage`` applied to a stream of ``schema``, declared when the plan is
    built: a missing input column or one of the wrong type is refused now, naming the stage (an
    evaluator, which is not row by row, may refuse an empty table: its schema is then left open)."""
    from flowlearn.api import Transformer

    if schema is None:
        return None
    declare = getattr(stage, "output_schema", None)
    if declare is None:
        return None
    try:
        out = declare(schema, *[o.schema if isinstance(o, pa.Table) else to_table(o).schema for o in others])
    except (ValueError, TypeError):
        if isinstance(stage, Transformer):
            raise
        return None
    return out[0] if isinstance(out, tuple) else out


def follows_model_stream(stage: Any) -> bool:
    """True if ``stage`` or one of its sub-stages follows a model stream."""
    return any(getattr(s, "_flowlearn_model_stream", None) is not None for s in stage.walk())


class Stream:
    """A lazy node of a dataflow plan: a schema plus a producer of Arrow batches.

    Build streams with ``fl.stream.from_table`` and friends, chain operations, end with a sink
    (``collect``, ``foreach``, ``to_files``, ``to_kafka``) and run with ``fl.run``. Every
    ``Transformer``/``Model`` accepts a ``Stream`` and returns one; a batch ``Estimator`` trains
    on a bounded stream in full.

    Example:
        >>> import flowlearn.stream as fls
        >>> s = fls.from_table({"a": [1, 2], "b": ["x", "y"]}, batch_size=1)
        >>> s.select("b").to_table().to_pydict()
        {'b': ['x', 'y']}
        >>> s.bounded
        True
    """

    _flowlearn_stream = True

    def __init__(self, spec: Spec, inputs: Sequence["Stream"] = (), *, kind: str = "op", name: str = "",
                 schema: pa.Schema | Callable[[], pa.Schema | None] | None = None, bounded: bool | None = None,
                 uid: str | None = None) -> None:
        if schema is None and kind == "op":
            ins = list(inputs)
            schema = lambda: spec.output_schema([i.schema for i in ins])  # noqa: E731 - inferred on first use
        self.node = PlanNode(kind, spec, [i.node for i in inputs], name=name, uid=uid, schema=schema,
                             bounded=bounded)
        self._side_nodes: list[Stream] = []   # streams inside this one whose side outputs are its own

    # -- plan properties -------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema | None:
        """The schema of the batches, when known without running (``None`` otherwise)."""
        return self.node.schema

    @property
    def bounded(self) -> bool:
        """True when the stream ends (every source it reads is bounded)."""
        return self.node.bounded

    def uid(self, uid: str) -> "Stream":
        """Name this node stably: its checkpointed state is stored under ``uid``."""
        self.node.uid = uid
        return self

    def explain(self) -> str:
        """The plan ending here, one node per line: kind, name, spec, schema and checkpointed state."""
        return explain([self.node])

    def __repr__(self) -> str:
        return f"Stream({self.node.name}, bounded={self.bounded}, schema={self.schema})"

    def _then(self, spec: Spec, name: str, schema: Any = None) -> "Stream":
        return Stream(spec, [self], name=name, schema=schema)

    # -- operations ------------------------------------------------------------------------
    def map_batches(self, fn: Callable[[pa.Table], Any], schema: str | pa.Schema | None = None,
                    name: str | None = None) -> "Stream":
        """Apply ``fn(table) -> table`` to each batch (vectorized; return ``None`` to emit nothing)."""
        nm = name or getattr(fn, "__name__", "map")
        return self._then(MapSpec(fn, nm), f"map_batches({nm})", parse_schema(schema) if schema is not None else None)

    def map_stateful(self, obj: Any, name: str | None = None) -> "Stream":
        """Run a stateful per-batch computation (``obj.update`` / ``flush`` / ``snapshot_state`` /
        ``restore_state``, see :class:`StatefulMapOp`) whose state is checkpointed with the job."""
        nm = name or type(obj).__name__
        return Stream(StatefulMapSpec(obj, nm), [self], name=nm)

    def filter(self, predicate: Callable[[pa.Table], Any] | pc.Expression) -> "Stream":
        """Keep rows where ``predicate(table)`` (a boolean mask) or the ``pc.Expression`` is true."""
        return Stream(FilterSpec(predicate), [self], name="filter", schema=lambda: self.schema)

    def select(self, *columns: str | Sequence[str], **rename: str) -> "Stream":
        """Keep ``columns`` (names, or a list of names) in this order; ``new=old`` keyword pairs select
        and rename. Columns the stream's schema does not have are refused when the plan is built."""
        cols: list[str] = []
        for c in columns:
            if isinstance(c, (list, tuple)):
                cols.extend(c)
            else:
                cols.append(c)
        cols += list(rename.values())
        bad = [c for c in cols if not isinstance(c, str)]
        if bad:
            raise TypeError(f"select: column names are strings, got {bad!r}")
        sch = self.schema
        if sch is not None:
            missing = [c for c in cols if c not in sch.names]
            if missing:
                raise ValueError(f"select: column(s) {missing} not in the stream; it has {sch.names}")
        ren = {old: new for new, old in rename.items()}
        return self._then(SelectSpec(tuple(cols), ren), "select")

    def union(self, *others: "Stream") -> "Stream":
        """All batches of this stream and ``others`` (same schema), in arrival order."""
        for o in others:
            if not getattr(o, "_flowlearn_stream", False):
                raise TypeError(f"union expects Streams, got {type(o).__name__}")
        sch = self.schema
        for i, o in enumerate(others, 1):
            if sch is not None and o.schema is not None:
                check_schema(sch, o.schema, f"union input {i}")
        return Stream(UnionSpec(sch), [self, *others], name="union")

    def with_watermarks(self, time_col: str, max_out_of_orderness: float = 0.0) -> "Stream":
        """Take event time from ``time_col`` (timestamp, or numbers in seconds) and emit
        watermarks ``max_seen - max_out_of_orderness`` (seconds)."""
        from flowlearn.stream.window import WatermarkSpec, _check_time_col

        _check_time_col(self.schema, time_col, "with_watermarks")
        return Stream(WatermarkSpec(time_col, float(max_out_of_orderness)), [self], name="watermarks",
                      schema=lambda: self.schema)

    def window(self, *, count: int | None = None, processing_time: float | None = None,
               event_time: float | None = None, time_col: str | None = None,
               max_out_of_orderness: float | None = None, allowed_lateness: float = 0.0,
               late: str = "drop", slide: float | None = None) -> "Any":
        """Tumbling windows by row ``count``, ``processing_time`` seconds, or ``event_time``
        seconds over ``time_col``; with ``slide`` (seconds; time windows only) sliding windows
        of that length starting every ``slide`` seconds, each row in every window holding it.
        Returns a :class:`~flowlearn.stream.window.WindowedStream`; finish it with
        ``.aggregate(...)``, ``.apply(fn)`` or ``.tables()``."""
        from flowlearn.stream.window import WindowedStream

        return WindowedStream(self, count=count, processing_time=processing_time, event_time=event_time,
                              time_col=time_col, max_out_of_orderness=max_out_of_orderness,
                              allowed_lateness=allowed_lateness, late=late, slide=slide)

    def side_output(self, tag: str) -> "Stream":
        """The side output ``tag`` of this node (``"late"`` of a window, ``"dead_letter"`` of a source,
        ``"unscored"`` of a model following a model stream); of a ``PipelineModel`` applied to a
        stream, the union of its stages' side outputs ``tag``."""
        sides = [Stream(SideOutputSpec(tag), [n], kind="side", name=f"side[{tag}]") for n in (self, *self._side_nodes)]
        return sides[0] if len(sides) == 1 else Stream(UnionSpec(None), sides, name="union")

    def dead_letters(self) -> "Stream":
        """Records a source rejected under ``handle_invalid="skip"``: columns ``source``,
        ``location``, ``column``, ``reason``, ``record``."""
        return self.side_output("dead_letter")

    def late_data(self) -> "Stream":
        """Rows a window received after its watermark passed (with ``late="side"``)."""
        return self.side_output("late")

    # -- the stage hand-off (called by flowlearn.api) ----------------------------------------
    def _apply_stage(self, stage: Any, *others: Any) -> "Stream":
        if any(getattr(o, "_flowlearn_stream", False) for o in others):
            raise NotImplementedError(f"{type(stage).__name__}.transform: only the first input may be a Stream; "
                                      f"pass the other inputs as tables")
        model_stream = getattr(stage, "_flowlearn_model_stream", None)
        if model_stream is not None:
            from flowlearn.stream.models import ModelStreamSpec

            # its versions arrive while the job runs, but the columns it reads are known now
            check = getattr(stage, "_check_input_schema", None)
            if check is not None and self.schema is not None:
                check(self.schema)
            return Stream(ModelStreamSpec(stage), [self, model_stream], name=f"{type(stage).__name__}")
        following = [s for s in stage._sub_stages() if follows_model_stream(s)]
        if following:
            if not hasattr(stage, "stages") or others:
                raise NotImplementedError(
                    f"{type(stage).__name__}.transform(stream): its stage {type(following[0]).__name__} follows a "
                    f"model stream, which only a PipelineModel (applied stage by stage) or the stage itself can apply")
            out: Stream = self
            nodes: list[Stream] = []
            for s in stage.stages:   # each stage on its own, so a following stage applies its newest version
                out = s.transform(out)
                nodes += [out, *out._side_nodes]
            out._side_nodes = [n for n in nodes if n is not out]   # its side outputs: those of all stages
            return out
        bind = getattr(stage, "bind_schema", None)
        if bind is not None and self.schema is not None and not others:
            stage = bind(self.schema)  # params read from the plan's schema (VectorAssembler's input_sizes)
        return self._then(StageSpec(stage, tuple(others)), type(stage).__name__,
                          _stage_schema(stage, self.schema, others))

    def _fit_stage(self, estimator: Any, *others: Any) -> Any:
        if callable(getattr(estimator, "trainer", None)):
            if others:
                raise TypeError(f"{type(estimator).__name__}.fit(stream) takes one stream; to rebase the trainer on "
                                f"a model store use fl.stream.fit_online(estimator, stream, rebase=store)")
            from flowlearn.stream.models import fit_online

            return fit_online(estimator, self)
        streams = [self, *[o for o in others if getattr(o, "_flowlearn_stream", False)]]
        for s in streams:
            if not s.bounded:
                counterpart = getattr(estimator, "online_counterpart", None)
                hint = (f"use {counterpart}, its online counterpart, to train on a stream" if counterpart
                        else "it has no online counterpart; window the stream and fit per window, or bound it")
                raise ValueError(f"{type(estimator).__name__} is a batch estimator and cannot train on an unbounded "
                                 f"stream; {hint}")
        return current_engine().fit(estimator, self, *others)

    def _follow_model_stream(self, model: Any) -> None:
        model._flowlearn_model_stream = self

    # -- sinks -----------------------------------------------------------------------------
    def collect(self) -> "Any":
        """A sink keeping every batch in memory; ``sink.result()`` returns them as one table
        (running the plan first if it is bounded and has not run)."""
        from flowlearn.stream.sinks import CollectSink

        return CollectSink(self)

    def to_table(self) -> pa.Table:
        """Run this bounded stream to completion on the current engine and return its rows as one table."""
        return current_engine().collect(self)

    def foreach(self, fn: Callable[[pa.Table], None]) -> "Any":
        """A sink calling ``fn(table)`` for each batch."""
        from flowlearn.stream.sinks import ForeachSink

        return ForeachSink(self, fn)

    def to_files(self, path: str, format: str = "parquet", rolling_rows: int = 1_000_000,
                 rolling_seconds: float | None = None, prefix: str = "part") -> "Any":
        """Write rolling files under ``path``, committed atomically (exactly-once with checkpoints)."""
        from flowlearn.stream.sinks import FileSink

        return FileSink(self, path, format=format, rolling_rows=rolling_rows, rolling_seconds=rolling_seconds,
                        prefix=prefix)

    def iter_batches(self, queue_size: int = 8) -> Any:
        """Run this stream's plan and yield its batches as they come (with backpressure: the job
        waits while ``queue_size`` batches are unread). Closing the generator stops the job."""
        import queue as _queue

        q: _queue.Queue = _queue.Queue(queue_size)
        stop = [False]

        def put(t: pa.Table) -> None:
            while not stop[0]:
                try:
                    q.put(t, timeout=0.1)
                    return
                except _queue.Full:
                    continue

        job = self.foreach(put).run()
        try:
            while True:
                try:
                    t = q.get(timeout=0.1)
                except _queue.Empty:
                    if not job.running and q.empty():
                        job.wait()  # re-raise the job's error, if any
                        return
                    continue
                yield t
        finally:
            stop[0] = True
            if job.running:
                job.stop(wait=False)
                try:
                    job.wait(timeout=30)
                except Exception:  # noqa: BLE001 - the consumer stopped early; the job's fate is not its concern
                    pass

    def to_model_store(self, store: Any, producer: str | None = None, metadata: dict | None = None) -> "Any":
        """Publish each version of this model stream into ``store`` (``ModelStore``, ``KafkaModelStore``
        or URL), at most once per ``model_version`` across restarts; see
        :class:`~flowlearn.stream.models.ModelStoreSink`."""
        from flowlearn.stream.models import ModelStoreSink

        return ModelStoreSink(self, store, producer=producer, metadata=metadata)

    def to_kafka(self, topic: str, bootstrap_servers: str, format: str = "json", key_col: str | None = None,
                 transactional: bool = True, config: dict | None = None) -> "Any":
        """Write rows as Kafka messages (JSON or CSV payloads), transactional per checkpoint."""
        from flowlearn.stream.kafka import KafkaSink

        return KafkaSink(self, topic, bootstrap_servers, format=format, key_col=key_col,
                         transactional=transactional, config=config)


class Sink:
    """A terminal node of a plan; pass sinks to ``fl.run``. Subclasses give the node's spec."""

    def __init__(self, stream: Stream, spec: Spec, name: str) -> None:
        if not getattr(stream, "_flowlearn_stream", False):
            raise TypeError(f"a sink reads a Stream, got {type(stream).__name__}")
        self.stream = stream
        self.node = PlanNode("sink", spec, [stream.node], name=name)
        self.job: Any = None

    def uid(self, uid: str) -> "Sink":
        self.node.uid = uid
        return self

    def explain(self) -> str:
        """The plan ending in this sink (see :meth:`Stream.explain`)."""
        return explain([self.node])

    def run(self, **kwargs: Any) -> Any:
        """Shortcut for ``fl.run(self, **kwargs)`` on the current engine."""
        return current_engine().run(self, **kwargs)
