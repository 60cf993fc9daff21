"""Vectorized parsing of CSV and JSON-lines records with a schema, and bad-record location.

The fast path hands a whole buffer of records to pyarrow's CSV/JSON readers. When that fails,
the records are bisected (parse each half, recurse into the failing ones) until every bad
record is isolated with pyarrow's own message naming the column: O(bad * log n) parses, no
Python loop per row. The caller maps record indices to a file line or a Kafka offset. A record
is one line (a file line, a Kafka message): a CSV value that spans lines, an empty record or a
record holding several rows is bad, so a record never swallows the ones after it.

Example:
    >>> import pyarrow as pa
    >>> sch = pa.schema([("x", pa.float64()), ("s", pa.string())])
    >>> t, bad = parse_records([b"1.5,a", b"oops,b", b"2,c"], "csv", sch)
    >>> t.column("x").to_pylist(), [(i, col) for i, col, _ in bad]
    ([1.5, 2.0], [(1, 'x')])
"""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.csv as pacsv

from flowlearn.data.io import _csv_table, _finish_text_table, _json_column_at_fault, _parse_json
from flowlearn.data.schema import VECTOR_META
from flowlearn.linalg import is_vector_type

__all__ = ["parse_buffer", "parse_records", "DEAD_LETTER_SCHEMA", "dead_letter_table"]

DEAD_LETTER_SCHEMA = pa.schema([("source", pa.string()), ("location", pa.string()), ("column", pa.string()),
                                ("reason", pa.string()), ("record", pa.string())])


def dead_letter_table(source: str, locations: list[str], columns: list[str], reasons: list[str],
                      records: list[str]) -> pa.Table:
    n = len(locations)
    return pa.table([[source] * n, locations, columns, reasons, records], schema=DEAD_LETTER_SCHEMA)


def parse_buffer(buf: bytes, fmt: str, schema: pa.Schema | None, column_names: list[str] | None = None) -> pa.Table:
    """Parse a buffer of newline-separated records (no header) with ``schema``; raises
    ``ValueError`` with pyarrow's (or the vector codec's) message on a bad record. A CSV value
    may not span lines; vectors in JSON take any form of :mod:`flowlearn.data.vector_json`.
    Columns come out in the schema's types, as a stream's batches must: a ``vector`` column is
    dense here (declare ``sparse_vector`` for sparse data)."""
    if schema is not None:
        # a stream's column type is fixed: a `vector` column parses as dense, not "decided by the data"
        schema = pa.schema([pa.field(f.name, f.type) if f.metadata == VECTOR_META else f for f in schema])
    if fmt == "csv":
        names = column_names or (schema.names if schema is not None else None)
        types = None
        if schema is not None:
            types = {f.name: (pa.string() if is_vector_type(f.type) else f.type) for f in schema}
        t = _csv_table(buf, pacsv.ReadOptions(column_names=names, use_threads=False), pacsv.ConvertOptions(
            column_types=types, include_columns=schema.names if schema is not None else None,
            strings_can_be_null=False, quoted_strings_can_be_null=False))
        t = _finish_text_table(t, schema)
    else:
        t = _parse_json(buf, schema, use_threads=False)
    if schema is None or t.schema.equals(schema):
        return t
    return pa.Table.from_arrays([c.cast(f.type) if pa.types.is_list(f.type) else c for c, f in zip(t.columns, schema)],
                                schema=schema)


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
    """Parse ``records``; returns the table of good ones and ``[(index, column, reason)]`` for bad
    ones. Each record must give exactly one row: a blank one, or one holding several lines or
    JSON objects, is bad (a record never absorbs others, nor takes another's place)."""
    names = column_names or schema.names
    bad = [(i, "(record)", "the record is empty") for i, r in enumerate(records) if not r.strip()]
    # a non-blank record gives at least one row, so a group of them giving one row each is aligned
    at = [i for i, r in enumerate(records) if r.strip()] if bad else list(range(len(records)))
    good: list[pa.Table] = []

    def go(lo: int, hi: int) -> None:
        if lo >= hi:
            return
        try:
            t = parse_buffer(b"\n".join(records[i] for i in at[lo:hi]) + b"\n", fmt, schema, column_names)
            if t.num_rows != hi - lo:
                raise ValueError(f"the record holds {t.num_rows} rows, not one (several lines or JSON objects)")
            good.append(t)
            return
        except ValueError as e:
            if hi - lo == 1:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else "unparseable record"
                col = _column_of(msg, fmt, names)
                if col == "(record)" and fmt == "json":
                    plain = pa.schema([f for f in schema if not (is_vector_type(f.type) or f.metadata == VECTOR_META)])
                    col = _json_column_at_fault(records[at[lo]], plain) or col
                bad.append((at[lo], col, msg.removeprefix(f"column '{col}': ")))
                return
        mid = (lo + hi) // 2
        go(lo, mid)
        go(mid, hi)

    go(0, len(at))
    bad.sort()
    good = [g for g in good if g.num_rows]
    if not good:
        return schema.empty_table(), bad
    t = pa.concat_tables(good) if len(good) > 1 else good[0]
    return t, bad
