"""Windows, event time, watermarks and late data."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import flowlearn.stream as fls
from flowlearn.engines import run


def _events(n=2000, seed=1):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0, 100, n))  # seconds
    return pa.table({"ts": ts, "x": rng.normal(0, 1, n), "k": rng.integers(0, 3, n)})


def _oracle(t, size):
    # independent: plain numpy grouping of the sorted table
    w = np.floor(t.column("ts").to_numpy() * 1000 / (size * 1000)).astype(int)
    x = t.column("x").to_numpy()
    return {int(b): (int((w == b).sum()), float(x[w == b].sum())) for b in np.unique(w)}


def _local_shuffle(t, max_disp, seed=2):
    """Shuffle so that each row is at most ``max_disp`` seconds older than any row before it."""
    rng = np.random.default_rng(seed)
    ts = t.column("ts").to_numpy()
    key = ts + rng.uniform(0, max_disp, len(ts))
    return t.take(pa.array(np.argsort(key, kind="stable")))


def _as_dict(out, size):
    starts = out.column("window_start").cast(pa.int64()).to_numpy() // int(size * 1000)
    return {int(s): (int(n), float(v)) for s, n, v in zip(starts, out.column("n").to_pylist(), out.column("s").to_pylist())}


def test_count_windows():
    s = fls.from_table({"x": np.arange(10.0)}, batch_size=3)
    out = s.window(count=4).aggregate(n=("x", "count"), s=("x", "sum")).to_table()
    assert out.column("n").to_pylist() == [4, 4, 2]
    assert out.column("s").to_pylist() == [6.0, 22.0, 17.0]
    assert out.column("window_start").to_pylist() == [0, 4, 8]


def test_event_time_shuffled_within_bound_equals_sorted():
    t = _events()
    shuffled = _local_shuffle(t, 2.0)
    assert not np.all(np.diff(shuffled.column("ts").to_numpy()) >= 0)
    res = {}
    for name, data in (("sorted", t), ("shuffled", shuffled)):
        s = fls.from_table(data, batch_size=50)
        res[name] = s.window(event_time=5.0, time_col="ts", max_out_of_orderness=2.0).aggregate(
            n=("x", "count"), s=("x", "sum"))
    sorted_sink, shuffled_sink = res["sorted"].collect(), res["shuffled"].collect()
    job = run(sorted_sink, shuffled_sink).wait()
    a, b = _as_dict(sorted_sink.result(), 5.0), _as_dict(shuffled_sink.result(), 5.0)
    expected = _oracle(t, 5.0)
    assert a.keys() == b.keys() == expected.keys()
    for k in expected:
        assert a[k][0] == b[k][0] == expected[k][0]
        assert a[k][1] == pytest.approx(expected[k][1]) and b[k][1] == pytest.approx(expected[k][1])
    assert job.metrics["late_rows"] == 0


def test_windows_fire_on_watermark_before_the_end():
    fired_while_running = []
    t = _events(500)
    s = fls.from_table(t, batch_size=10)
    w = s.window(event_time=10.0, time_col="ts", max_out_of_orderness=1.0).aggregate(n=("x", "count"))
    sink = w.foreach(lambda b: fired_while_running.append(b.num_rows))
    run(sink).wait()
    assert len(fired_while_running) == 10  # one emission per window, as watermarks pass


@pytest.mark.parametrize("policy", ["drop", "side"])
def test_late_rows_follow_the_policy_and_are_counted(policy):
    t = _events(1000)
    ts = t.column("ts").to_numpy().copy()
    late_idx = [600, 700, 800]
    ts[late_idx] = ts[late_idx] - 30.0  # far older than the out-of-orderness bound
    data = t.set_column(0, "ts", pa.array(ts))
    w = fls.from_table(data, batch_size=25).window(event_time=5.0, time_col="ts", max_out_of_orderness=1.0,
                                                   late=policy)
    res = w.aggregate(n=("x", "count"))
    main, late = res.collect(), res.late_data().collect()
    job = run(main, late).wait()
    assert job.metrics["late_rows"] == 3
    assert sum(main.result().column("n").to_pylist()) == 997
    if policy == "side":
        assert sorted(late.result().column("ts").to_pylist()) == sorted(ts[late_idx].tolist())
    else:
        assert late.result().num_rows == 0


def test_keyed_aggregate_and_timestamp_column():
    ts = pa.array(np.array([0, 500, 1500, 2500, 999], dtype="int64")).cast(pa.timestamp("ms"))
    s = fls.from_table(pa.table({"ts": ts, "k": ["a", "b", "a", "a", "a"], "x": [1.0, 2.0, 3.0, 4.0, 5.0]}),
                       batch_size=2)
    out = s.window(event_time=1.0, time_col="ts", max_out_of_orderness=2.0).aggregate(
        by="k", s=("x", "sum")).to_table().sort_by([("window_start", "ascending"), ("k", "ascending")])
    assert out.column("k").to_pylist() == ["a", "b", "a", "a"]
    assert out.column("s").to_pylist() == [6.0, 2.0, 3.0, 4.0]


def test_processing_time_windows_with_a_fake_clock():
    now = [1000.0]
    batches = [{"x": [1.0, 2.0]}, {"x": [3.0]}, {"x": [4.0]}]

    def gen(i):
        if i >= len(batches):
            return None
        now[0] += 0.6  # each batch arrives 0.6 s after the previous one
        return batches[i]
    s = fls.generate(gen)
    out = s.window(processing_time=1.0).aggregate(s=("x", "sum")).collect()
    run(out, clock=lambda: now[0]).wait()
    assert out.result().column("s").to_pylist() == [3.0, 7.0]  # arrivals at .6, 1.2, 1.8 s


def test_window_argument_errors():
    s = fls.from_table({"x": [1.0]})
    with pytest.raises(ValueError, match="exactly one"):
        s.window(count=2, event_time=1.0)
    with pytest.raises(ValueError, match="time_col"):
        s.window(event_time=1.0)
    with pytest.raises(ValueError, match="late must be"):
        s.window(count=2, late="keep")
    with pytest.raises(ValueError, match=r"\(column, fn\)"):
        s.window(count=2).aggregate(n=("x", "median_of_medians"))


# -- sliding windows ---------------------------------------------------------------------------

def _sliding_oracle(ts_ms, x, size_ms, slide_ms):
    """Independent: for every window start k*slide, a boolean mask over all rows."""
    out = {}
    for k in range(int(ts_ms.min()) // slide_ms - size_ms // slide_ms - 1, int(ts_ms.max()) // slide_ms + 1):
        s = k * slide_ms
        m = (ts_ms >= s) & (ts_ms < s + size_ms)
        if m.any():
            out[s] = (int(m.sum()), float(x[m].sum()))
    return out


def _sliding_dict(out):
    starts = out.column("window_start").cast(pa.int64()).to_numpy()
    ends = out.column("window_end").cast(pa.int64()).to_numpy()
    return {int(s): (int(n), float(v), int(e)) for s, e, n, v in
            zip(starts, ends, out.column("n").to_pylist(), out.column("s").to_pylist())}


@pytest.mark.parametrize("size,slide", [(5.0, 1.0), (5.0, 2.0), (3.0, 3.0), (2.0, 3.0)],
                         ids=["multiple", "not-a-multiple", "tumbling", "gaps"])
def test_sliding_event_time_windows_match_a_numpy_oracle(size, slide):
    t = _events(3000)
    shuffled = _local_shuffle(t, 2.0)
    sinks = {}
    for name, data in (("sorted", t), ("shuffled", shuffled)):
        w = fls.from_table(data, batch_size=40).window(event_time=size, slide=slide, time_col="ts",
                                                       max_out_of_orderness=2.0)
        sinks[name] = w.aggregate(n=("x", "count"), s=("x", "sum")).collect()
    job = run(*sinks.values()).wait()
    ts_ms = np.floor(t.column("ts").to_numpy() * 1000).astype(np.int64)
    expected = _sliding_oracle(ts_ms, t.column("x").to_numpy(), int(size * 1000), int(slide * 1000))
    got = {name: _sliding_dict(s.result()) for name, s in sinks.items()}
    for name, g in got.items():
        assert g.keys() == expected.keys(), name
        for k, (n, v) in expected.items():
            assert g[k][0] == n and g[k][1] == pytest.approx(v) and g[k][2] == k + int(size * 1000)
        starts = sinks[name].result().column("window_start").cast(pa.int64()).to_pylist()
        assert starts == sorted(starts)                     # windows fire in start order
    assert job.metrics["late_rows"] == 0
    in_gaps = sum(op.get("rows_outside_windows", 0) for op in job.metrics["operators"].values())
    if size < slide:                                    # rows between windows belong to none
        held = {i for s in expected for i in np.flatnonzero((ts_ms >= s) & (ts_ms < s + int(size * 1000)))}
        assert in_gaps == 2 * (len(ts_ms) - len(held)) > 0
    else:                                               # each row is in floor or ceil(size / slide) windows
        assert in_gaps == 0
        total = sum(n for n, _, _ in got["sorted"].values())
        assert len(ts_ms) * (size // slide) <= total <= len(ts_ms) * -(-size // slide)


def test_sliding_windows_fire_as_the_watermark_passes():
    t = _events(500)
    emitted = []
    w = fls.from_table(t, batch_size=10).window(event_time=10.0, slide=5.0, time_col="ts", max_out_of_orderness=1.0)
    run(w.aggregate(n=("x", "count")).foreach(lambda b: emitted.append(b.num_rows))).wait()
    # windows start at -5, 0, 5, ..., 95: one emission per window, most of them before the end
    assert len(emitted) == 21 and all(n == 1 for n in emitted)


@pytest.mark.parametrize("policy", ["drop", "side"])
def test_sliding_late_rows_only_when_every_window_has_fired(policy):
    # windows of 4 s every 2 s; out-of-orderness 0: the watermark follows the newest row
    ts = [1.0, 2.5, 5.0, 6.9, 3.5, 0.5, 9.0]
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    # at 3.5: watermark 6.899; windows [0,4) fired (end 4 <= 6.9), [2,6) fired, so 3.5 is late;
    # at 0.5: windows [-2,2), [0,4) both fired: late too
    s = fls.from_table(pa.table({"ts": ts, "x": x}), batch_size=1)
    res = s.window(event_time=4.0, slide=2.0, time_col="ts", late=policy).aggregate(n=("x", "count"),
                                                                                     s=("x", "sum"))
    main, late = res.collect(), res.late_data().collect()
    job = run(main, late).wait()
    got = _sliding_dict(main.result())
    assert {k: v[:2] for k, v in got.items()} == {
        -2000: (1, 1.0), 0: (2, 3.0), 2000: (2, 5.0), 4000: (2, 7.0), 6000: (2, 11.0), 8000: (1, 7.0)}
    assert job.metrics["late_rows"] == 2
    if policy == "side":
        assert late.result().column("ts").to_pylist() == [3.5, 0.5]
    else:
        assert late.result().num_rows == 0
    # a row that missed a fired window but still fits a later one is not late: it counts there
    s2 = fls.from_table(pa.table({"ts": [1.0, 5.0, 3.0], "x": [1.0, 1.0, 1.0]}), batch_size=1)
    res2 = s2.window(event_time=4.0, slide=2.0, time_col="ts").aggregate(n=("x", "count"), s=("x", "sum"))
    sink2 = res2.collect()
    job2 = run(sink2).wait()
    # 3.0 arrives after [0,4) fired (watermark 4.999) but [2,6) is open
    assert {k: v[0] for k, v in _sliding_dict(sink2.result()).items()} == {-2000: 1, 0: 1, 2000: 2, 4000: 1}
    assert job2.metrics["late_rows"] == 0


def test_sliding_window_state_survives_a_restart(tmp_path):
    import threading

    chk = str(tmp_path / "chk")
    t = _events(2000, seed=5)
    ts_ms = np.floor(t.column("ts").to_numpy() * 1000).astype(np.int64)
    expected = _sliding_oracle(ts_ms, t.column("x").to_numpy(), 6000, 1500)

    def plan(stop_at=None, holder=None):
        seen = [0]

        def gate(b):
            seen[0] += b.num_rows
            if stop_at is not None and seen[0] >= stop_at and not holder["stopped"]:
                holder["ready"].wait(30)
                holder["job"].stop(wait=False)        # stops after this batch: a final checkpoint
                holder["stopped"] = True
            return b
        s = fls.from_table(t, batch_size=50).map_batches(gate, name="gate")
        w = s.window(event_time=6.0, slide=1.5, time_col="ts", max_out_of_orderness=3.0)
        return w.aggregate(n=("x", "count"), s=("x", "sum")).collect(), seen

    holder = {"ready": threading.Event(), "stopped": False}
    out1, seen1 = plan(stop_at=1000, holder=holder)
    holder["job"] = run(out1, checkpoint_dir=chk, checkpoint_interval=3600)
    holder["ready"].set()
    holder["job"].wait()
    assert seen1[0] == 1000
    out2, seen2 = plan()
    job2 = run(out2, checkpoint_dir=chk).wait()
    assert job2.metrics["restored_from"] is not None and seen2[0] == 1000   # nothing read twice
    first, second = _sliding_dict(out1.result()), _sliding_dict(out2.result())
    assert first and second and not first.keys() & second.keys()     # each window fired once, before or after
    got = {**first, **second}
    assert got.keys() == expected.keys()
    for k, (n, v) in expected.items():
        assert got[k][0] == n and got[k][1] == pytest.approx(v)
    # a plan with other windows refuses the checkpoint instead of mixing panes
    s = fls.from_table(t, batch_size=50).map_batches(lambda b: b, name="gate")
    other = s.window(event_time=6.0, slide=2.0, time_col="ts", max_out_of_orderness=3.0).aggregate(n=("x", "count"))
    with pytest.raises(ValueError, match="sliding by 1500 ms"):
        run(other.collect(), checkpoint_dir=chk).wait()


def test_sliding_processing_time_windows_with_a_fake_clock():
    now = [1000.0]
    arrivals = [0.6, 1.2, 1.8, 2.4, 3.1]          # seconds after 1000: one row each, x = 1, 2, 3, ...

    def gen(i):
        if i >= len(arrivals):
            return None
        now[0] = 1000.0 + arrivals[i]
        return {"x": [float(i + 1)]}
    s = fls.generate(gen)
    out = s.window(processing_time=1.0, slide=0.5).aggregate(s=("x", "sum"), n=("x", "count")).collect()
    run(out, clock=lambda: now[0]).wait()
    r = out.result()
    starts = (r.column("window_start").cast(pa.int64()).to_numpy() - 1_000_000).tolist()
    # windows [k/2, k/2 + 1): 0.6 in [0,1) [0.5,1.5); 1.2 in [0.5,1.5) [1,2); 1.8 in [1,2) [1.5,2.5); ...
    assert starts == [0, 500, 1000, 1500, 2000, 2500, 3000]
    assert r.column("s").to_pylist() == [1.0, 3.0, 5.0, 7.0, 4.0, 5.0, 5.0]
    assert r.column("n").to_pylist() == [1, 2, 2, 2, 1, 1, 1]


def test_sliding_window_argument_errors():
    s = fls.from_table({"x": [1.0], "ts": [0.0]})
    with pytest.raises(ValueError, match="count windows are tumbling"):
        s.window(count=2, slide=1)
    with pytest.raises(ValueError, match="slide must be > 0"):
        s.window(event_time=1.0, slide=0, time_col="ts")
    with pytest.raises(ValueError, match="at least 0.001 seconds"):
        s.window(event_time=1.0, slide=0.0001, time_col="ts")
