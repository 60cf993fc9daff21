"""Helpers shared by the text and vector feature stages (``text.py``, ``term_frequency.py``,
``vectors.py``): schema checks for ``output_schema``, list-of-string columns and row values.

Example:
    >>> import pyarrow as pa
    >>> vector_out_type(pa.field("v", pa.list_(pa.float64(), 3)), "DCT", "input_col", sparse=False)
    (FixedSizeListType(fixed_size_list<item: double>[3]), 3)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.api import SchemaError
from flowlearn.data.schema import column_size
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, dense_vector_type, is_sparse, is_vector_type

__all__ = ["SchemaError", "one_table", "put_field", "schema_field", "vector_out_type", "combined", "string_array",
           "string_list_array", "is_string_list", "list_from_parts", "row_value", "row_vector", "SPARSE_VECTOR"]


def one_table(tables: tuple, stage: str, what: str = "transform") -> pa.Table:
    if len(tables) != 1:
        raise TypeError(f"{stage}.{what} takes exactly one input table, got {len(tables)}")
    return tables[0]


def put_field(schema: pa.Schema, field: pa.Field) -> pa.Schema:
    """``schema`` with ``field`` (replacing a field of that name in place, else appended)."""
    i = schema.get_field_index(field.name)
    return schema.set(i, field) if i >= 0 else schema.append(field)


def schema_field(schema: pa.Schema, name: str, stage: str, param: str) -> pa.Field:
    i = schema.get_field_index(name)
    if i < 0:
        raise SchemaError(f"{stage}: input column '{name}' (parameter '{param}') is missing; the input has columns "
                          f"{schema.names}. Set {param} to one of them or add the column.")
    return schema.field(i)


def vector_out_type(field: pa.Field, stage: str, param: str, sparse: bool | None = None,
                    size: int | None = None) -> tuple[pa.DataType, int | None]:
    """The type and size of a vector output computed from vector input ``field``: sparse for sparse
    input (or as ``sparse`` says), else dense of ``size`` (default: the input's size). A dense output
    whose size the schema does not tell is declared as a variable ``list<double>``."""
    if not is_vector_type(field.type):
        raise SchemaError(f"{stage}: column '{field.name}' (parameter '{param}') has type {field.type}, expected a "
                          f"vector column (dense fixed_size_list<double> or sparse); build one with "
                          f"fl.feature.VectorAssembler")
    if size is None:
        size = column_size(field)
    if sparse is None:
        sparse = is_sparse(field.type)
    if sparse:
        return SPARSE_VECTOR, size
    return (dense_vector_type(size) if size is not None else pa.list_(pa.float64())), size


def combined(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        return pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], col.type)
    return col


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def is_string_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
        _is_string(t.value_type) or pa.types.is_null(t.value_type))


def string_array(t: pa.Table, name: str, stage: str, param: str = "input_col") -> pa.Array:
    """A string column as one ``string`` array (nulls kept); other types raise naming the column."""
    if name not in t.column_names:
        schema_field(t.schema, name, stage, param)
    arr = combined(t.column(name))
    if pa.types.is_dictionary(arr.type) and _is_string(arr.type.value_type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    if not _is_string(arr.type):
        raise TypeError(f"{stage}: column '{name}' (parameter '{param}') has type {arr.type}, expected a string "
                        f"column")
    return arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr


def string_list_array(t: pa.Table, name: str, stage: str, param: str = "input_col") -> pa.ListArray:
    """A column of string lists as one ``list<string>`` array (null lists and null strings kept)."""
    if name not in t.column_names:
        schema_field(t.schema, name, stage, param)
    arr = combined(t.column(name))
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.list_(pa.string()))
    if _is_list(arr.type) and not is_string_list(arr.type) and len(arr.flatten()) == 0:
        # lists without a single element, typed otherwise (fl.table reads [[]] as an empty vector)
        return list_from_parts(np.zeros(len(arr), dtype=np.int64), pa.array([], pa.string()),
                               arr.is_valid() if arr.null_count else None)
    if not is_string_list(arr.type):
        raise TypeError(f"{stage}: column '{name}' (parameter '{param}') has type {arr.type}, expected a column of "
                        f"string lists (list<string>), such as Tokenizer's output")
    if arr.type != pa.list_(pa.string()):
        arr = arr.cast(pa.list_(pa.string()))
    return arr


def list_from_parts(counts: np.ndarray, values: pa.Array, valid: pa.Array | None) -> pa.ListArray:
    """A list array whose row ``i`` holds the next ``counts[i]`` entries of ``values``; rows where
    ``valid`` is False are null (and hold no entries)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    mask = None
    if valid is not None:
        m = np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
        if not m.all():
            mask = pa.array(~m)
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def row_value(row: dict, col: str, stage: str, param: str) -> Any:
    """The value of ``col`` in a row dict; a missing column raises naming it."""
    try:
        return row[col]
    except KeyError:
        raise ValueError(f"{stage}: input column '{col}' (parameter '{param}') is missing from the row; the row has "
                         f"keys {list(row)}") from None


def row_vector(row: dict, col: str, stage: str, param: str = "input_col") -> np.ndarray | SparseVector:
    """One row's vector (a 1-D float64 array or a ``SparseVector``), checked as the batch path checks
    a column: not null, numbers only, finite."""
    v = row_value(row, col, stage, param)
    if v is None:
        raise ValueError(f"{stage}: column '{col}' is null in this row; drop or impute it first")
    if isinstance(v, SparseVector):
        vals = v.values
    else:
        try:
            v = vals = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{stage}: column '{col}' holds {type(v).__name__}, expected a vector (list, 1-D numpy "
                            f"array or fl.linalg.SparseVector)") from None
        if v.ndim != 1:
            raise TypeError(f"{stage}: column '{col}' holds an array of shape {v.shape}, expected a 1-D vector")
    if not np.isfinite(vals).all():
        raise ValueError(f"{stage}: column '{col}' has NaN or infinity in this row; impute or filter such rows first")
    return v
