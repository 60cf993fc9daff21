"""The dashboard's JSON endpoints against a real ModelStore and real metrics files written by jobs
(JobMetricsWriter, EvalLog, to_files); evaluation numbers checked against scikit-learn on the same
windows, pipeline graphs against the column flow worked out by hand."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the dashboard needs starlette (the serve extra)")
pytest.importorskip("uvicorn", reason="the dashboard needs uvicorn (the serve extra)")
from sklearn import metrics as skm  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.dashboard.app import create_app, serve_dashboard  # noqa: E402
from flowlearn.dashboard.data import DashboardData  # noqa: E402
from flowlearn.dashboard.metrics import EvalLog, JobMetricsWriter  # noqa: E402
from flowlearn.evaluation import StreamingEvaluator  # noqa: E402
from flowlearn.modelstream import ModelGate, ModelStore  # noqa: E402
from flowlearn.stream.checkpoint import CheckpointStore  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _strict(text: str):
    """Parse as a browser does: NaN / Infinity are not JSON."""
    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c} in a response")
    return json.loads(text, parse_constant=bad)


class _Response:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text


class _Client:
    """The app served by uvicorn on a free loopback port, read with urllib (a real HTTP client)."""

    def __init__(self, store, metrics_dir=None, server=None) -> None:
        self.server = serve_dashboard(store, metrics_dir=metrics_dir, port=0, server=server)

    def get(self, path: str) -> _Response:
        try:
            with urllib.request.urlopen(self.server.url + path, timeout=30) as r:
                return _Response(r.status, r.read().decode())
        except urllib.error.HTTPError as e:
            return _Response(e.code, e.read().decode())


@pytest.fixture
def serve():
    clients = []

    def make(store, metrics_dir=None, server=None):
        clients.append(_Client(store, metrics_dir, server))
        return clients[-1]
    yield make
    for c in clients:
        c.server.close()


def _get(client, path, status=200):
    r = client.get(path)
    assert r.status_code == status, r.text
    return _strict(r.text)


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return x, y.astype(np.float64)


def _lr_pipeline(x, y):
    t = fl.table({"raw": fl.linalg.from_numpy(x), "label": y})
    return fl.Pipeline([fl.feature.StandardScaler(input_col="raw", output_col="features", with_mean=True),
                        fl.classification.LogisticRegression(reg=0.05)]).fit(t)


# ---------------------------------------------------------------------------------------------
# versions

def test_versions_kinds_and_gate_decisions(serve, tmp_path, cancer):
    x, y = cancer
    store = ModelStore(str(tmp_path / "store"))
    batch = _lr_pipeline(x[::2], y[::2])
    store.publish(batch, metadata={"kind": "batch", "rows": 285})                       # 1
    held = fl.table({"raw": fl.linalg.from_numpy(x[1::2]), "label": y[1::2]})
    gate = ModelGate(metric="auc", min_value=0.9, held_out=held)
    assert gate.publish(batch, store, metadata={"kind": "online", "model_version": 1}) == 2
    store.publish(batch, metadata={"kind": "online", "rebased_on": 1, "model_version": 2})   # 3: first after a rebase
    store.publish(batch, metadata={"kind": "online", "rebased_on": 1, "model_version": 3})   # 4
    store.publish(batch, metadata={"kind": "online", "rebased_on": 4, "model_version": 4})   # 5: rebased again
    store.rollback(1)                                                                     # 6
    store.publish(batch)                                                                  # 7: no kind

    client = serve(store)
    doc = _get(client, "/api/versions")
    assert doc["latest"] == 7 and doc["store"] == store.url
    assert [(v["version"], v["kind"]) for v in doc["versions"]] == [
        (1, "batch"), (2, "online"), (3, "rebase"), (4, "online"), (5, "rebase"), (6, "rollback"), (7, "unknown")]
    assert [v["class"].rsplit(".", 1)[-1] for v in doc["versions"]] == ["PipelineModel"] * 7
    created = [v["created_at"] for v in doc["versions"]]
    assert created == sorted(created) and abs(created[-1] - time.time()) < 600
    g = doc["versions"][1]["gate"]
    # the gate's AUC is the held-out AUC scikit-learn computes from the same predictions
    p = np.asarray(batch.transform(held).column("raw_prediction").to_pylist())[:, 1]
    assert g["decision"] == "passed" and g["metric"] == "auc" and g["rows"] == held.num_rows
    assert g["value"] == pytest.approx(skm.roc_auc_score(y[1::2], p), abs=1e-12)
    assert all(v["gate"] is None for i, v in enumerate(doc["versions"]) if i != 1)
    assert doc["versions"][5]["metadata"]["rollback_of"] == 1


def test_empty_store_and_page_assets(serve, tmp_path):
    client = serve(ModelStore(str(tmp_path / "s")))
    assert _get(client, "/api/versions") == {"store": ModelStore(str(tmp_path / "s")).url, "versions": [],
                                             "latest": None}
    assert _get(client, "/api/metrics") == {"evaluations": {}}
    assert _get(client, "/api/jobs") == {"jobs": []}
    assert "no committed version" in _get(client, "/api/pipeline", 404)["error"]
    page = client.get("/")
    assert page.status_code == 200 and "flowlearn dashboard" in page.text and "uPlot.iife.min.js" in page.text
    js = client.get("/static/uPlot.iife.min.js")
    assert js.status_code == 200 and js.text.startswith("/*! https://github.com/leeoniya/uPlot")
    assert "MIT" in client.get("/static/uPlot.LICENSE").text
    assert client.get("/static/dashboard.js").status_code == 200
    assert client.get("/healthz").text == "ok"
    assert _get(client, "/api/config")["refresh"] == 1.0


def test_bad_arguments(tmp_path):
    store = ModelStore(str(tmp_path / "s"))
    with pytest.raises(ValueError, match="metrics directory .* does not exist"):
        create_app(store, metrics_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="'refresh' = 0"):
        create_app(store, refresh=0)
    with pytest.raises(ValueError, match="'interval' = 0 violates gt"):
        JobMetricsWriter(fls.from_table({"x": [1]}).collect().run(), str(tmp_path), interval=0)
    with pytest.raises(ValueError, match="name '../x' must be"):
        EvalLog(str(tmp_path), "../x")
    with pytest.raises(TypeError, match="expected a table or a list of row dicts, got str"):
        EvalLog(str(tmp_path), "ok").append("rows")
    with pytest.raises(TypeError, match="running job"):
        JobMetricsWriter(object(), str(tmp_path))


# ---------------------------------------------------------------------------------------------
# evaluation metrics

def test_metrics_windows_and_versions_match_sklearn(serve, tmp_path, cancer):
    x, y = cancer
    model = _lr_pipeline(x[::3], y[::3])
    p = np.asarray(model.transform(fl.table({"raw": fl.linalg.from_numpy(x), "label": y}))
                   .column("raw_prediction").to_pylist())[:, 1]
    versions = np.repeat([1, 2], [250, len(y) - 250])
    scored = fl.table({"label": y, "raw_prediction": p, "model_version": versions})
    metrics_dir = str(tmp_path / "m")
    ev = StreamingEvaluator("binary", window_rows=100, per_version=True)
    sink = ev.evaluate(fls.from_table(scored, batch_size=64)).foreach(EvalLog(metrics_dir, "live"))
    fls.run(sink).wait()

    client = serve(ModelStore(str(tmp_path / "s")), metrics_dir=metrics_dir)
    live = _get(client, "/api/metrics")["evaluations"]["live"]
    assert live["metrics"] == ["auc", "log_loss", "accuracy"]
    n_windows = math.ceil(len(y) / 100)
    assert [r["window"] for r in live["windows"]] == list(range(n_windows))
    for r in live["windows"]:
        lo, hi = 100 * r["window"], min(len(y), 100 * r["window"] + 100)
        ys, ps = y[lo:hi], p[lo:hi]
        assert r["rows"] == hi - lo and r["model_versions"] == sorted(set(versions[lo:hi].tolist()))
        assert r["window_auc"] == pytest.approx(skm.roc_auc_score(ys, ps), abs=1e-12)
        assert r["window_log_loss"] == pytest.approx(skm.log_loss(ys, np.clip(ps, 1e-15, 1 - 1e-15)), rel=1e-9)
        assert r["window_accuracy"] == pytest.approx(skm.accuracy_score(ys, ps >= 0.5), abs=1e-12)
        assert r["cumulative_rows"] == hi
        assert r["cumulative_log_loss"] == pytest.approx(skm.log_loss(y[:hi], np.clip(p[:hi], 1e-15, 1 - 1e-15)),
                                                         rel=1e-9)
    # per version: window 2 holds rows 200..299, 50 of version 1 and 50 of version 2
    w2 = {r["model_version"]: r for r in live["versions"] if r["window"] == 2}
    assert sorted(w2) == [1, 2] and w2[1]["rows"] == 50 and w2[2]["rows"] == 50
    for v, (lo, hi) in {1: (200, 250), 2: (250, 300)}.items():
        assert w2[v]["window_auc"] == pytest.approx(skm.roc_auc_score(y[lo:hi], p[lo:hi]), abs=1e-12)
        assert w2[v]["window_accuracy"] == pytest.approx(skm.accuracy_score(y[lo:hi], p[lo:hi] >= 0.5), abs=1e-12)
    assert w2[1]["cumulative_rows"] == 250


def test_metrics_regression_rmse(tmp_path):
    x, y = load_diabetes(return_X_y=True)
    t = fl.table({"features": fl.linalg.from_numpy(x), "label": y})
    pred = np.asarray(fl.regression.LinearRegression().fit(t).transform(t).column("prediction").to_pylist())
    metrics_dir = str(tmp_path / "m")
    ev = StreamingEvaluator("regression", window_rows=100)
    log = EvalLog(metrics_dir, "diabetes")
    for lo in range(0, len(y), 70):
        log(ev.update(fl.table({"label": y[lo:lo + 70], "prediction": pred[lo:lo + 70]})))
    log(ev.flush())
    doc = DashboardData(str(tmp_path / "s"), metrics_dir).metrics()["evaluations"]["diabetes"]
    assert doc["metrics"] == ["rmse"] and doc["versions"] == []
    assert len(doc["windows"]) == math.ceil(len(y) / 100)
    for r in doc["windows"]:
        lo, hi = 100 * r["window"], min(len(y), 100 * r["window"] + 100)
        rmse = math.sqrt(skm.mean_squared_error(y[lo:hi], pred[lo:hi]))
        assert r["window_rmse"] == pytest.approx(rmse, rel=1e-9)


def test_metrics_files_replayed_partial_nan_and_committed(serve, tmp_path):
    """A restarted job's rows replace the earlier ones; a line being written is not read; NaN is
    null; committed to_files JSON-lines files are read as well."""
    metrics_dir = str(tmp_path / "m")
    ev = StreamingEvaluator("binary", window_rows=4)
    rows = ev.update(fl.table({"label": [1, 1, 1, 1, 0, 1, 0, 1], "raw_prediction": [0.9, 0.8, 0.7, 0.6,
                                                                                        0.2, 0.9, 0.4, 0.6]}))
    assert math.isnan(rows[0]["window_auc"])    # one class only in window 0
    log = EvalLog(metrics_dir, "live")
    log.append(rows)
    log.append([{**rows[1], "rows": 999}])      # the same window written again after a restart
    with open(log.path, "a") as f:
        f.write('{"window": 7, "rows": 4, "window_auc": 0.')   # an append in progress
    # the exactly-once route: a file sink's committed JSON-lines files in the same folder
    more = StreamingEvaluator("binary", window_rows=4)
    more._window_index = 2                      # continue the numbering as a resumed evaluator would
    sink = more.evaluate(fls.from_table({"label": [0, 1, 0, 1], "raw_prediction": [0.1, 0.9, 0.8, 0.2]})) \
        .to_files(os.path.join(metrics_dir, "eval", "live"), format="json")
    fls.run(sink).wait()
    client = serve(ModelStore(str(tmp_path / "s")), metrics_dir=metrics_dir)
    w = _get(client, "/api/metrics")["evaluations"]["live"]["windows"]
    assert [r["window"] for r in w] == [0, 1, 2]
    assert w[0]["window_auc"] is None and w[1]["rows"] == 999
    assert w[2]["window_auc"] == pytest.approx(skm.roc_auc_score([0, 1, 0, 1], [0.1, 0.9, 0.8, 0.2]))


# ---------------------------------------------------------------------------------------------
# jobs

def test_jobs_snapshot_history_checkpoints_and_gates(serve, tmp_path, cancer):
    x, y = cancer
    metrics_dir, chk = str(tmp_path / "m"), str(tmp_path / "chk")
    held = fl.table({"features": fl.linalg.from_numpy((x - x.mean(0)) / x.std(0)), "label": y})

    def slow(t):
        time.sleep(0.02)
        return t

    src = fls.from_table({"x": np.arange(2_000, dtype=np.float64)}, batch_size=100).map_batches(slow)
    gate = ModelGate(metric="auc", min_value=0.99, held_out=held)
    bad = fl.classification.LogisticRegressionModel().set_model_data(
        {"coefficient": [[-1.0] * 30], "intercept": [0.0]})
    assert gate.check(bad).passed is False      # a rejected candidate, recorded by the gate
    job = fls.run(src.collect(), checkpoint_dir=chk, checkpoint_interval=0.1)
    with JobMetricsWriter(job, metrics_dir, name="count", interval=0.05, checkpoint_dir=chk, gates=[gate]):
        job.wait()
    client = serve(ModelStore(str(tmp_path / "s")), metrics_dir=metrics_dir)
    [j] = _get(client, "/api/jobs")["jobs"]
    assert j["job"] == "count" and j["status"] == "finished" and j["pid"] == os.getpid()
    assert j["metrics"]["rows_in"] == 2_000 and j["metrics"]["rows_out"] == 2_000
    assert j["checkpoint"]["latest"] == CheckpointStore(chk).latest_complete() == j["metrics"]["checkpoints"]
    hist = j["history"]
    assert len(hist) >= 3 and hist[-1]["rows_in"] == 2_000 and hist[-1]["status"] == "finished"
    assert [h["rows_in"] for h in hist] == sorted(h["rows_in"] for h in hist)
    assert hist[-1]["lag"] == 0                 # a table source knows its lag: nothing left
    # rows/s between two history lines is the rows in over the time between them
    a, b = hist[1], hist[2]
    assert b["rows_per_second"] == pytest.approx((b["rows_in"] - a["rows_in"]) / (b["time"] - a["time"]), rel=1e-6)
    [g] = j["gates"]
    assert g["passed"] is False and g["metric"] == "auc" and "< min_value 0.99" in g["reason"]
    p = np.asarray(bad.transform(held).column("raw_prediction").to_pylist())[:, 1]
    assert g["value"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


def test_jobs_failed_and_stale(tmp_path):
    metrics_dir = str(tmp_path / "m")

    def boom(t):
        raise ValueError("bad batch")

    job = fls.run(fls.from_table({"x": [1.0, 2.0]}).map_batches(boom).collect())
    with pytest.raises(ValueError, match="bad batch"):
        with JobMetricsWriter(job, metrics_dir, name="boom", interval=0.05):
            job.wait()
    # a running job whose process died: its snapshot stops changing
    ok = fls.run(fls.from_table({"x": [1.0]}).collect())
    w = JobMetricsWriter(ok, metrics_dir, name="gone", interval=0.05)
    doc = w.write("running")
    doc["updated_at"] -= 3600
    with open(w.snapshot_path, "w") as f:
        json.dump(doc, f)
    with open(os.path.join(metrics_dir, "jobs", "junk.json"), "w") as f:
        f.write("{not json")
    jobs = {j["job"]: j for j in DashboardData(str(tmp_path / "s"), metrics_dir).jobs()["jobs"]}
    assert sorted(jobs) == ["boom", "gone"]
    assert jobs["boom"]["status"] == "failed" and jobs["boom"]["error"] == "ValueError: bad batch"
    assert jobs["gone"]["status"] == "stale"


# ---------------------------------------------------------------------------------------------
# pipeline graphs

def test_pipeline_graph_follows_the_columns(serve, tmp_path):
    f = fl.feature
    rng = np.random.default_rng(0)
    t = fl.table({"a": rng.normal(size=40), "b": rng.normal(size=40), "c": rng.normal(size=40),
                  "city": rng.choice(["x", "y", "z"], 40).tolist(), "dev": rng.choice(["p", "q"], 40).tolist(),
                  "label": (rng.random(40) < 0.5).astype(float)})
    model = fl.Pipeline([
        f.VectorAssembler(input_cols=["a", "b", "c"], output_col="numeric", input_sizes=[1, 1, 1]),
        f.StandardScaler(input_col="numeric", output_col="numeric_scaled"),
        f.FeatureHasher(input_cols=["city", "dev"], categorical_cols=["city", "dev"], output_col="hashed",
                        num_features=64),
        f.VectorAssembler(input_cols=["numeric_scaled", "hashed"], output_col="features", input_sizes=[3, 64]),
        fl.classification.LogisticRegression(),
    ]).fit(t)
    store = ModelStore(str(tmp_path / "s"))
    store.publish(model, metadata={"kind": "batch"})
    client = serve(store)
    g = _get(client, "/api/pipeline")
    assert g["version"] == 1 and g["class"].endswith("PipelineModel")
    labels = [n["label"] for n in g["nodes"]]
    assert labels == ["input", "VectorAssembler", "StandardScalerModel", "FeatureHasher", "VectorAssembler",
                      "LogisticRegressionModel"]
    edges = {(e["source"], e["target"]): e["columns"] for e in g["edges"]}
    assert edges == {(0, 1): ["a", "b", "c"], (1, 2): ["numeric"], (0, 3): ["city", "dev"],
                     (2, 4): ["numeric_scaled"], (3, 4): ["hashed"], (4, 5): ["features"]}
    assert [n["layer"] for n in g["nodes"]] == [0, 1, 2, 1, 3, 4]
    assert g["nodes"][5]["outputs"] == ["prediction", "raw_prediction"]
    assert g["nodes"][3]["params"]["num_features"] == 64
    assert _get(client, "/api/pipeline?version=1") == g


def test_pipeline_graph_of_a_graph_model_and_errors(serve, tmp_path):
    f = fl.feature
    b = fl.GraphBuilder()
    src = b.create_table_id()
    left = b.add_algo_operator(f.VectorAssembler(input_cols=["a"], output_col="u", input_sizes=[1]), src)
    right = b.add_algo_operator(f.VectorAssembler(input_cols=["b"], output_col="v", input_sizes=[1]), src)
    both = b.add_algo_operator(f.VectorAssembler(input_cols=["u"], output_col="w", input_sizes=[1]), left)
    gm = b.build_model([src], [both, right])
    store = ModelStore(str(tmp_path / "s"))
    store.publish(gm)
    store.publish(fl.classification.LogisticRegressionModel().set_model_data(
        {"coefficient": [[1.0]], "intercept": [0.0]}))
    client = serve(store)
    g = _get(client, "/api/pipeline?version=1")
    edges = {(e["source"], e["target"]): e["columns"] for e in g["edges"]}
    assert edges == {(0, 1): ["table 0"], (0, 2): ["table 0"], (1, 3): ["table 1"]}
    assert [n["layer"] for n in g["nodes"]] == [0, 1, 1, 2]
    single = _get(client, "/api/pipeline")     # a bare model: the input and one stage
    assert [n["label"] for n in single["nodes"]] == ["input", "LogisticRegressionModel"]
    assert single["edges"] == [{"source": 0, "target": 1, "columns": ["features"]}]
    assert "must be an integer" in _get(client, "/api/pipeline?version=abc", 400)["error"]
    assert "must be in" in _get(client, "/api/pipeline?version=0", 400)["error"]
    assert "no committed version 9" in _get(client, "/api/pipeline?version=9", 404)["error"]
    # a version whose metadata was changed after publishing is reported, not drawn
    store.publish(gm)
    meta = os.path.join(str(tmp_path / "s"), "versions", f"{3:012d}", "stages", "000", "metadata.json")
    with open(meta, "a") as fh:
        fh.write(" ")
    assert "fails its checksum" in _get(client, "/api/pipeline?version=3", 422)["error"]


# ---------------------------------------------------------------------------------------------
# the command

def test_command_serves_and_stops_on_sigterm(tmp_path):
    store = ModelStore(str(tmp_path / "s"))
    store.publish(fl.classification.LogisticRegressionModel().set_model_data(
        {"coefficient": [[1.0]], "intercept": [0.0]}), metadata={"kind": "batch"})
    os.makedirs(tmp_path / "m")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "flowlearn.cli.dashboard", str(tmp_path / "s"), "--port", "0",
                             "--metrics-dir", str(tmp_path / "m")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert " on http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.rsplit(" on ", 1)[1].strip()
        doc = _strict(urllib.request.urlopen(url + "/api/versions", timeout=10).read().decode())
        assert [(v["version"], v["kind"]) for v in doc["versions"]] == [(1, "batch")]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "stopped" in out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_command_rejects_a_folder_that_is_not_a_store(tmp_path, capsys):
    from flowlearn.cli.dashboard import main

    assert main([str(tmp_path)]) == 2
    assert "is not a model store (no versions/ folder)" in capsys.readouterr().err


def test_metrics_reread_after_appends_and_kafka_store_refused(tmp_path):
    metrics_dir = str(tmp_path / "m")
    ev = StreamingEvaluator("binary", window_rows=2)
    log = EvalLog(metrics_dir, "live")
    data = DashboardData(str(tmp_path / "s"), metrics_dir)
    log(ev.update(fl.table({"label": [0, 1], "raw_prediction": [0.3, 0.7]})))
    assert [r["window"] for r in data.metrics()["evaluations"]["live"]["windows"]] == [0]
    assert data.metrics() == data.metrics()        # unchanged files: the same answer
    log(ev.update(fl.table({"label": [1, 0], "raw_prediction": [0.3, 0.7]})))
    w = data.metrics()["evaluations"]["live"]["windows"]
    assert [(r["window"], r["window_auc"]) for r in w] == [(0, 1.0), (1, 0.0)]
    with pytest.raises(ValueError, match="Kafka model store"):
        DashboardData("kafka://127.0.0.1:9092/models")
    from flowlearn.cli.dashboard import main

    assert main(["kafka://127.0.0.1:9092/models"]) == 2


def test_watch_job_finds_the_gates_of_the_plan(tmp_path, cancer):
    from flowlearn.classification.ftrl import OnlineLogisticRegression
    from flowlearn.dashboard.metrics import gates_of, job_file_name, watch_job

    x, y = cancer
    xs = (x - x.mean(0)) / x.std(0)
    rows = fl.table({"features": fl.linalg.from_numpy(np.tile(xs, (4, 1))), "label": np.tile(y, 4)})
    online = OnlineLogisticRegression(global_batch_size=16, emit_every=500).fit(fls.from_table(rows, batch_size=250))
    held = fl.table({"features": fl.linalg.from_numpy(xs), "label": y})
    gate = ModelGate(metric="auc", min_value=0.95, held_out=held)
    sink = gate.apply(fls.model_stream(online)).to_model_store(ModelStore(str(tmp_path / "s")), producer="ftrl")
    assert gates_of([sink]) == [gate] and gates_of([fls.from_table({"x": [1]}).collect()]) == []
    job = fls.run(sink)
    w = watch_job(job, [sink], str(tmp_path / "m"), name=job_file_name("/jobs/ctr ftrl.v2.py"), interval=0.05)
    job.wait()
    w.close()
    [j] = DashboardData(str(tmp_path / "s"), str(tmp_path / "m")).jobs()["jobs"]
    assert j["job"] == "ctr_ftrl.v2" and j["status"] == "finished"
    store_versions = ModelStore(str(tmp_path / "s")).versions()
    assert [g["version"] for g in j["gates"]] == [r.version for r in gate.results] and len(j["gates"]) >= 4
    assert sum(g["passed"] for g in j["gates"]) == len(store_versions)
    for g, r in zip(j["gates"], gate.results):
        assert g["value"] == pytest.approx(r.value) and g["passed"] == r.passed


def test_served_version_from_the_model_server(serve, tmp_path):
    from serve_helper import cli_server

    store = ModelStore(str(tmp_path / "s"))
    lr = fl.classification.LogisticRegressionModel().set_model_data({"coefficient": [[1.0]], "intercept": [0.0]})
    store.publish(fl.PipelineModel([fl.feature.StandardScaler(input_col="x", output_col="features").fit(
        {"x": [[0.0], [2.0]]}), lr]), metadata={"kind": "batch"})
    with cli_server(str(tmp_path / "s")) as (_proc, url):
        client = serve(store, server=url)
        served = _get(client, "/api/served")
        assert served == {"server": url, "version": 1, "error": None}
        assert _get(client, "/api/config")["server"] == url
        store.publish(lr, metadata={"kind": "online"})      # newest: a bare model, until the server swaps
        deadline = time.monotonic() + 30
        while _get(client, "/api/served")["version"] != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get(client, "/api/served")["version"] == 2
        assert [n["label"] for n in _get(client, "/api/pipeline")["nodes"]] == ["input", "LogisticRegressionModel"]
    gone = _get(serve(store, server=url), "/api/served")      # the server has stopped
    assert gone["version"] is None and gone["error"].startswith(url + "/healthz: ")
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        create_app(store, server="localhost:8080")


def test_job_history_rotates(tmp_path):
    job = fls.run(fls.from_table({"x": [1.0]}).collect())
    job.wait()
    w = JobMetricsWriter(job, str(tmp_path), name="j", max_history_bytes=1024)
    for _ in range(20):
        w.write("finished")
    with open(w.history_path) as f:
        lines = f.readlines()
    assert os.path.getsize(w.history_path + ".1") > 1024 and 0 < len(lines) < 20
    assert os.path.getsize(w.history_path) <= 1024 + len(lines[-1])
    with pytest.raises(ValueError, match="'max_history_bytes' = 10 violates"):
        JobMetricsWriter(job, str(tmp_path), max_history_bytes=10)
