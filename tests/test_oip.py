"""The Open Inference Protocol (KServe V2 REST) endpoints of the model server, over loopback.

Requests are built by hand from the protocol's REST spec (health, server and model metadata,
model readiness, inference with tensors {name, shape, datatype, data}), as a V2 client such as
KServe's or Triton's sends them. Proves: health and metadata documents have the spec's fields;
the model metadata lists the input columns as tensors (a number column [-1], a vector column
[-1, size]) and the outputs with their datatypes; an inference answer's tensors equal
LocalPredictor.predict_batch on the same rows (flat and row-major nested data alike, any numeric
datatype), only the output columns unless `outputs` asks for others, with model_name,
model_version and the request id; versioned paths serve the served version only; rows a skip stage
drops are listed in parameters.skipped_rows; every malformed request is a 4xx naming the input."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from sklearn.datasets import load_breast_cancer  # noqa: E402
from test_http_serving import request  # noqa: E402

import flowlearn as fl  # noqa: E402
from flowlearn.modelstream import ModelStore  # noqa: E402
from flowlearn.serving.http import serve  # noqa: E402


def _data():
    x, y = load_breast_cancer(return_X_y=True)
    x = x[:, :4]
    return x, y.astype(float)


def fit(handle_invalid="error"):
    x, y = _data()
    t = fl.table({"radius": x[:, 0], "others": x[:, 1:4], "label": y})
    return fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["radius", "others"], input_sizes=[1, 3], output_col="assembled",
                                   handle_invalid=handle_invalid),
        fl.feature.StandardScaler(input_col="assembled", output_col="features"),
        fl.classification.LogisticRegression(),
    ]).fit(t)


@pytest.fixture(scope="module")
def model():
    return fit()


@pytest.fixture(scope="module")
def server(model):
    with serve(model, port=0, model_name="cancer", max_rows=100) as s:
        yield s


def infer(server, body, path="/v2/models/cancer/infer"):
    return request(server.url + path, body if isinstance(body, bytes) else json.dumps(body).encode(), "POST")


def tensors(x):
    """The request's input tensors for rows ``x`` (n x 4): radius as [n], the others as [n, 3]."""
    n = len(x)
    return [{"name": "radius", "shape": [n], "datatype": "FP64", "data": x[:, 0].tolist()},
            {"name": "others", "shape": [n, 3], "datatype": "FP64", "data": x[:, 1:].reshape(-1).tolist()}]


def test_health_and_server_metadata(server):
    assert request(server.url + "/v2/health/live")[::2] == (200, {"live": True})
    assert request(server.url + "/v2/health/ready")[::2] == (200, {"ready": True})
    status, _, doc = request(server.url + "/v2")
    assert status == 200 and doc["name"] == "flowlearn" and isinstance(doc["version"], str)
    assert doc["extensions"] == []
    assert request(server.url + "/v2/models/cancer/ready")[::2] == (200, {"name": "cancer", "ready": True})


def test_model_metadata_lists_the_input_and_output_tensors(server):
    status, _, doc = request(server.url + "/v2/models/cancer")
    assert status == 200
    assert doc["name"] == "cancer" and doc["platform"] == "flowlearn" and doc["versions"] == []
    assert doc["inputs"] == [{"name": "radius", "datatype": "FP64", "shape": [-1]},
                             {"name": "others", "datatype": "FP64", "shape": [-1, 3]}]
    assert doc["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]},
                              {"name": "raw_prediction", "datatype": "FP64", "shape": [-1, 2]}]


def test_inference_equals_predict_batch(server, model):
    x, _ = _data()
    x = x[:40]
    expected = fl.LocalPredictor(model).predict_batch({"radius": x[:, 0], "others": x[:, 1:]})
    status, _, doc = infer(server, {"id": "req-1", "inputs": tensors(x)})
    assert status == 200, doc
    assert doc["model_name"] == "cancer" and doc["id"] == "req-1" and "model_version" not in doc
    assert [o["name"] for o in doc["outputs"]] == ["prediction", "raw_prediction"]
    pred, raw = doc["outputs"]
    assert pred["datatype"] == "FP64" and pred["shape"] == [40]
    assert pred["data"] == expected.column("prediction").to_pylist()
    assert raw["shape"] == [40, 2]
    np.testing.assert_array_equal(np.array(raw["data"]).reshape(40, 2),
                                  np.array(expected.column("raw_prediction").to_pylist()))
    # the labels the model predicts are those of a logistic regression on these features: mostly right
    _, y = _data()
    assert np.mean(np.array(pred["data"]) == y[:40]) > 0.8

    # nested row-major data, [n, 1] for a number column and integer datatypes are the same rows
    xi = np.round(x)
    nested = [{"name": "radius", "shape": [40, 1], "datatype": "INT64", "data": [[int(v)] for v in xi[:, 0]]},
              {"name": "others", "shape": [40, 3], "datatype": "FP32", "data": xi[:, 1:].tolist()}]
    status, _, doc2 = infer(server, {"inputs": nested})
    expected2 = fl.LocalPredictor(model).predict_batch({"radius": xi[:, 0], "others": xi[:, 1:]})
    assert status == 200 and doc2["outputs"][0]["data"] == expected2.column("prediction").to_pylist()


def test_outputs_pick_any_column(server, model):
    x, _ = _data()
    x = x[:5]
    body = {"inputs": tensors(x), "outputs": [{"name": "features"}, {"name": "radius"}, {"name": "prediction"}]}
    status, _, doc = infer(server, body)
    assert status == 200
    expected = fl.LocalPredictor(model).predict_batch({"radius": x[:, 0], "others": x[:, 1:]})
    feats, radius, pred = doc["outputs"]
    assert feats["shape"] == [5, 4]
    np.testing.assert_allclose(np.array(feats["data"]).reshape(5, 4), np.array(expected.column("features").to_pylist()),
                               rtol=0, atol=0)
    assert radius == {"name": "radius", "datatype": "FP64", "shape": [5], "data": x[:, 0].tolist()}
    assert pred["data"] == expected.column("prediction").to_pylist()


def test_a_store_model_has_versions(tmp_path, model):
    store = ModelStore(str(tmp_path / "cancer"))
    store.publish(model)
    store.publish(model)
    with serve(str(tmp_path / "cancer"), port=0) as s:          # named after the store's directory
        assert s.model_name == "cancer"
        status, _, doc = request(s.url + "/v2/models/cancer")
        assert status == 200 and doc["versions"] == ["2"]
        x, _ = _data()
        status, _, doc = infer(s, {"inputs": tensors(x[:3])}, "/v2/models/cancer/versions/2/infer")
        assert status == 200 and doc["model_version"] == "2"
        status, _, doc = infer(s, {"inputs": tensors(x[:3])}, "/v2/models/cancer/versions/1/infer")
        assert status == 404 and "version '1'" in doc["error"] and "version 2" in doc["error"]
        assert request(s.url + "/v2/models/cancer/versions/2/ready")[0] == 200


def test_rows_a_skip_stage_drops_are_listed():
    with serve(fit("skip"), port=0, model_name="m") as s:
        x, _ = _data()
        x = x[:4].copy()
        x[2, 0] = np.nan                                          # VectorAssembler skips a NaN number
        status, _, doc = infer(s, {"inputs": tensors(x)}, "/v2/models/m/infer")
        assert status == 200, doc
        assert doc["parameters"] == {"skipped_rows": [2]} and doc["outputs"][0]["shape"] == [3]


def _with(x, **changes):
    body = {"inputs": tensors(x)}
    for i, change in changes.get("inputs", {}).items():
        body["inputs"][i].update(change)
    return body


@pytest.mark.parametrize("body, status, words", [
    (b'{"inputs": [', 400, ["invalid JSON"]),
    (b'[1, 2]', 400, ["JSON object", "inputs"]),
    ({"inputs": []}, 400, ["inputs"]),
    ({"inputs": [7]}, 400, ["inputs[0]"]),
    ("missing", 400, ["input 'others' is missing"]),
    ("shape-data", 400, ["input 'radius'", "3 values", "declares 4"]),
    ("rows", 400, ["input 'others'", "rows"]),
    ("bytes", 400, ["input 'radius'", "BYTES", "number"]),
    ("datatype", 400, ["input 'radius'", "FP128"]),
    ("size", 400, ["input 'others'", "size 2", "size 3"]),
    ("vector-shape", 400, ["input 'others'", "shape [n, size]"]),
    ("strings-in-numbers", 400, ["input 'radius'", "numbers"]),
    ("huge-int", 400, ["input 'radius'"]),
    ("negative-shape", 400, ["input 'radius'", "shape"]),
    ("too-many-rows", 413, ["max_rows"]),
    ("unknown-output", 400, ["output 'nope'", "columns"]),
    ("twice", 400, ["given twice"]),
])
def test_bad_inference_requests_are_4xx_naming_the_input(server, body, status, words):
    x, _ = _data()
    x = x[:4]
    cases = {
        "missing": {"inputs": tensors(x)[:1]},
        "shape-data": _with(x, inputs={0: {"data": x[:3, 0].tolist()}}),
        "rows": _with(x, inputs={1: {"shape": [2, 3], "data": x[:2, 1:].reshape(-1).tolist()}}),
        "bytes": _with(x, inputs={0: {"datatype": "BYTES", "data": ["a", "b", "c", "d"]}}),
        "datatype": _with(x, inputs={0: {"datatype": "FP128"}}),
        "size": _with(x, inputs={1: {"shape": [4, 2], "data": x[:, 1:3].reshape(-1).tolist()}}),
        "vector-shape": _with(x, inputs={1: {"shape": [12], "data": x[:, 1:].reshape(-1).tolist()}}),
        "strings-in-numbers": _with(x, inputs={0: {"data": [1.0, "x", 2.0, 3.0]}}),
        "huge-int": b'{"inputs": [{"name": "radius", "shape": [1], "datatype": "INT64", "data": [' + b"9" * 400
                    + b']}, {"name": "others", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}',
        "negative-shape": _with(x, inputs={0: {"shape": [-4]}}),
        "too-many-rows": {"inputs": tensors(np.repeat(x, 30, axis=0))},
        "unknown-output": {"inputs": tensors(x), "outputs": [{"name": "nope"}]},
        "twice": {"inputs": tensors(x) + tensors(x)[:1]},
    }
    got, headers, doc = infer(server, cases.get(body, body) if isinstance(body, str) else body)
    assert got == status, doc
    assert headers["Content-Type"] == "application/json" and set(doc) == {"error"}
    for w in words:
        assert w in doc["error"], (w, doc["error"])


def test_unknown_model_is_404(server):
    status, _, doc = request(server.url + "/v2/models/other")
    assert status == 404 and "'other'" in doc["error"] and "'cancer'" in doc["error"]
    x, _ = _data()
    assert infer(server, {"inputs": tensors(x[:2])}, "/v2/models/other/infer")[0] == 404
    assert request(server.url + "/v2/models/cancer/infer")[0] == 405          # GET on infer


def test_inference_is_counted_in_metrics(server):
    from test_http_serving import metric, parse_metrics

    before, _ = parse_metrics(request(server.url + "/metrics")[2])
    x, _ = _data()
    assert infer(server, {"inputs": tensors(x[:7])})[0] == 200
    after, _ = parse_metrics(request(server.url + "/metrics", None)[2])
    path = "/v2/models/{name}/infer"
    assert metric(after, "flowlearn_http_requests_total", path=path, method="POST", code=200) - \
        metric(before, "flowlearn_http_requests_total", path=path, method="POST", code=200) == 1
    assert metric(after, "flowlearn_predicted_rows_total") - metric(before, "flowlearn_predicted_rows_total") == 7
