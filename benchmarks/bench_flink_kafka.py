"""Writing a Kafka topic from a Flink job against the local engine's Kafka sink, in one run (needs
.venv-flink and the jars of `make jars`: it starts the tests' Apache Kafka broker on loopback).

Run: .venv-flink/bin/python benchmarks/bench_flink_kafka.py [--rows 400000]

Prints rows/s of ``from_table -> to_kafka`` (JSON messages of three columns, one partition) on the
local engine and on Flink in process mode at parallelism 1 and 2 (Flink's Kafka sink; each
message is one record from Python to the JVM), after a warm-up job, and each Flink figure's
ratio to the local one.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.engines import FlinkEngine, LocalEngine  # noqa: E402
from flowlearn.testing.kafka import read_topic  # noqa: E402
from kafka_broker import KafkaBroker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400_000)
    a = ap.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    rng = np.random.default_rng(0)
    t = fl.table({"id": np.arange(a.rows), "a": rng.normal(size=a.rows), "b": rng.normal(size=a.rows)})
    with KafkaBroker() as broker:
        bs = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bs})
        runs = [("local", LocalEngine())] + [(f"flink p={p} process", FlinkEngine(parallelism=p)) for p in (1, 2)]
        topics = [f"bench-{k}" for k in range(len(runs) + 1)]
        for f in admin.create_topics([NewTopic(n, 1, 1) for n in topics]).values():
            f.result(30)
        fl.run(fls.from_table(t.slice(0, 1000)).to_kafka(topics[-1], bs), engine=runs[1][1]).wait(600)   # warm-up
        local = None
        for (name, engine), topic in zip(runs, topics):
            t0 = time.perf_counter()
            fl.run(fls.from_table(t, batch_size=20_000).to_kafka(topic, bs), engine=engine).wait(1800)
            rate = a.rows / (time.perf_counter() - t0)
            local = local or rate
            assert len(read_topic(bs, topic, a.rows, timeout=120)) == a.rows
            print(f"{name:20s} {rate:12,.0f} rows/s  x local {rate / local:.2f}", flush=True)


if __name__ == "__main__":
    main()
