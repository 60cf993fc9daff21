"""KafkaModelStore against a real Kafka-protocol broker (tansu): one version per message,
chunked when large, sha256-verified reassembly, strictly increasing versions with several
publishers, torn / losing / corrupt publishes invisible, retention, rollback, watch."""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
from flowlearn.modelstream import CorruptVersionError, KafkaModelStore, ModelVersion
from flowlearn.modelstream import kafka_store as ks

confluent_kafka = pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.kafka


from flowlearn.testing.models import AddK  # noqa: E402


def add_k(k, i="x", o="y", *extra):
    return AddK(input_col=i, output_col=o).set_model_data(pa.table({"k": pa.array([float(k)])}), *extra)


def pipeline(k):
    return fl.PipelineModel([add_k(k, "x", "y"), add_k(k, "y", "z")])


def z_of(model, x=0.0):
    return model.transform({"x": [x]}).column(model.stages[-1].output_col if hasattr(model, "stages")
                                              else model.output_col)[0].as_py()


@pytest.fixture
def topic():
    return f"flowlearn-models-{uuid.uuid4().hex[:12]}"


def raw_produce(servers, topic, messages):
    """Produce (value, headers) pairs as a foreign / crashed / malicious publisher would."""
    p = confluent_kafka.Producer({"bootstrap.servers": servers, "linger.ms": 0})
    for value, headers in messages:
        p.produce(topic, value=value, partition=0, headers=headers)
    assert p.flush(10) == 0


def headers(version, pid, chunk, chunks, sha, meta=None):
    h = [(ks.H_VERSION, str(version).encode()), (ks.H_ID, pid.encode()), (ks.H_CHUNK, str(chunk).encode()),
         (ks.H_CHUNKS, str(chunks).encode()), (ks.H_SHA, sha.encode())]
    if meta is not None:
        h.append((ks.H_META, json.dumps(meta).encode()))
    return h


def test_round_trip_and_an_independent_reader(kafka_broker, topic):
    with KafkaModelStore(topic, kafka_broker) as store:
        assert store.versions() == [] and store.latest() is None
        assert store.publish(add_k(1.5), metadata={"auc": 0.9}) == 1
        assert store.publish(pipeline(2.0), metadata={"auc": 0.8}) == 2
        assert store.versions() == [1, 2]
        mv = store.load(1)
        assert isinstance(mv, ModelVersion) and mv.metadata == {"auc": 0.9} and isinstance(mv.model, AddK)
        assert mv.model.transform({"x": [1.0]}).column("y").to_pylist() == [2.5]
        info = store.version_info(2)
        assert info["class"] == "flowlearn.builder.PipelineModel" and info["chunks"] == 1
    with KafkaModelStore(topic, kafka_broker) as reader:         # a fresh consumer agrees
        assert reader.versions() == [1, 2]
        latest = reader.latest()
        assert latest.version == 2 and isinstance(latest.model, fl.PipelineModel)
        assert z_of(latest.model, 1.0) == 5.0
        assert reader.load(1).created_at <= latest.created_at
        with pytest.raises(LookupError, match="no committed version 3"):
            reader.load(3)


def test_large_versions_are_chunked_and_reassembled(kafka_broker, topic):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(400_000)                                   # 3.2 MB of model data
    big = add_k(1.0, "x", "y", pa.table({"w": pa.array(w)}))
    with KafkaModelStore(topic, kafka_broker, chunk_size=64 * 1024) as store:
        assert store.publish(big) == 1
        info = store.version_info(1)
        assert info["chunks"] >= 45                                    # ~3.2 MB / 64 KiB
        assert info["offsets"][1] - info["offsets"][0] + 1 == info["chunks"]
        for k in range(3):                                             # push v1 out of the payload cache
            store.publish(add_k(k))
    with KafkaModelStore(topic, kafka_broker) as reader:
        again = reader.load(1).model                                   # re-read from the topic
        np.testing.assert_array_equal(again.get_model_data()[1].column("w").to_numpy(), w)
        assert reader.load(1).model.transform({"x": [1.0]}).column("y")[0].as_py() == 2.0
        assert reader.versions() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="chunk_size"):
        KafkaModelStore(topic, kafka_broker, chunk_size=5_000_000)


def test_concurrent_publishers_get_distinct_strictly_increasing_versions(kafka_broker, topic):
    n_pub, n_each = 3, 5
    stores = [KafkaModelStore(topic, kafka_broker) for _ in range(n_pub)]
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(n_pub)

    def run(w):
        barrier.wait()
        results[w] = [stores[w].publish(add_k(w * 100 + i), metadata={"who": w, "seq": i}) for i in range(n_each)]

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n_pub)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.close()
    everything = sorted(v for vs in results.values() for v in vs)
    assert everything == list(range(1, n_pub * n_each + 1))
    for vs in results.values():
        assert vs == sorted(vs) and len(set(vs)) == len(vs)
    with KafkaModelStore(topic, kafka_broker) as reader:
        assert reader.versions() == everything
        for w, vs in results.items():
            for i, v in enumerate(vs):
                mv = reader.load(v)
                assert mv.metadata == {"who": w, "seq": i}
                assert mv.model.transform({"x": [0.0]}).column("y")[0].as_py() == w * 100 + i


def test_torn_and_losing_publishes_are_invisible(kafka_broker, topic):
    with KafkaModelStore(topic, kafka_broker) as store:
        store.publish(add_k(1))
        store.publish(add_k(2))
        good = store._log.payload(2)
        sha = hashlib.sha256(good).hexdigest()
        meta = {"created_at": time.time(), "class": "x", "metadata": {}}
        raw_produce(kafka_broker, topic, [
            # a publisher that died after chunk 0 of 3 (version 3)
            (good[:100], headers(3, uuid.uuid4().hex, 0, 3, sha, meta)),
            # a complete, intact publish that lost the race for version 2
            (good, headers(2, uuid.uuid4().hex, 0, 1, sha, meta)),
            # a message that is not a model version at all
            (b"hello", [("other", b"1")]),
        ])
    with KafkaModelStore(topic, kafka_broker) as reader:
        assert reader.versions() == [1, 2]
        assert reader.latest().version == 2
        assert reader.load(2).model.transform({"x": [0.0]}).column("y")[0].as_py() == 2.0
        # the next publish skips the number the torn publish holds
        assert reader.publish(add_k(4)) == 4
        assert reader.versions() == [1, 2, 4]


def test_corrupt_versions_are_skipped_with_a_logged_error(kafka_broker, topic, caplog):
    with KafkaModelStore(topic, kafka_broker) as store:
        store.publish(add_k(1))
        good = store._log.payload(1)
        meta = {"created_at": time.time(), "class": "x", "metadata": {}}
        # version 2: bytes damaged in flight (the sha256 header does not match)
        raw_produce(kafka_broker, topic, [(good[:-1] + b"!", headers(2, uuid.uuid4().hex, 0, 1,
                                                                      hashlib.sha256(good).hexdigest(), meta))])
        # version 3: an intact message whose files do not match their _COMMITTED checksums
        files = ks._stage_files(add_k(3))
        sums = {k: hashlib.sha256(b).hexdigest() for k, b in files.items()}
        sums["data/0.arrow"] = "0" * 64
        doc = {"format": "flowlearn.model_version", "format_version": 1, "version": 3, "created_at": time.time(),
               "class": "x", "metadata": {}, "files": sums}
        tar = ks._tar({**files, "_COMMITTED": json.dumps(doc).encode()}, time.time())
        raw_produce(kafka_broker, topic, [(tar, headers(3, uuid.uuid4().hex, 0, 1,
                                                        hashlib.sha256(tar).hexdigest(), meta))])
    with caplog.at_level(logging.ERROR, logger="flowlearn.modelstream"):
        with KafkaModelStore(topic, kafka_broker) as reader:
            assert reader.versions() == [1, 3]                       # 2 never made it in
            mv = reader.latest()                                     # 3 fails its checksums
            assert mv.version == 1 and mv.model.transform({"x": [0.0]}).column("y")[0].as_py() == 1.0
            with pytest.raises(CorruptVersionError, match="sha256 mismatch"):
                reader.load(2)
            with pytest.raises(CorruptVersionError, match="checksum mismatch in \\['data/0.arrow'\\]"):
                reader.load(3)
            assert reader.publish(add_k(4)) == 4                     # numbering continues past them
            assert reader.latest().version == 4
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("version 2 is corrupt (sha256 mismatch)" in m for m in messages)
    assert any("version 3 is corrupt" in m for m in messages)


def test_keep_last_and_rollback(kafka_broker, topic):
    with KafkaModelStore(topic, kafka_broker, keep_last=2) as store:
        for k in range(4):
            store.publish(pipeline(float(k)), metadata={"k": k})
        assert store.versions() == [3, 4]
        with pytest.raises(LookupError):
            store.load(1)
        new = store.rollback(3, metadata={"note": "bad"})
        assert new == 5 and store.versions() == [4, 5]
        mv = store.load()
        assert mv.metadata == {"k": 2, "note": "bad", "rollback_of": 3} and z_of(mv.model) == 4.0


def test_watch_follows_new_versions(kafka_broker, topic):
    with KafkaModelStore(topic, kafka_broker) as store:
        store.publish(add_k(1))
        w = store.watch(poll_interval=0.05)
        it = iter(w)
        assert next(it).version == 1
        store.publish(add_k(2))
        store.publish(add_k(3))
        assert [next(it).version, next(it).version] == [2, 3]
        w.close()
        assert list(it) == []
