"""Property-based bad input for the readers: ``fl.read_csv``, ``fl.read_json``, ``fl.read_parquet``
and ``fl.stream.from_files`` (csv, json, parquet) with ``handle_invalid="error"`` and ``"skip"``.

Each example writes a file whose every record is either surely good or surely bad (of one kind
per test case), so the expected outcome is known exactly:

- ``error``: a good file is read with every value; a file with a bad record raises a ValueError
  naming the file, the line of the first bad record and its column (where one is at fault).
- ``skip``: the good records come out, in order, and every bad record is a dead letter naming
  its line: no row silently lost or silently accepted.

Reads run in the ISOLATED child process (pyarrow's readers can crash on bad input)."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, strategies as st

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.engines import run
from strategies import ISOLATED, check, csv_field

pytestmark = pytest.mark.fuzz

SCHEMA = "id long, x double, s string"
VEC_SCHEMA = SCHEMA + ", v vector"


def read(reader: str, path: str, schema: str, fmt: str = "csv", handle_invalid: str = "error") -> dict:
    """Run one reader (in the child): ``{"ids", "x", "s", "v", "dead": [(location, column)]}``."""
    dead: list = []
    if reader == "read":
        t = {"csv": fl.read_csv, "json": fl.read_json, "parquet": fl.read_parquet}[fmt](path, schema)
    else:
        s = fls.from_files(os.path.dirname(path), format=fmt, schema=schema, handle_invalid=handle_invalid)
        if handle_invalid == "error":
            t = s.to_table()
        else:
            good, bad = s.collect(), s.dead_letters().collect()
            run(good, bad).wait()
            t = good.result()
            dead = [(r["location"], r["column"], r["source"]) for r in bad.result().to_pylist()]
    out = {"ids": t.column("id").to_pylist(), "x": t.column("x").to_pylist(), "s": t.column("s").to_pylist(),
           "dead": dead}
    if "v" in t.column_names:
        out["v"] = fl.linalg.to_numpy(t.column("v"), "v").tolist()
    return out


def _lines_of(location: str) -> set[int]:
    """Line numbers a dead letter's location covers: ``line 3`` or ``lines 3-4``."""
    m = re.search(r"lines? (\d+)(?:\s*-\s*(\d+))?", location)
    if not m:
        return set()
    lo = int(m.group(1))
    return set(range(lo, int(m.group(2) or lo) + 1))


def check_read(o, reader, handle_invalid, path, good, bad, spans=None):
    """The reader contract for a file with ``good`` records ``[(id, x, s, v)]`` and ``bad`` ones
    ``[(line, column or None)]`` (in file order); ``spans``: how many bad records span two lines."""
    ctx = open(path, "rb").read()[:1500] if os.path.isfile(path) else path
    if not bad or handle_invalid == "skip":
        check(o, [os.path.basename(path)], context=ctx)
        assert o.kind == "ok", f"good records or skip mode must not fail: {o.describe()}\ninput: {ctx!r}"
        got = o.value
        assert got["ids"] == [g[0] for g in good], (got, ctx)
        assert got["x"] == [g[1] for g in good], (got, ctx)
        assert got["s"] == [g[2] for g in good], (got, ctx)
        if good and good[0][3] is not None:
            np.testing.assert_array_equal(np.asarray(got["v"]), np.asarray([g[3] for g in good]), err_msg=repr(ctx))
        covered = set().union(*[_lines_of(loc) for loc, _, _ in got["dead"]])
        for line, col in bad:
            assert line in covered, (f"bad line {line} is not a dead letter", got["dead"], ctx)
        cols = {c for _, c, _ in got["dead"]}
        for _, col in bad:
            assert col is None or col in cols, (f"no dead letter names column {col!r}", got["dead"], ctx)
        if spans is None:    # records in = rows out + dead letters (a multi-line record may be one or more)
            assert len(got["dead"]) == len(bad), ("one dead letter per bad record", got["dead"], ctx)
        else:
            assert len(bad) <= len(got["dead"]) <= len(bad) + spans, ("dead letters", got["dead"], ctx)
        return
    first_line, first_col = bad[0]
    words = [os.path.basename(path), (f"line {first_line}", f"lines {first_line}")]
    if first_col is not None:
        words.append(f"'{first_col}'")
    check(o, words, ok=False, context=ctx)


# ---------------------------------------------------------------------------------------------
# CSV

safe_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=6)
finite = st.floats(allow_nan=False, allow_infinity=False)
dense2 = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=2)

CSV_BAD = {
    "number": ("x", st.sampled_from(["abc", "1.2.3", "--1", "e5", "1..0", "one"])),
    "integer": ("id", st.sampled_from(["1.5", "abc", "99999999999999999999"])),
    "encoding": ("s", st.sampled_from([b"\xff\xfe", b"a\xc3(", b"\xed\xa0\x80"])),
    "vector": ("v", st.sampled_from(["1 abc", "$x$", "[1,", "abc", "$2$5:1.0", "$2$-1:1.0"])),
    "field count": (None, st.sampled_from(["fewer", "more"])),
    "unterminated quote": (None, safe_text.map(lambda t: '"' + t.replace('"', ""))),
    "multi-line field": (None, st.tuples(safe_text, safe_text)),
}


CSV_VECTOR_FORMS = {
    "text": lambda v: " ".join(map(repr, v)),
    "bracketed": lambda v: csv_field("[" + ", ".join(map(repr, v)) + "]"),
    "sparse text": lambda v: f"${len(v)}$" + " ".join(f"{i}:{x!r}" for i, x in enumerate(v) if x != 0),
}


@st.composite
def csv_files(draw, kind, form="text"):
    """(file bytes, schema, good [(id, x, s, v)], bad [(line, column)])."""
    vec = kind in ("vector", "good with vectors")
    n_good = draw(st.integers(1 if kind.startswith("good") else 0, 5))
    n_bad = 0 if kind.startswith("good") else draw(st.integers(1, 3))
    order = draw(st.permutations(["g"] * n_good + ["b"] * n_bad))
    crlf = kind == "good" and draw(st.booleans())
    lines: list[bytes] = [b"id,x,s" + (b",v" if vec else b"")]
    good, bad = [], []
    for i, which in enumerate(order):
        if kind == "good" and draw(st.booleans()):
            lines.append(b"")             # blank lines are not records
        x, s, v = draw(finite), draw(safe_text), draw(dense2) if vec else None
        fields = [str(i).encode(), repr(x).encode(), csv_field(s).encode()] + \
            ([CSV_VECTOR_FORMS[form](v).encode()] if vec else [])
        if which == "g":
            good.append((i, x, s, v))
            lines.append(b",".join(fields))
            continue
        col, values = CSV_BAD[kind]
        bad_value = draw(values)
        line_no = len(lines) + 1
        if kind == "field count":
            fields = fields[:-1] if bad_value == "fewer" else fields + [b"7"]
        elif kind == "unterminated quote":
            fields[2] = bad_value.encode()
        elif kind == "multi-line field":
            fields[2] = csv_field(bad_value[0] + "\n" + bad_value[1]).encode()
            bad.append((line_no, None))
            lines.extend(b",".join(fields).split(b"\n"))
            continue
        else:
            fields[["id", "x", "s", "v"].index(col)] = bad_value if isinstance(bad_value, bytes) else csv_field(bad_value).encode()
        bad.append((line_no, col))
        lines.append(b",".join(fields))
    sep = b"\r\n" if crlf else b"\n"
    return sep.join(lines) + sep, VEC_SCHEMA if vec else SCHEMA, good, bad


READERS = [("read", "error"), ("from_files", "error"), ("from_files", "skip")]


def cases(kinds):
    return [pytest.param(k, r, h, id=f"{k}-{r}-{h}") for k in kinds for r, h in READERS]


@pytest.mark.parametrize("kind, reader, handle_invalid", cases(["good", "good with vectors", "number", "integer",
                                                              "encoding", "vector", "field count",
                                                              "unterminated quote", "multi-line field"]))
@given(data=st.data())
def test_csv(tmp_path_factory, kind, reader, handle_invalid, data):
    content, schema, good, bad = data.draw(csv_files(kind))
    path = str(tmp_path_factory.mktemp("csv") / "in.csv")
    with open(path, "wb") as f:
        f.write(content)
    o = ISOLATED(read, reader, path, schema, "csv", handle_invalid)
    check_read(o, reader, handle_invalid, path, good, bad, spans=len(bad) if kind == "multi-line field" else None)


# A stream's column has one type for the whole stream, so from_files reads a `vector` column as
# dense and refuses a sparse value with "declare the column sparse_vector, or vector(n) to densify
# them" (docs/streams.md); fl.read_csv decides per file. These cases pin that difference.
_STREAM_REFUSES_SPARSE_CSV = pytest.mark.xfail(strict=True, reason=(
    "by design (docs/streams.md, Files): from_files(format='csv') with schema '... v vector' refuses "
    "'id,x,s,v\\n0,0.0,,$2$\\n' ('a sparse vector of size 2 in a dense column; declare the column sparse_vector'), "
    "which fl.read_csv reads as a sparse column"))


@pytest.mark.parametrize("vector_type", ["vector", "vector(2)", "sparse_vector"])
@pytest.mark.parametrize("form", list(CSV_VECTOR_FORMS))
@pytest.mark.parametrize("reader, handle_invalid", READERS)
@given(data=st.data())
def test_csv_vector_forms_one_codec(tmp_path_factory, vector_type, form, reader, handle_invalid, data, request):
    """Every text form of a vector is read by every CSV reader into a column of each vector type."""
    if vector_type == "vector" and form == "sparse text" and reader == "from_files":
        request.applymarker(_STREAM_REFUSES_SPARSE_CSV)
    content, schema, good, bad = data.draw(csv_files("good with vectors", form))
    schema = schema.replace(" vector", f" {vector_type}")
    path = str(tmp_path_factory.mktemp("csv") / "in.csv")
    with open(path, "wb") as f:
        f.write(content)
    o = ISOLATED(read, reader, path, schema, "csv", handle_invalid)
    check_read(o, reader, handle_invalid, path, good, bad)


# ---------------------------------------------------------------------------------------------
# JSON lines

def _sparse_json(v):
    nz = [i for i, x in enumerate(v) if x != 0]
    return {"size": len(v), "indices": nz, "values": [v[i] for i in nz]}


VECTOR_FORMS = {
    "array": lambda v: v,
    "alink text": lambda v: " ".join(map(repr, v)),
    "alink sparse text": lambda v: f"${len(v)}$" + " ".join(f"{i}:{x!r}" for i, x in enumerate(v) if x != 0),
    "sparse object": _sparse_json,
}

JSON_BAD = {
    "number": ("x", st.sampled_from(["abc", [1.0], {"a": 1}])),
    "integer": ("id", st.sampled_from([1.5, "abc", 10 ** 25])),
    "vector": ("v", st.sampled_from(["1 abc", [1.0, "a"], {"size": 2, "indices": [5], "values": [1.0]},
                                     {"size": 2}, 5, [[1.0, 2.0]]])),
    "truncated": (None, st.integers(1, 10)),
    "not an object": (None, st.sampled_from(["[1, 2]", "42", '"text"', "true"])),
    "null line": (None, st.just("null")),
    "encoding": ("s", st.sampled_from([b"\xff\xfe", b"a\xc3(", b"\xed\xa0\x80"])),
}


@st.composite
def json_files(draw, kind, form="array"):
    vec = kind in ("vector", "vector forms")
    n_good = draw(st.integers(1 if kind.startswith("good") or kind == "vector forms" else 0, 5))
    n_bad = draw(st.integers(1, 3)) if kind in JSON_BAD else 0
    order = draw(st.permutations(["g"] * n_good + ["b"] * n_bad))
    lines: list[bytes] = []
    good, bad = [], []
    for i, which in enumerate(order):
        if kind == "good" and draw(st.booleans()):
            lines.append(b"")
        x, s = draw(finite), draw(safe_text)
        v = draw(dense2) if vec else None
        rec = {"id": i, "x": x, "s": s}
        if vec:
            rec["v"] = VECTOR_FORMS[form](v)
        if kind == "good" and draw(st.booleans()):
            rec = dict(reversed(list(rec.items())), extra=draw(st.lists(st.integers(), max_size=2)))
        if which == "g":
            good.append((i, x, s, v))
            lines.append(json.dumps(rec, ensure_ascii=draw(st.booleans())).encode())
            continue
        col, values = JSON_BAD[kind]
        bad_value = draw(values)
        bad.append((len(lines) + 1, col))
        if kind == "truncated":
            text = json.dumps(rec).encode()
            lines.append(text[:max(1, len(text) - bad_value)])
        elif kind in ("not an object", "null line"):
            lines.append(bad_value.encode())
        elif kind == "encoding":
            lines.append(json.dumps(dict(rec, s="@@")).encode().replace(b"@@", bad_value))
        else:
            rec[col] = bad_value
            lines.append(json.dumps(rec).encode())
    return b"\n".join(lines) + b"\n", VEC_SCHEMA if vec else SCHEMA, good, bad


@pytest.mark.parametrize("kind, reader, handle_invalid", cases(["good", "number", "integer", "vector", "truncated",
                                                              "not an object", "null line", "encoding"]))
@given(data=st.data())
def test_json(tmp_path_factory, kind, reader, handle_invalid, data):
    content, schema, good, bad = data.draw(json_files(kind))
    path = str(tmp_path_factory.mktemp("json") / "in.jsonl")
    with open(path, "wb") as f:
        f.write(content)
    o = ISOLATED(read, reader, path, schema, "json", handle_invalid)
    check_read(o, reader, handle_invalid, path, good, bad)


_STREAM_REFUSES_SPARSE = pytest.mark.xfail(strict=True, reason=(
    "by design (docs/streams.md, Files): from_files(format='json') with schema '... v vector' refuses a sparse "
    "value such as {\"size\": 2, \"indices\": [], \"values\": []} ('declare the column sparse_vector'), which "
    "fl.read_json reads as a sparse column"))


@pytest.mark.parametrize("vector_type", ["vector", "vector(2)", "sparse_vector"])
@pytest.mark.parametrize("form", list(VECTOR_FORMS))
@pytest.mark.parametrize("reader, handle_invalid", READERS)
@given(data=st.data())
def test_json_vector_forms_one_codec(tmp_path_factory, vector_type, form, reader, handle_invalid, data, request):
    """Every vector form the HTTP server and the writers use is read back by every JSON reader,
    into a column of each vector type (values compared densified)."""
    if vector_type == "vector" and "sparse" in form and reader == "from_files":
        request.applymarker(_STREAM_REFUSES_SPARSE)
    content, schema, good, bad = data.draw(json_files("vector forms", form))
    schema = schema.replace(" vector", f" {vector_type}")
    path = str(tmp_path_factory.mktemp("json") / "in.jsonl")
    with open(path, "wb") as f:
        f.write(content)
    o = ISOLATED(read, reader, path, schema, "json", handle_invalid)
    check_read(o, reader, handle_invalid, path, good, bad)


# ---------------------------------------------------------------------------------------------
# Parquet

PARQUET_BAD = ["wrong type", "missing column", "truncated", "garbage", "empty file"]


@st.composite
def parquet_dirs(draw, kind):
    """[(name, bytes or table)], good rows, bad file names (with the column at fault)."""
    n = draw(st.integers(1 if kind == "wrong type" else 0, 4))     # no rows: nothing to convert wrongly
    ids = list(range(n))
    xs = [draw(st.one_of(finite, st.none())) if kind == "nulls" else draw(finite) for _ in ids]
    ss = [draw(safe_text) for _ in ids]
    good = pa.table({"id": pa.array(ids, pa.int64()), "x": pa.array(xs, pa.float64()), "s": pa.array(ss, pa.string())})
    if kind in ("good", "nulls"):
        return good, None, None
    if kind == "wrong type":
        return good, good.set_column(1, "x", pa.array([f"x{x}" for x in xs], pa.string())), "x"
    if kind == "missing column":
        return good, good.drop_columns(["x"]), "x"
    return good, kind, None


def _parquet_bytes(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("kind, reader, handle_invalid", cases(["good", "nulls"] + PARQUET_BAD))
@given(data=st.data())
def test_parquet(tmp_path_factory, kind, reader, handle_invalid, data):
    good, bad, column = data.draw(parquet_dirs(kind))
    d = tmp_path_factory.mktemp("parquet")
    good_path, bad_path = str(d / "a.parquet"), str(d / "b.parquet")
    if bad is None:
        with open(good_path, "wb") as f:
            f.write(_parquet_bytes(good))
        o = ISOLATED(read, reader, good_path, SCHEMA, "parquet", handle_invalid)
        check_read(o, reader, handle_invalid, good_path,
                   list(zip(*[good.column(c).to_pylist() for c in ("id", "x", "s")], [None] * good.num_rows)), [])
        return
    content = _parquet_bytes(good)
    if isinstance(bad, pa.Table):
        blob = _parquet_bytes(bad)
    elif bad == "truncated":
        blob = content[:data.draw(st.integers(0, len(content) - 1))]
    elif bad == "garbage":
        blob = data.draw(st.binary(min_size=1, max_size=64))
    else:
        blob = b""
    with open(good_path, "wb") as f:
        f.write(content)
    os.utime(good_path, (1000, 1000))
    with open(bad_path, "wb") as f:
        f.write(blob)
    o = ISOLATED(read, reader, bad_path, SCHEMA, "parquet", handle_invalid)
    words = ["b.parquet"] + ([f"'{column}'"] if column else [])
    if reader == "from_files" and handle_invalid == "skip" and o.kind == "ok":
        # a whole bad file may become one dead letter naming it; the good file's rows all come out
        assert o.value["ids"] == good.column("id").to_pylist(), o.value
        assert any("b.parquet" in src for _, _, src in o.value["dead"]), o.value
        return
    check(o, words, ok=False, context=blob[:200])
