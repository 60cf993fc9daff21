"""Event time, windows and side outputs on a real PyFlink mini-cluster (``make test`` runs these in
``.venv-flink``). Oracle: the local engine on the same plan and rows (and NumPy for the window
counts); one JVM serves the module."""
from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytest.importorskip("pyflink")

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.engines import FlinkEngine, LocalEngine  # noqa: E402
from test_flink_engine import FailOnce  # noqa: E402

pytestmark = pytest.mark.flink

FLINK = FlinkEngine(parallelism=2)
SERIAL = FlinkEngine(parallelism=1)
BY_WINDOW = [("window_start", "ascending"), ("k", "ascending")]
WINDOWS = [{"event_time": 2.0}, {"event_time": 3.0, "slide": 1.0}]   # tumbling, sliding


def _events(n: int, seed: int, start: float = 0.0, span: float = 30.0, disorder: float = 0.4) -> pa.Table:
    """Rows in event-time order, each moved back by up to ``disorder`` seconds (so out of order
    within that bound); ``t`` in seconds, a key ``k`` and a value ``x``."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(start, start + span, n)) - rng.uniform(0.0, disorder, n)
    return fl.table({"id": np.arange(n), "t": t, "x": rng.normal(size=n), "k": rng.choice(["a", "b", "c"], n)})


def _windowed(s: fls.Stream, **window) -> fls.Stream:
    return s.window(time_col="t", max_out_of_orderness=0.5, **window).aggregate(
        by="k", n=("x", "count"), total=("x", "sum"), top=("x", "max"))


def _same_windows(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows > 0
    got, want = got.sort_by(BY_WINDOW), want.sort_by(BY_WINDOW)
    for c in want.column_names:   # the sums add a window's rows in another order at parallelism 2
        if c == "total":
            np.testing.assert_allclose(got.column(c).to_numpy(), want.column(c).to_numpy(), rtol=1e-12)
        else:
            assert got.column(c).equals(want.column(c)), c


def _run_local(*sinks) -> list[pa.Table]:
    fl.run(*sinks, engine=LocalEngine()).wait(60)
    return [s.result() for s in sinks]


def test_tumbling_and_sliding_event_time_windows_on_flink_at_parallelism_2_equal_the_local_engine():
    t = _events(3000, seed=1)

    def sinks(table: pa.Table) -> list:
        s = fls.from_table(table, batch_size=150)
        return [_windowed(s, **w).collect() for w in WINDOWS]

    want = _run_local(*sinks(t))
    on_flink = sinks(t)
    FLINK.run(*on_flink).wait(300)
    # rows out of order within max_out_of_orderness give the windows of the sorted rows
    for got, local, in_order, window in zip(on_flink, want, _run_local(*sinks(t.sort_by("t"))), WINDOWS):
        got = got.result()
        _same_windows(got, local)
        _same_windows(in_order, local)
        # and the counts are the rows of each window and key, by NumPy
        size, slide = int(window["event_time"] * 1000), int(window.get("slide", window["event_time"]) * 1000)
        ms = np.floor(t.column("t").to_numpy() * 1000).astype(np.int64)
        keys = t.column("k").to_numpy(zero_copy_only=False)
        starts = pc.cast(got.column("window_start"), pa.int64()).to_numpy()
        ends = pc.cast(got.column("window_end"), pa.int64()).to_numpy()
        assert (starts % slide == 0).all() and (ends - starts == size).all()
        for start, k, n in zip(starts, got.column("k").to_pylist(), got.column("n").to_pylist()):
            assert n == int(((ms >= start) & (ms < start + size) & (keys == k)).sum())
        assert got.column("n").to_numpy().sum() == t.num_rows * (size // slide)   # each row in size/slide windows


def test_files_read_in_parallel_give_the_local_windows_and_dead_letters(tmp_path):
    """Four CSV files read by two readers (Flink's watermark: the minimum of theirs), cut into
    tumbling and sliding windows, with malformed lines that go to the dead-letter side output."""
    t = _events(2000, seed=2, span=20.0)
    for i in range(4):
        fl.write_csv(t.slice(500 * i, 500), str(tmp_path / f"part-{i}.csv"))
        if i % 2:   # a malformed value, and a line with too few fields
            with open(tmp_path / f"part-{i}.csv", "a") as f:
                f.write(f"{10_000 + i},{5 * i}.5,not-a-number,a\n{20_000 + i},1.0\n")

    def plans(dead_letters_to: str | None = None):
        s = fls.from_files(str(tmp_path), format="csv", schema="id long, t double, x double, k string",
                           batch_size=120, handle_invalid="skip")
        dead = s.dead_letters()
        return ([_windowed(s, **w).collect() for w in WINDOWS],
                dead.collect() if dead_letters_to is None else dead.to_files(dead_letters_to, format="parquet"))

    windows, dead = plans()
    fl.run(*windows, dead, engine=LocalEngine()).wait(60)
    want_windows, want_dead = [w.result() for w in windows], dead.result()
    out = tmp_path / "dead"   # on Flink the dead letters go to a to_files() sink
    windows, dead = plans(str(out))
    FLINK.run(*windows, dead).wait(300)
    for got, want, per_row in zip(windows, want_windows, (1, 3)):   # a row is in 1 tumbling, 3 sliding windows
        _same_windows(got.result(), want)
        assert got.result().column("n").to_numpy().sum() == 2000 * per_row
    got_dead = pa.concat_tables([fl.read_parquet(str(p)) for p in sorted(out.iterdir()) if p.is_file()])
    by_line = [("source", "ascending"), ("location", "ascending")]
    assert want_dead.num_rows == 4 and got_dead.sort_by(by_line).equals(want_dead.sort_by(by_line))


class WaitFor:
    """Holds a batch back until ``marker`` exists (fails after a minute)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, t: pa.Table) -> pa.Table:
        deadline = time.monotonic() + 60
        while t.num_rows and not os.path.exists(self.marker):   # (the plan calls it on no rows for its schema)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.marker} did not appear: the first window never fired")
            time.sleep(0.01)
        return t


class TouchOnFirstWindow:
    """Creates ``marker`` once the window [0 s, 1 s) has come out."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, t: pa.Table) -> pa.Table:
        if 0 in pc.cast(t.column("window_start"), pa.int64()).to_pylist():
            open(self.marker, "a").close()
        return t


def test_late_rows_go_to_the_side_output_as_on_the_local_engine(tmp_path):
    """Rows of the window [0, 1) arriving after it fired are late, rows of a later window are not.
    On Flink the late batch comes from a second source held back until the window [0, 1) has
    come out (so on Flink's watermark too it has fired when they arrive); the local engine reads
    the same rows in that order."""
    on_time = _events(1000, seed=3, span=10.0, disorder=0.0)
    rng = np.random.default_rng(4)
    late = fl.table({"id": np.arange(1000, 1040), "t": np.r_[rng.uniform(0.1, 0.9, 25), rng.uniform(20, 21, 15)],
                     "x": rng.normal(size=40), "k": rng.choice(["a", "b"], 40)})

    def plan(s: fls.Stream):
        w = s.window(event_time=1.0, time_col="t", max_out_of_orderness=0.5, late="side").aggregate(
            n=("x", "count"), total=("x", "sum"))
        return w, w.late_data()

    w, lt = plan(fls.from_table(pa.concat_tables([on_time, late]), batch_size=100))
    fl.run(want_w := w.collect(), want_late := lt.collect(), engine=LocalEngine()).wait(60)
    marker = str(tmp_path / "window-0-fired")
    w, lt = plan(fls.from_table(on_time, batch_size=100).union(
        fls.from_table(late, batch_size=100).map_batches(WaitFor(marker))))
    job = SERIAL.run(got_w := w.map_batches(TouchOnFirstWindow(marker)).collect(), got_late := lt.collect())
    job.wait(300)
    assert want_late.result().num_rows == 25
    assert got_late.result().sort_by("id").equals(want_late.result().sort_by("id"))
    assert got_w.result().sort_by("window_start").equals(want_w.result().sort_by("window_start"))
    assert got_w.result().column("n").to_numpy().sum() == 1015   # the 15 rows of [20, 21) are not late


def test_count_and_processing_time_windows_on_flink(tmp_path):
    """Count windows take the rows in arrival order: at parallelism 1 the local engine's windows.
    Processing-time windows depend on the clock: every row is in one window of the given size."""
    t = _events(1000, seed=5)
    s = fls.from_table(t, batch_size=64)
    counts = s.window(count=70).aggregate(n=("x", "count"), total=("x", "sum"), first=("id", "first")).collect()
    processing = s.window(processing_time=0.05).aggregate(n=("x", "count")).collect()
    fl.run(want := s.window(count=70).aggregate(n=("x", "count"), total=("x", "sum"), first=("id", "first"))
           .collect(), engine=LocalEngine()).wait(60)
    SERIAL.run(counts, processing).wait(300)
    assert counts.result().sort_by("window_start").equals(want.result().sort_by("window_start"))
    assert counts.result().column("n").to_pylist() == [70] * 14 + [20]
    p = processing.result()
    assert p.column("n").to_numpy().sum() == 1000
    assert set(pc.subtract(p.column("window_end"), p.column("window_start")).to_pylist()) == {
        np.timedelta64(50, "ms").item()}


def test_a_failed_window_job_restarts_from_its_checkpoint_and_emits_each_window_once(tmp_path):
    t = _events(4000, seed=6, span=40.0)
    (want,) = _run_local(_windowed(fls.from_table(t, batch_size=80), event_time=2.0).collect())
    marker = tmp_path / "fail"
    marker.touch()
    sink = _windowed(fls.from_table(t, batch_size=80).map_batches(FailOnce(str(marker), 35)), event_time=2.0).collect()
    SERIAL.run(sink, checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval=0.2).wait(300)
    assert not marker.exists()                       # the failure happened
    got = sink.result()
    assert not got.select(["window_start", "k"]).group_by(["window_start", "k"]).aggregate(
        [("k", "count")]).filter(pc.field("k_count") > 1).num_rows   # no window twice
    _same_windows(got, want)


def test_what_is_not_translated_is_refused_by_node():
    t = _events(50, seed=7)
    with pytest.raises(NotImplementedError, match="reads the side output 'dead_letter' of 'from_table'"):
        FLINK.run(fls.from_table(t).dead_letters().collect())
    with pytest.raises(NotImplementedError, match="side output 'late' of 'filter'"):
        FLINK.run(fls.from_table(t).filter(pc.field("x") > 0).late_data().collect())
