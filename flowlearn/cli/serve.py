"""``flowlearn serve PATH_OR_STORE_URL [--host H] [--port P]``: serve a model over HTTP.

PATH_OR_STORE_URL is a saved model (a directory with ``metadata.json``; a path or fsspec URL),
a model store directory (served at its newest valid version, each new version swapped in),
or ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` for a Kafka model store. Endpoints:
``POST /predict``, ``GET /model``, ``GET /healthz``, ``GET /metrics``, ``GET /openapi.json`` and the
Open Inference Protocol under ``/v2`` (see :mod:`flowlearn.serving.http`; Starlette on uvicorn,
the ``serve`` extra). Ctrl-C or SIGTERM shuts the server down cleanly.

Examples::

    flowlearn serve ./models/churn                    # a saved pipeline model, on 127.0.0.1:8080
    flowlearn serve ./model-store --host 0.0.0.0 --port 9000
    flowlearn serve ./models/churn --max-rows 50000 --max-body-bytes 33554432   # bigger batches
    flowlearn serve kafka://127.0.0.1:9092/churn-models
    curl -s localhost:8080/predict -d '{"age": 41, "plan": "pro"}'
    curl -s 'localhost:8080/predict?include_inputs=true' -d '{"age": 41, "plan": "pro"}'

Wiring (``flowlearn/cli/main.py``)::

    from flowlearn.cli.serve import add_serve_parser
    add_serve_parser(sub)

Standalone: ``python -m flowlearn.cli.serve PATH [--port 0]`` (port 0 picks a free port; the
first line printed names the URL).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from flowlearn.serving.http import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_PREDICTIONS,
                                    DEFAULT_MAX_ROWS)

__all__ = ["add_serve_parser", "run_serve", "main"]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="PATH_OR_STORE_URL",
                   help="saved model path, model store path or fsspec URL, or kafka://HOST:PORT/TOPIC")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free port (default: 8080)")
    p.add_argument("--poll-interval", type=float, default=0.2,
                   help="seconds between listings of a followed model store (default: 0.2)")
    p.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                   help=f"most rows in one POST /predict batch or /v2 inference tensor; more is a 413 "
                        f"(default: {DEFAULT_MAX_ROWS})")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body in bytes; more is a 413 (default: {DEFAULT_MAX_BODY_BYTES}, "
                        f"{DEFAULT_MAX_BODY_BYTES >> 20} MiB)")
    p.add_argument("--max-concurrent-predictions", type=int, default=DEFAULT_MAX_CONCURRENT_PREDICTIONS,
                   help=f"prediction jobs on worker threads at once (a job runs the requests waiting for it, "
                        f"one after the other); a request waits for one up to --request-timeout, then 503 "
                        f"(default: {DEFAULT_MAX_CONCURRENT_PREDICTIONS})")
    p.add_argument("--request-timeout", type=float, default=60.0,
                   help="seconds a request's headers and body may take to arrive, a request may wait for a "
                        "prediction job, and an idle keep-alive connection stays open (default: 60)")
    p.add_argument("--model-name", default=None,
                   help="the model's name in the Open Inference Protocol paths /v2/models/NAME (default: the "
                        "last part of PATH_OR_STORE_URL)")
    p.set_defaults(func=run_serve)


_DESCRIPTION = ("Serve a saved model or a model store over HTTP: POST /predict, GET /model, GET /healthz, "
                "GET /metrics (Prometheus), GET /openapi.json and the Open Inference Protocol (KServe V2) under "
                "/v2. A model store is followed: each new valid version is swapped in.")


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` command to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser("serve", help="serve a saved model or a model store over HTTP",
                              description=_DESCRIPTION)
    _add_arguments(p)
    return p


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT / SIGTERM; 0 on a clean shutdown, 2 when the model cannot be opened."""
    # The process is the server's own: hand the GIL between the event loop and the prediction threads
    # every 1 ms instead of 5 ms (halves the p99 latency under load in benchmarks/bench_http_load.py).
    previous_switch = sys.getswitchinterval()
    sys.setswitchinterval(min(previous_switch, 0.001))
    try:
        from flowlearn.serving.http import serve

        server = serve(args.target, host=args.host, port=args.port, poll_interval=args.poll_interval,
                       max_rows=args.max_rows, max_body_bytes=args.max_body_bytes,
                       max_concurrent_predictions=args.max_concurrent_predictions,
                       request_timeout=getattr(args, "request_timeout", 60.0),
                       model_name=getattr(args, "model_name", None))
    except ImportError as e:
        print(f"flowlearn serve: error: {e}; install the server with `pip install 'flowlearn[serve]'`",
              file=sys.stderr)
        sys.setswitchinterval(previous_switch)
        return 2
    except (ValueError, TypeError, LookupError, OSError) as e:
        print(f"flowlearn serve: error: {e}", file=sys.stderr)
        sys.setswitchinterval(previous_switch)
        return 2
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    version = server.predictor.model_version
    print(f"flowlearn serve: {server.source} (model version {version if version is not None else '-'}) "
          f"on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sys.setswitchinterval(previous_switch)
    print("flowlearn serve: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m flowlearn.cli.serve [serve] PATH_OR_STORE_URL ...``: the ``serve`` command on its own."""
    from flowlearn.cli.main import run_command

    return run_command("serve", argv)


if __name__ == "__main__":
    sys.exit(main())
