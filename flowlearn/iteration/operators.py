"""Operators inside an iteration body and the listener callbacks they receive.

An operator sees, per round (epoch ``e``): ``process(batch, ctx)`` for every batch of its
inputs (input 0 first, then input 1, ...), then ``on_epoch_watermark_incremented(e, ctx)``
once all of them have arrived. When the iteration ends, ``all_round`` operators get
``on_iteration_terminated(ctx)``; ``per_round`` operators are closed at the end of their
round instead. ``close()`` is called when the engine is done with an instance.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.iteration.streams import END_EPOCH, to_batches

__all__ = [
    "IterationOperator",
    "OperatorContext",
    "ForwardInputsOfLastRound",
    "TerminateOnMaxIter",
    "TerminateOnMaxIterOrTol",
]

log = logging.getLogger("flowlearn.iteration")


class OperatorContext:
    """What an operator callback may use: the epoch, the input a batch came from, and outputs.

    - ``ctx.epoch``: the round being processed (``END_EPOCH`` inside ``on_iteration_terminated``).
    - ``ctx.input_index``: during ``process``, which input (0, 1, ...) the batch came from.
    - ``ctx.emit(x)``: a batch, table or list of batches to the operator's main output; records
      carry ``ctx.epoch`` (those emitted in ``on_epoch_watermark_incremented(e)`` carry ``e``).
    - ``ctx.output(tag, x)``: the same to the side output ``tag`` (``stream.side_output(tag)``).
    """

    __slots__ = ("epoch", "input_index", "_main", "_side", "_schemas")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.input_index: int | None = None
        self._main: list[pa.RecordBatch] = []
        self._side: dict[str, list[pa.RecordBatch]] = {}
        self._schemas: dict[str | None, pa.Schema] = {}

    @property
    def terminated(self) -> bool:
        return self.epoch == END_EPOCH

    def emit(self, value: Any) -> None:
        batches, schema = to_batches(value, "ctx.emit")
        if schema is not None:
            self._schemas.setdefault(None, schema)
        self._main.extend(batches)

    def output(self, tag: str, value: Any) -> None:
        batches, schema = to_batches(value, f"ctx.output({tag!r})")
        if schema is not None:
            self._schemas.setdefault(tag, schema)
        self._side.setdefault(tag, []).extend(batches)

    def _has_emitted(self) -> bool:
        return bool(self._main) or any(self._side.values())


class IterationOperator:
    """Base class (or protocol) of operators run by ``BatchStream.process``.

    Override ``process`` and, as needed, the listener callbacks. Any object with a ``process``
    method works; the other methods are optional.

    Example:
        >>> import pyarrow as pa
        >>> from flowlearn.iteration import IterationOperator, IterationBodyResult, iterate_bounded
        >>> class RowCount(IterationOperator):
        ...     def __init__(self):
        ...         self.n = 0
        ...     def process(self, batch, ctx):
        ...         self.n += batch.num_rows
        ...     def on_epoch_watermark_incremented(self, epoch, ctx):
        ...         ctx.emit(pa.record_batch({"epoch": [epoch], "rows": [self.n]}))
        >>> def body(variables, data, epoch):
        ...     counts = data[0].process(RowCount)
        ...     return IterationBodyResult(feedback_variables=[variables[0]], outputs=[counts])
        >>> r = iterate_bounded([pa.table({"v": [0]})], [pa.table({"x": [1, 2, 3]})], body, max_rounds=2)
        >>> r.outputs[0].to_pylist()
        [{'epoch': 0, 'rows': 3}, {'epoch': 1, 'rows': 6}]
    """

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        """Called for every batch of every input in the round (``ctx.input_index`` tells which)."""

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        """Called once per round after every record of epoch ``epoch`` has been processed."""

    def on_iteration_terminated(self, ctx: OperatorContext) -> None:
        """Called once when the iteration ends (``all_round`` operators)."""

    def close(self) -> None:
        """Called when the engine is done with this instance (end of round for ``per_round``)."""


class ForwardInputsOfLastRound(IterationOperator):
    """Emits, when the iteration terminates, the records it received in the last round.

    Use it to output a variable only once, at termination, instead of every round.
    Records from ``on_iteration_terminated`` carry ``END_EPOCH``.
    """

    def __init__(self) -> None:
        self._current: list[pa.RecordBatch] = []
        self._last: list[pa.RecordBatch] = []

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        if ctx.terminated:
            return
        self._current.append(batch)

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        self._last, self._current = self._current, []

    def on_iteration_terminated(self, ctx: OperatorContext) -> None:
        ctx.emit(self._last + self._current)
        self._last, self._current = [], []


_CRITERIA_SCHEMA = pa.schema([pa.field("epoch", pa.int64())])


class TerminateOnMaxIter(IterationOperator):
    """A termination-criteria operator: in round ``e`` it emits one record iff ``e + 1 < max_iter``,
    so an iteration using its output as ``termination_criteria`` runs exactly ``max_iter`` rounds."""

    def __init__(self, max_iter: int) -> None:
        if int(max_iter) < 1:
            raise ValueError(f"TerminateOnMaxIter: max_iter must be >= 1, got {max_iter}")
        self.max_iter = int(max_iter)

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        pass

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        if epoch + 1 < self.max_iter:
            ctx.emit(pa.record_batch([pa.array([epoch], pa.int64())], schema=_CRITERIA_SCHEMA))
        else:
            ctx.emit(_CRITERIA_SCHEMA.empty_table())


class TerminateOnMaxIterOrTol(IterationOperator):
    """A termination-criteria operator over a stream of loss values (column ``loss_col``, or the
    first column): in round ``e`` it emits one record iff ``e + 1 < max_iter`` and the round's
    loss (the last value received) is greater than ``tol``."""

    def __init__(self, max_iter: int, tol: float, loss_col: str | None = None) -> None:
        if int(max_iter) < 1:
            raise ValueError(f"TerminateOnMaxIterOrTol: max_iter must be >= 1, got {max_iter}")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.loss_col = loss_col
        self._loss = np.inf

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        if batch.num_rows:
            col = batch.column(self.loss_col) if self.loss_col is not None else batch.column(0)
            self._loss = float(col[batch.num_rows - 1].as_py())

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        if epoch + 1 < self.max_iter and self._loss > self.tol:
            ctx.emit(pa.record_batch([pa.array([epoch], pa.int64())], schema=_CRITERIA_SCHEMA))
        else:
            ctx.emit(_CRITERIA_SCHEMA.empty_table())
        self._loss = np.inf
