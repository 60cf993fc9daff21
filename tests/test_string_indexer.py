"""StringIndexer / StringIndexerModel / IndexToStringModel.

Oracles: Flink ML's own published test expectations (StringIndexerTest / IndexToStringModelTest),
scikit-learn's OrdinalEncoder fed with category lists computed here with collections.Counter and
the Flink/Spark ordering rules, and Java's documented Double.toString format written out literally.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
datasets = pytest.importorskip("river.datasets")  # River (an oracle) lives only in the main test env
from sklearn.preprocessing import OrdinalEncoder

import flowlearn as fl
from flowlearn.api import SkipRow
from flowlearn.feature import IndexToStringModel, StringIndexer, StringIndexerModel

# Flink ML's StringIndexerTest data and expected predictions (input1, input2, output1, output2).
TRAIN = {
    "c1": ["a", "b", "b", "c", "d", "a", "b", "b", "a", "c", "d", None, None],
    "c2": [1.0, 1.0, 2.0, 0.0, 2.0, 2.0, 2.0, -1.0, -1.0, -1.0, None, 2.0, None],
}
PREDICT = {"c1": ["a", "b", "e", "f", None], "c2": [2.0, 1.0, 2.0, None, None]}
FLINK_EXPECTED = {
    "alphabetAsc": [(0.0, 3.0), (1.0, 2.0), (4.0, 3.0), (4.0, 4.0), (4.0, 4.0)],
    "alphabetDesc": [(3.0, 0.0), (2.0, 1.0), (4.0, 0.0), (4.0, 4.0), (4.0, 4.0)],
    "frequencyAsc": [(2.0, 3.0), (3.0, 1.0), (4.0, 3.0), (4.0, 4.0), (4.0, 4.0)],
    "frequencyDesc": [(1.0, 0.0), (0.0, 2.0), (4.0, 0.0), (4.0, 4.0), (4.0, 4.0)],
}
SOLAR_CAT = ["zurich-class", "largest-spot-size", "spot-distribution", "activity", "evolution"]


def indexer(**kw):
    kw.setdefault("input_cols", ["c1", "c2"])
    kw.setdefault("output_cols", ["o1", "o2"])
    return StringIndexer(**kw)


def outputs(t: pa.Table, cols=("o1", "o2")):
    return list(zip(*[t.column(c).to_pylist() for c in cols]))


@pytest.fixture(scope="module")
def solar() -> pa.Table:
    rows = [x for x, _ in datasets.SolarFlare()]
    return fl.table([{c: r[c] for c in SOLAR_CAT} for r in rows])


def expected_categories(values, order):
    """Flink/Spark order rules, computed independently: ties in frequency broken alphabetically."""
    counts = Counter(v for v in values if v is not None)
    if order == "alphabetAsc":
        return sorted(counts)
    if order == "alphabetDesc":
        return sorted(counts, reverse=True)
    if order == "frequencyDesc":
        return sorted(counts, key=lambda s: (-counts[s], s))
    return sorted(counts, key=lambda s: (counts[s], s))


# ---------------------------------------------------------------------------------------------- params


def test_params_defaults_set_and_validation():
    si = StringIndexer()
    assert si.string_order_type == "arbitrary"
    assert si.handle_invalid == "error"
    assert si.max_index_num == 2**31 - 1
    si.set(input_cols=["a"], output_cols=["b"], string_order_type="alphabetAsc", handle_invalid="skip",
           max_index_num=5)
    assert si.get_params()["input_cols"] == ["a"] and si.max_index_num == 5
    with pytest.raises(ValueError, match=r"string_order_type' = 'alphabetical' violates in_array"):
        StringIndexer(string_order_type="alphabetical")
    with pytest.raises(ValueError, match=r"max_index_num' = 1 violates gt\(1\)"):
        StringIndexer(max_index_num=1)
    with pytest.raises(ValueError, match="handle_invalid"):
        StringIndexerModel(handle_invalid="ignore")
    with pytest.raises(ValueError, match="'input_cols' is required"):
        StringIndexer(output_cols=["x"]).fit(TRAIN)
    with pytest.raises(TypeError, match="no parameter 'string_order'"):
        StringIndexer(string_order="alphabetAsc")
    with pytest.raises(ValueError, match="same length"):
        StringIndexer(input_cols=["c1", "c2"], output_cols=["o1"]).fit(TRAIN)
    # the model carries the estimator's params
    model = indexer(handle_invalid="keep").fit(TRAIN)
    assert model.handle_invalid == "keep" and model.output_cols == ["o1", "o2"]


def test_output_schema():
    out = indexer(string_order_type="alphabetAsc", handle_invalid="skip").fit(TRAIN).transform(PREDICT)
    assert out.column_names == ["c1", "c2", "o1", "o2"]
    assert out.schema.field("o1").type == pa.float64() and out.schema.field("o2").type == pa.float64()


# ----------------------------------------------------------------------------------- fit / transform


@pytest.mark.parametrize("order", list(FLINK_EXPECTED))
def test_flink_ml_published_expectations(order):
    model = indexer(string_order_type=order, handle_invalid="keep").fit(TRAIN)
    assert outputs(model.transform(PREDICT)) == FLINK_EXPECTED[order]


def test_model_data_matches_flink_ml():
    model = indexer(string_order_type="alphabetAsc").fit(TRAIN)
    (md,) = model.get_model_data()
    assert md.column_names == ["string_arrays"] and md.num_rows == 1
    assert md.column("string_arrays").to_pylist() == [[["a", "b", "c", "d"], ["-1.0", "0.0", "1.0", "2.0"]]]


def test_arbitrary_order_is_a_bijection():
    model = indexer(handle_invalid="keep").fit(TRAIN)
    out = model.transform(TRAIN)
    for c, o, n in (("c1", "o1", 4), ("c2", "o2", 4)):
        pairs = {(a, b) for a, b in zip(out.column(c).to_pylist(), out.column(o).to_pylist()) if a is not None}
        assert sorted(b for _, b in pairs) == [float(i) for i in range(n)]
        assert len({a for a, _ in pairs}) == n


@pytest.mark.parametrize("order", ["alphabetAsc", "alphabetDesc", "frequencyAsc", "frequencyDesc"])
def test_against_sklearn_ordinal_encoder_on_solar_flare(solar, order):
    model = StringIndexer(input_cols=SOLAR_CAT, output_cols=[c + "_i" for c in SOLAR_CAT],
                          string_order_type=order).fit(solar)
    got = np.column_stack([model.transform(solar).column(c + "_i").to_numpy() for c in SOLAR_CAT])
    # numbers are indexed by their string form (Java: int 3 -> "3")
    raw = [[str(v) if not isinstance(v, str) else v for v in solar.column(c).to_pylist()] for c in SOLAR_CAT]
    cats = [expected_categories(col, order) for col in raw]
    want = OrdinalEncoder(categories=cats).fit_transform(np.array(raw, dtype=object).T)
    np.testing.assert_array_equal(got, want)


def test_frequency_ties_are_broken_alphabetically():
    t = {"x": ["b", "c", "a", "c", "b", "a", "d"]}  # a, b, c twice; d once
    for order, labels in (("frequencyDesc", ["a", "b", "c", "d"]), ("frequencyAsc", ["d", "a", "b", "c"])):
        model = StringIndexer(input_cols=["x"], output_cols=["y"], string_order_type=order).fit(t)
        assert model.get_model_data()[0].column("string_arrays").to_pylist() == [[labels]]


def test_alphabet_order_is_java_utf16_order():
    # Java compares UTF-16 code units: U+1F600 (surrogates D83D DE00) sorts before U+FF5E.
    t = {"x": ["\uff5e", "\U0001f600", "a"]}
    model = StringIndexer(input_cols=["x"], output_cols=["y"], string_order_type="alphabetAsc").fit(t)
    assert model.get_model_data()[0].column("string_arrays").to_pylist() == [[["a", "\U0001f600", "\uff5e"]]]


def test_numbers_are_indexed_by_their_java_string_form():
    t = pa.table({"d": pa.array([1.0, -0.5, 1e7, 1.5e-5, 0.001, 100.0]), "i": pa.array([3, -2, 3, 7, 0, 1]),
                  "f": pa.array([0.1, 2.5, 0.1, 1.0, 3.0, 1e8], pa.float32())})
    model = StringIndexer(input_cols=["d", "i", "f"], output_cols=["a", "b", "c"],
                          string_order_type="alphabetAsc").fit(t)
    (d, i, f) = model.get_model_data()[0].column("string_arrays")[0].as_py()
    # Java Double.toString / Integer.toString / Float.toString, written out from the JDK spec
    assert sorted(d) == sorted(["1.0", "-0.5", "1.0E7", "1.5E-5", "0.001", "100.0"])
    assert sorted(i) == sorted(["3", "-2", "7", "0", "1"])
    assert sorted(f) == sorted(["0.1", "2.5", "1.0", "3.0", "1.0E8"])
    out = model.transform(t)
    assert [d[int(k)] for k in out.column("a").to_pylist()] == ["1.0", "-0.5", "1.0E7", "1.5E-5", "0.001", "100.0"]


def test_max_index_num_keeps_the_most_frequent_and_buckets_the_rest():
    # c1 counts: b 4, a 3, c 2, d 2; c2: 2.0 5, -1.0 3, 1.0 2, 0.0 1
    model = indexer(string_order_type="frequencyDesc", max_index_num=3, handle_invalid="keep").fit(TRAIN)
    assert model.get_model_data()[0].column("string_arrays").to_pylist() == [[["b", "a"], ["2.0", "-1.0"]]]
    out = model.transform({"c1": ["b", "a", "c", "d"], "c2": [2.0, -1.0, 1.0, 0.0]})
    assert outputs(out) == [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (2.0, 2.0)]
    # a cap above the number of distinct strings changes nothing
    model = indexer(string_order_type="frequencyDesc", max_index_num=50).fit(TRAIN)
    assert [len(a) for a in model.get_model_data()[0].column("string_arrays")[0].as_py()] == [4, 4]


def test_dictionary_and_large_string_inputs():
    model = indexer(string_order_type="alphabetAsc", handle_invalid="keep").fit(TRAIN)
    t = pa.table({"c1": pa.array(PREDICT["c1"]).dictionary_encode(), "c2": pa.array(PREDICT["c2"])})
    assert outputs(model.transform(t)) == FLINK_EXPECTED["alphabetAsc"]
    t = pa.table({"c1": pa.array(PREDICT["c1"], pa.large_string()), "c2": pa.array(PREDICT["c2"])})
    assert outputs(model.transform(t)) == FLINK_EXPECTED["alphabetAsc"]
    tp = pa.table(PREDICT)
    chunked = pa.Table.from_batches(tp.slice(0, 2).to_batches() + tp.slice(2).to_batches())
    assert chunked.column("c1").num_chunks == 2
    assert outputs(model.transform(chunked)) == FLINK_EXPECTED["alphabetAsc"]


# ------------------------------------------------------------------------------------ handle_invalid


def test_handle_invalid_skip_and_error():
    model = indexer(string_order_type="alphabetAsc", handle_invalid="skip").fit(TRAIN)
    assert outputs(model.transform(PREDICT)) == [(0.0, 3.0), (1.0, 2.0)]
    model.set(handle_invalid="error")
    with pytest.raises(ValueError, match=r"column 'c1' \(parameter 'input_cols'\) has the unseen value 'e' .* at "
                                         r"row 2; set handle_invalid='keep'"):
        model.transform(PREDICT)
    with pytest.raises(ValueError, match="column 'c2' .* has a null at row 0"):
        model.transform({"c1": ["a"], "c2": pa.array([None], pa.float64())})


# ------------------------------------------------------------------------------- persistence, model data


def test_get_and_set_model_data():
    model = indexer(string_order_type="alphabetAsc", handle_invalid="keep").fit(TRAIN)
    fresh = StringIndexerModel(input_cols=["c1", "c2"], output_cols=["o1", "o2"], handle_invalid="keep")
    fresh.set_model_data(*model.get_model_data())
    assert outputs(fresh.transform(PREDICT)) == FLINK_EXPECTED["alphabetAsc"]
    with pytest.raises(ValueError, match="model data has not been set"):
        StringIndexerModel(input_cols=["c1"], output_cols=["o"]).transform(PREDICT)
    with pytest.raises(ValueError, match="'string_arrays'"):
        fresh.set_model_data(pa.table({"labels": [1]}))
    with pytest.raises(ValueError, match="labels of 2 columns but 'input_cols' names 1"):
        StringIndexerModel(input_cols=["c1"], output_cols=["o"]).set_model_data(
            *model.get_model_data()).transform(PREDICT)


# ------------------------------------------------------------------------------ empty, sparse, bad input


def test_vector_and_bad_columns_are_rejected():
    t = fl.table({"v": fl.linalg.from_csr(np.eye(2)), "c1": ["a", "b"]})
    with pytest.raises(TypeError, match="column 'v' .* string or numeric columns only"):
        StringIndexer(input_cols=["v"], output_cols=["o"]).fit(t)
    model = StringIndexer(input_cols=["c1"], output_cols=["o"]).fit(t)
    with pytest.raises(TypeError, match="column 'c1' .* string or numeric"):
        model.transform({"c1": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match="input column 'nope' .* is missing"):
        StringIndexer(input_cols=["nope"], output_cols=["o"]).fit(t)


# ----------------------------------------------------------------------------------------- row kernel


@pytest.mark.parametrize("hi", ["keep", "skip", "error"])
def test_row_kernel_equals_batch(solar, hi):
    cols = SOLAR_CAT
    model = StringIndexer(input_cols=cols, output_cols=[c + "_i" for c in cols],
                          string_order_type="frequencyDesc", handle_invalid=hi).fit(solar.slice(0, 700))
    test = solar.slice(700)
    fn = model.row_fn()
    rows = test.to_pylist()
    if hi == "error":
        bad = {"zurich-class": "unseen", "largest-spot-size": "A", "spot-distribution": "X", "activity": 1,
               "evolution": 3}
        with pytest.raises(ValueError, match="'zurich-class' .* unseen value 'unseen'"):
            fn(dict(bad))
        rows = [r for r in rows if all(r[c] in set(solar.slice(0, 700).column(c).to_pylist()) for c in cols)]
        test = fl.table(rows)
    else:
        rows = rows + [{"zurich-class": "zz", "largest-spot-size": None, "spot-distribution": "X", "activity": 99,
                        "evolution": 3}]
        test = fl.table(rows)
    batch = model.transform(test).to_pylist()
    got, skipped = [], 0
    for r in rows:
        r = dict(r)
        try:
            fn(r)
        except SkipRow:
            skipped += 1
            continue
        got.append(r)
    assert got == batch
    # not vacuous: most rows are indexed; only "skip" drops rows, at least the appended unseen one
    assert len(got) == len(rows) - skipped and len(got) > 300
    assert skipped >= 1 if hi == "skip" else skipped == 0
    if hi == "keep":  # an unseen value or a null gets the extra index len(labels)
        labels = model.get_model_data()[0].column("string_arrays")[0].as_py()
        assert got[-1]["zurich-class_i"] == float(len(labels[0]))
        assert got[-1]["largest-spot-size_i"] == float(len(labels[1]))
        assert got[-1]["activity_i"] == float(len(labels[3]))


def test_row_kernel_number_forms():
    model = StringIndexerModel(input_cols=["x"], output_cols=["y"], handle_invalid="keep").set_model_data(
        pa.table({"string_arrays": [[["1.0", "3", "-0.0", "NaN", "1.0E7", "b"]]]}))
    fn = model.row_fn()
    for v, want in ((1.0, 0.0), (3, 1.0), (-0.0, 2.0), (float("nan"), 3.0), (1e7, 4.0), ("b", 5.0),
                    (1, 6.0), (3.0, 6.0), (0.0, 6.0), (np.float64(1.0), 0.0), (np.int64(3), 1.0), (None, 6.0)):
        row = {"x": v}
        fn(row)
        assert row["y"] == want, v
        assert model.transform(pa.table({"x": pa.array([v])}) if v is not None else
                               pa.table({"x": pa.array([None], pa.float64())})).column("y")[0].as_py() == want


def test_local_predictor_pipeline():
    model = indexer(string_order_type="alphabetAsc", handle_invalid="keep").fit(TRAIN)
    pred = fl.LocalPredictor(fl.PipelineModel([model]))
    assert [tuple(pred.predict(r)[o] for o in ("o1", "o2")) for r in pa.table(PREDICT).to_pylist()] == \
        FLINK_EXPECTED["alphabetAsc"]


# ----------------------------------------------------------------------------------------- IndexToString


def test_index_to_string_flink_ml_example():
    md = pa.table({"string_arrays": [[["a", "b", "c", "d"], ["-1.0", "0.0", "1.0", "2.0"]]]})
    m = IndexToStringModel(input_cols=["i1", "i2"], output_cols=["s1", "s2"]).set_model_data(md)
    out = m.transform({"i1": [0, 1], "i2": [3, 2]})
    assert outputs(out, ("s1", "s2")) == [("a", "2.0"), ("b", "1.0")]
    assert out.schema.field("s1").type == pa.string()
    row = {"i1": 1.0, "i2": 0}
    m.row_fn()(row)
    assert (row["s1"], row["s2"]) == ("b", "-1.0")


def test_index_to_string_inverts_string_indexer(solar, tmp_path):
    cols = SOLAR_CAT[:3]
    model = StringIndexer(input_cols=cols, output_cols=[c + "_i" for c in cols],
                          string_order_type="frequencyAsc").fit(solar)
    indexed = model.transform(solar)
    inv = IndexToStringModel(input_cols=[c + "_i" for c in cols], output_cols=[c + "_s" for c in cols])
    inv.set_model_data(*model.get_model_data())
    inv.save(str(tmp_path / "inv"))
    back = fl.load(str(tmp_path / "inv")).transform(indexed)
    for c in cols:
        assert back.column(c + "_s").to_pylist() == solar.column(c).to_pylist()


def test_index_to_string_bad_input():
    m = IndexToStringModel(input_cols=["i"], output_cols=["s"]).set_model_data(
        pa.table({"string_arrays": [[["a", "b"]]]}))
    for bad, what in ((2.0, "2.0"), (-1.0, "-1.0"), (0.5, "0.5")):
        with pytest.raises(ValueError, match=rf"column 'i' .* has {what} at row 1, which is not an index"):
            m.transform({"i": [0.0, bad]})
        with pytest.raises(ValueError, match="not an index"):
            m.row_fn()({"i": bad})
    with pytest.raises(ValueError, match="has a null at row 0"):
        m.transform(pa.table({"i": pa.array([None], pa.float64())}))
    assert m.transform(pa.table({"i": pa.array([], pa.int64())})).column_names == ["i", "s"]
