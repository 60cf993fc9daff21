"""Column access for kernels, with errors that name the stage, column, row and fix.

Every algorithm reads its inputs through these helpers so that bad input gets the same
kind of message everywhere.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"x": [1.0, float("nan")]})
    >>> numeric_column(t, "x", "Imputer", allow_nan=True).tolist()
    [1.0, nan]
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sps

from flowlearn.linalg import is_sparse, is_vector_type, to_csr, to_numpy

__all__ = [
    "require_column",
    "vector_column",
    "numeric_column",
    "string_column",
    "check_finite",
    "check_squares",
    "with_column",
    "first_bad_row",
]


def require_column(t: pa.Table, name: str, stage: str, param: str | None = None) -> pa.ChunkedArray:
    if name not in t.column_names:
        via = f" (parameter '{param}')" if param else ""
        raise ValueError(
            f"{stage}: input column '{name}'{via} is missing; the input has columns {t.column_names}. "
            f"Set {param or 'the column parameter'} to one of them or add the column."
        )
    return t.column(name)


def first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_finite(x: np.ndarray | sps.spmatrix, name: str, stage: str) -> None:
    """Raise naming the first row with NaN or infinity."""
    data = x.data if sps.issparse(x) else x
    # One sum is cheaper than an isfinite pass (NaN and inf propagate through it); only a
    # non-finite sum (or one that overflowed: errstate keeps that quiet) pays for locating the row.
    with np.errstate(over="ignore", invalid="ignore"):
        total = data.sum() if data.size else 0.0
    if not np.isfinite(total) and not np.isfinite(data).all():
        if sps.issparse(x):
            bad = ~np.isfinite(x.data)
            row = int(np.searchsorted(x.indptr, np.flatnonzero(bad)[0], side="right") - 1)
        else:
            bad_rows = ~np.isfinite(x) if x.ndim == 1 else ~np.isfinite(x).all(axis=1)
            row = first_bad_row(bad_rows)
        raise ValueError(
            f"{stage}: column '{name}' has NaN or infinity at row {row}; impute or filter such rows first "
            f"(for example with fl.feature.Imputer)"
        )


def check_squares(x: np.ndarray | sps.spmatrix, name: str, stage: str, param: str | None = None,
                  sums: str = "sums of squares") -> None:
    """Refuse finite values whose sum of squares overflows float64, naming the row (and index) of
    the largest: a fit summing squares or products of them (variances, distances, gradients) would
    get infinities and return a meaningless model."""
    data = x.data if sps.issparse(x) else x
    flat = data.reshape(-1)
    with np.errstate(over="ignore"):
        if np.isfinite(np.dot(flat, flat)):
            return
    k = int(np.argmax(np.abs(flat)))
    if sps.issparse(x):
        row, where = int(np.searchsorted(x.indptr, k, side="right") - 1), f", index {int(x.indices[k])}"
    elif data.ndim == 2:
        row, index = divmod(k, data.shape[1])
        where = f", index {index}"
    else:
        row, where = k, ""
    via = f" (parameter '{param}')" if param else ""
    raise ValueError(f"{stage}: column '{name}'{via} holds {float(flat[k])!r} at row {row}{where}; values this "
                     f"large overflow float64 in the model's {sums} (they must stay well below 1e154); divide "
                     f"the column by a constant or scale it (e.g. MaxAbsScaler) first")


def vector_column(t: pa.Table, name: str, stage: str, param: str | None = None, dense: bool | None = None,
                  size: int | None = None, finite: bool = True) -> np.ndarray | sps.csr_matrix:
    """A vector column as a 2-D array (dense) or CSR matrix (sparse).

    ``dense=None`` keeps the column's own layout, True/False converts. ``size`` checks the length.
    """
    col = require_column(t, name, stage, param)
    if not is_vector_type(col.type):
        raise TypeError(
            f"{stage}: column '{name}' has type {col.type}, expected a vector column; build one with "
            f"fl.feature.VectorAssembler"
        )
    sparse_in = is_sparse(col.type)
    if dense is None:
        dense = not sparse_in
    x = to_numpy(col, name, stage) if dense else to_csr(col, name, stage)
    if size is not None and x.shape[0] and x.shape[1] != size:
        raise ValueError(
            f"{stage}: column '{name}' holds vectors of size {x.shape[1]}, the model expects size {size} "
            f"(row 0); transform data with the same feature pipeline the model was fitted on"
        )
    if finite:
        check_finite(x, name, stage)
    return x


def numeric_column(t: pa.Table, name: str, stage: str, param: str | None = None, allow_nan: bool = False,
                   allow_null: bool = False) -> np.ndarray:
    """A numeric column as float64 (nulls become NaN when ``allow_null``)."""
    col = require_column(t, name, stage, param)
    if pa.types.is_null(col.type) and allow_null:
        return np.full(len(col), np.nan)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)
            or pa.types.is_decimal(col.type)):
        raise TypeError(f"{stage}: column '{name}' has type {col.type}, expected a numeric column")
    if col.null_count and not allow_null:
        row = first_bad_row(~np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False)))
        raise ValueError(f"{stage}: column '{name}' has a null at row {row}; impute or filter nulls first")
    # safe=False: integers beyond 2**53 become the nearest double (as NumPy's astype does), not an error
    x = col.cast(pa.float64(), safe=False).to_numpy() if col.num_chunks != 1 or col.null_count else \
        col.chunk(0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if not allow_nan:
        check_finite(x, name, stage)
    return x


def string_column(t: pa.Table, name: str, stage: str, param: str | None = None) -> pa.ChunkedArray:
    col = require_column(t, name, stage, param)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    return col


def with_column(t: pa.Table, name: str | pa.Field, values: Any) -> pa.Table:
    """``t`` with column ``name`` set to ``values`` (replaced if it exists, else appended). ``name``
    may be a field, whose metadata (a vector's declared size and feature names) the column gets."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if isinstance(name, pa.Field):
        field = name.with_type(arr.type) if name.type != arr.type else name
        name = field.name
    else:
        field = pa.field(name, arr.type)
    if name in t.column_names:
        return t.set_column(t.column_names.index(name), field, arr)
    return t.append_column(field, arr)


def dense_row_vector(row: dict, col: str, stage: str, size: int, param: str = "features_col") -> np.ndarray:
    """One row's vector (a list, an array or a ``SparseVector``) as a dense float64 array of
    ``size`` entries, checked as a model's batch path checks its column: present, not null, of
    the model's size, finite; errors name the stage, column and rule.

    Example:
        >>> dense_row_vector({"f": [1.0, 2.0]}, "f", "KMeansModel", 2)
        array([1., 2.])
    """
    from flowlearn.linalg import SparseVector

    try:
        v: Any = row[col]
    except KeyError:
        raise ValueError(f"{stage}: input column '{col}' (parameter '{param}') is missing from the row; it has "
                         f"{sorted(row)}") from None
    if v is None:
        raise ValueError(f"{stage}: column '{col}' is null in this row; drop or impute it first")
    x = v.to_numpy() if isinstance(v, SparseVector) else np.asarray(v, dtype=np.float64)
    if x.shape != (size,):
        raise ValueError(f"{stage}: column '{col}' holds a vector of size {x.size}, the model expects size {size}; "
                         f"transform data with the same feature pipeline the model was fitted on")
    if not np.isfinite(x).all():
        raise ValueError(f"{stage}: column '{col}' has NaN or infinity at row 0; impute or filter such rows first "
                         f"(for example with fl.feature.Imputer)")
    return x
