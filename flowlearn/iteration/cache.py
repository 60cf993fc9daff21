"""The replay cache: record batches kept in memory up to a byte budget, then spilled to
Arrow IPC files in a temporary directory and read back memory-mapped (zero-copy)."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc

from flowlearn.iteration.streams import BatchStream

__all__ = ["MemoryBudget", "DataCache", "DataSource", "DEFAULT_CACHE_BUDGET_BYTES"]

log = logging.getLogger("flowlearn.iteration")

DEFAULT_CACHE_BUDGET_BYTES = 512 * 2**20


class MemoryBudget:
    """Bytes of cached batches an iteration may hold in memory (shared by its data streams)
    and the temporary directory its caches spill into."""

    def __init__(self, limit_bytes: int, spill_dir: str | None = None) -> None:
        if limit_bytes < 0:
            raise ValueError(f"cache_budget_bytes must be >= 0, got {limit_bytes}")
        self.limit = int(limit_bytes)
        self.used = 0
        self.spilled_bytes = 0
        self._parent = spill_dir
        self._dir: str | None = None
        self._files = 0

    def try_reserve(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n

    def new_spill_path(self) -> str:
        if self._dir is None:
            if self._parent is not None:
                os.makedirs(self._parent, exist_ok=True)
            self._dir = tempfile.mkdtemp(prefix="flowlearn-iteration-", dir=self._parent)
        self._files += 1
        return os.path.join(self._dir, f"segment-{self._files:06d}.arrow")

    @property
    def spill_directory(self) -> str | None:
        return self._dir

    def cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class _SpillSegment:
    __slots__ = ("path", "schema", "writer", "sink", "reader", "num_batches")

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.sink = pa.OSFile(path, "wb")
        self.writer = ipc.new_file(self.sink, schema)
        self.reader = None
        self.num_batches = 0

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
            self.writer = None
            self.sink = None

    def get(self, i: int) -> pa.RecordBatch:
        if self.reader is None:
            self.finish()
            self.reader = ipc.open_file(pa.memory_map(self.path, "r"))
        return self.reader.get_batch(i)


class DataCache:
    """An append-only list of record batches: in memory while the budget allows, then spilled.

    Batches keep their order and boundaries; reading a spilled batch is a memory-mapped,
    zero-copy read of an Arrow IPC file.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._locs: list[tuple[Any, int]] = []  # (list | _SpillSegment, index)
        self._mem: list[pa.RecordBatch] | None = None
        self._spill: _SpillSegment | None = None
        self._spilling = False
        self._reserved = 0
        self.schema: pa.Schema | None = None
        self.num_rows = 0

    def __len__(self) -> int:
        return len(self._locs)

    def append(self, batch: pa.RecordBatch) -> None:
        if self.schema is None:
            self.schema = batch.schema
        self.num_rows += batch.num_rows
        n = batch.nbytes
        if not self._spilling and self._budget.try_reserve(n):
            self._reserved += n
            if self._mem is None:
                self._mem = []
            self._mem.append(batch)
            self._locs.append((self._mem, len(self._mem) - 1))
            return
        self._spilling = True  # memory is full: everything after this goes to disk, in order
        self._mem = None
        seg = self._spill
        if seg is None or seg.writer is None or not seg.schema.equals(batch.schema):
            if seg is not None:
                seg.finish()
            seg = self._spill = _SpillSegment(self._budget.new_spill_path(), batch.schema)
            log.debug("iteration cache spilling to %s", seg.path)
        seg.writer.write_batch(batch)
        self._locs.append((seg, seg.num_batches))
        seg.num_batches += 1
        self._budget.spilled_bytes += n

    def get(self, i: int) -> pa.RecordBatch:
        where, j = self._locs[i]
        if isinstance(where, list):
            return where[j]
        return where.get(j)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        i = 0
        while i < len(self._locs):  # re-checks the length: appends during iteration are seen
            yield self.get(i)
            i += 1

    @property
    def spilled(self) -> bool:
        return self._spilling

    def close(self) -> None:
        for where, _ in self._locs:
            if isinstance(where, _SpillSegment):
                where.finish()
        self._locs = []
        self._mem = None
        self._budget.release(self._reserved)
        self._reserved = 0


def _is_materialized(value: Any) -> bool:
    return isinstance(value, (pa.Table, pa.RecordBatch, BatchStream)) or (
        isinstance(value, (list, tuple)) and all(isinstance(b, pa.RecordBatch) for b in value)
    )


class DataSource:
    """One data stream of a bounded iteration, replayed or not.

    Tables, batches, lists of batches and ``BatchStream`` s are already in memory: they are
    referenced (never copied, never counted against the budget) and re-read each round when
    replayed. Any other iterable is read once: when replayed, through a :class:`DataCache`
    filled during round 0 (the body reads the source lazily while it is being cached).
    """

    def __init__(self, value: Any, replay: bool, budget: MemoryBudget, index: int) -> None:
        self.replay = replay
        self.index = index
        self._cache: DataCache | None = None
        self._source: Iterator[pa.RecordBatch] | None = None
        self._done = False
        self._read_started = False
        self._pending: list[pa.RecordBatch] = []  # pulled by a schema peek, not yet read
        if _is_materialized(value):
            if isinstance(value, BatchStream):
                self._fixed: Any = value
                self.schema = value._schema
            else:
                from flowlearn.iteration.streams import to_batches

                self._fixed, self.schema = to_batches(value)
        else:
            from flowlearn.data.table import is_table_like, table as to_table

            if is_table_like(value):
                t = to_table(value)
                self._fixed, self.schema = t.to_batches(), t.schema
            elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
                self._fixed = None
                self.schema = None
                self._source = iter(value)
                if replay:
                    self._cache = DataCache(budget)
            else:
                raise TypeError(
                    f"data[{index}]: expected a pyarrow Table, RecordBatch, list of RecordBatches, "
                    f"BatchStream or an iterable of RecordBatches, got {type(value).__name__}"
                )

    # -- the one-shot source ------------------------------------------------------------
    def _pull(self) -> pa.RecordBatch | None:
        if self._done:
            return None
        try:
            b = next(self._source)  # type: ignore[arg-type]
        except StopIteration:
            self._done = True
            return None
        if isinstance(b, pa.Table):
            raise TypeError(f"data[{self.index}]: iterate record batches, not tables (use table.to_batches())")
        if not isinstance(b, pa.RecordBatch):
            raise TypeError(f"data[{self.index}]: expected pyarrow RecordBatches, got {type(b).__name__}")
        if self.schema is None:
            self.schema = b.schema
        if self._cache is not None:
            self._cache.append(b)
        return b

    def _tee(self) -> Iterator[pa.RecordBatch]:
        # Round 0 of a replayed one-shot source: yield cached batches first (when another
        # reader pulled further), then pull, cache and yield new ones.
        cache = self._cache
        pos = 0
        while True:
            if pos < len(cache):  # type: ignore[arg-type]
                yield cache.get(pos)  # type: ignore[union-attr]
                pos += 1
                continue
            b = self._pull()
            if b is None:
                return
            pos += 1
            yield b

    def _once(self) -> Iterator[pa.RecordBatch]:
        if self._read_started:
            raise RuntimeError(
                f"data[{self.index}] is a not-replayed iterator and has already been read in round 0; "
                f"read it once, or pass replay=True (cached) or a table"
            )
        self._read_started = True
        while self._pending:
            yield self._pending.pop(0)
        while True:
            b = self._pull()
            if b is None:
                return
            yield b

    def peek_schema(self) -> pa.Schema | None:
        if self.schema is None and not self._done:
            b = self._pull()
            if b is not None and self._cache is None:
                self._pending.append(b)
        return self.schema

    # -- per round ----------------------------------------------------------------------
    def stream_for(self, epoch: int, scope: Any) -> BatchStream:
        if epoch > 0 and not self.replay:
            return BatchStream([], schema=self.schema, epoch=epoch, scope=scope)
        if self._fixed is not None:
            if isinstance(self._fixed, BatchStream):
                fixed = self._fixed
                return BatchStream(factory=lambda: iter(fixed), schema=self.schema, epoch=epoch, scope=scope)
            return BatchStream(self._fixed, schema=self.schema, epoch=epoch, scope=scope)
        if epoch == 0:
            factory = self._tee if self.replay else self._once
            return BatchStream(factory=factory, schema=self.schema, epoch=epoch, scope=scope,
                               schema_fn=self.peek_schema)
        cache = self._cache
        assert cache is not None
        return BatchStream(factory=lambda: iter(cache), schema=self.schema, epoch=epoch, scope=scope)

    def end_round(self, epoch: int) -> None:
        if epoch != 0:
            return
        if self._cache is not None:
            while self._pull() is not None:  # cache what the body did not read in round 0
                pass
            if self._cache.spilled:
                log.debug("data[%d]: %d batches cached, part spilled to disk", self.index, len(self._cache))
        elif not self.replay:
            self._fixed = None  # only round 0 sees not-replayed data
            self._source = None

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
