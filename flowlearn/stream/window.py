"""Event time, watermarks, and tumbling or sliding windows (count, processing time, event time).

Event time comes from a column (``timestamp`` type, or numbers in seconds). A
:class:`WatermarkAssigner` tracks the largest time seen and emits the watermark
``max_seen - max_out_of_orderness - 1ms`` (Flink's bounded out-of-orderness): it promises no
row older than that will follow. An event-time window ``[start, end)`` fires once the
watermark reaches ``end - 1ms + allowed_lateness``. A row whose window has already fired is
*late*: with ``late="drop"`` it is dropped and counted (metric ``late_rows``), with
``late="side"`` it also goes to the ``late`` side output (``windowed_result.late_data()``).
So input shuffled within ``max_out_of_orderness`` gives the same windows as sorted input.

Sliding windows (``slide=`` seconds, event or processing time) have length ``size`` and
start every ``slide`` (epoch-aligned, like Flink): a row at time ``t`` belongs to every window
``[k*slide, k*slide + size)`` holding ``t``. Rows are buffered once, in *panes* of
``gcd(size, slide)``; a firing window is the concatenation of its panes. A row is late only
when every window it belongs to has fired; a row that some fired windows missed still counts in
the others. With ``slide > size`` a row between two windows belongs to none and is dropped
(metric ``rows_outside_windows``). Tumbling windows are the case ``slide == size``.

Windows are stateful operators: their buffered rows and watermark are checkpointed as Arrow.

Example:
    >>> import flowlearn.stream as fls
    >>> s = fls.from_table({"t": [0.5, 1.5, 0.2, 2.5], "x": [1.0, 2.0, 3.0, 4.0]}, batch_size=1)
    >>> w = s.window(event_time=1.0, time_col="t", max_out_of_orderness=2.0)
    >>> w.aggregate(total=("x", "sum")).to_table().select(["total"]).to_pydict()
    {'total': [4.0, 2.0, 4.0]}
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any, Callable, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.data.table import table as to_table
from flowlearn.stream.core import Stream
from flowlearn.stream.operator import MAX_WATERMARK, MIN_WATERMARK, Operator, OperatorState
from flowlearn.stream.plan import Spec, register_operator

__all__ = ["WatermarkAssigner", "WindowOp", "WindowedStream", "event_time_ms"]

_W = "__flowlearn_window"


def event_time_ms(t: pa.Table, col: str) -> np.ndarray:
    """Event times of column ``col`` as int64 milliseconds (timestamps, or numbers in seconds)."""
    if col not in t.column_names:
        raise ValueError(f"event time column '{col}' is not in the stream; it has {t.column_names}")
    c = t.column(col)
    if c.null_count:
        raise ValueError(f"event time column '{col}' has a null at row {c.is_null().to_numpy(zero_copy_only=False).argmax()}")
    if pa.types.is_timestamp(c.type):
        return c.cast(pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(c.type) or pa.types.is_floating(c.type):
        return np.floor(c.to_numpy().astype(np.float64) * 1000.0).astype(np.int64)
    raise ValueError(f"event time column '{col}' must be a timestamp or numbers of seconds, not {c.type}")


class WatermarkAssigner(Operator):
    """Emits watermarks from the event-time column with a bounded out-of-orderness (seconds)."""

    def __init__(self, time_col: str, max_out_of_orderness: float) -> None:
        super().__init__()
        if max_out_of_orderness < 0:
            raise ValueError(f"max_out_of_orderness must be >= 0 seconds, got {max_out_of_orderness}")
        self.time_col = time_col
        self.delay = int(round(max_out_of_orderness * 1000))
        self.max_ts = MIN_WATERMARK

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if table.num_rows:
            self.max_ts = max(self.max_ts, int(event_time_ms(table, self.time_col).max()))
        return [table]

    def output_watermark(self, input_watermark: int) -> int:
        own = self.max_ts - self.delay - 1 if self.max_ts > MIN_WATERMARK else MIN_WATERMARK
        return max(own, input_watermark)

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"max_ts": self.max_ts})

    def restore_state(self, state: OperatorState) -> None:
        self.max_ts = int(state.data["max_ts"])


def _ts(ms: int) -> pa.Scalar:
    return pa.scalar(ms, pa.timestamp("ms"))


class WindowOp(Operator):
    """Tumbling or sliding windows. ``kind``: ``count`` (``size`` rows), ``processing`` or
    ``event`` (``size`` seconds, a new window every ``slide`` seconds; default ``size``:
    tumbling). ``fn(window_table) -> table`` makes each window's output; the columns
    ``window_start`` and ``window_end`` are added (timestamps; row numbers for count windows).

    Rows of time windows are kept once, in panes of ``gcd(size, slide)`` ms keyed by their start;
    the window ``[s, s + size)`` is the panes starting in it. ``fired`` is the largest limit
    windows have fired up to: a window fires once ``end - 1 + allowed_lateness <= limit`` (the
    watermark, or the processing time - 1 ms), so the unfired windows are exactly those with
    ``end - 1 + allowed_lateness > fired``."""

    def __init__(self, kind: str, size: float, fn: Callable[[pa.Table], Any], time_col: str | None = None,
                 allowed_lateness: float = 0.0, late: str = "drop", slide: float | None = None) -> None:
        super().__init__()
        self.kind, self.fn, self.time_col, self.late = kind, fn, time_col, late
        self.size_ms = int(round(size * 1000)) if kind != "count" else int(size)
        self.slide_ms = int(round(slide * 1000)) if slide is not None and kind != "count" else self.size_ms
        if self.size_ms < 1 or self.slide_ms < 1:
            raise ValueError(f"window size and slide must be at least 1 ms, got size={size}, slide={slide}")
        self.pane_ms = math.gcd(self.size_ms, self.slide_ms)
        self.lateness_ms = int(round(allowed_lateness * 1000))
        self.buffers: dict[int, list[pa.Table]] = {}  # pane start (window start when tumbling) -> row batches
        self.watermark = MIN_WATERMARK
        self.fired = MIN_WATERMARK
        self.rows_seen = 0  # count windows: rows assigned so far
        self.wants_timer = kind == "processing"

    def _out(self, start: int, end: int, t: pa.Table) -> list[pa.Table]:
        res = self.fn(t)
        if res is None:
            return []
        res = res if isinstance(res, pa.Table) else to_table(res)
        n = res.num_rows
        if self.kind == "count":
            s, e = pa.array(np.full(n, start, np.int64)), pa.array(np.full(n, end, np.int64))
        else:
            s = pa.array(np.full(n, start, np.int64)).cast(pa.timestamp("ms"))
            e = pa.array(np.full(n, end, np.int64)).cast(pa.timestamp("ms"))
        self.ctx.count("windows_fired")
        return [res.append_column("window_start", s).append_column("window_end", e)]

    def _fire(self, limit: int) -> list[pa.Table]:
        """Fire the windows with ``fired < end - 1 + lateness <= limit`` holding rows, in start order."""
        prev, self.fired = self.fired, max(self.fired, limit)
        if limit <= prev or not self.buffers:
            return []
        size, slide, lat = self.size_ms, self.slide_ms, self.lateness_ms
        panes = sorted(self.buffers)
        # window k = [k*slide, k*slide + size): the candidates hold a buffered pane and are due now
        k_lo = max((prev - lat - size + 1) // slide + 1, (panes[0] - size) // slide + 1)
        k_hi = min((limit - lat - size + 1) // slide, panes[-1] // slide)
        out = []
        for k in range(k_lo, k_hi + 1):
            start = k * slide
            a, b = bisect.bisect_left(panes, start), bisect.bisect_left(panes, start + size)
            if a == b:
                continue  # no rows in this window
            parts = [t for p in panes[a:b] for t in self.buffers[p]]
            out += self._out(start, start + size, pa.concat_tables(parts) if len(parts) > 1 else parts[0])
        # a pane is done once the last window holding it has fired
        for p in panes:
            if (p // slide) * slide + size - 1 + lat > limit:
                break
            del self.buffers[p]
        return out

    def _add(self, table: pa.Table, times: np.ndarray) -> None:
        """Buffer ``table``'s rows by pane (``times``: their times in ms)."""
        panes = times - np.mod(times, self.pane_ms)
        if len(panes) and panes.min() == panes.max():
            self.buffers.setdefault(int(panes[0]), []).append(table)
            return
        order = np.argsort(panes, kind="stable")
        uniq, first = np.unique(panes[order], return_index=True)
        bounds = list(first[1:]) + [len(order)]
        for u, a, b in zip(uniq.tolist(), first.tolist(), bounds):
            self.buffers.setdefault(u, []).append(table.take(pa.array(order[a:b])))

    def _inside(self, table: pa.Table, times: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """Drop the rows no window holds (between windows when slide > size)."""
        if self.slide_ms <= self.size_ms:
            return table, times
        inside = times // self.slide_ms - (times - self.size_ms) // self.slide_ms > 0
        if inside.all():
            return table, times
        self.ctx.count("rows_outside_windows", int((~inside).sum()))
        return table.filter(pa.array(inside)), times[inside]

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if table.num_rows == 0:
            return []
        if self.kind == "count":
            return self._process_count(table)
        if self.kind == "processing":
            now = int(self.ctx.clock() * 1000)
            table, times = self._inside(table, np.full(table.num_rows, now, np.int64))
            if table.num_rows:
                self._add(table, times)
            return self._fire(now - 1)
        ts = event_time_ms(table, self.time_col)
        table, ts = self._inside(table, ts)
        # late: the last window holding the row (the one starting at or before it) has fired
        late = ts - np.mod(ts, self.slide_ms) + self.size_ms - 1 + self.lateness_ms <= self.fired
        if late.any():
            lt = table.filter(pa.array(late))
            self.ctx.count("late_rows", lt.num_rows)
            if self.late == "side":
                self.ctx.side("late", lt)
            keep = ~late
            table, ts = table.filter(pa.array(keep)), ts[keep]
        if len(ts):
            self._add(table, ts)
        return []

    def _process_count(self, table: pa.Table) -> list[pa.Table]:
        out = []
        buffered = sum(t.num_rows for t in self.buffers.get(0, []))
        pos = 0
        while pos < table.num_rows:
            take = min(self.size_ms - buffered, table.num_rows - pos)
            self.buffers.setdefault(0, []).append(table.slice(pos, take))
            pos += take
            buffered += take
            if buffered == self.size_ms:
                parts = self.buffers.pop(0)
                out += self._out(self.rows_seen, self.rows_seen + self.size_ms, pa.concat_tables(parts))
                self.rows_seen += self.size_ms
                buffered = 0
        return out

    def on_watermark(self, watermark: int) -> list[pa.Table]:
        if self.kind != "event":
            return []
        self.watermark = max(self.watermark, watermark)
        return self._fire(self.watermark)

    def on_timer(self, now: float) -> list[pa.Table]:
        return self._fire(int(now * 1000) - 1) if self.kind == "processing" else []

    def on_end(self) -> list[pa.Table]:
        if self.kind == "count":
            parts = self.buffers.pop(0, [])
            if not parts:
                return []
            t = pa.concat_tables(parts)
            out = self._out(self.rows_seen, self.rows_seen + t.num_rows, t)
            self.rows_seen += t.num_rows
            return out
        return self._fire(MAX_WATERMARK)

    def snapshot_state(self) -> OperatorState:
        tables = {}
        parts = []
        for start, ts in self.buffers.items():
            for t in ts:
                parts.append(t.append_column(_W, pa.array(np.full(t.num_rows, start, np.int64))))
        if parts:
            tables["buffer"] = pa.concat_tables(parts)
        return OperatorState({"watermark": self.watermark, "fired": self.fired, "rows_seen": self.rows_seen,
                              "size_ms": self.size_ms, "slide_ms": self.slide_ms}, tables)

    def restore_state(self, state: OperatorState) -> None:
        d = state.data
        size, slide = int(d.get("size_ms", self.size_ms)), int(d.get("slide_ms", self.size_ms))
        if (size, slide) != (self.size_ms, self.slide_ms):
            raise ValueError(f"the checkpoint holds windows of size {size} ms sliding by {slide} ms; this plan's "
                             f"window has size {self.size_ms} ms and slide {self.slide_ms} ms: restart with the "
                             f"same windows, or give the new window another .uid(...)")
        self.watermark = int(d["watermark"])
        # older checkpoints (tumbling only) have no "fired": event windows fired up to the watermark
        self.fired = int(d.get("fired", self.watermark if self.kind == "event" else MIN_WATERMARK))
        self.rows_seen = int(d["rows_seen"])
        self.buffers = {}
        t = state.tables.get("buffer")
        if t is not None and t.num_rows:
            starts = t.column(_W).to_numpy()
            body = t.drop_columns([_W])
            for u in np.unique(starts).tolist():
                self.buffers[u] = [body.filter(pa.array(starts == u))]


_AGGS = {"sum", "mean", "min", "max", "count", "stddev", "variance", "count_distinct", "first", "last"}


class WindowedStream:
    """A stream cut into tumbling (or, with ``slide``, sliding) windows; finish with
    ``aggregate``, ``apply`` or ``tables``.

    Example:
        >>> import flowlearn.stream as fls
        >>> s = fls.from_table({"x": [1, 2, 3, 4, 5]}, batch_size=2)
        >>> s.window(count=2).aggregate(n=("x", "count"), s=("x", "sum")).to_table().select(["n", "s"]).to_pydict()
        {'n': [2, 2, 1], 's': [3, 7, 5]}
        >>> e = fls.from_table({"t": [0.5, 1.5, 2.5], "x": [1.0, 2.0, 3.0]})
        >>> sliding = e.window(event_time=2.0, slide=1.0, time_col="t")    # [-1,1) [0,2) [1,3) [2,4)
        >>> sliding.aggregate(total=("x", "sum")).to_table().select(["total"]).to_pydict()
        {'total': [1.0, 3.0, 5.0, 3.0]}
    """

    def __init__(self, stream: Stream, *, count: int | None, processing_time: float | None,
                 event_time: float | None, time_col: str | None, max_out_of_orderness: float | None,
                 allowed_lateness: float, late: str, slide: float | None = None) -> None:
        given = [k for k, v in (("count", count), ("processing_time", processing_time), ("event_time", event_time))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"window(...) needs exactly one of count=, processing_time=, event_time=; got {given}")
        if late not in ("drop", "side"):
            raise ValueError(f"window: late must be 'drop' or 'side', got {late!r}")
        size = count if count is not None else processing_time if processing_time is not None else event_time
        if size is None or size <= 0:
            raise ValueError(f"window size must be > 0, got {size}")
        self.kind = "count" if count is not None else "processing" if processing_time is not None else "event"
        if self.kind == "event" and not time_col:
            raise ValueError("an event-time window needs time_col= (the column holding event time)")
        if self.kind == "count" and int(count) != count:
            raise ValueError(f"count windows need an integer count, got {count}")
        if slide is not None:
            if self.kind == "count":
                raise ValueError("slide= is for processing_time= and event_time= windows; count windows are tumbling")
            if isinstance(slide, bool) or not isinstance(slide, (int, float)) or not slide > 0:
                raise ValueError(f"window slide must be > 0 seconds, got {slide!r}")
        if self.kind != "count":
            # windows are whole milliseconds: a size or slide that rounds to 0 ms cannot cut a stream
            for what, v in (("size", size), ("slide", slide)):
                if v is not None and int(round(v * 1000)) < 1:
                    raise ValueError(f"window {what} must be at least 0.001 seconds, got {v}")
        if self.kind == "event":
            _check_time_col(stream.schema, time_col, "window")
        self.stream, self.size, self.time_col, self.slide = stream, size, time_col, slide
        self.max_out_of_orderness = max_out_of_orderness or 0.0
        self.allowed_lateness, self.late = allowed_lateness, late

    def apply(self, fn: Callable[[pa.Table], Any], name: str = "window") -> Stream:
        """``fn(window_table) -> table`` per window; ``window_start``/``window_end`` are added."""
        src = self.stream
        if self.kind == "event":
            src = src.with_watermarks(self.time_col, self.max_out_of_orderness)
        kind, size, tc, al, late = self.kind, self.size, self.time_col, self.allowed_lateness, self.late
        slide = self.slide
        return Stream(WindowSpec(kind, size, fn, tc, al, late, slide), [src], name=name)

    def tables(self) -> Stream:
        """Each window's rows as one table (plus ``window_start``/``window_end``)."""
        return self.apply(_window_rows, "window_tables")

    def aggregate(self, by: str | list[str] | None = None, **aggs: tuple[str, str]) -> Stream:
        """One row per window (and per ``by`` key): ``name=(column, fn)`` with fn in sum, mean,
        min, max, count, stddev, variance, count_distinct, first, last."""
        for name, spec in aggs.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and spec[1] in _AGGS):
                raise ValueError(f"aggregate {name}={spec!r}: expected (column, fn) with fn in {sorted(_AGGS)}")
        keys = [by] if isinstance(by, str) else list(by or [])
        _check_aggregate(self.stream.schema, keys, aggs)
        agg = WindowAggregate(tuple(keys), tuple((n, c, f) for n, (c, f) in aggs.items()))
        return self.apply(agg, "window_aggregate")


_NUMERIC_AGGS = ("sum", "mean", "stddev", "variance")


def _check_aggregate(schema: pa.Schema | None, keys: list[str], aggs: dict) -> None:
    """Refuse, when the plan is built, an aggregation of a column the stream does not have (or a
    numeric aggregation of a column that is not numeric), naming the operator and the column."""
    if schema is None:
        return
    for k in keys:
        if k not in schema.names:
            raise ValueError(f"window aggregate: the key column '{k}' (by=) is not in the stream; it has "
                             f"{schema.names}")
    for name, (col, fn) in aggs.items():
        if col not in schema.names:
            raise ValueError(f"window aggregate {name}=({col!r}, {fn!r}): column '{col}' is not in the stream; it "
                             f"has {schema.names}")
        t = schema.field(col).type
        if fn in _NUMERIC_AGGS and not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            raise ValueError(f"window aggregate {name}=({col!r}, {fn!r}): column '{col}' has type {t}; {fn} needs a "
                             f"numeric column")


def _check_time_col(schema: pa.Schema | None, time_col: str, op: str) -> None:
    if schema is None:
        return
    if time_col not in schema.names:
        raise ValueError(f"{op}: the time column '{time_col}' (time_col=) is not in the stream; it has {schema.names}")
    t = schema.field(time_col).type
    if not (pa.types.is_timestamp(t) or pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise ValueError(f"{op}: the time column '{time_col}' has type {t}; event time is a timestamp or a number "
                         f"of seconds")


def _window_rows(t: pa.Table) -> pa.Table:
    return t


@dataclasses.dataclass(frozen=True)
class WindowAggregate:
    """A window's aggregation as plain values: ``(name, column, fn)`` per output column, grouped by ``keys``."""

    keys: tuple[str, ...]
    aggregations: tuple[tuple[str, str, str], ...]

    def __call__(self, t: pa.Table) -> pa.Table:
        if self.keys:
            g = t.group_by(list(self.keys), use_threads=False).aggregate([(c, f) for _, c, f in self.aggregations])
            names = {f"{c}_{f}": n for n, c, f in self.aggregations}
            return g.rename_columns([names.get(x, x) for x in g.column_names])
        return pa.table({n: [getattr(pc, f)(t.column(c)).as_py()] for n, c, f in self.aggregations})


@dataclasses.dataclass(frozen=True, eq=False)
class WatermarkSpec(Spec):
    """Watermarks from ``time_col`` with a bounded out-of-orderness (seconds)."""

    time_col: str
    max_out_of_orderness: float
    state: ClassVar[str] = "the highest event time seen"


@dataclasses.dataclass(frozen=True, eq=False)
class WindowSpec(Spec):
    """Windows of ``kind`` ``count`` / ``processing`` / ``event``; ``fn`` makes each window's output."""

    kind: str
    size: float
    fn: Callable[[pa.Table], Any]
    time_col: str | None
    allowed_lateness: float
    late: str
    slide: float | None
    state: ClassVar[str] = "open windows' rows"


register_operator(WatermarkSpec, lambda s: WatermarkAssigner(s.time_col, s.max_out_of_orderness))
register_operator(WindowSpec, lambda s: WindowOp(s.kind, s.size, s.fn, s.time_col, s.allowed_lateness, s.late,
                                                 s.slide))
