"""Vectorized parsing of CSV and JSON-lines records with a schema, and bad-record location.

The fast path hands a whole buffer of records to pyarrow's CSV/JSON readers. When that fails,
the records are bisected (parse each half, recurse into the failing ones) until every bad
record is isolated with pyarrow's own message naming the column: O(bad * log n) parses, no
Python loop per row. The caller maps record indices to a file line or a Kafka offset.

Example:
    >>> import pyarrow as pa
    >>> sch = pa.schema([("x", pa.float64()), ("s", pa.string())])
    >>> t, bad = parse_records([b"1.5,a", b"oops,b", b"2,c"], "csv", sch)
    >>> t.column("x").to_pylist(), [(i, col) for i, col, _ in bad]
    ([1.5, 2.0], [(1, 'x')])
"""
from __future__ import annotations

import io
import re

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from flowlearn.data.schema import VECTOR_META
from flowlearn.data.table import table as to_table
from flowlearn.linalg import is_vector_type

__all__ = ["parse_buffer", "parse_records", "DEAD_LETTER_SCHEMA", "dead_letter_table"]

DEAD_LETTER_SCHEMA = pa.schema([("source", pa.string()), ("location", pa.string()), ("column", pa.string()),
                                ("reason", pa.string()), ("record", pa.string())])


def dead_letter_table(source: str, locations: list[str], columns: list[str], reasons: list[str],
                      records: list[str]) -> pa.Table:
    n = len(locations)
    return pa.table([[source] * n, locations, columns, reasons, records], schema=DEAD_LETTER_SCHEMA)


def _vector_names(sch: pa.Schema) -> set[str]:
    return {f.name for f in sch if is_vector_type(f.type) or f.metadata == VECTOR_META}


def parse_buffer(buf: bytes, fmt: str, schema: pa.Schema | None, column_names: list[str] | None = None) -> pa.Table:
    """Parse a buffer of newline-separated records (no header) with ``schema``; raises
    ``ValueError`` with pyarrow's message on a bad record."""
    try:
        if fmt == "csv":
            names = column_names or (schema.names if schema is not None else None)
            vec = _vector_names(schema) if schema is not None else set()
            types = {f.name: (pa.string() if f.name in vec else f.type) for f in schema} if schema is not None else None
            t = pacsv.read_csv(io.BytesIO(buf), read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
                               convert_options=pacsv.ConvertOptions(
                                   column_types=types, include_columns=schema.names if schema is not None else None,
                                   strings_can_be_null=False, quoted_strings_can_be_null=False))
            if vec:
                from flowlearn.data.io import _finish_text_table

                t = _finish_text_table(t, schema, "")
            return t
        explicit = None
        if schema is not None:
            vec = _vector_names(schema)
            explicit = pa.schema([pa.field(f.name, pa.list_(pa.float64())) if f.name in vec else f for f in schema])
        t = pajson.read_json(io.BytesIO(buf), read_options=pajson.ReadOptions(use_threads=False),
                             parse_options=pajson.ParseOptions(explicit_schema=explicit,
                                                               unexpected_field_behavior="ignore"))
        if schema is not None:
            t = t.select(schema.names)
            if not t.schema.equals(schema):
                t = to_table(t, schema)
        return t
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ValueError(str(e)) from None


_CSV_COL = re.compile(r"CSV column #(\d+)")
_JSON_COL = re.compile(r"Column\(/?([^)\s]+)\)|field '([^']+)'|column '([^']+)'")


def _column_of(msg: str, fmt: str, names: list[str]) -> str:
    if fmt == "csv":
        m = _CSV_COL.search(msg)
        if m and int(m.group(1)) < len(names):
            return names[int(m.group(1))]
        if "Expected" in msg and "columns" in msg:
            return "(row)"
    m = _JSON_COL.search(msg)
    if m:
        return next(g for g in m.groups() if g)
    for n in names:
        if f"'{n}'" in msg:
            return n
    return "(record)"


def parse_records(records: list[bytes], fmt: str, schema: pa.Schema,
                  column_names: list[str] | None = None) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    """Parse ``records``; returns the table of good ones and ``[(index, column, reason)]`` for bad ones."""
    names = column_names or schema.names
    bad: list[tuple[int, str, str]] = []
    good: list[pa.Table] = []

    def go(lo: int, hi: int) -> None:
        if lo >= hi:
            return
        try:
            good.append(parse_buffer(b"\n".join(records[lo:hi]) + b"\n", fmt, schema, column_names))
            return
        except ValueError as e:
            if hi - lo == 1:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else "unparseable record"
                bad.append((lo, _column_of(msg, fmt, names), msg))
                return
        mid = (lo + hi) // 2
        go(lo, mid)
        go(mid, hi)

    go(0, len(records))
    good = [g for g in good if g.num_rows]
    if not good:
        return schema.empty_table(), bad
    t = pa.concat_tables(good) if len(good) > 1 else good[0]
    return t, bad
