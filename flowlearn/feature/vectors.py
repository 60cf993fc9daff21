"""Vector feature transformers with Flink ML 2.x semantics: ``Normalizer``, ``DCT``,
``ElementwiseProduct``, ``PolynomialExpansion``, ``Interaction``, ``VectorSlicer`` and
``Binarizer``. None needs fitting.

Each reads dense (``fixed_size_list<double>[n]``) or sparse (``flowlearn.sparse_vector``) vector
columns as a 2-D array or CSR matrix and works on the whole batch at once (NumPy, SciPy, or Numba
kernels over the CSR arrays). Sparse input gives sparse output wherever the transform keeps zeros
at zero (all but ``DCT``, which densifies as Flink ML does). Null vectors and NaN or infinite
entries are refused with an error naming the row.

Example:
    >>> from flowlearn.feature.vectors import Normalizer
    >>> Normalizer(input_col="v", output_col="n", p=1.0).transform({"v": [[1.0, -3.0]]}).column("n").to_pylist()
    [[0.25, -0.75]]
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pyarrow as pa
import scipy.fft
import scipy.sparse as sps

from flowlearn.api import Transformer
from flowlearn.data.columns import numeric_column, vector_column, with_column
from flowlearn.data.schema import column_size, is_numeric_type, vector_field
from flowlearn.feature._columns import (
    SchemaError,
    one_table,
    put_field,
    row_value,
    row_vector,
    schema_field,
    vector_out_type,
)
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, from_csr, from_numpy, is_sparse, is_vector_type
from flowlearn.params import REQUIRED, HasInputCol, HasInputCols, HasOutputCol, HasOutputCols, Param, Validator, \
    gt_eq, non_empty

__all__ = ["Normalizer", "DCT", "ElementwiseProduct", "PolynomialExpansion", "Interaction", "VectorSlicer",
           "Binarizer"]

_INT32_MAX = 2**31 - 1


def _vectors(stage: Transformer, t: pa.Table, col: str | None = None, param: str = "input_col",
             dense: bool | None = None) -> np.ndarray | sps.csr_matrix:
    """The input vectors (dense or sparse as stored unless ``dense`` says), never with 0 columns
    lost for an empty table whose sparse vectors do not tell their size."""
    name = col or stage.input_col
    x = vector_column(t, name, type(stage).__name__, param=param, dense=dense)
    if x.shape[0] == 0:
        size = column_size(t.schema.field(name)) or 0
        return sps.csr_matrix((0, size)) if sps.issparse(x) else np.zeros((0, size))
    return x


def _column_of(x: np.ndarray | sps.csr_matrix) -> pa.Array:
    if sps.issparse(x):
        x = sps.csr_matrix(x)
        if not x.data.all():  # stored zeros are dropped (on a copy: the arrays may be Arrow's read-only buffers)
            x = x.copy()
            x.eliminate_zeros()
        return from_csr(x)
    return from_numpy(x)


def _put(t: pa.Table, name: str, x: np.ndarray | sps.csr_matrix) -> pa.Table:
    arr = _column_of(x)
    return with_column(t, vector_field(name, arr.type, x.shape[1]), arr)


def _sparse_row(size: int, indices: np.ndarray, values: np.ndarray) -> SparseVector:
    """A row kernel's sparse output, without stored zeros (as the batch path writes it)."""
    keep = values != 0
    if not keep.all():
        indices, values = indices[keep], values[keep]
    return SparseVector.unchecked(size, np.asarray(indices, dtype=np.int32), np.asarray(values, dtype=np.float64))


def _check_row_size(stage: str, col: str, size: int, want: int, what: str) -> None:
    if size != want:
        raise ValueError(f"{stage}: column '{col}' holds a vector of size {size} in this row, but {what} has size "
                         f"{want}; they must be equal")


def _same_kind_schema(stage: Transformer, schema: pa.Schema, size_of=None) -> pa.Schema:
    """The schema with an output of the input vector's kind, of size ``size_of(input size)`` (the
    input's size by default; either may be None, unknown)."""
    name = type(stage).__name__
    f = schema_field(schema, stage.input_col, name, "input_col")
    _, in_size = vector_out_type(f, name, "input_col")
    size = in_size if size_of is None else size_of(in_size)
    typ, _ = vector_out_type(f.with_metadata({}), name, "input_col", sparse=is_sparse(f.type), size=size)
    return put_field(schema, vector_field(stage.output_col, typ, size))


# --------------------------------------------------------------------------------------------
# Normalizer


_P_RULE = Validator("p_norm()", "a number >= 1, or infinity (the maximum norm)",
                    lambda v: v >= 1.0 and not math.isnan(v))


class Normalizer(HasInputCol, HasOutputCol, Transformer):
    """Scales each vector to unit p-norm, as Flink ML's ``Normalizer``: ``x / ||x||_p`` with
    ``||x||_p = (sum |x_i|^p)^(1/p)`` (``p=inf``: the largest ``|x_i|``). A zero vector stays zero
    (Flink ML divides by 0 and gives NaN; Spark and scikit-learn keep it, as here). Sparse vectors
    stay sparse.

    Input: ``input_col`` (vectors). Output: ``output_col`` (vectors of the same kind and size).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``p`` (2.0; at least 1, or ``inf``).

    Example:
        >>> from flowlearn.feature.vectors import Normalizer
        >>> n = Normalizer(input_col="v", output_col="unit")
        >>> n.transform({"v": [[3.0, 4.0], [0.0, 0.0]]}).column("unit").to_pylist()
        [[0.6, 0.8], [0.0, 0.0]]
    """

    p = Param(float, default=2.0, validator=_P_RULE, doc="The p of the p-norm (>= 1, or inf).")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        x = _vectors(self, t)
        p = self.p
        if sps.issparse(x):
            a = abs(x)
            if p == math.inf:
                norm = a.max(axis=1).toarray().ravel()
            elif p == 1.0:
                norm = np.asarray(a.sum(axis=1)).ravel()
            else:
                norm = np.asarray(a.power(p).sum(axis=1)).ravel() ** (1 / p)
        elif p == 2.0:
            norm = np.sqrt(np.einsum("ij,ij->i", x, x))
        elif p == 1.0:
            norm = np.abs(x).sum(axis=1)
        elif p == math.inf:
            norm = np.abs(x).max(axis=1, initial=0.0)
        else:
            norm = (np.abs(x) ** p).sum(axis=1) ** (1 / p)
        norm[norm == 0] = 1.0  # a zero vector stays zero
        if sps.issparse(x):
            y = sps.csr_matrix((x.data / np.repeat(norm, np.diff(x.indptr)), x.indices, x.indptr), shape=x.shape)
        else:
            y = x / norm[:, None]
        return _put(t, self.output_col, y)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        return _same_kind_schema(self, input_schema)

    def row_fn(self):
        stage, c, o, p = type(self).__name__, self.input_col, self.output_col, self.p

        def norm_of(v: np.ndarray) -> float:
            if p == 2.0:
                n = math.sqrt(float(np.dot(v, v)))
            elif p == 1.0:
                n = float(np.abs(v).sum())
            elif p == math.inf:
                n = float(np.abs(v).max(initial=0.0))
            else:
                n = float((np.abs(v) ** p).sum() ** (1 / p))
            return n if n != 0 else 1.0

        def fn(row: dict) -> None:
            v = row_vector(row, c, stage)
            if isinstance(v, SparseVector):
                row[o] = _sparse_row(v.size, v.indices, v.values / norm_of(v.values))
            else:
                row[o] = v / norm_of(v)

        return fn


# --------------------------------------------------------------------------------------------
# DCT


def _dct(x: np.ndarray, inverse: bool) -> np.ndarray:
    """The orthonormal DCT-II (or its inverse) of each row of ``x``. Each row is scaled by a power
    of two (exact) so that no intermediate sum overflows for entries near the float64 limit."""
    f = scipy.fft.idct if inverse else scipy.fft.dct
    top = np.max(np.abs(x), axis=1, keepdims=True)
    _, exponent = np.frexp(np.where(np.isfinite(top) & (top > 0), top, 1.0))
    scale = np.ldexp(1.0, exponent - 1)   # rows scaled into [0.5, 2): 2**1023 at most, no overflow
    with np.errstate(over="ignore"):   # a result beyond float64's range is inf, as any overflowing sum
        return f(x / scale, type=2, norm="ortho", axis=1) * scale


class DCT(HasInputCol, HasOutputCol, Transformer):
    """The 1-D discrete cosine transform of each vector, as Flink ML's ``DCT``: the orthonormal
    (unitary) DCT-II, or with ``inverse=True`` its inverse (the orthonormal DCT-III), of the whole
    vector without padding; ``scipy.fft.dct(x, norm="ortho")`` computes the same. The output is
    dense (sparse input is densified, as in Flink ML).

    Input: ``input_col`` (vectors). Output: ``output_col`` (dense vectors of the input's size).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``inverse`` (False).

    Example:
        >>> from flowlearn.feature.vectors import DCT
        >>> out = DCT(input_col="v", output_col="c").transform({"v": [[1.0, 1.0, 1.0, 1.0]]})
        >>> [round(c, 12) for c in out.column("c").to_pylist()[0]]
        [2.0, 0.0, 0.0, 0.0]
    """

    inverse = Param(bool, default=False, doc="True: the inverse DCT; False: the forward DCT.")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        x = _vectors(self, t, dense=True)
        if x.shape[0] and x.shape[1]:
            x = _dct(x, self.inverse)
        return _put(t, self.output_col, np.array(x, dtype=np.float64))

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        f = schema_field(input_schema, self.input_col, stage, "input_col")
        typ, size = vector_out_type(f, stage, "input_col", sparse=False)
        return put_field(input_schema, vector_field(self.output_col, typ, size))

    def row_fn(self):
        stage, c, o, inverse = type(self).__name__, self.input_col, self.output_col, self.inverse

        def fn(row: dict) -> None:
            v = row_vector(row, c, stage)
            x = v.to_numpy() if isinstance(v, SparseVector) else v
            row[o] = _dct(x[None, :], inverse)[0] if len(x) else np.zeros(0)

        return fn


# --------------------------------------------------------------------------------------------
# ElementwiseProduct


class ElementwiseProduct(HasInputCol, HasOutputCol, Transformer):
    """Multiplies each vector by ``scaling_vec``, entry by entry (the Hadamard product), as Flink
    ML's ``ElementwiseProduct``. The vectors must have the size of ``scaling_vec``; sparse vectors
    stay sparse.

    Input: ``input_col`` (vectors). Output: ``output_col`` (vectors of the same kind and size).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``scaling_vec`` (required, a list of
    numbers).

    Example:
        >>> from flowlearn.feature.vectors import ElementwiseProduct
        >>> ep = ElementwiseProduct(input_col="v", output_col="w", scaling_vec=[1.1, 1.1])
        >>> ep.transform({"v": [[2.1, 3.1]]}).column("w").to_pylist()
        [[2.3100000000000005, 3.4100000000000006]]
    """

    scaling_vec = Param(list[float], default=REQUIRED, validator=non_empty(),
                        doc="The vector to multiply each input vector with, entry by entry.")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        s = np.asarray(self.scaling_vec, dtype=np.float64)
        x = _vectors(self, t)
        if x.shape[0] and x.shape[1] != len(s):
            raise ValueError(f"{stage}: column '{self.input_col}' holds vectors of size {x.shape[1]} (row 0), but "
                             f"parameter 'scaling_vec' has size {len(s)}; they must be equal")
        if x.shape[0] == 0:
            x = sps.csr_matrix((0, len(s))) if sps.issparse(x) else np.zeros((0, len(s)))
        if sps.issparse(x):
            y = sps.csr_matrix((x.data * s[x.indices], x.indices, x.indptr), shape=x.shape)
        else:
            y = x * s
        return _put(t, self.output_col, y)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        n = len(self.scaling_vec)
        return _same_kind_schema(self, input_schema, lambda size: n)

    def row_fn(self):
        stage, c, o = type(self).__name__, self.input_col, self.output_col
        s = np.asarray(self.scaling_vec, dtype=np.float64)

        def fn(row: dict) -> None:
            v = row_vector(row, c, stage)
            if isinstance(v, SparseVector):
                _check_row_size(stage, c, v.size, len(s), "parameter 'scaling_vec'")
                row[o] = _sparse_row(v.size, v.indices, v.values * s[v.indices])
            else:
                _check_row_size(stage, c, len(v), len(s), "parameter 'scaling_vec'")
                row[o] = v * s

        return fn


# --------------------------------------------------------------------------------------------
# PolynomialExpansion


def _poly_size(n: int, degree: int) -> int:
    """Number of monomials of degree 1..degree in n variables: C(n + degree, degree) - 1."""
    return math.comb(n + degree, degree) - 1


def _binomials(n: int, degree: int) -> np.ndarray:
    """``b[r, u] = C(r + u, u)`` for ``r <= degree`` and ``u < n`` (the offsets of the expansion order)."""
    b = np.ones((degree + 1, max(n, 1)), dtype=np.int64)
    for r in range(1, degree + 1):
        b[r] = np.cumsum(b[r - 1])  # C(r + u, u) = sum_{w <= u} C(r - 1 + w, w)
    return b


@numba.njit(cache=True)
def _expand(g, v, degree, binom, out_pos, out_val, start):
    """Writes the monomials of degree 1..degree of the variables ``g`` (ascending global indices) with
    values ``v``, in Flink ML's (and Spark's) order, at ``out_pos``/``out_val[start:]``; returns the end.

    The order lists each monomial as its variables in descending order, lexicographically (a prefix
    first): x0, x0^2, ..., x1, x1*x0, x1*x0^2, ..., x1^2, ... A depth-first walk over those lists
    visits them in that order, and a monomial's position is its parent's plus C(r + u, u) (``r``:
    degree left at the parent, ``u``: the new variable's index), so sparse vectors give sorted
    indices directly."""
    k = len(g)
    cur = np.zeros(degree + 1, dtype=np.int64)
    pos = np.zeros(degree + 1, dtype=np.int64)
    val = np.ones(degree + 1, dtype=np.float64)
    pos[0] = -1
    o = start
    if k == 0:
        return o
    depth = 1
    cur[1] = 0
    while depth >= 1:
        a = cur[depth]
        limit = k - 1 if depth == 1 else cur[depth - 1]
        if a > limit:
            depth -= 1
            if depth >= 1:
                cur[depth] += 1
            continue
        pos[depth] = pos[depth - 1] + binom[degree - depth + 1, g[a]]
        val[depth] = val[depth - 1] * v[a]
        out_pos[o] = pos[depth]
        out_val[o] = val[depth]
        o += 1
        if depth < degree:
            depth += 1
            cur[depth] = 0
        else:
            cur[depth] += 1
    return o


@numba.njit(cache=True)
def _expand_dense(x, degree, binom, out):
    n = x.shape[1]
    g = np.arange(n)
    m = out.shape[1]
    pos = np.empty(m, dtype=np.int64)
    val = np.empty(m, dtype=np.float64)
    for i in range(x.shape[0]):
        _expand(g, x[i], degree, binom, pos, val, 0)
        for j in range(m):
            out[i, pos[j]] = val[j]


@numba.njit(cache=True)
def _expand_sparse(indptr, indices, data, degree, binom, out_indptr, out_pos, out_val):
    for i in range(len(indptr) - 1):
        a, b = indptr[i], indptr[i + 1]
        out_indptr[i + 1] = _expand(indices[a:b], data[a:b], degree, binom, out_pos, out_val, out_indptr[i])


class PolynomialExpansion(HasInputCol, HasOutputCol, Transformer):
    """Expands each vector into its monomials of degree 1 to ``degree``, as Flink ML's (and
    Spark's) ``PolynomialExpansion``, in their order: for ``(x, y)`` and degree 2,
    ``(x, x*x, y, x*y, y*y)``. A vector of size ``n`` gives ``C(n + degree, degree) - 1`` entries
    (scikit-learn's ``PolynomialFeatures(include_bias=False)`` gives the same monomials in another
    order). Sparse vectors stay sparse: only monomials of stored entries are written.

    Input: ``input_col`` (vectors). Output: ``output_col`` (vectors of the same kind).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``degree`` (2, at least 1).

    Example:
        >>> from flowlearn.feature.vectors import PolynomialExpansion
        >>> pe = PolynomialExpansion(input_col="v", output_col="p", degree=2)
        >>> pe.transform({"v": [[2.0, 3.0]]}).column("p").to_pylist()
        [[2.0, 4.0, 3.0, 6.0, 9.0]]
    """

    degree = Param(int, default=2, validator=gt_eq(1), doc="Highest degree of the monomials.")

    def _out_size(self, n: int) -> int:
        size = _poly_size(n, self.degree)
        if size > _INT32_MAX:
            raise ValueError(f"{type(self).__name__}: vectors of size {n} expanded to degree {self.degree} have "
                             f"{size} monomials, more than a vector holds (2**31 - 1); lower 'degree' or select "
                             f"fewer features first (VectorSlicer)")
        return size

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        x = _vectors(self, t)
        rows, n = x.shape
        d = self.degree
        size = self._out_size(n)
        binom = _binomials(n, d)
        if sps.issparse(x):
            per_row = np.diff(x.indptr)
            counts = np.array([_poly_size(int(k), d) for k in range(int(per_row.max(initial=0)) + 1)],
                              dtype=np.int64)[per_row]
            total = int(counts.sum())
            indptr = np.zeros(rows + 1, dtype=np.int64)
            pos = np.empty(total, dtype=np.int64)
            val = np.empty(total, dtype=np.float64)
            _expand_sparse(x.indptr.astype(np.int64), x.indices.astype(np.int64), x.data.astype(np.float64), d,
                           binom, indptr, pos, val)
            y = sps.csr_matrix((val, pos, indptr), shape=(rows, size))
            y.has_canonical_format = True  # the walk writes each row's positions in increasing order
        else:
            y = np.empty((rows, size), dtype=np.float64)
            if rows and n:
                _expand_dense(np.ascontiguousarray(x), d, binom, y)
        return _put(t, self.output_col, y)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        return _same_kind_schema(self, input_schema, lambda n: None if n is None else self._out_size(n))

    def row_fn(self):
        stage, c, o, d = type(self).__name__, self.input_col, self.output_col, self.degree
        cache: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}

        def plan(n: int) -> tuple[int, np.ndarray, np.ndarray]:
            if n not in cache:
                cache.clear()
                cache[n] = (self._out_size(n), _binomials(n, d), np.arange(n, dtype=np.int64))
            return cache[n]

        def fn(row: dict) -> None:
            v = row_vector(row, c, stage)
            if isinstance(v, SparseVector):
                size, binom, _ = plan(v.size)
                m = _poly_size(len(v.indices), d)
                pos, val = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.float64)
                _expand(v.indices.astype(np.int64), v.values, d, binom, pos, val, 0)
                row[o] = _sparse_row(size, pos, val)
                return
            size, binom, g = plan(len(v))
            pos, val = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.float64)
            _expand(g, v, d, binom, pos, val, 0)
            out = np.empty(size)
            out[pos] = val
            row[o] = out

        return fn


# --------------------------------------------------------------------------------------------
# Interaction


@numba.njit(cache=True)
def _rowwise_kron(ap, ai, av, bp, bi, bv, q, out_p, out_i, out_v):
    """Row by row, the Kronecker product of two CSR matrices (sizes p and q): entry (i, j) of a row
    goes to index ``i * q + j``, in increasing order."""
    o = 0
    for r in range(len(ap) - 1):
        for s in range(ap[r], ap[r + 1]):
            for u in range(bp[r], bp[r + 1]):
                out_i[o] = ai[s] * q + bi[u]
                out_v[o] = av[s] * bv[u]
                o += 1
        out_p[r + 1] = o


class Interaction(HasInputCols, HasOutputCol, Transformer):
    """Multiplies together one value from each input column, for every combination, as Flink ML's
    ``Interaction``: the output is the Kronecker product of the inputs, the first column's index
    varying slowest. Numeric columns count as vectors of size 1: ``2`` and ``(3, 4)`` give
    ``(6, 8)``; ``(1, 2)`` and ``(3, 4)`` give ``(3, 4, 6, 8)``. The output is sparse when any input
    is sparse, else dense.

    Input: ``input_cols`` (numeric or vector columns). Output: ``output_col`` (a vector of the
    product of the inputs' sizes).

    Params: ``input_cols`` (required), ``output_col`` ("output").

    Example:
        >>> from flowlearn.feature.vectors import Interaction
        >>> it = Interaction(input_cols=["a", "b"], output_col="ab")
        >>> it.transform({"a": [[1.0, 2.0]], "b": [[3.0, 4.0]]}).column("ab").to_pylist()
        [[3.0, 4.0, 6.0, 8.0]]
    """

    def _inputs(self, t: pa.Table) -> list[np.ndarray | sps.csr_matrix]:
        stage = type(self).__name__
        out = []
        for c in self.input_cols:
            f = schema_field(t.schema, c, stage, "input_cols")
            if is_vector_type(f.type):
                out.append(_vectors(self, t, c, "input_cols"))
            else:
                out.append(numeric_column(t, c, stage, param="input_cols")[:, None])
        return out

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        xs = self._inputs(t)
        rows = t.num_rows
        size = math.prod(x.shape[1] for x in xs)
        if size > _INT32_MAX:
            raise ValueError(f"{stage}: the product of the input sizes {[x.shape[1] for x in xs]} is {size}, more "
                             f"than a vector holds (2**31 - 1)")
        if any(sps.issparse(x) for x in xs):
            acc = sps.csr_matrix(xs[0])
            for x in xs[1:]:
                b = sps.csr_matrix(x)
                counts = np.diff(acc.indptr) * np.diff(b.indptr)
                total = int(counts.sum())
                p = np.zeros(rows + 1, dtype=np.int64)
                i = np.empty(total, dtype=np.int64)
                v = np.empty(total, dtype=np.float64)
                _rowwise_kron(acc.indptr.astype(np.int64), acc.indices.astype(np.int64), acc.data, b.indptr.astype(
                    np.int64), b.indices.astype(np.int64), b.data, b.shape[1], p, i, v)
                acc = sps.csr_matrix((v, i, p), shape=(rows, acc.shape[1] * b.shape[1]))
            y = acc
        else:
            y = xs[0]
            for x in xs[1:]:
                y = (y[:, :, None] * x[:, None, :]).reshape(rows, y.shape[1] * x.shape[1])
            y = np.ascontiguousarray(y, dtype=np.float64)
        return _put(t, self.output_col, y)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        sizes, sparse = [], False
        for c in self.input_cols:
            f = schema_field(input_schema, c, stage, "input_cols")
            if is_vector_type(f.type):
                sizes.append(column_size(f))
                sparse |= is_sparse(f.type)
            elif is_numeric_type(f.type):
                sizes.append(1)
            else:
                raise SchemaError(f"{stage}: column '{c}' (parameter 'input_cols') has type {f.type}, expected a "
                                  f"numeric or vector column")
        size = None if None in sizes else math.prod(sizes)
        typ = SPARSE_VECTOR if sparse else (pa.list_(pa.float64(), size) if size is not None
                                            else pa.list_(pa.float64()))
        return put_field(input_schema, vector_field(self.output_col, typ, size))

    def row_fn(self):
        stage, cols, o = type(self).__name__, list(self.input_cols), self.output_col

        def value(row: dict, c: str) -> np.ndarray | SparseVector:
            v = row_value(row, c, stage, "input_cols")
            if isinstance(v, (bool, int, float, np.number)) and not isinstance(v, np.ndarray):
                return np.array([float(v)])
            if v is None:
                raise ValueError(f"{stage}: column '{c}' is null in this row; drop or impute it first")
            if isinstance(v, str):
                raise TypeError(f"{stage}: column '{c}' holds a string, expected a number or a vector")
            return row_vector(row, c, stage, "input_cols")

        def fn(row: dict) -> None:
            vs = [value(row, c) for c in cols]
            if not any(isinstance(v, SparseVector) for v in vs):
                out = vs[0]
                for v in vs[1:]:
                    out = np.kron(out, v)
                row[o] = np.asarray(out, dtype=np.float64)
                return
            idx, val, size = np.zeros(1, dtype=np.int64), np.ones(1), 1
            for v in vs:
                if isinstance(v, SparseVector):
                    bi, bv, q = v.indices.astype(np.int64), v.values, v.size
                else:
                    bi, bv, q = np.arange(len(v), dtype=np.int64), v, len(v)
                idx = (idx[:, None] * q + bi[None, :]).ravel()
                val = (val[:, None] * bv[None, :]).ravel()
                size *= q
            row[o] = _sparse_row(size, idx, val)

        return fn


# --------------------------------------------------------------------------------------------
# VectorSlicer


class VectorSlicer(HasInputCol, HasOutputCol, Transformer):
    """Picks the entries at ``indices`` of each vector, in the order given, as Flink ML's
    ``VectorSlicer``. Every index must be below the vectors' size; sparse vectors stay sparse.

    Input: ``input_col`` (vectors). Output: ``output_col`` (vectors of size ``len(indices)``).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``indices`` (required: distinct,
    >= 0).

    Example:
        >>> from flowlearn.feature.vectors import VectorSlicer
        >>> vs = VectorSlicer(input_col="v", output_col="s", indices=[2, 0])
        >>> vs.transform({"v": [[1.0, 2.0, 3.0]]}).column("s").to_pylist()
        [[3.0, 1.0]]
    """

    indices = Param(list[int], default=REQUIRED, validator=gt_eq(0),
                    doc="Distinct indices (>= 0) of the entries to pick, in output order.")

    def _indices(self) -> np.ndarray:
        idx = self.indices
        stage = type(self).__name__
        if not idx:
            raise ValueError(f"{stage}: parameter 'indices' is empty; give at least one index to pick")
        if len(set(idx)) != len(idx):
            dup = next(i for i in idx if idx.count(i) > 1)
            raise ValueError(f"{stage}: parameter 'indices' = {idx!r} holds index {dup} twice; indices must be "
                             f"distinct")
        return np.asarray(idx, dtype=np.int64)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        idx = self._indices()
        x = _vectors(self, t)
        if x.shape[0] == 0:
            x = sps.csr_matrix((0, len(idx))) if sps.issparse(x) else np.zeros((0, len(idx)))
        else:
            if idx.max() >= x.shape[1]:
                raise ValueError(f"{stage}: parameter 'indices' holds index {int(idx.max())}, but column "
                                 f"'{self.input_col}' holds vectors of size {x.shape[1]}; indices must be below the "
                                 f"vector size")
            x = x[:, idx]
            if sps.issparse(x):
                x = sps.csr_matrix(x)
                x.sort_indices()
        return _put(t, self.output_col, x)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        n = len(self._indices())
        return _same_kind_schema(self, input_schema, lambda size: n)

    def row_fn(self):
        stage, c, o = type(self).__name__, self.input_col, self.output_col
        idx = self._indices()
        top = int(idx.max())

        def fn(row: dict) -> None:
            v = row_vector(row, c, stage)
            size = v.size if isinstance(v, SparseVector) else len(v)
            if top >= size:
                raise ValueError(f"{stage}: parameter 'indices' holds index {top}, but column '{c}' holds a vector of "
                                 f"size {size} in this row; indices must be below the vector size")
            if isinstance(v, SparseVector):
                pos = np.searchsorted(v.indices, idx)
                pos[pos >= len(v.indices)] = 0
                found = (v.indices[pos] == idx) if len(v.indices) else np.zeros(len(idx), dtype=bool)
                row[o] = _sparse_row(len(idx), np.flatnonzero(found), v.values[pos[found]])
            else:
                row[o] = v[idx]

        return fn


# --------------------------------------------------------------------------------------------
# Binarizer


class Binarizer(HasInputCols, HasOutputCols, Transformer):
    """Maps values above a threshold to 1.0 and the others to 0.0, as Flink ML's ``Binarizer``:
    each input column (numeric, dense or sparse vectors) has its threshold in ``thresholds`` and
    gives an output column (``double`` for numeric input, vectors of the input's kind and size).

    Sparse vectors stay sparse. With a negative threshold the implicit zeros of a sparse vector are
    above it and become 1.0, as Spark does and as the dense form of the same vector gives (Flink ML
    leaves them 0.0, so its sparse and dense results differ there).

    Params: ``input_cols`` (required), ``output_cols`` (required, one per input column),
    ``thresholds`` (required, one per input column).

    Example:
        >>> from flowlearn.feature.vectors import Binarizer
        >>> b = Binarizer(input_cols=["x", "v"], output_cols=["bx", "bv"], thresholds=[1.0, 0.5])
        >>> out = b.transform({"x": [0.5, 2.0], "v": [[0.2, 0.8], [1.0, 0.5]]})
        >>> out.column("bx").to_pylist(), out.column("bv").to_pylist()
        ([0.0, 1.0], [[0.0, 1.0], [1.0, 0.0]])
    """

    thresholds = Param(list[float], default=REQUIRED, validator=non_empty(),
                       doc="One threshold per input column: values above it become 1.0, the others 0.0.")

    def _specs(self) -> list[tuple[str, str, float]]:
        ins, outs, th = self.input_cols, self.output_cols, self.thresholds
        if not (len(ins) == len(outs) == len(th)):
            raise ValueError(f"{type(self).__name__}: parameters 'input_cols' ({len(ins)}), 'output_cols' "
                             f"({len(outs)}) and 'thresholds' ({len(th)}) must have the same length: one output "
                             f"column and one threshold per input column")
        bad = [v for v in th if math.isnan(v)]
        if bad:
            raise ValueError(f"{type(self).__name__}: parameter 'thresholds' holds NaN; every threshold must be a "
                             f"number")
        return list(zip(ins, outs, th))

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        results = []
        for c, o, th in self._specs():  # read every input before writing any output
            f = schema_field(t.schema, c, stage, "input_cols")
            if not is_vector_type(f.type):
                x = numeric_column(t, c, stage, param="input_cols")
                results.append((pa.field(o, pa.float64()), pa.array((x > th).astype(np.float64))))
                continue
            x = _vectors(self, t, c, "input_cols")
            if sps.issparse(x):
                if th < 0:  # implicit zeros are above the threshold too: they become stored ones
                    dense = np.ones(x.shape)
                    dense[np.repeat(np.arange(x.shape[0]), np.diff(x.indptr)), x.indices] = x.data > th
                    y = sps.csr_matrix(dense)
                else:
                    y = sps.csr_matrix(((x.data > th).astype(np.float64), x.indices, x.indptr), shape=x.shape)
                arr = _column_of(y)
            else:
                arr = from_numpy((x > th).astype(np.float64))
            results.append((vector_field(o, arr.type, x.shape[1]), arr))
        for field, arr in results:
            t = with_column(t, field, arr)
        return t

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        schema = input_schema
        for c, o, _ in self._specs():
            f = schema_field(input_schema, c, stage, "input_cols")
            if is_vector_type(f.type):
                typ, size = vector_out_type(f, stage, "input_cols")
                schema = put_field(schema, vector_field(o, typ, size))
            elif is_numeric_type(f.type):
                schema = put_field(schema, pa.field(o, pa.float64()))
            else:
                raise SchemaError(f"{stage}: column '{c}' (parameter 'input_cols') has type {f.type}, expected a "
                                  f"numeric or vector column")
        return schema

    def row_fn(self):
        stage = type(self).__name__
        specs = self._specs()

        def one(row: dict, c: str, th: float):
            v = row_value(row, c, stage, "input_cols")
            if v is None:
                raise ValueError(f"{stage}: column '{c}' is null in this row; impute or filter nulls first")
            if isinstance(v, (bool, int, float, np.number)) and not isinstance(v, np.ndarray):
                x = float(v)
                if not math.isfinite(x):
                    raise ValueError(f"{stage}: column '{c}' has NaN or infinity in this row")
                return 1.0 if x > th else 0.0
            if isinstance(v, str):
                raise TypeError(f"{stage}: column '{c}' holds a string, expected a number or a vector")
            v = row_vector(row, c, stage, "input_cols")
            if not isinstance(v, SparseVector):
                return (v > th).astype(np.float64)
            if th < 0:  # implicit zeros are above the threshold too
                out = np.ones(v.size)
                out[v.indices] = v.values > th
                return _sparse_row(v.size, np.arange(v.size), out)
            return _sparse_row(v.size, v.indices, (v.values > th).astype(np.float64))

        def fn(row: dict) -> None:
            outs = [(o, one(row, c, th)) for c, o, th in specs]
            for o, x in outs:
                row[o] = x

        return fn
