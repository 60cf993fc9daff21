"""The Flink engine against the local engine on the same plans, in one run (needs .venv-flink).

Run: .venv-flink/bin/python benchmarks/bench_flink.py [--rows 2000000] [--train-rows 2000000]

Prints, for each engine (local; Flink at parallelism 1 and 2, in process and thread mode):
- job start-up: a one-batch plan end to end (environment, job graph, Python workers);
- batch predict end to end: Parquet files -> fitted pipeline (scaler, logistic regression) ->
  Parquet files, rows/s;
- online FTRL training: an in-memory table -> FTRL trainer (versions every 200k rows) -> the
  versions, rows/s;
and each Flink figure's ratio to the local engine's.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.classification.ftrl import OnlineLogisticRegression  # noqa: E402
from flowlearn.engines import FlinkEngine, LocalEngine  # noqa: E402

D = 16


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    y = (x @ rng.normal(size=D) + rng.logistic(size=n) > 0).astype(np.float64)
    return fl.table({"features": fl.linalg.from_numpy(x), "label": y})


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the batch-predict job")
    ap.add_argument("--train-rows", type=int, default=2_000_000, help="rows of the FTRL training job")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--modes", default="process,thread", help="Flink's Python execution modes to run")
    a = ap.parse_args()
    root = tempfile.mkdtemp()
    src = os.path.join(root, "in")
    os.makedirs(src)
    per = a.rows // a.files
    for i in range(a.files):
        pq.write_table(_table(per, i), os.path.join(src, f"part-{i:03d}.parquet"))
    model = fl.Pipeline([fl.feature.StandardScaler(input_col="features", output_col="scaled"),
                         fl.classification.LogisticRegression(features_col="scaled", max_iter=20)]).fit(_table(20_000, 99))
    train = _table(a.train_rows, 7)
    engines = [("local", LocalEngine())] + [
        (f"flink p={p} {mode}", FlinkEngine(parallelism=p, mode=mode)) for mode in a.modes.split(",") for p in (1, 2)]
    results: dict[str, dict[str, float]] = {}
    for name, eng in engines:
        r = results[name] = {}
        with fl.set_engine(eng):
            tiny = fl.table({"x": [1.0]})
            fls.from_table(tiny).to_table()   # a JVM and Python workers exist from here on
            r["start-up s"] = _timed(lambda: fls.from_table(tiny).map_batches(lambda t: t).to_table())

            def predict() -> None:
                out = os.path.join(root, f"out-{name.replace(' ', '')}")
                shutil.rmtree(out, ignore_errors=True)
                sink = model.transform(fls.from_files(src, format="parquet", batch_size=50_000)).select(
                    "prediction", "raw_prediction").to_files(out, format="parquet")
                fl.run(sink).wait()
            r["predict rows/s"] = a.rows / _timed(predict)

            def ftrl() -> None:
                m = fls.fit_online(OnlineLogisticRegression(emit_every=200_000, global_batch_size=1000),
                                   fls.from_table(train, batch_size=50_000))
                assert fls.model_stream(m).to_table().num_rows == a.train_rows // 200_000
            r["ftrl rows/s"] = a.train_rows / _timed(ftrl)
        print(name, {k: round(v, 2) for k, v in r.items()}, flush=True)
    local = results["local"]
    print(f"\n{'':20}{'start-up s':>12}{'predict rows/s':>18}{'x local':>9}{'ftrl rows/s':>15}{'x local':>9}")
    for name, r in results.items():
        print(f"{name:20}{r['start-up s']:12.2f}{r['predict rows/s']:18,.0f}"
              f"{r['predict rows/s'] / local['predict rows/s']:9.2f}{r['ftrl rows/s']:15,.0f}"
              f"{r['ftrl rows/s'] / local['ftrl rows/s']:9.2f}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
