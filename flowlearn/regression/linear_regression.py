"""Linear regression with elastic-net regularization (Spark MLlib's objective), trained in batch.

The objective is::

    mean_w(1/2 * (y - w . x - b)^2) + reg * (elastic_net * ||w||_1 + (1 - elastic_net) / 2 * ||w||_2^2)

with ``mean_w`` the weight-column-weighted mean over rows and the intercept unpenalized.
Features are used as given (nothing is standardized inside). ``reg=r, elastic_net=a`` equals
scikit-learn's ``ElasticNet(alpha=r, l1_ratio=a)`` and, for ``a=0``, ``Ridge(alpha=r * sum_of_weights)``.
"""
from __future__ import annotations

import logging
import zlib

import numpy as np
import pyarrow as pa
import scipy.linalg
import scipy.sparse as sps

from flowlearn.api import IterativeEstimator, Model, RowFn
from flowlearn.data.columns import require_column, vector_column, with_column
from flowlearn.optim import (LinearModelResults, LinearObjective, LinearRounds, linear_model_table, minimize_lbfgs,
                             read_single_output_model, read_training_input, row_margin_fn, sgd)
from flowlearn.params import (HasElasticNet, HasFeaturesCol, HasGlobalBatchSize, HasLabelCol, HasLearningRate,
                              HasPredictionCol, HasReg, HasSeed, HasTol, HasWeightCol, Param, gt, in_array)

__all__ = ["LinearRegression", "LinearRegressionModel"]

log = logging.getLogger(__name__)

_NORMAL_MAX_FEATURES = 4096


class _LinearRegressionModelParams(HasFeaturesCol, HasPredictionCol):
    pass


class _LinearRegressionParams(_LinearRegressionModelParams, HasLabelCol, HasWeightCol, HasReg, HasElasticNet, HasTol,
                              HasLearningRate, HasGlobalBatchSize, HasSeed):
    max_iter = Param(int, default=100, validator=gt(0),
                     doc="Maximum number of iterations: L-BFGS iterations ('lbfgs', and 'normal' with an L1 part), "
                         "epochs for 'sgd'.")
    fit_intercept = Param(bool, default=True, doc="Whether to fit an (unpenalized) intercept.")
    solver = Param(str, default="auto", validator=in_array(["auto", "normal", "lbfgs", "sgd"]),
                   doc="'normal': exact solution from the d x d weighted Gram matrix (OWL-QN on it when the L1 "
                       "part is > 0); 'lbfgs': L-BFGS over the data (OWL-QN when the L1 part is > 0); "
                       "'sgd': Flink ML's mini-batch SGD; 'auto': 'normal' up to 4096 features, else 'lbfgs'.")


def _gram(X, y: np.ndarray, s: np.ndarray, fit_intercept: bool):
    """Weighted (centered when fitting an intercept) second moments: G = E[xc xc^T], c = E[xc yc],
    syy = E[yc^2], and the means mx, my (zero without intercept). ``s`` sums to 1."""
    n, d = X.shape
    if fit_intercept:
        mx = np.asarray(X.T @ s).reshape(-1)
        my = float(s @ y)
    else:
        mx, my = np.zeros(d), 0.0
    yc = y - my
    syy = float(s @ (yc * yc))
    if sps.issparse(X):
        SX = sps.diags(s) @ X
        G = np.asarray((X.T @ SX).toarray()) - np.outer(mx, mx)
        c = np.asarray(X.T @ (s * yc)).reshape(-1)  # E[x yc]; E[mx yc] = 0
        return G, c, syy, mx, my
    G = np.zeros((d, d))
    c = np.zeros(d)
    block = max(1, (1 << 22) // max(d, 1))
    for lo in range(0, n, block):
        Xb = X[lo:lo + block] - mx if fit_intercept else X[lo:lo + block]
        sb = s[lo:lo + block]
        A = Xb * np.sqrt(sb)[:, None]
        G += A.T @ A
        c += Xb.T @ (sb * yc[lo:lo + block])
    return G, c, syy, mx, my


def _solve_spd(A: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Solve A w = c for symmetric PSD A: Cholesky, or the minimum-norm least-squares solution when
    A is singular or badly conditioned."""
    try:
        L, lower = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
        diag = np.abs(np.diag(L))
        if diag.size == 0 or (diag.min() / diag.max()) ** 2 > 1e-12:
            return scipy.linalg.cho_solve((L, lower), c, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    return scipy.linalg.lstsq(A, c, check_finite=False)[0]


class LinearRegression(_LinearRegressionParams, LinearRounds, IterativeEstimator):
    """Least-squares linear regression with optional elastic-net penalty.

    Minimizes the weighted mean of ``1/2 * (y - w . x - b)^2`` plus ``reg * (elastic_net * |w|_1 +
    (1 - elastic_net) / 2 * |w|_2^2)`` (Spark MLlib's objective; the intercept is unpenalized and
    features are not standardized inside). Solvers: ``"normal"`` (exact, from the weighted Gram
    matrix; with an L1 part, OWL-QN on the Gram-matrix form of the objective), ``"lbfgs"``
    (L-BFGS over the data, OWL-QN with an L1 part; for many or sparse features),
    ``"sgd"`` (Flink ML's mini-batch SGD: ``max_iter`` epochs, ``global_batch_size``,
    ``learning_rate``, ``seed``) and ``"auto"`` (normal up to 4096 features, else lbfgs).
    Dense and sparse feature vectors are accepted. ``round_partial``, ``round_merge``,
    ``round_objective`` and ``round_update`` are the lbfgs and sgd solvers' rounds for engines
    (``flowlearn.optim.LinearRounds``).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"features": [[0.0], [1.0], [2.0], [3.0]], "label": [1.0, 3.0, 5.0, 7.0]})
        >>> model = LinearRegression().fit(t)
        >>> [round(v, 6) for v in model.transform(t).column("prediction").to_pylist()]
        [1.0, 3.0, 5.0, 7.0]
        >>> row = model.get_model_data()[0].to_pylist()[0]
        >>> round(row["coefficient"][0], 6), round(row["intercept"], 6)
        (2.0, 1.0)
    """

    def _round_loss(self, y: np.ndarray, n_outputs: int) -> str:
        return "squared"

    def _fit(self, *tables: pa.Table) -> "LinearRegressionModel":
        (t,) = tables
        stage = type(self).__name__
        X, y, s = read_training_input(t, stage, self.features_col, self.label_col, self.weight_col)
        reg, en = self.reg, self.elastic_net
        l2, l1 = reg * (1.0 - en), reg * en
        d = X.shape[1]
        solver = self.solver
        if solver == "auto":
            solver = "normal" if d <= _NORMAL_MAX_FEATURES else "lbfgs"
        if solver == "normal":
            sw = np.ones(X.shape[0]) if s is None else s
            sw = sw / sw.sum()
            G, c, syy, mx, my = _gram(X, y, sw, self.fit_intercept)
            A = G + l2 * np.eye(d)
            if l1 > 0:
                def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
                    Aw = A @ w
                    return 0.5 * float(w @ Aw) - float(c @ w) + 0.5 * syy, Aw - c

                x0 = _solve_spd(A, c)
                res = minimize_lbfgs(fun, x0, max_iter=self.max_iter, tol=self.tol, l1=np.full(d, l1))
                w, converged, n_iter, msg = res.x, res.converged, res.n_iter, res.message
            else:
                w = _solve_spd(A, c)
                converged, n_iter, msg = True, 0, "closed form"
            b = my - float(mx @ w)
        else:
            with LinearObjective(X, y, s, "squared", 1, self.fit_intercept, l2, l1) as obj:
                x0 = obj.initial()
                if solver == "lbfgs":
                    res = minimize_lbfgs(obj.smooth, x0, max_iter=self.max_iter, tol=self.tol, l1=obj.l1_weights())
                else:
                    seed = self.seed if self.seed is not None else zlib.crc32(stage.encode())
                    res = sgd(obj, x0, learning_rate=self.learning_rate, batch_size=self.global_batch_size,
                              max_iter=self.max_iter, tol=self.tol, seed=seed, stage=stage)
                W, bb = obj.unpack(res.x)
                w, b = W[0].copy(), float(bb[0])
                converged, n_iter, msg = res.converged, res.n_iter, res.message
        if not converged and solver != "sgd":  # SGD runs its max_iter epochs by design
            log.warning("%s: solver '%s' stopped after %d iterations without reaching tol=%g (%s); "
                        "raise max_iter or tol", stage, solver, n_iter, self.tol, msg)
        return self._model_of(np.asarray(w).reshape(1, -1), np.array([b], dtype=np.float64))

    def _model_of(self, W: np.ndarray, b: np.ndarray) -> "LinearRegressionModel":
        model = LinearRegressionModel()
        self.copy_params_to(model)
        return model.set_model_data(linear_model_table(W, b, 0))


class LinearRegressionModel(_LinearRegressionModelParams, LinearModelResults, Model):
    """A fitted linear regression: appends ``prediction = coefficient . features + intercept`` (double).

    Model data: one table, one row, with columns ``coefficient`` (``fixed_size_list<double>[d]``),
    ``intercept`` (double) and ``model_version`` (int64, 0 for batch fits).

    Example:
        >>> m = LinearRegressionModel().set_model_data(
        ...     {"coefficient": [[2.0, -1.0]], "intercept": [0.5], "model_version": [0]})
        >>> m.transform({"features": [[1.0, 1.0], [0.0, 2.0]]}).column("prediction").to_pylist()
        [1.5, -1.5]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        self._w, self._b, self._version = read_single_output_model(tables, type(self).__name__)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        stage = type(self).__name__
        if t.num_rows == 0:
            require_column(t, self.features_col, stage, "features_col")
            return with_column(t, self.prediction_col, pa.array([], pa.float64()))
        X = vector_column(t, self.features_col, stage, param="features_col", size=self._w.shape[0])
        pred = np.asarray(X @ self._w).reshape(-1) + self._b
        return with_column(t, self.prediction_col, pa.array(pred, pa.float64()))

    def row_fn(self) -> RowFn:
        """Single-row kernel: reads ``features_col`` (1-D array, list or ``SparseVector``), writes
        ``prediction_col`` (float)."""
        self._require_model()
        stage = type(self).__name__
        pc = self.prediction_col
        margin = row_margin_fn(stage, self.features_col, self._w, self._b)

        def fn(row: dict) -> None:
            row[pc] = margin(row)

        return fn
