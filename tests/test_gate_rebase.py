"""Gate (Alink's model filter) and rebase.

Oracles, none derived from the code under test:
* the gate: scikit-learn metrics on NumPy predictions of each version;
* the OnlineLogisticRegression rebase: ``ftrl_reference``, mini-batch FTRL-Proximal (McMahan et al.
  2013, Algorithm 1, with Flink ML's per-coordinate averaged mini-batch gradient) in NumPy, started
  cold (``z = n = 0``) before the rebase and, after it, from the batch model's weights ``w0`` with
  ``n = 0, z = -w0 * (beta / alpha + l2) - sign(w0) * l1`` (the state whose weights are ``w0``);
* the OnlineLearning rebase: ``sgd_reference``, mini-batch logistic SGD (mean gradient, one step per
  mini-batch, intercept stepped with the same rate) in NumPy from the retrained pipeline's weights,
  on rows standardized with NumPy's mean and ``ddof=1`` std of the retrained scaler's training rows;
  ``sgd_reference`` itself is checked against River's ``LogisticRegression.learn_many`` with
  ``optim.SGD(lr)`` and ``intercept_lr=lr`` warm-started by setting its weights and intercept.
The rebase tests also still compare with a fresh flowlearn trainer started from the batch model
(version numbering, bit-exact equality)."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import log_loss, roc_auc_score

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.classification.ftrl import OnlineLogisticRegression
from flowlearn.classification.online_learning import OnlineLearning
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

def _emissions(n_rows, batch, emit_every):
    """Rows learned at each version a row-count emitting trainer publishes while its input runs: the
    first full mini-batch boundary at least ``emit_every`` rows after the previous version. (At the
    end of a bounded input one more version follows the incomplete mini-batch unless the last
    version already holds every row; the references below add it.)"""
    ends, last = [], 0
    for stop in range(batch, n_rows + 1, batch):
        if stop - last >= emit_every:
            ends.append(stop)
            last = stop
    return ends


def ftrl_reference(X, y, w0, b0, batch, emit_every, alpha, beta=0.1, l1=0.0, l2=0.0, final=True):
    """Mini-batch FTRL-Proximal in NumPy (the bias is an always-1 last coordinate). Each mini-batch
    is predicted with the weights from before it; each coordinate takes one step of Algorithm 1 of
    McMahan et al. (2013) with the batch-mean gradient (dense rows carry every coordinate). Warm
    start from ``(w0, b0)``: ``n = 0`` and ``z = -w * (beta / alpha + l2) - sign(w) * l1``.
    Returns ``[(rows learned, coefficients, intercept)]`` at every emitted version."""
    N, d = X.shape
    A_all = np.hstack([X, np.ones((N, 1))])
    w = np.append(np.asarray(w0, dtype=np.float64), float(b0))
    z, nn = -w * (beta / alpha + l2) - np.sign(w) * l1, np.zeros(d + 1)
    ends = _emissions(N, batch, emit_every)
    out = []
    for s in range(0, N, batch):
        A, yb = A_all[s:s + batch], y[s:s + batch]
        if len(yb) < batch and not final:
            break
        p = 1.0 / (1.0 + np.exp(-(A @ w)))
        g = A.T @ (p - yb) / len(yb)
        sigma = (np.sqrt(nn + g * g) - np.sqrt(nn)) / alpha
        z = z + g - sigma * w
        nn = nn + g * g
        w = np.where(np.abs(z) <= l1, 0.0, -(z - np.sign(z) * l1) / ((beta + np.sqrt(nn)) / alpha + l2))
        stop = s + len(yb)
        if stop in ends or (final and stop == N and (not out or out[-1][0] < N)):
            out.append((stop, w[:-1].copy(), float(w[-1])))
    return out


def sgd_reference(X, y, w0, b0, batch, emit_every, lr):
    """Mini-batch logistic regression SGD in NumPy from ``(w0, b0)``: each mini-batch is predicted
    with the weights from before it, then ``w -= lr * mean((p - y) x)`` and ``b -= lr * mean(p - y)``;
    the last, incomplete mini-batch is applied at the end. Returns ``[(rows, coefficients, intercept)]``
    at every emitted version (as ``ftrl_reference``)."""
    N = len(y)
    w, b = np.asarray(w0, dtype=np.float64).copy(), float(b0)
    ends = _emissions(N, batch, emit_every)
    out = []
    for s in range(0, N, batch):
        A, yb = X[s:s + batch], y[s:s + batch]
        r = 1.0 / (1.0 + np.exp(-(A @ w + b))) - yb
        w = w - lr * (A.T @ r) / len(yb)
        b = b - lr * float(r.mean())
        stop = s + len(yb)
        if stop in ends or (stop == N and (not out or out[-1][0] < N)):
            out.append((stop, w.copy(), b))
    return out


def test_sgd_reference_agrees_with_river_learn_many():
    """The SGD oracle against an outside implementation: River's mini-batch ``learn_many`` (one
    mean-gradient step per batch) with a warm start set through its weights and intercept."""
    pytest.importorskip("river")
    pd = pytest.importorskip("pandas")
    from river import linear_model, optim

    rng = np.random.default_rng(12)
    X = rng.normal(size=(203, 3))
    y = (rng.random(203) < 1 / (1 + np.exp(-(X @ np.array([1.0, -1.0, 0.5]) + 0.3)))).astype(np.float64)
    w0, b0, lr = np.array([0.4, -0.2, 0.1]), -0.3, 0.05
    want = sgd_reference(X, y, w0, b0, batch=4, emit_every=100, lr=lr)
    assert [r for r, _, _ in want] == [100, 200, 203]
    keys = ["a", "b", "c"]
    m = linear_model.LogisticRegression(optimizer=optim.SGD(lr), intercept_lr=lr)
    for k, v in zip(keys, w0):
        m._weights[k] = float(v)
    m.intercept = float(b0)
    got = {}
    for s in range(0, 203, 4):
        m.learn_many(pd.DataFrame(X[s:s + 4], columns=keys), pd.Series(y[s:s + 4]))
        got[min(s + 4, 203)] = (np.array([m.weights[k] for k in keys]), m.intercept)
    for rows, w, b in want:
        np.testing.assert_allclose(w, got[rows][0], rtol=0, atol=1e-12)
        assert b == pytest.approx(got[rows][1], rel=0, abs=1e-12)


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
    X, y = to_numpy(data.column("features")), data.column("label").to_numpy()
    ftrl = dict(batch=4, emit_every=100, alpha=0.1, beta=0.1, l1=0.0, l2=0.0)

    def assert_matches(versions, ref, offset):
        assert [md["trained_rows"] for _, md in versions] == [offset + rows for rows, _, _ in ref]
        for (sv, _), (_, w, b0) in zip(versions, ref):
            got = store.load(sv).model.get_model_data()[0]
            np.testing.assert_allclose(to_numpy(got.column("coefficient"))[0], w, rtol=0, atol=1e-9)
            assert float(got.column("intercept")[0].as_py()) == pytest.approx(b0, rel=0, abs=1e-9)

    # oracle 1: until the rebase, NumPy mini-batch FTRL-Proximal from zero on rows [0, n) (versions 1, 2, ...)
    ref_pre = ftrl_reference(X[:n], y[:n], np.zeros(X.shape[1]), 0.0, final=False, **ftrl)
    assert [md["model_version"] for _, md in before] == list(range(1, len(ref_pre) + 1))
    assert_matches(before, ref_pre, 0)
    # ... and an uninterrupted flowlearn trainer on rows [0, n)
    tr = est.trainer()
    pre = tr.partial_fit(data.slice(0, n))
    assert [md["model_version"] for _, md in before] == [int(v["model_version"][0].as_py()) for v in pre]
    for (sv, _), v in zip(before, pre):
        assert store.load(sv).model.get_model_data()[0].equals(v)
    # oracle 2: after it, NumPy mini-batch FTRL-Proximal warm-started from the batch model's weights
    # (n = 0, z = -w0 * (beta / alpha + l2) - sign(w0) * l1) on rows [n, 3000), numbered above the batch model
    md0 = batch_model.get_model_data()[0]
    ref_post = ftrl_reference(X[n:], y[n:], to_numpy(md0.column("coefficient"))[0],
                              float(md0.column("intercept")[0].as_py()), **ftrl)
    base = max(b, len(ref_pre))
    assert len(after) == len(ref_post) > 0
    assert [md["model_version"] for _, md in after] == list(range(base + 1, base + 1 + len(ref_post)))
    assert_matches(after, ref_post, n)
    # ... and a fresh flowlearn trainer started from the batch model on rows [n, 3000)
    assert tr.version == len(ref_pre)
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
    rng = np.random.default_rng(11)

    def table(n, shift):
        x = rng.normal(shift, 2.0, size=(n, 3))
        y = (rng.random(n) < 1 / (1 + np.exp(-(x - shift) @ np.array([1.0, -1.0, 0.5])))).astype(np.float64)
        return pa.table({"x": from_numpy(x), "label": y})

    def pipeline(t):
        return fl.Pipeline([fl.feature.StandardScaler(input_col="x", output_col="features", with_mean=True),
                            LogisticRegression()]).fit(t)

    data = table(2000, 0.0)
    first_rows, retrain_rows = table(500, 0.0), table(500, 3.0)
    first, retrained = pipeline(first_rows), pipeline(retrain_rows)
    params = dict(optim_method="sgd", learning_rate=0.05, global_batch_size=4, emit_every=100)
    store = ModelStore(str(tmp_path / "store"))
    src = fls.generate(lambda i: data.slice(i * 50, 50), count=40, interval=0.05)   # >= 2 s: rebase lands midway
    model = fls.fit_online(OnlineLearning(first, **params), src,
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
    # oracle: NumPy mini-batch SGD (sgd_reference) on rows [n, 2000) standardized with the retrained
    # scaler's statistics computed by NumPy (mean, ddof=1 std of its training rows), started from the
    # retrained logistic regression's weights
    xr = to_numpy(retrain_rows.column("x"))
    xs = (to_numpy(data.column("x"))[n:] - xr.mean(axis=0)) / xr.std(axis=0, ddof=1)
    lr_md = retrained.stages[-1].get_model_data()[0]
    ref = sgd_reference(xs, data.column("label").to_numpy()[n:], to_numpy(lr_md.column("coefficient"))[0],
                        float(lr_md.column("intercept")[0].as_py()), batch=4, emit_every=100, lr=0.05)
    assert len(after) == len(ref) > 0
    assert [store.version_info(sv)["metadata"]["trained_rows"] for sv in after] == [n + rows for rows, _, _ in ref]
    for sv, (_, w_ref, b_ref) in zip(after, ref):
        got = store.load(sv).model.stages[-1].get_model_data()[0]
        np.testing.assert_allclose(to_numpy(got.column("coefficient"))[0], w_ref, rtol=0, atol=1e-9)
        assert float(got.column("intercept")[0].as_py()) == pytest.approx(b_ref, rel=0, abs=1e-9)
    # ... and a fresh OnlineLearning started from the retrained pipeline, numbered above it
    tr = OnlineLearning(first, **params).trainer()
    tr.partial_fit(data.slice(0, n))
    base = max(b, tr.version)
    lr = retrained.stages[-1]
    md0 = lr.get_model_data()[0]
    md0 = md0.set_column(md0.column_names.index("model_version"), "model_version", pa.array([base], pa.int64()))
    start = fl.PipelineModel([retrained.stages[0], type(lr)(**lr.get_params()).set_model_data(md0)])
    want = list(OnlineLearning(start, **params).fit_versions(data.slice(n)))
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


def test_gate_judges_a_linear_svm_on_its_margins():
    """A LinearSVC's raw_prediction is a margin, not a probability: the gate's AUC is scikit-learn's
    AUC of the margins, and its accuracy is the SVM's own decision at margin 0."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import accuracy_score, roc_auc_score

    from flowlearn.classification.linear_svc import LinearSVCModel
    from flowlearn.modelstream.gate import ModelGate

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    rng = np.random.default_rng(0)
    w = rng.normal(size=X.shape[1]) * 0.3
    svm = LinearSVCModel().set_model_data({"coefficient": [w.tolist()], "intercept": [0.1], "model_version": [0]})
    held = fl.table({"features": X, "label": y.astype(float)})
    margin = X @ w + 0.1
    auc = ModelGate(metric="auc", held_out=held).check(svm)
    assert auc.value == pytest.approx(roc_auc_score(y, margin), abs=1e-12)
    acc = ModelGate(metric="accuracy", held_out=held).check(fl.PipelineModel([svm]))
    assert acc.value == pytest.approx(accuracy_score(y, margin >= 0), abs=1e-12)
    svm.set(threshold=1.0)                      # the model's own decision: margin >= 1
    acc = ModelGate(metric="accuracy", held_out=held).check(svm)
    assert acc.value == pytest.approx(accuracy_score(y, margin >= 1.0), abs=1e-12)
    with pytest.raises(ValueError, match="'log_loss' needs probabilities.*LinearSVCModel predicts margins"):
        ModelGate(metric="log_loss", held_out=held).check(svm)
