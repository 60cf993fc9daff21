"""``MinHashLSH``: locality sensitive hashing for Jaccard distance, with Flink ML 2.x's (and Spark
MLlib's) semantics, plus approximate nearest neighbours and approximate similarity join.

A vector is read as the set of its non-zero indices. Hash function ``h`` maps a set ``S`` to
``min over i in S of ((1 + i) * a_h + b_h) mod 2038074743`` with random ``a_h`` in
``[1, p - 1]`` and ``b_h`` in ``[0, p - 2]``; two sets collide under one function with probability
about their Jaccard similarity. ``num_hash_tables`` tables of ``num_hash_functions_per_table``
functions each (OR of tables, AND within a table) trade recall against precision. The
coefficients are drawn as Flink ML draws them (``java.util.Random(seed)``), so a model fitted with
a given ``seed`` hashes exactly as Flink ML's does.

Example:
    >>> from flowlearn.feature.lsh import MinHashLSH
    >>> from flowlearn.linalg import SparseVector
    >>> data = {"id": [0, 1], "vec": [SparseVector(6, [0, 1, 2], [1.0] * 3), SparseVector(6, [2, 3, 4], [1.0] * 3)]}
    >>> model = MinHashLSH(input_col="vec", output_col="hashes", num_hash_tables=2, seed=2022).fit(data)
    >>> model.transform(data).column("hashes").to_pylist()
    [[[173046954.0], [157275425.0]], [[173046954.0], [157275425.0]]]
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import Model, OnePassEstimator
from flowlearn.data.columns import require_column, vector_column, with_column
from flowlearn.data.table import table as to_table
from flowlearn.linalg import SparseVector, dense_vector_type, is_vector_type, row_to_numpy
from flowlearn.feature._columns import put_field, schema_field
from flowlearn.params import HasInputCol, HasOutputCol, HasSeed, Param, in_range

__all__ = ["MinHashLSH", "MinHashLSHModel"]

HASH_PRIME = 2038074743  # a prime below sqrt(2**63 - 1), as in Flink ML and Spark
_MASK48 = (1 << 48) - 1


class _JavaRandom:
    """``java.util.Random``'s linear congruential generator (its documented algorithm), enough
    for ``nextInt(bound)``: Flink ML draws the MinHash coefficients with it."""

    def __init__(self, seed: int) -> None:
        self._s = (seed ^ 0x5DEECE66D) & _MASK48

    def _next(self, bits: int) -> int:
        self._s = (self._s * 0x5DEECE66D + 0xB) & _MASK48
        return self._s >> (48 - bits)

    def next_int(self, bound: int) -> int:
        r = self._next(31)
        m = bound - 1
        if bound & m == 0:
            return (bound * r) >> 31
        u = r
        while True:
            r = u % bound
            if u - r + m < (1 << 31):  # Java's int overflow test, u - r + m < 0
                return r
            u = self._next(31)


def _coefficients(num_functions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rnd = _JavaRandom(seed)
    a, b = np.empty(num_functions, np.int64), np.empty(num_functions, np.int64)
    for i in range(num_functions):  # a few draws per hash function, once per fit
        a[i] = 1 + rnd.next_int(HASH_PRIME - 1)
        b[i] = rnd.next_int(HASH_PRIME - 1)
    return a, b


def _sets(x: np.ndarray | sps.csr_matrix) -> sps.csr_matrix:
    """The rows as sets: a CSR matrix with a 1 at each non-zero entry."""
    m = sps.csr_matrix(x, copy=True)
    m.eliminate_zeros()
    m.data = np.ones_like(m.data)
    return m


def _hash_sets(s: sps.csr_matrix, a: np.ndarray, b: np.ndarray, stage: str, col: str) -> np.ndarray:
    """``(rows, len(a))`` min-hash values of the sets ``s`` (every row non-empty)."""
    sizes = np.diff(s.indptr)
    if (sizes == 0).any():
        r = int(np.flatnonzero(sizes == 0)[0])
        raise ValueError(f"{stage}: column '{col}' row {r} has no non-zero entry; MinHash needs a non-empty set "
                         f"(at least one non-zero entry) per vector")
    n, h = s.shape[0], len(a)
    out = np.empty((n, h), np.int64)
    idx = s.indices.astype(np.int64) + 1
    # rows in blocks so the (entries x functions) temporary stays near 32 MB
    step = max(1, (1 << 22) // max(h, 1))
    start = 0
    while start < n:
        stop = min(n, max(start + 1, int(np.searchsorted(s.indptr, s.indptr[start] + step, side="right")) - 1))
        lo, hi = s.indptr[start], s.indptr[stop]
        vals = (idx[lo:hi, None] * a[None, :] + b[None, :]) % HASH_PRIME
        out[start:stop] = np.minimum.reduceat(vals, s.indptr[start:stop] - lo, axis=0)
        start = stop
    return out


def _jaccard_pairs(sa: sps.csr_matrix, ia: np.ndarray, sb: sps.csr_matrix, ib: np.ndarray) -> np.ndarray:
    """Jaccard distances between the sets ``sa[ia[k]]`` and ``sb[ib[k]]`` for each ``k``."""
    if len(ia) == 0:
        return np.zeros(0)
    d = max(sa.shape[1], sb.shape[1])
    sa = sps.csr_matrix((sa.data, sa.indices, sa.indptr), shape=(sa.shape[0], d))
    sb = sps.csr_matrix((sb.data, sb.indices, sb.indptr), shape=(sb.shape[0], d))
    inter = np.asarray(sa[ia].multiply(sb[ib]).sum(axis=1)).ravel()
    union = np.diff(sa.indptr)[ia] + np.diff(sb.indptr)[ib] - inter
    return 1.0 - inter / union


# At most this many hash functions (num_hash_tables * num_hash_functions_per_table): each output row
# holds one double per function, and the fit draws them one by one.
MAX_HASH_FUNCTIONS = 1 << 16


class _MinHashParams(HasInputCol, HasOutputCol):
    num_hash_tables = Param(int, default=1, validator=in_range(1, MAX_HASH_FUNCTIONS),
                            doc="Number of hash tables (OR-amplification).")
    num_hash_functions_per_table = Param(int, default=1, validator=in_range(1, MAX_HASH_FUNCTIONS),
                                         doc="Number of hash functions per table (AND-amplification).")


class MinHashLSH(_MinHashParams, HasSeed, OnePassEstimator):
    """Fits a :class:`MinHashLSHModel`: draws ``num_hash_tables * num_hash_functions_per_table``
    MinHash functions for vectors of the input's size, as Flink ML's ``MinHashLSH``. The fit
    reads only the vector size (the state of a part is its vector size).

    ``seed=None`` uses a seed derived from the class name. The input vectors (dense or sparse)
    must have size at most 2038074743.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``num_hash_tables`` (1),
    ``num_hash_functions_per_table`` (1), ``seed`` (None).

    Example:
        >>> from flowlearn.feature.lsh import MinHashLSH
        >>> model = MinHashLSH(num_hash_tables=3, seed=1).fit({"input": [[1.0, 0.0, 1.0]]})
        >>> model.transform({"input": [[0.0, 1.0, 1.0]]}).column("output").type
        FixedSizeListType(fixed_size_list<item: fixed_size_list<item: double>[1]>[3])
    """

    def _partial(self, t: pa.Table) -> pa.Table:
        stage = type(self).__name__
        col = require_column(t, self.input_col, stage, "input_col")
        if not is_vector_type(col.type):
            raise TypeError(f"{stage}: column '{self.input_col}' has type {col.type}, expected a vector column")
        if t.num_rows == 0:
            return pa.table({"num_features": pa.array([], pa.int64())})
        x = vector_column(t, self.input_col, stage, param="input_col")
        return pa.table({"num_features": pa.array([x.shape[1]], pa.int64())})

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        sizes = sorted({v for s in states for v in s.column("num_features").to_pylist()})
        if len(sizes) > 1:
            raise ValueError(f"{type(self).__name__}: the parts of the input hold vectors of sizes {sizes}; every "
                             f"row of one input needs vectors of one size")
        return pa.table({"num_features": pa.array(sizes, pa.int64())})

    def _finish(self, state: pa.Table) -> "MinHashLSHModel":
        (d,) = self._merge([state]).column("num_features").to_pylist()
        if d > HASH_PRIME:
            raise ValueError(f"{type(self).__name__}: the input vector size {d} exceeds {HASH_PRIME}, the largest "
                             f"MinHash can index")
        seed = self.seed if self.seed is not None else zlib.crc32(b"flowlearn.feature.MinHashLSH")
        t, f = self.num_hash_tables, self.num_hash_functions_per_table
        if t * f > MAX_HASH_FUNCTIONS:
            raise ValueError(f"{type(self).__name__}: parameters 'num_hash_tables' = {t} and "
                             f"'num_hash_functions_per_table' = {f} ask for {t * f} hash functions; at most "
                             f"{MAX_HASH_FUNCTIONS} (each output row holds one value per function)")
        a, b = _coefficients(t * f, seed)
        model = MinHashLSHModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({
            "num_hash_tables": pa.array([t], pa.int32()),
            "num_hash_functions_per_table": pa.array([f], pa.int32()),
            "rand_coefficient_a": pa.array([a.tolist()], pa.list_(pa.int32())),
            "rand_coefficient_b": pa.array([b.tolist()], pa.list_(pa.int32())),
        }))


class MinHashLSHModel(_MinHashParams, Model):
    """The model fitted by :class:`MinHashLSH`. ``transform`` appends ``output_col``: per row
    ``num_hash_tables`` dense vectors of ``num_hash_functions_per_table`` hash values
    (``fixed_size_list<fixed_size_list<double>[F]>[T]``). Each vector must have a non-zero
    entry. Entries stored with value 0 in a sparse vector are not members of its set.

    :meth:`approx_nearest_neighbors` and :meth:`approx_similarity_join` search by shared buckets
    (a row and the key collide when all functions of one table agree) and then compute the exact
    Jaccard distance of the candidates, so every distance returned is exact; rows sharing no
    bucket are missed (the approximation).

    Model data: one table of one row: ``num_hash_tables``, ``num_hash_functions_per_table``
    (int32), ``rand_coefficient_a`` and ``rand_coefficient_b`` (list<int32>, table-major).

    Example:
        >>> from flowlearn.feature.lsh import MinHashLSHModel
        >>> m = MinHashLSHModel().set_model_data({"num_hash_tables": [3], "num_hash_functions_per_table": [1],
        ...                                       "rand_coefficient_a": [[0, 1, 3]], "rand_coefficient_b": [[1, 2, 0]]})
        >>> m.transform({"input": [[0, 0, 1, 1, 0, 1, 0, 1, 0, 0]]}).column("output").to_pylist()
        [[[1.0], [5.0], [9.0]]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        names = ["num_hash_tables", "num_hash_functions_per_table", "rand_coefficient_a", "rand_coefficient_b"]
        if len(tables) != 1 or set(names) - set(tables[0].column_names) or tables[0].num_rows != 1:
            raise ValueError(f"{stage}: model data is one table of one row with columns {names}, got "
                             f"{[t.schema for t in tables]}")
        t = tables[0]
        nt, nf = t.column(names[0])[0].as_py(), t.column(names[1])[0].as_py()
        a = np.asarray(t.column(names[2])[0].as_py() or [], np.int64)
        b = np.asarray(t.column(names[3])[0].as_py() or [], np.int64)
        if not (nt and nf and nt > 0 and nf > 0 and len(a) == len(b) == nt * nf):
            raise ValueError(f"{stage}: model data needs num_hash_tables * num_hash_functions_per_table = "
                             f"{nt} * {nf} coefficients in each of rand_coefficient_a and rand_coefficient_b, got "
                             f"{len(a)} and {len(b)}")
        if (a < 0).any() or (b < 0).any() or (a >= HASH_PRIME).any() or (b >= HASH_PRIME).any():
            raise ValueError(f"{stage}: model data coefficients must lie in [0, {HASH_PRIME})")
        self._nt, self._nf, self._a, self._b = int(nt), int(nf), a, b

    def _out_type(self) -> pa.DataType:
        return pa.list_(dense_vector_type(self._nf), self._nt)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        stage, col = type(self).__name__, self.input_col
        src = schema_field(input_schema, col, stage, "input_col")
        if not is_vector_type(src.type):
            raise ValueError(f"{stage}: column '{col}' has type {src.type}, expected a vector column")
        field = pa.field(self.output_col, self._out_type())
        return put_field(input_schema, field)

    def _input_sets(self, t: pa.Table) -> sps.csr_matrix:
        stage = type(self).__name__
        x = vector_column(t, self.input_col, stage, param="input_col", dense=False)
        return _sets(x)

    def _hash_array(self, h: np.ndarray) -> pa.Array:
        inner = pa.FixedSizeListArray.from_arrays(pa.array(h.astype(np.float64).reshape(-1)), self._nf)
        return pa.FixedSizeListArray.from_arrays(inner, self._nt)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        if t.num_rows == 0:
            require_column(t, self.input_col, stage, "input_col")
            return with_column(t, self.output_col, pa.array([], self._out_type()))
        h = _hash_sets(self._input_sets(t), self._a, self._b, stage, self.input_col)
        return with_column(t, self.output_col, self._hash_array(h))

    def row_fn(self):
        self._require_model()
        stage, col, out, a, b, nt, nf = type(self).__name__, self.input_col, self.output_col, self._a, self._b, \
            self._nt, self._nf

        def fn(row: dict) -> None:
            try:
                v = row[col]
            except KeyError:
                raise ValueError(f"{stage}: input column '{col}' (parameter 'input_col') is missing from the row; "
                                 f"the row has keys {list(row)}") from None
            if v is None:
                raise ValueError(f"{stage}: column '{col}' is null in this row; drop or impute it first")
            idx = np.flatnonzero(row_to_numpy(v)) if not isinstance(v, SparseVector) else v.indices[v.values != 0]
            if len(idx) == 0:
                raise ValueError(f"{stage}: column '{col}' has no non-zero entry in this row; MinHash needs a "
                                 f"non-empty set (at least one non-zero entry) per vector")
            h = (((idx.astype(np.int64) + 1)[:, None] * a[None, :] + b[None, :]) % HASH_PRIME).min(axis=0)
            row[out] = h.astype(np.float64).reshape(nt, nf).tolist()

        return fn

    # -- search -------------------------------------------------------------------------------

    def _hashed(self, dataset: Any) -> tuple[pa.Table, np.ndarray]:
        """``dataset`` with its hashes (computed unless ``output_col`` is there) as ``(n, T, F)``."""
        t = dataset if isinstance(dataset, pa.Table) else to_table(dataset)
        self._require_model()
        if self.output_col not in t.column_names:
            t = self._transform(t)
        col = t.column(self.output_col).combine_chunks()
        flat = col.flatten().flatten().to_numpy(zero_copy_only=False) if len(col) else np.zeros(0)
        if flat.size != len(col) * self._nt * self._nf:
            raise ValueError(f"{type(self).__name__}: column '{self.output_col}' does not hold this model's "
                             f"{self._nt} x {self._nf} hash values per row; drop it to recompute the hashes")
        return t, flat.reshape(len(col), self._nt, self._nf)

    def approx_nearest_neighbors(self, dataset: Any, key: Any, k: int, dist_col: str = "distCol") -> pa.Table:
        """The at most ``k`` rows of ``dataset`` nearest to ``key`` (a vector) in Jaccard distance
        among the rows sharing a bucket with it, nearest first (ties in input order), with their
        distance in ``dist_col``. Rows sharing no bucket with the key are not considered, so fewer
        than ``k`` rows may come back."""
        stage = type(self).__name__
        if int(k) != k or k < 1:
            raise ValueError(f"{stage}.approx_nearest_neighbors: k = {k!r} must be a positive integer")
        t, h = self._hashed(dataset)
        if isinstance(key, SparseVector):
            key_idx = key.indices[key.values != 0]
        else:
            key_idx = np.flatnonzero(row_to_numpy(key))
        if len(key_idx) == 0:
            raise ValueError(f"{stage}.approx_nearest_neighbors: the key has no non-zero entry; MinHash needs a "
                             f"non-empty set")
        kh = ((key_idx.astype(np.int64)[:, None] + 1) * self._a[None, :] + self._b[None, :]) % HASH_PRIME
        kh = kh.min(axis=0).reshape(self._nt, self._nf).astype(np.float64)
        cand = np.flatnonzero((h == kh[None]).all(axis=2).any(axis=1))
        sets = self._input_sets(t)
        key_set = sps.csr_matrix((np.ones(len(key_idx)), key_idx, [0, len(key_idx)]),
                                 shape=(1, max(sets.shape[1], int(key_idx.max()) + 1)))
        dist = _jaccard_pairs(sets, cand, key_set, np.zeros(len(cand), np.int64))
        order = np.argsort(dist, kind="stable")[:int(k)]
        return with_column(t.take(pa.array(cand[order], pa.int64())), dist_col, pa.array(dist[order], pa.float64()))

    def approx_similarity_join(self, dataset_a: Any, dataset_b: Any, threshold: float, id_col: str = "id",
                               dist_col: str = "distCol") -> pa.Table:
        """The pairs of rows of ``dataset_a`` and ``dataset_b`` that share a bucket and whose
        Jaccard distance is at most ``threshold``: columns ``datasetA.<id_col>``,
        ``datasetB.<id_col>`` (Flink ML's names for ``id_col="id"``) and ``dist_col``, each pair
        once, ordered by the rows' positions in A, then B."""
        stage = type(self).__name__
        ta, ha = self._hashed(dataset_a)
        tb, hb = self._hashed(dataset_b)
        ida = require_column(ta, id_col, stage + ".approx_similarity_join")
        idb = require_column(tb, id_col, stage + ".approx_similarity_join")
        na, nb = len(ha), len(hb)
        pairs = []
        for i in range(self._nt):  # per hash table: rows with equal hash vectors are candidates
            keys = np.concatenate([ha[:, i, :], hb[:, i, :]]).astype(np.int64)
            _, gid = np.unique(keys, axis=0, return_inverse=True)
            gid = gid.ravel()
            ga, gb = gid[:na], gid[na:]
            oa, ob = np.argsort(ga, kind="stable"), np.argsort(gb, kind="stable")
            ng = int(gid.max()) + 1 if len(gid) else 0
            cb = np.bincount(gb, minlength=ng)
            start_b = np.r_[0, np.cumsum(cb)[:-1]]
            reps = cb[ga[oa]]
            a_rows = np.repeat(oa, reps)
            ramp = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
            b_rows = ob[np.repeat(start_b[ga[oa]], reps) + ramp]
            pairs.append(a_rows.astype(np.int64) * max(nb, 1) + b_rows)
        code = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
        ia, ib = code // max(nb, 1), code % max(nb, 1)
        dist = _jaccard_pairs(self._input_sets(ta), ia, self._input_sets(tb), ib)
        keep = dist <= threshold
        ia, ib, dist = ia[keep], ib[keep], dist[keep]
        return pa.table({f"datasetA.{id_col}": ida.take(pa.array(ia, pa.int64())),
                         f"datasetB.{id_col}": idb.take(pa.array(ib, pa.int64())),
                         dist_col: pa.array(dist, pa.float64())})
