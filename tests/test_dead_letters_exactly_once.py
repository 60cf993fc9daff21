"""Dead letters are output like any other: after a stop or a kill -9 and a restart mid-file, every
good row and every bad line is in the committed output exactly once, and each run's
``dead_letters`` metric counts what that run emitted (issue 8, defect 3)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flowlearn.stream as fls
from flowlearn.stream.sinks import _FileWriterOp
from flowlearn.stream.source import TableSource
from stream_job_helper import dead_letters_job
from test_checkpoint import HELPER, _wait_for

GOOD, BAD, FILES = 300, 30, 3


def _write_inputs(d):
    """FILES CSV files of GOOD good lines with BAD bad lines spread among them; returns the good
    ids and the (file, line) of every bad line."""
    d.mkdir()
    ids, bad = [], []
    for f in range(FILES):
        name, lines = f"f{f}.csv", ["id,x"]
        good = iter(range(f * GOOD, (f + 1) * GOOD))
        for k in range(GOOD + BAD):
            if k % 11 == 5:  # 30 of the 330 lines
                lines.append(f"{k},not-a-number" if k % 2 else f"id{k},1.5")
                bad.append((name, len(lines)))  # 1-based line number, the header is line 1
            else:
                i = next(good)
                ids.append(i)
                lines.append(f"{i},{i * 0.5}")
        (d / name).write_text("\n".join(lines) + "\n")
        os.utime(d / name, (1000 + f, 1000 + f))  # read in this order
    assert len(ids) == FILES * GOOD and len(bad) == FILES * BAD
    return ids, bad


def _committed(d, prefix=""):
    """The committed files of a ``to_files`` sink in ``d`` (those named ``prefix...``) as one table."""
    if not d.exists():
        return None
    files = sorted(f for f in os.listdir(d) if f.startswith(prefix) and not f.startswith("."))
    return pa.concat_tables([pq.read_table(os.path.join(d, f)) for f in files]) if files else None


def _dead_letters(d, prefix=""):
    t = _committed(d, prefix)
    if t is None:
        return []
    return sorted((os.path.basename(s.removeprefix("file ")), int(loc.removeprefix("line ")))
                  for s, loc in zip(t.column("source").to_pylist(), t.column("location").to_pylist()))


def _assert_exactly_once(tmp_path, ids, bad):
    got = _committed(tmp_path / "out")
    assert sorted(got.column("id").to_pylist()) == sorted(ids)  # every good row, exactly once
    assert _dead_letters(tmp_path / "dead") == sorted(bad)       # every bad line, exactly once
    for d in ("out", "dead"):
        assert not [f for f in os.listdir(tmp_path / d / ".inprogress") if f.endswith(".tmp")]


def _run_stopping(make_sinks, stop_after, **options):
    """Run the plan ``make_sinks(each_batch)`` and stop it once ``each_batch`` has seen
    ``stop_after`` rows (None: run to the end); returns the job's metrics and the rows seen."""
    started, holder, rows = threading.Event(), {}, [0]

    def each_batch(t):
        rows[0] += t.num_rows
        if stop_after is not None and rows[0] >= stop_after:
            started.wait()
            holder["job"].stop(wait=False)
        return t

    holder["job"] = job = fls.run(*make_sinks(each_batch), **options)
    started.set()
    return job.wait().metrics, rows[0]


def test_stop_and_restart_mid_file_commits_every_dead_letter_once(tmp_path):
    ids, bad = _write_inputs(tmp_path / "in")
    chk = str(tmp_path / "chk")
    seen, emitted = 0, 0
    # run 1 stops 60 rows into the first file, run 2 100 rows into the second, run 3 finishes
    for run_no, stop_after in enumerate((60, 340, None)):
        m, rows = _run_stopping(lambda each_batch: dead_letters_job(
            str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path / "dead"), each_batch),
            stop_after, checkpoint_dir=chk, checkpoint_interval=0.0)
        assert (m["restored_from"] is not None) == (run_no > 0)
        if stop_after is not None:
            assert rows == stop_after  # stopped mid-file (batches of 20 rows)
        seen += rows
        opened = sum(o.get("files_opened", 0) for o in m["operators"].values())
        assert m["dead_letters"] == BAD * opened  # a file resumed mid-way does not send its dead letters again
        emitted += m["dead_letters"]
        assert len(_dead_letters(tmp_path / "dead")) == emitted  # what a stopped run emitted is committed
    assert seen == FILES * GOOD
    _assert_exactly_once(tmp_path, ids, bad)


def test_kill_9_and_restart_mid_file_commits_every_dead_letter_once(tmp_path):
    ids, bad = _write_inputs(tmp_path / "in")
    args = [sys.executable, HELPER, "dead_letters"] + [str(tmp_path / d) for d in ("in", "out", "dead", "chk")]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    rng = random.Random(8)
    out = tmp_path / "out"
    n_committed = lambda: len([f for f in os.listdir(out) if not f.startswith(".")]) if out.exists() else 0
    for _ in range(3):
        before = n_committed()
        p = subprocess.Popen(args + ["0.05"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # kill once this run has committed something, at a random point after that
            assert _wait_for(lambda: n_committed() > before or p.poll() is not None, 60)
            if p.poll() is not None:  # it finished first: nothing left to kill
                assert p.returncode == 0, p.stderr.read().decode()[-2000:]
                break
            time.sleep(rng.uniform(0.0, 0.8))
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        finally:
            if p.poll() is None:
                p.kill()
    r = subprocess.run(args + ["0"], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    report = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert report["restored_from"] is not None
    assert report["dead_letters"] == BAD * report["files_opened"]
    _assert_exactly_once(tmp_path, ids, bad)


@pytest.mark.kafka
def test_kafka_dead_letters_once_across_stop_and_restart(kafka_broker, tmp_path):
    from test_kafka_stream import _produce, _topic

    bs, topic = kafka_broker, _topic(kafka_broker, partitions=1)
    messages = [b"not json" if i % 10 == 3 else json.dumps({"id": i, "x": i * 0.5}).encode() for i in range(300)]
    _produce(bs, topic, messages, partitions=1)

    def plan(each_batch):
        s = fls.from_kafka(topic, bs, schema="id long, x double", start="earliest", stop_at_end=True,
                           handle_invalid="skip")
        return [s.map_batches(each_batch, name="each_batch").to_files(str(tmp_path / "out")),
                s.dead_letters().to_files(str(tmp_path / "dead"))]

    seen = 0
    for stop_after in (60, None):
        seen += _run_stopping(plan, stop_after, checkpoint_dir=str(tmp_path / "chk"), checkpoint_interval=0.0,
                              max_batch_rows=20)[1]
    assert seen == 270
    assert sorted(_committed(tmp_path / "out").column("id").to_pylist()) == [i for i in range(300) if i % 10 != 3]
    dead = _committed(tmp_path / "dead").column("location").to_pylist()
    assert sorted(dead) == sorted(f"partition 0, offset {i}" for i in range(3, 300, 10))


def test_dead_letters_next_to_rows_survive_a_crash_between_checkpoint_and_commit(tmp_path, monkeypatch):
    # rows and dead letters in one directory: restoring one sink must not delete the other's files
    ids, bad = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"

    def plan():
        s = fls.from_files(str(tmp_path / "in"), format="csv", schema="id long, x double", handle_invalid="skip",
                           batch_size=20)
        return [s.to_files(str(out)), s.dead_letters().to_files(str(out), prefix="dead")]

    commit = _FileWriterOp.notify_checkpoint_complete

    def crash_before_commit(self, checkpoint_id):
        if checkpoint_id == 16:  # one checkpoint per poll of 20 rows: poll 16 opens f1, with its dead letters
            raise OSError("crashed after checkpoint 16 was written, before its files were committed")
        commit(self, checkpoint_id)

    monkeypatch.setattr(_FileWriterOp, "notify_checkpoint_complete", crash_before_commit)
    with pytest.raises(OSError, match="crashed after checkpoint 16"):
        fls.run(*plan(), checkpoint_dir=str(tmp_path / "chk"), checkpoint_interval=0.0).wait()
    monkeypatch.undo()
    uncommitted = os.listdir(out / ".inprogress")
    assert any(f.startswith("part-") for f in uncommitted) and any(f.startswith("dead-") for f in uncommitted)
    assert fls.run(*plan(), checkpoint_dir=str(tmp_path / "chk")).wait().metrics["restored_from"] == 16
    assert sorted(_committed(out, "part-").column("id").to_pylist()) == sorted(ids)
    assert _dead_letters(out, "dead-") == sorted(bad)
    assert not os.listdir(out / ".inprogress")


class _ReportsOnRestore(TableSource):
    """A user source that says on a side output where it resumes."""

    def restore_state(self, state):
        super().restore_state(state)
        self.ctx.side("resumed_at", pa.table({"row": [self.pos]}))


def test_output_of_a_restoring_operator_is_committed(tmp_path):
    # the engine restores downstream operators first: a sink has discarded its uncommitted files
    # before anything upstream writes to it
    def plan(each_batch):
        s = fls.from_source(lambda: _ReportsOnRestore(pa.table({"x": list(range(100))}), 10))
        return [s.map_batches(each_batch, name="each_batch").to_files(str(tmp_path / "out")),
                s.side_output("resumed_at").to_files(str(tmp_path / "resumed"))]

    chk = str(tmp_path / "chk")
    assert _run_stopping(plan, 30, checkpoint_dir=chk, checkpoint_interval=0.0)[1] == 30
    assert _run_stopping(plan, None, checkpoint_dir=chk)[1] == 70
    assert _committed(tmp_path / "resumed").column("row").to_pylist() == [30]
    assert sorted(_committed(tmp_path / "out").column("x").to_pylist()) == list(range(100))
