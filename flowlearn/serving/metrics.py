"""The model server's Prometheus metrics, through ``prometheus-client`` (one registry per server).

Families (see ``docs/serving.md``): ``flowlearn_http_requests_total`` (path, method, code),
``flowlearn_http_request_duration_seconds`` (path; histogram), ``flowlearn_http_requests_in_flight``,
``flowlearn_predicted_rows_total``, ``flowlearn_skipped_rows_total``,
``flowlearn_prediction_errors_total`` (reason), and, read when scraped, ``flowlearn_model_version``,
``flowlearn_model_swaps_total``, ``flowlearn_model_swap_errors_total``,
``flowlearn_model_last_swap_timestamp_seconds``, ``flowlearn_prediction_jobs_total`` and
``flowlearn_prediction_job_requests_total`` (their ratio: how many requests a job on the prediction
threads coalesced), plus ``flowlearn_server_start_time_seconds`` and ``flowlearn_build_info``.

Example:
    >>> m = ServerMetrics()
    >>> m.observe("/predict", "POST", 200, 0.002)
    >>> m.count_rows(3, 1)
    >>> text = m.render().decode()
    >>> 'flowlearn_http_requests_total{code="200",method="POST",path="/predict"} 1.0' in text
    True
    >>> "flowlearn_predicted_rows_total 3.0" in text
    True
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from flowlearn._version import __version__

__all__ = ["ServerMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ModelCollector:
    """Served version and store-following counters, read from the predictor and follower when scraped."""

    def __init__(self, version: Callable[[], int | None], follower: Callable[[], Any],
                 work: Callable[[], Any]) -> None:
        self._version, self._follower, self._work = version, follower, work

    def collect(self) -> Iterator[Any]:
        w = self._work()
        yield CounterMetricFamily("flowlearn_prediction_jobs", "Jobs run on the prediction threads (each takes "
                                  "every request waiting, so requests / jobs is the mean coalescing).",
                                  value=float(getattr(w, "jobs", 0)))
        yield CounterMetricFamily("flowlearn_prediction_job_requests", "Requests run by prediction jobs.",
                                  value=float(getattr(w, "items", 0)))
        g = GaugeMetricFamily("flowlearn_model_version",
                              "Version of the served model (absent: not from a model store).")
        v = self._version()
        if v is not None:
            g.add_metric([], float(v))
        yield g
        f = self._follower()
        if f is None:
            return
        yield CounterMetricFamily("flowlearn_model_swaps", "New model versions swapped in from the store.",
                                  value=float(getattr(f, "swaps", 0)))
        yield CounterMetricFamily("flowlearn_model_swap_errors", "Store versions that could not be served "
                                  "(corrupt versions skipped and versions the predictor refused).",
                                  value=float(getattr(f, "errors", 0)))
        last = getattr(f, "last_swap_at", None)
        if last is not None:
            yield GaugeMetricFamily("flowlearn_model_last_swap_timestamp_seconds", "Unix time of the last model swap.",
                                    value=float(last))


class ServerMetrics:
    """Counters and histograms of one server, in their own ``CollectorRegistry``.

    ``version`` and ``follower`` are callables read at scrape time (the served version; the
    ``StoreFollower`` or None). Children of labelled metrics are cached, so the request path
    costs a dict lookup and an increment."""

    def __init__(self, version: Callable[[], int | None] = lambda: None,
                 follower: Callable[[], Any] = lambda: None, work: Callable[[], Any] = lambda: None) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.started_at = time.time()
        self._requests = Counter("flowlearn_http_requests", "HTTP requests by path, method and status code.",
                                 ["path", "method", "code"], registry=r)
        self._latency = Histogram("flowlearn_http_request_duration_seconds",
                                  "HTTP request latency in seconds, until the answer is ready.", ["path"],
                                  buckets=BUCKETS, registry=r)
        self._in_flight = Gauge("flowlearn_http_requests_in_flight", "HTTP requests being handled.", registry=r)
        self._rows = Counter("flowlearn_predicted_rows", "Rows predicted (skipped rows excluded).", registry=r)
        self._skipped = Counter("flowlearn_skipped_rows", "Rows dropped by a stage with handle_invalid='skip'.",
                                registry=r)
        self._errors = Counter("flowlearn_prediction_errors", "Failed prediction requests: invalid_input (4xx "
                               "for the body) or internal (HTTP 500).", ["reason"], registry=r)
        for reason in ("invalid_input", "internal"):
            self._errors.labels(reason)
        Gauge("flowlearn_server_start_time_seconds", "Unix time the server started.", registry=r).set(self.started_at)
        Info("flowlearn_build", "flowlearn version.", registry=r).info({"version": __version__})
        r.register(_ModelCollector(version, follower, work))
        self._children: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.in_flight = 0

    def _child(self, key: tuple) -> Any:
        c = self._children.get(key)
        if c is None:
            with self._lock:
                if key[0] == "req":
                    c = self._requests.labels(key[1], key[2], str(key[3]))
                else:
                    c = self._latency.labels(key[1])
                self._children[key] = c
        return c

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        self._child(("req", path, method, status)).inc()
        self._child(("lat", path)).observe(seconds)

    def enter(self) -> None:
        self._in_flight.inc()
        self.in_flight += 1

    def leave(self) -> None:
        self._in_flight.dec()
        self.in_flight -= 1

    def count_rows(self, predicted: int, skipped: int) -> None:
        if predicted:
            self._rows.inc(predicted)
        if skipped:
            self._skipped.inc(skipped)

    def count_error(self, reason: str) -> None:
        self._errors.labels(reason).inc()

    def render(self) -> bytes:
        """The metrics in the Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)
