"""Stream plan, in-memory sources and sinks, stages on streams, the local engine's job handle."""
from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import flowlearn.stream as fls
from flowlearn.engines import run
from stream_job_helper import ShiftScale, ShiftScaleModel


def _table(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({"id": np.arange(n), "x": rng.normal(5.0, 3.0, n), "g": rng.integers(0, 3, n)})


def test_from_table_batches_and_roundtrip():
    t = _table(1003)
    seen = []
    sink = fls.from_table(t, batch_size=100).foreach(lambda b: seen.append(b.num_rows))
    job = run(sink).wait()
    assert seen == [100] * 10 + [3]
    assert job.metrics["rows_in"] == 1003 and job.metrics["batches"] == 11
    assert fls.from_table(t, batch_size=7).to_table().equals(t)


def test_from_iterable_and_generate():
    s = fls.from_iterable([{"x": [1, 2]}, pa.table({"x": [3]}), [{"x": 4}]])
    assert s.to_table().column("x").to_pylist() == [1, 2, 3, 4]
    g = fls.generate(lambda i: {"i": [i, i]}, count=3)
    assert g.bounded and g.to_table().column("i").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert not fls.generate(lambda i: {"i": [i]}).bounded


def test_operations_equal_table_operations():
    t = _table(500)
    s = fls.from_table(t, batch_size=64)
    got = (s.filter(lambda b: pc.greater(b["x"], 5.0))
           .map_batches(lambda b: b.append_column("x2", pc.multiply(b["x"], b["x"])))
           .select("id", "x2").to_table())
    mask = t.column("x").to_numpy() > 5.0
    assert got.column("id").to_pylist() == t.column("id").to_numpy()[mask].tolist()
    np.testing.assert_allclose(got.column("x2").to_numpy(), t.column("x").to_numpy()[mask] ** 2)
    assert s.filter(pc.field("g") == 1).to_table().num_rows == int((t.column("g").to_numpy() == 1).sum())
    renamed = s.select(ident="id").to_table()
    assert renamed.column_names == ["ident"]


def test_schema_is_known_lazily():
    s = fls.from_table({"a": [1.0], "b": ["x"]})
    assert s.select("b").schema.names == ["b"]
    assert s.map_batches(lambda t: t.append_column("c", pc.add(t["a"], 1))).schema.names == ["a", "b", "c"]


def test_union_and_schema_mismatch():
    a = fls.from_table({"x": [1, 2]})
    b = fls.from_table({"x": [3]})
    assert sorted(a.union(b).to_table().column("x").to_pylist()) == [1, 2, 3]
    with pytest.raises(ValueError, match="column 'x' changed from int64 to string"):
        a.union(fls.from_table({"x": ["a"]}))


def test_one_stream_several_consumers():
    s = fls.from_table(_table(300), batch_size=50)
    evens = s.filter(lambda t: pc.equal(pc.bit_wise_and(t["id"], 1), 0)).collect()
    everything = s.collect()
    job = run(evens, everything).wait()
    assert evens.result().num_rows == 150 and everything.result().num_rows == 300
    src = [u for u in job.metrics["operators"] if "from_table" in u]
    assert len(src) == 1  # read once, fanned out


def test_model_on_stream_equals_model_on_concatenated_table():
    t = _table(1000)
    model = ShiftScale().fit(t)
    expected = model.transform(t)
    got = model.transform(fls.from_table(t, batch_size=37))
    assert isinstance(got, fls.Stream)
    out = got.to_table()
    assert out.column_names == expected.column_names
    np.testing.assert_allclose(out.column("y").to_numpy(), expected.column("y").to_numpy())
    # independent oracle: numpy z-score with population std
    x = t.column("x").to_numpy()
    np.testing.assert_allclose(out.column("y").to_numpy(), (x - x.mean()) / x.std())


def test_estimator_on_bounded_stream_trains_on_all_of_it():
    t = _table(999)
    m1 = ShiftScale().fit(fls.from_table(t, batch_size=10))
    m2 = ShiftScale().fit(t)
    assert m1.get_model_data()[0].equals(m2.get_model_data()[0])


def test_estimator_on_unbounded_stream_names_online_counterpart():
    s = fls.generate(lambda i: {"x": [1.0]})
    with pytest.raises(ValueError, match="OnlineShiftScale"):
        ShiftScale().fit(s)


def test_model_following_a_model_stream_adds_model_version():
    data = fls.from_iterable([{"x": [1.0, 2.0]}, {"x": [3.0]}])
    models = fls.from_iterable([{"mean": [0.0], "std": [1.0]}])
    m = ShiftScaleModel().set_model_data(models)
    out = m.transform(data).to_table()
    assert sorted(out.column("y").to_pylist()) == [1.0, 2.0, 3.0]
    assert set(out.column("model_version").to_pylist()) == {1}


def test_stop_ends_an_unbounded_job_and_metrics_are_live():
    s = fls.generate(lambda i: {"x": np.arange(100.0)}, interval=0.001)
    sink = s.collect()
    job = run(sink)
    deadline = time.monotonic() + 30
    while job.metrics["rows_in"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.running and job.metrics["rows_in"] > 0
    job.stop()
    assert not job.running
    m = job.metrics
    assert m["rows_out"] == sink.result().num_rows > 0
    assert m["batches_per_second"] > 0
    for op in m["operators"].values():
        assert {"rows_in", "rows_out"} <= set(op)


def test_errors_propagate_from_wait():
    def boom(t):
        raise RuntimeError("kernel failed")
    with pytest.raises(RuntimeError, match="kernel failed"):
        fls.from_table({"x": [1]}).map_batches(boom).collect().result()


def test_run_rejects_non_sinks_and_collect_on_unbounded():
    with pytest.raises(TypeError, match="sinks"):
        run(fls.from_table({"x": [1]}))
    with pytest.raises(ValueError, match="unbounded"):
        fls.generate(lambda i: {"x": [i]}).collect().result()


def test_sigint_stops_the_job_with_final_checkpoint(tmp_path):
    import os
    import signal

    s = fls.generate(lambda i: {"x": [float(i)]}, interval=0.001)
    job = run(s.collect(), checkpoint_dir=str(tmp_path), checkpoint_interval=60)
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    job.wait(timeout=20)
    assert not job.running and job.metrics["checkpoints"] == 1
    assert (tmp_path / "_LATEST").read_text() == "1"
