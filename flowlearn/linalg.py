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


SPARSE_VECTOR = SparseVectorType()
try:
    pa.register_extension_type(SPARSE_VECTOR)
except pa.ArrowKeyError:  # already registered (module reloaded)
    pass


@dataclass(frozen=True, eq=False)
class SparseVector:
    """One sparse vector: ``size``, sorted ``indices`` and their ``values``.

    Example:
        >>> v = SparseVector(4, [1, 3], [0.5, 2.0])
        >>> v.to_numpy().tolist()
        [0.0, 0.5, 0.0, 2.0]
    """

    size: int
    indices: np.ndarray
    values: np.ndarray

    def __init__(self, size: int, indices: Sequence[int], values: Sequence[float]) -> None:
        idx = np.asarray(indices, dtype=np.int32)
        val = np.asarray(values, dtype=np.float64)
        if idx.shape != val.shape or idx.ndim != 1:
            raise ValueError(
                f"SparseVector: indices ({idx.shape}) and values ({val.shape}) must be 1-D of equal length"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(f"SparseVector: indices must lie in [0, {size}), got {idx.tolist()}")
        object.__setattr__(self, "size", int(size))
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "values", val)

    @classmethod
    def unchecked(cls, size: int, indices: np.ndarray, values: np.ndarray) -> "SparseVector":
        """Build without validation, for row kernels whose indices are correct by construction."""
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


def to_numpy(col: pa.Array | pa.ChunkedArray, name: str = "vector", stage: str = "") -> np.ndarray:
    """A vector column as a 2-D float64 array (rows x size); zero-copy for fixed-size lists
    without nulls. Sparse columns are densified. Nulls raise ``ValueError`` naming the row."""
    arr = _combine(col)
    t = arr.type
    where = f"{stage}: " if stage else ""
    if arr.null_count:
        row = int(np.flatnonzero(~np.asarray(arr.is_valid()))[0])
        raise ValueError(f"{where}column '{name}' has a null vector at row {row}; drop or impute it first")
    if is_sparse(t):
        return to_csr(arr, name, stage).toarray()
    if len(arr) == 0:
        return np.zeros((0, t.list_size if pa.types.is_fixed_size_list(t) else 0))
    if pa.types.is_fixed_size_list(t):
        n = t.list_size
        # flatten() honours the slice's offset and length (arr.values would not) and is zero-copy
        flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
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
    st = arr.storage
    sizes = st.field("size").to_numpy(zero_copy_only=False)
    n = len(arr)
    if n == 0:
        return sps.csr_matrix((0, 0))
    size = int(sizes[0])
    if not np.all(sizes == size):
        bad = int(np.flatnonzero(sizes != size)[0])
        raise ValueError(
            f"{where}column '{name}' has vectors of different sizes: row 0 has {size}, "
            f"row {bad} has {int(sizes[bad])}; all vectors in a column must have the same size"
        )
    ind_list = st.field("indices")
    val_list = st.field("values")
    offs = ind_list.offsets.to_numpy()
    indptr = offs if offs[0] == 0 else offs - offs[0]  # int32 as Arrow stores it: SciPy keeps it, no copy
    indices = ind_list.flatten().to_numpy(zero_copy_only=False)
    values = val_list.flatten().to_numpy(zero_copy_only=False)
    return sps.csr_matrix((values, indices, indptr), shape=(n, size))


def from_numpy(x: np.ndarray) -> pa.FixedSizeListArray:
    """A 2-D array as a dense vector column."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if x.ndim != 2:
        raise ValueError(f"from_numpy expects a 2-D array, got shape {x.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def from_csr(x: sps.spmatrix) -> pa.ExtensionArray:
    """A SciPy sparse matrix as a sparse vector column (indices sorted per row)."""
    x = sps.csr_matrix(x)
    x.sort_indices()
    n, size = x.shape
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
            if sps.issparse(v):
                r = sps.csr_matrix(v)
                v = SparseVector(r.shape[1], r.indices, r.data)
            elif not isinstance(v, SparseVector):
                d = np.asarray(v, dtype=np.float64)
                nz = np.flatnonzero(d)
                v = SparseVector(len(d), nz, d[nz])
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
    lengths = {len(v) for v in values if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"column '{name}' has dense vectors of different sizes {sorted(lengths)}")
    data = [None if v is None else np.asarray(v, dtype=np.float64).tolist() for v in values]
    if lengths:
        return pa.array(data, type=dense_vector_type(lengths.pop()))
    return pa.array(data, type=pa.list_(pa.float64()))
