"""StreamingEvaluator against scikit-learn's metrics on the same windows."""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

import flowlearn as fl
from flowlearn.trainer import OperatorState
from flowlearn.evaluation import StreamingEvaluator


@pytest.fixture(scope="module")
def binary_scores():
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    p = LogisticRegression(C=0.05, max_iter=500).fit(x[::2], y[::2]).predict_proba(x)[:, 1]
    return y.astype(float), p


def _ks(y, p):
    fpr, tpr, _ = skm.roc_curve(y, p)
    return np.max(tpr - fpr)


def test_binary_windows_match_sklearn(binary_scores):
    y, p = binary_scores
    versions = np.repeat([1, 2, 3], [200, 200, len(y) - 400])
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=150)
    rows = []
    for lo in range(0, len(y), 64):  # batch boundaries do not line up with windows
        t = fl.table({"label": y[lo:lo + 64], "p": p[lo:lo + 64], "model_version": versions[lo:lo + 64]})
        rows += ev.update(t)
    rows += ev.flush()
    assert [r["rows"] for r in rows] == [150, 150, 150, 119]
    # rows 0-199 were scored by version 1, 200-399 by 2, the rest by 3
    assert [r["model_versions"] for r in rows] == [[1], [1, 2], [2, 3], [3]]
    assert [r["cumulative_rows"] for r in rows] == [150, 300, 450, len(y)]
    for i, r in enumerate(rows):
        yw, pw = y[i * 150:(i + 1) * 150], p[i * 150:(i + 1) * 150]
        assert r["window_auc"] == pytest.approx(skm.roc_auc_score(yw, pw), abs=1e-12)
        assert r["window_log_loss"] == pytest.approx(skm.log_loss(yw, pw), rel=1e-9)
        assert r["window_accuracy"] == pytest.approx(skm.accuracy_score(yw, pw >= 0.5))
        assert r["window_precision"] == pytest.approx(skm.precision_score(yw, pw >= 0.5))
        assert r["window_recall"] == pytest.approx(skm.recall_score(yw, pw >= 0.5))
        assert r["window_f1"] == pytest.approx(skm.f1_score(yw, pw >= 0.5))
        assert r["window_ks"] == pytest.approx(_ks(yw, pw), abs=1e-12)
    last = rows[-1]
    assert last["cumulative_rows"] == len(y)
    # cumulative AUC/KS come from 1e5-bin histograms: close to exact, not equal
    assert last["cumulative_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-4)
    assert last["cumulative_ks"] == pytest.approx(_ks(y, p), abs=1e-3)
    assert last["cumulative_log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
    assert last["cumulative_f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))


def test_binary_accepts_probability_vectors(binary_scores):
    y, p = binary_scores
    ev = StreamingEvaluator("binary", window_rows=len(y))
    (row,) = ev.update(fl.table({"label": y, "raw_prediction": np.c_[1 - p, p]}))
    assert row["window_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert row["model_versions"] == []


def test_processing_time_windows():
    now = [0.0]
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=None, window_seconds=10, clock=lambda: now[0])
    t = fl.table({"label": [0.0, 1.0], "p": [0.3, 0.7]})
    assert ev.update(t) == []
    now[0] = 11.0
    (row,) = ev.update(t)
    assert row["rows"] == 4 and row["window_auc"] == 1.0


def test_multiclass_and_regression_match_sklearn():
    x, y = load_iris(return_X_y=True)
    proba = LogisticRegression(max_iter=500).fit(x, y).predict_proba(x)
    ev = StreamingEvaluator("multiclass", window_rows=50)
    rows = ev.update(fl.table({"label": y.astype(float), "raw_prediction": proba}))
    assert len(rows) == 3 and [r["rows"] for r in rows] == [50, 50, 50]
    for i, r in enumerate(rows):  # iris is sorted by class: each window holds (mostly) one class
        w = slice(50 * i, 50 * (i + 1))
        assert r["window_accuracy"] == pytest.approx(skm.accuracy_score(y[w], proba[w].argmax(1)))
        assert r["window_macro_f1"] == pytest.approx(skm.f1_score(y[w], proba[w].argmax(1), average="macro"))
        assert r["window_log_loss"] == pytest.approx(skm.log_loss(y[w], proba[w], labels=[0, 1, 2]))
        upto = slice(0, 50 * (i + 1))
        assert r["cumulative_log_loss"] == pytest.approx(skm.log_loss(y[upto], proba[upto], labels=[0, 1, 2]))
    assert rows[2]["cumulative_log_loss"] == pytest.approx(skm.log_loss(y, proba))

    xd, yd = load_diabetes(return_X_y=True)
    pred = LinearRegression().fit(xd[::2], yd[::2]).predict(xd)
    ev = StreamingEvaluator("regression", window_rows=100)
    rows = ev.update(fl.table({"label": yd, "prediction": pred})) + ev.flush()
    assert [r["rows"] for r in rows] == [100, 100, 100, 100, 42]  # 442 rows: the last window is flushed
    for i, r in enumerate(rows):
        w = slice(100 * i, 100 * (i + 1))
        assert r["window_rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yd[w], pred[w])))
        assert r["window_mae"] == pytest.approx(skm.mean_absolute_error(yd[w], pred[w]))
        assert r["window_r2"] == pytest.approx(skm.r2_score(yd[w], pred[w]))
    assert rows[-1]["cumulative_r2"] == pytest.approx(skm.r2_score(yd, pred))
    assert rows[-1]["cumulative_rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yd, pred)))


def test_bad_input_and_params():
    with pytest.raises(ValueError, match="parameter 'kind'"):
        StreamingEvaluator("ranking")
    with pytest.raises(ValueError, match="window_rows or window_seconds"):
        StreamingEvaluator(window_rows=None)
    ev = StreamingEvaluator(raw_prediction_col="p")
    with pytest.raises(ValueError, match=r"column 'label' has label 2.0 at row 1"):
        ev.update(fl.table({"label": [0.0, 2.0], "p": [0.1, 0.2]}))
    with pytest.raises(ValueError, match=r"input column 'p' \(parameter 'raw_prediction_col'\) is missing"):
        ev.update(fl.table({"label": [0.0]}))
    assert ev.flush() == []


def test_single_class_window_gives_nan_auc():
    ev = StreamingEvaluator(raw_prediction_col="p", window_rows=2)
    (row,) = ev.update(fl.table({"label": [1.0, 1.0], "p": [0.2, 0.9]}))
    assert np.isnan(row["window_auc"]) and row["window_recall"] == 0.5


def test_evaluate_table_and_stream_agree_and_state_round_trips(binary_scores):
    y, p = binary_scores
    t = fl.table({"label": y, "p": p})
    by_table = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=100).evaluate(t)
    assert by_table.column("rows").to_pylist() == [100] * 5 + [len(y) - 500]
    want_auc = [skm.roc_auc_score(y[i:i + 100], p[i:i + 100]) for i in range(0, len(y), 100)]
    assert by_table.column("window_auc").to_pylist() == pytest.approx(want_auc, abs=1e-12)
    assert by_table.column("cumulative_log_loss").to_pylist() == pytest.approx(
        [skm.log_loss(y[:i + 100], p[:i + 100]) for i in range(0, len(y), 100)], rel=1e-9)
    stream = fl.stream.from_table(t, batch_size=37)
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=100)
    got = ev.evaluate(stream).collect().result()  # runs the job on the embedded engine
    assert got.column("window_auc").to_pylist() == pytest.approx(by_table.column("window_auc").to_pylist())
    assert got.column("cumulative_log_loss").to_pylist() == pytest.approx(
        by_table.column("cumulative_log_loss").to_pylist())
    # snapshot mid-window, restore into a fresh evaluator: identical continuation
    a = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=100)
    a.update(t.slice(0, 150))
    b = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=100)
    b.restore_state(OperatorState.from_bytes(a.snapshot_state().to_bytes()))
    rest = t.slice(150)
    ra, rb = a.update(rest) + a.flush(), b.update(rest) + b.flush()
    assert len(ra) == len(rb) == 5  # windows 2..6: the restored one holds rows 100-199 across the snapshot
    assert [r["window_auc"] for r in ra] == pytest.approx([r["window_auc"] for r in rb])
    assert [r["window_auc"] for r in rb] == pytest.approx(want_auc[1:], abs=1e-12)
    assert ra[-1]["cumulative_auc"] == rb[-1]["cumulative_auc"]
    assert rb[-1]["cumulative_log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)


# ---------------------------------------------------------------- per model version
def _binary_oracle(y, p):
    """scikit-learn's binary metrics of one set of rows (threshold 0.5), NaN AUC/KS for one class."""
    two = len(np.unique(y)) == 2
    return {"auc": skm.roc_auc_score(y, p) if two else np.nan, "log_loss": skm.log_loss(y, p, labels=[0, 1]),
            "accuracy": skm.accuracy_score(y, p >= 0.5),
            "precision": skm.precision_score(y, p >= 0.5, zero_division=0),
            "recall": skm.recall_score(y, p >= 0.5, zero_division=0),
            "f1": skm.f1_score(y, p >= 0.5, zero_division=0), "ks": _ks(y, p) if two else np.nan}


def _assert_metrics(row, prefix, want, **tol):
    for k, v in want.items():
        got = row[f"{prefix}_{k}"]
        if np.isnan(v):
            assert np.isnan(got), (prefix, k)
        else:
            assert got == pytest.approx(v, **tol.get(k, {"rel": 1e-9, "abs": 1e-12})), (row["window"],
                                                                                       row["model_version"], k)


@pytest.fixture(scope="module")
def versioned_binary_stream():
    """Three model versions scoring one stream: v1, then v2 (a weaker model), then a canary
    phase where v2 and v3 score alternate rows. Versions change mid-window."""
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    fits = [LogisticRegression(C=0.05, max_iter=500).fit(x[::2], y[::2]).predict_proba(x)[:, 1],
            LogisticRegression(max_iter=500).fit(x[::2, :2], y[::2]).predict_proba(x[:, :2])[:, 1],
            LogisticRegression(C=1.0, max_iter=1000).fit(x[1::2, 10:], y[1::2]).predict_proba(x[:, 10:])[:, 1]]
    n = len(y)
    versions = np.r_[np.full(200, 1), np.full(200, 2), np.where(np.arange(n - 400) % 2 == 0, 2, 3)]
    p = np.choose(versions - 1, fits)
    return y.astype(float), p, versions


def _check_per_version_binary(rows, y, p, versions, window, bins=None):
    """Every (window, version) row against scikit-learn on the same rows; cumulative AUC/KS on
    the histogram's definition (scores floored into ``bins`` bins) when ``bins`` is given."""
    n_windows = -(-len(y) // window)
    assert len(rows) == n_windows + sum(len(np.unique(versions[w * window:(w + 1) * window]))
                                        for w in range(n_windows))
    seen = set()
    for r in rows:
        w, v = r["window"], r["model_version"]
        lo, hi = w * window, min((w + 1) * window, len(y))
        win = np.zeros(len(y), bool)
        win[lo:hi] = True
        upto = np.arange(len(y)) < hi
        if v is None:  # the overall row: all versions mixed
            assert r["model_versions"] == sorted(set(versions[lo:hi].tolist()))
            _assert_metrics(r, "window", _binary_oracle(y[win], p[win]))
            continue
        seen.add((w, v))
        m, cm = win & (versions == v), upto & (versions == v)
        assert r["rows"] == m.sum() and r["cumulative_rows"] == cm.sum() and r["model_versions"] == [v]
        _assert_metrics(r, "window", _binary_oracle(y[m], p[m]))
        want = _binary_oracle(y[cm], p[cm])
        if bins is None:  # 1e5-bin histograms: close to exact
            _assert_metrics(r, "cumulative", want, auc={"abs": 1e-4}, ks={"abs": 1e-3})
        else:  # exactly the metrics of the binned scores
            binned = np.minimum(np.floor(p[cm] * bins), bins - 1)
            want["auc"], want["ks"] = skm.roc_auc_score(y[cm], binned), _ks(y[cm], binned)
            _assert_metrics(r, "cumulative", want)
    want_keys = {(w, int(v)) for w in range(n_windows) for v in np.unique(versions[w * window:(w + 1) * window])}
    assert seen == want_keys


def test_per_version_binary_rows_match_sklearn(versioned_binary_stream):
    y, p, versions = versioned_binary_stream
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=150, per_version=True)
    plain = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=150)
    rows, plain_rows = [], []
    for lo in range(0, len(y), 64):  # batch boundaries do not line up with windows or versions
        t = fl.table({"label": y[lo:lo + 64], "p": p[lo:lo + 64], "model_version": versions[lo:lo + 64]})
        rows += ev.update(t)
        plain_rows += plain.update(t)
    rows += ev.flush()
    plain_rows += plain.flush()
    # per window: the overall row, then one row per version in ascending order
    assert [(r["window"], r["model_version"]) for r in rows] == [
        (0, None), (0, 1), (1, None), (1, 1), (1, 2), (2, None), (2, 2), (2, 3), (3, None), (3, 2), (3, 3)]
    _check_per_version_binary(rows, y, p, versions, 150)
    # window 1 mixes v1 (rows 150-199) and v2 (200-299): the split differs from the mix
    r1, r1v1, r1v2 = rows[2:5]
    assert r1v1["rows"] + r1v2["rows"] == r1["rows"] == 150
    assert r1v1["window_auc"] > r1["window_auc"] > r1v2["window_auc"]
    # v2's cumulative metrics span windows 1-3, its rows 200-399 and its canary rows after 400
    last_v2 = rows[-2]
    m2 = versions == 2
    assert last_v2["cumulative_rows"] == m2.sum() == 200 + 85
    assert last_v2["cumulative_log_loss"] == pytest.approx(skm.log_loss(y[m2], p[m2]), rel=1e-9)
    # the overall rows are what an evaluator without per_version emits (plus model_version None)
    overall = [r for r in rows if r["model_version"] is None]
    assert [{k: v for k, v in r.items() if k != "model_version"} for r in overall] == plain_rows
    assert "model_version" not in plain_rows[0]
    assert overall[-1]["cumulative_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-4)


def test_per_version_cumulative_histogram_is_exact_on_binned_scores(versioned_binary_stream):
    y, p, versions = versioned_binary_stream
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=100, bins=20, per_version=True)
    rows = ev.evaluate(fl.table({"label": y, "p": p, "model_version": versions})).to_pylist()
    _check_per_version_binary(rows, y, p, versions, 100, bins=20)


def test_per_version_stream_and_checkpoint_round_trip(versioned_binary_stream):
    y, p, versions = versioned_binary_stream
    t = fl.table({"label": y, "p": p, "model_version": versions})
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=120, per_version=True)
    got = ev.evaluate(fl.stream.from_table(t, batch_size=37)).collect().result()
    assert got.schema.field("model_version").type == pa.int64()
    _check_per_version_binary(got.to_pylist(), y, p, versions, 120)
    # snapshot mid-window (after v2 started), restore into a fresh evaluator: same continuation
    a = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=120, per_version=True)
    first = a.update(t.slice(0, 290))
    state = a.snapshot_state()
    assert {"version_sums", "version_hist", "pending"} <= set(state.tables)
    b = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=120, per_version=True)
    b.restore_state(OperatorState.from_bytes(state.to_bytes()))   # JSON + Arrow IPC, no pickle
    rest = t.slice(290)
    ra, rb = a.update(rest) + a.flush(), b.update(rest) + b.flush()
    assert rb == ra
    _check_per_version_binary(first + rb, y, p, versions, 120)


def test_per_version_multiclass_and_regression_match_sklearn():
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    proba = [LogisticRegression(max_iter=500).fit(x, y).predict_proba(x),
             LogisticRegression(max_iter=500).fit(x[:, :1], y).predict_proba(x[:, :1])]
    versions = np.r_[np.full(70, 4), np.full(len(y) - 70, 7)]  # the switch falls inside window 1
    pr = np.where((versions == 4)[:, None], proba[0], proba[1])
    ev = StreamingEvaluator("multiclass", window_rows=40, per_version=True)
    rows = ev.update(fl.table({"label": y.astype(float), "raw_prediction": pr, "model_version": versions}))
    rows += ev.flush()
    assert [(r["window"], r["model_version"]) for r in rows] == [
        (0, None), (0, 4), (1, None), (1, 4), (1, 7), (2, None), (2, 7), (3, None), (3, 7)]
    for r in rows:
        lo, hi = 40 * r["window"], min(40 * r["window"] + 40, len(y))
        idx = np.arange(len(y))
        m = (idx >= lo) & (idx < hi)
        cm = idx < hi
        if r["model_version"] is not None:
            m, cm = m & (versions == r["model_version"]), cm & (versions == r["model_version"])
        assert r["rows"] == m.sum() and r["cumulative_rows"] == cm.sum()
        assert r["window_accuracy"] == pytest.approx(skm.accuracy_score(y[m], pr[m].argmax(1)))
        assert r["window_macro_f1"] == pytest.approx(skm.f1_score(y[m], pr[m].argmax(1), average="macro"))
        assert r["window_log_loss"] == pytest.approx(skm.log_loss(y[m], pr[m], labels=[0, 1, 2]))
        assert r["cumulative_accuracy"] == pytest.approx(skm.accuracy_score(y[cm], pr[cm].argmax(1)))
        assert r["cumulative_log_loss"] == pytest.approx(skm.log_loss(y[cm], pr[cm], labels=[0, 1, 2]))

    xd, yd = load_diabetes(return_X_y=True)
    preds = [LinearRegression().fit(xd[::2], yd[::2]).predict(xd),
             LinearRegression().fit(xd[:, :3], yd).predict(xd[:, :3])]
    versions = np.r_[np.full(130, 1), np.full(150, 2), np.full(len(yd) - 280, 1)]  # a rollback to version 1
    pred = np.where(versions == 1, preds[0], preds[1])
    ev = StreamingEvaluator("regression", window_rows=100, per_version=True)
    rows = ev.evaluate(fl.table({"label": yd, "prediction": pred, "model_version": versions})).to_pylist()
    assert [(r["window"], r["model_version"]) for r in rows] == [
        (0, None), (0, 1), (1, None), (1, 1), (1, 2), (2, None), (2, 1), (2, 2), (3, None), (3, 1), (4, None),
        (4, 1)]
    for r in rows:
        idx = np.arange(len(yd))
        m, cm = (idx >= 100 * r["window"]) & (idx < 100 * r["window"] + 100), idx < 100 * r["window"] + 100
        if r["model_version"] is not None:
            m, cm = m & (versions == r["model_version"]), cm & (versions == r["model_version"])
        assert r["rows"] == m.sum() and r["cumulative_rows"] == cm.sum()
        assert r["window_rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yd[m], pred[m])))
        assert r["window_mae"] == pytest.approx(skm.mean_absolute_error(yd[m], pred[m]))
        assert r["window_r2"] == pytest.approx(skm.r2_score(yd[m], pred[m]))
        assert r["cumulative_rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yd[cm], pred[cm])))
        assert r["cumulative_mae"] == pytest.approx(skm.mean_absolute_error(yd[cm], pred[cm]))
        assert r["cumulative_r2"] == pytest.approx(skm.r2_score(yd[cm], pred[cm]))


def test_per_version_needs_a_version_on_every_row():
    with pytest.raises(ValueError, match=r"parameter 'per_version' = 'yes' violates in_array\(\[False, True\]\)"):
        StreamingEvaluator(per_version="yes")
    ev = StreamingEvaluator(raw_prediction_col="p", window_rows=4, per_version=True)
    with pytest.raises(ValueError, match=r"input column 'model_version' \(parameter 'version_col'\) is missing; "
                                         r"per_version=True needs"):
        ev.update(fl.table({"label": [0.0, 1.0], "p": [0.1, 0.8]}))
    bad = pa.table({"label": [0.0, 1.0, 1.0], "p": [0.1, 0.8, 0.7],
                    "model_version": pa.array([1, 1, None], pa.int64())})
    with pytest.raises(ValueError, match=r"column 'model_version' \(parameter 'version_col'\) has a null at row 2"):
        ev.update(bad)
    assert ev.flush() == []  # rejected batches leave no trace
    # without per_version, rows with a null version are counted but name no version
    (row,) = StreamingEvaluator(raw_prediction_col="p", window_rows=3).update(bad)
    assert row["model_versions"] == [1] and row["rows"] == 3


# ---------------------------------------------------------------- scores must be probabilities
def test_margin_scores_are_rejected_with_row_column_and_value():
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    t = fl.table({"features": x, "label": y.astype(float)})
    out = fl.classification.LinearSVC(reg=0.01).fit(t).transform(t)  # raw_prediction = [-margin, margin]
    margin = fl.linalg.to_numpy(out.column("raw_prediction"))[:, 1]
    ev = StreamingEvaluator("binary", window_rows=100)
    row = int(np.flatnonzero((margin < 0) | (margin > 1))[0])
    with pytest.raises(ValueError, match=re.escape(
            f"column 'raw_prediction' (parameter 'raw_prediction_col') has score {float(margin[row])!r} at row {row}, "
            f"which violates in_range(0, 1); binary evaluation needs probabilities")):
        ev.update(out)
    # the documented fix: a sigmoid of the margin keeps AUC and KS (scikit-learn on the raw margins)
    sig = 1 / (1 + np.exp(-margin))
    rows = ev.evaluate(fl.table({"label": y.astype(float), "raw_prediction": sig}))
    assert rows.column("rows").to_pylist() == [100] * 5 + [69]  # the rejected batch left no state behind
    assert rows.column("window_auc").to_pylist() == pytest.approx(
        [skm.roc_auc_score(y[i:i + 100], margin[i:i + 100]) for i in range(0, len(y), 100)], abs=1e-12)
    assert rows.column("cumulative_auc")[-1].as_py() == pytest.approx(skm.roc_auc_score(y, margin), abs=1e-4)
    assert rows.column("cumulative_ks")[-1].as_py() == pytest.approx(_ks(y, margin), abs=1e-3)


def test_out_of_range_scores_name_the_first_bad_row():
    p = np.array([0.1, 0.9, 0.3, 0.0, 1.0, 1.7, 0.2, 0.6, 0.5, -0.2])
    ev = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=4, per_version=True)
    t = fl.table({"label": [0.0, 1.0] * 5, "p": p, "model_version": [1] * 10})
    with pytest.raises(ValueError, match=r"column 'p' \(parameter 'raw_prediction_col'\) has score 1\.7 at row 5, "
                                         r"which violates in_range\(0, 1\)"):
        ev.update(t)
    assert ev.flush() == [] and ev.snapshot_state().data["n"] == 0  # the batch was rejected whole
    proba = np.full((6, 3), 1 / 3)
    proba[3] = [-0.1, 0.6, 0.5]
    proba[4] = [0.0, 0.0, 1.2]
    ev = StreamingEvaluator("multiclass", window_rows=6)
    with pytest.raises(ValueError, match=r"column 'raw_prediction' \(parameter 'raw_prediction_col'\) has probability "
                                         r"-0\.1 for class 0 at row 3, which violates in_range\(0, 1\); multiclass"):
        ev.update(fl.table({"label": [0.0, 1.0, 2.0] * 2, "raw_prediction": proba}))
    # regression predictions are not probabilities: any finite value is fine
    (row,) = StreamingEvaluator("regression", window_rows=2).update(fl.table({"label": [1.0, 3.0],
                                                                             "prediction": [-5.0, 12.0]}))
    assert row["window_mae"] == pytest.approx(skm.mean_absolute_error([1.0, 3.0], [-5.0, 12.0]))
