"""Model streams in plans: online trainers as stateful operators, models that follow a stream
of versions, and the model-store source and sink.

A **model stream** is a ``Stream`` whose every batch is one model version (a *version table*):

* **model data** (the common case: FTRL, OnlineKMeans, OnlineStandardScaler): the version's
  single model data table, with its ``model_version`` column, exactly as the trainer emitted it;
* **packed** (whole ``PipelineModel`` s, multi-table model data, versions read from a store):
  one row per file of the saved stage (columns ``model_version``, ``path``, ``data``), loaded
  with ``fl.load``'s registry (no pickle).

Both carry JSON under the schema metadata key ``flowlearn.version``: the version number,
the version's metadata (``kind``: ``online`` / ``batch``, ``trained_rows``, gate results...),
and for model data the model class and its params, so a sink can publish a real model.
:func:`read_version` parses a version table; :func:`version_table` makes one.

* ``online_estimator.fit(stream)`` / :func:`fit_online` put the estimator's ``trainer()`` in
  the plan (:class:`TrainerOp`) and return its model following the model stream;
  :func:`model_stream` gives that stream back.
* ``model.transform(stream)`` on a model following a model stream applies, to each batch, the
  newest version that has arrived (fresh enough for the row, for models that pick versions by
  event time) and adds ``model_version`` (:class:`ModelStreamOp`).
* ``stream.to_model_store(store)`` publishes each version (idempotent across restarts);
  :func:`from_model_store` reads a store as a model stream.

Example:
    >>> import flowlearn as fl, flowlearn.stream as fls
    >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
    >>> train = fls.from_table({"features": [[1.0, 0.0], [0.0, 1.0]] * 50, "label": [1.0, 0.0] * 50},
    ...                        batch_size=25)
    >>> model = OnlineLogisticRegression(global_batch_size=5, emit_every=50, alpha=0.5).fit(train)
    >>> versions = fls.model_stream(model).to_table()
    >>> versions.column("model_version").to_pylist()
    [1, 2]
    >>> out = model.transform(fls.from_table({"features": [[1.0, 0.0]]})).to_table()  # waits for version 1
    >>> out.column("prediction").to_pylist(), out.column("model_version").to_pylist()
    ([1.0], [1])
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import Model, Stage, registered_stage, trained_rows
from flowlearn.trainer import Trainer
from flowlearn.stream.core import Sink, Stream
from flowlearn.stream.operator import MIN_WATERMARK, Operator, OperatorState
from flowlearn.stream.plan import Spec, register_operator
from flowlearn.stream.source import Source

__all__ = [
    "VERSION_KEY", "VersionItem", "version_table", "read_version", "TrainerOp", "ModelStreamOp", "StreamModel",
    "fit_online", "model_stream", "follow", "from_model_store", "ModelStoreSink", "ModelStoreSource",
]

log = logging.getLogger("flowlearn.stream.models")

VERSION_KEY = b"flowlearn.version"
_PACKED_SCHEMA = pa.schema([("model_version", pa.int64()), ("path", pa.string()), ("data", pa.large_binary())])


# --------------------------------------------------------------------------------------------
# Version tables
# --------------------------------------------------------------------------------------------


def _is_whole(model: Any) -> bool:
    """True for models that are replaced as a whole by a version (pipelines, graphs, followers)."""
    from flowlearn.builder import GraphModel, PipelineModel

    return isinstance(model, (PipelineModel, GraphModel, StreamModel))


def _json_params(params: dict) -> Any:
    from flowlearn.persist import encode_floats

    return encode_floats(params)


def _pack_stage(stage: Stage) -> list[tuple[str, bytes]]:
    from fsspec.implementations.local import LocalFileSystem

    from flowlearn.persist import write_stage_files

    out = []
    with tempfile.TemporaryDirectory(prefix="flowlearn-version-") as d:
        root = os.path.join(d, "stage")
        write_stage_files(stage, LocalFileSystem(), root)
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                with open(full, "rb") as f:
                    out.append((os.path.relpath(full, root).replace(os.sep, "/"), f.read()))
    return sorted(out)


def _unpack_stage(t: pa.Table, where: str) -> Stage:
    from fsspec.implementations.local import LocalFileSystem

    from flowlearn.persist import load_stage_files

    paths = t.column("path").to_pylist()
    datas = t.column("data").to_pylist()
    with tempfile.TemporaryDirectory(prefix="flowlearn-version-") as d:
        root = os.path.join(d, "stage")
        for rel, data in zip(paths, datas):
            norm = posixpath.normpath(rel)
            if norm.startswith(("/", "..")) or "/../" in f"/{norm}/":
                raise ValueError(f"{where}: packed model version holds an unsafe path {rel!r}")
            full = os.path.join(root, *norm.split("/"))
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        return load_stage_files(LocalFileSystem(), root)


@dataclass
class VersionItem:
    """One parsed version of a model stream (see :func:`read_version`)."""

    version: int
    metadata: dict = field(default_factory=dict)
    model_data: pa.Table | None = None     # model data form: the table (stream metadata stripped)
    packed: pa.Table | None = None         # packed form: the file rows
    model_class: str | None = None
    params: dict | None = None
    table: pa.Table | None = None          # the version table itself

    def model(self) -> Stage | None:
        """The version as a model: the packed stage, or ``model_class(**params)`` with the model data
        (``None`` when a model data version carries no class)."""
        if self.packed is not None:
            return _unpack_stage(self.packed, f"model version {self.version}")
        if self.model_class is None:
            return None
        from flowlearn.persist import decode_floats

        cls = registered_stage(self.model_class)
        m = cls(**decode_floats(self.params or {}))
        return m.set_model_data(self.model_data)


def version_table(obj: Any, version: int | None = None, metadata: dict | None = None,
                  model_class: str | type | None = None, params: dict | None = None) -> pa.Table:
    """A version table: ``obj`` is a model data table (kept as is, with ``model_version``), a
    ``Model``/``PipelineModel`` (packed), or a list of model data tables (packed; needs ``model_class``).

    ``version`` defaults to the table's ``model_version`` (or the model's ``model_version``).

    Example:
        >>> t = version_table(pa.table({"w": [1.0], "model_version": [3]}), metadata={"kind": "online"})
        >>> v = read_version(t)
        >>> v.version, v.metadata, v.model_data.column_names
        (3, {'kind': 'online'}, ['w', 'model_version'])
    """
    if isinstance(model_class, type):
        model_class = model_class.__dict__.get("_registered_name") or None
    if isinstance(obj, (list, tuple)):
        if len(obj) == 1 and isinstance(obj[0], pa.Table):
            obj = obj[0]
        else:
            if model_class is None:
                raise ValueError("version_table: several model data tables need a model_class")
            from flowlearn.persist import decode_floats

            obj = registered_stage(model_class)(**decode_floats(params or {})).set_model_data(*obj)
    meta: dict[str, Any] = {"format": "flowlearn.model_version", "metadata": dict(metadata or {})}
    if isinstance(obj, pa.Table):
        if version is None:
            version = _table_version(obj)
        if version is None:
            raise ValueError("version_table: give version= or a model_version column")
        meta.update(version=int(version), packed=False, model_class=model_class,
                    params=_json_params(params) if params is not None else None)
        return obj.replace_schema_metadata({**(obj.schema.metadata or {}), VERSION_KEY: json.dumps(meta)})
    if isinstance(obj, Stage):
        if version is None:
            version = _stage_version(obj)
        if version is None:
            raise ValueError(f"version_table: give version= for this {type(obj).__name__}")
        files = _pack_stage(obj)
        meta.update(version=int(version), packed=True, model_class=obj.__class__.__dict__.get("_registered_name"))
        t = pa.table({"model_version": pa.array([int(version)] * len(files), pa.int64()),
                      "path": pa.array([p for p, _ in files], pa.string()),
                      "data": pa.array([b for _, b in files], pa.large_binary())}, schema=_PACKED_SCHEMA)
        return t.replace_schema_metadata({VERSION_KEY: json.dumps(meta)})
    raise TypeError(f"version_table: expected a model data table, a Model or a PipelineModel, got {type(obj).__name__}")


def _table_version(t: pa.Table) -> int | None:
    if "model_version" in t.column_names and t.num_rows:
        v = t.column("model_version")[0].as_py()
        return None if v is None else int(v)
    return None


def _stage_version(stage: Any) -> int | None:
    v = getattr(stage, "model_version", None)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    stages = getattr(stage, "stages", None)
    if stages:
        return _stage_version(stages[-1])
    md = getattr(stage, "_model_data", None)
    if md:
        return _table_version(md[0])
    return None


def _with_meta(t: pa.Table, **updates: Any) -> pa.Table:
    """``t`` with its version JSON updated (``metadata`` entries are merged)."""
    meta = json.loads((t.schema.metadata or {}).get(VERSION_KEY, b"{}"))
    md = dict(meta.get("metadata") or {})
    md.update(updates.pop("metadata", {}))
    meta.update(updates)
    meta["metadata"] = md
    return t.replace_schema_metadata({**(t.schema.metadata or {}), VERSION_KEY: json.dumps(meta)})


def read_version(t: pa.Table, previous: int | None = None) -> VersionItem:
    """Parse one batch of a model stream. A plain table (no ``flowlearn.version`` metadata) is model
    data; its version is its ``model_version`` column, else ``previous + 1``. Read versions from
    the batches of a model stream (``collect().tables()``), not from a concatenated table: a
    concatenation keeps only the first batch's metadata."""
    if isinstance(t, pa.RecordBatch):
        t = pa.Table.from_batches([t])
    raw = (t.schema.metadata or {}).get(VERSION_KEY)
    meta = json.loads(raw) if raw is not None else {}
    version = _table_version(t)
    if version is None:
        version = meta.get("version")
    if meta.get("packed"):
        return VersionItem(int(version), dict(meta.get("metadata") or {}), packed=t,
                           model_class=meta.get("model_class"), table=t)
    if version is None:
        version = (previous or 0) + 1
    md = t
    if raw is not None:
        rest = {k: v for k, v in (t.schema.metadata or {}).items() if k != VERSION_KEY}
        md = t.replace_schema_metadata(rest or None)
    return VersionItem(int(version), dict(meta.get("metadata") or {}), model_data=md,
                       model_class=meta.get("model_class"), params=meta.get("params"), table=t)


# --------------------------------------------------------------------------------------------
# Trainers in plans
# --------------------------------------------------------------------------------------------


def _model_class_for(estimator: Any) -> type | None:
    """The model class of an online estimator: its ``model_class`` attribute, else ``<Name>Model``
    in the estimator's module."""
    cls = getattr(estimator, "model_class", None)
    if isinstance(cls, type):
        return cls
    mod = sys.modules.get(type(estimator).__module__)
    cls = getattr(mod, type(estimator).__name__ + "Model", None) if mod is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, Model) else None


def _make_trainer(estimator: Any, clock: Any) -> Trainer:
    trainer = estimator.trainer(clock=clock)
    if not isinstance(trainer, Trainer):
        raise TypeError(f"{type(estimator).__name__}.trainer(clock) must return a flowlearn.trainer.Trainer, got "
                        f"{type(trainer).__name__}; derive the trainer from Trainer (see its docstring)")
    return trainer


def _set_version(t: pa.Table, version: int) -> pa.Table:
    col = pa.array(np.full(t.num_rows, int(version), dtype=np.int64))
    if "model_version" in t.column_names:
        return t.set_column(t.column_names.index("model_version"), "model_version", col)
    return t.append_column("model_version", col)


class TrainerOp(Operator):
    """Runs an online estimator's ``trainer()`` on input 0 and emits each model version it makes
    as a version table. Optional input 1 is a model stream: a version whose metadata ``kind`` is in
    ``rebase_kinds`` (``batch``) *rebases* the trainer: it restarts from that model (a trainer with
    a ``rebase(model, version)`` method is asked to do it itself, e.g. to swap feature stages;
    otherwise a fresh trainer is made from ``set_initial_model_data``) and its versions continue
    above ``max(rebase version, last version)``. The trainer's ``snapshot_state()`` tables (and the
    rebase model) go into checkpoints. Trainers with ``poll(now)`` (processing-time windows,
    ``emit_every_seconds``) get the engine clock; trainers with ``on_watermark(ms)`` (event-time
    windows) get the watermarks of the data input. Metrics: ``versions_emitted``, ``model_version``, ``trained_rows``,
    ``rebases``, ``last_rebase_at_row``, ``last_rebase_version``, ``late_rows`` (of event-time
    windows), ``input_finished`` (1 once the data input ended and the final version was emitted)."""

    def __init__(self, estimator: Any, model_class: str | None, model_params: dict | None,
                 rebase_kinds: Iterable[str] = ("batch",)) -> None:
        super().__init__()
        self.estimator = estimator
        self.model_class = model_class
        self.model_params = model_params
        self.rebase_kinds = tuple(rebase_kinds)
        self.trainer: Trainer | None = None
        self.rows = 0
        self.trainer_offset = 0               # input rows read before the current trainer started
        self.done = False
        self.base: pa.Table | None = None     # version table of the model the trainer was rebased on
        self.base_version = 0                 # the version number its versions continue above
        self.rebased_on: int | None = None    # that model's version

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        self.trainer = _make_trainer(self.estimator, ctx.clock)

    @property
    def wants_timer(self) -> bool:  # type: ignore[override]
        return self.trainer.uses_clock

    # -- versions ----------------------------------------------------------------------------
    def _wrap(self, v: Any) -> pa.Table:
        # the input position whose rows the version's weights hold, not the rows read so far
        rows = trained_rows(v)
        md: dict[str, Any] = {"kind": "online", "trained_rows": self.rows if rows is None else self.trainer_offset + rows}
        if self.rebased_on is not None:
            md["rebased_on"] = self.rebased_on
        one = isinstance(v, (list, tuple)) and len(v) == 1 and isinstance(v[0], pa.Table)
        if isinstance(v, pa.Table) or one:
            t = v if isinstance(v, pa.Table) else v[0]
            version = _table_version(t)
            if version is None:
                version = self.trainer.version
            out = version_table(t, version, md, self.model_class, self.model_params)
        elif isinstance(v, (list, tuple)):
            version = self.trainer.version
            out = version_table(list(v), version, md, self.model_class, self.model_params)
        else:
            version = _stage_version(v)
            if version is None:
                version = self.trainer.version
            out = version_table(v, version, md)
        self.ctx.count("versions_emitted")
        self.ctx.metrics["model_version"] = version
        return out

    def _wrap_all(self, versions: Any) -> list[pa.Table]:
        return [self._wrap(v) for v in (versions or [])]

    # -- data --------------------------------------------------------------------------------
    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if input_index == 1:
            return self._rebase_from(table)
        if table.num_rows == 0:
            return []
        versions = self.trainer.partial_fit(table)
        self.rows += table.num_rows
        self.ctx.metrics["trained_rows"] = self.rows
        if self.trainer.late_rows:   # rows after their event-time window closed
            self.ctx.metrics["late_rows"] = self.trainer.late_rows
        return self._wrap_all(versions)

    def on_timer(self, now: float) -> list[pa.Table]:
        if self.done:
            return []
        return self._wrap_all(self.trainer.poll(now))

    def on_watermark(self, watermark: int) -> list[pa.Table]:
        if self.done or not self.trainer.uses_watermarks:   # event-time windows (OnlineStandardScaler)
            return []
        return self._wrap_all(self.trainer.on_watermark(watermark))

    def end_input(self, input_index: int) -> list[pa.Table]:
        if input_index != 0 or self.done:
            return []
        self.done = True
        out = self._wrap_all(self.trainer.finish())
        self.ctx.metrics["input_finished"] = 1
        return out

    def on_end(self) -> list[pa.Table]:
        return self.end_input(0)

    # -- rebase ------------------------------------------------------------------------------
    def _rebase_from(self, table: pa.Table) -> list[pa.Table]:
        item = read_version(table)
        kind = item.metadata.get("kind")
        if kind not in self.rebase_kinds:
            self.ctx.count("rebase_ignored")
            return []
        current = self.trainer.version
        version = max(item.version, current)
        self._rebase(item, version)
        self.base, self.base_version, self.rebased_on = table, version, item.version
        self.ctx.count("rebases")
        self.ctx.metrics["last_rebase_at_row"] = self.rows
        self.ctx.metrics["last_rebase_version"] = item.version
        log.info("%s: rebased the trainer on %s version %d after %d rows; versions continue above %d",
                 self.ctx.uid, kind, item.version, self.rows, version)
        return []

    def _rebase(self, item: VersionItem, version: int) -> None:
        from flowlearn.builder import PipelineModel

        model = item.model() if item.packed is not None or item.model_class is not None else None
        if self.trainer.can_rebase:
            self.trainer.rebase(model if model is not None else item.model_data, version)
            return
        est = type(self.estimator)(**self.estimator.get_params())
        if not callable(getattr(est, "set_initial_model_data", None)):
            raise TypeError(f"{type(self.estimator).__name__} cannot be rebased: its trainer has no rebase(model, "
                            f"version) and the estimator no set_initial_model_data(...)")
        init: Any = model
        last = model.stages[-1] if isinstance(model, PipelineModel) and model.stages else model
        if model is None:
            init = _set_version(item.model_data, version)
        elif isinstance(last, Model) and not _is_whole(last) and last._model_data and len(last._model_data) == 1:
            init = _set_version(last._model_data[0], version)
        est.set_initial_model_data(init)
        trainer = _make_trainer(est, self.ctx.clock)
        trainer.version = version
        self.trainer = trainer
        self.trainer_offset = self.rows

    # -- checkpoints -------------------------------------------------------------------------
    def snapshot_state(self) -> OperatorState:
        st = self.trainer.snapshot_state()
        tables = {f"trainer/{k}": t for k, t in st.tables.items()}
        if self.base is not None:
            tables["rebase_model"] = self.base
        rebase = {k: self.ctx.metrics[k] for k in ("rebases", "last_rebase_at_row", "last_rebase_version")
                  if k in self.ctx.metrics}
        return OperatorState({"rows": self.rows, "trainer_offset": self.trainer_offset, "done": self.done,
                              "base_version": self.base_version, "trainer": st.data, "rebase": rebase}, tables)

    def restore_state(self, state: OperatorState) -> None:
        self.rows = int(state.data["rows"])
        self.done = bool(state.data["done"])
        if "rebase_model" in state.tables:
            self.base, self.base_version = state.tables["rebase_model"], int(state.data["base_version"])
            item = read_version(self.base)
            self.rebased_on = item.version
            self._rebase(item, self.base_version)
        self.trainer_offset = int(state.data.get("trainer_offset", 0))
        prefix = "trainer/"
        self.trainer.restore_state(OperatorState(state.data["trainer"], {k[len(prefix):]: t for k, t in
                                                                          state.tables.items() if k.startswith(prefix)}))
        self.ctx.metrics["trained_rows"] = self.rows
        self.ctx.metrics.update(state.data.get("rebase") or {})


def fit_online(estimator: Any, stream: Stream, rebase: Any = None, rebase_kinds: Iterable[str] = ("batch",),
               uid: str | None = None) -> Model:
    """Train ``estimator`` (anything with ``trainer()``) on ``stream`` inside the plan and return
    its model following the model stream of versions (``model_stream(model)`` is that stream).

    ``rebase``: a model stream or a model store (read with ``from_model_store(store, start="next")``);
    its versions whose metadata ``kind`` is in ``rebase_kinds`` reset the trainer to that model.
    ``uid`` names the trainer's operator (its checkpointed state).

    Example:
        >>> import flowlearn.stream as fls
        >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
        >>> s = fls.from_table({"features": [[1.0], [-1.0]] * 10, "label": [1.0, 0.0] * 10})
        >>> m = fit_online(OnlineLogisticRegression(emit_every=10, global_batch_size=2), s)
        >>> model_stream(m).to_table().column("model_version").to_pylist()
        [1, 2]
    """
    if not callable(getattr(estimator, "trainer", None)):
        raise TypeError(f"{type(estimator).__name__} is not an online estimator (it has no trainer())")
    if not getattr(stream, "_flowlearn_stream", False):
        raise TypeError(f"fit_online trains on a Stream, got {type(stream).__name__}")
    inputs = [stream]
    if rebase is not None:
        if not getattr(rebase, "_flowlearn_stream", False):
            rebase = from_model_store(rebase, start="next", kinds=tuple(rebase_kinds))
        inputs.append(rebase)
    cls = _model_class_for(estimator)
    model: Model
    params: dict | None = None
    name = None
    if cls is not None:
        model = cls()
        estimator.copy_params_to(model)
        params = model.get_params()
        name = cls.__dict__.get("_registered_name") or None
        init = getattr(estimator, "get_initial_model_data", None)
        t0 = init() if callable(init) else None
        if isinstance(t0, pa.Table):
            try:
                model.set_model_data(t0)   # served until the first version arrives
            except Exception:  # noqa: BLE001 - an initial model the model class cannot read: wait for v1
                log.debug("fit_online: the initial model data does not fit %s; rows wait for version 1",
                          cls.__name__)
    else:
        model = StreamModel()
    kinds = tuple(rebase_kinds)
    versions = Stream(TrainerSpec(estimator, name, params, kinds), inputs, name=f"train({type(estimator).__name__})",
                      bounded=stream.bounded if rebase is None else None)
    if uid is not None:
        versions.uid(uid)
    model.set_model_data(versions)
    return model


def model_stream(model: Any) -> Stream:
    """The model stream ``model`` follows (set by ``fit(stream)`` or ``set_model_data(stream)``)."""
    s = getattr(model, "_flowlearn_model_stream", None)
    if s is None:
        raise ValueError(f"{type(model).__name__} does not follow a model stream; fit an online estimator on a "
                         f"Stream or call set_model_data(model_stream)")
    return s


def follow(versions: Stream, model: Model | None = None) -> Model:
    """``model`` (default: a :class:`StreamModel`, which takes whole models) following ``versions``."""
    m = model if model is not None else StreamModel()
    m.set_model_data(versions)
    return m


# --------------------------------------------------------------------------------------------
# Models following a model stream
# --------------------------------------------------------------------------------------------


class StreamModel(Model):
    """A model that is whatever model version it was last given (whole models: pipelines,
    graphs or single models). Made by ``fls.follow(versions)``, by ``fit(stream)`` of an online
    estimator whose versions are whole models, or from a store version.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.classification.logistic_regression import LogisticRegressionModel
        >>> lr = LogisticRegressionModel().set_model_data(
        ...     {"coefficient": [[1.0]], "intercept": [0.0], "model_version": [0]})
        >>> StreamModel(lr).transform({"features": [[2.0]]}).column("prediction").to_pylist()
        [1.0]
    """

    def __init__(self, current: Any = None, version: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._current = current
        self._version = version if version is not None or current is None else _stage_version(current)

    @property
    def model_version(self) -> int | None:
        return self._version

    @property
    def current(self) -> Any:
        """The model version in use (``None`` before the first)."""
        return self._current

    def _require_model(self) -> None:
        if self._current is None:
            raise ValueError("StreamModel: no model version has arrived yet")

    def _transform(self, *tables: pa.Table) -> Any:
        self._require_model()
        return self._current.transform(*tables)

    def row_fn(self) -> Any:
        return self._current.row_fn() if self._current is not None else None

    def _sub_stages(self) -> list[Stage]:
        return [self._current] if self._current is not None else []

    @classmethod
    def _from_saved(cls, params: dict, model_data: list[pa.Table], stages: list, extra: dict) -> "StreamModel":
        return cls(stages[0] if stages else None, **params)


def _clone(model: Model) -> Model:
    c = type(model)(**model.get_params())
    if model._model_data:
        c.set_model_data(*model._model_data)
    return c


def _freshness_stages(model: Any) -> list[Any]:
    """The stages of ``model`` (itself included) that pick model versions by event time: those whose
    ``event_time_limit_ms`` is not ``None`` (``OnlineStandardScalerModel`` with ``time_col``)."""
    if model is None:
        return []
    return [s for s in model.walk() if getattr(s, "event_time_limit_ms", None) is not None]


def _same_schema_runs(tables: list[pa.Table]) -> list[pa.Table]:
    """``tables`` with each run of consecutive tables of one schema concatenated (in order)."""
    runs: list[list[pa.Table]] = []
    for t in tables:
        if runs and runs[-1][0].schema.equals(t.schema):
            runs[-1].append(t)
        else:
            runs.append([t])
    return [r[0] if len(r) == 1 else pa.concat_tables(r) for r in runs]


class ModelStreamOp(Operator):
    """Applies a model to input 0, following the model stream on input 1 (each batch = one
    version; see the module docstring for the two forms). Each data batch gets the newest version
    that has arrived, and a ``model_version`` column. Rows arriving before the first version wait,
    unless the model already has model data (its ``model_version`` column, else 0).
    A plain model keeps its params and takes each version's model data; a ``PipelineModel``,
    ``GraphModel`` or :class:`StreamModel` is replaced by each (whole) version. A version that
    cannot be applied is skipped with a logged error (``versions_invalid``); the previous stays.

    Freshness (Flink ML's ``max_allowed_model_delay_ms``): a model, or a stage of a whole model,
    that picks versions by event time offers ``event_times_ms(table)`` and ``event_time_limit_ms``
    (the latest event time its versions are fresh enough for; ``OnlineStandardScalerModel`` with
    ``time_col``: the freshest version's timestamp + ``max_allowed_model_delay_ms``). A row whose
    event time is past the limit waits until a version that covers it arrives, then is scored by
    it (after rows that came later). Metrics: ``buffered_rows`` (rows that waited),
    ``waiting_rows`` (waiting now). Waiting rows are checkpointed. While rows wait, the watermark
    this operator forwards stays where it was when the first of them arrived, so event-time
    windows downstream do not close before the rows are scored. Rows still waiting when every
    input has ended (no version came, or none fresh enough) are counted in ``unscored_rows``,
    logged as a warning and emitted on the side output ``"unscored"``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.proto = model
        self.whole = _is_whole(model)
        self.model: Any = None
        self.version: int | None = None
        self.current: pa.Table | None = None
        self.buffer: list[pa.Table] = []     # rows waiting for a (fresh enough) version, in arrival order
        self.waiting = 0
        self.gates: list[Any] = []
        self.watermark_in = MIN_WATERMARK
        self.held_watermark: int | None = None   # input watermark when the oldest waiting row arrived
        self._initial()

    def _initial(self) -> None:
        m = self.proto
        if isinstance(m, StreamModel):
            self.model, self.version = m._current, (m._version if m._current is not None else None)
        elif self.whole:
            ready = bool(getattr(m, "stages", None) or getattr(m, "nodes", None))
            self.model, self.version = (m, 0) if ready else (None, None)
        else:
            self.model = _clone(m)
            if m._model_data:
                v = _table_version(m._model_data[0])
                self.version = 0 if v is None else v
        self.gates = _freshness_stages(self.model) if self.version is not None else []

    def _apply_version(self, item: VersionItem) -> None:
        if self.whole:
            w = item.model()
            if w is None:
                raise ValueError(f"a {type(self.proto).__name__} follows whole models, but version {item.version} "
                                 f"is bare model data without a model class")
            self.model = w
        elif item.packed is not None:
            w = item.model()
            if _is_whole(w) or not isinstance(w, Model) or not w._model_data:
                raise TypeError(f"{type(self.proto).__name__} takes model data; version {item.version} is a whole "
                                f"{type(w).__name__}; follow such streams with fls.follow(stream)")
            self.model.set_model_data(*w.get_model_data())
        else:
            self.model.set_model_data(item.model_data)
        self.version = item.version
        self.gates = _freshness_stages(self.model)

    def _apply(self, table: pa.Table) -> pa.Table:
        out = self.model.transform(table)
        col = pa.array(np.full(out.num_rows, self.version, dtype=np.int64))
        if "model_version" in out.column_names:
            return out.set_column(out.column_names.index("model_version"), "model_version", col)
        return out.append_column("model_version", col)

    def _split(self, table: pa.Table) -> tuple[pa.Table | None, pa.Table | None]:
        """``(rows the current version may score now, rows that must wait for a fresher one)``."""
        if table.num_rows == 0:
            return None, None
        if self.version is None:
            return None, table
        if not self.gates:
            return table, None
        ok = np.ones(table.num_rows, dtype=bool)
        for g in self.gates:
            ok &= g.event_times_ms(table) <= g.event_time_limit_ms
        if ok.all():
            return table, None
        if not ok.any():
            return None, table
        mask = pa.array(ok)
        return table.filter(mask), table.filter(pc.invert(mask))

    def _wait(self, table: pa.Table) -> None:
        if not self.buffer:
            self.held_watermark = self.watermark_in
        self.buffer.append(table)
        self.waiting += table.num_rows
        self.ctx.metrics["waiting_rows"] = self.waiting

    def _release(self) -> list[pa.Table]:
        """Score the waiting rows the current version may score (one vectorized pass per schema)."""
        if not self.buffer:
            return []
        held, self.buffer, self.waiting = _same_schema_runs(self.buffer), [], 0
        out = []
        for waiting in held:
            ready, wait = self._split(waiting)
            if wait is not None:
                self._wait(wait)
            if ready is not None:
                out.append(self._apply(ready))
        if not self.buffer:
            self.held_watermark = None
        self.ctx.metrics["waiting_rows"] = self.waiting
        return out

    def output_watermark(self, input_watermark: int) -> int:
        self.watermark_in = input_watermark
        return input_watermark if self.held_watermark is None else min(input_watermark, self.held_watermark)

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if input_index == 1:
            item = read_version(table, self.version)
            try:
                self._apply_version(item)
            except Exception as e:  # noqa: BLE001 - a bad version must not stop serving the previous one
                log.error("%s: model version %d cannot be applied (%s: %s); staying on version %s",
                          self.ctx.uid, item.version, type(e).__name__, e, self.version)
                self.ctx.count("versions_invalid")
                return []
            self.current = table
            self.ctx.count("versions_applied")
            self.ctx.metrics["model_version"] = self.version
            return self._release()
        ready, wait = self._split(table)
        if wait is not None:
            self._wait(wait)
            self.ctx.count("buffered_rows", wait.num_rows)
        return [] if ready is None else [self._apply(ready)]

    def on_end(self) -> list[pa.Table]:
        if self.buffer:
            why = "" if self.version is None else f" fresh enough for their event time (newest version {self.version})"
            log.warning("%s: %d rows never got a model version%s; they go to the side output 'unscored'",
                        self.ctx.uid, self.waiting, why)
            for t in self.buffer:
                self.ctx.side("unscored", t)
            self.ctx.count("unscored_rows", self.waiting)
            self.buffer, self.waiting, self.held_watermark = [], 0, None
            self.ctx.metrics["waiting_rows"] = 0
        return []

    def snapshot_state(self) -> OperatorState:
        tables = {}
        if self.current is not None:
            tables["version"] = self.current
        for i, t in enumerate(_same_schema_runs(self.buffer)):
            tables[f"buffer_{i:06d}"] = t
        return OperatorState({"version": self.version, "held_watermark": self.held_watermark}, tables)

    def restore_state(self, state: OperatorState) -> None:
        if "version" in state.tables:
            self.current = state.tables["version"]
            self._apply_version(read_version(self.current))
        self.version = state.data["version"]
        self.buffer, self.waiting = [], 0
        for name in sorted(n for n in state.tables if n.startswith("buffer")):
            self._wait(state.tables[name])
        self.held_watermark = state.data.get("held_watermark") if self.buffer else None


# --------------------------------------------------------------------------------------------
# Model stores
# --------------------------------------------------------------------------------------------


class ModelStoreSource(Source):
    """Versions of a ``ModelStore``/``KafkaModelStore`` as a model stream (packed version tables
    carrying each version's store metadata). Offset = the last version emitted."""

    def __init__(self, store: Any, poll_interval: float, start: Any, stop_at_end: bool,
                 kinds: tuple[str, ...] | None) -> None:
        super().__init__()
        self.store = store
        self.poll_interval = poll_interval
        self.start = start
        self.stop_at_end = stop_at_end
        self.bounded = stop_at_end
        self.kinds = kinds
        self.last: int | None = None
        self.end: int | None = None
        self._next_poll = 0.0
        self._done = False
        self._first: Any = None

    def _begin(self, vs: list[int]) -> None:
        if self.start == "earliest":
            self.last = 0
        elif self.start == "next":
            self.last = vs[-1] if vs else 0
        elif self.start == "latest":
            self.last = 0
            for v in reversed(vs):  # the newest valid (and wanted) version, then newer ones
                if self._wanted(v):
                    self._first = self._load(v)
                    if self._first is not None:
                        self.last = v - 1
                        break
        else:
            self.last = int(self.start) - 1
        if self.stop_at_end:
            self.end = vs[-1] if vs else 0

    def _wanted(self, v: int) -> bool:
        if self.kinds is None:
            return True
        try:
            md = self.store.version_info(v).get("metadata") or {}
        except LookupError:
            return False
        return md.get("kind") in self.kinds

    def _load(self, v: int) -> Any:
        try:
            return self.store.load(v)
        except LookupError:
            return None          # deleted by retention meanwhile
        except ValueError:       # CorruptVersionError: the store has logged it
            self.ctx.count("corrupt_versions_skipped")
            return None

    def poll(self, max_rows: int) -> list[pa.Table]:
        if self._done:
            return []
        now = time.monotonic()
        if now < self._next_poll:
            return []
        self._next_poll = now + self.poll_interval
        vs = self.store.versions()
        if self.last is None:
            self._begin(vs)
        out = []
        for v in vs:
            if v <= self.last or (self.end is not None and v > self.end):
                continue
            self.last = v
            first, self._first = self._first, None
            if first is not None and first.version == v:
                mv = first
            elif not self._wanted(v):
                continue
            else:
                mv = self._load(v)
            if mv is None:
                continue
            md = dict(mv.metadata)
            out.append(version_table(mv.model, mv.version, md))
            if len(out) >= 16:
                self._next_poll = 0.0
                break
        if self.end is not None and self.last >= self.end:
            self._done = True
        return out

    def finished(self) -> bool:
        return self._done

    def lag(self) -> int | None:
        if self.last is None:
            return None
        return len([v for v in self.store.versions() if v > self.last])

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"last": self.last, "end": self.end, "done": self._done})

    def restore_state(self, state: OperatorState) -> None:
        self.last, self.end, self._done = state.data["last"], state.data["end"], bool(state.data["done"])


def from_model_store(store: Any, poll_interval: float = 0.2, start: Any = "latest", stop_at_end: bool = False,
                     kinds: Iterable[str] | None = None) -> Stream:
    """The versions of ``store`` (a ``ModelStore``, ``KafkaModelStore`` or URL) as a model stream.

    ``start``: ``"latest"`` (the newest valid version, then every new one), ``"earliest"``,
    ``"next"`` (only versions published after the job starts) or a version number (from it on).
    Unbounded unless ``stop_at_end`` (then it ends at the newest version seen when it starts).
    ``kinds`` keeps only versions whose metadata ``kind`` is listed (checked before loading).
    Corrupt versions are skipped (the store logs them). The last version read is checkpointed.

    Example:
        >>> import flowlearn as fl, tempfile
        >>> from flowlearn.modelstream import ModelStore
        >>> from flowlearn.classification.logistic_regression import LogisticRegressionModel
        >>> store = ModelStore(tempfile.mkdtemp())
        >>> _ = store.publish(LogisticRegressionModel().set_model_data(
        ...     {"coefficient": [[1.0]], "intercept": [0.0], "model_version": [0]}), {"kind": "batch"})
        >>> s = from_model_store(store, start="earliest", stop_at_end=True)
        >>> [read_version(t).metadata for t in s.to_table().to_batches()]
        [{'kind': 'batch'}]
    """
    if isinstance(store, str):
        from flowlearn.modelstream.store import open_store

        store = open_store(store)
    if poll_interval <= 0:
        raise ValueError(f"from_model_store: poll_interval = {poll_interval!r} violates gt(0)")
    if not (start in ("latest", "earliest", "next") or (isinstance(start, int) and not isinstance(start, bool)
                                                        and start >= 1)):
        raise ValueError(f"from_model_store: start must be 'latest', 'earliest', 'next' or a version >= 1, "
                         f"got {start!r}")
    ks = tuple(kinds) if kinds is not None else None
    return Stream(ModelStoreSourceSpec(store, poll_interval, start, stop_at_end, ks), [], kind="source",
                  name="from_model_store", bounded=stop_at_end)


class _StoreSinkOp(Operator):
    def __init__(self, store: Any, producer: str | None, metadata: dict) -> None:
        super().__init__()
        self.store = store
        self.producer = producer
        self.metadata = metadata
        self.last: int | None = None            # newest model_version this producer has in the store
        self.store_version: int | None = None   # the store version holding it
        self.synced = False

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        if self.producer is None:
            self.producer = ctx.uid

    def _sync(self) -> None:
        """Find versions this producer published after the state we know (a crash between a
        publish and the next checkpoint, or a restart without a checkpoint)."""
        self.synced = True
        restored = self.store_version is not None or self.last is not None
        for sv in reversed(self.store.versions()):
            if self.store_version is not None and sv <= self.store_version:
                break
            try:
                md = self.store.version_info(sv).get("metadata") or {}
            except LookupError:
                continue
            mv = md.get("model_version")
            if md.get("producer") == self.producer and isinstance(mv, int):
                if self.last is None or mv > self.last:
                    (log.info if restored else log.warning)(
                        "%s: producer %r already published model_version %d (store version %d)%s; versions up to "
                        "it are not published again", self.ctx.uid, self.producer, mv, sv,
                        "" if restored else " in an earlier run of this job, or another job with this producer "
                        "name (give to_model_store a distinct producer= for a separate line of versions)")
                    self.last, self.store_version = mv, sv
                break

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if not self.synced:
            self._sync()
        item = read_version(table, self.last)
        if self.last is not None and item.version <= self.last:
            self.ctx.count("versions_skipped")
            log.debug("%s: model_version %d is already published (up to %d)", self.ctx.uid, item.version, self.last)
            return []
        model = item.model()
        if model is None:
            raise ValueError(f"to_model_store: version {item.version} is bare model data without a model class; "
                             f"make the model stream with fit(stream) / fls.version_table(..., model_class=...)")
        md = {**self.metadata, **item.metadata, "model_version": item.version, "producer": self.producer}
        md.setdefault("kind", "online")
        sv = self.store.publish(model, md)
        self.last, self.store_version = item.version, sv
        self.ctx.count("versions_published")
        self.ctx.metrics["last_published_version"] = item.version
        self.ctx.metrics["last_store_version"] = sv
        if sv != item.version:
            log.debug("%s: model_version %d was published as store version %d", self.ctx.uid, item.version, sv)
        return []

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"last": self.last, "store_version": self.store_version, "producer": self.producer})

    def restore_state(self, state: OperatorState) -> None:
        self.last, self.store_version = state.data["last"], state.data["store_version"]
        self.synced = False


class ModelStoreSink(Sink):
    """Publishes every version of a model stream into a model store (``stream.to_model_store``).

    Each publish gets the version's metadata plus ``model_version`` (the trainer's number),
    ``producer`` and ``kind`` (``online`` unless set). Idempotent across restarts: a version
    whose ``model_version`` is not above the newest this ``producer`` has in the store (from the
    checkpoint, then from the store itself, which covers versions published after the last
    checkpoint) is skipped (``versions_skipped``), so a job restarted after ``kill -9`` never
    publishes a model version twice. ``producer`` defaults to the sink's operator uid; name it
    when several jobs publish into one store."""

    def __init__(self, stream: Stream, store: Any, producer: str | None = None, metadata: dict | None = None) -> None:
        if isinstance(store, str):
            from flowlearn.modelstream.store import open_store

            store = open_store(store)
        for m in ("publish", "versions", "version_info"):
            if not callable(getattr(store, m, None)):
                raise TypeError(f"to_model_store needs a ModelStore or KafkaModelStore (or URL), got "
                                f"{type(store).__name__}")
        metadata = dict(metadata or {})
        json.dumps(metadata)
        super().__init__(stream, ModelStoreSinkSpec(store, producer, metadata), "to_model_store")
        self.store, self.producer, self.metadata = store, producer, metadata


@dataclass(frozen=True, eq=False)
class ModelStreamSpec(Spec):
    """``stage`` applied to input 0 with the newest version of the model stream on input 1."""

    stage: Any
    state: ClassVar[str] = "the current version, rows waiting for a fresh one"

    def describe(self) -> dict[str, Any]:
        return {"stage": type(self.stage).__name__}


@dataclass(frozen=True, eq=False)
class TrainerSpec(Spec):
    """An online ``estimator``'s trainer on input 0 (rebased by input 1, when given)."""

    estimator: Any
    model_class: str | None
    model_params: dict | None
    rebase_kinds: tuple[str, ...]
    state: ClassVar[str] = "the trainer's snapshot_state(), the rebase model"


@dataclass(frozen=True, eq=False)
class ModelStoreSourceSpec(Spec):
    """Versions of a model store as a model stream (see :func:`from_model_store`)."""

    store: Any
    poll_interval: float
    start: Any
    stop_at_end: bool
    kinds: tuple[str, ...] | None
    state: ClassVar[str] = "the last version read"


@dataclass(frozen=True, eq=False)
class ModelStoreSinkSpec(Spec):
    """Publishes each version into ``store`` (see :class:`ModelStoreSink`)."""

    store: Any
    producer: str | None
    metadata: dict
    state: ClassVar[str] = "the newest version published"


register_operator(ModelStreamSpec, lambda s: ModelStreamOp(s.stage))
register_operator(TrainerSpec, lambda s: TrainerOp(s.estimator, s.model_class, s.model_params, s.rebase_kinds))
register_operator(ModelStoreSourceSpec, lambda s: ModelStoreSource(s.store, s.poll_interval, s.start, s.stop_at_end,
                                                                   s.kinds))
register_operator(ModelStoreSinkSpec, lambda s: _StoreSinkOp(s.store, s.producer, s.metadata))
