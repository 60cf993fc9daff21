"""K-means clustering as in Flink ML 2.x: ``KMeans`` / ``KMeansModel``.

Lloyd's algorithm on the bounded iteration engine (``flowlearn.iteration.iterate_bounded``), as
Flink ML writes it: the centroids are the variable stream, the features are replayed data
(blocks of rows), and each round two operators assign every point to its closest centroid
and move each centroid to the mean of its points; a termination-criteria stream ends the
iteration after ``max_iter`` rounds or once no centroid moves more than ``tol``. Dense rows under
euclidean distance are assigned and summed in one Numba pass over chunks of rows on all cores
(the model's transform uses the same kernel); otherwise one matrix product per block of rows
gives the distances.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"features": [[0.0, 0.0], [0.0, 0.3], [0.3, 0.0], [9.0, 0.0], [9.0, 0.6], [9.6, 0.0]]})
    >>> model = fl.clustering.KMeans(k=2, seed=1).fit(t)
    >>> labels = model.transform(t).column("prediction").to_pylist()
    >>> labels[0] == labels[1] == labels[2] != labels[3] == labels[4] == labels[5]
    True
"""
from __future__ import annotations

import logging
import math
import zlib
from functools import partial
from typing import Any, Callable

import numba
import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn._parallel import chunk_bounds, parallel_map
from flowlearn.api import IterativeEstimator, Model, RowFn
from flowlearn.data.columns import check_squares, dense_row_vector, numeric_column, vector_column, with_column
from flowlearn.data.table import table as fl_table
from flowlearn.iteration import (BatchStream, IterationBodyResult, IterationOperator, OperatorContext,
                                 TerminateOnMaxIterOrTol, iterate_bounded)
from flowlearn.linalg import from_csr, from_numpy, to_csr, to_numpy
from flowlearn.optim import batch_key, batch_offsets, with_key_of
from flowlearn.params import (HasDistanceMeasure, HasFeaturesCol, HasMaxIter, HasPredictionCol, HasSeed, Param,
                              gt, gt_eq, in_array)

__all__ = ["KMeans", "KMeansModel"]

_log = logging.getLogger(__name__)

# Bound on the temporaries of one block of rows (elements of a rows x k or rows x k x d array).
_BLOCK_ELEMENTS = 1 << 21
# Rows per batch of the features replayed each round of Lloyd's iteration. Bounds the update
# step's per-row temporaries (about 40 bytes a row); the distance kernel blocks further inside.
_BATCH_ROWS = 1 << 20


class _KMeansModelParams(HasDistanceMeasure, HasFeaturesCol, HasPredictionCol):
    k = Param(int, default=2, validator=gt(1), doc="The max number of clusters to create.")


class _KMeansParams(_KMeansModelParams, HasSeed, HasMaxIter):
    init_mode = Param(str, default="random", validator=in_array(["random", "k-means++"]),
                      doc="The initialization algorithm. Supported options: 'random', 'k-means++'.")
    tol = Param(float, default=0.0, validator=gt_eq(0),
                doc="Stop early once no centroid moves more than tol (euclidean) in a round. 0 stops only at "
                    "a fixed point, which gives exactly Flink ML's result (Flink ML always runs max_iter rounds; "
                    "rounds after a fixed point change nothing).")


# --- distance kernels ------------------------------------------------------------------------


def _row_sq_norms(x: np.ndarray | sps.csr_matrix) -> np.ndarray:
    if sps.issparse(x):
        return np.asarray(x.multiply(x).sum(axis=1)).reshape(-1)
    return np.einsum("ij,ij->i", x, x)


def _pairwise(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, c: np.ndarray, cc: np.ndarray,
              measure: str, ct: np.ndarray | None = None) -> np.ndarray:
    """Distances (rows of ``x`` x rows of ``c``); ``xx``/``cc`` are the squared row norms.

    Euclidean uses Flink ML's ``sqrt(|x|^2 + |c|^2 - 2 x.c)`` (returned squared: same argmin);
    cosine is ``1 - x.c / (|x| |c|)`` with distance 1 when either norm is 0; manhattan is L1.
    ``ct`` is ``c.T`` as a contiguous array (a contiguous right operand keeps BLAS fast).
    """
    if measure == "manhattan":
        xd = x.toarray() if sps.issparse(x) else x
        return np.abs(xd[:, None, :] - c[None, :, :]).sum(axis=2)
    dot = np.asarray(x @ (np.ascontiguousarray(c.T) if ct is None else ct))
    if measure == "euclidean":
        return np.abs(xx[:, None] + cc[None, :] - 2.0 * dot)
    norms = np.sqrt(xx)[:, None] * np.sqrt(cc)[None, :]
    sim = np.zeros_like(dot)
    np.divide(dot, norms, out=sim, where=norms > 0)
    return 1.0 - sim


def _closest(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, c: np.ndarray, measure: str,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Index of the closest centroid for every row (the first one on ties) and that distance
    (squared for euclidean)."""
    n, d = x.shape
    k = len(c)
    cc = _row_sq_norms(c)
    ct = np.ascontiguousarray(c.T)
    per_row = k * (d if measure == "manhattan" else 1)
    block = max(1, _BLOCK_ELEMENTS // max(per_row, 1))
    assign = np.empty(n, dtype=np.int64)
    best = np.empty(n)
    for start in range(0, n, block):
        dist = _pairwise(x[start:start + block], xx[start:start + block], c, cc, measure, ct)
        a = np.argmin(dist, axis=1)
        assign[start:start + len(a)] = a
        best[start:start + len(a)] = dist[np.arange(len(a)), a]
    return assign, best


def _default_seed(cls: type) -> int:
    """Deterministic default seed derived from the class name (as Flink ML's HasSeed)."""
    return zlib.crc32(f"flowlearn.clustering.{cls.__name__}".encode())


def _rows(x: np.ndarray | sps.csr_matrix, idx: np.ndarray) -> np.ndarray:
    sub = x[idx]
    return np.asarray(sub.toarray() if sps.issparse(sub) else sub, dtype=np.float64).copy()


def _init_kmeans_pp(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, k: int, measure: str,
                    rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii; 2 + log k candidates per step, as scikit-learn),
    sampling with probability proportional to the squared distance under ``measure``."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    centers = np.empty((k, x.shape[1]))
    centers[0] = _rows(x, np.array([rng.integers(n)]))[0]
    closest = _pairwise(x, xx, centers[:1], _row_sq_norms(centers[:1]), measure)[:, 0]
    if measure != "euclidean":  # _pairwise returns squared euclidean already
        closest = closest ** 2
    pot = closest.sum()
    for i in range(1, k):
        cum = np.cumsum(closest)
        cand = np.minimum(np.searchsorted(cum, rng.uniform(size=trials) * pot, side="right"), n - 1)
        cand_rows = _rows(x, cand)
        dist = _pairwise(x, xx, cand_rows, _row_sq_norms(cand_rows), measure)
        if measure != "euclidean":
            dist = dist ** 2
        dist = np.minimum(closest[:, None], dist)
        pots = dist.sum(axis=0)
        b = int(np.argmin(pots))
        closest, pot, centers[i] = dist[:, b], pots[b], cand_rows[b]
    return centers


# --- Lloyd's algorithm on the iteration engine -------------------------------------------------


# A round is a partial over the blocks of rows (per centroid: the number of rows closest to it and
# their sum, a round state), a merge (adding the states) and the update on the driver (each
# centroid to the mean of its rows); KMeans.round_partial / round_merge / round_update expose them.

def _round_sums(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, centers: np.ndarray, measure: str) -> pa.Table:
    """The round state of the rows ``x`` (squared norms ``xx``): ``counts`` (double) and ``sums``
    (dense vectors), one row per centroid: the fused pass of :func:`_fused_round` where it
    applies; otherwise every row is assigned to its closest centroid and summed with one sparse
    membership matrix product (the k x n membership matrix built directly in CSC form, one entry
    per column, with no COO conversion)."""
    n = x.shape[0]
    k, d = centers.shape
    if n == 0:
        return _round_state(np.zeros(k), np.zeros((k, d)))
    if _fused(x, measure, centers):
        return _round_state(*_fused_round(x, centers))
    assign, _ = _closest(x, xx, centers, measure)
    counts = np.bincount(assign, minlength=k).astype(np.float64)
    member = sps.csc_matrix((np.ones(n), assign, np.arange(n + 1)), shape=(k, n))
    sums = member @ x
    return _round_state(counts, sums.toarray() if sps.issparse(sums) else np.asarray(sums))


# Up to this many centroid entries (k x d) a round is one fused pass over the rows (distances, the
# closest centroid, its count and sum) instead of a BLAS product to an n x k distance matrix, an
# argmin and a membership product, which move the data several times.
_FUSED_MAX_KD = 4096
# Rows per chunk of a fused pass. Chunks are what the threads share; their partial counts and sums
# are added in chunk order, so a round's result does not depend on the number of threads.
_CHUNK_ROWS = 1 << 15


def _fused(x: np.ndarray | sps.csr_matrix, measure: str, centers: np.ndarray) -> bool:
    return measure == "euclidean" and not sps.issparse(x) and centers.size <= _FUSED_MAX_KD


@numba.njit(cache=True, nogil=True)
def _assign_rows(x: np.ndarray, centers: np.ndarray, lo: int, hi: int, labels: np.ndarray, counts: np.ndarray,
                 sums: np.ndarray) -> None:
    """For the rows ``lo .. hi`` of ``x``: the closest centroid (squared euclidean distance, the
    first centroid on ties) written to ``labels[i]`` when ``labels`` is not empty, and each row
    added to its centroid's ``counts`` and ``sums`` (in row order) when ``counts`` is not empty.

    Rows go in blocks of 64, transposed so that one centroid's distances to the whole block are
    computed side by side (SIMD lanes over rows); each distance is still summed over the
    dimensions in order, so it is the same number as one row at a time."""
    k, d = centers.shape
    block = 64
    xt = np.empty((d, block))
    dist = np.empty(block)
    best = np.empty(block)
    closest = np.empty(block, dtype=np.int64)
    write = labels.shape[0] > 0
    add = counts.shape[0] > 0
    for i0 in range(lo, hi, block):
        m = min(block, hi - i0)
        for r in range(m):
            for t in range(d):
                xt[t, r] = x[i0 + r, t]
            best[r] = np.inf
            closest[r] = 0
        for j in range(k):
            for r in range(m):
                dist[r] = 0.0
            for t in range(d):
                c = centers[j, t]
                for r in range(m):
                    diff = xt[t, r] - c
                    dist[r] += diff * diff
            for r in range(m):   # branch-free, so it vectorizes too
                closer = dist[r] < best[r]
                best[r] = dist[r] if closer else best[r]
                closest[r] = j if closer else closest[r]
        for r in range(m):
            cl = closest[r]
            if write:
                labels[i0 + r] = cl
            if add:
                counts[cl] += 1.0
                for t in range(d):
                    sums[cl, t] += xt[t, r]


_NO_LABELS = np.empty(0, dtype=np.int32)
_NO_COUNTS = np.empty(0)


def _fused_round(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per centroid: the number and the sum of the rows of ``x`` closest to it (squared euclidean
    distance, the first centroid on ties), over chunks of rows on the machine's cores."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    k, d = centers.shape
    c = np.ascontiguousarray(centers, dtype=np.float64)

    def chunk(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        counts, sums = np.zeros(k), np.zeros((k, d))
        _assign_rows(x, c, bounds[0], bounds[1], _NO_LABELS, counts, sums)
        return counts, sums

    parts = parallel_map(chunk, chunk_bounds(x.shape[0], _CHUNK_ROWS))
    counts, sums = parts[0]
    for c, s in parts[1:]:
        counts += c
        sums += s
    return counts, sums


def _fused_labels(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The closest centroid (int32) of every row of ``x``, as :func:`_fused_round` assigns them."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    c = np.ascontiguousarray(centers, dtype=np.float64)
    labels = np.empty(x.shape[0], dtype=np.int32)
    parallel_map(lambda b: _assign_rows(x, c, b[0], b[1], labels, _NO_COUNTS, _NO_COUNTS.reshape(0, 0)),
                 chunk_bounds(x.shape[0], _CHUNK_ROWS))
    return labels


def _round_state(counts: np.ndarray, sums: np.ndarray) -> pa.Table:
    return pa.table({"counts": pa.array(counts, pa.float64()), "sums": from_numpy(sums)})


def _merge_round_sums(states: list[pa.Table]) -> pa.Table:
    """The round state of the rows of all ``states`` (added in order)."""
    counts = np.zeros(states[0].num_rows)
    sums = np.zeros((states[0].num_rows, _dim(states[0].column("sums"))))
    for st in states:
        if st.num_rows != len(counts):
            raise ValueError(f"KMeans: round states of {len(counts)} and {st.num_rows} centroids cannot be merged")
        counts += st.column("counts").to_numpy()
        sums += to_numpy(st.column("sums"))
    return _round_state(counts, sums)


def _dim(col: pa.ChunkedArray) -> int:
    return col.type.list_size if pa.types.is_fixed_size_list(col.type) else to_numpy(col).shape[1]


def _move_centroids(centroids: pa.Table, state: pa.Table) -> tuple[pa.Table, float]:
    """The update of a round: each centroid moved to the mean of its points (an empty cluster keeps
    its centroid), with the round's counts as ``weights``; and the largest distance (euclidean) a
    centroid moved."""
    centers = to_numpy(centroids.column("centroids"))
    counts, sums = state.column("counts").to_numpy(), to_numpy(state.column("sums"))
    new = centers.copy()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None]
    return _centroids_table(new, counts), float(np.sqrt(((new - centers) ** 2).sum(axis=1)).max())


def _feature_batches(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, rows: int) -> list[pa.RecordBatch]:
    """The features as record batches of ``rows`` rows: ``features`` (dense vectors, zero-copy
    views of ``x``, or sparse vectors) and ``sq_norm`` (squared norms, computed once)."""
    encode = from_csr if sps.issparse(x) else from_numpy
    return [pa.record_batch({"features": encode(x[i:i + rows]), "sq_norm": pa.array(xx[i:i + rows])})
            for i in range(0, x.shape[0], rows)]


def _decode_block(batch: pa.RecordBatch, sparse: bool) -> tuple[np.ndarray | sps.csr_matrix, np.ndarray]:
    col = batch.column("features")
    x = to_csr(col) if sparse else to_numpy(col)
    return x, batch.column("sq_norm").to_numpy()


def _centroids_table(centers: np.ndarray, weights: np.ndarray) -> pa.Table:
    """The variable stream (and the model data): one row per centroid."""
    return pa.table({"centroids": from_numpy(centers), "weights": pa.array(weights, pa.float64())})


class _CentroidsAccumulator(IterationOperator):
    """Input 0: the round's centroids (the variable stream); input 1: the data blocks. The round's
    partial: a round state per block, merged at the round's watermark and emitted (``counts``,
    ``sums``: one row per centroid)."""

    def __init__(self, measure: str, sparse: bool) -> None:
        self.measure = measure
        self.sparse = sparse
        self._centroid_batches: list[pa.RecordBatch] = []
        self._centers: np.ndarray | None = None
        self._states: list[pa.Table] = []

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        if ctx.input_index == 0:
            self._centroid_batches.append(batch)
            return
        if self._centers is None:
            self._centers = to_numpy(pa.Table.from_batches(self._centroid_batches).column("centroids"))
        x, xx = _decode_block(batch, self.sparse)
        self._states.append(_round_sums(x, xx, self._centers, self.measure))

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        if self._states:
            ctx.emit(_merge_round_sums(self._states))
        self._centroid_batches, self._centers, self._states = [], None, []


class _CentroidsUpdater(IterationOperator):
    """Input 0: the round states of the accumulators; input 1: the round's centroids. At the
    watermark merges the states and emits the updated centroids (the round's counts as
    ``weights``) and, on the side output ``"shift"``, the largest distance a centroid moved."""

    def __init__(self) -> None:
        self._inputs: tuple[list[pa.RecordBatch], list[pa.RecordBatch]] = ([], [])

    def process(self, batch: pa.RecordBatch, ctx: OperatorContext) -> None:
        self._inputs[ctx.input_index].append(batch)

    def on_epoch_watermark_incremented(self, epoch: int, ctx: OperatorContext) -> None:
        partials, centroids = self._inputs
        self._inputs = ([], [])
        merged = _merge_round_sums([pa.Table.from_batches([b]) for b in partials])  # one record per accumulator
        new, shift = _move_centroids(pa.Table.from_batches(centroids), merged)
        ctx.emit(new)
        ctx.output("shift", pa.table({"shift": [shift]}))


def _lloyd(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, centers: np.ndarray, measure: str, max_iter: int,
           tol: float) -> tuple[pa.Table, int]:
    """Lloyd's iterations from ``centers`` on ``iterate_bounded``: the centroids table (model
    data: ``centroids``, ``weights`` = counts of the last round) and the number of rounds."""
    sparse = sps.issparse(x)
    data = _feature_batches(x, xx, _BATCH_ROWS)

    def body(variables: list[BatchStream], data_streams: list[BatchStream], epoch: int) -> IterationBodyResult:
        centroids = variables[0]
        partials = centroids.process(partial(_CentroidsAccumulator, measure, sparse), data_streams[0])
        new_centroids = partials.process(_CentroidsUpdater, centroids)
        criteria = new_centroids.side_output("shift").process(partial(TerminateOnMaxIterOrTol, max_iter, tol))
        return IterationBodyResult([new_centroids], termination_criteria=criteria)

    res = iterate_bounded([_centroids_table(centers, np.zeros(len(centers)))], [data], body, replay=True)
    _log.debug("KMeans: iteration ended after %d rounds (%s)", res.rounds, res.termination)
    return res.variables[0], res.rounds


class KMeans(_KMeansParams, IterativeEstimator):
    """K-means clustering (Flink ML ``KMeans``), trained with Lloyd's algorithm.

    * ``init_mode="random"`` (default, as Flink ML) picks ``k`` distinct rows uniformly at
      random; ``"k-means++"`` uses greedy k-means++ seeding. Both are deterministic for a
      fixed ``seed`` (``None`` derives a fixed seed from the class name).
    * Each of at most ``max_iter`` rounds assigns every point to its closest centroid under
      ``distance_measure`` (the first centroid on ties) and replaces each centroid by the mean
      of its points. Training stops early when no centroid moves more than ``tol``.
    * An empty cluster (no point assigned in a round) keeps its previous centroid. (Flink ML
      divides by its zero count instead, which yields a NaN centroid.)
    * Distances are Flink ML's: euclidean, manhattan (L1) and cosine (``1 - cos``). Under
      cosine a zero vector is at distance 1 from everything (Flink ML computes NaN).
    * Dense and sparse features are accepted; centroids are dense.
    * ``k`` larger than the number of rows raises (Flink ML silently builds fewer clusters).

    A round, as an engine runs it (see ``flowlearn.api.IterativeEstimator``): the variables are
    the centroids table (``centroids``, ``weights``; :meth:`initial_centroids` to start);
    :meth:`round_partial` gives per centroid the number and the sum of a batch's rows closest
    to it, :meth:`round_merge` adds such states, and :meth:`round_update` moves the centroids on
    the driver; rounds stop after ``max_iter`` or once no centroid moves more than ``tol``.

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"features": [[0.0], [1.0], [10.0], [11.0]]})
        >>> m = fl.clustering.KMeans(k=2, init_mode="k-means++", seed=7).fit(t)
        >>> sorted(v[0] for v in m.get_model_data()[0].column("centroids").to_pylist())
        [0.5, 10.5]
    """

    online_counterpart = "OnlineKMeans"

    def _fit(self, *tables: pa.Table) -> "KMeansModel":
        (t,) = tables
        x = self._features(t)
        xx = _row_sq_norms(x)
        centers = self._initial_centroids(x, xx)
        model_data, rounds = _lloyd(x, xx, centers, self.distance_measure, self.max_iter, self.tol)
        _log.debug("KMeans: %d rounds on %d rows, k=%d", rounds, x.shape[0], self.k)
        model = KMeansModel()
        self.copy_params_to(model)
        return model.set_model_data(model_data)


    def initial_centroids(self, table: Any) -> pa.Table:
        """The centroids table ``fit`` starts from (``init_mode``, ``seed``) for the input ``table``."""
        x = self._features(table if isinstance(table, pa.Table) else fl_table(table))
        return _centroids_table(self._initial_centroids(x), np.zeros(self.k))

    def _round_partial(self, variables: pa.Table, batch: pa.Table) -> pa.Table:
        centers = to_numpy(variables.column("centroids"))
        x = vector_column(batch, self.features_col, type(self).__name__, param="features_col", size=centers.shape[1])
        if sps.issparse(x):
            x = sps.csr_matrix(x, dtype=np.float64)
        return _round_sums(x, _row_sq_norms(x), centers, self.distance_measure)

    def _round_merge(self, states: list[pa.Table]) -> pa.Table:
        return _merge_round_sums(states)

    def round_update(self, variables: pa.Table, state: pa.Table) -> tuple[pa.Table, float]:
        """The driver's update of a round: the centroids moved to the means of their rows (``weights``:
        the round's counts) and the largest distance a centroid moved."""
        return _move_centroids(variables, state)

    # --- rounds driven for an engine (fit_rounds) ----------------------------------------------

    @property
    def drives_rounds(self) -> bool:   # both initialisations and Lloyd's rounds, see fit_rounds
        return True

    def fit_rounds(self, map_batches: Callable[..., list[pa.Table]]) -> "KMeansModel":
        """Fit with every pass over the data one ``map_batches`` (an engine's job over the batches in
        parallel), the driver here: the model ``fit`` gives on the batches' rows in their source
        order (to floating-point rounding of the merged sums).

        Batches are ordered by their key (schema metadata ``flowlearn.batch``, ``"<split>.<batch>"``,
        set by the Flink engine's sources; ``flowlearn.optim.batch_offsets``); one batch needs none.
        Passes: one for the shape; the
        initial centroids: ``"random"`` one (the rows at the indexes ``fit`` draws), ``"k-means++"``
        two plus two per further centroid (per step: the running sums of the squared distances up
        to the drawn thresholds, with the rows they fall on; each candidate's potential); then one
        per Lloyd round (``round_partial`` at the current centroids, merged in key order,
        ``round_update`` here), stopping as ``fit`` does (``max_iter``, ``tol``)."""
        stage = type(self).__name__
        shapes = map_batches(self._batch_shape, "shape")
        if not shapes:
            raise ValueError(f"{stage}: fit needs at least one row; the input table is empty")
        offsets, n = batch_offsets(shapes, stage)
        sizes = {t.column("size")[0].as_py() for t in shapes}
        if len(sizes) != 1:
            raise ValueError(f"{stage}: column '{self.features_col}' (parameter 'features_col') holds vectors of "
                             f"sizes {sorted(sizes)}; all vectors in a column must have the same size")
        d = sizes.pop()
        if n < self.k:
            raise ValueError(f"{stage}: k={self.k} clusters need at least {self.k} rows, the input has {n}; "
                             f"lower k or add data")
        seed = self.seed if self.seed is not None else _default_seed(type(self))
        rng = np.random.default_rng(seed)
        rounds = _Rounds(self, map_batches, offsets, d)
        if self.init_mode == "random":
            centers = rounds.rows(np.sort(rng.choice(n, size=self.k, replace=False)))
        else:
            centers = rounds.kmeans_pp(n, rng)
        variables = _centroids_table(centers, np.zeros(self.k))
        for _ in range(self.max_iter):
            states = rounds.ordered(map_batches(partial(_keyed, self.round_partial, variables), "lloyd"))
            variables, shift = self.round_update(variables, self.round_merge(states))
            if not shift > self.tol:
                break
        model = KMeansModel()
        self.copy_params_to(model)
        return model.set_model_data(variables)

    def _batch_shape(self, batch: pa.Table) -> pa.Table:
        x = self._batch_features(batch)
        check_squares(x, self.features_col, type(self).__name__, "features_col", "squared distances")
        return with_key_of(pa.table({"rows": [x.shape[0]], "size": [x.shape[1]]}), batch)

    def _batch_features(self, batch: pa.Table, size: int | None = None) -> np.ndarray | sps.csr_matrix:
        x = vector_column(batch, self.features_col, type(self).__name__, param="features_col", size=size)
        return sps.csr_matrix(x, dtype=np.float64) if sps.issparse(x) else x

    def _features(self, t: pa.Table) -> np.ndarray | sps.csr_matrix:
        stage = type(self).__name__
        if t.num_rows == 0:
            raise ValueError(f"{stage}: fit needs at least one row; the input table is empty")
        x = vector_column(t, self.features_col, stage, param="features_col")
        check_squares(x, self.features_col, stage, "features_col", "squared distances")
        if sps.issparse(x):
            x = sps.csr_matrix(x, dtype=np.float64)
        if x.shape[0] < self.k:
            raise ValueError(f"{stage}: k={self.k} clusters need at least {self.k} rows, the input has {x.shape[0]}; "
                             f"lower k or add data")
        return x

    def _initial_centroids(self, x: np.ndarray | sps.csr_matrix, xx: np.ndarray | None = None) -> np.ndarray:
        """The k initial centroids (k x d) that ``fit`` starts Lloyd's iterations from, for this
        estimator's ``init_mode`` and ``seed`` (``x``: 2-D array or CSR matrix, at least k rows)."""
        if xx is None:
            xx = _row_sq_norms(x)
        seed = self.seed if self.seed is not None else _default_seed(type(self))
        rng = np.random.default_rng(seed)
        if self.init_mode == "random":
            return _rows(x, np.sort(rng.choice(x.shape[0], size=self.k, replace=False)))
        return _init_kmeans_pp(x, xx, self.k, self.distance_measure, rng)


def _keyed(fn: Callable[[pa.Table, pa.Table], pa.Table], variables: pa.Table, batch: pa.Table) -> pa.Table:
    return with_key_of(fn(variables, batch), batch)


def _closest_sq(x: np.ndarray | sps.csr_matrix, xx: np.ndarray, steps: list[tuple[np.ndarray, int]],
                measure: str) -> np.ndarray:
    """The squared distance of every row to its closest centroid chosen by k-means++ so far, as
    :func:`_init_kmeans_pp` computes it: ``steps`` are the candidate rows of each step (the first
    centroid alone first) and the candidate chosen."""
    closest = None
    for cand, b in steps:
        dist = _pairwise(x, xx, cand, _row_sq_norms(cand), measure)[:, b]
        if measure != "euclidean":
            dist = dist ** 2
        closest = dist if closest is None else np.minimum(closest, dist)
    return closest


class _Rounds:
    """The passes of :meth:`KMeans.fit_rounds` before Lloyd's rounds: functions of one batch run by
    ``map_batches``, their results put in the batches' source order (``offsets``: key -> index of
    the batch's first row)."""

    def __init__(self, est: KMeans, map_batches: Callable[..., list[pa.Table]],
                 offsets: dict[tuple[int, int] | None, int], d: int) -> None:
        self.est, self.map_batches, self.offsets, self.d = est, map_batches, offsets, d

    def ordered(self, parts: list[pa.Table]) -> list[pa.Table]:
        return sorted(parts, key=lambda t: self.offsets[batch_key(t)])

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at the (sorted, distinct) global ``index``es, as dense vectors."""
        got = pa.concat_tables(self.map_batches(partial(_pick_rows, self.est, self.offsets, self.d, index), "rows"))
        got = got.sort_by("index")
        if not np.array_equal(got.column("index").to_numpy(), index):
            raise RuntimeError(f"{type(self.est).__name__}: rows {index.tolist()} were asked for, the batches returned "
                               f"{got.column('index').to_pylist()}")
        return to_numpy(got.column("row")).reshape(len(index), self.d)

    def drawn_rows(self, found: list[pa.Table], cand: np.ndarray) -> np.ndarray:
        """The rows at the indexes ``cand`` drawn from the ordered batches' counts (``found``): each
        batch sent its row at its count, the drawn one when the running sums rise across the
        batches; otherwise (rounding at a batch's edge) they are fetched."""
        starts = np.array([self.offsets[batch_key(t)] for t in found])
        out = np.empty((len(cand), self.d))
        for j, g in enumerate(cand):
            b = int(np.searchsorted(starts, g, side="right")) - 1
            t = found[b]
            if min(t.column("count")[j].as_py(), t.column("rows")[0].as_py() - 1) != g - starts[b]:
                drawn = np.unique(cand)
                return self.rows(drawn)[np.searchsorted(drawn, cand)]
            out[j] = t.column("row")[j].values.to_numpy()
        return out

    def kmeans_pp(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """:func:`_init_kmeans_pp` over the batches: the same draws from ``rng``; each step's
        cumulative sum over the rows is the batches' running sums from the sum of the batches before."""
        est, k = self.est, self.est.k
        trials = 2 + int(math.log(k))
        centers = np.empty((k, self.d))
        centers[0] = self.rows(np.array([rng.integers(n)]))[0]
        steps = [(centers[:1].copy(), 0)]
        sums = self.ordered(self.map_batches(partial(_potentials, est, self.d, steps, centers[:0]), "potential"))
        batch_pots = np.array([t.column("potential")[0].as_py() for t in sums])
        pot = np.sum(batch_pots)
        for i in range(1, k):
            before = np.r_[0.0, np.cumsum(batch_pots)[:-1]]
            thresholds = rng.uniform(size=trials) * pot
            starts = {key: float(b) for key, b in zip(sorted(self.offsets, key=self.offsets.get), before)}
            found = self.ordered(self.map_batches(partial(_count_below, est, self.d, steps, starts, thresholds),
                                                  "draw"))
            cand = np.minimum(sum(t.column("count").to_numpy() for t in found), n - 1)
            cand_rows = self.drawn_rows(found, cand)
            parts = self.ordered(self.map_batches(partial(_potentials, est, self.d, steps, cand_rows), "potential"))
            per_batch = np.array([t.column("potential").to_numpy() for t in parts])   # batches x candidates
            pots = per_batch.sum(axis=0)
            b = int(np.argmin(pots))
            pot, centers[i], batch_pots = pots[b], cand_rows[b], per_batch[:, b]
            steps.append((cand_rows, b))
        return centers


def _pick_rows(est: KMeans, offsets: dict, d: int, index: np.ndarray, batch: pa.Table) -> pa.Table:
    x = est._batch_features(batch, d)
    lo = offsets[batch_key(batch)]
    mine = index[(index >= lo) & (index < lo + x.shape[0])]
    picked = _rows(x, mine - lo) if len(mine) else np.empty((0, d))
    return pa.table({"index": pa.array(mine, pa.int64()), "row": from_numpy(picked.reshape(len(mine), d))})


def _potentials(est: KMeans, d: int, steps: list, cand: np.ndarray, batch: pa.Table) -> pa.Table:
    """The batch's sum of the squared distances to the closest centroid so far (no ``cand``), or
    per candidate row of ``cand`` with that candidate added."""
    x = est._batch_features(batch, d)
    xx = _row_sq_norms(x)
    closest = _closest_sq(x, xx, steps, est.distance_measure)
    if len(cand) == 0:
        return with_key_of(pa.table({"potential": [float(closest.sum())]}), batch)
    dist = _pairwise(x, xx, cand, _row_sq_norms(cand), est.distance_measure)
    if est.distance_measure != "euclidean":
        dist = dist ** 2
    return with_key_of(pa.table({"potential": np.minimum(closest[:, None], dist).sum(axis=0)}), batch)


def _count_below(est: KMeans, d: int, steps: list, starts: dict, thresholds: np.ndarray, batch: pa.Table,
                 ) -> pa.Table:
    """Per threshold, the batch's rows whose cumulative squared distance (from the sum over the
    batches before, ``starts``) is at most the threshold: summed over the batches, the index
    ``searchsorted(cumsum, threshold, side="right")`` of :func:`_init_kmeans_pp`."""
    x = est._batch_features(batch, d)
    closest = _closest_sq(x, _row_sq_norms(x), steps, est.distance_measure)
    cum = np.cumsum(np.r_[starts[batch_key(batch)], closest])[1:]
    count = np.searchsorted(cum, thresholds, side="right").astype(np.int64)
    rows = _rows(x, np.minimum(count, x.shape[0] - 1))   # the drawn row if it is in this batch
    return with_key_of(pa.table({"count": count, "row": from_numpy(rows), "rows": np.full(len(count), x.shape[0])}),
                     batch)


class KMeansModel(_KMeansModelParams, Model):
    """A fitted :class:`KMeans`: appends ``prediction_col`` (int32), the index of the closest
    centroid under ``distance_measure`` (the first one on ties).

    Model data: one Arrow table with one row per centroid (at most ``k`` rows):

    =========  ==============================  ===============================================
    column     type                            meaning
    =========  ==============================  ===============================================
    centroids  dense vector (``d`` doubles)    the centroid
    weights    double                          number of training points assigned to it in the
                                               last round (Flink ML's ``weights``)
    =========  ==============================  ===============================================

    Example:
        >>> import flowlearn as fl
        >>> m = fl.clustering.KMeansModel(k=2).set_model_data(
        ...     {"centroids": [[0.0, 0.0], [10.0, 10.0]], "weights": [1.0, 1.0]})
        >>> m.transform({"features": [[1.0, 2.0], [9.0, 9.0]]}).column("prediction").to_pylist()
        [0, 1]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1:
            raise ValueError(f"{stage}: model data is one table, got {len(tables)}")
        (t,) = tables
        c = vector_column(t, "centroids", f"{stage} model data", dense=True)
        w = numeric_column(t, "weights", f"{stage} model data")
        if len(c) == 0:
            raise ValueError(f"{stage}: model data has no centroids")
        self._centroids = np.ascontiguousarray(c, dtype=np.float64)
        self._weights = w

    def _check_k(self) -> None:
        if len(self._centroids) > self.k:
            raise ValueError(f"{type(self).__name__}: model data has {len(self._centroids)} centroids but "
                             f"k={self.k}; set k to at least the number of centroids")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        self._check_k()
        stage = type(self).__name__
        d = self._centroids.shape[1]
        x = vector_column(t, self.features_col, stage, param="features_col", size=d)
        if t.num_rows == 0:
            return with_column(t, self.prediction_col, pa.array([], pa.int32()))
        if sps.issparse(x):
            x = sps.csr_matrix(x, dtype=np.float64)
        if _fused(x, self.distance_measure, self._centroids):   # as the fit's rounds assign them
            return with_column(t, self.prediction_col, pa.array(_fused_labels(x, self._centroids)))
        assign, _ = _closest(x, _row_sq_norms(x), self._centroids, self.distance_measure)
        return with_column(t, self.prediction_col, pa.array(assign.astype(np.int32)))

    def row_fn(self) -> RowFn:
        self._require_model()
        self._check_k()
        fc, pc, stage, measure = self.features_col, self.prediction_col, type(self).__name__, self.distance_measure
        c = self._centroids
        cc = _row_sq_norms(c)
        ct = np.ascontiguousarray(c.T)
        d = c.shape[1]
        fused = _fused(c[:1], measure, c)

        def fn(row: dict) -> None:
            x = dense_row_vector(row, fc, stage, d)
            x2 = x[None, :]
            if fused:   # the batch transform's rule
                label = np.empty(1, dtype=np.int32)
                _assign_rows(np.ascontiguousarray(x2, dtype=np.float64), c, 0, 1, label, _NO_COUNTS,
                             _NO_COUNTS.reshape(0, 0))
                row[pc] = int(label[0])
            else:
                row[pc] = int(np.argmin(_pairwise(x2, _row_sq_norms(x2), c, cc, measure, ct)[0]))

        return fn
