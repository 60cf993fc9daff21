"""Plans as data and the engine interface: building a plan runs nothing, a plan prints and
round-trips through JSON (and the round-tripped plan gives the same rows), operators come from
specs through the registry, the current engine is used by to_table / fit / run, and results
come back as Arrow tables, not shared lists."""
from __future__ import annotations

import ast
import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from doc_examples import run_doc_examples

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.engines import LocalEngine
from flowlearn.stream.plan import build_operator, plan_from_json, plan_to_json


def double_x(t: pa.Table) -> pa.Table:
    return t.set_column(t.column_names.index("x"), "x", pc.multiply(t["x"], 2.0))


def test_building_a_plan_runs_nothing_and_touches_no_files(tmp_path):
    missing = tmp_path / "not-there"
    s = fls.from_files(str(missing), format="csv", schema="x double, y string", handle_invalid="skip")
    k = fls.from_kafka("t", "127.0.0.1:1", schema="x double, y string")   # no broker: nothing connects
    plan = s.union(k).select("x").window(count=5).aggregate(n=("x", "count")).to_files(str(tmp_path / "out"))
    assert not missing.exists() and not (tmp_path / "out").exists()
    assert [n.kind for n in plan.node.walk()] == ["source", "source", "op", "op", "op", "sink"]


def test_explain_names_each_node_its_schema_and_its_state():
    s = fls.from_table({"x": [1.0, 2.0], "y": ["a", "b"]}, batch_size=1).select("x").map_batches(double_x)
    lines = s.window(count=2).aggregate(total=("x", "sum")).collect().explain().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("000 source from_table") and "TableSourceSpec(rows=2, batch_size=1)" in lines[0]
    assert "schema: x: double, y: string" in lines[0] and lines[0].endswith("state: offset")
    assert "SelectSpec(columns=['x'], rename={})" in lines[1] and "schema: x: double " in lines[1]
    assert "MapSpec(fn='test_plans.double_x'" in lines[2] and lines[2].endswith("state: none")
    assert "WindowAggregate(keys=(), aggregations=(('total', 'x', 'sum'),))" in lines[3]
    assert lines[3].endswith("state: open windows' rows") and "schema: ?" in lines[3]
    assert lines[4].startswith("004 sink") and "CollectSpec()" in lines[4]


def test_a_plan_round_trips_through_json_and_gives_the_same_rows(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 2))
    data = fl.table({"v": fl.linalg.from_numpy(x), "x": x[:, 0], "g": ["a", "b"] * 25})
    scaler = fl.feature.StandardScaler(input_col="v", output_col="s", with_mean=True).fit(data)
    src = tmp_path / "in.parquet"
    fl.write_parquet(data, str(src))
    s = fls.from_files(str(src), format="parquet", batch_size=7)
    s = scaler.transform(s).map_batches(double_x).filter(pc.field("x") > 0.0)
    plan = s.window(count=10).aggregate(by="g", n=("x", "count"), total=("x", "sum")).collect()
    text = plan_to_json([plan.node])
    assert json.loads(text)["format"] == "flowlearn.plan" and "pickle" not in text
    (root,) = plan_from_json(text)
    assert [n.kind for n in root.walk()] == [n.kind for n in plan.node.walk()]
    assert [n.name for n in root.walk()] == [n.name for n in plan.node.walk()]

    original = plan.result()
    job = LocalEngine().run(root)   # the deserialized sink node runs like any sink
    job.wait()
    got = pa.concat_tables(job.collected(root))
    assert got.equals(original) and original.num_rows > 0
    # closed form of the aggregate: the filter keeps x > 0 and doubles it, per window of 10 rows
    want = 2 * x[:, 0]
    assert sum(original.column("total").to_pylist()) == pytest.approx(want[want > 0].sum())


def test_functions_that_cannot_be_named_are_refused_by_name():
    s = fls.from_table({"x": [1.0]}).map_batches(lambda t: t, name="anonymous")
    with pytest.raises(TypeError, match=r"plan node 001 \(map_batches\(anonymous\)\): test_plans:.*<lambda> cannot be "
                                        r"serialized .* define it at module level"):
        plan_to_json([s.node])


def test_every_node_of_a_plan_gets_its_operator_from_the_registry(tmp_path):
    store = fl.ModelStore(str(tmp_path / "store"))
    est = fl.classification.OnlineLogisticRegression(global_batch_size=2)
    data = fls.from_table({"features": fl.linalg.from_numpy(np.eye(2)), "label": [1.0, 0.0]})
    sinks = [fls.model_stream(est.fit(data)).to_model_store(store), data.dead_letters().to_files(str(tmp_path / "d")),
             data.foreach(print), fls.from_model_store(store, stop_at_end=True).collect(),
             data.with_watermarks("label").union(data).collect()]
    for sink in sinks:
        for node in sink.node.walk():
            op = build_operator(node.spec)
            assert op is not build_operator(node.spec)   # a fresh operator per run


def test_no_module_of_the_stream_layer_imports_engines():
    # one exception: with flowlearn's lazy exports, current_engine() imports the engines package
    # (which registers the default local engine) when nothing has yet; it names no engine
    root = pathlib.Path(fl.__file__).parent / "stream"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        allowed = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "current_engine"
                   and path.name == "plan.py" for n in ast.walk(f)}
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad = [n for n in names if n.startswith("flowlearn.engines") and not (id(node) in allowed and
                                                                                 n == "flowlearn.engines")]
            assert not bad, f"{path.name} imports {bad}"


class _Recording(LocalEngine):
    def __init__(self):
        super().__init__()
        self.calls = []

    def run(self, *sinks, **kw):
        self.calls.append("run")
        return super().run(*sinks, **kw)

    def fit(self, estimator, *inputs):
        self.calls.append("fit")
        return super().fit(estimator, *inputs)


def test_the_current_engine_runs_to_table_fit_and_run_and_is_restored():
    t = fl.table({"input": fl.linalg.from_numpy(np.array([[1.0], [3.0]]))})
    eng = _Recording()
    with fl.set_engine(eng) as current:
        assert current is eng
        assert fls.from_table(t).to_table().num_rows == 2
        model = fl.feature.StandardScaler(with_mean=True).fit(fls.from_table(t, batch_size=1))
        fl.run(fls.from_table(t).foreach(lambda b: None)).wait()
        fls.from_table(t).collect().result()
    assert eng.calls == ["run", "fit", "run", "run", "run"]   # fit collects its stream through run
    # closed form: mean 2, sample std sqrt(2)
    got = fl.linalg.to_numpy(model.transform(t).column("output"))[:, 0]
    np.testing.assert_allclose(got, [-1 / np.sqrt(2), 1 / np.sqrt(2)])
    fls.from_table(t).to_table()
    assert len(eng.calls) == 5                              # the default engine is back
    with pytest.raises(TypeError, match="run\\(\\*sinks\\), collect\\(stream\\) and fit"):
        fl.set_engine(object())


def test_collected_results_are_arrow_tables_not_a_shared_list():
    sink = fls.from_table({"x": [1, 2, 3]}, batch_size=2).collect()
    job = fl.run(sink).wait()
    first = job.collected(sink)
    first.clear()
    assert [b.num_rows for b in job.collected(sink)] == [2, 1]
    assert sink.result().to_pydict() == {"x": [1, 2, 3]}
    with pytest.raises(ValueError, match="is not a collect\\(\\) sink of this job"):
        job.collected(fls.from_table({"x": [1]}).collect())


def test_two_file_sinks_with_one_prefix_in_one_directory_are_refused(tmp_path):
    s = fls.from_table({"x": [1, 2]})
    with pytest.raises(ValueError, match="both write files named 'part'-\\* into .*another prefix"):
        fl.run(s.to_files(str(tmp_path)), s.dead_letters().to_files(str(tmp_path)))
    fl.run(s.to_files(str(tmp_path)), s.dead_letters().to_files(str(tmp_path), prefix="dead")).wait()


def test_architecture_streams_examples_run():
    run_doc_examples("architecture.md", "Streams")


def test_architecture_online_trainers_example_runs():
    run_doc_examples("architecture.md", "Online trainers")
