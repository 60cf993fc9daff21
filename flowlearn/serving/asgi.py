"""The model server's ASGI application (Starlette) and how uvicorn runs it.

:func:`build_app` routes the endpoints of a ``PredictionServer`` (see
:mod:`flowlearn.serving.http`); :func:`run_uvicorn` serves it on the server's bound socket with
uvicorn (httptools parser, uvloop when installed) on an event loop of the calling thread.

The event loop only moves bytes. Every ``/predict`` and ``/v2/.../infer`` body is decoded,
checked, predicted and encoded on worker threads through a :class:`~flowlearn.serving.batching.WorkQueue`
(at most ``max_concurrent_predictions`` jobs at once; concurrent requests are coalesced into
jobs). ``POST /predict`` is a plain ASGI endpoint: the declared ``Content-Length`` is checked
before any of the body is read (411 without one, 413 beyond ``max_body_bytes``; with
``Expect: 100-continue`` the refusal replaces the ``100 Continue``), the body is read within
``request_timeout`` (else 408). A body the server refuses unread is read and dropped by
uvicorn's parser after the answer, so the connection stays usable and a client that sends the
whole body first still reads the answer.

Requests the HTTP parser (llhttp) refuses - several ``Content-Length`` headers, one that is not
a decimal number, ``Content-Length`` with ``Transfer-Encoding`` - are answered by
:class:`JSONErrorProtocol` with a JSON ``{"error": ...}`` naming the header (400; 413 for a length
beyond 64 bits; 411 for a chunked body), and the connection is closed.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flowlearn._version import __version__
from flowlearn.serving.batching import WorkQueue
from flowlearn.serving.codec import HTTPError, body_length, dumps
from flowlearn.serving.metrics import CONTENT_TYPE as PROMETHEUS

if TYPE_CHECKING:
    from flowlearn.serving.http import PredictionServer

__all__ = ["build_app", "run_uvicorn", "JSONErrorProtocol"]

logger = logging.getLogger("flowlearn.serving.http")

_JSON = b"application/json"
_LINGER_SECONDS = 2.0
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _json_headers(body: bytes, extra: dict[str, str] | None = None, close: bool = False) -> list[tuple[bytes, bytes]]:
    h = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    for k, v in (extra or {}).items():
        h.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    if close:
        h.append((b"connection", b"close"))
    return h


async def _send_json(send: Any, status: int, body: bytes, extra: dict[str, str] | None = None,
                     close: bool = False) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _json_headers(body, extra, close)})
    await send({"type": "http.response.body", "body": body})


def _error_body(message: str) -> bytes:
    return dumps({"error": message})


def parse_columns(query: bytes) -> Any:
    """``include_inputs`` / ``include_intermediates`` from a query string (400 on anything else)."""
    from flowlearn.serving.http import OUTPUTS, Columns

    if not query:
        return OUTPUTS
    flags = {"include_inputs": False, "include_intermediates": False}
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=True,
                          max_num_fields=10)
    except ValueError as e:
        raise HTTPError(400, f"invalid query string: {e}") from None
    for k, v in pairs:
        if k not in flags:
            raise HTTPError(400, f"unknown query parameter {k[:40]!r}; /predict takes include_inputs and "
                                 f"include_intermediates (true or false)")
        if v.lower() not in _TRUE:
            raise HTTPError(400, f"query parameter {k!r} = {v[:40]!r}: use true or false")
        flags[k] = _TRUE[v.lower()]
    return Columns(**flags)


async def read_body(scope: dict, receive: Any, server: "PredictionServer") -> tuple[bytes | None, bool]:
    """The request body after checking its declared size; ``(None, _)`` when the client left.
    ``HTTPError`` for a refused body (with ``close`` set when the client waits for
    ``100 Continue``: it will not send the body)."""
    cl: list[str] = []
    te: list[str] = []
    expect = closing = False
    for k, v in scope["headers"]:
        if k == b"content-length":
            cl.append(v.decode("latin-1"))
        elif k == b"transfer-encoding":
            te.append(v.decode("latin-1"))
        elif k == b"expect":
            expect = v.lower() == b"100-continue"
        elif k == b"connection":
            closing = b"close" in v.lower()
    try:
        n = body_length(cl, te, server.max_body_bytes)
    except HTTPError as e:
        e.close = e.status != 413 or expect
        if e.status == 413 and not expect and (closing or scope.get("http_version") == "1.0"):
            await _drop_body(receive)
        raise
    chunks: list[bytes] = []
    got = 0
    try:
        async with asyncio.timeout(server.request_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None, False
                chunk = message.get("body", b"")
                got += len(chunk)
                if got > n:
                    raise HTTPError(400, f"the body is longer than its Content-Length {n}", close=True)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise HTTPError(408, f"timed out reading the request body ({got} of {n} bytes after "
                             f"{server.request_timeout:g} s)", close=True) from None
    if got < n:
        raise HTTPError(400, f"the body ended after {got} of {n} bytes", close=True)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), expect


async def _drop_body(receive: Any) -> None:
    """Receive and drop a refused body for up to ``_LINGER_SECONDS`` before a connection the
    client asked to close is closed: closing with unread bytes would reset the connection before
    the client reads the answer. (On a keep-alive connection uvicorn's parser drops them after
    the answer.)"""
    try:
        async with asyncio.timeout(_LINGER_SECONDS):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


async def run_job(server: "PredictionServer", fn: Any, *args: Any, size: int = 0) -> Any:
    """``fn(*args)`` on a worker thread through the server's work queue."""
    return await server.work.submit(fn, *args, size=size)


async def answer_errors(send: Any, coro: Any, what: str) -> None:
    """Await ``coro`` (which sends the answer); an ``HTTPError`` becomes its JSON answer, anything
    else a logged 500."""
    try:
        await coro
    except HTTPError as e:
        await _send_json(send, e.status, _error_body(e.message), e.headers, e.close)
    except Exception as e:  # noqa: BLE001 - a bug in a stage answers 500 with its type and message
        logger.exception("%s failed", what)
        await _send_json(send, 500, _error_body(f"internal error: {type(e).__name__}: {e}"), close=True)


class PredictEndpoint:
    """``POST /predict`` as a plain ASGI app (no Request/Response objects on the hot path)."""

    def __init__(self, server: "PredictionServer") -> None:
        self.server = server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await answer_errors(send, self._handle(scope, receive, send), "POST /predict")

    async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
        server = self.server
        columns = parse_columns(scope.get("query_string", b""))
        try:
            body, _ = await read_body(scope, receive, server)
        except HTTPError as e:
            if 400 <= e.status < 500:
                server.metrics.count_error("invalid_input")
            raise
        if body is None:
            return
        payload = await run_job(server, server.handle_predict, body, columns, size=len(body))
        await send({"type": "http.response.start", "status": 200, "headers": _json_headers(payload)})
        await send({"type": "http.response.body", "body": payload})


# ---------------------------------------------------------------------------------------------
# metrics middleware

_V2_MODEL = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?(/ready|/infer)?$")


def path_label(path: str, known: frozenset[str]) -> str:
    """The ``path`` label of a request: the route (``/v2/models/{name}/infer``), ``other`` if unknown."""
    if path in known:
        return path
    m = _V2_MODEL.match(path)
    if m:
        return "/v2/models/{name}" + ("/versions/{version}" if m.group(1) else "") + (m.group(2) or "")
    return "other"


class MetricsMiddleware:
    """Counts every request (path, method, status) and its latency until the answer starts (so a
    client holding its answer finds it in ``/metrics``)."""

    def __init__(self, app: Any, server: "PredictionServer", known: frozenset[str], predict: Any) -> None:
        self.app, self.server, self.known, self.predict = app, server, known, predict

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # the hot path skips Starlette's routing and exception middleware (the endpoint answers its
        # own errors); any other request goes through the app
        app = self.predict if scope["path"] == "/predict" and scope["method"] == "POST" else self.app
        metrics = self.server.metrics
        t0 = time.perf_counter()
        label = path_label(scope["path"], self.known)
        method = scope["method"]
        counted = False

        async def counting_send(message: dict) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                metrics.observe(label, method, message["status"], time.perf_counter() - t0)
            await send(message)

        metrics.enter()
        try:
            await app(scope, receive, counting_send)
        finally:
            metrics.leave()


# ---------------------------------------------------------------------------------------------
# the app

def build_app(server: "PredictionServer") -> Any:
    """The Starlette app of ``server`` wrapped in the metrics middleware."""
    from flowlearn.serving import oip
    from flowlearn.serving.openapi import openapi_document

    # /model and /openapi.json are cheap (the model's input schema is computed once per version):
    # answered on the loop, so that a server busy predicting still describes itself
    async def model(request: Request) -> Response:
        return Response(dumps(server.model_document()), media_type="application/json")

    async def healthz(request: Request) -> Response:
        version = server.predictor.model_version
        if server.closing:
            return Response(dumps({"status": "shutting down", "model_version": version}), 503,
                            media_type="application/json")
        return Response(dumps({"status": "ok", "model_version": version}), media_type="application/json")

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.render(), media_type=PROMETHEUS)

    async def openapi(request: Request) -> Response:
        return Response(dumps(openapi_document(server)), media_type="application/json")

    predict = PredictEndpoint(server)
    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/model", model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *oip.routes(server),
    ]
    known = frozenset(r.path for r in routes if "{" not in r.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            msg = (f"no such endpoint {request.url.path!r}; try POST /predict, GET /model, GET /healthz, "
                   f"GET /metrics, GET /openapi.json or the /v2 Open Inference Protocol endpoints")
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}; use {(exc.headers or {}).get('Allow')}"
        else:
            msg = str(exc.detail)
        return Response(_error_body(msg), exc.status_code, headers=dict(exc.headers or {}),
                        media_type="application/json")

    async def our_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        headers = dict(exc.headers)
        if exc.close:
            headers["connection"] = "close"
        return Response(_error_body(exc.message), exc.status, headers=headers, media_type="application/json")

    async def internal(request: Request, exc: Exception) -> Response:
        logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, HTTPError: our_error,
                                                       Exception: internal})
    app.router.redirect_slashes = False
    return MetricsMiddleware(app, server, known, predict)


# ---------------------------------------------------------------------------------------------
# uvicorn

_PARSER_ERRORS = {
    "Duplicate Content-Length": (400, "conflicting Content-Length headers: a request has at most one (RFC 9112 "
                                      "6.3); send exactly one Content-Length"),
    "Transfer-Encoding can't be present with Content-Length": (
        400, "the request has both Transfer-Encoding and Content-Length; send only a Content-Length"),
    "Empty Content-Length": (400, "invalid Content-Length '': it must be a decimal number of bytes"),
}
_CL_VALUE = re.compile(rb"\r\ncontent-length:[ \t]*([^\r\n]*)", re.IGNORECASE)


class JSONErrorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose answers to requests the parser refuses are JSON errors
    naming the header, counted in the server's metrics (``flowlearn_server`` is set on a subclass)."""

    flowlearn_server: "PredictionServer"

    _head_timer: asyncio.TimerHandle | None = None

    # A connection has request_timeout seconds to send a request's headers (uvicorn itself times out
    # only idle keep-alive connections): a client trickling headers does not hold it forever.
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.flowlearn_server.request_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._write_error(408, f"the request headers did not arrive within "
                                   f"{self.flowlearn_server.request_timeout:g} s (request_timeout)")

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_head_timer()              # idle now: uvicorn's keep-alive timeout applies

    def data_received(self, data: bytes) -> None:
        import httptools

        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as e:
            self._refuse(str(e), data)

    def _refuse(self, reason: str, data: bytes) -> None:
        cycle = self.cycle
        chunked = cycle is not None and not cycle.response_started and any(
            k == b"transfer-encoding" for k, _ in cycle.scope.get("headers", []))
        if chunked and not any(k == b"content-length" for k, _ in cycle.scope["headers"]):
            status, msg = 411, ("Transfer-Encoding (chunked) request bodies are not supported; send a "
                                "Content-Length")
        elif reason in _PARSER_ERRORS:
            status, msg = _PARSER_ERRORS[reason]
        elif reason == "Content-Length overflow":
            limit = self.flowlearn_server.max_body_bytes
            status, msg = 413, (f"the body has more than 2**64 bytes; the limit is {limit} "
                                f"(max_body_bytes: raise it with `flowlearn serve --max-body-bytes N` or "
                                f"serve(..., max_body_bytes=N))")
        elif "Content-Length" in reason:
            m = _CL_VALUE.search(data)
            value = m.group(1).decode("latin-1").strip() if m else ""
            values = sorted({v.strip()[:20] for v in value.split(",")})
            if "," in value and len(values) > 1:
                status, msg = 400, f"conflicting Content-Length values {values}; send exactly one Content-Length"
            elif "," in value:
                status, msg = 400, f"a list of Content-Length values {value[:40]!r}; send exactly one Content-Length"
            else:
                status, msg = 400, f"invalid Content-Length {value[:20]!r}: it must be a decimal number of bytes"
        else:
            status, msg = 400, f"invalid HTTP request: {reason}"
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True           # the app's answer, if any, is not written
            cycle.message_event.set()
        self._write_error(status, msg)

    def _write_error(self, status: int, msg: str) -> None:
        self._cancel_head_timer()
        self.flowlearn_server.metrics.observe("other", "", status, 0.0)
        body = _error_body(msg)
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        for name, value in _json_headers(body, close=True):
            head.append(name + b": " + value + b"\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + body)
        self.transport.close()


_REASONS = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large"}


def run_uvicorn(server: "PredictionServer", started: Any, errors: list) -> None:
    """Serve ``server`` with uvicorn on a new event loop in this thread until ``should_exit``."""
    import uvicorn

    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is part of uvicorn[standard]
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    protocol = type("ServerProtocol", (JSONErrorProtocol,), {"flowlearn_server": server})
    config = uvicorn.Config(build_app(server), http=protocol, lifespan="off", access_log=False, log_config=None,
                            proxy_headers=False,
                            timeout_keep_alive=max(1, int(server.request_timeout)), server_header=False,
                            headers=[("server", f"flowlearn/{__version__}")], timeout_graceful_shutdown=5)
    uv = uvicorn.Server(config)
    server._uvicorn = uv

    async def main() -> None:
        executor = ThreadPoolExecutor(server.max_concurrent_predictions,
                                      thread_name_prefix=f"flowlearn-predict-{server.port}")
        server.work = WorkQueue(asyncio.get_running_loop(), executor, server.max_concurrent_predictions,
                                server.request_timeout, server.busy_error, max_bytes=server.max_body_bytes)
        task = asyncio.ensure_future(uv.serve(sockets=[server.socket]))
        while not uv.started and not task.done():
            await asyncio.sleep(0.002)
        started.set()
        try:
            await task
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    try:
        loop.run_until_complete(main())
    except BaseException as e:  # noqa: BLE001 - reported by start()
        errors.append(e)
        logger.exception("the server on port %d failed", server.port)
    finally:
        started.set()
        try:
            loop.close()
        except Exception:  # noqa: BLE001
            pass
