"""A model-stream job run as a subprocess by the SIGKILL acceptance test: FTRL trained on a
deterministic source inside the plan, every version published into a ModelStore.

    python tests/model_stream_job_helper.py STORE_DIR CHK_DIR SLOW

Prints one JSON line at the end: restored_from, versions published and skipped by the sink.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flowlearn.stream as fls  # noqa: E402
from flowlearn.classification.ftrl import OnlineLogisticRegression  # noqa: E402
from flowlearn.linalg import from_numpy  # noqa: E402
from flowlearn.modelstream import ModelStore  # noqa: E402

ROWS = 24_000


def data() -> pa.Table:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(ROWS, 8))
    y = (rng.random(ROWS) < 1 / (1 + np.exp(-(x @ np.linspace(-1, 1, 8))))).astype(np.float64)
    return pa.table({"features": from_numpy(x), "label": y})


def estimator() -> OnlineLogisticRegression:
    return OnlineLogisticRegression(global_batch_size=16, emit_every=600, alpha=0.2, reg=0.01, elastic_net=0.5)


def main(store_dir: str, chk: str, slow: float) -> None:
    def throttle(t):
        if slow:
            time.sleep(slow)
        return t

    s = fls.from_table(data(), batch_size=300).map_batches(throttle, name="throttle")
    model = estimator().fit(s)
    sink = fls.model_stream(model).to_model_store(ModelStore(store_dir), producer="ftrl-accept")
    job = fls.run(sink, checkpoint_dir=chk, checkpoint_interval=0.25)
    job.wait()
    ops = job.metrics["operators"]
    sink_op = next(o for u, o in ops.items() if "to_model_store" in u)
    sys.stdout.write(json.dumps({"restored_from": job.metrics["restored_from"],
                                 "published": sink_op.get("versions_published", 0),
                                 "skipped": sink_op.get("versions_skipped", 0)}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
