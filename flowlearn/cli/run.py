"""``flowlearn run JOB.py``: run a stream job from the command line, with live progress.

The job file is a Python module that defines ``build()``, returning the sink, or a list or
tuple of the sinks, of a plan. ``flowlearn run`` imports the file (its directory goes first
on ``sys.path``, so it can import modules next to it), calls ``build()``, starts
``fl.run(*sinks, checkpoint_dir=..., checkpoint_interval=...)`` on the local engine and waits.

Example job file (``scale_job.py``)::

    import pyarrow.compute as pc
    import flowlearn.stream as fls

    def build():
        s = fls.from_files("data/in", format="csv", schema="id long, x double", watch=True)
        s = s.map_batches(lambda t: t.append_column("x2", pc.multiply(t["x"], 2.0)))
        return s.to_files("data/out", format="parquet")

Run it::

    flowlearn run scale_job.py --checkpoint-dir chk --checkpoint-interval 10 --progress-interval 5

Every ``--progress-interval`` seconds a progress line goes to stderr (one updating line when
stderr is a terminal, plain lines otherwise)::

    [0:00:12] rows in 120,000 out 120,000 | 10,012 rows/s | lag 3 | checkpoints 2 | dead letters 0 | ...

Ctrl-C (SIGINT) or SIGTERM stops the job: the sources stop, a final checkpoint is taken (with
``--checkpoint-dir``) and the command exits 0; run it again with the same ``--checkpoint-dir``
to resume. A second Ctrl-C aborts at once, without the final checkpoint (like ``kill -9``:
the next run resumes from the previous checkpoint). A summary goes to stdout at the end.

Exit codes: 0 the job finished or was stopped on request; 1 the job (or loading the job file)
failed: the error is printed as ``flowlearn run: error: ...`` without a traceback
(``--traceback`` or ``flowlearn -v run ...`` prints it); 2 bad command line (e.g. the job file
does not exist); 130 aborted by a second signal.

Wiring (``flowlearn/cli/main.py``)::

    from flowlearn.cli.run import add_run_parser
    add_run_parser(sub)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from typing import Any, TextIO

__all__ = ["add_run_parser", "run_job", "load_job", "JobFileError", "Progress", "format_progress", "main"]

_ENGINE_LOGGER = "flowlearn.engines.local"


class JobFileError(Exception):
    """The job file cannot be loaded or does not define a usable ``build()``."""


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``run`` command to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "run", help="run a stream job defined in a Python file, with live progress",
        description="Run a stream job on the local engine. JOB.py is a Python file defining build(), which returns "
                    "the sink (or a list of sinks) of a plan. Progress goes to stderr, a summary to stdout. "
                    "Ctrl-C/SIGTERM stops the job with a final checkpoint; rerun with the same --checkpoint-dir "
                    "to resume.")
    p.add_argument("job", metavar="JOB.py", help="Python file defining build() -> sink or list of sinks")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="checkpoint here (and resume from here); without it the job cannot resume after a stop")
    p.add_argument("--checkpoint-interval", type=_positive, default=10.0, metavar="S",
                   help="seconds between checkpoints (default 10)")
    p.add_argument("--progress-interval", type=_non_negative, default=5.0, metavar="S",
                   help="seconds between progress lines on stderr; 0 = none (default 5)")
    p.add_argument("--metrics-dir", default=None, metavar="DIR",
                   help="write the job's metrics (and its ModelGates' verdicts) into DIR/jobs/<job>.json and .jsonl "
                        "every second, for flowlearn dashboard")
    p.add_argument("--traceback", action="store_true", help="print the traceback when the job fails")
    p.set_defaults(func=run_job)
    return p


def _positive(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def _non_negative(s: str) -> float:
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


# -- loading the job file ----------------------------------------------------------------------
def load_job(path: str) -> list[Any]:
    """Import the job file at ``path`` and return the sinks ``build()`` returns, as a list."""
    path = os.path.abspath(path)
    name = "flowlearn_job_" + "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise JobFileError(f"cannot load {path} as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    build = getattr(module, "build", None)
    if not callable(build):
        raise JobFileError(f"{path} defines no build() function; it must define build() returning the sink "
                           f"(or a list of sinks) of a plan, e.g. fls.from_files(...).to_files(...)")
    sinks = build()
    if sinks is None:
        raise JobFileError(f"build() in {path} returned None; return the sink (or a list of sinks) of the plan")
    return list(sinks) if isinstance(sinks, (list, tuple)) else [sinks]


def _where(e: BaseException, path: str) -> str:
    """`` (at job.py:12 in fn)`` for the innermost frame of the job file in ``e``'s traceback."""
    path = os.path.abspath(path)
    hit = None
    for fr in traceback.extract_tb(e.__traceback__):
        if os.path.abspath(fr.filename) == path:
            hit = fr
    return f" (at {os.path.basename(path)}:{hit.lineno} in {hit.name})" if hit is not None else ""


def _describe(e: BaseException) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# -- progress ----------------------------------------------------------------------------------
def _lag(m: dict) -> str:
    vals = list((m.get("source_lag") or {}).values())
    if not vals or all(v is None for v in vals):
        return "-"
    return ",".join("-" if v is None else f"{v:,}" for v in vals)


def _duplicates(m: dict) -> int:
    return int(sum(o.get("duplicates", 0) for o in (m.get("operators") or {}).values()))


def _clock(seconds: float) -> str:
    return str(_dt.timedelta(seconds=int(max(0.0, seconds))))


def format_progress(m: dict, rate: float) -> str:
    """One progress line from ``job.metrics`` and the current rate (rows/s)."""
    line = (f"[{_clock(m.get('elapsed_seconds', 0.0))}] rows in {m['rows_in']:,} out {m['rows_out']:,} | "
            f"{rate:,.0f} rows/s | lag {_lag(m)} | checkpoints {m.get('checkpoints', 0)} | "
            f"dead letters {m.get('dead_letters', 0):,} | late rows {m.get('late_rows', 0):,}")
    dup = _duplicates(m)
    if dup:
        line += f" | duplicates {dup:,}"
    return line


class Progress:
    """Writes progress lines to ``out``: one updating line on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        try:
            self.tty = bool(out.isatty())
        except Exception:  # noqa: BLE001 - a stream without isatty
            self.tty = False
        self._open = False  # a TTY line is on screen without its newline
        self._last_t = time.monotonic()
        self._last_rows = 0

    def update(self, m: dict, suffix: str = "") -> None:
        now = time.monotonic()
        dt = now - self._last_t
        rate = (m["rows_in"] - self._last_rows) / dt if dt > 0 else 0.0
        self._last_t, self._last_rows = now, m["rows_in"]
        line = format_progress(m, rate) + suffix
        if self.tty:
            width = shutil.get_terminal_size((120, 24)).columns - 1
            if len(line) > width > 20:  # a wrapped line cannot be updated in place
                line = line[:width - 3] + "..."
            self.out.write("\r" + line + "\x1b[K")
            self._open = True
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def message(self, text: str) -> None:
        """A line of its own (ends an updating line first)."""
        self.end()
        self.out.write(text + "\n")
        self.out.flush()

    def end(self) -> None:
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False


def _summary(m: dict, job_path: str, outcome: str, checkpoint_dir: str | None) -> str:
    el = m.get("elapsed_seconds", 0.0)
    lines = [f"job {os.path.basename(job_path)} {outcome} after {el:.1f}s",
             f"  rows in {m['rows_in']:,}, rows out {m['rows_out']:,}, {m.get('rows_per_second', 0.0):,.0f} rows/s, "
             f"{m.get('batches', 0):,} batches ({m.get('batches_per_second', 0.0):,.1f}/s)",
             f"  dead letters {m.get('dead_letters', 0):,}, late rows {m.get('late_rows', 0):,}, "
             f"duplicates {_duplicates(m):,}, source lag {_lag(m)}"]
    if checkpoint_dir:
        restored = m.get("restored_from")
        lines.append(f"  checkpoints {m.get('checkpoints', 0)} in {checkpoint_dir}"
                     + (f" (resumed from checkpoint {restored})" if restored is not None else ""))
    else:
        lines.append("  checkpoints: none (no --checkpoint-dir)")
    ops = m.get("operators") or {}
    if ops:
        width = max(len(u) for u in ops)
        lines.append("  operators:")
        for uid, om in ops.items():
            lines.append(f"    {uid:<{width}}  in {om.get('rows_in', 0):>12,}  out {om.get('rows_out', 0):>12,}")
    if outcome == "stopped" and checkpoint_dir:
        lines.append(f"  resume with: flowlearn run {job_path} --checkpoint-dir {checkpoint_dir}")
    return "\n".join(lines)


class _DropJobFailedLog(logging.Filter):
    """The engine logs a failed job with its traceback; the command prints the error itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "stream job failed"


# -- the command -------------------------------------------------------------------------------
def run_job(args: argparse.Namespace) -> int:
    """The ``run`` command: load ``args.job``, run it with progress, stop cleanly on SIGINT/SIGTERM."""
    err, out = sys.stderr, sys.stdout
    verbose = bool(getattr(args, "verbose", False) or getattr(args, "traceback", False))
    path = args.job
    if not os.path.isfile(path):
        err.write(f"flowlearn run: error: job file {path} does not exist\n")
        return 2

    def fail(e: BaseException, what: str) -> int:
        if verbose:
            traceback.print_exception(type(e), e, e.__traceback__, file=err)
        err.write(f"flowlearn run: error: {what}: {_describe(e)}{_where(e, path)}\n")
        err.flush()
        return 1

    try:
        sinks = load_job(path)
    except KeyboardInterrupt:
        err.write("flowlearn run: interrupted while loading the job\n")
        return 130
    except JobFileError as e:
        err.write(f"flowlearn run: error: {e}\n")
        return 1
    except Exception as e:  # noqa: BLE001 - the user's code: report it, no traceback
        return fail(e, f"loading {path} failed")

    import flowlearn.stream as fls

    engine_log = logging.getLogger(_ENGINE_LOGGER)
    log_filter = _DropJobFailedLog()
    if not verbose:
        engine_log.addFilter(log_filter)
    progress = Progress(err)
    state: dict[str, Any] = {"stops": 0, "signal": ""}
    job: Any = None
    writer: Any = None
    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        # only flags here (writing to stderr from a handler can re-enter a write in progress);
        # the loop below reports the stop
        state["stops"] += 1
        state["signal"] = signal.Signals(signum).name
        if state["stops"] == 1:
            if job is not None:
                job.stop(wait=False)
        else:
            try:
                err.write(f"\nflowlearn run: {state['signal']} again: aborting without a final checkpoint\n")
                err.flush()
                out.flush()
            finally:
                os._exit(130)

    in_main = threading.current_thread() is threading.main_thread()
    try:
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            job = fls.run(*sinks, checkpoint_dir=args.checkpoint_dir, checkpoint_interval=args.checkpoint_interval)
        except Exception as e:  # noqa: BLE001 - e.g. build() returned a stream, not a sink
            return fail(e, "starting the job failed")
        if state["stops"]:
            job.stop(wait=False)
        if getattr(args, "metrics_dir", None):
            from flowlearn.dashboard.metrics import job_file_name, watch_job

            writer = watch_job(job, sinks, args.metrics_dir, job_file_name(path), checkpoint_dir=args.checkpoint_dir)
        progress.message(f"flowlearn run: {path} running"
                         + (f", checkpoints every {args.checkpoint_interval:g}s in {args.checkpoint_dir}"
                            if args.checkpoint_dir else ", no checkpoints (no --checkpoint-dir)"))
        interval = args.progress_interval
        next_at = time.monotonic() + interval
        announced = False
        while job.running:
            time.sleep(0.05)
            if state["stops"] and not announced:
                announced = True
                progress.message(f"flowlearn run: {state['signal']}: stopping the job"
                                 + (" with a final checkpoint" if args.checkpoint_dir else "")
                                 + " (send it again to abort at once)")
            if interval and time.monotonic() >= next_at and job.running:
                progress.update(job.metrics, " | stopping" if state["stops"] else "")
                next_at = time.monotonic() + interval
        error: BaseException | None = None
        try:
            job.wait()
        except Exception as e:  # noqa: BLE001 - reported below, without a traceback
            error = e
        m = job.metrics
        progress.end()
        outcome = "failed" if error is not None else ("stopped" if state["stops"] else "finished")
        if writer is not None:
            writer.close(status=outcome, error=error)
        out.write(_summary(m, path, outcome, args.checkpoint_dir) + "\n")
        out.flush()
        if error is not None:
            return fail(error, "job failed")
        return 0
    finally:
        if writer is not None:
            writer.close()
        progress.end()
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        engine_log.removeFilter(log_filter)


def main(argv: list[str] | None = None) -> int:
    """``python -m flowlearn.cli.run JOB.py [...]``: the ``run`` command on its own."""
    from flowlearn.cli.main import run_command

    return run_command("run", argv)


if __name__ == "__main__":
    sys.exit(main())
