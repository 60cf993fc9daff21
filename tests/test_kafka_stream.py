"""Kafka source and sink against a Kafka-protocol broker (tansu), and the end-to-end SIGKILL +
restart acceptance test on tansu and on Apache Kafka (exactly once there)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

import flowlearn.stream as fls
from flowlearn.engines import run
from flowlearn.stream.checkpoint import CheckpointStore
from flowlearn.stream.kafka import end_offsets as kafka_end_offsets
from flowlearn.testing.kafka import read_topic

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.kafka
HELPER = os.path.join(os.path.dirname(__file__), "stream_job_helper.py")


def _topic(bs, partitions=3):
    name = f"t-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(15)
    return name


def _produce(bs, topic, rows, partitions=3, key=True):
    p = ck.Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i, r in enumerate(rows):
        v = r if isinstance(r, bytes) else json.dumps(r).encode()
        p.produce(topic, v, key=str(i).encode() if key else None, partition=i % partitions)
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(30) == 0


def _checkpointed_offsets(chk, topic):
    """Sum of the source offsets of ``topic`` in the newest complete checkpoint (0 if none yet)."""
    store = CheckpointStore(chk)
    try:
        cid = store.latest_complete()
        states = store.read(cid) if cid is not None else {}
    except (OSError, ValueError):       # pruned or being replaced meanwhile: try again later
        return 0
    return sum(sum(st.data["offsets"].values()) for st in states.values() if st.data.get("topic") == topic)


def test_source_columns_metadata_and_start_modes(kafka_broker):
    bs, t = kafka_broker, _topic(kafka_broker)
    _produce(bs, t, [{"i": i, "x": i / 2} for i in range(300)])
    s = fls.from_kafka(t, bs, schema="i long, x double", start="earliest", stop_at_end=True,
                       metadata_columns=["key", "topic", "partition", "offset"])
    got = s.to_table().sort_by("i")
    assert got.column("i").to_pylist() == list(range(300))
    assert got.column("key").to_pylist()[:2] == [b"0", b"1"]
    assert set(got.column("partition").to_pylist()) == {0, 1, 2} and set(got.column("topic").to_pylist()) == {t}
    assert got.column("offset").to_pylist()[:3] == [0, 0, 0]
    latest = fls.from_kafka(t, bs, schema="i long, x double", start="latest", stop_at_end=True)
    assert latest.to_table().num_rows == 0
    future = fls.from_kafka(t, bs, schema="i long, x double", start=time.time() + 3600, stop_at_end=True)
    assert future.to_table().num_rows == 0


def test_stop_at_end_reads_the_whole_last_producer_batch(kafka_broker):
    # tansu lists a partition's end as its last record batch's base offset + 1: a bounded read
    # taking 100 messages per poll stopped there and lost the rest of the batch (a flaky SIGKILL test)
    bs, t = kafka_broker, _topic(kafka_broker)
    p = ck.Producer({"bootstrap.servers": bs, "linger.ms": 200, "batch.num.messages": 100000})
    for i in range(9000):
        p.produce(t, json.dumps({"i": i}).encode(), partition=i % 3)
    assert p.flush(30) == 0
    assert kafka_end_offsets({"bootstrap.servers": bs}, t, [0, 1, 2]) == {0: 3000, 1: 3000, 2: 3000}
    sink = fls.from_kafka(t, bs, schema="i long", start="earliest", stop_at_end=True).collect()
    run(sink, max_batch_rows=100).wait()
    assert sorted(sink.result().column("i").to_pylist()) == list(range(9000))
    latest = fls.from_kafka(t, bs, schema="i long", start="latest", stop_at_end=True).collect()
    run(latest, max_batch_rows=100).wait()
    assert latest.result().num_rows == 0


def test_committed_start_continues_a_group(kafka_broker, tmp_path):
    bs, t = kafka_broker, _topic(kafka_broker)
    _produce(bs, t, [{"i": i} for i in range(100)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = fls.from_kafka(t, bs, group_id=group, schema="i long", start="committed", stop_at_end=True)
    run(first.collect(), checkpoint_dir=str(tmp_path / "a")).wait()
    _produce(bs, t, [{"i": i} for i in range(100, 130)])
    second = fls.from_kafka(t, bs, group_id=group, schema="i long", start="committed", stop_at_end=True)
    assert sorted(second.to_table().column("i").to_pylist()) == list(range(100, 130))


def test_csv_payloads_and_bad_message_error(kafka_broker):
    bs, t = kafka_broker, _topic(kafka_broker, 1)
    _produce(bs, t, [b"1,a", b"2,b", b"x,c"], partitions=1)
    with pytest.raises(ValueError, match=rf"topic {t}, partition 0, offset 2, column 'i'"):
        fls.from_kafka(t, bs, format="csv", schema="i long, s string", start="earliest", stop_at_end=True).to_table()
    s = fls.from_kafka(t, bs, format="csv", schema="i long, s string", start="earliest", stop_at_end=True,
                       handle_invalid="skip")
    good, dead = s.collect(), s.dead_letters().collect()
    run(good, dead).wait()
    assert good.result().column("s").to_pylist() == ["a", "b"]
    assert dead.result().column("location").to_pylist() == ["partition 0, offset 2"]


def test_sink_transactional_roundtrip(kafka_broker, tmp_path):
    bs, tin, tout = kafka_broker, _topic(kafka_broker), _topic(kafka_broker)
    _produce(bs, tin, [{"i": i, "x": float(i)} for i in range(2000)])
    s = fls.from_kafka(tin, bs, schema="i long, x double", start="earliest", stop_at_end=True)
    job = run(s.to_kafka(tout, bs), checkpoint_dir=str(tmp_path), checkpoint_interval=0.2).wait()
    assert job.metrics["checkpoints"] >= 1
    vals = [json.loads(v) for v in read_topic(bs, tout, 2000)]
    assert sorted(v["i"] for v in vals) == list(range(2000))


def _sigkill_and_restart(bs, tmp_path):
    """A Kafka -> scaler -> Kafka job killed with SIGKILL midway and restarted from its checkpoint:
    (its report, the output rows read with read_committed, n)."""
    tin, tout = _topic(bs), _topic(bs)
    n = 100_000
    rng = np.random.default_rng(0)
    xs = rng.normal(10.0, 2.0, n)
    _produce(bs, tin, [{"id": i, "x": float(xs[i])} for i in range(n)], key=False)
    chk = str(tmp_path / "chk")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    # throttled (>= 10 s for the whole topic) so the kill lands midway even on a loaded machine
    p = subprocess.Popen([sys.executable, HELPER, "kafka", bs, tin, tout, chk, "0", "0.05"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # kill once a complete checkpoint holds read rows (the first one may precede any fetch)
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None and _checkpointed_offsets(chk, tin) == 0:
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        assert _checkpointed_offsets(chk, tin) > 0, "no checkpoint with rows read within 120 s"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    r = subprocess.run([sys.executable, HELPER, "kafka", bs, tin, tout, chk, "1", "0"], env=env,
                       capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    report = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert report["restored_from"] is not None and 0 < report["rows_in"] < n  # resumed midway
    # wait for every row and every counted duplicate (and read each partition to its end)
    out = [json.loads(v) for v in read_topic(bs, tout, n + report["duplicates"], timeout=180)]
    ids = np.array([o["id"] for o in out])
    y = np.array([o["y"] for o in out])
    np.testing.assert_allclose(y, (xs[ids] - 10.0) / 2.0)  # oracle: closed-form scaling
    return report, ids, n


def test_kafka_end_to_end_sigkill_and_restart(kafka_broker, tmp_path):
    report, ids, n = _sigkill_and_restart(kafka_broker, tmp_path)
    assert len(np.unique(ids)) == n  # every input row is present
    # tansu leaves a killed producer's open transaction visible: duplicates are counted exactly
    # and bounded by one checkpoint interval
    assert len(ids) - n == report["duplicates"]
    assert report["duplicates"] <= n - report["rows_in"]


def test_kafka_exactly_once_after_sigkill_on_apache_kafka(real_kafka, tmp_path):
    """The same job on Apache Kafka: the restarted producer fences the killed one, whose open
    transaction is aborted, so read_committed readers see every row exactly once."""
    report, ids, n = _sigkill_and_restart(real_kafka, tmp_path)
    assert len(ids) == n and len(np.unique(ids)) == n
    assert report["duplicates"] == 0
