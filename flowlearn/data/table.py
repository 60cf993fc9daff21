"""``fl.table``: one function that turns user data into a ``pyarrow.Table``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.data.schema import VECTOR_META, parse_schema
from flowlearn.linalg import SparseVector, from_csr, from_numpy, is_sparse, vectors_to_array

__all__ = ["table", "is_table_like"]


def is_table_like(obj: Any) -> bool:
    if isinstance(obj, (pa.Table, pa.RecordBatch, Mapping)):
        return True
    mod = type(obj).__module__
    if mod.startswith("pandas") or mod.startswith("polars"):
        return True
    return isinstance(obj, list) and (not obj or isinstance(obj[0], Mapping))


def _looks_like_vectors(values: Any) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim == 2
    if sps.issparse(values):
        return True
    if isinstance(values, (list, tuple)):
        for v in values:
            if v is None:
                continue
            if isinstance(v, (list, tuple)):  # a list of numbers is a vector; of strings it is not
                if not v:
                    continue  # an empty list says nothing about its element type
                return all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in v)
            return isinstance(v, (np.ndarray, SparseVector)) or sps.issparse(v)
    return False


def _column(values: Any, name: str, field: pa.Field | None) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (str, bytes, Mapping, set, frozenset)) or not hasattr(values, "__iter__") or \
            (isinstance(values, np.ndarray) and values.ndim == 0):
        raise TypeError(f"column '{name}' must be a sequence of values (a list or an array), "
                        f"got {type(values).__name__}")
    try:
        arr = _arrow_column(values, name, field)
    except (ValueError, TypeError, OverflowError, IndexError, pa.ArrowException) as e:
        # one message naming the column, whichever converter (NumPy, pyarrow, ours) refused the values
        if type(e) in (ValueError, TypeError) and f"'{name}'" in str(e):
            raise
        raise ValueError(f"column '{name}': cannot convert values to an Arrow array ({e})") from None
    return _cast(arr, field, name) if field is not None else arr


def _arrow_column(values: Any, name: str, field: pa.Field | None) -> pa.Array | pa.ChunkedArray:
    want = field.type if field is not None else None
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if sps.issparse(values):
        return from_csr(values)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return from_numpy(values)
    if _looks_like_vectors(values) or (want is not None and _is_vector_field(field)):
        vals = list(values)
        if want is not None and is_sparse(want):
            vals = [
                v if v is None or isinstance(v, SparseVector) or sps.issparse(v) else _dense_to_sparse(v)
                for v in vals
            ]
        return vectors_to_array(vals, name)
    values = values if not isinstance(values, tuple) else list(values)
    try:
        return pa.array(values)
    except pa.ArrowInvalid:
        # pyarrow refuses ints beyond 2**53 among floats; NumPy (and so fl.table) makes them doubles
        if isinstance(values, list) and all(type(v) in (int, float) or v is None for v in values):
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        raise


def _dense_to_sparse(v: Any) -> SparseVector:
    d = np.asarray(v, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"{v!r} is not a vector of numbers")
    nz = np.flatnonzero(d)
    return SparseVector(len(d), nz, d[nz])


def _is_vector_field(field: pa.Field) -> bool:
    t = field.type
    return is_sparse(t) or pa.types.is_list(t) or pa.types.is_fixed_size_list(t)


def _cast(arr: pa.Array | pa.ChunkedArray, field: pa.Field, name: str):
    want = field.type
    have = arr.type
    if have == want:
        return arr
    generic_vector = field.metadata == VECTOR_META
    if generic_vector and (is_sparse(have) or pa.types.is_fixed_size_list(have)):
        return arr
    if pa.types.is_list(want) and pa.types.is_fixed_size_list(have):
        return arr
    if pa.types.is_fixed_size_list(want) and pa.types.is_fixed_size_list(have) and have.list_size != want.list_size:
        raise ValueError(f"column '{name}' holds vectors of size {have.list_size}, the schema says {want.list_size}")
    try:
        return arr.cast(want)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ValueError(f"column '{name}': cannot convert {have} to {want} as the schema asks ({e})") from None


def table(obj: Any, schema: str | pa.Schema | None = None) -> pa.Table:
    """Turn ``obj`` into a ``pyarrow.Table``.

    Accepts a pyarrow Table or RecordBatch, a pandas or polars DataFrame, a dict of columns, or
    a list of row dicts. Vector values (lists, NumPy rows, 2-D arrays, ``SparseVector``,
    SciPy sparse matrices) become dense or sparse vector columns. With ``schema`` (a schema
    string or ``pyarrow.Schema``) columns are selected in schema order and converted.

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"x": [1.0, 2.0], "v": [[1, 2], [3, 4]]})
        >>> t.schema.field("v").type
        FixedSizeListType(fixed_size_list<item: double>[2])
        >>> fl.table([{"age": 3, "city": "Oslo"}], schema="age double, city string").column("age").type
        DataType(double)
    """
    sch = parse_schema(schema) if schema is not None else None
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])
    mod = type(obj).__module__
    if mod.startswith("polars"):
        obj = obj.to_arrow()
    elif mod.startswith("pandas"):
        cols = {}
        for c in obj.columns:
            s = obj[c]
            if s.dtype == object and _looks_like_vectors(list(s.values)):
                cols[str(c)] = list(s.values)
            else:
                arr = pa.Array.from_pandas(s)
                # pandas >= 3 hands strings over as large_string; kernels work on string
                cols[str(c)] = arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr
        obj = cols
    if isinstance(obj, list):
        names: list[str] = []
        for i, row in enumerate(obj):
            if not isinstance(row, Mapping):
                raise TypeError(f"fl.table: row {i} is {type(row).__name__}, expected a dict of column values")
            for k in row:
                if k not in names:
                    names.append(k)
        if obj and not names and sch is None:
            raise ValueError(f"fl.table: the {len(obj)} rows have no columns (every row dict is empty)")
        if sch is not None:
            names = sch.names + [n for n in names if n not in sch.names]
        obj = {n: [row.get(n) for row in obj] for n in names}
    if isinstance(obj, pa.Table):
        if sch is None:
            return obj
        missing = [n for n in sch.names if n not in obj.column_names]
        if missing:
            raise ValueError(f"fl.table: columns {missing} named in the schema are missing; the data has {obj.column_names}")
        cols = [_column(obj.column(f.name), f.name, f) for f in sch]
        return pa.Table.from_arrays([_as_chunked(c) for c in cols], names=sch.names)
    if isinstance(obj, Mapping):
        if sch is not None:
            missing = [n for n in sch.names if n not in obj]
            if missing:
                raise ValueError(f"fl.table: columns {missing} named in the schema are missing; the data has {list(obj)}")
            names = sch.names
        else:
            names = [str(k) for k in obj]
            if len(set(names)) < len(names):
                raise ValueError(f"fl.table: column names {[k for k in obj]} name a column more than once")
            obj = dict(zip(names, obj.values()))
        arrays = [_as_chunked(_column(obj[n], n, sch.field(n) if sch is not None else None)) for n in names]
        lengths = {len(a) for a in arrays}
        if len(lengths) > 1:
            raise ValueError(f"fl.table: columns have different lengths {dict(zip(names, map(len, arrays)))}")
        return pa.Table.from_arrays(arrays, names=names)
    raise TypeError(
        f"fl.table cannot convert {type(obj).__name__}; pass a pyarrow Table/RecordBatch, a pandas or polars "
        f"DataFrame, a dict of columns or a list of row dicts"
    )


def _as_chunked(a: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return a if isinstance(a, pa.ChunkedArray) else pa.chunked_array([a], type=a.type)


def empty_like(schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches([], schema=schema)

