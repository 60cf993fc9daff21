"""Online standard scaling as in Flink ML 2.x: ``OnlineStandardScaler`` / ``OnlineStandardScalerModel``.

The input is cut into windows; at the end of each window the trainer emits one model version
holding the mean and the unbiased (``ddof=1``) standard deviation of **every row seen so far**
(not only the window's rows), exactly what the batch ``StandardScaler`` would fit on that prefix
of the input. The statistics are merged per window segment with Chan et al.'s parallel update of
``(count, mean, sum of squared deviations)`` (the merge of ``StandardScaler``'s fit states, one
kernel for both), which is numerically stable (Flink ML subtracts
``n * mean^2`` from a running sum of squares, which loses precision when the mean is large
against the spread).

Windows (``windows``):

* ``"count"`` (default): tumbling windows of ``window_rows`` rows, aligned on the row count;
* ``"processing_time"``: tumbling windows of ``window_seconds`` seconds of wall-clock time. The
  rows of one ``partial_fit`` call belong to the window of the time of the call; a window is
  closed (its version emitted) by the first ``partial_fit`` or ``poll`` call after its end, or by
  ``finish``;
* ``"event_time"``: tumbling windows of ``window_seconds`` seconds of event time (``time_col``),
  aligned on the epoch, as Flink ML's ``EventTimeTumblingWindows``. Rows wait in their window
  (out of order is fine) until the watermark passes the window's last millisecond; then the
  window's rows join the statistics and its version is emitted, windows in time order. On a
  stream the watermarks come from the plan (``stream.with_watermarks(time_col,
  max_out_of_orderness)``, through ``on_watermark``); a bounded input's end closes every window.
  A row whose window has already closed is *late*: Flink ML drops it, flowlearn adds it to the
  statistics (it is in the next version) and counts it in ``late_rows``;
* ``"global"``: one window over a bounded input (Flink ML's default ``GlobalWindows``); versions
  are emitted by ``finish()`` or on demand by ``emit()``.

Model versions carry a ``timestamp`` (int64, milliseconds since the epoch): for event-time
windows the window's last millisecond (Flink ML's ``window.maxTimestamp()``); otherwise, with
``time_col`` set, the largest event time among the rows the version has seen; without, ``2**63 - 1``
(Flink ML's ``Long.MAX_VALUE`` for models not trained on event time: fresh for every row).

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.feature.online_scalers import OnlineStandardScaler
    >>> t = fl.table({"x": [[1.0], [3.0], [5.0], [7.0]]})
    >>> est = OnlineStandardScaler(input_col="x", output_col="y", window_rows=2)
    >>> [(v["model_version"][0].as_py(), v["mean"][0].as_py(), v["std"][0].as_py()) for v in est.fit_versions(t)]
    [(1, [2.0], [1.4142135623730951]), (2, [4.0], [2.581988897471611])]
    >>> est.fit(t).transform({"x": [[4.0], [6.581988897471611]]}).column("y").to_pylist()
    [[1.5491933384829668], [2.549193338482967]]
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import Model, RowFn, with_trained_rows
from flowlearn.trainer import OperatorState, Trainer
from flowlearn.iteration.online import (OnlineEstimator, as_table, iter_input_tables, step_rows, train_versions)
from flowlearn.data.columns import check_squares, require_column, vector_column, with_column
from flowlearn.feature.scalers import (_StandardScalerParams, _merge_moments, _model_table, _moments, _row_vector,
                                       _scale_sparse, _scaled_field, _transform_input)
from flowlearn.linalg import SparseVector, from_csr, from_numpy, to_numpy
from flowlearn.params import Param, gt, in_array, in_range

__all__ = ["OnlineStandardScaler", "OnlineStandardScalerModel", "OnlineStandardScalerTrainer"]

_log = logging.getLogger(__name__)

_STAGE = "OnlineStandardScaler"
STATE_FORMAT = "flowlearn.online_standard_scaler_state"
STATE_FORMAT_VERSION = 3  # 2: event-time windows (a second table of open windows); 3: an OperatorState
NO_EVENT_TIME = 2**63 - 1  # Flink ML's Long.MAX_VALUE: a model not trained on event time
_DELAY_CAP = 2**62  # ms (146 million years): larger delays act as this, so t - delay cannot overflow int64


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------


class _OnlineStandardScalerModelParams(_StandardScalerParams):
    model_version_col = Param(str, default="model_version", optional=True,
                              doc="Output column with the version of the model data used for each row; "
                                  "None adds no column.")
    time_col = Param(str, default=None,
                     doc="Event-time column (timestamp, or numbers of seconds since the epoch). Training: a "
                         "version's timestamp is the largest event time it has seen (event-time windows: the "
                         "window's end - 1 ms), and event-time windows need it. Transform: picks each "
                         "row's model version by event time (see max_allowed_model_delay_ms). None: no event time.")
    max_allowed_model_delay_ms = Param(int, default=0, validator=in_range(0, NO_EVENT_TIME),
                                       doc="A row with event time t may use a model version whose timestamp is at "
                                           "least t - max_allowed_model_delay_ms.")


class _OnlineStandardScalerParams(_OnlineStandardScalerModelParams):
    windows = Param(str, default="count", validator=in_array(["count", "processing_time", "event_time", "global"]),
                    doc="Windowing of the input: 'count' (window_rows rows), 'processing_time' (window_seconds of "
                        "wall-clock time), 'event_time' (window_seconds of event time from time_col, closed by "
                        "watermarks) or 'global' (one window; versions from finish() or emit()). One model "
                        "version per window.")
    window_rows = Param(int, default=1000, validator=gt(0), doc="Rows per count window.")
    window_seconds = Param(float, default=1.0, validator=gt(0),
                           doc="Seconds per processing-time or event-time window.")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _vectors(t: pa.Table, name: str, stage: str, size: int | None) -> np.ndarray | sps.csr_matrix:
    x = vector_column(t, name, stage, param="input_col", size=size)   # sparse: checked canonical
    return sps.csr_matrix(x, dtype=np.float64) if sps.issparse(x) else x


def _event_time_ms(t: pa.Table, col: str, stage: str) -> np.ndarray:
    """Event times of ``col`` as int64 milliseconds (timestamps, or numbers of seconds)."""
    c = require_column(t, col, stage, "time_col")
    if c.null_count:
        row = int(np.flatnonzero(c.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{stage}: event time column '{col}' (parameter 'time_col') has a null at row {row}; "
                         f"every row needs an event time")
    if pa.types.is_timestamp(c.type):
        return c.cast(pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(c.type) or pa.types.is_floating(c.type):
        secs = c.to_numpy().astype(np.float64)
        if not np.isfinite(secs).all():
            row = int(np.flatnonzero(~np.isfinite(secs))[0])
            raise ValueError(f"{stage}: event time column '{col}' (parameter 'time_col') has NaN or infinity at "
                             f"row {row}")
        return np.floor(secs * 1000.0).astype(np.int64)
    raise TypeError(f"{stage}: event time column '{col}' (parameter 'time_col') has type {c.type}; expected a "
                    f"timestamp or numbers of seconds since the epoch")


def _row_time_ms(v: Any, col: str, stage: str) -> int:
    """One row's event time in milliseconds (datetime, numpy datetime64, or seconds)."""
    if v is None:
        raise ValueError(f"{stage}: event time column '{col}' (parameter 'time_col') is null in this row")
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:  # Arrow timestamps without a time zone are UTC wall times
            v = v.replace(tzinfo=_dt.timezone.utc)
        return int(math.floor(v.timestamp() * 1000.0))
    if isinstance(v, np.datetime64):
        return int(v.astype("datetime64[ms]").astype(np.int64))
    try:
        secs = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{stage}: event time column '{col}' holds {type(v).__name__}; expected a datetime or "
                        f"seconds since the epoch") from None
    if not math.isfinite(secs):
        raise ValueError(f"{stage}: event time column '{col}' is NaN or infinite in this row")
    return int(math.floor(secs * 1000.0))


def _version_table(mean: np.ndarray, std: np.ndarray, version: int, timestamp: int) -> pa.Table:
    """StandardScalerModel's model data (one row, ``mean`` and ``std``) plus ``model_version`` and
    ``timestamp`` (int64 ms)."""
    t = _model_table(mean=mean, std=std)
    return (t.append_column("model_version", pa.array([int(version)], pa.int64()))
            .append_column("timestamp", pa.array([int(timestamp)], pa.int64())))


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


class OnlineStandardScalerTrainer(Trainer):
    """Incremental state of :class:`OnlineStandardScaler`, driven batch by batch by stream engines.

    Made by ``OnlineStandardScaler.trainer(clock=None)`` (``clock() -> seconds`` for
    processing-time windows, ``time.time`` by default). The protocol of
    ``OnlineLogisticRegressionTrainer``:

    * ``partial_fit(batch) -> list[pa.Table]``: add the rows, return the versions emitted meanwhile
      (one per closed window; windows run across batch boundaries);
    * ``emit()``: a version of the statistics now, ``None`` if no row came since the last one;
      ``finish()``: close the open window and emit its version (a bounded input's end);
    * ``poll(now=None)``: close a processing-time window whose end has passed (for engine timers);
    * ``on_watermark(ms)``: close the event-time windows the watermark has passed (their
      versions, in time order); ``late_rows`` counts rows that came after their window closed;
    * ``model_data()``, ``version``, ``rows_seen``, ``dim``;
    * ``snapshot_state() -> OperatorState`` / ``restore_state(state)``: the complete state (the
      :class:`~flowlearn.trainer.Trainer` protocol). A restored trainer fed the same batches emits
      the same versions; differently cut batches give the same statistics up to rounding.

    Example:
        >>> from flowlearn.feature.online_scalers import OnlineStandardScaler
        >>> tr = OnlineStandardScaler(window_rows=2).trainer()
        >>> [v["model_version"][0].as_py() for v in tr.partial_fit({"input": [[1.0], [2.0], [3.0]]})]
        [1]
        >>> [v["mean"][0].as_py() for v in tr.finish()]
        [[2.0]]
    """

    stage = _STAGE
    state_format = STATE_FORMAT
    state_format_version = STATE_FORMAT_VERSION
    state_tables = ("state", "windows")

    def __init__(self, estimator: "OnlineStandardScaler", clock: Callable[[], float] | None = None) -> None:
        p = estimator.get_params()
        super().__init__(None, clock)
        self._input_col = p["input_col"]
        self._time_col = p["time_col"]
        self._windows = p["windows"]
        self._window_rows = int(p["window_rows"])
        if p["window_seconds"] * 1000 >= 2 ** 63:
            raise ValueError(f"{_STAGE}: parameter 'window_seconds' = {p['window_seconds']!r} is too large: windows "
                             f"are kept in int64 milliseconds")
        self._window_ms = int(round(float(p["window_seconds"]) * 1000))
        self._n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._max_event_ms: int | None = None
        self._window_start: int | None = None  # open processing-time window (ms)
        self._dim: int | None = None
        self._open: dict[int, tuple] = {}      # open event-time windows: start ms -> (count, mean, m2)
        self._watermark: int | None = None     # event time (ms) up to which windows have closed
        if self._windows == "event_time" and self._time_col is None:
            raise ValueError(f"{_STAGE}: windows='event_time' needs time_col, the column of event times")

    @property
    def dim(self) -> int | None:
        """Vector size (``None`` until the first row fixes it)."""
        return self._dim

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        std = np.sqrt(self._m2 / (self._n - 1)) if self._n > 1 else np.zeros_like(self._mean)
        return self._mean.copy(), std

    def model_data(self) -> pa.Table:
        """The statistics of every row seen, labelled with the last emitted version."""
        if self._mean is None:
            raise ValueError(f"{_STAGE}: no model yet; the trainer has seen no rows")
        mean, std = self._stats()
        ts = NO_EVENT_TIME if self._max_event_ms is None else self._max_event_ms
        return with_trained_rows(_version_table(mean, std, self.version, ts), self._n)

    @property
    def uses_clock(self) -> bool:   # processing-time windows close on the engine's timer
        return self._windows == "processing_time"

    @property
    def uses_watermarks(self) -> bool:   # event-time windows close on watermarks
        return self._windows == "event_time"

    def _has_model(self) -> bool:
        return self._mean is not None

    def _rows_in_model(self) -> int:
        return self._n   # rows of open event-time windows are not in the statistics yet

    def _current_version(self) -> pa.Table:
        return self.model_data()

    def _merge(self, x: np.ndarray | sps.csr_matrix, ts: np.ndarray | None) -> None:
        """Add the rows ``x`` (with event times ``ts`` in ms, or None) to the running statistics."""
        if ts is not None and self._windows != "event_time":
            top = int(ts.max())
            self._max_event_ms = top if self._max_event_ms is None else max(self._max_event_ms, top)
        self._n, self._mean, self._m2 = _merge_moments((self._n, self._mean, self._m2), _moments(x))

    def partial_fit(self, batch: Any) -> list[pa.Table]:
        """Add the rows of ``batch`` (a table, record batch or anything ``fl.table`` accepts); return
        the model versions of the windows that closed meanwhile (one-row model data tables)."""
        t = as_table(batch)
        x = ts = None
        if t.num_rows:  # validate before any state changes (an empty batch may come without columns)
            x = _vectors(t, self._input_col, _STAGE, self.dim)
            check_squares(x, self._input_col, _STAGE, "input_col", "variances")
            ts = None if self._time_col is None else _event_time_ms(t, self._time_col, _STAGE)
            self._dim = x.shape[1]
        versions: list[pa.Table] = self.poll() if self._windows == "processing_time" else []
        if x is None:
            return versions
        n = x.shape[0]
        if self._windows == "count":
            start = 0
            while start < n:
                room = self._window_rows - self.rows_seen % self._window_rows
                take = min(room, n - start)
                self._merge(x[start:start + take], None if ts is None else ts[start:start + take])
                self.rows_seen += take
                start += take
                if self.rows_seen % self._window_rows == 0 and self.rows_seen > self._last_emit_rows:
                    versions.append(self._emit())
            return versions
        self.rows_seen += n
        if self._windows == "event_time":
            self._add_to_windows(x, ts)
            return versions
        self._merge(x, ts)
        if self._windows == "processing_time" and self._window_start is None:
            now = int(math.floor(self._clock() * 1000))
            self._window_start = now - now % self._window_ms
        return versions

    def poll(self, now: float | None = None) -> list[pa.Table]:
        """Processing-time windows: emit the version of the open window if ``now`` (seconds, the
        clock by default) is past its end (``[]`` or ``[version]``); other windows: ``[]``."""
        if self._windows != "processing_time" or self._window_start is None:
            return []
        now_ms = int(math.floor((self._clock() if now is None else now) * 1000))
        if now_ms < self._window_start + self._window_ms:
            return []
        self._window_start = None
        return [self._emit()] if self.rows_seen > self._last_emit_rows else []

    def _add_to_windows(self, x: np.ndarray | sps.csr_matrix, ts: np.ndarray) -> None:
        """Event-time windows: each row into its window's summary; rows of closed windows (late)
        straight into the statistics."""
        w = self._window_ms
        starts = ts - np.mod(ts, w)
        late = np.zeros(len(ts), dtype=bool) if self._watermark is None else starts + (w - 1) <= self._watermark
        if late.any():
            self._merge(x[np.flatnonzero(late)], None)
            self.late_rows += int(late.sum())
            _log.debug("%s: %d late rows (their event-time windows had closed) join the next version", _STAGE,
                       int(late.sum()))
        on_time = np.flatnonzero(~late)
        for s in np.unique(starts[on_time]):  # one summary per window present in the batch
            rows = on_time[starts[on_time] == s]
            self._open[int(s)] = _merge_moments(self._open.get(int(s), (0, None, None)), _moments(x[rows]))

    def on_watermark(self, watermark_ms: int) -> list[pa.Table]:
        """Event-time windows: close, in time order, every open window whose last millisecond the
        watermark (ms) has passed, each emitting its version; other windows: ``[]``."""
        if self._windows != "event_time":
            return []
        self._watermark = watermark_ms if self._watermark is None else max(self._watermark, watermark_ms)
        versions = []
        for s in sorted(s for s in self._open if s + self._window_ms - 1 <= self._watermark):
            self._n, self._mean, self._m2 = _merge_moments((self._n, self._mean, self._m2), self._open.pop(s))
            self._max_event_ms = s + self._window_ms - 1
            versions.append(self._emit())
        return versions

    def finish(self) -> list[pa.Table]:
        """End of a bounded input: close the open window(s) and emit their versions (``[]`` when every
        row is already in the last version)."""
        self._window_start = None
        versions = self.on_watermark(NO_EVENT_TIME) if self._open else []
        v = self.emit()
        return versions + ([] if v is None else [v])

    # -- checkpoints ---------------------------------------------------------------------

    def _state(self) -> OperatorState:
        """Tables ``state``, one row per dimension with the running ``mean`` and sum of squared
        deviations ``m2``, and ``windows``, one row per open event-time window (``start`` ms,
        ``count``, ``mean``, ``m2``); the open processing-time window and the watermark in the data."""
        data = {"dim": self.dim, "count": self._n, "max_event_ms": self._max_event_ms,
                "window_start_ms": self._window_start, "windows": self._windows, "window_rows": self._window_rows,
                "window_ms": self._window_ms, "watermark_ms": self._watermark}
        if self._mean is None:
            state = pa.table({"mean": pa.array([], pa.float64()), "m2": pa.array([], pa.float64())})
        else:
            state = pa.table({"mean": self._mean.copy(), "m2": self._m2.copy()})
        starts = sorted(self._open)
        vec = pa.list_(pa.float64())
        windows = pa.table({"start": pa.array(starts, pa.int64()),
                            "count": pa.array([self._open[s][0] for s in starts], pa.int64()),
                            "mean": pa.array([self._open[s][1].tolist() for s in starts], vec),
                            "m2": pa.array([self._open[s][2].tolist() for s in starts], vec)})
        return OperatorState(data, {"state": state, "windows": windows})

    def _restore(self, st: OperatorState) -> None:
        meta = st.data
        state, w = st.tables["state"], st.tables["windows"]
        if meta["windows"] != self._windows or (self._windows == "count" and meta["window_rows"] != self._window_rows) \
                or (self._windows == "event_time" and meta.get("window_ms") != self._window_ms):
            raise ValueError(f"{_STAGE}: the state was written with windows={meta['windows']!r}, window_rows="
                             f"{meta['window_rows']}, window_ms={meta.get('window_ms')}; restore it into a trainer with "
                             f"the same windows (this one has windows={self._windows!r}, window_rows="
                             f"{self._window_rows}, window_ms={self._window_ms})")
        d = self._dim = meta["dim"]
        if d is None or (state.num_rows == 0 and meta["count"] == 0):   # no rows yet, or all in open windows
            self._mean = self._m2 = None
        else:
            if state.num_rows != d:
                raise ValueError(f"{_STAGE}: state table has {state.num_rows} rows, expected dim = {d}")
            self._mean = state.column("mean").to_numpy().astype(np.float64, copy=True)
            self._m2 = state.column("m2").to_numpy().astype(np.float64, copy=True)
        self._n = int(meta["count"])
        self._max_event_ms = meta["max_event_ms"]
        self._window_start = meta["window_start_ms"]
        self._watermark = meta.get("watermark_ms")
        self._open = {}
        for s, n, m, q in zip(w.column("start").to_pylist(), w.column("count").to_pylist(),
                              w.column("mean").to_pylist(), w.column("m2").to_pylist()):
            self._open[int(s)] = (int(n), np.array(m, dtype=np.float64), np.array(q, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# Estimator and model
# --------------------------------------------------------------------------------------------


class OnlineStandardScaler(_OnlineStandardScalerParams, OnlineEstimator):
    """Standard scaling with statistics updated per window (Flink ML ``OnlineStandardScaler``).

    Each window emits a model version holding the mean and the sample standard deviation
    (``ddof=1``; 0 for a single row) of all rows seen so far, so version ``i`` equals the batch
    :class:`~flowlearn.feature.StandardScaler` fitted on the rows up to the end of window ``i``.

    Parameters: ``input_col`` ("input"; dense or sparse vectors), ``output_col`` ("output"),
    ``with_mean`` (False), ``with_std`` (True), ``windows`` ("count", "processing_time",
    "event_time" or "global"), ``window_rows`` (1000), ``window_seconds`` (1.0), ``time_col`` (None),
    ``max_allowed_model_delay_ms`` (0), ``model_version_col`` ("model_version"). The windows and
    the version timestamps are described in the module docstring; the model's use of
    ``time_col`` and ``max_allowed_model_delay_ms`` on :class:`OnlineStandardScalerModel`.

    Departures from Flink ML: versions are numbered from 1 (Flink ML: 0), as every flowlearn
    online estimator; the default window is a count window (Flink ML: a global window); the
    variance is merged stably (see the module docstring); with ``time_col`` and windows other
    than event-time ones the timestamp is the largest event time seen (event-time windows: the
    window's end - 1 ms, as Flink ML); late rows of event-time windows join the next version
    (Flink ML drops them).

    * ``fit(table_or_iterable_of_tables)`` trains on a bounded input and returns an
      :class:`OnlineStandardScalerModel` holding the final version; ``fit(stream)`` goes to the
      stream layer.
    * ``fit_versions(data)`` yields every model version as it is emitted; concatenated they are
      model data too (one row per version). The trainer runs on ``flowlearn.iteration.iterate_unbounded``
      (see ``flowlearn.iteration.online.train_versions``).
    * ``trainer(clock=None)`` returns the incremental :class:`OnlineStandardScalerTrainer`.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.feature.online_scalers import OnlineStandardScaler
        >>> t = fl.table({"x": [[1.0, 10.0], [3.0, 10.0], [5.0, 10.0], [7.0, 10.0]]})
        >>> model = OnlineStandardScaler(input_col="x", output_col="y", with_mean=True, window_rows=3).fit(t)
        >>> model.transform({"x": [[4.0, 11.0]]}).to_pydict()
        {'x': [[4.0, 11.0]], 'y': [[0.0, 0.0]], 'model_version': [2]}
    """

    def trainer(self, clock: Callable[[], float] | None = None) -> OnlineStandardScalerTrainer:
        """A fresh incremental trainer with this estimator's parameters (``clock() -> seconds``
        drives processing-time windows; ``time.time`` by default)."""
        return OnlineStandardScalerTrainer(self, clock)

    def fit_versions(self, data: Any) -> Iterator[pa.Table]:
        """Train on a bounded input (a table or an iterable of tables/record batches) and yield each
        model version as it is emitted, the final one last."""
        tr = self.trainer()
        # Count windows: steps of whole windows. Processing-time and global windows: one step per
        # input batch (a processing-time window closes at the partial_fit call after its end).
        steps = step_rows(tr._window_rows) if tr._windows == "count" else None
        yield from train_versions(tr, iter_input_tables(data, _STAGE), steps)
        if tr.rows_seen == 0:
            raise ValueError(f"{_STAGE}.fit: the input has no rows; it needs at least one row")


class OnlineStandardScalerModel(_OnlineStandardScalerModelParams, Model):
    """Scales vectors with the statistics of :class:`OnlineStandardScaler` (or of a batch
    ``StandardScaler``), as ``StandardScalerModel`` does, and appends ``model_version_col``.

    Model data: one table, one row per model version (a single version is the usual case; the
    versions of ``fit_versions`` concatenated are a history):

    ==============  ===============================  ===============================================
    column          type                             meaning
    ==============  ===============================  ===============================================
    mean            fixed_size_list<double>[d]       column means of the rows seen
    std             fixed_size_list<double>[d]       column sample standard deviations (``ddof=1``)
    model_version   int64 (optional; 0)              the version
    timestamp       int64 ms (optional; 2**63 - 1)   largest event time seen (2**63 - 1: none)
    ==============  ===============================  ===============================================

    Which version scales a row:

    * ``time_col`` None: the newest version (largest ``model_version``) for every row.
    * ``time_col`` set: a row with event time ``t`` (ms) uses, among the versions ordered by
      ``(timestamp, model_version)``, the newest whose timestamp is within
      ``[t - max_allowed_model_delay_ms, t]``: the version a stream would have had when the row
      arrived, if fresh enough. If there is none, it uses the first version with a timestamp
      after ``t`` (the one a Flink ML model operator would have buffered the row for). If the
      newest version is older than ``t - max_allowed_model_delay_ms``, the row has no usable
      version and ``transform`` raises naming the row (in a stream it would wait for a fresher
      version); raise ``max_allowed_model_delay_ms`` or set ``time_col=None`` to use the newest
      version regardless. Versions stamped ``2**63 - 1`` (no event time) count as fresh.

    On a stream (``model.transform(stream)`` on a model following a model stream) each row uses
    the newest version that has arrived if it is fresh enough; otherwise the row waits for the
    first arriving version with a timestamp of at least ``t - max_allowed_model_delay_ms``, as in
    Flink ML (see ``flowlearn.stream.models.ModelStreamOp``). When versions arrive in timestamp
    order, each after the rows with an earlier event time and before the others, a stream
    scores every row as this table transform does.

    Example:
        >>> from flowlearn.feature.online_scalers import OnlineStandardScalerModel
        >>> m = OnlineStandardScalerModel(input_col="x", output_col="y", time_col="t", max_allowed_model_delay_ms=500)
        >>> m = m.set_model_data({"mean": [[0.0], [10.0]], "std": [[1.0], [2.0]], "model_version": [1, 2],
        ...                       "timestamp": [1000, 2000]})
        >>> out = m.transform({"x": [[4.0], [4.0], [4.0]], "t": [1.2, 2.3, 0.1]})
        >>> out.column("y").to_pylist(), out.column("model_version").to_pylist()
        ([[4.0], [2.0], [4.0]], [1, 2, 1])
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1:
            raise ValueError(f"{stage}: model data is one table (mean, std, model_version, timestamp), "
                             f"got {len(tables)} tables")
        (t,) = tables
        missing = [c for c in ("mean", "std") if c not in t.column_names]
        if missing:
            raise ValueError(f"{stage}: model data has no column(s) {missing}; expected vector columns mean and std "
                             f"(and model_version, timestamp), got columns {t.column_names}")
        if t.num_rows == 0:
            raise ValueError(f"{stage}: model data has no rows; it needs at least one model version")
        mean = np.array(to_numpy(t.column("mean"), "mean", f"{stage} model data"), dtype=np.float64)
        std = np.array(to_numpy(t.column("std"), "std", f"{stage} model data"), dtype=np.float64)
        if mean.shape != std.shape:
            raise ValueError(f"{stage}: model data vectors mean and std have different sizes "
                             f"{mean.shape[1]} and {std.shape[1]}")
        for name, v in (("mean", mean), ("std", std)):
            if not np.isfinite(v).all():
                raise ValueError(f"{stage}: model data column '{name}' holds NaN or infinity; refit the model")
        if (std < 0).any():
            raise ValueError(f"{stage}: model data column 'std' has a negative entry; a standard deviation is >= 0")
        v = len(mean)

        def int_col(name: str, default: int) -> np.ndarray:
            if name not in t.column_names:
                return np.full(v, default, dtype=np.int64)
            c = t.column(name)
            if c.null_count or not pa.types.is_integer(c.type):
                raise ValueError(f"{stage}: model data column '{name}' must hold integers without nulls, "
                                 f"got {c.type} with {c.null_count} nulls")
            return c.to_numpy().astype(np.int64)

        versions, stamps = int_col("model_version", 0), int_col("timestamp", NO_EVENT_TIME)
        if len(np.unique(versions)) != v:
            raise ValueError(f"{stage}: model data has repeated model_version values {versions.tolist()}; "
                             f"each row is one version")
        self._means = mean
        self._scales = np.divide(1.0, std, out=np.zeros_like(std), where=std != 0)
        self._versions = versions
        self._stamps = stamps
        self._newest = int(np.argmax(versions))
        self._order = np.lexsort((versions, stamps))  # by timestamp, then version
        self._dim = mean.shape[1]

    @property
    def model_version(self) -> int:
        """The newest model version held."""
        self._require_model()
        return int(self._versions[self._newest])

    @property
    def event_time_limit_ms(self) -> int | None:
        """With ``time_col`` set: the latest event time (ms) the versions held are fresh enough for,
        the freshest timestamp + ``max_allowed_model_delay_ms``; ``None`` without ``time_col`` or
        model data. A model stream holds a row with a later event time back until a fresher version
        arrives (as Flink ML's model operator); see :meth:`event_times_ms`."""
        if self.time_col is None or self._model_data is None:
            return None
        return min(int(self._stamps.max()) + self.max_allowed_model_delay_ms, NO_EVENT_TIME)

    def event_times_ms(self, table: pa.Table) -> np.ndarray:
        """The event times (int64 ms) of ``table``'s rows, from ``time_col``."""
        return _event_time_ms(table, self.time_col, type(self).__name__)

    def _select(self, t_ms: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Index of the model version for each event time (see the class docstring)."""
        order = self._order
        ts = self._stamps[order]
        delay = self.max_allowed_model_delay_ms
        pos = np.searchsorted(ts, t_ms, side="right") - 1  # newest (by timestamp) with ts <= t
        ok = pos >= 0
        ok[ok] = ts[pos[ok]] >= t_ms[ok] - min(delay, _DELAY_CAP)
        out = np.empty(len(t_ms), dtype=np.int64)
        out[ok] = order[pos[ok]]
        nxt = pos[~ok] + 1  # first timestamp after t
        if len(nxt):
            stale = nxt >= len(ts)
            if stale.any():
                r = int(np.flatnonzero(~ok)[np.flatnonzero(stale)[0]])
                newest = int(order[-1])
                raise ValueError(
                    f"{type(self).__name__}: row {first_row + r} has event time {int(t_ms[r])} ms in column "
                    f"'{self.time_col}' (parameter 'time_col') but the freshest model version "
                    f"{int(self._versions[newest])} has timestamp {int(self._stamps[newest])} ms, older than "
                    f"max_allowed_model_delay_ms={delay}; a stream would wait for a fresher version. Raise "
                    f"max_allowed_model_delay_ms or set time_col=None to use the newest version")
            last_tie = np.searchsorted(ts, ts[nxt], side="right") - 1  # newest version at that timestamp
            out[~ok] = order[last_tie]
        return out

    def _transform(self, *tables: pa.Table) -> pa.Table:
        if len(tables) != 1:
            raise TypeError(f"{type(self).__name__}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        with_mean, with_std = self.with_mean, self.with_std
        x = _transform_input(self, t, self._dim, dense=True if with_mean else None)
        n = x.shape[0]
        if self.time_col is None or len(self._versions) == 1 or n == 0:
            if self.time_col is not None and n:
                self._select(_event_time_ms(t, self.time_col, type(self).__name__))  # freshness check
            sel = None
            mean, scale = self._means[self._newest], self._scales[self._newest]
            version = np.full(n, self._versions[self._newest], dtype=np.int64)
        else:
            sel = self._select(_event_time_ms(t, self.time_col, type(self).__name__))
            mean, scale = self._means[sel], self._scales[sel]
            version = self._versions[sel]
        if sps.issparse(x):
            if not with_std:
                out = _scale_sparse(x, None)
            elif sel is None:
                out = _scale_sparse(x, scale)
            else:
                rows = np.repeat(np.arange(n), np.diff(x.indptr))
                out = from_csr(sps.csr_matrix((x.data * scale[rows, x.indices], x.indices, x.indptr), shape=x.shape))
        else:
            y = x - mean if with_mean else x
            out = from_numpy(y * scale if with_std else y)
        out_t = with_column(t, _scaled_field(self, t, out), out)
        if self.model_version_col is not None:
            out_t = with_column(out_t, self.model_version_col, pa.array(version, pa.int64()))
        return out_t

    def row_fn(self) -> RowFn:
        self._require_model()
        stage, in_col, out_col, vcol = type(self).__name__, self.input_col, self.output_col, self.model_version_col
        tcol, d = self.time_col, self._dim
        means, scales, versions, newest = self._means, self._scales, self._versions, self._newest
        with_mean, with_std = self.with_mean, self.with_std
        select = self._select

        def fn(row: dict) -> None:
            if tcol is None:
                i = newest
            else:
                if tcol not in row:
                    raise ValueError(f"{stage}: event time column '{tcol}' (parameter 'time_col') is missing from "
                                     f"the row; the row has keys {list(row)}")
                i = int(select(np.array([_row_time_ms(row[tcol], tcol, stage)], dtype=np.int64))[0])
            mean, scale = means[i], scales[i]
            v = _row_vector(row, in_col, stage, d)
            if isinstance(v, SparseVector):
                if not with_mean:
                    vals = v.values * scale[v.indices] if with_std else v.values.copy()
                    row[out_col] = SparseVector.unchecked(d, v.indices, vals)
                    if vcol is not None:
                        row[vcol] = int(versions[i])
                    return
                v = v.to_numpy()
            y = v - mean if with_mean else v
            row[out_col] = y * scale if with_std else np.array(y, dtype=np.float64)
            if vcol is not None:
                row[vcol] = int(versions[i])

        return fn


OnlineStandardScaler.model_class = OnlineStandardScalerModel
