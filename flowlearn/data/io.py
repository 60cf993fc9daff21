"""Readers and writers for CSV, JSON lines and Parquet, with schema strings and vector columns.

Vector values in CSV use Alink's notation: dense ``"1.0 2.0 3.0"`` (or ``"[1.0, 2.0, 3.0]"``),
sparse ``"$size$index:value index:value"``. JSON lines hold dense vectors as arrays and sparse
ones as ``{"size": n, "indices": [...], "values": [...]}``, and accept Alink strings too
(one codec: :mod:`flowlearn.data.vector_json`).

A CSV record is one line: a quoted value that spans lines (an unterminated quote would
otherwise swallow the rows after it) is an error naming the line, unless the reader is told
``multiline=True``. Errors name the file and line (or row), the column and the rule.
Writes are atomic: a temporary file is written next to the target and renamed into place.
"""
from __future__ import annotations

import io
import json
import os
import re
import uuid
from typing import Any, Callable, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from flowlearn.data.schema import VECTOR_META, parse_schema
from flowlearn.data.table import table
from flowlearn.data.vector_json import check_vector_column, json_type, parse_vector, vector_column
from flowlearn.linalg import SparseVector, is_sparse, is_vector_type, to_csr, to_numpy

__all__ = [
    "read_csv",
    "read_json",
    "read_parquet",
    "write_csv",
    "write_json",
    "write_parquet",
    "parse_vector",
    "format_vector",
    "atomic_write",
]


def format_vector(v: Any) -> str:
    if isinstance(v, SparseVector):
        return f"${v.size}$" + " ".join(f"{i}:{x!r}" for i, x in zip(v.indices.tolist(), v.values.tolist()))
    return " ".join(repr(float(x)) for x in v)


def _vector_fields(sch: pa.Schema) -> list[pa.Field]:
    return [f for f in sch if is_vector_type(f.type) or f.metadata == VECTOR_META]


def _open(path: str, mode: str):
    return fsspec.open(path, mode).open()


class _ParseError(ValueError):
    """pyarrow refused the text, or a CSV value spans lines: no line is known yet (readers locate it)."""


def _line_starts(data: bytes) -> np.ndarray:
    """Offsets where the non-empty lines of ``data`` start; lines end at \\n, \\r\\n or \\r, as in pyarrow."""
    b = np.frombuffer(data, np.uint8)
    brk = (b == 10) | (b == 13)
    return np.flatnonzero(~brk & np.r_[True, brk[:-1]])


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, int(offset)) + 1


def _locate(data: bytes, parse: Callable[[bytes], Any], err: Exception, ok_lines: int = 0) -> tuple[int, str]:
    """The first line (1-based) at which ``parse`` of the lines so far fails, and why: a binary
    search over prefixes, O(log lines) parses (on the error path only)."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    if not data.endswith(b"\n"):
        ends = np.r_[ends, len(data)]
    lo, hi, msg = ok_lines, len(ends), str(err)  # the first lo lines parse; all hi lines fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            parse(data[:ends[mid - 1]])
            lo = mid
        except ValueError as e:
            hi, msg = mid, str(e)
    return hi, msg


def _line(data: bytes, n: int) -> bytes:
    """Line ``n`` (1-based) of ``data``."""
    lines = data.split(b"\n", n)
    return lines[n - 1] if len(lines) >= n else b""


_SPANS_LINES = ("read multi-line CSV values with multiline=True (fl.read_csv); in streams a CSV record is one line")


def _check_csv_lines(buf: bytes, rows: int, header_lines: int, delimiter: str) -> None:
    """Refuse a quoted CSV value that spans lines. pyarrow lets a quoted value run over line
    breaks, so one unterminated quote silently swallows the rows after it; without a quote
    character no value can span lines. Vectorized: a count of the non-empty lines, and a parse
    of the last line twice over (a quote left open there swallows the copy: one row, not two)."""
    if b'"' not in buf:
        return
    lines = buf.count(b"\n") + (not buf.endswith(b"\n"))  # counts blank lines too: exact count below if short
    if b"\r" in buf or rows + header_lines < lines:
        lines = len(_line_starts(buf))
    if rows + header_lines < lines:
        raise _ParseError(f"a quoted value spans lines (a quote not closed on its line, or a line break inside "
                          f"quotes); {_SPANS_LINES}")
    end = len(buf)
    while end and buf[end - 1] in b"\r\n":
        end -= 1
    if end:
        last = buf[max(buf.rfind(b"\n", 0, end), buf.rfind(b"\r", 0, end)) + 1:end]
        text = last + b"\n" + last + b"\n"
        try:
            twice = pacsv.read_csv(io.BytesIO(text), read_options=pacsv.ReadOptions(
                autogenerate_column_names=True, block_size=max(1 << 20, len(text) + 1)),
                parse_options=pacsv.ParseOptions(delimiter=delimiter)).num_rows
        except pa.ArrowInvalid:
            twice = 0
        if twice != 2:
            raise _ParseError(f"a quote on this line is not closed; {_SPANS_LINES}")


def _csv_table(buf: bytes, read_options: pacsv.ReadOptions, convert_options: pacsv.ConvertOptions | None = None,
               delimiter: str = ",", multiline: bool = False, header_lines: int = 0) -> pa.Table:
    """pyarrow's CSV parse of ``buf``; unless ``multiline``, no value may span lines."""
    if buf and not buf.endswith((b"\n", b"\r")):
        buf += b"\n"  # a quote left open on the last line then shows as a line break in its value
    parse_options = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=multiline)
    try:
        try:
            t = pacsv.read_csv(io.BytesIO(buf), read_options=read_options, convert_options=convert_options,
                               parse_options=parse_options)
        except pa.ArrowInvalid as e:
            if "straddl" not in str(e):
                raise
            # a line longer than pyarrow's block (1 MiB: a long vector): read the buffer as one block
            read_options = pacsv.ReadOptions(**{k: getattr(read_options, k) for k in (
                "use_threads", "skip_rows", "skip_rows_after_names", "column_names", "autogenerate_column_names",
                "encoding")}, block_size=len(buf) + 1)
            t = pacsv.read_csv(io.BytesIO(buf), read_options=read_options, convert_options=convert_options,
                               parse_options=parse_options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise _ParseError(str(e)) from None
    if not multiline:
        _check_csv_lines(buf, t.num_rows, header_lines, delimiter)
    return t


def read_csv(path: str, schema: str | pa.Schema | None = None, delimiter: str = ",", header: bool = True,
             multiline: bool = False, **opts: Any) -> pa.Table:
    """Read a CSV file into a table. With ``schema`` columns get those types; vector columns
    are parsed from Alink's text notation. A record is one line: a quoted value spanning lines
    is an error naming the line, unless ``multiline=True`` (quoted values may then hold line
    breaks; errors name the row instead of the line).

    Example:
        >>> t = read_csv("data.csv", schema="age double, city string, features vector")  # doctest: +SKIP
    """
    sch = parse_schema(schema) if schema is not None else None
    read_opts = pacsv.ReadOptions(autogenerate_column_names=not header,
                                  column_names=None if header or sch is None else sch.names)
    convert = None
    if sch is not None:
        col_types = {f.name: (pa.string() if f in _vector_fields(sch) else f.type) for f in sch}
        convert = pacsv.ConvertOptions(column_types=col_types, include_columns=sch.names, **opts)
    with _open(path, "rb") as f:
        data = f.read()
    header_lines = 1 if header else 0

    def parse(buf: bytes) -> pa.Table:
        return _csv_table(buf, read_opts, convert, delimiter, multiline, header_lines)

    try:
        t = parse(data)
    except _ParseError as e:
        if multiline:
            raise ValueError(f"read_csv({path!r}): {e}") from None
        line, msg = _locate(data, parse, e, header_lines)
        m = re.match(r"In CSV column #(\d+): ", msg)
        names = sch.names if sch is not None and not header else _csv_header(data, delimiter) if header else []
        if m and int(m.group(1)) < len(names):
            line, msg = f"{line}, column '{names[int(m.group(1))]}'", msg[m.end():]
        raise ValueError(f"read_csv({path!r}), line {line}: {msg}") from None

    def row_line(i: int) -> str:
        if multiline:
            return f"read_csv({path!r}), row {i}"
        return f"read_csv({path!r}), line {_line_of(data, _line_starts(data)[i + header_lines])}"

    return _finish_text_table(t, sch, row_line)


def _csv_header(data: bytes, delimiter: str) -> list[str]:
    """The column names in the header line of ``data``."""
    try:
        return pacsv.read_csv(io.BytesIO(data.split(b"\n", 1)[0] + b"\n"),
                              parse_options=pacsv.ParseOptions(delimiter=delimiter)).column_names
    except pa.ArrowInvalid:
        return []


def _finish_text_table(t: pa.Table, sch: pa.Schema | None, where: Callable[[int], str] | None = None) -> pa.Table:
    """Decode the vector columns (read as text) of a parsed table and apply ``sch``."""
    if sch is None:
        return t
    missing = [n for n in sch.names if n not in t.column_names]
    if missing:
        raise ValueError(f"columns {missing} named in the schema are missing; the data has {t.column_names}")
    vec_names = {f.name for f in _vector_fields(sch)}
    cols = {f.name: vector_column(t.column(f.name).to_pylist(), f, where) if f.name in vec_names else t.column(f.name)
            for f in sch}
    return table(cols, sch)


_MAX_JSON_DEPTH = 1000  # pyarrow's JSON type inference overflows the stack (SIGSEGV) at some 10^4 levels


def _too_deep(buf: bytes) -> bool:
    """Whether a line of ``buf`` nests JSON arrays/objects deeper than ``_MAX_JSON_DEPTH`` (brackets
    inside strings count too). Only lines longer than the limit can, and they are few."""
    if buf.count(b"[") + buf.count(b"{") <= _MAX_JSON_DEPTH:
        return False
    nl = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
    starts, ends = np.r_[0, nl + 1], np.r_[nl, len(buf)]
    for i in np.flatnonzero(ends - starts > _MAX_JSON_DEPTH):
        line = np.frombuffer(buf, np.uint8, count=int(ends[i] - starts[i]), offset=int(starts[i]))
        step = (line == 91).astype(np.int32) + (line == 123) - (line == 93) - (line == 125)
        if np.cumsum(step).max() > _MAX_JSON_DEPTH:
            return True
    return False


def _top_level_null(buf: bytes) -> bool:
    """Whether ``buf`` may hold a ``null`` that is not inside an object: a line ``null`` (or one
    after an object on the same line). pyarrow's JSON reader dies with SIGSEGV on it as the first
    value of a block, and reads it elsewhere as a row of nulls (apache/arrow#47409). Vectorized:
    each ``null`` whose previous non-blank byte is ``}`` or none; a ``null`` inside a string may
    match too (then the lines are checked in Python, which decides exactly)."""
    if b"null" not in buf:
        return False
    b = np.frombuffer(buf, np.uint8)
    p = np.flatnonzero(b[:-3] == ord("n"))
    p = p[(b[p + 1] == ord("u")) & (b[p + 2] == ord("l")) & (b[p + 3] == ord("l"))]
    q = p - 1
    for _ in range(16):  # skip blanks before each null (a longer run of blanks counts as suspect)
        blank = (q >= 0) & np.isin(b[np.maximum(q, 0)], _BLANKS)
        if not blank.any():
            return bool(((q < 0) | (b[np.maximum(q, 0)] == ord("}"))).any())
        q = q - blank
    return True


_BLANKS = np.frombuffer(b" \t\r\n", np.uint8)


def _json_kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _json_objects(buf: bytes, where: Callable[[int], str] | None = None) -> tuple[list[dict], list[int]]:
    """The JSON object of each non-blank line of ``buf`` and its line number (Python's ``json``,
    one call per line). A line that is not one JSON object raises: ``_ParseError`` without
    ``where``, else ``ValueError`` naming ``where(line)``."""
    objs, lines = [], []
    for n, line in enumerate(buf.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            why = None if isinstance(obj, dict) else f"a line must hold one JSON object, got {_json_kind(obj)}"
        except json.JSONDecodeError as e:
            why = f"malformed JSON ({e.msg})"
        except UnicodeDecodeError as e:
            why = f"malformed JSON (not UTF-8: {e.reason})"
        except RecursionError:
            why = "JSON nested too deeply"
        if why is not None:
            if where is None:
                raise _ParseError(why)
            raise ValueError(f"{where(n)}: {why}")
        objs.append(obj)
        lines.append(n)
    return objs, lines


def _arrow_json(buf: bytes, schema: pa.Schema | None, use_threads: bool = True, lines_checked: bool = False) -> pa.Table:
    """pyarrow's JSON-lines parse of ``buf``: with ``schema`` (fields not in it are ignored), or
    inferred. Input pyarrow would crash on (deep nesting while inferring, a top-level null) is
    refused first, and strings must be valid UTF-8 (pyarrow does not check them)."""
    if schema is None and _too_deep(buf):
        raise _ParseError(f"JSON nested deeper than {_MAX_JSON_DEPTH} levels")
    if not lines_checked and _top_level_null(buf):
        _json_objects(buf)
    try:
        t = pajson.read_json(io.BytesIO(buf), read_options=pajson.ReadOptions(use_threads=use_threads),
                             parse_options=pajson.ParseOptions(
                                 explicit_schema=schema, unexpected_field_behavior="infer" if schema is None else "ignore"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise _ParseError(str(e)) from None
    for name, col in zip(t.column_names, t.columns):
        try:
            col.validate(full=True)
        except pa.ArrowInvalid:
            raise _ParseError(f"column '{name}': a string is not valid UTF-8") from None
    return t


def _json_column_at_fault(record: bytes, schema: pa.Schema) -> str | None:
    """The column of ``schema`` whose value in the JSON ``record`` pyarrow refuses (for messages
    like "Failed to convert JSON to int64" that name none): one parse per column, on a bad record
    only. None when the record itself is no JSON object."""
    try:
        _arrow_json(record, pa.schema([]), False)
    except ValueError:
        return None
    for f in schema:
        try:
            _arrow_json(record, pa.schema([f]), False)
        except ValueError:
            return f.name
    return None


def _parse_json(buf: bytes, schema: pa.Schema | None, where: Callable[[int], str] | None = None,
                use_threads: bool = True) -> pa.Table:
    """JSON lines -> table with ``schema`` (types inferred without one). pyarrow parses vectors in
    the writers' forms (arrays, sparse objects) with no Python per row; when that fails (Alink
    strings, mixed forms, or a bad record), the vector columns are decoded line by line with the
    vector codec, so errors name the line (``where(line_number)``) and the rule."""
    if schema is None:
        return _arrow_json(buf, None, use_threads)
    vec = _vector_fields(schema)
    try:
        t = _arrow_json(buf, pa.schema([pa.field(f.name, json_type(f)) if f in vec else f for f in schema]),
                        use_threads)
        return table({f.name: check_vector_column(t.column(f.name), f) if f in vec else t.column(f.name)
                      for f in schema}, schema)
    except ValueError:
        if not vec:
            raise
    objs, lines = _json_objects(buf, where)
    t = _arrow_json(buf, pa.schema([f for f in schema if f not in vec]), use_threads, lines_checked=True)
    row_where = (lambda i: where(lines[i])) if where is not None else None
    return table({f.name: vector_column([o.get(f.name) for o in objs], f, row_where) if f in vec else t.column(f.name)
                  for f in schema}, schema)


def read_json(path: str, schema: str | pa.Schema | None = None) -> pa.Table:
    """Read a JSON-lines file (one object per line). Vectors may be JSON arrays, sparse objects
    ``{"size", "indices", "values"}`` or Alink strings; errors name the line and column."""
    sch = parse_schema(schema) if schema is not None else None
    with _open(path, "rb") as f:
        data = f.read()
    try:
        return _parse_json(data, sch, lambda n: f"read_json({path!r}), line {n}")
    except _ParseError as e:
        plain = None if sch is None else pa.schema([f for f in sch if f not in _vector_fields(sch)])
        line, msg = _locate(data, lambda b: _arrow_json(b, plain), e)
        if msg.startswith("column '"):
            raise ValueError(f"read_json({path!r}), line {line}, {msg}") from None
        col = _json_column_at_fault(_line(data, line), plain) if plain is not None else None
        raise ValueError(f"read_json({path!r}), line {line}" + (f", column '{col}'" if col else "") + f": {msg}") from None


def read_parquet(path: str, schema: str | pa.Schema | None = None) -> pa.Table:
    """Read a Parquet file; sparse vector columns come back as ``flowlearn.sparse_vector``.
    A truncated or corrupt file is a ``ValueError`` naming the path."""
    with _open(path, "rb") as f:
        t = parquet_table(f, f"read_parquet({path!r})")
    try:
        return table(t, schema) if schema is not None else t
    except ValueError as e:
        raise ValueError(f"read_parquet({path!r}): {e}") from None


def parquet_table(f: Any, where: str) -> pa.Table:
    """``pq.read_table`` of an open file; pyarrow's refusal of a corrupt file becomes a ``ValueError`` naming ``where``."""
    try:
        return pq.read_table(f)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{where}: not a valid Parquet file ({e})") from None


def atomic_write(path: str, write: Any) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it into place."""
    fs, p = fsspec.core.url_to_fs(path)
    parent = os.path.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(p)}.{uuid.uuid4().hex}.tmp")
    try:
        with fs.open(tmp, "wb") as f:
            write(f)
        fs.mv(tmp, p)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def _vector_texts(col: pa.ChunkedArray, name: str) -> list[str | None]:
    """Each vector of a column in Alink's text notation (None for null rows)."""
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    texts: list[str | None] = [None] * len(col)
    if not valid.any():
        return texts
    present = col.filter(pa.chunked_array([pa.array(valid)]))
    rows = np.flatnonzero(valid)
    if is_sparse(col.type):
        m = to_csr(present, name)
        for j, i in enumerate(rows):
            lo, hi = m.indptr[j], m.indptr[j + 1]
            texts[i] = format_vector(SparseVector(m.shape[1], m.indices[lo:hi], m.data[lo:hi]))
    else:
        for j, r in zip(rows, to_numpy(present, name)):
            texts[j] = format_vector(r)
    return texts


def _rows_as_text(t: pa.Table) -> pa.Table:
    cols = [pa.array(_vector_texts(t.column(n), n), pa.string()) if is_vector_type(t.column(n).type) else t.column(n)
            for n in t.column_names]
    return pa.Table.from_arrays(cols, names=t.column_names)


def write_csv(t: Any, path: str, header: bool = True) -> None:
    """Write a table as CSV (vectors in Alink's text notation), atomically."""
    t = _rows_as_text(table(t))
    atomic_write(path, lambda f: pacsv.write_csv(t, f, write_options=pacsv.WriteOptions(include_header=header)))


def _json_lines(t: pa.Table) -> Iterator[bytes]:
    names = t.column_names
    # vectors in the codec's JSON forms: dense ones are lists, sparse ones {"size", "indices", "values"}
    py = {n: t.column(n).to_pylist() for n in names}
    for i in range(t.num_rows):
        yield (json.dumps({n: py[n][i] for n in names}, default=str) + "\n").encode()


def write_json(t: Any, path: str) -> None:
    """Write a table as JSON lines, atomically. Dense vectors become arrays, sparse ones
    ``{"size": n, "indices": [...], "values": [...]}``."""
    t = table(t)
    atomic_write(path, lambda f: f.writelines(_json_lines(t)))


def write_parquet(t: Any, path: str) -> None:
    """Write a table as Parquet, atomically; the sparse vector extension type is preserved."""
    t = table(t)
    atomic_write(path, lambda f: pq.write_table(t, f))
