"""OneHotEncoder / OneHotEncoderModel.

Oracles: Flink ML's published OneHotEncoderTest expectations, and scikit-learn's OneHotEncoder with
explicit categories ``range(max + 1)`` and ``drop=[last]`` (drop_last) / ``handle_unknown="ignore"``
(Spark's keep semantics), on River's bundled SolarFlare data.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
datasets = pytest.importorskip("river.datasets")  # River (an oracle) lives only in the main test env
from sklearn.preprocessing import OneHotEncoder as SkOneHotEncoder

import flowlearn as fl
from flowlearn.api import SkipRow
from flowlearn.feature import OneHotEncoder, OneHotEncoderModel, StringIndexer
from flowlearn.linalg import SparseVector, is_sparse, to_csr

SOLAR_INT = ["activity", "evolution", "previous-24h-flare-activity", "hist-complex", "area"]


@pytest.fixture(scope="module")
def solar() -> pa.Table:
    rows = [x for x, _ in datasets.SolarFlare()]
    # category indices start at 0
    return fl.table({c: [float(r[c] - 1) for r in rows] for c in SOLAR_INT})


def vectors(col) -> list[SparseVector]:
    return [SparseVector(v["size"], v["indices"], v["values"]) for v in col.to_pylist()]


def test_params():
    est = OneHotEncoder()
    assert est.drop_last is True and est.handle_invalid == "error"
    est.set(input_cols=["a"], output_cols=["b"], drop_last=False, handle_invalid="keep")
    assert est.get_params()["drop_last"] is False
    assert OneHotEncoderModel().drop_last is True
    with pytest.raises(ValueError, match="drop_last' = 'no' has type str, expected bool"):
        OneHotEncoder(drop_last="no")
    with pytest.raises(ValueError, match="handle_invalid' = 'drop' violates in_array"):
        OneHotEncoder(handle_invalid="drop")
    with pytest.raises(ValueError, match="same length"):
        OneHotEncoder(input_cols=["a", "b"], output_cols=["c"]).fit({"a": [0.0], "b": [1.0]})


def test_flink_ml_published_expectations():
    train, predict = {"input": [0.0, 1.0, 2.0, 0.0]}, {"input": [0.0, 1.0, 2.0]}
    est = OneHotEncoder(input_cols=["input"], output_cols=["output"])
    out = est.fit(train).transform(predict)
    assert is_sparse(out.schema.field("output").type)
    assert vectors(out.column("output")) == [SparseVector(2, [0], [1.0]), SparseVector(2, [1], [1.0]),
                                             SparseVector(2, [], [])]
    # integer input and drop_last=False
    est.set(drop_last=False)
    out = est.fit(pa.table({"input": pa.array([0, 1, 2, 0], pa.int32())})).transform(
        pa.table({"input": pa.array([0, 1, 2], pa.int32())}))
    assert vectors(out.column("output")) == [SparseVector(3, [i], [1.0]) for i in range(3)]
    # model data (column index, max index)
    md = est.fit(train).get_model_data()[0]
    assert md.to_pylist() == [{"column_index": 0, "max_index": 2}]


@pytest.mark.parametrize("drop_last", [True, False])
def test_against_sklearn(solar, drop_last):
    train, test = solar.slice(0, 800), solar.slice(800)
    model = OneHotEncoder(input_cols=SOLAR_INT, output_cols=[c + "_v" for c in SOLAR_INT],
                          drop_last=drop_last).fit(train)
    out = model.transform(test)
    for c in SOLAR_INT:
        n = int(max(train.column(c).to_pylist())) + 1
        ok = np.asarray(test.column(c).to_numpy()) < n  # values fit saw
        assert ok.all(), f"{c}: the fixed split has unseen categories; handle_invalid='error' would raise"
        sk = SkOneHotEncoder(categories=[list(range(n))], drop=[n - 1] if drop_last else None,
                             sparse_output=True, dtype=np.float64)
        want = sk.fit(train.column(c).to_numpy().reshape(-1, 1)).transform(test.column(c).to_numpy().reshape(-1, 1))
        got = to_csr(out.column(c + "_v"))
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.toarray(), want.toarray())


@pytest.mark.parametrize("drop_last", [True, False])
def test_handle_invalid_keep_matches_sklearn_ignore(drop_last):
    train = {"c": [0.0, 1.0, 2.0, 1.0]}
    test = pa.table({"c": pa.array([0.0, 2.0, 3.0, -1.0, 0.5, float("nan"), None, 1.0])})
    model = OneHotEncoder(input_cols=["c"], output_cols=["v"], handle_invalid="keep", drop_last=drop_last).fit(train)
    got = to_csr(model.transform(test).column("v")).toarray()
    # invalid values go to an extra category 3; drop_last drops that extra category (Spark semantics)
    mapped = np.array([[0], [2], [3], [3], [3], [3], [3], [1]], dtype=float)
    cats = list(range(3)) if drop_last else list(range(4))
    sk = SkOneHotEncoder(categories=[cats], handle_unknown="ignore", sparse_output=False)
    want = sk.fit(mapped).transform(mapped)
    np.testing.assert_array_equal(got, want)


def test_handle_invalid_skip_and_error():
    model = OneHotEncoder(input_cols=["a", "b"], output_cols=["va", "vb"], handle_invalid="skip").fit(
        {"a": [0.0, 1.0], "b": [0.0, 2.0]})
    out = model.transform({"a": [1.0, 5.0, 0.0], "b": [0.0, 1.0, 3.0]})
    assert out.column("a").to_pylist() == [1.0] and vectors(out.column("va")) == [SparseVector(1, [], [])]
    assert vectors(out.column("vb")) == [SparseVector(2, [0], [1.0])]
    model.set(handle_invalid="error")
    with pytest.raises(ValueError, match=r"column 'a' \(parameter 'input_cols'\) has the unseen index 5.0 .* at "
                                         r"row 1; set handle_invalid='keep'"):
        model.transform({"a": [1.0, 5.0], "b": [0.0, 0.0]})
    with pytest.raises(ValueError, match="0.5, which is not an integer index at row 0"):
        model.transform({"a": [0.5], "b": [0.0]})
    with pytest.raises(ValueError, match="has the negative value -1.0 at row 0"):
        model.transform({"a": [-1.0], "b": [0.0]})
    with pytest.raises(ValueError, match="has a null at row 0"):
        model.transform(pa.table({"a": pa.array([None], pa.float64()), "b": [0.0]}))


def test_fit_rejects_non_index_values():
    est = OneHotEncoder(input_cols=["x"], output_cols=["v"])
    for bad, what in ((0.5, "0.5, which is not an integer index"), (-2.0, "the negative value -2.0"),
                      (float("nan"), "NaN")):
        with pytest.raises(ValueError, match=rf"OneHotEncoder: column 'x' .* has {what} at row 1"):
            est.fit({"x": [1.0, bad]})
    with pytest.raises(TypeError, match="column 'x' .* has type string; OneHotEncoder encodes numeric"):
        est.fit({"x": ["a"]})
    with pytest.raises(TypeError, match="encodes numeric"):
        est.fit({"x": fl.linalg.from_csr(np.eye(2))})


def test_save_load_and_model_data(tmp_path, solar):
    est = OneHotEncoder(input_cols=SOLAR_INT[:2], output_cols=["v1", "v2"], drop_last=False)
    est.save(str(tmp_path / "est"))
    model = fl.load(str(tmp_path / "est")).fit(solar)
    model.save(str(tmp_path / "m"))
    loaded = fl.load(str(tmp_path / "m"))
    assert isinstance(loaded, OneHotEncoderModel) and loaded.drop_last is False
    # model data: (column index, largest index seen), the closed form on the training data
    md = model.get_model_data()[0]
    assert md.to_pylist() == [{"column_index": j, "max_index": int(max(solar.column(c).to_pylist()))}
                              for j, c in enumerate(SOLAR_INT[:2])]
    assert loaded.get_model_data()[0].equals(md)
    a, b = model.transform(solar), loaded.transform(solar)
    assert a.column("v1").to_pylist() == b.column("v1").to_pylist()
    want = SkOneHotEncoder(categories=[list(range(md.column("max_index")[0].as_py() + 1))], sparse_output=False
                           ).fit_transform(solar.column(SOLAR_INT[0]).to_numpy().reshape(-1, 1))
    np.testing.assert_array_equal(to_csr(b.column("v1")).toarray(), want)
    fresh = OneHotEncoderModel(input_cols=SOLAR_INT[:2], output_cols=["v1", "v2"], drop_last=False)
    fresh.set_model_data(*model.get_model_data())
    assert fresh.transform(solar).column("v2").to_pylist() == a.column("v2").to_pylist()
    with pytest.raises(ValueError, match="needs columns 'column_index' and 'max_index'"):
        fresh.set_model_data(pa.table({"max": [1]}))
    with pytest.raises(ValueError, match="describes 2 columns but 'input_cols' names 1"):
        OneHotEncoderModel(input_cols=["a"], output_cols=["b"]).set_model_data(
            *model.get_model_data()).transform({"a": [0.0]})


@pytest.mark.parametrize("hi", ["keep", "skip", "error"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_row_kernel_equals_batch(hi, drop_last):
    model = OneHotEncoder(input_cols=["a", "b"], output_cols=["va", "vb"], handle_invalid=hi,
                          drop_last=drop_last).fit({"a": [0.0, 3.0, 1.0], "b": [1.0, 0.0, 0.0]})
    values = [0.0, 1.0, 2.0, 3.0] if hi == "error" else [0.0, 3.0, 4.0, -1.0, 0.5, float("nan"), None, 1.0]
    rows = [{"a": v, "b": float(i % 2)} for i, v in enumerate(values)] + [{"a": 2, "b": 1}]
    batch = model.transform(pa.table({"a": pa.array([r["a"] for r in rows], pa.float64()),
                                      "b": [float(r["b"]) for r in rows]}))
    want = list(zip(vectors(batch.column("va")), vectors(batch.column("vb"))))
    fn = model.row_fn()
    got = []
    for r in rows:
        try:
            fn(r)
        except SkipRow:
            continue
        got.append((r["va"], r["vb"]))
    assert got == want
    # not vacuous: keep and error encode every row; skip drops exactly the invalid ones (4, -1, 0.5, NaN, None)
    assert len(want) == (len(rows) - 5 if hi == "skip" else len(rows))
    if hi == "error":
        with pytest.raises(ValueError, match="column 'a' .* has the unseen index 7.0"):
            fn({"a": 7.0, "b": 0.0})
    with pytest.raises(TypeError, match="column 'a' has 'x' of type str"):
        fn({"a": "x", "b": 0.0})


def test_string_indexer_then_one_hot_encoder_pipeline(tmp_path):
    rows = [x for x, _ in datasets.SolarFlare()]
    t = fl.table({"z": [r["zurich-class"] for r in rows], "s": [r["largest-spot-size"] for r in rows]})
    pipe = fl.Pipeline([
        StringIndexer(input_cols=["z", "s"], output_cols=["zi", "si"], string_order_type="alphabetAsc"),
        OneHotEncoder(input_cols=["zi", "si"], output_cols=["zv", "sv"], drop_last=False),
    ])
    model = pipe.fit(t)
    out = model.transform(t)
    want = SkOneHotEncoder(sparse_output=False).fit_transform(np.column_stack([t.column("z").to_pylist(),
                                                                              t.column("s").to_pylist()]))
    got = np.hstack([to_csr(out.column("zv")).toarray(), to_csr(out.column("sv")).toarray()])
    np.testing.assert_array_equal(got, want)  # sklearn sorts categories, like alphabetAsc
    pred = fl.LocalPredictor(model)
    r = pred.predict({"z": "H", "s": "A"})
    assert (t.column("z")[0].as_py(), t.column("s")[0].as_py()) == ("H", "A")
    assert r["zv"] == vectors(out.column("zv"))[0] and r["sv"] == vectors(out.column("sv"))[0]
    nz = len(set(t.column("z").to_pylist()))
    np.testing.assert_array_equal(np.r_[r["zv"].to_numpy(), r["sv"].to_numpy()], want[0])
    assert r["zv"].size == nz
