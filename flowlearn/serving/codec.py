"""JSON in and out for the model server: request bodies to rows, predicted rows to JSON.

Framework-free (bytes in, Python values or an ``HTTPError`` out), so the checks are tested
without sockets and shared by ``POST /predict`` and the Open Inference Protocol endpoints.

- :func:`parse_body`: a ``/predict`` body (one row, ``{"rows": [...]}`` or a bare array) into a
  :class:`PredictBody`; bad JSON, integers outside int64, nesting deeper than ``MAX_NESTING``,
  rows whose columns differ, more than ``max_rows`` rows: an ``HTTPError`` (400 / 413) whose
  message names the row and the column.
- :func:`body_length`: the body size a request declares, refusing framing that could be read
  two ways.
- :func:`to_jsonable`, :func:`table_rows`: predicted values and tables as JSON data (dense
  vectors as lists, sparse ones as ``{"size", "indices", "values"}``, non-finite floats as
  strings), columns encoded in bulk through NumPy / Arrow.

Example:
    >>> b = parse_body(b'{"rows": [{"a": 1, "v": [1.0, 2.0]}, {"a": 2, "v": null}]}')
    >>> b.num_rows, b.columns["a"], b.batch_row(0)["v"].tolist()
    (2, [1, 2], [1.0, 2.0])
    >>> try:
    ...     parse_body(b'{"a": 99999999999999999999}')
    ... except HTTPError as e:
    ...     print(e.status, e.message[:56])
    400 column 'a': the integer 99999999999999999999 (20 digits)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.data.vector_json import decode_vector
from flowlearn.linalg import SparseVector, to_numpy

__all__ = ["HTTPError", "PredictBody", "parse_body", "body_length", "to_jsonable", "table_rows", "dumps",
           "load_json", "MAX_NESTING", "DEFAULT_MAX_ROWS", "DEFAULT_MAX_BODY_BYTES"]

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 4 << 20
MAX_NESTING = 32          # arrays/objects inside one column value


class HTTPError(Exception):
    """An HTTP error answer: ``status``, ``message`` (the JSON body's ``error``), extra ``headers``;
    ``close``: close the connection after answering."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close


# ---------------------------------------------------------------------------------------------
# JSON in and out

def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")


def _floats(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a.tolist()
    return [_float(x) for x in a.tolist()]


def to_jsonable(v: Any) -> Any:
    """A value of a predicted row as JSON data: arrays become lists, ``SparseVector`` s
    ``{"size", "indices", "values"}``, NumPy scalars Python numbers, non-finite floats strings.

    Example:
        >>> import numpy as np
        >>> from flowlearn.linalg import SparseVector
        >>> to_jsonable({"v": np.array([1.0, np.inf]), "s": SparseVector(3, [2], [0.5]), "k": np.int64(2)})
        {'v': [1.0, 'Infinity'], 's': {'size': 3, 'indices': [2], 'values': [0.5]}, 'k': 2}
    """
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return _floats(v) if v.ndim == 1 else [to_jsonable(r) for r in v]
        return [to_jsonable(x) for x in v.tolist()]
    if isinstance(v, SparseVector):
        return {"size": int(v.size), "indices": np.asarray(v.indices).tolist(), "values": _floats(v.values)}
    if isinstance(v, np.generic):
        return to_jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return str(v)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _is_number(x: Any) -> bool:
    return (type(x) is float or type(x) is int)


def _decode_value(col: str, v: Any, where: str) -> Any:
    """JSON value -> row value: vectors (a numeric array, a ``{"size", "indices", "values"}``
    object) through the vector codec shared with the file and Kafka readers."""
    if (isinstance(v, list) and v and all(_is_number(x) for x in v)) or \
            (isinstance(v, dict) and set(v) == {"size", "indices", "values"}):
        if type(v) is dict:
            v = _integral_sparse(v)
        try:
            return decode_vector(v, col)
        except ValueError as e:
            raise HTTPError(400, f"{where}{e}") from None
    return v


def _integral(x: Any) -> Any:
    return int(x) if type(x) is float and x.is_integer() and abs(x) < 2 ** 53 else x


def _integral_sparse(v: dict) -> dict:
    """A sparse vector's ``size`` and ``indices`` written as integral floats (``3.0``: the same JSON
    number as ``3``, as JSON Schema's ``integer`` says) read as integers."""
    size, idx = v["size"], v["indices"]
    if type(size) is float:
        v = {**v, "size": _integral(size)}
    if type(idx) is list and not all(type(i) is int for i in idx):
        v = {**v, "indices": [_integral(i) for i in idx]}
    return v


def _nesting_exceeds(v: Any, limit: int) -> bool:
    """True when arrays/objects nest more than ``limit`` levels deep in ``v`` (iterative: no recursion)."""
    stack = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        if depth > limit:
            return True
        for y in (x.values() if isinstance(x, dict) else x):
            if isinstance(y, (list, dict)):
                stack.append((y, depth + 1))
    return False


class _OutOfRangeInt:
    """A JSON integer outside int64, kept as text until its row and column are known."""

    def __init__(self, text: str) -> None:
        self.text = text

    def describe(self) -> str:
        digits = self.text.lstrip("-")
        shown = self.text if len(digits) <= 30 else f"{self.text[:12]}...{self.text[-6:]}"
        return (f"the integer {shown} ({len(digits)} digits) is outside the 64-bit integer range "
                f"[-2**63, 2**63 - 1]; send a float (with a decimal point or an exponent) or a string")


def _find_out_of_range(v: Any) -> _OutOfRangeInt | None:
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, _OutOfRangeInt):
            return x
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return None


_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))   # digit -> "0", other -> " "
_INT64_DIGITS = 19


def load_json(body: bytes) -> tuple[Any, bool]:
    """``json.loads`` that answers 400 on whatever Python's json cannot or should not turn into
    values; ``(doc, saw_out_of_range_int)``. Integers outside int64 become ``_OutOfRangeInt``
    (also those beyond Python's int-to-str digit limit). The slower ``parse_int`` hook is used only
    when the body has a run of 19 or more digits (found with one C-speed scan)."""
    hits: list[_OutOfRangeInt] = []

    def checked_int(text: str) -> Any:
        if len(text.lstrip("-")) >= _INT64_DIGITS:
            if len(text.lstrip("-")) > _INT64_DIGITS or not -(1 << 63) <= int(text) < (1 << 63):
                hits.append(_OutOfRangeInt(text))
                return hits[-1]
        return int(text)

    long_digits = b"0" * _INT64_DIGITS in body.translate(_DIGITS_ONLY)
    try:
        doc = json.loads(body, parse_int=checked_int) if long_digits else json.loads(body)
    except UnicodeDecodeError as e:
        raise HTTPError(400, f"invalid JSON: the body is not UTF-8 ({e})") from None
    except json.JSONDecodeError as e:
        raise HTTPError(400, f"invalid JSON: {e}") from None
    except RecursionError:
        raise HTTPError(400, f"invalid JSON: arrays/objects nested too deeply (a column value may "
                              f"nest at most {MAX_NESTING} levels)") from None
    return doc, bool(hits)


_PLAIN = (float, int, bool, type(None))     # JSON values that need no decoding


def _decode_column_value(k: str, v: Any, where: str) -> Any:
    if type(v) in _PLAIN:
        return v
    d = _decode_value(k, v, where)
    if (type(d) is list or type(d) is dict) and _nesting_exceeds(d, MAX_NESTING):
        raise HTTPError(400, f"{where}column '{k}': arrays/objects nested more than {MAX_NESTING} levels deep")
    return d


def _decode_row(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise HTTPError(400, f"{where or 'the body '}must be a JSON object mapping column names to values, "
                              f"got {type(obj).__name__}")
    return {k: _decode_column_value(k, v, where) for k, v in obj.items()}


def _check_ints(rows: list, batch: bool) -> None:
    """400 naming the row and column of the first integer outside int64 in a row value (one
    anywhere else fails the body's structural checks)."""
    for i, r in enumerate(rows):
        if isinstance(r, dict):
            for k, v in r.items():
                hit = _find_out_of_range(v)
                if hit is not None:
                    raise HTTPError(400, f"{f'rows[{i}]: ' if batch else ''}column '{k}': {hit.describe()}")


def body_length(content_length: list[str], transfer_encoding: list[str], max_body_bytes: int) -> int:
    """The body size a request declares, from all its ``Content-Length`` and ``Transfer-Encoding``
    header values. Framing that could be read two ways is refused (400, as RFC 9112 asks): several
    different lengths, a length that is not a plain decimal, or both headers; a transfer coding
    alone (chunked) is 411; a length over ``max_body_bytes`` is 413."""
    if transfer_encoding:
        if content_length:
            raise HTTPError(400, "the request has both Transfer-Encoding and Content-Length; send only a "
                                  "Content-Length", close=True)
        raise HTTPError(411, "Transfer-Encoding (chunked) request bodies are not supported; send a "
                              "Content-Length", close=True)
    values = {v.strip() for h in content_length for v in h.split(",")}
    if not values:
        raise HTTPError(411, "a Content-Length header is required", close=True)
    if len(values) > 1:
        shown = sorted(v[:20] for v in values)
        raise HTTPError(400, f"conflicting Content-Length values {shown}", close=True)
    (v,) = values
    if not (v.isascii() and v.isdigit()):
        raise HTTPError(400, f"invalid Content-Length {v[:20]!r}: it must be a decimal number of bytes",
                         close=True)
    if len(v) > 18 or int(v) > max_body_bytes:
        shown = v if len(v) <= 18 else "more than 10**18"
        raise HTTPError(413, f"the body has {shown} bytes; the limit is {max_body_bytes} (max_body_bytes: "
                              f"raise it with `flowlearn serve --max-body-bytes N` or serve(..., max_body_bytes=N))",
                         close=True)
    return int(v)


@dataclass
class PredictBody:
    """A decoded ``/predict`` body: one ``row``, or a batch of ``num_rows`` rows held column-wise
    in ``columns`` (every row of a batch has the same columns)."""

    row: dict | None = None
    columns: dict[str, list] = field(default_factory=dict)
    num_rows: int = 1

    @property
    def is_batch(self) -> bool:
        return self.row is None

    def batch_row(self, i: int) -> dict:
        return {k: c[i] for k, c in self.columns.items()}


def parse_body(body: bytes, max_rows: int = DEFAULT_MAX_ROWS) -> PredictBody:
    """Parse a ``/predict`` body (one row, ``{"rows": [...]}`` or a bare array of rows).

    Raises an HTTP 400 error naming what is wrong (``rows[i]`` and the column where it applies)
    on bad JSON, integers outside int64, values nested more than ``MAX_NESTING`` levels, rows that
    are not objects or whose columns differ from the first row's; 413 on more than ``max_rows`` rows.
    """
    doc, out_of_range = load_json(body)
    if isinstance(doc, list):
        rows = doc
    elif isinstance(doc, dict) and len(doc) == 1 and "rows" in doc:
        rows = doc["rows"]
        if not isinstance(rows, list):
            raise HTTPError(400, f"'rows' must be a JSON array of row objects, got {type(rows).__name__}")
    elif isinstance(doc, dict):
        if out_of_range:
            _check_ints([doc], batch=False)
        return PredictBody(row=_decode_row(doc, ""))
    else:
        raise HTTPError(400, f"the body must be a JSON object (one row) or {{\"rows\": [...]}}, "
                              f"got {type(doc).__name__}")
    if len(rows) > max_rows:
        raise HTTPError(413, f"the batch has {len(rows)} rows; the limit is {max_rows} rows per request "
                              f"(max_rows: raise it with `flowlearn serve --max-rows N` or "
                              f"serve(..., max_rows=N), or send smaller batches)")
    if out_of_range:
        _check_ints(rows, batch=True)
    columns: dict[str, list] = {}
    names = None
    for i, r in enumerate(rows):
        where = f"rows[{i}]: "
        if not isinstance(r, dict):
            raise HTTPError(400, f"rows[{i}] must be a JSON object mapping column names to values, "
                                  f"got {type(r).__name__}")
        if names is None:
            names = r.keys()
            columns = {k: [] for k in names}
        elif r.keys() != names:
            missing, extra = [k for k in names if k not in r], [k for k in r if k not in names]
            what = (f"column {missing[0]!r} is missing" if missing else
                    f"column {extra[0]!r} is not in rows[0]")
            raise HTTPError(400, f"rows[{i}]: {what}; every row of a batch must have the same columns as "
                                  f"rows[0] {list(names)} (send null for a missing value)")
        for k, v in r.items():
            columns[k].append(_decode_column_value(k, v, where))
    return PredictBody(columns=columns, num_rows=len(rows))


def _json_column(col: pa.ChunkedArray, name: str) -> list:
    """A predicted column as JSON values, one per row: numeric and dense vector columns through
    NumPy / Arrow in bulk (non-finite floats as strings), other types value by value."""
    t = col.type
    if (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_string(t)
            or pa.types.is_large_string(t) or pa.types.is_null(t)):
        return col.to_pylist()
    if pa.types.is_floating(t):
        values = col.to_pylist()
        a = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        for i in np.flatnonzero(~np.isfinite(a)).tolist():
            if values[i] is not None:
                values[i] = _float(values[i])
        return values
    if pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type) and col.null_count == 0:
        m = to_numpy(col, name)
        return m.tolist() if np.isfinite(m).all() else [_floats(r) for r in m]
    return [to_jsonable(v) for v in col.to_pylist()]


def table_rows(t: pa.Table) -> list[dict]:
    """Rows of a predicted table as JSON data (dense vectors are lists, sparse ones dicts)."""
    names = t.column_names
    cols = [_json_column(t.column(n), n) for n in names]
    return [dict(zip(names, values)) for values in zip(*cols)] if names else [{} for _ in range(t.num_rows)]


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return f"input column {e.args[0]!r} is missing from the row"
    return str(e) or type(e).__name__


# the names the previous module used
_HTTPError = HTTPError
_dumps = dumps
