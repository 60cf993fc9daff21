"""Event time, watermarks and tumbling windows (count, processing time, event time).

Event time comes from a column (``timestamp`` type, or numbers in seconds). A
:class:`WatermarkAssigner` tracks the largest time seen and emits the watermark
``max_seen - max_out_of_orderness - 1ms`` (Flink's bounded out-of-orderness): it promises no
row older than that will follow. An event-time window ``[start, end)`` fires once the
watermark reaches ``end - 1ms + allowed_lateness``. A row whose window has already fired is
*late*: with ``late="drop"`` it is dropped and counted (metric ``late_rows``), with
``late="side"`` it also goes to the ``late`` side output (``windowed_result.late_data()``).
So input shuffled within ``max_out_of_orderness`` gives the same windows as sorted input.

Windows are stateful operators: their buffered rows and watermark are checkpointed as Arrow.

Example:
    >>> import flowlearn.stream as fls
    >>> s = fls.from_table({"t": [0.5, 1.5, 0.2, 2.5], "x": [1.0, 2.0, 3.0, 4.0]}, batch_size=1)
    >>> w = s.window(event_time=1.0, time_col="t", max_out_of_orderness=2.0)
    >>> w.aggregate(total=("x", "sum")).to_table().select(["total"]).to_pydict()
    {'total': [4.0, 2.0, 4.0]}
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.data.table import table as to_table
from flowlearn.stream.core import Stream
from flowlearn.stream.operator import MAX_WATERMARK, MIN_WATERMARK, Operator, OperatorState

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
    """Tumbling windows. ``kind``: ``count`` (``size`` rows), ``processing`` or ``event``
    (``size`` seconds). ``fn(window_table) -> table`` makes each window's output; the columns
    ``window_start`` and ``window_end`` are added (timestamps; row numbers for count windows)."""

    def __init__(self, kind: str, size: float, fn: Callable[[pa.Table], Any], time_col: str | None = None,
                 allowed_lateness: float = 0.0, late: str = "drop") -> None:
        super().__init__()
        self.kind, self.fn, self.time_col, self.late = kind, fn, time_col, late
        self.size_ms = int(round(size * 1000)) if kind != "count" else int(size)
        self.lateness_ms = int(round(allowed_lateness * 1000))
        self.buffers: dict[int, list[pa.Table]] = {}
        self.watermark = MIN_WATERMARK
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
        out = []
        for start in sorted(k for k in self.buffers if k + self.size_ms - 1 + self.lateness_ms <= limit):
            parts = self.buffers.pop(start)
            out += self._out(start, start + self.size_ms, pa.concat_tables(parts) if len(parts) > 1 else parts[0])
        return out

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if table.num_rows == 0:
            return []
        if self.kind == "count":
            return self._process_count(table)
        if self.kind == "processing":
            now = int(self.ctx.clock() * 1000)
            start = now - now % self.size_ms
            self.buffers.setdefault(start, []).append(table)
            return self._fire(now - 1)
        ts = event_time_ms(table, self.time_col)
        starts = ts - np.mod(ts, self.size_ms)
        late = starts + self.size_ms - 1 + self.lateness_ms <= self.watermark
        if late.any():
            lt = table.filter(pa.array(late))
            self.ctx.count("late_rows", lt.num_rows)
            if self.late == "side":
                self.ctx.side("late", lt)
            keep = ~late
            table, starts = table.filter(pa.array(keep)), starts[keep]
        if len(starts) == 0:
            return []
        order = np.argsort(starts, kind="stable")
        sorted_starts = starts[order]
        uniq, first = np.unique(sorted_starts, return_index=True)
        bounds = list(first[1:]) + [len(order)]
        for u, a, b in zip(uniq.tolist(), first.tolist(), bounds):
            self.buffers.setdefault(u, []).append(table.take(pa.array(order[a:b])))
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
        return OperatorState({"watermark": self.watermark, "rows_seen": self.rows_seen}, tables)

    def restore_state(self, state: OperatorState) -> None:
        self.watermark = int(state.data["watermark"])
        self.rows_seen = int(state.data["rows_seen"])
        self.buffers = {}
        t = state.tables.get("buffer")
        if t is not None and t.num_rows:
            starts = t.column(_W).to_numpy()
            body = t.drop_columns([_W])
            for u in np.unique(starts).tolist():
                self.buffers[u] = [body.filter(pa.array(starts == u))]


_AGGS = {"sum", "mean", "min", "max", "count", "stddev", "variance", "count_distinct", "first", "last"}


class WindowedStream:
    """A stream cut into tumbling windows; finish with ``aggregate``, ``apply`` or ``tables``.

    Example:
        >>> import flowlearn.stream as fls
        >>> s = fls.from_table({"x": [1, 2, 3, 4, 5]}, batch_size=2)
        >>> s.window(count=2).aggregate(n=("x", "count"), s=("x", "sum")).to_table().select(["n", "s"]).to_pydict()
        {'n': [2, 2, 1], 's': [3, 7, 5]}
    """

    def __init__(self, stream: Stream, *, count: int | None, processing_time: float | None,
                 event_time: float | None, time_col: str | None, max_out_of_orderness: float | None,
                 allowed_lateness: float, late: str) -> None:
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
        self.stream, self.size, self.time_col = stream, size, time_col
        self.max_out_of_orderness = max_out_of_orderness or 0.0
        self.allowed_lateness, self.late = allowed_lateness, late

    def apply(self, fn: Callable[[pa.Table], Any], name: str = "window") -> Stream:
        """``fn(window_table) -> table`` per window; ``window_start``/``window_end`` are added."""
        src = self.stream
        if self.kind == "event":
            src = src.with_watermarks(self.time_col, self.max_out_of_orderness)
        kind, size, tc, al, late = self.kind, self.size, self.time_col, self.allowed_lateness, self.late
        return Stream(lambda: WindowOp(kind, size, fn, tc, al, late), [src], name=name, schema=None)

    def tables(self) -> Stream:
        """Each window's rows as one table (plus ``window_start``/``window_end``)."""
        return self.apply(lambda t: t, "window_tables")

    def aggregate(self, by: str | list[str] | None = None, **aggs: tuple[str, str]) -> Stream:
        """One row per window (and per ``by`` key): ``name=(column, fn)`` with fn in sum, mean,
        min, max, count, stddev, variance, count_distinct, first, last."""
        for name, spec in aggs.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and spec[1] in _AGGS):
                raise ValueError(f"aggregate {name}={spec!r}: expected (column, fn) with fn in {sorted(_AGGS)}")
        keys = [by] if isinstance(by, str) else list(by or [])

        def agg(t: pa.Table) -> pa.Table:
            if keys:
                g = t.group_by(keys, use_threads=False).aggregate([(c, f) for c, f in aggs.values()])
                return g.rename_columns([{f"{c}_{f}": n for n, (c, f) in aggs.items()}.get(x, x)
                                         for x in g.column_names])
            return pa.table({n: [getattr(pc, f)(t.column(c)).as_py()] for n, (c, f) in aggs.items()})
        return self.apply(agg, "window_aggregate")
