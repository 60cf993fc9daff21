"""Gate (Alink's model filter) and rebase. Oracles: scikit-learn metrics on numpy predictions of
each version for the gate; a fresh trainer started from the rebased model for the rebase."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import log_loss, roc_auc_score

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.classification.ftrl import OnlineLogisticRegression
from flowlearn.classification.logistic_regression import LogisticRegression
from flowlearn.engines import run
from flowlearn.linalg import from_numpy, to_numpy
from flowlearn.modelstream import ModelStore
from flowlearn.modelstream.gate import ModelGate


def _data(n: int, seed: int, d: int = 6) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ np.linspace(-2, 2, d))))).astype(np.float64)
    return pa.table({"features": from_numpy(x), "label": y})


def _proba(md: pa.Table, t: pa.Table) -> np.ndarray:
    coef = to_numpy(md.column("coefficient"))[0]
    b = float(md.column("intercept")[0].as_py())
    return 1 / (1 + np.exp(-(to_numpy(t.column("features")) @ coef + b)))


def _midpoint_threshold(values: list[float]) -> float:
    """A threshold strictly between two of the values (no float ties at the boundary)."""
    s = sorted(set(values))
    i = len(s) // 2
    return (s[i - 1] + s[i]) / 2


EST = dict(global_batch_size=8, emit_every=150, alpha=0.02)


def _published(store: ModelStore) -> list[dict]:
    return [store.version_info(v)["metadata"] for v in store.versions()]


@pytest.mark.parametrize("metric,bound", [("auc", "min_value"), ("log_loss", "max_value")])
def test_gate_on_a_model_stream_passes_exactly_the_versions_sklearn_says(tmp_path, metric, bound):
    train, held = _data(2400, seed=1), _data(700, seed=2)
    est = OnlineLogisticRegression(**EST)
    want = list(est.fit_versions(train))
    y = held.column("label").to_numpy()
    score = {int(w["model_version"][0].as_py()): (roc_auc_score(y, _proba(w, held)) if metric == "auc"
                                                   else log_loss(y, _proba(w, held))) for w in want}
    thr = _midpoint_threshold(list(score.values()))
    ok = {v for v, s in score.items() if (s >= thr if bound == "min_value" else s <= thr)}
    assert 0 < len(ok) < len(score)
    gate = ModelGate(metric=metric, held_out=held, **{bound: thr})
    serving = ModelStore(str(tmp_path / "serving"))
    job = run(gate.apply(fls.model_stream(est.fit(fls.from_table(train, batch_size=128)))).to_model_store(serving))
    job.wait()
    md = _published(serving)
    assert [m["model_version"] for m in md] == sorted(ok)
    for m in md:
        assert m["gate"]["metric"] == metric and m["gate"]["rows"] == held.num_rows
        assert m["gate"]["value"] == pytest.approx(score[m["model_version"]], rel=1e-9, abs=1e-12)
    assert gate.passed == len(ok) and gate.rejected == len(score) - len(ok)
    ops = job.metrics["operators"]
    gate_op = next(o for u, o in ops.items() if "gate" in u)
    assert gate_op["versions_rejected"] == len(score) - len(ok) and gate_op["versions_passed"] == len(ok)


def test_gate_with_a_held_out_stream_uses_its_latest_window_rows(tmp_path):
    train, held = _data(1800, seed=3), _data(1000, seed=4)
    est = OnlineLogisticRegression(**EST)
    window = held.slice(1000 - 600)
    y = window.column("label").to_numpy()
    auc = {int(w["model_version"][0].as_py()): roc_auc_score(y, _proba(w, window)) for w in est.fit_versions(train)}
    thr = _midpoint_threshold(list(auc.values()))
    gate = ModelGate(metric="auc", min_value=thr, window_rows=600,
                     held_out=fls.from_table(held, batch_size=1000))
    serving = ModelStore(str(tmp_path / "serving"))
    run(gate.apply(fls.model_stream(est.fit(fls.from_table(train, batch_size=200)))).to_model_store(serving)).wait()
    assert [m["model_version"] for m in _published(serving)] == sorted(v for v, a in auc.items() if a >= thr)
    assert all(m["gate"]["rows"] == 600 for m in _published(serving))


def test_gate_as_a_plain_function(tmp_path, caplog):
    held = _data(500, seed=5)
    good = LogisticRegression().fit(_data(2000, seed=6))
    md = good.get_model_data()[0]
    bad_md = md.set_column(md.column_names.index("coefficient"), "coefficient",
                           from_numpy(-to_numpy(md.column("coefficient"))))
    bad = fl.classification.LogisticRegressionModel().set_model_data(bad_md)
    y = held.column("label").to_numpy()
    auc_good = roc_auc_score(y, _proba(md, held))
    gate = ModelGate(metric="auc", min_value=0.5, held_out=held)
    res = gate.check(good)
    assert res.passed and res.value == pytest.approx(auc_good, rel=1e-12) and res.rows == 500
    store = ModelStore(str(tmp_path / "s"))
    with caplog.at_level("WARNING", logger="flowlearn.modelstream.gate"):
        assert gate.publish(bad, store) is None
    assert "rejected" in caplog.text and "< min_value 0.5" in caplog.text
    v = gate.publish(good, store, metadata={"kind": "batch"})
    assert store.versions() == [v] and store.load(v).metadata["kind"] == "batch"
    assert gate.passed == 2 and gate.rejected == 1
    # a one-class window has no AUC: rejected, not passed
    one_class = held.filter(pa.compute.equal(held["label"], 1.0))
    assert not gate.check(good, held_out=one_class).passed
    with pytest.raises(ValueError, match="metric"):
        ModelGate(metric="rmse", kind="binary")


# -- rebase ------------------------------------------------------------------------------------

def _wait(pred, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    raise AssertionError("timed out")


def _rebase_plan(data, store, est):
    batches = 60
    # paced (>= 2.4 s in all) so the rebase lands midway even on a loaded machine
    src = fls.generate(lambda i: data.slice(i * 50, 50), count=batches, interval=0.04)
    rebase = fls.from_model_store(store, start="next", kinds=["batch"], poll_interval=0.01)
    model = fls.fit_online(est, src, rebase=rebase, uid="trainer")
    return fls.model_stream(model).to_model_store(store, producer="ftrl").uid("sink")


@pytest.mark.parametrize("restart", [False, True])
def test_rebase_resets_the_trainer_to_the_batch_model(tmp_path, restart):
    data = _data(3000, seed=7)
    est = OnlineLogisticRegression(global_batch_size=4, emit_every=100, alpha=0.1)
    store = ModelStore(str(tmp_path / "store"))
    chk = str(tmp_path / "chk")
    batch_model = LogisticRegression().fit(_data(1000, seed=8))     # a batch retrain on other data
    job = run(_rebase_plan(data, store, est), checkpoint_dir=chk, checkpoint_interval=0.1)
    _wait(lambda: len(store.versions()) >= 3)
    b = store.publish(batch_model, {"kind": "batch"})              # published while the job trains
    _wait(lambda: job.metrics["operators"]["trainer"].get("rebases", 0) >= 1)
    if restart:   # stop after the rebase (final checkpoint holds the rebased trainer) and resume
        time.sleep(0.1)
        job.stop()
        assert job.metrics["operators"]["trainer"].get("input_finished") is None
        job = run(_rebase_plan(data, store, est), checkpoint_dir=chk, checkpoint_interval=0.1)
    _wait(lambda: job.metrics["operators"]["trainer"].get("input_finished") == 1)
    job.stop()
    if restart:
        assert job.metrics["restored_from"] is not None
    m = job.metrics["operators"]["trainer"]
    n = m["last_rebase_at_row"]
    assert m["last_rebase_version"] == b and 0 < n < 3000 and n % 50 == 0
    mine = [(sv, store.version_info(sv)["metadata"]) for sv in store.versions()]
    online = [(sv, md) for sv, md in mine if md.get("producer") == "ftrl"]
    mv = [md["model_version"] for _, md in online]
    assert mv == sorted(set(mv))                                  # monotone, no duplicates
    before = [(sv, md) for sv, md in online if md["trained_rows"] <= n]
    after = [(sv, md) for sv, md in online if md["trained_rows"] > n]
    # oracle 1: until the rebase, an uninterrupted trainer on rows [0, n)
    tr = est.trainer()
    pre = tr.partial_fit(data.slice(0, n))
    assert [md["model_version"] for _, md in before] == [int(v["model_version"][0].as_py()) for v in pre]
    for (sv, _), v in zip(before, pre):
        assert store.load(sv).model.get_model_data()[0].equals(v)
    # oracle 2: after it, a fresh trainer started from the batch model (numbered above it) on rows [n, 3000)
    base = max(b, tr.version)
    md0 = batch_model.get_model_data()[0]
    md0 = md0.set_column(md0.column_names.index("model_version"), "model_version", pa.array([base], pa.int64()))
    fresh = OnlineLogisticRegression(global_batch_size=4, emit_every=100, alpha=0.1).set_initial_model_data(md0)
    post = list(fresh.fit_versions(data.slice(n)))
    assert [md["model_version"] for _, md in after] == [int(v["model_version"][0].as_py()) for v in post]
    assert all(v > b for v in [md["model_version"] for _, md in after])
    assert all(md["rebased_on"] == b for _, md in after) and not any("rebased_on" in md for _, md in before)
    assert all(sv > b for sv, _ in after)
    for (sv, _), v in zip(after, post):
        got = store.load(sv).model.get_model_data()[0]
        np.testing.assert_array_equal(to_numpy(got.column("coefficient")), to_numpy(v.column("coefficient")))
        assert got.column("intercept").equals(v.column("intercept"))


def test_online_learning_rebase_swaps_feature_stages(tmp_path):
    mod = pytest.importorskip("flowlearn.classification.online_learning")
    rng = np.random.default_rng(11)

    def table(n, shift):
        x = rng.normal(shift, 2.0, size=(n, 3))
        y = (rng.random(n) < 1 / (1 + np.exp(-(x - shift) @ np.array([1.0, -1.0, 0.5])))).astype(np.float64)
        return pa.table({"x": from_numpy(x), "label": y})

    def pipeline(t):
        return fl.Pipeline([fl.feature.StandardScaler(input_col="x", output_col="features", with_mean=True),
                            LogisticRegression()]).fit(t)

    data = table(2000, 0.0)
    first, retrained = pipeline(table(500, 0.0)), pipeline(table(500, 3.0))
    params = dict(optim_method="sgd", learning_rate=0.05, global_batch_size=4, emit_every=100)
    store = ModelStore(str(tmp_path / "store"))
    src = fls.generate(lambda i: data.slice(i * 50, 50), count=40, interval=0.05)   # >= 2 s: rebase lands midway
    model = fls.fit_online(mod.OnlineLearning(first, **params), src,
                           rebase=fls.from_model_store(store, start="next", kinds=["batch"], poll_interval=0.01),
                           uid="trainer")
    assert isinstance(model, fls.StreamModel)
    job = run(fls.model_stream(model).to_model_store(store, producer="ol"))
    _wait(lambda: len(store.versions()) >= 3)
    b = store.publish(retrained, {"kind": "batch"})
    _wait(lambda: job.metrics["operators"]["trainer"].get("input_finished") == 1)
    job.stop()
    n = job.metrics["operators"]["trainer"]["last_rebase_at_row"]
    assert 0 < n < 2000
    online = [(sv, store.version_info(sv)["metadata"]) for sv in store.versions()]
    after = [sv for sv, md in online if md.get("producer") == "ol" and md["trained_rows"] > n]
    # oracle: a fresh OnlineLearning started from the retrained pipeline, numbered above it
    tr = mod.OnlineLearning(first, **params).trainer()
    tr.partial_fit(data.slice(0, n))
    base = max(b, tr.version)
    lr = retrained.stages[-1]
    md0 = lr.get_model_data()[0]
    md0 = md0.set_column(md0.column_names.index("model_version"), "model_version", pa.array([base], pa.int64()))
    start = fl.PipelineModel([retrained.stages[0], type(lr)(**lr.get_params()).set_model_data(md0)])
    want = list(mod.OnlineLearning(start, **params).fit_versions(data.slice(n)))
    assert len(after) == len(want) > 0
    assert [store.version_info(sv)["metadata"]["model_version"] for sv in after] == \
        [int(w.stages[-1].get_model_data()[0]["model_version"][0].as_py()) for w in want]
    assert all(store.version_info(sv)["metadata"]["model_version"] > b for sv in after)
    probe = table(50, 3.0)
    for sv, w in zip(after, want):
        got = store.load(sv).model
        assert got.stages[0].get_model_data()[0].equals(retrained.stages[0].get_model_data()[0])  # swapped
        np.testing.assert_array_equal(to_numpy(got.transform(probe).column("raw_prediction")),
                                      to_numpy(w.transform(probe).column("raw_prediction")))
