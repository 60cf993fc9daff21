"""Memory and time one large ``POST /predict`` costs the HTTP server (issue 8, defect 7).

A saved VectorAssembler -> StandardScaler -> KMeans pipeline (columns a, b) is served in a child
process (``flowlearn.serving.http.serve``, the server behind ``flowlearn serve``). For each case
the script reads the child's ``VmRSS`` from ``/proc`` once the server has answered a small warm-up
request, sends the case's requests, and reads ``VmRSS`` again and ``VmHWM`` (the peak RSS).
Linux only (``/proc``).

Cases:
  max-rows      one batch of ``max_rows`` rows {"a": 1.0, "b": 2.0} (default limits)
  max-body      one batch of ``max_body_bytes`` whose rows also carry a 200-number vector
                (the most values per byte a client can send; default limits)
  issue         the request from the issue: 932k rows in 16 MiB (default limits: refused, 413)
  issue-raised  the same request with the limits raised to admit it
                (max_rows=1,000,000, max_body_bytes=16 MiB)
  concurrent    8 clients each sending a max-body request at once (default limits: at most
                max_concurrent_predictions of them decode and predict at a time)

Run:  .venv/bin/python benchmarks/bench_http_request_memory.py [--cases max-rows,issue]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import flowlearn as fl

SERVER = """
import json, sys, threading
from flowlearn.serving.http import serve
server = serve(sys.argv[1], port=0, **json.loads(sys.argv[2]))
print(server.url, flush=True)
sys.stdin.read()          # until the parent closes stdin
server.close()
"""


def fit_model(path: str) -> None:
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2)) * 3
    t = fl.table({"a": xy[:, 0], "b": xy[:, 1]})
    fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["a", "b"], input_sizes=[1, 1], output_col="raw"),
        fl.feature.StandardScaler(input_col="raw", output_col="features"),
        fl.clustering.KMeans(k=3, features_col="features", prediction_col="cluster", seed=0),
    ]).fit(t).save(path)


def rows_body(n: int) -> bytes:
    """n rows of 18 bytes each, as in the issue (932k rows = 16 MiB)."""
    return b'{"rows":[' + b",".join(b'{"a":%d.0,"b":%d.0}' % (i % 10, i % 7) for i in range(n)) + b"]}"


def vector_body(max_bytes: int, max_rows: int, width: int = 200) -> bytes:
    """As many rows with a ``width``-number vector as fit in ``max_bytes`` (and ``max_rows``)."""
    row = b'{"a":1.0,"b":2.0,"v":[' + b",".join([b"0.5"] * width) + b"]}"
    n = min(max_rows, (max_bytes - 16) // (len(row) + 1))
    return b'{"rows":[' + b",".join([row] * n) + b"]}"


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                out[key.rstrip(":")] = int(kb) // 1024
    return out


def post(host: str, port: int, body: bytes) -> tuple[int, int]:
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, len(resp.read())
    finally:
        conn.close()


def run_case(model_path: str, options: dict, bodies: list[bytes]) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, model_path, json.dumps(options)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        host, port = url.rsplit("/", 1)[-1].split(":")
        assert post(host, int(port), b'{"a": 1.0, "b": 2.0}')[0] == 200
        before = status(proc.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: post(host, int(port), b), bodies))
        seconds = time.perf_counter() - t0
        after = status(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(60)
    return {"status": sorted({s for s, _ in answers}), "seconds": seconds, "rss_before": before["VmRSS"],
            "rss_after": after["VmRSS"], "rss_peak": after["VmHWM"]}


def main() -> None:
    from flowlearn.serving.http import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="max-rows,max-body,issue,issue-raised,concurrent")
    args = ap.parse_args()
    raised = {"max_rows": 1_000_000, "max_body_bytes": 16 << 20}
    cases = {
        "max-rows": ({}, lambda: [rows_body(DEFAULT_MAX_ROWS)]),
        "max-body": ({}, lambda: [vector_body(DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS)]),
        "issue": ({}, lambda: [rows_body(932_000)]),
        "issue-raised": (raised, lambda: [rows_body(932_000)]),
        "concurrent": ({}, lambda: [vector_body(DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS)] * 8),
    }
    print(f"defaults: max_rows={DEFAULT_MAX_ROWS}, max_body_bytes={DEFAULT_MAX_BODY_BYTES} "
          f"({DEFAULT_MAX_BODY_BYTES / 2 ** 20:.0f} MiB)")
    print(f"{'case':14s} {'requests':>8s} {'body MiB':>8s} {'status':>8s} {'seconds':>8s} "
          f"{'RSS before':>10s} {'RSS after':>10s} {'RSS peak':>10s}  (MiB)")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model")
        fit_model(path)
        for name in args.cases.split(","):
            options, make = cases[name]
            bodies = make()
            r = run_case(path, options, bodies)
            print(f"{name:14s} {len(bodies):8d} {len(bodies[0]) / 2 ** 20:8.2f} "
                  f"{','.join(map(str, r['status'])):>8s} {r['seconds']:8.2f} {r['rss_before']:10d} "
                  f"{r['rss_after']:10d} {r['rss_peak']:10d}", flush=True)


if __name__ == "__main__":
    main()
