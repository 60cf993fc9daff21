"""Streaming evaluation: windowed and cumulative metrics per window and model version, as
Alink's ``EvalBinaryClassStreamOp`` / ``EvalMultiClassStreamOp`` / ``EvalRegressionStreamOp``.

A ``StreamingEvaluator`` consumes prediction batches (Arrow tables with the label, the
prediction detail and optionally ``model_version``) and emits one row per closed window:
the window's metrics, the cumulative metrics so far, the row counts and the model versions
seen. Windows close every ``window_rows`` rows (count window) or every ``window_seconds`` of
processing time. Window metrics are exact. Cumulative ranking metrics (AUC, KS) of an
unbounded stream are computed from per-class score histograms of ``bins`` bins over [0, 1]
(as Alink does), so memory stays constant; the others are exact running sums.

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

from flowlearn.data.columns import numeric_column, require_column, vector_column
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

__all__ = ["StreamingEvaluator"]

_EPS = 1e-15


class StreamingEvaluator:
    """Windowed + cumulative metrics over a stream of prediction batches.

    ``kind`` is ``"binary"`` (raw_prediction_col: probability vector or positive-class score),
    ``"multiclass"`` (probability vectors) or ``"regression"`` (prediction_col).
    """

    def __init__(self, kind: str = "binary", label_col: str = "label", raw_prediction_col: str = "raw_prediction",
                 prediction_col: str = "prediction", version_col: str = "model_version",
                 window_rows: int | None = 10_000, window_seconds: float | None = None, bins: int = 100_000,
                 clock=time.monotonic) -> None:
        if kind not in ("binary", "multiclass", "regression"):
            raise ValueError(f"StreamingEvaluator: parameter 'kind' = {kind!r} violates in_array(['binary', "
                             f"'multiclass', 'regression'])")
        if window_rows is None and window_seconds is None:
            raise ValueError("StreamingEvaluator: set window_rows or window_seconds")
        if window_rows is not None and window_rows <= 0:
            raise ValueError(f"StreamingEvaluator: parameter 'window_rows' = {window_rows} violates gt(0)")
        self.kind, self.label_col, self.raw_col, self.pred_col = kind, label_col, raw_prediction_col, prediction_col
        self.version_col, self.window_rows, self.window_seconds, self.bins = version_col, window_rows, \
            window_seconds, bins
        self._clock = clock
        self._window_start = clock()
        self._window_index = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._n = 0
        self._hist = np.zeros((2, bins), dtype=np.float64)
        self._sums: dict[str, float] = {"log_loss": 0.0, "correct": 0.0, "tp": 0.0, "fp": 0.0, "fn": 0.0,
                                        "se": 0.0, "ae": 0.0, "y": 0.0, "yy": 0.0}
        self._class_counts: np.ndarray | None = None

    # -------------------------------------------------------------- tables and streams
    def evaluate(self, data: Any) -> Any:
        """Metrics rows for a table (every window, the last one flushed), or, for a ``Stream``,
        a stream of metrics rows, one per closed window, with this evaluator's state
        checkpointed by the job (Alink's ``Eval*StreamOp``)."""
        if getattr(data, "_flowlearn_stream", False):
            return data.map_stateful(self, name=f"StreamingEvaluator({self.kind})")
        t = data if isinstance(data, pa.Table) else to_table(data)
        return pa.Table.from_pylist(self.update(t) + self.flush())

    def snapshot_state(self) -> tuple[dict, dict[str, pa.Table]]:
        """The evaluator's state as JSON plus Arrow tables (for checkpoints; no pickle)."""
        data = {"window_index": self._window_index, "n": self._n, "sums": dict(self._sums),
                "pending_rows": self._pending_rows}
        tables = {"hist": pa.table({"neg": self._hist[0], "pos": self._hist[1]})}
        if self._pending:
            y = np.concatenate([p[0] for p in self._pending])
            s = np.concatenate([p[1] for p in self._pending])
            v = np.concatenate([p[2] for p in self._pending])
            score = from_numpy(s) if s.ndim == 2 else pa.array(s)
            tables["pending"] = pa.table({"y": y, "s": score, "v": v})
        return data, tables

    def restore_state(self, data: dict, tables: dict[str, pa.Table]) -> None:
        self._window_index, self._n = int(data["window_index"]), int(data["n"])
        self._sums = {k: float(v) for k, v in data["sums"].items()}
        self._hist = np.vstack([tables["hist"].column("neg").to_numpy(), tables["hist"].column("pos").to_numpy()])
        self._pending, self._pending_rows = [], 0
        if "pending" in tables:
            p = tables["pending"]
            s = p.column("s")
            score = to_numpy(s) if is_vector_type(s.type) else s.to_numpy()
            self._pending = [(p.column("y").to_numpy(), score, p.column("v").to_numpy())]
            self._pending_rows = p.num_rows
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
                    row = int(np.flatnonzero(bad)[0])
                    raise ValueError(f"{name}: column '{self.label_col}' has label {y[row]} at row {row}; binary "
                                     f"evaluation needs labels 0 and 1")
        v = t.column(self.version_col).to_numpy(zero_copy_only=False).astype(np.int64) \
            if self.version_col in t.column_names else np.full(len(y), -1, dtype=np.int64)
        return y, s, v

    def update(self, t: pa.Table) -> list[dict[str, Any]]:
        """Add one batch; return the rows of the windows it closed (possibly none)."""
        y, s, v = self._extract(t)
        out = []
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
                out.append(self._close())
        if self.window_seconds is not None and self._pending_rows and \
                self._clock() - self._window_start >= self.window_seconds:
            out.append(self._close())
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Close the open window (at the end of a bounded stream)."""
        return [self._close()] if self._pending_rows else []

    # -------------------------------------------------------------- metrics
    def _close(self) -> dict[str, Any]:
        y = np.concatenate([p[0] for p in self._pending])
        s = np.concatenate([p[1] for p in self._pending])
        v = np.concatenate([p[2] for p in self._pending])
        self._pending, self._pending_rows = [], 0
        row: dict[str, Any] = {"window": self._window_index, "rows": int(len(y)),
                               "model_versions": sorted({int(x) for x in np.unique(v) if x >= 0})}
        self._window_index += 1
        self._window_start = self._clock()
        self._n += len(y)
        row["cumulative_rows"] = self._n
        if self.kind == "binary":
            row.update({f"window_{k}": val for k, val in self._binary_window(y, s).items()})
            self._accumulate_binary(y, s)
            row.update({f"cumulative_{k}": val for k, val in self._binary_cumulative().items()})
        elif self.kind == "multiclass":
            row.update({f"window_{k}": val for k, val in multiclass_metrics(y, s).items()})
            yi = y.astype(np.int64)
            self._sums["correct"] += float(np.sum(np.argmax(s, axis=1) == yi))
            self._sums["log_loss"] += float(-np.log(np.clip(s[np.arange(len(yi)), yi], _EPS, 1)).sum())
            row["cumulative_accuracy"] = self._sums["correct"] / self._n
            row["cumulative_log_loss"] = self._sums["log_loss"] / self._n
        else:
            row.update({f"window_{k}": val for k, val in regression_metrics(y, s).items()})
            err = s - y
            self._sums["se"] += float(err @ err)
            self._sums["ae"] += float(np.abs(err).sum())
            self._sums["y"] += float(y.sum())
            self._sums["yy"] += float(y @ y)
            ss_tot = self._sums["yy"] - self._sums["y"] ** 2 / self._n
            row["cumulative_rmse"] = float(np.sqrt(self._sums["se"] / self._n))
            row["cumulative_mae"] = self._sums["ae"] / self._n
            row["cumulative_r2"] = 1 - self._sums["se"] / ss_tot if ss_tot > 0 else float("nan")
        return row

    @staticmethod
    def _binary_window(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        m = {"auc": binary_auc(y, p), "log_loss": log_loss(y, p), "ks": binary_ks(y, p)}
        m.update(binary_threshold_metrics(y, p))
        return {k: m[k] for k in BINARY_METRICS}

    def _accumulate_binary(self, y: np.ndarray, p: np.ndarray) -> None:
        b = np.clip((p * self.bins).astype(np.int64), 0, self.bins - 1)
        pos = y > 0.5
        self._hist[1] += np.bincount(b[pos], minlength=self.bins)
        self._hist[0] += np.bincount(b[~pos], minlength=self.bins)
        self._sums["log_loss"] += float(-np.log(np.clip(np.where(pos, p, 1 - p), _EPS, 1)).sum())
        pred = p >= 0.5
        self._sums["correct"] += float(np.sum(pred == pos))
        self._sums["tp"] += float(np.sum(pred & pos))
        self._sums["fp"] += float(np.sum(pred & ~pos))
        self._sums["fn"] += float(np.sum(~pred & pos))

    def _binary_cumulative(self) -> dict[str, float]:
        neg, pos = self._hist[0][::-1], self._hist[1][::-1]  # descending score
        tp, fp = np.r_[0.0, np.cumsum(pos)], np.r_[0.0, np.cumsum(neg)]
        if tp[-1] and fp[-1]:
            tpr, fpr = tp / tp[-1], fp / fp[-1]
            auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)
            ks = float(np.max(tpr - fpr))
        else:
            auc = ks = float("nan")
        s = self._sums
        precision = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 0.0
        recall = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"auc": auc, "log_loss": s["log_loss"] / self._n, "accuracy": s["correct"] / self._n,
                "precision": precision, "recall": recall, "f1": f1, "ks": ks}
