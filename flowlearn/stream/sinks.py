"""Sinks: ``collect``, ``foreach`` and ``to_files`` (rolling files committed atomically).

The file sink is exactly-once with checkpoints: rows go to hidden in-progress files under
``<path>/.inprogress/``; a checkpoint closes them (pre-commit) and records them in the
sink's state; once the checkpoint is durable they are renamed to ``<prefix>-<NNNNNN>.<ext>``.
After a crash, files recorded in the restored checkpoint are committed and every other
in-progress file of this sink (its prefix and format) is deleted, so the committed files hold
each row exactly once; sinks with different prefixes may share a directory. Without a
checkpoint directory, files are committed when they roll and when the stream ends.

Example:
    >>> import flowlearn as fl, flowlearn.stream as fls, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> sink = fls.from_table({"x": [1, 2, 3]}, batch_size=2).to_files(d, format="csv")
    >>> _ = sink.run().wait()
    >>> sorted(os.listdir(d))
    ['.inprogress', 'part-000000.csv']
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import uuid
from typing import Any, Callable, ClassVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from flowlearn.stream.core import Sink, Stream
from flowlearn.stream.operator import Operator, OperatorState
from flowlearn.stream.plan import Spec, current_engine, register_operator

__all__ = ["CollectSink", "ForeachSink", "FileSink"]

log = logging.getLogger(__name__)

EXTENSIONS = {"parquet": "parquet", "csv": "csv", "json": "jsonl"}


@dataclasses.dataclass(frozen=True, eq=False)
class CollectSpec(Spec):
    """Keep every batch; the engine hands them back as Arrow tables (``Job.collected(sink)``)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ForeachSpec(Spec):
    """Call ``fn(table)`` for every batch."""

    fn: Callable[[pa.Table], None]


@dataclasses.dataclass(frozen=True, eq=False)
class FilesSinkSpec(Spec):
    """Rolling files under ``path`` (see ``Stream.to_files``)."""

    path: str
    format: str
    rolling_rows: int
    rolling_seconds: float | None
    prefix: str
    state: ClassVar[str] = "pending files (two-phase commit)"

    @property
    def file_identity(self) -> tuple[str, str]:
        """What two file sinks must not share: the directory and the file name prefix."""
        return os.path.abspath(self.path), self.prefix


class _CollectOp(Operator):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[pa.Table] = []

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        self.tables.append(table)
        return []


class CollectSink(Sink):
    """Keeps every batch in memory. ``result()`` returns them as one table.

    Example:
        >>> import flowlearn.stream as fls
        >>> fls.from_table({"x": [1, 2]}).collect().result().num_rows
        2
    """

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream, CollectSpec(), "collect")

    def tables(self, engine: Any = None) -> list[pa.Table]:
        """The batches as they arrived (each with its own schema metadata: one model version per
        batch of a model stream), running a bounded plan first (on ``engine``, by default the
        current one) if it has not run."""
        if self.job is None:
            if not self.stream.bounded:
                raise ValueError("collect().result() on an unbounded stream would never finish; start it with "
                                 "fl.run(sink) and stop the job, or bound the source")
            (engine or current_engine()).run(self).wait()
        return self.job.collected(self)

    def result(self, engine: Any = None) -> pa.Table:
        """The batches as one table (see :meth:`tables`)."""
        tables = self.tables(engine)
        if not tables:
            sch = self.stream.schema
            return sch.empty_table() if sch is not None else pa.table({})
        return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


class _ForeachOp(Operator):
    def __init__(self, fn: Callable[[pa.Table], None]) -> None:
        super().__init__()
        self.fn = fn

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        self.fn(table)
        return []


class ForeachSink(Sink):
    """Calls ``fn(table)`` for every batch (at-least-once after a restart)."""

    def __init__(self, stream: Stream, fn: Callable[[pa.Table], None]) -> None:
        super().__init__(stream, ForeachSpec(fn), "foreach")
        self.fn = fn


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FormatFile:
    """One output file in ``format`` (``parquet``, ``csv`` or ``json`` lines) at ``path``:
    ``write_table`` appends rows, ``close`` flushes, fsyncs and closes it."""

    def __init__(self, path: str, format: str, sample: pa.Table) -> None:
        self.format = format
        self.file = open(path, "wb")
        self.writer: Any = None
        if format == "parquet":
            self.writer = pq.ParquetWriter(self.file, sample.schema)
        elif format == "csv":
            self.writer = pacsv.CSVWriter(self.file, _text_schema(sample))

    def write_table(self, table: pa.Table) -> None:
        if self.format == "parquet":
            self.writer.write_table(table)
        elif self.format == "csv":
            from flowlearn.data.io import _rows_as_text

            self.writer.write_table(_rows_as_text(table))
        else:
            from flowlearn.data.io import _json_lines

            self.file.write(b"".join(_json_lines(table)))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def abandon(self) -> None:
        """Close without the fsync (the file is about to be deleted or replayed)."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            self.file.close()


class _FileWriterOp(Operator):
    def __init__(self, path: str, format: str, rolling_rows: int, rolling_seconds: float | None, prefix: str) -> None:
        super().__init__()
        if format not in EXTENSIONS:
            raise ValueError(f"to_files: format must be one of {sorted(EXTENSIONS)}, got {format!r}")
        self.path, self.format, self.prefix = path, format, prefix
        self.rolling_rows, self.rolling_seconds = rolling_rows, rolling_seconds
        self.inprogress = os.path.join(path, ".inprogress")
        self.counter = 0
        self.token = uuid.uuid4().hex[:12]
        self._file: FormatFile | None = None
        self._cur: tuple[str, str] | None = None
        self._rows = 0
        self._opened_at = 0.0
        self.pending: list[tuple[str, str]] = []
        self._by_checkpoint: dict[int, list[tuple[str, str]]] = {}
        self._snap_pending: list[tuple[str, str]] = []

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        os.makedirs(self.inprogress, exist_ok=True)

    def _start(self, sample: pa.Table) -> None:
        final = f"{self.prefix}-{self.counter:06d}.{EXTENSIONS[self.format]}"
        tmp = os.path.join(self.inprogress, f"{final}.{self.token}.tmp")
        self.counter += 1
        self._file = FormatFile(tmp, self.format, sample)
        self._cur = (tmp, final)
        self._rows = 0
        self._opened_at = self.ctx.clock()

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if table.num_rows == 0:
            return []
        if self._file is None:
            self._start(table)
        self._file.write_table(table)
        self._rows += table.num_rows
        self.ctx.count("rows_written", table.num_rows)
        if self._rows >= self.rolling_rows:
            self._roll()
        return []

    def on_timer(self, now: float) -> list[pa.Table]:
        if self._file is not None and self.rolling_seconds and now - self._opened_at >= self.rolling_seconds:
            self._roll()
            if not self.ctx.checkpointing:
                self._commit(self.pending)
                self.pending = []
        return []

    @property
    def wants_timer(self) -> bool:  # type: ignore[override]
        return bool(self.rolling_seconds)

    def _roll(self) -> None:
        if self._file is None:
            return
        self._file.close()
        self.pending.append(self._cur)
        self._file = self._cur = None
        if not self.ctx.checkpointing:
            self._commit(self.pending)
            self.pending = []

    def _commit(self, files: list[tuple[str, str]]) -> None:
        for tmp, final in files:
            dst = os.path.join(self.path, final)
            if os.path.exists(tmp):
                os.replace(tmp, dst)
                self.ctx.count("files_committed")
            elif not os.path.exists(dst):
                log.error("to_files: in-progress file %s vanished before it could be committed as %s", tmp, dst)
        if files:
            fsync_dir(self.path)

    def snapshot_state(self) -> OperatorState:
        self._roll()  # pre-commit: every row so far is in a closed file
        self._snap_pending = list(self.pending)
        self.pending = []
        return OperatorState({"counter": self.counter, "pending": [list(p) for p in self._snap_pending]})

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self._commit(self._snap_pending)
        self._snap_pending = []

    def restore_state(self, state: OperatorState) -> None:
        pending = [tuple(p) for p in state.data.get("pending", [])]
        self._commit(pending)  # idempotent: finish a commit a crash may have interrupted
        self.counter = int(state.data.get("counter", 0))
        keep = {os.path.basename(t) for t, _ in pending}
        # only this sink's files: another sink writing to the same path restores (and commits) its own
        mine = re.compile(rf"{re.escape(self.prefix)}-\d{{6,}}\.{EXTENSIONS[self.format]}\.[0-9a-f]{{12}}\.tmp")
        for name in os.listdir(self.inprogress):
            if name not in keep and mine.fullmatch(name):
                os.remove(os.path.join(self.inprogress, name))  # written after the checkpoint: replayed
                self.ctx.count("uncommitted_files_discarded")

    def on_end(self) -> list[pa.Table]:
        self._roll()
        return []

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.abandon()   # an in-progress file: a restart discards or replays it
            except Exception:  # noqa: BLE001
                pass


def _text_schema(t: pa.Table) -> pa.Schema:
    from flowlearn.data.io import _rows_as_text

    return _rows_as_text(t.slice(0, 0)).schema


class FileSink(Sink):
    """Rolling files (``parquet``, ``csv`` or ``json`` lines) under ``path``, committed atomically."""

    def __init__(self, stream: Stream, path: str, format: str = "parquet", rolling_rows: int = 1_000_000,
                 rolling_seconds: float | None = None, prefix: str = "part") -> None:
        if format not in EXTENSIONS:
            raise ValueError(f"to_files: format must be one of {sorted(EXTENSIONS)}, got {format!r}")
        super().__init__(stream, FilesSinkSpec(path, format, rolling_rows, rolling_seconds, prefix),
                         f"to_files({path})")


register_operator(CollectSpec, lambda s: _CollectOp())
register_operator(ForeachSpec, lambda s: _ForeachOp(s.fn))
register_operator(FilesSinkSpec, lambda s: _FileWriterOp(s.path, s.format, s.rolling_rows, s.rolling_seconds,
                                                         s.prefix))
