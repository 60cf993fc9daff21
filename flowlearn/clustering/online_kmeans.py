"""Online k-means as in Flink ML 2.x: ``OnlineKMeans`` / ``OnlineKMeansModel``.

The stream of points is cut into mini-batches of ``global_batch_size`` consecutive rows
(``batch_strategy="COUNT_STRATEGY"``, Flink ML's only strategy). Each mini-batch is assigned to
the centroids as they were before it (the batch KMeans kernels, any ``distance_measure``) and
then, with ``n_i`` points and ``s_i`` their sum in cluster ``i``, Flink ML's decayed mini-batch
rule updates the model (``OnlineKMeans.ModelDataLocalUpdater``, one worker)::

    w_i <- w_i * decay_factor                 for every cluster
    w_i <- w_i + n_i                          for clusters with n_i > 0
    c_i <- (1 - n_i / w_i) * c_i + s_i / w_i  for clusters with n_i > 0

that is ``c_i <- (c_i * w_i * decay + s_i) / (w_i * decay + n_i)``. A cluster without points in
the mini-batch keeps its centroid and its weight decays. ``decay_factor=1`` weighs every point
ever seen equally (with zero initial weights the centroid is the running mean of its points);
``decay_factor=0`` forgets everything before the current mini-batch. Each mini-batch emits one
model version (``emit_every`` rows or ``emit_every_seconds`` of processing time thin that out).

Departures from Flink ML, all documented on the classes:

* **Initial model.** Flink ML needs initial model data (typically
  ``KMeansModelData.generateRandomModelData``). flowlearn uses ``set_initial_model_data`` (a
  ``KMeansModel``, an ``OnlineKMeansModel``, a model version or a model data table) and, without
  one, generates Flink ML's random model data itself: ``k`` centroids with coordinates uniform in
  ``[0, 1)`` drawn from ``seed`` (NumPy's generator, not Java's) and weights 0, sized by the first
  rows.
* **End of a bounded input.** Flink ML drops a last incomplete mini-batch; flowlearn applies it
  as a smaller mini-batch and emits a final version (as ``OnlineLogisticRegression``).
* **Versions** are numbered from the initial model's ``model_version`` + 1 (1 without one).

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.clustering.online_kmeans import OnlineKMeans
    >>> init = {"centroids": [[0.0, 0.0], [10.0, 10.0]], "weights": [0.0, 0.0]}
    >>> est = OnlineKMeans(k=2, global_batch_size=2, decay_factor=1.0).set_initial_model_data(init)
    >>> t = fl.table({"features": [[1.0, 1.0], [9.0, 9.0], [3.0, 1.0], [11.0, 9.0]]})
    >>> [v.column("model_version")[0].as_py() for v in est.fit_versions(t)]
    [1, 2]
    >>> model = est.fit(t)
    >>> model.get_model_data()[0].column("centroids").to_pylist()
    [[2.0, 1.0], [10.0, 9.0]]
    >>> model.transform({"features": [[0.0, 1.0]]}).to_pydict()["prediction"]
    [0]
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import RowFn, with_trained_rows
from flowlearn.trainer import OperatorState, Trainer
from flowlearn.iteration.online import (HasInitialModelData, OnlineEstimator, as_table,
                                        initial_model_data, iter_input_tables, step_rows, train_versions,
                                        version_period)
from flowlearn.clustering.kmeans import (KMeansModel, _closest, _default_seed, _KMeansModelParams, _row_sq_norms)
from flowlearn.data.columns import check_squares, numeric_column, vector_column, with_column
from flowlearn.linalg import dense_vector_type, from_csr, from_numpy, is_sparse, to_csr, to_numpy
from flowlearn.params import HasEmitEverySeconds, HasGlobalBatchSize, HasSeed, Param, gt, in_array, in_range

__all__ = ["OnlineKMeans", "OnlineKMeansModel", "OnlineKMeansTrainer"]

_log = logging.getLogger(__name__)

_STAGE = "OnlineKMeans"
STATE_FORMAT = "flowlearn.online_kmeans_state"
STATE_FORMAT_VERSION = 2  # 2: an OperatorState (counters in its data) instead of schema metadata
# Largest k x rows one-hot membership matrix built densely (beyond it, a sparse one).
_ONEHOT_ELEMENTS = 1 << 16


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------


class _OnlineKMeansModelParams(_KMeansModelParams):
    model_version_col = Param(str, default="model_version", optional=True,
                              doc="Output column with the version of the model data that made each prediction; "
                                  "None adds no column (as Flink ML's OnlineKMeansModel).")


class _OnlineKMeansParams(_OnlineKMeansModelParams, HasGlobalBatchSize, HasSeed, HasEmitEverySeconds):
    decay_factor = Param(float, default=0.0, validator=in_range(0, 1),
                         doc="The forgetfulness of the previous centroids: 1 weighs all batches equally, "
                             "0 determines new centroids entirely by the current mini-batch.")
    batch_strategy = Param(str, default="COUNT_STRATEGY", validator=in_array(["COUNT_STRATEGY"]),
                           doc="How the stream is cut into mini-batches: COUNT_STRATEGY makes mini-batches of "
                               "global_batch_size rows.")
    emit_every = Param(int, default=None, validator=gt(0),
                       doc="Emit a model version after every this many rows (at the next mini-batch boundary); "
                           "None emits one version per mini-batch, as Flink ML (unless emit_every_seconds is set: "
                           "then versions come by time alone).")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _vectors(t: pa.Table, name: str, stage: str, size: int | None) -> np.ndarray | sps.csr_matrix:
    x = vector_column(t, name, stage, param="features_col", size=size)
    if sps.issparse(x):   # checked canonical (sorted, unique indices) by vector_column
        x = sps.csr_matrix(x, dtype=np.float64)
    else:
        x = np.ascontiguousarray(x, dtype=np.float64)
    return x


def _model_data_table(centroids: np.ndarray, weights: np.ndarray, version: int) -> pa.Table:
    """KMeansModel's model data (one row per centroid) plus a ``model_version`` column."""
    k = len(centroids)
    return pa.table({
        "centroids": from_numpy(np.array(centroids, dtype=np.float64)),  # copies: the trainer updates in place
        "weights": pa.array(np.array(weights, dtype=np.float64)),
        "model_version": pa.array(np.full(k, int(version), dtype=np.int64)),
    })


def _parse_model_data(t: pa.Table, stage: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(centroids, weights, model_version)`` of KMeans model data (``model_version`` optional, 0)."""
    if "centroids" not in t.column_names or "weights" not in t.column_names:
        raise ValueError(f"{stage}: model data has columns {t.column_names}; expected the KMeansModel format "
                         f"(centroids, weights[, model_version])")
    if t.num_rows == 0:
        raise ValueError(f"{stage}: model data has no centroids")
    c = np.array(vector_column(t, "centroids", f"{stage} model data", dense=True), dtype=np.float64)
    w = np.array(numeric_column(t, "weights", f"{stage} model data"), dtype=np.float64)
    if (w < 0).any():
        raise ValueError(f"{stage}: model data column 'weights' has a negative weight at row "
                         f"{int(np.flatnonzero(w < 0)[0])}; weights are point counts, >= 0")
    version = 0
    if "model_version" in t.column_names:
        v = numeric_column(t, "model_version", f"{stage} model data")
        if len(np.unique(v)) != 1:
            raise ValueError(f"{stage}: model data holds several model versions {sorted(set(v.tolist()))}; "
                             f"it must be one version (one row per centroid)")
        version = int(v[0])
    return c, w, version


def _vstack(parts: list) -> np.ndarray | sps.csr_matrix:
    if len(parts) == 1:
        return parts[0]
    if any(sps.issparse(p) for p in parts):
        return sps.vstack([sps.csr_matrix(p) for p in parts], format="csr")
    return np.vstack(parts)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


class OnlineKMeansTrainer(Trainer):
    """Incremental state of :class:`OnlineKMeans`, driven batch by batch by stream engines.

    Made by ``OnlineKMeans.trainer()``. Feed it record batches of any size in order; mini-batches
    of ``global_batch_size`` rows run across batch boundaries (the rows of an open mini-batch are
    buffered, so the result does not depend on how the input is cut into batches). The same
    protocol as ``OnlineLogisticRegressionTrainer``:

    * ``partial_fit(batch) -> list[pa.Table]``: learn from the rows, return the model versions
      emitted meanwhile (one per mini-batch, or per ``emit_every`` rows, and one at the end of the
      call when ``emit_every_seconds`` passed since the last version; with only
      ``emit_every_seconds`` set, versions come by time alone);
    * ``poll(now=None)``: the version due by ``emit_every_seconds`` (for engine timers);
    * ``emit()``: a version of the current centroids now, ``None`` if no mini-batch was applied
      since the last one; ``finish()``: apply a last incomplete mini-batch and emit the final
      version (a bounded input's end);
    * ``model_data()``, ``version``, ``rows_seen``, ``dim``;
    * ``snapshot_state() -> OperatorState`` / ``restore_state(state)``: the complete state
      (centroids, weights, buffered rows, counters; the :class:`~flowlearn.trainer.Trainer` protocol).

    Example:
        >>> from flowlearn.clustering.online_kmeans import OnlineKMeans
        >>> tr = OnlineKMeans(k=2, global_batch_size=2, seed=1).trainer()
        >>> [v.column("model_version")[0].as_py() for v in tr.partial_fit({"features": [[0.0], [1.0], [2.0]]})]
        [1]
        >>> [v.column("model_version")[0].as_py() for v in tr.finish()]
        [2]
    """

    stage = _STAGE
    state_format = STATE_FORMAT
    state_format_version = STATE_FORMAT_VERSION
    state_tables = ("model", "open_batch")

    def __init__(self, estimator: "OnlineKMeans", clock: Callable[[], float] | None = None) -> None:
        p = estimator.get_params()
        super().__init__(p["emit_every_seconds"], clock)
        self._features_col = p["features_col"]
        self._k = int(p["k"])
        self._measure = p["distance_measure"]
        self._decay = float(p["decay_factor"])
        self._batch = int(p["global_batch_size"])
        self._emit_every = p["emit_every"]
        self._seed = p["seed"] if p["seed"] is not None else _default_seed(OnlineKMeans)
        self._centroids: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        self._open: list[np.ndarray | sps.csr_matrix] = []
        self._open_rows = 0
        init = estimator.get_initial_model_data()
        if init is not None:
            c, w, version = _parse_model_data(init, _STAGE)
            self._check_k(len(c))
            self._centroids, self._weights, self.version = c, w, version

    def _check_k(self, n: int) -> None:
        if n != self._k:
            raise ValueError(f"{_STAGE}: the initial model data has {n} centroids but k={self._k}; "
                             f"set k to the number of centroids")

    @property
    def dim(self) -> int | None:
        """Vector size (``None`` until the first row or an initial model fixes it)."""
        return None if self._centroids is None else self._centroids.shape[1]

    @property
    def centroids(self) -> np.ndarray:
        self._require_model()
        return self._centroids.copy()

    @property
    def weights(self) -> np.ndarray:
        self._require_model()
        return self._weights.copy()

    def _require_model(self) -> None:
        if self._centroids is None:
            raise ValueError(f"{_STAGE}: no model yet; the trainer has seen no rows and has no initial model data")

    def model_data(self) -> pa.Table:
        """The current centroids as model data, labelled with the last emitted version."""
        self._require_model()
        return with_trained_rows(_model_data_table(self._centroids, self._weights, self.version),
                                 self.rows_seen - self._open_rows)

    # -- training ------------------------------------------------------------------------

    def _random_init(self, d: int) -> None:
        """Flink ML's ``KMeansModelData.generateRandomModelData(k, dim, weight=0, seed)``."""
        rng = np.random.default_rng(self._seed)
        self._centroids = rng.random((self._k, d))
        self._weights = np.zeros(self._k)

    def _update(self, x: np.ndarray | sps.csr_matrix) -> None:
        """Flink ML's decayed mini-batch update with the rows ``x`` of one mini-batch."""
        c, w, k = self._centroids, self._weights, self._k
        n = x.shape[0]
        assign, _ = _closest(x, _row_sq_norms(x), c, self._measure)
        n_i = np.bincount(assign, minlength=k)
        counts = n_i.astype(np.float64)
        if not sps.issparse(x) and k * n <= _ONEHOT_ELEMENTS:  # small mini-batch: one BLAS call
            member = np.zeros((k, n))
            member[assign, np.arange(n)] = 1.0
            sums = member @ x
        else:
            indptr = np.zeros(k + 1, dtype=np.int64)
            np.cumsum(n_i, out=indptr[1:])
            member = sps.csr_matrix((np.ones(n), np.argsort(assign, kind="stable"), indptr), shape=(k, n))
            sums = member @ x
            sums = sums.toarray() if sps.issparse(sums) else np.asarray(sums)
        w *= self._decay
        hit = counts > 0
        w[hit] += counts[hit]
        lam = counts[hit] / w[hit]
        c[hit] = (1.0 - lam)[:, None] * c[hit] + (lam / counts[hit])[:, None] * sums[hit]

    def _emit_due(self) -> bool:
        if self._emit_every is None:
            return self._emit_seconds is None  # Flink ML: a version per mini-batch
        return self.rows_seen - self._open_rows - self._last_emit_rows >= self._emit_every

    def _has_model(self) -> bool:
        return self._centroids is not None

    def _rows_in_model(self) -> int:
        return self.rows_seen - self._open_rows   # buffered rows of the open mini-batch are not in the centroids

    def _current_version(self) -> pa.Table:
        return self.model_data()

    def partial_fit(self, batch: Any) -> list[pa.Table]:
        """Learn from the rows of ``batch`` (a table, record batch or anything ``fl.table`` accepts);
        return the model versions emitted meanwhile (KMeans model data tables with ``model_version``)."""
        t = as_table(batch)
        if t.num_rows == 0:  # an empty batch changes nothing (and may come without columns)
            return []
        x = _vectors(t, self._features_col, _STAGE, self.dim)
        check_squares(x, self._features_col, _STAGE, "features_col", "squared distances")
        if self._centroids is None:
            self._random_init(x.shape[1])
        versions: list[pa.Table] = []
        n = x.shape[0]
        start = 0
        b = self._batch
        while start < n:
            take = min(b - self._open_rows, n - start)
            part = x[start:start + take]
            start += take
            self.rows_seen += take
            if self._open_rows == 0 and take == b:
                mini = part
            else:
                self._open.append(part)
                self._open_rows += take
                if self._open_rows < b:
                    break
                mini = _vstack(self._open)
            self._open, self._open_rows = [], 0
            self._update(mini)
            if self._emit_due():
                versions.append(self._emit())
        return versions + self._versions_due()

    def _apply_open(self) -> None:
        if self._open_rows:   # the end of a bounded input: a smaller last mini-batch
            mini = _vstack(self._open)
            self._open, self._open_rows = [], 0
            self._update(mini)

    # -- checkpoints ---------------------------------------------------------------------

    def _state(self) -> OperatorState:
        """Tables ``model`` (``centroids``, ``weights``) and ``open_batch`` (the buffered rows of the
        open mini-batch, column ``features``, dense or sparse as they came)."""
        d = self.dim
        data = {"dim": d, "k": self._k, "open_batch_rows": self._open_rows, "global_batch_size": self._batch,
                "decay_factor": self._decay, "distance_measure": self._measure}
        if self._centroids is None:
            model = pa.table({"centroids": pa.array([], dense_vector_type(0)), "weights": pa.array([], pa.float64())})
            open_batch = pa.table({"features": pa.array([], dense_vector_type(0))})
        else:
            model = pa.table({"centroids": from_numpy(self._centroids.copy()),
                              "weights": pa.array(self._weights.copy())})
            if self._open_rows:
                rows = _vstack(self._open)
                col = from_csr(rows) if sps.issparse(rows) else from_numpy(rows)
            else:
                col = from_numpy(np.zeros((0, d)))
            open_batch = pa.table({"features": col})
        return OperatorState(data, {"model": model, "open_batch": open_batch})

    def _restore(self, st: OperatorState) -> None:
        meta = st.data
        model, open_batch = st.tables["model"], st.tables["open_batch"]
        if meta["k"] != self._k:
            raise ValueError(f"{_STAGE}: the state was written with k={meta['k']}, this trainer has k={self._k}")
        if meta["open_batch_rows"] and meta["global_batch_size"] != self._batch:
            raise ValueError(f"{_STAGE}: the state has an open mini-batch of global_batch_size="
                             f"{meta['global_batch_size']}; restore it into a trainer with the same size "
                             f"(this one has {self._batch})")
        if meta["dim"] is None:
            self._centroids = self._weights = None
            self._open, self._open_rows = [], 0
            return
        d = int(meta["dim"])
        if model.num_rows != self._k:
            raise ValueError(f"{_STAGE}: state table has {model.num_rows} centroids, expected k = {self._k}")
        self._centroids = np.array(to_numpy(model.column("centroids"), "centroids", _STAGE), dtype=np.float64)
        self._weights = model.column("weights").to_numpy().astype(np.float64, copy=True)
        col = open_batch.column("features")
        rows = to_csr(col) if is_sparse(col.type) else to_numpy(col)
        if rows.shape[0] != meta["open_batch_rows"]:
            raise ValueError(f"{_STAGE}: the open_batch table has {rows.shape[0]} rows, the state says "
                             f"{meta['open_batch_rows']}")
        if rows.shape[0] and rows.shape[1] != d:
            raise ValueError(f"{_STAGE}: the open_batch rows have size {rows.shape[1]}, expected {d}")
        self._open = [rows] if rows.shape[0] else []
        self._open_rows = int(rows.shape[0])


# --------------------------------------------------------------------------------------------
# Estimator and model
# --------------------------------------------------------------------------------------------


class OnlineKMeans(_OnlineKMeansParams, HasInitialModelData, OnlineEstimator):
    """K-means trained online with Flink ML's decayed mini-batch rule (Flink ML ``OnlineKMeans``).

    Parameters (Flink ML names in snake_case): ``features_col`` (dense or sparse vectors),
    ``prediction_col``, ``k`` (2), ``distance_measure`` ("euclidean", "manhattan", "cosine"),
    ``decay_factor`` (0.0, in [0, 1]), ``global_batch_size`` (32), ``batch_strategy``
    ("COUNT_STRATEGY" only), ``seed`` (for the random initial centroids), ``emit_every`` (None:
    one version per mini-batch), ``emit_every_seconds`` (a version after this many seconds of
    processing time; None), ``model_version_col`` (for the model). The update rule and the
    departures from Flink ML are in the module docstring.

    Training starts from ``set_initial_model_data(...)``: a batch ``KMeansModel`` (whose
    ``weights`` are its cluster sizes, so the batch model counts as that many points), an
    ``OnlineKMeansModel``, a ``PipelineModel`` ending in one, a model version (anything with a
    ``.model``), a model store (its newest valid version) or a model data table
    (``centroids``, ``weights``[, ``model_version``]); without one, from ``k`` random centroids
    uniform in ``[0, 1)`` with weight 0 (Flink ML's random model data), which suits data scaled to
    about that range; otherwise start from a batch model fitted on a sample.

    * ``fit(table_or_iterable_of_tables)`` trains on a bounded input and returns an
      :class:`OnlineKMeansModel` holding the final version; ``fit(stream)`` goes to the stream layer.
    * ``fit_versions(data)`` yields every model version as it is emitted (the trainer runs on
      ``flowlearn.iteration.iterate_unbounded``; see ``flowlearn.iteration.online.train_versions``).
    * ``trainer(clock=None)`` returns the incremental :class:`OnlineKMeansTrainer` that stream engines drive.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.clustering.online_kmeans import OnlineKMeans
        >>> t = fl.table({"features": [[0.1, 0.1], [0.9, 0.9], [0.2, 0.1], [0.8, 0.9]] * 5})
        >>> init = {"centroids": [[0.0, 0.0], [1.0, 1.0]], "weights": [1.0, 1.0]}
        >>> model = OnlineKMeans(k=2, global_batch_size=4, decay_factor=0.5).set_initial_model_data(init).fit(t)
        >>> model.get_model_data()[0].column("model_version").to_pylist()
        [5, 5]
        >>> model.transform({"features": [[0.0, 0.2], [1.0, 0.7]]}).column("prediction").to_pylist()
        [0, 1]
    """

    def _initial_model_table(self, model_or_table: Any) -> pa.Table:
        t = initial_model_data(model_or_table, _STAGE, "a KMeansModel or OnlineKMeansModel")
        _parse_model_data(t, _STAGE)  # validate now
        return t

    def trainer(self, clock: Callable[[], float] | None = None) -> OnlineKMeansTrainer:
        """A fresh incremental trainer with this estimator's parameters and initial model
        (``clock() -> seconds`` drives ``emit_every_seconds``; ``time.time`` by default)."""
        return OnlineKMeansTrainer(self, clock)

    def fit_versions(self, data: Any) -> Iterator[pa.Table]:
        """Train on a bounded input (a table or an iterable of tables/record batches) and yield each
        model version as it is emitted, the final one last."""
        tr = self.trainer()
        period = version_period(tr._emit_every if tr._emit_every is not None else tr._batch, tr._batch)
        yield from train_versions(tr, iter_input_tables(data, _STAGE), step_rows(period))
        if tr.rows_seen == 0:
            raise ValueError(f"{_STAGE}.fit: the input has no rows; it needs at least one row")


class OnlineKMeansModel(_OnlineKMeansModelParams, KMeansModel):
    """Applies the latest centroids of :class:`OnlineKMeans` (or of a batch ``KMeans``).

    Appends ``prediction_col`` (int32, the closest centroid under ``distance_measure``, the first
    on ties) and ``model_version_col`` (int64; skipped when None). Given a model stream it follows
    the newest version.

    Model data: the ``KMeansModel`` format, one row per centroid, plus a ``model_version`` column:

    =============  ============================  ==========================================
    column         type                          meaning
    =============  ============================  ==========================================
    centroids      dense vector (``d`` doubles)  the centroid
    weights        double                        decayed number of points it has absorbed
    model_version  int64                         the version (the same in every row; 0 when absent)
    =============  ============================  ==========================================

    Example:
        >>> from flowlearn.clustering.online_kmeans import OnlineKMeansModel
        >>> m = OnlineKMeansModel().set_model_data(
        ...     {"centroids": [[0.0], [5.0]], "weights": [3.0, 2.0], "model_version": [4, 4]})
        >>> m.transform({"features": [[4.0], [1.0]]}).to_pydict()
        {'features': [[4.0], [1.0]], 'prediction': [1, 0], 'model_version': [4, 4]}
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1:
            raise ValueError(f"{stage}: model data is one table, got {len(tables)}")
        _, _, version = _parse_model_data(tables[0], stage)
        super()._load_model_data(tables)
        self._version = version

    @property
    def model_version(self) -> int:
        self._require_model()
        return self._version

    def _transform(self, *tables: pa.Table) -> pa.Table:
        out = super()._transform(*tables)
        if self.model_version_col is None:
            return out
        return with_column(out, self.model_version_col, pa.array(np.full(out.num_rows, self._version, np.int64)))

    def row_fn(self) -> RowFn:
        inner = super().row_fn()
        vcol, version = self.model_version_col, self._version
        if vcol is None:
            return inner

        def fn(row: dict) -> None:
            inner(row)
            row[vcol] = version

        return fn


OnlineKMeans.model_class = OnlineKMeansModel
