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
