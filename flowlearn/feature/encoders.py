"""Categorical encoders: ``StringIndexer`` / ``StringIndexerModel``, ``IndexToStringModel`` and
``OneHotEncoder`` / ``OneHotEncoderModel`` with Flink ML 2.x semantics.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"city": ["Oslo", "Rome", "Oslo", "Bern"]})
    >>> idx = fl.feature.StringIndexer(input_cols=["city"], output_cols=["city_idx"],
    ...                                string_order_type="frequencyDesc").fit(t)
    >>> out = idx.transform(t)
    >>> out.column("city_idx").to_pylist()
    [0.0, 2.0, 0.0, 1.0]
    >>> ohe = fl.feature.OneHotEncoder(input_cols=["city_idx"], output_cols=["city_vec"]).fit(out)
    >>> ohe.transform(out).column("city_vec")[1].as_py()
    {'size': 2, 'indices': [], 'values': []}
"""
from __future__ import annotations

import json
import logging
import math
import numbers
from typing import Any, Sequence

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import Model, OnePassEstimator, SkipRow, Transformer
from flowlearn.data.columns import first_bad_row, numeric_column, require_column, with_column
from flowlearn.data.schema import LABELS_KEY, vector_field
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, is_vector_type
from flowlearn.params import HasHandleInvalid, HasInputCols, HasOutputCols, Param, gt, in_array

__all__ = ["StringIndexer", "StringIndexerModel", "IndexToStringModel", "OneHotEncoder", "OneHotEncoderModel"]

logger = logging.getLogger(__name__)

_ORDER_TYPES = ["arbitrary", "frequencyDesc", "frequencyAsc", "alphabetDesc", "alphabetAsc"]
_INT_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------
# Shared helpers (also used by flowlearn.feature.assemblers)
# --------------------------------------------------------------------------------------------



def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _java_float_str(x: float, single: bool = False) -> str:
    """``String.valueOf(double)`` (or ``Float`` when ``single``) as Java (JDK 19+, shortest digits).

    >>> [_java_float_str(v) for v in (1.0, -0.5, 1e7, 1.5e-5, 0.001, 123456.25)]
    ['1.0', '-0.5', '1.0E7', '1.5E-5', '0.001', '123456.25']
    """
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    ax = abs(x)
    if not single and 1e-3 <= ax < 1e7:
        return repr(float(x))  # Python's repr is fixed-point and shortest in this range, like Java
    s = np.format_float_scientific(np.float32(x) if single else np.float64(x), unique=True)
    mant, exp = s.split("e")
    sign = "-" if mant.startswith("-") else ""
    digits = mant.lstrip("-").replace(".", "").rstrip("0") or "0"
    e = int(exp)
    if -3 <= e < 7:
        if e >= 0:
            ip, fp = digits[: e + 1].ljust(e + 1, "0"), digits[e + 1:] or "0"
        else:
            ip, fp = "0", "0" * (-e - 1) + digits
        return f"{sign}{ip}.{fp}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{e}"


def _java_str(v: Any, allow_bool: bool = False) -> str:
    """Java's ``String.valueOf`` of one Python/NumPy scalar (str, int, float, optionally bool)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        if allow_bool:
            return "true" if v else "false"
        raise TypeError(f"a boolean value {v!r} is neither a string nor a number")
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (np.float32, np.float16)):
        return _java_float_str(float(v), single=True)
    if isinstance(v, (float, np.floating)):
        return _java_float_str(float(v))
    raise TypeError(f"value {v!r} of type {type(v).__name__} is neither a string nor a number")


def _java_strs_of(arr: pa.Array, allow_bool: bool = False) -> list[str]:
    """Java string forms of a (null-free) Arrow array of strings, numbers or (optionally) booleans."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.to_pylist()
    if pa.types.is_integer(t):
        return [str(v) for v in arr.to_pylist()]
    if pa.types.is_floating(t):
        single = not pa.types.is_float64(t)
        return [_java_float_str(v, single) for v in arr.to_pylist()]
    if allow_bool and pa.types.is_boolean(t):
        return ["true" if v else "false" for v in arr.to_pylist()]
    raise TypeError(t)


def _combined(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        return pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], type=col.type)
    return col


def _decoded(arr: pa.Array) -> pa.Array:
    return arr.cast(arr.type.value_type) if pa.types.is_dictionary(arr.type) else arr


def _is_indexable(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t)


def _check_io_cols(stage: str, input_cols: list[str], output_cols: list[str]) -> None:
    if len(input_cols) != len(output_cols):
        raise ValueError(
            f"{stage}: parameters 'input_cols' ({len(input_cols)} columns: {input_cols}) and 'output_cols' "
            f"({len(output_cols)} columns: {output_cols}) must have the same length"
        )


def _one_input(stage: str, tables: Sequence[pa.Table], what: str) -> pa.Table:
    if len(tables) != 1:
        raise TypeError(f"{stage}.{what} takes exactly one input table, got {len(tables)}")
    return tables[0]


def _list_slices(col: pa.ChunkedArray) -> list[pa.Array]:
    """The lists of a list column, one Arrow array per row (zero-copy)."""
    arr = _combined(col)
    values, offsets = arr.flatten(), arr.offsets.to_numpy() - arr.offsets[0].as_py()
    return [values.slice(offsets[i], offsets[i + 1] - offsets[i]) for i in range(len(arr))]


def _check_state_columns(stage: str, states: list[pa.Table], names: list[str], input_cols: list[str]) -> None:
    for st in states:
        if st.num_rows and (st.column_names != names or st.column("column").to_pylist() != input_cols):
            raise ValueError(f"{stage}: a fit state with columns {st.column_names} does not belong to input_cols "
                             f"{input_cols}; merge states made by {stage}.partial with the same input_cols")


def _skip_rows(stage: str, t: pa.Table, bad: np.ndarray) -> tuple[pa.Table, np.ndarray | None]:
    """Drop the rows flagged in ``bad`` (handle_invalid='skip'); returns the table and the keep mask."""
    if not bad.any():
        return t, None
    keep = ~bad
    logger.info("%s: handle_invalid='skip' dropped %d of %d rows", stage, int(bad.sum()), len(bad))
    return t.filter(pa.array(keep)), keep


# --------------------------------------------------------------------------------------------
# StringIndexer
# --------------------------------------------------------------------------------------------


class _StringIndexerModelParams(HasInputCols, HasOutputCols, HasHandleInvalid):
    pass


class _StringIndexerParams(_StringIndexerModelParams):
    string_order_type = Param(
        str, default="arbitrary", validator=in_array(_ORDER_TYPES),
        doc="How to order the strings of each column; the first gets index 0. 'arbitrary' (order of first "
            "appearance), 'frequencyDesc', 'frequencyAsc' (ties broken alphabetically), 'alphabetDesc', "
            "'alphabetAsc' (Java String order: UTF-16 code units).")
    max_index_num = Param(
        int, default=_INT_MAX, validator=gt(1),
        doc="Maximum number of indices per column, the index of invalid entries included: when a column has "
            "max_index_num or more distinct strings only the first max_index_num - 1 in 'string_order_type' "
            "order (the most frequent with 'frequencyDesc') are kept; the others become unseen strings, which "
            "handle_invalid='keep' puts into the last index, max_index_num - 1.")


def _utf16_key(s: str) -> bytes:
    return s.encode("utf-16-be", "surrogatepass")


def _order_labels(labels: list[str], counts: list[int], order: str) -> list[str]:
    if order == "arbitrary":
        return labels
    astral = bool(labels) and max("".join(labels) or "\0") > "\uffff"
    alpha = _utf16_key if astral else None  # code-point order equals UTF-16 order inside the BMP
    if order in ("alphabetAsc", "alphabetDesc"):
        return sorted(labels, key=alpha, reverse=order == "alphabetDesc")
    by_alpha = sorted(zip(labels, counts), key=(lambda p: alpha(p[0])) if alpha else (lambda p: p[0]))
    sign = -1 if order == "frequencyDesc" else 1
    by_alpha.sort(key=lambda p: sign * p[1])  # stable: ties stay alphabetical
    return [s for s, _ in by_alpha]


def _count_strings(col: pa.ChunkedArray, name: str, stage: str) -> tuple[list[str], list[int]]:
    """Distinct strings (Java string form of numbers) of a column with their counts; nulls ignored."""
    if not _is_indexable(col.type):
        raise TypeError(
            f"{stage}: column '{name}' (parameter 'input_cols') has type {col.type}; StringIndexer indexes "
            f"string or numeric columns only"
        )
    arr = _decoded(_combined(col))
    vc = pc.value_counts(arr)
    values, counts = vc.field("values"), vc.field("counts")
    if values.null_count:
        valid = values.is_valid()
        values, counts = values.filter(valid), counts.filter(valid)
    return _java_strs_of(values), counts.to_pylist()


def _parse_string_arrays(stage: str, tables: list[pa.Table]) -> list[list[str]]:
    if len(tables) != 1:
        raise ValueError(f"{stage}: model data is one table with a 'string_arrays' column, got {len(tables)} tables")
    (t,) = tables
    if "string_arrays" not in t.column_names or t.num_rows != 1:
        raise ValueError(
            f"{stage}: model data must have one row and a column 'string_arrays' (list<list<string>>), got "
            f"{t.num_rows} rows and columns {t.column_names}; use the model data of a fitted StringIndexerModel"
        )
    arrays = t.column("string_arrays")[0].as_py()
    if not isinstance(arrays, list) or any(not isinstance(a, list) for a in arrays):
        raise ValueError(f"{stage}: 'string_arrays' must be a list of string lists, got {arrays!r}")
    for a in arrays:
        if any(not isinstance(s, str) for s in a):
            raise ValueError(f"{stage}: 'string_arrays' holds a non-string (or null) label in {a!r}")
        if len(set(a)) != len(a):
            raise ValueError(f"{stage}: 'string_arrays' holds a duplicate label in {a!r}")
    return arrays


def _string_arrays_table(arrays: list[list[str]]) -> pa.Table:
    return pa.table({"string_arrays": pa.array([arrays], type=pa.list_(pa.list_(pa.string())))})


class StringIndexer(_StringIndexerParams, OnePassEstimator):
    """Maps each string (or number, indexed by its Java string form: ``1.0``, ``-1.0``, ``3``) of one or
    more columns to a double index in ``[0, number of distinct values)``.

    Nulls are ignored when fitting. ``string_order_type`` decides which string gets which index;
    ``max_index_num`` caps the number of indices. The model's ``handle_invalid`` decides what happens
    to strings not seen in ``fit`` and to nulls: ``error`` raises, ``skip`` drops the row, ``keep``
    maps them to the number of labels of that column.

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"f": ["b", "a", "b", "c"], "n": [2.0, 1.0, 2.0, 2.0]})
        >>> model = fl.feature.StringIndexer(input_cols=["f", "n"], output_cols=["fi", "ni"],
        ...                                  string_order_type="alphabetAsc", handle_invalid="keep").fit(t)
        >>> model.get_model_data()[0].column("string_arrays").to_pylist()
        [[['a', 'b', 'c'], ['1.0', '2.0']]]
        >>> model.transform({"f": ["c", "z"], "n": [1.0, 9.0]}).select(["fi", "ni"]).to_pylist()
        [{'fi': 2.0, 'ni': 0.0}, {'fi': 3.0, 'ni': 2.0}]
    """

    # Fit state: one row per input column (none for an empty input): ``column``, ``labels``
    # (list<string>: distinct strings, Java forms of numbers, in order of first appearance) and
    # ``counts`` (list<int64>). The string order is decided in finish, from the merged counts.

    def _partial(self, t: pa.Table) -> pa.Table:
        stage = type(self).__name__
        _check_io_cols(stage, self.input_cols, self.output_cols)
        labels, counts = [], []
        for c in self.input_cols:
            col_labels, col_counts = _count_strings(require_column(t, c, stage, "input_cols"), c, stage)
            labels.append(col_labels)
            counts.append(col_counts)
        return self._state(labels, counts) if t.num_rows else self._state([], [])

    def _state(self, labels: list, counts: list) -> pa.Table:
        return pa.table({"column": pa.array(self.input_cols[:len(labels)], pa.string()),
                         "labels": pa.array(labels, pa.list_(pa.string())),
                         "counts": pa.array(counts, pa.list_(pa.int64()))})

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        stage = type(self).__name__
        states = [st for st in states if st.num_rows]
        _check_state_columns(stage, states, ["column", "labels", "counts"], self.input_cols)
        if not states:
            return self._state([], [])
        per_state = [(_list_slices(st.column("labels")), _list_slices(st.column("counts"))) for st in states]
        labels, counts = [], []
        for i in range(len(self.input_cols)):
            all_labels = pa.concat_arrays([lab[i] for lab, _ in per_state])
            all_counts = np.concatenate([cnt[i].to_numpy() for _, cnt in per_state])
            codes = pc.dictionary_encode(all_labels)  # dictionary in order of first appearance
            summed = np.bincount(codes.indices.to_numpy(), weights=all_counts, minlength=len(codes.dictionary))
            labels.append(codes.dictionary)
            counts.append(summed.astype(np.int64))
        return pa.table({"column": pa.array(self.input_cols, pa.string()),
                         "labels": pa.array([a.to_pylist() for a in labels], pa.list_(pa.string())),
                         "counts": pa.array([c.tolist() for c in counts], pa.list_(pa.int64()))})

    def _finish(self, state: pa.Table) -> "StringIndexerModel":
        stage = type(self).__name__
        _check_io_cols(stage, self.input_cols, self.output_cols)
        _check_state_columns(stage, [state], ["column", "labels", "counts"], self.input_cols)
        order, cap = self.string_order_type, self.max_index_num
        arrays = []
        for labels, counts in zip(state.column("labels").to_pylist(), state.column("counts").to_pylist()):
            labels = _order_labels(labels, counts, order)
            if len(labels) >= cap:
                labels = labels[: cap - 1]
            arrays.append(labels)
        model = StringIndexerModel()
        self.copy_params_to(model)
        return model.set_model_data(_string_arrays_table(arrays))


class _LabelsModel(Model):
    """Model data shared by StringIndexerModel and IndexToStringModel: per input column, its labels."""

    _labels: list[list[str]]

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        self._labels = _parse_string_arrays(type(self).__name__, tables)
        self._label_arrays = [pa.array(a, type=pa.string()) for a in self._labels]
        # a column none of whose labels is a number was a string column: a number given there is a
        # mistake (it can match no label), not an unseen category
        self._words = [bool(a) and not any(_is_number_str(s) for s in a) for a in self._labels]
        self._fields: dict[tuple, pa.Field] = {}   # output fields naming the labels, per (column, names)

    def _check_model_cols(self) -> None:
        stage = type(self).__name__
        self._require_model()
        _check_io_cols(stage, self.input_cols, self.output_cols)
        if len(self._labels) != len(self.input_cols):
            raise ValueError(
                f"{stage}: the model data holds labels of {len(self._labels)} columns but 'input_cols' names "
                f"{len(self.input_cols)} ({self.input_cols}); set input_cols to match the fitted StringIndexer"
            )


class StringIndexerModel(_StringIndexerModelParams, _LabelsModel):
    """Indexes string/numeric columns with the labels a :class:`StringIndexer` found.

    Model data: one table with one row and a column ``string_arrays: list<list<string>>`` holding,
    for each input column, its labels in index order (numbers in their Java string form).
    Output columns are ``double``. Under ``handle_invalid="keep"`` an unseen string or a null gets
    index ``len(labels)``.

    Example:
        >>> import flowlearn as fl, pyarrow as pa
        >>> m = fl.feature.StringIndexerModel(input_cols=["x"], output_cols=["i"], handle_invalid="skip")
        >>> m = m.set_model_data(pa.table({"string_arrays": [[["u", "v"]]]}))
        >>> m.transform({"x": ["v", "w", "u"]}).column("i").to_pylist()
        [1.0, 0.0]
    """

    def _index_column(self, col: pa.ChunkedArray, i: int, name: str) -> np.ndarray:
        """Label index of every row (an integer array, possibly read-only): >= 0 found, -1 unseen, -2 null."""
        stage = type(self).__name__
        if not _is_indexable(col.type):
            raise TypeError(
                f"{stage}: column '{name}' (parameter 'input_cols') has type {col.type}; StringIndexerModel "
                f"indexes string or numeric columns only"
            )
        arr = _combined(col)
        if pa.types.is_dictionary(arr.type):
            dict_codes = self._index_column(pa.chunked_array([arr.dictionary]), i, name)
            ind = arr.indices
            pos = pc.fill_null(ind, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            out = np.where(pos >= 0, dict_codes[np.maximum(pos, 0)] if len(dict_codes) else -1, -2)
            return out.astype(np.int64)
        t = arr.type
        if self._words[i] and not (pa.types.is_string(t) or pa.types.is_large_string(t)) and len(arr) > arr.null_count:
            r = first_bad_row(np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool))
            raise TypeError(_wrong_type_message(stage, name, arr[r].as_py(), r) + f" (the column has type {t})")
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            pos = pc.index_in(arr, value_set=self._label_arrays[i])
            if pos.null_count == 0:  # every string found (a null string has a null position): as is
                return pos.to_numpy(zero_copy_only=False)
            out = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            uniq = pc.unique(arr).drop_null()
            lookup = {s: j for j, s in enumerate(self._labels[i])}
            codes = np.array([lookup.get(s, -1) for s in _java_strs_of(uniq)] + [-1], dtype=np.int64)
            pos = pc.fill_null(pc.index_in(arr, value_set=uniq), -1).to_numpy(zero_copy_only=False)
            out = codes[pos]  # position -1 picks the trailing -1
        if arr.null_count:
            out[np.asarray(arr.is_null())] = -2
        return out

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = _one_input(stage, tables, "transform")
        self._check_model_cols()
        hi = self.handle_invalid
        codes = []
        bad_rows = np.zeros(t.num_rows, dtype=bool)
        for i, c in enumerate(self.input_cols):
            col = require_column(t, c, stage, "input_cols")
            code = self._index_column(col, i, c)
            bad = code < 0
            if bad.any():
                if hi == "error":
                    r = first_bad_row(bad)
                    raise ValueError(_unseen_message(stage, c, col[r].as_py(), len(self._labels[i]), r))
                if hi == "keep":
                    code[bad] = len(self._labels[i])
                else:
                    bad_rows |= bad
            codes.append(code)
        if hi == "skip":
            t, keep = _skip_rows(stage, t, bad_rows)
            if keep is not None:
                codes = [code[keep] for code in codes]
        for i, (c, o, code) in enumerate(zip(self.input_cols, self.output_cols, codes)):
            t = with_column(t, self._labels_field(i, o, c), pa.array(code.astype(np.float64), type=pa.float64()))
        return t

    def _labels_field(self, i: int, name: str, column: str) -> pa.Field:
        key = (i, name, column)
        cache = self.__dict__.setdefault("_fields", {})
        field = cache.get(key)
        if field is None:
            if len(cache) > 64:
                cache.clear()
            field = cache[key] = labels_field(name, column, self._labels[i])
        return field

    def row_fn(self):
        """Row kernel: one dict lookup per column (numbers are looked up without formatting)."""
        stage = type(self).__name__
        self._check_model_cols()
        hi = self.handle_invalid
        keep, skip = hi == "keep", hi == "skip"
        specs = []
        for c, o, labels, words in zip(self.input_cols, self.output_cols, self._labels, self._words):
            by_str = {s: float(j) for j, s in enumerate(labels)}
            by_float: dict[float, float] = {}
            by_int: dict[int, float] = {}
            for s, j in by_str.items():
                try:
                    f = float(s)
                except ValueError:
                    continue
                if f == f and f != 0.0 and _java_float_str(f) == s:
                    by_float[f] = j
                try:
                    k = int(s)
                except ValueError:
                    continue
                if str(k) == s:
                    by_int[k] = j
            specs.append((c, o, by_str, by_float, by_int, float(len(labels)), words))

        def run(row: dict) -> None:
            for c, o, by_str, by_float, by_int, n, words in specs:
                try:
                    v = row[c]
                except KeyError:
                    raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the "
                                     f"row; it has {sorted(row)}") from None
                tv = type(v)
                if tv is str:
                    j = by_str.get(v)
                elif words and v is not None and isinstance(v, (numbers.Real, np.number)) and \
                        not isinstance(v, (bool, np.bool_)):
                    raise TypeError(_wrong_type_message(stage, c, v, None))
                elif tv is float:
                    j = by_float.get(v) if (v == v and v != 0.0) else by_str.get(_java_float_str(v))
                elif tv is int:
                    j = by_int.get(v)
                elif v is None:
                    j = None
                else:
                    try:
                        j = by_str.get(_java_str(v))
                    except TypeError as e:
                        raise TypeError(f"{stage}: column '{c}': {e}; StringIndexerModel indexes strings and "
                                        f"numbers only") from None
                if j is None:
                    if keep:
                        j = n
                    elif skip:
                        raise SkipRow
                    else:
                        raise ValueError(_unseen_message(stage, c, v, int(n), None))
                row[o] = j

        return run


def _is_number_str(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _wrong_type_message(stage: str, col: str, value: Any, row: int | None) -> str:
    at = f" at row {row}" if row is not None else ""
    return (f"{stage}: column '{col}' (parameter 'input_cols') has the number {value!r}{at}, but it was fitted on "
            f"strings; give the column as strings (a number is not an unseen category)")


def labels_field(name: str, column: str, labels: list[str]) -> pa.Field:
    """An index column's field naming the labels its indices stand for (StringIndexerModel's outputs;
    OneHotEncoder names its features ``<column>=<label>`` from it)."""
    doc = json.dumps({"column": column, "labels": labels}).encode()
    return pa.field(name, pa.float64(), metadata={LABELS_KEY: doc})


def _unseen_message(stage: str, col: str, value: Any, n: int, row: int | None) -> str:
    at = f" at row {row}" if row is not None else ""
    what = "a null" if value is None else f"the unseen value {value!r} (not among the {n} labels seen in fit)"
    return (f"{stage}: column '{col}' (parameter 'input_cols') has {what}{at}; set handle_invalid='keep' to map "
            f"it to index {n} or 'skip' to drop such rows")


class IndexToStringModel(HasInputCols, HasOutputCols, _LabelsModel):
    """Maps index columns back to strings with a :class:`StringIndexerModel`'s model data (the
    reverse of ``StringIndexerModel``).

    Model data: the same table as ``StringIndexerModel`` (``string_arrays: list<list<string>>``).
    Input columns hold integer-valued indices (integer or floating type); an index outside
    ``[0, len(labels))`` or a null raises. Output columns are ``string``.

    Example:
        >>> import flowlearn as fl, pyarrow as pa
        >>> m = fl.feature.IndexToStringModel(input_cols=["i"], output_cols=["s"])
        >>> m = m.set_model_data(pa.table({"string_arrays": [[["a", "b", "c"]]]}))
        >>> m.transform({"i": [2.0, 0.0]}).column("s").to_pylist()
        ['c', 'a']
    """

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = _one_input(stage, tables, "transform")
        self._check_model_cols()
        outs = []
        for i, c in enumerate(self.input_cols):
            x = numeric_column(t, c, stage, "input_cols", allow_nan=True, allow_null=True)
            n = len(self._labels[i])
            with np.errstate(invalid="ignore"):
                ok = (x >= 0) & (x < n) & (x == np.floor(x))
            if not ok.all():
                r = first_bad_row(~ok)
                v = require_column(t, c, stage)[r].as_py()
                raise ValueError(
                    f"{stage}: column '{c}' (parameter 'input_cols') has {'a null' if v is None else repr(v)} at "
                    f"row {r}, which is not an index of one of the {n} labels in [0, {n}); index the data with "
                    f"the same StringIndexerModel (with handle_invalid='keep' its extra index {n} has no string)"
                )
            idx = pa.array(x.astype(np.int64))
            outs.append(self._label_arrays[i].take(idx))
        for o, arr in zip(self.output_cols, outs):
            t = with_column(t, o, arr)
        return t

    def row_fn(self):
        stage = type(self).__name__
        self._check_model_cols()
        specs = [(c, o, list(labels), len(labels)) for c, o, labels in zip(self.input_cols, self.output_cols,
                                                                            self._labels)]

        def run(row: dict) -> None:
            for c, o, labels, n in specs:
                v = row.get(c)
                try:
                    if v is not None and 0 <= v < n and v == int(v):
                        row[o] = labels[int(v)]
                        continue
                except TypeError:
                    pass
                if c not in row:
                    raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the row")
                raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') has {v!r}, which is not an index "
                                 f"of one of the {n} labels in [0, {n})")

        return run


# --------------------------------------------------------------------------------------------
# OneHotEncoder
# --------------------------------------------------------------------------------------------


class _OneHotEncoderParams(HasInputCols, HasOutputCols, HasHandleInvalid):
    drop_last = Param(bool, default=True, doc="Whether to drop the last category (its vector is all zeros).")


def _check_index_column(t: pa.Table, c: str, stage: str) -> np.ndarray:
    col = require_column(t, c, stage, "input_cols")
    if is_vector_type(col.type) or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                                        or pa.types.is_boolean(col.type)):
        raise TypeError(
            f"{stage}: column '{c}' (parameter 'input_cols') has type {col.type}; OneHotEncoder encodes numeric "
            f"columns of category indices (index strings first with fl.feature.StringIndexer)"
        )
    return numeric_column(t, c, stage, "input_cols", allow_nan=True, allow_null=True)


def _invalid_index_reason(v: Any, n: int | None) -> str:
    if v is None:
        return "a null"
    if isinstance(v, float) and v != v:
        return "NaN"
    if v < 0:
        return f"the negative value {v!r}"
    if math.isinf(v) or v != math.floor(v):
        return f"{v!r}, which is not an integer index"
    return f"the unseen index {v!r} (fit saw indices 0..{n - 1})" if n is not None else repr(v)


@numba.njit(cache=True)
def _one_hot_codes(x, n, code):
    """``code[i] = x[i]`` for valid category indices (integer-valued, in [0, n)), else ``n``; returns the
    first invalid row or -1. NaN fails every comparison, so it is invalid."""
    first_bad = -1
    for i in range(x.shape[0]):
        v = x[i]
        if v >= 0 and v < n and v == np.floor(v):
            code[i] = np.int32(v)
        else:
            code[i] = n
            if first_bad < 0:
                first_bad = i
    return first_bad


@numba.njit(cache=True)
def _one_hot_csr(code, size, offsets, indices):
    """CSR structure of one-hot rows: row i holds index ``code[i]`` when it is below ``size`` (the
    dropped last category and the invalid one otherwise hold nothing); returns the entry count."""
    p = 0
    offsets[0] = 0
    for i in range(code.shape[0]):
        c = code[i]
        if c < size:
            indices[p] = c
            p += 1
        offsets[i + 1] = p
    return p


def _one_hot_column(code: np.ndarray, size: int) -> pa.Array:
    """A sparse vector column of one-hot vectors of ``size`` from int32 category codes."""
    n = len(code)
    if n == 0:
        return pa.array([], type=SPARSE_VECTOR)
    offsets = np.empty(n + 1, dtype=np.int32)
    indices = np.empty(n, dtype=np.int32)
    nnz = _one_hot_csr(code, size, offsets, indices)
    arrow_offsets = pa.array(offsets)
    storage = pa.StructArray.from_arrays(
        [
            pa.array(np.full(n, size, dtype=np.int32)),
            pa.ListArray.from_arrays(arrow_offsets, pa.array(indices[:nnz])),
            pa.ListArray.from_arrays(arrow_offsets, pa.array(np.ones(nnz))),
        ],
        fields=list(SPARSE_VECTOR.storage_type),
    )
    return pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage)


class OneHotEncoder(_OneHotEncoderParams, OnePassEstimator):
    """Fits a one-hot encoding of columns of category indices (non-negative integer-valued numbers,
    for example the output of :class:`StringIndexer`): column ``i`` has ``max_i + 1`` categories.

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"c": [0.0, 1.0, 2.0]})
        >>> m = fl.feature.OneHotEncoder(input_cols=["c"], output_cols=["v"], drop_last=False).fit(t)
        >>> fl.linalg.to_numpy(m.transform(t).column("v")).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """

    # Fit state: one row per input column (none for an empty input): ``column`` and ``max_index``
    # (int64), the largest category index seen.

    def _partial(self, t: pa.Table) -> pa.Table:
        stage = type(self).__name__
        _check_io_cols(stage, self.input_cols, self.output_cols)
        max_idx = []
        for c in self.input_cols:
            x = _check_index_column(t, c, stage)
            with np.errstate(invalid="ignore"):
                ok = (x >= 0) & (x == np.floor(x)) & (x < 2**31)
            if not ok.all():
                r = first_bad_row(~ok)
                v = t.column(c)[r].as_py()
                raise ValueError(
                    f"{stage}: column '{c}' (parameter 'input_cols') has {_invalid_index_reason(v, None)} at row "
                    f"{r}; fit needs non-negative integer category indices (use fl.feature.StringIndexer)"
                )
            if len(x):
                max_idx.append(int(x.max()))
        return self._state(max_idx)

    def _state(self, max_idx: list[int]) -> pa.Table:
        return pa.table({"column": pa.array(self.input_cols[:len(max_idx)], pa.string()),
                         "max_index": pa.array(max_idx, pa.int64())})

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        states = [st for st in states if st.num_rows]
        _check_state_columns(type(self).__name__, states, ["column", "max_index"], self.input_cols)
        if not states:
            return self._state([])
        return self._state(np.max([st.column("max_index").to_numpy() for st in states], axis=0).tolist())

    def _finish(self, state: pa.Table) -> "OneHotEncoderModel":
        stage = type(self).__name__
        _check_io_cols(stage, self.input_cols, self.output_cols)
        _check_state_columns(stage, [state], ["column", "max_index"], self.input_cols)
        max_idx = state.column("max_index")
        model = OneHotEncoderModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({
            "column_index": pa.array(range(len(max_idx)), type=pa.int32()),
            "max_index": max_idx.cast(pa.int32()),
        }))


class OneHotEncoderModel(_OneHotEncoderParams, Model):
    """Encodes category indices as sparse one-hot vectors.

    Model data: one table with one row per input column: ``column_index: int32`` (position in
    ``input_cols``) and ``max_index: int32`` (largest index seen in fit), so column ``i`` has
    ``n = max_index + 1`` categories. Invalid values (null, NaN, negative, non-integer or ``>= n``)
    raise under ``handle_invalid="error"``, drop the row under ``"skip"`` and under ``"keep"`` go to
    an extra category ``n``. Vector size: ``n`` (+1 with ``"keep"``), minus 1 when ``drop_last``;
    the dropped last category encodes as the all-zero vector. Output columns are sparse vectors.

    Example:
        >>> import flowlearn as fl
        >>> m = fl.feature.OneHotEncoderModel(input_cols=["c"], output_cols=["v"], handle_invalid="keep")
        >>> m = m.set_model_data({"column_index": [0], "max_index": [2]})
        >>> [v.as_py()["indices"] for v in m.transform({"c": [0.0, 2.0, 7.0]}).column("v")]
        [[0], [2], []]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1:
            raise ValueError(f"{stage}: model data is one table (column_index, max_index), got {len(tables)} tables")
        (t,) = tables
        for name in ("column_index", "max_index"):
            if name not in t.column_names:
                raise ValueError(f"{stage}: model data needs columns 'column_index' and 'max_index', got "
                                 f"{t.column_names}")
        ci = numeric_column(t, "column_index", stage).astype(np.int64)
        mi = numeric_column(t, "max_index", stage).astype(np.int64)
        if sorted(ci.tolist()) != list(range(len(ci))) or (mi < 0).any():
            raise ValueError(f"{stage}: model data must give each column 0..{len(ci) - 1} once with max_index >= 0, "
                             f"got column_index={ci.tolist()}, max_index={mi.tolist()}")
        sizes = np.empty(len(ci), dtype=np.int64)
        sizes[ci] = mi + 1
        self._num_categories = sizes.tolist()

    def _layout(self) -> list[tuple[int, int]]:
        """(number of categories, vector size) per column."""
        stage = type(self).__name__
        self._require_model()
        _check_io_cols(stage, self.input_cols, self.output_cols)
        if len(self._num_categories) != len(self.input_cols):
            raise ValueError(f"{stage}: the model data describes {len(self._num_categories)} columns but "
                             f"'input_cols' names {len(self.input_cols)} ({self.input_cols})")
        extra = 1 if self.handle_invalid == "keep" else 0
        drop = 1 if self.drop_last else 0
        return [(n, n + extra - drop) for n in self._num_categories]

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = _one_input(stage, tables, "transform")
        layout = self._layout()
        hi = self.handle_invalid
        codes = []
        bad_rows = np.zeros(t.num_rows, dtype=bool)
        for c, (n, _) in zip(self.input_cols, layout):
            x = _check_index_column(t, c, stage)
            code = np.empty(len(x), dtype=np.int32 if n < _INT_MAX else np.int64)
            first_bad = _one_hot_codes(x, n, code)  # invalid values get code n
            if first_bad >= 0:
                ok = code != n
                if hi == "error":
                    r = first_bad
                    v = t.column(c)[r].as_py()
                    raise ValueError(
                        f"{stage}: column '{c}' (parameter 'input_cols') has {_invalid_index_reason(v, n)} at row "
                        f"{r}; set handle_invalid='keep' to encode invalid values as an extra category or 'skip' "
                        f"to drop such rows"
                    )
                if hi == "skip":
                    bad_rows |= ~ok
            codes.append(code)
        if hi == "skip":
            t, keep = _skip_rows(stage, t, bad_rows)
            if keep is not None:
                codes = [code[keep] for code in codes]
        for c, o, code, (n, size) in zip(self.input_cols, self.output_cols, codes, layout):
            field = t.schema.field(c) if c in t.column_names else None
            t = with_column(t, self._output_field(o, c, field, n, size), _one_hot_column(code, size))
        return t

    def _output_field(self, name: str, col: str, field: pa.Field | None, n: int, size: int) -> pa.Field:
        """A one-hot column: its size, and its features named ``<column>=<label>`` (from the labels a
        StringIndexerModel wrote on its index column, else ``<column>=<index>``; the extra category of
        ``handle_invalid="keep"`` is ``<column>=<invalid>``)."""
        raw = (field.metadata or {}).get(LABELS_KEY) if field is not None else None
        key = (name, col, n, size, raw)
        cache = self.__dict__.setdefault("_fields", {})
        if key in cache:
            return cache[key]
        if len(cache) > 64:
            cache.clear()
        cache[key] = out = self._make_output_field(name, col, raw, n, size)
        return out

    def _make_output_field(self, name: str, col: str, raw: bytes | None, n: int, size: int) -> pa.Field:
        doc = json.loads(raw) if raw else {}
        base, labels = doc.get("column", col), doc.get("labels", [])
        names = [f"{base}={labels[j] if j < len(labels) else j}" if j < n else f"{base}=<invalid>"
                 for j in range(size)]
        return vector_field(name, SPARSE_VECTOR, size=size, names=names)

    def row_fn(self):
        """Row kernel: the one-hot vectors are precomputed, so a row costs a type check and a lookup."""
        return self._row_kernel()[0]

    def _fused_row_fn(self, successor):
        """This encoder's row kernel followed by a ``VectorAssembler``'s, or None (``LocalPredictor``
        asks each pipeline stage for one; see ``flowlearn.serving.predictor``). The assembler is told
        every vector this kernel can output, so it builds its cached assembly plans now rather than
        on the first row of each combination of categories (which would show in tail latency)."""
        kernel_for = getattr(successor, "_row_kernel", None)
        if kernel_for is None or not isinstance(successor, Transformer):
            return None
        first, vectors = self._row_kernel()
        second = kernel_for(vectors)

        def run(row: dict) -> None:
            first(row)
            second(row)

        return run

    def _row_kernel(self) -> tuple:
        """(row kernel, output column -> the vectors it can write)."""
        stage = type(self).__name__
        layout = self._layout()
        hi = self.handle_invalid
        keep, skip = hi == "keep", hi == "skip"
        empty_i, empty_v = _frozen(np.zeros(0, np.int32)), _frozen(np.zeros(0))
        one = _frozen(np.ones(1))
        specs = []
        for c, o, (n, size) in zip(self.input_cols, self.output_cols, layout):
            vecs = [SparseVector.unchecked(size, _frozen(np.array([j], np.int32)), one) if j < size
                    else SparseVector.unchecked(size, empty_i, empty_v) for j in range(n + 1)]
            # index (a float or an int: equal keys hash alike) -> its vector, for the valid indices
            specs.append((c, o, vecs, n, {float(j): vecs[j] for j in range(n)}))

        def run(row: dict) -> None:
            for c, o, vecs, n, by_index in specs:
                try:
                    v = row[c]
                except KeyError:
                    raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the "
                                     f"row; it has {sorted(row)}") from None
                tv = type(v)
                if tv is float or tv is int:
                    vec = by_index.get(v)
                    if vec is not None:
                        row[o] = vec
                        continue
                if tv is not float and tv is not int and v is not None:
                    if isinstance(v, (str, bytes)) or not hasattr(v, "__float__"):
                        raise TypeError(f"{stage}: column '{c}' has {v!r} of type {tv.__name__}; OneHotEncoder "
                                        f"encodes numeric category indices")
                    v = float(v)
                if v is not None and 0 <= v < n:
                    j = int(v)
                    if j == v:
                        row[o] = vecs[j]
                        continue
                if keep:
                    row[o] = vecs[n]
                elif skip:
                    raise SkipRow
                else:
                    raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') has "
                                     f"{_invalid_index_reason(v, n)}; set handle_invalid='keep' or 'skip'")

        return run, {o: vecs if keep else vecs[:n] for _, o, vecs, n, _ in specs}
