"""What a served model reads and writes: its input columns and their types, its output columns.

``model_io(model)`` walks the stages of a fitted model or pipeline model once (per served
version) and returns a :class:`ModelIO`: the columns a row must have (those a stage reads and no
earlier stage writes), each with a kind (``number``, ``vector`` with its size where the stage
declares it, ``category`` for a string / number / boolean, ``any``), and the output columns
(written by a stage and read by no later one). The HTTP server uses it to check request bodies
before predicting (a 400 naming the row and the column), to describe the rows in its OpenAPI
document and ``GET /model``, to answer with the output columns only, and for the Open Inference
Protocol's model metadata.

Columns a stage reads come from its ``input_col``, ``input_cols`` and ``features_col`` params,
columns it writes from ``output_col``, ``output_cols``, ``prediction_col``,
``raw_prediction_col`` and ``model_version_col``. The kind comes from the stage:
``VectorAssembler`` declares each input's size (1: a number), ``StringIndexerModel`` and
``FeatureHasher`` read categories, the numeric feature stages (``Bucketizer``, ``ImputerModel``, ``OneHotEncoderModel``,
``IndexToStringModel``) numbers, a ``features_col`` and a scaler's ``input_col`` a vector; any
other column is of kind ``any`` (left to the stage). A stage that declares none of these params
makes the model's outputs unknown (every added column is returned).

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0], "label": [0.0, 0.0, 1.0, 1.0]})
    >>> model = fl.Pipeline([
    ...     fl.feature.VectorAssembler(input_cols=["a", "b"], input_sizes=[1, 1], output_col="features"),
    ...     fl.classification.LogisticRegression()]).fit(t)
    >>> io = model_io(model)
    >>> [(c.name, c.kind) for c in io.inputs], io.outputs
    ([('a', 'number'), ('b', 'number')], ['prediction', 'raw_prediction'])
    >>> try:
    ...     check_row({"a": 1.0, "b": "x"}, io, "rows[3]: ")
    ... except RowError as e:
    ...     print(e)
    rows[3]: column 'b' holds 'x' of type str; VectorAssembler reads a number from it
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowlearn.linalg import SparseVector

__all__ = ["InputColumn", "ModelIO", "RowError", "model_io", "check_row", "check_columns", "row_json_schema"]

_READS = ("input_col", "input_cols", "features_col")
_WRITES = ("output_col", "output_cols", "prediction_col", "raw_prediction_col", "model_version_col")
_NUMBER_STAGES = ("Bucketizer", "ImputerModel", "OneHotEncoderModel", "IndexToStringModel")
_CATEGORY_STAGES = ("StringIndexerModel", "FeatureHasher")
_KIND_TEXT = {"number": "a number", "vector": "a vector", "category": "a string, number or boolean",
              "any": "any value"}


class RowError(ValueError):
    """A row that does not fit the model's input schema (the message names the row and column)."""


@dataclass(frozen=True)
class InputColumn:
    """One input column: ``kind`` is ``number``, ``vector``, ``category`` or ``any``; ``size`` the
    vector size where known; ``stage`` the stage that reads it; ``strict`` False when that stage
    handles invalid values itself (``handle_invalid`` ``skip`` / ``keep``): then only presence is
    checked."""

    name: str
    kind: str
    size: int | None = None
    stage: str = ""
    strict: bool = True

    def describe(self) -> str:
        if self.kind == "vector" and self.size is not None:
            return f"a vector of size {self.size}"
        return _KIND_TEXT[self.kind]

    def to_json(self) -> dict:
        doc: dict[str, Any] = {"name": self.name, "type": self.kind}
        if self.size is not None:
            doc["size"] = self.size
        doc["stage"] = self.stage
        return doc


@dataclass(frozen=True)
class ModelIO:
    inputs: list[InputColumn] = field(default_factory=list)
    outputs: list[str] | None = None          # None: not known (every added column is an output)
    intermediates: list[str] = field(default_factory=list)

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.inputs]


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else [x for x in v if isinstance(x, str)]


def _param(stage: Any, name: str) -> Any:
    try:
        return getattr(stage, name) if name in stage.get_params() else None
    except Exception:  # noqa: BLE001 - a stage without that param
        return None


def _leaf_stages(model: Any) -> list:
    subs = model._sub_stages() if hasattr(model, "_sub_stages") else []
    if not subs:
        return [model]
    out = []
    for s in subs:
        out.extend(_leaf_stages(s))
    return out


def _dim(stage: Any) -> int | None:
    try:
        d = getattr(stage, "_dim", None)
        return int(d) if isinstance(d, (int, np.integer)) and d > 0 else None
    except Exception:  # noqa: BLE001 - a model without data yet
        return None


def _kinds(stage: Any, reads: list[str]) -> list[tuple[str, int | None]]:
    sizes = _param(stage, "input_sizes")
    if sizes is not None and len(sizes) == len(reads):
        return [("number", None) if s == 1 else ("vector", int(s)) for s in sizes]
    bases = {b.__name__ for b in type(stage).__mro__}
    if bases & set(_CATEGORY_STAGES):
        return [("category", None)] * len(reads)
    if bases & set(_NUMBER_STAGES):
        return [("number", None)] * len(reads)
    features = _param(stage, "features_col")
    if features is not None and reads == [features]:
        return [("vector", _dim(stage))]
    if any("Scaler" in b for b in bases) and reads == [_param(stage, "input_col")]:
        return [("vector", _dim(stage))]
    return [("any", None)] * len(reads)


def model_io(model: Any) -> ModelIO:
    """The input columns (with kinds) and output columns of a fitted model or pipeline model."""
    written: list[str] = []
    read_later: set[str] = set()
    inputs: dict[str, InputColumn] = {}
    known = True
    for stage in _leaf_stages(model):
        reads = [c for p in _READS for c in _as_list(_param(stage, p))]
        writes = [c for p in _WRITES for c in _as_list(_param(stage, p))]
        if not reads and not writes:
            known = False
            continue
        strict = _param(stage, "handle_invalid") in (None, "error")
        for col, (kind, size) in zip(reads, _kinds(stage, reads)):
            read_later.add(col)
            if col not in written and col not in inputs:
                inputs[col] = InputColumn(col, kind, size, type(stage).__name__, strict)
        written.extend(c for c in writes if c not in written)
    outputs = [c for c in written if c not in read_later] if known else None
    inter = [c for c in written if c in read_later and c not in inputs]
    return ModelIO(list(inputs.values()), outputs, inter)


# ---------------------------------------------------------------------------------------------
# checking rows

def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, np.ndarray):
        return f"a vector of size {v.shape[0] if v.ndim else 1}"
    if isinstance(v, SparseVector):
        return f"a sparse vector of size {v.size}"
    return type(v).__name__


def _shown(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


_NUMBER_TYPES = {float, int, type(None)}
_VECTOR_TYPES = {np.ndarray, SparseVector, type(None)}
_CATEGORY_TYPES = {float, int, bool, str, type(None)}


def _bad_value(col: InputColumn, v: Any) -> str | None:
    """Why ``v`` does not fit ``col`` (None: it fits; nulls are left to the stage)."""
    t = type(v)
    if col.kind == "number":
        if t in _NUMBER_TYPES:
            return None
    elif col.kind == "vector":
        if t is np.ndarray or t is SparseVector:
            n = v.shape[0] if t is np.ndarray else v.size
            if col.size is None or n == col.size:
                return None
        elif v is None:
            return None
    elif col.kind == "category":
        if t in _CATEGORY_TYPES:
            return None
    else:
        return None
    what = _type_name(v) if t in (np.ndarray, SparseVector) else f"{_shown(v)} of type {_type_name(v)}"
    return f"column '{col.name}' holds {what}; {col.stage} reads {col.describe()} from it"


def _missing(col: InputColumn, io: ModelIO, where: str) -> RowError:
    return RowError(f"{where}column '{col.name}' is missing; the model reads columns {io.input_names} "
                    f"({col.stage})")


def check_row(row: dict, io: ModelIO, where: str = "") -> None:
    """Raise :class:`RowError` naming the column (prefixed by ``where``, e.g. ``rows[3]: ``) when
    ``row`` lacks an input column or holds a value of the wrong kind."""
    for col in io.inputs:
        if col.name not in row:
            raise _missing(col, io, where)
        if col.strict:
            why = _bad_value(col, row[col.name])
            if why is not None:
                raise RowError(f"{where}{why}")


def check_columns(columns: dict[str, list], num_rows: int, io: ModelIO) -> None:
    """:func:`check_row` for a batch held column-wise (every row has the same columns): one pass
    over each column's value types in C (``set(map(type, ...))``); the row is looked up only
    when a column holds a wrong value."""
    for col in io.inputs:
        values = columns.get(col.name)
        if values is None:
            raise _missing(col, io, "rows[0]: " if num_rows else "")
        if not col.strict or col.kind == "any":
            continue
        types = set(map(type, values))
        allowed = {"number": _NUMBER_TYPES, "vector": _VECTOR_TYPES, "category": _CATEGORY_TYPES}[col.kind]
        if types <= allowed and not (col.kind == "vector" and col.size is not None and
                                     _sizes_differ(values, col.size)):
            continue
        for i, v in enumerate(values):
            why = _bad_value(col, v)
            if why is not None:
                raise RowError(f"rows[{i}]: {why}")


def _sizes_differ(values: list, size: int) -> bool:
    return any(v is not None and (v.shape[0] if type(v) is np.ndarray else v.size) != size for v in values)


# ---------------------------------------------------------------------------------------------
# JSON Schema of a row (OpenAPI 3.1)

_SPARSE_SCHEMA = {
    "type": "object",
    "description": "A sparse vector: indices strictly increasing in [0, size).",
    "required": ["size", "indices", "values"],
    "additionalProperties": False,
    "properties": {"size": {"type": "integer", "minimum": 0, "maximum": 2 ** 31 - 1},
                   "indices": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2 ** 31 - 1}},
                   "values": {"type": "array", "items": {"type": "number"}}},
}


def _column_schema(col: InputColumn) -> dict:
    """A null is an invalid value its stage refuses (``handle_invalid="error"``) or handles."""
    null = [] if col.strict else [{"type": "null"}]
    if col.kind == "number":
        s: dict[str, Any] = {"type": ["number"] + (["null"] if null else [])}
    elif col.kind == "vector":
        dense: dict[str, Any] = {"type": "array", "items": {"type": "number"}}
        if col.size is not None:
            dense["minItems"] = dense["maxItems"] = col.size
        s = {"anyOf": [dense, _SPARSE_SCHEMA, *null]}
    elif col.kind == "category":
        s = {"type": ["string", "number", "boolean"] + (["null"] if null else [])}
    else:
        s = {}
    s["description"] = f"{col.describe()}, read by {col.stage}" + ("" if col.strict else
                                                                   " (invalid values are handled by the stage)")
    return s


def row_json_schema(io: ModelIO) -> dict:
    """The JSON Schema of one input row: the input columns (required), other columns allowed
    (returned with ``include_inputs=true``)."""
    return {"type": "object", "required": io.input_names,
            "properties": {c.name: _column_schema(c) for c in io.inputs},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}
