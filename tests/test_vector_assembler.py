"""VectorAssembler.

Oracles: np.hstack / np.column_stack of the inputs (River's bundled Phishing and Bananas data),
and Flink ML's published VectorAssemblerTest expectations (nulls, NaNs, wrong sizes).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
datasets = pytest.importorskip("river.datasets")  # River (an oracle) lives only in the main test env

import flowlearn as fl
from flowlearn.api import SkipRow
from flowlearn.feature import VectorAssembler
from flowlearn.linalg import SparseVector, is_sparse, to_csr, to_numpy

NAN = float("nan")


@pytest.fixture(scope="module")
def phishing() -> pa.Table:
    rows = [x for x, _ in datasets.Phishing()]
    return fl.table([{k: float(v) for k, v in r.items()} for r in rows])


def flink_table(kind: str = "plain") -> pa.Table:
    """Flink ML's VectorAssemblerTest input (id, vec, num, sparseVec)."""
    vec = [[2.1, 3.1], [2.1, 3.1], [2.0, 2.1]]
    num = [1.0, 1.0, 1.0]
    if kind == "nan":
        num[2] = NAN
    if kind == "null":
        vec[1] = vec[2] = None
    sv = [SparseVector(5, [3], [1.0]), SparseVector(5, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0]),
          SparseVector(5, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])]
    return fl.table({"id": [0, 1, 2], "vec": pa.array(vec, pa.list_(pa.float64(), 2)), "num": num, "sparseVec": sv})


# Flink ML's expected outputs, as dense arrays
FLINK_1 = [2.1, 3.1, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
FLINK_2 = [2.1, 3.1, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
FLINK_3 = [2.0, 2.1, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
FLINK_4 = [NAN, NAN, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
FLINK_5 = [2.0, 2.1, NAN, 0.0, 1.0, 2.0, 3.0, 4.0]


def assembler(**kw):
    kw.setdefault("input_cols", ["vec", "num", "sparseVec"])
    kw.setdefault("output_col", "assembledVec")
    kw.setdefault("input_sizes", [2, 1, 5])
    return VectorAssembler(**kw)


def dense_rows(t: pa.Table, col: str = "assembledVec") -> np.ndarray:
    return to_csr(t.column(col)).toarray()


def test_input_sizes_must_match_input_cols():
    with pytest.raises(ValueError, match=r"'input_sizes' has 1 entries \(\[2\]\) but 'input_cols' names 3"):
        assembler(input_sizes=[2]).transform(flink_table())


def test_output_schema():
    t = flink_table()
    out = assembler(input_cols=["num"], input_sizes=[1], handle_invalid="keep").transform(t)
    assert out.column_names == ["id", "vec", "num", "sparseVec", "assembledVec"]
    assert out.schema.field("assembledVec").type == fl.linalg.dense_vector_type(1)
    assert is_sparse(assembler().transform(t).schema.field("assembledVec").type)


def test_flink_ml_published_expectations():
    np.testing.assert_array_equal(dense_rows(assembler().transform(flink_table())), [FLINK_1, FLINK_2, FLINK_3])
    keep = assembler(handle_invalid="keep")
    np.testing.assert_array_equal(dense_rows(keep.transform(flink_table("null"))), [FLINK_1, FLINK_4, FLINK_4])
    np.testing.assert_array_equal(dense_rows(keep.transform(flink_table("nan"))), [FLINK_1, FLINK_2, FLINK_5])
    skip = assembler(handle_invalid="skip")
    assert skip.transform(flink_table("null")).column("id").to_pylist() == [0]
    assert skip.transform(flink_table("nan")).column("id").to_pylist() == [0, 1]
    assert assembler(input_sizes=[2, 1, 4], handle_invalid="skip").transform(flink_table()).num_rows == 0
    # keep uses a wrongly sized vector as it is
    out = assembler(input_sizes=[2, 1, 4], handle_invalid="keep").transform(flink_table())
    np.testing.assert_array_equal(dense_rows(out), [FLINK_1, FLINK_2, FLINK_3])


def test_errors_name_column_and_row():
    with pytest.raises(ValueError, match=r"column 'vec' \(parameter 'input_cols'\) is null at row 1; .*"
                                         r"handle_invalid='skip'"):
        assembler().transform(flink_table("null"))
    with pytest.raises(ValueError, match="column 'num' .* is NaN at row 2"):
        assembler().transform(flink_table("nan"))
    with pytest.raises(ValueError, match="column 'sparseVec' .* has a vector of size 5 but 'input_sizes' declares "
                                         "size 4 for it at row 0"):
        assembler(input_sizes=[2, 1, 4]).transform(flink_table())
    with pytest.raises(ValueError, match="column 'num' .* has a number but 'input_sizes' declares size 2"):
        assembler(input_sizes=[2, 2, 5]).transform(flink_table())
    with pytest.raises(TypeError, match="column 'id2' .* has type string; VectorAssembler assembles numeric"):
        VectorAssembler(input_cols=["id2"], input_sizes=[1]).transform({"id2": ["a"]})
    with pytest.raises(ValueError, match="input column 'nope' .* is missing"):
        VectorAssembler(input_cols=["nope"], input_sizes=[1]).transform({"x": [1.0]})


def test_dense_against_numpy(phishing):
    cols = phishing.column_names
    out = VectorAssembler(input_cols=cols, input_sizes=[1] * len(cols), output_col="f").transform(phishing)
    assert out.schema.field("f").type == fl.linalg.dense_vector_type(len(cols))
    want = np.column_stack([phishing.column(c).to_numpy() for c in cols])
    np.testing.assert_array_equal(to_numpy(out.column("f")), want)
    # mix a dense vector column with numbers: np.hstack oracle
    t = out.select(["f"]).append_column("a", phishing.column(cols[0])).append_column("b", phishing.column(cols[3]))
    out2 = VectorAssembler(input_cols=["a", "f", "b"], input_sizes=[1, len(cols), 1]).transform(t)
    np.testing.assert_array_equal(to_numpy(out2.column("output")),
                                  np.hstack([want[:, :1], want, want[:, 3:4]]))


def test_sparse_against_numpy_hstack():
    rows = [x for x, _ in datasets.Bananas()]
    rng = np.random.default_rng(0)
    n = len(rows)
    s = sps.random(n, 7, density=0.3, format="csr", random_state=1)
    t = fl.table({"x1": [r["1"] for r in rows], "v": rng.normal(size=(n, 3)), "s": s,
                  "x2": pa.array(rng.integers(-5, 5, n))})
    out = VectorAssembler(input_cols=["s", "x1", "v", "x2"], input_sizes=[7, 1, 3, 1]).transform(t)
    got = to_csr(out.column("output"))
    want = np.hstack([s.toarray(), np.array([r["1"] for r in rows])[:, None], to_numpy(t.column("v")),
                      t.column("x2").to_numpy()[:, None].astype(float)])
    np.testing.assert_array_equal(got.toarray(), want)
    # as in Flink ML, every element of the numeric and dense inputs is stored, zeros included
    np.testing.assert_array_equal(np.diff(got.indptr), np.diff(s.indptr) + 5)


def test_variable_size_lists_under_keep():
    t = pa.table({"a": pa.array([[1.0, 2.0], [3.0], None, [4.0, 5.0]]), "b": [1.0, 2.0, 3.0, 4.0]})
    out = VectorAssembler(input_cols=["a", "b"], input_sizes=[2, 1], handle_invalid="keep").transform(t)
    got = out.column("output").to_pylist()
    assert got[0] == [1.0, 2.0, 1.0] and got[1] == [3.0, 2.0] and got[3] == [4.0, 5.0, 4.0]
    assert np.isnan(got[2][:2]).all() and got[2][2] == 3.0
    out = VectorAssembler(input_cols=["a", "b"], input_sizes=[2, 1], handle_invalid="skip").transform(t)
    assert out.column("output").to_pylist() == [[1.0, 2.0, 1.0], [4.0, 5.0, 4.0]]
    assert out.schema.field("output").type == fl.linalg.dense_vector_type(3)


def test_empty_input():
    t = flink_table().slice(0, 0)
    out = assembler().transform(t)
    assert out.num_rows == 0 and is_sparse(out.schema.field("assembledVec").type)
    out = assembler(input_cols=["vec", "num"], input_sizes=[2, 1]).transform(t)
    assert out.schema.field("assembledVec").type == fl.linalg.dense_vector_type(3)


def _row_dicts(t: pa.Table, sparse_cols=()):
    rows = []
    for r in t.to_pylist():
        for c in sparse_cols:
            if r[c] is not None:
                r[c] = SparseVector(r[c]["size"], r[c]["indices"], r[c]["values"])
        rows.append(r)
    return rows


def _same(a, b) -> bool:
    if isinstance(a, SparseVector) or isinstance(b, SparseVector):
        return (isinstance(a, SparseVector) and isinstance(b, SparseVector) and a.size == b.size
                and np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values, equal_nan=True))
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


@pytest.mark.parametrize("kind", ["plain", "nan", "null"])
@pytest.mark.parametrize("hi", ["keep", "skip", "error"])
def test_row_kernel_equals_batch(kind, hi):
    t = flink_table(kind)
    va = assembler(handle_invalid=hi)
    fn = va.row_fn()
    rows = _row_dicts(t, ["sparseVec"])
    if hi == "error" and kind != "plain":
        with pytest.raises(ValueError, match="is NaN|is null"):
            for r in rows:
                fn(r)
        return
    batch = va.transform(t)
    want = [SparseVector(v["size"], v["indices"], v["values"]) for v in batch.column("assembledVec").to_pylist()]
    got = []
    for r in rows:
        try:
            fn(r)
        except SkipRow:
            continue
        got.append(r["assembledVec"])
    assert len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want))
    # not vacuous: skip drops the invalid rows (the null vectors of rows 1, 2; the NaN of row 2), keep none
    assert len(want) == {"plain": 3, "nan": 2, "null": 1}[kind] if hi == "skip" else len(want) == 3
    expected = {"plain": [FLINK_1, FLINK_2, FLINK_3], "nan": [FLINK_1, FLINK_2, FLINK_5],
                "null": [FLINK_1, FLINK_4, FLINK_4]}[kind]
    if hi == "skip":
        expected = expected[:len(want)]
    np.testing.assert_array_equal([v.to_numpy() for v in got], expected)  # Flink ML's published rows


def test_row_kernel_dense_paths(phishing):
    cols = phishing.column_names
    va = VectorAssembler(input_cols=cols, input_sizes=[1] * len(cols), output_col="f")
    fn = va.row_fn()
    want = to_numpy(va.transform(phishing).column("f"))
    for i, r in enumerate(phishing.slice(0, 50).to_pylist()):
        fn(r)
        assert r["f"].dtype == np.float64 and np.array_equal(r["f"], want[i])
    # ints, numpy scalars, lists and arrays
    va = VectorAssembler(input_cols=["a", "v", "b"], input_sizes=[1, 2, 1])
    row = {"a": 1, "v": [2, 3], "b": np.float32(4.0)}
    va.row_fn()(row)
    assert row["output"].tolist() == [1.0, 2.0, 3.0, 4.0]
    row = {"a": 1.0, "v": np.array([2.0, 3.0]), "b": 4}
    va.row_fn()(row)
    assert row["output"].tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="column 'v' .* has a vector of size 3 but 'input_sizes' declares size 2"):
        va.row_fn()({"a": 1.0, "v": [1.0, 2.0, 3.0], "b": 0.0})
    with pytest.raises(ValueError, match="column 'a' .* is NaN"):
        va.row_fn()({"a": NAN, "v": [1.0, 2.0], "b": 0.0})
    with pytest.raises(ValueError, match="input column 'b' .* is missing"):
        va.row_fn()({"a": 1.0, "v": [1.0, 2.0]})
    with pytest.raises(TypeError, match="column 'b' holds 'x' of type str"):
        va.row_fn()({"a": 1.0, "v": [1.0, 2.0], "b": "x"})
    keep = VectorAssembler(input_cols=["a", "v", "b"], input_sizes=[1, 2, 1], handle_invalid="keep").row_fn()
    row = {"a": None, "v": None, "b": NAN}
    keep(row)
    assert np.isnan(row["output"]).all() and len(row["output"]) == 4


def test_local_predictor():
    t = flink_table()
    pred = fl.LocalPredictor(assembler())
    r = pred.predict(_row_dicts(t, ["sparseVec"])[1])
    np.testing.assert_array_equal(r["assembledVec"].to_numpy(), FLINK_2)
