"""Kafka topics and files written by any Flink plan, and what live streams carry into one: Flink's
Kafka and filesystem sinks after stateful nodes (exactly once on checkpoints, through a failure),
keyed messages, dead letters and Kafka metadata columns of live streams. Oracle: the local engine
on the same plan and the same messages (``make test`` runs these in ``.venv-flink``)."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pyflink")

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.engines import FlinkEngine, LocalEngine  # noqa: E402
from flowlearn.testing.kafka import read_topic  # noqa: E402
from test_flink_engine import FailOnce, _committed_rows, _wait_for  # noqa: E402

pytestmark = pytest.mark.flink


def _topics(bs: str, partitions: dict[str, int]) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    names = {k: f"{k}-{os.getpid()}-{time.monotonic_ns()}" for k in partitions}
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(names[k], p, 1) for k, p in partitions.items()]).values():
        f.result(30)
    return names


def _produce(bs: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    import confluent_kafka as ck

    p = ck.Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for key, value in messages:
        p.produce(topic, value, key)
    assert p.flush(30) == 0


def _clicks(n: int, bad_every: int) -> list[tuple[bytes | None, bytes]]:
    """JSON messages keyed by user; every ``bad_every``-th one has a non-number ``ms``."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        user = ["ann", "bo", "cy"][i % 3]
        ms = "slow" if i % bad_every == bad_every - 1 else float(np.round(rng.uniform(0, 100), 3))
        out.append((user.encode(), json.dumps({"id": i, "user": user, "ms": ms}).encode()))
    return out


def test_windows_over_a_kafka_topic_into_a_keyed_topic_are_exactly_once_through_a_failure(real_kafka, tmp_path):
    """from_kafka (one partition; bad messages skipped into dead letters) -> count windows grouped
    by user (stateful) -> to_kafka(key_col="user") on Flink's transactional Kafka sink, with
    checkpoints; a failure injected mid-run restarts the job from its checkpoint. read_committed
    readers see exactly the keyed messages the local engine writes, and the dead letters are the
    local engine's, down to each message's partition and offset."""
    bs = real_kafka
    names = _topics(bs, {"in": 1, "local": 1, "flink": 1})
    n, bad_every = 1224, 51   # 1200 good rows: 12 whole windows (a stream that goes on never ends its last one)
    _produce(bs, names["in"], _clicks(n, bad_every))

    def plan(out: str, step, stop: bool) -> tuple:
        src = fls.from_kafka(names["in"], bs, schema="id long, user string, ms double", start="earliest",
                             handle_invalid="skip", stop_at_end=stop)
        counts = src.map_batches(step).window(count=100).aggregate(by="user", n=("ms", "count"),
                                                                   total=("ms", "sum"))
        return counts.to_kafka(out, bs, key_col="user"), src.dead_letters().collect()

    local_sink, local_dead = plan(names["local"], lambda b: b, True)
    fl.run(local_sink, local_dead, engine=LocalEngine(), checkpoint_dir=str(tmp_path / "lck"),
           checkpoint_interval=0.2).wait(120)
    want = sorted(read_topic(bs, names["local"], 1, timeout=60, keys=True))
    marker = tmp_path / "fail"
    marker.touch()
    sink, dead = plan(names["flink"], FailOnce(str(marker), 2), False)
    job = FlinkEngine(parallelism=1).run(sink, dead, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.3)
    try:
        got = sorted(read_topic(bs, names["flink"], len(want), timeout=120, keys=True))
        dead_letters = _wait_for(job, dead, n // bad_every)
    finally:
        job.stop()
    assert not marker.exists()                                  # the failure happened
    assert len(want) == 3 * 12 and got == want   # each window once, keyed as locally
    assert {k for k, _ in got} == {b"ann", b"bo", b"cy"}
    local_letters = local_dead.result()
    assert local_letters.num_rows == n // bad_every
    key = ["location", "column", "record"]
    assert sorted(dead_letters.select(key).to_pylist(), key=str) == \
        sorted(local_letters.select(key).to_pylist(), key=str)
    assert set(dead_letters.column("source").to_pylist()) == {f"kafka topic {names['in']}"}


def test_kafka_metadata_columns_on_flink_are_the_local_engines(real_kafka):
    """from_kafka(metadata_columns=[...]) on Flink (three partitions): each row's key, topic,
    partition, offset and timestamp are those the local engine's consumer reads."""
    bs = real_kafka
    names = _topics(bs, {"in": 3})
    import confluent_kafka as ck

    p = ck.Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i in range(300):
        p.produce(names["in"], json.dumps({"id": i}).encode(), None if i % 7 == 0 else f"k{i}".encode(),
                  partition=i % 3, timestamp=1_700_000_000_000 + i)
    assert p.flush(30) == 0
    meta = ["key", "topic", "partition", "offset", "timestamp"]

    def src(stop: bool) -> fls.Stream:
        return fls.from_kafka(names["in"], bs, schema="id long", start="earliest", metadata_columns=meta,
                              stop_at_end=stop)

    with fl.set_engine(LocalEngine()):
        want = src(True).to_table().sort_by("id")
    sink = src(False).collect()
    job = FlinkEngine(parallelism=2).run(sink)
    try:
        got = _wait_for(job, sink, 300).sort_by("id")
    finally:
        job.stop()
    assert got.schema.equals(want.schema)
    assert got.to_pydict() == want.to_pydict()
    assert got.column("key").null_count == 43 and set(got.column("partition").to_pylist()) == {0, 1, 2}


def test_a_watched_directory_into_windows_into_files_commits_each_window_once_with_its_dead_letters(tmp_path):
    """A watched directory of CSV files with malformed lines (handle_invalid="skip") -> count
    windows -> to_files(format="json") on Flink's filesystem sink, part files committed on
    checkpoints; the committed files hold each window once, with NumPy's counts, and the dead
    letters are the malformed lines, naming their file."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    views = fls.from_files(str(inbox), format="csv", schema="user string, ms double", watch=True,
                           poll_interval=0.2, handle_invalid="skip")
    windows = views.window(count=50).aggregate(n=("ms", "count"), total=("ms", "sum"))
    dead = views.dead_letters().collect()
    job = FlinkEngine(parallelism=1).run(windows.to_files(str(out), format="json"), dead,
                                         checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.3)
    rng = np.random.default_rng(3)
    values, malformed = [], []
    try:
        for k in range(4):   # 100 good rows a file, in file order: windows never span files
            ms = np.round(rng.uniform(0, 10, 100), 3)
            lines = [f"u{i % 4},{m}" for i, m in enumerate(ms)]
            lines.insert(10 + k, f"u9,{k}ms")
            malformed.append(lines[10 + k])
            (inbox / f"views-{k}.csv").write_text("user,ms\n" + "\n".join(lines) + "\n")
            values.append(ms)
            _wait_for(job, dead, k + 1)
        deadline = time.monotonic() + 120
        while len(_committed_rows(out)) < 8 and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(1.0)   # and nothing more is committed
        rows = _committed_rows(out)
        letters = pa.concat_tables(job.collected(dead))
    finally:
        job.stop()
    assert len(rows) == 8 and all(r["n"] == 50 for r in rows)
    want = sorted(np.round(v.sum(), 6) for ms in values for v in (ms[:50], ms[50:]))
    assert sorted(np.round(r["total"], 6) for r in rows) == pytest.approx(want)
    assert sorted(letters.column("record").to_pylist()) == sorted(malformed)
    assert set(letters.column("column").to_pylist()) == {"ms"}
    assert sorted(set(letters.column("source").to_pylist())) == [f"file {inbox / f'views-{k}.csv'}" for k in range(4)]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_bounded_plan_with_checkpoints_writes_its_files_through_flinks_sink(tmp_path, mode):
    """to_files() of a bounded plan with checkpoint_dir (refused before: the client committed
    files only when a job succeeded) goes to Flink's filesystem sink: the committed CSV lines are
    the local engine's rows; the job's metrics count them. In thread mode too (such jobs hung at
    their end before thread mode turned operator chaining off for them)."""
    t = fl.table({"id": np.arange(3000), "a": np.random.default_rng(1).normal(size=3000)})
    with fl.set_engine(LocalEngine()):
        want = fls.from_table(t, batch_size=256).filter(pa.compute.field("a") > 0).to_table()
    out = tmp_path / "out"
    sink = fls.from_table(t, batch_size=256).filter(pa.compute.field("a") > 0).to_files(str(out), format="csv")
    job = FlinkEngine(parallelism=2, mode=mode).run(sink, checkpoint_dir=str(tmp_path / "ck"),
                                                    checkpoint_interval=0.2).wait(300)
    lines = [line for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith(".")
             for line in p.read_text().splitlines()]
    got = sorted((int(i), float(a)) for i, a in (line.split(",") for line in lines))
    assert got == sorted(zip(want.column("id").to_pylist(), want.column("a").to_pylist()))
    assert job.metrics["rows_out"] == want.num_rows


def test_a_bounded_batch_job_writes_a_topic_from_parquet_files(real_kafka, tmp_path):
    """Parquet files (read by the DataStream translation, in Flink's batch mode, no checkpoints)
    -> a fitted scaler -> to_kafka(format="json", key_col="city") at parallelism 2: the topic holds
    the local engine's keyed messages."""
    bs = real_kafka
    names = _topics(bs, {"local": 2, "flink": 2})
    rng = np.random.default_rng(9)
    (tmp_path / "in").mkdir()
    for k in range(3):
        fl.write_parquet(fl.table({"id": np.arange(500) + 500 * k, "a": rng.normal(size=500),
                                   "city": rng.choice(["oslo", "rome"], 500)}), str(tmp_path / "in" / f"p{k}.parquet"))
    scaler = fl.Pipeline([fl.feature.VectorAssembler(input_cols=["a"], output_col="v"),
                          fl.feature.StandardScaler(input_col="v", output_col="s")]).fit(
        fl.table({"a": rng.normal(size=100)}))

    def plan(out: str):
        src = fls.from_files(str(tmp_path / "in"), format="parquet", batch_size=128)
        return scaler.transform(src).select("id", "s", "city").to_kafka(out, bs, key_col="city")

    fl.run(plan(names["local"]), engine=LocalEngine()).wait(120)
    want = sorted(read_topic(bs, names["local"], 1500, timeout=60, keys=True))
    job = FlinkEngine(parallelism=2).run(plan(names["flink"])).wait(300)
    got = sorted(read_topic(bs, names["flink"], 1500, timeout=60, keys=True))
    assert len(want) == 1500 and got == want
    assert job.metrics["sinks"] == {"to_kafka(" + names["flink"] + ")": 1500}


def _typed_part(k: int, n: int = 400) -> pa.Table:
    """A Parquet file's worth of rows with what types must survive: int64 and int32 with nulls,
    doubles with nulls and a NaN, strings with nulls, a dense vector, lists of doubles of two
    lengths with NaN and nulls, millisecond timestamps."""
    rng = np.random.default_rng(100 + k)
    a = rng.normal(size=n)
    a[7] = np.nan
    i = np.arange(n)
    w = [[float(j), np.nan][: 1 + j % 2] if j % 5 else None for j in i]
    return pa.table({"id": pa.array(i + k * n, pa.int64()),
                     "a": pa.array(a, mask=i % 9 == 4),
                     "hits": pa.array(rng.integers(0, 1000, n).astype(np.int32), mask=i % 13 == 5),
                     "city": pa.array([["oslo", "rome", None, "lima"][j % 4] for j in i]),
                     "v": fl.linalg.from_numpy(rng.normal(size=(n, 3))),
                     "w": pa.array(w, pa.list_(pa.float64())),
                     "ts": pa.array((i + k * n) * 1000 + 1_700_000_000_000, pa.timestamp("ms"))})


def _parquet_rows(folder) -> pa.Table | None:
    """The rows of the committed Parquet files under ``folder``, by id (in-progress files start with a dot)."""
    parts = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    return pa.concat_tables([fl.read_parquet(str(p)) for p in parts]).sort_by("id") if parts else None


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_watched_parquet_directory_through_a_model_into_parquet_files_is_exactly_once(tmp_path, mode):
    """Parquet files arriving in a watched directory (Flink's Parquet format reads them) -> a
    scaler fitted locally -> to_files(format="parquet") on Flink's filesystem sink, at
    parallelism 2 with a failure injected mid-run: the committed files hold exactly the rows the
    local engine writes from the same files, nulls, NaN, vectors and timestamps included (in
    thread mode too, whose hand-over of rows to the JVM cannot take a null array: lists go as
    Java lists)."""
    inbox, out, marker = tmp_path / "in", tmp_path / "out", tmp_path / "fail"
    inbox.mkdir()
    parts = [_typed_part(k) for k in range(4)]
    scaler = fl.feature.StandardScaler(input_col="v", output_col="scaled").fit(parts[0])

    def plan(src: fls.Stream, folder, step) -> fls.Sink:
        return scaler.transform(src.map_batches(step)).filter(pa.compute.field("id") >= 37) \
            .to_files(str(folder), format="parquet")

    fl.write_parquet(parts[0], str(inbox / "p0.parquet"))
    marker.touch()
    watched = fls.from_files(str(inbox), format="parquet", watch=True, poll_interval=0.2, batch_size=100)
    ship = ",".join(os.path.join(os.path.dirname(__file__), f)
                    for f in ("test_flink_engine.py", "test_flink_sinks.py", "doc_examples.py"))
    engine = FlinkEngine(parallelism=2, mode=mode, config={"python.files": ship} if mode == "thread" else None)
    job = engine.run(plan(watched, out, FailOnce(str(marker), 2)),   # (4 files: a worker gets 2)
                                         checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.3)
    try:
        for k in range(1, 4):
            time.sleep(1.0)
            fl.write_parquet(parts[k], str(inbox / f"p{k}.parquet"))   # written aside, renamed into place
        fl.run(plan(fls.from_files(str(inbox), format="parquet"), tmp_path / "local", lambda b: b),
               engine=LocalEngine()).wait()
        want = _parquet_rows(tmp_path / "local")
        deadline = time.monotonic() + 120
        while (_parquet_rows(out) is None or _parquet_rows(out).num_rows < want.num_rows) and \
                time.monotonic() < deadline and job.running:
            time.sleep(0.5)
        time.sleep(1.0)   # and nothing more is committed
        got = _parquet_rows(out)
    finally:
        job.stop()
    assert not marker.exists()   # the failure happened
    assert got is not None and got.num_rows == want.num_rows == 4 * 400 - 37
    assert got.schema.names == want.schema.names
    for name in want.column_names:   # Flink's writer has no fixed-size lists: vectors come back as lists
        column = got.column(name).cast(want.schema.field(name).type)
        assert column.is_null().equals(want.column(name).is_null()), name
        if name == "a":   # NaN where NaN
            np.testing.assert_array_equal(column.to_numpy(), want.column(name).to_numpy())
        elif name == "w":   # lists of two lengths, NaN inside
            np.testing.assert_array_equal(column.combine_chunks().flatten().to_numpy(),
                                          want.column(name).combine_chunks().flatten().to_numpy())
            assert column.combine_chunks().offsets.equals(want.column(name).combine_chunks().offsets)
        else:
            assert column.equals(want.column(name)), name
    assert job.metrics["sinks"] == {f"to_files({out})": want.num_rows}


def _share_of_first(t: pa.Table) -> pa.Table:
    """Each ``a`` over the batch's first (the plan cannot tell its columns without a row)."""
    a = t.column("a").to_numpy()
    return t.append_column("share", pa.array(a / a[0]))


def test_a_parquet_sink_on_flink_needs_the_columns_before_the_job_starts(tmp_path):
    """A watched Parquet directory with no file yet, and a stream whose columns only a run tells,
    are refused by name before anything runs."""
    (tmp_path / "in").mkdir()
    empty = fls.from_files(str(tmp_path / "in"), format="parquet", watch=True)
    with pytest.raises(ValueError, match="with no file yet needs schema=... on Flink"):
        FlinkEngine().run(empty.collect())
    t = fl.table({"a": [1.0, 2.0]})
    unknown = fls.from_table(t).map_batches(_share_of_first).to_files(str(tmp_path / "p"), format="parquet")
    with pytest.raises(NotImplementedError, match="columns are known only at run time; Flink's Parquet writer"):
        FlinkEngine().run(unknown, checkpoint_dir=str(tmp_path / "ck"))


def test_foreach_is_called_on_the_client_once_per_batch_through_a_failure(tmp_path):
    """foreach(fn) on Flink: ``fn`` runs in the client process as each batch comes back (so it
    may append to the caller's list), once per batch even when a failure restarts the job from
    its checkpoint (what reaches the client is what the checkpoints committed)."""
    t = fl.table({"id": np.arange(4000), "a": np.random.default_rng(2).normal(size=4000)})
    seen: list[pa.Table] = []
    marker = tmp_path / "fail"
    marker.touch()
    sink = fls.from_table(t, batch_size=200).map_batches(FailOnce(str(marker), 8)).foreach(seen.append)
    job = FlinkEngine(parallelism=2).run(sink, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2)
    job.wait(300)
    assert not marker.exists()                                  # the failure happened
    got = pa.concat_tables(seen).sort_by("id")
    assert got.equals(t) and job.metrics["sinks"] == {"foreach": 4000}


def test_the_files_of_a_stream_without_checkpoints_are_refused_before_anything_runs(tmp_path):
    watched = fls.from_files(str(tmp_path), format="csv", schema="a double", watch=True)
    with pytest.raises(ValueError, match="whose part files Flink commits on checkpoints: pass checkpoint_dir"):
        FlinkEngine().run(watched.window(count=10).aggregate(n=("a", "count")).to_files(str(tmp_path / "o"),
                                                                                       format="csv"))
