"""flowlearn plans on a standalone Flink cluster (jobmanager and taskmanager started from the
scripts in the apache-flink wheel, on loopback), submitted through ``FlinkEngine(cluster=...)``
and with ``flink run -py``; the taskmanager is killed with SIGKILL mid-run and Flink restarts the job from its checkpoint.
Oracle: the local engine on the same plan. One cluster serves the module."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytest.importorskip("pyflink")

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.classification.ftrl import OnlineLogisticRegression  # noqa: E402
from flowlearn.engines import FlinkEngine, LocalEngine  # noqa: E402
from flowlearn.modelstream import ModelStore  # noqa: E402

pytestmark = pytest.mark.flink

# The cluster's Python workers import flowlearn from the same venv; this module's own functions
# reach them the way a user's do, as a shipped Python file.
SHIP = {"python.files": __file__}


@pytest.fixture(scope="module")
def cluster():
    from flink_cluster import FlinkCluster

    with FlinkCluster(slots=2) as c:
        yield c


def _clicks(n: int, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x @ [1.0, -1.5, 0.5, 2.0] + rng.logistic(size=n) > 0).astype(np.float64)
    return fl.table({"id": np.arange(n), "features": fl.linalg.from_numpy(x), "label": y})


def _versions(data: fls.Stream) -> fls.Stream:
    return fls.model_stream(fls.fit_online(OnlineLogisticRegression(emit_every=2000, global_batch_size=50), data))


class Slow:
    """Passes each batch on after a pause: 200 batches of a source take 20 s or more, long enough for
    checkpoints to complete and the taskmanager to be killed midway."""

    def __call__(self, t: pa.Table) -> pa.Table:
        time.sleep(0.1)
        return t


def _completed_checkpoints(cluster) -> int:
    jobs = [j for j in json.loads(cluster._rest("/jobs/overview"))["jobs"] if j["state"] == "RUNNING"]
    if not jobs:
        return 0
    return json.loads(cluster._rest(f"/jobs/{jobs[0]['jid']}/checkpoints"))["counts"]["completed"]


def test_a_job_on_a_standalone_cluster_survives_a_killed_taskmanager(cluster, tmp_path):
    """Online training and scoring with a model that follows a store, on the cluster with
    checkpoints; the taskmanager process is SIGKILLed once a checkpoint exists and a new one
    started: every version once, bit-identical to the local engine (parallelism 1: the trainer
    sees the batches in the local order), and every row scored once by the store's version."""
    t = _clicks(12_000)
    store = ModelStore(str(tmp_path / "store"))
    batch = fl.classification.LogisticRegression(reg=0.1).fit(t)
    store.publish(batch, {"kind": "batch"})
    with fl.set_engine(LocalEngine()):
        want = _versions(fls.from_table(t, batch_size=60)).to_table()

    versions = _versions(fls.from_table(t, batch_size=60).map_batches(Slow())).collect()
    follower = fls.follow(fls.from_model_store(store, poll_interval=0.2))
    scored = follower.transform(fls.from_table(t, batch_size=60).map_batches(Slow())).collect()
    job = FlinkEngine(parallelism=1, cluster=cluster.address, config=SHIP).run(
        versions, scored, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.5)
    deadline = time.monotonic() + 240
    while job.running and _completed_checkpoints(cluster) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    if not job.running:
        job.wait()   # raises the job's error, if it failed
        pytest.fail("the job ended before it could be killed midway")
    cluster.kill_taskmanager()
    cluster.start_taskmanager()
    job.wait(300)

    got = versions.result()
    assert got.column("model_version").to_pylist() == list(range(1, 7))
    assert got.equals(want)
    out = scored.result().sort_by("id")
    assert out.column("id").to_pylist() == list(range(t.num_rows))            # each row once
    assert set(out.column("model_version").to_pylist()) == {1}
    np.testing.assert_allclose(fl.linalg.to_numpy(out.column("raw_prediction")),
                               fl.linalg.to_numpy(batch.transform(t).column("raw_prediction")), rtol=1e-12)


def test_a_fit_on_the_cluster_equals_the_local_fit(cluster):
    t = _clicks(5000)
    scaler = lambda: fl.feature.StandardScaler(input_col="features", output_col="s", with_mean=True)  # noqa: E731
    with fl.set_engine(FlinkEngine(parallelism=2, cluster=cluster.address, config=SHIP)):
        remote = scaler().fit(fls.from_table(t, batch_size=500))
        positive = fls.from_table(t, batch_size=500).filter(pc.field("label") > 0.5).to_table()
    local = scaler().fit(t)
    for name in ("mean", "std"):
        np.testing.assert_allclose(remote.get_model_data()[0].column(name)[0].as_py(),
                                   local.get_model_data()[0].column(name)[0].as_py(), rtol=1e-12)
    assert sorted(positive.column("id").to_pylist()) == \
        np.flatnonzero(t.column("label").to_numpy() > 0.5).tolist()


def test_a_watched_directory_job_survives_a_killed_taskmanager(cluster, tmp_path):
    """The acceptance of the Flink engine's streaming side: a job on the standalone cluster reads
    a watched directory and scores rows with a pipeline following a model store; a version
    published mid-run reaches the output; the taskmanager is SIGKILLed midway and Flink restarts
    the job from its checkpoint: no row is lost or written twice."""
    from test_flink_engine import run_watched_directory_job

    def kill():
        cluster.kill_taskmanager()
        cluster.start_taskmanager()

    run_watched_directory_job(FlinkEngine(parallelism=2, cluster=cluster.address, config=SHIP), tmp_path, kill)


SCRIPT = '''
import sys
import numpy as np
import pyarrow.compute as pc
import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.engines import FlinkEngine

rng = np.random.default_rng(8)
t = fl.table({"id": np.arange(3000), "a": rng.normal(size=3000)})
model = fl.feature.StandardScaler(input_col="v", output_col="s", with_mean=True).fit(
    fl.feature.VectorAssembler(input_cols=["a"], output_col="v").transform(t))
stream = fl.feature.VectorAssembler(input_cols=["a"], output_col="v").transform(fls.from_table(t, batch_size=250))
sink = model.transform(stream.filter(pc.field("a") > 0)).select("id", "s").to_files(sys.argv[1], format="parquet")
fl.run(sink, engine=FlinkEngine(parallelism=2)).wait()
'''


def test_a_script_submitted_with_flink_run_runs_on_the_cluster(cluster, tmp_path):
    """The way users submit to a session cluster: ``flink run -py script.py``. The script names
    ``FlinkEngine()`` without a cluster; its jobs go to the cluster ``flink run`` submits to (the
    rows are written by the cluster's task managers, not by a mini-cluster of the script's own):
    the committed files hold the rows NumPy selects, scaled as the model scales them."""
    import subprocess
    import sys

    script, out = tmp_path / "score.py", tmp_path / "out"
    script.write_text(SCRIPT)
    before = len(json.loads(cluster._rest("/jobs/overview"))["jobs"])
    r = subprocess.run([os.path.join(cluster.home, "bin", "flink"), "run", "-m", cluster.address,
                        "-py", str(script), str(out)], env={**cluster.env, "PYFLINK_CLIENT_EXECUTABLE": sys.executable},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(json.loads(cluster._rest("/jobs/overview"))["jobs"]) == before + 1   # the job ran on the cluster
    import pyarrow.parquet as pq

    got = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))]).sort_by("id")
    rng = np.random.default_rng(8)
    a = rng.normal(size=3000)
    keep = np.flatnonzero(a > 0)
    assert got.column("id").to_pylist() == keep.tolist()
    s = fl.linalg.to_numpy(got.column("s"))[:, 0]
    np.testing.assert_allclose(s, (a[keep] - a.mean()) / a.std(ddof=1), rtol=1e-12)
