"""Readers under bad input (issue 8, defects 2 and 5, and truncated Parquet).

- A CSV quote left open, or a line break inside quotes, never swallows the rows after it: it is an
  error (a dead letter under ``handle_invalid="skip"``) naming the file and line, or the Kafka
  offset, unless ``fl.read_csv(..., multiline=True)``. Each Kafka message is one record.
- One codec for vectors in JSON: arrays, ``{"size", "indices", "values"}`` objects and Alink strings
  are read by ``fl.read_json``, ``from_files(format="json")``, Kafka JSON and the HTTP server;
  the writers' output reads back through every one of them.
- A truncated Parquet file is a ``ValueError`` naming it.

Expected values are literals written from the input, not the code's output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.data.schema import parse_schema
from flowlearn.engines import run
from flowlearn.linalg import SparseVector
from flowlearn.serving.http import _decode_value
from flowlearn.stream.kafka import _serialize, parse_messages

CSV_SWALLOWING = 'x,s\n1,a\n2,"b\n3,c\n4,d\n5,e\n'   # line 3 opens a quote it never closes


def _skip_read(directory, fmt, schema):
    """Rows and dead letters of from_files(handle_invalid="skip")."""
    s = fls.from_files(str(directory), format=fmt, schema=schema, handle_invalid="skip")
    good, dead = s.collect(), s.dead_letters().collect()
    job = run(good, dead).wait()
    return good.result(), dead.result().to_pylist(), job


# ---------------------------------------------------------------------------------------------
# CSV: a value never spans lines unless asked to

def test_read_csv_unterminated_quote_names_the_line(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(CSV_SWALLOWING)
    for schema in ("x double, s string", None):
        with pytest.raises(ValueError, match=r"a\.csv'\), line 3: a quote on this line is not closed.*multiline=True"):
            fl.read_csv(str(p), schema=schema)


def test_read_csv_unterminated_quote_on_the_last_line_without_a_newline(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('x,s\n1,a\n2,"b')
    with pytest.raises(ValueError, match=r"line 3: a quote on this line is not closed"):
        fl.read_csv(str(p), schema="x double, s string")


def test_read_csv_quoted_line_break_needs_multiline(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('x,s\n1,"two\nlines"\n2,b\n')
    with pytest.raises(ValueError, match=r"line 2: a quote on this line is not closed.*multiline=True"):
        fl.read_csv(str(p), schema="x double, s string")
    t = fl.read_csv(str(p), schema="x double, s string", multiline=True)
    assert t.to_pydict() == {"x": [1.0, 2.0], "s": ["two\nlines", "b"]}


def test_read_csv_errors_name_line_and_column(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("id,x\n1,1.5\n2,abc\n")
    with pytest.raises(ValueError, match=r"line 3, column 'x': CSV conversion error to double: invalid value 'abc'"):
        fl.read_csv(str(p), schema="id long, x double")


def test_from_files_csv_unterminated_quote_is_an_error_or_a_dead_letter(tmp_path):
    (tmp_path / "a.csv").write_text(CSV_SWALLOWING)
    with pytest.raises(ValueError, match=r"a\.csv, line 3, .*a quote on this line is not closed"):
        fls.from_files(str(tmp_path), format="csv", schema="x double, s string").to_table()
    good, dead, job = _skip_read(tmp_path, "csv", "x double, s string")
    assert good.to_pydict() == {"x": [1.0, 3.0, 4.0, 5.0], "s": ["a", "c", "d", "e"]}
    assert [(d["location"], d["record"]) for d in dead] == [("line 3", '2,"b')]
    assert job.metrics["dead_letters"] == 1


def test_from_files_csv_quoted_line_break_is_refused_per_line(tmp_path):
    (tmp_path / "a.csv").write_text('x,s\n1,"two\nlines"\n2,b\n')
    good, dead, _ = _skip_read(tmp_path, "csv", "x double, s string")
    assert good.to_pydict() == {"x": [2.0], "s": ["b"]}
    assert [d["location"] for d in dead] == ["line 2", "line 3"]


def test_from_files_csv_reads_generic_vector_columns(tmp_path):
    # a `vector` column was refused as "schema changed ... list to fixed_size_list" on a good file
    (tmp_path / "a.csv").write_text('v\n1 2\n"[3, 4]"\n')
    t = fls.from_files(str(tmp_path), format="csv", schema="v vector").to_table()
    assert t.column("v").to_pylist() == [[1.0, 2.0], [3.0, 4.0]]


def test_kafka_csv_messages_are_one_record_each():
    sch = parse_schema("x double, s string")
    msgs = [b"1,a", b'2,"b', b"3,c", b"4,d", b"5,e"]      # 5 messages became 2 rows and 0 dead letters
    t, bad = parse_messages(msgs, "csv", sch)
    assert t.to_pydict() == {"x": [1.0, 3.0, 4.0, 5.0], "s": ["a", "c", "d", "e"]}
    assert [i for i, _, _ in bad] == [1] and "not closed" in bad[0][2]
    t, bad = parse_messages([b"1,a", b'2,"x\ny"', b"", b"3,c\n4,d", b"5,e"], "csv", sch)
    assert t.to_pydict() == {"x": [1.0, 5.0], "s": ["a", "e"]}
    assert [i for i, _, _ in bad] == [1, 2, 3]


def test_kafka_json_messages_are_one_record_each():
    sch = parse_schema("x double")
    t, bad = parse_messages([b'{"x": 1}', b"", b'{"x": 2} {"x": 3}', b"null", b'{"x": 4}'], "json", sch)
    assert t.column("x").to_pylist() == [1.0, 4.0]
    assert [i for i, _, _ in bad] == [1, 2, 3]


def test_kafka_csv_sink_refuses_a_value_that_would_split_its_message():
    t = fl.table({"s": ["one line", "two\nlines"]})
    with pytest.raises(ValueError, match=r"row 1, column 's' holds a line break.*format='json'"):
        _serialize(t, "csv")
    assert _serialize(fl.table({"s": ['a "q"', "b"]}), "csv") == [b'"a ""q"""', b'"b"']


@pytest.mark.kafka
def test_kafka_csv_unterminated_quote_end_to_end(kafka_broker):
    ck = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(15)
    p = ck.Producer({"bootstrap.servers": kafka_broker})
    for m in [b"1,a", b'2,"b', b"3,c", b"4,d", b"5,e"]:
        p.produce(topic, m, partition=0)
    assert p.flush(30) == 0

    def source(handle_invalid):
        return fls.from_kafka(topic, kafka_broker, format="csv", schema="x double, s string", start="earliest",
                              stop_at_end=True, handle_invalid=handle_invalid, metadata_columns=["offset"])

    with pytest.raises(ValueError, match=rf"topic {topic}, partition 0, offset 1, .*not closed"):
        source("error").to_table()
    s = source("skip")
    good, dead = s.collect(), s.dead_letters().collect()
    run(good, dead).wait()
    assert good.result().to_pydict() == {"x": [1.0, 3.0, 4.0, 5.0], "s": ["a", "c", "d", "e"], "offset": [0, 2, 3, 4]}
    assert [(d["location"], d["record"]) for d in dead.result().to_pylist()] == [("partition 0, offset 1", '2,"b')]


# ---------------------------------------------------------------------------------------------
# One codec for vectors in JSON

FORMS = [  # each line holds the vector (0, 1.5, 0, -2) in another form
    {"v": [0, 1.5, 0, -2]},
    {"v": "0 1.5 0 -2"},
    {"v": "[0, 1.5, 0, -2]"},
    {"v": "$4$1:1.5 3:-2"},
    {"v": {"size": 4, "indices": [1, 3], "values": [1.5, -2]}},
    {"v": None},
]
DENSE = [[0.0, 1.5, 0.0, -2.0]] * 5 + [None]


def _write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("schema", ["v vector(4)", "v sparse_vector", "v vector"])
def test_every_json_vector_form_reads_in_every_reader(tmp_path, schema):
    _write_lines(tmp_path / "a.json", FORMS)
    got = {"read_json": fl.read_json(str(tmp_path / "a.json"), schema=schema)}
    if schema != "v vector":   # a stream's `vector` column is dense: it refuses sparse values (below)
        got["from_files"] = fls.from_files(str(tmp_path), format="json", schema=schema).to_table()
        t, bad = parse_messages([json.dumps(r).encode() for r in FORMS], "json", parse_schema(schema))
        assert bad == []
        got["kafka"] = t
    for reader, t in got.items():
        col = t.column("v")
        assert col.null_count == 1, reader
        present = col.filter(col.is_valid())
        assert fl.linalg.to_numpy(present).tolist() == DENSE[:5], reader
        assert fl.linalg.is_sparse(col.type) == (schema != "v vector(4)"), reader


def test_stream_vector_column_refuses_sparse_values_with_the_way_out(tmp_path):
    _write_lines(tmp_path / "a.json", [{"v": [1.0, 2.0]}, {"v": {"size": 2, "indices": [0], "values": [1.0]}}])
    good, dead, _ = _skip_read(tmp_path, "json", "v vector")
    assert good.column("v").to_pylist() == [[1.0, 2.0]]
    assert [(d["location"], d["column"]) for d in dead] == [("line 2", "v")]
    assert "declare the column sparse_vector" in dead[0]["reason"]


BAD_VECTORS = [  # (value, words of the error)
    ({"size": 4, "indices": [3, 1], "values": [1.0, 2.0]}, "strictly increasing"),
    ({"size": 4, "indices": [1, 1], "values": [1.0, 2.0]}, "strictly increasing"),
    ({"size": 4, "indices": [4], "values": [1.0]}, "out of range"),
    ({"size": 4, "indices": [-1], "values": [1.0]}, "out of range"),
    ({"size": 4, "indices": [1, 2], "values": [1.0]}, "2 indices but 1 values"),
    ({"size": 4, "indices": [1]}, "values"),
    ({"size": 4.5, "indices": [], "values": []}, "size must be an integer"),
    ({"size": 4, "indices": [1.5], "values": [1.0]}, "integers"),
    ("$4$3:1 1:2", "strictly increasing"),
    ("$4$9:1", "out of range"),
    ("1 two 3", "cannot parse vector"),
    ([1.0, "a"], "array of numbers"),
    ([1.0, 10 ** 400], "out of range"),
    (True, "not a vector"),
]


@pytest.mark.parametrize("value, words", BAD_VECTORS)
def test_bad_json_vectors_name_line_column_and_rule(tmp_path, value, words):
    _write_lines(tmp_path / "a.json", [{"v": [0.0, 1.0, 2.0, 3.0]}, {"v": value}])
    with pytest.raises(ValueError, match="a.json'\\), line 2, column 'v': ") as e:
        fl.read_json(str(tmp_path / "a.json"), schema="v sparse_vector")
    assert words in str(e.value)
    good, dead, _ = _skip_read(tmp_path, "json", "v sparse_vector")
    assert good.num_rows == 1
    assert [(d["location"], d["column"]) for d in dead] == [("line 2", "v")] and words in dead[0]["reason"]
    t, bad = parse_messages([b'{"v": [0, 1, 2, 3]}', json.dumps({"v": value}).encode()], "json",
                            parse_schema("v sparse_vector"))
    assert t.num_rows == 1 and [(i, c) for i, c, _ in bad] == [(1, "v")] and words in bad[0][2]


def test_http_decodes_vectors_with_the_same_codec():
    assert _decode_value("v", {"size": 4, "indices": [1, 3], "values": [1.5, -2]}, "") == \
        SparseVector(4, [1, 3], [1.5, -2.0])
    assert _decode_value("d", [1, 2], "").tolist() == [1.0, 2.0]
    assert _decode_value("k", {"a": 1}, "") == {"a": 1} and _decode_value("k", ["a"], "") == ["a"]  # not vectors
    for value, words in [({"size": 4, "indices": [3, 1], "values": [1, 2]}, "strictly increasing"),
                         ({"size": "4", "indices": [1], "values": [1]}, "size must be an integer"),
                         ([1, 10 ** 400], "out of range")]:
        with pytest.raises(Exception) as e:
            _decode_value("v", value, "rows[2]: ")
        assert getattr(e.value, "status", None) == 400, e.value
        assert str(e.value).startswith("rows[2]: column 'v': ") and words in str(e.value)


def test_vectors_round_trip_through_every_json_writer_and_reader(tmp_path):
    sparse = [SparseVector(5, [0, 3], [1.5, -2.0]), None, SparseVector(5, [], [])]
    t = fl.table({"id": [1, 2, 3], "d": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "s": sparse},
                 schema="id long, d vector(2), s sparse_vector")
    schema = "id long, d vector(2), s sparse_vector"
    fl.write_json(t, str(tmp_path / "a.json"))
    back = fl.read_json(str(tmp_path / "a.json"), schema=schema)
    streamed = fls.from_files(str(tmp_path), format="json", schema=schema).to_table()
    kafka, bad = parse_messages(_serialize(t, "json"), "json", parse_schema(schema))
    assert bad == []
    for got in (back, streamed, kafka):
        assert got.column("id").to_pylist() == [1, 2, 3]
        assert got.column("d").to_pylist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
        assert got.column("s").to_pylist() == [{"size": 5, "indices": [0, 3], "values": [1.5, -2.0]}, None,
                                               {"size": 5, "indices": [], "values": []}]


# ---------------------------------------------------------------------------------------------
# JSON lines pyarrow would crash on, or read silently wrong

def test_top_level_null_and_deep_nesting_are_errors_not_crashes(tmp_path):
    # pyarrow's JSON reader dies with SIGSEGV on a first line 'null' and on nesting ~20k deep while
    # inferring types; a later 'null' line it reads as a row of nulls. Run in a child process.
    (tmp_path / "null.json").write_text('null\n{"x": 1}\n')
    (tmp_path / "later.json").write_text('{"x": 1}\nnull\n')
    (tmp_path / "deep.json").write_text('{"x": 1}\n{"v": ' + "[" * 30000 + "]" * 30000 + "}\n")
    code = textwrap.dedent(f"""
        import flowlearn as fl, flowlearn.stream as fls, os
        d = {str(tmp_path)!r}
        for name, schema in [("null.json", "x double"), ("null.json", None), ("later.json", "x double"),
                             ("deep.json", None)]:
            try:
                fl.read_json(os.path.join(d, name), schema=schema)
                print(name, "accepted")
            except ValueError as e:
                print(name, str(e).split("), ")[1])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == [
        "null.json line 1: a line must hold one JSON object, got null",
        "null.json line 1: a line must hold one JSON object, got null",
        "later.json line 2: a line must hold one JSON object, got null",
        "deep.json line 2: JSON nested deeper than 1000 levels",
    ]


def test_invalid_utf8_in_a_json_string_is_refused(tmp_path):
    (tmp_path / "a.json").write_bytes(b'{"s": "ok"}\n{"s": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=r"line 2, column 's': a string is not valid UTF-8"):
        fl.read_json(str(tmp_path / "a.json"), schema="s string")
    good, dead, _ = _skip_read(tmp_path, "json", "s string")
    assert good.column("s").to_pylist() == ["ok"] and [d["location"] for d in dead] == ["line 2"]


# ---------------------------------------------------------------------------------------------
# Parquet

def test_truncated_parquet_names_the_file(tmp_path):
    p = tmp_path / "t.parquet"
    fl.write_parquet({"x": np.arange(1000.0)}, str(p))
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"read_parquet\('.*t\.parquet'\): not a valid Parquet file"):
        fl.read_parquet(str(p))
    with pytest.raises(ValueError, match=r"file .*t\.parquet: not a valid Parquet file"):
        fls.from_files(str(tmp_path), format="parquet").to_table()


def test_read_parquet_schema_mismatch_names_the_file(tmp_path):
    fl.write_parquet(pa.table({"y": [1.0]}), str(tmp_path / "t.parquet"))
    with pytest.raises(ValueError, match=r"read_parquet\('.*t\.parquet'\): .*\['x'\]"):
        fl.read_parquet(str(tmp_path / "t.parquet"), schema="x double")


def test_long_csv_lines_are_read(tmp_path):
    # an unquoted line longer than pyarrow's 1 MiB block (a long vector) was refused: "straddling object"
    v = np.arange(600_000) % 7 * 0.5
    text = " ".join(map(str, v))
    (tmp_path / "a.csv").write_text(f"id,v\n1,{text}\n2,{text}\n")
    assert os.path.getsize(tmp_path / "a.csv") > 2 << 20
    t = fl.read_csv(str(tmp_path / "a.csv"), schema="id long, v vector")
    assert t.column("id").to_pylist() == [1, 2]
    np.testing.assert_array_equal(fl.linalg.to_numpy(t.column("v")), np.stack([v, v]))
    streamed = fls.from_files(str(tmp_path), format="csv", schema="id long, v vector(600000)").to_table()
    assert streamed.column("id").to_pylist() == [1, 2]
