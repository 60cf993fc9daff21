"""``fl.plot``: matplotlib figures for notebooks and reports.

* :func:`roc_curve` and :func:`pr_curve`: a binary classifier's ROC and precision-recall curves
  (every distinct score a threshold, ties grouped), with the AUC / average precision in the legend;
* :func:`confusion_matrix`: counts (or rates) of true against predicted labels, annotated;
* :func:`metrics_over_windows`: ``StreamingEvaluator`` rows, one panel per metric, one line per
  evaluation (e.g. the online model against the frozen batch model), each window annotated with
  the model version that scored it;
* :func:`metrics_by_version`: per-version rows (``per_version=True``): each model version's
  cumulative metric, and its window values;
* :func:`learning_curve`: an estimator's metric on its training rows and on held-out rows as the
  training set grows.

Inputs are tables (anything ``fl.table`` accepts: Arrow, pandas, dict of columns) with the
usual column names (``label``, ``raw_prediction``: the positive-class probability, or element 1
of a probability vector; ``prediction``), or ``(y_true, y_score)`` arrays for the curves. Each
function draws into ``ax`` (or ``axes``) when given, else into a new figure, and returns the
Axes (or Figure); the plotted numbers are the lines' data. matplotlib is needed (the ``demo``
extra); it is imported when a function is called.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import flowlearn as fl
    >>> from flowlearn import plot
    >>> scored = {"label": [0, 0, 1, 1], "raw_prediction": [0.1, 0.4, 0.35, 0.8]}
    >>> ax = plot.roc_curve(scored, label="model")
    >>> ax.get_legend().get_texts()[0].get_text()
    'model (AUC 0.750)'
    >>> ax.lines[0].get_xdata().tolist(), ax.lines[0].get_ydata().tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from flowlearn.data.columns import numeric_column, require_column, string_column, vector_column
from flowlearn.data.table import table as to_table
from flowlearn.evaluation.metrics import _roc_points, binary_auc, log_loss, regression_metrics
from flowlearn.linalg import is_vector_type

__all__ = ["roc_curve", "pr_curve", "confusion_matrix", "metrics_over_windows", "metrics_by_version",
           "learning_curve", "roc_points", "pr_points"]

_METRIC_LABELS = {"auc": "AUC", "log_loss": "log loss", "accuracy": "accuracy", "rmse": "RMSE", "mae": "MAE",
                  "r2": "R²", "precision": "precision", "recall": "recall", "f1": "F1", "ks": "KS",
                  "macro_f1": "macro F1"}


def _plt() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"fl.plot needs matplotlib ({e}); pip install 'flowlearn[demo]'") from None
    return plt


def _new_ax(ax: Any, figsize: tuple[float, float] = (5.0, 4.5)) -> Any:
    if ax is not None:
        return ax
    _fig, ax = _plt().subplots(figsize=figsize)
    return ax


# ---------------------------------------------------------------------------------------------
# inputs

def _binary_inputs(data: Any, label_col: str, raw_prediction_col: str, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels in {0, 1}, positive-class scores) from a table or a ``(y_true, y_score)`` pair."""
    stage = f"fl.plot.{fn}"
    if isinstance(data, tuple) and len(data) == 2:
        y = np.asarray(data[0], dtype=np.float64).reshape(-1)
        s = np.asarray(data[1], dtype=np.float64)
        if s.ndim == 2:
            s = s[:, 1] if s.shape[1] >= 2 else s[:, 0]
        if len(y) != len(s):
            raise ValueError(f"{stage}: y_true has {len(y)} rows but y_score has {len(s)}; they must match")
        bad = ~np.isfinite(s) | ~np.isfinite(y)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{stage}: row {row} has label {float(y[row])!r} and score {float(s[row])!r}; both must "
                             f"be finite")
    else:
        t = data if isinstance(data, pa.Table) else to_table(data)
        y = numeric_column(t, label_col, stage, param="label_col")
        col = require_column(t, raw_prediction_col, stage, "raw_prediction_col")
        if is_vector_type(col.type):
            x = vector_column(t, raw_prediction_col, stage, param="raw_prediction_col", dense=True)
            if x.shape[0] and x.shape[1] < 2:
                raise ValueError(f"{stage}: column '{raw_prediction_col}' (parameter 'raw_prediction_col') holds "
                                 f"vectors of size {x.shape[1]}; element 1 must be the positive class's score")
            s = np.ascontiguousarray(x[:, 1])
        else:
            s = numeric_column(t, raw_prediction_col, stage, param="raw_prediction_col")
    if len(y) == 0:
        raise ValueError(f"{stage}: no rows to plot")
    off = (y != 0) & (y != 1)
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(f"{stage}: label {float(y[row])!r} at row {row} (column '{label_col}') is not 0 or 1; binary "
                         f"curves need 0/1 labels")
    return y, s


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, descending, from ``(0, 0)`` at
    threshold ``inf`` (scikit-learn's ``roc_curve(..., drop_intermediate=False)``). Needs both classes."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    fp, tp = _roc_points(y, s, None)
    if fp[-1] == 0 or tp[-1] == 0:
        raise ValueError("fl.plot: an ROC curve needs positive and negative labels; only one class is present")
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    return fp / fp[-1], tp / tp[-1], thresholds


def pr_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(recall, precision, thresholds, average_precision)``: from recall 0 (precision 1), one
    point per distinct score, descending, as scikit-learn's ``precision_recall_curve`` (reversed)
    and ``average_precision_score`` (``sum((R_n - R_{n-1}) P_n)``). Needs a positive label."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    fp, tp = _roc_points(y, s, None)
    fp, tp = fp[1:], tp[1:]
    if tp[-1] == 0:
        raise ValueError("fl.plot: a precision-recall curve needs positive labels; there are none")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[0.0, recall], np.r_[1.0, precision], np.unique(s)[::-1], ap


# ---------------------------------------------------------------------------------------------
# curves

def roc_curve(data: Any, *, label_col: str = "label", raw_prediction_col: str = "raw_prediction", ax: Any = None,
              label: str | None = None, chance: bool = True, **line_kw: Any) -> Any:
    """The ROC curve of ``data`` (a scored table, or ``(y_true, y_score)``) on ``ax``; the legend
    gives the AUC. Call again with the same ``ax`` to compare models. Returns the Axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from flowlearn import plot
        >>> ax = plot.roc_curve(([0, 1, 0, 1], [0.2, 0.9, 0.8, 0.7]), label="a")
        >>> ax = plot.roc_curve(([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]), label="b", ax=ax)
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['a (AUC 0.750)', 'b (AUC 1.000)']
    """
    y, s = _binary_inputs(data, label_col, raw_prediction_col, "roc_curve")
    fpr, tpr, _ = roc_points(y, s)
    auc = binary_auc(y, s)
    ax = _new_ax(ax)
    name = f"{label} (AUC {auc:.3f})" if label else f"AUC {auc:.3f}"
    ax.plot(fpr, tpr, label=name, **line_kw)
    if chance and not any(getattr(ln, "_flowlearn_chance", False) for ln in ax.lines):
        (diag,) = ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        diag._flowlearn_chance = True
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.grid(alpha=0.3)
    ax.legend(handles=[ln for ln in ax.lines if not getattr(ln, "_flowlearn_chance", False)], loc="lower right")
    return ax


def pr_curve(data: Any, *, label_col: str = "label", raw_prediction_col: str = "raw_prediction", ax: Any = None,
             label: str | None = None, **line_kw: Any) -> Any:
    """The precision-recall curve of ``data`` (a scored table, or ``(y_true, y_score)``) as a step
    curve (precision holds until the next threshold), the legend giving the average precision
    and the horizontal line the positive rate (a random classifier's precision). Returns the Axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from flowlearn import plot
        >>> ax = plot.pr_curve({"label": [0, 0, 1, 1], "raw_prediction": [0.1, 0.4, 0.35, 0.8]})
        >>> ax.get_legend().get_texts()[0].get_text()
        'AP 0.833'
        >>> ax.lines[0].get_xdata().tolist(), ax.lines[0].get_ydata().round(3).tolist()
        ([0.0, 0.5, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.667, 0.5])
    """
    y, s = _binary_inputs(data, label_col, raw_prediction_col, "pr_curve")
    recall, precision, _, ap = pr_points(y, s)
    ax = _new_ax(ax)
    name = f"{label} (AP {ap:.3f})" if label else f"AP {ap:.3f}"
    ax.plot(recall, precision, drawstyle="steps-post", label=name, **line_kw)
    ax.axhline(float(np.mean(y)), linestyle=":", color="grey", linewidth=1)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall curve")
    ax.grid(alpha=0.3)
    ax.legend(handles=[ln for ln in ax.lines if ln.get_label() and not ln.get_label().startswith("_")],
              loc="lower left")
    return ax


def confusion_matrix(data: Any, *, label_col: str = "label", prediction_col: str = "prediction",
                     labels: Sequence[Any] | None = None, normalize: str | None = None, ax: Any = None,
                     cmap: str = "Blues") -> Any:
    """The confusion matrix of ``data`` (a table with ``label_col`` and ``prediction_col``): row i
    counts the rows of true label ``labels[i]``, column j those predicted ``labels[j]``
    (``labels``: default the sorted labels seen in either column). ``normalize``: ``None``
    (counts), ``"true"`` (each row sums to 1), ``"pred"`` (each column) or ``"all"``. The matrix
    is the image's array; each cell is annotated. Returns the Axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from flowlearn import plot
        >>> ax = plot.confusion_matrix({"label": [0, 0, 1, 1, 2], "prediction": [0, 1, 1, 1, 0]})
        >>> ax.images[0].get_array().tolist()
        [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    """
    stage = "fl.plot.confusion_matrix"
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"{stage}: parameter 'normalize' = {normalize!r} violates in_array([None, 'true', 'pred', "
                         f"'all'])")
    t = data if isinstance(data, pa.Table) else to_table(data)
    y, p = _label_values(t, label_col, "label_col", stage), _label_values(t, prediction_col, "prediction_col", stage)
    if labels is None:
        classes = np.unique(np.concatenate([y, p]))
    else:
        classes = np.asarray(list(labels))
        classes = classes.astype(y.dtype) if y.dtype.kind in "iuf" and classes.dtype.kind in "iuf" else \
            classes.astype(str)
        if len(np.unique(classes)) != len(classes):
            raise ValueError(f"{stage}: parameter 'labels' = {list(labels)} repeats a label")
    k = len(classes)
    if k == 0:
        raise ValueError(f"{stage}: no rows to count")
    sorter = np.argsort(classes, kind="stable")

    def index(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if v.dtype.kind != classes.dtype.kind and not (v.dtype.kind in "iuf" and classes.dtype.kind in "iuf"):
            return np.zeros(len(v), dtype=np.int64), np.zeros(len(v), dtype=bool)
        i = sorter[np.minimum(np.searchsorted(classes, v, sorter=sorter), k - 1)]
        return i, classes[i] == v

    yi, y_in = index(y)
    pi, p_in = index(p)
    keep = y_in & p_in              # rows with a label outside `labels` are not counted (as scikit-learn)
    counts = np.bincount(yi[keep] * k + pi[keep], minlength=k * k).reshape(k, k)
    values: np.ndarray = counts
    if normalize is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            if normalize == "true":
                values = counts / counts.sum(axis=1, keepdims=True)
            elif normalize == "pred":
                values = counts / counts.sum(axis=0, keepdims=True)
            else:
                values = counts / counts.sum()
        values = np.nan_to_num(values)
    ax = _new_ax(ax)
    im = ax.imshow(values, cmap=cmap, interpolation="nearest")
    names = [str(c) for c in classes]
    ax.set_xticks(range(k), labels=names)
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("confusion matrix" + (f" (normalized over {normalize})" if normalize else ""))
    vmax = float(values.max()) if values.size else 0.0
    for i in range(k):
        for j in range(k):
            v = values[i, j]
            ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v):,}", ha="center", va="center",
                    color="white" if vmax and v > vmax / 2 else "black", fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def _label_values(t: pa.Table, col: str, param: str, stage: str) -> np.ndarray:
    c = require_column(t, col, stage, param)
    if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) or pa.types.is_dictionary(c.type):
        if c.null_count:
            raise ValueError(f"{stage}: column '{col}' (parameter '{param}') has a null; filter or impute it first")
        return np.asarray(string_column(t, col, stage, param).to_pylist(), dtype=object).astype(str)
    x = numeric_column(t, col, stage, param=param)
    return x.astype(np.int64) if np.all(x == np.round(x)) else x


# ---------------------------------------------------------------------------------------------
# streaming evaluation rows

def _rows(rows: Any, fn: str) -> list[dict]:
    if isinstance(rows, pa.Table):
        return rows.to_pylist()
    if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
        return rows
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):     # pandas
        return rows.to_dict("records")
    raise TypeError(f"fl.plot.{fn}: expected StreamingEvaluator rows (a list of dicts or a table), "
                    f"got {type(rows).__name__}")


def metrics_over_windows(evaluations: Any, metrics: Sequence[str] = ("auc", "log_loss"), *,
                         cumulative: bool = False, annotate_versions: bool = True,
                         mark: float | Sequence[float] | None = None, axes: Any = None) -> Any:
    """Window metrics of ``StreamingEvaluator`` rows, one panel per metric (x: window).

    ``evaluations``: rows (a list of dicts or a table) or ``{name: rows}`` to compare several
    (e.g. the online model and the frozen batch model on the same traffic); per-version rows
    (``model_version`` not None) are left out. ``cumulative`` adds each evaluation's cumulative
    metric dashed. ``annotate_versions`` labels each window of the first evaluation with the
    newest model version that scored it (``v3``). ``mark``: window(s) to mark with a vertical
    line (e.g. where the data drifts). ``axes``: one Axes per metric. Returns the Figure.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import flowlearn as fl
        >>> from flowlearn import plot
        >>> from flowlearn.evaluation import StreamingEvaluator
        >>> ev = StreamingEvaluator("binary", window_rows=4)
        >>> rows = ev.update(fl.table({"label": [0, 1, 0, 1] * 2, "raw_prediction": [0.2, 0.9, 0.4, 0.3] * 2,
        ...                            "model_version": [1] * 4 + [2] * 4}))
        >>> fig = plot.metrics_over_windows(rows, metrics=["auc", "accuracy"])
        >>> [[float(v) for v in ax.lines[0].get_ydata()] for ax in fig.axes]
        [[0.75, 0.75], [0.75, 0.75]]
    """
    if isinstance(evaluations, Mapping):
        named = {str(k): _rows(v, "metrics_over_windows") for k, v in evaluations.items()}
    else:
        named = {"": _rows(evaluations, "metrics_over_windows")}
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("fl.plot.metrics_over_windows: parameter 'metrics' is empty; name at least one metric")
    named = {k: [r for r in v if r.get("model_version") is None] for k, v in named.items()}
    for name, rows in named.items():
        for m in metrics:
            if rows and f"window_{m}" not in rows[0]:
                have = sorted(c[len("window_"):] for c in rows[0] if c.startswith("window_"))
                raise ValueError(f"fl.plot.metrics_over_windows: the rows{f' of {name!r}' if name else ''} have no "
                                 f"metric {m!r} (no column 'window_{m}'); they have {have}")
    if axes is None:
        fig, axes = _plt().subplots(len(metrics), 1, figsize=(9, 2.6 * len(metrics) + 0.6), sharex=True,
                                    squeeze=False)
        axes = list(axes[:, 0])
    else:
        axes = list(np.atleast_1d(axes))
        if len(axes) != len(metrics):
            raise ValueError(f"fl.plot.metrics_over_windows: {len(axes)} axes for {len(metrics)} metrics; pass one "
                             f"Axes per metric")
        fig = axes[0].figure
    marks = [] if mark is None else list(np.atleast_1d(mark))
    for ax, m in zip(axes, metrics):
        for i, (name, rows) in enumerate(named.items()):
            w = [r["window"] for r in rows]
            (line,) = ax.plot(w, [_num(r.get(f"window_{m}")) for r in rows], "o-" if i == 0 else "s--",
                              markersize=4, label=name or "window")
            if cumulative:
                ax.plot(w, [_num(r.get(f"cumulative_{m}")) for r in rows], ":", color=line.get_color(),
                        label=f"{name} cumulative" if name else "cumulative")
            if annotate_versions and i == 0:
                for r in rows:
                    vs = r.get("model_versions") or []
                    y = _num(r.get(f"window_{m}"))
                    if vs and np.isfinite(y):
                        ax.annotate(f"v{vs[-1]}", (r["window"], y), fontsize=6, textcoords="offset points",
                                    xytext=(0, 4), ha="center")
        for x in marks:
            ax.axvline(x, color="grey", alpha=0.5)
        ax.set_ylabel(f"window {_METRIC_LABELS.get(m, m)}")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("window")
    if len(named) > 1 or cumulative:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def metrics_by_version(rows: Any, metric: str = "auc", *, ax: Any = None) -> Any:
    """Each model version's ``metric`` from per-version ``StreamingEvaluator`` rows
    (``per_version=True``): a bar per version of its cumulative metric over all its rows (from
    its newest row), and dots of its window values. Returns the Axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import flowlearn as fl
        >>> from flowlearn import plot
        >>> from flowlearn.evaluation import StreamingEvaluator
        >>> ev = StreamingEvaluator("binary", window_rows=4, per_version=True)
        >>> rows = ev.update(fl.table({"label": [0, 1, 0, 1], "raw_prediction": [0.2, 0.9, 0.6, 0.4],
        ...                            "model_version": [1, 1, 2, 2]}))
        >>> ax = plot.metrics_by_version(rows, metric="accuracy")
        >>> [float(p.get_height()) for p in ax.patches]
        [1.0, 0.0]
    """
    rows = [r for r in _rows(rows, "metrics_by_version") if r.get("model_version") is not None]
    if not rows:
        raise ValueError("fl.plot.metrics_by_version: no per-version rows (model_version set); evaluate with "
                         "StreamingEvaluator(..., per_version=True)")
    if f"cumulative_{metric}" not in rows[0] and f"window_{metric}" not in rows[0]:
        have = sorted(c[len("window_"):] for c in rows[0] if c.startswith("window_"))
        raise ValueError(f"fl.plot.metrics_by_version: the rows have no metric {metric!r}; they have {have}")
    newest: dict[int, dict] = {}
    for r in rows:
        newest[int(r["model_version"])] = r
    versions = sorted(newest)
    x = np.arange(len(versions))
    ax = _new_ax(ax, figsize=(max(5.0, 0.5 * len(versions) + 2), 4.0))
    ax.bar(x, [_num(newest[v].get(f"cumulative_{metric}", np.nan)) for v in versions], color="#9ecae1",
           label=f"cumulative {_METRIC_LABELS.get(metric, metric)}")
    pos = {v: i for i, v in enumerate(versions)}
    ax.plot([pos[int(r["model_version"])] for r in rows], [_num(r.get(f"window_{metric}")) for r in rows], "o",
            color="#08519c", markersize=3, label="its windows")
    ax.set_xticks(x, labels=[f"v{v}" for v in versions])
    ax.set_xlabel("model version")
    ax.set_ylabel(_METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{_METRIC_LABELS.get(metric, metric)} by model version")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return ax


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


# ---------------------------------------------------------------------------------------------
# learning curves

def _metric(name: str | Callable, stage: str) -> tuple[str, Callable[[pa.Table, str, str, str], float]]:
    if callable(name):
        return getattr(name, "__name__", "metric"), lambda t, lc, rc, pc: float(name(t))

    def binary(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable:
        return lambda t, lc, rc, pc: fn(*_binary_inputs(t, lc, rc, "learning_curve"))

    def regression(key: str) -> Callable:
        def f(t: pa.Table, lc: str, rc: str, pc: str) -> float:
            y = numeric_column(t, lc, stage, param="label_col")
            p = numeric_column(t, pc, stage, param="prediction_col")
            return regression_metrics(y, p)[key]
        return f

    table = {"auc": binary(binary_auc), "log_loss": binary(lambda y, s: log_loss(y, s)),
             "accuracy": binary(lambda y, s: float(np.mean((s >= 0.5) == (y > 0.5)))),
             "rmse": regression("rmse"), "mae": regression("mae"), "r2": regression("r2")}
    if name not in table:
        raise ValueError(f"{stage}: parameter 'metric' = {name!r} violates in_array({sorted(table)}) (or pass a "
                         f"function of the scored table)")
    return str(name), table[name]


def learning_curve(estimator: Any, train: Any, test: Any, *, sizes: Sequence[float] | int = 5,
                   metric: str | Callable = "auc", label_col: str = "label",
                   raw_prediction_col: str = "raw_prediction", prediction_col: str = "prediction",
                   ax: Any = None) -> Any:
    """Fit ``estimator`` on the first ``n`` rows of ``train`` for growing ``n`` and plot ``metric``
    on those training rows and on ``test``. ``sizes``: fractions in (0, 1] of ``train``'s rows, or
    a count of evenly spaced fractions (``5``: 0.2, 0.4, ... 1.0). ``metric``: ``auc``,
    ``log_loss``, ``accuracy`` (binary: ``raw_prediction_col``), ``rmse``, ``mae``, ``r2``
    (``prediction_col``), or a function of the scored table. Rows are taken in order: shuffle
    ``train`` first if it is sorted. Returns the Axes; ``ax.lines[0]`` is the training curve,
    ``ax.lines[1]`` the test curve (x: training rows).

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import numpy as np, flowlearn as fl
        >>> from flowlearn import plot
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(400, 3))
        >>> data = {"features": fl.linalg.from_numpy(x), "label": (x[:, 0] + 0.5 * rng.normal(size=400) > 0) * 1.0}
        >>> t = fl.table(data)
        >>> ax = plot.learning_curve(fl.classification.LogisticRegression(), t.slice(0, 300), t.slice(300),
        ...                          sizes=[0.1, 0.5, 1.0])
        >>> ax.lines[1].get_xdata().tolist(), bool(ax.lines[1].get_ydata()[-1] > 0.8)
        ([30, 150, 300], True)
    """
    stage = "fl.plot.learning_curve"
    train = train if isinstance(train, pa.Table) else to_table(train)
    test = test if isinstance(test, pa.Table) else to_table(test)
    if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, bool):
        if sizes < 1:
            raise ValueError(f"{stage}: parameter 'sizes' = {sizes} violates gt(0)")
        fractions = [(i + 1) / int(sizes) for i in range(int(sizes))]
    else:
        fractions = [float(f) for f in sizes]
        bad = [f for f in fractions if not 0 < f <= 1]
        if not fractions or bad:
            raise ValueError(f"{stage}: parameter 'sizes' = {list(sizes)} must be fractions in (0, 1] of the "
                             f"training rows, or a count")
    name, fn = _metric(metric, stage)
    counts = sorted({max(1, int(round(f * train.num_rows))) for f in fractions})
    train_scores, test_scores = [], []
    for n in counts:
        part = train.slice(0, n)
        model = estimator.fit(part)
        train_scores.append(fn(model.transform(part), label_col, raw_prediction_col, prediction_col))
        test_scores.append(fn(model.transform(test), label_col, raw_prediction_col, prediction_col))
    ax = _new_ax(ax)
    label = _METRIC_LABELS.get(name, name)
    ax.plot(counts, train_scores, "o-", label=f"training {label}")
    ax.plot(counts, test_scores, "s-", label=f"test {label}")
    ax.set_xlabel("training rows")
    ax.set_ylabel(label)
    ax.set_title(f"learning curve of {type(estimator).__name__}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
