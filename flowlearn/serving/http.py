"""Serve a ``LocalPredictor`` over HTTP (standard library ``http.server``, no extra dependency).

Endpoints:

``POST /predict``
    Body: one row as a JSON object, or a batch ``{"rows": [row, ...]}`` (a bare JSON array of
    rows is accepted too). A single row is predicted with ``LocalPredictor.predict`` (the row
    kernels); a batch with ``LocalPredictor.predict_batch`` (one table, one model version).
    Response: ``{"prediction": {...}, "model_version": v}`` or
    ``{"predictions": [{...}, ...], "model_version": v}``; each prediction is the input row with
    the output columns added, ``null`` for a row dropped by ``handle_invalid="skip"``.
    Dense vectors are JSON arrays, sparse vectors ``{"size": n, "indices": [...], "values": [...]}``
    (accepted in that form on input too); NaN and infinities are the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``. A bad body or a bad row answers 400 ``{"error": message}``
    where the message names the column (and ``rows[i]`` in a batch); never a traceback. Every
    row of a batch has the same columns (a missing column is a 400, as for one row). Limits:
    ``max_body_bytes`` and ``max_rows`` (413 beyond them), ``max_concurrent_predictions``
    requests decoded and predicted at once (others wait up to ``request_timeout``, then 503).
``GET /model``
    The served model: class, stages with their params and model data shapes, ``model_version``,
    and the store being followed.
``GET /healthz``
    200 ``{"status": "ok", "model_version": v}``; 503 while the server shuts down.
``GET /metrics``
    Prometheus text format: requests by path, method and status, a latency histogram per path,
    predicted rows, prediction errors, the served ``model_version`` and model swaps.

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

import json
import logging
import math
import socket
import socketserver
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from flowlearn._version import __version__
from flowlearn.data.vector_json import decode_vector
from flowlearn.linalg import SparseVector, to_numpy
from flowlearn.serving.predictor import LocalPredictor

__all__ = ["serve", "PredictionServer", "ServerMetrics", "open_predictor", "parse_body", "body_length", "PredictBody"]

logger = logging.getLogger("flowlearn.serving.http")

_ROW_INDEX = "__flowlearn_http_row__"
_JSON = "application/json"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_INPUT_ERRORS = (ValueError, TypeError, KeyError)

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 4 << 20
DEFAULT_MAX_CONCURRENT_PREDICTIONS = 4
MAX_NESTING = 32          # arrays/objects inside one column value
_LINGER_SECONDS = 2.0     # how long a body the server did not read is received and dropped before closing


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close


# ---------------------------------------------------------------------------------------------
# JSON in and out

def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")


def _floats(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a.tolist()
    return [_float(x) for x in a.tolist()]


def to_jsonable(v: Any) -> Any:
    """A value of a predicted row as JSON data: arrays become lists, ``SparseVector`` s
    ``{"size", "indices", "values"}``, NumPy scalars Python numbers, non-finite floats strings.

    Example:
        >>> import numpy as np
        >>> from flowlearn.linalg import SparseVector
        >>> to_jsonable({"v": np.array([1.0, np.inf]), "s": SparseVector(3, [2], [0.5]), "k": np.int64(2)})
        {'v': [1.0, 'Infinity'], 's': {'size': 3, 'indices': [2], 'values': [0.5]}, 'k': 2}
    """
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return _floats(v) if v.ndim == 1 else [to_jsonable(r) for r in v]
        return [to_jsonable(x) for x in v.tolist()]
    if isinstance(v, SparseVector):
        return {"size": int(v.size), "indices": np.asarray(v.indices).tolist(), "values": _floats(v.values)}
    if isinstance(v, np.generic):
        return to_jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return str(v)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _is_number(x: Any) -> bool:
    return (type(x) is float or type(x) is int)


def _decode_value(col: str, v: Any, where: str) -> Any:
    """JSON value -> row value: vectors (a numeric array, a ``{"size", "indices", "values"}``
    object) through the vector codec shared with the file and Kafka readers."""
    if (isinstance(v, list) and v and all(_is_number(x) for x in v)) or \
            (isinstance(v, dict) and set(v) == {"size", "indices", "values"}):
        try:
            return decode_vector(v, col)
        except ValueError as e:
            raise _HTTPError(400, f"{where}{e}") from None
    return v


def _nesting_exceeds(v: Any, limit: int) -> bool:
    """True when arrays/objects nest more than ``limit`` levels deep in ``v`` (iterative: no recursion)."""
    stack = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        if depth > limit:
            return True
        for y in (x.values() if isinstance(x, dict) else x):
            if isinstance(y, (list, dict)):
                stack.append((y, depth + 1))
    return False


class _OutOfRangeInt:
    """A JSON integer outside int64, kept as text until its row and column are known."""

    def __init__(self, text: str) -> None:
        self.text = text

    def describe(self) -> str:
        digits = self.text.lstrip("-")
        shown = self.text if len(digits) <= 30 else f"{self.text[:12]}...{self.text[-6:]}"
        return (f"the integer {shown} ({len(digits)} digits) is outside the 64-bit integer range "
                f"[-2**63, 2**63 - 1]; send a float (with a decimal point or an exponent) or a string")


def _find_out_of_range(v: Any) -> _OutOfRangeInt | None:
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, _OutOfRangeInt):
            return x
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return None


_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))   # digit -> "0", other -> " "
_INT64_DIGITS = 19


def _load_json(body: bytes) -> tuple[Any, bool]:
    """``json.loads`` that answers 400 on whatever Python's json cannot or should not turn into
    values; ``(doc, saw_out_of_range_int)``. Integers outside int64 become ``_OutOfRangeInt``
    (also those beyond Python's int-to-str digit limit). The slower ``parse_int`` hook is used only
    when the body has a run of 19 or more digits (found with one C-speed scan)."""
    hits: list[_OutOfRangeInt] = []

    def checked_int(text: str) -> Any:
        if len(text.lstrip("-")) >= _INT64_DIGITS:
            if len(text.lstrip("-")) > _INT64_DIGITS or not -(1 << 63) <= int(text) < (1 << 63):
                hits.append(_OutOfRangeInt(text))
                return hits[-1]
        return int(text)

    long_digits = b"0" * _INT64_DIGITS in body.translate(_DIGITS_ONLY)
    try:
        doc = json.loads(body, parse_int=checked_int) if long_digits else json.loads(body)
    except UnicodeDecodeError as e:
        raise _HTTPError(400, f"invalid JSON: the body is not UTF-8 ({e})") from None
    except json.JSONDecodeError as e:
        raise _HTTPError(400, f"invalid JSON: {e}") from None
    except RecursionError:
        raise _HTTPError(400, f"invalid JSON: arrays/objects nested too deeply (a column value may "
                              f"nest at most {MAX_NESTING} levels)") from None
    return doc, bool(hits)


_PLAIN = (float, int, bool, type(None))     # JSON values that need no decoding


def _decode_column_value(k: str, v: Any, where: str) -> Any:
    if type(v) in _PLAIN:
        return v
    d = _decode_value(k, v, where)
    if (type(d) is list or type(d) is dict) and _nesting_exceeds(d, MAX_NESTING):
        raise _HTTPError(400, f"{where}column '{k}': arrays/objects nested more than {MAX_NESTING} levels deep")
    return d


def _decode_row(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise _HTTPError(400, f"{where or 'the body '}must be a JSON object mapping column names to values, "
                              f"got {type(obj).__name__}")
    return {k: _decode_column_value(k, v, where) for k, v in obj.items()}


def _check_ints(rows: list, batch: bool) -> None:
    """400 naming the row and column of the first integer outside int64 in a row value (one
    anywhere else fails the body's structural checks)."""
    for i, r in enumerate(rows):
        if isinstance(r, dict):
            for k, v in r.items():
                hit = _find_out_of_range(v)
                if hit is not None:
                    raise _HTTPError(400, f"{f'rows[{i}]: ' if batch else ''}column '{k}': {hit.describe()}")


def body_length(content_length: list[str], transfer_encoding: list[str], max_body_bytes: int) -> int:
    """The body size a request declares, from all its ``Content-Length`` and ``Transfer-Encoding``
    header values. Framing that could be read two ways is refused (400, as RFC 9112 asks): several
    different lengths, a length that is not a plain decimal, or both headers; a transfer coding
    alone (chunked) is 411; a length over ``max_body_bytes`` is 413."""
    if transfer_encoding:
        if content_length:
            raise _HTTPError(400, "the request has both Transfer-Encoding and Content-Length; send only a "
                                  "Content-Length", close=True)
        raise _HTTPError(411, "Transfer-Encoding (chunked) request bodies are not supported; send a "
                              "Content-Length", close=True)
    values = {v.strip() for h in content_length for v in h.split(",")}
    if not values:
        raise _HTTPError(411, "a Content-Length header is required", close=True)
    if len(values) > 1:
        shown = sorted(v[:20] for v in values)
        raise _HTTPError(400, f"conflicting Content-Length values {shown}", close=True)
    (v,) = values
    if not (v.isascii() and v.isdigit()):
        raise _HTTPError(400, f"invalid Content-Length {v[:20]!r}: it must be a decimal number of bytes",
                         close=True)
    if len(v) > 18 or int(v) > max_body_bytes:
        shown = v if len(v) <= 18 else "more than 10**18"
        raise _HTTPError(413, f"the body has {shown} bytes; the limit is {max_body_bytes} (max_body_bytes: "
                              f"raise it with `flowlearn serve --max-body-bytes N` or serve(..., max_body_bytes=N))",
                         close=True)
    return int(v)


@dataclass
class PredictBody:
    """A decoded ``/predict`` body: one ``row``, or a batch of ``num_rows`` rows held column-wise
    in ``columns`` (every row of a batch has the same columns)."""

    row: dict | None = None
    columns: dict[str, list] = field(default_factory=dict)
    num_rows: int = 1

    @property
    def is_batch(self) -> bool:
        return self.row is None

    def batch_row(self, i: int) -> dict:
        return {k: c[i] for k, c in self.columns.items()}


def parse_body(body: bytes, max_rows: int = DEFAULT_MAX_ROWS) -> PredictBody:
    """Parse a ``/predict`` body (one row, ``{"rows": [...]}`` or a bare array of rows).

    Raises an HTTP 400 error naming what is wrong (``rows[i]`` and the column where it applies)
    on bad JSON, integers outside int64, values nested more than ``MAX_NESTING`` levels, rows that
    are not objects or whose columns differ from the first row's; 413 on more than ``max_rows`` rows.
    """
    doc, out_of_range = _load_json(body)
    if isinstance(doc, list):
        rows = doc
    elif isinstance(doc, dict) and len(doc) == 1 and "rows" in doc:
        rows = doc["rows"]
        if not isinstance(rows, list):
            raise _HTTPError(400, f"'rows' must be a JSON array of row objects, got {type(rows).__name__}")
    elif isinstance(doc, dict):
        if out_of_range:
            _check_ints([doc], batch=False)
        return PredictBody(row=_decode_row(doc, ""))
    else:
        raise _HTTPError(400, f"the body must be a JSON object (one row) or {{\"rows\": [...]}}, "
                              f"got {type(doc).__name__}")
    if len(rows) > max_rows:
        raise _HTTPError(413, f"the batch has {len(rows)} rows; the limit is {max_rows} rows per request "
                              f"(max_rows: raise it with `flowlearn serve --max-rows N` or "
                              f"serve(..., max_rows=N), or send smaller batches)")
    if out_of_range:
        _check_ints(rows, batch=True)
    columns: dict[str, list] = {}
    names = None
    for i, r in enumerate(rows):
        where = f"rows[{i}]: "
        if not isinstance(r, dict):
            raise _HTTPError(400, f"rows[{i}] must be a JSON object mapping column names to values, "
                                  f"got {type(r).__name__}")
        if names is None:
            names = r.keys()
            columns = {k: [] for k in names}
        elif r.keys() != names:
            missing, extra = [k for k in names if k not in r], [k for k in r if k not in names]
            what = (f"column {missing[0]!r} is missing" if missing else
                    f"column {extra[0]!r} is not in rows[0]")
            raise _HTTPError(400, f"rows[{i}]: {what}; every row of a batch must have the same columns as "
                                  f"rows[0] {list(names)} (send null for a missing value)")
        for k, v in r.items():
            columns[k].append(_decode_column_value(k, v, where))
    return PredictBody(columns=columns, num_rows=len(rows))


def _json_column(col: pa.ChunkedArray, name: str) -> list:
    """A predicted column as JSON values, one per row: numeric and dense vector columns through
    NumPy / Arrow in bulk (non-finite floats as strings), other types value by value."""
    t = col.type
    if (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_string(t)
            or pa.types.is_large_string(t) or pa.types.is_null(t)):
        return col.to_pylist()
    if pa.types.is_floating(t):
        values = col.to_pylist()
        a = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        for i in np.flatnonzero(~np.isfinite(a)).tolist():
            if values[i] is not None:
                values[i] = _float(values[i])
        return values
    if pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type) and col.null_count == 0:
        m = to_numpy(col, name)
        return m.tolist() if np.isfinite(m).all() else [_floats(r) for r in m]
    return [to_jsonable(v) for v in col.to_pylist()]


def _table_rows(t: pa.Table) -> list[dict]:
    """Rows of a predicted table as JSON data (dense vectors are lists, sparse ones dicts)."""
    names = t.column_names
    cols = [_json_column(t.column(n), n) for n in names]
    return [dict(zip(names, values)) for values in zip(*cols)] if names else [{} for _ in range(t.num_rows)]


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return f"input column {e.args[0]!r} is missing from the row"
    return str(e) or type(e).__name__


# ---------------------------------------------------------------------------------------------
# metrics

def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x != x:
        return "NaN"
    return repr(float(x))


class ServerMetrics:
    """Thread-safe counters and latency histograms, rendered in the Prometheus text format."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_at = time.time()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}   # path -> bucket counts..., sum, count
        self.predicted_rows = 0
        self.skipped_rows = 0
        self.errors: dict[str, int] = {"invalid_input": 0, "internal": 0}
        self.in_flight = 0

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (path, method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.latency.get(path)
            if h is None:
                h = self.latency[path] = [0.0] * (len(self.BUCKETS) + 2)
            for i, b in enumerate(self.BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def count_rows(self, predicted: int, skipped: int) -> None:
        with self._lock:
            self.predicted_rows += predicted
            self.skipped_rows += skipped

    def count_error(self, reason: str) -> None:
        with self._lock:
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def render(self, model_version: int | None = None, follower: Any = None) -> str:
        """The metrics in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, doc: str) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, value: float, **labels: Any) -> None:
            lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

        with self._lock:
            requests = sorted(self.requests.items())
            latency = {k: list(v) for k, v in sorted(self.latency.items())}
            rows, skipped, errors, in_flight = self.predicted_rows, self.skipped_rows, dict(self.errors), self.in_flight
        family("flowlearn_http_requests_total", "counter", "HTTP requests by path, method and status code.")
        for (path, method, status), n in requests:
            sample("flowlearn_http_requests_total", n, path=path, method=method, code=status)
        family("flowlearn_http_request_duration_seconds", "histogram", "HTTP request latency in seconds.")
        for path, h in latency.items():
            for b, n in zip(self.BUCKETS, h):
                sample("flowlearn_http_request_duration_seconds_bucket", int(n), path=path, le=_num(b))
            sample("flowlearn_http_request_duration_seconds_bucket", int(h[-1]), path=path, le="+Inf")
            sample("flowlearn_http_request_duration_seconds_sum", h[-2], path=path)
            sample("flowlearn_http_request_duration_seconds_count", int(h[-1]), path=path)
        family("flowlearn_http_requests_in_flight", "gauge", "HTTP requests being handled.")
        sample("flowlearn_http_requests_in_flight", in_flight)
        family("flowlearn_predicted_rows_total", "counter", "Rows predicted (skipped rows excluded).")
        sample("flowlearn_predicted_rows_total", rows)
        family("flowlearn_skipped_rows_total", "counter", "Rows dropped by a stage with handle_invalid='skip'.")
        sample("flowlearn_skipped_rows_total", skipped)
        family("flowlearn_prediction_errors_total", "counter",
               "Failed /predict requests: invalid_input (HTTP 400) or internal (HTTP 500).")
        for reason, n in sorted(errors.items()):
            sample("flowlearn_prediction_errors_total", n, reason=reason)
        family("flowlearn_model_version", "gauge", "Version of the served model (absent: not from a model store).")
        if model_version is not None:
            sample("flowlearn_model_version", int(model_version))
        if follower is not None:
            family("flowlearn_model_swaps_total", "counter", "New model versions swapped in from the store.")
            sample("flowlearn_model_swaps_total", int(getattr(follower, "swaps", 0)))
            family("flowlearn_model_swap_errors_total", "counter", "Store versions that could not be served.")
            sample("flowlearn_model_swap_errors_total", int(getattr(follower, "errors", 0)))
            last = getattr(follower, "last_swap_at", None)
            if last is not None:
                family("flowlearn_model_last_swap_timestamp_seconds", "gauge", "Unix time of the last model swap.")
                sample("flowlearn_model_last_swap_timestamp_seconds", float(last))
        family("flowlearn_server_start_time_seconds", "gauge", "Unix time the server started.")
        sample("flowlearn_server_start_time_seconds", float(self.started_at))
        family("flowlearn_build_info", "gauge", "flowlearn version.")
        sample("flowlearn_build_info", 1, version=__version__)
        return "\n".join(out) + "\n"


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

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive; every response has a Content-Length
    server_version = f"flowlearn/{__version__}"
    server: "PredictionServer"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()
        self.server._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
            if getattr(self, "_unread_body", False):
                self._discard_unread_body()
        finally:
            self.server._track(self.connection, False)

    def _discard_unread_body(self) -> None:
        """Answered without reading the body (413, a framing error, 404...): let the client finish
        sending it, for up to ``_LINGER_SECONDS``, so that closing does not reset the connection
        before the client has read the answer."""
        conn = self.connection
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                conn.settimeout(left)
                if not conn.recv(1 << 16):
                    break
        except OSError:
            pass

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: no "100 Continue" for a body that will be refused; the error
        answers the request and the client need not send the body."""
        h = self.headers
        try:
            body_length(h.get_all("Content-Length") or [], h.get_all("Transfer-Encoding") or [],
                        self.server.max_body_bytes)
        except _HTTPError:
            return True
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib signature
        logger.debug("%s - %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors from ``http.server`` (bad request line, oversized headers) as JSON."""
        try:
            short, _ = self.responses.get(code, ("error", ""))
        except AttributeError:  # pragma: no cover
            short = "error"
        self.close_connection = True
        self._send(code, _dumps({"error": message or short}), _JSON)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        if not getattr(self, "_body_read", True) and self._declares_body():
            self.close_connection = True          # an unread body would be parsed as the next request
            self._unread_body = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _declares_body(self) -> bool:
        h = self.headers
        return h is not None and (any(v.strip() not in ("", "0") for v in h.get_all("Content-Length") or [])
                                  or "Transfer-Encoding" in h)

    def _read_body(self) -> bytes:
        h = self.headers
        n = body_length(h.get_all("Content-Length") or [], h.get_all("Transfer-Encoding") or [],
                        self.server.max_body_bytes)
        self._body_read = True
        body = self.rfile.read(n)
        if len(body) < n:
            raise _HTTPError(400, f"the body ended after {len(body)} of {n} bytes", close=True)
        return body

    def _dispatch(self) -> None:
        server = self.server
        t0 = time.perf_counter()
        self._body_read = False
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        routes = server.routes.get(path)
        label = path if routes is not None else "other"
        with server.metrics._lock:
            server.metrics.in_flight += 1
        try:
            headers = None
            try:
                if routes is None:
                    raise _HTTPError(404, f"no such endpoint {path!r}; try POST /predict, GET /model, "
                                          f"GET /healthz or GET /metrics")
                fn = routes.get(self.command)
                if fn is None:
                    allow = ", ".join(sorted(routes))
                    raise _HTTPError(405, f"{self.command} is not allowed on {path}; use {allow}", {"Allow": allow})
                status, body, ctype = fn(self)
            except _HTTPError as e:
                status, body, ctype, headers = e.status, _dumps({"error": e.message}), _JSON, e.headers
                if e.close:
                    self.close_connection = True
            except Exception as e:  # noqa: BLE001 - a bug must answer 500, not drop the connection
                status, ctype = 500, _JSON
                body = _dumps({"error": f"internal error: {type(e).__name__}: {e}"})
                logger.exception("%s %s failed", self.command, path)
                self.close_connection = True
            # counted before the answer goes out: a client holding its answer finds it in /metrics
            server.metrics.observe(label, self.command or "", status, time.perf_counter() - t0)
            self._send(status, body, ctype, headers)
        except OSError:                     # the client went away mid-response
            self.close_connection = True
        finally:
            with server.metrics._lock:
                server.metrics.in_flight -= 1

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


def _predict_route(h: _Handler) -> tuple[int, bytes, str]:
    server = h.server
    try:
        body = h._read_body()
    except (OSError, socket.timeout):
        h.close_connection = True
        raise _HTTPError(408, "timed out reading the request body", close=True) from None
    with server.prediction_slot():
        try:
            parsed = parse_body(body, server.max_rows)
            del body
            doc = server.predict_rows(parsed) if parsed.is_batch else server.predict_row(parsed.row)
        except _HTTPError as e:
            if e.status == 400:
                server.metrics.count_error("invalid_input")
            raise
        except Exception:
            server.metrics.count_error("internal")
            raise
        return 200, _dumps(doc), _JSON


def _model_route(h: _Handler) -> tuple[int, bytes, str]:
    s = h.server
    p = s.predictor
    model, version = p.model, p.model_version
    doc = model_summary(model, version)
    if s.follower is not None:
        f = s.follower
        doc["follow"] = {"store": repr(f.store), "swaps": getattr(f, "swaps", None),
                         "errors": getattr(f, "errors", None), "last_swap_at": getattr(f, "last_swap_at", None)}
    doc["source"] = s.source
    return 200, _dumps(doc), _JSON


def _healthz_route(h: _Handler) -> tuple[int, bytes, str]:
    s = h.server
    if s.closing:
        return 503, _dumps({"status": "shutting down", "model_version": s.predictor.model_version}), _JSON
    return 200, _dumps({"status": "ok", "model_version": s.predictor.model_version}), _JSON


def _metrics_route(h: _Handler) -> tuple[int, bytes, str]:
    s = h.server
    text = s.metrics.render(s.predictor.model_version, s.follower)
    return 200, text.encode("utf-8"), _PROMETHEUS


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server around a ``LocalPredictor`` (see the module docstring).

    Built and started by :func:`serve`. ``url`` is its base URL, ``close()`` shuts it down
    (stop accepting, let in-flight requests finish for up to ``grace`` seconds, close
    keep-alive connections, stop following the store). Also a context manager.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, predictor: LocalPredictor, host: str = "127.0.0.1", port: int = 8080, *,
                 follower: Any = None, source: str | None = None, owns_predictor: bool = True,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_rows: int = DEFAULT_MAX_ROWS,
                 max_concurrent_predictions: int = DEFAULT_MAX_CONCURRENT_PREDICTIONS,
                 request_timeout: float = 60.0) -> None:
        for name, value in (("max_body_bytes", max_body_bytes), ("max_rows", max_rows),
                            ("max_concurrent_predictions", max_concurrent_predictions)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PredictionServer: parameter '{name}' = {value!r} violates gt(0): it must be "
                                 f"an integer of at least 1")
        self.predictor = predictor
        self.follower = follower
        self.source = source
        self.owns_predictor = owns_predictor
        self.max_body_bytes = max_body_bytes
        self.max_rows = max_rows
        self.max_concurrent_predictions = max_concurrent_predictions
        self._prediction_slots = threading.BoundedSemaphore(max_concurrent_predictions)
        self.request_timeout = request_timeout
        self.metrics = ServerMetrics()
        self.closing = False
        self.routes: dict[str, dict[str, Callable[[_Handler], tuple[int, bytes, str]]]] = {
            "/predict": {"POST": _predict_route},
            "/model": {"GET": _model_route},
            "/healthz": {"GET": _healthz_route},
            "/metrics": {"GET": _metrics_route},
        }
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a reverse DNS lookup); not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection failed outside a request's handling (socketserver would print a traceback
        to stderr): a client that went away is routine, anything else is logged as an error."""
        e = sys.exc_info()[1]
        if isinstance(e, OSError):       # reset, broken pipe, timeout: the client went away
            logger.debug("connection from %s ended: %s: %s", client_address, type(e).__name__, e)
        else:
            logger.exception("connection from %s failed", client_address)

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

    # ---- predictions
    @contextmanager
    def prediction_slot(self) -> Any:
        """Hold one of ``max_concurrent_predictions`` slots while a body is decoded, predicted and
        encoded (what costs memory); wait up to ``request_timeout`` seconds for one, then 503."""
        if not self._prediction_slots.acquire(timeout=self.request_timeout):
            raise _HTTPError(503, f"the server is busy: {self.max_concurrent_predictions} predictions are running "
                                  f"(max_concurrent_predictions) and none finished within {self.request_timeout} s; "
                                  f"retry later", {"Retry-After": "1"})
        try:
            yield
        finally:
            self._prediction_slots.release()

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

    def predict_row(self, row: dict) -> dict:
        """``POST /predict`` with one row: ``{"prediction": row | None, "model_version": v}``."""
        try:
            out, before, same = self._version_around(lambda: self.predictor.predict(row))
        except _INPUT_ERRORS as e:
            raise _HTTPError(400, self._row_error(row, e)) from None
        if out is None:
            self.metrics.count_rows(0, 1)
            return {"prediction": None, "model_version": before if same else self.predictor.model_version}
        self.metrics.count_rows(1, 0)
        version = before if same else out.get("model_version")
        return {"prediction": to_jsonable(out), "model_version": version}

    def predict_rows(self, body: PredictBody) -> dict:
        """``POST /predict`` with a batch: one ``predict_batch`` call, so one model version.

        Predictions are aligned with the rows (``None`` for a skipped row). On a bad batch the
        row path finds the first bad row, so the message names ``rows[i]`` and the column."""
        n = body.num_rows
        if not n:
            return {"predictions": [], "model_version": self.predictor.model_version}
        from flowlearn.data.table import table as to_table

        try:
            t = to_table({**body.columns, _ROW_INDEX: pa.array(np.arange(n, dtype=np.int64))})
            out, before, same = self._version_around(lambda: self.predictor.predict_batch(t))
        except (*_INPUT_ERRORS, OverflowError, pa.ArrowException):
            # a batch the table path refuses (a vector column holding a number, a row a stage rejects):
            # the row path decides each row as a single request would (skip -> null, else rows[i] 400)
            return self._rows_one_by_one(body)
        del t
        version = before
        if not same and "model_version" in out.column_names and out.num_rows:
            version = out.column("model_version")[0].as_py()
        preds: list[Any]
        if _ROW_INDEX in out.column_names:
            idx = out.column(_ROW_INDEX).to_numpy()
            out = out.drop_columns([_ROW_INDEX])
            preds = _table_rows(out)
            if len(idx) != n or not np.array_equal(idx, np.arange(n)):
                aligned: list[Any] = [None] * n
                for i, r in zip(idx.tolist(), preds):
                    aligned[i] = r
                preds = aligned
        elif out.num_rows == n:
            preds = _table_rows(out)
        else:   # a stage dropped rows and the row index column: align with the row path instead
            preds = []
            for i in range(n):
                p = self.predictor.predict(body.batch_row(i))
                preds.append(None if p is None else to_jsonable(p))
        kept = sum(p is not None for p in preds)
        self.metrics.count_rows(kept, n - kept)
        return {"predictions": preds, "model_version": version}

    def _rows_one_by_one(self, body: PredictBody) -> dict:
        """A batch answered by the row path, row by row, with one model version: if a swap lands
        during the pass, the pass runs again on the new version."""
        for _ in range(3):
            before = self.predictor.model_version
            preds: list[Any] = []
            for i in range(body.num_rows):
                r = body.batch_row(i)
                try:
                    p = self.predictor.predict(r)
                except _INPUT_ERRORS as e:
                    raise _HTTPError(400, f"rows[{i}]: {self._row_error(r, e)}") from None
                preds.append(None if p is None else to_jsonable(p))
            if self.predictor.model_version == before:
                kept = sum(p is not None for p in preds)
                self.metrics.count_rows(kept, body.num_rows - kept)
                return {"predictions": preds, "model_version": before}
        raise _HTTPError(503, "the model was swapped during every pass over this batch; retry",
                         headers={"Retry-After": "1"})

    # ---- lifecycle
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def start(self) -> "PredictionServer":
        """Serve on a daemon thread (``serve`` calls this)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"flowlearn-http-{self.port}", daemon=True)
            self._thread.start()
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
        if self._thread is not None:
            self.shutdown()                        # serve_forever returns; no new connections
            self._thread.join()
        deadline = time.monotonic() + grace
        while self.metrics.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:                            # idle keep-alive connections: wake their threads
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        if self.follower is not None:
            self.follower.close()
        if self.owns_predictor:
            self.predictor.close()
        logger.info("server on port %d closed", self.port)

    def __enter__(self) -> "PredictionServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    default 10,000), ``max_concurrent_predictions`` (default 4), ``request_timeout`` (seconds a
    connection may stay silent and a request may wait for a prediction slot, default 60). Stop it
    with ``server.close()`` or a ``with`` block.

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
    return server.start()
