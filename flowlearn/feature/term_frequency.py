"""Term-frequency stages with Flink ML 2.x semantics: ``HashingTF``, ``CountVectorizer`` (+ model)
and ``IDF`` (+ model), the vectorizing half of a text pipeline after :mod:`flowlearn.feature.text`.

Token lists are read through their flat values and offsets; terms are hashed (Numba) or looked up
(``pyarrow.compute.index_in``) for the whole batch at once, and counted into CSR matrices. The
outputs are sparse vectors. ``HashingTF`` and ``CountVectorizer`` need a token list in every row
and name the row that has none.

Example:
    >>> from flowlearn.feature.text import Tokenizer
    >>> from flowlearn.feature.term_frequency import HashingTF
    >>> t = Tokenizer(input_col="text", output_col="words").transform({"text": ["Hi there", "hi"]})
    >>> HashingTF(input_col="words", output_col="tf", num_features=16).transform(t).column("tf").to_pylist()[1]
    {'size': 16, 'indices': [7], 'values': [1.0]}
"""
from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sps

from flowlearn.api import Model, OnePassEstimator, Transformer
from flowlearn.data.columns import vector_column, with_column
from flowlearn.data.schema import vector_field
from flowlearn.feature._columns import (
    SchemaError,
    combined,
    one_table,
    put_field,
    row_vector,
    schema_field,
    string_list_array,
    vector_out_type,
)
from flowlearn.feature.assemblers import _murmur3_32, _murmur3_units
from flowlearn.feature.text import _TOKENS, _flat, _row_tokens, _tokens_field, _utf16_length
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, from_csr, from_numpy
from flowlearn.params import HasInputCol, HasNumFeatures, HasOutputCol, Param, gt, gt_eq, in_range

__all__ = ["HashingTF", "CountVectorizer", "CountVectorizerModel", "IDF", "IDFModel"]


# --------------------------------------------------------------------------------------------
# HashingTF


@numba.njit(cache=True)
def _hash_fixed(data, seed, out):
    """MurmurHash3_x86_32 of each row of a (n, w) byte matrix (Guava's ``hashInt``/``hashLong``)."""
    for i in range(data.shape[0]):
        out[i] = _murmur3_32(data[i], seed)


@numba.njit(cache=True)
def _hash_utf16(units, offsets, out):
    """MurmurHash3_x86_32 (seed 0) of each string's UTF-16 code units (Guava's ``hashUnencodedChars``)."""
    for i in range(len(offsets) - 1):
        out[i] = _murmur3_units(units[offsets[i]:offsets[i + 1]], offsets[i + 1] - offsets[i])


def _string_hashes(values: pa.Array) -> np.ndarray:
    """Flink ML's hash of each string (distinct strings hashed once); nulls hash to 0 as in Flink ML."""
    enc = pc.dictionary_encode(values)
    d = enc.dictionary
    hashes = np.zeros(len(d), dtype=np.int64)
    if len(d):
        # one UTF-8 decode and UTF-16 encode of all the distinct strings; per-string lengths in code units
        d = d.cast(pa.string()) if not pa.types.is_string(d.type) else d
        _, off_buf, data_buf = d.buffers()
        offs = np.frombuffer(off_buf, dtype=np.int32)[d.offset: d.offset + len(d) + 1]
        raw = b"" if data_buf is None else data_buf.to_pybytes()[offs[0]:offs[-1]]
        units = np.frombuffer(raw.decode("utf-8").encode("utf-16-le", "surrogatepass"), dtype=np.uint16)
        lengths = _utf16_length(d)
        uoff = np.zeros(len(d) + 1, dtype=np.int64)
        np.cumsum(lengths, out=uoff[1:])
        _hash_utf16(units, uoff, hashes)
    codes = enc.indices
    out = hashes[codes.fill_null(0).to_numpy(zero_copy_only=False)] if len(d) else np.zeros(len(values), np.int64)
    if codes.null_count:
        out[np.asarray(codes.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = 0
    return out


def _number_hashes(values: pa.Array, stage: str, col: str) -> np.ndarray:
    """Flink ML's hash of numbers and booleans: Guava ``hashInt`` of int/short/byte/boolean (0 or 1) and
    of ``Float.floatToIntBits``, ``hashLong`` of long and of ``Double.doubleToLongBits``."""
    t = values.type
    if pa.types.is_boolean(t):
        x = values.cast(pa.int32())
    elif pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t) or pa.types.is_uint16(t):
        x = values.cast(pa.int32())
    elif pa.types.is_int32(t) or pa.types.is_int64(t) or pa.types.is_float64(t) or pa.types.is_float32(t):
        x = values
    elif pa.types.is_uint32(t):
        x = values.cast(pa.int64())
    else:
        raise TypeError(f"{stage}: column '{col}' (parameter 'input_col') holds lists of {t}; HashingTF hashes lists "
                        f"of strings, integers (up to int64), floats and booleans")
    valid = None if not x.null_count else np.asarray(x.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    arr = x.fill_null(0).to_numpy(zero_copy_only=False)
    if arr.dtype.kind == "f":
        arr = arr.copy()
        arr[np.isnan(arr)] = np.nan  # Java's canonical NaN bits
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    out = np.zeros(len(arr), dtype=np.int64)
    if len(arr):
        _hash_fixed(arr.view(np.uint8).reshape(len(arr), arr.dtype.itemsize), np.uint64(0), out)
    if valid is not None:
        out[~valid] = 0
    return out


def _term_lists(t: pa.Table, name: str, stage: str) -> pa.Array:
    """A column of term lists (any list type), refusing null lists naming the row."""
    if name not in t.column_names:
        schema_field(t.schema, name, stage, "input_col")
    arr = combined(t.column(name))
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise TypeError(f"{stage}: column '{name}' (parameter 'input_col') has type {arr.type}, expected a column of "
                        f"term lists (list<string>, such as Tokenizer's output, or lists of numbers)")
    if arr.null_count:
        row = int(np.flatnonzero(~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool))[0])
        raise ValueError(f"{stage}: column '{name}' has a null list at row {row}; give every row a list (an empty "
                         f"list for an empty document) or filter such rows first")
    return arr


def _count_matrix(rows: np.ndarray, cols: np.ndarray, n: int, size: int) -> sps.csr_matrix:
    """Counts of (row, column) pairs as a CSR matrix with sorted indices; ``rows`` is non-decreasing
    (entries in row order, as flattened lists give them), so the CSR arrays are built directly."""
    indptr = np.zeros(n + 1, dtype=np.int64)
    if len(rows):
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    m = sps.csr_matrix((np.ones(len(cols), dtype=np.float64), np.asarray(cols, dtype=np.int64), indptr),
                       shape=(n, size))
    m.sum_duplicates()
    return m


class HashingTF(HasInputCol, HasOutputCol, HasNumFeatures, Transformer):
    """Maps each list of terms to a sparse vector of term frequencies with the hashing trick, as
    Flink ML's ``HashingTF``: term ``t`` counts at index ``nonNegativeMod(hash(t), num_features)``,
    and terms hashed to one index add up (``binary=True`` writes 1.0 instead of counts).

    The hash is Flink ML's: MurmurHash3_x86_32 with seed 0 of a string's UTF-16 code units (Guava's
    ``hashUnencodedChars``); of the 4 little-endian bytes of int8/16/32 and boolean (0/1) terms and
    of float32 bits; of the 8 bytes of int64 terms and float64 bits; a null term hashes to 0. Spark's
    ``HashingTF`` hashes the UTF-8 bytes with seed 42 instead, so its indices differ.

    Input: ``input_col`` (a list of strings, numbers or booleans per row). Output: ``output_col``
    (sparse vector of size ``num_features``).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``num_features`` (262144),
    ``binary`` (False).

    Example:
        >>> from flowlearn.feature.term_frequency import HashingTF
        >>> tf = HashingTF(input_col="words", output_col="tf")
        >>> tf.transform({"words": [["HashingTFTest", "Hashing", "Hashing", "Test", "Test"]]}).column("tf").to_pylist()
        [{'size': 262144, 'indices': [67564, 131486, 228971], 'values': [1.0, 2.0, 2.0]}]
    """

    num_features = Param(int, default=262144, validator=in_range(1, 2 ** 31 - 1),
                         doc="Number of features (hash buckets); a sparse vector's indices are 32-bit.")

    binary = Param(bool, default=False, doc="Write 1.0 for every term present instead of its count.")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        lists = _term_lists(t, self.input_col, stage)
        values, parent, _ = _flat(lists)
        vt = values.type
        if pa.types.is_string(vt) or pa.types.is_large_string(vt):
            h = _string_hashes(values)
        elif pa.types.is_null(vt):
            h = np.zeros(len(values), dtype=np.int64)
        else:
            h = _number_hashes(values, stage, self.input_col)
        nf = self.num_features
        m = _count_matrix(parent, h % nf, len(lists), nf)
        if self.binary:
            m.data[:] = 1.0
        return with_column(t, vector_field(self.output_col, SPARSE_VECTOR, nf), from_csr(m))

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        f = schema_field(input_schema, self.input_col, stage, "input_col")
        if not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)):
            raise SchemaError(f"{stage}: column '{f.name}' (parameter 'input_col') has type {f.type}, expected a "
                              f"column of term lists (list<string>, such as Tokenizer's output, or lists of numbers)")
        return put_field(input_schema, vector_field(self.output_col, SPARSE_VECTOR, self.num_features))

    def row_fn(self):
        """Row kernel: a term hashes as in a batch of its Arrow type (Python ints as int64, floats as
        float64); strings already seen are hashed from a cache."""
        stage, c, o, nf, binary = type(self).__name__, self.input_col, self.output_col, self.num_features, self.binary
        cache: dict = {}

        def term_hash(w) -> int:
            if w is None:
                return 0
            if isinstance(w, str):
                data = w.encode("utf-16-le", "surrogatepass")
            elif isinstance(w, (bool, np.bool_)):
                data = np.int32(1 if w else 0).tobytes()
            elif isinstance(w, (int, np.integer)):
                data = np.int64(w).tobytes()
            elif isinstance(w, (float, np.floating)):
                data = np.float64(np.nan if w != w else w).tobytes()
            else:
                raise TypeError(f"{stage}: column '{c}' holds a term of type {type(w).__name__}; HashingTF hashes "
                                f"strings, integers, floats and booleans")
            return int(_murmur3_32(np.frombuffer(data, dtype=np.uint8), np.uint64(0)))

        def fn(row: dict) -> None:
            try:
                terms = row[c]
            except KeyError:
                raise ValueError(f"{stage}: input column '{c}' (parameter 'input_col') is missing from the row; the "
                                 f"row has keys {list(row)}") from None
            if terms is None or isinstance(terms, (str, bytes)) or not hasattr(terms, "__iter__"):
                raise (ValueError if terms is None else TypeError)(
                    f"{stage}: column '{c}' holds {'a null list' if terms is None else type(terms).__name__} in this "
                    f"row, expected a list of terms")
            counts: dict[int, float] = {}
            for w in terms:
                key = (type(w), w)
                i = cache.get(key)
                if i is None:
                    if len(cache) >= 1 << 16:
                        cache.clear()
                    i = cache[key] = term_hash(w) % nf
                counts[i] = 1.0 if binary else counts.get(i, 0.0) + 1.0
            keys = sorted(counts)
            row[o] = SparseVector.unchecked(nf, np.array(keys, dtype=np.int32),
                                            np.array([counts[k] for k in keys], dtype=np.float64))

        return fn


# --------------------------------------------------------------------------------------------
# CountVectorizer


class _CountVectorizerModelParams(HasInputCol, HasOutputCol):
    min_tf = Param(float, default=1.0, validator=gt_eq(0.0),
                   doc="Per document, ignore terms counted fewer times: a count if >= 1, else a fraction of the "
                       "document's tokens.")
    binary = Param(bool, default=False, doc="Write 1.0 for every kept term instead of its count.")


_MAX_DF_DEFAULT = float(2 ** 63)  # Flink ML's (double) Long.MAX_VALUE: no upper limit


class _CountVectorizerParams(_CountVectorizerModelParams):
    vocabulary_size = Param(int, default=1 << 18, validator=gt(0), doc="Maximum number of terms in the vocabulary.")
    min_df = Param(float, default=1.0, validator=gt_eq(0.0),
                   doc="Keep terms in at least this many documents: a count if >= 1, else a fraction of documents.")
    max_df = Param(float, default=_MAX_DF_DEFAULT, validator=gt_eq(0.0),
                   doc="Keep terms in at most this many documents: a count if >= 1, else a fraction of documents.")


_CV_STATE = pa.schema([("term", pa.string()), ("tf", pa.int64()), ("df", pa.int64())])


class CountVectorizer(_CountVectorizerParams, OnePassEstimator):
    """Learns a vocabulary from token lists and turns each list into a sparse vector of term counts
    over it, as Flink ML's ``CountVectorizer``.

    The vocabulary holds the terms whose document frequency lies in ``[min_df, max_df]`` (each a
    number of documents if >= 1, else a fraction of them), ordered by document frequency (highest
    first, as Flink ML orders them), then by total count, then by the term itself, and cut to
    ``vocabulary_size`` terms. The model counts the vocabulary's terms in each document, keeps those
    counted at least ``min_tf`` times (a count if >= 1, else a fraction of the document's tokens)
    and writes 1.0 instead of counts if ``binary``.

    The fit is one pass: a part's state holds each term's total count and document frequency, and a
    row with a null term holds the number of documents.

    Input: ``input_col`` (``list<string>``). Output: ``output_col`` (sparse vector of the vocabulary's size).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``vocabulary_size`` (262144),
    ``min_df`` (1.0), ``max_df`` (no limit), ``min_tf`` (1.0), ``binary`` (False).

    Example:
        >>> from flowlearn.feature.term_frequency import CountVectorizer
        >>> docs = {"words": [["a", "c", "b", "c"], ["c", "d", "e"], ["a", "b", "c"], ["e", "f"], ["a", "c", "a"]]}
        >>> model = CountVectorizer(input_col="words", output_col="counts").fit(docs)
        >>> model.vocabulary
        ['c', 'a', 'b', 'e', 'd', 'f']
        >>> model.transform(docs).column("counts").to_pylist()[0]
        {'size': 6, 'indices': [0, 1, 2], 'values': [2.0, 1.0, 1.0]}
    """

    def _check_df(self) -> None:
        lo, hi = self.min_df, self.max_df
        if (lo >= 1.0) == (hi >= 1.0) and hi < lo:
            raise ValueError(f"{type(self).__name__}: parameter 'max_df' = {hi!r} must be >= parameter 'min_df' = "
                             f"{lo!r} (both counts of documents, or both fractions)")

    def _partial(self, t: pa.Table) -> pa.Table:
        self._check_df()
        stage = type(self).__name__
        lists = _term_lists(t, self.input_col, stage)
        if len(lists) == 0:
            return _CV_STATE.empty_table()
        lists = string_list_array(t, self.input_col, stage)
        values, parent, _ = _flat(lists)
        enc = pc.dictionary_encode(values)
        terms = enc.dictionary
        codes = enc.indices
        if codes.null_count:  # null tokens are no terms
            ok = np.asarray(codes.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            codes, parent = codes.filter(pa.array(ok)), parent[ok]
        codes = codes.to_numpy(zero_copy_only=False).astype(np.int64)
        v = len(terms)
        tf = np.bincount(codes, minlength=v)
        df = np.bincount(_count_matrix(parent, codes, len(lists), v).indices, minlength=v)  # a column per term
        return pa.table({"term": pa.concat_arrays([terms.cast(pa.string()), pa.nulls(1, pa.string())]),
                         "tf": pa.array(np.r_[tf, 0], pa.int64()),
                         "df": pa.array(np.r_[df, len(lists)], pa.int64())}, schema=_CV_STATE)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        for s in states:
            if s.schema.names != _CV_STATE.names:
                raise ValueError(f"{type(self).__name__}: a fit state has columns {s.schema.names}, expected "
                                 f"{_CV_STATE.names}; merge states made by {type(self).__name__}.partial")
        both = pa.concat_tables([s.cast(_CV_STATE) for s in states])
        if both.num_rows == 0:
            return _CV_STATE.empty_table()
        g = both.group_by("term").aggregate([("tf", "sum"), ("df", "sum")])
        return pa.table({"term": g.column("term"), "tf": g.column("tf_sum"), "df": g.column("df_sum")},
                        schema=_CV_STATE)

    def _finish(self, state: pa.Table) -> "CountVectorizerModel":
        self._check_df()
        state = self._merge([state])
        is_docs = state.column("term").is_null().to_numpy(zero_copy_only=False)
        docs = int(np.asarray(state.column("df"))[is_docs].sum())
        if docs == 0:
            raise ValueError(f"{type(self).__name__}: fit needs at least one row; the input table is empty")
        terms = state.filter(pa.array(~np.asarray(is_docs, dtype=bool)))
        df = np.asarray(terms.column("df"))
        lo = self.min_df if self.min_df >= 1.0 else self.min_df * docs
        hi = self.max_df if self.max_df >= 1.0 else self.max_df * docs
        if hi < lo:
            raise ValueError(f"{type(self).__name__}: 'max_df' ({hi} documents of {docs}) is below 'min_df' ({lo} "
                             f"documents); raise max_df or lower min_df")
        terms = terms.filter(pa.array((df >= lo) & (df <= hi)))
        order = pc.sort_indices(terms, sort_keys=[("df", "descending"), ("tf", "descending"), ("term", "ascending")])
        vocab = terms.column("term").take(order)[: self.vocabulary_size]
        model = CountVectorizerModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({"vocabulary": pa.array([vocab.to_pylist()], _TOKENS)}))


class CountVectorizerModel(_CountVectorizerModelParams, Model):
    """The model fitted by :class:`CountVectorizer`: counts each vocabulary term in each token list.

    Model data: one table with one row and a ``vocabulary`` column (``list<string>``); term ``i`` of
    the vocabulary counts at index ``i`` of the output vectors.

    Example:
        >>> from flowlearn.feature.term_frequency import CountVectorizerModel
        >>> model = CountVectorizerModel(input_col="words", output_col="v", min_tf=2.0)
        >>> model = model.set_model_data({"vocabulary": [["x", "y"]]})
        >>> model.transform({"words": [["y", "x", "y", "z"]]}).column("v").to_pylist()
        [{'size': 2, 'indices': [1], 'values': [2.0]}]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1 or "vocabulary" not in tables[0].column_names or tables[0].num_rows != 1:
            raise ValueError(f"{stage}: model data is one table with one row and a 'vocabulary' column "
                             f"(list<string>), got {[tb.schema.names for tb in tables]}")
        col = combined(tables[0].column("vocabulary"))
        if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
            raise ValueError(f"{stage}: model data column 'vocabulary' has type {col.type}, expected list<string>")
        vocab = col.cast(_TOKENS).flatten()
        if vocab.null_count:
            raise ValueError(f"{stage}: model data column 'vocabulary' holds a null term")
        if len(pc.unique(vocab)) != len(vocab):
            raise ValueError(f"{stage}: model data column 'vocabulary' holds a term twice; each term needs one index")
        self._vocab = vocab

    @property
    def vocabulary(self) -> list[str]:
        """The vocabulary, term ``i`` at index ``i``."""
        self._require_model()
        return self._vocab.to_pylist()

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        self._require_model()
        _term_lists(t, self.input_col, stage)
        lists = string_list_array(t, self.input_col, stage)
        values, parent, counts = _flat(lists)
        size = len(self._vocab)
        idx = pc.index_in(values, value_set=self._vocab)
        ok = np.asarray(idx.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        cols = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)[ok]
        m = _count_matrix(parent[ok], cols, len(lists), size)
        min_tf = self.min_tf
        need = np.full(len(lists), min_tf) if min_tf >= 1.0 else counts * min_tf
        keep = m.data >= np.repeat(need, np.diff(m.indptr))
        if not keep.all():
            m.data[~keep] = 0.0
            m.eliminate_zeros()
        if self.binary:
            m.data[:] = 1.0
        return with_column(t, vector_field(self.output_col, SPARSE_VECTOR, size), from_csr(m))

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        _tokens_field(input_schema, self.input_col, type(self).__name__, "input_col")
        return put_field(input_schema, vector_field(self.output_col, SPARSE_VECTOR, len(self._vocab)))

    def row_fn(self):
        self._require_model()
        stage, c, o, min_tf, binary = type(self).__name__, self.input_col, self.output_col, self.min_tf, self.binary
        index = {w: i for i, w in enumerate(self._vocab.to_pylist())}
        size = len(index)

        def fn(row: dict) -> None:
            ws = _row_tokens(row, c, stage)
            if ws is None:
                raise ValueError(f"{stage}: column '{c}' holds a null list in this row; give every row a list (an "
                                 f"empty list for an empty document)")
            counts: dict[int, float] = {}
            for w in ws:
                i = index.get(w)
                if i is not None:
                    counts[i] = counts.get(i, 0.0) + 1.0
            need = min_tf if min_tf >= 1.0 else len(ws) * min_tf
            keys = sorted(k for k, n in counts.items() if n >= need)
            row[o] = SparseVector.unchecked(size, np.array(keys, dtype=np.int32),
                                            np.array([1.0 if binary else counts[k] for k in keys], dtype=np.float64))

        return fn


# --------------------------------------------------------------------------------------------
# IDF


@numba.njit(cache=True, nogil=True)
def _doc_freq(indices: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Per index in ``[0, size)``: the number of stored entries with a positive value (CSR rows
    hold each index at most once, so that is the number of rows)."""
    df = np.zeros(size, dtype=np.int64)
    for p in range(len(indices)):
        if values[p] > 0:
            df[indices[p]] += 1
    return df


@numba.njit(cache=True, nogil=True)
def _scale_entries(values: np.ndarray, indices: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    """``out``: each stored entry times the scale of its index (one pass; ``values * scale[indices]``
    would first copy the int32 indices to int64). ``out`` comes from NumPy, whose large buffers
    start on huge pages: writing a fresh buffer of Numba's costs more in page faults than the loop."""
    for p in range(len(values)):
        out[p] = values[p] * scale[indices[p]]


def _int64_lists(col: pa.ChunkedArray) -> list[np.ndarray]:
    """The rows of a ``list<int64>`` column as NumPy arrays (views of its values, no Python ints)."""
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if arr.null_count:
        raise ValueError(f"a null list at row {int(np.flatnonzero(~np.asarray(arr.is_valid()))[0])}")
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    ends = np.cumsum(pc.list_value_length(arr).to_numpy(zero_copy_only=False))
    return np.split(flat, ends[:-1]) if len(arr) else []


class _IDFModelParams(HasInputCol, HasOutputCol):
    pass


class IDF(_IDFModelParams, OnePassEstimator):
    """Computes inverse document frequencies of term-frequency vectors, as Flink ML's (and Spark's)
    ``IDF``: ``idf_j = log((m + 1) / (df_j + 1))`` for ``m`` documents of which ``df_j`` have a
    positive entry ``j``; a term in fewer than ``min_doc_freq`` documents gets 0. The model
    multiplies each vector by the idf vector, entry by entry (sparse stays sparse).

    scikit-learn's ``TfidfTransformer(smooth_idf=True)`` adds 1 to the same idf.

    Input: ``input_col`` (dense or sparse vectors, e.g. HashingTF's or CountVectorizer's output).
    Output: ``output_col`` (vectors of the input's kind and size).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``min_doc_freq`` (0).

    Example:
        >>> from flowlearn.feature.term_frequency import IDF
        >>> t = {"tf": [[0.0, 1.0, 0.0, 2.0], [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, 0.0]]}
        >>> model = IDF(input_col="tf", output_col="tfidf").fit(t)
        >>> [round(v, 7) for v in model.transform(t).column("tfidf").to_pylist()[1]]
        [0.0, 0.0, 1.3862944, 0.8630462]
    """

    min_doc_freq = Param(int, default=0, validator=gt_eq(0),
                         doc="Terms in fewer documents than this get an idf of 0.")

    def _partial(self, t: pa.Table) -> pa.Table:
        x = vector_column(t, self.input_col, type(self).__name__, param="input_col")
        if x.shape[0] == 0:
            return pa.table({"num_docs": pa.array([], pa.int64()), "doc_freq": pa.array([], pa.list_(pa.int64()))})
        if sps.issparse(x):
            df = _doc_freq(x.indices, x.data, x.shape[1])
        else:
            df = (x > 0).sum(axis=0).astype(np.int64)
        return _idf_state(x.shape[0], df)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        docs, df = 0, None
        stage = type(self).__name__
        for s in states:
            if "num_docs" not in s.column_names or "doc_freq" not in s.column_names:
                raise ValueError(f"{stage}: a fit state has columns {s.column_names}, expected "
                                 f"['num_docs', 'doc_freq']; merge states made by {stage}.partial")
            try:
                freqs = _int64_lists(s.column("doc_freq"))
            except ValueError as e:
                raise ValueError(f"{stage}: fit state column 'doc_freq' has {e}; merge states made by "
                                 f"{stage}.partial") from None
            for n, d in zip(s.column("num_docs").to_pylist(), freqs):
                if df is not None and len(d) != len(df):
                    raise ValueError(f"{stage}: the parts of the input hold vectors of sizes "
                                     f"{len(df)} and {len(d)}; every row of one input needs vectors of one size")
                docs, df = docs + n, d if df is None else df + d
        if df is None:
            return pa.table({"num_docs": pa.array([], pa.int64()), "doc_freq": pa.array([], pa.list_(pa.int64()))})
        return _idf_state(docs, df)

    def _finish(self, state: pa.Table) -> "IDFModel":
        state = self._merge([state])
        m = int(state.column("num_docs")[0].as_py())
        df = _int64_lists(state.column("doc_freq"))[0]
        kept = df >= self.min_doc_freq
        idf = np.where(kept, np.log((m + 1.0) / (df + 1.0)), 0.0)
        model = IDFModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({
            "idf": from_numpy(idf[None, :]),
            "doc_freq": _one_list(np.where(kept, df, 0)),
            "num_docs": pa.array([m], pa.int64()),
        }))


def _one_list(values: np.ndarray) -> pa.ListArray:
    """A ``list<int64>`` column of one row holding ``values`` (built from the buffer)."""
    return pa.ListArray.from_arrays(pa.array(np.array([0, len(values)], dtype=np.int32)),
                                    pa.array(np.asarray(values, dtype=np.int64)))


def _idf_state(num_docs: int, df: np.ndarray) -> pa.Table:
    return pa.table({"num_docs": pa.array([num_docs], pa.int64()), "doc_freq": _one_list(df)})


class IDFModel(_IDFModelParams, Model):
    """The model fitted by :class:`IDF`: multiplies each vector by the idf vector, entry by entry.

    Model data: one table with one row: ``idf`` (dense vector), ``doc_freq`` (``list<int64>``, the
    document frequencies, 0 for terms below ``min_doc_freq``) and ``num_docs`` (int64).

    Example:
        >>> from flowlearn.feature.term_frequency import IDFModel
        >>> model = IDFModel(input_col="tf", output_col="w").set_model_data(
        ...     {"idf": [[0.5, 2.0]], "doc_freq": [[3, 0]], "num_docs": [4]})
        >>> model.transform({"tf": [[2.0, 1.0]]}).column("w").to_pylist()
        [[1.0, 2.0]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1 or "idf" not in tables[0].column_names or tables[0].num_rows != 1:
            raise ValueError(f"{stage}: model data is one table with one row and columns 'idf', 'doc_freq', "
                             f"'num_docs', got {[tb.schema.names for tb in tables]}")
        col = tables[0].column("idf")
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                or pa.types.is_fixed_size_list(col.type)) or col.null_count:
            null = " with a null" if col.null_count else ""
            raise ValueError(f"{stage}: model data column 'idf' has type {col.type}{null}, expected one vector (a "
                             f"list of doubles)")
        idf = (col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()).flatten()
        idf = idf.to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.isfinite(idf).all():
            raise ValueError(f"{stage}: model data column 'idf' holds NaN or infinity; refit the model")
        self._idf = idf

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        self._require_model()
        d = len(self._idf)
        x = vector_column(t, self.input_col, stage, param="input_col", size=d)
        if sps.issparse(x):
            if x.shape[0] == 0:
                x = sps.csr_matrix((0, d))
            data = np.empty(len(x.data))
            _scale_entries(x.data, x.indices, self._idf, data)
            y = sps.csr_matrix((data, x.indices, x.indptr), shape=x.shape)
            out = from_csr(y)
        else:
            out = from_numpy(x * self._idf if x.shape[0] else np.zeros((0, d)))
        return with_column(t, vector_field(self.output_col, out.type, d), out)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        stage = type(self).__name__
        f = schema_field(input_schema, self.input_col, stage, "input_col")
        typ, _ = vector_out_type(f, stage, "input_col", size=len(self._idf))
        return put_field(input_schema, vector_field(self.output_col, typ, len(self._idf)))

    def row_fn(self):
        self._require_model()
        stage, c, o, idf = type(self).__name__, self.input_col, self.output_col, self._idf

        def fn(row: dict) -> None:
            v = row_vector(row, c, stage)
            size = v.size if isinstance(v, SparseVector) else len(v)
            if size != len(idf):
                raise ValueError(f"{stage}: column '{c}' holds a vector of size {size} in this row, the model expects "
                                 f"size {len(idf)}; transform data with the same feature pipeline the model was "
                                 f"fitted on")
            if isinstance(v, SparseVector):
                row[o] = SparseVector.unchecked(size, v.indices, v.values * idf[v.indices])
            else:
                row[o] = v * idf

        return fn

