"""Logistic regression (binomial and multinomial), trained in batch by L-BFGS, OWL-QN or mini-batch SGD.

The objective follows Spark MLlib::

    mean_w(log loss) + reg * (elastic_net * ||W||_1 + (1 - elastic_net) / 2 * ||W||_2^2)

where ``mean_w`` is the weight-column-weighted mean over rows and the intercepts are not
penalised. Features are used as given: unlike Spark, nothing is standardized inside, so the
penalty acts on the coefficients of the features you pass (standardize first with
``fl.feature.StandardScaler`` if you want scale-free regularization). ``reg=r, elastic_net=a``
is scikit-learn's ``LogisticRegression(C=1 / (r * sum_of_weights), l1_ratio=a)``.
"""
from __future__ import annotations

import logging
import math
import zlib

import numpy as np
import pyarrow as pa
from scipy.special import expit, softmax

from flowlearn.api import IterativeEstimator, Model, RowFn
from flowlearn.data.columns import first_bad_row, require_column, vector_column, with_column
from flowlearn.linalg import SparseVector, dense_vector_type, from_numpy
from flowlearn.optim import (LinearModelResults, LinearObjective, LinearRounds, linear_model_table, minimize_lbfgs,
                             read_linear_model_table, read_training_input, row_features_error, row_margin_fn,
                             row_vector_fn, sgd)
from flowlearn.params import (HasElasticNet, HasFeaturesCol, HasGlobalBatchSize, HasLabelCol, HasLearningRate,
                              HasPredictionCol, HasRawPredictionCol, HasReg, HasSeed, HasTol, HasWeightCol, Param,
                              gt, in_array)

__all__ = ["LogisticRegression", "LogisticRegressionModel"]

log = logging.getLogger(__name__)


class _LogisticRegressionModelParams(HasFeaturesCol, HasPredictionCol, HasRawPredictionCol):
    pass


class _LogisticRegressionParams(_LogisticRegressionModelParams, HasLabelCol, HasWeightCol, HasReg, HasElasticNet,
                                HasTol, HasLearningRate, HasGlobalBatchSize, HasSeed):
    max_iter = Param(int, default=100, validator=gt(0),
                     doc="Maximum number of iterations: L-BFGS iterations for solver 'lbfgs', epochs for 'sgd'.")
    fit_intercept = Param(bool, default=True, doc="Whether to fit an (unpenalized) intercept.")
    multi_class = Param(str, default="auto", validator=in_array(["auto", "binomial", "multinomial"]),
                        doc="'binomial' (labels 0/1, one coefficient row), 'multinomial' (labels 0..k-1, softmax, "
                            "k rows) or 'auto' (binomial when the labels are 0/1).")
    solver = Param(str, default="lbfgs", validator=in_array(["lbfgs", "sgd"]),
                   doc="'lbfgs': quasi-Newton to convergence (L-BFGS; OWL-QN when the L1 part "
                       "reg * elastic_net is > 0); 'sgd': Flink ML's mini-batch SGD with learning_rate and "
                       "global_batch_size.")


# A label is a class index and every class up to the largest gets weights: a stray label such as
# 1e9 would ask for a billion classes (and the memory of them).
MAX_CLASSES = 1 << 16


def _overflow(stage: str, col: str, where: str) -> ValueError:
    return ValueError(f"{stage}: column '{col}' (parameter 'features_col') holds values so large{where} that the "
                      f"model's scores overflow float64; scale the features as for fitting (e.g. MaxAbsScaler)")


def _check_labels(y: np.ndarray, multi_class: str, label_col: str, stage: str,
                  complete: bool = False) -> tuple[bool, int]:
    """(binomial?, number of classes) after validating the labels; ``complete``: ``y`` holds all the
    training labels (not a part of them), so each of more than two classes must occur."""
    if multi_class == "binomial":
        bad = (y != 0.0) & (y != 1.0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{stage}: column '{label_col}' (parameter 'label_col') has label {float(y[row])!r} "
                             f"at row {row}; binomial logistic regression needs labels 0 or 1 (use "
                             f"multi_class='multinomial' for class indices 0..k-1)")
        return True, 2
    bad = (y < 0) | (y != np.floor(y))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{stage}: column '{label_col}' (parameter 'label_col') has label {float(y[row])!r} "
                         f"at row {row}; labels must be class indices 0, 1, ..., k-1 (0 or 1 for binomial); "
                         f"map other labels with fl.feature.StringIndexer")
    if y.max() >= MAX_CLASSES:
        row = int(np.argmax(y))
        raise ValueError(f"{stage}: column '{label_col}' (parameter 'label_col') has label {float(y[row])!r} at "
                         f"row {row}; labels are class indices 0, 1, ..., k-1 and k may be at most {MAX_CLASSES}; "
                         f"map other labels with fl.feature.StringIndexer")
    k = max(int(y.max()) + 1, 2)
    if complete and k > 2:
        # labels 1..3 would otherwise train a 4th class 0 that never occurs: refuse, and say how to index
        missing = np.flatnonzero(np.bincount(y.astype(np.int64), minlength=k) == 0)
        if len(missing):
            shown = ", ".join(str(int(c)) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise ValueError(f"{stage}: column '{label_col}' (parameter 'label_col') has labels up to {k - 1} but "
                             f"class(es) {shown} never occur; labels must be the class indices 0, 1, ..., k-1, "
                             f"each occurring. Index the labels with fl.feature.StringIndexer(input_cols="
                             f"['{label_col}'], output_cols=['{label_col}_idx']) and set label_col, or renumber "
                             f"them (e.g. labels 1..{k - 1}: subtract 1)")
    if multi_class == "auto":
        return k == 2, k
    return False, k


class LogisticRegression(_LogisticRegressionParams, LinearRounds, IterativeEstimator):
    """Logistic regression for binary (labels 0/1) and multiclass (labels 0..k-1) classification.

    Minimizes the weighted mean log loss plus ``reg * (elastic_net * |W|_1 + (1 - elastic_net) / 2 *
    |W|_2^2)`` (Spark MLlib's objective; intercepts unpenalized; features are not standardized
    inside, so scale them first if the penalty should treat them alike). ``multi_class="auto"``
    fits a binomial model when the labels are 0/1, else a multinomial (softmax) one.
    ``solver="lbfgs"`` runs L-BFGS until the largest gradient entry is at most ``tol`` (OWL-QN,
    with exact zeros, when the L1 part ``reg * elastic_net`` is > 0; then ``tol`` bounds the
    largest pseudo-gradient entry);
    ``solver="sgd"`` runs Flink ML's mini-batch SGD for ``max_iter`` epochs (full passes; a Flink
    ML iteration is one mini-batch) of ``global_batch_size``-row batches with a constant
    ``learning_rate``, deterministic for a ``seed``. Features may be dense or sparse vectors; sparse data stays sparse.

    ``fit`` returns a :class:`LogisticRegressionModel`. The online counterpart is
    ``OnlineLogisticRegression``. ``round_partial``, ``round_merge``, ``round_objective`` and
    ``round_update`` are the solvers' rounds for engines (``flowlearn.optim.LinearRounds``).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]],
        ...               "label": [0.0, 0.0, 1.0, 1.0]})
        >>> model = LogisticRegression(reg=0.1).fit(t)
        >>> out = model.transform(t)
        >>> out.column("prediction").to_pylist()
        [0.0, 0.0, 1.0, 1.0]
        >>> [round(p, 3) for p in out.column("raw_prediction")[0].as_py()]
        [0.889, 0.111]
    """

    online_counterpart = "OnlineLogisticRegression"

    def _round_loss(self, y: np.ndarray, n_outputs: int) -> str:
        stage = type(self).__name__
        if n_outputs == 1:
            _check_labels(y, "binomial", self.label_col, stage)
            return "logistic"
        _check_labels(y, "multinomial", self.label_col, stage)
        if y.max() >= n_outputs:
            row = int(np.flatnonzero(y >= n_outputs)[0])
            raise ValueError(f"{stage}: column '{self.label_col}' (parameter 'label_col') has label {float(y[row])!r} "
                             f"at row {row}; the round's model has {n_outputs} classes (0..{n_outputs - 1})")
        return "multinomial"

    def _fit(self, *tables: pa.Table) -> "LogisticRegressionModel":
        (t,) = tables
        stage = type(self).__name__
        X, y, s = read_training_input(t, stage, self.features_col, self.label_col, self.weight_col)
        binomial, k = _check_labels(y, self.multi_class, self.label_col, stage, complete=True)
        K = 1 if binomial else k
        reg, en = self.reg, self.elastic_net
        with LinearObjective(X, y, s, "logistic" if binomial else "multinomial", n_outputs=K,
                             fit_intercept=self.fit_intercept, l2=reg * (1.0 - en), l1=reg * en) as obj:
            x0 = obj.initial()
            if self.solver == "lbfgs":
                res = minimize_lbfgs(obj.smooth, x0, max_iter=self.max_iter, tol=self.tol, l1=obj.l1_weights())
            else:
                seed = self.seed if self.seed is not None else zlib.crc32(stage.encode())
                res = sgd(obj, x0, learning_rate=self.learning_rate, batch_size=self.global_batch_size,
                          max_iter=self.max_iter, tol=self.tol, seed=seed, stage=stage)
            W, b = obj.unpack(res.x)
            W, b = W.copy(), np.array(b, dtype=np.float64)
        if not res.converged and self.solver != "sgd":  # SGD runs its max_iter epochs by design
            log.warning("%s: solver '%s' stopped after %d iterations without reaching tol=%g (%s); "
                        "raise max_iter or tol", stage, self.solver, res.n_iter, self.tol, res.message)
        log.info("%s: %d iterations, objective %.12g", stage, res.n_iter, res.fun)
        return self._model_of(W, b)

    def _model_of(self, W: np.ndarray, b: np.ndarray) -> "LogisticRegressionModel":
        if W.shape[0] > 1:
            if self.fit_intercept:
                b = b - b.mean()  # softmax is invariant to a common shift; the intercepts are unpenalized
            if self.reg == 0.0:
                W = W - W.mean(axis=0)  # unpenalized multinomial coefficients are identified up to a shift
        model = LogisticRegressionModel()
        self.copy_params_to(model)
        return model.set_model_data(linear_model_table(W, b, 0))

    def round_outputs(self, max_label: float) -> int:
        """Rows of the coefficients (1 for a binomial model, else the classes) for labels up to ``max_label``."""
        binomial, k = _check_labels(np.array([float(max_label)]), self.multi_class, self.label_col, type(self).__name__)
        return 1 if binomial else k


class LogisticRegressionModel(_LogisticRegressionModelParams, LinearModelResults, Model):
    """A fitted logistic regression: appends ``prediction`` (double class index) and
    ``raw_prediction`` (dense vector of class probabilities, ``[p0, p1]`` for binary).

    Model data: one table with columns ``coefficient`` (``fixed_size_list<double>[d]``),
    ``intercept`` (double) and ``model_version`` (int64, 0 for batch fits); one row for a
    binomial model (the coefficients of class 1: ``p1 = sigmoid(coefficient . x + intercept)``,
    predicting 1 when the margin is >= 0), ``k`` rows in class order for a multinomial model
    (``p = softmax(W x + b)``, predicting the first class of largest score).

    Example:
        >>> import flowlearn as fl
        >>> m = LogisticRegressionModel().set_model_data(
        ...     {"coefficient": [[1.0, -1.0]], "intercept": [0.0], "model_version": [0]})
        >>> out = m.transform({"features": [[2.0, 0.0], [0.0, 2.0]]})
        >>> out.column("prediction").to_pylist()
        [1.0, 0.0]
        >>> [round(p, 4) for p in out.column("raw_prediction")[0].as_py()]
        [0.1192, 0.8808]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        W, b, version = read_linear_model_table(tables, type(self).__name__)
        self._W, self._b, self._version = W, b, version

    @property
    def num_classes(self) -> int:
        self._require_model()
        return 2 if self._W.shape[0] == 1 else self._W.shape[0]

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        return predict_table(t, type(self).__name__, self.features_col, self.prediction_col, self.raw_prediction_col,
                             self._W, self._b)

    def row_fn(self) -> RowFn:
        """Single-row kernel: ``fn(row)`` reads ``features_col`` (1-D array, list or ``SparseVector``)
        and writes ``prediction_col`` (float) and ``raw_prediction_col`` (1-D array)."""
        self._require_model()
        return predict_row_fn(type(self).__name__, self.features_col, self.prediction_col, self.raw_prediction_col,
                              self._W, self._b)


def predict_table(t: pa.Table, stage: str, features_col: str, prediction_col: str, raw_prediction_col: str,
                  W: np.ndarray, b: np.ndarray) -> pa.Table:
    """``t`` with the prediction and class probabilities of the logistic regression ``W`` (K, d),
    ``b`` (K,) (one row: binomial); also ``OnlineLogisticRegressionModel``'s."""
    K, d = W.shape
    n_out = 2 if K == 1 else K
    if t.num_rows == 0:
        require_column(t, features_col, stage, "features_col")
        t = with_column(t, prediction_col, pa.array([], pa.float64()))
        return with_column(t, raw_prediction_col, pa.array([], dense_vector_type(n_out)))
    X = vector_column(t, features_col, stage, param="features_col", size=d)
    with np.errstate(over="ignore", invalid="ignore"):    # overflowing scores are refused just below
        Z = np.asarray(X @ W.T).reshape(-1, K) + b
    if not np.isfinite(Z).all():   # finite features (vector_column checked them), overflowing scores
        raise _overflow(stage, features_col, f" at row {first_bad_row(~np.isfinite(Z).all(axis=1))}")
    if K == 1:
        z = Z[:, 0]
        p = expit(z)
        raw = np.empty((z.shape[0], 2))
        raw[:, 1] = p
        raw[:, 0] = 1.0 - p
        pred = (z >= 0).astype(np.float64)
    else:
        raw = softmax(Z, axis=1)
        pred = np.argmax(Z, axis=1).astype(np.float64)
    t = with_column(t, prediction_col, pa.array(pred, pa.float64()))
    return with_column(t, raw_prediction_col, from_numpy(raw))


def predict_row_fn(stage: str, features_col: str, prediction_col: str, raw_prediction_col: str, W: np.ndarray,
                   b: np.ndarray) -> RowFn:
    """The single-row kernel of :func:`predict_table` (also ``OnlineLogisticRegressionModel``'s)."""
    W, b = np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)
    K, d = W.shape
    fc, pc, rc, isfinite, exp = features_col, prediction_col, raw_prediction_col, math.isfinite, math.exp

    if K == 1:
        margin = row_margin_fn(stage, fc, W[0], b[0])

        def fn(row: dict) -> None:
            z = margin(row)
            if not isfinite(z):   # margin() refused NaN and infinity: finite features whose score overflows
                raise _overflow(stage, fc, "")
            if z >= 0:
                p = 1.0 / (1.0 + exp(-z))
            else:
                e = exp(z)
                p = e / (1.0 + e)
            row[pc] = 1.0 if z >= 0 else 0.0
            row[rc] = np.array([1.0 - p, p])

        return fn

    read = row_vector_fn(stage, fc, d)

    def fn_multi(row: dict) -> None:
        x = read(row)
        if isinstance(x, SparseVector):
            z = W[:, x.indices] @ x.values + b
        else:
            z = W @ x + b
        if not np.isfinite(z).all():
            raise row_features_error(stage, fc, x) or _overflow(stage, fc, "")
        e = np.exp(z - z.max())
        row[pc] = float(z.argmax())
        row[rc] = e / e.sum()

    return fn_multi
