"""Feature assembly: ``VectorAssembler`` (numbers and vectors into one vector) and ``FeatureHasher``
(the hashing trick, MurmurHash3 as in Flink ML), both with Flink ML 2.x semantics.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"age": [30.0, 41.0], "v": [[1.0, 2.0], [3.0, 4.0]]})
    >>> va = fl.feature.VectorAssembler(input_cols=["age", "v"], output_col="features", input_sizes=[1, 2])
    >>> fl.linalg.to_numpy(va.transform(t).column("features")).tolist()
    [[30.0, 1.0, 2.0], [41.0, 3.0, 4.0]]
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import numbers
import operator
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import SchemaError, SkipRow, Transformer
from flowlearn.data.columns import require_column, with_column
from flowlearn.data.schema import FEATURES_KEY, column_size, feature_names, is_numeric_type, vector_field
from flowlearn.feature.encoders import (
    _combined,
    _frozen,
    _java_str,
    _java_strs_of,
    _one_input,
    _skip_rows,
)
from flowlearn.linalg import (
    SPARSE_VECTOR,
    SparseVector,
    dense_vector_type,
    is_dense,
    is_sparse,
    is_vector_type,
    sparse_arrays,
)
from flowlearn.params import (
    HasCategoricalCols,
    HasHandleInvalid,
    HasInputCols,
    HasNumFeatures,
    HasOutputCol,
    Param,
    gt,
)

__all__ = ["VectorAssembler", "FeatureHasher"]

_NAN = float("nan")
_INT32_MAX = 2**31 - 1
# Past this many features an output lists only the names its inputs give (numbers, named elements),
# not "<column>[<i>]" for every element of a large (hashed) vector.
_NAMED_LIMIT = 1 << 16


def _sparse_column(sizes: np.ndarray, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> pa.Array:
    """A sparse vector column from per-row sizes and CSR pieces (rows may differ in size)."""
    offsets = pa.array(np.asarray(indptr, dtype=np.int32))
    storage = pa.StructArray.from_arrays(
        [
            pa.array(np.asarray(sizes, dtype=np.int32)),
            pa.ListArray.from_arrays(offsets, pa.array(np.asarray(indices, dtype=np.int32))),
            pa.ListArray.from_arrays(offsets, pa.array(np.asarray(values, dtype=np.float64))),
        ],
        fields=list(SPARSE_VECTOR.storage_type),
    )
    return pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage)


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Exclusive prefix sum: where each segment starts."""
    out = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=out[1:])
    return out


def _gather_index(src_starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat source positions of the segments ``[src_starts[i], src_starts[i] + lengths[i])``, in order."""
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(_starts(lengths) - src_starts, lengths)


# --------------------------------------------------------------------------------------------
# VectorAssembler
# --------------------------------------------------------------------------------------------


class _Block:
    """One input column of a VectorAssembler batch, as per-row segments.

    ``kind`` is "dense" (scalars and dense vectors: every element is stored) or "sparse".
    Dense: ``flat`` holds the values; ``k`` is the number of elements of every row (1 for numbers,
    the list size for fixed-size lists; None for variable lists). Sparse: ``sizes`` (n,) and ``idx``
    / ``flat`` with absolute row offsets ``off_raw`` (n+1) into them, as Arrow stores them.
    ``off`` (absolute int64 row offsets), ``lengths``, ``widths`` and ``null`` are built on first
    use only: the fast paths of ``VectorAssembler._transform`` never need them.
    """

    def __init__(self, kind: str, n: int, flat: np.ndarray, null: np.ndarray | None, k: int | None = None,
                 off_raw: np.ndarray | None = None, sizes: np.ndarray | None = None,
                 idx: np.ndarray | None = None, scalar: bool = False) -> None:
        self.kind, self.n, self.flat, self.k, self.off_raw = kind, n, flat, k, off_raw
        self.sizes, self.idx, self.scalar = sizes, idx, scalar
        self.has_null = null is not None
        self._null = null

    @functools.cached_property
    def null(self) -> np.ndarray:
        return self._null if self._null is not None else np.zeros(self.n, dtype=bool)

    @functools.cached_property
    def off(self) -> np.ndarray:
        if self.off_raw is None:
            return np.arange(self.n + 1, dtype=np.int64) * self.k
        return self.off_raw.astype(np.int64)

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        return np.full(self.n, self.k, dtype=np.int64) if self.off_raw is None else np.diff(self.off)

    @property
    def widths(self) -> np.ndarray:
        return self.lengths if self.kind == "dense" else self.sizes

    @functools.cached_property
    def uniform_width(self) -> int | None:
        """The width every row has (sparse: vector size), or None when rows differ or a row is null."""
        if self.has_null or self.n == 0:
            return None
        if self.kind == "dense":
            if self.k is not None:
                return self.k
            w = self.lengths
        else:
            w = self.sizes
        return int(w[0]) if (w == w[0]).all() else None

    def has_nan_number(self) -> bool:
        """A scalar column with a NaN in a non-null row (one pass: the sum is NaN only then, or when
        +inf and -inf meet, which the exact test sorts out)."""
        if not self.scalar or self.n == 0:
            return False
        f = self.flat
        total = f.sum()
        if total == total:
            return False
        nan = np.isnan(f)
        if self.has_null:
            nan &= ~self._null
        return bool(nan.any())


def _read_block(t: pa.Table, name: str, stage: str) -> _Block:
    col = require_column(t, name, stage, "input_cols")
    arr = _combined(col)
    n = len(arr)
    typ = arr.type
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool) if arr.null_count else None
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ) or pa.types.is_decimal(typ):
        # safe=False: integers beyond 2**53 become the nearest double (as NumPy converts them), not an error
        flat = arr.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False) if (arr.null_count or not
                                                                                      pa.types.is_floating(typ)) else \
            arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return _Block("dense", n, flat, null, k=1, scalar=True)
    if is_sparse(typ):
        sizes, off, idx, flat = sparse_arrays(arr, name, stage)
        return _Block("sparse", n, flat, null, off_raw=off, sizes=sizes, idx=idx)
    if is_dense(typ):
        if pa.types.is_fixed_size_list(typ):
            k = typ.list_size
            child = arr.values.slice(arr.offset * k, n * k)
            flat = child.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            return _Block("dense", n, flat, null, k=k)
        flat = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return _Block("dense", n, flat, null, off_raw=arr.offsets.to_numpy())
    raise TypeError(
        f"{stage}: column '{name}' (parameter 'input_cols') has type {typ}; VectorAssembler assembles numeric "
        f"columns and dense or sparse vector columns only"
    )


@numba.njit(cache=True)
def _put_dense(cursor, out_idx, out_val, flat, k, col_off):
    """Append the ``k`` elements of each row of a dense block (row-major ``flat``) at the row cursors."""
    for r in range(cursor.shape[0]):
        p = cursor[r]
        base = r * k
        for j in range(k):
            out_idx[p + j] = col_off + j
            out_val[p + j] = flat[base + j]
        cursor[r] = p + k


@numba.njit(cache=True)
def _put_sparse(cursor, out_idx, out_val, off, idx, vals, col_off):
    """Append the entries of each row of a sparse block (absolute offsets ``off``) at the row cursors."""
    for r in range(cursor.shape[0]):
        p = cursor[r]
        for e in range(off[r], off[r + 1]):
            out_idx[p] = idx[e] + col_off
            out_val[p] = vals[e]
            p += 1
        cursor[r] = p


def _assemble_uniform(blocks: list[_Block], widths: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (int32 indptr, int32 indices, values) of blocks without nulls whose rows all have the
    block's width, so every block starts at the same column in every row: one pass per block and
    no temporaries of the size of the output."""
    n = blocks[0].n
    dense_total = sum(w for b, w in zip(blocks, widths) if b.kind == "dense")
    nnz = dense_total * n + sum(int(b.off_raw[-1]) - int(b.off_raw[0]) for b in blocks if b.kind == "sparse")
    if nnz > _INT32_MAX:
        raise ValueError(f"VectorAssembler: the output column would hold {nnz} entries, more than one Arrow sparse "
                         f"vector column holds (2**31 - 1); transform the table in smaller slices")
    cnt = np.full(n, dense_total, dtype=np.int32)
    for b in blocks:
        if b.kind == "sparse":
            cnt += b.off_raw[1:]
            cnt -= b.off_raw[:-1]
    indptr = np.empty(n + 1, dtype=np.int32)
    indptr[0] = 0
    np.cumsum(cnt, out=indptr[1:])
    out_idx = np.empty(nnz, dtype=np.int32)
    out_val = np.empty(nnz, dtype=np.float64)
    cursor = cnt  # reused: the write position of each row
    cursor[:] = indptr[:-1]
    col_off = 0
    for b, w in zip(blocks, widths):
        if b.kind == "dense":
            start = 0 if b.off_raw is None else int(b.off_raw[0])
            _put_dense(cursor, out_idx, out_val, b.flat[start:start + n * w], w, col_off)
        else:
            _put_sparse(cursor, out_idx, out_val, b.off_raw, b.idx, b.flat, col_off)
        col_off += w
    return indptr, out_idx, out_val


def _entries(b: _Block, declared: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(entries per row, widths per row, column of each entry, value of each entry) with null rows
    replaced by ``declared`` NaNs (handle_invalid='keep')."""
    has_null = bool(b.null.any())
    if b.kind == "dense":
        widths = np.where(b.null, declared, b.lengths) if has_null else b.lengths
        cnt = widths
        if not has_null:
            vals = b.flat[b.off[0]:b.off[-1]]
        else:
            vals = np.full(int(widths.sum()), _NAN)
            ok = ~b.null
            dst = _gather_index(_starts(widths)[ok], b.lengths[ok])
            vals[dst] = b.flat[_gather_index(b.off[:-1][ok], b.lengths[ok])]
        cols = np.arange(len(vals), dtype=np.int64) - np.repeat(_starts(cnt), cnt)
        return cnt, widths, cols, vals
    widths = np.where(b.null, declared, b.sizes) if has_null else b.sizes
    if not has_null:
        return b.lengths, widths, b.idx[b.off[0]:b.off[-1]], b.flat[b.off[0]:b.off[-1]]
    cnt = np.where(b.null, declared, b.lengths)
    total = int(cnt.sum())
    cols = np.empty(total, dtype=np.int64)
    vals = np.full(total, _NAN)
    starts = _starts(cnt)
    ok = ~b.null
    src = _gather_index(b.off[:-1][ok], b.lengths[ok])
    dst = _gather_index(starts[ok], b.lengths[ok])
    cols[dst] = b.idx[src]
    vals[dst] = b.flat[src]
    nd = _gather_index(starts[b.null], cnt[b.null])
    cols[nd] = np.arange(len(nd)) - np.repeat(_starts(cnt[b.null]), cnt[b.null])
    return cnt, widths, cols, vals


def _assemble(blocks: list[_Block], declared: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-row segments of all blocks: (row sizes, indptr, column indices, values)."""
    n = blocks[0].n
    parts = [_entries(b, d) for b, d in zip(blocks, declared)]
    out_cnt = np.zeros(n, dtype=np.int64)
    for cnt, _, _, _ in parts:
        out_cnt += cnt
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(out_cnt, out=indptr[1:])
    out_idx = np.empty(int(indptr[-1]), dtype=np.int64)
    out_val = np.empty(int(indptr[-1]), dtype=np.float64)
    prior = indptr[:-1].copy()
    col_off = np.zeros(n, dtype=np.int64)
    for cnt, widths, cols, vals in parts:
        rows = np.repeat(np.arange(n), cnt)
        pos = np.arange(len(cols), dtype=np.int64) - np.repeat(_starts(cnt) - prior, cnt)
        out_idx[pos] = cols + col_off[rows]
        out_val[pos] = vals
        prior += cnt
        col_off += widths
    return col_off, indptr, out_idx, out_val


class VectorAssembler(HasInputCols, HasOutputCol, HasHandleInvalid, Transformer):
    """Combines numeric columns and dense/sparse vector columns into one vector column.

    ``input_sizes`` declares the size of each input (1 for a number) and is checked on every row.
    Left unset, the sizes are read from the input's schema: 1 for a number, the size of a
    fixed-size list, the size another stage declared for its vector output (``OneHotEncoder``,
    ``FeatureHasher``, the scalers: field metadata ``flowlearn.size``); a column the schema does not
    size is refused, naming it. ``Pipeline.fit`` binds the sizes it sees into the fitted model. The
    output carries the names of its features (``age``, ``city=Oslo``, ``v[0]``) as field metadata.
    Invalid entries (a null, a NaN number, or a vector whose size differs from ``input_sizes``) are
    handled as in Flink ML 2.3: ``error`` raises naming the column and row, ``skip`` drops the row,
    ``keep`` replaces a null by NaNs of the declared size and keeps NaNs and wrongly sized vectors
    as they are (rows may then differ in size). NaNs inside vectors are passed through.

    The output is a sparse vector column when any input column is sparse (every element of the
    numeric and dense inputs is stored, as Flink ML does), else a dense ``fixed_size_list`` column.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.linalg import SparseVector
        >>> t = fl.table({"x": [1.0, None], "s": [SparseVector(3, [2], [5.0]), SparseVector(3, [], [])]})
        >>> va = fl.feature.VectorAssembler(input_cols=["x", "s"], input_sizes=[1, 3], handle_invalid="keep")
        >>> va.transform(t).column("output").to_pylist()[0]
        {'size': 4, 'indices': [0, 3], 'values': [1.0, 5.0]}
        >>> row = {"x": 2.0, "s": SparseVector(3, [0], [1.0])}
        >>> va.row_fn()(row); row["output"]
        SparseVector(4, [0, 1], [2.0, 1.0])
        >>> sized = fl.feature.VectorAssembler(input_cols=["age", "v"], output_col="f")   # no input_sizes
        >>> out = sized.transform({"age": [30.0], "v": [[1.0, 2.0]]})
        >>> out.column("f").to_pylist(), fl.data.schema.feature_names(out.schema.field("f"))
        ([[30.0, 1.0, 2.0]], ['age', 'v[0]', 'v[1]'])
    """

    input_sizes = Param(list[int], default=None, validator=gt(0),
                        doc="Size of each input: 1 for a numeric column, the vector size for a vector column. "
                            "None: read from the input's schema (a number is 1, a fixed-size list has its size, "
                            "another vector column the size the stage that made it declares).")

    def _sizes(self, schema: pa.Schema | None = None) -> list[int]:
        stage = type(self).__name__
        cols, sizes = self.input_cols, self.input_sizes
        if sizes is None:
            if schema is None:
                raise ValueError(f"{stage}: parameter 'input_sizes' is not set and no input schema is known here "
                                 f"to read the sizes from; set input_sizes=[...] (one size per input column)")
            return self._infer_sizes(schema)
        if len(sizes) != len(cols):
            raise ValueError(
                f"{stage}: parameter 'input_sizes' has {len(sizes)} entries ({sizes}) but 'input_cols' names "
                f"{len(cols)} columns ({cols}); give one size per input column"
            )
        return sizes

    def _infer_sizes(self, schema: pa.Schema) -> list[int]:
        """The size of each input column from its type or its declared size (``flowlearn.size``)."""
        stage = type(self).__name__
        sizes = []
        for c in self.input_cols:
            if c not in schema.names:
                raise SchemaError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing; the input has "
                                  f"columns {schema.names}. Set input_cols to one of them or add the column.")
            f = schema.field(c)
            size = column_size(f)
            if size is None:
                if not is_vector_type(f.type):
                    raise SchemaError(f"{stage}: column '{c}' (parameter 'input_cols') has type {f.type}; "
                                      f"VectorAssembler assembles numeric columns and dense or sparse vector columns "
                                      f"only")
                kind = "a sparse vector column" if is_sparse(f.type) else "a variable-length list column"
                raise SchemaError(f"{stage}: cannot tell the size of column '{c}' (parameter 'input_cols'): it is "
                                  f"{kind} and no stage declared its size (field metadata 'flowlearn.size'); set "
                                  f"input_sizes=[...] with one size per input column, or give the column a "
                                  f"fixed-size type (schema string 'vector(n)')")
            sizes.append(size)
        return sizes

    def bind_schema(self, schema: pa.Schema) -> "VectorAssembler":
        """This assembler with ``input_sizes`` read from ``schema`` (itself when they are set), so its
        row kernel checks every row's sizes (``Pipeline.fit`` binds the assemblers it fits)."""
        if self.input_sizes is not None:
            return self
        bound = type(self)(**self.get_params())
        return bound.set(input_sizes=self._infer_sizes(schema))

    def _output_field(self, schema: pa.Schema, sizes: list[int], sparse: bool) -> pa.Field:
        """The output field: its size (declared for a sparse output) and its features' names (built
        once per input schema: a stream's batches share theirs)."""
        key = (self.output_col, tuple(self.input_cols), tuple(sizes), sparse)
        last = self.__dict__.get("_last_field")
        if last is not None and last[1] == key and (last[0] is schema or last[0].equals(schema, check_metadata=True)):
            return last[2]
        field = self._make_output_field(schema, sizes, sparse)
        self._last_field = (schema, key, field)
        return field

    def _make_output_field(self, schema: pa.Schema, sizes: list[int], sparse: bool) -> pa.Field:
        total = int(sum(sizes))
        typ = SPARSE_VECTOR if sparse else dense_vector_type(total)
        named: dict[int, str] = {}
        pos = 0
        for c, k in zip(self.input_cols, sizes):
            f = schema.field(c) if c in schema.names else None
            if f is not None and is_numeric_type(f.type):
                named[pos] = c
            elif f is not None:
                known = feature_names(f) if column_size(f) == k and k <= _NAMED_LIMIT else None
                if known is not None:
                    named.update((pos + i, nm) for i, nm in enumerate(known))
                else:
                    raw = json.loads((f.metadata or {}).get(FEATURES_KEY, b"{}"))
                    pairs = enumerate(raw) if isinstance(raw, list) else ((int(i), v) for i, v in raw.items())
                    named.update((pos + i, str(nm)) for i, nm in pairs if i < k)
            pos += k
        names: list[str] | dict[int, str] = [named[i] for i in range(total)] if len(named) == total else named
        return vector_field(self.output_col, typ, size=total, names=names or None)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = _one_input(stage, tables, "transform")
        for c in self.input_cols:
            require_column(t, c, stage, "input_cols")
        sizes = self._sizes(t.schema)
        hi = self.handle_invalid
        blocks = [_read_block(t, c, stage) for c in self.input_cols]
        out_sparse = any(b.kind == "sparse" for b in blocks)
        out_field = self._output_field(t.schema, sizes, out_sparse)
        if hi != "keep":
            bad_rows = np.zeros(t.num_rows, dtype=bool)
            for c, b, size in zip(self.input_cols, blocks, sizes):
                if b.uniform_width == size and not b.has_nan_number():
                    continue  # the common case, decided without per-row temporaries
                wrong = (b.widths != size) & ~b.null
                nan = np.isnan(b.flat) & ~b.null if b.scalar else None
                bad = b.null | wrong | nan if nan is not None else b.null | wrong
                if not bad.any():
                    continue
                if hi == "skip":
                    bad_rows |= bad
                    continue
                r = int(np.flatnonzero(bad)[0])
                what = ("is null" if b.null[r] else "is NaN" if nan is not None and nan[r] else
                        f"has {'a number' if b.scalar else 'a vector of size ' + str(int(b.widths[r]))} but "
                        f"'input_sizes' declares size {size} for it")
                raise ValueError(
                    f"{stage}: column '{c}' (parameter 'input_cols') {what} at row {r}; fix the data or "
                    f"'input_sizes', or set handle_invalid='skip' to drop such rows or 'keep' to keep them "
                    f"(nulls become NaN)"
                )
            if bad_rows.any():
                t, _ = _skip_rows(stage, t, bad_rows)
                blocks = [_read_block(t, c, stage) for c in self.input_cols]
        n = t.num_rows
        if n == 0:
            empty = pa.array([], type=SPARSE_VECTOR if out_sparse else dense_vector_type(sum(sizes)))
            return with_column(t, out_field, empty)
        widths = [b.uniform_width for b in blocks]
        if all(w is not None for w in widths):  # no nulls, and each block has one width in every row
            if not out_sparse:
                total = sum(widths)
                out = np.empty((n, total))
                mats, pos = [], 0
                for b, w in zip(blocks, widths):
                    start = 0 if b.off_raw is None else int(b.off_raw[0])
                    mats.append((pos, w, b.flat[start:start + n * w].reshape(n, w)))
                    pos += w
                # in slices of rows whose output (~2 MB) stays in cache: the column-wise writes are
                # strided, so doing them over the whole output at once is twice as slow
                step = max(1024, (1 << 21) // (8 * max(total, 1)))
                for a in range(0, n, step):
                    for pos, w, mat in mats:
                        out[a:a + step, pos:pos + w] = mat[a:a + step]
                arr = pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), out.shape[1])
                return with_column(t, out_field, arr)
            indptr, idx, vals = _assemble_uniform(blocks, widths)
            col = _sparse_column(np.full(n, sum(widths), dtype=np.int32), indptr, idx, vals)
            return with_column(t, out_field, col)
        row_sizes, indptr, idx, vals = _assemble(blocks, sizes)
        if out_sparse:
            return with_column(t, out_field, _sparse_column(row_sizes, indptr, idx, vals))
        if (row_sizes == row_sizes[0]).all():
            arr = pa.FixedSizeListArray.from_arrays(pa.array(vals), int(row_sizes[0]))
        else:  # only under handle_invalid='keep' with wrongly sized vectors: rows differ in size
            arr = pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(vals))
        return with_column(t, out_field, arr)

    def _fused_row_fn(self, successor: Transformer):
        """Row kernel of this assembler fused with the stage after it, or None (``LocalPredictor``
        asks each pipeline stage for one; see ``flowlearn.serving.predictor``).

        Fused: numbers only (every input size 1) followed by a scaler model (``StandardScalerModel``,
        ``MinMaxScalerModel``, ``MaxAbsScalerModel``) of that many dimensions reading this output.
        When ``sum`` of the row's numbers is a finite float (or an int), every number is finite, so
        the assembled array goes straight into the scaler's arithmetic without its input checks;
        any other row runs the two stages' own kernels, which raise their usual errors. Both output
        columns are written, with the same values as the unfused kernels."""
        apply_of = getattr(successor, "_dense_row_apply", None)
        if apply_of is None or self.input_sizes is None or not all(s == 1 for s in self._sizes()):
            return None
        successor._require_model()
        cols = list(self.input_cols)
        if successor.input_col != self.output_col or successor._dim != len(cols):
            return None
        first, second, apply = self.row_fn(), successor.row_fn(), apply_of()
        out_col, scaled_col = self.output_col, successor.output_col
        getter = operator.itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
        array, float64, isfinite = np.array, np.float64, math.isfinite

        def run(row: dict) -> None:
            try:
                vals = getter(row)
                s = sum(vals)
            except (KeyError, TypeError):
                s = None
            ts = type(s)
            if ts is int or (ts is float and isfinite(s)):
                x = array(vals, dtype=float64)
                row[out_col] = x
                row[scaled_col] = apply(x)
                return
            first(row)
            second(row)

        return run

    def row_fn(self):
        """Row kernel: numbers, 1-D arrays/lists and ``SparseVector`` s in; a 1-D float64 array out,
        or a ``SparseVector`` when any input value is sparse.

        The kernel decides dense or sparse output from the row's values: a row whose sparse inputs are
        all null (``handle_invalid="keep"``) yields a dense array, while the batch path, which sees the
        column types, yields a sparse vector with the same elements."""
        if self.input_sizes is None:
            return self._sizing_row_kernel()
        return self._row_kernel()

    def _sizing_row_kernel(self):
        """Without ``input_sizes``: each row's sizes are read from its values (a number is 1, a vector
        its size), and the kernel for those sizes (built once per combination) assembles it."""
        stage = type(self).__name__
        cols = list(self.input_cols)
        skip = self.handle_invalid == "skip"
        kernels: dict[tuple, Any] = {}

        def size_of(c: str, v: Any) -> int:
            tv = type(v)
            if tv is float or tv is int or isinstance(v, (numbers.Real, np.bool_)):
                return 1
            if tv is SparseVector:
                return v.size
            if tv is np.ndarray or tv is list or tv is tuple:
                return len(v)
            if v is None:
                if skip:
                    raise SkipRow
                raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') is null and 'input_sizes' is not "
                                 f"set, so its size is unknown; set input_sizes=[...] or handle_invalid='skip'")
            raise TypeError(f"{stage}: column '{c}' holds {v!r} of type {tv.__name__}; VectorAssembler "
                            f"assembles numbers and vectors only")

        def run(row: dict) -> None:
            try:
                key = tuple(size_of(c, row[c]) for c in cols)
            except KeyError:
                c = next(c for c in cols if c not in row)
                raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the row; it "
                                 f"has {sorted(row)}") from None
            fn = kernels.get(key)
            if fn is None:
                if len(kernels) >= 64:
                    kernels.clear()
                fn = kernels[key] = self._row_kernel(sizes=list(key))
            fn(row)

        return run

    def _row_kernel(self, known_vectors: dict[str, list] | None = None, sizes: list[int] | None = None):
        """``row_fn``; ``known_vectors`` (input column -> every vector the stage before can put there,
        read-only ones, as ``OneHotEncoderModel``'s) lets the kernel build its cached assembly plans
        up front instead of on the first row of each combination (see ``_fused_row_fn`` there)."""
        stage = type(self).__name__
        if sizes is None and self.input_sizes is None:
            return self._sizing_row_kernel()
        sizes = self._sizes() if sizes is None else sizes
        cols, out_col = list(self.input_cols), self.output_col
        keep, skip = self.handle_invalid == "keep", self.handle_invalid == "skip"
        specs = list(zip(cols, sizes))
        scalar_only = all(s == 1 for s in sizes)
        starts = [int(x) for x in np.cumsum([0] + sizes[:-1])]
        dense_idx = [_frozen(np.arange(a, a + k, dtype=np.int32)) for a, k in zip(starts, sizes)]
        getter = operator.itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
        ndarray, float64, int32 = np.ndarray, np.float64, np.int32
        f64 = np.dtype(np.float64)
        array, empty, asarray = np.array, np.empty, np.asarray

        def invalid(c: str, what: str) -> None:
            if skip:
                raise SkipRow
            raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') {what}; fix the data or "
                             f"'input_sizes', or set handle_invalid='skip' or 'keep'")

        def missing(row: dict) -> ValueError:
            c = next(c for c in cols if c not in row)
            return ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the row; it "
                              f"has {sorted(row)}")

        def general(row: dict, vals: tuple) -> None:
            parts = []
            sparse = False
            width_sum = 0
            nnz = 0
            for (c, size), v in zip(specs, vals):
                tv = type(v)
                if tv is float or tv is int:
                    if (size != 1 or v != v) and not keep:
                        invalid(c, "is NaN" if v != v else f"has a number but 'input_sizes' declares size {size}")
                    width, m = 1, 1
                elif tv is ndarray or tv is list or tv is tuple:
                    if tv is not ndarray or v.dtype is not f64:
                        v = asarray(v, dtype=float64)
                    if v.ndim != 1:
                        raise TypeError(f"{stage}: column '{c}' holds an array of shape {v.shape}, expected a 1-D "
                                        f"vector")
                    width = m = len(v)
                    if width != size and not keep:
                        invalid(c, f"has a vector of size {width} but 'input_sizes' declares size {size}")
                elif tv is SparseVector:
                    sparse = True
                    width, m = v.size, len(v.indices)
                    if width != size and not keep:
                        invalid(c, f"has a vector of size {width} but 'input_sizes' declares size {size}")
                elif v is None:
                    if not keep:
                        invalid(c, "is null")
                    v = np.full(size, _NAN) if size != 1 else _NAN
                    width = m = size
                elif isinstance(v, (numbers.Real, np.bool_)):
                    v = float(v)
                    if (size != 1 or v != v) and not keep:
                        invalid(c, "is NaN" if v != v else f"has a number but 'input_sizes' declares size {size}")
                    width, m = 1, 1
                else:
                    raise TypeError(f"{stage}: column '{c}' holds {v!r} of type {tv.__name__}; VectorAssembler "
                                    f"assembles numbers and vectors only")
                parts.append((v, width, m))
                width_sum += width
                nnz += m
            if not sparse:
                out = empty(width_sum)
                pos = 0
                for v, width, _ in parts:
                    if width == 1 and type(v) is float:
                        out[pos] = v
                    else:
                        out[pos:pos + width] = v
                    pos += width
                row[out_col] = out
                return
            idx = empty(nnz, dtype=int32)
            val = empty(nnz)
            pos = off = 0
            for i, (v, width, m) in enumerate(parts):
                if type(v) is SparseVector:
                    if m == 1:
                        idx[pos] = v.indices[0] + off
                        val[pos] = v.values[0]
                    elif m:
                        np.add(v.indices, off, out=idx[pos:pos + m])
                        val[pos:pos + m] = v.values
                elif m == 1 and type(v) is float:
                    idx[pos] = off
                    val[pos] = v
                else:
                    idx[pos:pos + m] = dense_idx[i] if off == starts[i] and m == sizes[i] else \
                        np.arange(off, off + m, dtype=int32)
                    val[pos:pos + m] = v
                pos += m
                off += width
            row[out_col] = SparseVector.unchecked(width_sum, idx, val)

        # Vector inputs: rows mixing dense values with sparse vectors (the usual "scaled numbers +
        # one-hot vectors"). The output indices, and the values taken from the sparse inputs, depend
        # only on which vectors the sparse inputs are. Sparse vectors whose index and value arrays
        # are read-only (OneHotEncoder's precomputed vectors) are taken as immutable, so a plan is
        # cached per combination of them, keyed by the ids of the vectors at the sparse positions of
        # the current pattern; each plan holds its vectors, so these ids cannot be reused by other
        # objects while it is cached. A row then costs a copy of the cached values and one
        # assignment per dense input. Everything else (nulls, NaN numbers, lists, writable or
        # wrongly sized vectors, all-dense rows) goes to ``general``.
        sv_type = SparseVector
        new_object = object.__new__
        width_sum = int(sum(sizes))
        one_shape = (1,)
        max_plans = 4096
        plans: dict[tuple, tuple] = {}

        def pattern(positions: tuple) -> tuple:
            if len(positions) == 1:
                (i,) = positions
                return positions, lambda vals: (vals[i],)
            return positions, (operator.itemgetter(*positions) if positions else lambda vals: ())

        current = [pattern(())]  # (sparse positions, getter of the values at them) of the last plan

        dense_idx_lists = [list(range(a, a + k)) for a, k in zip(starts, sizes)]
        zero_lists = [[0.0] * k for k in sizes]
        # per input position: id(vector) -> (vector, its shifted indices, its values) as lists, so that
        # a new combination of already seen vectors costs two small array builds
        parts: list[dict[int, tuple]] = [{} for _ in sizes]

        def make_plan(vals: tuple) -> tuple | None:
            """Plan for this row's sparse vectors: (output indices, output values with zeros at the
            dense inputs or None for an all-dense row, dense slots, the pattern, the vectors); None
            when a sparse vector is writable (not cacheable) or not of its declared size. Runs once
            per new combination of vectors: a few microseconds."""
            positions = tuple(i for i, v in enumerate(vals) if type(v) is sv_type)
            st = current[0]
            if positions != st[0]:
                st = pattern(positions)
                plans.clear()
                current[0] = st
            vecs = tuple(vals[i] for i in positions)
            if not positions:
                return None, None, None, st, vecs
            idx_list: list[int] = []
            val_list: list[float] = []
            slots = []
            for i, v in enumerate(vals):
                if type(v) is not sv_type:  # dense input i: sizes[i] entries, all stored
                    slots.append((i, len(val_list), len(val_list) + sizes[i], (sizes[i],)))
                    idx_list += dense_idx_lists[i]
                    val_list += zero_lists[i]
                    continue
                part = parts[i].get(id(v))
                if part is None:
                    if v.size != sizes[i] or v.indices.flags.writeable or v.values.flags.writeable:
                        return None
                    off = starts[i]
                    part = (v, [j + off for j in v.indices.tolist()], v.values.tolist())
                    if len(parts[i]) >= max_plans:
                        parts[i].clear()
                    parts[i][id(v)] = part
                idx_list += part[1]
                val_list += part[2]
            idx = array(idx_list, dtype=int32)
            idx.setflags(write=False)  # shared by the output vectors of such rows
            template = array(val_list, dtype=float64)  # private: only copied
            return idx, template, tuple(slots), st, vecs

        def run_vectors(row: dict) -> None:
            try:
                vals = getter(row)
            except KeyError:
                raise missing(row) from None
            st = current[0]
            key = tuple(map(id, st[1](vals)))
            plan = plans.get(key)
            if plan is None or plan[3] is not st:
                plan = make_plan(vals)
                if plan is None:
                    general(row, vals)
                    return
                if len(plans) >= max_plans:
                    plans.clear()
                plans[tuple(map(id, plan[4]))] = plan
            idx, template, slots = plan[0], plan[1], plan[2]
            if template is None:
                general(row, vals)
                return
            val = template.copy()
            for i, a, b, shape in slots:
                v = vals[i]
                tv = type(v)
                if tv is ndarray:
                    if v.dtype is not f64 or v.shape != shape:
                        general(row, vals)
                        return
                    val[a:b] = v
                elif (tv is float or tv is int) and shape == one_shape and v == v:
                    val[a] = v
                else:
                    general(row, vals)
                    return
            out = new_object(sv_type)  # SparseVector.unchecked, inlined
            d = out.__dict__
            d["size"] = width_sum
            d["indices"] = idx
            d["values"] = val
            row[out_col] = out

        def run(row: dict) -> None:
            try:
                vals = getter(row)
            except KeyError:
                raise missing(row) from None
            # sum() is a cheap screen: it raises or is no float/int when a value is not a Python
            # number (None, str, vectors, NumPy scalars) and is NaN when one is NaN; those rows
            # take the general path, which checks each value and raises the precise error
            try:
                s = sum(vals)
            except TypeError:
                s = None
            ts = type(s)
            if (ts is float or ts is int) and (s == s or keep):
                row[out_col] = array(vals, dtype=float64)
                return
            general(row, vals)

        if scalar_only:
            return run
        if known_vectors:
            positions = tuple(i for i, c in enumerate(cols) if c in known_vectors)
            choices = [known_vectors[cols[i]] for i in positions]
            if positions and math.prod(len(c) for c in choices) <= max_plans:
                current[0] = pattern(positions)
                template_row = [None] * len(cols)  # None: a dense input, as far as make_plan is concerned
                for combo in itertools.product(*choices):
                    for i, v in zip(positions, combo):
                        template_row[i] = v
                    plan = make_plan(tuple(template_row))
                    if plan is not None:
                        plans[tuple(map(id, plan[4]))] = plan
        return run_vectors


# --------------------------------------------------------------------------------------------
# MurmurHash3_x86_32 (Numba) and FeatureHasher
# --------------------------------------------------------------------------------------------

_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0xCC9E2D51)
_C2 = np.uint64(0x1B873593)
_C3 = np.uint64(0xE6546B64)
_F1 = np.uint64(0x85EBCA6B)
_F2 = np.uint64(0xC2B2AE35)
_U5 = np.uint64(5)
_S13, _S15, _S16, _S17, _S19 = (np.uint64(s) for s in (13, 15, 16, 17, 19))


@numba.njit(cache=True, inline="always")
def _mix_k1(k1):
    k1 = (k1 * _C1) & _M32
    k1 = ((k1 << _S15) | (k1 >> _S17)) & _M32
    return (k1 * _C2) & _M32


@numba.njit(cache=True, inline="always")
def _mix_h1(h1, k1):
    h1 ^= k1
    h1 = ((h1 << _S13) | (h1 >> _S19)) & _M32
    return (h1 * _U5 + _C3) & _M32


@numba.njit(cache=True, inline="always")
def _fmix(h1, nbytes):
    h1 ^= nbytes
    h1 ^= h1 >> _S16
    h1 = (h1 * _F1) & _M32
    h1 ^= h1 >> np.uint64(13)
    h1 = (h1 * _F2) & _M32
    h1 ^= h1 >> _S16
    return h1


@numba.njit(cache=True, inline="always")
def _signed32(h):
    x = np.int64(h)
    return x - 4294967296 if x >= 2147483648 else x


@numba.njit(cache=True)
def _murmur3_32(data, seed):
    """MurmurHash3_x86_32 of a byte buffer, as a signed 32-bit int."""
    n = len(data)
    h1 = np.uint64(seed) & _M32
    nblocks = n // 4
    for b in range(nblocks):
        i = 4 * b
        k1 = (np.uint64(data[i]) | (np.uint64(data[i + 1]) << np.uint64(8)) | (np.uint64(data[i + 2])
              << _S16) | (np.uint64(data[i + 3]) << np.uint64(24)))
        h1 = _mix_h1(h1, _mix_k1(k1))
    rem = n & 3
    if rem:
        i = 4 * nblocks
        k1 = np.uint64(0)
        if rem == 3:
            k1 ^= np.uint64(data[i + 2]) << _S16
        if rem >= 2:
            k1 ^= np.uint64(data[i + 1]) << np.uint64(8)
        k1 ^= np.uint64(data[i])
        h1 ^= _mix_k1(k1)
    return _signed32(_fmix(h1, np.uint64(n)))


@numba.njit(cache=True, inline="always")
def _murmur3_units(units, m):
    """MurmurHash3_x86_32 (seed 0) of ``m`` UTF-16 code units: Guava's ``hashUnencodedChars``."""
    h1 = np.uint64(0)
    for b in range(m // 2):
        k1 = np.uint64(units[2 * b]) | (np.uint64(units[2 * b + 1]) << _S16)
        h1 = _mix_h1(h1, _mix_k1(k1))
    if m & 1:
        h1 ^= _mix_k1(np.uint64(units[m - 1]))
    return _signed32(_fmix(h1, np.uint64(2 * m)))


@numba.njit(cache=True, inline="always")
def _bucket(h, num_features):
    """Flink ML's index: ``Math.floorMod(Math.abs(h), numFeatures)`` (abs(MIN_VALUE) stays negative)."""
    a = -h if (h < 0 and h != -2147483648) else h
    r = a % num_features
    return r + num_features if r < 0 else r


@numba.njit(cache=True)
def _hash_utf8(prefix, data, offsets, num_features, out):
    """Bucket of ``prefix + s`` for every UTF-8 string ``s`` of an Arrow string array (buffers)."""
    p = len(prefix)
    scratch = np.empty(64 + p, dtype=np.uint16)
    scratch[:p] = prefix
    for i in range(len(offsets) - 1):
        start, end = offsets[i], offsets[i + 1]
        need = p + (end - start)
        if need > len(scratch):
            bigger = np.empty(2 * need, dtype=np.uint16)
            bigger[:p] = prefix
            scratch = bigger
        m = p
        j = start
        while j < end:
            c = np.int64(data[j])
            if c < 0x80:
                cp = c
                j += 1
            elif c < 0xE0:
                cp = ((c & 0x1F) << 6) | (np.int64(data[j + 1]) & 0x3F)
                j += 2
            elif c < 0xF0:
                cp = ((c & 0x0F) << 12) | ((np.int64(data[j + 1]) & 0x3F) << 6) | (np.int64(data[j + 2]) & 0x3F)
                j += 3
            else:
                cp = (((c & 0x07) << 18) | ((np.int64(data[j + 1]) & 0x3F) << 12)
                      | ((np.int64(data[j + 2]) & 0x3F) << 6) | (np.int64(data[j + 3]) & 0x3F))
                j += 4
            if cp >= 0x10000:
                cp -= 0x10000
                scratch[m] = 0xD800 + (cp >> 10)
                scratch[m + 1] = 0xDC00 + (cp & 0x3FF)
                m += 2
            else:
                scratch[m] = cp
                m += 1
        out[i] = _bucket(_murmur3_units(scratch, m), num_features)


@numba.njit(cache=True)
def _merge_rows(idx, val, valid, indptr, out_idx, out_val):
    """Per row: sort the (index, value) entries of the k columns, sum duplicate indices.

    ``idx``/``val``/``valid`` are (k, n); writes CSR rows and returns the number of entries."""
    k, n = idx.shape
    bi = np.empty(k, dtype=np.int64)
    bv = np.empty(k, dtype=np.float64)
    pos = 0
    for r in range(n):
        m = 0
        for c in range(k):
            if valid[c, r]:
                x, v = idx[c, r], val[c, r]
                j = m
                while j > 0 and bi[j - 1] > x:
                    bi[j] = bi[j - 1]
                    bv[j] = bv[j - 1]
                    j -= 1
                bi[j] = x
                bv[j] = v
                m += 1
        j = 0
        while j < m:
            x, s = bi[j], bv[j]
            j += 1
            while j < m and bi[j] == x:
                s += bv[j]
                j += 1
            out_idx[pos] = x
            out_val[pos] = s
            pos += 1
        indptr[r + 1] = pos
    return pos


def _utf16_units(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-16-le", "surrogatepass"), dtype=np.uint16).copy()


def _hash_index(s: str, num_features: int) -> int:
    """Flink ML FeatureHasher index of string ``s`` (MurmurHash3 of its UTF-16 code units, seed 0)."""
    h = int(_murmur3_32(s.encode("utf-16-le", "surrogatepass"), 0))
    if h != -2147483648:
        h = abs(h)
    return h % num_features


def _hash_strings(prefix: str, arr: pa.Array, num_features: int) -> np.ndarray:
    """Buckets of ``prefix + s`` for each string of ``arr`` (nulls get an unused value)."""
    arr = arr.cast(pa.large_string()) if not pa.types.is_large_string(arr.type) else arr
    n = len(arr)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset: arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    _hash_utf8(_utf16_units(prefix), data, np.ascontiguousarray(offsets), np.int64(num_features), out)
    return out


class FeatureHasher(HasInputCols, HasCategoricalCols, HasOutputCol, HasNumFeatures, Transformer):
    """Projects numeric and categorical columns into a sparse vector of size ``num_features`` with the
    hashing trick, as Flink ML does.

    - A numeric column ``c`` adds its value at index ``hash(c)``.
    - A categorical column (string or boolean, or listed in ``categorical_cols``) with value ``v``
      adds 1.0 at index ``hash(c + "=" + str(v))``; numbers and booleans are written as Java does
      (``1.0``, ``3``, ``true``).
    - ``hash(s)`` is ``floorMod(abs(MurmurHash3_x86_32(UTF-16 code units of s, seed 0)),
      num_features)`` (Guava's ``murmur3_32().hashUnencodedChars`` in Flink ML). Colliding features
      are summed; nulls contribute nothing.

    The batch path hashes each distinct string of a batch once (dictionary encoding).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"price": [2.5], "city": ["Oslo"], "rooms": [3]})
        >>> fh = fl.feature.FeatureHasher(input_cols=["price", "city", "rooms"], categorical_cols=["rooms"],
        ...                               output_col="features", num_features=100)
        >>> fh.transform(t).column("features").to_pylist()
        [{'size': 100, 'indices': [14, 28, 53], 'values': [1.0, 1.0, 2.5]}]
    """

    def _check_cols(self) -> None:
        missing = [c for c in self.categorical_cols if c not in self.input_cols]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: parameter 'categorical_cols' names {missing}, which are not in "
                f"'input_cols' {self.input_cols}; categorical columns must be included in input_cols"
            )

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = _one_input(stage, tables, "transform")
        self._check_cols()
        n, nf = t.num_rows, self.num_features
        categorical = set(self.categorical_cols)
        k = len(self.input_cols)
        idx = np.zeros((k, n), dtype=np.int64)
        val = np.ones((k, n), dtype=np.float64)
        valid = np.ones((k, n), dtype=np.bool_)
        for i, c in enumerate(self.input_cols):
            arr = _combined(require_column(t, c, stage, "input_cols"))
            typ = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
            is_str = pa.types.is_string(typ) or pa.types.is_large_string(typ)
            is_num = pa.types.is_integer(typ) or pa.types.is_floating(typ)
            if not (is_str or is_num or pa.types.is_boolean(typ)):
                raise TypeError(
                    f"{stage}: column '{c}' (parameter 'input_cols') has type {arr.type}; FeatureHasher hashes "
                    f"numeric, string and boolean columns only"
                )
            if arr.null_count:
                valid[i] = arr.is_valid().to_numpy(zero_copy_only=False)
            if is_num and c not in categorical:
                idx[i] = _hash_index(c, nf)
                val[i] = arr.cast(pa.float64(), safe=False).fill_null(0.0).to_numpy(zero_copy_only=False)
                continue
            enc = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
            dictionary = enc.dictionary
            if not is_str:
                dictionary = pa.array(_java_strs_of(dictionary, allow_bool=True), type=pa.string())
            buckets = _hash_strings(c + "=", dictionary, nf)
            codes = enc.indices.fill_null(0).to_numpy(zero_copy_only=False)
            idx[i] = buckets[codes] if len(buckets) else 0
        indptr = np.zeros(n + 1, dtype=np.int64)
        out_idx = np.empty(k * n, dtype=np.int64)
        out_val = np.empty(k * n, dtype=np.float64)
        nnz = _merge_rows(idx, val, valid, indptr, out_idx, out_val)
        col = _sparse_column(np.full(n, nf), indptr, out_idx[:nnz], out_val[:nnz])
        return with_column(t, self._output_field(), col)

    def _output_field(self) -> pa.Field:
        """The output's size, and the names of the features a numeric column hashes to (its name;
        colliding columns joined by ``|``). A categorical value's index is known only once hashed."""
        key = (self.output_col, tuple(self.input_cols), tuple(self.categorical_cols), self.num_features)
        last = self.__dict__.get("_last_field")
        if last is not None and last[0] == key:
            return last[1]
        field = self._make_output_field()
        self._last_field = (key, field)
        return field

    def _make_output_field(self) -> pa.Field:
        categorical = set(self.categorical_cols)
        named: dict[int, str] = {}
        for c in self.input_cols:
            if c not in categorical:
                j = _hash_index(c, self.num_features)
                named[j] = f"{named[j]}|{c}" if j in named else c
        return vector_field(self.output_col, SPARSE_VECTOR, size=self.num_features, names=named)

    def row_fn(self):
        """Row kernel; strings already seen by this kernel are hashed from a per-column cache."""
        stage = type(self).__name__
        self._check_cols()
        nf, out_col = self.num_features, self.output_col
        cols = list(self.input_cols)
        categorical = set(self.categorical_cols)
        specs = [(c, _hash_index(c, nf), c + "=", c in categorical, {}) for c in cols]
        getter = operator.itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
        int32, float64, array = np.int32, np.float64, np.array
        max_cache = 1 << 16

        def run(row: dict) -> None:
            try:
                vals = getter(row)
            except KeyError:
                c = next(c for c in cols if c not in row)
                raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the row; it "
                                 f"has {sorted(row)}") from None
            acc: dict[int, float] = {}
            for (c, j, prefix, forced, cache), v in zip(specs, vals):
                if v is None:
                    continue
                tv = type(v)
                if tv is str:
                    key = v
                elif (tv is float or tv is int) and not forced:
                    acc[j] = acc.get(j, 0.0) + v
                    continue
                elif tv is bool or isinstance(v, np.bool_):
                    key = "true" if v else "false"
                elif isinstance(v, str):
                    key = str(v)
                elif isinstance(v, numbers.Real):
                    if not forced:
                        acc[j] = acc.get(j, 0.0) + float(v)
                        continue
                    key = _java_str(v)
                else:
                    raise TypeError(f"{stage}: column '{c}' holds {v!r} of type {tv.__name__}; FeatureHasher "
                                    f"hashes numbers, strings and booleans only")
                h = cache.get(key)
                if h is None:
                    if len(cache) >= max_cache:
                        cache.clear()
                    h = cache[key] = _hash_index(prefix + key, nf)
                acc[h] = acc.get(h, 0.0) + 1.0
            keys = sorted(acc)
            row[out_col] = SparseVector.unchecked(nf, array(keys, dtype=int32), array([acc[x] for x in keys],
                                                                                     dtype=float64))

        return run


def _murmurhash3_32(data: Any, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``bytes`` (or a ``str``, hashed as UTF-8) as a signed int (for tests/tools)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return int(_murmur3_32(bytes(data), int(seed) & 0xFFFFFFFF))
