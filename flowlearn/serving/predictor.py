"""``LocalPredictor``: predict single rows or tables inside a service.

The single-row path never builds an Arrow table when every stage offers a row kernel
(``Transformer.row_fn``): the predictor chains the kernels into one function over a dict.
The whole pipeline (kernels, batch model and version) is one immutable snapshot swapped by a
single reference assignment, so concurrent requests never see half of two versions.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"features": [[0.0], [1.0], [2.0], [3.0]], "label": [0.0, 0.0, 1.0, 1.0]})
    >>> p = fl.LocalPredictor(fl.classification.LogisticRegression().fit(t))
    >>> p.predict({"features": [3.0]})["prediction"]
    1.0
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from flowlearn.api import Model, SkipRow, Stage, Transformer
from flowlearn.builder import PipelineModel
from flowlearn.data.table import table as to_table
from flowlearn.linalg import SparseVector, is_sparse, is_vector_type, to_csr, to_numpy
from flowlearn.stream.core import follows_model_stream

__all__ = ["LocalPredictor"]


@dataclass(frozen=True)
class _Snapshot:
    model: Transformer
    row: Callable[[dict], dict | None]
    version: int | None


def _table_row_path(model: Transformer) -> Callable[[dict], dict | None]:
    """Fallback for stages without row kernels: a one-row table through ``transform``."""

    def run(row: dict) -> dict | None:
        out = model.transform(to_table([row]))
        if out.num_rows == 0:
            return None
        return _first_row(out)

    return run


def _first_row(t: pa.Table) -> dict:
    res = {}
    for name in t.column_names:
        col = t.column(name)
        if is_vector_type(col.type):
            if is_sparse(col.type):
                m = to_csr(col.slice(0, 1), name)
                res[name] = SparseVector(m.shape[1], m.indices, m.data)
            else:
                res[name] = to_numpy(col.slice(0, 1), name)[0]
        else:
            res[name] = col[0].as_py()
    return res


def _stage_kernels(stages: list) -> list[Callable[[dict], None]] | None:
    """Row kernels of a pipeline's stages, or None when a stage has none.

    Fusion: a stage may define ``_fused_row_fn(successor)`` returning one kernel that does its
    own work and its successor's (same output columns, same values, same errors; typically it
    skips checks its own output already guarantees), or None. Adjacent stages are fused when
    the first one offers it (left to right); see ``VectorAssembler._fused_row_fn`` and
    ``OneHotEncoderModel._fused_row_fn``."""
    fns = []
    i = 0
    while i < len(stages):
        stage = stages[i]
        if not isinstance(stage, Transformer):
            return None
        fuse = getattr(stage, "_fused_row_fn", None)
        if fuse is not None and i + 1 < len(stages) and isinstance(stages[i + 1], Transformer):
            fn = fuse(stages[i + 1])
            if fn is not None:
                fns.append(fn)
                i += 2
                continue
        fn = stage.row_fn()
        if fn is None:
            return None
        fns.append(fn)
        i += 1
    return fns


def _compile(model: Transformer) -> Callable[[dict], dict | None]:
    if isinstance(model, PipelineModel):
        fns = _stage_kernels(list(model.stages))
    else:
        fn = model.row_fn()
        fns = [fn] if fn is not None else None
    if fns is None:
        return _table_row_path(model)
    if len(fns) == 1:
        (f,) = fns

        def run_one(row: dict) -> dict | None:
            out = dict(row)
            try:
                f(out)
            except SkipRow:
                return None
            return out

        return run_one
    fns = tuple(fns)

    def run(row: dict) -> dict | None:
        out = dict(row)
        try:
            for fn in fns:
                fn(out)
        except SkipRow:
            return None
        return out

    return run


def _is_store(x: Any) -> bool:
    """A ModelStore / KafkaModelStore (duck-typed, so serving does not import modelstream eagerly)."""
    return all(callable(getattr(x, name, None)) for name in ("latest", "watch", "publish"))


def _is_store_url(path: str) -> bool:
    """``kafka://...``, or a directory holding ``versions/`` and no saved stage of its own."""
    if path.startswith("kafka://"):
        return True
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    root = root.rstrip("/")
    return fs.exists(root + "/versions") and not fs.exists(root + "/metadata.json")


class LocalPredictor:
    """Predicts with a fitted ``Model`` / ``PipelineModel``, or one saved at a path.

    ``predict(row)`` returns the row with the output columns added (``None`` when a stage with
    ``handle_invalid="skip"`` drops it); ``predict_batch(table)`` transforms a whole table.
    Thread-safe. Given a model store, it follows the store on a thread of its own until
    ``close()`` (or until the predictor is garbage-collected).
    """

    def __init__(self, model_or_path: Any, poll_interval: float = 0.2, notify: bool = True) -> None:
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._closed = False
        self._follower = None
        model, version, store = model_or_path, None, None
        if isinstance(model_or_path, str) and _is_store_url(model_or_path):
            from flowlearn.modelstream import open_store

            store = open_store(model_or_path)
        elif isinstance(model_or_path, str):
            from flowlearn.persist import load_stage

            model = load_stage(model_or_path)
        elif _is_store(model_or_path):
            store = model_or_path
        if store is not None:
            first = store.latest()
            if first is None:
                raise ValueError(f"LocalPredictor: {store!r} has no valid model version yet; publish one first")
            model, version = first.model, first.version
        if not isinstance(model, Stage) or not isinstance(model, Transformer):
            raise TypeError(f"LocalPredictor needs a fitted Model, PipelineModel, the path of one or a model store; "
                            f"got {type(model_or_path).__name__}")
        if follows_model_stream(model):
            raise ValueError(f"LocalPredictor: this {type(model).__name__} follows a model stream, whose versions "
                             f"exist only inside a running job; publish them with "
                             f"fl.stream.model_stream(model).to_model_store(store) and give LocalPredictor the store")
        self._snap = self._snapshot(model, version)
        if store is not None:
            from flowlearn.serving.follow import StoreFollower

            self._follower = StoreFollower(store, self, poll_interval=poll_interval, notify=notify, after=version)
            # the follower holds this predictor weakly; dropped without close(), the predictor stops it
            self._stop_follower = weakref.finalize(self, self._follower.close, 0.0)

    @staticmethod
    def _snapshot(model: Transformer, version: int | None) -> _Snapshot:
        if isinstance(model, Model) and not isinstance(model, PipelineModel):
            model._require_model()
        return _Snapshot(model, _compile(model), version)

    def swap(self, model: Transformer, version: int | None = None) -> None:
        """Atomically replace the served model (every stage at once)."""
        snap = self._snapshot(model, version)
        with self._lock:
            self._snap = snap

    @property
    def model(self) -> Transformer:
        return self._snap.model

    @property
    def model_version(self) -> int | None:
        return self._snap.version

    def predict(self, row: dict) -> dict | None:
        """Predict one row given as a dict of column values."""
        snap = self._snap
        out = snap.row(row)
        if out is not None and snap.version is not None:
            out["model_version"] = snap.version
        return out

    def predict_batch(self, data: Any) -> pa.Table:
        """Transform a table (anything ``fl.table`` accepts)."""
        snap = self._snap
        out = snap.model.transform(data if isinstance(data, pa.Table) else to_table(data))
        if snap.version is not None:
            # as predict() does: the served version replaces a model_version the output already has
            version = pa.array(np.full(out.num_rows, snap.version, dtype=np.int64))
            i = out.schema.get_field_index("model_version")
            out = out.set_column(i, "model_version", version) if i >= 0 else out.append_column("model_version", version)
        return out

    def close(self) -> None:
        self._closed = True
        if self._follower is not None:
            self._stop_follower.detach()
            self._follower.close()

    def __enter__(self) -> "LocalPredictor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
