"""StoreFollower: a LocalPredictor following a ModelStore / KafkaModelStore swaps to each new
valid version (whole pipeline at once), never serves a torn or corrupt one, and serves
correctly from several threads while versions are published every 100 ms.

Publish-to-serve latencies are measured and printed (run with -s); tests never assert on
wall time -- benchmarks/bench_hot_swap.py reports the numbers."""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
from flowlearn.modelstream import ModelStore
from flowlearn.serving.follow import StoreFollower


from flowlearn.testing.models import AddK  # noqa: E402


def pipeline(k: float) -> fl.PipelineModel:
    """z = x + 2k: a response mixing two versions' stages would not satisfy it."""
    return fl.PipelineModel([AddK(input_col="x", output_col="y").set_model_data(pa.table({"k": pa.array([k])})),
                             AddK(input_col="y", output_col="z").set_model_data(pa.table({"k": pa.array([k])}))])


def wait_until(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.001)
    return cond()


def measure_latencies(store, predictor, n, gap=0.03):
    """Publish n versions; for each, seconds from publish() returning to the predictor serving it."""
    out = []
    rng = np.random.default_rng(1)
    for i in range(n):
        v = store.publish(pipeline(float(i)))
        t0 = time.perf_counter()
        assert wait_until(lambda: (predictor.model_version or 0) >= v), f"version {v} never served"
        out.append(time.perf_counter() - t0)
        time.sleep(gap * rng.random())          # spread publishes over the poll phase
    return np.array(out)


def report(name, lat):
    print(f"\n[hot swap] {name}: n={lat.size} p50={np.percentile(lat, 50) * 1e3:.1f} ms "
          f"p99={np.percentile(lat, 99) * 1e3:.1f} ms max={lat.max() * 1e3:.1f} ms")


@pytest.mark.parametrize("notify", [True, False], ids=["notification", "polling"])
def test_follower_swaps_to_each_new_version(tmp_path, notify):
    store = ModelStore(str(tmp_path))
    store.publish(pipeline(100.0))
    predictor = fl.LocalPredictor(pipeline(-1.0))             # not from the store: version None
    with StoreFollower(store, predictor, poll_interval=0.2, notify=notify) as follower:
        assert follower.wait_for(1, timeout=10)                 # starts with the store's newest version
        assert predictor.model_version == 1 and predictor.predict({"x": 1.0})["z"] == 201.0
        lat = measure_latencies(store, predictor, n=12 if notify else 8, gap=0.03 if notify else 0.4)
        report("filesystem, " + ("file-system notification" if notify else "polling every 0.2 s"), lat)
        last = store.latest_version()
        assert predictor.model_version == last and follower.version == last
        out = predictor.predict({"x": 1.0})
        assert out["model_version"] == last and out["z"] == 1.0 + 2 * (last - 2)
        assert follower.errors == 0 and follower.swaps == last
    # closed: later versions are not swapped in, the predictor keeps serving
    store.publish(pipeline(500.0))
    time.sleep(0.3)
    assert predictor.model_version == last and predictor.predict({"x": 0.0})["model_version"] == last


@pytest.mark.parametrize("notifications", [True, False], ids=["file-system events", "marker polling"])
def test_notification_wakes_the_watcher_long_before_the_poll_interval(tmp_path, monkeypatch, notifications):
    """With a 60 s poll interval only the LATEST marker's notification (watchdog's file-system
    events, or the 5 ms marker check where events cannot be had) can bring a version within 20 s."""
    import flowlearn.modelstream.store as store_mod

    if not notifications:
        def unavailable(root):
            raise OSError("inotify watch limit reached")
        monkeypatch.setattr(store_mod._MarkerNotifier, "subscribe", unavailable)
    store = ModelStore(str(tmp_path))
    store.publish(pipeline(1.0))
    watcher = store.watch(60.0, after=1)
    try:
        assert watcher.notifications is notifications
        got = []
        reader = threading.Thread(target=lambda: got.append(next(watcher)), daemon=True)
        reader.start()
        time.sleep(0.2)                      # the reader is waiting
        store.publish(pipeline(2.0))
        reader.join(20.0)
        assert [mv.version for mv in got] == [2]
    finally:
        watcher.close()
    assert not reader.is_alive()


def test_follower_never_serves_torn_or_corrupt_versions(tmp_path, caplog):
    root = tmp_path / "store"
    store = ModelStore(str(root))
    store.publish(pipeline(1.0))
    predictor = fl.LocalPredictor(store.load().model)
    predictor.swap(store.load().model, 1)
    follower = StoreFollower(store, predictor, poll_interval=0.05)
    try:
        # a torn version 2: the whole stage but no _COMMITTED, and the marker touched
        shutil.copytree(root / "versions" / f"{1:012d}", root / "versions" / f"{2:012d}")
        os.remove(root / "versions" / f"{2:012d}" / "_COMMITTED")
        store._write_marker(2, time.time())
        # a corrupt version 3: committed, then a file damaged; renamed in whole (as a publish would)
        scratch = ModelStore(str(tmp_path / "scratch"))
        for k in (0.0, 0.0, 3.0):
            scratch.publish(pipeline(k))
        data = tmp_path / "scratch" / "versions" / f"{3:012d}" / "stages" / "001" / "data" / "0.arrow"
        raw = bytearray(data.read_bytes())
        raw[-24] ^= 0x55
        data.write_bytes(bytes(raw))
        with caplog.at_level(logging.ERROR, logger="flowlearn.modelstream"):
            os.rename(tmp_path / "scratch" / "versions" / f"{3:012d}", root / "versions" / f"{3:012d}")
            store._write_marker(3, time.time())
            assert wait_until(lambda: any("version 3 is corrupt" in r.getMessage() for r in caplog.records), 10)
        time.sleep(0.2)                                          # several more polls
        assert predictor.model_version == 1 and predictor.predict({"x": 0.0})["z"] == 2.0
        # the next valid version is served
        assert store.publish(pipeline(4.0)) == 4
        assert follower.wait_for(4, timeout=10)
        assert predictor.predict({"x": 0.0}) == {"x": 0.0, "y": 4.0, "z": 8.0, "model_version": 4}
        # the corrupt version 3 is counted (the torn version 2 was never visible)
        assert follower.errors == 1 and "version 3 is corrupt" in str(follower.last_error)
    finally:
        follower.close()


def test_threaded_predictor_under_publishes_every_100ms(tmp_path):
    store = ModelStore(str(tmp_path), keep_last=5)
    published: dict[int, float] = {}
    k0 = 0.5
    published[store.publish(pipeline(k0))] = k0
    predictor = fl.LocalPredictor(store.load().model)
    predictor.swap(store.load().model, 1)
    follower = StoreFollower(store, predictor, poll_interval=0.2)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[tuple[int, float, float]]] = [[] for _ in range(4)]

    def client(i):
        rng = np.random.default_rng(i)
        n = 0
        while not stop.is_set():
            x = float(rng.integers(0, 1000))
            try:
                out = predictor.predict({"x": x})
                seen[i].append((out["model_version"], x, out["z"]))
            except BaseException as e:  # noqa: BLE001 - counted, must stay zero
                errors.append(e)
            n += 1
            if n % 200 == 0:
                time.sleep(0.001)           # bursts, so the GIL does not starve the publisher

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(25):                                      # a new version every 100 ms
            time.sleep(0.1)
            k = 1000.0 + 7.0 * i
            published[store.publish(pipeline(k))] = k
        last = max(published)
        assert follower.wait_for(last, timeout=10)
        # every client answers at least once with the newest version (not a fixed sleep)
        assert wait_until(lambda: all(rs and rs[-1][0] == last for rs in seen), timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        follower.close()
    assert errors == []
    resp = np.array([r for rs in seen for r in rs], dtype=float)     # (version, x, z)
    assert len(resp) > 1000
    served = set(resp[:, 0].astype(int).tolist())
    assert served <= set(published)                              # every response's version was published
    k = np.array([published[int(v)] for v in resp[:, 0]])
    np.testing.assert_array_equal(resp[:, 2], resp[:, 1] + 2 * k)  # and was served whole (both stages)
    for rs in seen:                                              # each client only moves forward
        vs = np.array([v for v, _, _ in rs])
        assert (np.diff(vs) >= 0).all()
    assert last in served and len(served) >= 5
    print(f"\n[hot swap] threaded: {len(resp)} responses, {len(served)} of {len(published)} versions served, "
          f"0 errors")


@pytest.mark.kafka
def test_follower_on_a_kafka_store(kafka_broker):
    from flowlearn.modelstream import KafkaModelStore

    with KafkaModelStore(f"flowlearn-follow-{uuid.uuid4().hex[:8]}", kafka_broker) as store:
        store.publish(pipeline(1.0))
        predictor = fl.LocalPredictor(pipeline(0.0))
        with StoreFollower(store, predictor, poll_interval=0.2) as follower:
            assert follower.wait_for(1, timeout=20)
            lat = measure_latencies(store, predictor, n=10)
            report("kafka", lat)
            last = store.latest_version()
            assert predictor.predict({"x": 1.0}) == {"x": 1.0, "y": 1.0 + (last - 2), "z": 1.0 + 2 * (last - 2),
                                                     "model_version": last}
            assert follower.errors == 0
