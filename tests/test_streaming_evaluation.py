"""StreamingEvaluator against scikit-learn's metrics on the same windows."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

import flowlearn as fl
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
    data, tables = a.snapshot_state()
    b = StreamingEvaluator("binary", raw_prediction_col="p", window_rows=100)
    b.restore_state(data, tables)
    rest = t.slice(150)
    ra, rb = a.update(rest) + a.flush(), b.update(rest) + b.flush()
    assert len(ra) == len(rb) == 5  # windows 2..6: the restored one holds rows 100-199 across the snapshot
    assert [r["window_auc"] for r in ra] == pytest.approx([r["window_auc"] for r in rb])
    assert [r["window_auc"] for r in rb] == pytest.approx(want_auc[1:], abs=1e-12)
    assert ra[-1]["cumulative_auc"] == rb[-1]["cumulative_auc"]
    assert rb[-1]["cumulative_log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
