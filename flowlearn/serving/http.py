"""Serve a ``LocalPredictor`` over HTTP: Starlette on uvicorn (the ``serve`` extra).

Endpoints (``flowlearn serve``; the OpenAPI document at ``GET /openapi.json`` describes them,
with the served model's input columns):

``POST /predict``
    Body: one row as a JSON object, or a batch ``{"rows": [row, ...]}`` (a bare JSON array of
    rows is accepted too). A single row is predicted with ``LocalPredictor.predict`` (the row
    kernels); a batch with ``LocalPredictor.predict_batch`` (one table, one model version).
    Response: ``{"prediction": {...}, "model_version": v}`` or
    ``{"predictions": [{...}, ...], "model_version": v}``; each prediction holds the model's
    output columns (written by a stage and read by no later one) and ``model_version`` when the
    model came from a store; ``?include_inputs=true`` adds the request's columns,
    ``?include_intermediates=true`` the columns stages pass to later stages (an assembled or
    hashed feature vector); ``null`` for a row dropped by ``handle_invalid="skip"``. Rows are
    checked against the model's input schema first (every input column present, of the right
    kind), then by the stages. Dense vectors are JSON arrays, sparse vectors
    ``{"size": n, "indices": [...], "values": [...]}`` (accepted in that form on input too); NaN
    and infinities are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``. A bad body or a bad
    row answers 400 ``{"error": message}`` where the message names the column (and ``rows[i]`` in
    a batch); never a traceback. Limits: ``max_body_bytes`` and ``max_rows`` (413 beyond them);
    ``max_concurrent_predictions`` jobs decode and predict at once on worker threads (concurrent
    requests are coalesced into jobs; one waiting longer than ``request_timeout`` gets 503).
``GET /model``
    The served model: class, stages with their params and model data shapes, ``inputs`` (the
    columns a row needs, with their types), ``outputs``, ``model_version``, the store followed.
``GET /healthz``
    200 ``{"status": "ok", "model_version": v}``; 503 while the server shuts down.
``GET /metrics``
    Prometheus text format (``prometheus-client``): requests, errors, a latency histogram per
    path, predicted rows, the served ``model_version``, model swaps and swap errors.
``/v2/...``
    The Open Inference Protocol (KServe V2), see :mod:`flowlearn.serving.oip`.

Anything else is 404 (unknown path) or 405 (known path, wrong method), with a JSON body.

Example:
    >>> import json, urllib.request
    >>> import flowlearn as fl
    >>> from flowlearn.serving.http import serve
    >>> t = fl.table({"features": [[0.0], [1.0], [2.0], [3.0]], "label": [0.0, 0.0, 1.0, 1.0]})
    >>> model = fl.classification.LogisticRegression().fit(t)
    >>> with serve(model, port=0) as server:           # port 0: a free port
    ...     req = urllib.request.Request(server.url + "/predict", data=b'{"features": [3.0]}',
    ...                                  headers={"Content-Type": "application/json"})
    ...     json.load(urllib.request.urlopen(req))["prediction"]["prediction"]
    1.0
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from flowlearn.serving.codec import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, MAX_NESTING, HTTPError,
                                     PredictBody, _decode_value, _message, body_length, dumps, parse_body,
                                     table_rows, to_jsonable)
from flowlearn.serving.predictor import LocalPredictor
from flowlearn.serving.schema import ModelIO, RowError, check_columns, check_row, model_io

__all__ = ["serve", "PredictionServer", "open_predictor", "parse_body", "body_length", "PredictBody",
           "to_jsonable", "Columns", "MAX_NESTING", "DEFAULT_MAX_ROWS", "DEFAULT_MAX_BODY_BYTES",
           "DEFAULT_MAX_CONCURRENT_PREDICTIONS"]

logger = logging.getLogger("flowlearn.serving.http")

_ROW_INDEX = "__flowlearn_http_row__"
_INPUT_ERRORS = (ValueError, TypeError, KeyError)
DEFAULT_MAX_CONCURRENT_PREDICTIONS = 4

# the names the tests and callers of the previous module use
_HTTPError = HTTPError
_dumps = dumps
_decode_value = _decode_value


@dataclass(frozen=True)
class Columns:
    """Which columns an answer holds beyond the outputs: the request's (``include_inputs``) and
    those stages pass to later stages (``include_intermediates``)."""

    include_inputs: bool = False
    include_intermediates: bool = False


OUTPUTS = Columns()
ALL_COLUMNS = Columns(True, True)


# ---------------------------------------------------------------------------------------------
# the model summary

def _class_name(stage: Any) -> str:
    cls = type(stage)
    return cls.__dict__.get("_registered_name") or f"{cls.__module__}.{cls.__qualname__}"


def _stage_summary(stage: Any) -> dict:
    node: dict[str, Any] = {"class": _class_name(stage)}
    get_params = getattr(stage, "get_params", None)
    node["params"] = to_jsonable(get_params()) if callable(get_params) else {}
    data = getattr(stage, "_model_data", None) or []
    if data:
        node["model_data"] = [{"rows": t.num_rows, "columns": [f"{f.name}: {f.type}" for f in t.schema]}
                              for t in data if isinstance(t, pa.Table)]
    subs = stage._sub_stages() if hasattr(stage, "_sub_stages") else []
    if subs:
        node["stages"] = [_stage_summary(s) for s in subs]
    return node


def model_summary(model: Any, model_version: int | None) -> dict:
    """``GET /model``: class, params, stages (each with class, params, model data) and version."""
    node = _stage_summary(model)
    node.setdefault("stages", [])
    node["model_version"] = model_version
    return node


# ---------------------------------------------------------------------------------------------
# the server

class PredictionServer:
    """An HTTP server around a ``LocalPredictor`` (see the module docstring).

    Built and started by :func:`serve`: the listening socket is bound here, requests are served
    by uvicorn on an event loop of a thread of its own once ``start()`` is called. ``url`` is its
    base URL, ``close()`` shuts it down (stop accepting, let in-flight requests finish for up to
    ``grace`` seconds, close keep-alive connections, stop following the store). Also a context
    manager. ``model_name`` names the model in the Open Inference Protocol paths (default: the
    last part of the served path, else ``"model"``).
    """

    def __init__(self, predictor: LocalPredictor, host: str = "127.0.0.1", port: int = 8080, *,
                 follower: Any = None, source: str | None = None, owns_predictor: bool = True,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_rows: int = DEFAULT_MAX_ROWS,
                 max_concurrent_predictions: int = DEFAULT_MAX_CONCURRENT_PREDICTIONS,
                 request_timeout: float = 60.0, model_name: str | None = None) -> None:
        for name, value in (("max_body_bytes", max_body_bytes), ("max_rows", max_rows),
                            ("max_concurrent_predictions", max_concurrent_predictions)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PredictionServer: parameter '{name}' = {value!r} violates gt(0): it must be "
                                 f"an integer of at least 1")
        if not (isinstance(request_timeout, (int, float)) and request_timeout > 0):
            raise ValueError(f"PredictionServer: parameter 'request_timeout' = {request_timeout!r} violates gt(0): "
                             f"it must be a number of seconds greater than 0")
        from flowlearn.serving.metrics import ServerMetrics

        self.predictor = predictor
        self.follower = follower
        self.source = source
        self.owns_predictor = owns_predictor
        self.max_body_bytes = max_body_bytes
        self.max_rows = max_rows
        self.max_concurrent_predictions = max_concurrent_predictions
        self.request_timeout = float(request_timeout)
        self.model_name = model_name or _default_name(source)
        self.work: Any = None          # the WorkQueue, made by the event loop's thread
        self.metrics = ServerMetrics(lambda: self.predictor.model_version, lambda: self.follower, lambda: self.work)
        self.closing = False
        self._io: tuple[Any, ModelIO] | None = None
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self._closed = False
        self._close_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(2048)
        except BaseException:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()[:2]

    # ---- addresses
    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # ---- what the model reads and writes
    def model_io(self, model: Any = None) -> ModelIO:
        """The input and output columns of ``model`` (default: the served one), computed once per
        served model."""
        model = self.predictor.model if model is None else model
        cached = self._io
        if cached is not None and cached[0] is model:
            return cached[1]
        io = model_io(model)
        self._io = (model, io)
        return io

    def model_document(self) -> dict:
        """``GET /model``."""
        p = self.predictor
        model, version = p.model, p.model_version
        doc = model_summary(model, version)
        io = self.model_io(model)
        doc["model_name"] = self.model_name
        doc["inputs"] = [c.to_json() for c in io.inputs]
        doc["outputs"] = io.outputs
        if self.follower is not None:
            f = self.follower
            doc["follow"] = {"store": repr(f.store), "swaps": getattr(f, "swaps", None),
                             "errors": getattr(f, "errors", None), "last_swap_at": getattr(f, "last_swap_at", None)}
        doc["source"] = self.source
        return doc

    # ---- predictions (on worker threads)
    def handle_predict(self, body: bytes, columns: Columns = OUTPUTS) -> bytes:
        """``POST /predict``: the body in, the JSON answer out; an ``HTTPError`` for a 4xx."""
        try:
            parsed = parse_body(body, self.max_rows)
            del body
            doc = self.predict_rows(parsed, columns) if parsed.is_batch else self.predict_row(parsed.row, columns)
            return dumps(doc)
        except HTTPError as e:
            if 400 <= e.status < 500:
                self.metrics.count_error("invalid_input")
            raise
        except Exception:
            self.metrics.count_error("internal")
            raise

    def _selector(self, io: ModelIO, columns: Columns, given: Any) -> Callable[[list[str]], list[str]]:
        """Which of a predicted row's columns an answer holds (``given``: the request's columns)."""
        if columns.include_inputs and columns.include_intermediates:
            return lambda names: names
        keep = set() if io.outputs is None else set(io.outputs)
        keep.add("model_version")
        if columns.include_inputs:
            keep.update(given)
        if columns.include_intermediates:
            keep.update(io.intermediates)
        if io.outputs is None:           # outputs unknown: every column the model added
            given_set = set(given)
            return lambda names: [n for n in names if n in keep or n not in given_set]
        return lambda names: [n for n in names if n in keep]

    def _version_around(self, fn: Callable[[], Any]) -> tuple[Any, int | None, bool]:
        before = self.predictor.model_version
        out = fn()
        return out, before, before == self.predictor.model_version

    def _row_error(self, row: dict, e: BaseException) -> str:
        """The message for a row the row kernels rejected, naming the column.

        A kernel whose own message names no column is explained by the table path (one-row table),
        whose checks name the column."""
        msg = _message(e)
        if isinstance(e, KeyError) and e.args and e.args[0] not in row:
            return f"{msg}; it has {sorted(row)}"
        if "column" in msg:
            return msg
        try:
            self.predictor.predict_batch([row])
        except _INPUT_ERRORS as e2:
            m2 = _message(e2)
            if "column" in m2:
                return m2
        except Exception:  # noqa: BLE001 - only used for a better message
            pass
        return msg

    def predict_row(self, row: dict, columns: Columns = OUTPUTS) -> dict:
        """One row: ``{"prediction": row | None, "model_version": v}``."""
        model = self.predictor.model
        io = self.model_io(model)
        try:
            check_row(row, io)
        except RowError as e:
            raise HTTPError(400, str(e)) from None
        try:
            out, before, same = self._version_around(lambda: self.predictor.predict(row))
        except _INPUT_ERRORS as e:
            raise HTTPError(400, self._row_error(row, e)) from None
        if out is None:
            self.metrics.count_rows(0, 1)
            return {"prediction": None, "model_version": before if same else self.predictor.model_version}
        self.metrics.count_rows(1, 0)
        version = before if same else out.get("model_version")
        if not same:
            io = self.model_io()
        names = self._selector(io, columns, row)(list(out))
        return {"prediction": {k: to_jsonable(out[k]) for k in names}, "model_version": version}

    def predict_rows(self, body: PredictBody, columns: Columns = OUTPUTS) -> dict:
        """A batch: one ``predict_batch`` call, so one model version.

        Predictions are aligned with the rows (``None`` for a skipped row). On a bad batch the
        row path finds the first bad row, so the message names ``rows[i]`` and the column."""
        n = body.num_rows
        if not n:
            return {"predictions": [], "model_version": self.predictor.model_version}
        io = self.model_io()
        try:
            check_columns(body.columns, n, io)
        except RowError as e:
            raise HTTPError(400, str(e)) from None
        from flowlearn.data.table import table as to_table

        try:
            t = to_table({**body.columns, _ROW_INDEX: pa.array(np.arange(n, dtype=np.int64))})
            out, before, same = self._version_around(lambda: self.predictor.predict_batch(t))
        except (*_INPUT_ERRORS, OverflowError, pa.ArrowException):
            # a batch the table path refuses (a vector column holding a number, a row a stage rejects):
            # the row path decides each row as a single request would (skip -> null, else rows[i] 400)
            return self._rows_one_by_one(body, io, columns)
        del t
        version = before
        if not same:
            io = self.model_io()
            if "model_version" in out.column_names and out.num_rows:
                version = out.column("model_version")[0].as_py()
        select = self._selector(io, columns, body.columns)
        preds: list[Any]
        if _ROW_INDEX in out.column_names:
            idx = out.column(_ROW_INDEX).to_numpy()
            out = out.select(select([c for c in out.column_names if c != _ROW_INDEX]))
            preds = table_rows(out)
            if len(idx) != n or not np.array_equal(idx, np.arange(n)):
                aligned: list[Any] = [None] * n
                for i, r in zip(idx.tolist(), preds):
                    aligned[i] = r
                preds = aligned
        elif out.num_rows == n:
            preds = table_rows(out.select(select(out.column_names)))
        else:   # a stage dropped rows and the row index column: align with the row path instead
            return self._rows_one_by_one(body, io, columns)
        kept = sum(p is not None for p in preds)
        self.metrics.count_rows(kept, n - kept)
        return {"predictions": preds, "model_version": version}

    def _rows_one_by_one(self, body: PredictBody, io: ModelIO, columns: Columns) -> dict:
        """A batch answered by the row path, row by row, with one model version: if a swap lands
        during the pass, the pass runs again on the new version."""
        select = self._selector(io, columns, body.columns)
        for _ in range(3):
            before = self.predictor.model_version
            preds: list[Any] = []
            for i in range(body.num_rows):
                r = body.batch_row(i)
                try:
                    p = self.predictor.predict(r)
                except _INPUT_ERRORS as e:
                    raise HTTPError(400, f"rows[{i}]: {self._row_error(r, e)}") from None
                preds.append(None if p is None else {k: to_jsonable(p[k]) for k in select(list(p))})
            if self.predictor.model_version == before:
                kept = sum(p is not None for p in preds)
                self.metrics.count_rows(kept, body.num_rows - kept)
                return {"predictions": preds, "model_version": before}
        raise HTTPError(503, "the model was swapped during every pass over this batch; retry",
                        headers={"Retry-After": "1"})

    def busy_error(self) -> HTTPError:
        return HTTPError(503, f"the server is busy: {self.max_concurrent_predictions} prediction jobs are running "
                              f"(max_concurrent_predictions) and none took this request within "
                              f"{self.request_timeout:g} s; retry later", {"Retry-After": "1"})

    # ---- lifecycle
    def start(self) -> "PredictionServer":
        """Serve on a daemon thread (``serve`` calls this); returns once the server accepts."""
        if self._thread is not None:
            return self
        from flowlearn.serving.asgi import run_uvicorn

        started = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=run_uvicorn, args=(self, started, errors),
                                        name=f"flowlearn-http-{self.port}", daemon=True)
        self._thread.start()
        while not started.wait(0.05):
            if not self._thread.is_alive():
                break
        if errors:
            raise errors[0]
        logger.info("serving %s on %s", self.source or type(self.predictor.model).__name__, self.url)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server is closed (by ``close()`` from another thread); False on timeout."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    def close(self, grace: float = 5.0) -> None:
        """Shut down: stop accepting, wait up to ``grace`` s for in-flight requests, close
        connections, stop the store follower. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.closing = True
        uv = self._uvicorn
        if uv is not None and self._thread is not None:
            uv.config.timeout_graceful_shutdown = grace
            uv.should_exit = True
            self._thread.join(grace + 5.0)
        self.socket.close()
        if self.follower is not None:
            self.follower.close()
        if self.owns_predictor:
            self.predictor.close()
        logger.info("server on port %d closed", self.port)

    def __enter__(self) -> "PredictionServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _default_name(source: str | None) -> str:
    """The model's name in the Open Inference Protocol paths: the last part of a served path."""
    if source and "/" in source.rstrip("/") or (source and os.sep in source):
        tail = source.rstrip("/").rsplit("/", 1)[-1]
    else:
        tail = ""
    name = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail).strip("-.")
    return name or "model"


# ---------------------------------------------------------------------------------------------
# what to serve

def _is_store(obj: Any) -> bool:
    return all(callable(getattr(obj, a, None)) for a in ("watch", "load", "versions"))


def _looks_like_store_path(url: str) -> bool | None:
    """True: a model store; False: a saved stage; None: neither."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/") or "/"
    if fs.exists(root + "/metadata.json"):
        return False
    if fs.isdir(root + "/versions") or fs.exists(root + "/LATEST"):
        return True
    return None


def open_predictor(target: Any, poll_interval: float = 0.2) -> tuple[LocalPredictor, Any, str, bool]:
    """``(predictor, follower or None, description, owns_predictor)`` for what ``serve`` accepts.

    ``target``: a ``LocalPredictor`` (served as is), a fitted model or pipeline model, a
    ``ModelVersion``, a model store object (``ModelStore`` / ``KafkaModelStore``), or a string: the
    path / fsspec URL of a saved model (a directory with ``metadata.json``), of a model store
    (a directory with ``versions/``), or ``kafka://HOST:PORT/TOPIC``. A store is served at its
    newest valid version and followed: every new valid version is swapped in.
    """
    if isinstance(target, LocalPredictor):
        return target, None, f"{type(target.model).__name__} (LocalPredictor)", False
    store = None
    if isinstance(target, str):
        if target.startswith("kafka://"):
            kind: bool | None = True
        else:
            kind = _looks_like_store_path(target)
        if kind is None:
            raise ValueError(f"{target!r} is neither a saved model (no metadata.json) nor a model store "
                             f"(no versions/ directory)")
        if not kind:
            p = LocalPredictor(target, poll_interval=poll_interval)
            return p, None, target, True
        from flowlearn.modelstream import open_store

        store = open_store(target)
    elif _is_store(target):
        store = target
    elif hasattr(target, "model") and hasattr(target, "version") and not _is_store(target):
        p = LocalPredictor(target.model, poll_interval=poll_interval)
        p.swap(target.model, target.version)
        return p, None, f"{type(target.model).__name__} version {target.version}", True
    else:
        return LocalPredictor(target, poll_interval=poll_interval), None, type(target).__name__, True
    try:
        mv = store.load()
    except LookupError as e:
        raise ValueError(f"{store!r} has no valid model version to serve yet ({e})") from None
    p = LocalPredictor(mv.model, poll_interval=poll_interval)
    p.swap(mv.model, mv.version)
    from flowlearn.serving.follow import StoreFollower

    follower = StoreFollower(store, p, poll_interval=poll_interval)
    return p, follower, getattr(store, "url", None) or repr(store), True


def serve(model_or_path_or_store: Any, host: str = "127.0.0.1", port: int = 8080, poll_interval: float = 0.2,
          **options: Any) -> PredictionServer:
    """Start an HTTP server for a model on a background thread and return it (running).

    ``model_or_path_or_store``: see :func:`open_predictor`. ``port=0`` picks a free port (read it
    from ``server.port`` / ``server.url``). ``poll_interval``: how often a followed store is
    listed. ``options``: ``max_body_bytes`` (default 4 MiB), ``max_rows`` (rows in one batch,
    default 10,000), ``max_concurrent_predictions`` (prediction jobs on worker threads at once,
    default 4), ``request_timeout`` (seconds a request's headers and body may take to arrive, a
    request may wait for a prediction job, and an idle keep-alive connection stays open; default
    60), ``model_name`` (the Open Inference Protocol's name for the model). Needs the ``serve``
    extra (starlette, uvicorn, prometheus-client). Stop it with ``server.close()`` or a ``with``
    block.

    Example:
        >>> import flowlearn as fl, json, urllib.request
        >>> model = fl.clustering.KMeans(k=2).fit(fl.table({"features": [[0.0, 0.0], [9.0, 9.0]]}))
        >>> server = serve(model, port=0)
        >>> json.load(urllib.request.urlopen(server.url + "/healthz"))
        {'status': 'ok', 'model_version': None}
        >>> server.close()
    """
    predictor, follower, source, owns = open_predictor(model_or_path_or_store, poll_interval)
    try:
        server = PredictionServer(predictor, host, port, follower=follower, source=source, owns_predictor=owns,
                                  **options)
    except BaseException:
        if follower is not None:
            follower.close()
        raise
    try:
        return server.start()
    except BaseException:
        server.close()
        raise
