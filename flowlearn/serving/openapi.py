"""The model server's OpenAPI 3.1 document (``GET /openapi.json``), built from the served model.

The ``Row`` schema lists the served model's input columns and their types
(:func:`flowlearn.serving.schema.row_json_schema`), so the document changes when a new model
version reads other columns. Every error answer is described (``Error``: ``{"error": message}``).

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.serving.http import PredictionServer
    >>> t = fl.table({"features": [[0.0], [1.0]], "label": [0.0, 1.0]})
    >>> server = PredictionServer(fl.LocalPredictor(fl.classification.LogisticRegression().fit(t)), port=0)
    >>> doc = openapi_document(server)
    >>> doc["components"]["schemas"]["Row"]["required"], sorted(doc["paths"])[:3]
    (['features'], ['/healthz', '/metrics', '/model'])
    >>> server.close()
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowlearn._version import __version__
from flowlearn.serving.schema import row_json_schema

if TYPE_CHECKING:
    from flowlearn.serving.http import PredictionServer

__all__ = ["openapi_document"]

_ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
          "properties": {"error": {"type": "string", "description": "What is wrong: the row, the column, the rule."}}}
_VERSION = {"type": ["integer", "null"], "description": "The model version that answered (null: not from a store)."}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    what = {400: "Invalid body or row (the message names the row and column)", 404: "No such model or version",
            408: "The body did not arrive within request_timeout", 411: "No Content-Length",
            413: "Body over max_body_bytes or more than max_rows rows",
            422: "The answer cannot be written as asked", 503: "Busy (Retry-After) or shutting down"}
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, what[c]) for c in codes}


_FLOAT = {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}


def _value_schema(t: Any) -> dict:
    """The JSON Schema of an answered value of Arrow type ``t`` (non-finite floats are strings)."""
    import pyarrow as pa

    from flowlearn.linalg import is_sparse
    from flowlearn.serving.schema import _SPARSE_SCHEMA

    if pa.types.is_floating(t):
        return _FLOAT
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return {"type": "string"}
    if pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type):
        return {"type": "array", "items": _FLOAT, "minItems": t.list_size, "maxItems": t.list_size}
    if is_sparse(t):
        return {**_SPARSE_SCHEMA, "properties": {**_SPARSE_SCHEMA["properties"],
                                                 "values": {"type": "array", "items": _FLOAT}}}
    return {}


def _prediction_schema(server: "PredictionServer", io: Any) -> dict:
    """An answered row: the output columns with their types (from the model run on an empty table
    of its input schema), others (asked for with include_inputs / include_intermediates) free."""
    from flowlearn.serving.oip import output_types

    types = output_types(server, server.predictor.model, io)
    outputs = io.outputs if io.outputs is not None else []
    props = {c: {**_value_schema(types[c]), "description": "an output column"} for c in outputs if c in types}
    props["model_version"] = {"type": "integer", "description": "the version that predicted the row"}
    return {"anyOf": [{"type": "object", "required": [c for c in outputs if c in types], "properties": props},
                      {"type": "null"}],
            "description": "The output columns (and more on request); null for a row a stage skipped."}


def openapi_document(server: "PredictionServer") -> dict:
    """The OpenAPI document of ``server`` for the model it serves now."""
    io = server.model_io()
    row = row_json_schema(io)
    prediction = _prediction_schema(server, io)
    batch_limit = {"maxItems": server.max_rows}
    flag = {"type": "boolean", "default": False}
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": f"The model's name: {server.model_name!r}."}
    version_param = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    tensor = {"type": "object", "required": ["name", "shape", "datatype", "data"],
              "properties": {"name": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                             "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64",
                                                                     "INT8", "INT16", "INT32", "INT64", "FP16",
                                                                     "FP32", "FP64", "BYTES"]},
                             "parameters": {"type": "object"},
                             "data": {"type": "array"}}}
    tensor_meta = {"type": "object", "required": ["name", "datatype", "shape"],
                   "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                  "shape": {"type": "array", "items": {"type": "integer"}}}}
    infer_request = {"type": "object", "required": ["inputs"],
                     "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                                    "outputs": {"type": "array", "items": {
                                        "type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
    infer_response = {"type": "object", "required": ["model_name", "outputs"],
                      "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                                     "id": {"type": "string"}, "parameters": {"type": "object"},
                                     "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}}}}
    model_metadata = {"type": "object", "required": ["name", "platform", "inputs", "outputs"],
                      "properties": {"name": {"type": "string"}, "platform": {"type": "string"},
                                     "versions": {"type": "array", "items": {"type": "string"}},
                                     "inputs": {"type": "array",
                                                "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                                     "outputs": {"type": "array",
                                                 "items": {"$ref": "#/components/schemas/TensorMetadata"}}}}

    def v2_model_paths(prefix: str, params: list) -> dict:
        return {
            prefix: {"get": {"summary": "Open Inference Protocol: model metadata", "parameters": params,
                             "responses": {"200": _json({"$ref": "#/components/schemas/ModelMetadata"}, "Metadata"),
                                           **_errors(404)}}},
            prefix + "/ready": {"get": {"summary": "Open Inference Protocol: model readiness", "parameters": params,
                                        "responses": {"200": _json({"type": "object", "required": ["name", "ready"],
                                                                    "properties": {"name": {"type": "string"},
                                                                                   "ready": {"type": "boolean"}}},
                                                                   "Ready"), **_errors(404),
                                                      "503": _json({"type": "object"}, "Shutting down")}}},
            prefix + "/infer": {"post": {
                "summary": "Open Inference Protocol: inference (one tensor per input column)", "parameters": params,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/InferenceRequest"}}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/InferenceResponse"}, "Output tensors"),
                              **_errors(400, 404, 408, 411, 413, 422, 503)}}},
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": f"flowlearn model server: {server.model_name}", "version": __version__,
                 "description": "Predictions from a flowlearn model (hot-swapped from its model store). "
                                "Rows are JSON objects of column values; see the Row schema for the columns "
                                "the served model reads."},
        "paths": {
            "/predict": {"post": {
                "summary": "Predict one row or a batch of rows (one model version per request)",
                "parameters": [
                    {"name": "include_inputs", "in": "query", "required": False, "schema": flag,
                     "description": "Also return the request's columns."},
                    {"name": "include_intermediates", "in": "query", "required": False, "schema": flag,
                     "description": "Also return the columns stages pass to later stages."}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"anyOf": [
                    {"$ref": "#/components/schemas/Row"},
                    {"type": "object", "required": ["rows"], "additionalProperties": False,
                     "properties": {"rows": {"type": "array", "items": {"$ref": "#/components/schemas/Row"},
                                             "description": "Every row has the columns of rows[0] (send null for "
                                                            "a missing value of a column the model does not read).",
                                             **batch_limit}}},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Row"}, **batch_limit}]}}}},
                "responses": {
                    "200": _json({"anyOf": [
                        {"type": "object", "required": ["prediction", "model_version"], "additionalProperties": False,
                         "properties": {"prediction": prediction, "model_version": _VERSION}},
                        {"type": "object", "required": ["predictions", "model_version"], "additionalProperties": False,
                         "properties": {"predictions": {"type": "array", "items": prediction},
                                        "model_version": _VERSION}}]}, "The predictions"),
                    **_errors(400, 408, 411, 413, 503)}}},
            "/model": {"get": {"summary": "The served model: stages, params, input columns and types, outputs",
                               "responses": {"200": _json({"type": "object", "required": ["class", "inputs"],
                                                           "properties": {
                                                               "class": {"type": "string"},
                                                               "inputs": {"type": "array", "items": {"type": "object"}},
                                                               "outputs": {"type": ["array", "null"]},
                                                               "model_version": _VERSION}}, "The model")}}},
            "/healthz": {"get": {"summary": "Liveness and the served version",
                                 "responses": {
                                     "200": _json({"$ref": "#/components/schemas/Health"}, "Serving"),
                                     "503": _json({"$ref": "#/components/schemas/Health"}, "Shutting down")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "Prometheus text format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
            "/v2": {"get": {"summary": "Open Inference Protocol: server metadata", "responses": {"200": _json(
                {"type": "object", "required": ["name", "version", "extensions"],
                 "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                "extensions": {"type": "array", "items": {"type": "string"}}}}, "Metadata")}}},
            "/v2/health/live": {"get": {"summary": "Open Inference Protocol: liveness", "responses": {"200": _json(
                {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}, "Live")}}},
            "/v2/health/ready": {"get": {"summary": "Open Inference Protocol: readiness", "responses": {
                "200": _json({"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
                             "Ready"),
                "503": _json({"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
                             "Shutting down")}}},
            **v2_model_paths("/v2/models/{name}", [name_param]),
            **v2_model_paths("/v2/models/{name}/versions/{version}", [name_param, version_param]),
        },
        "components": {"schemas": {
            "Row": row,
            "Error": _ERROR,
            "Health": {"type": "object", "required": ["status", "model_version"],
                       "properties": {"status": {"type": "string"}, "model_version": _VERSION}},
            "Tensor": tensor,
            "TensorMetadata": tensor_meta,
            "InferenceRequest": infer_request,
            "InferenceResponse": infer_response,
            "ModelMetadata": model_metadata,
        }},
    }
