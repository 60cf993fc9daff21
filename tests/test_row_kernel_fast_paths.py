"""Fast paths of the serving and batch kernels agree with the checked paths they shortcut.

Covers: LocalPredictor's fusion of VectorAssembler (numbers) + scaler model, the scalers' one-call
finiteness screen, VectorAssembler's cached plans for mixed dense/sparse rows, and the batch fast
paths of VectorAssembler (uniform blocks, Numba assembly) and OneHotEncoderModel (Numba codes).
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, to_csr, to_numpy
from flowlearn.serving.predictor import _stage_kernels

f = fl.feature
NUMS = ["a", "b", "c"]
INF, NAN = float("inf"), float("nan")


def _num_table(n: int = 200, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols = {c: rng.normal(i, 1 + i, n) for i, c in enumerate(NUMS)}
    cols["cat"] = [f"v{j}" for j in rng.integers(0, 5, n)]
    return fl.table(cols)


SCALERS = [
    lambda: f.StandardScaler(input_col="vec", output_col="scaled", with_mean=True),
    lambda: f.StandardScaler(input_col="vec", output_col="scaled"),
    lambda: f.StandardScaler(input_col="vec", output_col="scaled", with_mean=True, with_std=False),
    lambda: f.MinMaxScaler(input_col="vec", output_col="scaled", min=-1.0, max=2.0),
    lambda: f.MaxAbsScaler(input_col="vec", output_col="scaled"),
]


def _scaled_pipeline(make_scaler, handle_invalid: str = "error") -> fl.PipelineModel:
    t = _num_table()
    return fl.Pipeline([
        f.VectorAssembler(input_cols=NUMS, output_col="vec", input_sizes=[1, 1, 1], handle_invalid=handle_invalid),
        make_scaler(),
    ]).fit(t)


def _unfused(model: fl.PipelineModel):
    fns = [s.row_fn() for s in model.stages]

    def run(row: dict) -> dict | None:
        out = dict(row)
        try:
            for fn in fns:
                fn(out)
        except fl.api.SkipRow:
            return None
        return out

    return run


@pytest.mark.parametrize("make_scaler", SCALERS)
def test_assembler_scaler_fusion_equals_unfused_and_batch(make_scaler):
    model = _scaled_pipeline(make_scaler)
    kernels = _stage_kernels(model.stages)
    assert len(kernels) == 1 and kernels[0].__qualname__.startswith("VectorAssembler._fused_row_fn")
    pred, unfused = fl.LocalPredictor(model), _unfused(model)
    t = _num_table(50, seed=3)
    want = to_numpy(model.transform(t).column("scaled")).copy()
    rows = t.to_pylist()
    rows[0] = {**rows[0], "a": 3, "b": 4, "c": True}  # ints and a bool take the fused path too
    want[0] = to_numpy(model.transform(fl.table([rows[0]])).column("scaled"))[0]
    for i, row in enumerate(rows):
        got, ref = pred.predict(row), unfused(row)
        assert got.keys() == ref.keys()
        assert np.array_equal(got["vec"], ref["vec"]) and got["vec"].dtype == np.float64
        assert np.array_equal(got["scaled"], ref["scaled"])
        assert np.array_equal(got["scaled"], want[i])


@pytest.mark.parametrize("make_scaler", SCALERS)
@pytest.mark.parametrize("bad, exc, needle", [
    ({"a": NAN}, ValueError, "VectorAssembler: column 'a' .* is NaN"),
    ({"b": INF}, ValueError, "NaN or infinity"),
    ({"a": INF, "b": -INF}, ValueError, "NaN or infinity"),
    ({"c": None}, ValueError, "column 'c' .* is null"),
    ({"c": "x"}, TypeError, "column 'c' holds 'x' of type str"),
    ({"a": 1e300, "b": 1e300, "c": 1e300}, None, None),  # finite, though the sum overflows
])
def test_fused_kernel_raises_what_the_unfused_kernels_raise(make_scaler, bad, exc, needle):
    model = _scaled_pipeline(make_scaler)
    pred, unfused = fl.LocalPredictor(model), _unfused(model)
    row = {"a": 1.0, "b": 2.0, "c": 3.0, **bad}
    if exc is None:
        got, ref = pred.predict(row), unfused(row)
        assert np.array_equal(got["scaled"], ref["scaled"]) and np.isfinite(got["vec"]).all()
        return
    with pytest.raises(exc, match=needle) as fused_err:
        pred.predict(row)
    with pytest.raises(exc) as unfused_err:
        unfused(row)
    assert str(fused_err.value) == str(unfused_err.value)


def test_fused_kernel_missing_column_and_skip():
    model = _scaled_pipeline(SCALERS[0])
    with pytest.raises(ValueError, match="input column 'c' .* is missing"):
        fl.LocalPredictor(model).predict({"a": 1.0, "b": 2.0})
    skip = fl.LocalPredictor(_scaled_pipeline(SCALERS[0], handle_invalid="skip"))
    assert skip.predict({"a": NAN, "b": 2.0, "c": 3.0}) is None
    assert skip.predict({"a": 1.0, "b": 2.0, "c": 3.0}) is not None
    keep = fl.LocalPredictor(_scaled_pipeline(SCALERS[0], handle_invalid="keep"))
    with pytest.raises(ValueError, match="StandardScalerModel: column 'vec' has NaN or infinity"):
        keep.predict({"a": NAN, "b": 2.0, "c": 3.0})


def test_no_fusion_when_the_scaler_reads_another_column():
    t = _num_table()
    model = fl.Pipeline([
        f.VectorAssembler(input_cols=NUMS, output_col="vec", input_sizes=[1, 1, 1]),
        f.VectorAssembler(input_cols=["a", "b", "c"], output_col="vec2", input_sizes=[1, 1, 1]),
        f.StandardScaler(input_col="vec", output_col="scaled"),
    ]).fit(t)
    assert len(_stage_kernels(model.stages)) == 3
    row = t.to_pylist()[0]
    assert np.array_equal(fl.LocalPredictor(model).predict(row)["scaled"], _unfused(model)(row)["scaled"])


@pytest.mark.parametrize("make_scaler", SCALERS)
def test_scaler_row_screen_is_exact(make_scaler):
    model = _scaled_pipeline(make_scaler).stages[1]
    fn = model.row_fn()
    row = {"vec": np.array([1e200, -1e200, 3.0])}  # v.dot(v) overflows: the exact check decides
    fn(row)
    assert np.array_equal(row["scaled"], to_numpy(model.transform({"vec": [[1e200, -1e200, 3.0]]}).column("scaled"))[0])
    for bad in ([1.0, NAN, 2.0], [INF, 0.0, 0.0], np.array([0.0, -INF, 1.0])):
        with pytest.raises(ValueError, match="column 'vec' has NaN or infinity"):
            fn({"vec": bad})
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn({"vec": SparseVector(3, [1], [NAN])})


def _ohe_pipeline(keep: bool = True) -> tuple[fl.PipelineModel, pa.Table]:
    t = _num_table(300)
    hi = "keep" if keep else "error"
    model = fl.Pipeline([
        f.VectorAssembler(input_cols=NUMS, output_col="vec", input_sizes=[1, 1, 1]),
        f.StringIndexer(input_cols=["cat"], output_cols=["cat_idx"], handle_invalid=hi),
        f.OneHotEncoder(input_cols=["cat_idx"], output_cols=["cat_oh"], handle_invalid=hi),
        f.VectorAssembler(input_cols=["cat_oh", "vec", "a"], output_col="features", input_sizes=[5 if keep else 4, 3, 1]),
    ]).fit(t)
    return model, t


@pytest.mark.parametrize("keep", [True, False])
def test_one_hot_encoder_assembler_fusion_errors(keep):
    model, _ = _ohe_pipeline(keep=keep)
    kernels = _stage_kernels(model.stages)
    assert [k.__qualname__.split(".<locals>")[0] for k in kernels] == [
        "VectorAssembler._row_kernel", "StringIndexerModel.row_fn", "OneHotEncoderModel._fused_row_fn"]
    pred = fl.LocalPredictor(model)
    row = _num_table(1, seed=9).to_pylist()[0]
    with pytest.raises(ValueError, match="VectorAssembler: column 'a' .* is NaN"):
        pred.predict({**row, "a": NAN})
    if not keep:
        with pytest.raises(ValueError, match="StringIndexerModel: column 'cat' .* unseen value 'zzz'"):
            pred.predict({**row, "cat": "zzz"})
    with pytest.raises(ValueError, match="input column 'cat' .* is missing"):
        pred.predict({k: v for k, v in row.items() if k != "cat"})


def test_cached_assembly_plans_equal_batch():
    model, t = _ohe_pipeline()
    pred = fl.LocalPredictor(model)
    test = _num_table(100, seed=7)
    want = to_csr(model.transform(test).column("features")).toarray()
    for _ in range(2):  # the second pass hits the cached plans
        for i, row in enumerate(test.to_pylist()):
            v = pred.predict(row)["features"]
            assert type(v) is SparseVector and v.size == 9
            assert np.array_equal(v.to_numpy(), want[i])
            assert np.all(np.diff(v.indices) > 0)
    unseen = pred.predict({**test.to_pylist()[0], "cat": "zzz"})["features"]  # keep, drop_last: all zero
    assert not unseen.to_numpy()[:5].any() and unseen.to_numpy()[5:].all()


def test_assembler_plans_with_writable_and_changing_vectors():
    va = f.VectorAssembler(input_cols=["x", "s", "y"], input_sizes=[2, 3, 1])
    fn = va.row_fn()

    def check(row):
        fn(row)
        want = np.concatenate([v.to_numpy() if isinstance(v, SparseVector) else np.asarray(v, dtype=float).reshape(-1)
                               for v in (row["x"], row["s"], row["y"])])
        assert np.array_equal(row["output"].to_numpy() if isinstance(row["output"], SparseVector) else
                              row["output"], want)
        return row["output"]

    w = SparseVector(3, [1], [5.0])  # writable: never cached
    out = check({"x": np.array([1.0, 2.0]), "s": w, "y": 3.0})
    w.values[0] = 7.0
    assert check({"x": np.array([1.0, 2.0]), "s": w, "y": 3.0}).values.tolist() == [1.0, 2.0, 7.0, 3.0]
    assert out.values.tolist() == [1.0, 2.0, 5.0, 3.0]
    frozen = SparseVector(3, [0, 2], [4.0, 6.0])
    frozen.indices.flags.writeable = False
    frozen.values.flags.writeable = False
    for x in ([1.0, 2.0], np.array([8.0, 9.0])):
        check({"x": x, "s": frozen, "y": 1})
    check({"x": SparseVector(2, [1], [1.0]), "s": frozen, "y": 2.0})  # sparse at another position
    check({"x": np.array([1.0, 2.0]), "s": frozen, "y": 2.0})  # and back
    check({"x": np.array([1.0, 2.0]), "s": [0.0, 1.0, 0.0], "y": 2.0})  # all dense: a dense output
    with pytest.raises(ValueError, match="column 'y' .* is NaN"):
        fn({"x": np.array([1.0, 2.0]), "s": frozen, "y": NAN})
    with pytest.raises(ValueError, match="column 'x' .* has a vector of size 3"):
        fn({"x": np.array([1.0, 2.0, 3.0]), "s": frozen, "y": 1.0})
    with pytest.raises(ValueError, match="column 's' .* has a vector of size 4"):
        bad = SparseVector(4, [0], [1.0])
        bad.indices.flags.writeable = False
        bad.values.flags.writeable = False
        fn({"x": np.array([1.0, 2.0]), "s": bad, "y": 1.0})


def test_assembler_batch_fast_paths_equal_general_path():
    rng = np.random.default_rng(5)
    n = 3000
    dense = rng.normal(size=(n, 3))
    sp = to_csr(fl.linalg.from_numpy(np.where(rng.random((n, 4)) < 0.3, rng.normal(size=(n, 4)), 0.0)))
    t = fl.table({"x": rng.normal(size=n), "d": fl.linalg.from_numpy(dense), "s": fl.linalg.from_csr(sp),
                  "i": rng.integers(0, 9, n)})
    va = f.VectorAssembler(input_cols=["x", "d", "s", "i"], input_sizes=[1, 3, 4, 1])
    want = np.column_stack([t.column("x").to_numpy(), dense, sp.toarray(), t.column("i").to_numpy()])
    out = va.transform(t).column("output")
    assert out.type == SPARSE_VECTOR and np.array_equal(to_csr(out).toarray(), want)
    sliced = va.transform(t.slice(17, 1000)).column("output")  # offsets not starting at 0
    assert np.array_equal(to_csr(sliced).toarray(), want[17:1017])
    dense_va = f.VectorAssembler(input_cols=["x", "d", "i", "x"], input_sizes=[1, 3, 1, 1])
    got = to_numpy(dense_va.transform(t.slice(5)).column("output"))
    assert np.array_equal(got, np.column_stack([want[5:, 0], dense[5:], want[5:, -1], want[5:, 0]]))
    # the same data with one null row (general path under 'keep') agrees on the other rows
    xs = t.column("x").to_pylist()
    xs[3] = None
    keep = f.VectorAssembler(input_cols=["x", "d", "s", "i"], input_sizes=[1, 3, 4, 1], handle_invalid="keep")
    general = to_csr(keep.transform(t.set_column(0, "x", pa.array(xs))).column("output")).toarray()
    assert np.isnan(general[3, 0]) and np.array_equal(np.delete(general, 3, 0), np.delete(want, 3, 0))


def test_assembler_reads_sparse_columns_whose_values_have_their_own_offsets():
    ind = pa.ListArray.from_arrays(pa.array([0, 1, 3], pa.int32()), pa.array([1, 0, 2], pa.int32()))
    val = pa.ListArray.from_arrays(pa.array([2, 3, 5], pa.int32()), pa.array([9.0, 9.0, 5.0, 6.0, 7.0]))
    st = pa.StructArray.from_arrays([pa.array([3, 3], pa.int32()), ind, val], fields=list(SPARSE_VECTOR.storage_type))
    t = fl.table({"s": pa.ExtensionArray.from_storage(SPARSE_VECTOR, st), "x": [1.0, 2.0]})
    out = f.VectorAssembler(input_cols=["x", "s"], input_sizes=[1, 3]).transform(t).column("output").to_pylist()
    assert out == [{"size": 4, "indices": [0, 2], "values": [1.0, 5.0]},
                   {"size": 4, "indices": [0, 1, 3], "values": [2.0, 6.0, 7.0]}]


@pytest.mark.parametrize("hi", ["error", "skip", "keep"])
def test_one_hot_batch_codes(hi):
    m = f.OneHotEncoderModel(input_cols=["c"], output_cols=["v"], handle_invalid=hi).set_model_data(
        {"column_index": [0], "max_index": [3]})
    vals = [0.0, 3.0, 2.0, -0.0, 1.0]
    out = m.transform({"c": vals}).column("v").to_pylist()
    # drop_last: category 3 is the all-zero vector, unless 'keep' appends the invalid category (dropped)
    assert [r["indices"] for r in out] == [[0], [3] if hi == "keep" else [], [2], [0], [1]]
    assert all(r["size"] == (4 if hi == "keep" else 3) and r["values"] == [1.0] * len(r["indices"]) for r in out)
    bad = vals + [2.5, NAN, None, 7.0, -1.0]
    if hi == "error":
        with pytest.raises(ValueError, match="has 2.5, which is not an integer index at row 5"):
            m.transform({"c": bad})
        return
    got = m.transform({"c": bad}).column("v").to_pylist()
    if hi == "skip":
        assert len(got) == 5
    else:
        assert [r["indices"] for r in got[5:]] == [[]] * 5 and math.isclose(got[1]["values"][0], 1.0)
