"""CSV directory -> StandardScaler -> Parquet files, through flowlearn streams vs plain pyarrow.

Run: .venv/bin/python benchmarks/bench_stream_files.py [--rows 1000000] [--files 10]
Prints rows/s of both and the ratio (target >= 0.5 of the pyarrow limit).
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
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=10)
    a = ap.parse_args()
    root = tempfile.mkdtemp()
    src = os.path.join(root, "in")
    os.makedirs(src)
    rng = np.random.default_rng(0)
    per = a.rows // a.files
    cols = [f"c{i}" for i in range(8)]
    for i in range(a.files):
        pacsv.write_csv(pa.table({c: rng.normal(size=per) for c in cols}), os.path.join(src, f"f{i:03d}.csv"))
    schema = ", ".join(f"{c} double" for c in cols)
    mean, std = np.zeros(len(cols)), np.ones(len(cols))

    # the limit: plain pyarrow read CSV -> numpy scale -> write Parquet
    out0 = os.path.join(root, "out0")
    os.makedirs(out0)
    t0 = time.perf_counter()
    for name in sorted(os.listdir(src)):
        t = pacsv.read_csv(os.path.join(src, name))
        x = np.column_stack([t.column(c).to_numpy() for c in cols])
        y = (x - mean) / std
        pq.write_table(t.append_column("y", pa.FixedSizeListArray.from_arrays(pa.array(y.ravel()), len(cols))),
                       os.path.join(out0, name + ".parquet"))
    base = time.perf_counter() - t0

    # flowlearn: from_files -> VectorAssembler-equivalent map -> StandardScalerModel -> to_files
    scaler = fl.feature.StandardScaler(input_col="v", output_col="y")
    model = scaler.fit({"v": rng.normal(size=(100, len(cols)))})
    out1 = os.path.join(root, "out1")
    t0 = time.perf_counter()
    s = fls.from_files(src, format="csv", schema=schema, batch_size=per)
    s = s.map_batches(lambda t: t.append_column("v", fl.linalg.from_numpy(
        np.column_stack([t.column(c).to_numpy() for c in cols]))), name="assemble")
    model.transform(s).to_files(out1, format="parquet", rolling_rows=per).run().wait()
    flow = time.perf_counter() - t0
    n = per * a.files
    sys.stdout.write(f"rows={n}  pyarrow: {n / base:,.0f} rows/s  flowlearn stream: {n / flow:,.0f} rows/s  "
                     f"ratio: {base / flow:.2f}\n")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
