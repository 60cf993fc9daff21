"""Checkpoints and recovery: stop/restart resumes, window state survives, files exactly-once
after SIGKILL of the job's process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.engines import run

HELPER = os.path.join(os.path.dirname(__file__), "stream_job_helper.py")


def test_restart_resumes_from_source_offsets_and_window_state(tmp_path):
    chk = str(tmp_path / "chk")
    data = pa.table({"ts": np.arange(1000) * 0.1, "x": np.ones(1000)})

    def plan(stop_after=None):
        seen = [0]

        def gate(t):
            seen[0] += t.num_rows
            return t
        s = fls.from_table(data, batch_size=10).map_batches(gate, name="gate")
        out = s.window(event_time=10.0, time_col="ts").aggregate(n=("x", "count")).collect()
        return out, seen

    out1, seen1 = plan()
    job = run(out1, checkpoint_dir=chk, checkpoint_interval=0.0)  # checkpoint after every poll
    job.stop()  # immediately: only part of the input is read
    first = out1.result()
    out2, seen2 = plan()
    job2 = run(out2, checkpoint_dir=chk).wait()
    assert job2.metrics["restored_from"] is not None
    assert seen1[0] + seen2[0] == 1000  # nothing read twice, nothing skipped
    counts = (first.column("n").to_pylist() if first.num_rows else []) + out2.result().column("n").to_pylist()
    assert counts == [100] * 10  # windows open at the checkpoint were restored, not lost


def test_checkpoint_from_another_plan_is_refused(tmp_path):
    chk = str(tmp_path / "chk")
    run(fls.from_table({"x": [1]}).map_batches(lambda t: t).window(count=5).tables().collect(),
        checkpoint_dir=chk).wait()
    import pytest
    with pytest.raises(ValueError, match="not in this plan"):
        run(fls.from_table({"x": [1]}).collect(), checkpoint_dir=chk).wait()


def _wait_for(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_files_end_to_end_exactly_once_after_sigkill(tmp_path):
    src, out, chk = tmp_path / "in", tmp_path / "out", tmp_path / "chk"
    src.mkdir()
    n_files, rows = 12, 1000

    def drop_file(i):
        t = pa.table({"id": np.arange(i * rows, (i + 1) * rows), "x": np.arange(rows) * 0.01})
        fl.write_csv(t, str(src / f"f{i:03d}.csv"))  # written to a hidden name, renamed into place

    for i in range(4):
        drop_file(i)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    p = subprocess.Popen([sys.executable, HELPER, "files", str(src), str(out), str(chk), "1", "0.02"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for i in range(4, 8):  # files arrive while the job runs
            time.sleep(0.15)
            drop_file(i)
        committed = lambda: len([f for f in os.listdir(out) if f.endswith(".parquet")]) if out.exists() else 0
        assert _wait_for(lambda: committed() >= 3, 60), p.stderr.read1().decode() if p.poll() is not None else ""
        assert p.poll() is None, "the job ended before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    for i in range(8, n_files):
        drop_file(i)
    # restart from the checkpoint directory; not watching: drain what is there and end
    r = subprocess.run([sys.executable, HELPER, "files", str(src), str(out), str(chk), "0", "0"], env=env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    report = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert report["restored_from"] is not None
    files = sorted(f for f in os.listdir(out) if f.endswith(".parquet"))
    got = pa.concat_tables([pq.read_table(out / f) for f in files])
    ids = got.column("id").to_numpy()
    assert len(ids) == n_files * rows and len(np.unique(ids)) == n_files * rows  # every row, exactly once
    np.testing.assert_allclose(got.column("y").to_numpy(), (got.column("x").to_numpy() - 10.0) / 2.0)
    assert not [f for f in os.listdir(out / ".inprogress") if f.endswith(".tmp")]
