"""HTTP serving (flowlearn.serving.http, flowlearn.cli.serve): real HTTP over loopback with urllib
against servers on free ports.

Proves: /predict answers equal LocalPredictor.predict (one row) and predict_batch (rows) for a
fitted VectorAssembler -> StandardScaler -> KMeans pipeline, dense vectors as lists and sparse
ones as {"size", "indices", "values"}, skipped rows as null in place; by default an answer holds
the output columns only (the pipeline's last column, not its assembled or scaled vectors), the
request's columns with ?include_inputs=true, the intermediate ones with
?include_intermediates=true; /model lists the input columns and their types; bad input is a 400
whose message names the column (and rows[i]), never a traceback; /metrics is valid Prometheus
text whose counters and histograms move with the traffic; concurrent clients get correct answers
and are all counted; saved-model paths and model stores are served (a store's new version is
swapped in); close() is clean with open keep-alive connections; the CLI serves and stops on
SIGTERM."""
from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serve_helper import cli_server  # noqa: E402

import flowlearn as fl
from flowlearn.linalg import SparseVector
from flowlearn.modelstream import ModelStore
from flowlearn.serving.http import serve, to_jsonable

TIMEOUT = 10.0
ALL = "?include_inputs=true&include_intermediates=true"      # every column, as LocalPredictor returns it


# ---------------------------------------------------------------------------------------------
# helpers

def request(url, body=None, method=None, raw=False):
    """(status, headers, parsed JSON or text) of one HTTP request; HTTP errors are returned."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            status, headers, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, headers, payload = e.code, e.headers, e.read()
    text = payload.decode("utf-8")
    if raw or not headers.get("Content-Type", "").startswith("application/json"):
        return status, headers, text
    return status, headers, json.loads(text)


def post(server, body, query=""):
    return request(server.url + "/predict" + query, body, "POST")


def get(server, path):
    return request(server.url + path)


def as_json(value):
    """What a predicted value looks like after a JSON round trip."""
    return json.loads(json.dumps(to_jsonable(value), allow_nan=False))


def make_rows(n, seed):
    rng = np.random.default_rng(seed)
    return [{"a": float(a), "b": float(b)} for a, b in rng.normal(size=(n, 2)) * 3]


def fit_pipeline(seed=0, k=3):
    rows = make_rows(300, seed)
    t = fl.table({"a": [r["a"] for r in rows], "b": [r["b"] for r in rows]})
    return fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["a", "b"], input_sizes=[1, 1], output_col="raw"),
        fl.feature.StandardScaler(input_col="raw", output_col="features"),
        fl.clustering.KMeans(k=k, features_col="features", prediction_col="cluster", seed=seed),
    ]).fit(t)


# Prometheus text exposition format 0.0.4, line by line.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_VALUE = r"(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)"
HELP_RE = re.compile(rf"^# HELP ({_NAME}) [^\n]*$")
TYPE_RE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE_RE = re.compile(rf"^({_NAME})(\{{(?:{_LABEL})(?:,{_LABEL})*\}})? ({_VALUE})(?: -?\d+)?$")


def parse_metrics(text):
    """{(name, frozenset(labels)): value}, asserting every line is valid Prometheus text."""
    assert text.endswith("\n")
    samples, types = {}, {}
    for line in text.splitlines():
        if m := TYPE_RE.match(line):
            assert m.group(1) not in types, f"TYPE repeated: {line}"
            types[m.group(1)] = m.group(2)
            continue
        if HELP_RE.match(line):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample {name} before its # TYPE"
        pairs = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value.replace("Inf", "inf"))
    return samples, types


def metric(samples, name, **labels):
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def model():
    return fit_pipeline()


@pytest.fixture(scope="module")
def predictor(model):
    return fl.LocalPredictor(model)


@pytest.fixture(scope="module")
def server(model):
    with serve(model, port=0) as s:
        yield s


# ---------------------------------------------------------------------------------------------
# predictions

def test_single_rows_equal_local_predictor(server, predictor):
    rows = make_rows(20, seed=7) + [{"a": 1, "b": -2}, {"a": 0.0, "b": 0.0, "extra": "kept"}]
    for row in rows:
        status, headers, doc = post(server, row, ALL)
        assert status == 200 and headers["Content-Type"] == "application/json"
        expected = predictor.predict(row)
        assert doc == {"prediction": as_json(expected), "model_version": None}
        assert doc["prediction"]["features"] == expected["features"].tolist()    # dense vector -> list
        assert isinstance(doc["prediction"]["cluster"], int)
        # by default the output column only; the request's columns on request
        assert post(server, row)[2] == {"prediction": {"cluster": expected["cluster"]}, "model_version": None}
        doc = post(server, row, "?include_inputs=true")[2]
        assert doc["prediction"] == as_json({**row, "cluster": expected["cluster"]})
        doc = post(server, row, "?include_intermediates=true")[2]
        assert doc["prediction"] == as_json({k: expected[k] for k in ("raw", "features", "cluster")})


def test_batches_answer_the_output_columns_by_default(server, predictor):
    rows = make_rows(5, seed=12)
    expected = predictor.predict_batch(rows)
    status, _, doc = post(server, {"rows": rows})
    assert status == 200
    assert doc == {"predictions": [{"cluster": c} for c in expected.column("cluster").to_pylist()],
                   "model_version": None}
    doc = post(server, {"rows": rows}, "?include_inputs=1")[2]
    assert doc["predictions"] == as_json(expected.select(["a", "b", "cluster"]).to_pylist())


@pytest.mark.parametrize("query", ["?include_inputs=maybe", "?colour=red", "?include_inputs"])
def test_bad_query_parameters_are_400(server, query):
    status, _, doc = post(server, {"a": 1.0, "b": 2.0}, query)
    assert status == 400 and "include_inputs" in doc["error"], doc


def test_batches_equal_predict_batch(server, predictor):
    rows = make_rows(64, seed=11)
    status, _, doc = post(server, {"rows": rows}, ALL)
    assert status == 200 and doc["model_version"] is None
    assert doc["predictions"] == as_json(predictor.predict_batch(rows).to_pylist())
    # the batch path and the row path agree
    for row, pred in zip(rows, doc["predictions"]):
        one = predictor.predict(row)
        assert pred["cluster"] == one["cluster"]
        np.testing.assert_allclose(pred["features"], one["features"], rtol=1e-12)
    # a bare JSON array is a batch too; an empty batch is fine
    assert post(server, rows[:3], ALL)[2]["predictions"] == doc["predictions"][:3]
    assert post(server, {"rows": []})[2] == {"predictions": [], "model_version": None}


def test_sparse_vectors_and_skipped_rows():
    sv = [SparseVector(3, [0, 2], [1.0, -2.0]), SparseVector(3, [1], [4.0]), SparseVector(3, [], [])]
    train = fl.table([{"v": v, "x": float(i)} for i, v in enumerate(sv)])
    model = fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["v", "x"], input_sizes=[3, 1], output_col="f", handle_invalid="skip"),
        fl.feature.MaxAbsScaler(input_col="f", output_col="g"),
    ]).fit(train)
    p = fl.LocalPredictor(model)
    with serve(model, port=0) as s:
        row = {"v": {"size": 3, "indices": [0, 2], "values": [2.0, 1.0]}, "x": 1.0}
        status, _, doc = post(s, row, ALL)
        assert status == 200
        expected = p.predict({"v": SparseVector(3, [0, 2], [2.0, 1.0]), "x": 1.0})
        assert doc["prediction"] == as_json(expected)
        assert doc["prediction"]["g"] == {"size": 4, "indices": [0, 2, 3], "values": [2.0, 0.5, 0.5]}
        # handle_invalid="skip": a null drops the row -> null, in place within a batch
        assert post(s, {"v": None, "x": 1.0})[2] == {"prediction": None, "model_version": None}
        rows = [row, {"v": None, "x": 2.0}, {"v": {"size": 3, "indices": [1], "values": [8.0]}, "x": 2.0}]
        status, _, doc = post(s, {"rows": rows}, ALL)
        assert status == 200 and doc["predictions"][1] is None
        kept = p.predict_batch([rows[0] | {"v": SparseVector(3, [0, 2], [2.0, 1.0])},
                                rows[2] | {"v": SparseVector(3, [1], [8.0])}]).to_pylist()
        assert [doc["predictions"][0], doc["predictions"][2]] == as_json(kept)
        m, _ = parse_metrics(get(s, "/metrics")[2])
        assert metric(m, "flowlearn_skipped_rows_total") == 2 and metric(m, "flowlearn_predicted_rows_total") == 3


# ---------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("body, words", [
    ({"a": 1.0}, ["'b'", "missing"]),                                    # missing column
    ({"a": "three", "b": 1.0}, ["'a'", "str"]),                          # wrong type
    ({"a": None, "b": 1.0}, ["'a'", "null"]),                            # null
    ({"a": [1.0, 2.0], "b": 1.0}, ["'a'", "size 2"]),                    # vector where a number is expected
    ({"rows": [{"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, {"a": 1.0, "b": "x"}]}, ["rows[2]", "'b'"]),
    ({"rows": [{"a": 1.0, "b": 2.0}, {"b": 2.0}]}, ["rows[1]", "'a'"]),
    ({"rows": [{"a": 1.0, "b": 2.0}, 7]}, ["rows[1]", "JSON object"]),
    ({"rows": {"a": 1.0}}, ["'rows'", "array"]),
    ({"v": {"size": 2, "indices": [5], "values": [1.0]}}, ["'v'", "sparse vector"]),
    (b'{"a": 1.0, "b": ', ["invalid JSON"]),
    (b"\xff\xfe", ["invalid JSON"]),
    (b'"just a string"', ["JSON object"]),
])
def test_bad_input_is_400_naming_the_column(server, body, words):
    status, headers, doc = post(server, body)
    assert status == 400, doc
    assert headers["Content-Type"] == "application/json" and set(doc) == {"error"}
    for w in words:
        assert w in doc["error"], (w, doc["error"])
    assert "Traceback" not in doc["error"] and 'File "' not in doc["error"]


def test_unknown_path_and_wrong_method(server):
    status, _, doc = get(server, "/nope")
    assert status == 404 and "/nope" in doc["error"]
    status, headers, doc = get(server, "/predict")
    assert status == 405 and headers["Allow"] == "POST"
    status, _, _ = request(server.url + "/metrics", b"{}", "POST")
    assert status == 405
    assert post(server, {"a": 1.0, "b": 2.0})[0] == 200          # still serving
    # on one keep-alive connection, the body of a request answered without reading it is dropped by
    # the server's HTTP parser, never read as the next request
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    conn.request("POST", "/nope", body=b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
    resp = conn.getresponse()
    assert resp.status == 404
    resp.read()
    conn.request("POST", "/predict", body=b'{"a": 1.0, "b": 2.0}')
    resp = conn.getresponse()
    assert resp.status == 200 and "cluster" in json.loads(resp.read())["prediction"]
    conn.close()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    for _ in range(3):                                            # a 400 with its body read keeps it open
        conn.request("POST", "/predict", body=b'{"a": "x", "b": 2.0}')
        resp = conn.getresponse()
        assert resp.status == 400 and resp.getheader("Connection") != "close"
        resp.read()
    conn.close()


def test_body_limits(model):
    with serve(model, port=0, max_body_bytes=100) as s:
        status, _, doc = post(s, {"rows": make_rows(20, seed=1)})
        assert status == 413 and "max_body_bytes" in doc["error"]
        conn = http.client.HTTPConnection(s.host, s.port, timeout=TIMEOUT)
        conn.putrequest("POST", "/predict")
        conn.endheaders()                                         # no Content-Length
        resp = conn.getresponse()
        assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
        conn.close()


# ---------------------------------------------------------------------------------------------
# /model, /healthz, /metrics

def test_model_and_healthz(server):
    status, _, doc = get(server, "/model")
    assert status == 200
    assert doc["class"] == "flowlearn.builder.PipelineModel" and doc["model_version"] is None
    assert [s["class"] for s in doc["stages"]] == ["flowlearn.feature.VectorAssembler",
                                                    "flowlearn.feature.StandardScalerModel",
                                                    "flowlearn.clustering.KMeansModel"]
    assert doc["stages"][2]["params"]["k"] == 3 and doc["stages"][0]["params"]["input_cols"] == ["a", "b"]
    assert doc["stages"][2]["model_data"][0]["rows"] == 3
    # the columns a row needs, with their types, and what the model answers
    assert doc["inputs"] == [{"name": "a", "type": "number", "stage": "VectorAssembler"},
                             {"name": "b", "type": "number", "stage": "VectorAssembler"}]
    assert doc["outputs"] == ["cluster"]
    assert get(server, "/healthz")[:3:2] == (200, {"status": "ok", "model_version": None})


def test_metrics_are_prometheus_text_and_counters_increase(server):
    status, headers, text = get(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    before, types = parse_metrics(text)
    assert types["flowlearn_http_requests_total"] == "counter"
    assert types["flowlearn_http_request_duration_seconds"] == "histogram"
    assert types["flowlearn_prediction_errors_total"] == "counter"
    assert types["flowlearn_model_version"] == "gauge"
    for _ in range(3):
        assert post(server, {"a": 0.5, "b": 0.5})[0] == 200
    assert post(server, {"rows": make_rows(5, seed=3)})[0] == 200
    assert post(server, {"a": "bad", "b": 0.5})[0] == 400
    assert get(server, "/nope")[0] == 404
    after, _ = parse_metrics(get(server, "/metrics")[2])

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("flowlearn_http_requests_total", path="/predict", method="POST", code=200) == 4
    assert delta("flowlearn_http_requests_total", path="/predict", method="POST", code=400) == 1
    assert delta("flowlearn_http_requests_total", path="other", method="GET", code=404) == 1
    assert delta("flowlearn_http_requests_total", path="/metrics", method="GET", code=200) == 1
    assert delta("flowlearn_prediction_errors_total", reason="invalid_input") == 1
    assert delta("flowlearn_predicted_rows_total") == 8
    assert delta("flowlearn_http_request_duration_seconds_count", path="/predict") == 5
    assert delta("flowlearn_http_request_duration_seconds_sum", path="/predict") > 0
    # buckets are cumulative and end at +Inf == count
    les = sorted((float(dict(k[1])["le"].replace("Inf", "inf")), v) for k, v in after.items()
                 if k[0] == "flowlearn_http_request_duration_seconds_bucket" and dict(k[1])["path"] == "/predict")
    counts = [v for _, v in les]
    assert counts == sorted(counts) and les[-1][0] == float("inf")
    assert counts[-1] == metric(after, "flowlearn_http_request_duration_seconds_count", path="/predict")


def test_concurrent_requests(server, predictor):
    rows = make_rows(40, seed=5)
    expected = [as_json(predictor.predict(r)) for r in rows]
    expected_batch = as_json(predictor.predict_batch(rows[:10]).to_pylist())
    expected_clusters = [{"cluster": e["cluster"]} for e in expected]
    before, _ = parse_metrics(get(server, "/metrics")[2])

    def client(i):
        bad = 0
        for j in range(20):
            r = (i * 20 + j) % len(rows)
            if j % 5 == 4:
                status, _, doc = post(server, {"rows": rows[:10]}, ALL)
                bad += status != 200 or doc["predictions"] != expected_batch
            elif j % 2:
                status, _, doc = post(server, rows[r], ALL)
                bad += status != 200 or doc["prediction"] != expected[r]
            else:
                status, _, doc = post(server, rows[r])
                bad += status != 200 or doc["prediction"] != expected_clusters[r]
        return bad

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(client, range(8))) == 0
    after, _ = parse_metrics(get(server, "/metrics")[2])
    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("flowlearn_http_requests_total", path="/predict", method="POST", code=200) == 8 * 20
    assert delta("flowlearn_predicted_rows_total") == 8 * (16 + 4 * 10)


# ---------------------------------------------------------------------------------------------
# what can be served; lifecycle

def test_serve_saved_model_path(tmp_path, model, predictor):
    path = str(tmp_path / "model")
    model.save(path)
    row = {"a": 1.5, "b": -0.5}
    with serve(path, port=0) as s:
        assert post(s, row, ALL)[2]["prediction"] == as_json(predictor.predict(row))
        assert get(s, "/model")[2]["source"] == path


def test_serve_model_store_follows_new_versions(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    m1, m2 = fit_pipeline(seed=1, k=2), fit_pipeline(seed=2, k=4)
    store.publish(m1)
    row = {"a": 2.0, "b": 1.0}
    with serve(str(tmp_path / "store"), port=0, poll_interval=0.05) as s:
        status, _, doc = post(s, row, ALL)
        assert status == 200 and doc["model_version"] == 1
        assert doc["prediction"] == as_json(fl.LocalPredictor(m1).predict(row) | {"model_version": 1})
        assert get(s, "/model")[2]["model_version"] == 1
        store.publish(m2)
        deadline = time.monotonic() + TIMEOUT
        while get(s, "/healthz")[2]["model_version"] != 2:
            assert time.monotonic() < deadline, "version 2 was never served"
            time.sleep(0.02)
        status, _, doc = post(s, {"rows": [row, row]}, ALL)
        assert doc["model_version"] == 2
        p2 = fl.LocalPredictor(m2)
        p2.swap(m2, 2)
        assert doc["predictions"] == as_json(p2.predict_batch([row, row]).to_pylist())
        assert doc["predictions"][0] == as_json(p2.predict(row))
        summary = get(s, "/model")[2]
        assert summary["model_version"] == 2 and summary["stages"][2]["params"]["k"] == 4
        assert summary["follow"]["swaps"] >= 1
        m, _ = parse_metrics(get(s, "/metrics")[2])
        assert metric(m, "flowlearn_model_version") == 2 and metric(m, "flowlearn_model_swaps_total") >= 1
    store.publish(m1)                                   # closed: the follower stopped with the server
    time.sleep(0.3)
    assert s.predictor.model_version == 2


def test_serve_rejects_what_it_cannot_serve(tmp_path):
    with pytest.raises(ValueError, match="neither a saved model"):
        serve(str(tmp_path), port=0)
    ModelStore(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no valid model version"):
        serve(str(tmp_path / "empty"), port=0)
    with pytest.raises(TypeError):
        serve(fl.clustering.KMeans(), port=0)                      # an estimator, not a model


def test_close_is_clean_with_open_keep_alive_connections(model):
    s = serve(model, port=0)
    conns = []
    for _ in range(3):                                              # idle HTTP/1.1 keep-alive connections
        c = http.client.HTTPConnection(s.host, s.port, timeout=TIMEOUT)
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Connection") != "close"
        r.read()
        conns.append(c)
    thread = s._thread
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 3.0 and not thread.is_alive()
    s.close()                                                       # idempotent
    with pytest.raises(OSError):
        socket.create_connection((s.host, s.port), timeout=1).close()
    for c in conns:
        c.close()


# ---------------------------------------------------------------------------------------------
# CLI

def test_add_serve_parser():
    from flowlearn.cli.serve import add_serve_parser, run_serve

    parser = argparse.ArgumentParser(prog="flowlearn")
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "kafka://127.0.0.1:9092/models", "--host", "0.0.0.0", "--port", "0"])
    assert (args.target, args.host, args.port, args.poll_interval, args.func) == (
        "kafka://127.0.0.1:9092/models", "0.0.0.0", 0, 0.2, run_serve)


def test_cli_serves_until_sigterm(tmp_path, model, predictor):
    path = str(tmp_path / "model")
    model.save(path)
    with cli_server(path) as (proc, url):
        assert request(url + "/healthz")[0] == 200
        row = {"a": -1.0, "b": 2.0}
        assert request(url + "/predict" + ALL, row, "POST")[2]["prediction"] == as_json(predictor.predict(row))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err


def test_cli_reports_a_bad_target(tmp_path):
    from flowlearn.cli.serve import main

    assert main([str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------------------------------------
# hot swap under load; graceful shutdown

def test_no_answer_mixes_two_versions_while_versions_are_published(tmp_path):
    """Version v adds k = v to x: an answer is consistent when every prediction's y - x is the k of
    the model_version it reports, for single rows (coalesced into jobs) and batches alike."""
    import pyarrow as pa

    from flowlearn.testing.models import AddK

    store = ModelStore(str(tmp_path / "store"))
    store.publish(AddK().set_model_data(pa.table({"k": [1.0]})))
    published = {1}
    stop = threading.Event()
    with serve(str(tmp_path / "store"), port=0, poll_interval=0.02) as s:
        def publisher():
            while not stop.wait(0.05):
                v = store.latest().version + 1
                published.add(store.publish(AddK().set_model_data(pa.table({"k": [float(v)]}))))

        def client(i):
            bad, seen = [], set()
            for j in range(30):
                if j % 3 == 2:
                    rows = [{"x": float(i * 100 + j + r)} for r in range(20)]
                    status, _, doc = post(s, {"rows": rows}, "?include_inputs=true")
                    preds = doc["predictions"]
                else:
                    rows = [{"x": float(i * 100 + j)}]
                    status, _, doc = post(s, rows[0], "?include_inputs=true")
                    preds = [doc["prediction"]]
                v = doc["model_version"]
                seen.add(v)
                if status != 200 or any(p["model_version"] != v or p["y"] - p["x"] != v for p in preds):
                    bad.append(doc)
            return bad, seen

        pub = threading.Thread(target=publisher)
        pub.start()
        try:
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(client, range(8)))
        finally:
            stop.set()
            pub.join()
    assert [b for bad, _ in results for b in bad] == []
    seen = set().union(*(v for _, v in results))
    assert seen <= published and len(seen) > 1, (seen, published)


def test_close_lets_in_flight_requests_finish():
    """close() answers 503 on /healthz at once, lets a request already predicting finish and answer
    200, then stops."""
    import pyarrow as pa

    from test_http_hardening import GatedAddK

    GatedAddK.entered.clear()
    GatedAddK.gate.clear()
    s = serve(GatedAddK().set_model_data(pa.table({"k": [1.0]})), port=0)
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("doc", post(s, {"x": 1.0})))
    t.start()
    assert GatedAddK.entered.wait(TIMEOUT)
    closer = threading.Thread(target=s.close, kwargs={"grace": TIMEOUT})
    closer.start()
    deadline = time.monotonic() + TIMEOUT
    while not s.closing:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert closer.is_alive()                         # waiting for the request in flight
    GatedAddK.gate.set()
    t.join(TIMEOUT)
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    status, _, doc = answer["doc"]
    assert status == 200 and doc["prediction"] == {"y": 2.0}
    with pytest.raises(OSError):
        socket.create_connection((s.host, s.port), timeout=1).close()


def test_a_hashed_feature_vector_is_returned_only_when_asked_for():
    """FeatureHasher -> LogisticRegression: the answer holds the classifier's columns, not the
    262,144-dimensional hashed vector, unless include_intermediates asks for it."""
    rng = np.random.default_rng(3)
    cities = rng.choice(["paris", "lima", "oslo", "pune"], size=200)
    n = rng.normal(size=200)
    label = ((cities == "oslo") | (n > 1)).astype(float)
    model = fl.Pipeline([
        fl.feature.FeatureHasher(input_cols=["city", "n"], output_col="hashed"),
        fl.classification.LogisticRegression(features_col="hashed", max_iter=5, tol=1e-3),   # a short fit
    ]).fit(fl.table({"city": cities.tolist(), "n": n, "label": label}))
    row = {"city": "oslo", "n": 0.25}
    expected = fl.LocalPredictor(model).predict(row)
    with serve(model, port=0) as s:
        status, _, doc = post(s, row)
        assert status == 200 and set(doc["prediction"]) == {"prediction", "raw_prediction"}
        assert doc["prediction"]["prediction"] == expected["prediction"]
        assert get(s, "/model")[2]["inputs"] == [{"name": "city", "type": "category", "stage": "FeatureHasher"},
                                                  {"name": "n", "type": "category", "stage": "FeatureHasher"}]
        doc = post(s, row, "?include_intermediates=true")[2]
        assert doc["prediction"]["hashed"]["size"] == 262144
        assert doc["prediction"]["hashed"] == as_json(expected["hashed"])
        doc = post(s, {"rows": [row, row]})[2]
        assert [set(p) for p in doc["predictions"]] == [{"prediction", "raw_prediction"}] * 2


def test_model_io_of_a_mixed_type_pipeline():
    """StringIndexer -> OneHotEncoder, Imputer and a vector column assembled -> LogisticRegression:
    the row needs the raw columns (a category, numbers, a vector of size 2), the answer is the
    classifier's columns; a row of the wrong kind is refused before the stages run."""
    from flowlearn.serving.schema import model_io

    rng = np.random.default_rng(4)
    n = 120
    plan = rng.choice(["free", "pro", "team"], size=n).tolist()
    age = rng.normal(40, 10, size=n)
    vec = rng.normal(size=(n, 2))
    label = ((np.array(plan) == "pro") | (vec[:, 0] > 0.5)).astype(float)
    model = fl.Pipeline([
        fl.feature.StringIndexer(input_cols=["plan"], output_cols=["plan_idx"]),
        fl.feature.OneHotEncoder(input_cols=["plan_idx"], output_cols=["plan_vec"]),
        fl.feature.Imputer(input_cols=["age"], output_cols=["age_filled"]),
        fl.feature.VectorAssembler(input_cols=["plan_vec", "age_filled", "v"], input_sizes=[2, 1, 2],
                                   output_col="features"),
        fl.classification.LogisticRegression(),
    ]).fit(fl.table({"plan": plan, "age": age, "v": vec, "label": label}))
    io = model_io(model)
    assert [(c.name, c.kind, c.size) for c in io.inputs] == [("plan", "category", None), ("age", "number", None),
                                                              ("v", "vector", 2)]
    assert io.outputs == ["prediction", "raw_prediction"]
    assert set(io.intermediates) == {"plan_idx", "plan_vec", "age_filled", "features"}
    row = {"plan": "pro", "age": 31.0, "v": [0.1, 0.2]}
    expected = fl.LocalPredictor(model).predict(row)
    with serve(model, port=0) as s:
        status, _, doc = post(s, row)
        assert status == 200 and doc["prediction"]["prediction"] == expected["prediction"]
        status, _, doc = post(s, {**row, "v": [0.1, 0.2, 0.3]})
        assert status == 400 and "column 'v'" in doc["error"] and "size 2" in doc["error"], doc
        status, _, doc = post(s, {"rows": [row, {**row, "age": "old"}]})
        assert status == 400 and doc["error"].startswith("rows[1]: column 'age' holds 'old' of type str"), doc
