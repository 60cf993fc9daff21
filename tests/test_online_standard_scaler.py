"""OnlineStandardScaler / OnlineStandardScalerModel (Flink ML's windowed online standard scaler).

Oracles, none derived from the code under test: NumPy's mean and ``std(ddof=1)`` of each prefix
of the input (every version holds the statistics of all rows up to its window's end), the batch
``StandardScaler`` fitted on the same prefix (model data and transform), scikit-learn's
``StandardScaler`` corrected to the sample std on the whole input, and hand-computed version
choices for event time and ``max_allowed_model_delay_ms``.
"""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_digits, load_wine
from sklearn.preprocessing import StandardScaler as SkStandardScaler

import flowlearn as fl
from online_steps import versions_of_step  # noqa: E402
from flowlearn.feature import StandardScaler, StandardScalerModel
from flowlearn.feature.online_scalers import (
    OnlineStandardScaler,
    OnlineStandardScalerModel,
    OnlineStandardScalerTrainer,
)
from flowlearn.linalg import SparseVector
from flowlearn.trainer import OperatorState


@pytest.fixture(scope="module")
def wine():
    return load_wine().data


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:300]  # many zeros, some columns all zero


def vec(v, name):
    return np.asarray(v.column(name)[0].as_py())


def version_of(v):
    return v.column("model_version")[0].as_py()


def ipc_round_trip(state):
    """A state through bytes (JSON + Arrow IPC), as a checkpoint stores it."""
    return OperatorState.from_bytes(state.to_bytes())


# ------------------------------------------------------------------------------------ params


def test_param_defaults_and_set():
    est = OnlineStandardScaler()
    assert est.get_params() == {
        "input_col": "input", "output_col": "output", "with_mean": False, "with_std": True,
        "model_version_col": "model_version", "time_col": None, "max_allowed_model_delay_ms": 0,
        "windows": "count", "window_rows": 1000, "window_seconds": 1.0}
    est.set(windows="processing_time", window_seconds=0.5, max_allowed_model_delay_ms=100)
    assert (est.windows, est.window_seconds, est.max_allowed_model_delay_ms) == ("processing_time", 0.5, 100)
    model = OnlineStandardScaler(input_col="f", with_mean=True, time_col="t").fit({"f": [[1.0]], "t": [0.0]})
    assert isinstance(model, OnlineStandardScalerModel)
    assert model.get_params() == {"input_col": "f", "output_col": "output", "with_mean": True, "with_std": True,
                                  "model_version_col": "model_version", "time_col": "t",
                                  "max_allowed_model_delay_ms": 0}


@pytest.mark.parametrize("name, value, rule", [
    ("window_rows", 0, r"gt\(0\)"), ("window_seconds", -1.0, r"gt\(0\)"),
    ("max_allowed_model_delay_ms", -5, r"in_range\(0, 9223372036854775807\)"),
    ("max_allowed_model_delay_ms", 2**63, r"in_range"), ("windows", "session", "in_array"),
])
def test_bad_params_name_the_rule(name, value, rule):
    with pytest.raises(ValueError, match=rf"OnlineStandardScaler: parameter '{name}' = .* violates {rule}"):
        OnlineStandardScaler(**{name: value})


# ----------------------------------------------------------------- versions equal prefix statistics


@pytest.mark.parametrize("chunks", [None, 7, 40])
def test_each_version_equals_batch_scaler_on_the_prefix(wine, chunks):
    t = fl.table({"input": wine})
    data = t if chunks is None else iter(t.to_batches(max_chunksize=chunks))
    versions = list(OnlineStandardScaler(window_rows=40).fit_versions(data))
    ends = [40, 80, 120, 160, 178]  # four full windows, then the rest at the end of the input
    assert [version_of(v) for v in versions] == [1, 2, 3, 4, 5]
    for v, end in zip(versions, ends):
        prefix = wine[:end]
        np.testing.assert_allclose(vec(v, "mean"), prefix.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(vec(v, "std"), prefix.std(axis=0, ddof=1), rtol=1e-11)
        (batch,) = StandardScaler().fit({"input": prefix}).get_model_data()
        np.testing.assert_allclose(vec(v, "std"), vec(batch, "std"), rtol=1e-11)
        assert v.column("timestamp")[0].as_py() == 2**63 - 1  # no event time: fresh for every row


@pytest.mark.parametrize("with_mean, with_std", [(True, True), (False, True), (True, False)])
def test_final_model_equals_batch_standard_scaler_and_sklearn(wine, with_mean, with_std):
    t = fl.table({"input": wine})
    online = OnlineStandardScaler(with_mean=with_mean, with_std=with_std, window_rows=50).fit(t)
    batch = StandardScaler(with_mean=with_mean, with_std=with_std).fit(t)
    got = fl.linalg.to_numpy(online.transform(t).column("output"))
    np.testing.assert_allclose(got, fl.linalg.to_numpy(batch.transform(t).column("output")), rtol=1e-10, atol=1e-12)
    n = len(wine)
    sk = SkStandardScaler(with_mean=with_mean, with_std=with_std).fit_transform(wine)
    if with_std:
        sk = sk * np.sqrt((n - 1) / n)  # scikit-learn's population std -> sample std
    np.testing.assert_allclose(got, sk, rtol=1e-10, atol=1e-12)
    assert online.transform(t).column("model_version").to_pylist() == [4] * n


def test_single_row_has_zero_std_and_is_stable_far_from_zero():
    (v,) = OnlineStandardScaler().fit_versions({"input": [[5.0, -1.0]]})
    assert vec(v, "std").tolist() == [0.0, 0.0]
    # mean 1e9, spread ~1: the textbook sum-of-squares formula loses every digit here
    x = 1e9 + np.random.default_rng(3).normal(size=(500, 2))
    versions = list(OnlineStandardScaler(window_rows=64).fit_versions({"input": x}))
    for i, v in enumerate(versions):
        prefix = x[:min(64 * (i + 1), 500)]
        np.testing.assert_allclose(vec(v, "std"), prefix.std(axis=0, ddof=1), rtol=1e-6)


# ------------------------------------------------------------------------------------- windows


def test_count_windows_run_across_batches_and_emit_finish():
    tr = OnlineStandardScaler(window_rows=3).trainer()
    assert tr.emit() is None and tr.finish() == []
    assert tr.partial_fit({"input": [[1.0], [2.0]]}) == []
    (v1,) = tr.partial_fit({"input": [[3.0], [4.0]]})
    assert version_of(v1) == 1 and vec(v1, "mean").tolist() == [2.0]
    v2 = tr.emit()  # on demand: rows 1-4
    assert version_of(v2) == 2 and vec(v2, "mean").tolist() == [2.5]
    assert tr.emit() is None
    (v3,) = tr.partial_fit({"input": [[5.0], [6.0], [7.0]]})  # the count window still ends at row 6
    assert version_of(v3) == 3 and vec(v3, "mean").tolist() == [3.5] and tr.rows_seen == 7
    (v4,) = tr.finish()
    assert version_of(v4) == 4 and vec(v4, "mean").tolist() == [4.0]
    assert tr.finish() == []


def test_global_window_emits_once_at_the_end(wine):
    versions = list(OnlineStandardScaler(windows="global").fit_versions(
        iter(fl.table({"input": wine}).to_batches(max_chunksize=50))))
    assert len(versions) == 1 and version_of(versions[0]) == 1
    np.testing.assert_allclose(vec(versions[0], "std"), wine.std(axis=0, ddof=1), rtol=1e-11)


def test_processing_time_windows_with_a_clock():
    now = [100.2]
    tr = OnlineStandardScaler(windows="processing_time", window_seconds=1.0).trainer(clock=lambda: now[0])
    assert tr.partial_fit({"input": [[1.0], [3.0]]}) == []       # window [100, 101)
    now[0] = 100.9
    assert tr.partial_fit({"input": [[5.0]]}) == [] and tr.poll() == []
    now[0] = 101.5
    (v1,) = tr.partial_fit({"input": [[7.0]]})                   # closes [100, 101) before adding the row
    assert version_of(v1) == 1 and vec(v1, "mean").tolist() == [3.0] and tr.rows_seen == 4
    assert tr.poll(now=101.99) == []
    (v2,) = tr.poll(now=102.0)                                   # an engine timer closes [101, 102)
    assert version_of(v2) == 2 and vec(v2, "mean").tolist() == [4.0]
    now[0] = 105.0
    assert tr.poll() == [] and tr.partial_fit(pa.table({})) == []  # nothing new: no version
    tr.partial_fit({"input": [[9.0]]})
    (v3,) = tr.finish()
    assert version_of(v3) == 3 and vec(v3, "mean").tolist() == [5.0]


# ---------------------------------------------------------------------------- event-time windows


def test_event_time_windows_close_on_watermarks_and_late_rows_join_the_next_version(wine):
    """Tumbling event-time windows of 2 s: a window's rows join the statistics when the watermark
    passes its last millisecond (window end - 1, Flink ML's maxTimestamp, is the version's
    timestamp); version i equals scikit-learn's StandardScaler on every row of windows 1..i (and
    the late rows that came before it)."""
    x = wine[:9, :3]
    t = np.array([0.1, 1.5, 2.2, 0.7, 3.9, 2.5, 4.1, 5.0, 1.0])   # seconds, out of order
    est = OnlineStandardScaler(windows="event_time", window_seconds=2.0, time_col="t")
    tr = est.trainer()
    tab = fl.table({"input": x, "t": t})
    assert tr.partial_fit(tab.slice(0, 6)) == []                 # rows wait in windows [0, 2), [2, 4)
    assert tr.on_watermark(1998) == []
    (v1,) = tr.on_watermark(1999)                                # [0, 2) closes: rows 0, 1, 3
    assert version_of(v1) == 1 and v1.column("timestamp")[0].as_py() == 1999
    sk = SkStandardScaler().fit(x[[0, 1, 3]])
    np.testing.assert_allclose(vec(v1, "mean"), sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(vec(v1, "std"), x[[0, 1, 3]].std(0, ddof=1), rtol=1e-12)
    assert tr.partial_fit(tab.slice(6, 3)) == [] and tr.late_rows == 1   # row 8 (t = 1.0) is late
    (v2,) = tr.on_watermark(4500)                                 # [2, 4) closes: rows 2, 4, 5 + late row 8
    assert version_of(v2) == 2 and v2.column("timestamp")[0].as_py() == 3999
    np.testing.assert_allclose(vec(v2, "mean"), x[[0, 1, 3, 2, 4, 5, 8]].mean(0), rtol=1e-12)
    np.testing.assert_allclose(vec(v2, "std"), x[[0, 1, 3, 2, 4, 5, 8]].std(0, ddof=1), rtol=1e-12)
    (v3,) = tr.finish()                                           # [4, 6): rows 6, 7
    assert version_of(v3) == 3 and v3.column("timestamp")[0].as_py() == 5999
    np.testing.assert_allclose(vec(v3, "std"), x.std(0, ddof=1), rtol=1e-12)
    with pytest.raises(ValueError, match="windows='event_time' needs time_col"):
        OnlineStandardScaler(windows="event_time").trainer()


def test_event_time_windows_on_a_stream_with_watermarks_and_a_checkpoint(digits):
    """On a stream, watermarks from with_watermarks close the windows while the data flows; the
    versions equal numpy's statistics of the rows of each window prefix; a trainer restored from a
    mid-stream snapshot (through Arrow IPC) continues with the same versions."""
    import flowlearn.stream as fls

    rng = np.random.default_rng(5)
    n = 300
    x = digits[:n, 20:26]
    t = np.sort(rng.uniform(0, 30, n)) + rng.uniform(-0.4, 0.4, n)     # out of order by < 0.8 s
    data = fl.table({"input": x, "t": t})
    est = OnlineStandardScaler(windows="event_time", window_seconds=5.0, time_col="t")
    stream = fls.from_table(data, batch_size=20).with_watermarks("t", max_out_of_orderness=1.0)
    versions = fls.model_stream(est.fit(stream)).collect()
    job = fl.run(versions)
    job.wait()
    got = [fls.read_version(v).model_data for v in versions.tables()]
    ends = sorted({int(np.floor(ti / 5.0)) * 5 + 5 for ti in t})
    assert [version_of(v) for v in got] == list(range(1, len(ends) + 1))
    assert [v.column("timestamp")[0].as_py() for v in got] == [e * 1000 - 1 for e in ends]
    for v, end in zip(got, ends):
        rows = t < end
        np.testing.assert_allclose(vec(v, "mean"), x[rows].mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(vec(v, "std"), x[rows].std(0, ddof=1), rtol=1e-12, atol=1e-12)
    assert job.metrics["late_rows"] == 0

    # the trainer alone, fed the same batches and watermarks, with a snapshot halfway
    def drive(trainer, parts):
        out, top = [], -np.inf
        for part in parts:
            out += trainer.partial_fit(part)
            top = max(top, float(np.max(part.column("t").to_numpy())))
            out += trainer.on_watermark(int(np.floor((top - 1.0) * 1000)) - 1)
        return out

    parts = [data.slice(i, 20) for i in range(0, n, 20)]
    first = est.trainer()
    before = drive(first, parts[:7])
    assert first._open                                               # a window is open at the snapshot
    second = est.trainer().restore_state(ipc_round_trip(first.snapshot_state()))
    after = drive(second, parts[7:]) + second.finish()
    assert len(before + after) == len(got)
    assert all(a.equals(b) for a, b in zip(before + after, got))


# ------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("sparse", [False, True])
def test_snapshot_restore_continues_exactly(digits, sparse):
    t = fl.table({"input": sps.csr_matrix(digits) if sparse else digits})
    est = OnlineStandardScaler(window_rows=64)
    cut = [t.slice(0, 100), t.slice(100, 50), t.slice(150)]
    straight = est.trainer()
    v_straight = [v for part in cut for v in straight.partial_fit(part)] + straight.finish()
    first = est.trainer()
    v1 = first.partial_fit(cut[0])
    stored = ipc_round_trip(first.snapshot_state())
    meta = stored.data
    assert meta["rows_seen"] == 100 and meta["version"] == 1 and meta["last_emit_rows"] == 64
    second = est.trainer().restore_state(stored)
    assert isinstance(second, OnlineStandardScalerTrainer)
    v2 = second.partial_fit(cut[1]) + second.partial_fit(cut[2]) + second.finish()
    assert len(v1 + v2) == len(v_straight) == 5
    assert all(a.equals(b) for a, b in zip(v1 + v2, v_straight))


def test_restore_checks_state():
    tr = OnlineStandardScaler(window_rows=4).trainer()
    fresh = OnlineStandardScaler(window_rows=4).trainer().restore_state(tr.snapshot_state())
    assert fresh.dim is None and fresh.rows_seen == 0
    tr.partial_fit({"input": [[1.0], [2.0]]})
    with pytest.raises(ValueError, match="same windows"):
        OnlineStandardScaler(window_rows=5).trainer().restore_state(tr.snapshot_state())
    with pytest.raises(ValueError, match="has format None, this trainer reads 'flowlearn.online_standard_scaler_state'"):
        tr.restore_state(OperatorState({}, {"mean": pa.table({"mean": [1.0]})}))


# ------------------------------------------------------------------- event time and model delay


def test_version_timestamps_are_the_largest_event_time_seen():
    t = fl.table({"input": [[1.0], [2.0], [3.0], [4.0], [5.0]], "t": [10.0, 12.5, 11.0, 20.0, 19.0]})
    versions = list(OnlineStandardScaler(window_rows=2, time_col="t").fit_versions(t))
    assert [v.column("timestamp")[0].as_py() for v in versions] == [12500, 20000, 20000]
    ts = pa.array([10_000, 12_500, 11_000, 20_000, 19_000], pa.timestamp("ms"))
    versions2 = list(OnlineStandardScaler(window_rows=2, time_col="t").fit_versions(t.set_column(1, "t", ts)))
    assert all(a.equals(b) for a, b in zip(versions, versions2))


def history():
    """Three versions: means 0, 10, 20 with timestamps 1000, 2000, 3000 ms."""
    return pa.table({"mean": fl.linalg.from_numpy(np.array([[0.0], [10.0], [20.0]])),
                     "std": fl.linalg.from_numpy(np.array([[1.0], [1.0], [1.0]])),
                     "model_version": pa.array([1, 2, 3], pa.int64()),
                     "timestamp": pa.array([1000, 2000, 3000], pa.int64())})


@pytest.mark.parametrize("delay, times, expected", [
    # the newest version with t - delay <= timestamp <= t, else the first version after t
    (0, [1.0, 1.5, 2.0, 2.999, 3.0, 0.2], [1, 2, 2, 3, 3, 1]),
    (600, [1.5, 2.5, 3.6, 0.2], [1, 2, 3, 1]),
    (2000, [1.5, 2.5, 4.9, 5.0], [1, 2, 3, 3]),
])
def test_model_version_chosen_by_event_time_and_delay(delay, times, expected):
    m = OnlineStandardScalerModel(with_mean=True, time_col="t", max_allowed_model_delay_ms=delay)
    m.set_model_data(history())
    out = m.transform({"input": [[25.0]] * len(times), "t": times})
    assert out.column("model_version").to_pylist() == expected
    means = {1: 0.0, 2: 10.0, 3: 20.0}
    assert [v[0] for v in out.column("output").to_pylist()] == [25.0 - means[e] for e in expected]
    fn = m.row_fn()
    for t, e in zip(times, expected):
        row = {"input": [25.0], "t": t}
        fn(row)
        assert row["model_version"] == e and row["output"].tolist() == [25.0 - means[e]]


def test_stale_rows_raise_and_time_col_none_uses_newest():
    m = OnlineStandardScalerModel(time_col="t", max_allowed_model_delay_ms=500).set_model_data(history())
    with pytest.raises(ValueError, match=r"row 1 has event time 3501 ms in column 't'.*freshest model version 3 "
                                         r"has timestamp 3000 ms, older than max_allowed_model_delay_ms=500"):
        m.transform({"input": [[1.0], [1.0]], "t": [3.5, 3.501]})
    m.set(time_col=None)
    assert m.transform({"input": [[1.0]], "t": [99.0]}).column("model_version").to_pylist() == [3]
    assert m.model_version == 3


def test_versions_without_event_time_are_always_fresh():
    m = OnlineStandardScalerModel(time_col="t").set_model_data(
        {"mean": [[0.0], [1.0]], "std": [[1.0], [1.0]], "model_version": [1, 2], "timestamp": [2**63 - 1] * 2})
    assert m.transform({"input": [[1.0]], "t": [1e9]}).column("model_version").to_pylist() == [2]


# ----------------------------------------------------- max_allowed_model_delay_ms on a stream


def flink_ml_arrivals(t_ms, batch, window, n_batches):
    """Flink ML's model operator rule, written out: a row is scored by the current (newest arrived)
    version if ``t - delay <= its timestamp``, else buffered until a version that satisfies it
    arrives. Arrival order of a job where one source feeds the trainer and the model: the versions
    closed while training batch k arrive before batch k's rows; the final version at the end.
    Returns the arrival sequence as ("v", version, timestamp) and ("rows", start, stop) events."""
    events = []
    for k in range(n_batches):
        lo, hi = k * batch, min((k + 1) * batch, len(t_ms))
        for end in range(window, hi + 1, window):
            if end > lo:
                events.append(("v", end // window, int(t_ms[end - 1])))
        events.append(("rows", lo, hi))
    if len(t_ms) % window:
        events.append(("v", len(t_ms) // window + 1, int(t_ms[-1])))
    return events


def flink_ml_versions(events, t_ms, delay):
    """The version each row is scored with, and how many rows had to wait."""
    got = np.full(len(t_ms), -1)
    current, waiting, waited = None, [], 0
    for e in events:
        if e[0] == "v":
            current = e[1:]
            still = []
            for i in waiting:
                if t_ms[i] - delay <= current[1]:
                    got[i] = current[0]
                else:
                    still.append(i)
            waiting = still
        else:
            for i in range(e[1], e[2]):
                if current is not None and t_ms[i] - delay <= current[1]:
                    got[i] = current[0]
                else:
                    waiting.append(i)
                    waited += 1
    return got, waited


def test_stream_holds_rows_until_a_version_is_fresh_enough(wine):
    import flowlearn.stream as fls

    n, batch, window, delay = 1050, 100, 250, 300
    rng = np.random.default_rng(3)
    x = wine[rng.integers(0, len(wine), n)][:, :4]
    t_ms = np.arange(n, dtype=np.int64) * 10
    data = fl.table({"id": np.arange(n), "x": x, "t": pa.array(t_ms, pa.timestamp("ms"))})
    est = OnlineStandardScaler(input_col="x", output_col="y", with_mean=True, window_rows=window, time_col="t",
                               max_allowed_model_delay_ms=delay)
    s = fls.from_table(data, batch_size=batch)
    model = est.fit(s)
    versions = fls.model_stream(model).collect()
    scored = model.transform(s)
    out, unscored = scored.collect(), scored.side_output("unscored").collect()
    job = fl.run(versions, out, unscored)
    job.wait()
    res = out.result()
    assert unscored.result().num_rows == 0 and res.num_rows == n
    ids = res.column("id").to_numpy()
    assert sorted(ids.tolist()) == list(range(n))

    want, waited = flink_ml_versions(flink_ml_arrivals(t_ms, batch, window, -(-n // batch)), t_ms, delay)
    assert set(want[2000 // 10:2800 // 10]) == {1} and set(want[2800 // 10:4000 // 10]) == {2}  # some waited
    ver = res.column("model_version").to_numpy()
    np.testing.assert_array_equal(ver, want[ids])
    ends = {v: min(v * window, n) for v in range(1, 6)}   # version v: the statistics of its prefix
    for v in np.unique(ver):
        rows = ver == v
        prefix = x[:ends[v]]
        np.testing.assert_allclose(fl.linalg.to_numpy(res.column("y"))[rows],
                                   (x[ids[rows]] - prefix.mean(0)) / prefix.std(0, ddof=1), rtol=1e-10)
    # the table transform with every version picks the same version for every row
    history = pa.concat_tables([fls.read_version(v).model_data for v in versions.tables()])
    table_model = OnlineStandardScalerModel(input_col="x", output_col="y", with_mean=True, time_col="t",
                                            max_allowed_model_delay_ms=delay).set_model_data(history)
    np.testing.assert_array_equal(table_model.transform(data).column("model_version").to_numpy(), want)
    counts = {k: sum(m.get(k, 0) for m in job.metrics["operators"].values()) for k in ("buffered_rows", "waiting_rows")}
    assert counts == {"buffered_rows": waited, "waiting_rows": 0} and waited > 300


def test_stream_rows_never_fresh_go_to_unscored_and_waiting_rows_survive_a_checkpoint():
    import flowlearn.stream as fls
    from flowlearn.stream.models import ModelStreamOp

    version = {"mean": [[10.0]], "std": [[2.0]], "model_version": [1], "timestamp": [1000]}
    data = fl.table({"x": [[14.0]] * 4, "t": [0.5, 1.4, 1.6, 3.0]})
    model = OnlineStandardScalerModel(input_col="x", output_col="y", with_mean=True, time_col="t",
                                      max_allowed_model_delay_ms=500)
    scored = fls.follow(fls.from_iterable([version]), model).transform(fls.from_iterable([data]))
    out, unscored = scored.collect(), scored.side_output("unscored").collect()
    job = fl.run(out, unscored)
    job.wait()
    res = out.result().sort_by("t")
    assert res.column("t").to_pylist() == [0.5, 1.4] and res.column("y").to_pylist() == [[2.0], [2.0]]
    assert unscored.result().sort_by("t").column("t").to_pylist() == [1.6, 3.0]
    assert sum(m.get("unscored_rows", 0) for m in job.metrics["operators"].values()) == 2

    # the operator itself: rows wait in its checkpointed state and a fresher version releases them
    op = ModelStreamOp(model)
    op.open(fls.OperatorContext("scale"))
    assert op.process(data) == []                       # no version yet: every row waits
    (first,) = op.process(fls.version_table(fl.table(version)), 1)
    assert first.column("t").to_pylist() == [0.5, 1.4] and op.ctx.metrics["waiting_rows"] == 2
    state = op.snapshot_state()
    again = ModelStreamOp(model)
    again.open(fls.OperatorContext("scale"))
    again.restore_state(ipc_round_trip(state))
    assert again.ctx.metrics["waiting_rows"] == 2
    newer = dict(version, mean=[[12.0]], model_version=[2], timestamp=[2500])
    (released,) = again.process(fls.version_table(fl.table(newer)), 1)
    assert released.column("t").to_pylist() == [1.6, 3.0] and released.column("y").to_pylist() == [[1.0], [1.0]]
    assert released.column("model_version").to_pylist() == [2, 2] and again.ctx.metrics["waiting_rows"] == 0


def test_freshness_holds_inside_whole_pipeline_versions_and_pipelines_expose_unscored_rows():
    """Whole PipelineModel versions holding the scaler are held back by its freshness rule too, and
    a PipelineModel applied stage by stage exposes its following stage's 'unscored' rows."""
    import flowlearn.stream as fls
    from flowlearn.testing.models import AddK

    def scaler(version=None, mean=0.0, stamp=None):
        m = OnlineStandardScalerModel(input_col="x", output_col="y", with_mean=True, time_col="t",
                                      max_allowed_model_delay_ms=100)
        if version is not None:
            m.set_model_data({"mean": [[mean]], "std": [[1.0]], "model_version": [version], "timestamp": [stamp]})
        return m

    # t = 0.5 s is covered by version 1 (1000 ms); 3.0 s and 4.9 s wait for version 2 (5000 ms + 100 ms)
    data = fl.table({"x": [[10.0]] * 3, "t": [0.5, 3.0, 4.9]})
    versions = [fls.version_table(fl.PipelineModel([scaler(1, 1.0, 1000)]), 1),
                fls.version_table(fl.PipelineModel([scaler(2, 4.0, 5000)]), 2)]
    scored = fls.follow(fls.from_iterable(versions)).transform(fls.from_iterable([data]))
    out = scored.collect()
    fl.run(out).wait()
    res = out.result().sort_by("t")
    assert res.column("model_version").to_pylist() == [1, 2, 2]
    assert res.column("y").to_pylist() == [[9.0], [6.0], [6.0]]

    only_v1 = fls.version_table(fl.table({"mean": [[1.0]], "std": [[1.0]], "model_version": [1],
                                          "timestamp": [1000]}))
    pipe = fl.PipelineModel([scaler().set_model_data(fls.from_iterable([only_v1])),
                             AddK(input_col="t", output_col="t_plus").set_model_data({"k": [1.0]})])
    scored = pipe.transform(fls.from_iterable([data]))
    out, unscored = scored.collect(), scored.side_output("unscored").collect()
    fl.run(out, unscored).wait()
    assert out.result().column("t_plus").to_pylist() == [1.5]
    assert unscored.result().sort_by("t").column("t").to_pylist() == [3.0, 4.9]


# ------------------------------------------------------------------------ model data, persistence


def test_model_data_format_and_get_set(wine):
    model = OnlineStandardScaler(window_rows=100).fit({"input": wine})
    (md,) = model.get_model_data()
    assert md.column_names == ["mean", "std", "model_version", "timestamp"] and md.num_rows == 1
    assert md.schema.field("mean").type == fl.linalg.dense_vector_type(13)
    assert md.schema.field("model_version").type == pa.int64() and md.schema.field("timestamp").type == pa.int64()
    other = OnlineStandardScalerModel().set_model_data(md)
    assert other.get_model_data()[0].equals(md)
    assert other.transform({"input": wine}).equals(model.transform({"input": wine}))
    # a batch StandardScalerModel's model data is one version (0); and the other way round
    batch = StandardScaler().fit({"input": wine})
    m0 = OnlineStandardScalerModel().set_model_data(batch.get_model_data()[0])
    assert m0.model_version == 0
    np.testing.assert_allclose(fl.linalg.to_numpy(m0.transform({"input": wine}).column("output")),
                               fl.linalg.to_numpy(batch.transform({"input": wine}).column("output")), rtol=1e-12)
    # the online model data, stripped of its version columns, is a batch StandardScalerModel's model data
    as_batch = StandardScalerModel(with_mean=True).set_model_data(md.select(["mean", "std"]))
    np.testing.assert_allclose(vec(md, "mean"), fl.linalg.to_numpy(as_batch.get_model_data()[0].column("mean"))[0])
    # a history of versions is model data too; without time_col the newest is used
    hist = pa.concat_tables(OnlineStandardScaler(window_rows=50).fit_versions({"input": wine}))
    mh = OnlineStandardScalerModel().set_model_data(hist)
    assert mh.model_version == 4
    assert mh.transform({"input": wine}).equals(OnlineStandardScaler(window_rows=50).fit({"input": wine}).transform(
        {"input": wine}))


# ---------------------------------------------------------------------------- sparse, row kernel


def test_sparse_input(digits):
    dense = list(OnlineStandardScaler(window_rows=70).fit_versions({"input": digits}))
    sparse = list(OnlineStandardScaler(window_rows=70).fit_versions({"input": sps.csr_matrix(digits)}))
    assert len(dense) == len(sparse) == -(-len(digits) // 70)
    for a, b in zip(dense, sparse):
        np.testing.assert_allclose(vec(a, "mean"), vec(b, "mean"), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(vec(a, "std"), vec(b, "std"), rtol=1e-10, atol=1e-12)
    model = OnlineStandardScaler(window_rows=70).fit({"input": sps.csr_matrix(digits)})
    out = model.transform({"input": sps.csr_matrix(digits)})
    assert fl.linalg.is_sparse(out.schema.field("output").type)  # with_mean=False keeps sparsity
    std = digits.std(axis=0, ddof=1)
    want = np.divide(digits, std, out=np.zeros_like(digits), where=std != 0)
    np.testing.assert_allclose(fl.linalg.to_numpy(out.column("output")), want, rtol=1e-10)
    model.set(with_mean=True)
    dense_out = model.transform({"input": sps.csr_matrix(digits)})
    assert not fl.linalg.is_sparse(dense_out.schema.field("output").type)
    # several versions chosen by event time, sparse rows
    hist = OnlineStandardScalerModel(time_col="t").set_model_data(pa.concat_tables(dense))
    stamps = hist.get_model_data()[0].column("timestamp").to_pylist()
    assert stamps == [2**63 - 1] * 5
    t_sparse = hist.transform({"input": sps.csr_matrix(digits[:5]), "t": np.arange(5.0)})
    t_dense = hist.transform({"input": digits[:5], "t": np.arange(5.0)})
    np.testing.assert_allclose(fl.linalg.to_numpy(t_sparse.column("output")),
                               fl.linalg.to_numpy(t_dense.column("output")), rtol=1e-12)


@pytest.mark.parametrize("with_mean, with_std", [(True, True), (False, True), (False, False)])
def test_row_kernel_equals_batch(digits, with_mean, with_std):
    model = OnlineStandardScaler(window_rows=100, with_mean=with_mean, with_std=with_std).fit({"input": digits})
    batch = fl.linalg.to_numpy(model.transform({"input": digits}).column("output"))
    fn = model.row_fn()
    for r in range(0, len(digits), 17):
        row = {"input": digits[r]}
        fn(row)
        np.testing.assert_allclose(row["output"], batch[r], rtol=0, atol=1e-15)
        assert row["model_version"] == 3
        nz = np.flatnonzero(digits[r])
        srow = {"input": SparseVector(64, nz, digits[r, nz])}
        fn(srow)
        got = srow["output"].to_numpy() if isinstance(srow["output"], SparseVector) else srow["output"]
        np.testing.assert_allclose(got, batch[r], rtol=0, atol=1e-15)
    pred = fl.LocalPredictor(model).predict({"input": digits[0]})
    np.testing.assert_allclose(pred["output"], batch[0], atol=1e-15)


# ------------------------------------------------------------------------- empty and bad input


def test_empty_input():
    empty = fl.table({"input": pa.array([], fl.linalg.dense_vector_type(2))})
    with pytest.raises(ValueError, match="OnlineStandardScaler.fit: the input has no rows"):
        OnlineStandardScaler().fit(empty)
    with pytest.raises(ValueError, match="no rows"):
        OnlineStandardScaler().fit([])
    tr = OnlineStandardScaler().trainer()
    assert tr.partial_fit(empty) == [] and tr.finish() == []
    model = OnlineStandardScaler().fit({"input": [[1.0, 2.0], [3.0, 5.0]]})
    out = model.transform(empty)
    assert out.num_rows == 0 and out.column_names == ["input", "output", "model_version"]


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"input column 'x' \(parameter 'input_col'\) is missing"):
        OnlineStandardScaler(input_col="x").fit({"input": [[1.0]]})
    with pytest.raises(ValueError, match="column 'input' has NaN or infinity at row 2"):
        OnlineStandardScaler().fit({"input": [[1.0], [2.0], [float("inf")]]})
    with pytest.raises(TypeError, match="expected a vector column"):
        OnlineStandardScaler().fit({"input": [1.0, 2.0]})
    tr = OnlineStandardScaler(window_rows=10).trainer()
    tr.partial_fit({"input": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        tr.partial_fit({"input": [[1.0, 2.0, 3.0]]})
    with pytest.raises(ValueError, match=r"input column 't' \(parameter 'time_col'\) is missing"):
        OnlineStandardScaler(time_col="t").fit({"input": [[1.0]]})
    with pytest.raises(ValueError, match=r"event time column 't' \(parameter 'time_col'\) has a null at row 1"):
        OnlineStandardScaler(time_col="t").fit({"input": [[1.0], [2.0]], "t": [1.0, None]})
    with pytest.raises(TypeError, match="event time column 't' .* has type string"):
        OnlineStandardScaler(time_col="t").fit({"input": [[1.0]], "t": ["noon"]})
    m = OnlineStandardScalerModel()
    with pytest.raises(ValueError, match="model data has not been set"):
        m.transform({"input": [[1.0]]})
    with pytest.raises(ValueError, match=r"model data has no column\(s\) \['std'\]"):
        m.set_model_data({"mean": [[1.0]]})
    with pytest.raises(ValueError, match="'std' has a negative entry"):
        m.set_model_data({"mean": [[1.0]], "std": [[-1.0]]})
    with pytest.raises(ValueError, match="repeated model_version"):
        m.set_model_data({"mean": [[1.0], [2.0]], "std": [[1.0], [1.0]], "model_version": [1, 1]})
    m.set_model_data({"mean": [[1.0, 2.0]], "std": [[1.0, 1.0]]})
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        m.transform({"input": [[1.0, 2.0, 3.0]]})


# ------------------------------------------------------------- on the unbounded iteration engine


@pytest.mark.parametrize("windows, min_step_rows, step_rows, versions_per_step", [
    ("count", 1, [25] * 7 + [3], 1),          # one step per count window
    ("count", 60, [75, 75, 28], 3),           # steps of whole windows, >= MIN_STEP_ROWS rows
    ("global", 60, [40, 1, 137], 0),          # one step per input batch, one version at the end
])
def test_fit_versions_are_outputs_of_unbounded_iteration_steps(monkeypatch, unbounded_steps, wine, windows,
                                                               min_step_rows, step_rows, versions_per_step):
    import flowlearn.iteration.online as online_module

    monkeypatch.setattr(online_module, "MIN_STEP_ROWS", min_step_rows)
    t = fl.table({"input": wine})
    inputs = [t.slice(0, 40), t.slice(40, 1), t.slice(41)]
    est = OnlineStandardScaler(windows=windows, window_rows=25)
    versions = list(est.fit_versions(inputs))
    steps = unbounded_steps
    assert [s.num_rows for s in steps if not s.final] == step_rows
    assert all(len(versions_of_step(s)) == versions_per_step for s in steps[:len(step_rows) - 1])
    assert steps[-1].final and len(versions_of_step(steps[-1])) == 1  # finish(): the open window
    from_steps = [v for s in steps for v in versions_of_step(s)]
    assert len(from_steps) == len(versions) and all(a.equals(b) for a, b in zip(from_steps, versions))
    tr = est.trainer()  # the trainer driven by hand gives the same versions
    by_hand = [v for x in inputs for v in tr.partial_fit(x)] + tr.finish()
    assert len(by_hand) == len(versions) and all(a.equals(b) for a, b in zip(by_hand, versions))
    if windows == "count":
        assert len(versions) == 8 and steps[-2].variables[0].equals(versions[-2])  # the variable: the latest


def test_event_time_windows_check_the_vector_size_of_every_batch():
    tr = OnlineStandardScaler(windows="event_time", window_seconds=1.0, time_col="t").trainer()
    tr.partial_fit({"input": [[1.0, 2.0]], "t": [0.5]})
    with pytest.raises(ValueError, match="size 3.*expects size 2"):
        tr.partial_fit({"input": [[1.0, 2.0, 3.0]], "t": [0.6]})       # before any window closed
    again = OnlineStandardScaler(windows="event_time", window_seconds=1.0, time_col="t").trainer()
    again.restore_state(ipc_round_trip(tr.snapshot_state()))            # the size survives a checkpoint
    assert again.dim == 2
    with pytest.raises(ValueError, match="size 3.*expects size 2"):
        again.partial_fit({"input": [[1.0, 2.0, 3.0]], "t": [0.7]})
    (v,) = again.on_watermark(999)
    assert vec(v, "mean").tolist() == [1.0, 2.0]
