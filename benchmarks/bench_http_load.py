"""Load test of ``flowlearn serve`` on loopback while a new model version is published every second.

A VectorAssembler -> StandardScaler -> LogisticRegression pipeline (4 numeric columns) is
published to a ``ModelStore``; ``flowlearn serve STORE`` runs in a child process and follows the
store, while this script publishes a new version every ``--publish-interval`` seconds (refitted
pipelines, cycled). A load client in another child process (asyncio on uvloop, raw HTTP/1.1 over
``--connections`` keep-alive connections, so it costs little CPU per request) sends single-row
``POST /predict`` requests for ``--duration`` seconds or ``--max-requests`` requests, whichever
comes first, and records each answer's status, latency and ``model_version``.

Printed per server: predictions/s, errors (non-200 answers and failed connections), p50 / p99 /
max latency, the versions seen, whether every answered version is one that was published, and
the CPU the server and the load client used (fractions of one core). The script exits with
status 1 when a server answered an error or a version that was never published.
The same run then does the same against the previous server (the standard library's
``http.server``): the ``flowlearn`` package of the last commit whose ``flowlearn/serving/http.py``
uses ``ThreadingHTTPServer``, extracted with ``git archive`` into a temporary directory and put
first on the child's ``PYTHONPATH``; and prints the ratio.

Run:  .venv/bin/python benchmarks/bench_http_load.py [--duration 60] [--connections 64] [--skip-old]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLIENT = r'''
import asyncio, json, sys, time
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass

host, port, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
duration, max_requests = float(sys.argv[4]), int(sys.argv[5])
bodies = [json.dumps({"a": (i % 17) / 4.0, "b": (i % 5) - 2.0, "c": (i % 11) / 3.0, "d": (i % 7) - 3.0}).encode()
          for i in range(64)]
requests = [b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (host.encode(), len(b), b) for b in bodies]
latencies, versions, statuses = [], {}, {}
errors = []
sent = 0
in_window = 0       # answers received before the end of the run's duration
stop_at = 0.0

async def connection(k):
    global sent, in_window
    reader, writer = await asyncio.open_connection(host, port)
    i = k
    while time.perf_counter() < stop_at and sent < max_requests:
        sent += 1
        t0 = time.perf_counter()
        try:
            writer.write(requests[i % 64])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            n = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(n)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            errors.append(repr(e))
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            continue
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        if t1 <= stop_at:
            in_window += 1
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            v = json.loads(body)["model_version"]
            versions[v] = versions.get(v, 0) + 1
        elif len(errors) < 20:
            errors.append(body[:200].decode("utf-8", "replace"))
        i += connections
    writer.close()

async def main():
    global stop_at
    t0 = time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(*(connection(k) for k in range(connections)))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"elapsed": elapsed, "in_window": in_window, "window": min(elapsed, duration),
                      "latencies": latencies, "versions": versions, "statuses": statuses,
                      "errors": errors[:20], "failed": len(errors)}))

asyncio.run(main())
'''


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fit_models(n: int) -> list:
    import flowlearn as fl

    models = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(400, 4))
        y = (x @ np.array([1.0, -2.0, 0.5, 1.5]) + rng.normal(size=400) > 0).astype(float)
        t = fl.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "label": y})
        models.append(fl.Pipeline([
            fl.feature.VectorAssembler(input_cols=["a", "b", "c", "d"], input_sizes=[1, 1, 1, 1], output_col="raw"),
            fl.feature.StandardScaler(input_col="raw", output_col="features"),
            fl.classification.LogisticRegression(),
        ]).fit(t))
    return models


def old_server_tree(dest: str) -> tuple[str, str]:
    """Extract the ``flowlearn`` package of the last commit with the http.server implementation."""
    commits = subprocess.run(["git", "log", "--format=%H", "--", "flowlearn/serving/http.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for c in commits:
        src = subprocess.run(["git", "show", f"{c}:flowlearn/serving/http.py"], cwd=ROOT, capture_output=True,
                             text=True).stdout
        if "ThreadingHTTPServer" in src:
            os.makedirs(dest, exist_ok=True)
            archive = os.path.join(dest, "old.tar")
            with open(archive, "wb") as f:
                subprocess.run(["git", "archive", c, "flowlearn"], cwd=ROOT, stdout=f, check=True)
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
            return dest, c
    raise SystemExit("no commit with the http.server implementation found")


def run_server(store: str, pythonpath: str | None, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = pythonpath or ROOT
    proc = subprocess.Popen([sys.executable, "-m", "flowlearn.cli.serve", "serve", store, "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=pythonpath or ROOT)
    line = proc.stdout.readline()
    m = re.search(r"on (http://127\.0\.0\.1:(\d+))", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, m.group(2)


def load(name: str, store_path: str, models: list, args: argparse.Namespace, pythonpath: str | None) -> dict:
    from flowlearn.modelstream import ModelStore

    store = ModelStore(store_path)
    published = {store.latest().version}
    proc, port = run_server(store_path, pythonpath, [] if pythonpath else args.serve_args.split())
    stop = threading.Event()

    def publisher() -> None:
        k = 0
        while not stop.wait(args.publish_interval):
            published.add(store.publish(models[k % len(models)]))
            k += 1

    try:
        time.sleep(1.0)                         # let the server settle
        pub = threading.Thread(target=publisher, daemon=True)
        pub.start()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = _cpu_seconds(proc.pid)
        client = subprocess.run([sys.executable, "-c", CLIENT, "127.0.0.1", port, str(args.connections),
                                 str(args.duration), str(args.max_requests)], capture_output=True, text=True,
                                timeout=args.duration + 120)
        server_cpu = _cpu_seconds(proc.pid) - server_cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        stop.set()
        pub.join()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if client.returncode != 0:
        raise SystemExit(f"the load client failed: {client.stderr[-3000:]}")
    r = json.loads(client.stdout)
    lat = np.array(r["latencies"]) * 1000
    ok = r["statuses"].get("200", 0)
    seen = {int(v) for v in r["versions"]}
    # the rate counts answers received within the run's duration (a request still pending at the end,
    # e.g. a connection the old server's 5-deep accept queue left waiting for a SYN retry, is not spread over it)
    out = {"name": name, "rate": r["in_window"] / r["window"], "ok": ok, "errors": r["failed"] + sum(
        n for s, n in r["statuses"].items() if s != "200"), "p50": float(np.percentile(lat, 50)) if lat.size else 0,
           "p99": float(np.percentile(lat, 99)) if lat.size else 0, "max": float(lat.max()) if lat.size else 0,
           "versions": len(seen), "published": len(published), "unpublished": sorted(seen - published),
           "samples": r["errors"][:3], "elapsed": r["elapsed"], "server_cpu": server_cpu / r["elapsed"],
           "client_cpu": client_cpu / r["elapsed"]}
    print(f"{name:10s} {out['rate']:10.0f} {out['ok']:9d} {out['errors']:7d} {out['p50']:8.2f} {out['p99']:8.2f} "
          f"{out['max']:8.1f} {out['versions']:5d}/{out['published']:<5d} "
          f"{'yes' if not out['unpublished'] else 'NO: ' + str(out['unpublished'][:5]):>13s} "
          f"{out['server_cpu']:6.0%} {out['client_cpu']:6.0%}", flush=True)
    if out["samples"]:
        print(f"           error samples: {out['samples']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per server (default 60)")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="requests per server at most")
    ap.add_argument("--connections", type=int, default=64, help="concurrent client connections (default 64)")
    ap.add_argument("--publish-interval", type=float, default=1.0, help="seconds between published versions")
    ap.add_argument("--serve-args", default="", help="more `flowlearn serve` options for the current server")
    ap.add_argument("--skip-old", action="store_true", help="only the current server")
    args = ap.parse_args()
    models = fit_models(5)
    from flowlearn.modelstream import ModelStore

    print(f"{args.connections} connections, single-row POST /predict, {args.duration:g} s (at most "
          f"{args.max_requests} requests), a new version every {args.publish_interval:g} s; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} before the run")
    print(f"{'server':10s} {'pred/s':>10s} {'answers':>9s} {'errors':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} "
          f"{'versions':>11s} all published server client (CPU, of one core)")
    results = []
    with tempfile.TemporaryDirectory() as d:
        ModelStore(os.path.join(d, "store-new")).publish(models[0])
        results.append(load("starlette", os.path.join(d, "store-new"), models, args, None))
        if not args.skip_old:
            tree, commit = old_server_tree(os.path.join(d, "old"))
            ModelStore(os.path.join(d, "store-old")).publish(models[0])
            print(f"(old server: flowlearn/ at commit {commit[:10]})", flush=True)
            results.append(load("http.server", os.path.join(d, "store-old"), models, args, tree))
    if len(results) == 2 and results[1]["rate"]:
        print(f"ratio: {results[0]['rate'] / results[1]['rate']:.1f}x the predictions/s of the http.server server; "
              f"p99 {results[0]['p99']:.1f} ms vs {results[1]['p99']:.1f} ms")
    bad = [r["name"] for r in results if r["errors"] or r["unpublished"]]
    if bad:
        raise SystemExit(f"errors or answers from versions never published: {bad}")


if __name__ == "__main__":
    main()
