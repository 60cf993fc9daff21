"""``BatchStream``: one round's view of a stream of Arrow record batches.

Every record in a round's stream carries that round's epoch, so the epoch lives on the
stream (``stream.epoch``) rather than on each batch. A ``BatchStream`` is re-iterable within
its round (except a not-replayed one-shot source, which can be read once).
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from flowlearn.iteration.engine import _Round

__all__ = ["BatchStream", "END_EPOCH", "StreamLike"]

#: The epoch of records emitted from ``on_iteration_terminated`` (Flink ML uses Integer.MAX_VALUE).
END_EPOCH = 2**31 - 1

StreamLike = Any  # BatchStream | pa.Table | pa.RecordBatch | list[pa.RecordBatch] | None | table-like

# The round whose body is running (set by the engines around each body call), so streams a
# body builds itself (``BatchStream.of(table)``) belong to that round.
current_round: ContextVar["_Round | None"] = ContextVar("flowlearn_iteration_round", default=None)


def _no_terminal() -> list[pa.RecordBatch]:
    return []


def to_batches(value: Any, what: str = "value") -> tuple[list[pa.RecordBatch], pa.Schema | None]:
    """Normalize something emitted or returned by a body into a list of record batches."""
    if value is None:
        return [], None
    if isinstance(value, pa.RecordBatch):
        return [value], value.schema
    if isinstance(value, pa.Table):
        return value.to_batches(), value.schema
    if isinstance(value, BatchStream):
        batches = list(value)
        return batches, (batches[0].schema if batches else value._schema)
    if isinstance(value, (list, tuple)) and all(isinstance(b, pa.RecordBatch) for b in value):
        return list(value), (value[0].schema if value else None)
    from flowlearn.data.table import is_table_like, table as to_table

    if is_table_like(value):
        t = to_table(value)
        return t.to_batches(), t.schema
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        out: list[pa.RecordBatch] = []
        for item in value:
            out.extend(to_batches(item, what)[0])
        return out, (out[0].schema if out else None)
    raise TypeError(
        f"{what}: expected a pyarrow Table, RecordBatch, a list of RecordBatches, a BatchStream or "
        f"anything fl.table accepts, got {type(value).__name__}"
    )


class BatchStream:
    """A re-iterable sequence of ``pyarrow.RecordBatch`` belonging to one epoch (round).

    Iteration bodies receive their variable and data streams as ``BatchStream`` s and may
    return them (or tables, batches, lists of batches) as feedback, outputs and criteria.

    Example:
        >>> import pyarrow as pa, pyarrow.compute as pc
        >>> from flowlearn.iteration import BatchStream
        >>> s = BatchStream.of(pa.table({"x": [1.0, 2.0, 3.0]}))
        >>> s.map_batches(lambda b: pa.record_batch({"y": pc.multiply(b["x"], 2)})).to_table()["y"].to_pylist()
        [2.0, 4.0, 6.0]
    """

    __slots__ = ("_batches", "_factory", "_schema", "_schema_fn", "epoch", "_scope", "_terminal", "_node")

    def __init__(
        self,
        batches: Sequence[pa.RecordBatch] | None = None,
        *,
        factory: Callable[[], Iterator[pa.RecordBatch]] | None = None,
        schema: pa.Schema | None = None,
        epoch: int = 0,
        scope: "_Round | None" = None,
        terminal: Callable[[], list[pa.RecordBatch]] = _no_terminal,
        schema_fn: Callable[[], pa.Schema | None] | None = None,
    ) -> None:
        if (batches is None) == (factory is None):
            raise TypeError("BatchStream needs exactly one of batches= or factory=")
        self._batches = list(batches) if batches is not None else None
        self._factory = factory
        if schema is None and self._batches:
            schema = self._batches[0].schema
        self._schema = schema
        self.epoch = epoch
        self._scope = scope
        self._terminal = terminal
        self._schema_fn = schema_fn
        self._node = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def of(cls, value: StreamLike, epoch: int | None = None) -> "BatchStream":
        """A materialized stream from a table, a batch, a list of batches or a table-like value.

        Inside an iteration body the stream belongs to the running round (its epoch).
        """
        if isinstance(value, BatchStream):
            return value
        batches, schema = to_batches(value)
        scope = current_round.get()
        if epoch is None:
            epoch = scope.epoch if scope is not None else 0
        return cls(batches, schema=schema, epoch=epoch, scope=scope)

    @classmethod
    def empty(cls, schema: pa.Schema | None = None, epoch: int | None = None) -> "BatchStream":
        scope = current_round.get()
        if epoch is None:
            epoch = scope.epoch if scope is not None else 0
        return cls([], schema=schema, epoch=epoch, scope=scope)

    # ------------------------------------------------------------------ reading
    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._batches is not None:
            return iter(self._batches)
        return self._factory()  # type: ignore[misc]

    def batches(self) -> list[pa.RecordBatch]:
        """All batches of this round as a list."""
        return list(self)

    @property
    def schema(self) -> pa.Schema | None:
        """The schema, when known (an empty stream built without a schema has none)."""
        if self._schema is None:
            if self._schema_fn is not None:
                self._schema = self._schema_fn()
            else:
                first = next(iter(self), None)
                if first is not None:
                    self._schema = first.schema
        return self._schema

    @property
    def num_rows(self) -> int:
        return sum(b.num_rows for b in self)

    def is_empty(self) -> bool:
        return all(b.num_rows == 0 for b in self)

    def to_table(self) -> pa.Table:
        """All records of this round as one table (zero-copy over the batches)."""
        batches = list(self)
        if not batches:
            schema = self._schema if self._schema is not None else (self._schema_fn() if self._schema_fn else None)
            return schema.empty_table() if schema is not None else pa.table({})
        try:
            return pa.Table.from_batches(batches)
        except pa.ArrowInvalid as e:
            raise ValueError(f"the batches of this stream have different schemas: {e}") from None

    # ------------------------------------------------------------------ transformations
    def map_batches(self, fn: Callable[[pa.RecordBatch], Any]) -> "BatchStream":
        """A lazy stream applying ``fn`` to each batch (``fn`` may return a batch, table or None).

        ``fn`` runs again whenever the result is iterated; it must be stateless. Use
        :meth:`process` with an :class:`~flowlearn.iteration.IterationOperator` for state.
        """
        parent = self

        def factory() -> Iterator[pa.RecordBatch]:
            for b in parent:
                yield from to_batches(fn(b), "map_batches")[0]

        def terminal() -> list[pa.RecordBatch]:
            out: list[pa.RecordBatch] = []
            for b in parent._terminal():
                out.extend(to_batches(fn(b), "map_batches")[0])
            return out

        return BatchStream(factory=factory, epoch=self.epoch, scope=self._scope, terminal=terminal)

    def union(self, *others: "BatchStream") -> "BatchStream":
        """The records of this stream followed by those of ``others`` (same round)."""
        parts = [self, *[BatchStream.of(o, self.epoch) for o in others]]

        def factory() -> Iterator[pa.RecordBatch]:
            for p in parts:
                yield from p

        def terminal() -> list[pa.RecordBatch]:
            return [b for p in parts for b in p._terminal()]

        scope = next((p._scope for p in parts if p._scope is not None), None)
        return BatchStream(factory=factory, schema=self._schema, epoch=self.epoch, scope=scope, terminal=terminal)

    def process(self, operator: Any, *others: StreamLike, key: str | None = None) -> "BatchStream":
        """Run an :class:`~flowlearn.iteration.IterationOperator` over this stream (input 0) and
        ``others`` (inputs 1, 2, ...) for the current round and return its main output.

        ``operator`` is a factory (a class or a zero-argument callable) whose instances the
        iteration manages by ``lifecycle``, or an instance the caller manages. Under
        ``all_round`` the same instance is used every round for the same call site (the n-th
        use of the same factory in the body, or the explicit ``key``).
        """
        inputs = [self, *[BatchStream.of(o, self.epoch) for o in others]]
        scope = next((s._scope for s in inputs if s._scope is not None), None) or current_round.get()
        if scope is None:
            from flowlearn.iteration.engine import _standalone_round

            scope = _standalone_round(self.epoch)
        return scope.apply(operator, inputs, key)

    def side_output(self, tag: str) -> "BatchStream":
        """The side output ``tag`` of the operator that produced this stream (``ctx.output(tag, ...)``)."""
        if self._node is None:
            raise ValueError("side_output() is only available on the output of process()")
        return self._node.side_stream(tag)

    def __repr__(self) -> str:
        kind = "materialized" if self._batches is not None else "lazy"
        n = f", {len(self._batches)} batches" if self._batches is not None else ""
        return f"BatchStream(epoch={self.epoch}, {kind}{n})"
