"""from_files (CSV, JSON lines, Parquet, watched directories, bad records) and to_files."""
from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.engines import run


def _write(d, name, t, fmt):
    p = os.path.join(d, name)
    {"csv": fl.write_csv, "json": fl.write_json, "parquet": fl.write_parquet}[fmt](t, p)  # atomic rename


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_reads_every_file_once_in_order(tmp_path, fmt):
    parts = [pa.table({"id": np.arange(i * 10, i * 10 + 10), "x": np.arange(10) * 0.5}) for i in range(3)]
    for i, t in enumerate(parts):
        _write(str(tmp_path), f"f{i}.{fmt}", t, fmt)
        os.utime(tmp_path / f"f{i}.{fmt}", (1000 + i, 1000 + i))
    got = fls.from_files(str(tmp_path), format=fmt, schema="id long, x double", batch_size=4).to_table()
    assert got.column("id").to_pylist() == list(range(30))


def test_bad_csv_record_names_file_line_and_column(tmp_path):
    (tmp_path / "a.csv").write_text("id,x\n1,1.0\n2,abc\n3,3.0\n")
    with pytest.raises(ValueError, match=r"a\.csv, line 3, column 'x'"):
        fls.from_files(str(tmp_path), format="csv", schema="id long, x double").to_table()


def test_bad_records_skipped_to_dead_letter_and_counted(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1, "x": 1.0}\n{"id": 2, "x": \n{"id": 3, "x": "no"}\n{"id": 4, "x": 4.0}\n')
    s = fls.from_files(str(tmp_path), format="json", schema="id long, x double", handle_invalid="skip")
    good, dead = s.collect(), s.dead_letters().collect()
    job = run(good, dead).wait()
    assert good.result().column("id").to_pylist() == [1, 4]
    d = dead.result()
    assert d.column("location").to_pylist() == ["line 2", "line 3"]
    assert d.column("column").to_pylist()[1] == "x"
    assert job.metrics["dead_letters"] == 2


def test_schema_change_is_an_error_naming_the_column(tmp_path):
    pq.write_table(pa.table({"x": [1.0]}), tmp_path / "a.parquet")
    os.utime(tmp_path / "a.parquet", (1000, 1000))
    pq.write_table(pa.table({"x": ["one"]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="column 'x' changed from double to string"):
        fls.from_files(str(tmp_path), format="parquet").to_table()


def test_watch_reads_new_complete_files_and_ignores_in_progress(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sink = fls.from_files(str(src), format="csv", schema="id long", watch=True, poll_interval=0.02).collect()
    job = run(sink)
    _write(str(src), "a.csv", {"id": [1, 2]}, "csv")
    (src / ".b.csv.tmp").write_text("id\n99\n")  # being written: hidden name
    deadline = time.time() + 60
    while sink_rows(sink) < 2 and time.time() < deadline:
        time.sleep(0.02)
    _write(str(src), "c.csv", {"id": [3]}, "csv")
    while sink_rows(sink) < 3 and time.time() < deadline:
        time.sleep(0.02)
    job.stop()
    assert sorted(sink.result().column("id").to_pylist()) == [1, 2, 3]


def sink_rows(sink):
    return sum(t.num_rows for t in sink.tables())


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_to_files_rolls_and_commits(tmp_path, fmt):
    t = pa.table({"id": np.arange(2500), "v": fl.linalg.from_numpy(np.ones((2500, 2)))})
    fls.from_table(t, batch_size=300).to_files(str(tmp_path), format=fmt, rolling_rows=1000).run().wait()
    files = sorted(f for f in os.listdir(tmp_path) if not f.startswith("."))
    assert len(files) == 3 and not os.listdir(tmp_path / ".inprogress")
    reader = {"csv": lambda p: fl.read_csv(p, schema="id long, v vector(2)"),
              "json": lambda p: fl.read_json(p, schema="id long, v vector(2)"), "parquet": fl.read_parquet}[fmt]
    back = pa.concat_tables([reader(str(tmp_path / f)) for f in files])
    assert back.column("id").to_pylist() == list(range(2500))
