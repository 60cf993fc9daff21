"""Model streams in plans: online estimators fit on a Stream emit versions, models follow them,
stores are sinks and sources. Oracles: numpy (sigmoid of the version's coefficients, running
mean/std), the estimators' own uninterrupted ``fit_versions`` for the plumbing, and per-version
batch transforms."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.builder import PipelineModel
from flowlearn.classification.ftrl import OnlineLogisticRegression, OnlineLogisticRegressionModel
from flowlearn.classification.logistic_regression import LogisticRegressionModel
from flowlearn.engines import run
from flowlearn.linalg import from_numpy, to_numpy
from flowlearn.modelstream import ModelStore
from flowlearn.trainer import Trainer


def _data(n: int, d: int = 5, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = np.linspace(-1.5, 1.5, d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w + 0.3)))).astype(np.float64)
    return pa.table({"features": from_numpy(x), "label": y})


def _est(**kw) -> OnlineLogisticRegression:
    return OnlineLogisticRegression(**{"global_batch_size": 8, "emit_every": 300, "alpha": 0.3, **kw})


def _versions(stream_or_sink) -> list[fls.VersionItem]:
    sink = stream_or_sink.collect() if isinstance(stream_or_sink, fls.Stream) else stream_or_sink
    return [fls.read_version(t) for t in sink.tables()]


def _coef(md: pa.Table) -> tuple[np.ndarray, float]:
    return to_numpy(md.column("coefficient"))[0], float(md.column("intercept")[0].as_py())


def test_fit_on_stream_emits_the_versions_of_an_uninterrupted_fit():
    data = _data(2000)
    est = _est()
    model = est.fit(fls.from_table(data, batch_size=128))
    assert isinstance(model, OnlineLogisticRegressionModel)
    sink = fls.model_stream(model).collect()
    run(sink).wait()
    got = _versions(sink)   # one batch per version (a concatenated table would merge them)
    want = list(est.fit_versions(data))
    assert [v.version for v in got] == [int(w.column("model_version")[0].as_py()) for w in want] == \
        list(range(1, len(want) + 1))
    for v, w in zip(got, want):
        assert v.metadata["kind"] == "online"
        np.testing.assert_array_equal(_coef(v.model_data)[0], _coef(w)[0])
        assert _coef(v.model_data)[1] == _coef(w)[1]
    assert got[-1].metadata["trained_rows"] == 2000


def test_model_on_stream_equals_per_version_batch_transform():
    train, test = _data(2400, seed=1), _data(600, seed=2)
    model = _est().fit(fls.from_table(train, batch_size=100))
    versions = fls.model_stream(model).collect()
    out = model.transform(fls.from_table(test, batch_size=40)).collect()
    run(versions, out).wait()
    by_version = {v.version: v.model_data for v in _versions(versions)}
    res = out.result()
    assert res.num_rows == test.num_rows
    vs = res.column("model_version").to_numpy()
    assert (np.diff(vs) >= 0).all() and set(vs) <= set(by_version)
    x = to_numpy(res.column("features"))
    for v in np.unique(vs):
        rows = vs == v
        coef, b = _coef(by_version[v])
        p = 1 / (1 + np.exp(-(x[rows] @ coef + b)))      # numpy oracle
        raw = to_numpy(res.column("raw_prediction"))[rows]
        np.testing.assert_allclose(raw[:, 1], p, rtol=1e-12)
        np.testing.assert_array_equal(res.column("prediction").to_numpy()[rows], (x[rows] @ coef + b >= 0) * 1.0)
        batch = LogisticRegressionModel().set_model_data(by_version[v]).transform(res.filter(pa.array(rows)))
        np.testing.assert_allclose(to_numpy(batch.column("raw_prediction")), raw, rtol=1e-12)


def test_each_batch_gets_the_newest_version_that_has_arrived():
    data = _data(3000, seed=3)
    est = _est()
    s = fls.from_table(data, batch_size=100)
    model = est.fit(s)
    out = model.transform(s).collect()   # one source: the trainer sees each batch, then the model
    run(out).wait()
    tr = est.trainer()
    expect = []
    for k in range(30):
        tr.partial_fit(data.slice(k * 100, 100))
        expect.append(max(tr.version, 1))     # rows before version 1 wait for it
    got = out.result().column("model_version").to_numpy().reshape(30, 100)
    assert (got == np.array(expect)[:, None]).all()


def test_warm_started_model_serves_its_initial_version_until_the_first_new_one():
    init = LogisticRegressionModel().set_model_data(
        {"coefficient": [[0.5] * 5], "intercept": [0.0], "model_version": [7]})
    est = _est(emit_every=10_000).set_initial_model_data(init)
    model = est.fit(fls.from_table(_data(500), batch_size=100))
    out = model.transform(fls.from_iterable([_data(10, seed=9)])).to_table()
    assert set(out.column("model_version").to_pylist()) == {7}   # before version 8 (end of input)


def test_versions_go_to_a_store_and_come_back(tmp_path):
    data = _data(1500, seed=4)
    est = _est()
    store = ModelStore(str(tmp_path / "store"))
    run(fls.model_stream(est.fit(fls.from_table(data, batch_size=100))).to_model_store(store, producer="p1")).wait()
    want = list(est.fit_versions(data))
    assert store.versions() == list(range(1, len(want) + 1))
    for sv, w in zip(store.versions(), want):
        mv = store.load(sv)
        assert isinstance(mv.model, OnlineLogisticRegressionModel)
        assert mv.metadata["model_version"] == sv and mv.metadata["producer"] == "p1"
        assert mv.metadata["kind"] == "online"
        assert mv.model.get_model_data()[0].equals(w)
    # read back: every version, only the latest, from a given one, only the next ones
    every = _versions(fls.from_model_store(store, start="earliest", stop_at_end=True))
    assert [v.version for v in every] == store.versions()
    assert every[0].model().get_model_data()[0].equals(want[0])
    latest = _versions(fls.from_model_store(store, start="latest", stop_at_end=True))
    assert [v.version for v in latest] == [len(want)]
    from3 = _versions(fls.from_model_store(store, start=3, stop_at_end=True))
    assert [v.version for v in from3] == list(range(3, len(want) + 1))
    assert fls.from_model_store(store, start="next", stop_at_end=True).to_table().num_rows == 0
    # a model following the store applies each row's version's coefficients
    follower = OnlineLogisticRegressionModel().set_model_data(fls.from_model_store(store, start="earliest",
                                                                                   stop_at_end=True))
    res = follower.transform(fls.from_table(_data(300, seed=5), batch_size=30)).to_table()
    x = to_numpy(res.column("features"))
    for v in np.unique(res.column("model_version").to_numpy()):
        rows = res.column("model_version").to_numpy() == v
        coef, b = _coef(want[v - 1])
        np.testing.assert_allclose(to_numpy(res.column("raw_prediction"))[rows][:, 1],
                                   1 / (1 + np.exp(-(x[rows] @ coef + b))), rtol=1e-12)


def test_store_sink_never_publishes_a_model_version_twice(tmp_path):
    """A rerun of the same job (a restart without a checkpoint) finds its versions in the store."""
    data = _data(1200, seed=6)
    store = ModelStore(str(tmp_path / "store"))

    def job():
        return run(fls.model_stream(_est().fit(fls.from_table(data, batch_size=100))).to_model_store(store))

    job().wait()
    first = store.versions()
    j = job().wait()
    assert store.versions() == first
    sink_ops = [m for u, m in j.metrics["operators"].items() if "to_model_store" in u]
    assert sink_ops[0]["versions_skipped"] == len(first) and "versions_published" not in sink_ops[0]


def test_kinds_filter_reads_only_batch_versions(tmp_path):
    store = ModelStore(str(tmp_path / "s"))
    lr = LogisticRegressionModel().set_model_data({"coefficient": [[1.0]], "intercept": [0.0]})
    for kind in ("online", "batch", "online", "batch"):
        store.publish(lr, {"kind": kind})
    got = _versions(fls.from_model_store(store, start="earliest", stop_at_end=True, kinds=["batch"]))
    assert [v.version for v in got] == [2, 4]


def _pipeline(mean: float, coef: float) -> PipelineModel:
    sc = fl.feature.StandardScalerModel(input_col="x", output_col="features", with_mean=True)
    sc.set_model_data({"mean": [[mean]], "std": [[2.0]]})
    lr = LogisticRegressionModel().set_model_data({"coefficient": [[coef]], "intercept": [0.0]})
    return PipelineModel([sc, lr])


def test_whole_pipeline_versions_through_store_and_follower(tmp_path):
    a, b = ModelStore(str(tmp_path / "a")), ModelStore(str(tmp_path / "b"))
    pipes = [_pipeline(1.0, 1.0), _pipeline(5.0, -2.0)]
    for p in pipes:
        a.publish(p, {"kind": "batch"})
    run(fls.from_model_store(a, start="earliest", stop_at_end=True).to_model_store(b)).wait()
    assert b.versions() == [1, 2]
    probe = fl.table({"x": [[0.0], [3.0], [7.0]]})
    for v, p in zip(b.versions(), pipes):
        mv = b.load(v)
        assert isinstance(mv.model, PipelineModel) and mv.metadata["kind"] == "batch"
        assert mv.model.transform(probe).equals(p.transform(probe))
    follower = fls.follow(fls.from_model_store(a, start="earliest", stop_at_end=True))
    res = follower.transform(fls.from_table({"x": [[float(i)] for i in range(40)]}, batch_size=4)).to_table()
    for v in (1, 2):
        rows = res.filter(pa.compute.equal(res["model_version"], v))
        if rows.num_rows:
            want = pipes[v - 1].transform(rows.select(["x"]))
            np.testing.assert_allclose(to_numpy(rows.column("raw_prediction")),
                                       to_numpy(want.column("raw_prediction")))


# -- a generic online estimator whose versions are whole PipelineModels ----------------------

@fl.register_stage
class _MeanShiftModel(fl.Model):
    def _load_model_data(self, tables):
        self.mean = float(tables[0].column("mean")[0].as_py())

    def _transform(self, t):
        return t.append_column("centered", pa.compute.subtract(t.column("x"), self.mean))


class _MeanTrainer(Trainer):
    stage, state_format = "_MeanTrainer", "tests.mean_state"

    def __init__(self, clock=None):
        super().__init__(None, clock)
        self.total = 0.0

    def _has_model(self):
        return self.rows_seen > 0

    def _rows_in_model(self):
        return self.rows_seen

    def _current_version(self):
        m = _MeanShiftModel().set_model_data({"mean": [self.total / self.rows_seen], "model_version": [self.version]})
        return PipelineModel([m])

    def partial_fit(self, batch):
        self.rows_seen += batch.num_rows
        self.total += float(pa.compute.sum(batch.column("x")).as_py())
        return [self._emit()]

    def _state(self):
        return fls.OperatorState({"total": self.total})

    def _restore(self, state):
        self.total = state.data["total"]


class _OnlineMean(fl.Estimator):
    def trainer(self, clock=None):
        return _MeanTrainer(clock)


def test_generic_trainer_with_whole_pipeline_versions(tmp_path):
    xs = np.arange(60.0)
    model = _OnlineMean().fit(fls.from_table({"x": xs}, batch_size=10))
    assert isinstance(model, fls.StreamModel)
    store = ModelStore(str(tmp_path / "s"))
    s = fls.from_table({"x": xs}, batch_size=10)
    model = _OnlineMean().fit(s)
    out = model.transform(s).collect()
    run(out, fls.model_stream(model).to_model_store(store)).wait()
    assert store.versions() == list(range(1, 7))
    assert all(isinstance(store.load(v).model, PipelineModel) for v in store.versions())
    res = out.result()
    ver = res.column("model_version").to_numpy()
    # batch k (rows 10k..10k+9) is centered with the mean of rows 0..10k+9 (version k + 1)
    np.testing.assert_array_equal(ver, np.repeat(np.arange(1, 7), 10))
    means = np.array([xs[: 10 * v].mean() for v in ver])
    np.testing.assert_allclose(res.column("centered").to_numpy(), xs - means)


def test_online_standard_scaler_on_a_stream_matches_numpy():
    mod = pytest.importorskip("flowlearn.feature.online_scalers")
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, size=(900, 3))
    est = mod.OnlineStandardScaler(input_col="x", output_col="y", with_mean=True, window_rows=200)
    s = fls.from_table({"x": from_numpy(x)}, batch_size=64)
    model = est.fit(s)
    vs = fls.model_stream(model).collect()
    out = model.transform(s).collect()
    run(vs, out).wait()
    got = _versions(vs)
    assert [v.version for v in got] == [1, 2, 3, 4, 5]
    ends = [200, 400, 600, 800, 900]
    for v, n in zip(got, ends):
        np.testing.assert_allclose(to_numpy(v.model_data.column("mean"))[0], x[:n].mean(0), rtol=1e-12)
        np.testing.assert_allclose(to_numpy(v.model_data.column("std"))[0], x[:n].std(0, ddof=1), rtol=1e-12)
    res = out.result()
    ver = res.column("model_version").to_numpy()
    n_of = dict(zip(range(1, 6), ends))
    for v in np.unique(ver):
        rows = ver == v
        n = n_of[v]
        np.testing.assert_allclose(to_numpy(res.column("y"))[rows],
                                   (x[rows] - x[:n].mean(0)) / x[:n].std(0, ddof=1), rtol=1e-10)


def test_online_kmeans_on_a_stream_equals_its_uninterrupted_fit():
    mod = pytest.importorskip("flowlearn.clustering.online_kmeans")
    rng = np.random.default_rng(8)
    x = np.r_[rng.normal(0, 1, (300, 2)), rng.normal(8, 1, (300, 2))][rng.permutation(600)]
    est = mod.OnlineKMeans(k=2, global_batch_size=50, seed=3)
    vs = fls.model_stream(est.fit(fls.from_table({"features": from_numpy(x)}, batch_size=70))).collect()
    run(vs).wait()
    got = _versions(vs)
    want = list(est.fit_versions(fl.table({"features": from_numpy(x)})))
    assert [v.version for v in got] == [int(w.column("model_version")[0].as_py()) for w in want]
    for v, w in zip(got, want):
        assert v.model_data.equals(w)


def test_iter_batches_and_errors():
    s = fls.from_table({"x": np.arange(10.0)}, batch_size=3)
    assert [b.num_rows for b in s.iter_batches()] == [3, 3, 3, 1]
    with pytest.raises(TypeError, match="fit_online"):
        _est().fit(fls.from_table(_data(10)), fls.from_table(_data(10)))
    with pytest.raises(ValueError, match="does not follow a model stream"):
        fls.model_stream(LogisticRegressionModel())
    with pytest.raises(ValueError, match="start"):
        fls.from_model_store("/tmp/none-such-store-x", start="middle")


# -- acceptance: kill -9 in the middle of training, restart from the checkpoint -----------------

def test_trainer_resumes_after_sigkill_without_duplicate_versions(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import model_stream_job_helper as helper

    store_dir, chk = str(tmp_path / "store"), str(tmp_path / "chk")
    cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "model_stream_job_helper.py"), store_dir, chk]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    # throttled (>= 4 s for the whole source) so the kill lands midway even on a loaded machine
    p = subprocess.Popen(cmd + ["0.05"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and p.poll() is None:
            if os.path.isdir(store_dir) and len(ModelStore(store_dir).versions()) >= 12:
                break
            time.sleep(0.02)
        assert p.poll() is None, f"the job ended before it could be killed: {p.stderr.read().decode()[-2000:]}"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    killed_at = ModelStore(store_dir).versions()
    r = subprocess.run(cmd + ["0"], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    report = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert report["restored_from"] is not None
    want = list(helper.estimator().fit_versions(helper.data()))     # the uninterrupted run
    store = ModelStore(store_dir)
    assert 12 <= len(killed_at) < len(want)
    # versions continue without duplicates: store version == model_version == 1..K, each once
    assert store.versions() == list(range(1, len(want) + 1))
    assert [store.version_info(v)["metadata"]["model_version"] for v in store.versions()] == store.versions()
    for v, w in zip(store.versions(), want):
        assert store.load(v).model.get_model_data()[0].equals(w), f"version {v} differs from the uninterrupted run"
    assert report["published"] + len(killed_at) == len(want)


# -- time-based emission and rows that never get a version ---------------------------------------

class _QuietSource(fls.Source):
    """Emits its tables, then nothing, forever (an unbounded stream gone quiet)."""

    def __init__(self, tables):
        super().__init__()
        self.tables = list(tables)

    def poll(self, max_rows):
        return [self.tables.pop(0)] if self.tables else []

    def finished(self):
        return False


def _wait_for(job, key, value, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m.get(key, 0) >= value for m in job.metrics["operators"].values()):
            return
        time.sleep(0.01)
    raise AssertionError(f"no operator reached {key} >= {value} within {timeout} s: {job.metrics['operators']}")


def test_quiet_stream_gets_its_version_from_the_engine_timer():
    """emit_every_seconds on the engine clock: after the last rows the stream is quiet, and the
    trainer's version still comes (from the engine's timer) once the interval has passed."""
    data = _data(400, seed=11)
    now = [0.0]
    est = _est(emit_every=None, emit_every_seconds=30.0)
    model = est.fit(fls.from_source(lambda: _QuietSource([data.slice(0, 200), data.slice(200, 200)]),
                                    bounded=False))
    versions = fls.model_stream(model).collect()
    job = run(versions, clock=lambda: now[0])
    try:
        _wait_for(job, "trained_rows", 400)
        assert not any(m.get("versions_emitted") for m in job.metrics["operators"].values())
        now[0] = 30.0
        _wait_for(job, "versions_emitted", 1)
    finally:
        job.stop()
        job.wait()
    (v,) = _versions(versions)
    assert v.version == 1 and v.metadata["trained_rows"] == 400
    ref = _est(emit_every=None).trainer()
    ref.partial_fit(data)     # 400 rows = 50 whole mini-batches: the weights after all of them
    np.testing.assert_array_equal(_coef(v.model_data)[0], ref.coefficient)


def test_rows_that_never_get_a_version_go_to_the_unscored_side_output():
    model = fls.follow(fls.from_iterable([], bounded=True), LogisticRegressionModel())
    scored = model.transform(fls.from_table(_data(30), batch_size=10))
    out, unscored = scored.collect(), scored.side_output("unscored").collect()
    job = run(out, unscored)
    job.wait()
    assert out.result().num_rows == 0
    assert unscored.result().equals(_data(30))
    assert sum(m.get("unscored_rows", 0) for m in job.metrics["operators"].values()) == 30


# -- pipelines holding a following model, and pipelines following a stream of versions ---------

def test_pipeline_holding_a_following_model_applies_its_newest_version():
    """A PipelineModel whose last stage follows a model stream applies, per batch, the newest version
    (not the warm-start data it was built with): each row's prediction is the numpy closed form of
    its version's weights on the scaled features."""
    train, test = _data(2400, seed=21), _data(600, seed=22)
    x = to_numpy(train.column("features"))
    scaler = fl.feature.StandardScalerModel(input_col="features", output_col="scaled", with_mean=True)
    scaler.set_model_data({"mean": [x.mean(0).tolist()], "std": [x.std(0, ddof=1).tolist()]})
    init = LogisticRegressionModel().set_model_data({"coefficient": [[0.0] * 5], "intercept": [0.0],
                                                     "model_version": [0]})
    online = _est(features_col="scaled").set_initial_model_data(init).fit(
        scaler.transform(fls.from_table(train, batch_size=100)))
    versions = fls.model_stream(online).collect()
    out = fl.PipelineModel([scaler, online]).transform(fls.from_table(test, batch_size=50)).collect()
    run(versions, out).wait()
    by_version = {0: init.get_model_data()[0], **{v.version: v.model_data for v in _versions(versions)}}
    res = out.result()
    vs = res.column("model_version").to_numpy()
    assert res.num_rows == test.num_rows and (np.diff(vs) >= 0).all() and vs[-1] > 0  # not the warm start only
    z = (to_numpy(test.column("features")) - x.mean(0)) / x.std(0, ddof=1)
    for v in np.unique(vs):
        coef, b = _coef(by_version[v])
        rows = vs == v
        np.testing.assert_allclose(to_numpy(res.column("raw_prediction"))[rows, 1],
                                   1 / (1 + np.exp(-(z[rows] @ coef + b))), rtol=1e-12)


def test_pipeline_follows_a_stream_of_whole_pipeline_versions():
    pipes = [_pipeline(1.0, 1.0), _pipeline(5.0, -2.0)]
    follower = _pipeline(0.0, 0.0).set_model_data(
        fls.from_iterable([fls.version_table(p, version=v) for v, p in enumerate(pipes, 1)]))
    res = follower.transform(fls.from_iterable([{"x": [[3.0]] * 2}] * 4)).to_table()
    assert res.num_rows == 8 and set(res.column("model_version").to_pylist()) <= {0, 1, 2}
    for v, (mean, coef) in {1: (1.0, 1.0), 2: (5.0, -2.0), 0: (0.0, 0.0)}.items():
        rows = res.filter(pa.compute.equal(res["model_version"], v))
        margin = coef * (3.0 - mean) / 2.0
        np.testing.assert_allclose(to_numpy(rows.column("raw_prediction"))[:, 1], 1 / (1 + np.exp(-margin)))
    with pytest.raises(TypeError, match="no model data of its own"):
        _pipeline(0.0, 0.0).set_model_data(fl.table({"mean": [[1.0]]}))


def test_following_models_outside_a_pipeline_are_refused_with_a_reason():
    online = _est().fit(fls.from_table(_data(100)))
    with pytest.raises(ValueError, match="follows a model stream.*to_model_store"):
        fl.LocalPredictor(online)
    with pytest.raises(ValueError, match="follows a model stream"):
        fl.LocalPredictor(fl.PipelineModel([online]))
    graph = fl.GraphBuilder()
    t = graph.create_table_id()
    out = graph.add_algo_operator(online, t)
    with pytest.raises(NotImplementedError, match="follows a model stream"):
        graph.build_model([t], [out]).transform(fls.from_table(_data(10)))


def test_waiting_rows_hold_the_watermark_back_and_may_differ_in_schema():
    """Rows waiting for a version keep the watermark the operator forwards where it was, so an
    event-time window downstream counts every row (none late); waiting batches with different
    schemas (a union of two sources) are scored each as they are."""
    from flowlearn.feature.online_scalers import OnlineStandardScaler

    n = 1000
    x = np.random.default_rng(0).normal(size=(n, 2))
    t = np.arange(n) * 0.01
    s = fls.from_table({"input": from_numpy(x), "t": t}, batch_size=50).with_watermarks("t", 0.0)
    model = OnlineStandardScaler(window_rows=300, time_col="t").fit(s)   # rows wait for a fresh version
    windows = model.transform(s).window(event_time=1.0, time_col="t", late="side").aggregate(n=("t", "count"))
    counts, late = windows.collect(), windows.late_data().collect()
    job = run(counts, late)
    job.wait()
    assert late.result().num_rows == 0 and job.metrics["late_rows"] == 0
    assert sum(counts.result().column("n").to_pylist()) == n
    assert sum(m.get("buffered_rows", 0) for m in job.metrics["operators"].values()) > 0

    from flowlearn.testing.models import AddK
    data = fls.from_iterable([{"t": [1.0], "id": [1]}]).union(fls.from_iterable([{"id": [2], "t": [2.0]}]))
    follower = fls.follow(fls.from_iterable([{"k": [1.0], "model_version": [1]}]), AddK(input_col="t", output_col="u"))
    got = []
    run(follower.transform(data).foreach(lambda b: got.extend(b.to_pylist()))).wait()
    assert sorted((r["id"], r["u"]) for r in got) == [(1, 2.0), (2, 3.0)]


def _trainer_cases():
    from flowlearn.classification.online_learning import OnlineLearning
    from flowlearn.clustering.online_kmeans import OnlineKMeans
    from flowlearn.regression.linear_regression import LinearRegression

    data = _data(2000)
    pm = fl.Pipeline([LinearRegression()]).fit(data)
    return {
        "ftrl": (lambda: _est(), data),
        "online_learning": (lambda: OnlineLearning(pm, optim_method="sgd", learning_rate=0.01, global_batch_size=8,
                                                   emit_every=300), data),
        "online_kmeans": (lambda: OnlineKMeans(k=2, global_batch_size=8, emit_every=300, seed=1), data),
    }


@pytest.mark.parametrize("kind", ["ftrl", "online_learning", "online_kmeans"])
def test_trained_rows_is_the_rows_in_the_version_whatever_the_batch_size(kind):
    """A version's ``trained_rows`` is the rows its weights hold (it was the rows read by the end of
    the input batch that made it, so the same weights said 1000 or 1024 by batch size)."""
    make, data = _trainer_cases()[kind]
    # closed form: a version at the first mini-batch boundary (8 rows) at least 300 rows after the
    # last one, so every 304 rows, and the final version holds all 2000 rows
    want = [304 * k for k in range(1, 2000 // 304 + 1)] + [2000]
    for batch_size in (37, 1000):
        sink = fls.model_stream(make().fit(fls.from_table(data, batch_size=batch_size))).collect()
        run(sink).wait()
        assert [v.metadata["trained_rows"] for v in _versions(sink)] == want, batch_size
