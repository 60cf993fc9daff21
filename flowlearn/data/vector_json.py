"""One codec for vectors written as JSON values or text: files, Kafka and the HTTP server use it.

A vector value may be
- a JSON array of numbers: dense, ``[1.0, 0.0, 2.5]``;
- an object ``{"size": 4, "indices": [0, 3], "values": [1.0, 2.5]}``: sparse;
- a string in Alink's notation: dense ``"1.0 0.0 2.5"`` (or ``"[1.0, 0.0, 2.5]"``), sparse
  ``"$4$0:1.0 3:2.5"``.

Sparse indices must be integers in ``[0, size)``, strictly increasing. The writers use the
first two forms (:func:`encode_vector`); pyarrow's JSON reader parses those without Python per
row (:func:`json_type`, :func:`check_vector_column`), and the readers decode any other form
value by value (:func:`vector_column`). Errors name the column, the row (or line) and the rule.

Example:
    >>> decode_vector({"size": 4, "indices": [1, 3], "values": [0.5, 2]})
    SparseVector(4, [1, 3], [0.5, 2.0])
    >>> decode_vector("1 2 3").tolist()
    [1.0, 2.0, 3.0]
    >>> encode_vector(decode_vector("$3$2:1.5"))
    {'size': 3, 'indices': [2], 'values': [1.5]}
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.data.schema import VECTOR_META
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, is_sparse, sparse_arrays

__all__ = ["decode_vector", "encode_vector", "parse_vector", "vector_column", "check_vector_column", "json_type"]

_FORMS = ("write a vector as a JSON array of numbers, {\"size\": n, \"indices\": [...], \"values\": [...]}, "
          "or a string '1.0 2.0 3.0' / '$size$index:value index:value'")


def _numbers(xs: Any, what: str, dtype: type) -> np.ndarray:
    if not isinstance(xs, list) or not all(type(x) in (int, float) for x in xs):
        raise ValueError(f"{what} must be a JSON array of numbers, got {_short(xs)}")
    if dtype is int and not all(type(x) is int for x in xs):
        raise ValueError(f"{what} must be integers, got {_short(xs)}")
    try:
        return np.array(xs, dtype=np.float64 if dtype is float else np.int64)
    except OverflowError:
        raise ValueError(f"{what}: a number is out of range in {_short(xs)}") from None


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 120 else s[:117] + "..."


def _sparse(size: Any, indices: Any, values: Any) -> SparseVector:
    if type(size) is not int:
        raise ValueError(f"sparse vector size must be an integer, got {_short(size)}")
    idx = _numbers(indices, "sparse vector indices", int)
    val = _numbers(values, "sparse vector values", float)
    if idx.size != val.size:
        raise ValueError(f"sparse vector has {idx.size} indices but {val.size} values")
    try:
        return SparseVector(size, idx, val)  # the rule: size in range, indices strictly increasing in [0, size)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a valid sparse vector: {str(e).removeprefix('SparseVector: ')}") from None


def parse_vector(text: str | None, where: str = "") -> np.ndarray | SparseVector | None:
    """Parse one vector written in Alink's text notation.

    Example:
        >>> parse_vector("$4$1:0.5 3:2")
        SparseVector(4, [1, 3], [0.5, 2.0])
        >>> parse_vector("1 2 3").tolist()
        [1.0, 2.0, 3.0]
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"{where}parse_vector reads a vector written as text ('1.0 2.0' or '$size$index:value'), "
                        f"got {type(text).__name__} {_short(text)}; JSON arrays and {{size, indices, values}} objects "
                        f"go through decode_vector")
    s = text.strip()
    try:
        if not s.startswith("$"):
            if s.startswith("[") != s.endswith("]"):
                raise ValueError
            s = s[1:-1] if s.startswith("[") else s
            return np.array([float(t) for t in s.replace(",", " ").split()])
        _, size, rest = s.split("$", 2)
        pairs = [tok.split(":") for tok in rest.replace(",", " ").split()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError
        size, idx, val = int(size), [int(i) for i, _ in pairs], [float(v) for _, v in pairs]
    except ValueError:
        raise ValueError(
            f"{where}cannot parse vector {_short(text)}: write dense vectors as '1.0 2.0 3.0' and sparse ones "
            f"as '$size$index:value index:value'"
        ) from None
    try:
        return _sparse(size, idx, val)
    except ValueError as e:
        raise ValueError(f"{where}{e} in {_short(text)}") from None


def decode_vector(value: Any, column: str = "vector") -> np.ndarray | SparseVector | None:
    """One vector from its JSON value (see the module docstring for the forms); ``None`` stays
    ``None``. Raises ``ValueError`` naming ``column`` and what is wrong."""
    try:
        if value is None:
            return None
        if isinstance(value, list):
            return _numbers(value, "a dense vector", float)
        if isinstance(value, str):
            return parse_vector(value)
        if isinstance(value, dict):
            missing = {"size", "indices", "values"} - set(value)
            if missing:
                raise ValueError(f"a sparse vector object needs the keys size, indices and values; "
                                 f"{sorted(missing)} missing in {_short(value)}")
            return _sparse(value["size"], value["indices"], value["values"])
        raise ValueError(f"not a vector: {_short(value)}; {_FORMS}")
    except ValueError as e:
        raise ValueError(f"column '{column}': {e}") from None


def encode_vector(v: Any) -> list | dict | None:
    """The JSON value of one vector: a list for a dense vector, ``{"size", "indices", "values"}``
    for a ``SparseVector``."""
    if v is None:
        return None
    if isinstance(v, SparseVector):
        return {"size": int(v.size), "indices": np.asarray(v.indices).tolist(), "values": np.asarray(v.values).tolist()}
    return np.asarray(v, dtype=np.float64).tolist()


def json_type(field: pa.Field) -> pa.DataType:
    """The type pyarrow's JSON reader parses a vector column of ``field`` as (the fast path):
    the sparse storage struct for ``sparse_vector``, ``list<double>`` for dense kinds."""
    return SPARSE_VECTOR.storage_type if is_sparse(field.type) else pa.list_(pa.float64())


def _at(where: Callable[[int], str] | None, row: int) -> str:
    return f"{where(row)}, " if where is not None else ""


def vector_column(values: Sequence[Any], field: pa.Field, where: Callable[[int], str] | None = None) -> pa.Array:
    """Decode JSON or text values into a vector column of ``field``'s kind: ``sparse_vector``
    (dense values become sparse), ``vector`` (sparse if any value is sparse, else dense) or a
    dense kind; a dense column takes a sparse value only when the schema gives its size
    (``vector(n)``), so a value's ``size`` never decides how much memory is allocated.
    ``where(row)`` names a row's location in errors."""
    name = field.name
    want = field.type.list_size if pa.types.is_fixed_size_list(field.type) else None
    dense_only = not is_sparse(field.type) and field.metadata != VECTOR_META
    vecs = []
    for i, v in enumerate(values):
        try:
            v = decode_vector(v, name)
        except ValueError as e:
            raise ValueError(f"{_at(where, i)}{e}") from None
        if dense_only and isinstance(v, SparseVector):
            if v.size != want:
                raise ValueError(f"{_at(where, i)}column '{name}': a sparse vector of size {v.size} in a dense column"
                                 + (f" of vector({want})" if want is not None else
                                    "; declare the column sparse_vector, or vector(n) to densify them"))
            v = v.to_numpy()
        vecs.append(v)
    if dense_only or (not is_sparse(field.type) and not any(isinstance(v, SparseVector) for v in vecs)):
        return check_vector_column(pa.array(vecs, pa.list_(pa.float64())), field, where)
    storage = pa.array([None if v is None else encode_vector(v if isinstance(v, SparseVector) else _to_sparse(v))
                        for v in vecs], SPARSE_VECTOR.storage_type)
    return check_vector_column(pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage), field.with_type(SPARSE_VECTOR),
                               where)


def _to_sparse(d: np.ndarray) -> SparseVector:
    nz = np.flatnonzero(d)
    return SparseVector.unchecked(len(d), nz.astype(np.int32), d[nz])


def _first(mask: np.ndarray) -> int | None:
    hit = np.flatnonzero(mask)
    return int(hit[0]) if hit.size else None


def _row_of_null_element(lists: pa.Array) -> int | None:
    """The first row of a list array (without null rows) holding a null element."""
    flat = lists.flatten()
    if not flat.null_count:
        return None
    ends = np.cumsum(np.asarray(pc.list_value_length(lists)))
    return int(np.searchsorted(ends, _first(~np.asarray(flat.is_valid())), side="right"))


def check_vector_column(arr: pa.Array | pa.ChunkedArray, field: pa.Field,
                        where: Callable[[int], str] | None = None) -> pa.Array:
    """Validate a vector column parsed by pyarrow as :func:`json_type` (or built by
    :func:`vector_column`) and return it in ``field``'s type. Vectorized: no Python per row."""
    name = field.name
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    valid = np.asarray(arr.is_valid())
    rows = np.flatnonzero(valid)  # the checks run on the present vectors; rows[r] is the row of the r-th

    def fail(r: int, what: str) -> None:
        raise ValueError(f"{_at(where, int(rows[r]))}column '{name}': {what}")

    if is_sparse(field.type):
        if not isinstance(arr.type, pa.ExtensionType):
            arr = pa.ExtensionArray.from_storage(SPARSE_VECTOR, arr)
        sparse_arrays(arr, name)  # the rule of sparse vectors, and no missing parts
        return arr
    present = arr.filter(pa.array(valid))
    r = _row_of_null_element(present)
    if r is not None:
        fail(r, "a dense vector holds a null element")
    lengths = np.asarray(pc.list_value_length(present))
    want = field.type.list_size if pa.types.is_fixed_size_list(field.type) else None
    size = want if want is not None or not lengths.size else int(lengths[0])
    r = _first(lengths != size) if lengths.size else None
    if r is not None:
        first = where(int(rows[0])) if where is not None else f"row {int(rows[0])}"
        fail(r, f"a vector of size {lengths[r]}, the schema says vector({want})" if want is not None else
             f"a vector of size {lengths[r]}, the column's first vector ({first}) has size {size}")
    if size is None or pa.types.is_fixed_size_list(arr.type):
        return arr
    return arr.cast(pa.list_(pa.float64(), size))
