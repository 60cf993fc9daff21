"""The Open Inference Protocol (KServe V2 REST) for the model server.

Endpoints (``{name}``: the server's ``model_name``; each model path also exists under
``/v2/models/{name}/versions/{version}``, where ``version`` must be the served one):

``GET /v2``                          server metadata: ``name``, ``version``, ``extensions``
``GET /v2/health/live``              200 ``{"live": true}``
``GET /v2/health/ready``             200 ``{"ready": true}``; 503 while the server shuts down
``GET /v2/models/{name}``            model metadata: ``name``, ``versions``, ``platform``, ``inputs``,
                                     ``outputs`` (tensor metadata: ``name``, ``datatype``, ``shape``)
``GET /v2/models/{name}/ready``      200 ``{"name": ..., "ready": true}``
``POST /v2/models/{name}/infer``     inference

An inference request holds one tensor per input column, all with the same first dimension
(the rows): ``{"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [0.5, 1.5]},
{"name": "v", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}``. A number
column is a tensor of shape ``[n]`` (or ``[n, 1]``), a dense vector column of size ``d`` one of
shape ``[n, d]`` with ``data`` in row-major order (flat or nested), a string column ``BYTES``.
The tensors become one Arrow table without a Python step per value, predicted with one
``predict_batch`` call (one model version). The answer has one tensor per output column
(``outputs`` in the request picks any column of the predicted table, inputs and intermediate
columns included), ``model_name``, ``model_version`` and the request's ``id``. Rows a
``handle_invalid="skip"`` stage dropped are left out of the output tensors and listed in
``parameters.skipped_rows``. Non-finite floats are written as ``"NaN"``, ``"Infinity"``,
``"-Infinity"``, as everywhere in the server's JSON. Errors are ``{"error": message}`` naming the
input (and row), with the same status codes as ``/predict``.

Example:
    >>> import json, urllib.request
    >>> import flowlearn as fl
    >>> from flowlearn.serving.http import serve
    >>> t = fl.table({"features": [[0.0], [1.0], [2.0], [3.0]], "label": [0.0, 0.0, 1.0, 1.0]})
    >>> model = fl.classification.LogisticRegression().fit(t)
    >>> with serve(model, port=0, model_name="lr") as server:
    ...     body = {"inputs": [{"name": "features", "shape": [2, 1], "datatype": "FP64", "data": [0.0, 3.0]}],
    ...             "outputs": [{"name": "prediction"}]}
    ...     req = urllib.request.Request(server.url + "/v2/models/lr/infer", data=json.dumps(body).encode())
    ...     json.load(urllib.request.urlopen(req))["outputs"]
    [{'name': 'prediction', 'datatype': 'FP64', 'shape': [2], 'data': [0.0, 1.0]}]
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from flowlearn._version import __version__
from flowlearn.linalg import SPARSE_VECTOR, dense_vector_type, is_sparse, to_csr, to_numpy
from flowlearn.serving.codec import HTTPError, dumps, load_json
from flowlearn.serving.schema import ModelIO

if TYPE_CHECKING:
    from flowlearn.serving.http import PredictionServer

__all__ = ["routes", "infer", "model_metadata"]

_ROW_INDEX = "__flowlearn_v2_row__"
_FLOATS = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
_INTS = {"INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
         "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64}
DATATYPES = sorted([*_FLOATS, *_INTS, "BOOL", "BYTES"])
_MAX_DENSE = 10_000_000          # values of a sparse output column written as a dense tensor


# ---------------------------------------------------------------------------------------------
# metadata

def _tensor_type(t: pa.DataType) -> tuple[str, list[int]]:
    """V2 datatype and per-row shape of an Arrow column type."""
    if pa.types.is_floating(t):
        return "FP64", []
    if pa.types.is_boolean(t):
        return "BOOL", []
    if pa.types.is_integer(t):
        return "INT64", []
    if pa.types.is_fixed_size_list(t):
        return "FP64", [t.list_size]
    if is_sparse(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        return "FP64", [-1]
    return "BYTES", []


def _empty_input(io: ModelIO) -> pa.Table:
    cols = {}
    for c in io.inputs:
        if c.kind == "number":
            cols[c.name] = pa.array([], pa.float64())
        elif c.kind == "vector":
            cols[c.name] = pa.array([], dense_vector_type(c.size) if c.size else pa.list_(pa.float64()))
        else:
            cols[c.name] = pa.array([], pa.string())
    return pa.table(cols)


def output_types(server: "PredictionServer", model: Any, io: ModelIO) -> dict[str, pa.DataType]:
    """The types of the predicted table's columns, from the model run on an empty table of the
    input schema ({} when the model refuses one)."""
    cache = getattr(server, "_v2_types", None)
    if cache is not None and cache[0] is model:
        return cache[1]
    try:
        out = model.transform(_empty_input(io))
        types = {f.name: f.type for f in out.schema}
    except Exception:  # noqa: BLE001 - metadata only; the outputs are then described without types
        types = {}
    server._v2_types = (model, types)
    return types


def _outputs(io: ModelIO, types: dict[str, pa.DataType]) -> list[str]:
    if io.outputs is not None:
        return io.outputs
    given = set(io.input_names)
    return [n for n in types if n not in given]


def model_metadata(server: "PredictionServer") -> dict:
    """``GET /v2/models/{name}``."""
    p = server.predictor
    model, version = p.model, p.model_version
    io = server.model_io(model)
    types = output_types(server, model, io)
    inputs = []
    for c in io.inputs:
        if c.kind == "number":
            inputs.append({"name": c.name, "datatype": "FP64", "shape": [-1]})
        elif c.kind == "vector":
            inputs.append({"name": c.name, "datatype": "FP64", "shape": [-1, c.size or -1]})
        else:
            inputs.append({"name": c.name, "datatype": "BYTES", "shape": [-1]})
    outputs = []
    for name in _outputs(io, types):
        dt, shape = _tensor_type(types[name]) if name in types else ("BYTES", [])
        outputs.append({"name": name, "datatype": dt, "shape": [-1, *shape]})
    return {"name": server.model_name, "versions": [] if version is None else [str(version)],
            "platform": "flowlearn", "inputs": inputs, "outputs": outputs}


# ---------------------------------------------------------------------------------------------
# inference

def _bad(msg: str, status: int = 400) -> HTTPError:
    return HTTPError(status, msg)


def _shape(t: dict, where: str) -> list[int]:
    shape = t.get("shape")
    if (not isinstance(shape, list) or not shape or not all(type(d) is int and 0 <= d < 2 ** 40 for d in shape)):
        raise _bad(f"{where}: 'shape' must be a non-empty array of non-negative integers, got {_short(shape)}")
    return shape


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 80 else s[:77] + "..."


def _numbers(data: Any, dtype: Any, where: str, count: int) -> np.ndarray:
    try:
        a = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise _bad(f"{where}: 'data' must hold numbers in a flat or row-major nested array "
                   f"({type(e).__name__}: {str(e)[:120]})") from None
    if a.size != count:
        raise _bad(f"{where}: 'data' has {a.size} values but 'shape' declares {count}")
    return a.reshape(-1)


def _input_column(t: Any, i: int, io: ModelIO, max_rows: int) -> tuple[str, int, pa.Array]:
    where = f"inputs[{i}]"
    if not isinstance(t, dict):
        raise _bad(f"{where} must be a JSON object with name, shape, datatype and data, got {type(t).__name__}")
    name = t.get("name")
    if not isinstance(name, str):
        raise _bad(f"{where}: 'name' must be a string, got {_short(name)}")
    where = f"input '{name}'"
    dtype = t.get("datatype")
    if dtype not in DATATYPES:
        raise _bad(f"{where}: 'datatype' {_short(dtype)} is not one of {DATATYPES}")
    shape = _shape(t, where)
    n = shape[0]
    if n > max_rows:
        raise _bad(f"{where}: {n} rows; the limit is {max_rows} rows per request (max_rows: raise it with "
                   f"`flowlearn serve --max-rows N` or serve(..., max_rows=N))", 413)
    count = math.prod(shape)
    data = t.get("data")
    if not isinstance(data, list):
        raise _bad(f"{where}: 'data' must be a JSON array, got {_short(data)}")
    col = next((c for c in io.inputs if c.name == name), None)
    width = math.prod(shape[1:]) if len(shape) > 1 else 1
    if dtype == "BYTES" or dtype == "BOOL":
        flat = data if all(not isinstance(x, list) for x in data) else _flatten(data, where)
        if len(flat) != count:
            raise _bad(f"{where}: 'data' has {len(flat)} values but 'shape' declares {count}")
        want = str if dtype == "BYTES" else bool
        if not set(map(type, flat)) <= {want}:
            bad = next(x for x in flat if type(x) is not want)
            raise _bad(f"{where}: datatype {dtype} holds {want.__name__} values, got {_short(bad)}")
        if width != 1:
            raise _bad(f"{where}: a {dtype} tensor must have shape [n] or [n, 1], got {shape}")
        if col is not None and col.kind in ("number", "vector"):
            raise _bad(f"{where}: datatype {dtype}, but {col.stage} reads {col.describe()} from this column; "
                       f"send FP64 (or another numeric datatype)")
        return name, n, pa.array(flat, pa.string() if dtype == "BYTES" else pa.bool_())
    a = _numbers(data, _FLOATS.get(dtype) or _INTS[dtype], where, count)
    if col is not None and col.kind == "vector":
        if len(shape) != 2:
            raise _bad(f"{where}: {col.stage} reads {col.describe()} from this column: send shape [n, size], "
                       f"got {shape}")
        if col.size is not None and shape[1] != col.size:
            raise _bad(f"{where}: shape {shape} has vectors of size {shape[1]}, but {col.stage} reads "
                       f"{col.describe()} from this column")
        return name, n, pa.FixedSizeListArray.from_arrays(pa.array(a.astype(np.float64, copy=False)), shape[1])
    if width != 1:
        if col is not None and col.kind in ("number", "category"):
            raise _bad(f"{where}: shape {shape} has {width} values per row, but {col.stage} reads "
                       f"{col.describe()} from this column: send shape [n] or [n, 1]")
        return name, n, pa.FixedSizeListArray.from_arrays(pa.array(a.astype(np.float64, copy=False)), width)
    if dtype in _FLOATS:
        a = a.astype(np.float64, copy=False)
    return name, n, pa.array(a)


def _flatten(data: list, where: str) -> list:
    out: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) > 32:
                    raise _bad(f"{where}: 'data' nests arrays more than 32 levels deep")
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _encode(col: pa.ChunkedArray, name: str) -> dict:
    from flowlearn.serving.codec import _floats

    t = col.type
    n = len(col)
    if pa.types.is_floating(t):
        if col.null_count:
            raise _bad(f"output '{name}' has nulls, which a V2 tensor cannot hold; ask for other outputs", 422)
        return {"name": name, "datatype": "FP64", "shape": [n], "data": _floats(col.to_numpy())}
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        if col.null_count:
            raise _bad(f"output '{name}' has nulls, which a V2 tensor cannot hold; ask for other outputs", 422)
        dt = "INT64" if pa.types.is_integer(t) else "BOOL" if pa.types.is_boolean(t) else "BYTES"
        return {"name": name, "datatype": dt, "shape": [n], "data": col.to_pylist()}
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
        m = to_numpy(col, name)
        return {"name": name, "datatype": "FP64", "shape": list(m.shape), "data": _floats(m.reshape(-1))}
    if is_sparse(t) or t == SPARSE_VECTOR:
        m = to_csr(col, name)
        if m.shape[0] * m.shape[1] > _MAX_DENSE:
            raise _bad(f"output '{name}' is a sparse vector column of size {m.shape[1]}: {m.shape[0]} rows would be "
                       f"{m.shape[0] * m.shape[1]} values as a dense tensor (the limit is {_MAX_DENSE}); ask for "
                       f"other outputs or fewer rows", 422)
        d = m.toarray()
        return {"name": name, "datatype": "FP64", "shape": list(d.shape), "data": _floats(d.reshape(-1))}
    raise _bad(f"output '{name}' of type {t} has no V2 tensor form; ask for other outputs", 422)


def infer(server: "PredictionServer", body: bytes) -> bytes:
    """``POST /v2/models/{name}/infer``: the request body in, the JSON answer out (on a worker thread)."""
    try:
        return _infer(server, body)
    except HTTPError as e:
        if 400 <= e.status < 500:
            server.metrics.count_error("invalid_input")
        raise
    except Exception:
        server.metrics.count_error("internal")
        raise


def _infer(server: "PredictionServer", body: bytes) -> bytes:
    doc, _ = load_json(body)
    del body
    if not isinstance(doc, dict):
        raise _bad(f"an inference request must be a JSON object with 'inputs', got {type(doc).__name__}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("an inference request needs 'inputs': a non-empty array of tensors {name, shape, datatype, data}")
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise _bad(f"'id' must be a string, got {_short(rid)}")
    wanted = doc.get("outputs")
    if wanted is not None:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                   for o in wanted):
            raise _bad("'outputs' must be an array of objects with a 'name'")
    model = server.predictor.model
    io = server.model_io(model)
    columns: dict[str, pa.Array] = {}
    rows = None
    for i, t in enumerate(inputs):
        name, n, arr = _input_column(t, i, io, server.max_rows)
        if name in columns:
            raise _bad(f"input '{name}' is given twice")
        if rows is None:
            rows = n
        elif n != rows:
            raise _bad(f"input '{name}' has {n} rows (shape[0]) but '{next(iter(columns))}' has {rows}; every input "
                       f"tensor holds one value (or vector) per row")
        columns[name] = arr
    missing = [c.name for c in io.inputs if c.name not in columns]
    if missing:
        raise _bad(f"input '{missing[0]}' is missing; the model reads inputs {io.input_names}")
    assert rows is not None
    columns[_ROW_INDEX] = pa.array(np.arange(rows, dtype=np.int64))
    t = pa.table(columns)
    p = server.predictor
    before = p.model_version
    try:
        out = p.predict_batch(t)
    except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException) as e:
        from flowlearn.serving.codec import _message

        raise _bad(_message(e)) from None
    version = before
    if p.model_version != before:
        if "model_version" in out.column_names and out.num_rows:
            version = out.column("model_version")[0].as_py()
        else:
            version = p.model_version
        io = server.model_io()
    skipped: list[int] = []
    if _ROW_INDEX in out.column_names:
        idx = out.column(_ROW_INDEX).to_numpy()
        if len(idx) != rows:
            skipped = np.setdiff1d(np.arange(rows), idx).tolist()
        out = out.drop_columns([_ROW_INDEX])
    elif out.num_rows != rows:
        raise _bad("a stage dropped rows and their index; send the rows through POST /predict to see which", 422)
    kept = out.num_rows
    server.metrics.count_rows(kept, rows - kept)
    if wanted is not None:
        names = [o["name"] for o in wanted]
        unknown = [nm for nm in names if nm not in out.column_names]
        if unknown:
            raise _bad(f"output '{unknown[0]}' is not a column of the prediction; the columns are "
                       f"{[c for c in out.column_names]}")
    else:
        outs = io.outputs if io.outputs is not None else [c for c in out.column_names if c not in columns]
        names = [nm for nm in outs if nm in out.column_names]
    answer: dict[str, Any] = {"model_name": server.model_name}
    if version is not None:
        answer["model_version"] = str(version)
    if rid is not None:
        answer["id"] = rid
    if skipped:
        answer["parameters"] = {"skipped_rows": skipped}
    answer["outputs"] = [_encode(out.column(nm), nm) for nm in names]
    return dumps(answer)


# ---------------------------------------------------------------------------------------------
# routes

def routes(server: "PredictionServer") -> list:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from flowlearn.serving.asgi import answer_errors, read_body, run_job

    def json_response(doc: Any, status: int = 200) -> Response:
        return Response(dumps(doc), status, media_type="application/json")

    def check_model(request: Request) -> None:
        name = request.path_params["name"]
        if name != server.model_name:
            raise HTTPError(404, f"no model named {name!r}; this server serves {server.model_name!r}")
        version = request.path_params.get("version")
        served = server.predictor.model_version
        if version is not None and version != ("" if served is None else str(served)):
            raise HTTPError(404, f"model {name!r} has no version {version!r}; it serves "
                                 f"{'no versioned model' if served is None else 'version ' + str(served)}")

    async def server_metadata(request: Request) -> Response:
        return json_response({"name": "flowlearn", "version": __version__, "extensions": []})

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        return json_response({"ready": not server.closing}, 503 if server.closing else 200)

    async def metadata(request: Request) -> Response:
        check_model(request)
        return json_response(await run_job(server, model_metadata, server))

    async def model_ready(request: Request) -> Response:
        check_model(request)
        return json_response({"name": server.model_name, "ready": not server.closing}, 503 if server.closing else 200)

    class InferEndpoint:
        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            await answer_errors(send, self._handle(scope, receive, send), "POST /v2 infer")

        async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
            check_model(Request(scope))
            try:
                body, _ = await read_body(scope, receive, server)
            except HTTPError as e:
                if 400 <= e.status < 500:
                    server.metrics.count_error("invalid_input")
                raise
            if body is None:
                return
            payload = await run_job(server, infer, server, body, size=len(body))
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})

    out = [Route("/v2", server_metadata, methods=["GET"]),
           Route("/v2/health/live", live, methods=["GET"]),
           Route("/v2/health/ready", ready, methods=["GET"])]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        out += [Route(prefix, metadata, methods=["GET"]),
                Route(prefix + "/ready", model_ready, methods=["GET"]),
                Route(prefix + "/infer", InferEndpoint(), methods=["POST"])]
    return out
