"""BinaryClassificationEvaluator (Flink ML areaUnderROC / areaUnderPR / ks / areaUnderLorenz).

Oracles: Flink ML's published BinaryClassificationEvaluatorTest values, and scikit-learn on
the breast-cancer data set scored by a fitted scikit-learn model: roc_auc_score (ROC area),
precision_recall_curve + auc (trapezoid PR area, Flink ML's definition, which is not
average_precision), roc_curve for KS = max |TPR - FPR| and for the Lorenz curve
(positive rate = (TPR * P + FPR * N) / (P + N) against TPR), all with sample_weight.
"""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.evaluation import BinaryClassificationEvaluator

ALL = ["areaUnderROC", "areaUnderPR", "ks", "areaUnderLorenz"]

# Flink ML BinaryClassificationEvaluatorTest
FLINK_DATA = [(1.0, [0.1, 0.9]), (1.0, [0.2, 0.8]), (1.0, [0.3, 0.7]), (0.0, [0.25, 0.75]), (0.0, [0.4, 0.6]),
              (1.0, [0.35, 0.65]), (1.0, [0.45, 0.55]), (0.0, [0.6, 0.4]), (0.0, [0.7, 0.3]), (1.0, [0.65, 0.35]),
              (0.0, [0.8, 0.2]), (1.0, [0.9, 0.1])]
FLINK_MULTI = [(1.0, [0.1, 0.9]), (1.0, [0.1, 0.9]), (1.0, [0.1, 0.9]), (0.0, [0.25, 0.75]), (0.0, [0.4, 0.6]),
               (1.0, [0.1, 0.9]), (1.0, [0.1, 0.9]), (0.0, [0.6, 0.4]), (0.0, [0.7, 0.3]), (1.0, [0.1, 0.9]),
               (0.0, [0.8, 0.2]), (1.0, [0.9, 0.1])]
FLINK_WEIGHTS = [0.8, 0.7, 0.5, 1.2, 1.3, 1.5, 1.4, 0.3, 0.5, 1.9, 1.2, 1.0]


def flink_table(rows, weights=None):
    cols = {"label": [r[0] for r in rows], "raw_prediction": [r[1] for r in rows]}
    if weights is not None:
        cols["weight"] = weights
    return fl.table(cols)


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(x[::2], y[::2])
    proba = clf.predict_proba(x)
    w = np.random.default_rng(0).uniform(0.1, 3.0, len(y))
    return y.astype(np.float64), proba, w


def oracle(y, score, w=None):
    fpr, tpr, _ = roc_curve(y, score, sample_weight=w, drop_intermediate=False)
    precision, recall, _ = precision_recall_curve(y, score, sample_weight=w)
    ww = np.ones(len(y)) if w is None else w
    p, n = ww[y == 1].sum(), ww[y != 1].sum()
    rate = (tpr * p + fpr * n) / (p + n)
    return {
        "areaUnderROC": roc_auc_score(y, score, sample_weight=w),
        "areaUnderPR": auc(recall, precision),
        "ks": float(np.max(np.abs(tpr - fpr))),
        "areaUnderLorenz": auc(rate, tpr),
    }


def evaluate(table, **params):
    out = BinaryClassificationEvaluator(metrics_names=ALL, **params).transform(table)
    assert out.num_rows == 1
    return out.to_pylist()[0]


# --- params --------------------------------------------------------------------------------


def test_param_defaults_and_set():
    ev = BinaryClassificationEvaluator()
    assert (ev.label_col, ev.raw_prediction_col, ev.weight_col, ev.metrics_names) == (
        "label", "raw_prediction", None, ["areaUnderROC", "areaUnderPR"])
    ev.set(label_col="y", raw_prediction_col="raw", weight_col="w", metrics_names=["areaUnderROC"])
    assert (ev.label_col, ev.raw_prediction_col, ev.weight_col, ev.metrics_names) == ("y", "raw", "w", ["areaUnderROC"])


def test_bad_params():
    with pytest.raises(ValueError, match=r"'metrics_names' = \['areaUnderROC', 'accuracy'\] violates in_array"):
        BinaryClassificationEvaluator(metrics_names=["areaUnderROC", "accuracy"])
    with pytest.raises(TypeError, match="BinaryClassificationEvaluator has no parameter 'metrics'"):
        BinaryClassificationEvaluator(metrics=["ks"])
    t = flink_table(FLINK_DATA)
    with pytest.raises(ValueError, match="'metrics_names' is empty"):
        BinaryClassificationEvaluator(metrics_names=[]).transform(t)
    with pytest.raises(ValueError, match="repeats a metric"):
        BinaryClassificationEvaluator(metrics_names=["ks", "ks"]).transform(t)


# --- Flink ML published values -------------------------------------------------------------


def test_flink_ml_published_values():
    ev = BinaryClassificationEvaluator(metrics_names=["areaUnderPR", "ks", "areaUnderROC"])
    out = ev.transform(flink_table(FLINK_DATA))
    assert out.column_names == ["areaUnderPR", "ks", "areaUnderROC"]
    assert list(out.to_pylist()[0].values()) == pytest.approx([0.7691481137909708, 0.3714285714285714,
                                                               0.6571428571428571], abs=1e-12)
    scalar = fl.table({"label": [int(r[0]) for r in FLINK_DATA], "raw_prediction": [r[1][1] for r in FLINK_DATA]})
    assert ev.transform(scalar).equals(out)


def test_flink_ml_published_values_with_ties():
    assert list(evaluate(flink_table(FLINK_MULTI)).values()) == pytest.approx(
        [0.8571428571428571, 0.9377705627705628, 0.8571428571428571, 0.6488095238095237], abs=1e-12)


def test_weighted_auc_is_the_weighted_roc_area():
    # Flink ML's published value for this case (0.8911680911680911) comes from a rank formula that
    # mixes row counts with weights and changes when all weights are scaled; flowlearn returns the
    # weighted ROC area, which is scale-free.
    y = np.array([r[0] for r in FLINK_MULTI])
    score = np.array([r[1][1] for r in FLINK_MULTI])
    w = np.array(FLINK_WEIGHTS)
    got = evaluate(flink_table(FLINK_MULTI, FLINK_WEIGHTS), weight_col="weight")["areaUnderROC"]
    assert got == pytest.approx(roc_auc_score(y, score, sample_weight=w), abs=1e-12)
    assert got == pytest.approx(6.8 * 4.5 / (7.8 * 4.5), abs=1e-12)  # closed form: one positive below all
    scaled = evaluate(flink_table(FLINK_MULTI, (w * 3).tolist()), weight_col="weight")["areaUnderROC"]
    assert scaled == pytest.approx(got, abs=1e-12)


# --- scikit-learn oracles on real data -----------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_sklearn_on_breast_cancer(cancer, ties, weighted):
    y, proba, w = cancer
    if ties:
        proba = np.round(proba, 2)  # many equal scores
    weight = w if weighted else None
    cols = {"label": y, "raw_prediction": proba}
    if weighted:
        cols["weight"] = w
    got = evaluate(fl.table(cols), weight_col="weight" if weighted else None)
    expected = oracle(y, proba[:, 1], weight)
    for name in ALL:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_scalar_score_column_and_custom_columns(cancer):
    y, proba, w = cancer
    t = fl.table({"y": y.astype(np.int64), "s": proba[:, 1], "w": w})
    got = evaluate(t, label_col="y", raw_prediction_col="s", weight_col="w")
    expected = oracle(y, proba[:, 1], w)
    assert got == pytest.approx(expected, abs=1e-12)


def test_sparse_raw_prediction(cancer):
    y, proba, _ = cancer
    t = fl.table({"label": y, "raw_prediction": sps.csr_matrix(np.round(proba, 1))})
    assert fl.linalg.is_sparse(t.schema.field("raw_prediction").type)
    assert evaluate(t) == pytest.approx(oracle(y, np.round(proba[:, 1], 1)), abs=1e-12)


def test_order_of_rows_does_not_matter(cancer):
    y, proba, w = cancer
    proba = np.round(proba, 1)
    perm = np.random.default_rng(1).permutation(len(y))
    a = evaluate(fl.table({"label": y, "raw_prediction": proba, "weight": w}), weight_col="weight")
    b = evaluate(fl.table({"label": y[perm], "raw_prediction": proba[perm], "weight": w[perm]}), weight_col="weight")
    assert a == pytest.approx(b, abs=1e-12)
    assert b == pytest.approx(oracle(y[perm], proba[perm, 1], w[perm]), abs=1e-12)


def test_label_one_is_positive_everything_else_negative():
    t = fl.table({"label": [1.0, 2.0, 1.0, -1.0], "raw_prediction": [0.9, 0.8, 0.3, 0.1]})
    y = np.array([1, 0, 1, 0])
    assert evaluate(t) == pytest.approx(oracle(y, np.array([0.9, 0.8, 0.3, 0.1])), abs=1e-12)


def test_closed_form_small():
    # desc scores: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-). TPR 0,.5,.5,1,1; FPR 0,0,.5,.5,1; rate 0,.25,.5,.75,1
    got = evaluate(fl.table({"label": [0, 0, 1, 1], "raw_prediction": [0.1, 0.4, 0.35, 0.8]}))
    assert got == pytest.approx({"areaUnderROC": 0.75, "ks": 0.5, "areaUnderLorenz": 0.625,
                                 "areaUnderPR": 0.5 * 1.0 + 0.5 * (0.5 + 2 / 3) / 2}, abs=1e-12)


def test_single_class_input():
    got = evaluate(fl.table({"label": [0.0, 0.0], "raw_prediction": [0.2, 0.7]}))
    assert np.isnan(got["areaUnderROC"])
    got = evaluate(fl.table({"label": [1.0, 1.0], "raw_prediction": [0.2, 0.7]}))
    assert np.isnan(got["areaUnderROC"]) and got["areaUnderPR"] == pytest.approx(1.0)


def test_millions_of_rows():
    rng = np.random.default_rng(0)
    n = 1_000_000
    score = np.round(rng.random(n), 4)
    y = (rng.random(n) < score).astype(np.float64)
    got = evaluate(pa.table({"label": y, "raw_prediction": score}))
    assert got["areaUnderROC"] == pytest.approx(roc_auc_score(y, score), abs=1e-9)


# --- persistence, empty and bad input ------------------------------------------------------


def test_save_load(tmp_path):
    ev = BinaryClassificationEvaluator(metrics_names=["ks", "areaUnderLorenz"], weight_col="w")
    ev.save(str(tmp_path / "ev"))
    loaded = fl.load(str(tmp_path / "ev"))
    assert isinstance(loaded, BinaryClassificationEvaluator) and loaded.get_params() == ev.get_params()
    t = flink_table(FLINK_DATA).append_column("w", pa.array([1.0] * 12))
    assert loaded.transform(t).equals(ev.transform(t))
    y, score = np.array([r[0] for r in FLINK_DATA]), np.array([r[1][1] for r in FLINK_DATA])
    expected = oracle(y, score)
    assert loaded.transform(t).to_pylist() == [pytest.approx({"ks": 0.3714285714285714,  # Flink ML's value
                                                              "areaUnderLorenz": expected["areaUnderLorenz"]},
                                                             abs=1e-12)]


def test_empty_input():
    t = pa.table({"label": pa.array([], pa.float64()), "raw_prediction": pa.array([], pa.float64())})
    with pytest.raises(ValueError, match="BinaryClassificationEvaluator: needs at least one row"):
        BinaryClassificationEvaluator().transform(t)


def test_bad_input_messages():
    ev = BinaryClassificationEvaluator()
    with pytest.raises(ValueError,
                       match=r"input column 'raw_prediction' \(parameter 'raw_prediction_col'\) is missing"):
        ev.transform({"label": [1.0], "score": [0.5]})
    with pytest.raises(ValueError, match="column 'raw_prediction' has NaN or infinity at row 1"):
        ev.transform({"label": [1.0, 0.0], "raw_prediction": [[0.5, 0.5], [0.1, np.nan]]})
    with pytest.raises(ValueError, match="holds vectors of size 1; a vector raw prediction needs at least 2"):
        ev.transform({"label": [1.0, 0.0], "raw_prediction": [[0.5], [0.1]]})
    with pytest.raises(ValueError, match="column 'label' has a null at row 0"):
        ev.transform({"label": [None, 0.0], "raw_prediction": [0.5, 0.1]})
    with pytest.raises(TypeError, match="column 'raw_prediction' has type string, expected a numeric column"):
        ev.transform({"label": [1.0], "raw_prediction": ["high"]})
    with pytest.raises(ValueError,
                       match=r"column 'w' \(parameter 'weight_col'\) has the negative weight -1.0 at row 1"):
        BinaryClassificationEvaluator(weight_col="w").transform(
            {"label": [1.0, 0.0], "raw_prediction": [0.5, 0.1], "w": [1.0, -1.0]})


def test_evaluate_returns_plain_floats_equal_to_the_oracle(cancer):
    y, proba, w = cancer
    t = fl.table({"label": y, "raw_prediction": proba, "weight": w})
    got = BinaryClassificationEvaluator(metrics_names=["ks", "areaUnderROC"], weight_col="weight").evaluate(t)
    assert list(got) == ["ks", "areaUnderROC"] and all(type(v) is float for v in got.values())
    expected = oracle(y, proba[:, 1], w)
    assert got == pytest.approx({k: expected[k] for k in got}, abs=1e-12)
    with pytest.raises(TypeError, match="evaluate takes a table"):
        BinaryClassificationEvaluator().evaluate(fl.stream.from_table(t))
