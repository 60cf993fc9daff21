"""Alink-style schema strings: ``"age double, city string, label int, features vector"``."""
from __future__ import annotations

import re

import pyarrow as pa

from flowlearn.linalg import SPARSE_VECTOR

__all__ = ["parse_schema", "schema_to_string", "VECTOR_META"]

# Field metadata marking a column declared as generic ``vector``: its values may be dense
# or sparse, decided by the data.
VECTOR_META = {b"flowlearn.vector": b"any"}

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
