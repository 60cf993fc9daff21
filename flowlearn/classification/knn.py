"""K-nearest-neighbours classification as in Flink ML 2.x: ``Knn`` / ``KnnModel``.

Fitting keeps the training rows (features, their squared norms, labels) as model data; predicting
finds, for every row, the ``k`` training rows nearest in euclidean distance and takes a majority
vote of their labels. Distances are Flink ML's ``|x|^2 + |t|^2 - 2 x.t``: for dense rows one
Numba pass per chunk of queries computes the dot products block by block and keeps the k nearest
as it goes (chunks on all cores); for sparse rows a sparse product per block of queries feeds
the same selection.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.classification.knn import Knn
    >>> train = fl.table({"features": [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [9.0, 9.0], [9.0, 8.0], [8.0, 9.0]],
    ...                   "label": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]})
    >>> model = Knn(k=3).fit(train)
    >>> model.transform({"features": [[0.5, 0.5], [8.5, 8.5]]}).column("prediction").to_pylist()
    [0.0, 1.0]
"""
from __future__ import annotations


import numba
import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn._parallel import chunk_bounds, parallel_map
from flowlearn.api import Model, OnePassEstimator, RowFn
from flowlearn.data.columns import check_squares, dense_row_vector, numeric_column, vector_column, with_column
from flowlearn.linalg import from_csr, from_numpy, is_sparse, to_csr
from flowlearn.params import HasFeaturesCol, HasLabelCol, HasPredictionCol, Param, gt

__all__ = ["Knn", "KnnModel"]

# Bound on the elements of one block's temporaries (query rows x training rows, or x labels).
_BLOCK_ELEMENTS = 1 << 22


class _KnnModelParams(HasFeaturesCol, HasPredictionCol):
    k = Param(int, default=5, validator=gt(0), doc="The number of nearest neighbors.")


class _KnnParams(_KnnModelParams, HasLabelCol):
    pass


def _sq_norms(x: np.ndarray | sps.csr_matrix) -> np.ndarray:
    if sps.issparse(x):
        return np.asarray(x.multiply(x).sum(axis=1), dtype=np.float64).reshape(-1)
    return np.einsum("ij,ij->i", x, x)


def _model_table(x: np.ndarray | sps.csr_matrix, labels: np.ndarray) -> pa.Table:
    return pa.table({"features": from_csr(x) if sps.issparse(x) else from_numpy(x),
                     "feature_norm_squares": pa.array(_sq_norms(x), pa.float64()),
                     "labels": pa.array(labels, pa.float64())})


# --- Flink ML's vote, written out ---------------------------------------------------------------
#
# KnnModel.PredictLabelFunction keeps the k nearest rows in a max-heap (a row replaces the farthest
# only when strictly closer, so among equal distances the earlier training rows stay), then polls
# the heap (farthest first) into a java.util.HashMap<Double, Double> (label -> count, initial
# capacity: the heap's size) with HashMap.merge, and returns the first label with the largest count
# in the map's iteration order. That order is by bucket (the label's spread hash masked by the table
# capacity), and inside a bucket the reverse of insertion order: merge() puts a new key at the head
# of its bin. A label is inserted when its farthest neighbour is polled, so inside a bucket the label
# whose farthest neighbour is nearest comes first. merge() doubles the capacity before inserting
# into a map whose size is above 3/4 of it. Bins of 8 or more labels (treeified) are not modelled.

def _java_spread_hash(labels: np.ndarray) -> np.ndarray:
    """``HashMap.hash(Double.valueOf(label))`` of each label, as int64 in [0, 2**32)."""
    bits = np.asarray(labels, dtype=np.float64).view(np.uint64)
    h = (bits ^ (bits >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return (h ^ (h >> np.uint64(16))).astype(np.int64)


def _table_size_for(c: int) -> int:
    return 1 if c <= 1 else 1 << (int(c) - 1).bit_length()


def _vote(nbr: np.ndarray, dist: np.ndarray, codes: np.ndarray, spread: np.ndarray, k: int) -> np.ndarray:
    """The label code Flink ML's vote picks for each row: ``nbr`` (rows x k) are the neighbours'
    training indices (ascending), ``dist`` their squared distances, ``codes`` the label code of every
    training row and ``spread`` the Java hash of every label code."""
    b = nbr.shape[0]
    num_labels = len(spread)
    lab = codes[nbr]                                                          # rows x k
    rows = np.repeat(np.arange(b), k)
    counts = np.bincount(rows * num_labels + lab.reshape(-1), minlength=b * num_labels).reshape(b, num_labels)
    # poll order: farthest first; equal distances in an order the heap leaves open (later rows first here)
    order = np.lexsort((-nbr, -dist), axis=1)
    poll_rank = np.empty_like(order)
    np.put_along_axis(poll_rank, order, np.arange(k)[None, :], axis=1)
    first = np.full((b, num_labels), k, dtype=np.int64)
    np.minimum.at(first, (rows, lab.reshape(-1)), poll_rank.reshape(-1))
    before_last = (counts > 0).sum(axis=1) - 1       # the map's size when its last label is inserted
    cap = np.full(b, _table_size_for(k), dtype=np.int64)
    while True:
        grow = before_last > (cap * 3) // 4
        if not grow.any():
            break
        cap[grow] *= 2
    bucket = spread[None, :] & (cap[:, None] - 1)
    order_key = bucket * (k + 1) + (k - first)                               # smaller iterates earlier
    span = int(cap.max()) * (k + 1) + k + 1
    return np.argmax(counts * span - order_key, axis=1)


@numba.njit(cache=True, nogil=True, inline="always")
def _offer(idx: np.ndarray, dist: np.ndarray, r: int, c: int, k: int, d: float, j: int) -> int:
    """Offers training row ``j`` at squared distance ``d`` to query row ``r``'s ``k`` nearest
    (``idx``, ``dist``: sorted by distance, the first ``c`` filled); returns the new fill. A row
    enters only when strictly closer than the k-th, so among equal distances the earlier training
    rows are kept (as Flink ML's heap keeps them). ``d`` may be slightly negative (rounding of
    ``|x|^2 + |t|^2 - 2 x.t``): its absolute value is taken."""
    d = abs(d)
    if c < k:
        p = c
        c += 1
    elif d < dist[r, k - 1]:
        p = k - 1
    else:
        return c
    while p > 0 and dist[r, p - 1] > d:
        dist[r, p] = dist[r, p - 1]
        idx[r, p] = idx[r, p - 1]
        p -= 1
    dist[r, p] = d
    idx[r, p] = j
    return c


@numba.njit(cache=True, nogil=True)
def _nearest(dot: np.ndarray, xx: np.ndarray, tt: np.ndarray, j0: int, k: int, idx: np.ndarray, dist: np.ndarray,
             cnt: np.ndarray) -> None:
    """Updates the ``k`` nearest training rows of each query row (``idx``, ``dist``: rows x k,
    sorted by distance, the first ``cnt[r]`` filled) with the training rows ``j0 .. j0 + m``, from
    their dot products ``dot`` (rows x m) and the squared norms ``xx`` (queries) / ``tt`` (all
    training rows): squared distances ``|x|^2 + |t|^2 - 2 x.t`` (Flink ML's formula). Training rows
    must come in ascending order over the calls. One pass per query row with a sorted buffer of k
    entries."""
    b, m = dot.shape
    for r in range(b):
        c = cnt[r]
        xr = xx[r]
        worst = dist[r, k - 1] if c == k else np.inf   # the k-th distance, held in a register
        for jj in range(m):
            d = xr + tt[j0 + jj] - 2.0 * dot[r, jj]
            if d >= worst:   # most rows: |d| >= d >= the k-th distance, rejected without more work
                continue
            c = _offer(idx, dist, r, c, k, d, j0 + jj)
            if c == k:
                worst = dist[r, k - 1]
        cnt[r] = c


# Query rows whose distances to one training row are computed side by side (SIMD lanes); passed
# to the kernel at run time: a constant block gets its loops unrolled instead of vectorized.
_QUERY_BLOCK = 64
# Query rows per chunk of work shared among the threads.
_CHUNK_QUERIES = 256


@numba.njit(cache=True, nogil=True)
def _nearest_dense(q: np.ndarray, qq: np.ndarray, t: np.ndarray, tt: np.ndarray, k: int, lo: int, hi: int,
                   idx: np.ndarray, dist: np.ndarray, nb: int) -> None:
    """The ``k`` nearest training rows (rows of ``t``, squared norms ``tt``) of the query rows
    ``lo .. hi`` of ``q`` (squared norms ``qq``), into the same rows of ``idx`` / ``dist`` (sorted
    by distance), dense rows only. The same squared distances as :func:`_nearest`, with the dot
    products computed here for blocks of ``nb`` query rows against one training row at a time
    (no query x training matrix in memory); a training row farther than the k-th of every query
    of the block is rejected after one vectorized comparison."""
    n, d = t.shape
    qt = np.zeros((d, nb))
    qn = np.zeros(nb)
    acc = np.empty(nb)
    worst = np.empty(nb)
    cnt = np.zeros(nb, dtype=np.int64)
    for s in range(lo, hi, nb):
        m = min(nb, hi - s)
        for r in range(nb):
            if r < m:
                for u in range(d):
                    qt[u, r] = q[s + r, u]
                qn[r] = qq[s + r]
                worst[r] = np.inf
            else:   # padding lanes: never closer than their k-th
                for u in range(d):
                    qt[u, r] = 0.0
                qn[r] = 0.0
                worst[r] = -np.inf
            cnt[r] = 0
        for j in range(n):
            for r in range(nb):
                acc[r] = 0.0
            for u in range(d):
                v = t[j, u]
                qu = qt[u]
                for r in range(nb):
                    acc[r] += qu[r] * v
            tj = tt[j]
            hits = 0
            for r in range(nb):
                acc[r] = qn[r] + tj - 2.0 * acc[r]
                hits += acc[r] < worst[r]
            if hits == 0:
                continue
            for r in range(m):
                if acc[r] >= worst[r]:   # |d| >= d >= the k-th distance
                    continue
                c = _offer(idx, dist, s + r, cnt[r], k, acc[r], j)
                cnt[r] = c
                if c == k:
                    worst[r] = dist[s + r, k - 1]


class Knn(_KnnParams, OnePassEstimator):
    """K-nearest-neighbours classifier (Flink ML ``Knn``).

    The model keeps every training row. ``KnnModel`` predicts, for each row, the majority label of
    its ``k`` nearest training rows under euclidean distance (all of them when the model holds fewer
    than ``k`` rows). Ties follow Flink ML's ``KnnModel`` exactly where it is deterministic:

    * among training rows at the same distance on the ``k``-th place, the earlier rows are taken;
    * among labels with the same count, the first in the iteration order of Flink ML's Java
      ``HashMap`` wins: by the label's hash bucket, then the label whose farthest neighbour is the
      nearest. Small integral labels often share a bucket (0, 1, 2, 3 at ``k`` <= 7, for example):
      then the label whose neighbours are all nearer wins, where scikit-learn picks the smallest label.

    Features may be dense or sparse (kept sparse in the model data); labels are numbers
    (predicted as double, as Flink ML). A one-pass estimator: the fit state is the rows themselves.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.classification.knn import Knn
        >>> train = fl.table({"features": [[0.0], [1.0], [10.0], [11.0]], "label": [1, 1, 2, 2]})
        >>> Knn(k=1).fit(train).transform({"features": [[2.0]]}).column("prediction").to_pylist()
        [1.0]
    """

    def _partial(self, t: pa.Table) -> pa.Table:
        stage = type(self).__name__
        x = vector_column(t, self.features_col, stage, param="features_col")
        check_squares(x, self.features_col, stage, "features_col", "squared distances")
        y = numeric_column(t, self.label_col, stage, param="label_col") + 0.0   # -0.0 -> 0.0: one label
        if sps.issparse(x):
            x = sps.csr_matrix(x, dtype=np.float64)
        return _model_table(x, y)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        stage = type(self).__name__
        sizes = {_vector_size(s) for s in states if s.num_rows}
        if len(sizes) > 1:
            raise ValueError(f"{stage}: the parts hold feature vectors of sizes {sorted(sizes)}; all rows must "
                             f"have the same size")
        kept = [s for s in states if s.num_rows] or states[:1]
        if any(is_sparse(s.column("features").type) for s in kept) and len(kept) > 1:
            kept = [s if is_sparse(s.column("features").type) else
                    s.set_column(0, "features", from_csr(to_csr(s.column("features")))) for s in kept]
        return pa.concat_tables(kept)

    def _finish(self, state: pa.Table) -> "KnnModel":
        model = KnnModel()
        self.copy_params_to(model)
        return model.set_model_data(state)


def _vector_size(t: pa.Table) -> int:
    col = t.column("features")
    return col.type.list_size if pa.types.is_fixed_size_list(col.type) else to_csr(col).shape[1]


class KnnModel(_KnnModelParams, Model):
    """A fitted :class:`Knn`: appends ``prediction_col`` (double), the majority label of the ``k``
    nearest training rows (ties as documented on :class:`Knn`).

    Model data: one table with one row per training row:

    ====================  ==========================  =================================
    column                type                        meaning
    ====================  ==========================  =================================
    features              dense or sparse vector      the training row's features
    feature_norm_squares  double                      its squared euclidean norm
    labels                double                      its label
    ====================  ==========================  =================================

    Example:
        >>> from flowlearn.classification.knn import KnnModel
        >>> m = KnnModel(k=1).set_model_data(
        ...     {"features": [[0.0, 0.0], [5.0, 5.0]], "feature_norm_squares": [0.0, 50.0], "labels": [3.0, 7.0]})
        >>> m.transform({"features": [[4.0, 4.0]]}).column("prediction").to_pylist()
        [7.0]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = f"{type(self).__name__} model data"
        if len(tables) != 1:
            raise ValueError(f"{type(self).__name__}: model data is one table, got {len(tables)}")
        (t,) = tables
        x = vector_column(t, "features", stage)
        labels = numeric_column(t, "labels", stage) + 0.0
        norms = numeric_column(t, "feature_norm_squares", stage)
        if x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: model data has no training rows")
        self._x = sps.csr_matrix(x, dtype=np.float64) if sps.issparse(x) else np.ascontiguousarray(x, np.float64)
        self._xt = self._x.T.tocsr() if sps.issparse(self._x) else np.ascontiguousarray(self._x.T)
        self._norms = np.ascontiguousarray(norms, dtype=np.float64)
        self._labels, self._codes = np.unique(labels, return_inverse=True)
        self._codes = self._codes.reshape(-1)
        self._spread = _java_spread_hash(self._labels)

    def predict(self, x: np.ndarray | sps.csr_matrix) -> np.ndarray:
        """Predicted labels of the rows of ``x`` (2-D array or CSR matrix of the model's width)."""
        n = self._x.shape[0]
        k = min(self.k, n)
        m = x.shape[0]
        xx = _sq_norms(x)
        nbr, dist = np.empty((m, k), dtype=np.int64), np.empty((m, k))
        if not sps.issparse(x) and not sps.issparse(self._x):
            # chunks of queries on all cores, each scanning the training rows with its own dot products
            q = np.ascontiguousarray(x, dtype=np.float64)
            parallel_map(lambda b: _nearest_dense(q, xx, self._x, self._norms, k, b[0], b[1], nbr, dist,
                                                 _QUERY_BLOCK),
                         chunk_bounds(m, _CHUNK_QUERIES))
        else:
            # sparse: one sparse product per block of queries against every training row
            block = max(1, _BLOCK_ELEMENTS // max(n, k * 4))
            for s in range(0, m, block):
                xs = x[s:s + block]
                b = xs.shape[0]
                dot = xs @ self._xt
                dot = np.ascontiguousarray(dot.toarray() if sps.issparse(dot) else dot, dtype=np.float64)
                _nearest(dot, np.ascontiguousarray(xx[s:s + block]), self._norms, 0, k, nbr[s:s + b],
                         dist[s:s + b], np.zeros(b, dtype=np.int64))
        out = np.empty(m)
        block = max(1, _BLOCK_ELEMENTS // max(len(self._labels), k * 4))
        for s in range(0, m, block):
            code = _vote(nbr[s:s + block], dist[s:s + block], self._codes, self._spread, k)
            out[s:s + len(code)] = self._labels[code]
        return out

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        stage = type(self).__name__
        x = vector_column(t, self.features_col, stage, param="features_col", size=self._x.shape[1])
        if t.num_rows == 0:
            return with_column(t, self.prediction_col, pa.array([], pa.float64()))
        check_squares(x, self.features_col, stage, "features_col", "squared distances")
        if sps.issparse(x):
            x = sps.csr_matrix(x, dtype=np.float64)
        return with_column(t, self.prediction_col, pa.array(self.predict(x), pa.float64()))

    def row_fn(self) -> RowFn:
        self._require_model()
        fc, pc, stage = self.features_col, self.prediction_col, type(self).__name__
        d = self._x.shape[1]

        def fn(row: dict) -> None:
            x = dense_row_vector(row, fc, stage, d)
            row[pc] = float(self.predict(x[None, :])[0])

        return fn

