"""LocalPredictor and StoreFollower hardening (issue 8, defect 8).

Proves: corrupt store versions (filesystem: a damaged file; Kafka: a publish failing its sha256
and one failing its _COMMITTED checksums) are counted in the follower's ``errors`` and in the
server's ``flowlearn_model_swap_errors_total``, while the previous version keeps serving;
``LocalPredictor(store)`` objects dropped without ``close()`` leave no follower threads behind;
``predict_batch`` replaces a ``model_version`` column the output already has (one column, the
served version, as ``predict`` does)."""
from __future__ import annotations

import gc
import hashlib
import json
import os
import threading
import time
import uuid

import pyarrow as pa
import pytest

import flowlearn as fl
from flowlearn.modelstream import ModelStore
from flowlearn.serving.follow import StoreFollower
from flowlearn.serving.http import serve
from flowlearn.testing.models import AddK
from test_http_serving import get, metric, parse_metrics, post

TIMEOUT = 10.0


def add_k(k: float) -> AddK:
    return AddK(input_col="x", output_col="y").set_model_data(pa.table({"k": pa.array([float(k)])}))


def wait_until(cond, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def corrupt_file_of(root, version: int) -> None:
    """Flip one byte of a committed version's model data (its _COMMITTED checksum no longer matches)."""
    path = os.path.join(root, "versions", f"{version:012d}", "data", "0.arrow")
    raw = bytearray(open(path, "rb").read())
    raw[-20] ^= 0xFF
    open(path, "wb").write(bytes(raw))


def publish_corrupt(store: ModelStore, root, k: float) -> int:
    """A version that is committed whole but damaged: written in a scratch store, damaged, then
    renamed into ``store`` in one step (as a publish would) and announced by the marker."""
    scratch_root = os.path.join(root, "..", f"scratch-{uuid.uuid4().hex[:6]}")
    scratch = ModelStore(scratch_root)
    v = store.latest_version() + 1
    for _ in range(v):
        scratch.publish(add_k(k))
    corrupt_file_of(scratch_root, v)
    os.rename(os.path.join(scratch_root, "versions", f"{v:012d}"), os.path.join(root, "versions", f"{v:012d}"))
    store._write_marker(v, time.time())
    return v


def test_corrupt_versions_are_counted_by_the_follower_and_the_server(tmp_path):
    root = str(tmp_path / "store")
    store = ModelStore(root)
    store.publish(add_k(1.0))
    with serve(root, port=0, poll_interval=0.05) as s:
        assert post(s, {"x": 0.0})[2] == {"prediction": {"y": 1.0, "model_version": 1}, "model_version": 1}
        bad = publish_corrupt(store, root, 9.0)
        assert wait_until(lambda: s.follower.errors == 1), s.follower.errors
        assert f"version {bad} is corrupt" in str(s.follower.last_error)
        assert post(s, {"x": 0.0})[2]["model_version"] == 1                   # still the previous version
        m, _ = parse_metrics(get(s, "/metrics")[2])
        assert metric(m, "flowlearn_model_swap_errors_total") == 1
        assert metric(m, "flowlearn_model_swaps_total") == 0
        assert get(s, "/model")[2]["follow"]["errors"] == 1
        # the next valid version is served; the corrupt one is not counted twice
        assert store.publish(add_k(3.0)) == bad + 1
        assert wait_until(lambda: s.predictor.model_version == bad + 1)
        m, _ = parse_metrics(get(s, "/metrics")[2])
        assert metric(m, "flowlearn_model_swap_errors_total") == 1 and metric(m, "flowlearn_model_swaps_total") == 1
        assert post(s, {"x": 0.0})[2]["prediction"]["y"] == 3.0


def test_a_follower_starting_on_a_corrupt_newest_version_counts_it(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(add_k(1.0))
    store.publish(add_k(2.0))
    corrupt_file_of(str(tmp_path), 2)
    predictor = fl.LocalPredictor(add_k(0.0))                 # not from the store: start at its newest valid
    with StoreFollower(store, predictor, poll_interval=0.05) as follower:
        assert follower.wait_for(1, timeout=TIMEOUT)
        assert follower.errors == 1 and predictor.model_version == 1


@pytest.mark.kafka
def test_corrupt_kafka_versions_are_counted_by_the_follower(kafka_broker):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from flowlearn.modelstream import KafkaModelStore
    from flowlearn.modelstream import kafka_store as ks

    topic = f"flowlearn-corrupt-{uuid.uuid4().hex[:8]}"

    def raw_produce(value, version, sha, meta):
        p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker, "linger.ms": 0})
        headers = [(ks.H_VERSION, str(version).encode()), (ks.H_ID, uuid.uuid4().hex.encode()),
                   (ks.H_CHUNK, b"0"), (ks.H_CHUNKS, b"1"), (ks.H_SHA, sha.encode()),
                   (ks.H_META, json.dumps(meta).encode())]
        p.produce(topic, value=value, partition=0, headers=headers)
        assert p.flush(10) == 0

    with KafkaModelStore(topic, kafka_broker) as store:
        store.publish(add_k(1.0))
        with fl.LocalPredictor(store, poll_interval=0.05) as predictor:
            follower = predictor._follower
            assert predictor.model_version == 1
            good = store._log.payload(1)
            meta = {"created_at": time.time(), "class": "x", "metadata": {}}
            # version 2: damaged in flight (sha256 mismatch): it never reaches the versions
            raw_produce(good[:-1] + b"!", 2, hashlib.sha256(good).hexdigest(), meta)
            assert wait_until(lambda: follower.errors == 1), follower.errors
            assert "version 2 is corrupt (sha256 mismatch)" in str(follower.last_error)
            # version 3: intact message whose files fail their _COMMITTED checksums
            files = ks._stage_files(add_k(3.0))
            sums = {k: hashlib.sha256(b).hexdigest() for k, b in files.items()}
            sums["data/0.arrow"] = "0" * 64
            doc = {"format": "flowlearn.model_version", "format_version": 1, "version": 3,
                   "created_at": time.time(), "class": "x", "metadata": {}, "files": sums}
            tar = ks._tar({**files, "_COMMITTED": json.dumps(doc).encode()}, time.time())
            raw_produce(tar, 3, hashlib.sha256(tar).hexdigest(), meta)
            assert wait_until(lambda: follower.errors == 2), follower.errors
            assert "checksum mismatch" in str(follower.last_error)
            assert predictor.predict({"x": 0.0}) == {"x": 0.0, "y": 1.0, "model_version": 1}
            assert store.publish(add_k(4.0)) == 4
            assert wait_until(lambda: predictor.model_version == 4)
            assert follower.errors == 2 and follower.swaps == 1


def _follower_threads():
    return [t for t in threading.enumerate() if t.name.startswith("flowlearn-follow-")]


def test_dropped_predictors_stop_their_followers(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(add_k(1.0))
    before = len(_follower_threads())
    for _ in range(20):
        p = fl.LocalPredictor(str(tmp_path), poll_interval=0.05)      # follows the store, never closed
        assert p.predict({"x": 1.0})["y"] == 2.0
    assert len(_follower_threads()) >= before + 1                     # the last one is still referenced
    del p
    gc.collect()
    assert wait_until(lambda: len(_follower_threads()) == before), [t.name for t in _follower_threads()]
    # a predictor that is kept keeps following
    kept = fl.LocalPredictor(store, poll_interval=0.05)
    gc.collect()
    assert store.publish(add_k(2.0)) == 2
    assert wait_until(lambda: kept.model_version == 2)
    kept.close()
    assert wait_until(lambda: len(_follower_threads()) == before)


def test_predict_batch_replaces_an_existing_model_version_column(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(add_k(1.0))
    store.publish(add_k(2.0))
    with fl.LocalPredictor(store) as p:
        rows = [{"x": 1.0, "model_version": 7}, {"x": 2.0, "model_version": 7}]   # e.g. an earlier answer
        out = p.predict_batch(rows)
        assert out.column_names == ["x", "model_version", "y"]
        assert out.column("model_version").to_pylist() == [2, 2] and out.column("y").to_pylist() == [3.0, 4.0]
        assert out.to_pylist()[0] == p.predict(rows[0]) == {"x": 1.0, "model_version": 2, "y": 3.0}
        out = p.predict_batch([{"x": 1.0}])                                       # no such column: appended
        assert out.column_names == ["x", "y", "model_version"] and out.column("model_version").to_pylist() == [2]
