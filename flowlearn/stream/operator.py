"""The stateful operator interface every stream operator implements.

This is the contract the engines (``flowlearn.engines``) run, and the one the online
learners (``OnlineLogisticRegression``, ``OnlineKMeans``, ...) implement later.

An :class:`Operator` receives Arrow tables (each usually one record batch) on one or more
numbered inputs and returns the tables it emits on its main output. It may also emit to named
side outputs through ``self.ctx.side(tag, table)`` (late data, dead letters, ...).

Lifecycle, in the order the engine calls it::

    op.open(ctx)                         # once, before anything else; ctx: OperatorContext
    op.restore_state(state)              # only when resuming from a checkpoint
    op.process(table, input_index)       # -> list of output tables (may be empty)
    op.on_watermark(watermark_ms)        # event time advanced to watermark_ms (min over inputs)
    op.on_timer(now)                     # processing time (seconds), when ``wants_timer``
    op.end_input(input_index)            # input ``input_index`` ended (bounded input), others may go on
    op.snapshot_state()                  # checkpoint barrier reached this operator -> OperatorState
    op.notify_checkpoint_complete(id)    # the checkpoint is durable: commit side effects
    op.on_end()                          # every input ended (bounded input): flush
    op.close()

Rules:

- ``process`` is vectorized over the batch: no Python loop per row on a hot path.
- ``snapshot_state`` returns an :class:`OperatorState`: a JSON-able dict plus named Arrow
  tables. Nothing is pickled. ``restore_state`` gets exactly what ``snapshot_state`` returned.
- Two-phase commit for sinks with side effects: ``snapshot_state`` is the pre-commit (flush,
  close in-progress files) and records what is pending; ``notify_checkpoint_complete`` commits.
  ``recover_commit(state)`` is called on a fresh operator when the engine finds a checkpoint
  whose commit may not have finished: it either finishes it (idempotently) and returns True,
  or reports that it can no longer be committed (False) and the engine falls back to the
  previous checkpoint.
- ``output_watermark(input_watermark)`` says which watermark the operator forwards (default:
  its input watermark). Watermark assigners override it.

Example (a running row count, restorable):
    >>> import pyarrow as pa
    >>> class Count(Operator):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.n = 0
    ...     def process(self, table, input_index=0):
    ...         self.n += table.num_rows
    ...         return [pa.table({"rows_so_far": [self.n]})]
    ...     def snapshot_state(self):
    ...         return OperatorState({"n": self.n})
    ...     def restore_state(self, state):
    ...         self.n = state.data["n"]
    >>> op = Count()
    >>> op.process(pa.table({"x": [1, 2]}))[0].to_pydict()
    {'rows_so_far': [2]}
"""
from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa

from flowlearn.trainer import OperatorState  # the one state type of operators and trainers

__all__ = ["Operator", "OperatorState", "OperatorContext", "MIN_WATERMARK", "MAX_WATERMARK"]

MIN_WATERMARK = -(2**62)
MAX_WATERMARK = 2**62


class OperatorContext:
    """What the engine gives an operator: its name/uid, side outputs, metrics and a clock."""

    def __init__(self, uid: str, side: Callable[[str, pa.Table], None] | None = None,
                 clock: Callable[[], float] | None = None, metrics: dict | None = None) -> None:
        import time

        self.uid = uid
        self._side = side
        self.clock = clock or time.time
        self.metrics: dict[str, Any] = metrics if metrics is not None else {}
        self.checkpointing = False  # True when the job takes checkpoints (sinks then commit on them)

    def side(self, tag: str, table: pa.Table) -> None:
        """Emit ``table`` on the side output named ``tag`` (dropped if nobody reads it, but counted)."""
        self.metrics[f"side_{tag}_rows"] = self.metrics.get(f"side_{tag}_rows", 0) + table.num_rows
        if self._side is not None and table.num_rows:
            self._side(tag, table)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the operator metric ``name``."""
        self.metrics[name] = self.metrics.get(name, 0) + n


class Operator:
    """Base class of stream operators (see the module docstring for the contract)."""

    wants_timer: bool = False

    def __init__(self) -> None:
        self.ctx: OperatorContext = OperatorContext("detached")

    def open(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        return [table]

    def on_watermark(self, watermark: int) -> list[pa.Table]:
        return []

    def output_watermark(self, input_watermark: int) -> int:
        return input_watermark

    def on_timer(self, now: float) -> list[pa.Table]:
        return []

    def end_input(self, input_index: int) -> list[pa.Table]:
        return []

    def on_end(self) -> list[pa.Table]:
        return []

    def snapshot_state(self) -> OperatorState | None:
        return None

    def restore_state(self, state: OperatorState) -> None:
        pass

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        pass

    def recover_commit(self, state: OperatorState) -> bool:
        return True

    def close(self) -> None:
        pass
