"""``RobustScaler``: centers vectors by the column medians and scales them by the column quantile
ranges (``upper`` minus ``lower`` quantile), with Flink ML 2.x semantics.

Quantiles come from a mergeable quantile summary per column in the style of Greenwald and
Khanna (as Flink ML's and Spark's ``QuantileSummary``): a sorted subset of the values, each with
bounds ``[rmin, rmax]`` on its rank among all values. A part of the input keeps every
``floor(2 * relative_error * n)``-th of its sorted values with exact ranks; merging two summaries
bounds each kept value's rank in the union from the other summary's neighbours, then drops values
while adjacent kept values stay within ``2 * relative_error * n`` ranks of each other. A query for
quantile ``q`` returns a kept value whose rank is within ``relative_error * n`` of
``ceil(q * n)``. With ``relative_error=0`` (or fewer than ``1 / (2 * relative_error)`` values) every
value is kept and the quantiles are exact order statistics.

Example:
    >>> from flowlearn.feature.robust_scaler import RobustScaler
    >>> t = {"input": [[0.0], [1.0], [2.0], [3.0], [4.0]]}
    >>> RobustScaler(with_centering=True).fit(t).transform(t).column("output").to_pylist()
    [[-1.0], [-0.5], [0.0], [0.5], [1.0]]
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sps

from flowlearn.api import Model, OnePassEstimator
from flowlearn._parallel import parallel_map
from flowlearn.data.columns import require_column, vector_column, with_column
from flowlearn.feature.scalers import (_center_scale, _finite_dense, _model_table, _model_vectors, _row_vector,
                                       _scale_sparse)
from flowlearn.linalg import SparseVector, dense_vector_type, from_numpy, is_sparse, is_vector_type
from flowlearn.params import HasInputCol, HasOutputCol, Param, in_range

__all__ = ["RobustScaler", "RobustScalerModel"]


# --------------------------------------------------------------------------------------------
# the quantile summary of one column: sorted values, rank bounds, count

def _summary_of_column(v: np.ndarray, eps: float, ranks: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A summary of the values ``v`` (no NaN; reordered in place): the exact order statistics of
    every ``floor(2 eps n)``-th rank. A few ranks are selected (``np.partition``); many cost as much
    as a sort, so a long column is then sorted (radix sort). When every value is kept, ``v`` itself
    is the summary's values and its ranks ``1 .. n`` are written into ``ranks`` when given (an array
    of ``n``)."""
    n = len(v)
    step = max(1, int(math.floor(2 * eps * n)))
    if step == 1:   # every value kept, in place (rmin and rmax are the same exact ranks)
        _sort(v)
        r = np.arange(1, n + 1, dtype=np.int64) if ranks is None else ranks
        if ranks is not None:
            r[:] = np.arange(1, n + 1)
        return v, r, r, n
    idx = np.arange(0, n, step)
    if n and idx[-1] != n - 1:
        idx = np.r_[idx, n - 1]
    r = (idx + 1).astype(np.int64)
    if len(idx) > 64 and n >= _RADIX_MIN:   # many ranks: selecting them costs a sort, and a radix sort is cheaper
        _sort(v)
    else:
        v.partition(idx)
    return v[idx], r, r, n


# Below this many values NumPy's sort is the faster one.
_RADIX_MIN = 1 << 14
_DIGIT_BITS = 11


def _sort(v: np.ndarray) -> None:
    """Sorts the values ``v`` (float64, no NaN) in place."""
    if len(v) < _RADIX_MIN:
        v.sort()
    else:   # the scratch keys from NumPy: its large buffers start on huge pages (fewer page faults)
        _radix_sort(v, np.empty(len(v), dtype=np.uint64), np.empty(len(v), dtype=np.uint64))


@numba.njit(cache=True, nogil=True)
def _radix_sort(v, keys, scratch):
    """Sorts the float64 values ``v`` (no NaN) in place: an LSD radix sort on 64-bit keys that order
    as the values do (sign bit flipped for positives, all bits for negatives), 11-bit digits, a
    pass skipped where every key has the same digit. (-0.0 sorts before 0.0.) ``keys`` and
    ``scratch``: uint64 buffers of ``len(v)``."""
    n = len(v)
    sign = np.uint64(1) << np.uint64(63)
    ones = ~np.uint64(0)
    bits = v.view(np.uint64)
    for i in range(n):
        b = bits[i]
        keys[i] = (b ^ ones) if (b & sign) else (b | sign)
    radix = 1 << _DIGIT_BITS
    mask = np.uint64(radix - 1)
    passes = (64 + _DIGIT_BITS - 1) // _DIGIT_BITS
    counts = np.zeros((passes, radix), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for p in range(passes):
            counts[p, np.int64((k >> np.uint64(p * _DIGIT_BITS)) & mask)] += 1
    src, dst = keys, scratch
    for p in range(passes):
        c = counts[p]
        if c.max() == n:
            continue
        total = 0
        for d in range(radix):
            t = c[d]
            c[d] = total
            total += t
        shift = np.uint64(p * _DIGIT_BITS)
        for i in range(n):
            k = src[i]
            d = np.int64((k >> shift) & mask)
            dst[c[d]] = k
            c[d] += 1
        src, dst = dst, src
    for i in range(n):
        k = src[i]
        bits[i] = (k ^ sign) if (k & sign) else (k ^ ones)


@numba.njit(cache=True)
def _compress(rmin, rmax, gap):
    """Indices kept so that consecutive kept entries satisfy ``rmax[next] - rmin[prev] <= gap``
    where dropping allows; the first and last entries are always kept."""
    m = len(rmin)
    keep = np.zeros(m, dtype=np.bool_)
    if m == 0:
        return keep
    keep[0] = True
    keep[m - 1] = True
    last = 0
    for i in range(1, m - 1):
        if rmax[i + 1] - rmin[last] > gap:
            keep[i] = True
            last = i
    return keep


def _merge_summaries(a: tuple, b: tuple, eps: float) -> tuple:
    va, amin, amax, na = a
    vb, bmin, bmax, nb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    # values of b below each value of a (ties: a first): between b's neighbours' rank bounds
    j = np.searchsorted(vb, va, side="left")
    a_lo = np.where(j > 0, bmin[np.maximum(j - 1, 0)], 0)
    a_hi = np.where(j < len(vb), bmax[np.minimum(j, len(vb) - 1)] - 1, nb)
    i = np.searchsorted(va, vb, side="right")
    b_lo = np.where(i > 0, amin[np.maximum(i - 1, 0)], 0)
    b_hi = np.where(i < len(va), amax[np.minimum(i, len(va) - 1)] - 1, na)
    v = np.r_[va, vb]
    rmin, rmax = np.r_[amin + a_lo, bmin + b_lo], np.r_[amax + a_hi, bmax + b_hi]
    order = np.lexsort((np.r_[np.zeros(len(va)), np.ones(len(vb))], v))
    v, rmin, rmax = v[order], rmin[order], rmax[order]
    n = na + nb
    keep = _compress(rmin, rmax, 2.0 * eps * n)
    return v[keep], rmin[keep], rmax[keep], n


def _query(s: tuple, qs: list[float]) -> list[float]:
    """The kept value whose rank bounds are nearest ``ceil(q * n)`` for each ``q``."""
    v, rmin, rmax, n = s
    exact = len(v) == n and (rmin is rmax or np.array_equal(rmin, rmax))   # every value kept: v[i] has rank i + 1
    out = []
    for q in qs:
        r = max(1, math.ceil(q * n))
        if exact:
            out.append(float(v[r - 1]))
            continue
        err = np.maximum(r - rmin, rmax - r)
        out.append(float(v[int(np.argmin(err))]))
    return out


# --------------------------------------------------------------------------------------------


class _RobustScalerParams(HasInputCol, HasOutputCol):
    with_centering = Param(bool, default=False, doc="Whether to center the data with the median before scaling.")
    with_scaling = Param(bool, default=True, doc="Whether to scale the data to the quantile range.")


_STATE = pa.schema([("column", pa.int32()), ("num_features", pa.int32()), ("count", pa.int64()),
                    ("values", pa.list_(pa.float64())), ("rmin", pa.list_(pa.int64())),
                    ("rmax", pa.list_(pa.int64()))])


class RobustScaler(_RobustScalerParams, OnePassEstimator):
    """Scales each dimension by its quantile range ``q(upper) - q(lower)`` (``with_scaling``) after
    subtracting its median (``with_centering``), as Flink ML's ``RobustScaler``; robust to
    outliers where ``StandardScaler`` is not.

    Quantiles are approximate with rank error at most ``relative_error * n`` (see the module
    docstring); ``relative_error=0`` gives exact order statistics (the value of rank
    ``ceil(q * n)``). NaN values are ignored by the fit, as in Flink ML (a column of NaN only is
    refused); infinite values are refused. A dimension whose quantile range is 0 is scaled to 0,
    as Flink ML does (scikit-learn leaves it unscaled). scikit-learn's ``RobustScaler``
    interpolates its percentiles linearly; both agree when every quantile asked for falls on an
    order statistic (e.g. the quartiles of ``4 m + 1`` values).

    Sparse input stays sparse when ``with_centering=False``; centering densifies it.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``lower`` (0.25), ``upper``
    (0.75), ``relative_error`` (0.001), ``with_centering`` (False), ``with_scaling`` (True).

    Example:
        >>> from flowlearn.feature.robust_scaler import RobustScaler
        >>> t = {"input": [[1.0, -10.0], [2.0, 0.0], [3.0, 0.0], [4.0, 10.0], [100.0, 20.0]]}
        >>> model = RobustScaler(with_centering=True, relative_error=0.0).fit(t)
        >>> model.transform({"input": [[3.0, 0.0]]}).column("output").to_pylist()
        [[0.0, 0.0]]
        >>> model.get_model_data()[0].column("ranges").to_pylist()
        [[2.0, 10.0]]
    """

    lower = Param(float, default=0.25, validator=in_range(0.0, 1.0, False, False),
                  doc="Lower quantile of the quantile range.")
    upper = Param(float, default=0.75, validator=in_range(0.0, 1.0, False, False),
                  doc="Upper quantile of the quantile range.")
    relative_error = Param(float, default=0.001, validator=in_range(0.0, 1.0),
                           doc="Relative target precision of the approximate quantiles (0 for exact).")

    # Fit state: one row per dimension (see _STATE): its summary's kept values and rank bounds.

    def _check(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"{type(self).__name__}: parameter 'lower' = {self.lower!r} must be less than parameter "
                             f"'upper' = {self.upper!r}")

    def _partial(self, t: pa.Table) -> pa.Table:
        self._check()
        stage = type(self).__name__
        x = vector_column(t, self.input_col, stage, param="input_col", dense=True, finite=False)
        n, d = x.shape
        if n == 0:
            return _STATE.empty_table()
        # finite column sums (the usual case) rule out NaN and infinity without a mask of x
        with np.errstate(invalid="ignore", over="ignore"):
            nan = None if np.isfinite(x.sum(axis=0)).all() else np.isnan(x)
        if nan is not None:
            inf = np.isinf(x)
            if inf.any():
                row = int(np.flatnonzero(inf.any(axis=1))[0])
                raise ValueError(f"{stage}: column '{self.input_col}' has infinity at row {row}; filter or clip such "
                                 f"rows first (NaN values are ignored by the fit)")
        eps = self.relative_error
        counts = np.full(d, n) if nan is None else n - nan.sum(axis=0)
        offsets = np.zeros(d + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        # the columns' values side by side in one buffer: an exact summary sorts its part in place
        # and the state's list column is that buffer, not a copy
        buf = np.empty(int(offsets[-1]))
        ranks = np.empty(int(offsets[-1]), dtype=np.int64) if eps == 0.0 else None

        def summary(j: int) -> tuple:
            part = buf[offsets[j]:offsets[j + 1]]
            part[:] = x[:, j] if counts[j] == n else x[:, j][~nan[:, j]]
            return _summary_of_column(part, eps, None if ranks is None else ranks[offsets[j]:offsets[j + 1]])

        # the columns' sorts / selections release the GIL: the columns are spread over the cores
        summaries = parallel_map(summary, range(d))
        return _state_of(summaries)

    def _summaries(self, states: list[pa.Table]) -> list[tuple]:
        stage = type(self).__name__
        merged: list[tuple] | None = None
        eps = self.relative_error
        for s in states:
            if s.num_rows == 0:
                continue
            missing = set(_STATE.names) - set(s.column_names)
            if missing:
                raise ValueError(f"{stage}: a fit state has no column(s) {sorted(missing)}; merge states made by "
                                 f"{stage}.partial")
            d = s.column("num_features")[0].as_py()
            cols = s.column("column").to_pylist()
            vals, rmin = _split_lists(s.column("values")), _split_lists(s.column("rmin"))
            # an exact summary's state shares one list column for rmin and rmax: read it once
            rmax = rmin if _same_lists(s.column("rmin"), s.column("rmax")) else _split_lists(s.column("rmax"))
            counts = s.column("count").to_pylist()
            part = [None] * d
            for c, v, lo, hi, k in zip(cols, vals, rmin, rmax, counts):
                part[c] = (v.astype(np.float64, copy=False), lo.astype(np.int64, copy=False),
                           hi.astype(np.int64, copy=False), k)
            if merged is None:
                merged = part
            elif len(merged) != d:
                raise ValueError(f"{stage}: the parts of the input hold vectors of sizes {len(merged)} and {d}; every "
                                 f"row of one input needs vectors of one size")
            else:
                merged = [_merge_summaries(a, b, eps) for a, b in zip(merged, part)]
        return merged or []

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        merged = self._summaries(states)
        return _state_of(merged) if merged else _STATE.empty_table()

    def _finish(self, state: pa.Table) -> "RobustScalerModel":
        self._check()
        summaries = self._summaries([state])
        empty = [j for j, s in enumerate(summaries) if s[3] == 0]
        if empty:
            raise ValueError(f"{type(self).__name__}: dimension {empty[0]} of column '{self.input_col}' holds only "
                             f"NaN; its quantiles are undefined")
        q = np.array([_query(s, [0.5, self.lower, self.upper]) for s in summaries]).reshape(len(summaries), 3)
        model = RobustScalerModel()
        self.copy_params_to(model)
        return model.set_model_data(_model_table(medians=q[:, 0], ranges=q[:, 2] - q[:, 1]))


def _list_array(parts: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    """One list per array of ``parts``, built from the arrays without Python lists (an exact
    summary keeps every value of its column)."""
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    flat = _joined_view(parts, int(offsets[-1]))
    if flat is None:
        flat = np.concatenate(parts) if parts else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat, value_type))


def _joined_view(parts: list[np.ndarray], total: int) -> np.ndarray | None:
    """The one 1-D buffer ``parts`` are consecutive slices of, from its start, or None."""
    if not parts:
        return None
    base = parts[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous or len(base) < total:
        return None
    addr = base.ctypes.data
    for p in parts:
        if p.base is not base or p.ctypes.data != addr or not p.flags.c_contiguous:
            return None
        addr += p.nbytes
    return base[:total]


def _same_lists(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Whether two list columns are one array (the same buffers, offset and length)."""
    if a.num_chunks != 1 or b.num_chunks != 1:
        return False
    x, y = a.chunk(0), b.chunk(0)
    return (x.offset, len(x), x.values.offset, len(x.values)) == (y.offset, len(y), y.values.offset, len(y.values)) \
        and [None if c is None else c.address for c in x.buffers()] == \
        [None if c is None else c.address for c in y.buffers()]


def _split_lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    """The lists of a list column as NumPy arrays (views into the flattened values)."""
    arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    return np.split(flat, np.cumsum(lengths)[:-1])


def _state_of(summaries: list[tuple]) -> pa.Table:
    d = len(summaries)
    rmin = _list_array([s[1] for s in summaries], pa.int64())
    return pa.table({
        "column": pa.array(np.arange(d, dtype=np.int32)),
        "num_features": pa.array(np.full(d, d, np.int32)),
        "count": pa.array([s[3] for s in summaries], pa.int64()),
        "values": _list_array([s[0] for s in summaries], pa.float64()),
        "rmin": rmin,
        "rmax": rmin if all(s[1] is s[2] for s in summaries) else _list_array([s[2] for s in summaries], pa.int64()),
    }, schema=_STATE)


class RobustScalerModel(_RobustScalerParams, Model):
    """The model fitted by :class:`RobustScaler`.

    Model data: one table of one row with two dense vector columns: ``medians`` and ``ranges``
    (the quantile ranges ``q(upper) - q(lower)``).

    Example:
        >>> from flowlearn.feature.robust_scaler import RobustScalerModel
        >>> m = RobustScalerModel(with_centering=True).set_model_data({"medians": [[1.0, 2.0]], "ranges": [[2.0, 0.0]]})
        >>> m.transform({"input": [[3.0, 5.0]]}).column("output").to_pylist()
        [[1.0, 0.0]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        med, rng = _model_vectors(self, tables, ["medians", "ranges"])
        if (rng < 0).any():
            raise ValueError(f"{type(self).__name__}: model data column 'ranges' has a negative entry at index "
                             f"{int(np.flatnonzero(rng < 0)[0])}; a quantile range is >= 0")
        self._median = med
        self._scale = np.divide(1.0, rng, out=np.zeros_like(rng), where=rng != 0)
        self._dim = len(med)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        stage, col = type(self).__name__, self.input_col
        if col not in input_schema.names:
            raise ValueError(f"{stage}: input column '{col}' (parameter 'input_col') is missing; the input has "
                             f"columns {input_schema.names}")
        t = input_schema.field(col).type
        if not is_vector_type(t):
            raise ValueError(f"{stage}: column '{col}' has type {t}, expected a vector column")
        if is_sparse(t) and not self.with_centering:
            field = pa.field(self.output_col, t, metadata={b"flowlearn.size": str(self._dim).encode()})
        else:
            field = pa.field(self.output_col, dense_vector_type(self._dim))
        names = input_schema.names
        return input_schema.set(names.index(self.output_col), field) if self.output_col in names \
            else input_schema.append(field)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        require_column(t, self.input_col, stage, "input_col")
        center, scale = self.with_centering, self.with_scaling
        x = vector_column(t, self.input_col, stage, param="input_col", dense=True if center else None,
                          size=self._dim)
        if x.shape[0] == 0:
            x = sps.csr_matrix((0, self._dim)) if sps.issparse(x) else np.zeros((0, self._dim))
        if sps.issparse(x):
            out = _scale_sparse(x, self._scale if scale else None)
        elif center:
            out = from_numpy(_center_scale(x, self._median, self._scale if scale else np.ones(self._dim),
                                           np.empty(x.shape)))
        else:
            out = from_numpy(x * self._scale if scale else x)
        return with_column(t, self.output_col, out)

    def row_fn(self):
        self._require_model()
        stage, col, out, d = type(self).__name__, self.input_col, self.output_col, self._dim
        med, scale = self._median, self._scale if self.with_scaling else np.ones(self._dim)
        center = self.with_centering

        def fn(row: dict) -> None:
            v = row.get(col)
            if not _finite_dense(v, d):
                v = _row_vector(row, col, stage, d)
                if isinstance(v, SparseVector):
                    if not center:
                        row[out] = SparseVector.unchecked(d, v.indices, v.values * scale[v.indices])
                        return
                    v = v.to_numpy()
            row[out] = (v - med) * scale if center else v * scale

        return fn
