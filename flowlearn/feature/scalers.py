"""Column-wise vector scalers with Flink ML 2.x semantics: ``StandardScaler``, ``MinMaxScaler``
and ``MaxAbsScaler`` (each an ``Estimator`` fitting a ``Model``). Their fits are one pass
(``flowlearn.api.OnePassEstimator``): per-part states of column statistics (count, mean and sum of
squared deviations merged with Chan et al.'s update; minima, maxima; maximum absolute values),
merged and finished into the model; sparse parts stay sparse.

All three read a dense or sparse vector column (``input_col``) and append the scaled vectors as
``output_col``. Sparse input gives sparse output wherever no centering is needed
(``MaxAbsScaler``; ``StandardScaler`` with ``with_mean=False``); ``MinMaxScaler`` and
``StandardScaler(with_mean=True)`` shift every entry, so they densify sparse input and output
dense vectors, as Flink ML does. NaN or infinite entries are refused (fit and transform) with an
error naming the row; impute them first (``fl.feature.Imputer`` works on scalar columns).

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"x": [[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]]})
    >>> fl.feature.MinMaxScaler(input_col="x", output_col="y").fit(t).transform(t).column("y").to_pylist()
    [[0.0, 0.0], [0.5, 1.0], [1.0, 0.5]]
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import Model, OnePassEstimator
from flowlearn.data.columns import check_squares, vector_column, with_column
from flowlearn.data.schema import same_features_field
from flowlearn.linalg import SparseVector, dense_vector_type, from_csr, from_numpy, to_numpy
from flowlearn.params import HasInputCol, HasOutputCol, Param

__all__ = [
    "StandardScaler",
    "StandardScalerModel",
    "MinMaxScaler",
    "MinMaxScalerModel",
    "MaxAbsScaler",
    "MaxAbsScalerModel",
]

_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------------
# shared helpers


def _one_table(tables: tuple, stage: str, what: str) -> pa.Table:
    if len(tables) != 1:
        raise TypeError(f"{stage}.{what} takes exactly one input table, got {len(tables)}")
    return tables[0]


def _partial_input(stage: OnePassEstimator, t: pa.Table) -> np.ndarray | sps.csr_matrix:
    """The input vectors of a fit's part, dense or sparse as stored (possibly no rows)."""
    return vector_column(t, stage.input_col, type(stage).__name__, param="input_col")


# Fit states (see OnePassEstimator): one row of per-dimension vectors, or no rows for no input.

def _state_table(**columns: np.ndarray | int) -> pa.Table:
    """A one-row state: integers become int64 columns, arrays list<double> columns."""
    out = {}
    for k, v in columns.items():
        if isinstance(v, np.ndarray):
            out[k] = pa.ListArray.from_arrays(pa.array([0, len(v)], pa.int32()), pa.array(v, pa.float64()))
        else:
            out[k] = pa.array([int(v)], pa.int64())
    return pa.table(out)


def _empty_state(**types: pa.DataType) -> pa.Table:
    return pa.table({k: pa.array([], t) for k, t in types.items()})


_VEC = pa.list_(pa.float64())


def _state_rows(stage: str, states: list[pa.Table], vectors: list[str], counts: list[str] = ()) -> list[tuple]:
    """Every row of ``states`` (in order) as a tuple of its ``counts`` (ints) and ``vectors`` (float64
    arrays), checking that all vectors have one size."""
    rows, sizes = [], set()
    for t in states:
        missing = [c for c in [*counts, *vectors] if c not in t.column_names]
        if missing:
            raise ValueError(f"{stage}: a fit state has no column(s) {missing}; it has {t.column_names}. Merge "
                             f"states made by {stage}.partial")
        ints = [t.column(c).to_numpy() for c in counts]
        vecs = []
        for c in vectors:
            col = t.column(c).combine_chunks()
            values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            offsets = col.offsets.to_numpy() - col.offsets[0].as_py()
            vecs.append([values[offsets[i]:offsets[i + 1]] for i in range(t.num_rows)])
        for i in range(t.num_rows):
            row = tuple(int(a[i]) for a in ints) + tuple(v[i] for v in vecs)
            sizes.update(len(v) for v in row[len(counts):])
            rows.append(row)
    if len(sizes) > 1:
        raise ValueError(f"{stage}: the parts of the input hold vectors of sizes {sorted(sizes)}; every row of "
                         f"one input needs vectors of one size")
    return rows


def _one_row(stage: OnePassEstimator, state: pa.Table) -> pa.Table:
    """A state of one row: several rows (states concatenated) are merged first."""
    return state if state.num_rows == 1 else stage._merge([state])


def _moments(x: np.ndarray | sps.csr_matrix) -> tuple[int, np.ndarray, np.ndarray]:
    """``(rows, column means, column sums of squared deviations)`` of a 2-D array or CSR matrix
    with at least one row (the implicit zeros of sparse rows included, and sparse stays sparse)."""
    n, d = x.shape
    if sps.issparse(x):
        mean = np.asarray(x.sum(axis=0)).ravel() / n
        # sum of squared deviations: stored entries plus the implicit zeros of each column
        dev = np.bincount(x.indices, weights=(x.data - mean[x.indices]) ** 2, minlength=d)
        nnz = np.bincount(x.indices, minlength=d)
        return n, mean, dev + (n - nnz) * mean ** 2
    mean = x.mean(axis=0)
    return n, mean, ((x - mean) ** 2).sum(axis=0)


def _merge_moments(a: tuple, b: tuple) -> tuple:
    """Chan et al.'s merge of two ``(count, mean, sum of squared deviations)`` summaries, numerically
    stable (no ``sum(x^2) - n mean^2`` cancellation); a count of 0 is the neutral summary."""
    na, ma, qa = a
    nb, mb, qb = b
    if nb == 0:
        return na, ma, qa
    if na == 0:
        return nb, np.array(mb, dtype=np.float64), np.array(qb, dtype=np.float64)
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), qa + qb + delta ** 2 * (na * nb / n)


def _model_vectors(model: Model, tables: list[pa.Table], names: list[str]) -> list[np.ndarray]:
    """Read the one-row model data table of a scaler model: one dense vector per name."""
    stage = type(model).__name__
    if len(tables) != 1:
        raise ValueError(f"{stage}: model data is one table with columns {names}, got {len(tables)} tables")
    t = tables[0]
    missing = [n for n in names if n not in t.column_names]
    if missing:
        raise ValueError(f"{stage}: model data has no column(s) {missing}; expected one row with vector "
                         f"columns {names}, got columns {t.column_names}")
    if t.num_rows != 1:
        raise ValueError(f"{stage}: model data must have exactly one row, got {t.num_rows}")
    out = [np.array(to_numpy(t.column(n), n, f"{stage} model data")[0], dtype=np.float64) for n in names]
    sizes = {len(v) for v in out}
    if len(sizes) != 1:
        raise ValueError(f"{stage}: model data vectors {names} have different sizes {[len(v) for v in out]}")
    for n, v in zip(names, out):
        if not np.isfinite(v).all():
            raise ValueError(f"{stage}: model data column '{n}' holds NaN or infinity; refit the model")
    return out


def _model_table(**vectors: np.ndarray) -> pa.Table:
    return pa.table({k: pa.array([v.tolist()], type=dense_vector_type(len(v))) for k, v in vectors.items()})


def _transform_input(model: Model, t: pa.Table, size: int, dense: bool | None) -> np.ndarray | sps.csr_matrix:
    x = vector_column(t, model.input_col, type(model).__name__, param="input_col", dense=dense, size=size)
    if x.shape[0] == 0:  # an empty column may not know its vector size
        return sps.csr_matrix((0, size)) if sps.issparse(x) else np.zeros((0, size))
    return x


_F64 = np.dtype(np.float64)
_isfinite = math.isfinite


def _scaled_field(model: Model, t: pa.Table, out: pa.Array) -> pa.Field:
    """A scaler's output field: the input's size and feature names (each element is scaled in place)."""
    src = t.schema.field(model.input_col) if model.input_col in t.column_names else None
    return same_features_field(model.output_col, out.type, model._dim, src)


# One pass over the rows instead of NumPy's two (and one temporary): the same IEEE operations in
# the same order as the row kernels' NumPy expressions, so batch and row outputs are bit-identical.
@numba.njit(cache=True)
def _center_scale(x, mean, scale, out):
    """``out = (x - mean) * scale`` for a 2-D ``x``, row by row."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            out[i, j] = (x[i, j] - mean[j]) * scale[j]
    return out


@numba.njit(cache=True)
def _scale_shift(x, scale, offset, out):
    """``out = x * scale + offset`` for a 2-D ``x``, row by row (no fused multiply-add)."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            out[i, j] = x[i, j] * scale[j] + offset[j]
    return out


def _all_finite(a: np.ndarray) -> bool:
    """Whether every entry of a 1-D float array is finite, without floating-point warnings. Up to 16
    entries through a Python float sum, several times cheaper than ``np.isfinite(a).all()`` there: a
    NaN or infinite entry makes the sum NaN or infinite, and a sum of finite entries that overflows
    goes to the exact test."""
    if len(a) <= 16 and _isfinite(sum(a.tolist())):
        return True
    return bool(np.isfinite(a).all())


def _finite_dense(v: object, size: int) -> bool:
    """True when ``v`` is a 1-D float64 array of ``size`` finite entries: the common row kernel input,
    taken as is; anything else goes to :func:`_row_vector`, which converts, checks and raises."""
    return type(v) is np.ndarray and v.dtype is _F64 and v.shape == (size,) and _all_finite(v)


def _row_vector(row: dict, col: str, stage: str, size: int) -> np.ndarray | SparseVector:
    """One row's vector value, checked like the batch path checks a column."""
    v = row.get(col)
    if _finite_dense(v, size):
        return v
    try:
        v = row[col]
    except KeyError:
        raise ValueError(f"{stage}: input column '{col}' (parameter 'input_col') is missing from the row; "
                         f"the row has keys {list(row)}") from None
    if isinstance(v, SparseVector):
        if v.size != size:
            raise ValueError(f"{stage}: column '{col}' holds a vector of size {v.size}, the model expects size "
                             f"{size}; transform data with the same feature pipeline the model was fitted on")
        if not _all_finite(v.values):
            raise ValueError(f"{stage}: column '{col}' has NaN or infinity; impute or filter such rows first")
        return v
    if v is None:
        raise ValueError(f"{stage}: column '{col}' is null in this row; drop or impute it first")
    try:
        x = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{stage}: column '{col}' holds {type(v).__name__}, expected a vector "
                        f"(list, 1-D numpy array or fl.linalg.SparseVector)") from None
    if x.shape != (size,):
        raise ValueError(f"{stage}: column '{col}' holds a vector of shape {x.shape}, the model expects size "
                         f"{size}; transform data with the same feature pipeline the model was fitted on")
    if not np.isfinite(x).all():
        raise ValueError(f"{stage}: column '{col}' has NaN or infinity; impute or filter such rows first")
    return x


def _scale_sparse(x: sps.csr_matrix, scale: np.ndarray | None) -> pa.Array:
    """Multiply each stored entry by the scale of its column; the sparsity pattern is kept."""
    data = x.data * scale[x.indices] if scale is not None else x.data.copy()
    return from_csr(sps.csr_matrix((data, x.indices, x.indptr), shape=x.shape))


# --------------------------------------------------------------------------------------------
# StandardScaler


class _StandardScalerParams(HasInputCol, HasOutputCol):
    with_mean = Param(bool, default=False, doc="Center each dimension to zero mean before scaling.")
    with_std = Param(bool, default=True, doc="Scale each dimension to unit (sample) standard deviation.")


class StandardScaler(_StandardScalerParams, OnePassEstimator):
    """Standardizes vectors: subtracts the column mean (``with_mean``) and divides by the column
    sample standard deviation (``with_std``), as Flink ML's ``StandardScaler``.

    The standard deviation is the unbiased sample one (``ddof=1``, as in Flink ML and Spark; it is
    0 for a single row). A dimension whose standard deviation is 0 is scaled to 0, as Flink ML
    does (scikit-learn leaves it unscaled instead).

    Sparse input stays sparse when ``with_mean=False`` (only stored entries are scaled). With
    ``with_mean=True`` every entry shifts, so sparse input is densified and the output column is
    dense, as in Flink ML; mind the memory (rows x size doubles) on wide sparse data.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``with_mean`` (False),
    ``with_std`` (True).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"x": [[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]]})
        >>> model = fl.feature.StandardScaler(input_col="x", output_col="y", with_mean=True).fit(t)
        >>> model.transform(t).column("y").to_pylist()
        [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
    """

    online_counterpart = "OnlineStandardScaler"

    # Fit state: one row with ``count`` (int64), ``mean`` and ``m2`` (list<double>: column means and
    # sums of squared deviations), merged with Chan et al.'s update (also OnlineStandardScaler's).

    def _partial(self, t: pa.Table) -> pa.Table:
        x = _partial_input(self, t)
        if x.shape[0] == 0:
            return _empty_state(count=pa.int64(), mean=_VEC, m2=_VEC)
        check_squares(x, self.input_col, type(self).__name__, "input_col", "variances")
        n, mean, m2 = _moments(x)
        return _state_table(count=n, mean=mean, m2=m2)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        rows = _state_rows(type(self).__name__, states, ["mean", "m2"], ["count"])
        acc = (0, None, None)
        for row in rows:
            acc = _merge_moments(acc, row)
        if acc[0] == 0:
            return _empty_state(count=pa.int64(), mean=_VEC, m2=_VEC)
        return _state_table(count=acc[0], mean=acc[1], m2=acc[2])

    def _finish(self, state: pa.Table) -> "StandardScalerModel":
        ((n, mean, ss),) = _state_rows(type(self).__name__, [_one_row(self, state)], ["mean", "m2"], ["count"])
        std = np.sqrt(ss / (n - 1)) if n > 1 else np.zeros(len(mean))
        model = StandardScalerModel()
        self.copy_params_to(model)
        return model.set_model_data(_model_table(mean=mean, std=std))


class StandardScalerModel(_StandardScalerParams, Model):
    """The model fitted by :class:`StandardScaler`.

    Model data: one table with one row and two dense vector columns (``fixed_size_list<double>[d]``):
    ``mean`` (column means) and ``std`` (column sample standard deviations, ``ddof=1``).

    Example:
        >>> import flowlearn as fl
        >>> model = fl.feature.StandardScalerModel(input_col="x", output_col="y", with_mean=True)
        >>> model = model.set_model_data({"mean": [[1.0, 2.0]], "std": [[2.0, 0.0]]})
        >>> model.transform({"x": [[3.0, 5.0]]}).column("y").to_pylist()
        [[1.0, 0.0]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        mean, std = _model_vectors(self, tables, ["mean", "std"])
        if (std < 0).any():
            raise ValueError(f"{type(self).__name__}: model data column 'std' has a negative entry at index "
                             f"{int(np.flatnonzero(std < 0)[0])}; a standard deviation is >= 0")
        self._mean = mean
        self._scale = np.divide(1.0, std, out=np.zeros_like(std), where=std != 0)
        self._dim = len(mean)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        t = _one_table(tables, type(self).__name__, "transform")
        self._require_model()
        with_mean, with_std = self.with_mean, self.with_std
        x = _transform_input(self, t, self._dim, dense=True if with_mean else None)
        if sps.issparse(x):
            out = _scale_sparse(x, self._scale if with_std else None)
        else:
            if with_mean and with_std:
                y = _center_scale(x, self._mean, self._scale, np.empty(x.shape))
            elif with_mean:
                y = x - self._mean
            else:
                y = x * self._scale if with_std else x
            out = from_numpy(y)
        return with_column(t, _scaled_field(self, t, out), out)

    def row_fn(self):
        self._require_model()
        stage, in_col, out_col = type(self).__name__, self.input_col, self.output_col
        scale, d = self._scale, self._dim
        with_mean, with_std = self.with_mean, self.with_std

        apply = self._dense_row_apply()

        def fn(row: dict) -> None:
            v = row.get(in_col)
            if not _finite_dense(v, d):
                v = _row_vector(row, in_col, stage, d)
                if isinstance(v, SparseVector):
                    if not with_mean:
                        vals = v.values * scale[v.indices] if with_std else v.values.copy()
                        row[out_col] = SparseVector.unchecked(d, v.indices, vals)
                        return
                    v = v.to_numpy()
            row[out_col] = apply(v)

        return fn

    def _dense_row_apply(self):
        """``f(x)`` scaling one finite 1-D float64 vector of the model's size (no checks, a new array);
        the arithmetic of the batch path, so both give identical bits. Used by ``row_fn`` and by
        ``VectorAssembler``'s fused row kernel."""
        mean, scale = self._mean, self._scale
        if self.with_mean and self.with_std:
            return lambda x: (x - mean) * scale
        if self.with_mean:
            return lambda x: x - mean
        if self.with_std:
            return lambda x: x * scale
        return lambda x: x.copy()


# --------------------------------------------------------------------------------------------
# MinMaxScaler


class _MinMaxScalerParams(HasInputCol, HasOutputCol):
    min = Param(float, default=0.0, doc="Lower bound of the output feature range.")
    max = Param(float, default=1.0, doc="Upper bound of the output feature range.")

    def _check_bounds(self) -> tuple[float, float]:
        lo, hi = self.min, self.max
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"{type(self).__name__}: parameter 'min' = {lo!r} must be less than parameter 'max' = {hi!r} "
                f"(both finite); set for example min=0.0, max=1.0"
            )
        return lo, hi


class MinMaxScaler(_MinMaxScalerParams, OnePassEstimator):
    """Rescales each dimension linearly to ``[min, max]`` using the column minimum and maximum
    seen in fit, as Flink ML's ``MinMaxScaler``:
    ``y = (x - col_min) / (col_max - col_min) * (max - min) + min``.

    A constant dimension (``col_max == col_min``) maps to ``(min + max) / 2``, as in Flink ML
    (scikit-learn maps it to ``min``). Flink ML calls a dimension constant when its range is below
    an absolute ``1e-5``; flowlearn uses a relative test (range within 10 ulp of the magnitude), so
    features measured in small units are not flattened. Values outside the fitted range are not
    clipped. ``min < max`` is checked at fit and transform.

    Sparse input is densified (every entry shifts) and the output column is dense, as in Flink ML;
    the implicit zeros of sparse vectors count in the column minimum and maximum.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``min`` (0.0), ``max`` (1.0).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"x": [[1.0, 7.0], [3.0, 7.0]]})
        >>> model = fl.feature.MinMaxScaler(input_col="x", output_col="y", min=-1.0, max=1.0).fit(t)
        >>> model.transform({"x": [[2.0, 7.0], [5.0, 7.0]]}).column("y").to_pylist()
        [[0.0, 0.0], [3.0, 0.0]]
    """

    # Fit state: one row with ``min`` and ``max`` (list<double>), the column minima and maxima.

    def _partial(self, t: pa.Table) -> pa.Table:
        self._check_bounds()
        x = _partial_input(self, t)
        if x.shape[0] == 0:
            return _empty_state(min=_VEC, max=_VEC)
        if sps.issparse(x):  # scipy's min/max count the implicit zeros
            lo, hi = x.min(axis=0).toarray().ravel(), x.max(axis=0).toarray().ravel()
        else:
            lo, hi = x.min(axis=0), x.max(axis=0)
        return _state_table(min=lo.astype(np.float64), max=hi.astype(np.float64))

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        rows = _state_rows(type(self).__name__, states, ["min", "max"])
        if not rows:
            return _empty_state(min=_VEC, max=_VEC)
        return _state_table(min=np.min([r[0] for r in rows], axis=0), max=np.max([r[1] for r in rows], axis=0))

    def _finish(self, state: pa.Table) -> "MinMaxScalerModel":
        self._check_bounds()
        ((lo, hi),) = _state_rows(type(self).__name__, [_one_row(self, state)], ["min", "max"])
        model = MinMaxScalerModel()
        self.copy_params_to(model)
        return model.set_model_data(_model_table(min_vector=lo, max_vector=hi))


class MinMaxScalerModel(_MinMaxScalerParams, Model):
    """The model fitted by :class:`MinMaxScaler`.

    Model data: one table with one row and two dense vector columns (``fixed_size_list<double>[d]``):
    ``min_vector`` and ``max_vector``, the per-dimension minimum and maximum of the fit data.

    Example:
        >>> import flowlearn as fl
        >>> model = fl.feature.MinMaxScalerModel(input_col="x", output_col="y")
        >>> model = model.set_model_data({"min_vector": [[0.0, 2.0]], "max_vector": [[4.0, 2.0]]})
        >>> model.transform({"x": [[1.0, 2.0]]}).column("y").to_pylist()
        [[0.25, 0.5]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        lo, hi = _model_vectors(self, tables, ["min_vector", "max_vector"])
        if (lo > hi).any():
            i = int(np.flatnonzero(lo > hi)[0])
            raise ValueError(f"{type(self).__name__}: model data has min_vector[{i}] = {lo[i]} greater than "
                             f"max_vector[{i}] = {hi[i]}")
        self._lo, self._hi, self._dim = lo, hi, len(lo)

    def _scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        out_lo, out_hi = self._check_bounds()
        rng = self._hi - self._lo
        const = rng <= 10 * _EPS * np.maximum(np.abs(self._lo), np.abs(self._hi))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            scale = (out_hi - out_lo) / rng
        const |= ~np.isfinite(scale)
        scale[const] = 0.0
        offset = out_lo - self._lo * scale
        offset[const] = (out_lo + out_hi) / 2
        return scale, offset

    def _transform(self, *tables: pa.Table) -> pa.Table:
        t = _one_table(tables, type(self).__name__, "transform")
        self._require_model()
        scale, offset = self._scale_offset()
        x = _transform_input(self, t, self._dim, dense=True)
        y = _scale_shift(x, scale, offset, np.empty(x.shape))
        out = from_numpy(y)
        return with_column(t, _scaled_field(self, t, out), out)

    def row_fn(self):
        self._require_model()
        stage, in_col, out_col, d = type(self).__name__, self.input_col, self.output_col, self._dim
        scale, offset = self._scale_offset()

        def fn(row: dict) -> None:
            v = row.get(in_col)
            if not _finite_dense(v, d):
                v = _row_vector(row, in_col, stage, d)
                if isinstance(v, SparseVector):
                    v = v.to_numpy()
            row[out_col] = v * scale + offset

        return fn

    def _dense_row_apply(self):
        """``f(x)`` for one finite 1-D float64 vector of the model's size (see StandardScalerModel)."""
        scale, offset = self._scale_offset()
        return lambda x: x * scale + offset


# --------------------------------------------------------------------------------------------
# MaxAbsScaler


class _MaxAbsScalerParams(HasInputCol, HasOutputCol):
    pass


class MaxAbsScaler(_MaxAbsScalerParams, OnePassEstimator):
    """Scales each dimension to ``[-1, 1]`` by dividing by its maximum absolute value, as Flink ML's
    ``MaxAbsScaler``. Nothing is shifted, so sparsity is kept: sparse input gives sparse output.
    A dimension that is all zero is left unscaled (divided by 1).

    Params: ``input_col`` ("input"), ``output_col`` ("output").

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"x": [[1.0, -8.0], [-2.0, 4.0]]})
        >>> fl.feature.MaxAbsScaler(input_col="x", output_col="y").fit(t).transform(t).column("y").to_pylist()
        [[0.5, -1.0], [-1.0, 0.5]]
    """

    # Fit state: one row with ``max_abs`` (list<double>), the columns' maximum absolute values.

    def _partial(self, t: pa.Table) -> pa.Table:
        x = _partial_input(self, t)
        if x.shape[0] == 0:
            return _empty_state(max_abs=_VEC)
        m = abs(x).max(axis=0).toarray().ravel() if sps.issparse(x) else np.abs(x).max(axis=0)
        return _state_table(max_abs=m.astype(np.float64))

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        rows = _state_rows(type(self).__name__, states, ["max_abs"])
        if not rows:
            return _empty_state(max_abs=_VEC)
        return _state_table(max_abs=np.max([r[0] for r in rows], axis=0))

    def _finish(self, state: pa.Table) -> "MaxAbsScalerModel":
        ((m,),) = _state_rows(type(self).__name__, [_one_row(self, state)], ["max_abs"])
        model = MaxAbsScalerModel()
        self.copy_params_to(model)
        return model.set_model_data(_model_table(max_vector=m))


class MaxAbsScalerModel(_MaxAbsScalerParams, Model):
    """The model fitted by :class:`MaxAbsScaler`.

    Model data: one table with one row and one dense vector column (``fixed_size_list<double>[d]``):
    ``max_vector``, the per-dimension maximum absolute value of the fit data.

    Example:
        >>> import flowlearn as fl
        >>> model = fl.feature.MaxAbsScalerModel(input_col="x", output_col="y")
        >>> model = model.set_model_data({"max_vector": [[4.0, 0.0]]})
        >>> model.transform({"x": [[-1.0, 3.0]]}).column("y").to_pylist()
        [[-0.25, 3.0]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        (m,) = _model_vectors(self, tables, ["max_vector"])
        if (m < 0).any():
            raise ValueError(f"{type(self).__name__}: model data column 'max_vector' has a negative entry at "
                             f"index {int(np.flatnonzero(m < 0)[0])}; it holds maximum absolute values")
        self._scale = np.divide(1.0, m, out=np.ones_like(m), where=m != 0)
        self._dim = len(m)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        t = _one_table(tables, type(self).__name__, "transform")
        self._require_model()
        x = _transform_input(self, t, self._dim, dense=None)
        out = _scale_sparse(x, self._scale) if sps.issparse(x) else from_numpy(x * self._scale)
        return with_column(t, _scaled_field(self, t, out), out)

    def row_fn(self):
        self._require_model()
        stage, in_col, out_col, d, scale = type(self).__name__, self.input_col, self.output_col, self._dim, \
            self._scale

        def fn(row: dict) -> None:
            v = row.get(in_col)
            if not _finite_dense(v, d):
                v = _row_vector(row, in_col, stage, d)
                if isinstance(v, SparseVector):
                    row[out_col] = SparseVector.unchecked(d, v.indices, v.values * scale[v.indices])
                    return
            row[out_col] = v * scale

        return fn

    def _dense_row_apply(self):
        """``f(x)`` for one finite 1-D float64 vector of the model's size (see StandardScalerModel)."""
        scale = self._scale
        return lambda x: x * scale
