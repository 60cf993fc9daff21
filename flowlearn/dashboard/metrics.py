"""Metrics files a running job writes for ``flowlearn dashboard`` to read.

A *metrics directory* holds two kinds of files, each readable at any moment by another process:

``<dir>/jobs/<job>.json``
    The job's latest snapshot, replaced atomically (written beside, then ``os.replace``)::

        {"format": "flowlearn.job_metrics", "format_version": 1, "job": "ftrl", "status": "running",
         "pid": 4242, "started_at": 1765000000.0, "updated_at": 1765000012.5, "interval": 1.0,
         "checkpoint_dir": "chk", "checkpoint": {"latest": 7, "at": 1765000010.1},
         "metrics": {...job.metrics...}, "gates": [{"version": 3, "passed": false, ...}, ...]}

    ``status`` is ``running``, ``finished``, ``stopped`` or ``failed`` (with ``error``);
    ``metrics`` is the engine's ``job.metrics`` (rows in/out, rows and batches per second,
    ``source_lag``, ``checkpoints``, ``restored_from``, dead letters, late rows, per-operator
    counters); ``gates`` the latest verdicts of the :class:`~flowlearn.modelstream.ModelGate` s
    given to the writer, rejected ones included (the store only holds the versions that passed).

``<dir>/jobs/<job>.jsonl``
    The job's history, one JSON object a line, appended once per snapshot::

        {"time": 1765000012.5, "rows_in": 120000, "rows_out": 120000, "rows_per_second": 10012.0,
         "lag": 3, "checkpoints": 2, "dead_letters": 0}

    ``rows_per_second`` is the rate since the previous line; ``lag`` the sum of the sources' lags
    that are known (``null`` when none is).

``<dir>/eval/<name>/*.jsonl``
    Rows of a :class:`~flowlearn.evaluation.StreamingEvaluator` (one per closed window, and one
    per window and model version with ``per_version=True``), one JSON object a line. Write them
    with :class:`EvalLog` (appends each batch as whole lines as soon as a window closes) or, for
    exactly-once files committed with the job's checkpoints, with
    ``evaluator.evaluate(stream).to_files("<dir>/eval/<name>", format="json")``. Readers drop a
    trailing partial line and keep the last row of each ``(window, model_version)``, so rows a
    restarted job writes again replace the earlier ones.

Use it from the job's process (``flowlearn run --metrics-dir DIR`` does this for a job file)::

    job = fl.run(sink_a, sink_b, checkpoint_dir="chk")
    with JobMetricsWriter(job, "metrics", name="ftrl", checkpoint_dir="chk"):
        job.wait()

Example:
    >>> import json, os, tempfile
    >>> import flowlearn.stream as fls
    >>> from flowlearn.evaluation import StreamingEvaluator
    >>> d = tempfile.mkdtemp()
    >>> scored = fls.from_table({"label": [0, 1, 0, 1] * 3, "raw_prediction": [0.1, 0.8, 0.3, 0.6] * 3},
    ...                         batch_size=4)
    >>> sink = StreamingEvaluator("binary", window_rows=4).evaluate(scored).foreach(EvalLog(d, "live"))
    >>> job = fls.run(sink)
    >>> with JobMetricsWriter(job, d, name="score", interval=0.05):
    ...     _ = job.wait()
    >>> snap = json.load(open(os.path.join(d, "jobs", "score.json")))
    >>> snap["status"], snap["metrics"]["rows_in"]
    ('finished', 12)
    >>> [json.loads(line)["window_auc"] for line in open(os.path.join(d, "eval", "live", EvalLog(d, "live").file_name))]
    [1.0, 1.0, 1.0]
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import threading
import time
import uuid
from typing import Any, Iterable

import pyarrow as pa

__all__ = ["JobMetricsWriter", "EvalLog", "watch_job", "gates_of", "job_file_name", "JOB_FORMAT", "JOB_FORMAT_VERSION",
           "json_safe", "check_name"]

JOB_FORMAT = "flowlearn.job_metrics"
JOB_FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str, what: str) -> str:
    """``name`` if it is a safe file name (letters, digits, ``_ . -``; 1-128 characters, not
    starting with ``.``), else a ``ValueError`` naming ``what`` and the rule."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{what}: name {name!r} must be 1-128 letters, digits, '_', '.' or '-' and start with a "
                         f"letter or digit (it names files in the metrics directory)")
    return name


def json_safe(v: Any) -> Any:
    """``v`` with non-finite floats as ``None`` and tuples as lists (strict JSON, as browsers parse it)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if hasattr(v, "item"):            # NumPy scalars
        return json_safe(v.item())
    return str(v)


def _atomic_write_json(path: str, doc: dict) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, allow_nan=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _append_lines(path: str, docs: Iterable[dict]) -> None:
    """Append whole lines in one ``write`` on an ``O_APPEND`` descriptor: a reader sees each line
    whole or, at worst, a partial last line, which readers drop."""
    data = "".join(json.dumps(json_safe(d), allow_nan=False) + "\n" for d in docs).encode()
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _known_lag(metrics: dict) -> int | None:
    vals = [v for v in (metrics.get("source_lag") or {}).values() if isinstance(v, (int, float))]
    return int(sum(vals)) if vals else None


class JobMetricsWriter:
    """Writes a running job's metrics into ``<directory>/jobs/<name>.json`` (snapshot, atomic)
    and ``<name>.jsonl`` (history) every ``interval`` seconds from a daemon thread, and once
    more when closed (see the module docstring for the format).

    Parameters: ``job`` (a ``LocalJob``: anything with ``metrics`` and ``running``),
    ``directory`` (the metrics directory; created), ``name`` (the job's file name; default
    ``job-<pid>``), ``interval`` (seconds, > 0), ``checkpoint_dir`` (the job's checkpoint
    directory: its newest complete checkpoint and when it was taken go into the snapshot),
    ``gates`` (``ModelGate`` s whose verdicts, passed and rejected, go into the snapshot),
    ``max_history_bytes`` (the history file is moved to ``<name>.jsonl.1``, replacing the
    previous one, when it grows past this; the dashboard reads the newest lines).
    ``close(status=None)`` writes the final snapshot: ``finished`` when the job ended,
    ``failed`` (with the error) when ``wait()`` raised, ``stopped`` when closed while running.
    """

    def __init__(self, job: Any, directory: str, name: str | None = None, interval: float = 1.0,
                 checkpoint_dir: str | None = None, gates: Iterable[Any] = (),
                 max_history_bytes: int = 16 << 20) -> None:
        if not hasattr(job, "metrics"):
            raise TypeError(f"JobMetricsWriter: job must be a running job (fl.run(...)) with .metrics, "
                            f"got {type(job).__name__}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0 \
                or not math.isfinite(interval):
            raise ValueError(f"JobMetricsWriter: parameter 'interval' = {interval!r} violates gt(0): it must be a "
                             f"finite number of seconds greater than 0")
        self.job = job
        self.name = check_name(name if name is not None else f"job-{os.getpid()}", "JobMetricsWriter")
        self.directory = directory
        self.interval = float(interval)
        self.checkpoint_dir = checkpoint_dir
        self.gates = list(gates)
        if isinstance(max_history_bytes, bool) or not isinstance(max_history_bytes, int) or max_history_bytes < 1024:
            raise ValueError(f"JobMetricsWriter: parameter 'max_history_bytes' = {max_history_bytes!r} violates "
                             f"gt_eq(1024)")
        self.max_history_bytes = max_history_bytes
        self._jobs_dir = os.path.join(directory, "jobs")
        os.makedirs(self._jobs_dir, exist_ok=True)
        self.snapshot_path = os.path.join(self._jobs_dir, f"{self.name}.json")
        self.history_path = os.path.join(self._jobs_dir, f"{self.name}.jsonl")
        self.started_at = time.time()
        self._last: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the snapshot ----------------------------------------------------------------------
    def _metrics(self) -> dict:
        for _ in range(5):   # the engine thread may add a counter while we copy
            try:
                return dict(self.job.metrics)
            except RuntimeError:
                time.sleep(0.001)
        return dict(self.job.metrics)

    def _checkpoint(self) -> dict | None:
        if not self.checkpoint_dir:
            return None
        try:
            with open(os.path.join(self.checkpoint_dir, "_LATEST")) as f:
                latest = int(f.read().strip())
            at = os.stat(os.path.join(self.checkpoint_dir, f"chk-{latest:06d}")).st_mtime
        except (OSError, ValueError):
            return {"latest": None, "at": None}
        return {"latest": latest, "at": at}

    def _gates(self) -> list[dict]:
        out = []
        for g in self.gates:
            for r in list(getattr(g, "results", []))[-200:]:
                out.append({"metric": r.metric, "value": r.value, "rows": r.rows, "passed": r.passed,
                            "reason": r.reason, "version": r.version, "published": r.published,
                            "min_value": g.min_value, "max_value": g.max_value})
        return out

    def write(self, status: str = "running", error: str | None = None) -> dict:
        """Write one snapshot and one history line now; returns the snapshot."""
        with self._lock:
            now = time.time()
            m = self._metrics()
            rows_in = int(m.get("rows_in", 0))
            if self._last is None:
                rate = float(m.get("rows_per_second", 0.0))
            else:
                dt = now - self._last[0]
                rate = (rows_in - self._last[1]) / dt if dt > 0 else 0.0
            self._last = (now, rows_in)
            doc = {"format": JOB_FORMAT, "format_version": JOB_FORMAT_VERSION, "job": self.name, "status": status,
                   "pid": os.getpid(), "host": socket.gethostname(), "started_at": self.started_at,
                   "updated_at": now, "interval": self.interval, "checkpoint_dir": self.checkpoint_dir,
                   "checkpoint": self._checkpoint(), "metrics": m, "gates": self._gates()}
            if error is not None:
                doc["error"] = error
            doc = json_safe(doc)
            _atomic_write_json(self.snapshot_path, doc)
            try:
                if os.path.getsize(self.history_path) > self.max_history_bytes:
                    os.replace(self.history_path, self.history_path + ".1")
            except FileNotFoundError:
                pass
            _append_lines(self.history_path, [{
                "time": now, "rows_in": rows_in, "rows_out": int(m.get("rows_out", 0)), "rows_per_second": rate,
                "lag": _known_lag(m), "checkpoints": int(m.get("checkpoints", 0) or 0),
                "dead_letters": int(m.get("dead_letters", 0) or 0), "status": status}])
            return doc

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> "JobMetricsWriter":
        """Write a first snapshot and keep writing one every ``interval`` seconds."""
        if self._thread is not None:
            return self
        self.write()
        self._thread = threading.Thread(target=self._run, name=f"flowlearn-metrics-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not getattr(self.job, "running", True):
                break
            try:
                self.write()
            except OSError as e:  # a full disk must not kill the job; the next interval retries
                import logging

                logging.getLogger("flowlearn.dashboard").warning("%s: cannot write metrics (%s)", self.name, e)

    def close(self, status: str | None = None, error: BaseException | str | None = None) -> None:
        """Stop the thread and write the final snapshot (see the class docstring for ``status``)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        if status is None:
            if error is not None:
                status = "failed"
            else:
                status = "stopped" if getattr(self.job, "running", False) else "finished"
        msg = None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        self.write(status, msg)

    def __enter__(self) -> "JobMetricsWriter":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(error=exc if exc_type is not None and issubclass(exc_type, Exception) else None)


def gates_of(sinks: Iterable[Any]) -> list[Any]:
    """The :class:`~flowlearn.modelstream.ModelGate` s applied in the plans ending in ``sinks``
    (``gate.apply(versions)`` nodes), in plan order."""
    from flowlearn.modelstream.gate import GateSpec
    from flowlearn.stream.plan import plan_nodes

    roots = [getattr(s, "node", s) for s in sinks]
    gates: list[Any] = []
    for n in plan_nodes(roots):
        g = getattr(n.spec, "gate", None) if isinstance(n.spec, GateSpec) else None
        if g is not None and all(g is not x for x in gates):
            gates.append(g)
    return gates


def job_file_name(path: str) -> str:
    """A job's metrics file name from its job file: ``jobs/ctr_ftrl.py`` -> ``ctr_ftrl``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("._-")[:128]
    return name or "job"


def watch_job(job: Any, sinks: Iterable[Any], directory: str, name: str, checkpoint_dir: str | None = None,
              interval: float = 1.0) -> JobMetricsWriter:
    """A started :class:`JobMetricsWriter` for ``job`` (run on ``sinks``), with the verdicts of
    every ``ModelGate`` in its plan; ``flowlearn run --metrics-dir`` uses it.

    Example:
        >>> import json, os, tempfile
        >>> import flowlearn.stream as fls
        >>> d = tempfile.mkdtemp()
        >>> sink = fls.from_table({"x": [1.0, 2.0, 3.0]}).collect()
        >>> job = fls.run(sink)
        >>> w = watch_job(job, [sink], d, name=job_file_name("jobs/my job.py"))
        >>> _ = job.wait(); w.close()
        >>> json.load(open(os.path.join(d, "jobs", "my_job.json")))["status"]
        'finished'
    """
    return JobMetricsWriter(job, directory, name=name, interval=interval, checkpoint_dir=checkpoint_dir,
                            gates=gates_of(sinks)).start()


class EvalLog:
    """Appends streaming-evaluation rows to ``<directory>/eval/<name>/<file>.jsonl`` (whole lines,
    one ``write`` per batch). Call it with a table or a list of row dicts, e.g. as a sink:
    ``evaluator.evaluate(scored).foreach(EvalLog("metrics", "live"))``, or in a loop:
    ``log.append(evaluator.update(batch))``. Each process writes its own file (``file_name``:
    ``log-<host>-<pid>.jsonl``), so several writers never interleave a line.
    """

    def __init__(self, directory: str, name: str) -> None:
        self.name = check_name(name, "EvalLog")
        self.folder = os.path.join(directory, "eval", self.name)
        os.makedirs(self.folder, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"
        self.file_name = f"log-{host}-{os.getpid()}.jsonl"
        self.path = os.path.join(self.folder, self.file_name)

    def append(self, rows: Any) -> None:
        """Append ``rows``: a ``pyarrow.Table`` or a list of dicts (``StreamingEvaluator`` rows)."""
        if rows is None:
            return
        if isinstance(rows, pa.Table):
            rows = rows.to_pylist()
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError(f"EvalLog({self.name!r}).append: expected a table or a list of row dicts, "
                            f"got {type(rows).__name__}")
        now = time.time()
        _append_lines(self.path, [{**r, "time": r.get("time", now)} for r in rows])

    __call__ = append
