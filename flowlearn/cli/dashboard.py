"""``flowlearn dashboard STORE [--metrics-dir DIR] [--host H] [--port P]``: a live web page of a
model store and the jobs feeding it.

STORE is a model store directory (or fsspec URL); the page shows its versions with their kind
(batch / online / rebase) and gate decisions and the newest version's pipeline as a graph. With
``--metrics-dir`` it also shows the windowed evaluation metrics and the jobs' throughput, lag and
checkpoints that jobs write there (``flowlearn run JOB.py --metrics-dir DIR``, or
:mod:`flowlearn.dashboard.metrics` from Python). The page updates itself every ``--refresh``
seconds. Ctrl-C or SIGTERM stops the server.

Examples::

    flowlearn dashboard ./model-store --metrics-dir ./metrics          # http://127.0.0.1:8050
    flowlearn dashboard ./model-store --port 0                         # a free port, printed
    flowlearn dashboard ./model-store --server http://127.0.0.1:8080   # mark what flowlearn serve serves

Wiring (``flowlearn/cli/main.py``)::

    from flowlearn.cli.dashboard import add_dashboard_parser
    add_dashboard_parser(sub)

Standalone: ``python -m flowlearn.cli.dashboard STORE [--port 0]`` (the first line printed names
the URL).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["add_dashboard_parser", "run_dashboard", "main"]

_DESCRIPTION = ("Serve a live dashboard of a model store (versions, kinds, gate decisions, the pipeline of the "
                "newest version) and, with --metrics-dir, of the evaluation metrics and jobs written there.")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="model store directory or fsspec URL")
    p.add_argument("--metrics-dir", default=None, metavar="DIR",
                   help="metrics directory the jobs write (jobs/ and eval/; see flowlearn run --metrics-dir)")
    p.add_argument("--server", default=None, metavar="URL",
                   help="base URL of the model server following the store (flowlearn serve): the page marks the "
                        "version it serves and draws that version's pipeline")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port to listen on; 0 picks a free port (default: 8050)")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between page updates (default: 1)")
    p.set_defaults(func=run_dashboard)


def add_dashboard_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dashboard`` command to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser("dashboard", help="a live web page of a model store and its jobs",
                              description=_DESCRIPTION)
    _add_arguments(p)
    return p


def run_dashboard(args: argparse.Namespace) -> int:
    """Serve until SIGINT / SIGTERM; 0 on a clean shutdown, 2 when the store or server cannot be opened."""
    store = args.store
    if store.startswith("kafka://"):
        print(f"flowlearn dashboard: error: {store} is a Kafka model store; the dashboard reads filesystem model "
              f"stores (a path or fsspec URL)", file=sys.stderr)
        return 2
    if "://" not in store and not os.path.isdir(os.path.join(store, "versions")):
        print(f"flowlearn dashboard: error: {store} is not a model store (no versions/ folder); publish into it "
              f"with ModelStore({store!r}).publish(...) or a job's to_model_store", file=sys.stderr)
        return 2
    try:
        from flowlearn.dashboard.app import serve_dashboard

        server = serve_dashboard(store, metrics_dir=args.metrics_dir, host=args.host, port=args.port,
                                 refresh=args.refresh, server=args.server)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"flowlearn dashboard: error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"flowlearn dashboard: {store}" + (f" and {args.metrics_dir}" if args.metrics_dir else "")
          + f" on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("flowlearn dashboard: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m flowlearn.cli.dashboard [dashboard] STORE ...``: the command on its own."""
    from flowlearn.cli.main import run_command

    return run_command("dashboard", argv)


if __name__ == "__main__":
    sys.exit(main())
