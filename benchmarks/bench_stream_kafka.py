"""Kafka -> StandardScaler -> Kafka through flowlearn streams vs a bare confluent-kafka
consume-parse-scale-produce loop on the same (tansu) broker.

Run: .venv/bin/python benchmarks/bench_stream_kafka.py [--rows 200000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.testing.kafka import TansuBroker  # noqa: E402


def main() -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    n = ap.parse_args().rows
    b = TansuBroker()
    b.start()
    bs = b.bootstrap_servers
    try:
        admin = AdminClient({"bootstrap.servers": bs})
        for f in admin.create_topics([NewTopic(t, 3, 1) for t in ("in", "out0", "out1")]).values():
            f.result(15)
        p = Producer({"bootstrap.servers": bs, "linger.ms": 10})
        rng = np.random.default_rng(0)
        for i, x in enumerate(rng.normal(size=n).tolist()):
            p.produce("in", json.dumps({"id": i, "x": x}).encode(), partition=i % 3)
            if i % 10000 == 0:
                p.poll(0)
        p.flush(60)

        # bare loop: assign, consume, json.loads, scale, json.dumps, produce
        c = Consumer({"bootstrap.servers": bs, "group.id": "bare", "enable.auto.commit": False})
        c.assign([TopicPartition("in", q, 0) for q in range(3)])
        out = Producer({"bootstrap.servers": bs, "linger.ms": 10, "queue.buffering.max.messages": 1_000_000})
        t0, got = time.perf_counter(), 0
        while got < n:
            for m in c.consume(20000, 0.5):
                if m.error() is None:
                    r = json.loads(m.value())
                    r["y"] = (r["x"] - 0.0) / 1.0
                    out.produce("out0", json.dumps(r).encode())
                    got += 1
            out.poll(0)
        out.flush(60)
        bare = time.perf_counter() - t0
        c.close()

        model = fl.feature.StandardScaler(input_col="v", output_col="y").fit({"v": [[-1.0], [1.0]]})
        s = fls.from_kafka("in", bs, schema="id long, x double", start="earliest", stop_at_end=True)
        s = s.map_batches(lambda t: t.append_column("v", fl.linalg.from_numpy(t.column("x").to_numpy()[:, None])))
        sink = model.transform(s).map_batches(lambda t: t.drop_columns(["v"])).to_kafka("out1", bs)
        t0 = time.perf_counter()
        fls.run(sink, checkpoint_dir=tempfile.mkdtemp(), checkpoint_interval=5.0).wait()
        flow = time.perf_counter() - t0
        sys.stdout.write(f"rows={n}  bare confluent-kafka loop: {n / bare:,.0f} rows/s  flowlearn stream "
                         f"(transactional, checkpointed): {n / flow:,.0f} rows/s  ratio: {bare / flow:.2f}\n")
    finally:
        b.stop()


if __name__ == "__main__":
    main()
