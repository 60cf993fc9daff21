"""Property-based bad input for the HTTP ``/predict`` body.

- ``parse_body`` directly (in the ISOLATED child: deep nesting and huge numbers must not crash
  the interpreter): a parsed body or an HTTP 4xx saying what is wrong.
- The whole route without sockets (``parse_body`` then ``predict_row`` / ``predict_rows`` of an
  unstarted ``PredictionServer``, in the child): 200 with one answer per row (``null`` only for
  a row a ``handle_invalid="skip"`` stage dropped) or a 4xx naming the column (and ``rows[i]``
  in a batch); any other exception would be a 500.
- A few bodies through a real server on loopback, run as a separate process, so a crash shows as
  its exit status: never a 5xx, the server stays up, and its stderr holds no traceback.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import example, given, settings, strategies as st

from strategies import ISOLATED, REPO_DIR, check, huge_ints

for _module in ("starlette", "uvicorn", "prometheus_client"):      # the serve extra
    pytest.importorskip(_module)

pytestmark = pytest.mark.fuzz

# ---------------------------------------------------------------------------------------------
# JSON text with what json.dumps will not write (NaN, Infinity, huge integers, deep nesting)


class Raw:
    """A JSON token written as is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r})"


def to_json(v: Any) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + to_json(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return json.dumps(v)


def _sparse(size, indices, values):
    return {"size": size, "indices": indices, "values": values}


bad_cells = st.one_of(
    st.sampled_from([None, "x", "", True, [], {}, [1.0, 2.0], [1.0, 2.0, 3.0, 4.0], [[1.0, 2.0, 3.0]],
                     [1.0, "a", 3.0], [None, 1.0, 2.0], {"a": 1}, float("nan"), float("inf"), -0.0, 1e308, 5e-324,
                     _sparse(3, [0], [1.0]), _sparse(3, [5], [1.0]), _sparse(3, [-1], [1.0]), _sparse(3, [1, 1],
                                                                                             [1.0, 2.0]),
                     _sparse(3, [2, 0], [1.0, 2.0]), _sparse(-1, [], []), _sparse(2 ** 40, [0], [1.0]),
                     _sparse(3, [0], []), _sparse("3", [0], [1.0]), {"size": 3, "indices": [0]}]),
    huge_ints, st.integers(), st.floats(), st.text(max_size=4),
    st.integers(20, 60).map(lambda d: Raw("[" * d + "1" + "]" * d)),
    st.integers(19, 400).map(lambda n: Raw("9" * n)),
)

# The served pipeline reads num_a (a number) and vec_in (a vector of size 3).
COLUMNS = {"num_a": st.floats(-10, 10), "vec_in": st.lists(st.floats(-10, 10), min_size=3, max_size=3)}


@st.composite
def rows_with_one_bad_cell(draw, n_min=1, n_max=4, bad_cell=True):
    """Good rows and (row index, column) of the one bad cell, or None."""
    n = draw(st.integers(n_min, n_max))
    rows = [{c: draw(s) for c, s in COLUMNS.items()} for _ in range(n)]
    if draw(st.booleans()):
        rows[0]["extra"] = draw(st.text(max_size=3))
        for r in rows[1:]:
            r["extra"] = "e"
    bad = None
    if bad_cell and draw(st.integers(0, 4)):
        i, col = draw(st.integers(0, n - 1)), draw(st.sampled_from(sorted(COLUMNS)))
        rows[i][col] = draw(bad_cells)
        bad = (i, col)
    return rows, bad


# ---------------------------------------------------------------------------------------------
# in the child: parse_body and the predict route of an unstarted server

_SERVERS: dict[str, Any] = {}


def _pipeline(handle_invalid: str):
    import numpy as np

    import flowlearn as fl

    rng = np.random.default_rng(0)
    t = fl.table({"num_a": rng.normal(size=40), "vec_in": rng.normal(size=(40, 3)),
                  "lab_in": (np.arange(40) % 2).astype(float)})
    return fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["num_a", "vec_in"], input_sizes=[1, 3], output_col="asm",
                                   handle_invalid=handle_invalid),
        fl.feature.StandardScaler(input_col="asm", output_col="scaled"),
        fl.classification.LogisticRegression(features_col="scaled", label_col="lab_in"),
    ]).fit(t)


def _server(handle_invalid: str):
    from flowlearn import LocalPredictor
    from flowlearn.serving.http import PredictionServer

    if handle_invalid not in _SERVERS:
        _SERVERS[handle_invalid] = PredictionServer(LocalPredictor(_pipeline(handle_invalid)), port=0, max_rows=50)
    return _SERVERS[handle_invalid]


def parse(body: bytes) -> str:
    from flowlearn.serving.http import parse_body

    b = parse_body(body, max_rows=50)
    return f"{'batch of ' + str(b.num_rows) if b.is_batch else 'one row'}"


def predict(body: bytes, handle_invalid: str = "error") -> Any:
    """What POST /predict answers with 200 (the JSON document), or the _HTTPError raised."""
    from flowlearn.serving.http import _dumps, parse_body

    server = _server(handle_invalid)
    parsed = parse_body(body, server.max_rows)
    doc = server.predict_rows(parsed) if parsed.is_batch else server.predict_row(parsed.row)
    return json.loads(_dumps(doc))


# ---------------------------------------------------------------------------------------------
# parse_body

junk_bodies = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"null", b"42", b'"x"', b"[", b"{", b"[1, 2]", b'{"rows": 5}', b'{"rows": [1]}',
                     b'{"rows": [{"a": 1}, {"b": 2}]}', b"\xef\xbb\xbf{}", b"{}", b"[]", b'{"rows": []}',
                     b'{"a": NaN}', b'{"a": 1, "a": 2}', b"\xff\xfe{", b'{"a": "\xff"}']),
    st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 200_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
    st.integers(1, 6000).map(lambda n: b'{"a": ' + b"7" * n + b"}"),
    st.integers(51, 80).map(lambda n: json.dumps({"rows": [{"a": 1}] * n}).encode()),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=3) | huge_ints,
                              lambda k: st.lists(k, max_size=3) | st.dictionaries(st.text(max_size=2), k, max_size=3),
                              max_leaves=10).map(lambda v: to_json(v).encode()),
)


@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"a": ' + b"7" * 5000 + b"}")
@given(junk_bodies)
def test_parse_body(body):
    o = ISOLATED(parse, body)
    check(o, [], http=True, context=body[:300])
    if o.kind != "ok":
        assert o.message, "an error without a message"


# ---------------------------------------------------------------------------------------------
# the route, without sockets

def _expect(o, rows, bad, batch, handle_invalid):
    """The contract of one /predict answer for rows with at most one bad cell."""
    ctx = (rows, bad)
    words = []
    if bad is not None:
        words.append((f"'{bad[1]}'", "'asm'"))      # the column, or the assembled one it went into
        if batch:
            words.append((f"rows[{bad[0]}]", f"row {bad[0]}"))
    kind = check(o, words, http=True, context=ctx)
    if bad is None:
        assert kind == "ok", f"good rows were refused: {o.describe()}\n{ctx}"
    if kind != "ok":
        return
    doc = o.value
    if batch:
        preds = doc["predictions"]
        assert len(preds) == len(rows), ("one answer per row", doc, ctx)
        for i, p in enumerate(preds):
            if p is None:   # only a skip stage drops a row, and only the bad one
                assert handle_invalid == "skip" and bad is not None and i == bad[0], (doc, ctx)
            else:
                assert p["prediction"] in (0.0, 1.0), (p, ctx)
    elif doc["prediction"] is None:
        assert handle_invalid == "skip" and bad is not None, (doc, ctx)
    else:
        assert doc["prediction"]["prediction"] in (0.0, 1.0), (doc, ctx)


@pytest.mark.parametrize("handle_invalid", ["error", "skip"])
@given(rows_with_one_bad_cell(1, 1))
def test_predict_one_row(handle_invalid, case):
    rows, bad = case
    o = ISOLATED(predict, to_json(rows[0]).encode(), handle_invalid)
    _expect(o, rows, bad, False, handle_invalid)


# Under handle_invalid="skip" a row whose vector is a number is skipped alone and in a batch alike.
_SKIP_EXAMPLE = ([{"num_a": 1.0, "vec_in": 5.0}, {"num_a": 1.0, "vec_in": [1.0, 2.0, 3.0]}], (0, "vec_in"))


@pytest.mark.parametrize("handle_invalid", ["error", "skip"])
@pytest.mark.parametrize("wrapped", [True, False], ids=["rows-object", "bare-array"])
@example(case=_SKIP_EXAMPLE)
@given(rows_with_one_bad_cell())
def test_predict_batch(handle_invalid, wrapped, case):
    rows, bad = case
    body = to_json({"rows": rows} if wrapped else rows).encode()
    o = ISOLATED(predict, body, handle_invalid)
    _expect(o, rows, bad, True, handle_invalid)


@given(rows_with_one_bad_cell(2, 4, bad_cell=False), st.data())
def test_predict_batch_rows_with_different_columns(case, data):
    rows, _ = case
    i = data.draw(st.integers(1, len(rows) - 1))
    col = data.draw(st.sampled_from(sorted(rows[i])))
    del rows[i][col]
    o = ISOLATED(predict, to_json({"rows": rows}).encode(), "skip")
    check(o, [f"rows[{i}]", f"'{col}'"], http=True, ok=False, context=rows)


@pytest.mark.parametrize("handle_invalid", ["error", "skip"])
@example(case=_SKIP_EXAMPLE)
@given(rows_with_one_bad_cell(2, 4))
def test_single_row_and_batch_agree(handle_invalid, case):
    """A row gets the same answer alone and inside a batch: refused in both (4xx) or, under
    handle_invalid="skip", null in both."""
    rows, bad = case
    alone = [ISOLATED(predict, to_json(r).encode(), handle_invalid) for r in rows]
    batch = ISOLATED(predict, to_json({"rows": rows}).encode(), handle_invalid)
    check(batch, [], http=True, context=rows)
    refused = [o.kind != "ok" for o in alone]
    assert (batch.kind != "ok") == any(refused), (refused, batch.describe(), rows)
    if batch.kind == "ok":
        assert [p is None for p in batch.value["predictions"]] == [o.value["prediction"] is None for o in alone], \
            (batch.value, [o.value for o in alone], rows)


# ---------------------------------------------------------------------------------------------
# a real server, in its own process

_SERVE = """
import sys
sys.path.insert(0, {tests!r})
from test_properties_http import _pipeline
from flowlearn.serving.http import serve
server = serve(_pipeline("error"), port=0, max_rows=50)
print(server.url, flush=True)
sys.stdin.read()
server.close()
"""


@pytest.fixture(scope="module")
def server_process():
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, "-c", _SERVE.format(tests=os.path.dirname(os.path.abspath(__file__)))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_DIR, env=env)
    line = proc.stdout.readline()
    m = re.match(r"http://127\.0\.0\.1:(\d+)", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    try:
        yield proc, int(m.group(1))
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _post(port: int, body: bytes) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@settings(max_examples=max(6, settings.default.max_examples))
@given(st.one_of(junk_bodies, rows_with_one_bad_cell().map(lambda c: to_json({"rows": c[0]}).encode())))
def test_real_server_never_answers_5xx(server_process, body):
    proc, port = server_process
    try:
        status, doc = _post(port, body)
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        proc.poll()
        raise AssertionError(f"the server process (exit status {proc.returncode}) did not answer: {e!r}; "
                             f"body {body[:200]!r}") from None
    assert status < 500, (status, doc, body[:300])
    assert proc.poll() is None, f"the server died with exit status {proc.returncode}"
    if status >= 400:
        assert isinstance(doc, dict) and doc.get("error"), doc


def test_real_server_logged_no_traceback(server_process):
    """Runs after the bodies above (same module fixture): the server's stderr holds no traceback."""
    proc, port = server_process
    assert _post(port, b'{"num_a": 1.0, "vec_in": [1.0, 2.0, 3.0]}')[0] == 200
    proc.stdin.close()
    proc.wait(timeout=30)
    err = proc.stderr.read()
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
