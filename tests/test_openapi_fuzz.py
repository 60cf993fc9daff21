"""The server's OpenAPI document fuzzed with schemathesis against a live server on loopback.

For every operation of ``GET /openapi.json`` (``/predict`` with the served pipeline's ``Row``
schema, ``/model``, ``/healthz``, ``/metrics``, the Open Inference Protocol paths), schemathesis
generates requests from the document (valid and invalid ones; a bounded, derandomized number of
examples) and checks each answer: never a 5xx, a status code and content type the document
declares, a body that validates against the declared response schema, and schema-violating
requests refused with a 4xx. The served model is a VectorAssembler -> StandardScaler ->
LogisticRegression pipeline over two numbers and a vector of size 3.
"""
from __future__ import annotations

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

import flowlearn as fl  # noqa: E402
from flowlearn.serving.http import serve  # noqa: E402

pytestmark = pytest.mark.fuzz

CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance, st_checks.response_headers_conformance,
          st_checks.negative_data_rejection]


def _model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    t = fl.table({"a": x[:, 0], "b": x[:, 1], "v": x[:, 2:], "label": (x[:, 0] + x[:, 2] > 0).astype(float)})
    return fl.Pipeline([
        fl.feature.VectorAssembler(input_cols=["a", "b", "v"], input_sizes=[1, 1, 3], output_col="raw"),
        fl.feature.StandardScaler(input_col="raw", output_col="features"),
        fl.classification.LogisticRegression(),
    ]).fit(t)


@pytest.fixture(scope="module")
def live_server():
    with serve(_model(), port=0, model_name="fuzzed", max_rows=20, max_body_bytes=64 << 10) as s:
        yield s


@pytest.fixture(scope="module")
def api_schema(live_server):
    return schemathesis.openapi.from_url(live_server.url + "/openapi.json")


OPERATIONS = [("POST", "/predict"), ("GET", "/model"), ("GET", "/healthz"), ("GET", "/metrics"),
              ("GET", "/openapi.json"), ("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"),
              ("GET", "/v2/models/{name}"), ("GET", "/v2/models/{name}/ready"), ("POST", "/v2/models/{name}/infer"),
              ("GET", "/v2/models/{name}/versions/{version}"),
              ("POST", "/v2/models/{name}/versions/{version}/infer")]


# schema-violating requests exist only where the document constrains something: the request bodies
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + \
        [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"]


@pytest.mark.parametrize("method, path, mode", CASES)
def test_openapi_operation(api_schema, live_server, method, path, mode):
    """Requests generated from the document (schema-valid ones; schema-violating ones for bodies)."""
    operation = api_schema[path][method]
    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        calls.append(case.call_and_validate(checks=CHECKS).status_code)

    run()
    assert calls and all(s < 500 for s in calls)
    if mode == GenerationMode.POSITIVE and path == "/predict":
        assert calls.count(200) >= 5, calls          # the generated rows reach the model


def test_the_document_describes_the_served_rows(live_server):
    from test_http_serving import request

    status, _, doc = request(live_server.url + "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    row = doc["components"]["schemas"]["Row"]
    assert row["required"] == ["a", "b", "v"]
    assert row["properties"]["a"]["type"] == ["number"]            # handle_invalid="error": no null
    dense = row["properties"]["v"]["anyOf"][0]
    assert dense["minItems"] == dense["maxItems"] == 3 and dense["items"] == {"type": "number"}
    # the answered rows: the classifier's output columns with their types
    ok = doc["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"][0]
    answered = ok["properties"]["prediction"]["anyOf"][0]
    assert answered["required"] == ["prediction", "raw_prediction"]
    raw = answered["properties"]["raw_prediction"]
    assert raw["type"] == "array" and raw["minItems"] == raw["maxItems"] == 2
    assert answered["properties"]["prediction"]["anyOf"][0] == {"type": "number"}
    assert set(doc["paths"]) >= {"/predict", "/model", "/healthz", "/metrics", "/v2/health/live",
                                 "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
                                 "/v2/models/{name}/infer"}
