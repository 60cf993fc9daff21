"""The source interface and the in-memory sources: ``from_table``, ``from_iterable``, ``generate``.

A :class:`Source` is an :class:`~flowlearn.stream.operator.Operator` with no inputs that the
engine polls. Its checkpointed state is its offset (rows emitted, files read, Kafka offsets).

Example:
    >>> import flowlearn.stream as fls
    >>> s = fls.from_table({"x": [1, 2, 3]}, batch_size=2)
    >>> s.collect().result().to_pydict()
    {'x': [1, 2, 3]}
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any, Callable, ClassVar, Iterable

import pyarrow as pa

from flowlearn.data.table import table as to_table
from flowlearn.stream.operator import Operator, OperatorState
from flowlearn.stream.plan import Spec, register_operator

__all__ = ["Source", "TableSource", "IterableSource", "GenerateSource", "TableSourceSpec", "IterableSourceSpec",
           "GenerateSpec", "UserSourceSpec"]


class Source(Operator):
    """A source: ``poll(max_rows)`` returns a list of tables (empty when nothing is ready now),
    ``finished()`` says whether a bounded source is exhausted, ``lag()`` how much is waiting."""

    bounded: bool = True

    def poll(self, max_rows: int) -> list[pa.Table]:
        raise NotImplementedError

    def finished(self) -> bool:
        return False

    def lag(self) -> int | None:
        return None


class TableSource(Source):
    """Emits a table in slices of ``batch_size`` rows (zero copy); offset = rows emitted."""

    def __init__(self, t: pa.Table, batch_size: int) -> None:
        super().__init__()
        self.t = t
        self.batch_size = batch_size
        self.pos = 0

    def poll(self, max_rows: int) -> list[pa.Table]:
        if self.pos >= self.t.num_rows:
            return []
        n = min(self.batch_size, self.t.num_rows - self.pos)
        out = self.t.slice(self.pos, n)
        self.pos += n
        return [out]

    def finished(self) -> bool:
        return self.pos >= self.t.num_rows

    def lag(self) -> int:
        return self.t.num_rows - self.pos

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"pos": self.pos})

    def restore_state(self, state: OperatorState) -> None:
        self.pos = int(state.data["pos"])


class IterableSource(Source):
    """Emits the items of an iterable (each a table, record batch, dict of columns or row dict
    list). Restoring skips the items already emitted, so pass a re-iterable (a list) or a
    factory ``lambda: iter(...)`` for resumable jobs."""

    def __init__(self, items: Iterable[Any] | Callable[[], Iterable[Any]], schema: pa.Schema | None) -> None:
        super().__init__()
        self.items = items
        self.schema = schema
        self.pos = 0
        self._it = None
        self._done = False

    def _iter(self):
        if self._it is None:
            src = self.items() if callable(self.items) else self.items
            self._it = itertools.islice(iter(src), self.pos, None)
        return self._it

    def poll(self, max_rows: int) -> list[pa.Table]:
        if self._done:
            return []
        try:
            item = next(self._iter())
        except StopIteration:
            self._done = True
            return []
        self.pos += 1
        return [to_table(item, self.schema)]

    def finished(self) -> bool:
        return self._done

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"pos": self.pos})

    def restore_state(self, state: OperatorState) -> None:
        self.pos = int(state.data["pos"])
        self._it = None


class GenerateSource(Source):
    """Calls ``fn(batch_index)`` for each batch; ``None`` ends the stream. With ``rate`` (rows/s)
    batches are paced; ``count`` bounds the number of batches."""

    def __init__(self, fn: Callable[[int], Any], schema: pa.Schema | None, count: int | None,
                 interval: float | None) -> None:
        super().__init__()
        self.fn = fn
        self.schema = schema
        self.count = count
        self.interval = interval
        self.bounded = count is not None
        self.pos = 0
        self._next_at = 0.0
        self._done = False

    def poll(self, max_rows: int) -> list[pa.Table]:
        if self._done or (self.count is not None and self.pos >= self.count):
            self._done = True
            return []
        if self.interval:
            now = time.monotonic()
            if now < self._next_at:
                return []
            self._next_at = max(now, self._next_at) + self.interval
        item = self.fn(self.pos)
        if item is None:
            self._done = True
            return []
        self.pos += 1
        return [to_table(item, self.schema)]

    def finished(self) -> bool:
        return self._done

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"pos": self.pos})

    def restore_state(self, state: OperatorState) -> None:
        self.pos = int(state.data["pos"])


@dataclasses.dataclass(frozen=True, eq=False)
class TableSourceSpec(Spec):
    """The rows of ``table`` in slices of ``batch_size`` rows."""

    table: pa.Table
    batch_size: int
    state: ClassVar[str] = "offset"

    def describe(self) -> dict[str, Any]:
        return {"rows": self.table.num_rows, "batch_size": self.batch_size}


@dataclasses.dataclass(frozen=True, eq=False)
class IterableSourceSpec(Spec):
    """The items of ``items`` (or of ``items()``), one batch each, read with ``schema``."""

    items: Any
    schema: pa.Schema | None
    state: ClassVar[str] = "offset"


@dataclasses.dataclass(frozen=True, eq=False)
class GenerateSpec(Spec):
    """``fn(0), fn(1), ...``, ``count`` batches at most, one every ``interval`` seconds."""

    fn: Callable[[int], Any]
    schema: pa.Schema | None
    count: int | None
    interval: float | None
    state: ClassVar[str] = "offset"


@dataclasses.dataclass(frozen=True, eq=False)
class UserSourceSpec(Spec):
    """A user :class:`Source` made by ``make()`` for each run."""

    make: Callable[[], Source]
    state: ClassVar[str] = "the source's snapshot_state()"


register_operator(TableSourceSpec, lambda s: TableSource(s.table, s.batch_size))
register_operator(IterableSourceSpec, lambda s: IterableSource(s.items, s.schema))
register_operator(GenerateSpec, lambda s: GenerateSource(s.fn, s.schema, s.count, s.interval))
register_operator(UserSourceSpec, lambda s: s.make())
