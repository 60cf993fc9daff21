"""HTTP server hardening (issue 8, defects 6 and 7 and the server's part of 8): real HTTP over
loopback against servers on free ports.

Proves: numbers JSON can hold but int64 cannot (400 and 5000 digits, 2**63), deep nesting and
ambiguous framing (two Content-Lengths, Content-Length with Transfer-Encoding, lengths that are
not plain decimals) answer a 4xx JSON error naming what is wrong (row and column where they
apply), never a 500 (the framing errors the HTTP parser refuses are answered by the server's own
JSON error, not the parser's plain text); max_rows and max_body_bytes answer 413 one past the
limit and 200 at it, and a client that sends the whole refused body still reads the 413; at most
max_concurrent_predictions requests predict at once (the next waits, or gets 503 after
request_timeout); a missing column is a 400 alone and in a batch, also under
handle_invalid="skip"; batches encode non-finite values as single rows do; clients that
disconnect leave no traceback on stderr and no request in flight; the CLI passes its limits on."""
from __future__ import annotations

import json
import signal
import socket
import struct
import threading
import time

import pyarrow as pa
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serve_helper import cli_server  # noqa: E402
from test_http_serving import ALL, TIMEOUT, as_json, fit_pipeline, make_rows, post, request  # noqa: E402

import flowlearn as fl  # noqa: E402
from flowlearn.serving.http import MAX_NESTING, body_length, parse_body, serve  # noqa: E402
from flowlearn.serving.http import _HTTPError as HTTPError  # noqa: E402
from flowlearn.testing.models import AddK  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return fit_pipeline()


@pytest.fixture(scope="module")
def server(model):
    with serve(model, port=0) as s:
        yield s


def assert_error(status, doc, expected_status, *words):
    assert status == expected_status, doc
    assert set(doc) == {"error"}, doc
    for w in words:
        assert w in doc["error"], (w, doc["error"])
    assert "Traceback" not in doc["error"] and "internal error" not in doc["error"]


def raw_request(server, head: bytes, body: bytes = b"", read_timeout=TIMEOUT):
    """Send bytes as they are; (status, headers dict, parsed JSON body, whether the server closes
    the connection)."""
    with socket.create_connection((server.host, server.port), timeout=read_timeout) as c:
        c.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            assert chunk, data
            data += chunk
        header_text, rest = data.split(b"\r\n\r\n", 1)
        lines = header_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        n = int(headers["content-length"])
        while len(rest) < n:
            rest += c.recv(65536)
    return status, headers, json.loads(rest[:n]), headers.get("connection") == "close"


# ---------------------------------------------------------------------------------------------
# defect 6: bodies the server cannot use are 4xx, never 500

BIG = "1" * 400
HUGE = "7" * 5000            # beyond Python's int-str conversion limit (4300 digits)


@pytest.mark.parametrize("body, words", [
    (f'{{"a": {BIG}, "b": 1.0}}', ["column 'a'", "400 digits", "64-bit"]),
    (f'{{"a": {HUGE}, "b": 1.0}}', ["column 'a'", "5000 digits", "64-bit"]),
    (f'{{"a": -{HUGE}, "b": 1.0}}', ["column 'a'", "5000 digits"]),
    ('{"a": 9223372036854775808, "b": 1.0}', ["column 'a'", "9223372036854775808"]),          # 2**63
    (f'{{"rows": [{{"a": 1.0, "b": 2.0}}, {{"a": 1.0, "b": {BIG}}}]}}', ["rows[1]", "column 'b'"]),
    (f'[{{"a": 1.0, "b": 2.0, "v": [1.0, 2.0]}}, {{"a": 1.0, "b": 2.0, "v": [3.0, {HUGE}]}}]',
     ["rows[1]", "column 'v'", "5000 digits"]),                                             # inside a vector
])
def test_integers_outside_int64_are_400_naming_row_and_column(server, body, words):
    status, _, doc = post(server, body.encode())
    assert_error(status, doc, 400, *words)


def test_integers_at_the_int64_bounds_and_long_digit_runs_are_fine(server, predictor_for):
    for rows in ([{"a": 1.0, "b": 2.0, "id": 9223372036854775807}, {"a": 0, "b": 1, "id": -9223372036854775808}],
                 [{"a": 0.00012345678901234567, "b": 1.0}, {"a": 2.5, "b": 1.0}]):   # a 19-digit run in a float
        status, _, doc = post(server, {"rows": rows}, ALL)
        assert status == 200
        assert doc["predictions"] == as_json(predictor_for.predict_batch(rows).to_pylist())
        status, _, doc = post(server, rows[0], ALL)
        assert status == 200 and doc["prediction"] == as_json(predictor_for.predict(rows[0]))
    assert doc["prediction"]["a"] == 0.00012345678901234567


@pytest.fixture(scope="module")
def predictor_for(model):
    return fl.LocalPredictor(model)


@pytest.mark.parametrize("depth, batch", [(100_000, False), (100_000, True), (MAX_NESTING + 1, False),
                                          (MAX_NESTING + 1, True), (900, True)])
def test_deep_nesting_is_400(server, depth, batch):
    value = "[" * depth + "]" * depth
    row = f'{{"a": 1.0, "b": 2.0, "x": {value}}}'
    status, _, doc = post(server, (f'{{"rows": [{row}]}}' if batch else row).encode())
    assert_error(status, doc, 400, "nested")
    if depth < 990:                                    # parsed by json, refused by the server's own check
        assert ("rows[0]: column 'x'" if batch else "column 'x'") in doc["error"]
        assert str(MAX_NESTING) in doc["error"]


def test_nesting_at_the_limit_is_served(server):
    value = [[]]
    for _ in range(MAX_NESTING - 2):
        value = [value]
    status, _, doc = post(server, {"a": 1.0, "b": 2.0, "x": value}, "?include_inputs=true")
    assert status == 200 and doc["prediction"]["x"] == value


@pytest.mark.parametrize("headers, status, words", [
    ([("Content-Length", "2"), ("Content-Length", "17")], 400, ["conflicting Content-Length"]),
    ([("Content-Length", "2, 17")], 400, ["conflicting Content-Length"]),
    ([("Content-Length", "2"), ("Transfer-Encoding", "chunked")], 400, ["Transfer-Encoding", "Content-Length"]),
    ([("Content-Length", "2"), ("Transfer-Encoding", "identity")], 400, ["Transfer-Encoding"]),
    ([("Transfer-Encoding", "chunked")], 411, ["Content-Length"]),
    ([("Content-Length", "-1")], 400, ["invalid Content-Length '-1'"]),
    ([("Content-Length", "+2")], 400, ["invalid Content-Length '+2'"]),
    ([("Content-Length", "0x2")], 400, ["invalid Content-Length"]),
    ([("Content-Length", "1_0")], 400, ["invalid Content-Length"]),
    ([("Content-Length", "two")], 400, ["invalid Content-Length 'two'"]),
    ([("Content-Length", "")], 400, ["invalid Content-Length"]),
    ([("Content-Length", "9" * 30)], 413, ["max_body_bytes"]),
])
def test_ambiguous_or_invalid_framing_is_refused_and_closes(server, headers, status, words):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"
    got, _, doc, closed = raw_request(server, head, b"{}")
    assert_error(got, doc, status, *words)
    assert closed                      # the bytes after the headers are never read as a request


def test_identical_repeated_content_length_is_refused_too(server):
    """The HTTP parser (llhttp) refuses any repeated Content-Length, as RFC 9112 6.3 allows (the
    previous server accepted identical copies): a 400 naming the header, never a 500."""
    body = b'{"a": 1.0, "b": 2.0}'
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (len(body), len(body)))
    status, _, doc, closed = raw_request(server, head, body)
    assert_error(status, doc, 400, "Content-Length", "exactly one")
    assert closed
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    status, _, doc, _ = raw_request(server, head, body)
    assert status == 200 and doc["prediction"]["cluster"] in (0, 1, 2)


def test_body_length_is_independent_of_http_server():
    assert body_length(["12"], [], 100) == 12
    assert body_length(["12", " 12"], [], 100) == 12
    for cl, te, status in [([], [], 411), (["5", "6"], [], 400), (["5"], ["chunked"], 400), (["101"], [], 413)]:
        with pytest.raises(HTTPError) as e:
            body_length(cl, te, 100)
        assert e.value.status == status


# ---------------------------------------------------------------------------------------------
# defect 7: limits per request

def test_max_rows_413_one_past_the_limit_and_200_at_it(model):
    with serve(model, port=0, max_rows=5) as s:
        rows = make_rows(6, seed=2)
        status, _, doc = post(s, {"rows": rows[:5]})
        assert status == 200 and len(doc["predictions"]) == 5
        assert post(s, rows[:5])[0] == 200                                 # a bare array too
        for body in ({"rows": rows}, rows):
            status, _, doc = post(s, body)
            assert_error(status, doc, 413, "6 rows", "limit is 5 rows", "max_rows", "--max-rows")
        assert post(s, rows[0])[0] == 200                                  # one row is one row


def test_max_body_bytes_413_one_past_the_limit_and_200_at_it(model):
    body = json.dumps({"rows": make_rows(3, seed=4)}).encode()
    with serve(model, port=0, max_body_bytes=len(body)) as s:
        assert post(s, body)[0] == 200
        status, _, doc = post(s, body + b" ")
        assert_error(status, doc, 413, f"limit is {len(body)}", "max_body_bytes", "--max-body-bytes")


def test_a_client_sending_a_whole_refused_body_reads_the_413(model):
    """The server answers before reading the body; it then lets the client finish sending, so the
    client reads the answer instead of a reset connection."""
    big = json.dumps({"rows": make_rows(1, seed=0) * 200_000}).encode()     # ~5 MB
    with serve(model, port=0, max_body_bytes=1024) as s:
        status, _, doc = post(s, big)
        assert_error(status, doc, 413, "max_body_bytes")
        # with Expect: 100-continue the refusal comes instead of "100 Continue": no body is sent
        head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                % len(big))
        status, _, doc, closed = raw_request(s, head)
        assert_error(status, doc, 413, "max_body_bytes")
        assert closed
        assert post(s, {"a": 1.0, "b": 2.0})[0] == 200


def test_invalid_limits_are_refused(model):
    for name in ("max_rows", "max_body_bytes", "max_concurrent_predictions"):
        with pytest.raises(ValueError, match=name):
            serve(model, port=0, **{name: 0})


class GatedAddK(AddK):
    """AddK whose row kernel waits for ``gate`` (and sets ``entered``) before predicting."""

    entered = threading.Event()
    gate = threading.Event()

    def row_fn(self):
        f = super().row_fn()

        def gated(row):
            type(self).entered.set()
            assert type(self).gate.wait(TIMEOUT)
            f(row)

        return gated


@pytest.mark.parametrize("request_timeout, waiting_status", [(0.2, 503), (TIMEOUT, 200)])
def test_concurrent_predictions_are_capped(request_timeout, waiting_status):
    GatedAddK.entered.clear()
    GatedAddK.gate.clear()
    model = GatedAddK().set_model_data(pa.table({"k": [1.0]}))
    answers = {}
    with serve(model, port=0, max_concurrent_predictions=1, request_timeout=request_timeout) as s:
        first = threading.Thread(target=lambda: answers.setdefault("first", post(s, {"x": 1.0})))
        first.start()
        assert GatedAddK.entered.wait(TIMEOUT)              # the one slot is taken
        second = threading.Thread(target=lambda: answers.setdefault("second", post(s, {"x": 2.0})))
        second.start()
        if waiting_status == 503:
            second.join(TIMEOUT)
            status, headers, doc = answers["second"]
            assert_error(status, doc, 503, "busy", "max_concurrent_predictions")
            assert headers["Retry-After"] == "1"
        else:
            assert "second" not in answers                  # it waits for the slot
        GatedAddK.gate.set()
        first.join(TIMEOUT)
        second.join(TIMEOUT)
        assert answers["first"][0] == 200 and answers["first"][2]["prediction"]["y"] == 2.0
        if waiting_status == 200:
            assert answers["second"][0] == 200 and answers["second"][2]["prediction"]["y"] == 3.0
        assert post(s, {"x": 0.0})[0] == 200                # the slot was released


def test_parse_body_is_independent_of_http_server():
    body = parse_body(b'{"rows": [{"a": 1, "v": [1.0, 2.0]}, {"a": 2, "v": null}]}', max_rows=2)
    assert body.is_batch and body.num_rows == 2 and body.columns["a"] == [1, 2]
    assert body.batch_row(1) == {"a": 2, "v": None}
    assert parse_body(b'{"a": 1}').row == {"a": 1}
    with pytest.raises(HTTPError) as e:
        parse_body(b"[{}, {}, {}]", max_rows=2)
    assert e.value.status == 413


# ---------------------------------------------------------------------------------------------
# defect 8, the server's parts

@pytest.fixture(scope="module")
def skip_model():
    train = fl.table({"v": [[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], "x": [0.0, 1.0, 2.0]})
    return fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["v", "x"], input_sizes=[2, 1], output_col="f", handle_invalid="skip"),
        fl.feature.MaxAbsScaler(input_col="f", output_col="g"),
    ]).fit(train)


def test_missing_column_is_400_alone_and_in_a_batch_under_skip(skip_model):
    """A missing column is a schema error (400 naming it) for one row and in a batch alike;
    handle_invalid="skip" drops rows whose value is present but invalid (null: answered null)."""
    good = {"v": [1.0, 2.0], "x": 1.0}
    with serve(skip_model, port=0) as s:
        assert_error(*post(s, {"x": 1.0})[::2], 400, "'v'", "missing")
        status, _, doc = post(s, {"rows": [good, {"x": 1.0}]})
        assert_error(status, doc, 400, "rows[1]", "'v'", "missing")
        status, _, doc = post(s, {"rows": [{"x": 1.0}, good]})            # missing from the first row
        assert_error(status, doc, 400, "rows[1]", "'v'", "not in rows[0]")
        # present but null: dropped by the skip stage, null in both
        assert post(s, {"v": None, "x": 1.0})[2] == {"prediction": None, "model_version": None}
        status, _, doc = post(s, {"rows": [good, {"v": None, "x": 1.0}]})
        assert status == 200 and doc["predictions"][1] is None
        assert doc["predictions"][0] == post(s, good)[2]["prediction"]


def test_batches_encode_non_finite_values_as_single_rows_do(server):
    rows = [{"a": 1.0, "b": 2.0, "extra": float("nan"), "vec": [1.0, float("inf")]},
            {"a": 0.5, "b": -1.0, "extra": float("-inf"), "vec": [float("nan"), 2.0]},
            {"a": 0.5, "b": -1.0, "extra": None, "vec": [0.0, 2.0]}]
    body = json.dumps({"rows": rows}).encode()                    # NaN / Infinity literals
    status, _, doc = post(server, body, ALL)
    assert status == 200
    singles = [post(server, json.dumps(r).encode(), ALL)[2]["prediction"] for r in rows]
    assert doc["predictions"] == singles
    assert doc["predictions"][0]["extra"] == "NaN" and doc["predictions"][0]["vec"] == [1.0, "Infinity"]
    assert doc["predictions"][1]["extra"] == "-Infinity" and doc["predictions"][1]["vec"] == ["NaN", 2.0]
    assert doc["predictions"][2]["extra"] is None


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_disconnect_leave_no_traceback(model, capfd):
    with serve(model, port=0) as s:
        c = socket.create_connection((s.host, s.port))
        c.sendall(b"POST /pred")                                             # mid request line
        time.sleep(0.05)
        _reset(c)
        c = socket.create_connection((s.host, s.port))
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")             # idle keep-alive after an answer
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
        _reset(c)
        c = socket.create_connection((s.host, s.port))
        c.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a\"")   # mid body
        time.sleep(0.05)
        _reset(c)
        deadline = time.monotonic() + TIMEOUT
        while s.metrics.in_flight and time.monotonic() < deadline:       # the mid-body request ends
            time.sleep(0.01)
        assert s.metrics.in_flight == 0
        assert post(s, {"a": 1.0, "b": 2.0})[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


# ---------------------------------------------------------------------------------------------
# CLI

def test_cli_limits(tmp_path, model):
    path = str(tmp_path / "model")
    model.save(path)
    with cli_server(path, "--max-rows", "2", "--max-body-bytes", "1000", "--max-concurrent-predictions", "1") as (
            proc, base):
        url = base + "/predict"
        assert request(url, {"rows": make_rows(2, seed=1)}, "POST")[0] == 200
        status, _, doc = request(url, {"rows": make_rows(3, seed=1)}, "POST")
        assert_error(status, doc, 413, "limit is 2 rows")
        status, _, doc = request(url, {"rows": make_rows(2, seed=1), "pad": "x" * 1000}, "POST")
        assert_error(status, doc, 413, "limit is 1000")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err


def test_half_open_connections_cost_no_threads_and_time_out(model):
    """300 connections that stop halfway through their headers (the issue's measurement grew the
    http.server server to 311 threads): no thread per connection, the server keeps answering, and a
    connection silent for request_timeout is answered 408 and closed."""
    with serve(model, port=0, request_timeout=1.0) as s:
        assert post(s, {"a": 1.0, "b": 2.0})[0] == 200
        threads = threading.active_count()
        conns = []
        for _ in range(300):
            c = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
            c.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
            conns.append(c)
        assert post(s, {"a": 1.0, "b": 2.0})[0] == 200
        assert threading.active_count() <= threads + 2
        data = conns[0].recv(65536)                     # after request_timeout
        assert data.startswith(b"HTTP/1.1 408") and b"request_timeout" in data
        for c in conns:
            c.close()


def test_waiting_requests_are_coalesced_into_one_job():
    """With one prediction job at a time, requests that arrive while it runs are taken together by
    the next job (one hand-off), and each still gets its own answer."""
    from test_http_serving import metric, parse_metrics

    GatedAddK.entered.clear()
    GatedAddK.gate.clear()
    model = GatedAddK().set_model_data(pa.table({"k": [1.0]}))
    answers = {}
    with serve(model, port=0, max_concurrent_predictions=1) as s:
        threads = [threading.Thread(target=lambda i=i: answers.setdefault(i, post(s, {"x": float(i)})))
                   for i in range(4)]
        threads[0].start()
        assert GatedAddK.entered.wait(TIMEOUT)              # the one job is busy with request 0
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + TIMEOUT
        while len(s.work._pending) < 3:                     # requests 1-3 wait for the job
            assert time.monotonic() < deadline
            time.sleep(0.01)
        GatedAddK.gate.set()
        for t in threads:
            t.join(TIMEOUT)
        assert [answers[i][2]["prediction"] for i in range(4)] == [{"y": i + 1.0} for i in range(4)]
        m, _ = parse_metrics(request(s.url + "/metrics")[2])
        assert metric(m, "flowlearn_prediction_job_requests_total") == 4
        assert metric(m, "flowlearn_prediction_jobs_total") == 2
