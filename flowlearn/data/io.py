"""Readers and writers for CSV, JSON lines and Parquet, with schema strings and vector columns.

Vector values in text formats use Alink's notation: dense ``"1.0 2.0 3.0"`` (or
``"[1.0, 2.0, 3.0]"``, or a JSON array), sparse ``"$size$index:value index:value"``.
Writes are atomic: a temporary file is written next to the target and renamed into place.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from flowlearn.data.schema import VECTOR_META, parse_schema
from flowlearn.data.table import table
from flowlearn.linalg import SparseVector, is_sparse, is_vector_type, to_csr, to_numpy, vectors_to_array

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


def parse_vector(text: str | None, where: str = "") -> np.ndarray | SparseVector | None:
    """Parse one vector written in Alink's text notation.

    Example:
        >>> parse_vector("$4$1:0.5 3:2")
        SparseVector(4, [1, 3], [0.5, 2.0])
        >>> parse_vector("1 2 3").tolist()
        [1.0, 2.0, 3.0]
    """
    if text is None:
        return None
    s = text.strip()
    try:
        if s.startswith("$"):
            _, size, rest = s.split("$", 2)
            idx, val = [], []
            for tok in rest.replace(",", " ").split():
                i, v = tok.split(":")
                idx.append(int(i))
                val.append(float(v))
            return SparseVector(int(size), idx, val)
        s = s.strip("[]")
        if not s:
            return np.zeros(0)
        return np.array([float(t) for t in s.replace(",", " ").split()])
    except ValueError:
        raise ValueError(
            f"{where}cannot parse vector {text!r}: write dense vectors as '1.0 2.0 3.0' and sparse ones "
            f"as '$size$index:value index:value'"
        ) from None


def format_vector(v: Any) -> str:
    if isinstance(v, SparseVector):
        return f"${v.size}$" + " ".join(f"{i}:{x!r}" for i, x in zip(v.indices.tolist(), v.values.tolist()))
    return " ".join(repr(float(x)) for x in v)


def _vector_fields(sch: pa.Schema) -> list[pa.Field]:
    return [f for f in sch if is_vector_type(f.type) or f.metadata == VECTOR_META]


def _text_vectors_to_column(raw: list, field: pa.Field, source: str) -> pa.Array:
    values = []
    for i, s in enumerate(raw):
        if isinstance(s, list):
            values.append(np.asarray(s, dtype=np.float64))
        else:
            values.append(parse_vector(s, f"{source}, row {i}, column '{field.name}': "))
    if is_sparse(field.type):
        values = [v if v is None or isinstance(v, SparseVector) else SparseVector(len(v), np.flatnonzero(v), v[v != 0]) for v in values]
    return vectors_to_array(values, field.name)


def _open(path: str, mode: str):
    return fsspec.open(path, mode).open()


def read_csv(path: str, schema: str | pa.Schema | None = None, delimiter: str = ",", header: bool = True,
             **opts: Any) -> pa.Table:
    """Read a CSV file into a table. With ``schema`` columns get those types; vector columns
    are parsed from Alink's text notation.

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
    try:
        with _open(path, "rb") as f:
            t = pacsv.read_csv(f, read_options=read_opts, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                               convert_options=convert)
    except pa.ArrowInvalid as e:
        raise ValueError(f"read_csv({path!r}): {e}") from None
    return _finish_text_table(t, sch, path)


def _finish_text_table(t: pa.Table, sch: pa.Schema | None, path: str) -> pa.Table:
    if sch is None:
        return t
    missing = [n for n in sch.names if n not in t.column_names]
    if missing:
        raise ValueError(f"{path}: columns {missing} named in the schema are missing; the file has {t.column_names}")
    cols = {}
    vec_names = {f.name for f in _vector_fields(sch)}
    for f in sch:
        if f.name in vec_names:
            cols[f.name] = _text_vectors_to_column(t.column(f.name).to_pylist(), f, path)
        else:
            cols[f.name] = t.column(f.name)
    return table(cols, sch)


def read_json(path: str, schema: str | pa.Schema | None = None) -> pa.Table:
    """Read a JSON-lines file (one object per line). Vectors may be JSON arrays or Alink strings."""
    sch = parse_schema(schema) if schema is not None else None
    if sch is not None and _vector_fields(sch):
        # Vector columns may be arrays or strings; parse rows ourselves to accept both.
        rows = []
        with _open(path, "rt") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {lineno}: malformed JSON ({e.msg})") from None
        cols = {}
        for fld in sch:
            vals = [r.get(fld.name) for r in rows]
            if fld in _vector_fields(sch):
                cols[fld.name] = _text_vectors_to_column(vals, fld, path)
            else:
                cols[fld.name] = vals
        return table(cols, sch)
    explicit = pa.schema([f for f in sch]) if sch is not None else None
    try:
        with _open(path, "rb") as f:
            t = pajson.read_json(f, parse_options=pajson.ParseOptions(explicit_schema=explicit))
    except pa.ArrowInvalid as e:
        raise ValueError(f"read_json({path!r}): {e}") from None
    return t.select(sch.names) if sch is not None else t


def read_parquet(path: str, schema: str | pa.Schema | None = None) -> pa.Table:
    """Read a Parquet file; sparse vector columns come back as ``flowlearn.sparse_vector``."""
    with _open(path, "rb") as f:
        t = pq.read_table(f)
    return table(t, schema) if schema is not None else t


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
    py = {}
    for n in names:
        col = t.column(n)
        if is_vector_type(col.type) and is_sparse(col.type):
            py[n] = _vector_texts(col, n)
        elif is_vector_type(col.type):
            py[n] = [None if v is None else [float(x) for x in v] for v in col.to_pylist()]
        else:
            py[n] = col.to_pylist()
    for i in range(t.num_rows):
        yield (json.dumps({n: py[n][i] for n in names}, default=str) + "\n").encode()


def write_json(t: Any, path: str) -> None:
    """Write a table as JSON lines, atomically. Dense vectors become arrays, sparse ones strings."""
    t = table(t)
    atomic_write(path, lambda f: f.writelines(_json_lines(t)))


def write_parquet(t: Any, path: str) -> None:
    """Write a table as Parquet, atomically; the sparse vector extension type is preserved."""
    t = table(t)
    atomic_write(path, lambda f: pq.write_table(t, f))
