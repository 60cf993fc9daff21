"""Vector column types and conversions between Arrow, NumPy and SciPy.

Dense vector columns are ``fixed_size_list<double>[n]`` (variable ``list<double>`` is
accepted on input). Sparse vector columns use the Arrow extension type
``flowlearn.sparse_vector`` with storage
``struct<size: int32, indices: list<int32>, values: list<double>>``; it is registered
with Arrow on import, so it round-trips through Parquet and IPC.

Kernels see a dense column as a 2-D ``numpy.ndarray`` and a sparse column as a
``scipy.sparse.csr_matrix``.

Example:
    >>> import numpy as np, flowlearn as fl
    >>> col = fl.linalg.from_numpy(np.eye(2))
    >>> fl.linalg.to_numpy(col).shape
    (2, 2)
    >>> sp = fl.linalg.from_csr(fl.linalg.to_csr(col))
    >>> fl.linalg.is_sparse(sp.type)
    True
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

__all__ = [
    "SparseVector",
    "SparseVectorType",
    "SPARSE_VECTOR",
    "dense_vector_type",
    "is_vector_type",
    "is_dense",
    "is_sparse",
    "vector_size",
    "to_numpy",
    "to_csr",
    "sparse_arrays",
    "sparse_problem",
    "from_numpy",
    "from_csr",
    "vectors_to_array",
    "row_to_numpy",
]

_STORAGE = pa.struct(
    [
        pa.field("size", pa.int32()),
        pa.field("indices", pa.list_(pa.int32())),
        pa.field("values", pa.list_(pa.float64())),
    ]
)


class SparseVectorType(pa.ExtensionType):
    """Arrow extension type ``flowlearn.sparse_vector`` for sparse vectors."""

    def __init__(self) -> None:
        super().__init__(_STORAGE, "flowlearn.sparse_vector")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized) -> "SparseVectorType":
        return cls()

    def __reduce__(self):  # pyarrow needs this for pickling in its own IPC paths
        return SparseVectorType, ()


INT32_MAX = 2**31 - 1  # sizes and indices of the sparse column type are int32

SPARSE_VECTOR = SparseVectorType()
try:
    pa.register_extension_type(SPARSE_VECTOR)
except pa.ArrowKeyError:  # already registered (module reloaded)
    pass


_ORDER_FIX = ("sort each vector's indices together with their values and add up the values of duplicate "
              "indices (fl.linalg.from_csr does both for a SciPy matrix)")


def _size_problem(size: int) -> str:
    return f"size {size} is out of range; a sparse vector's size lies in [0, 2**31 - 1]"


def _order_problem(prev: int, cur: int) -> str:
    what = f"index {cur} appears twice" if cur == prev else f"index {cur} follows {prev}"
    return f"sparse indices must be strictly increasing, but {what}; {_ORDER_FIX}"


@dataclass(frozen=True, eq=False)
class SparseVector:
    """One sparse vector: ``size`` in [0, 2**31 - 1], strictly increasing ``indices`` in [0, size)
    and their ``values``, as Spark MLlib's ``SparseVector`` requires; anything else raises.

    Example:
        >>> v = SparseVector(4, [1, 3], [0.5, 2.0])
        >>> v.to_numpy().tolist()
        [0.0, 0.5, 0.0, 2.0]
        >>> SparseVector(4, [3, 1], [2.0, 0.5])
        Traceback (most recent call last):
        ...
        ValueError: SparseVector: sparse indices must be strictly increasing, but index 1 follows 3; sort each vector's indices together with their values and add up the values of duplicate indices (fl.linalg.from_csr does both for a SciPy matrix)
    """

    size: int
    indices: np.ndarray
    values: np.ndarray

    def __init__(self, size: int, indices: Sequence[int], values: Sequence[float]) -> None:
        try:
            size = operator.index(size)
        except TypeError:
            raise TypeError(f"SparseVector: size must be an integer, got {size!r:.80}") from None
        if not 0 <= size <= INT32_MAX:
            raise ValueError(f"SparseVector: {_size_problem(size)}")
        idx = np.asarray(indices)
        if idx.size and idx.dtype.kind not in "iu":  # an empty list comes as float64
            raise TypeError(f"SparseVector: indices must be integers, got {idx.dtype} values {indices!r:.80}")
        try:
            val = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"SparseVector: values must be numbers, got {values!r:.80}") from None
        if idx.shape != val.shape or idx.ndim != 1:
            raise ValueError(
                f"SparseVector: indices ({idx.shape}) and values ({val.shape}) must be 1-D of equal length"
            )
        # strictly increasing, so the ends decide the range; sparse_problem words a refusal
        if idx.size and not (idx[0] >= 0 and idx[-1] < size and bool((idx[1:] > idx[:-1]).all())):
            problem = sparse_problem(np.array([size]), np.array([0, idx.size]), idx)
            raise ValueError(f"SparseVector: {problem[1]}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "indices", idx.astype(np.int32, copy=False))
        object.__setattr__(self, "values", val)

    @classmethod
    def unchecked(cls, size: int, indices: np.ndarray, values: np.ndarray) -> "SparseVector":
        """Build without validation, for row kernels whose indices are correct by construction
        (derived from vectors or columns that were checked); never for data from outside."""
        v = object.__new__(cls)
        d = v.__dict__  # frozen dataclass: write the instance dict directly (fastest)
        d["size"] = size
        d["indices"] = indices
        d["values"] = values
        return v

    def to_numpy(self) -> np.ndarray:
        out = np.zeros(self.size)
        out[self.indices] = self.values
        return out

    def dot(self, w: np.ndarray) -> float:
        return float(w[self.indices] @ self.values)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SparseVector)
            and self.size == other.size
            and np.array_equal(self.indices, other.indices)
            and np.array_equal(self.values, other.values)
        )

    def __repr__(self) -> str:
        return f"SparseVector({self.size}, {self.indices.tolist()}, {self.values.tolist()})"


def dense_vector_type(size: int) -> pa.DataType:
    """The Arrow type of a dense vector column of ``size`` elements."""
    return pa.list_(pa.float64(), int(size))


def is_sparse(t: pa.DataType) -> bool:
    return isinstance(t, SparseVectorType)


def is_dense(t: pa.DataType) -> bool:
    return (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)) and (
        pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
    )


def is_vector_type(t: pa.DataType) -> bool:
    return is_sparse(t) or is_dense(t)


def _combine(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            return pa.array([], type=col.type)
        return pa.concat_arrays(col.chunks)
    return col


def vector_size(col: pa.Array | pa.ChunkedArray) -> int | None:
    """Vector length of a column: fixed for dense fixed-size lists, else read off the first row."""
    t = col.type
    if pa.types.is_fixed_size_list(t):
        return t.list_size
    arr = _combine(col)
    if len(arr) == 0:
        return None
    if is_sparse(t):
        sizes = arr.storage.field("size")
        return int(sizes[0].as_py()) if sizes[0].is_valid else None
    first = arr[0]
    return len(first) if first.is_valid else None


def _numbers(values: pa.Array) -> np.ndarray:
    """A numeric Arrow array as float64; float64 without nulls is a view of its buffer (no pyarrow
    conversion, which would import pandas on a cold start)."""
    if values.type == pa.float64() and values.null_count == 0:
        return np.frombuffer(values.buffers()[1], dtype=np.float64, count=len(values), offset=values.offset * 8)
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def to_numpy(col: pa.Array | pa.ChunkedArray, name: str = "vector", stage: str = "") -> np.ndarray:
    """A vector column as a 2-D float64 array (rows x size); zero-copy for fixed-size lists
    without nulls. Every vector layout is accepted: fixed-size lists, lists, large lists and list
    views of any numeric type, and sparse vectors (densified). Nulls raise ``ValueError`` naming
    the row.

    Example (the probability of class 1 of a classifier's output):
        >>> import pyarrow as pa
        >>> to_numpy(pa.array([[0.9, 0.1], [0.2, 0.8]], pa.list_(pa.float64(), 2)))[:, 1]
        array([0.1, 0.8])
    """
    arr = _combine(col)
    t = arr.type
    where = f"{stage}: " if stage else ""
    if arr.null_count:
        row = int(np.flatnonzero(~np.asarray(arr.is_valid()))[0])
        raise ValueError(f"{where}column '{name}' has a null vector at row {row}; drop or impute it first")
    if any(getattr(pa.types, f, lambda _: False)(t) for f in ("is_list_view", "is_large_list_view")):
        # list views (pyarrow >= 16): gather each row's values by its offset (cast to list is broken
        # in some pyarrow versions)
        sizes, offsets = arr.sizes.to_numpy(), arr.offsets.to_numpy()
        if len(arr) and not np.all(sizes == sizes[0]):
            bad = int(np.flatnonzero(sizes != sizes[0])[0])
            raise ValueError(f"{where}column '{name}' has vectors of different sizes: row 0 has {sizes[0]}, row {bad} "
                             f"has {sizes[bad]}; all vectors in a column must have the same size")
        d = int(sizes[0]) if len(arr) else 0
        values = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return values[offsets[:, None].astype(np.int64) + np.arange(d)] if d else np.zeros((len(arr), 0))
    if is_sparse(t):
        return to_csr(arr, name, stage).toarray()
    if len(arr) == 0:
        return np.zeros((0, t.list_size if pa.types.is_fixed_size_list(t) else 0))
    if pa.types.is_fixed_size_list(t):
        n = t.list_size
        # flatten() honours the slice's offset and length (arr.values would not) and is zero-copy
        flat = _numbers(arr.flatten())
        return flat.reshape(len(arr), n) if n else np.zeros((len(arr), 0))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy()
        lengths = np.diff(offsets)
        if len(arr) == 0:
            return np.zeros((0, 0))
        if not np.all(lengths == lengths[0]):
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            raise ValueError(
                f"{where}column '{name}' has vectors of different sizes: row 0 has {lengths[0]}, "
                f"row {bad} has {lengths[bad]}; all vectors in a column must have the same size"
            )
        flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return flat.reshape(len(arr), int(lengths[0]))
    raise TypeError(f"{where}column '{name}' has type {t}, expected a vector column (dense or sparse)")


def to_csr(col: pa.Array | pa.ChunkedArray, name: str = "vector", stage: str = "") -> sps.csr_matrix:
    """A vector column as a CSR matrix (dense columns are converted)."""
    arr = _combine(col)
    t = arr.type
    where = f"{stage}: " if stage else ""
    if not is_sparse(t):
        return sps.csr_matrix(to_numpy(arr, name, stage))
    if arr.null_count:
        row = int(np.flatnonzero(~np.asarray(arr.is_valid()))[0])
        raise ValueError(f"{where}column '{name}' has a null vector at row {row}; drop or impute it first")
    n = len(arr)
    if n == 0:
        return sps.csr_matrix((0, 0))
    sizes, indptr, indices, values = sparse_arrays(arr, name, stage)
    size = int(sizes[0])
    if not np.all(sizes == size):
        bad = int(np.flatnonzero(sizes != size)[0])
        raise ValueError(
            f"{where}column '{name}' has vectors of different sizes: row 0 has {size}, "
            f"row {bad} has {int(sizes[bad])}; all vectors in a column must have the same size"
        )
    m = sps.csr_matrix((values, indices, indptr), shape=(n, size))
    m.has_canonical_format = True  # checked above: SciPy need not look (nor sort the read-only arrays)
    return m


def sparse_problem(sizes: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                   valid: np.ndarray | None = None) -> tuple[int, str] | None:
    """The first row breaking the rule of sparse vectors, with the rule: ``(row, reason)``, or None.

    Row ``r`` has size ``sizes[r]`` and indices ``indices[indptr[r]:indptr[r + 1]]`` (``indptr``
    starts at 0); the rule is size in [0, 2**31 - 1] and indices strictly increasing in
    [0, size). Rows where ``valid`` is False are not looked at. A few NumPy passes over the flat
    indices, without a Python loop per row.
    """
    n = len(sizes)
    if n == 0:
        return None
    sizes = np.asarray(sizes)
    lengths = None if valid is None else np.diff(indptr)
    if valid is None:
        lo, hi = int(sizes.min()), int(sizes.max())
    else:
        lo, hi = (int(sizes[valid].min()), int(sizes[valid].max())) if valid.any() else (0, 0)
    if lo < 0 or hi > INT32_MAX:
        bad = (sizes < 0) | (sizes > INT32_MAX)
        r = int(np.flatnonzero(bad if valid is None else bad & valid)[0])
        return r, _size_problem(int(sizes[r]))
    nnz = int(indptr[-1])
    if nnz == 0:
        return None
    indices = indices[:nnz]
    if valid is None and lo == hi:  # the usual column: one size, so two reductions decide the range
        out = None if indices.min() >= 0 and indices.max() < lo else (indices < 0) | (indices >= lo)
    else:
        if lengths is None:
            lengths = np.diff(indptr)
        out = (indices < 0) | (indices >= np.repeat(sizes, lengths))
        if valid is not None:
            out &= np.repeat(valid, lengths)
        if not out.any():
            out = None
    if out is not None:
        p = int(np.flatnonzero(out)[0])
        r = int(np.searchsorted(indptr, p, side="right") - 1)
        return r, (f"sparse index {int(indices[p])} is out of range for size {int(sizes[r])}; indices must lie in "
                   f"[0, {int(sizes[r])})")
    # down[p]: entry p does not follow entry p - 1 upwards; a row's first entry follows nothing
    down = np.empty(nnz + 1, dtype=bool)
    down[0] = False
    np.less_equal(indices[1:], indices[:-1], out=down[1:nnz])
    down[indptr[:-1]] = False  # row starts (n of them, nnz for trailing empty rows: the spare slot)
    down = down[:nnz]
    if valid is not None:
        down &= np.repeat(valid, lengths)
    if down.any():
        p = int(np.flatnonzero(down)[0])
        r = int(np.searchsorted(indptr, p, side="right") - 1)
        return r, _order_problem(int(indices[p - 1]), int(indices[p]))
    return None


def _first_invalid(mask: np.ndarray, valid: np.ndarray | None) -> int | None:
    if valid is not None:
        mask = mask & valid
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def sparse_arrays(col: pa.Array | pa.ChunkedArray, name: str = "vector",
                  stage: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(sizes, indptr, indices, values)`` of a sparse vector column, checked once for kernels.

    Every non-null row must have a size, as many indices as values, no null among them and
    indices strictly increasing in ``[0, size)`` (:func:`sparse_problem`); rows may differ in
    size. ``indptr`` (int32, from 0) delimits each row's entries in ``indices`` (int32) and
    ``values`` (float64), which are zero-copy views of the column's buffers; null rows keep
    whatever their storage holds and are not checked. Raises ``ValueError`` naming the stage,
    column, row and rule.
    """
    arr = _combine(col)
    where = f"{stage}: " if stage else ""
    st = arr.storage
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool) if arr.null_count else None

    def fail(row: int, reason: str) -> ValueError:
        return ValueError(f"{where}column '{name}' row {row}: {reason}")

    size_arr, ind_list, val_list = st.field("size"), st.field("indices"), st.field("values")
    for part, what in ((size_arr, "its size"), (ind_list, "its indices list"), (val_list, "its values list")):
        if part.null_count:
            r = _first_invalid(np.asarray(part.is_null().to_numpy(zero_copy_only=False), dtype=bool), valid)
            if r is not None:
                raise fail(r, f"sparse vector has a null in place of {what}; a sparse vector has a size, "
                              f"indices and values")
    sizes = (size_arr.fill_null(0) if size_arr.null_count else size_arr).to_numpy(zero_copy_only=False)
    ioff, voff = ind_list.offsets.to_numpy(), val_list.offsets.to_numpy()
    if not np.shares_memory(ioff, voff) and not np.array_equal(np.diff(ioff), np.diff(voff)):
        r = int(np.flatnonzero(np.diff(ioff) != np.diff(voff))[0])
        raise fail(r, f"sparse vector has {int(ioff[r + 1] - ioff[r])} indices but {int(voff[r + 1] - voff[r])} "
                      f"values; each index needs one value")
    nnz = int(ioff[-1] - ioff[0])
    flat_ind = ind_list.values.slice(int(ioff[0]), nnz)
    flat_val = val_list.values.slice(int(voff[0]), nnz)
    indptr = ioff if ioff[0] == 0 else ioff - ioff[0]
    for flat, what in ((flat_ind, "indices"), (flat_val, "values")):
        if flat.null_count:
            entry_null = np.asarray(flat.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            rows = np.searchsorted(indptr, np.flatnonzero(entry_null), side="right") - 1
            rows = rows if valid is None else rows[valid[rows]]
            if rows.size:
                raise fail(int(rows[0]), f"sparse vector has a null among its {what}; drop or impute the row "
                                         f"before it reaches a model")
    indices = (flat_ind.fill_null(0) if flat_ind.null_count else flat_ind).to_numpy(zero_copy_only=False)
    values = (flat_val.fill_null(np.nan) if flat_val.null_count else flat_val).to_numpy(zero_copy_only=False)
    problem = sparse_problem(sizes, indptr, indices, valid)
    if problem is not None:
        raise fail(*problem)
    return sizes, indptr, indices, values


def from_numpy(x: np.ndarray) -> pa.FixedSizeListArray:
    """A 2-D array as a dense vector column."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if x.ndim != 2:
        raise ValueError(f"from_numpy expects a 2-D array, got shape {x.shape}")
    if x.shape[1] == 0:  # from_arrays cannot tell the number of rows from no values
        return pa.array([[]] * x.shape[0], dense_vector_type(0))
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def from_csr(x: sps.spmatrix) -> pa.ExtensionArray:
    """A SciPy sparse matrix as a sparse vector column; each row's indices are sorted and the
    values of duplicate indices added up (SciPy's meaning of duplicates)."""
    x = sps.csr_matrix(x)
    if not x.has_canonical_format:
        x = x.copy()  # sum_duplicates works in place: leave the caller's matrix as it was
        x.sum_duplicates()
    n, size = x.shape
    if size > INT32_MAX or x.nnz > INT32_MAX:
        raise ValueError(f"from_csr: a matrix of shape {x.shape} with {x.nnz} stored entries does not fit a sparse "
                         f"vector column (at most 2**31 - 1 columns and entries); convert it in slices of rows")
    # like from_numpy, the column shares memory with arrays already of the Arrow types
    offsets = pa.array(x.indptr.astype(np.int32, copy=False))
    indices = pa.ListArray.from_arrays(offsets, pa.array(x.indices.astype(np.int32, copy=False)))
    values = pa.ListArray.from_arrays(offsets, pa.array(x.data.astype(np.float64, copy=False)))
    sizes = pa.array(np.full(n, size, dtype=np.int32))
    storage = pa.StructArray.from_arrays([sizes, indices, values], fields=list(_STORAGE))
    return pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage)


def row_to_numpy(v: Any) -> np.ndarray:
    """One vector value (list, ndarray, SparseVector) as a 1-D float64 array."""
    if isinstance(v, SparseVector):
        return v.to_numpy()
    return np.asarray(v, dtype=np.float64)


def _dense_value(v: Any) -> np.ndarray:
    try:
        d = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        d = None
    if d is None or d.ndim != 1:
        raise TypeError(f"{v!r:.60} is not a vector; give a list or array of numbers, a fl.linalg.SparseVector "
                        f"or None")
    return d


def _sparse_value(v: Any) -> SparseVector:
    if sps.issparse(v):
        r = sps.csr_matrix(v, copy=True)
        if r.shape[0] != 1:
            raise ValueError(f"a SciPy sparse value must hold one row, got shape {r.shape}")
        r.sum_duplicates()  # SciPy's duplicates mean their sum
        return SparseVector(r.shape[1], r.indices, r.data)
    d = _dense_value(v)
    nz = np.flatnonzero(d)
    return SparseVector(len(d), nz, d[nz])


def _row_value(convert, v: Any, name: str, row: int):
    try:
        return convert(v)
    except (TypeError, ValueError) as e:
        raise type(e)(f"column '{name}' row {row}: {e}") from None


def vectors_to_array(values: Sequence[Any], name: str = "vector") -> pa.Array:
    """Python vector values (lists, arrays, ``SparseVector``, None) as an Arrow vector column.

    The column is sparse when any value is a ``SparseVector`` or SciPy sparse row, else dense.
    """
    if any(isinstance(v, SparseVector) or sps.issparse(v) for v in values):
        sizes, inds, vals, valid = [], [], [], []
        for i, v in enumerate(values):
            if v is None:
                sizes.append(0), inds.append([]), vals.append([]), valid.append(False)
                continue
            if not isinstance(v, SparseVector):
                v = _row_value(_sparse_value, v, name, i)
            sizes.append(v.size), inds.append(v.indices), vals.append(v.values), valid.append(True)
        storage = pa.StructArray.from_arrays(
            [
                pa.array(sizes, pa.int32()),
                pa.array([np.asarray(i).tolist() for i in inds], pa.list_(pa.int32())),
                pa.array([np.asarray(v).tolist() for v in vals], pa.list_(pa.float64())),
            ],
            fields=list(_STORAGE),
            mask=pa.array([not ok for ok in valid]),
        )
        return pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage)
    rows = [None if v is None else _row_value(_dense_value, v, name, i) for i, v in enumerate(values)]
    lengths = {len(r) for r in rows if r is not None}
    if len(lengths) > 1:
        raise ValueError(f"column '{name}' has dense vectors of different sizes {sorted(lengths)}")
    data = [None if r is None else r.tolist() for r in rows]
    if lengths:
        return pa.array(data, type=dense_vector_type(lengths.pop()))
    return pa.array(data, type=pa.list_(pa.float64()))
