"""The dashboard's web app (Starlette, served by uvicorn): a static page and its JSON endpoints.

Endpoints (all ``GET``; JSON is strict: non-finite numbers are ``null``):

``/``                     the page (``static/index.html``; charts drawn with uPlot, shipped in
                          ``static/``, no CDN)
``/api/config``           ``{"store", "metrics_dir", "refresh"}``
``/api/versions``         the store's versions with kind and gate decision
``/api/metrics``          the streaming-evaluation rows per evaluation log
``/api/jobs``             the jobs' snapshots and recent history
``/api/pipeline``         the served (else the newest) version's stages as a graph; ``?version=N``
                          for another
``/api/served``           ``{"server", "version", "error"}``: the version the model server
                          (``server=``, e.g. ``flowlearn serve``) answers with on ``/healthz``
``/healthz``              ``ok``

See :mod:`flowlearn.dashboard.data` for the documents and :mod:`flowlearn.dashboard.metrics`
for the files jobs write.

Example:
    >>> import tempfile, json, urllib.request
    >>> from flowlearn.modelstream import ModelStore
    >>> srv = serve_dashboard(ModelStore(tempfile.mkdtemp()), port=0)
    >>> json.load(urllib.request.urlopen(srv.url + "/api/versions"))["versions"]
    []
    >>> srv.close()
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from flowlearn.dashboard.data import DashboardData

__all__ = ["create_app", "serve_dashboard", "DashboardServer", "STATIC_DIR"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def _need_starlette() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"flowlearn dashboard needs starlette and uvicorn ({e}); install the serve extra: "
                          f"pip install 'flowlearn[serve]'") from None


def _served(server: str | None, timeout: float = 2.0) -> dict:
    """The version a model server serves, from its ``GET /healthz`` (``{"status", "model_version"}``)."""
    if not server:
        return {"server": None, "version": None, "error": None}
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(server.rstrip("/") + "/healthz", timeout=timeout) as r:
            doc = json.loads(r.read(1 << 16))
    except urllib.error.HTTPError as e:
        return {"server": server, "version": None, "error": f"HTTP {e.code} from {server}/healthz"}
    except (OSError, ValueError) as e:
        return {"server": server, "version": None, "error": f"{server}/healthz: {type(e).__name__}: {e}"}
    v = doc.get("model_version") if isinstance(doc, dict) else None
    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
        return {"server": server, "version": None, "error": f"{server}/healthz: model_version {v!r} is not a number"}
    return {"server": server, "version": v, "error": None}


def create_app(store: Any, metrics_dir: str | None = None, refresh: float = 1.0, server: str | None = None) -> Any:
    """The Starlette app for ``store`` (a ``ModelStore`` or its path) and ``metrics_dir``;
    the page polls the endpoints every ``refresh`` seconds. ``server``: the base URL of the model
    server following the store (``flowlearn serve``): the page marks the version it serves and
    draws that version's pipeline."""
    _need_starlette()
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or not 0.05 <= refresh <= 3600:
        raise ValueError(f"dashboard: parameter 'refresh' = {refresh!r} must be a number of seconds in [0.05, 3600]")
    if metrics_dir is not None and not os.path.isdir(metrics_dir):
        raise ValueError(f"dashboard: metrics directory {metrics_dir!r} does not exist (jobs create it with "
                         f"JobMetricsWriter / EvalLog, or flowlearn run --metrics-dir)")
    if server is not None and not (isinstance(server, str) and server.startswith(("http://", "https://"))):
        raise ValueError(f"dashboard: parameter 'server' = {server!r} must be an http:// or https:// URL")
    data = DashboardData(store, metrics_dir)
    nocache = {"Cache-Control": "no-store"}

    def index(request: Any) -> Any:
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), headers=nocache)

    def config(request: Any) -> Any:
        return JSONResponse({"store": data.store.url, "metrics_dir": metrics_dir, "refresh": float(refresh),
                             "server": server}, headers=nocache)

    def served(request: Any) -> Any:
        return JSONResponse(_served(server), headers=nocache)

    def versions(request: Any) -> Any:
        return JSONResponse(data.versions(), headers=nocache)

    def metrics(request: Any) -> Any:
        return JSONResponse(data.metrics(), headers=nocache)

    def jobs(request: Any) -> Any:
        return JSONResponse(data.jobs(), headers=nocache)

    def pipeline(request: Any) -> Any:
        raw = request.query_params.get("version")
        version = None
        if raw is not None:
            try:
                version = int(raw)
            except ValueError:
                return JSONResponse({"error": f"query parameter 'version' = {raw!r} must be an integer"},
                                    status_code=400)
            if not 0 < version < 10**12:
                return JSONResponse({"error": f"query parameter 'version' = {version} must be in [1, 10**12)"},
                                    status_code=400)
        if version is None and server:
            version = _served(server)["version"]
        try:
            return JSONResponse(data.pipeline(version), headers=nocache)
        except LookupError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except (ValueError, OSError) as e:
            return JSONResponse({"error": str(e)}, status_code=422)

    def healthz(request: Any) -> Any:
        return PlainTextResponse("ok")

    # Sync handlers: Starlette runs them in its thread pool, off the event loop (they read files).
    app = Starlette(routes=[
        Route("/", index), Route("/api/config", config), Route("/api/versions", versions),
        Route("/api/metrics", metrics), Route("/api/jobs", jobs), Route("/api/pipeline", pipeline),
        Route("/api/served", served),
        Route("/healthz", healthz), Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ])
    app.state.data = data
    return app


class DashboardServer:
    """A dashboard served by uvicorn on a background thread: ``url``, ``close()``; a context manager."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        h = f"[{host}]" if ":" in host else host
        self.url = f"http://{h}:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="flowlearn-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.close()
            raise OSError(f"dashboard: uvicorn did not start on {self.url}")

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (finishing requests in flight) and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "DashboardServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve_dashboard(store: Any, metrics_dir: str | None = None, host: str = "127.0.0.1", port: int = 8050,
                    refresh: float = 1.0, server: str | None = None) -> DashboardServer:
    """Serve the dashboard of ``store`` and ``metrics_dir`` (and the model ``server``'s version) on
    ``host:port`` (0: a free port) in a background thread; returns the running :class:`DashboardServer`."""
    return DashboardServer(create_app(store, metrics_dir, refresh, server), host, port)
