"""Params, the stage API, Pipeline/Graph semantics and persistence, on small stages defined here.

The stages below are deliberately trivial (closed-form results) so these tests pin the
framework's behaviour independently of any real algorithm.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
from flowlearn.api import Estimator, Model, Transformer
from flowlearn.data.columns import numeric_column, with_column
from flowlearn.params import HasInputCol, HasOutputCol, Param, gt, in_array, in_range, non_empty


class _ShiftParams(HasInputCol, HasOutputCol):
    factor = Param(float, default=1.0, validator=gt(0), doc="Multiplier.")
    mode = Param(str, default="a", validator=in_array(["a", "b"]), doc="Mode.")


@fl.register_stage
class MeanShift(_ShiftParams, Estimator):
    """Fits the column mean."""

    calls: list = []

    def _fit(self, t):
        MeanShift.calls.append(t.num_rows)
        x = numeric_column(t, self.input_col, "MeanShift", "input_col")
        m = MeanShiftModel()
        self.copy_params_to(m)
        return m.set_model_data(pa.table({"mean": [float(x.mean())]}))


@fl.register_stage
class MeanShiftModel(_ShiftParams, Model):
    def _load_model_data(self, tables):
        self.mean = tables[0].column("mean")[0].as_py()

    def _transform(self, t):
        self._require_model()
        x = numeric_column(t, self.input_col, "MeanShiftModel", "input_col")
        return with_column(t, self.output_col, (x - self.mean) * self.factor)

    def row_fn(self):
        inp, out, mean, f = self.input_col, self.output_col, self.mean, self.factor

        def fn(row):
            row[out] = (row[inp] - mean) * f

        return fn


@fl.register_stage
class AddOne(HasInputCol, HasOutputCol, Transformer):
    def _transform(self, t):
        return with_column(t, self.output_col, numeric_column(t, self.input_col, "AddOne") + 1)


@fl.register_stage
class Join2(HasOutputCol, Transformer):
    """Two inputs -> their row-wise sum of column 'x' (to test multi-input graphs)."""

    def _transform(self, a, b):
        return pa.table({self.output_col: numeric_column(a, "x", "Join2") + numeric_column(b, "x", "Join2")})


class Unregistered(Transformer):
    pass


# ---------------------------------------------------------------- params

def test_param_defaults_set_and_get():
    s = MeanShift()
    assert s.input_col == "input" and s.factor == 1.0
    assert s.set(factor=3).factor == 3.0 and isinstance(s.factor, float)
    assert s.get_params() == {"input_col": "input", "output_col": "output", "factor": 3.0, "mode": "a"}
    s.mode = "b"
    assert s.mode == "b"


def test_unknown_param_is_type_error_listing_valid_names():
    with pytest.raises(TypeError, match="MeanShift has no parameter 'fator'; valid parameters: factor, input_col, "
                                        "mode, output_col"):
        MeanShift(fator=2)


@pytest.mark.parametrize("kw,needle", [
    ({"factor": 0}, r"MeanShift: parameter 'factor' = 0.0 violates gt\(0\): it must be greater than 0"),
    ({"mode": "c"}, r"parameter 'mode' = 'c' violates in_array\(\['a', 'b'\]\)"),
    ({"factor": "x"}, r"parameter 'factor' = 'x' has type str, expected float"),
    ({"input_col": None}, r"parameter 'input_col' must not be None"),
])
def test_bad_param_values(kw, needle):
    with pytest.raises(ValueError, match=needle):
        MeanShift(**kw)


def test_validators_and_list_params():
    assert in_range(0, 1)(0.5) and not in_range(0, 1, hi_inclusive=False)(1)
    assert non_empty()([1]) and not non_empty()([])

    class P(fl.params.HasParams):
        cols = Param(list[str], default=[], validator=non_empty())
        sizes = Param(list[int], default=[1], validator=gt(0))

    with pytest.raises(ValueError, match=r"violates non_empty\(\)"):
        P(cols=[])
    with pytest.raises(ValueError, match=r"violates gt\(0\)"):
        P(sizes=[1, 0])
    assert P(cols=("a", "b")).cols == ["a", "b"]
    with pytest.raises(ValueError, match="expected list"):
        P(cols="ab")


def test_required_param_message():
    class R(fl.params.HasParams):
        k = Param(int)

    with pytest.raises(ValueError, match="parameter 'k' is required"):
        R().k


def test_params_are_json_serializable():
    params = MeanShift(factor=2.0, mode="b").get_params()
    back = json.loads(json.dumps(params))
    assert back == {"input_col": "input", "output_col": "output", "factor": 2.0, "mode": "b"}
    assert MeanShift(**back).get_params() == params


# ---------------------------------------------------------------- stage API

def test_fit_transform_and_model_data():
    t = fl.table({"input": [1.0, 2.0, 3.0]})
    model = MeanShift(factor=2.0).fit(t)
    assert model.factor == 2.0  # estimator params copied to the model
    assert model.transform(t).column("output").to_pylist() == [-2.0, 0.0, 2.0]
    fresh = MeanShiftModel(factor=2.0).set_model_data(*model.get_model_data())
    assert fresh.transform(t).column("output").to_pylist() == [-2.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="model data has not been set"):
        MeanShiftModel().transform(t)
    with pytest.raises(ValueError, match=r"input column 'nope' \(parameter 'input_col'\) is missing"):
        MeanShiftModel(input_col="nope").set_model_data(*model.get_model_data()).transform(t)


# ---------------------------------------------------------------- pipeline

def test_pipeline_fit_transforms_only_while_an_estimator_remains():
    MeanShift.calls.clear()
    t = fl.table({"input": [1.0, 2.0, 3.0]})
    pipe = fl.Pipeline([AddOne(output_col="a"), MeanShift(input_col="a", output_col="b"),
                        AddOne(input_col="b", output_col="c")])
    model = pipe.fit(t)
    assert MeanShift.calls == [3]
    assert isinstance(model, fl.PipelineModel) and isinstance(model.stages[1], MeanShiftModel)
    out = model.transform(t)
    assert out.column("c").to_pylist() == [0.0, 1.0, 2.0]  # (x+1) - mean(x+1) + 1


def test_pipeline_row_fn_equals_batch():
    t = fl.table({"input": [1.0, 5.0]})
    model = fl.Pipeline([MeanShift(output_col="b")]).fit(t)
    row = {"input": 5.0}
    model.row_fn()(row)
    assert row["b"] == 2.0  # closed form: 5 - mean(1, 5)
    assert row["b"] == model.transform(t).column("b")[1].as_py()
    # a stage without a row kernel makes the whole pipeline fall back
    assert fl.PipelineModel([AddOne()]).row_fn() is None


def test_pipeline_rejects_non_stages():
    with pytest.raises(TypeError, match="stage 0 is int"):
        fl.Pipeline([1])


# ---------------------------------------------------------------- graph

def test_graph_with_two_inputs_and_estimators():
    b = fl.GraphBuilder()
    left, right = b.create_table_id(), b.create_table_id()
    shifted = b.add_estimator(MeanShift(input_col="x", output_col="y"), left)
    joined = b.add_algo_operator(Join2(output_col="s"), left, right)
    graph = b.build_estimator([left, right], [shifted, joined])
    model = graph.fit(fl.table({"x": [1.0, 3.0]}), fl.table({"x": [10.0, 20.0]}))
    assert isinstance(model, fl.GraphModel)
    y, s = model.transform(fl.table({"x": [1.0, 3.0]}), fl.table({"x": [10.0, 20.0]}))
    assert y.column("y").to_pylist() == [-1.0, 1.0]
    assert s.column("s").to_pylist() == [11.0, 23.0]


def test_graph_estimator_feeding_estimator_and_model_inputs():
    b = fl.GraphBuilder()
    train, test = b.create_table_id(), b.create_table_id()
    # fitted on `train`, applied to `test`
    out = b.add_estimator(MeanShift(input_col="x", output_col="y"), train, model_inputs=[test])
    graph = b.build_estimator([train, test], [out])
    model = graph.fit(fl.table({"x": [0.0, 10.0]}), fl.table({"x": [0.0]}))
    assert model.transform(fl.table({"x": [0.0]}), fl.table({"x": [7.0]})).column("y").to_pylist() == [2.0]


def test_graph_validation():
    b = fl.GraphBuilder()
    a = b.create_table_id()
    stray = b.create_table_id()
    b.add_algo_operator(AddOne(), stray)
    with pytest.raises(ValueError, match="neither a graph input nor produced"):
        b.build_model([a], [a])
    b2 = fl.GraphBuilder()
    x = b2.create_table_id()
    b2.add_estimator(MeanShift(), x)
    with pytest.raises(TypeError, match="is an Estimator"):
        b2.build_model([x], [x])
    with pytest.raises(ValueError, match="takes 1 input tables, got 2"):
        b2.build_estimator([x], [x]).fit(fl.table({"input": [1.0]}), fl.table({"input": [1.0]}))


# ---------------------------------------------------------------- persistence

def test_save_load_round_trip_of_stages_pipelines_and_graphs(tmp_path):
    t = fl.table({"input": [1.0, 2.0, 6.0], "x": [1.0, 2.0, 3.0]})
    model = fl.Pipeline([AddOne(output_col="a"), MeanShift(input_col="a", output_col="b", factor=0.5)]).fit(t)
    model.save(str(tmp_path / "pm"))
    loaded = fl.load(str(tmp_path / "pm"))
    assert isinstance(loaded, fl.PipelineModel)
    # closed form: a = input + 1 = [2, 3, 7], mean 4, b = (a - 4) * 0.5
    assert loaded.transform(t).column("b").to_pylist() == [-1.0, -0.5, 1.5]
    assert loaded.transform(t).equals(model.transform(t))
    assert fl.PipelineModel.load(str(tmp_path / "pm")).transform(t).equals(model.transform(t))

    meta = json.loads((tmp_path / "pm" / "metadata.json").read_text())
    assert meta["format"] == "flowlearn.stage" and meta["format_version"] == 1
    assert meta["class"] == "flowlearn.builder.PipelineModel"
    sub = json.loads((tmp_path / "pm" / "stages" / "001" / "metadata.json").read_text())
    assert sub["params"]["factor"] == 0.5
    assert (tmp_path / "pm" / "stages" / "001" / "data" / "0.arrow").exists()

    b = fl.GraphBuilder()
    l, r = b.create_table_id(), b.create_table_id()
    graph = b.build_estimator([l, r], [b.add_algo_operator(Join2(output_col="s"), l, r)])
    graph.save(str(tmp_path / "g"))
    g2 = fl.load(str(tmp_path / "g"))
    assert g2.fit(t, t).transform(t, t).column("s").to_pylist() == [2.0, 4.0, 6.0]


def test_save_refuses_to_overwrite_and_is_atomic(tmp_path):
    p = str(tmp_path / "s")
    MeanShift().save(p)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        MeanShift().save(p)
    MeanShift(factor=4.0).save(p, overwrite=True)
    assert fl.load(p).factor == 4.0
    assert sorted(os.listdir(tmp_path)) == ["s"]  # no temporary directories left behind


def test_load_only_instantiates_registered_classes(tmp_path):
    with pytest.raises(ValueError, match="not a registered flowlearn stage"):
        Unregistered().save(str(tmp_path / "u"))
    p = tmp_path / "evil"
    MeanShift().save(str(p))
    meta = json.loads((p / "metadata.json").read_text())
    meta["class"] = "os.system"
    (p / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'os.system' is not a registered flowlearn stage class"):
        fl.load(str(p))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json is missing"):
        fl.load(str(tmp_path))
    p = tmp_path / "m"
    MeanShift().save(str(p))
    meta = json.loads((p / "metadata.json").read_text())
    meta["format_version"] = 99
    (p / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="newer than this flowlearn"):
        fl.load(str(p))


def _pipeline_and_graph(tmp_path):
    t = fl.table({"input": [1.0, 2.0, 6.0], "x": [1.0, 2.0, 3.0]})
    fl.Pipeline([AddOne(output_col="a"), MeanShift(input_col="a", output_col="b"), AddOne(input_col="b")]) \
        .fit(t).save(str(tmp_path / "pm"))
    b = fl.GraphBuilder()
    l, r = b.create_table_id(), b.create_table_id()
    s = b.add_algo_operator(Join2(output_col="x"), l, r)
    b.build_model([l, r], [b.add_algo_operator(AddOne(input_col="x"), s)]).save(str(tmp_path / "g"))
    return tmp_path / "pm", tmp_path / "g"


@pytest.mark.parametrize("damage", ["drop_middle_stage", "drop_last_stage", "drop_model_data", "extra_stage"])
def test_load_refuses_a_pipeline_or_graph_whose_parts_do_not_match_its_metadata(tmp_path, damage):
    import shutil
    pm, g = _pipeline_and_graph(tmp_path)
    if damage == "drop_middle_stage":
        shutil.rmtree(pm / "stages" / "001")
        shutil.rmtree(g / "stages" / "000")
        needle = "missing"
    elif damage == "drop_last_stage":  # the shorter pipeline used to load and serve without its last stage
        shutil.rmtree(pm / "stages" / "002")
        shutil.rmtree(g / "stages" / "001")
        needle = "records 3 stage|records 2 stage"
    elif damage == "drop_model_data":
        os.remove(pm / "stages" / "001" / "data" / "0.arrow")
        shutil.copytree(pm / "stages" / "001", g / "stages" / "000", dirs_exist_ok=True)
        needle = "model data table"
    else:
        shutil.copytree(pm / "stages" / "000", pm / "stages" / "003")
        shutil.copytree(g / "stages" / "000", g / "stages" / "002")
        needle = "beyond the"
    for p in (pm, g):
        with pytest.raises(ValueError, match=needle) as e:
            fl.load(str(p))
        assert str(p) in str(e.value) and "save it again" in str(e.value)


def test_graph_saved_without_counts_still_refuses_a_missing_node(tmp_path):
    import shutil
    _, g = _pipeline_and_graph(tmp_path)
    meta = json.loads((g / "metadata.json").read_text())
    del meta["stage_count"], meta["model_data_count"]  # as written before the counts existed
    (g / "metadata.json").write_text(json.dumps(meta))
    shutil.rmtree(g / "stages" / "001")
    with pytest.raises(ValueError, match="wires 2 nodes but holds 1 stages"):
        fl.load(str(g))


def test_fsspec_memory_url_round_trip():
    t = fl.table({"input": [1.0, 3.0]})
    model = MeanShift().fit(t)
    model.save("memory://flowlearn-test/model")
    loaded = fl.load("memory://flowlearn-test/model")
    assert loaded.transform(t).column("output").to_pylist() == [-1.0, 1.0]  # closed form: x - mean(1, 3)
    assert loaded.transform(t).equals(model.transform(t))


def test_no_pickle_in_saved_files(tmp_path):
    fl.Pipeline([MeanShift()]).fit(fl.table({"input": [1.0]})).save(str(tmp_path / "p"))
    for root, _, files in os.walk(tmp_path):
        for f in files:
            head = open(os.path.join(root, f), "rb").read(2)
            assert head[:1] != b"\x80", f"{f} looks like a pickle"


# ---------------------------------------------------------------- predictor

def test_local_predictor_row_and_batch_paths_agree(tmp_path):
    t = fl.table({"input": [1.0, 2.0, 6.0]})
    model = fl.Pipeline([MeanShift(output_col="b")]).fit(t)
    model.save(str(tmp_path / "m"))
    p = fl.LocalPredictor(str(tmp_path / "m"))
    batch = p.predict_batch(t).column("b").to_pylist()
    assert batch == [-2.0, -1.0, 3.0]  # closed form: x - mean(1, 2, 6)
    assert [p.predict({"input": x})["b"] for x in (1.0, 2.0, 6.0)] == batch
    # a stage without a row kernel goes through a one-row table
    slow = fl.LocalPredictor(fl.PipelineModel([AddOne()]))
    assert slow.predict({"input": 1.0})["output"] == 2.0
    with pytest.raises(TypeError, match="needs a fitted Model"):
        fl.LocalPredictor(3)


def test_local_predictor_swap_is_whole():
    t = fl.table({"input": [0.0, 2.0]})
    a = MeanShift().fit(t)
    b = MeanShift().fit(fl.table({"input": [10.0]}))
    p = fl.LocalPredictor(a)
    assert p.predict({"input": 1.0})["output"] == 0.0 and p.model_version is None
    p.swap(b, version=7)
    out = p.predict({"input": 1.0})
    assert out["output"] == -9.0 and out["model_version"] == 7
    assert p.predict_batch(t).column("model_version").to_pylist() == [7, 7]
    assert np.isfinite(out["output"])


# ---------------------------------------------------------------- docstring examples

def _flowlearn_modules():
    import pkgutil

    return sorted(m.name for m in pkgutil.walk_packages(fl.__path__, "flowlearn."))


@pytest.mark.parametrize("name", _flowlearn_modules())
def test_docstring_examples_hold(name):
    """Every ``>>>`` example in flowlearn's modules runs and prints what its docstring says."""
    import doctest
    import importlib

    mod = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(mod, name):  # each example sees a copy of its module's globals
        if test.examples:
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {name}"
