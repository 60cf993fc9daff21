"""Bucketizer against closed forms: the bucket definition applied value by value, and np.digitize,
on bundled scikit-learn data."""
import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_diabetes, load_iris

import flowlearn as fl
from flowlearn.api import SkipRow

fs = fl.feature


def reference_bucket(v, splits):
    """Flink ML's definition: bucket i is [s_i, s_(i+1)); the last also holds s_n; else invalid (None)."""
    if v is None or math.isnan(v):
        return None
    n = len(splits) - 1
    for i in range(n):
        if splits[i] <= v < splits[i + 1] or (i == n - 1 and v == splits[n]):
            return i
    return None


def digitize_bucket(x, splits):
    """np.digitize form: index of the bucket, with the top split folded into the last bucket."""
    b = np.digitize(x, splits, right=False) - 1
    b[x == splits[-1]] = len(splits) - 2
    return b


@pytest.fixture(scope="module")
def iris():
    d = load_iris()
    return pa.table({n: d.data[:, j] for j, n in enumerate(["sl", "sw", "pl", "pw"])})


@pytest.fixture(scope="module")
def diabetes():
    d = load_diabetes(scaled=False)  # age in years, bmi, blood pressure: natural split points
    return pa.table({"age": d.data[:, 0], "bmi": d.data[:, 2], "bp": d.data[:, 3]})


# ---------------------------------------------------------------------------------------- params


def test_param_defaults_and_set():
    b = fs.Bucketizer()
    assert b.get_params() == {"handle_invalid": "error"}
    b.set(input_cols=["a"], output_cols=["b"], splits_array=[[0, 1, 2]], handle_invalid="keep")
    assert b.splits_array == [[0.0, 1.0, 2.0]] and b.handle_invalid == "keep"


def test_bad_params():
    with pytest.raises(ValueError, match=r"Bucketizer: parameter 'splits_array' = \[\[0.0, 1.0\]\] violates "
                                         r"strictly_increasing_splits\(\): it must be a list with, for each input "
                                         r"column, at least 3 strictly increasing split points"):
        fs.Bucketizer(splits_array=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="violates strictly_increasing_splits"):
        fs.Bucketizer(splits_array=[[0.0, 1.0, 2.0], [0.0, 2.0, 1.0]])
    with pytest.raises(ValueError, match="violates strictly_increasing_splits"):
        fs.Bucketizer(splits_array=[[0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="violates strictly_increasing_splits"):
        fs.Bucketizer(splits_array=[[0.0, float("nan"), 1.0]])
    with pytest.raises(ValueError, match="parameter 'splits_array' = 'abc' has type str"):
        fs.Bucketizer(splits_array="abc")
    with pytest.raises(ValueError, match=r"parameter 'handle_invalid' = 'drop' violates in_array"):
        fs.Bucketizer(handle_invalid="drop")
    with pytest.raises(ValueError, match="Bucketizer: parameter 'splits_array' is required and has not been set"):
        fs.Bucketizer(input_cols=["a"], output_cols=["b"]).transform({"a": [1.0]})
    with pytest.raises(ValueError, match=r"'input_cols' \(2\), 'output_cols' \(2\) and 'splits_array' \(1\) must "
                                         r"have the same length"):
        fs.Bucketizer(input_cols=["a", "b"], output_cols=["c", "d"], splits_array=[[0, 1, 2]]).transform(
            {"a": [1.0], "b": [1.0]})


# ---------------------------------------------------------------------------------- transform


def test_matches_closed_forms_on_iris(iris):
    splits = [[4.0, 5.0, 5.5, 6.0, 7.0, 8.0], [2.0, 2.8, 3.0, 3.4, 4.4], [1.0, 2.0, 4.0, 5.0, 6.9],
              [0.1, 0.6, 1.3, 2.5]]
    names = ["sl", "sw", "pl", "pw"]
    # iris min/max per column: sl 4.3..7.9, sw 2.0..4.4, pl 1.0..6.9, pw 0.1..2.5 — the outer
    # splits include the extremes, and several inner splits are exact data values.
    b = fs.Bucketizer(input_cols=names, output_cols=[n + "_b" for n in names], splits_array=splits)
    out = b.transform(iris)
    assert out.column_names == names + [n + "_b" for n in names]
    for n, s in zip(names, splits):
        x = iris.column(n).to_numpy()
        got = out.column(n + "_b").to_numpy()
        assert out.schema.field(n + "_b").type == pa.int32()
        assert got.tolist() == [reference_bucket(v, s) for v in x]
        assert np.array_equal(got, digitize_bucket(x, np.array(s)))
        assert np.isin(x, s).any()  # values equal to a split are exercised


def test_infinite_outer_splits_cover_everything(diabetes):
    splits = [[-math.inf, 30.0, 45.0, 60.0, math.inf], [-math.inf, 18.5, 25.0, 30.0, math.inf]]
    b = fs.Bucketizer(input_cols=["age", "bmi"], output_cols=["age_b", "bmi_b"], splits_array=splits)
    out = b.transform(diabetes)
    for c, s in zip(["age", "bmi"], splits):
        x = diabetes.column(c).to_numpy()
        assert out.column(c + "_b").to_pylist() == [reference_bucket(v, s) for v in x]
        assert np.array_equal(out.column(c + "_b").to_numpy(), digitize_bucket(x, np.array(s)))
    edge = b.transform({"age": [-math.inf, math.inf, 30.0], "bmi": [0.0, 25.0, math.inf]})
    assert edge.column("age_b").to_pylist() == [0, 3, 1]
    assert edge.column("bmi_b").to_pylist() == [0, 2, 3]


@pytest.fixture()
def invalid_table(diabetes):
    # blood pressure 62..133: splits [70, 90, 110, 120] leave values on both sides; add a NaN and a null
    bp = diabetes.column("bp").to_numpy()[:50].copy()
    bp[3] = 130.0  # above the top split
    bp[10] = np.nan
    mask = np.zeros(len(bp), dtype=bool)
    mask[20] = True
    age = diabetes.column("age").to_numpy()[:50]
    return pa.table({"bp": pa.array(bp, mask=mask), "age": age}), [70.0, 90.0, 110.0, 120.0], [0.0, 50.0, 100.0]


def test_handle_invalid_error(invalid_table):
    t, s_bp, s_age = invalid_table
    x = t.column("bp").to_numpy(zero_copy_only=False)
    first = next(i for i, v in enumerate(x) if reference_bucket(v, s_bp) is None)
    assert first == 3
    b = fs.Bucketizer(input_cols=["bp", "age"], output_cols=["bp_b", "age_b"], splits_array=[s_bp, s_age])
    with pytest.raises(ValueError, match=rf"Bucketizer: column 'bp' has value {float(x[first])!r} at row {first}, "
                                         r"which is in no bucket of the splits \[70.0, 120.0\]; set "
                                         r"handle_invalid='keep' to put such values in bucket 3 or 'skip'"):
        b.transform(t)
    with pytest.raises(ValueError, match="column 'a' has NaN at row 1"):
        fs.Bucketizer(input_cols=["a"], output_cols=["b"], splits_array=[[0, 1, 2]]).transform({"a": [1.0, np.nan]})
    with pytest.raises(ValueError, match="column 'a' has a null at row 0"):
        fs.Bucketizer(input_cols=["a"], output_cols=["b"], splits_array=[[0, 1, 2]]).transform({"a": [None, 1.0]})


def test_handle_invalid_keep(invalid_table):
    t, s_bp, s_age = invalid_table
    b = fs.Bucketizer(input_cols=["bp", "age"], output_cols=["bp_b", "age_b"], splits_array=[s_bp, s_age],
                      handle_invalid="keep")
    out = b.transform(t)
    assert out.num_rows == t.num_rows
    x = t.column("bp").to_pylist()
    expected = [reference_bucket(v, s_bp) for v in x]
    expected = [len(s_bp) - 1 if e is None else e for e in expected]  # the extra bucket: len(splits) - 1
    assert out.column("bp_b").to_pylist() == expected
    assert out.column("bp_b")[10].as_py() == 3 and out.column("bp_b")[20].as_py() == 3
    assert out.column("age_b").to_pylist() == [reference_bucket(v, s_age) for v in t.column("age").to_pylist()]


def test_handle_invalid_skip(invalid_table):
    t, s_bp, s_age = invalid_table
    b = fs.Bucketizer(input_cols=["bp", "age"], output_cols=["bp_b", "age_b"], splits_array=[s_bp, s_age],
                      handle_invalid="skip")
    out = b.transform(t)
    x = t.column("bp").to_pylist()
    keep = [i for i, v in enumerate(x) if reference_bucket(v, s_bp) is not None]
    assert 0 < len(keep) < t.num_rows
    assert out.num_rows == len(keep)
    assert out.column("bp").to_pylist() == [x[i] for i in keep]
    assert out.column("bp_b").to_pylist() == [reference_bucket(x[i], s_bp) for i in keep]
    assert out.column("age_b").to_pylist() == [reference_bucket(t.column("age")[i].as_py(), s_age) for i in keep]


def test_integer_column_and_in_place_output():
    t = pa.table({"n": pa.array([0, 1, 2, 3, 4], pa.int64())})
    out = fs.Bucketizer(input_cols=["n"], output_cols=["n"], splits_array=[[0, 2, 4]]).transform(t)
    assert out.column_names == ["n"] and out.column("n").to_pylist() == [0, 0, 1, 1, 1]


def test_all_null_column_keep():
    out = fs.Bucketizer(input_cols=["a"], output_cols=["b"], splits_array=[[0, 1, 2]],
                        handle_invalid="keep").transform({"a": [None, None]})
    assert out.column("b").to_pylist() == [2, 2]


# ---------------------------------------------------------------------------------- persistence


# ----------------------------------------------------------------------------- empty / bad input


def test_bad_input(iris):
    b = fs.Bucketizer(input_cols=["zz"], output_cols=["o"], splits_array=[[0, 1, 2]])
    with pytest.raises(ValueError, match=r"Bucketizer: input column 'zz' \(parameter 'input_cols'\) is missing"):
        b.transform(iris)
    with pytest.raises(TypeError, match="Bucketizer: column 's' has type string, expected a numeric column"):
        fs.Bucketizer(input_cols=["s"], output_cols=["o"], splits_array=[[0, 1, 2]]).transform({"s": ["a"]})


def test_vector_column_is_refused():
    # Flink ML's Bucketizer reads scalar columns; a dense or sparse vector column is a type error.
    b = fs.Bucketizer(input_cols=["v"], output_cols=["o"], splits_array=[[0, 1, 2]])
    with pytest.raises(TypeError, match="column 'v' has type fixed_size_list"):
        b.transform(pa.table({"v": fl.linalg.from_numpy(np.eye(2))}))
    with pytest.raises(TypeError, match="column 'v' has type extension"):
        b.transform(pa.table({"v": fl.linalg.from_csr(np.eye(2))}))


# ----------------------------------------------------------------------------------- row kernel


@pytest.mark.parametrize("mode", ["keep", "skip", "error"])
def test_row_kernel_equals_batch(invalid_table, mode):
    t, s_bp, s_age = invalid_table
    b = fs.Bucketizer(input_cols=["bp", "age"], output_cols=["bp_b", "age_b"], splits_array=[s_bp, s_age],
                      handle_invalid=mode)
    rows = t.to_pylist()
    fn, pred = b.row_fn(), fl.LocalPredictor(b)
    if mode == "error":
        rows = [r for r in rows if reference_bucket(r["bp"], s_bp) is not None]
        with pytest.raises(ValueError, match="column 'bp' has NaN in this row"):
            fn({"bp": float("nan"), "age": 1.0})
        with pytest.raises(ValueError, match="column 'bp' has a null in this row"):
            pred.predict({"bp": None, "age": 1.0})
    batch = b.transform(pa.Table.from_pylist(rows, schema=t.schema)).to_pylist()
    invalid = [reference_bucket(r["bp"], s_bp) is None for r in rows]
    if mode != "error":  # 130.0, NaN and null injected at rows 3, 10, 20; blood pressures 63 and 123 in the data
        assert [i for i, bad in enumerate(invalid) if bad] == [3, 10, 20, 38, 41]
    else:
        assert not any(invalid)
    got = []
    for row, bad in zip(rows, invalid):
        p = pred.predict(row)
        if mode == "skip" and bad:  # dropped by both paths
            assert p is None
            with pytest.raises(SkipRow):
                fn(dict(row))
            continue
        r = dict(row)
        fn(r)
        assert r == p
        got.append(p)
    assert len(got) == len(batch) == len(rows) - (sum(invalid) if mode == "skip" else 0) > 40
    for g, e in zip(got, batch):
        assert (g["bp_b"], g["age_b"]) == (e["bp_b"], e["age_b"]) and type(g["bp_b"]) is int
        want = reference_bucket(g["bp"], s_bp)
        assert g["bp_b"] == (len(s_bp) - 1 if want is None else want)  # the closed form, "keep" -> extra bucket
        assert g["age_b"] == reference_bucket(g["age"], s_age)


@pytest.mark.parametrize("mode", ["error", "keep"])
def test_negative_zero_sorts_below_a_split_at_zero_as_in_java(mode):
    # Flink ML and Spark find buckets with java.util.Arrays.binarySearch, whose Double.compare order
    # puts -0.0 below 0.0: on a split at 0.0, -0.0 belongs to the bucket below (closed form)
    b = fs.Bucketizer(input_cols=["x"], output_cols=["b"], splits_array=[[-1.0, 0.0, 1.0]], handle_invalid=mode)
    t = pa.table({"x": [-0.0, 0.0, -0.5, 0.5]})
    assert b.transform(t).column("b").to_pylist() == [0, 1, 0, 1]
    fn = b.row_fn()
    for v, want in zip([-0.0, 0.0, -0.5, 0.5], [0, 1, 0, 1]):
        row = {"x": v}
        fn(row)
        assert row["b"] == want
    # a first split at 0.0: -0.0 lies below every bucket
    low = fs.Bucketizer(input_cols=["x"], output_cols=["b"], splits_array=[[0.0, 1.0, 2.0]], handle_invalid=mode)
    if mode == "keep":
        assert low.transform(pa.table({"x": [-0.0, 0.0]})).column("b").to_pylist() == [2, 0]
        row = {"x": -0.0}
        low.row_fn()(row)
        assert row["b"] == 2
    else:
        with pytest.raises(ValueError, match="column 'x'"):
            low.transform(pa.table({"x": [0.0, -0.0]}))
        with pytest.raises(ValueError, match="column 'x'"):
            low.row_fn()({"x": -0.0})
    # a last split at 0.0 still closes the last bucket for both zeros
    high = fs.Bucketizer(input_cols=["x"], output_cols=["b"], splits_array=[[-2.0, -1.0, 0.0]])
    assert high.transform(pa.table({"x": [-0.0, 0.0]})).column("b").to_pylist() == [1, 1]
