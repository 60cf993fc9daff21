"""``flowlearn run JOB.py``: the command is run as a subprocess on job files written here; the
output files, the progress lines, the exit codes and the resume after a signal are checked."""
from __future__ import annotations

import argparse
import io
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow.parquet as pq
import pytest

from flowlearn.cli.run import Progress, add_run_parser, format_progress, main as run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRESS = re.compile(r"^\[\d+:\d\d:\d\d\] rows in ([\d,]+) out ([\d,]+) \| [\d,]+ rows/s \| lag [\d,\-]+ \| "
                      r"checkpoints \d+ \| dead letters [\d,]+ \| late rows [\d,]+")


def _command() -> list[str]:
    """``python -m flowlearn.cli.main run`` once ``run`` is wired into the main CLI, else the module."""
    from flowlearn.cli.main import build_parser

    subs = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    if subs and "run" in subs[0].choices:
        return [sys.executable, "-m", "flowlearn.cli.main", "run"]
    return [sys.executable, "-m", "flowlearn.cli.run"]


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def _run(args: list, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command() + [str(a) for a in args], env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _read_ids(out_dir) -> list[int]:
    files = sorted(f for f in os.listdir(out_dir) if f.endswith(".parquet"))
    return [i for f in files for i in pq.read_table(os.path.join(out_dir, f)).column("id").to_pylist()]


def _write_job(path, body: str) -> str:
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_files_job_writes_every_row_and_prints_progress(tmp_path):
    src, out, chk = tmp_path / "in", tmp_path / "out", tmp_path / "chk"
    src.mkdir()
    for f in range(4):
        rows = "".join(f"{i},{i * 0.5}\n" for i in range(f * 250, (f + 1) * 250))
        bad = "oops,1.0\n" if f == 2 else ""  # one bad record: a dead letter, counted
        (src / f"part{f}.csv").write_text("id,x\n" + rows + bad)
    job = _write_job(tmp_path / "job.py", f"""
        import time
        import pyarrow.compute as pc
        import flowlearn.stream as fls

        def slow_double(t):
            time.sleep(0.1)
            return t.append_column("y", pc.multiply(t["x"], 2.0))

        def build():
            s = fls.from_files({str(src)!r}, format="csv", schema="id long, x double", batch_size=100,
                               handle_invalid="skip")
            return s.map_batches(slow_double, name="double").to_files({str(out)!r}, format="parquet",
                                                                      rolling_rows=300)
        """)
    r = _run([job, "--checkpoint-dir", chk, "--checkpoint-interval", "0.2", "--progress-interval", "0.1"])
    assert r.returncode == 0, r.stderr
    assert sorted(_read_ids(out)) == list(range(1000))
    t = pq.ParquetDataset([str(out / f) for f in os.listdir(out) if f.endswith(".parquet")]).read()
    assert t.column("y").to_pylist() == [x * 2.0 for x in t.column("x").to_pylist()]
    progress = [ln for ln in r.stderr.splitlines() if PROGRESS.match(ln)]
    assert len(progress) >= 2, r.stderr
    assert "\r" not in r.stderr  # not a terminal: plain lines
    ins = [int(PROGRESS.match(ln).group(1).replace(",", "")) for ln in progress]
    assert ins == sorted(ins) and ins[-1] <= 1000
    assert "job job.py finished" in r.stdout, r.stdout
    assert "rows in 1,000, rows out 1,000" in r.stdout and "dead letters 1," in r.stdout, r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_with_final_checkpoint_and_rerun_resumes(tmp_path, sig):
    out, chk, n = tmp_path / "out", tmp_path / "chk", 6000
    job = _write_job(tmp_path / "job.py", f"""
        import os, time
        import flowlearn.stream as fls

        def throttle(t):
            time.sleep(float(os.environ.get("SLOW", "0")))
            return t

        def build():
            s = fls.from_table({{"id": list(range({n}))}}, batch_size=100)
            return s.map_batches(throttle, name="throttle").to_files({str(out)!r}, format="parquet",
                                                                     rolling_rows=250)
        """)
    # throttled (>= 12 s for all rows) so the signal lands midway even on a loaded machine
    p = subprocess.Popen(_command() + [job, "--checkpoint-dir", str(chk), "--checkpoint-interval", "0.2",
                                       "--progress-interval", "0.1"],
                         env=_env(SLOW="0.2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in p.stderr], daemon=True)
    reader.start()
    try:
        deadline, seen = time.monotonic() + 60, []
        while time.monotonic() < deadline:  # wait for progress showing rows written
            try:
                ln = lines.get(timeout=0.5)
            except queue.Empty:
                assert p.poll() is None, "".join(seen)
                continue
            seen.append(ln)
            m = PROGRESS.match(ln)
            if m and int(m.group(2).replace(",", "")) >= 500:
                break
        else:
            pytest.fail("no progress line within 60 s:\n" + "".join(seen))
        p.send_signal(sig)
        stdout = p.stdout.read()
        assert p.wait(30) == 0, "".join(seen) + stdout
    finally:
        if p.poll() is None:
            p.kill()
    reader.join(5)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    stderr = "".join(seen + rest)
    assert f"{sig.name}: stopping the job with a final checkpoint" in stderr, stderr
    assert "Traceback" not in stderr
    assert "job job.py stopped" in stdout and "resume with: flowlearn run" in stdout, stdout
    assert (chk / "_LATEST").exists()
    first = _read_ids(out)
    assert 0 < len(first) < n and len(set(first)) == len(first)  # stopped midway; the final checkpoint committed
    if sig == signal.SIGTERM:
        return  # the resume is the same as after SIGINT; one rerun keeps the test short
    r = _run([job, "--checkpoint-dir", chk, "--checkpoint-interval", "0.2", "--progress-interval", "0.1"], SLOW="0")
    assert r.returncode == 0, r.stderr
    assert re.search(r"resumed from checkpoint \d+", r.stdout), r.stdout
    assert f"rows in {n - len(first):,}," in r.stdout, r.stdout  # only what the first run did not write
    ids = _read_ids(out)
    assert sorted(ids) == list(range(n))  # every row, no duplicates


def test_failing_job_exits_1_naming_the_error(tmp_path):
    job = _write_job(tmp_path / "job.py", f"""
        import flowlearn.stream as fls

        def check(t):
            raise ValueError("negative amount in row " + str(t["id"][0]))

        def build():
            s = fls.from_table({{"id": [7, 8, 9]}}, batch_size=2)
            return s.map_batches(check).to_files({str(tmp_path / "out")!r})
        """)
    r = _run([job, "--progress-interval", "0.1"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "flowlearn run: error: job failed: ValueError: negative amount in row 7 (at job.py:5 in check)" \
        in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert "job job.py failed" in r.stdout


def test_bad_job_files_are_reported_without_traceback(tmp_path, capsys):
    nobuild = _write_job(tmp_path / "nobuild.py", "x = 1\n")
    assert run_main([nobuild]) == 1
    assert "defines no build() function" in capsys.readouterr().err
    stream = _write_job(tmp_path / "stream.py", """
        import flowlearn.stream as fls

        def build():
            return fls.from_table({"x": [1]})
        """)
    assert run_main([stream]) == 1
    err = capsys.readouterr().err
    assert "starting the job failed: TypeError: fl.run takes sinks, got Stream" in err and "Traceback" not in err
    assert run_main([str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_progress_is_one_updating_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    m = {"rows_in": 1200, "rows_out": 1100, "elapsed_seconds": 75.0, "source_lag": {"s": 3}, "checkpoints": 2,
         "dead_letters": 1, "late_rows": 4, "operators": {"k": {"duplicates": 5}}}
    line = format_progress(m, 400.0)
    assert line == ("[0:01:15] rows in 1,200 out 1,100 | 400 rows/s | lag 3 | checkpoints 2 | dead letters 1 | "
                    "late rows 4 | duplicates 5")
    tty, plain = Tty(), io.StringIO()
    for out in (tty, plain):
        pr = Progress(out)
        pr.update(m)
        pr.update(m)
        pr.message("done")
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().count("\n") == 2  # updated in place, then ended
    assert "\r" not in plain.getvalue() and plain.getvalue().count("\n") == 3


def test_add_run_parser_options():
    parser = argparse.ArgumentParser(prog="flowlearn")
    add_run_parser(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["run", "job.py"])
    assert (a.job, a.checkpoint_dir, a.checkpoint_interval, a.progress_interval) == ("job.py", None, 10.0, 5.0)
    a = parser.parse_args(["run", "j.py", "--checkpoint-dir", "c", "--checkpoint-interval", "2",
                           "--progress-interval", "0"])
    assert (a.checkpoint_dir, a.checkpoint_interval, a.progress_interval) == ("c", 2.0, 0.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "j.py", "--checkpoint-interval", "0"])
