"""The Flink engine on a real PyFlink mini-cluster (``make test`` runs these in ``.venv-flink``,
which has apache-flink 2.3 and its pins). Oracle: the local engine on the same plan, and NumPy /
scikit-learn for the fitted models; one JVM serves the whole module."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from doc_examples import run_doc_examples

pytest.importorskip("pyflink")

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.classification.ftrl import OnlineLogisticRegression  # noqa: E402
from flowlearn.engines import FlinkEngine, LocalEngine  # noqa: E402
from flowlearn.modelstream import ModelStore  # noqa: E402
from flowlearn.trainer import OperatorState  # noqa: E402

pytestmark = pytest.mark.flink

FLINK = FlinkEngine(parallelism=2)


def _data(n: int = 2000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return fl.table({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "city": rng.choice(["oslo", "rome", "lima"], n),
                     "v": fl.linalg.from_numpy(x), "label": (x @ [1.0, -2.0, 0.5] > 0).astype(np.float64)})


def double_a(t: pa.Table) -> pa.Table:
    return t.set_column(t.column_names.index("a"), "a", pc.multiply(t["a"], 2.0))


def _same_rows(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows > 0
    assert got.sort_by("id").equals(want.sort_by("id"))


def test_a_stateless_plan_on_flink_equals_the_local_engine():
    t = _data()
    scaler = fl.feature.StandardScaler(input_col="v", output_col="s", with_mean=True).fit(t)

    def plan():
        s = fls.from_table(t, batch_size=128)
        left = scaler.transform(s).filter(pc.field("a") > 0.0).map_batches(double_a)
        right = s.filter(pc.field("a") <= -1.0).map_batches(double_a).select("id", "a", "b", "city", "v", "label")
        return left.select("id", "a", "b", "city", "v", "label").union(right)

    with fl.set_engine(LocalEngine()):
        want = plan().to_table()
    job = FLINK.run(sink := plan().collect())
    job.wait()
    assert len(job.collected(sink)) > 1 and job.metrics["rows_out"] == want.num_rows
    _same_rows(sink.result(), want)
    # closed form: rows with a > 0 doubled, plus rows with a <= -1 doubled
    a = t.column("a").to_numpy()
    np.testing.assert_allclose(np.sort(want.column("a").to_numpy()), np.sort(2 * a[(a > 0) | (a <= -1.0)]))


def test_batches_and_fit_states_above_flinks_collect_limit_reach_the_client_whole():
    """Flink's collect sink refuses records above 2 MB; a 6.4 MB batch and a multi-megabyte
    partial state (an exact quantile summary) travel in chunks and arrive whole."""
    rng = np.random.default_rng(5)
    t = fl.table({"id": np.arange(50_000), "v": fl.linalg.from_numpy(rng.normal(size=(50_000, 16)))})
    with fl.set_engine(FLINK):
        got = fls.from_table(t, batch_size=50_000).to_table()
        scaler = fl.feature.RobustScaler(input_col="v", output_col="s", relative_error=0.0).fit(
            fls.from_table(t, batch_size=50_000))
    assert got.equals(t)
    want = fl.feature.RobustScaler(input_col="v", output_col="s", relative_error=0.0).fit(t)
    assert scaler.get_model_data()[0].equals(want.get_model_data()[0])


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_files_are_read_in_parallel_and_give_the_local_rows(tmp_path, fmt):
    t = _data(900).select(["id", "a", "b", "city"])
    for i in range(3):
        getattr(fl, f"write_{fmt}")(t.slice(300 * i, 300), str(tmp_path / f"part-{i}.{fmt}"))
    schema = "id long, a double, b double, city string"
    plan = lambda: fls.from_files(str(tmp_path), format=fmt, schema=schema, batch_size=50).filter(  # noqa: E731
        pc.field("b") > 0.0)
    with fl.set_engine(LocalEngine()):
        want = plan().to_table()
    with fl.set_engine(FLINK):
        _same_rows(plan().to_table(), want)


@pytest.mark.parametrize("make", [
    lambda: fl.feature.StandardScaler(input_col="v", output_col="s", with_mean=True),
    lambda: fl.feature.MinMaxScaler(input_col="v", output_col="s"),
    lambda: fl.feature.StringIndexer(input_cols=["city"], output_cols=["ci"], string_order_type="frequencyDesc"),
    lambda: fl.feature.Imputer(input_cols=["a", "b"], output_cols=["ai", "bi"], strategy="mean"),
], ids=["StandardScaler", "MinMaxScaler", "StringIndexer", "Imputer"])
def test_one_pass_fits_merge_parallel_partials_into_the_local_model(make):
    t = _data()
    local = make().fit(t)
    with fl.set_engine(FLINK):
        flink = make().fit(fls.from_table(t, batch_size=97))
    for a, b in zip(local.get_model_data(), flink.get_model_data()):
        for name in a.column_names:
            x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
            if pa.types.is_floating(a.column(name).type) or pa.types.is_fixed_size_list(a.column(name).type):
                # the merge adds the parts' sums in another order: equal to rounding
                np.testing.assert_allclose(np.array(y, dtype=float), np.array(x, dtype=float), rtol=1e-12)
            else:
                assert x == y, name
    # an independent oracle for one of them: NumPy's mean and sample standard deviation
    if isinstance(flink, fl.feature.StandardScalerModel):
        md = flink.get_model_data()[0]
        v = fl.linalg.to_numpy(t.column("v"))
        np.testing.assert_allclose(md.column("mean")[0].as_py(), v.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(md.column("std")[0].as_py(), v.std(axis=0, ddof=1), rtol=1e-12)


def test_a_pipeline_fitted_on_flink_predicts_as_the_local_one(monkeypatch):
    t = _data()
    pipe = lambda: fl.Pipeline([  # noqa: E731
        fl.feature.StandardScaler(input_col="v", output_col="features", with_mean=True),
        fl.classification.LogisticRegression(reg=0.01),
    ])
    local = pipe().fit(t)
    jobs = []
    run_job = FlinkEngine._map_collect
    monkeypatch.setattr(FlinkEngine, "_map_collect", lambda self, *a: jobs.append(a[2]) or run_job(self, *a))
    with fl.set_engine(FLINK):
        flink = pipe().fit(fls.from_table(t, batch_size=256))
    # each stage fitted on Flink: the scaler's partials, then the L-BFGS rounds on the scaled plan
    assert jobs[0] == "partial" and jobs[1] == "shape" and set(jobs[2:]) == {"round"} and len(jobs) > 3
    # the same optimum (the acceptance: probabilities within 1e-4; the merged sums differ in rounding)
    np.testing.assert_allclose(fl.linalg.to_numpy(flink.transform(t).column("raw_prediction")),
                               fl.linalg.to_numpy(local.transform(t).column("raw_prediction")), rtol=0, atol=1e-4)


def test_thread_mode_runs_chains_trainers_and_fits_as_the_local_engine():
    """Python inside the task manager's JVM (PyFlink's thread mode), on the JVM's task threads;
    same results as the local engine: rows of a stateless plan, the FTRL versions bit for bit at
    parallelism 1 and a one-pass fit merged from parallel partials; a source feeding two branches
    and a model trained in the same job scoring a stream, which hung before thread mode turned
    operator chaining off for them (two embedded interpreters chained into one task deadlock
    when Arrow frees a buffer)."""
    t = _data()
    scaler = fl.feature.StandardScaler(input_col="v", output_col="s", with_mean=True)
    plan = lambda: scaler.fit(t).transform(fls.from_table(t, batch_size=128)).filter(  # noqa: E731
        pc.field("a") > 0.0).map_batches(double_a)
    branches = lambda s: s.filter(pc.field("a") > 0.0).union(s.filter(pc.field("a") <= 0.0))  # noqa: E731
    clicks = _clicks(8000)
    with fl.set_engine(LocalEngine()):
        rows = plan().to_table()
        versions = _versions(fls.from_table(clicks, batch_size=500)).to_table()
    # the task manager's Python imports this module's functions as a cluster's workers would
    ship = ",".join(os.path.join(os.path.dirname(__file__), f) for f in ("test_flink_engine.py", "doc_examples.py"))
    thread_mode = dict(mode="thread", config={"python.files": ship})
    with fl.set_engine(FlinkEngine(parallelism=2, **thread_mode)):
        _same_rows(plan().to_table(), rows)
        _same_rows(branches(fls.from_table(t, batch_size=128)).to_table(), t)
        fitted = scaler.fit(fls.from_table(t, batch_size=97))
    np.testing.assert_allclose(fitted.get_model_data()[0].column("std")[0].as_py(),
                               fl.linalg.to_numpy(t.column("v")).std(axis=0, ddof=1), rtol=1e-12)
    with fl.set_engine(FlinkEngine(parallelism=1, **thread_mode)):
        assert _versions(fls.from_table(clicks, batch_size=500)).to_table().equals(versions)
        model = fls.fit_online(_ftrl(), fls.from_table(clicks, batch_size=500))
        scored = model.transform(fls.from_table(clicks, batch_size=500)).to_table()
    assert sorted(scored.column("id").to_pylist()) == list(range(clicks.num_rows))
    for v in set(scored.column("model_version").to_pylist()):   # each row scored by its stamped version
        rows = scored.filter(pc.field("model_version") == v).sort_by("id")
        want = fls.read_version(versions.slice(v - 1, 1)).model().transform(clicks.take(rows.column("id")))
        assert rows.column("prediction").equals(want.column("prediction"))


def test_an_empty_input_fails_as_it_does_locally():
    t = _data(10).slice(0, 0)
    with fl.set_engine(FLINK), pytest.raises(ValueError, match="at least one row"):
        fl.feature.StandardScaler(input_col="v").fit(fls.from_table(t))


def test_what_is_not_translated_yet_is_refused_by_node_before_anything_runs(tmp_path):
    t = _data(50)
    s = fls.from_table(t)
    with pytest.raises(NotImplementedError, match="reads the side output 'dead_letter' of 'from_table'"):
        FLINK.run(s.dead_letters().collect())
    (tmp_path / "in").mkdir()
    with pytest.raises(NotImplementedError, match="a watched directory with a pattern \\('\\*.csv'\\) is not"):
        FLINK.run(fls.from_files(str(tmp_path / "in"), format="csv", schema="a double", pattern="*.csv",
                                 watch=True).to_files(str(tmp_path / "out"), format="csv"))
    with pytest.raises(NotImplementedError, match="is unbounded; the Flink engine reads streams that do not end from"):
        FLINK.run(fls.generate(lambda i: {"a": [1.0]}).collect())
    ending = fls.from_kafka("t", "127.0.0.1:9", schema="a double", stop_at_end=True)
    with pytest.raises(NotImplementedError, match="stops at the topic's end"):
        FLINK.run(ending.window(count=10).aggregate(n=("a", "count")).collect())
    with pytest.raises(ValueError, match="parameter 'parallelism' = 0 violates gt_eq\\(1\\)"):
        FlinkEngine(parallelism=0)


def test_the_running_on_flink_examples_run():
    run_doc_examples("flink.md")


def test_logistic_regression_rounds_run_on_flink_and_reach_the_local_optimum():
    """A job per L-BFGS evaluation, its partials in parallel on the task managers; the same optimum
    as the local fit (the acceptance: probabilities within 1e-4)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(400, 3))
    t = fl.table({"features": fl.linalg.from_numpy(x), "label": (x @ [1.5, -1.0, 0.5] + 0.2 > 0).astype(float)})
    local = fl.classification.LogisticRegression(reg=0.1).fit(t)
    with fl.set_engine(FLINK):
        flink = fl.classification.LogisticRegression(reg=0.1).fit(fls.from_table(t, batch_size=50))
    p_local = fl.linalg.to_numpy(local.transform(t).column("raw_prediction"))
    p_flink = fl.linalg.to_numpy(flink.transform(t).column("raw_prediction"))
    np.testing.assert_allclose(p_flink, p_local, atol=1e-4)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_to_files_on_flink_commits_the_rows_of_the_local_engine_once(tmp_path, fmt):
    t = _data(700).select(["id", "a", "city"])
    plan = lambda out: fls.from_table(t, batch_size=64).filter(pc.field("a") > 0.0).to_files(str(out), format=fmt)  # noqa: E731
    fl.run(plan(tmp_path / "local"), engine=LocalEngine()).wait()
    job = FLINK.run(plan(tmp_path / "flink")).wait()
    read = {"parquet": fl.read_parquet, "csv": fl.read_csv, "json": fl.read_json}[fmt]
    schema = "id long, a double, city string"

    def rows(folder):
        parts = sorted(p for p in folder.iterdir() if p.is_file())
        return pa.concat_tables([read(str(p), schema=schema) if fmt != "parquet" else read(str(p)) for p in parts])

    _same_rows(rows(tmp_path / "flink"), rows(tmp_path / "local"))
    assert job.metrics["rows_out"] == int((t.column("a").to_numpy() > 0).sum())
    assert os.listdir(tmp_path / "flink" / ".inprogress") == []


def test_two_file_sinks_sharing_a_source_each_get_its_rows_once_and_leave_nothing_in_progress(tmp_path):
    """Python operators above a node with two consumers run once (PyFlink's chaining applied to
    the whole job): both sinks commit their rows and no orphan in-progress file stays."""
    t = _data(700).select(["id", "a"])
    s = fls.from_table(t, batch_size=64)
    FLINK.run(s.to_files(str(tmp_path / "all"), format="parquet"),
              s.map_batches(double_a).to_files(str(tmp_path / "doubled"), format="parquet")).wait()
    for name, want in (("all", t), ("doubled", double_a(t))):
        parts = sorted(p for p in (tmp_path / name).iterdir() if p.is_file())
        _same_rows(pa.concat_tables([fl.read_parquet(str(p)) for p in parts]), want)
        assert os.listdir(tmp_path / name / ".inprogress") == []


def test_a_failed_flink_job_leaves_no_file(tmp_path):
    t = _data(300).select(["id", "a"])
    job = FLINK.run(fls.from_table(t, batch_size=50).map_batches(fail_on_a_late_batch).to_files(str(tmp_path)))
    with pytest.raises(Exception, match="a late batch"):
        job.wait()
    assert [p.name for p in tmp_path.iterdir()] == [".inprogress"] and os.listdir(tmp_path / ".inprogress") == []


def fail_on_a_late_batch(t: pa.Table) -> pa.Table:
    if t.column("id")[0].as_py() >= 250:
        raise RuntimeError("a late batch")
    return t


def test_an_empty_directory_is_an_empty_result(tmp_path):
    with fl.set_engine(FLINK):
        assert fls.from_files(str(tmp_path), format="csv", schema="a double").to_table().num_rows == 0


# -- online training and model streams -------------------------------------------------------------
def _clicks(n: int = 24_000, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (x @ [1.0, -2.0, 0.5, 0.0, 1.0, -0.5] + rng.logistic(size=n) > 0).astype(np.float64)
    return fl.table({"id": np.arange(n), "features": fl.linalg.from_numpy(x), "label": y})


def _ftrl() -> OnlineLogisticRegression:
    return OnlineLogisticRegression(emit_every=4000, global_batch_size=50, alpha=0.5)


def _versions(data: fls.Stream) -> fls.Stream:
    return fls.model_stream(fls.fit_online(_ftrl(), data))


def test_ftrl_on_flink_at_parallelism_1_equals_the_local_engine_bit_for_bit():
    t = _clicks()
    with fl.set_engine(LocalEngine()):
        want = _versions(fls.from_table(t, batch_size=500)).to_table()
    with fl.set_engine(FlinkEngine(parallelism=1)):
        got = _versions(fls.from_table(t, batch_size=500)).to_table()
    assert got.column("model_version").to_pylist() == list(range(1, 7))
    assert got.equals(want)


class ProgressiveLogLoss:
    """Test-then-train log loss of an online estimator (each row predicted before the trainer
    learns from it), as a checkpointed per-batch computation (``map_stateful``)."""

    def __init__(self, estimator) -> None:
        self.trainer, self.loss, self.rows = estimator.trainer(), 0.0, 0

    def update(self, t: pa.Table) -> None:
        p, _ = self.trainer.predict_and_partial_fit(t)
        y = t.column("label").to_numpy()
        p = np.clip(p, 1e-15, 1 - 1e-15)
        self.loss += float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())
        self.rows += t.num_rows

    def flush(self) -> pa.Table:
        return pa.table({"log_loss": [self.loss / self.rows], "rows": [self.rows]})

    def snapshot_state(self) -> OperatorState:
        st = self.trainer.snapshot_state()
        return OperatorState({"trainer": st.data, "loss": self.loss, "rows": self.rows}, st.tables)

    def restore_state(self, state: OperatorState) -> None:
        self.trainer.restore_state(OperatorState(state.data["trainer"], state.tables))
        self.loss, self.rows = state.data["loss"], state.data["rows"]


def test_ftrl_on_flink_at_parallelism_2_reaches_the_local_progressive_log_loss():
    """Parallel reading and feature work, one global trainer: batches reach it in another order
    than locally, so the acceptance is a progressive log loss within 2% of the local one."""
    t = _clicks()
    plan = lambda: fls.from_table(t, batch_size=500).map_batches(double_a_feature).map_stateful(  # noqa: E731
        ProgressiveLogLoss(_ftrl()))
    with fl.set_engine(LocalEngine()):
        want = plan().to_table()
    with fl.set_engine(FlinkEngine(parallelism=2)):
        got = plan().to_table()
    assert got.column("rows").to_pylist() == [t.num_rows]
    local, flink = want.column("log_loss")[0].as_py(), got.column("log_loss")[0].as_py()
    assert 0.2 < local < 0.6
    assert abs(flink - local) <= 0.02 * local


def double_a_feature(t: pa.Table) -> pa.Table:
    x = fl.linalg.to_numpy(t.column("features")).copy()
    x[:, 0] *= 2.0
    return t.set_column(t.column_names.index("features"), "features", fl.linalg.from_numpy(x))


class FailOnce:
    """Fails the job once, at the ``at``-th batch this worker sees, while ``marker`` exists."""

    def __init__(self, marker: str, at: int) -> None:
        self.marker, self.at, self.seen = marker, at, 0

    def __call__(self, t: pa.Table) -> pa.Table:
        self.seen += 1
        time.sleep(0.02)   # a few checkpoints (every 0.2 s) before the failure
        if self.seen == self.at and os.path.exists(self.marker):
            os.remove(self.marker)
            raise RuntimeError("injected failure")
        return t


class Logged:
    """Appends a line to ``path`` for each batch it passes on (in any worker of this machine)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, t: pa.Table) -> pa.Table:
        with open(self.path, "a") as f:
            f.write(f"{t.column('id')[0].as_py()}\n")
        return t


def test_a_failed_training_job_restarts_from_its_checkpoint_and_emits_each_version_once(tmp_path):
    """The trainer reads its table itself, one call at a time, and checkpoints complete while it
    reads: the failure at the 40th of 60 batches restarts the job from a checkpoint taken in the
    middle of the table, so fewer than all 60 batches are read again, and each version comes
    out once, equal to the local engine's."""
    t = _clicks(30_000)
    with fl.set_engine(LocalEngine()):
        want = _versions(fls.from_table(t, batch_size=500)).to_table()
    marker, log = tmp_path / "fail", tmp_path / "read"
    marker.touch()
    read = fls.from_table(t, batch_size=500).map_batches(Logged(str(log))).map_batches(FailOnce(str(marker), 40))
    sink = _versions(read).collect()
    FlinkEngine(parallelism=1).run(sink, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2).wait(300)
    assert not marker.exists()                      # the failure happened
    got = sink.result()
    assert got.column("model_version").to_pylist() == list(range(1, 9))
    assert got.equals(want)
    again = len(log.read_text().splitlines()) - 40   # batches read after the restart
    assert 0 < again < 50, again                       # (from the start of the table: 60)


def test_a_table_too_large_for_the_job_graph_is_read_from_a_spilled_arrow_file(monkeypatch):
    """Above the job-graph limit a from_table source read by Python outside the client's process
    (thread mode, a cluster) is written once to an Arrow IPC file that the readers memory-map, a
    record batch per slice: the slices (of a table whose chunks do not line up with them) and the
    trainer reading them itself give the local engine's results exactly. In process mode on the
    local mini-cluster the workers run in the client's process and read the table where it is:
    nothing is copied into the job or spilled, and the table is let go when the job ends."""
    import flowlearn.engines.flink as flink_engine
    import flowlearn.engines.flink_functions as flink_functions

    monkeypatch.setattr(flink_engine, "_SHIPPED_TABLE_BYTES", 1000)
    t = _clicks(9000)
    chunked = pa.Table.from_batches(t.to_batches(max_chunksize=700))
    with fl.set_engine(LocalEngine()):
        want = _versions(fls.from_table(t, batch_size=500)).to_table()
    ship = ",".join(os.path.join(os.path.dirname(__file__), f) for f in ("test_flink_engine.py", "doc_examples.py"))
    with fl.set_engine(FlinkEngine(parallelism=1, mode="thread", config={"python.files": ship})):
        got = _versions(fls.from_table(chunked, batch_size=500)).to_table()
        rows = fls.from_table(chunked, batch_size=500).map_batches(lambda b: b).to_table()
    assert got.equals(want)
    _same_rows(rows, t)
    far = FlinkEngine(cluster="flink.example.com:8081")   # task managers that cannot read the client's copy
    with pytest.raises(ValueError, match="\\(TableSourceSpec\\) is a from_table source of \\d+ MB.*another machine"):
        far.run(fls.from_table(t, batch_size=500).collect())
    monkeypatch.setattr(FlinkEngine, "_spill", lambda *a: pytest.fail("a table read in the client was spilled"))
    with fl.set_engine(FlinkEngine(parallelism=1)):
        got = _versions(fls.from_table(chunked, batch_size=500)).to_table()
        rows = fls.from_table(chunked, batch_size=500).map_batches(lambda b: b).to_table()
    assert got.equals(want)
    _same_rows(rows, t)
    assert not flink_functions.CLIENT_TABLES


def test_process_mode_workers_start_without_pyflinks_boot_imports():
    """On the session mini-cluster a process-mode job's Python worker is started by flink_boot's
    launcher (PyFlink's boot command, run as python.executable), which hands it to the client's
    BootServer; any other command runs the real interpreter."""
    import subprocess

    import flowlearn.engines.flink as flink_engine

    with fl.set_engine(FlinkEngine(parallelism=1)):
        fls.from_table(_data(10)).to_table()
        server = flink_engine._BOOT[0]
        before = server.started
        _same_rows(fls.from_table(_data(10)).map_batches(double_a).to_table(), double_a(_data(10)))
    assert server.started == before + 1
    out = subprocess.run([server.script, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
    assert out.stdout.strip() == sys.executable


def _log_loss(model, t: pa.Table) -> float:
    p = np.clip(np.asarray(model.transform(t).column("raw_prediction").to_pylist())[:, 1], 1e-15, 1 - 1e-15)
    y = t.column("label").to_numpy()
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def test_versions_trained_on_flink_are_published_into_a_store_once(tmp_path):
    t = _clicks(12_000)
    store = ModelStore(str(tmp_path / "store"))
    coefficients = lambda model: np.asarray(  # noqa: E731
        model.get_model_data()[0].column("coefficient").to_pylist())
    published = []
    for _ in range(2):   # the second run finds its versions in the store and publishes none again
        sink = _versions(fls.from_table(t, batch_size=500)).to_model_store(store, producer="ftrl")
        FlinkEngine(parallelism=2).run(sink).wait(300)
        assert store.versions() == [1, 2, 3]
        published.append([coefficients(store.load(v).model) for v in store.versions()])
    # at parallelism 2 the two readers interleave their batches differently in each run, so a
    # second publication would have replaced the versions with different coefficients
    for first, second in zip(*published):
        np.testing.assert_array_equal(first, second)
    md = [store.version_info(v)["metadata"] for v in store.versions()]
    assert [m["model_version"] for m in md] == [1, 2, 3] and {m["kind"] for m in md} == {"online"}
    # the trainer saw the same rows as the local engine's in another order of whole batches, so
    # the last version fits the data as well as the local one (log loss within 2%)
    with fl.set_engine(LocalEngine()):
        want = _versions(fls.from_table(t, batch_size=500)).to_table()
    local = _log_loss(fls.read_version(want.slice(2, 1)).model(), t)
    assert 0.2 < local < 0.6
    assert abs(_log_loss(store.load(3).model, t) - local) <= 0.02 * local


def test_a_model_trained_in_the_job_scores_the_stream_on_every_worker():
    t = _clicks(12_000)
    model = fls.fit_online(_ftrl(), fls.from_table(t, batch_size=500))
    versions_sink = fls.model_stream(model).collect()
    scored_sink = model.transform(fls.from_table(t, batch_size=500)).collect()
    job = FlinkEngine(parallelism=2).run(versions_sink, scored_sink)
    job.wait(300)
    versions = pa.concat_tables(job.collected(versions_sink)).sort_by("model_version")   # two sink tasks
    scored = pa.concat_tables(job.collected(scored_sink))
    assert versions.column("model_version").to_pylist() == [1, 2, 3]
    assert sorted(scored.column("id").to_pylist()) == list(range(t.num_rows))
    assert set(scored.column("model_version").to_pylist()) <= {1, 2, 3}
    # each row's prediction is the one of the version stamped on it (the versions this job
    # trained: at parallelism 2 they differ from the local engine's with the batches' order)
    for v in set(scored.column("model_version").to_pylist()):
        rows = scored.filter(pc.field("model_version") == v).sort_by("id")
        m = fls.read_version(versions.slice(v - 1, 1)).model()
        want = m.transform(t.take(rows.column("id"))).column("prediction")
        assert rows.column("prediction").equals(want)


class Slow:
    """Passes batches on slowly, touching ``started`` when the third arrives (two were scored)."""

    def __init__(self, started: str) -> None:
        self.started, self.seen = started, 0

    def __call__(self, t: pa.Table) -> pa.Table:
        self.seen += 1
        if self.seen == 3:
            open(self.started, "a").close()
        time.sleep(0.1)
        return t


def test_a_model_following_a_store_swaps_to_a_version_published_mid_run(tmp_path):
    t = _data(6000)
    store = ModelStore(str(tmp_path / "store"))
    lr = lambda reg: fl.Pipeline([  # noqa: E731
        fl.feature.StandardScaler(input_col="v", output_col="features"),
        fl.classification.LogisticRegression(reg=reg)]).fit(t)
    first, second = lr(0.01), lr(1.0)
    store.publish(first, {"kind": "batch"})
    follower = fls.follow(fls.from_model_store(store, poll_interval=0.1))
    started = tmp_path / "started"
    sink = follower.transform(fls.from_table(t, batch_size=100).map_batches(Slow(str(started)))).collect()
    job = FlinkEngine(parallelism=2).run(sink)
    while not started.exists() and job.running:   # a worker has scored two batches (28 more follow)
        time.sleep(0.05)
    store.publish(second, {"kind": "batch"})
    job.wait(300)
    out = sink.result().sort_by("id")
    assert out.column("id").to_pylist() == list(range(t.num_rows))
    versions = out.column("model_version").to_numpy()
    assert set(versions) == {1, 2} and versions[-1] == 2
    for v, m in ((1, first), (2, second)):   # every row scored by the version it is stamped with
        rows = out.filter(pc.field("model_version") == v)
        want = m.transform(t.take(rows.column("id")))
        np.testing.assert_allclose(fl.linalg.to_numpy(rows.column("raw_prediction")),
                                   fl.linalg.to_numpy(want.column("raw_prediction")), rtol=1e-12)


# -- Kafka through Flink's connector, on Apache Kafka ------------------------------------------------
def test_kafka_to_kafka_on_flink_is_exactly_once_through_a_failure(real_kafka, tmp_path):
    """from_kafka -> a fitted scaler, a filter, a select -> to_kafka, on Flink's Kafka connector
    with checkpoints; a failure mid-run restarts the job from its checkpoint, and read_committed
    readers see exactly the rows the local engine writes."""
    import json

    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic

    from flowlearn.testing.kafka import read_topic

    bs = real_kafka
    names = {k: f"{k}-{os.getpid()}-{time.monotonic_ns()}" for k in ("in", "local", "flink")}
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(t, 3 if k == "in" else 1, 1) for k, t in names.items()]).values():
        f.result(30)
    rng = np.random.default_rng(2)
    p = ck.Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i in range(3000):
        p.produce(names["in"], json.dumps({"id": i, "a": float(rng.normal()), "city": ["oslo", "rome"][i % 2]}),
                  partition=i % 3)
    assert p.flush(30) == 0
    scaler = fl.Pipeline([fl.feature.VectorAssembler(input_cols=["a"], output_col="v"),   # a fitted model
                          fl.feature.MinMaxScaler(input_col="v", output_col="s")]).fit(_data(500).select(["a"]))

    def plan(out: str, step) -> fls.Stream:
        s = fls.from_kafka(names["in"], bs, schema="id long, a double, city string", start="earliest",
                           stop_at_end=True)
        return scaler.transform(s.map_batches(step)).filter(pc.field("a") > -0.5).select("id", "s", "city") \
            .to_kafka(out, bs)

    fl.run(plan(names["local"], lambda b: b), engine=LocalEngine(), checkpoint_dir=str(tmp_path / "lck"),
           checkpoint_interval=0.2).wait(120)
    marker = tmp_path / "fail"
    marker.touch()
    FlinkEngine(parallelism=2, config={"python.fn-execution.arrow.batch.size": "100"}).run(
        plan(names["flink"], FailOnce(str(marker), 8)), checkpoint_dir=str(tmp_path / "ck"),
        checkpoint_interval=0.3).wait(300)
    assert not marker.exists()                       # the failure happened
    want = [json.loads(v) for v in read_topic(bs, names["local"], 1, timeout=60)]
    got = [json.loads(v) for v in read_topic(bs, names["flink"], len(want), timeout=60)]
    assert len(want) > 1000 and sorted(got, key=lambda r: r["id"]) == sorted(want, key=lambda r: r["id"])


# -- a watched directory, scored by a model following a store ------------------------------------------
def _committed_rows(folder) -> list[dict]:
    """The rows of the committed part files (Flink's in-progress files start with a dot)."""
    import json

    rows = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            rows += [json.loads(line) for line in p.read_text().splitlines() if line]
    return rows


def run_watched_directory_job(engine: FlinkEngine, tmp_path, kill=None) -> None:
    """A streaming job reads a watched directory (files arriving over time), scores every row
    with a pipeline following a model store and writes JSON lines files; a version published
    mid-run reaches the output; ``kill()`` (if given) fails the job midway. Every row comes out
    exactly once, stamped with a version that scored it."""
    t = _data(3000)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    store = ModelStore(str(tmp_path / "store"))
    lr = lambda reg: fl.Pipeline([  # noqa: E731
        fl.feature.VectorAssembler(input_cols=["a", "b"], output_col="features"),
        fl.classification.LogisticRegression(reg=reg)]).fit(t)
    first, second = lr(0.01), lr(10.0)
    store.publish(first, {"kind": "batch"})
    follower = fls.follow(fls.from_model_store(store, poll_interval=0.2))
    stream = fls.from_files(str(inbox), format="json", schema="id long, a double, b double, label double",
                            watch=True, poll_interval=0.5)
    sink = follower.transform(stream).select("id", "prediction", "model_version").to_files(str(out), format="json")
    job = engine.run(sink, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.5)
    parts = 10
    try:
        for i in range(parts):
            fl.write_json(t.select(["id", "a", "b", "label"]).slice(300 * i, 300), str(inbox / f"part-{i}.json"))
            if i == 3:   # once rows of the first version are committed, a new version is published
                deadline = time.monotonic() + 120
                while not _committed_rows(out) and time.monotonic() < deadline:
                    if not job.running:
                        job.wait()   # raises the job's error
                        pytest.fail("the job ended")
                    time.sleep(0.2)
                store.publish(second, {"kind": "batch"})
            if i == 6 and kill is not None:
                kill()
            time.sleep(1.0)
        deadline = time.monotonic() + 240
        while len(_committed_rows(out)) < t.num_rows and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        job.stop()
    rows = _committed_rows(out)
    ids = sorted(r["id"] for r in rows)
    assert ids == list(range(t.num_rows))                       # every row once: none lost, none twice
    by_id = {r["id"]: r for r in rows}
    versions = {r["model_version"] for r in rows}
    assert versions == {1, 2}
    assert {by_id[i]["model_version"] for i in range(2700, 3000)} == {2}   # files after the publish
    for v, m in ((1, first), (2, second)):
        mine = [i for i in ids if by_id[i]["model_version"] == v]
        want = m.transform(t.take(mine)).column("prediction").to_pylist()
        assert [by_id[i]["prediction"] for i in mine] == want


def test_a_watched_directory_job_on_flink_scores_every_row_once(tmp_path):
    run_watched_directory_job(FlinkEngine(parallelism=2), tmp_path)


# -- streams that do not end, into stateful plans ----------------------------------------------------
def _wait_for(job, sink, rows: int, timeout: float = 120) -> pa.Table:
    """The collected rows of ``sink`` once there are at least ``rows`` (fails if the job ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = job.collected(sink)
        if sum(t.num_rows for t in got) >= rows:
            return pa.concat_tables(got)
        if not job.running:
            job.wait()   # raises the job's error
            pytest.fail("the job ended")
        time.sleep(0.2)
    pytest.fail(f"fewer than {rows} rows after {timeout} s")


def _ftrl_on_columns(data: fls.Stream) -> fls.Stream:
    feats = fl.feature.VectorAssembler(input_cols=["a", "b", "c"], output_col="features").transform(data)
    return fls.model_stream(fls.fit_online(OnlineLogisticRegression(emit_every=500, global_batch_size=50), feats))


def _labelled(n: int = 1500) -> pa.Table:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, 3))
    return fl.table({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                     "label": (x @ [1.0, -2.0, 0.5] + rng.logistic(size=n) > 0).astype(np.float64)})


def test_online_training_from_a_kafka_topic_on_flink_survives_a_failure_and_equals_the_local_engine(
        real_kafka, tmp_path):
    """from_kafka (one partition, so one order) -> VectorAssembler -> FTRL -> versions, on Flink
    with checkpoints while messages keep arriving; a failure injected mid-run restarts the job from
    its checkpoint (the topic's offsets and the records of unfired windows in Flink's state, the
    trainer's state in keyed state). Every version comes out once, bit-identical to the local
    engine trained on the same rows."""
    import json

    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic

    t = _labelled()
    with fl.set_engine(LocalEngine()):
        want = _ftrl_on_columns(fls.from_table(t, batch_size=100)).to_table()
    topic = f"clicks-{os.getpid()}-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": real_kafka})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    producer = ck.Producer({"bootstrap.servers": real_kafka, "linger.ms": 5})

    def produce(part: pa.Table) -> None:
        for row in part.to_pylist():
            producer.produce(topic, json.dumps(row))
        assert producer.flush(30) == 0

    marker = tmp_path / "fail"
    marker.touch()
    src = fls.from_kafka(topic, real_kafka, schema="id long, a double, b double, c double, label double",
                         start="earliest")
    sink = _ftrl_on_columns(src.map_batches(FailOnce(str(marker), 2))).collect()
    job = FlinkEngine(parallelism=1).run(sink, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.3)
    try:
        for k in range(3):   # 500 rows a part: a version each; the second part's first batch fails
            produce(t.slice(500 * k, 500))
            got = _wait_for(job, sink, k + 1)
    finally:
        job.stop()
    assert not marker.exists()                                  # the failure happened
    assert got.column("model_version").to_pylist() == [1, 2, 3]  # each version once
    assert got.to_pydict() == want.to_pydict()


def test_event_time_windows_over_a_watched_directory_on_flink_count_every_row(tmp_path):
    """A watched directory of CSV files (a minute of events each, arriving one by one) -> event-time
    windows of a minute at parallelism 2, on Flink's watermarks (a quiet file's window task does
    not hold them back): each window that the watermark passed fires once, with the rows NumPy
    counts for it."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    rng = np.random.default_rng(5)
    views = fls.from_files(str(inbox), format="csv", schema="t double, user string, ms double", watch=True,
                           poll_interval=0.2)
    minutes = views.window(event_time=60.0, time_col="t", max_out_of_orderness=60.0).aggregate(
        by="user", n=("ms", "count")).collect()
    rows = views.collect()   # paces the test: each file is read before the next one arrives
    job = FlinkEngine(parallelism=2).run(minutes, rows, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.3)
    written = []
    try:
        for k in range(5):
            t = fl.table({"t": 60.0 * k + rng.uniform(0, 60, 200), "user": rng.choice(["a", "b"], 200),
                          "ms": rng.uniform(size=200)})
            fl.write_csv(t, str(inbox / f"views-{k}.csv"))
            written.append(t)
            _wait_for(job, rows, 200 * (k + 1))
        got = _wait_for(job, minutes, 6)   # the watermark (last minute's max - 60 s) passed minutes 0, 1 and 2
        time.sleep(1.0)                    # and no other window fires
        got = pa.concat_tables(job.collected(minutes))
    finally:
        job.stop()
    events = pa.concat_tables(written)
    minute = np.floor(events.column("t").to_numpy() / 60).astype(int)
    users = events.column("user").to_numpy(zero_copy_only=False)
    want = {(m * 60_000, u): int(((minute == m) & (users == u)).sum()) for m in range(3) for u in ("a", "b")}
    starts = pc.cast(got.column("window_start"), pa.int64()).to_pylist()
    assert dict(zip(zip(starts, got.column("user").to_pylist()), got.column("n").to_pylist())) == want
    assert got.num_rows == len(want)


class Paced:
    """Passes each batch on after ``seconds`` and adds a byte to the file ``progress``: a bounded
    source that lasts long enough for a model to be published while it is read, at a known point."""

    def __init__(self, seconds: float, progress: str) -> None:
        self.seconds, self.progress = seconds, progress

    def __call__(self, t: pa.Table) -> pa.Table:
        time.sleep(self.seconds)
        with open(self.progress, "ab") as f:
            f.write(b".")
        return t


def test_a_trainer_rebased_by_a_model_store_restarts_from_the_published_batch_model(tmp_path):
    """fit_online(..., rebase=store) on Flink: the trainer's task polls the store; a batch model
    published mid-run resets the trainer to it. The versions before the rebase are those of an
    uninterrupted trainer on the rows before it; those after it are a fresh trainer's started
    from the batch model on the rows after it (numbered above the batch model), bit for bit, and
    NumPy's mini-batch FTRL-Proximal warm-started from the batch model's weights."""
    from test_gate_rebase import ftrl_reference

    from flowlearn.classification.logistic_regression import LogisticRegression

    data = _clicks(3000, seed=7)
    est = lambda: OnlineLogisticRegression(global_batch_size=4, emit_every=100, alpha=0.1)  # noqa: E731
    store = ModelStore(str(tmp_path / "store"))
    batch_model = LogisticRegression().fit(_clicks(1000, seed=8))   # a batch retrain on other data
    progress = tmp_path / "batches"
    progress.touch()
    src = fls.from_table(data, batch_size=50).map_batches(Paced(0.06, str(progress)))
    rebase = fls.from_model_store(store, start="next", kinds=["batch"], poll_interval=0.05)
    sink = fls.model_stream(fls.fit_online(est(), src, rebase=rebase)).to_model_store(store, producer="ftrl")
    job = FlinkEngine(parallelism=1).run(sink)
    deadline = time.monotonic() + 120
    while progress.stat().st_size < 15 and time.monotonic() < deadline:   # 15 of the 60 batches read
        time.sleep(0.02)
    b = store.publish(batch_model, {"kind": "batch"})   # published while the job trains
    job.wait(300)
    online = [(sv, store.version_info(sv)["metadata"]) for sv in store.versions()]
    online = [(sv, md) for sv, md in online if md.get("producer") == "ftrl"]
    before = [(sv, md) for sv, md in online if "rebased_on" not in md]
    after = [(sv, md) for sv, md in online if "rebased_on" in md]
    mv = [md["model_version"] for _, md in online]
    assert mv == sorted(set(mv))                                  # each version once
    assert len(before) >= 3 and after and all(md["rebased_on"] == b for _, md in after)
    n = after[0][1]["trained_rows"] - 100      # the rebased trainer's first version holds its first 100 rows
    assert 0 < n < 3000 and n % 50 == 0 and all(md["trained_rows"] <= n for _, md in before)
    pre = est().trainer().partial_fit(data.slice(0, n))
    assert [md["model_version"] for _, md in before] == [int(v["model_version"][0].as_py()) for v in pre]
    for (sv, _), v in zip(before, pre):
        assert store.load(sv).model.get_model_data()[0].equals(v)
    md0 = batch_model.get_model_data()[0]
    base = max(b, len(pre))
    md0 = md0.set_column(md0.column_names.index("model_version"), "model_version", pa.array([base], pa.int64()))
    post = list(est().set_initial_model_data(md0).fit_versions(data.slice(n)))
    assert [md["model_version"] for _, md in after] == [int(v["model_version"][0].as_py()) for v in post]
    assert [md["trained_rows"] for _, md in after] == [n + 100 * (i + 1) for i in range(len(after) - 1)] + [3000]
    X, y = fl.linalg.to_numpy(data.column("features")), data.column("label").to_numpy()
    ref = ftrl_reference(X[n:], y[n:], fl.linalg.to_numpy(md0.column("coefficient"))[0],
                         float(md0.column("intercept")[0].as_py()), batch=4, emit_every=100, alpha=0.1)
    assert len(ref) == len(after)
    for (sv, _), v, (_, w, b0) in zip(after, post, ref):
        got = store.load(sv).model.get_model_data()[0]
        assert got.column("coefficient").equals(v.column("coefficient"))
        np.testing.assert_allclose(fl.linalg.to_numpy(got.column("coefficient"))[0], w, rtol=0, atol=1e-9)
        assert float(got.column("intercept")[0].as_py()) == pytest.approx(b0, rel=0, abs=1e-9)
