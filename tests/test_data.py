"""Data layer: fl.table, schema strings, vector columns, readers and writers."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sps

import flowlearn as fl
from flowlearn.linalg import SPARSE_VECTOR, SparseVector


def test_schema_string_types():
    s = fl.parse_schema("age double, city string, label int, n long, ok boolean, v vector(3), s sparse_vector")
    assert s.names == ["age", "city", "label", "n", "ok", "v", "s"]
    assert s.field("age").type == pa.float64()
    assert s.field("label").type == pa.int32()
    assert s.field("n").type == pa.int64()
    assert s.field("v").type == pa.list_(pa.float64(), 3)
    assert s.field("s").type == SPARSE_VECTOR


@pytest.mark.parametrize("bad,needle", [
    ("age", "expected '<name> <type>'"),
    ("age float64", "unknown type 'float64'"),
    ("a int, a int", "more than once"),
    ("", "non-empty"),
])
def test_schema_string_errors(bad, needle):
    with pytest.raises(ValueError, match=needle):
        fl.parse_schema(bad)


def test_table_from_many_inputs_agree():
    rows = [{"x": 1.0, "c": "a", "v": [1.0, 2.0]}, {"x": 2.0, "c": "b", "v": [3.0, 4.0]}]
    from_rows = fl.table(rows)
    from_dict = fl.table({"x": [1.0, 2.0], "c": ["a", "b"], "v": np.array([[1.0, 2.0], [3.0, 4.0]])})
    from_pandas = fl.table(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"], "v": [np.array([1.0, 2.0]),
                                                                                  np.array([3.0, 4.0])]}))
    from_batch = fl.table(from_dict.to_batches()[0])
    for t in (from_dict, from_pandas, from_batch):
        assert t.equals(from_rows)
    assert from_rows.schema.names == ["x", "c", "v"]
    assert from_rows.schema.field("x").type == pa.float64() and from_rows.schema.field("c").type == pa.string()
    assert from_rows.schema.field("v").type == pa.list_(pa.float64(), 2)
    assert from_rows.to_pydict() == {"x": [1.0, 2.0], "c": ["a", "b"], "v": [[1.0, 2.0], [3.0, 4.0]]}


def test_table_with_schema_casts_and_selects():
    t = fl.table([{"age": 3, "city": "Oslo", "extra": 1}], schema="age double, city string")
    assert t.column_names == ["age", "city"]
    assert t.column("age").type == pa.float64()
    assert t.to_pydict() == {"age": [3.0], "city": ["Oslo"]}
    with pytest.raises(ValueError, match=r"columns \['city'\] named in the schema are missing"):
        fl.table({"age": [1]}, schema="age double, city string")


def test_table_errors():
    with pytest.raises(TypeError, match="cannot convert int"):
        fl.table(3)
    with pytest.raises(ValueError, match="different lengths"):
        fl.table({"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="dense vectors of different sizes"):
        fl.table({"v": [[1.0], [1.0, 2.0]]})


def test_sparse_vector_column_round_trips_parquet_and_ipc():
    m = sps.random(50, 30, density=0.1, format="csr", random_state=0)
    col = fl.linalg.from_csr(m)
    t = pa.table({"s": col})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    back = pq.read_table(io.BytesIO(buf.getvalue()))
    assert back.schema.field("s").type == SPARSE_VECTOR
    assert m.nnz > 0 and fl.linalg.to_csr(back.column("s")).shape == m.shape
    assert (fl.linalg.to_csr(back.column("s")) != m).nnz == 0
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    back2 = ipc.open_file(pa.BufferReader(sink.getvalue())).read_all()
    assert back2.schema.field("s").type == SPARSE_VECTOR
    np.testing.assert_array_equal(fl.linalg.to_csr(back2.column("s")).toarray(), m.toarray())


def test_linalg_numpy_and_csr_conversions():
    x = np.arange(12, dtype=float).reshape(4, 3)
    dense = fl.linalg.from_numpy(x)
    assert np.array_equal(fl.linalg.to_numpy(dense), x)
    assert np.array_equal(fl.linalg.to_csr(dense).toarray(), x)
    sp = fl.linalg.from_csr(sps.csr_matrix(x))
    assert np.array_equal(fl.linalg.to_numpy(sp), x)
    # variable-length list<double> input is accepted
    var = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64()))
    assert np.array_equal(fl.linalg.to_numpy(var), [[1, 2], [3, 4]])
    # chunked + sliced arrays
    chunked = pa.chunked_array([dense.slice(1, 2), dense.slice(3, 1)])
    assert np.array_equal(fl.linalg.to_numpy(chunked), x[1:])


def test_linalg_errors_name_row():
    var = pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float64()))
    with pytest.raises(ValueError, match="row 1 has 1"):
        fl.linalg.to_numpy(var, "features")
    nulls = pa.array([[1.0], None], pa.list_(pa.float64(), 1))
    with pytest.raises(ValueError, match="null vector at row 1"):
        fl.linalg.to_numpy(nulls, "features")


def test_sparse_vector_values():
    v = SparseVector(5, [0, 3], [1.5, -2.0])
    assert v.to_numpy().tolist() == [1.5, 0, 0, -2.0, 0]
    assert v.dot(np.arange(5.0)) == pytest.approx(-6.0)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        SparseVector(5, [7], [1.0])
    t = fl.table({"s": [v, SparseVector(5, [], [])]})
    assert t.schema.field("s").type == SPARSE_VECTOR
    np.testing.assert_array_equal(fl.linalg.to_numpy(t.column("s")), [[1.5, 0, 0, -2.0, 0], [0, 0, 0, 0, 0]])


def test_csv_round_trip_with_vectors(tmp_path):
    t = fl.table({"age": [1.0, 2.5], "city": ["a", "b"], "v": [[1.0, 2.0], [3.0, 4.0]],
                  "s": [SparseVector(4, [1], [2.0]), SparseVector(4, [0, 3], [1.0, -1.0])]})
    p = str(tmp_path / "t.csv")
    fl.write_csv(t, p)
    text = open(p).read()
    assert "$4$1:2.0" in text and "1.0 2.0" in text
    back = fl.read_csv(p, schema="age double, city string, v vector, s sparse_vector")
    assert back.column("age").to_pylist() == [1.0, 2.5] and back.column("city").to_pylist() == ["a", "b"]
    assert np.array_equal(fl.linalg.to_numpy(back.column("v")), [[1, 2], [3, 4]])
    assert back.schema.field("s").type == SPARSE_VECTOR
    np.testing.assert_array_equal(fl.linalg.to_numpy(back.column("s")), [[0, 2.0, 0, 0], [1.0, 0, 0, -1.0]])


def test_csv_bad_vector_names_row_and_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("v\n1 2\nx y\n")
    with pytest.raises(ValueError, match=r"line 3, column 'v'.*cannot parse vector 'x y'"):
        fl.read_csv(str(p), schema="v vector")


def test_json_lines_round_trip(tmp_path):
    t = fl.table({"x": [1.0, 2.0], "v": [[1.0, 2.0], [3.0, 4.0]], "s": [SparseVector(3, [2], [1.0]), None]})
    p = str(tmp_path / "t.json")
    fl.write_json(t, p)
    lines = [json.loads(line) for line in open(p)]
    assert lines[0]["v"] == [1.0, 2.0] and lines[1]["s"] is None
    assert lines[0]["s"] == {"size": 3, "indices": [2], "values": [1.0]}  # the HTTP server's form too
    back = fl.read_json(p, schema="x double, v vector, s sparse_vector")
    assert back.column("x").to_pylist() == [1.0, 2.0]
    assert np.array_equal(fl.linalg.to_numpy(back.column("v")), [[1, 2], [3, 4]])
    assert back.column("s").null_count == 1 and back.column("s")[1].as_py() is None
    assert back.column("s")[0].as_py() == {"size": 3, "indices": [2], "values": [1.0]}
    plain = fl.read_json(p, schema="x double")
    assert plain.column("x").to_pylist() == [1.0, 2.0]


def test_json_malformed_line_is_named(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"v": [1]}\n{"v": [1\n')
    with pytest.raises(ValueError, match="line 2: malformed JSON"):
        fl.read_json(str(p), schema="v vector")


def test_parquet_round_trip_and_atomic_write(tmp_path):
    t = fl.table({"s": fl.linalg.from_csr(sps.eye(3, format="csr")), "y": [1, 2, 3]})
    p = str(tmp_path / "sub" / "t.parquet")
    fl.write_parquet(t, p)
    assert [f.name for f in (tmp_path / "sub").iterdir()] == ["t.parquet"]  # no temp file left behind
    back = fl.read_parquet(p)
    assert back.equals(t)
    assert back.column("y").to_pylist() == [1, 2, 3]
    np.testing.assert_array_equal(fl.linalg.to_numpy(back.column("s")), np.eye(3))
