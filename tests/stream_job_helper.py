"""Helpers for the stream tests: a tiny test model, the real StandardScalerModel used by the
acceptance jobs (the numpy oracle lives in the tests), and a job runner started as a subprocess
for the SIGKILL tests.

    python tests/stream_job_helper.py files  IN_DIR OUT_DIR CHK_DIR WATCH SLOW
    python tests/stream_job_helper.py kafka  BOOTSTRAP IN_TOPIC OUT_TOPIC CHK_DIR STOP_AT_END SLOW
    python tests/stream_job_helper.py dead_letters  IN_DIR OUT_DIR DEAD_DIR CHK_DIR SLOW
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.api import Estimator, Model  # noqa: E402
from flowlearn.data.columns import numeric_column, with_column  # noqa: E402


class ShiftScaleModel(Model):
    """y = (x - mean) / std on a numeric column ``x`` (test-only model)."""

    def _load_model_data(self, tables):
        self.mean = float(tables[0].column("mean")[0].as_py())
        self.std = float(tables[0].column("std")[0].as_py())

    def _transform(self, t):
        self._require_model()
        x = numeric_column(t, "x", "ShiftScaleModel")
        return with_column(t, "y", pa.array((x - self.mean) / self.std))


class ShiftScale(Estimator):
    online_counterpart = "OnlineShiftScale"

    def _fit(self, t):
        x = numeric_column(t, "x", "ShiftScale")
        return ShiftScaleModel().set_model_data(pa.table({"mean": [float(x.mean())], "std": [float(x.std())]}))


def scaler_model(mean: float = 10.0, std: float = 2.0):
    """A fitted ``fl.feature.StandardScalerModel`` on vector column ``xv`` with exactly this mean and
    std: Flink ML's StandardScaler uses the unbiased std, so two points mean +- std/sqrt(2) give std."""
    d = std / np.sqrt(2.0)
    data = fl.table({"xv": [[mean - d], [mean + d]]})
    return fl.feature.StandardScaler(input_col="xv", output_col="y", with_mean=True).fit(data)


def scale(s):
    """Scale numeric column ``x`` into ``y`` with the real StandardScalerModel (via a 1-d vector)."""
    model = scaler_model()
    s = s.map_batches(lambda t: t.append_column("xv", fl.linalg.from_numpy(
        t.column("x").to_numpy().reshape(-1, 1))), name="to_vector")

    def flatten(t):
        y = fl.linalg.to_numpy(t.column("y"))[:, 0]
        t = t.drop_columns(["xv"])
        return t.set_column(t.column_names.index("y"), "y", pa.array(y))

    return model.transform(s).map_batches(flatten, name="flatten")


def _throttle(slow: float):
    def f(t):
        if slow:
            time.sleep(slow)
        return t
    return f


def files_job(in_dir, out_dir, chk, watch, slow):
    s = fls.from_files(in_dir, format="csv", schema="id long, x double", watch=watch, poll_interval=0.05,
                       batch_size=500)
    s = s.map_batches(_throttle(slow), name="throttle")
    return scale(s).to_files(out_dir, format="parquet", rolling_rows=1000)


def kafka_job(bs, in_topic, out_topic, chk, stop_at_end, slow):
    s = fls.from_kafka(in_topic, bs, group_id="accept", schema="id long, x double", start="earliest",
                       stop_at_end=stop_at_end)
    s = s.map_batches(_throttle(slow), name="throttle")
    return scale(s).to_kafka(out_topic, bs, format="json")


def dead_letters_job(in_dir, out_dir, dead_dir, each_batch):
    """CSV files read in batches of 20 rows with bad lines skipped: rows to ``out_dir``, dead letters
    to ``dead_dir`` (both Parquet). ``each_batch(table)`` sees every batch of rows on the way."""
    s = fls.from_files(in_dir, format="csv", schema="id long, x double", handle_invalid="skip", batch_size=20)
    rows = s.map_batches(each_batch, name="each_batch").to_files(out_dir, format="parquet", rolling_rows=1000)
    return [rows, s.dead_letters().to_files(dead_dir, format="parquet", rolling_rows=1000)]


def main(argv):
    mode = argv[0]
    if mode == "files":
        in_dir, out_dir, chk, watch, slow = argv[1], argv[2], argv[3], argv[4] == "1", float(argv[5])
        sinks = [files_job(in_dir, out_dir, chk, watch, slow)]
    elif mode == "dead_letters":
        in_dir, out_dir, dead_dir, chk, slow = argv[1], argv[2], argv[3], argv[4], float(argv[5])
        sinks = dead_letters_job(in_dir, out_dir, dead_dir, _throttle(slow))
    else:
        bs, tin, tout, chk, stop, slow = argv[1], argv[2], argv[3], argv[4], argv[5] == "1", float(argv[6])
        sinks = [kafka_job(bs, tin, tout, chk, stop, slow)]
    job = fls.run(*sinks, checkpoint_dir=chk, checkpoint_interval=0.3, max_batch_rows=500)
    job.wait()
    m = job.metrics
    ops = m["operators"].values()
    sys.stdout.write(json.dumps({"restored_from": m["restored_from"], "rows_in": m["rows_in"],
                                 "duplicates": sum(o.get("duplicates", 0) for o in ops),
                                 "dead_letters": m["dead_letters"],
                                 "files_opened": sum(o.get("files_opened", 0) for o in ops)}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])


__all__ = ["ShiftScale", "ShiftScaleModel", "scaler_model", "scale", "dead_letters_job", "np"]
