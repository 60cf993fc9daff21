"""fl.plot: the plotted numbers against scikit-learn's roc_curve, precision_recall_curve,
average_precision_score, confusion_matrix and metrics on the same data."""
from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression as SkLogisticRegression  # noqa: E402

import flowlearn as fl  # noqa: E402
from flowlearn import plot  # noqa: E402
from flowlearn.evaluation import StreamingEvaluator  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def cancer_scores():
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    p = SkLogisticRegression(C=0.01, max_iter=500).fit(x[::2], y[::2]).predict_proba(x)[:, 1]
    return y.astype(np.float64), np.round(p, 2)      # rounded: many tied scores


def test_roc_curve_matches_sklearn(cancer_scores):
    y, p = cancer_scores
    ax = plot.roc_curve((y, p), label="lr")
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), fpr, atol=1e-12)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tpr, atol=1e-12)
    _, _, mine = plot.roc_points(y, p)
    np.testing.assert_allclose(mine[1:], thr[1:])
    assert np.isinf(mine[0])
    assert ax.get_legend().get_texts()[0].get_text() == f"lr (AUC {skm.roc_auc_score(y, p):.3f})"
    assert len(ax.lines) == 2        # the curve and the chance diagonal
    plot.roc_curve((y, 1 - p), label="reversed", ax=ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()][1] == \
        f"reversed (AUC {skm.roc_auc_score(y, 1 - p):.3f})"
    assert len(ax.lines) == 3        # one diagonal however many curves


def test_roc_curve_of_a_scored_table_is_the_arrays_curve():
    x, y = load_breast_cancer(return_X_y=True)
    t = fl.table({"raw": fl.linalg.from_numpy(x), "label": y.astype(float)})
    model = fl.Pipeline([fl.feature.StandardScaler(input_col="raw", output_col="features", with_mean=True),
                         fl.classification.LogisticRegression(reg=0.1)]).fit(t)
    scored = model.transform(t)
    p1 = np.asarray(scored.column("raw_prediction").to_pylist())[:, 1]
    ax = plot.roc_curve(scored)              # element 1 of the probability vector
    fpr, tpr, _ = skm.roc_curve(y, p1, drop_intermediate=False)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), fpr, atol=1e-12)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tpr, atol=1e-12)
    ax2 = plot.pr_curve(scored.append_column("p", fl.table({"p": p1}).column("p")), raw_prediction_col="p")
    prec, rec, _ = skm.precision_recall_curve(y, p1)
    np.testing.assert_allclose(ax2.lines[0].get_xdata(), rec[::-1], atol=1e-12)


def test_pr_curve_matches_sklearn(cancer_scores):
    y, p = cancer_scores
    ax = plot.pr_curve((y, p))
    prec, rec, thr = skm.precision_recall_curve(y, p)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), rec[::-1], atol=1e-12)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), prec[::-1], atol=1e-12)
    assert ax.lines[0].get_drawstyle() == "steps-post"
    recall, precision, mine, ap = plot.pr_points(y, p)
    np.testing.assert_allclose(mine, thr[::-1])
    assert ap == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert ax.get_legend().get_texts()[0].get_text() == f"AP {skm.average_precision_score(y, p):.3f}"
    assert ax.lines[1].get_ydata()[0] == pytest.approx(y.mean())   # the random classifier's precision


def test_curves_reject_bad_input():
    with pytest.raises(ValueError, match="label 2.0 at row 1 .* is not 0 or 1"):
        plot.roc_curve(([0, 2, 1], [0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="only one class"):
        plot.roc_curve(([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="y_true has 3 rows but y_score has 2"):
        plot.pr_curve(([0, 1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="row 1 has label 1.0 and score nan"):
        plot.pr_curve(([0, 1], [0.1, float("nan")]))
    with pytest.raises(ValueError, match="column 'score'"):
        plot.roc_curve({"label": [0, 1]}, raw_prediction_col="score")


def test_confusion_matrix_matches_sklearn():
    x, y = load_iris(return_X_y=True)
    pred = SkLogisticRegression(C=0.05, max_iter=500).fit(x[::3], y[::3]).predict(x)
    data = {"label": y.astype(float), "prediction": pred.astype(float)}
    ax = plot.confusion_matrix(data)
    np.testing.assert_array_equal(ax.images[0].get_array(), skm.confusion_matrix(y, pred))
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"{v:,}" for v in skm.confusion_matrix(y, pred).ravel()]
    for norm in ("true", "pred", "all"):
        ax = plot.confusion_matrix(data, normalize=norm)
        np.testing.assert_allclose(ax.images[0].get_array(), skm.confusion_matrix(y, pred, normalize=norm),
                                   atol=1e-12)
    # a chosen order and subset of labels; rows outside it are not counted
    ax = plot.confusion_matrix(data, labels=[2, 0])
    np.testing.assert_array_equal(ax.images[0].get_array(), skm.confusion_matrix(y, pred, labels=[2, 0]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "0"]
    names = np.array(["setosa", "versicolor", "virginica"])
    ax = plot.confusion_matrix({"label": names[y].tolist(), "prediction": names[pred].tolist()})
    np.testing.assert_array_equal(ax.images[0].get_array(), skm.confusion_matrix(names[y], names[pred]))
    with pytest.raises(ValueError, match="'normalize' = 'rows' violates"):
        plot.confusion_matrix(data, normalize="rows")
    with pytest.raises(ValueError, match="repeats a label"):
        plot.confusion_matrix(data, labels=[1, 1])


def _windows(y, p, versions, window_rows, per_version=False):
    ev = StreamingEvaluator("binary", window_rows=window_rows, per_version=per_version)
    rows = []
    for lo in range(0, len(y), 50):
        rows += ev.update(fl.table({"label": y[lo:lo + 50], "raw_prediction": p[lo:lo + 50],
                                    "model_version": versions[lo:lo + 50]}))
    return rows + ev.flush()


def test_metrics_over_windows_plots_the_window_metrics(cancer_scores):
    y, p = cancer_scores
    versions = np.repeat([1, 2, 3], [200, 200, len(y) - 400])
    rows = _windows(y, p, versions, 100)
    frozen = _windows(y, np.clip(p + 0.2, 0, 1), np.ones(len(y), dtype=np.int64), 100)
    fig = plot.metrics_over_windows({"online": rows, "frozen": frozen}, metrics=["auc", "log_loss"], mark=2,
                                    cumulative=True)
    ax_auc, ax_ll = fig.axes
    n = len(rows)
    slices = [slice(100 * w, min(len(y), 100 * w + 100)) for w in range(n)]
    np.testing.assert_array_equal(ax_auc.lines[0].get_xdata(), np.arange(n))
    np.testing.assert_allclose(ax_auc.lines[0].get_ydata(), [skm.roc_auc_score(y[s], p[s]) for s in slices],
                               atol=1e-12)
    np.testing.assert_allclose(ax_ll.lines[0].get_ydata(),
                               [skm.log_loss(y[s], np.clip(p[s], 1e-15, 1 - 1e-15)) for s in slices], rtol=1e-9)
    pf = np.clip(p + 0.2, 0, 1)
    np.testing.assert_allclose(ax_auc.lines[2].get_ydata(), [skm.roc_auc_score(y[s], pf[s]) for s in slices],
                               atol=1e-12)
    # the cumulative line of the first evaluation: log loss of every row so far
    np.testing.assert_allclose(ax_ll.lines[1].get_ydata(),
                               [skm.log_loss(y[:s.stop], np.clip(p[:s.stop], 1e-15, 1 - 1e-15)) for s in slices],
                               rtol=1e-9)
    assert [t.get_text() for t in ax_auc.texts] == [f"v{versions[s][-1]}" for s in slices]
    assert any(list(ln.get_xdata()) == [2, 2] for ln in ax_auc.lines)            # the mark
    with pytest.raises(ValueError, match="no metric 'rmse'"):
        plot.metrics_over_windows(rows, metrics=["rmse"])
    with pytest.raises(TypeError, match="expected StreamingEvaluator rows"):
        plot.metrics_over_windows("rows")


def test_metrics_by_version_matches_sklearn_on_each_versions_rows(cancer_scores):
    y, p = cancer_scores
    versions = np.repeat([1, 2, 3], [150, 250, len(y) - 400])
    rows = _windows(y, p, versions, 100, per_version=True)
    ax = plot.metrics_by_version(rows, metric="auc")
    # bars: each version's cumulative AUC over all its rows (histogram-based, 1e-5 wide bins)
    heights = [b.get_height() for b in ax.patches]
    expected = [skm.roc_auc_score(y[versions == v], p[versions == v]) for v in (1, 2, 3)]
    np.testing.assert_allclose(heights, expected, atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["v1", "v2", "v3"]
    ax = plot.metrics_by_version(rows, metric="accuracy")
    np.testing.assert_allclose([b.get_height() for b in ax.patches],
                               [skm.accuracy_score(y[versions == v], p[versions == v] >= 0.5) for v in (1, 2, 3)],
                               atol=1e-12)
    # the dots: window 1 (rows 100..199) has version 1 on rows 100..149 and version 2 on 150..199
    dots = ax.lines[0]
    pairs = list(zip(dots.get_xdata(), dots.get_ydata()))
    assert (0, pytest.approx(skm.accuracy_score(y[100:150], p[100:150] >= 0.5))) in pairs
    assert (1, pytest.approx(skm.accuracy_score(y[150:200], p[150:200] >= 0.5))) in pairs
    with pytest.raises(ValueError, match="per_version=True"):
        plot.metrics_by_version(_windows(y, p, versions, 100), metric="auc")


def test_learning_curve_binary_and_regression():
    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x = (x - x.mean(0)) / x.std(0)
    t = fl.table({"features": fl.linalg.from_numpy(x[order]), "label": y[order].astype(float)})
    train, test = t.slice(0, 400), t.slice(400)
    est = fl.classification.LogisticRegression(reg=0.1)
    ax = plot.learning_curve(est, train, test, sizes=[0.1, 0.5, 1.0], metric="auc")
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [40, 200, 400])
    ytest = y[order][400:]
    for i, n in enumerate([40, 200, 400]):
        model = est.fit(train.slice(0, n))
        p_tr = np.asarray(model.transform(train.slice(0, n)).column("raw_prediction").to_pylist())[:, 1]
        p_te = np.asarray(model.transform(test).column("raw_prediction").to_pylist())[:, 1]
        assert ax.lines[0].get_ydata()[i] == pytest.approx(skm.roc_auc_score(y[order][:n], p_tr), abs=1e-12)
        assert ax.lines[1].get_ydata()[i] == pytest.approx(skm.roc_auc_score(ytest, p_te), abs=1e-12)

    xd, yd = load_diabetes(return_X_y=True)
    d = fl.table({"features": fl.linalg.from_numpy(xd), "label": yd})
    reg = fl.regression.LinearRegression()
    ax = plot.learning_curve(reg, d.slice(0, 300), d.slice(300), sizes=2, metric="rmse")
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [150, 300])
    pred = np.asarray(reg.fit(d.slice(0, 300)).transform(d.slice(300)).column("prediction").to_pylist())
    assert ax.lines[1].get_ydata()[-1] == pytest.approx(np.sqrt(skm.mean_squared_error(yd[300:], pred)), rel=1e-9)
    with pytest.raises(ValueError, match="'metric' = 'f2' violates"):
        plot.learning_curve(reg, d, d, metric="f2")
    with pytest.raises(ValueError, match="must be fractions in"):
        plot.learning_curve(reg, d, d, sizes=[0.0, 1.5])
