"""Streaming evaluation: windowed and cumulative metrics per window and model version, as
Alink's ``EvalBinaryClassStreamOp`` / ``EvalMultiClassStreamOp`` / ``EvalRegressionStreamOp``.

A ``StreamingEvaluator`` consumes prediction batches (Arrow tables with the label, the
prediction detail and optionally ``model_version``) and emits one row per closed window:
the window's metrics, the cumulative metrics so far, the row counts and the model versions
seen. With ``per_version=True`` each window also emits one row per model version that
scored rows in it: that version's metrics on its rows of the window and on all its rows so
far. Windows close every ``window_rows`` rows (count window) or every ``window_seconds`` of
processing time. Window metrics are exact. Cumulative ranking metrics (AUC, KS) of an
unbounded stream are computed from per-class score histograms of ``bins`` bins over [0, 1]
(as Alink does), so memory stays bounded; the others are exact running sums. Classification
scores must therefore be probabilities: a score outside [0, 1] raises ``ValueError``.

Example:
    >>> import flowlearn as fl, numpy as np
    >>> ev = StreamingEvaluator("binary", label_col="label", raw_prediction_col="p", window_rows=4)
    >>> rows = ev.update(fl.table({"label": [0, 1, 0, 1], "p": [0.2, 0.9, 0.4, 0.6]}))
    >>> rows[0]["window_auc"], rows[0]["rows"]
    (1.0, 4)
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.data.columns import first_bad_row, numeric_column, require_column, vector_column
from flowlearn.evaluation.metrics import (
    BINARY_METRICS,
    binary_auc,
    binary_ks,
    binary_threshold_metrics,
    log_loss,
    multiclass_metrics,
    regression_metrics,
)
from flowlearn.data.table import table as to_table
from flowlearn.linalg import from_numpy, is_vector_type, to_numpy
from flowlearn.trainer import OperatorState

__all__ = ["StreamingEvaluator"]

_EPS = 1e-15
_SUM_KEYS = ("log_loss", "correct", "tp", "fp", "fn", "se", "ae", "y", "yy")


def _hist_auc_ks(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """AUC and KS from per-class counts of score bins in ascending score order (dense, or the
    non-empty bins only: empty bins add no area and no new threshold)."""
    tp, fp = np.r_[0.0, np.cumsum(pos[::-1])], np.r_[0.0, np.cumsum(neg[::-1])]  # descending score
    if not (tp[-1] and fp[-1]):
        return float("nan"), float("nan")
    tpr, fpr = tp / tp[-1], fp / fp[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2), float(np.max(tpr - fpr))


class _Cumulative:
    """Running sums, and for binary a score histogram, of the rows one key (the whole stream or
    one model version) has seen. The stream's histogram is dense (``bins`` counts per class); a
    version's is sparse (only its non-empty bins), so that many versions stay cheap."""

    def __init__(self, kind: str, bins: int, dense: bool) -> None:
        self.kind, self.bins, self.dense = kind, bins, dense
        self.n = 0
        self.sums = dict.fromkeys(_SUM_KEYS, 0.0)
        self.hist = np.zeros((2, bins), dtype=np.float64) if dense else None  # rows: neg, pos
        self.hist_bins = np.empty(0, dtype=np.int64)  # sparse: bin index, ascending
        self.hist_counts = np.empty((2, 0), dtype=np.float64)  # sparse: neg, pos per bin

    def add(self, y: np.ndarray, s: np.ndarray) -> None:
        self.n += len(y)
        sums = self.sums
        if self.kind == "binary":
            pos = y > 0.5
            b = np.clip((s * self.bins).astype(np.int64), 0, self.bins - 1)
            if self.dense:
                self.hist[1] += np.bincount(b[pos], minlength=self.bins)
                self.hist[0] += np.bincount(b[~pos], minlength=self.bins)
            else:
                u, inv = np.unique(np.concatenate([self.hist_bins, b]), return_inverse=True)
                self.hist_counts = np.vstack([
                    np.bincount(inv, weights=np.r_[self.hist_counts[0], (~pos).astype(np.float64)], minlength=len(u)),
                    np.bincount(inv, weights=np.r_[self.hist_counts[1], pos.astype(np.float64)], minlength=len(u))])
                self.hist_bins = u
            sums["log_loss"] += float(-np.log(np.clip(np.where(pos, s, 1 - s), _EPS, 1)).sum())
            pred = s >= 0.5
            sums["correct"] += float(np.sum(pred == pos))
            sums["tp"] += float(np.sum(pred & pos))
            sums["fp"] += float(np.sum(pred & ~pos))
            sums["fn"] += float(np.sum(~pred & pos))
        elif self.kind == "multiclass":
            yi = y.astype(np.int64)
            sums["correct"] += float(np.sum(np.argmax(s, axis=1) == yi))
            sums["log_loss"] += float(-np.log(np.clip(s[np.arange(len(yi)), yi], _EPS, 1)).sum())
        else:
            err = s - y
            sums["se"] += float(err @ err)
            sums["ae"] += float(np.abs(err).sum())
            sums["y"] += float(y.sum())
            sums["yy"] += float(y @ y)

    def metrics(self) -> dict[str, float]:
        s, n = self.sums, self.n
        if self.kind == "binary":
            neg, pos = (self.hist[0], self.hist[1]) if self.dense else (self.hist_counts[0], self.hist_counts[1])
            auc, ks = _hist_auc_ks(neg, pos)
            precision = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 0.0
            recall = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            return {"auc": auc, "log_loss": s["log_loss"] / n, "accuracy": s["correct"] / n,
                    "precision": precision, "recall": recall, "f1": f1, "ks": ks}
        if self.kind == "multiclass":
            return {"accuracy": s["correct"] / n, "log_loss": s["log_loss"] / n}
        ss_tot = s["yy"] - s["y"] ** 2 / n
        return {"rmse": float(np.sqrt(s["se"] / n)), "mae": s["ae"] / n,
                "r2": 1 - s["se"] / ss_tot if ss_tot > 0 else float("nan")}


class StreamingEvaluator:
    """Windowed + cumulative metrics over a stream of prediction batches.

    ``kind`` is ``"binary"`` (``raw_prediction_col``: probability vector, positive class last,
    or the positive-class probability), ``"multiclass"`` (probability vectors) or
    ``"regression"`` (``prediction_col``). Each closed window gives one row: ``window``,
    ``rows``, ``model_versions`` (versions seen in the window), ``cumulative_rows``, and
    ``window_<metric>`` / ``cumulative_<metric>`` for binary ``auc, log_loss, accuracy,
    precision, recall, f1, ks`` (predicting 1 when the probability is >= 0.5), multiclass
    ``accuracy, macro_f1, log_loss`` (cumulative: ``accuracy, log_loss``) or regression
    ``rmse, mae, r2``.

    **Per model version** (``per_version=True``): a window spanning several model versions
    is also split by version. After each window's overall row (``model_version`` None, its
    metrics as without the option) comes one row per model version that scored rows in the
    window, in ascending version order, with ``model_version`` set: ``rows`` and
    ``window_*`` are that version's rows of the window, ``cumulative_rows`` and
    ``cumulative_*`` all its rows so far (across windows). Every row must then carry a
    version in ``version_col`` (a ``ValueError`` names a missing column or the first null).
    Filter the output on ``model_version`` to get one kind of row. A version's cumulative
    histogram keeps only its non-empty bins, so state grows with the number of versions, at
    most ``min(rows, bins)`` bins each.

    **Scores must be probabilities** for ``"binary"`` and ``"multiclass"``: log loss, the 0.5
    threshold and the cumulative AUC/KS histogram over [0, 1] are defined on them. A score
    outside [0, 1] (e.g. an SVM margin) raises ``ValueError`` naming the column, the row of
    the batch, the value and the rule; the batch is rejected whole and the state is unchanged.
    For margin scores, map them into [0, 1] first (e.g. a sigmoid, which keeps AUC and KS).

    State (pending window rows, running sums, histograms, per-version accumulators) is
    checkpointed as JSON plus Arrow tables when the evaluator runs on a ``Stream``.

    Example:
        >>> import flowlearn as fl
        >>> ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=4, per_version=True)
        >>> t = fl.table({"label": [0, 1, 0, 1], "p": [0.2, 0.9, 0.6, 0.4], "model_version": [1, 1, 2, 2]})
        >>> [(r["model_version"], r["rows"], r["window_accuracy"]) for r in ev.update(t)]
        [(None, 4, 0.5), (1, 2, 1.0), (2, 2, 0.0)]
        >>> ev.update(fl.table({"label": [0, 1], "p": [-1.5, 2.0], "model_version": [3, 3]}))  # margins
        Traceback (most recent call last):
        ...
        ValueError: StreamingEvaluator: column 'p' (parameter 'raw_prediction_col') has score -1.5 at row 0, ...
    """

    def __init__(self, kind: str = "binary", label_col: str = "label", raw_prediction_col: str = "raw_prediction",
                 prediction_col: str = "prediction", version_col: str = "model_version",
                 window_rows: int | None = 10_000, window_seconds: float | None = None, bins: int = 100_000,
                 clock=time.monotonic, per_version: bool = False) -> None:
        if kind not in ("binary", "multiclass", "regression"):
            raise ValueError(f"StreamingEvaluator: parameter 'kind' = {kind!r} violates in_array(['binary', "
                             f"'multiclass', 'regression'])")
        if window_rows is None and window_seconds is None:
            raise ValueError("StreamingEvaluator: set window_rows or window_seconds")
        if window_rows is not None and window_rows <= 0:
            raise ValueError(f"StreamingEvaluator: parameter 'window_rows' = {window_rows} violates gt(0)")
        if not isinstance(per_version, bool):
            raise ValueError(f"StreamingEvaluator: parameter 'per_version' = {per_version!r} violates "
                             f"in_array([False, True])")
        self.kind, self.label_col, self.raw_col, self.pred_col = kind, label_col, raw_prediction_col, prediction_col
        self.version_col, self.window_rows, self.window_seconds, self.bins = version_col, window_rows, \
            window_seconds, bins
        self.per_version = per_version
        self._clock = clock
        self._window_start = clock()
        self._window_index = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._total = _Cumulative(kind, bins, dense=True)
        self._by_version: dict[int, _Cumulative] = {}

    # -------------------------------------------------------------- tables and streams
    def evaluate(self, data: Any) -> Any:
        """Metrics rows for a table (every window, the last one flushed), or, for a ``Stream``,
        a stream of metrics rows, one per closed window (plus the per-version rows), with this
        evaluator's state checkpointed by the job (Alink's ``Eval*StreamOp``)."""
        if getattr(data, "_flowlearn_stream", False):
            return data.map_stateful(self, name=f"StreamingEvaluator({self.kind})")
        t = data if isinstance(data, pa.Table) else to_table(data)
        return pa.Table.from_pylist(self.update(t) + self.flush())

    def snapshot_state(self) -> OperatorState:
        """The evaluator's state as JSON plus Arrow tables (for checkpoints; no pickle)."""
        data = {"window_index": self._window_index, "n": self._total.n, "sums": dict(self._total.sums),
                "pending_rows": self._pending_rows}
        tables = {"hist": pa.table({"neg": self._total.hist[0], "pos": self._total.hist[1]})}
        if self._pending:
            y = np.concatenate([p[0] for p in self._pending])
            s = np.concatenate([p[1] for p in self._pending])
            v = np.concatenate([p[2] for p in self._pending])
            score = from_numpy(s) if s.ndim == 2 else pa.array(s)
            tables["pending"] = pa.table({"y": y, "s": score, "v": v})
        if self._by_version:
            vers = sorted(self._by_version)
            accs = [self._by_version[v] for v in vers]
            cols: dict[str, Any] = {"model_version": pa.array(vers, pa.int64()),
                                    "n": pa.array([a.n for a in accs], pa.int64())}
            cols.update({k: pa.array([a.sums[k] for a in accs], pa.float64()) for k in _SUM_KEYS})
            tables["version_sums"] = pa.table(cols)
            if self.kind == "binary":
                tables["version_hist"] = pa.table({
                    "model_version": np.repeat(np.array(vers, dtype=np.int64), [len(a.hist_bins) for a in accs]),
                    "bin": np.concatenate([a.hist_bins for a in accs]),
                    "neg": np.concatenate([a.hist_counts[0] for a in accs]),
                    "pos": np.concatenate([a.hist_counts[1] for a in accs])})
        return OperatorState(data, tables)

    def restore_state(self, state: OperatorState) -> None:
        data, tables = state.data, state.tables
        self._window_index = int(data["window_index"])
        self._total = _Cumulative(self.kind, self.bins, dense=True)
        self._total.n = int(data["n"])
        self._total.sums.update({k: float(v) for k, v in data["sums"].items()})
        self._total.hist = np.vstack([tables["hist"].column("neg").to_numpy(),
                                      tables["hist"].column("pos").to_numpy()])
        self._pending, self._pending_rows = [], 0
        if "pending" in tables:
            p = tables["pending"]
            s = p.column("s")
            score = to_numpy(s) if is_vector_type(s.type) else s.to_numpy()
            self._pending = [(p.column("y").to_numpy(), score, p.column("v").to_numpy())]
            self._pending_rows = p.num_rows
        self._by_version = {}
        if "version_sums" in tables:  # absent in checkpoints of evaluators without per-version state
            vs = tables["version_sums"]
            sums = {k: vs.column(k).to_numpy() for k in _SUM_KEYS}
            for i, (v, n) in enumerate(zip(vs.column("model_version").to_pylist(), vs.column("n").to_pylist())):
                acc = _Cumulative(self.kind, self.bins, dense=False)
                acc.n = int(n)
                acc.sums = {k: float(sums[k][i]) for k in _SUM_KEYS}
                self._by_version[int(v)] = acc
            if "version_hist" in tables:
                h = tables["version_hist"]
                hv = h.column("model_version").to_numpy()
                hb, hn, hp = (h.column(c).to_numpy() for c in ("bin", "neg", "pos"))
                for v, acc in self._by_version.items():
                    lo, hi = np.searchsorted(hv, v, "left"), np.searchsorted(hv, v, "right")  # sorted by version
                    acc.hist_bins = hb[lo:hi].astype(np.int64)
                    acc.hist_counts = np.vstack([hn[lo:hi], hp[lo:hi]]).astype(np.float64)
        self._window_start = self._clock()

    # -------------------------------------------------------------- input
    def _extract(self, t: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        name = "StreamingEvaluator"
        y = numeric_column(t, self.label_col, name, "label_col")
        if self.kind == "regression":
            s = numeric_column(t, self.pred_col, name, "prediction_col")
        else:
            col = require_column(t, self.raw_col, name, "raw_prediction_col")
            if is_vector_type(col.type):
                s = vector_column(t, self.raw_col, name, "raw_prediction_col", dense=True)
                if self.kind == "binary":
                    s = s[:, 1]
            else:
                s = numeric_column(t, self.raw_col, name, "raw_prediction_col")
            if self.kind == "binary":
                bad = (y != 0) & (y != 1)
                if bad.any():
                    row = first_bad_row(bad)
                    raise ValueError(f"{name}: column '{self.label_col}' has label {y[row]} at row {row}; binary "
                                     f"evaluation needs labels 0 and 1")
            self._check_probabilities(s)
        v = self._versions(t, len(y))
        return y, s, v

    def _check_probabilities(self, s: np.ndarray) -> None:
        bad = (s < 0) | (s > 1)  # NaN and infinity were rejected when the column was read
        if not bad.any():
            return
        if s.ndim == 2:
            row = first_bad_row(bad.any(axis=1))
            cls = first_bad_row(bad[row])
            what = f"probability {float(s[row, cls])!r} for class {cls}"
        else:
            row = first_bad_row(bad)
            what = f"score {float(s[row])!r}"
        raise ValueError(
            f"StreamingEvaluator: column '{self.raw_col}' (parameter 'raw_prediction_col') has {what} at row "
            f"{row}, which violates in_range(0, 1); {self.kind} evaluation needs probabilities (log loss, the 0.5 "
            f"threshold and the cumulative AUC/KS histogram over [0, 1] are defined on them). Evaluate a "
            f"probability column, or map margins into [0, 1] first (e.g. with a sigmoid, which keeps AUC and KS)")

    def _versions(self, t: pa.Table, n: int) -> np.ndarray:
        name = "StreamingEvaluator"
        if self.version_col not in t.column_names:
            if self.per_version:
                raise ValueError(f"{name}: input column '{self.version_col}' (parameter 'version_col') is missing; "
                                 f"per_version=True needs the model version of every row. The input has columns "
                                 f"{t.column_names}")
            return np.full(n, -1, dtype=np.int64)  # unversioned rows
        col = t.column(self.version_col)
        if pa.types.is_null(col.type) and not self.per_version:
            return np.full(n, -1, dtype=np.int64)
        if col.null_count:
            if self.per_version:
                row = first_bad_row(~np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False)))
                raise ValueError(f"{name}: column '{self.version_col}' (parameter 'version_col') has a null at row "
                                 f"{row}; per_version=True needs the model version of every row")
            col = col.fill_null(-1)
        return col.to_numpy().astype(np.int64)

    def update(self, t: pa.Table) -> list[dict[str, Any]]:
        """Add one batch; return the rows of the windows it closed (possibly none)."""
        y, s, v = self._extract(t)
        out: list[dict[str, Any]] = []
        start = 0
        n = len(y)
        while start < n:
            take = n - start
            if self.window_rows is not None:
                take = min(take, self.window_rows - self._pending_rows)
            sl = slice(start, start + take)
            self._pending.append((y[sl], s[sl], v[sl]))
            self._pending_rows += take
            start += take
            if self.window_rows is not None and self._pending_rows >= self.window_rows:
                out += self._close()
        if self.window_seconds is not None and self._pending_rows and \
                self._clock() - self._window_start >= self.window_seconds:
            out += self._close()
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Close the open window (at the end of a bounded stream)."""
        return self._close() if self._pending_rows else []

    # -------------------------------------------------------------- metrics
    def _close(self) -> list[dict[str, Any]]:
        y = np.concatenate([p[0] for p in self._pending])
        s = np.concatenate([p[1] for p in self._pending])
        v = np.concatenate([p[2] for p in self._pending])
        self._pending, self._pending_rows = [], 0
        window = self._window_index
        self._window_index += 1
        self._window_start = self._clock()
        versions = np.unique(v)
        row: dict[str, Any] = {"window": window}
        if self.per_version:
            row["model_version"] = None
        row.update({"rows": int(len(y)),
                    "model_versions": [int(x) for x in (versions if self.per_version else versions[versions >= 0])]})
        out = [self._metrics_row(row, y, s, self._total)]
        if self.per_version:
            order = np.argsort(v, kind="stable")  # rows of each version, in arrival order
            bounds = np.r_[0, np.cumsum(np.bincount(np.searchsorted(versions, v), minlength=len(versions)))]
            for i, ver in enumerate(versions.tolist()):
                idx = order[bounds[i]:bounds[i + 1]]
                acc = self._by_version.get(ver)
                if acc is None:
                    acc = self._by_version[ver] = _Cumulative(self.kind, self.bins, dense=False)
                head = {"window": window, "model_version": ver, "rows": len(idx), "model_versions": [ver]}
                out.append(self._metrics_row(head, y[idx], s[idx], acc))
        return out

    def _metrics_row(self, row: dict[str, Any], y: np.ndarray, s: np.ndarray, acc: _Cumulative) -> dict[str, Any]:
        """``row`` completed with the window metrics of ``(y, s)`` and, after adding them to
        ``acc``, its cumulative row count and metrics."""
        acc.add(y, s)
        row["cumulative_rows"] = acc.n
        if self.kind == "binary":
            window = self._binary_window(y, s)
        elif self.kind == "multiclass":
            window = multiclass_metrics(y, s)
        else:
            window = regression_metrics(y, s)
        row.update({f"window_{k}": val for k, val in window.items()})
        row.update({f"cumulative_{k}": val for k, val in acc.metrics().items()})
        return row

    @staticmethod
    def _binary_window(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        m = {"auc": binary_auc(y, p), "log_loss": log_loss(y, p), "ks": binary_ks(y, p)}
        m.update(binary_threshold_metrics(y, p))
        return {k: m[k] for k in BINARY_METRICS}
