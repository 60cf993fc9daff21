"""``KBinsDiscretizer``: bins each dimension of a vector column into ``num_bins`` intervals, with
Flink ML 2.x semantics (strategies ``uniform``, ``quantile`` and ``kmeans``).

The fit is one pass (``flowlearn.api.OnePassEstimator``): ``uniform`` keeps the column minima
and maxima; ``quantile`` and ``kmeans`` keep a uniform sample of at most ``sub_samples`` rows
(bottom-k by a random key per row, so merging the samples of any split of the input is again a
uniform sample of the whole) and compute the edges from it at ``finish``. An input of at most
``sub_samples`` rows is used in full, so the edges are exact and do not depend on the split.

Example:
    >>> from flowlearn.feature.kbins import KBinsDiscretizer
    >>> t = {"input": [[0.0], [1.0], [2.0], [3.0], [4.0]]}
    >>> model = KBinsDiscretizer(strategy="uniform", num_bins=2).fit(t)
    >>> model.transform(t).column("output").to_pylist()
    [[0.0], [0.0], [1.0], [1.0], [1.0]]
"""
from __future__ import annotations

import zlib

import numba
import numpy as np
import pyarrow as pa

from flowlearn.api import Model, OnePassEstimator
from flowlearn.data.columns import vector_column, with_column
from flowlearn.feature.scalers import _empty_state, _row_vector, _state_rows, _state_table, _VEC
from flowlearn.linalg import dense_vector_type, from_numpy, is_vector_type, to_numpy
from flowlearn.feature._columns import put_field, schema_field
from flowlearn.params import HasInputCol, HasOutputCol, Param, gt_eq, in_array, in_range

__all__ = ["KBinsDiscretizer", "KBinsDiscretizerModel"]

_UNIFORM, _QUANTILE, _KMEANS = "uniform", "quantile", "kmeans"
_CONSTANT_EDGES = np.array([-np.inf, np.inf])
MAX_BINS = 1 << 16  # num_bins + 1 edges per vector element are allocated, in the fit and in the model data


def _mid(a, b):
    """``(a + b) / 2``, also where ``a + b`` overflows float64 (values near +-1.8e308)."""
    with np.errstate(over="ignore", invalid="ignore"):
        m = (a + b) / 2
    return np.where(np.isfinite(m), m, a / 2 + b / 2) if np.ndim(m) else (m if np.isfinite(m) else a / 2 + b / 2)


def _uniform_edges(lo: float, hi: float, k: int) -> np.ndarray:
    """Flink ML's uniform edges: ``min`` then ``k`` steps of ``(max - min) / k`` added in turn."""
    if lo == hi:
        return _CONSTANT_EDGES.copy()
    step = (hi - lo) / k if np.isfinite(hi - lo) else hi / k - lo / k   # a range beyond float64
    e = np.cumsum(np.r_[lo, np.full(k, step)])
    e[-1] = hi          # a sum of steps rounded past the maximum could otherwise reach inf
    return np.maximum.accumulate(np.minimum(e, hi))


def _quantile_edges(v: np.ndarray, k: int) -> np.ndarray:
    """Flink ML's quantile edges of the sorted values ``v``: ``v[int(i * n / k)]`` for ``i < k``
    and the maximum; an edge repeated (zero-width bins) is kept at most twice and each second copy
    moved to the mean of its neighbours."""
    n = len(v)
    if v[0] == v[-1]:
        return _CONSTANT_EDGES.copy()
    if n > k:
        e = np.r_[v[(np.arange(k) * (n / k)).astype(np.int64)], v[-1]]
    else:
        e = v.copy()
    vals, counts = np.unique(e, return_counts=True)
    e = np.sort(np.r_[vals, vals[counts > 1]])
    i = 1
    while i < len(e) - 1:  # a handful of edges; the loop reads the values it has just moved
        if e[i] == e[i - 1]:
            e[i] = _mid(e[i + 1], e[i - 1])
        i += 1
    if len(e) > 2 and e[i] == e[i - 1]:
        e[i - 1] = _mid(e[i], e[i - 2])
    return e


def _kmeans_edges(v: np.ndarray, k: int, tol: float = 1e-4, max_iter: int = 300) -> np.ndarray:
    """Flink ML's kmeans edges of the sorted values ``v``: a 1-D Lloyd's k-means from the centroids
    ``v[int(i * n / k)]``, stopped when the mean absolute distance changes by at most ``tol``
    (or after ``max_iter`` rounds); edges are the minimum, the midpoints of adjacent sorted
    centroids and the maximum. Fewer than ``k + 1`` distinct values use the uniform edges."""
    if v[0] == v[-1]:
        return _CONSTANT_EDGES.copy()
    if 1 + int(np.count_nonzero(v[1:] != v[:-1])) <= k:  # v is sorted: distinct values
        return _uniform_edges(float(v[0]), float(v[-1]), k)
    n = len(v)
    c = v[(np.arange(k) * (n / k)).astype(np.int64)].astype(np.float64)
    old = np.finfo(np.float64).max
    with np.errstate(over="ignore", invalid="ignore"):  # values near +-1.8e308: sums and distances overflow
        for _ in range(max_iter):
            # 1-D: the sorted centroids' clusters are runs of v split at the midpoints; a value at a
            # midpoint goes to the lower centroid (Flink ML's strict "<" keeps the first nearest)
            order = np.argsort(c, kind="stable")
            cs = c[order]
            cuts = np.r_[0, np.searchsorted(v, _mid(cs[1:], cs[:-1]), side="right"), n]
            counts = np.diff(cuts)
            assign = np.repeat(np.arange(k), counts)
            loss = float(np.abs(v - cs[assign]).sum()) / n
            # each cluster summed on its own (a prefix sum would cancel a small cluster's values
            # against a huge one before it); an empty cluster keeps its centroid (Flink ML would get NaN)
            nz = counts > 0
            starts, sizes = cuts[:-1][nz], counts[nz]
            means = np.add.reduceat(v, starts) / sizes
            if not np.isfinite(means).all():  # a sum beyond float64: add the values divided by the count
                means = np.add.reduceat(v / np.repeat(sizes, sizes), starts)
            upd = cs.copy()
            upd[nz] = means
            c[order] = upd
            if abs(loss - old) <= tol:
                break
            old = loss
    c = np.sort(c)
    return np.r_[v[0], np.clip(_mid(c[1:], c[:-1]), v[0], v[-1]), v[-1]]


@numba.njit(cache=True)
def _bin_rows(x, padded, last, out):
    """``out[i, j]`` = the bin of ``x[i, j]`` among the sorted edges ``padded[j]`` (padded with +inf):
    the number of edges <= x minus 1, clipped to ``[0, last[j]]``. Row by row over row-major data
    (a count of the edges, or a binary search when there are many), where NumPy's searchsorted per
    strided column is several times slower."""
    n, d = x.shape
    m = padded.shape[1]
    for i in range(n):
        for j in range(d):
            v = x[i, j]
            if m <= 32:  # few edges: a branch-free count beats a search
                lo = 0
                for e in range(m):
                    lo += padded[j, e] <= v
            else:
                lo, hi = 0, m
                while lo < hi:  # first edge > v
                    mid = (lo + hi) >> 1
                    if padded[j, mid] <= v:
                        lo = mid + 1
                    else:
                        hi = mid
            b = lo - 1.0
            out[i, j] = 0.0 if b < 0.0 else (last[j] if b > last[j] else b)
    return out


class _KBinsParams(HasInputCol, HasOutputCol):
    pass


class KBinsDiscretizer(_KBinsParams, OnePassEstimator):
    """Discretizes each dimension of a vector column into bins ``0 .. num_bins - 1``, as Flink ML's
    ``KBinsDiscretizer``. Bin edges per dimension by ``strategy``:

    * ``"uniform"``: ``num_bins`` bins of equal width between the column minimum and maximum;
    * ``"quantile"`` (default): edges at the order statistics ``v[int(i * n / num_bins)]`` of the
      sorted (sampled) values and the maximum, so bins hold about equal numbers of rows. Repeated
      edges are kept at most twice and moved apart as Flink ML does, so a column with heavy ties
      may have fewer bins;
    * ``"kmeans"``: edges halfway between adjacent centroids of a 1-D k-means of the values.

    A constant dimension gets the edges ``[-inf, inf]`` (everything in bin 0). A value below the
    first edge goes to bin 0, above the last to the last bin; a value on an inner edge goes to the
    bin above it. Output vectors are dense doubles (sparse input is densified, as in Flink ML).

    Differences from scikit-learn's ``KBinsDiscretizer(encode="ordinal")``: its quantile edges
    interpolate percentiles linearly (they equal Flink ML's order statistics when
    ``n - 1`` is a multiple of ``num_bins``) and it drops bins narrower than 1e-8 where Flink ML
    moves repeated edges apart; its k-means starts from the uniform bin centres, Flink ML's from
    the quantile edges, so on data with several local optima the edges can differ.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``strategy`` ("quantile"),
    ``num_bins`` (5), ``sub_samples`` (200000).

    Example:
        >>> from flowlearn.feature.kbins import KBinsDiscretizer
        >>> t = {"input": [[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 10.0]]}
        >>> model = KBinsDiscretizer(num_bins=2).fit(t)
        >>> model.transform(t).column("output").to_pylist()
        [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    """

    strategy = Param(str, default=_QUANTILE, validator=in_array([_UNIFORM, _QUANTILE, _KMEANS]),
                     doc="How bin widths are chosen: 'uniform', 'quantile' or 'kmeans'.")
    num_bins = Param(int, default=5, validator=in_range(2, MAX_BINS),
                     doc="Number of bins to produce (edges are allocated for every bin of every element).")
    sub_samples = Param(int, default=200000, validator=gt_eq(2),
                        doc="Maximum number of rows sampled to fit the 'quantile' and 'kmeans' edges.")

    # Fit states: "uniform": one row of ``min`` and ``max`` vectors; otherwise one row per sampled
    # input row: ``key`` (its random key, uniform in [0, 1)) and ``vector``.

    def _input(self, t: pa.Table) -> np.ndarray:
        return vector_column(t, self.input_col, type(self).__name__, param="input_col", dense=True)

    def _partial(self, t: pa.Table) -> pa.Table:
        x = self._input(t)
        if self.strategy == _UNIFORM:
            if x.shape[0] == 0:
                return _empty_state(min=_VEC, max=_VEC)
            return _state_table(min=x.min(axis=0), max=x.max(axis=0))
        return self._bottom_k(np.random.default_rng([zlib.crc32(b"flowlearn.feature.KBinsDiscretizer"),
                                                     zlib.crc32(np.ascontiguousarray(x))]).random(len(x)), x)

    def _bottom_k(self, keys: np.ndarray, x: np.ndarray) -> pa.Table:
        k = self.sub_samples
        if len(keys) > k:
            pick = np.argpartition(keys, k - 1)[:k]
            pick.sort()  # input order, so the state does not depend on how argpartition broke ties
            keys, x = keys[pick], x[pick]
        return pa.table({"key": pa.array(keys, pa.float64()), "vector": from_numpy(x)})

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        stage = type(self).__name__
        if self.strategy == _UNIFORM:
            rows = _state_rows(stage, states, ["min", "max"])
            if not rows:
                return _empty_state(min=_VEC, max=_VEC)
            return _state_table(min=np.min([r[0] for r in rows], axis=0), max=np.max([r[1] for r in rows], axis=0))
        keys, xs = self._sample_rows(states)
        return self._bottom_k(keys, xs)

    def _sample_rows(self, states: list[pa.Table]) -> tuple[np.ndarray, np.ndarray]:
        stage = type(self).__name__
        keys, xs = [], []
        for s in states:
            if not {"key", "vector"} <= set(s.column_names):
                raise ValueError(f"{stage}: a fit state has columns {s.column_names}, expected 'key' and 'vector' "
                                 f"(strategy '{self.strategy}'); merge states made by {stage}.partial with the "
                                 f"same strategy")
            if s.num_rows:
                keys.append(s.column("key").to_numpy())
                xs.append(to_numpy(s.column("vector"), "vector", stage))
        sizes = {x.shape[1] for x in xs}
        if len(sizes) > 1:
            raise ValueError(f"{stage}: the parts of the input hold vectors of sizes {sorted(sizes)}; every row of "
                             f"one input needs vectors of one size")
        if not xs:
            return np.zeros(0), np.zeros((0, 0))
        return np.concatenate(keys), np.concatenate(xs)

    def _finish(self, state: pa.Table) -> "KBinsDiscretizerModel":
        k = self.num_bins
        if self.strategy == _UNIFORM:
            ((lo, hi),) = _state_rows(type(self).__name__, [self._merge([state])], ["min", "max"])
            edges = [_uniform_edges(float(a), float(b), k) for a, b in zip(lo, hi)]
        else:
            _, x = self._sample_rows([self._merge([state])])
            fn = _quantile_edges if self.strategy == _QUANTILE else _kmeans_edges
            edges = [fn(np.sort(x[:, j]), k) for j in range(x.shape[1])]
        model = KBinsDiscretizerModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({"bin_edges": pa.array([[e.tolist() for e in edges]],
                                                                    pa.list_(pa.list_(pa.float64())))}))


class KBinsDiscretizerModel(_KBinsParams, Model):
    """The model fitted by :class:`KBinsDiscretizer`.

    Model data: one table of one row with ``bin_edges`` (``list<list<double>>``): per dimension the
    strictly non-decreasing bin edges (at least 2; ``[-inf, inf]`` for a constant dimension).

    Example:
        >>> from flowlearn.feature.kbins import KBinsDiscretizerModel
        >>> m = KBinsDiscretizerModel().set_model_data({"bin_edges": [[[0.0, 1.0, 2.0], [-1.0, 1.0]]]})
        >>> m.transform({"input": [[1.5, 9.0], [-3.0, 0.0]]}).column("output").to_pylist()
        [[1.0, 0.0], [0.0, 0.0]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1 or "bin_edges" not in tables[0].column_names or tables[0].num_rows != 1:
            raise ValueError(f"{stage}: model data is one table of one row with column 'bin_edges' "
                             f"(list<list<double>>), got {[t.schema for t in tables]}")
        edges = tables[0].column("bin_edges")[0].as_py()
        if not edges:
            raise ValueError(f"{stage}: model data 'bin_edges' has no dimension")
        out = []
        for j, e in enumerate(edges):
            a = np.asarray(e if e is not None else [], dtype=np.float64)
            if len(a) < 2 or np.isnan(a).any() or (np.diff(a) < 0).any():
                raise ValueError(f"{stage}: model data 'bin_edges' of dimension {j} must hold at least 2 "
                                 f"non-decreasing numbers, got {a.tolist()[:10]}")
            out.append(a)
        self._edges = out
        self._dim = len(out)
        width = max(len(a) for a in out)
        self._padded = np.full((self._dim, width), np.inf)  # row kernel: count the edges <= x per dimension
        for j, a in enumerate(out):
            self._padded[j, :len(a)] = a
        self._last = np.array([len(a) - 2 for a in out], dtype=np.float64)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        stage, col = type(self).__name__, self.input_col
        src = schema_field(input_schema, col, stage, "input_col")
        if not is_vector_type(src.type):
            raise ValueError(f"{stage}: column '{col}' has type {src.type}, expected a vector column")
        field = pa.field(self.output_col, dense_vector_type(self._dim))
        return put_field(input_schema, field)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        x = vector_column(t, self.input_col, stage, param="input_col", dense=True, size=self._dim)
        if x.shape[0] == 0:
            x = np.zeros((0, self._dim))
        out = _bin_rows(np.ascontiguousarray(x), self._padded, self._last, np.empty(x.shape))
        return with_column(t, self.output_col, from_numpy(out))

    def row_fn(self):
        self._require_model()
        stage, col, out, d, padded, last = type(self).__name__, self.input_col, self.output_col, self._dim, \
            self._padded, self._last

        def fn(row: dict) -> None:
            v = _row_vector(row, col, stage, d)
            v = v.to_numpy() if not isinstance(v, np.ndarray) else v
            b = (padded <= v[:, None]).sum(axis=1) - 1.0
            row[out] = np.minimum(np.maximum(b, 0.0), last)

        return fn
