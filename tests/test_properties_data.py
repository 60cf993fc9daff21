"""Property-based bad input for the data layer: ``fl.table`` (dicts of columns, lists of row
dicts, schemas), schema strings, and the vector codecs (``fl.linalg.SparseVector``,
``vectors_to_array``, ``to_numpy``, ``to_csr``, Alink text vectors ``parse_vector``).

The contract (tests/strategies.py): every call returns a sound value or raises a ValueError /
TypeError naming the column or parameter (and the row where one is involved); never a crash, a
raw NumPy/pyarrow exception or a silently wrong value. Calls that could crash the interpreter
(kernels over unchecked sparse storage) run in the ISOLATED child process."""
from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given, strategies as st

import flowlearn as fl
from flowlearn.data.io import parse_vector
from flowlearn.data.vector_json import decode_vector, encode_vector
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, is_sparse, is_vector_type, to_csr, to_numpy, vectors_to_array
from strategies import ISOLATED, check, huge_ints, json_values, outcome, run_snippet

pytestmark = pytest.mark.fuzz

BAD = "bad_col"     # the column holding the bad values: every error must name it

# ---------------------------------------------------------------------------------------------
# fl.table

numbers = st.one_of(st.floats(), st.integers(-(2 ** 70), 2 ** 70), huge_ints)
vector_like = st.one_of(
    st.lists(st.floats(), min_size=0, max_size=4),
    st.lists(st.one_of(st.floats(), st.text(max_size=2), st.none(), st.lists(st.floats(), max_size=2)), max_size=4),
    st.builds(lambda n: np.zeros(n), st.integers(0, 4)),
    st.builds(lambda s, i: SparseVector(s, [i % s] if s else [], [1.0] if s else []), st.integers(0, 4),
              st.integers(0, 3)),
)
cells = st.one_of(json_values(), numbers, vector_like, st.binary(max_size=4))
column_values = st.one_of(
    st.lists(cells, max_size=6),
    st.lists(vector_like, max_size=6),
    st.lists(numbers, max_size=6),
    st.sampled_from([
        5, 2.5, None, "abc", b"abc", {"a": 1}, {1, 2}, np.float64(1.0), np.zeros((2, 2, 2)),
        np.array([1j, 2j]), np.array([["a", "b"]]), np.array([[1, None]], dtype=object),
        np.array(["2020-01-01"], dtype="datetime64[ns]"), np.array([1, "a"], dtype=object),
    ]),
)


def _table_of_columns(values):
    n = len(values) if hasattr(values, "__len__") and not isinstance(values, (str, bytes, dict)) else 1
    return fl.table({"num_ok": list(range(n)), BAD: values})


@given(column_values)
def test_table_from_columns(values):
    o = outcome(_table_of_columns, values)
    if check(o, [BAD], context=values) == "ok":
        t = o.value
        assert t.column_names == ["num_ok", BAD] and t.num_rows == len(values)


@given(st.lists(st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), cells, max_size=3), max_size=5),
       st.lists(st.one_of(st.integers(), st.text(max_size=2), st.lists(st.integers(), max_size=2)), max_size=2))
def test_table_from_rows(rows, junk):
    o = outcome(fl.table, rows)
    if check(o, [("column", "row")], context=rows) == "ok":
        assert o.value.num_rows == len(rows)
        keys = {str(k) for r in rows for k in r}
        assert set(o.value.column_names) == keys
    if junk:   # rows that are not dicts: the message names the row
        bad_at = len(rows)
        check(outcome(fl.table, rows + junk), [f"row {bad_at}"], ok=False, context=rows + junk)


def test_table_mismatched_lengths_names_the_columns():
    check(outcome(fl.table, {"num_ok": [1, 2], BAD: [1]}), ["num_ok", BAD], ok=False)


@pytest.mark.parametrize("values, schema, error", [
    (5, None, TypeError),                               # was: TypeError 'int' object is not iterable
    (None, None, TypeError),
    ("abc", None, TypeError),                           # was: three rows 'a', 'b', 'c'
    ({1, 2}, None, TypeError),                          # was: rows in set order
    (np.float64(1.0), None, TypeError),
    ([2 ** 70], None, ValueError),                      # was: OverflowError
    ([[1.0], None, 5], None, (TypeError, ValueError)),  # was: TypeError object of type 'int' has no len()
    (np.array([["a", "b"]]), None, ValueError),         # was: could not convert string to float
    (np.array([1j]), None, ValueError),                 # was: pyarrow.ArrowNotImplementedError
    ([[[0.0, 1.0]]], "sparse_vector", ValueError),      # was: IndexError
    (["1 2"], "vector", (TypeError, ValueError)),       # was: could not convert string to float
])
def test_table_column_regressions(values, schema, error):
    """fl.table refuses values that are not a column of its kind with an error naming the column."""
    with pytest.raises(error, match=f"column '{BAD}'"):
        fl.table({BAD: values}, schema=f"{BAD} {schema}" if schema else None)


def test_table_keys_and_rows_regressions():
    assert fl.table({1: [1.0]}).column_names == ["1"]          # was: KeyError '1'
    assert fl.table([{1: 2.0}]).column("1").to_pylist() == [2.0]
    with pytest.raises(ValueError, match="more than once"):
        fl.table({1: [1.0], "1": [2.0]})
    with pytest.raises(ValueError, match="rows have no columns"):  # was: a table of 0 rows for 2 rows
        fl.table([{}, {}])
    with pytest.raises(ValueError, match="size must be below 2"):  # was: OverflowError
        fl.parse_schema("v vector(99999999999)")


schema_types = st.sampled_from(["double", "int", "long", "string", "boolean", "timestamp", "date", "binary", "vector",
                                "vector(3)", "dense_vector", "sparse_vector", "float", "tinyint"])


@given(schema_types, column_values)
def test_table_with_schema_converts_or_names_the_column(type_name, values):
    o = outcome(fl.table, {BAD: values}, schema=f"{BAD} {type_name}")
    if check(o, [BAD], context=(type_name, values)) == "ok":
        t = o.value
        want = fl.parse_schema(f"{BAD} {type_name}").field(BAD)
        got = t.schema.field(BAD).type
        if want.metadata:           # generic "vector": dense or sparse as the data says
            assert is_vector_type(got), got
        elif is_sparse(want.type):
            assert is_sparse(got), got
        elif pa.types.is_list(want.type):
            assert is_vector_type(got) and not is_sparse(got), got
        else:
            assert got == want.type, (got, want.type)


schema_parts = st.one_of(
    st.tuples(st.from_regex(r"[A-Za-z_`][\w.` ]{0,5}", fullmatch=True), st.sampled_from(
        ["double", "int", "vector", "vector(3)", "vector(-1)", "vector(99999999999)", "vector(0)", "Vector(2)",
         "dense_vector(2)", "sparse_vector(3)", "map", "list<int>", "", "double double"])).map(" ".join),
    st.text(max_size=8),
)


@given(st.lists(schema_parts, min_size=1, max_size=4).map(", ".join))
def test_parse_schema(text):
    o = outcome(fl.parse_schema, text)
    if check(o, [], context=text) == "ok":
        assert len(o.value) == len(text.split(","))
        for f in o.value:
            if pa.types.is_fixed_size_list(f.type):
                assert 0 <= f.type.list_size < 2 ** 31


@pytest.mark.parametrize("bad", [5, None, "", "   ", ["x double"], b"x double"])
def test_parse_schema_refuses_non_strings(bad):
    check(outcome(fl.parse_schema, bad), ["schema"], ok=False)


# ---------------------------------------------------------------------------------------------
# SparseVector and vectors_to_array

def _sound_sparse(v: SparseVector) -> None:
    """A SparseVector that was accepted: a valid size and strictly increasing indices in range,
    and the row path (v.to_numpy) agrees with the batch path (an Arrow column)."""
    assert isinstance(v.size, int) and 0 <= v.size < 2 ** 31, v
    idx = np.asarray(v.indices)
    assert idx.ndim == 1 and len(idx) == len(v.values), v
    if len(idx):
        assert idx.min() >= 0 and idx.max() < v.size and np.all(np.diff(idx) > 0), v


def _row_and_batch(v: SparseVector):
    return v.to_numpy(), to_numpy(vectors_to_array([v], "vec"), "vec")[0]


sizes = st.one_of(st.integers(0, 6), st.integers(-3, -1), st.sampled_from([2 ** 31, 2 ** 40, 2.5, 3.0, "3", None,
                                                                             float("nan"), True]))
index_lists = st.one_of(
    st.lists(st.integers(0, 5), max_size=4, unique=True).map(sorted),
    st.lists(st.integers(-3, 8), max_size=4),
    st.lists(st.sampled_from([2 ** 31, 2 ** 40, -(2 ** 40), 1.5, 2.0, "1", None]), min_size=1, max_size=2),
)
value_lists = st.one_of(st.lists(st.floats(), max_size=4), st.lists(st.one_of(st.floats(), st.text(max_size=2)),
                                                                    max_size=4))


@example(-1, [])
@given(sizes, st.lists(st.integers(0, 5), max_size=3, unique=True).map(sorted))
def test_sparse_vector_size(size, indices):
    o = outcome(SparseVector, size, indices, [1.0] * len(indices))
    if check(o, ["size"], context=(size, indices)) == "ok":
        _sound_sparse(o.value)


@example(4, [3, 1], [1.0, 2.0])
@given(st.integers(0, 6), index_lists, value_lists)
def test_sparse_vector_indices_and_values(size, indices, values):
    values = (values + [1.0] * len(indices))[:len(indices)]
    o = outcome(SparseVector, size, indices, values)
    if check(o, [("indices", "values")], context=(size, indices, values)) == "ok":
        _sound_sparse(o.value)
        both = ISOLATED(_row_and_batch, o.value)
        check(both, [], ok=True, context=o.value)
        np.testing.assert_array_equal(*both.value)


@example(["", SparseVector(4, [2], [1.0])])
@given(st.lists(st.one_of(st.none(), vector_like, st.floats(), st.text(max_size=3),
                          st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)), min_size=1, max_size=5))
def test_vectors_to_array(values):
    o = ISOLATED(vectors_to_array, values, "vec_col")
    if check(o, ["vec_col"], context=values) == "ok":
        arr = o.value
        assert len(arr) == len(values) and is_vector_type(arr.type)


# Arrow sparse columns built from raw storage, as a Parquet file or an IPC stream can hold them:
# nothing validated them on the way in.
def _raw_sparse(sizes, indices, values):
    storage = pa.StructArray.from_arrays(
        [pa.array(sizes, pa.int32()), pa.array(indices, pa.list_(pa.int32())), pa.array(values, pa.list_(pa.float64()))],
        fields=list(SPARSE_VECTOR.storage_type))
    return pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage)


@st.composite
def raw_sparse_columns(draw, defect):
    """(sizes, indices, values, bad_row) with one bad row of the kind ``defect``."""
    n = draw(st.integers(1, 5))
    size = draw(st.integers(1, 6))
    rows = [sorted(draw(st.sets(st.integers(0, size - 1), max_size=size))) for _ in range(n)]
    bad = draw(st.integers(0, n - 1))
    if defect == "index >= size":
        rows[bad] = sorted(set(rows[bad]) | {draw(st.integers(size, size + 1000))})
    elif defect == "negative index":
        rows[bad] = [draw(st.integers(-1000, -1))] + rows[bad]
    elif defect == "unsorted":
        rows[bad] = [size - 1, 0] if size > 1 else [0, 0]
    elif defect == "values length":
        return [size] * n, rows, [[1.0] * len(r) for r in rows[:bad]] + [[1.0] * (len(rows[bad]) + 1)] + \
            [[1.0] * len(r) for r in rows[bad + 1:]], bad
    return [size] * n, rows, [[1.0] * len(r) for r in rows], bad


def _convert_raw(fn_name, sizes, indices, values):
    col = _raw_sparse(sizes, indices, values)
    m = {"to_numpy": to_numpy, "to_csr": to_csr}[fn_name](col, "vec_col", "Probe")
    return m.shape


@pytest.mark.parametrize("fn_name", ["to_numpy", "to_csr"])
@pytest.mark.parametrize("defect", ["index >= size", "negative index", "unsorted", "values length"])
@given(data=st.data())
def test_raw_sparse_storage_is_checked(fn_name, defect, data):
    sizes, indices, values, bad = data.draw(raw_sparse_columns(defect))
    o = ISOLATED(_convert_raw, fn_name, sizes, indices, values)
    check(o, ["vec_col", f"row {bad}"], ok=False, context=(sizes, indices, values))


def test_raw_sparse_out_of_range_does_not_crash_a_fresh_process():
    """The reproducer of issue 8 item 1 on its own (python -c), asserting the exit status."""
    r = run_snippet(
        "import pyarrow as pa, flowlearn as fl\n"
        "from flowlearn.linalg import SPARSE_VECTOR, to_numpy\n"
        "st = pa.StructArray.from_arrays([pa.array([2], pa.int32()), pa.array([[0, 100000]], pa.list_(pa.int32())),"
        " pa.array([[1.0, 2.0]], pa.list_(pa.float64()))], fields=list(SPARSE_VECTOR.storage_type))\n"
        "try:\n"
        "    to_numpy(pa.ExtensionArray.from_storage(SPARSE_VECTOR, st), 'vec_col')\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n")
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert "ValueError" in r.stdout and "vec_col" in r.stdout and "row 0" in r.stdout, r.stdout


# ---------------------------------------------------------------------------------------------
# Alink text vectors (fl.data.parse_vector)

vector_texts = st.one_of(
    st.lists(st.floats(), max_size=4).map(lambda xs: " ".join(repr(x) for x in xs)),
    st.lists(st.floats(), max_size=4).map(lambda xs: "[" + ", ".join(repr(x) for x in xs) + "]"),
    st.tuples(st.integers(-3, 6), st.lists(st.tuples(st.integers(-2, 8), st.floats()), max_size=4)).map(
        lambda sv: f"${sv[0]}$" + " ".join(f"{i}:{v!r}" for i, v in sv[1])),
    st.from_regex(r"\$?[-\d]{0,3}\$?[\d: ,.e\[\]-]{0,10}", fullmatch=True),
    st.text(max_size=10),
)


@example("$-1$")
@given(vector_texts)
def test_parse_vector_text(text):
    o = outcome(parse_vector, text, "where: ")
    if check(o, ["where: "], context=text) == "ok":
        v = o.value
        if isinstance(v, SparseVector):
            _sound_sparse(v)
        else:
            assert isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype == np.float64


@pytest.mark.parametrize("text", ["$-3$", "$3$1:1 1:2", "$3$2:1 0:2"])
def test_parse_vector_refuses_unsound_sparse_text(text):
    o = outcome(parse_vector, text, "where: ")
    if check(o, ["where: "], context=text) == "ok":
        _sound_sparse(o.value)


@pytest.mark.parametrize("value", [5, 2.5, True, {"size": 3, "indices": [0], "values": [1.0]}, {"a": 1}])
def test_parse_vector_non_text(value):
    check(outcome(parse_vector, value, "where: "), ["where: "], context=value)


def test_finite_check_of_parsed_vectors_is_by_kernels():
    """parse_vector keeps NaN/inf (columns may hold them; stages reject them naming the row)."""
    assert math.isinf(parse_vector("1e999")[0])


# ---------------------------------------------------------------------------------------------
# the JSON vector codec (files, Kafka and HTTP share it)

json_vector_values = st.one_of(
    json_values(),
    st.lists(st.one_of(st.floats(), st.integers(-(2 ** 70), 2 ** 70)), max_size=4),
    st.fixed_dictionaries({"size": st.one_of(st.integers(-2, 6), st.floats(), st.text(max_size=1)),
                           "indices": st.lists(st.one_of(st.integers(-2, 8), st.floats(0, 8)), max_size=3),
                           "values": st.lists(st.one_of(st.floats(), st.text(max_size=1)), max_size=3)}),
    vector_texts,
)


@given(json_vector_values)
def test_decode_vector(value):
    o = outcome(decode_vector, value, "vec_col")
    if check(o, ["vec_col"], context=value) == "ok":
        v = o.value
        if isinstance(v, SparseVector):
            _sound_sparse(v)
        else:
            assert v is None or isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype == np.float64, v


@given(st.one_of(st.lists(st.floats(), max_size=5).map(np.asarray),
                 st.integers(0, 6).flatmap(lambda n: st.builds(
                     lambda idx, vals: SparseVector(n, sorted(idx), vals[:len(idx)] + [1.0] * (len(idx) - len(vals))),
                     st.sets(st.integers(0, max(n - 1, 0)), max_size=n), st.lists(st.floats(), max_size=n)))))
def test_encode_decode_round_trip(v):
    back = decode_vector(json.loads(json.dumps(encode_vector(v))), "vec_col")
    if isinstance(v, SparseVector):     # (== would call NaN values different)
        assert isinstance(back, SparseVector) and back.size == v.size, back
        np.testing.assert_array_equal(back.indices, v.indices)
        np.testing.assert_array_equal(back.values, v.values)
    else:
        np.testing.assert_array_equal(back, v)
