"""Event time, windows and side outputs of a Flink job of :mod:`flowlearn.engines.flink`.

- **Event time is Flink's**: at a ``with_watermarks`` node (which ``window(event_time=...)``
  adds) each record, one Arrow batch, gets the largest event time of its batch as its Flink
  timestamp (milliseconds, :func:`~flowlearn.stream.window.event_time_ms`, in the same Python
  operator as the stateless chain before it) and Flink's bounded out-of-orderness generator
  makes the watermarks: ``max_seen - max_out_of_orderness - 1 ms``, the local
  ``WatermarkAssigner``'s formula, emitted every ``pipeline.auto-watermark-interval`` (200 ms by
  default) and combined by Flink as the minimum over the parallel readers.
- **Windows** run flowlearn's own :class:`~flowlearn.stream.window.WindowOp` (count, processing or
  event time, tumbling or sliding, allowed lateness, grouped aggregates) inside a Flink keyed
  function on one key, driven by Flink's time: an event-time timer at the next window's firing
  time calls ``on_watermark`` with Flink's watermark, processing-time windows fire on
  processing-time timers, and the end of a bounded input (the ``END_OF_INPUT`` timer) calls
  ``on_end``. After every batch and timer the operator's ``snapshot_state()`` (its buffered rows)
  is written to keyed state, so Flink's checkpoints carry the open windows.
- **Side outputs** are Flink's (an ``OutputTag`` per tag, read with ``get_side_output``): a
  window's late rows (``late="side"``, ``late_data()``) and the dead letters of a files source or
  Kafka topic (``handle_invalid="skip"``, ``dead_letters()``) reach sinks like any stream.

A row is late when its window has fired at Flink's watermark when the row reaches the window.
Flink's watermark is periodic, so it trails the local engine's (which advances after every
batch): a row late on Flink is late locally; a row only a few batches behind its window's end
may be late locally and still be counted on Flink.

Example (the cut of a window and its end, without Flink):
    >>> from flowlearn.stream.window import WindowOp
    >>> op = WindowOp("event", 1.0, len, "t")
    >>> import pyarrow as pa
    >>> op.process(pa.table({"t": [0.25, 1.5]}))
    []
    >>> next_firing(op)              # the window [0 s, 1 s) fires at watermark 999 ms
    999
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import pyarrow as pa

from flowlearn.engines.flink_functions import (END_OF_INPUT, Chain, from_ipc, in_worker, one_key,
                                               outputs_and_state, restored_operator, to_ipc, with_batch_key)
from flowlearn.stream.files import FilesSourceSpec
from flowlearn.stream.kafka import KafkaSourceSpec
from flowlearn.stream.operator import MAX_WATERMARK, MIN_WATERMARK, OperatorContext
from flowlearn.stream.plan import PlanNode, SideOutputSpec, build_operator
from flowlearn.stream.window import WatermarkSpec, WindowSpec, event_time_ms

__all__ = ["TimeTranslation", "next_firing", "output_tag"]

# The side outputs translated to Flink: (spec type of the node emitting them, tag).
_SIDE_OUTPUTS = {(FilesSourceSpec, "dead_letter"), (KafkaSourceSpec, "dead_letter"), (WindowSpec, "late")}


def next_firing(op: Any) -> int | None:
    """The time (ms) at which the first unfired window of a time :class:`WindowOp` holding rows
    fires (``end - 1 + allowed_lateness``), or None when no row is buffered."""
    if not op.buffers:
        return None
    size, slide, lat = op.size_ms, op.slide_ms, op.lateness_ms
    # window k = [k*slide, k*slide + size) holds the oldest pane and has not fired yet
    k = max((min(op.buffers) - size) // slide + 1, (op.fired - lat - size + 1) // slide + 1)
    return k * slide + size - 1 + lat


class EventTimeChain:
    """A chain of stateless specs (possibly none) then the batch's Flink timestamp: each record
    becomes ``(record, largest event time of its rows in ms)``; empty batches are dropped."""

    def __init__(self, specs: list[Any], time_col: str) -> None:
        self.chain = Chain(specs) if specs else None
        self.time_col = time_col

    def __call__(self, record: bytes) -> Iterator[tuple[bytes, int]]:
        for out in (self.chain(record) if self.chain is not None else [record]):
            t = from_ipc(out)
            if t.num_rows:
                yield out, int(event_time_ms(t, self.time_col).max())


class _Sides:
    """Collects what an operator emits on its side outputs (``ctx.side``) to yield it to Flink."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.pending: list[tuple[str, pa.Table]] = []

    def __call__(self, tag: str, t: pa.Table) -> None:
        if tag in self.wanted:
            self.pending.append((tag, t))

    def drain(self, tags: dict[str, Any]) -> Iterator[tuple[Any, bytes]]:
        pending, self.pending = self.pending, []
        for tag, t in pending:
            yield tags[tag], to_ipc(t)


def output_tag(tag: str) -> Any:
    """Flink's side output ``tag`` of a stream of records (IPC bytes)."""
    from pyflink.common import Types
    from pyflink.datastream import OutputTag

    return OutputTag(tag, Types.PICKLED_BYTE_ARRAY())


def files_reader_function() -> Any:
    """The class of Flink process function that reads file ``i`` of a ``from_files`` source and
    sends its dead letters to a side output (made on first use, so this module imports without
    PyFlink)."""
    from pyflink.datastream import ProcessFunction

    class FilesWithDeadLetters(ProcessFunction):
        """The batches of file ``i``, read with the local engine's reader; the records it rejects
        (``handle_invalid="skip"``) go to the side output ``dead_letter`` when it is read."""

        def __init__(self, spec: FilesSourceSpec, paths: list[str], wanted: set[str], keyed: bool = False) -> None:
            self.spec, self.paths, self.wanted, self.keyed = spec, paths, wanted, keyed

        def open(self, runtime_context: Any) -> None:
            self.sides = _Sides(self.wanted)
            self.tags = {t: output_tag(t) for t in self.wanted}
            self.reader = build_operator(self.spec)
            self.reader.open(OperatorContext("files", side=self.sides))

        def _read(self, i: int) -> list[bytes]:
            """File ``i``'s batches (labelled with their place for a fit's rounds, ``keyed``)."""
            t = self.reader.read_table(self.paths[i])
            parts = [t.slice(start, self.spec.batch_size) for start in range(0, t.num_rows, self.spec.batch_size)]
            return [to_ipc(with_batch_key(part, i, j) if self.keyed else part) for j, part in enumerate(parts)]

        def process_element(self, i: int, ctx: Any) -> Iterator[Any]:
            records = in_worker(self._read, int(i))
            yield from self.sides.drain(self.tags)
            yield from records

    return FilesWithDeadLetters


def window_function() -> Any:
    """The class of Flink keyed function that runs a flowlearn window on one key (made on first use)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, TimeDomain
    from pyflink.datastream.state import ValueStateDescriptor

    class WindowFunction(KeyedProcessFunction):
        """A :class:`~flowlearn.stream.window.WindowOp` on Flink's time. Every batch first brings
        the operator to Flink's current watermark (so a row is late exactly when its window has
        fired by then), then goes in; an event-time timer waits for the next window's firing
        time, a processing-time timer for the next processing-time window's end; the
        ``END_OF_INPUT`` timer flushes what is left. The operator's state is written to keyed
        state after every batch and timer."""

        def __init__(self, spec: WindowSpec, uid: str, wanted: set[str]) -> None:
            self.spec, self.uid, self.wanted = spec, uid, wanted

        def open(self, runtime_context: Any) -> None:
            self.state = runtime_context.get_state(ValueStateDescriptor("window", Types.PICKLED_BYTE_ARRAY()))
            self.sides = _Sides(self.wanted)
            self.tags = {t: output_tag(t) for t in self.wanted}
            self.op: Any = None
            self.timer: int | None = None   # the window timer registered last (event or processing time)

        def _operator(self, ctx: Any) -> Any:
            if self.op is None:   # first record or timer of this worker: restore what Flink restored
                op_ctx = OperatorContext(self.uid, side=self.sides)
                op_ctx.checkpointing = True
                self.op = restored_operator(self.spec, op_ctx, self.state.value())
                ctx.timer_service().register_event_time_timer(END_OF_INPUT)
            return self.op

        def _watermark(self, ctx: Any, at_least: int = MIN_WATERMARK) -> int:
            return min(max(ctx.timer_service().current_watermark(), at_least, MIN_WATERMARK), MAX_WATERMARK)

        def _arm(self, ctx: Any) -> None:
            """A timer at the next window's firing (the previous one deleted: one pending at a time)."""
            op, ts = self.op, ctx.timer_service()
            if op.kind == "count":
                return
            due = next_firing(op)
            if due is not None and op.kind == "processing":
                due += 1   # fires once now - 1 ms reaches end - 1 + lateness
            if due == self.timer:
                return
            if self.timer is not None:
                (ts.delete_event_time_timer if op.kind == "event" else ts.delete_processing_time_timer)(self.timer)
            if due is not None:
                (ts.register_event_time_timer if op.kind == "event" else ts.register_processing_time_timer)(due)
            self.timer = due

        def _step(self, call: Any, *args: Any) -> tuple[list[bytes], bytes | None]:
            """The window's outputs of ``call(*args)`` and its state after it, as bytes."""
            return outputs_and_state(self.op, [t for t in call(*args) if t.num_rows])

        def _emit(self, ctx: Any, call: Any, *args: Any) -> Iterator[Any]:
            records, snap = in_worker(self._step, call, *args)
            self._arm(ctx)
            if snap is not None:
                self.state.update(snap)
            yield from self.sides.drain(self.tags)
            yield from records

        def _batch(self, watermark: int | None, record: bytes) -> list[pa.Table]:
            outs = self.op.on_watermark(watermark) if watermark is not None else []
            return outs + self.op.process(from_ipc(record), 0)

        def process_element(self, record: bytes, ctx: Any) -> Iterator[Any]:
            op = self._operator(ctx)
            yield from self._emit(ctx, self._batch, self._watermark(ctx) if op.kind == "event" else None, record)

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
            op = self._operator(ctx)
            if timestamp == self.timer:
                self.timer = None
            if ctx.time_domain() == TimeDomain.EVENT_TIME:
                if timestamp == END_OF_INPUT:
                    yield from self._emit(ctx, op.on_end)
                else:
                    yield from self._emit(ctx, op.on_watermark, self._watermark(ctx, timestamp))
            else:
                yield from self._emit(ctx, op.on_timer, max(time.time(), (timestamp + 0.5) / 1000.0))

    return WindowFunction


class TimeTranslation:
    """The event-time, window and side-output nodes of one plan as Flink streams (used by
    ``FlinkEngine._translate``): which side outputs the plan reads, and the Flink operators
    that emit them."""

    def __init__(self, nodes: list[PlanNode]) -> None:
        self.wanted: dict[int, set[str]] = {}    # id of a node -> the tags of its side outputs the plan reads
        self.emitters: dict[int, Any] = {}       # id of a node -> the Flink stream its side outputs come from
        for n in nodes:
            if isinstance(n.spec, SideOutputSpec):
                src = n.inputs[0]
                if (type(src.spec), n.spec.tag) not in _SIDE_OUTPUTS:
                    raise NotImplementedError(
                        f"FlinkEngine: plan node {n.name!r} (SideOutputSpec) reads the side output "
                        f"{n.spec.tag!r} of {src.name!r} ({type(src.spec).__name__}), which is not translated to "
                        f"Flink yet; the late rows of a window (late_data()) and the dead letters of from_files "
                        f"and from_kafka (dead_letters()) are (use the local engine for this plan)")
                self.wanted.setdefault(id(src), set()).add(n.spec.tag)

    def reads_side_outputs(self, n: PlanNode) -> bool:
        return id(n) in self.wanted

    def emits(self, n: PlanNode, ds: Any) -> Any:
        """``ds`` is the Flink stream whose side outputs are those of the node ``n``."""
        self.emitters[id(n)] = ds
        return ds

    def files(self, indexes: Any, n: PlanNode, paths: list[str], keyed: bool = False) -> Any:
        """Files ``indexes`` of a ``from_files`` source read with their dead letters as a side
        output (batches labelled with their place when ``keyed``: a fit's rounds)."""
        from pyflink.common import Types

        reader = files_reader_function()(n.spec, paths, self.wanted.get(id(n), set()), keyed)
        ds = indexes.process(reader, output_type=Types.PICKLED_BYTE_ARRAY()).name(n.name)
        return self.emits(n, ds)

    def watermarks(self, ds: Any, chain: list[Any], n: PlanNode, idle: float | None = None) -> Any:
        """``ds`` (then the stateless ``chain``) with Flink timestamps and bounded out-of-orderness
        watermarks; ``idle``: seconds without records after which a parallel input stops holding
        the watermark back (a stream that does not end, whose partitions or files go quiet)."""
        from pyflink.common import Duration, Types, WatermarkStrategy
        from pyflink.datastream import DataStream
        from pyflink.java_gateway import get_gateway

        spec: WatermarkSpec = n.spec
        records = Types.PICKLED_BYTE_ARRAY()
        timed = ds.flat_map(EventTimeChain(chain, spec.time_col),
                            output_type=Types.TUPLE([records, Types.LONG()])).name(n.name)
        delay = Duration.of_millis(int(round(spec.max_out_of_orderness * 1000)))
        # PyFlink's own assign_timestamps_and_watermarks with a Python assigner, minus its extra
        # Python operator: the chain above computed the timestamps, Java takes field 1 as the
        # record's timestamp, runs the bounded out-of-orderness generator and drops the field.
        j = get_gateway().jvm.org.apache.flink.streaming.api.functions.python.eventtime
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(delay)
        if idle is not None:
            strategy = strategy.with_idleness(Duration.of_millis(int(idle * 1000)))
        stamped = timed._j_data_stream.assignTimestampsAndWatermarks(
            strategy._j_watermark_strategy.withTimestampAssigner(j.CustomTimestampAssigner()))
        out = DataStream(stamped.map(j.RemoveTimestampMapFunction(), records.get_java_type_info()))
        return out.name(f"{n.name} timestamps")

    def window(self, ds: Any, n: PlanNode) -> Any:
        """A window node on one key (one task), its state in Flink's keyed state."""
        from pyflink.common import Types

        fn = window_function()(n.spec, n.uid or n.name, self.wanted.get(id(n), set()))
        out = ds.key_by(one_key, key_type=Types.INT()).process(fn, output_type=Types.PICKLED_BYTE_ARRAY()) \
            .name(n.name).set_parallelism(1)
        out = out.uid(n.uid) if n.uid else out   # a uid keeps the open windows across plan changes
        return self.emits(n, out)

    def side_output(self, n: PlanNode) -> Any:
        """The side output stream read by the side node ``n``."""
        return self.emitters[id(n.inputs[0])].get_side_output(output_tag(n.spec.tag))
