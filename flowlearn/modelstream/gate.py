"""``ModelGate``: publish a candidate model version to serving only when its metric on held-out
data passes thresholds (Alink's model filter).

A gate evaluates a candidate on held-out data: a table (its last ``window_rows`` rows) or a
stream (a sliding buffer of the latest ``window_rows`` rows that have arrived). The metric is
the window metric of :class:`flowlearn.evaluation.StreamingEvaluator` over those rows:
binary ``auc``, ``log_loss``, ``accuracy``, ``precision``, ``recall``, ``f1``, ``ks``;
multiclass ``accuracy``, ``macro_f1``, ``log_loss``; regression ``rmse``, ``mae``, ``r2``.
A candidate passes when the value is a number with ``min_value <= value <= max_value``
(either bound optional); a NaN (e.g. AUC of a one-class window) or an empty held-out set
rejects it. Rejected versions are counted and logged (warning) with the value and rule.

Use it

* as a stream operator between a model stream and a store:
  ``gate.apply(versions).to_model_store(serving_store)`` (held-out stream = input 1, buffered
  and checkpointed; candidates that arrive before ``min_rows`` held-out rows wait for them);
* as a plain function: ``gate.check(model)`` returns a :class:`GateResult`,
  ``gate.publish(model, store)`` publishes only a passing model.

Passing versions get ``gate: {"metric", "value", "rows"}`` in their metadata.

Example:
    >>> import flowlearn as fl, tempfile
    >>> from flowlearn.modelstream import ModelStore
    >>> from flowlearn.modelstream.gate import ModelGate
    >>> from flowlearn.classification.logistic_regression import LogisticRegressionModel
    >>> held = fl.table({"features": [[-2.0], [-1.0], [1.0], [2.0]], "label": [0.0, 0.0, 1.0, 1.0]})
    >>> good = LogisticRegressionModel().set_model_data({"coefficient": [[1.0]], "intercept": [0.0]})
    >>> bad = LogisticRegressionModel().set_model_data({"coefficient": [[-1.0]], "intercept": [0.0]})
    >>> gate = ModelGate(metric="auc", min_value=0.7, held_out=held)
    >>> gate.check(good).passed, gate.check(bad).passed, gate.check(bad).value
    (True, False, 0.0)
    >>> store = ModelStore(tempfile.mkdtemp())
    >>> gate.publish(bad, store) is None, gate.publish(good, store), gate.rejected
    (True, 1, 3)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from flowlearn.stream.core import Stream
from flowlearn.stream.models import VersionItem, _with_meta, read_version
from flowlearn.stream.operator import Operator, OperatorState
from flowlearn.stream.plan import Spec, register_operator

__all__ = ["ModelGate", "GateResult"]

logger = logging.getLogger("flowlearn.modelstream.gate")

_KINDS = {
    "binary": ("auc", "log_loss", "accuracy", "precision", "recall", "f1", "ks"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


@dataclass
class GateResult:
    """The verdict on one candidate: ``passed``, the metric ``value``, held-out ``rows``, a
    ``reason`` when rejected, and the candidate's ``version`` (``published`` store version, if any)."""

    passed: bool
    metric: str
    value: float
    rows: int
    reason: str = ""
    version: int | None = None
    published: int | None = None


class ModelGate:
    """Gate model versions on a held-out metric (see the module docstring).

    Parameters: ``metric`` ("auc"), ``min_value`` / ``max_value`` (inclusive bounds, None = open),
    ``held_out`` (a table, anything ``fl.table`` accepts, or a ``Stream``), ``window_rows``
    (held-out rows used: the last ones; None = the whole table, 10000 for a stream),
    ``min_rows`` (held-out rows a stream must have buffered before candidates are judged; default
    ``window_rows``), ``kind`` ("binary", "multiclass" or "regression"; inferred from the metric
    when unambiguous), ``label_col``, ``raw_prediction_col``, ``prediction_col``.
    Counters: ``passed``, ``rejected``; ``results`` keeps the latest verdicts (up to 1000).
    A candidate whose raw prediction is a margin (``LinearSVCModel``, flagged by
    ``raw_prediction_is_margin``) is judged on ``sigmoid(margin - threshold)``: AUC and KS are the
    margins', accuracy/precision/recall/F1 decide as the model does; ``log_loss`` is refused.
    """

    def __init__(self, metric: str = "auc", min_value: float | None = None, max_value: float | None = None,
                 held_out: Any = None, window_rows: int | None = None, min_rows: int | None = None,
                 kind: str | None = None, label_col: str = "label", raw_prediction_col: str = "raw_prediction",
                 prediction_col: str = "prediction") -> None:
        if kind is None:
            kind = "regression" if metric in _KINDS["regression"] else (
                "multiclass" if metric == "macro_f1" else "binary")
        if kind not in _KINDS:
            raise ValueError(f"ModelGate: parameter 'kind' = {kind!r} violates in_array({sorted(_KINDS)})")
        if metric not in _KINDS[kind]:
            raise ValueError(f"ModelGate: parameter 'metric' = {metric!r} violates in_array({list(_KINDS[kind])}) "
                             f"for kind={kind!r}")
        for name, v in (("min_value", min_value), ("max_value", max_value)):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"ModelGate: parameter '{name}' = {v!r} must be a finite number or None")
        if min_value is not None and max_value is not None and min_value > max_value:
            raise ValueError(f"ModelGate: min_value {min_value} > max_value {max_value}: nothing could pass")
        self._stream_held_out = getattr(held_out, "_flowlearn_stream", False)
        if window_rows is None and self._stream_held_out:
            window_rows = 10_000
        if window_rows is not None and window_rows <= 0:
            raise ValueError(f"ModelGate: parameter 'window_rows' = {window_rows} violates gt(0)")
        if min_rows is not None and min_rows <= 0:
            raise ValueError(f"ModelGate: parameter 'min_rows' = {min_rows} violates gt(0)")
        self.metric, self.kind = metric, kind
        self.min_value, self.max_value = min_value, max_value
        self.window_rows = window_rows
        self.min_rows = min_rows if min_rows is not None else window_rows
        self.label_col, self.raw_prediction_col, self.prediction_col = label_col, raw_prediction_col, prediction_col
        self.held_out: Any = None
        if held_out is not None:
            self.held_out = held_out if self._stream_held_out else self._window(_as_table(held_out))
        self.passed = 0
        self.rejected = 0
        self.results: list[GateResult] = []

    def __repr__(self) -> str:
        return (f"ModelGate(metric={self.metric!r}, min_value={self.min_value!r}, max_value={self.max_value!r}, "
                f"window_rows={self.window_rows!r})")

    def _window(self, t: pa.Table) -> pa.Table:
        if self.window_rows is not None and t.num_rows > self.window_rows:
            return t.slice(t.num_rows - self.window_rows)
        return t

    # -- plain use -------------------------------------------------------------------------
    def evaluate(self, model: Any, held_out: Any = None) -> tuple[float, int]:
        """``(metric value, rows)`` of ``model`` (a Model, PipelineModel, model version or version
        table) on ``held_out`` (default: the gate's held-out table)."""
        from flowlearn.evaluation import StreamingEvaluator

        t = self._held_table(held_out)
        if t.num_rows == 0:
            return float("nan"), 0
        m = _as_model(model)
        pred = m.transform(t)
        margins = _margin_stage(m) if self.kind == "binary" else None
        if margins is not None:
            if self.metric == "log_loss":
                raise ValueError(f"ModelGate: metric 'log_loss' needs probabilities, but {type(margins).__name__} "
                                 f"predicts margins; gate it on auc, ks, accuracy, precision, recall or f1")
            pred = _margins_to_probabilities(pred, self.raw_prediction_col, float(getattr(margins, "threshold", 0.0)))
        ev = StreamingEvaluator(self.kind, label_col=self.label_col, raw_prediction_col=self.raw_prediction_col,
                                prediction_col=self.prediction_col, window_rows=t.num_rows, bins=16)
        rows = ev.update(pred) or ev.flush()
        return float(rows[0][f"window_{self.metric}"]), t.num_rows

    def _held_table(self, held_out: Any) -> pa.Table:
        if held_out is not None:
            return self._window(_as_table(held_out))
        if self.held_out is None or self._stream_held_out:
            raise ValueError("ModelGate: no held-out table; pass held_out= (a table) to the gate or to this call")
        return self.held_out

    def judge(self, value: float, rows: int, version: int | None = None) -> GateResult:
        """The verdict for a metric ``value`` measured on ``rows`` held-out rows (counted and logged)."""
        reason = ""
        if rows == 0:
            reason = "no held-out rows"
        elif not math.isfinite(value):
            reason = f"{self.metric} is {value} on {rows} held-out rows"
        elif self.min_value is not None and value < self.min_value:
            reason = f"{self.metric} = {value:.6g} < min_value {self.min_value:g} ({rows} held-out rows)"
        elif self.max_value is not None and value > self.max_value:
            reason = f"{self.metric} = {value:.6g} > max_value {self.max_value:g} ({rows} held-out rows)"
        res = GateResult(not reason, self.metric, value, rows, reason, version)
        if res.passed:
            self.passed += 1
            logger.info("ModelGate: version %s passed: %s = %.6g (%d held-out rows)", version, self.metric, value,
                        rows)
        else:
            self.rejected += 1
            logger.warning("ModelGate: rejected version %s: %s", version, reason)
        self.results.append(res)
        del self.results[:-1000]
        return res

    def check(self, model: Any, held_out: Any = None) -> GateResult:
        """Evaluate and judge one candidate (counted in ``passed`` / ``rejected``)."""
        value, rows = self.evaluate(model, held_out)
        return self.judge(value, rows, _version_of(model))

    def publish(self, model: Any, store: Any, metadata: dict | None = None, held_out: Any = None) -> int | None:
        """Publish ``model`` into ``store`` if it passes (metadata gets ``gate``); return the store
        version, or ``None`` when rejected."""
        res = self.check(model, held_out)
        if not res.passed:
            return None
        m = _as_model(model)
        md = {**(getattr(model, "metadata", None) or {}), **(metadata or {}),
              "gate": {"metric": self.metric, "value": res.value, "rows": res.rows}}
        res.published = store.publish(m, md)
        return res.published

    # -- stream use ------------------------------------------------------------------------
    def apply(self, versions: Stream) -> Stream:
        """The versions of the model stream ``versions`` that pass, as a model stream (for
        ``.to_model_store(serving_store)``). A held-out stream becomes the operator's input 1."""
        if not getattr(versions, "_flowlearn_stream", False):
            raise TypeError(f"ModelGate.apply expects a model stream, got {type(versions).__name__}")
        if self.held_out is None:
            raise ValueError("ModelGate: set held_out= (a table or a stream) to gate a model stream")
        inputs = [versions] + ([self.held_out] if self._stream_held_out else [])
        return Stream(GateSpec(self), inputs, name=f"gate({self.metric})")

    __call__ = apply


def _as_table(obj: Any) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    from flowlearn.data.table import table

    return table(obj)


def _as_model(model: Any) -> Any:
    if isinstance(model, pa.Table):
        model = read_version(model)
    if isinstance(model, VersionItem):
        m = model.model()
        if m is None:
            raise ValueError(f"ModelGate: version {model.version} is bare model data without a model class")
        return m
    if hasattr(model, "model") and hasattr(model, "version") and not callable(getattr(model, "transform", None)):
        return model.model  # a ModelVersion
    return model


def _margin_stage(model: Any) -> Any:
    """The model's (or its last stage's) stage when its ``raw_prediction`` holds margins, not
    probabilities (``raw_prediction_is_margin``); else ``None``."""
    stages = getattr(model, "stages", None)
    last = stages[-1] if stages else model
    return last if getattr(last, "raw_prediction_is_margin", False) else None


def _margins_to_probabilities(t: pa.Table, col: str, threshold: float) -> pa.Table:
    """``col``'s margins ``m`` as ``sigmoid(m - threshold)``: a probability whose ranking (AUC, KS)
    is the margins' and whose 0.5 threshold is the model's own decision (``m >= threshold``). In a
    two-entry ``[-m, m]`` vector, the negative class gets ``1 - sigmoid(m - threshold)``."""
    from scipy.special import expit

    from flowlearn.linalg import from_numpy, to_numpy

    c = t.column(col)
    if pa.types.is_floating(c.type):
        return t.set_column(t.column_names.index(col), col, pa.array(expit(c.to_numpy() - threshold)))
    m = to_numpy(c, col, "ModelGate")
    p = expit(m[:, -1] - threshold)
    return t.set_column(t.column_names.index(col), col, from_numpy(np.column_stack([1.0 - p, p])))


def _version_of(model: Any) -> int | None:
    if isinstance(model, pa.Table):
        return read_version(model).version
    v = getattr(model, "version", None)
    if isinstance(v, int):
        return v
    v = getattr(model, "model_version", None)
    return v if isinstance(v, int) else None


class _GateOp(Operator):
    """Input 0: candidate versions; input 1 (optional): the held-out stream."""

    def __init__(self, gate: ModelGate) -> None:
        super().__init__()
        self.gate = gate
        self.buffer: pa.Table | None = None
        self.pending: list[pa.Table] = []
        self.held_ended = not gate._stream_held_out

    def _held(self) -> pa.Table:
        if not self.gate._stream_held_out:
            return self.gate.held_out
        return self.buffer if self.buffer is not None else pa.table({})

    def _ready(self) -> bool:
        if self.held_ended:
            return True
        rows = 0 if self.buffer is None else self.buffer.num_rows
        return rows >= (self.gate.min_rows or 1)

    def _judge(self, table: pa.Table) -> list[pa.Table]:
        item = read_version(table)
        held = self._held()
        try:
            value, rows = self.gate.evaluate(item, held) if held.num_rows else (float("nan"), 0)
        except Exception as e:  # noqa: BLE001 - a version that cannot even predict is rejected, not fatal
            logger.error("ModelGate: version %d failed on the held-out data: %s: %s", item.version,
                         type(e).__name__, e)
            value, rows = float("nan"), 0
        res = self.gate.judge(value, rows, item.version)
        if not res.passed:
            self.ctx.count("versions_rejected")
            return []
        self.ctx.count("versions_passed")
        return [_with_meta(table, metadata={"gate": {"metric": self.gate.metric, "value": value, "rows": rows}})]

    def _flush(self) -> list[pa.Table]:
        out: list[pa.Table] = []
        for t in self.pending:
            out.extend(self._judge(t))
        self.pending = []
        return out

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if input_index == 1:
            if table.num_rows:
                buf = table if self.buffer is None else pa.concat_tables([self.buffer, table],
                                                                         promote_options="default")
                self.buffer = self.gate._window(buf).combine_chunks()
            return self._flush() if self.pending and self._ready() else []
        if not self._ready():
            self.pending.append(table)
            return []
        return self._judge(table)

    def end_input(self, input_index: int) -> list[pa.Table]:
        if input_index == 1:
            self.held_ended = True
            return self._flush()
        return []

    def on_end(self) -> list[pa.Table]:
        self.held_ended = True
        return self._flush()

    def snapshot_state(self) -> OperatorState:
        tables = {f"pending_{i:06d}": t for i, t in enumerate(self.pending)}
        if self.buffer is not None:
            tables["held_out"] = self.buffer
        return OperatorState({"held_ended": self.held_ended, "pending": len(self.pending)}, tables)

    def restore_state(self, state: OperatorState) -> None:
        self.held_ended = bool(state.data["held_ended"])
        self.pending = [state.tables[f"pending_{i:06d}"] for i in range(int(state.data["pending"]))]
        self.buffer = state.tables.get("held_out")


@dataclass(frozen=True, eq=False)
class GateSpec(Spec):
    """The versions on input 0 that ``gate`` passes on its held-out data (input 1 when a stream)."""

    gate: "ModelGate"
    state: ClassVar[str] = "held-out rows, pending versions"


register_operator(GateSpec, lambda s: _GateOp(s.gate))
