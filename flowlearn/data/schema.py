"""Alink-style schema strings: ``"age double, city string, label int, features vector"``."""
from __future__ import annotations

import json
import re
from typing import Sequence

import pyarrow as pa

from flowlearn.linalg import SPARSE_VECTOR, is_vector_type

__all__ = ["parse_schema", "schema_to_string", "VECTOR_META", "SIZE_KEY", "FEATURES_KEY", "LABELS_KEY", "column_size",
           "vector_field", "same_features_field", "feature_names", "is_numeric_type", "is_string_type"]

# Field metadata marking a column declared as generic ``vector``: its values may be dense
# or sparse, decided by the data.
VECTOR_META = {b"flowlearn.vector": b"any"}

# Field metadata of a vector column whose size its type does not carry (sparse or variable-length
# vectors): ``{SIZE_KEY: b"<n>"}``. Stages declare it in ``output_schema`` and write it on their outputs.
SIZE_KEY = b"flowlearn.size"
# Field metadata naming the features of a vector column: a JSON list of names (one per element), or a
# JSON object {"<index>": name} naming some elements only (the others are "<column>[<index>]").
FEATURES_KEY = b"flowlearn.features"
# Field metadata of an index column (StringIndexerModel's output): JSON {"column": <indexed column>,
# "labels": [label of index 0, ...]}.
LABELS_KEY = b"flowlearn.labels"


def is_numeric_type(t: pa.DataType) -> bool:
    """Integers, floats, decimals and booleans: the types a kernel reads as one double."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def is_string_type(t: pa.DataType) -> bool:
    t = t.value_type if pa.types.is_dictionary(t) else t
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def column_size(field: pa.Field) -> int | None:
    """How many features a column contributes to a vector: 1 for a numeric column, the size of a
    fixed-size list, the declared ``flowlearn.size`` of other vector columns; ``None`` when neither
    the type nor the metadata says (a variable list, a sparse column without a declared size).

    Example:
        >>> column_size(pa.field("v", pa.list_(pa.float64(), 3))), column_size(pa.field("x", pa.int32()))
        (3, 1)
        >>> column_size(vector_field("s", SPARSE_VECTOR, size=10)), column_size(pa.field("s", SPARSE_VECTOR))
        (10, None)
    """
    t = field.type
    if is_numeric_type(t):
        return 1
    if pa.types.is_fixed_size_list(t):
        return t.list_size
    meta = field.metadata or {}
    if is_vector_type(t) and SIZE_KEY in meta:
        return int(meta[SIZE_KEY])
    return None


def vector_field(name: str, type: pa.DataType, size: int | None = None,
                 names: Sequence[str] | dict[int, str] | None = None) -> pa.Field:
    """A vector field declaring its ``size`` (as metadata when the type does not carry it) and the
    names of its features (a list, one per element, or ``{index: name}`` for some elements)."""
    meta: dict[bytes, bytes] = {}
    if size is not None and not pa.types.is_fixed_size_list(type):
        meta[SIZE_KEY] = str(int(size)).encode()
    if names is not None:
        doc = list(names) if not isinstance(names, dict) else {str(int(k)): v for k, v in names.items()}
        meta[FEATURES_KEY] = json.dumps(doc).encode()
    return pa.field(name, type, metadata=meta or None)


def same_features_field(name: str, type: pa.DataType, size: int, source: pa.Field | None) -> pa.Field:
    """The field of a vector column holding, element by element, transformed values of the ``source``
    column's features (a scaler's output): its size, and the source's feature names."""
    raw = (source.metadata or {}).get(FEATURES_KEY) if source is not None else None
    meta = {} if raw is None or column_size(source) != size else {FEATURES_KEY: raw}
    if not pa.types.is_fixed_size_list(type):
        meta[SIZE_KEY] = str(int(size)).encode()
    return pa.field(name, type, metadata=meta or None)


def feature_names(field: pa.Field) -> list[str] | None:
    """The name of each feature a column contributes: the column's name for a numeric column, the
    declared names of a vector column (``"<column>[<i>]"`` for an element without one); ``None``
    when the column's size is unknown.

    Example:
        >>> feature_names(vector_field("city", SPARSE_VECTOR, size=2, names=["city=Oslo", "city=Rome"]))
        ['city=Oslo', 'city=Rome']
        >>> feature_names(pa.field("v", pa.list_(pa.float64(), 2)))
        ['v[0]', 'v[1]']
    """
    size = column_size(field)
    if size is None:
        return None
    if is_numeric_type(field.type):
        return [field.name]
    raw = (field.metadata or {}).get(FEATURES_KEY)
    doc = json.loads(raw) if raw else {}
    if isinstance(doc, list) and len(doc) == size:
        return [str(x) for x in doc]
    named = {int(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
    return [named.get(i, f"{field.name}[{i}]") for i in range(size)]


_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "varchar": pa.string(),
    "str": pa.string(),
    "double": pa.float64(),
    "float": pa.float32(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "long": pa.int64(),
    "bigint": pa.int64(),
    "short": pa.int16(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "byte": pa.int8(),
    "boolean": pa.bool_(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms"),
    "date": pa.date32(),
    "binary": pa.binary(),
}

_FIELD = re.compile(r"^\s*`?([A-Za-z_][\w.]*)`?\s+([A-Za-z_][A-Za-z_0-9]*)\s*(?:\(\s*(\d+)\s*\))?\s*$")


def parse_schema(schema: str | pa.Schema) -> pa.Schema:
    """Parse a schema string into a ``pyarrow.Schema``.

    Types: string, double, float, int, long/bigint, short, tinyint, boolean, timestamp, date,
    binary, ``vector`` (dense or sparse, decided by the data), ``dense_vector`` /
    ``vector(n)`` / ``dense_vector(n)`` and ``sparse_vector``.

    Example:
        >>> parse_schema("age double, city string").names
        ['age', 'city']
    """
    if isinstance(schema, pa.Schema):
        return schema
    if not isinstance(schema, str) or not schema.strip():
        raise ValueError(f"schema must be a non-empty string like 'age double, city string', got {schema!r}")
    fields = []
    for part in schema.split(","):
        m = _FIELD.match(part)
        if not m:
            raise ValueError(
                f"cannot parse schema field {part.strip()!r} in {schema!r}: expected '<name> <type>', "
                f"for example 'age double'"
            )
        name, tname, size = m.group(1), m.group(2).lower(), m.group(3)
        if size is not None and int(size) >= 2 ** 31:
            raise ValueError(f"schema field {part.strip()!r} in {schema!r}: the size must be below 2**31")
        if tname in ("vector", "dense_vector"):
            if size is not None:
                fields.append(pa.field(name, pa.list_(pa.float64(), int(size))))
            elif tname == "vector":
                fields.append(pa.field(name, pa.list_(pa.float64()), metadata=VECTOR_META))
            else:
                fields.append(pa.field(name, pa.list_(pa.float64())))
        elif tname == "sparse_vector":
            fields.append(pa.field(name, SPARSE_VECTOR))
        elif tname in _SCALARS:
            fields.append(pa.field(name, _SCALARS[tname]))
        else:
            raise ValueError(
                f"unknown type {tname!r} for field {name!r} in schema {schema!r}; known types: "
                f"{', '.join(sorted(_SCALARS))}, vector, dense_vector, sparse_vector"
            )
    names = [f.name for f in fields]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"schema {schema!r} names column(s) {sorted(dup)} more than once")
    return pa.schema(fields)


def schema_to_string(schema: pa.Schema) -> str:
    """The schema string of a ``pyarrow.Schema`` (inverse of :func:`parse_schema` for its types)."""
    inverse = {
        pa.string(): "string",
        pa.float64(): "double",
        pa.float32(): "float",
        pa.int32(): "int",
        pa.int64(): "long",
        pa.int16(): "short",
        pa.int8(): "tinyint",
        pa.bool_(): "boolean",
        pa.date32(): "date",
        pa.binary(): "binary",
    }
    parts = []
    for f in schema:
        t = f.type
        if t == SPARSE_VECTOR:
            parts.append(f"{f.name} sparse_vector")
        elif pa.types.is_fixed_size_list(t):
            parts.append(f"{f.name} vector({t.list_size})")
        elif pa.types.is_list(t):
            parts.append(f"{f.name} vector")
        elif pa.types.is_timestamp(t):
            parts.append(f"{f.name} timestamp")
        elif t in inverse:
            parts.append(f"{f.name} {inverse[t]}")
        else:
            parts.append(f"{f.name} {t}")
    return ", ".join(parts)
