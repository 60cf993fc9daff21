"""The state type of everything that checkpoints, and the one protocol of online trainers.

:class:`OperatorState` is what stream operators, online trainers and stateful per-batch
computations (streaming evaluators) snapshot: a JSON-able ``data`` dict and named Arrow
``tables``, encoded to bytes (``to_bytes`` / ``from_bytes``: JSON plus Arrow IPC, no pickle) when
it must cross a process, as an engine's managed state does.

:class:`Trainer` is the base of every online trainer (FTRL, OnlineLearning, OnlineKMeans,
OnlineStandardScaler). It owns what they share: the version counter and the rows in each
version, emission on demand (``emit``) and by processing time (``emit_every_seconds``,
``poll``), the final version (``finish``) and a state codec with a format name and version
(``snapshot_state`` / ``restore_state``). What an engine may call beyond that is declared:
``uses_clock`` (call ``poll(now)`` on a timer), ``uses_watermarks`` (call ``on_watermark``),
``can_rebase`` (``rebase(model, version)``), ``predicts`` (``predict_and_partial_fit``).

Example (a trainer of the running mean of a column, a version every 2 rows):
    >>> import pyarrow as pa
    >>> class Mean(Trainer):
    ...     stage, state_format = "Mean", "example.mean_state"
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.total = 0.0
    ...     def partial_fit(self, batch):
    ...         out = []
    ...         for x in batch.column("x").to_pylist():
    ...             self.total += x
    ...             self.rows_seen += 1
    ...             if self.rows_seen % 2 == 0:
    ...                 out.append(self._emit())
    ...         return out
    ...     def _has_model(self): return self.rows_seen > 0
    ...     def _rows_in_model(self): return self.rows_seen
    ...     def _current_version(self): return self.total / self.rows_seen
    ...     def _state(self): return OperatorState({"total": self.total})
    ...     def _restore(self, state): self.total = state.data["total"]
    >>> tr = Mean()
    >>> tr.partial_fit(pa.table({"x": [1.0, 3.0, 8.0]})), tr.finish()
    ([2.0], [4.0])
    >>> Mean().restore_state(OperatorState.from_bytes(tr.snapshot_state().to_bytes())).version
    2
"""
from __future__ import annotations

import io
import json
import logging
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import pyarrow as pa

__all__ = ["OperatorState", "Trainer"]

_log = logging.getLogger(__name__)

_MAGIC = b"FLST\x01"


@dataclass
class OperatorState:
    """A snapshot: ``data`` (JSON-serializable) and ``tables`` (name -> ``pyarrow.Table``)."""

    data: dict = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The state as bytes: a JSON header and one Arrow IPC stream per table."""
        parts = []
        for t in self.tables.values():
            buf = io.BytesIO()
            with pa.ipc.new_stream(buf, t.schema) as w:
                w.write_table(t)
            parts.append(buf.getvalue())
        head = json.dumps({"data": self.data, "tables": list(self.tables), "sizes": [len(p) for p in parts]},
                          allow_nan=False).encode()
        return b"".join([_MAGIC, struct.pack("<I", len(head)), head, *parts])

    @classmethod
    def from_bytes(cls, blob: bytes) -> "OperatorState":
        """The state encoded by :meth:`to_bytes`."""
        if not blob.startswith(_MAGIC):
            raise ValueError("not an encoded flowlearn state (bad magic bytes)")
        (n,) = struct.unpack_from("<I", blob, len(_MAGIC))
        pos = len(_MAGIC) + 4
        head = json.loads(blob[pos:pos + n])
        pos += n
        tables = {}
        for name, size in zip(head["tables"], head["sizes"]):
            tables[name] = pa.ipc.open_stream(pa.py_buffer(blob[pos:pos + size])).read_all()
            pos += size
        return cls(head["data"], tables)


class Trainer:
    """Base of online trainers (see the module docstring).

    A subclass sets ``stage`` (its name in messages) and ``state_format`` (and bumps
    ``state_format_version`` when its state changes), calls ``super().__init__(emit_every_seconds,
    clock)``, and implements ``partial_fit(batch) -> versions`` (calling :meth:`_emit` where a version
    is due and returning ``versions + self._versions_due()``), ``_has_model()``,
    ``_rows_in_model()`` (rows whose effect the model holds: the rows seen minus those buffered in
    an open mini-batch or window), ``_current_version()`` (the model as a version: a model data
    table or a ``PipelineModel``), ``_apply_open()`` when it buffers rows, and ``_state()`` /
    ``_restore(state)`` for what is its own (the base adds and checks the counters and the format).
    """

    stage: ClassVar[str] = "Trainer"
    state_format: ClassVar[str] = ""
    state_format_version: ClassVar[int] = 1
    state_tables: ClassVar[tuple[str, ...]] = ()
    uses_watermarks: ClassVar[bool] = False
    can_rebase: ClassVar[bool] = False
    predicts: ClassVar[bool] = False

    def __init__(self, emit_every_seconds: float | None = None, clock: Callable[[], float] | None = None) -> None:
        self.version = 0
        self.rows_seen = 0
        self.late_rows = 0
        self._last_emit_rows = 0
        self._emit_seconds = None if emit_every_seconds is None else float(emit_every_seconds)
        self._clock = clock or time.time
        self._last_emit_at = self._clock() if self._emit_seconds is not None else 0.0

    # -- to implement ----------------------------------------------------------------------
    def partial_fit(self, batch: Any) -> list[Any]:  # pragma: no cover - every trainer defines it
        raise NotImplementedError

    def _has_model(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _rows_in_model(self) -> int:  # pragma: no cover
        raise NotImplementedError

    def _current_version(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _apply_open(self) -> None:
        """Apply rows buffered in an open mini-batch (the end of a bounded input)."""

    def _state(self) -> OperatorState:  # pragma: no cover
        raise NotImplementedError

    def _restore(self, state: OperatorState) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- versions ----------------------------------------------------------------------------
    @property
    def uses_clock(self) -> bool:
        """True when versions also come by processing time: engines call :meth:`poll` on a timer."""
        return self._emit_seconds is not None

    def _emit(self) -> Any:
        self.version += 1
        self._last_emit_rows = self._rows_in_model()
        if self._emit_seconds is not None:
            self._last_emit_at = self._clock()
        _log.debug("%s: model version %d after %d rows", self.stage, self.version, self.rows_seen)
        return self._current_version()

    def emit(self) -> Any:
        """A version of the model now; ``None`` if it holds no row that the last version did not
        (rows of an open mini-batch are not in the model yet)."""
        if not self._has_model() or self._rows_in_model() <= self._last_emit_rows:
            return None
        return self._emit()

    def _versions_due(self, now: float | None = None) -> list[Any]:
        if self._emit_seconds is None:
            return []
        t = self._clock() if now is None else now
        if t - self._last_emit_at < self._emit_seconds:
            return []
        v = self.emit()
        if v is None:   # nothing new: the version stays due, the next applied mini-batch is emitted
            return []
        self._last_emit_at = t
        return [v]

    def poll(self, now: float | None = None) -> list[Any]:
        """The versions due at ``now`` (seconds; the trainer's clock by default): ``[]`` or
        ``[version]`` when ``emit_every_seconds`` passed since the last version and rows were
        learned. The interval is processing time and is not checkpointed: a restored trainer
        counts from its start."""
        return self._versions_due(now)

    def finish(self) -> list[Any]:
        """End of a bounded input: apply the open mini-batch, if any, and emit the final version
        unless the last one already holds every row (``[]`` or ``[version]``)."""
        if not self._has_model():
            return []
        self._apply_open()
        v = self.emit()
        return [] if v is None else [v]

    # -- checkpoints -------------------------------------------------------------------------
    def snapshot_state(self) -> OperatorState:
        """The complete state (``to_bytes()`` encodes it); a restored trainer continues exactly as
        this one would have."""
        own = self._state()
        data = {"format": self.state_format, "format_version": self.state_format_version, "version": self.version,
                "rows_seen": self.rows_seen, "last_emit_rows": self._last_emit_rows, "late_rows": self.late_rows,
                **own.data}
        return OperatorState(data, dict(own.tables))

    def restore_state(self, state: OperatorState) -> "Trainer":
        """Restore a state written by :meth:`snapshot_state` of a trainer of the same kind."""
        if not isinstance(state, OperatorState):
            raise TypeError(f"{self.stage}: restore_state takes the OperatorState of snapshot_state(), got "
                            f"{type(state).__name__}")
        fmt = state.data.get("format")
        if fmt != self.state_format:
            raise ValueError(f"{self.stage}: the state has format {fmt!r}, this trainer reads {self.state_format!r}; "
                             f"it is not this trainer's state")
        if state.data.get("format_version", 0) > self.state_format_version:
            raise ValueError(f"{self.stage}: state format_version {state.data['format_version']} is newer than this "
                             f"flowlearn reads ({self.state_format_version})")
        if set(state.tables) != set(self.state_tables):
            raise ValueError(f"{self.stage}: a trainer state has the tables {list(self.state_tables)}, got "
                             f"{sorted(state.tables)}")
        self._restore(state)
        self.version = int(state.data["version"])
        self.rows_seen = int(state.data["rows_seen"])
        self._last_emit_rows = int(state.data["last_emit_rows"])
        self.late_rows = int(state.data.get("late_rows", 0))
        return self
