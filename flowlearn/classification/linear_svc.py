"""Linear support vector machine (hinge loss), trained in batch: Flink ML's ``LinearSVC``.

The objective follows the other flowlearn linear models (Spark MLlib's convention)::

    mean_w(max(0, 1 - t * (w . x + b))) + reg * (elastic_net * ||w||_1 + (1 - elastic_net) / 2 * ||w||_2^2)

with labels ``y`` in {0, 1} mapped to ``t = 2y - 1``, ``mean_w`` the weight-column-weighted
mean over rows and the intercept ``b`` unpenalized. Features are used as given (standardize
first if the penalty should treat them alike). ``reg = r, elastic_net = 0`` without intercept
equals scikit-learn's ``LinearSVC(loss="hinge", C=1 / (r * n))`` (whose intercept, when
fitted, is penalized through ``intercept_scaling``; flowlearn's is not).

Solvers:

* ``"exact"`` (default). With an L2 part (``reg * (1 - elastic_net) > 0``) it solves the dual
  ``max sum(a) - ||S_l1(X^T (a * t))||^2 / (2 l2)`` over ``0 <= a_i <= c_i`` (``S_l1`` is
  soft-thresholding, which makes the elastic-net dual smooth) with L-BFGS-B; the intercept's
  constraint ``sum(a * t) = 0`` is handled by an augmented Lagrangian whose multiplier *is* the
  intercept, which is then polished by an exact 1-D minimization of the (piecewise linear)
  objective in ``b``. Without an L2 part the problem is a linear program, solved by HiGHS.
  Stops when the largest projected dual gradient entry and the intercept constraint are at most
  ``tol`` (relative), or after ``max_iter`` augmented-Lagrangian rounds.
* ``"sgd"``: Flink ML's mini-batch SGD: ``max_iter`` epochs over a seeded permutation,
  ``global_batch_size``-row batches, a constant ``learning_rate`` along the weighted-mean hinge
  subgradient, then the penalty's proximal step (as ``LogisticRegression(solver="sgd")``).

Outputs (``LinearSVCModel``): ``prediction`` = 1.0 when ``w . x + b >= threshold`` else 0.0,
``raw_prediction`` = ``[-(w . x + b), w . x + b]``. **Departure from Flink ML**, whose raw
prediction is ``[dot, -dot]``: flowlearn puts the positive-class score at index 1, as every
flowlearn classifier does and as ``BinaryClassificationEvaluator`` reads it.
"""
from __future__ import annotations

import logging
import math
import zlib

import numba as nb
import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import IterativeEstimator, Model, RowFn
from flowlearn.data.columns import require_column, vector_column, with_column
from flowlearn.linalg import dense_vector_type, from_numpy
from flowlearn.optim import (LinearModelResults, LinearObjective, LinearRounds, linear_model_table, read_single_output_model,
                             read_training_input, row_margin_fn, sgd)
from flowlearn.params import (HasElasticNet, HasFeaturesCol, HasGlobalBatchSize, HasLabelCol, HasLearningRate,
                              HasPredictionCol, HasRawPredictionCol, HasReg, HasSeed, HasTol, HasWeightCol, Param,
                              gt, in_array)

__all__ = ["LinearSVC", "LinearSVCModel"]

log = logging.getLogger(__name__)


class _LinearSVCModelParams(HasFeaturesCol, HasPredictionCol, HasRawPredictionCol):
    threshold = Param(float, default=0.0,
                      doc="Predict 1.0 when the margin coefficient . x + intercept is >= threshold, else 0.0.")


class _LinearSVCParams(_LinearSVCModelParams, HasLabelCol, HasWeightCol, HasReg, HasElasticNet, HasTol,
                       HasLearningRate, HasGlobalBatchSize, HasSeed):
    max_iter = Param(int, default=100, validator=gt(0),
                     doc="Maximum number of iterations: augmented-Lagrangian rounds for solver 'exact', "
                         "epochs for 'sgd'.")
    fit_intercept = Param(bool, default=True, doc="Whether to fit an (unpenalized) intercept.")
    solver = Param(str, default="exact", validator=in_array(["exact", "sgd"]),
                   doc="'exact': dual L-BFGS-B with an augmented Lagrangian (a HiGHS linear program without an "
                       "L2 part); 'sgd': Flink ML's mini-batch SGD with learning_rate and global_batch_size.")


def _check_labels(y: np.ndarray, label_col: str, stage: str) -> None:
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{stage}: column '{label_col}' (parameter 'label_col') has label {float(y[row])!r} at row "
                         f"{row}; LinearSVC is a binary classifier and needs labels 0 or 1 (map other labels with "
                         f"fl.feature.StringIndexer)")


def hinge_objective(X, y: np.ndarray, w: np.ndarray, b: float, reg: float = 0.0, elastic_net: float = 0.0,
                    sample_weight: np.ndarray | None = None) -> float:
    """The LinearSVC objective (see the module docstring) at ``(w, b)``; ``y`` holds 0/1 labels."""
    t = 2.0 * np.asarray(y, dtype=np.float64) - 1.0
    m = np.asarray(X @ w).reshape(-1) + b
    s = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    loss = float(s @ np.maximum(0.0, 1.0 - t * m)) / float(s.sum())
    return loss + reg * (elastic_net * float(np.abs(w).sum()) + 0.5 * (1.0 - elastic_net) * float(w @ w))


# ----------------------------------------------------------------------------------------------
# Exact solvers
# ----------------------------------------------------------------------------------------------

def _polish_intercept(m: np.ndarray, t: np.ndarray, c: np.ndarray, b0: float) -> float:
    """The minimizer of ``sum(c * max(0, 1 - t * (m + b)))`` over ``b`` closest to ``b0``.

    The function is convex and piecewise linear with breakpoints ``k_i = t_i - m_i``; its right
    slope after the j-th smallest breakpoint is ``-sum(c over t=+1) + cumsum(c sorted by k)_j``.
    """
    k = t - m
    order = np.argsort(k, kind="stable")
    ks, cs = k[order], c[order]
    total_pos = float(c[t > 0].sum())
    slope = -total_pos + np.cumsum(cs)          # slope right of ks[j]
    eps = 1e-12 * max(1.0, float(c.sum()))
    if total_pos <= eps:                        # no positive rows: any b <= min(k) is optimal
        return min(b0, float(ks[0]))
    j = int(np.searchsorted(slope, -eps, side="left"))   # first j with slope >= ~0
    j = min(j, len(ks) - 1)
    lo = float(ks[j])
    if abs(slope[j]) <= eps:                    # flat piece: every b in [ks[j], ks[j + 1]] is optimal
        hi = float(ks[j + 1]) if j + 1 < len(ks) else math.inf
    else:
        hi = lo
    return float(min(max(b0, lo), hi))


@nb.njit(cache=True, nogil=True)
def _row_dot(dense, X, indptr, indices, data, i, v):
    acc = 0.0
    if dense:
        for j in range(X.shape[1]):
            acc += X[i, j] * v[j]
    else:
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p] * v[indices[p]]
    return acc


@nb.njit(cache=True, nogil=True)
def _dcd(dense, X, indptr, indices, data, t, c, sq, a, v, hb, l2, rho, tol, max_epochs, seed):
    """Dual coordinate descent (Hsieh et al. 2008, liblinear's L1-loss SVC solver) on
    ``max sum(a) - |v|^2 / (2 l2) - b h - rho / 2 h^2`` over ``0 <= a <= c``, with
    ``v = X^T (a * t)`` and ``h = sum(a * t)`` kept up to date (``hb = [h, b]``).
    Returns (epochs, converged): converged when the largest projected gradient is <= tol."""
    n = t.shape[0]
    order = np.arange(n)
    state = np.uint64(seed) | np.uint64(1)
    for epoch in range(max_epochs):
        for q in range(n - 1, 0, -1):          # Fisher-Yates with xorshift64
            state ^= state << np.uint64(13)
            state ^= state >> np.uint64(7)
            state ^= state << np.uint64(17)
            r = int(state % np.uint64(q + 1))
            tmp = order[q]
            order[q] = order[r]
            order[r] = tmp
        maxpg = 0.0
        for q in range(n):
            i = order[q]
            ti = t[i]
            g = 1.0 - ti * _row_dot(dense, X, indptr, indices, data, i, v) / l2 - ti * (hb[1] + rho * hb[0])
            if (a[i] <= 0.0 and g < 0.0) or (a[i] >= c[i] and g > 0.0):
                continue
            if abs(g) > maxpg:
                maxpg = abs(g)
            curv = sq[i] / l2 + rho
            if curv > 0.0:
                new = min(max(a[i] + g / curv, 0.0), c[i])
            else:
                new = c[i] if g > 0.0 else 0.0
            delta = new - a[i]
            if delta != 0.0:
                a[i] = new
                dt = delta * ti
                hb[0] += dt
                if dense:
                    for j in range(X.shape[1]):
                        v[j] += dt * X[i, j]
                else:
                    for p in range(indptr[i], indptr[i + 1]):
                        v[indices[p]] += dt * data[p]
        if maxpg <= tol:
            return epoch + 1, True
    return max_epochs, False


def _solve_dual(X, t: np.ndarray, c: np.ndarray, l1: float, l2: float, fit_intercept: bool, tol: float,
                max_iter: int) -> tuple[np.ndarray, float, bool, int]:
    """Elastic-net hinge SVM through its dual (see the module docstring); ``c`` are box bounds, the
    penalty weights ``l1``, ``l2`` are already on the scale of ``sum(c * hinge)``.

    Pure L2: dual coordinate descent. With an L1 part: L-BFGS-B on the (smooth) elastic-net dual.
    The intercept's equality constraint goes through an augmented Lagrangian in both cases."""
    n, d = X.shape
    dense = not sps.issparse(X)
    if dense:
        Xd = np.ascontiguousarray(X, dtype=np.float64)
        indptr, indices, data = np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0)
        XT = Xd.T
        sq = np.einsum("ij,ij->i", Xd, Xd)
    else:
        Xc = sps.csr_matrix(X, dtype=np.float64)
        Xd = np.zeros((0, 0))
        indptr, indices, data = Xc.indptr.astype(np.int64), Xc.indices.astype(np.int32), Xc.data
        XT = Xc.T.tocsr()
        sq = np.asarray(Xc.multiply(Xc).sum(axis=1)).reshape(-1)
    rho = max(float(np.mean(sq)) / l2, 1e-12) if fit_intercept else 0.0
    b = 0.0
    a = np.zeros(n)
    scale = max(1.0, float(c.sum()))
    converged = False
    rounds = 0

    def soft(v: np.ndarray) -> np.ndarray:
        return np.sign(v) * np.maximum(np.abs(v) - l1, 0.0)

    if l1 > 0:
        def fun(a: np.ndarray) -> tuple[float, np.ndarray]:
            u = soft(np.asarray(XT @ (a * t)).reshape(-1))
            f = -float(a.sum()) + float(u @ u) / (2.0 * l2)
            g = -1.0 + t * np.asarray(X @ u).reshape(-1) / l2
            if fit_intercept:
                h = float(a @ t)
                f += b * h + 0.5 * rho * h * h
                g += (b + rho * h) * t
            return f, g

        bounds = list(zip(np.zeros(n), c))
        opts = {"maxiter": 100_000, "maxfun": 200_000, "gtol": tol, "ftol": 0.0, "maxcor": 20}
    for rounds in range(1, max_iter + 1):
        if l1 > 0:
            import scipy.optimize   # only fits need it (cold start of prediction)

            res = scipy.optimize.minimize(fun, a, method="L-BFGS-B", jac=True, bounds=bounds, options=opts)
            a = np.clip(res.x, 0.0, c)
            inner_ok = bool(res.success)
        else:
            v = np.asarray(XT @ (a * t)).reshape(-1).copy()   # recomputed each round: no drift
            hb = np.array([float(a @ t), b])
            _, inner_ok = _dcd(dense, Xd, indptr, indices, data, t, c, sq, a, v, hb, l2, rho, tol,
                               10_000, 0x9E3779B97F4A7C15 + rounds)
        if not fit_intercept:
            converged = inner_ok
            break
        h = float(a @ t)
        b += rho * h
        if abs(h) <= tol * scale and inner_ok:
            converged = True
            break
    w = soft(np.asarray(XT @ (a * t)).reshape(-1)) / l2
    if fit_intercept:
        b = _polish_intercept(np.asarray(X @ w).reshape(-1), t, c, b)
    return w, (b if fit_intercept else 0.0), converged, rounds


def _solve_lp(X, t: np.ndarray, c: np.ndarray, l1: float, fit_intercept: bool) -> tuple[np.ndarray, float, bool, str]:
    """Hinge loss + L1 as a linear program: w = u - v, slack xi >= 1 - t (X w + b)."""
    n, d = X.shape
    TX = sps.diags(t) @ sps.csr_matrix(X)
    nb_ = 1 if fit_intercept else 0
    blocks = [-TX, TX]
    if fit_intercept:
        blocks.append(sps.csr_matrix(-t.reshape(-1, 1)))
    blocks.append(-sps.identity(n, format="csr"))
    A = sps.hstack(blocks, format="csr")
    cost = np.concatenate([np.full(2 * d, l1), np.zeros(nb_), c])
    bounds = [(0, None)] * (2 * d) + [(None, None)] * nb_ + [(0, None)] * n
    import scipy.optimize

    res = scipy.optimize.linprog(cost, A_ub=A, b_ub=-np.ones(n), bounds=bounds, method="highs")
    if res.x is None:
        raise ValueError(f"LinearSVC: the linear program failed ({res.message})")
    x = res.x
    w = x[:d] - x[d:2 * d]
    b = float(x[2 * d]) if fit_intercept else 0.0
    return w, b, bool(res.success), str(res.message)


# ----------------------------------------------------------------------------------------------
# Flink ML's mini-batch SGD on the hinge loss
# ----------------------------------------------------------------------------------------------

def _solve_sgd(X, y, s, l1, l2, fit_intercept, lr, batch, max_iter, tol, seed) -> tuple[np.ndarray, float, bool, int]:
    """Flink ML's SGD on the hinge loss: the linear models' SGD (``flowlearn.optim.sgd``, epochs as the
    rounds of a bounded iteration) with the hinge loss, from zero."""
    with LinearObjective(X, y, s, "hinge", 1, fit_intercept, l2, l1) as obj:
        res = sgd(obj, obj.initial(), learning_rate=lr, batch_size=batch, max_iter=max_iter, tol=tol, seed=seed,
                  stage="LinearSVC")
        W, b = obj.unpack(res.x)
        return W[0].copy(), float(b[0]), res.converged, res.n_iter


# ----------------------------------------------------------------------------------------------
# Estimator and model
# ----------------------------------------------------------------------------------------------

class LinearSVC(_LinearSVCParams, LinearRounds, IterativeEstimator):
    """Linear SVM for binary classification (labels 0/1) with the hinge loss, as Flink ML's LinearSVC.

    Minimizes the weighted mean hinge loss plus ``reg * (elastic_net * |w|_1 + (1 - elastic_net) / 2 *
    |w|_2^2)``; the intercept is unpenalized. Parameters (Flink ML's, snake_case): ``features_col``,
    ``label_col``, ``weight_col``, ``max_iter``, ``reg``, ``elastic_net``, ``learning_rate``,
    ``global_batch_size``, ``tol``, ``seed``, ``threshold``, ``prediction_col``,
    ``raw_prediction_col``; plus ``fit_intercept`` and ``solver`` (``"exact"`` or Flink ML's
    ``"sgd"``; see the module docstring). Dense and sparse features are accepted.

    ``fit`` returns a :class:`LinearSVCModel`; ``fl.classification.OnlineLearning`` keeps training
    one online. ``round_partial``, ``round_merge`` and ``round_update`` are the sgd solver's rounds
    for engines (``flowlearn.optim.LinearRounds``, with the hinge loss).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]],
        ...               "label": [0.0, 0.0, 1.0, 1.0]})
        >>> model = LinearSVC(reg=0.01).fit(t)
        >>> model.transform(t).column("prediction").to_pylist()
        [0.0, 0.0, 1.0, 1.0]
    """

    online_counterpart = "OnlineLearning"

    def _round_loss(self, y: np.ndarray, n_outputs: int) -> str:
        _check_labels(y, self.label_col, type(self).__name__)
        return "hinge"

    def _fit(self, *tables: pa.Table) -> "LinearSVCModel":
        (t,) = tables
        stage = type(self).__name__
        X, y, s = read_training_input(t, stage, self.features_col, self.label_col, self.weight_col)
        _check_labels(y, self.label_col, stage)
        n = X.shape[0]
        s = np.ones(n) if s is None else s
        tt = 2.0 * y - 1.0
        reg, en = self.reg, self.elastic_net
        l1, l2 = reg * en, reg * (1.0 - en)
        if self.solver == "sgd":
            seed = self.seed if self.seed is not None else zlib.crc32(stage.encode())
            w, b, converged, n_iter = _solve_sgd(X, y, s, l1, l2, self.fit_intercept, self.learning_rate,
                                                 self.global_batch_size, self.max_iter, self.tol, seed)
            msg = f"{n_iter} epochs"
        else:
            # Scale the objective by n / sum(s) so that the dual box bounds c_i are O(1).
            c = s * (n / float(s.sum()))
            keep = c > 0
            Xk, tk, ck = (X[keep], tt[keep], c[keep]) if not keep.all() else (X, tt, c)
            if l2 > 0:
                w, b, converged, n_iter = _solve_dual(Xk, tk, ck, n * l1, n * l2, self.fit_intercept, self.tol,
                                                      self.max_iter)
                msg = f"{n_iter} augmented-Lagrangian rounds"
            else:
                w, b, converged, msg = _solve_lp(Xk, tk, ck, n * l1, self.fit_intercept)
        if not converged:
            log.warning("%s: solver '%s' stopped without reaching tol=%g (%s); raise max_iter or tol",
                        stage, self.solver, self.tol, msg)
        log.info("%s: %s, objective %.12g", stage, msg, hinge_objective(X, y, w, b, reg, en, s))
        return self._model_of(np.asarray(w), np.array([b]))

    def _model_of(self, W: np.ndarray, b: np.ndarray) -> "LinearSVCModel":
        model = LinearSVCModel()
        self.copy_params_to(model)
        return model.set_model_data(linear_model_table(np.asarray(W).reshape(1, -1),
                                                       np.asarray(b, dtype=np.float64).reshape(1), 0))


class LinearSVCModel(_LinearSVCModelParams, LinearModelResults, Model):
    """A fitted linear SVM: appends ``prediction`` (1.0 when ``coefficient . x + intercept >= threshold``,
    else 0.0) and ``raw_prediction`` (``[-margin, margin]``, the positive-class score last).

    Model data: one table, one row: ``coefficient`` (``fixed_size_list<double>[d]``),
    ``intercept`` (double) and ``model_version`` (int64, 0 for batch fits): the linear-model format
    shared with ``LogisticRegressionModel`` and ``LinearRegressionModel``.

    Example:
        >>> m = LinearSVCModel().set_model_data(
        ...     {"coefficient": [[1.0, -1.0]], "intercept": [0.0], "model_version": [0]})
        >>> out = m.transform({"features": [[2.0, 0.0], [0.0, 2.0]]})
        >>> out.column("prediction").to_pylist(), out.column("raw_prediction").to_pylist()
        ([1.0, 0.0], [[-2.0, 2.0], [2.0, -2.0]])
    """

    raw_prediction_is_margin = True   # not probabilities: evaluators that need them map it (ModelGate)

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        self._w, self._b, self._version = read_single_output_model(tables, type(self).__name__)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        stage = type(self).__name__
        if t.num_rows == 0:
            require_column(t, self.features_col, stage, "features_col")
            t = with_column(t, self.prediction_col, pa.array([], pa.float64()))
            return with_column(t, self.raw_prediction_col, pa.array([], dense_vector_type(2)))
        X = vector_column(t, self.features_col, stage, param="features_col", size=self._w.shape[0])
        z = np.asarray(X @ self._w).reshape(-1) + self._b
        t = with_column(t, self.prediction_col, pa.array((z >= self.threshold).astype(np.float64), pa.float64()))
        return with_column(t, self.raw_prediction_col, from_numpy(np.column_stack([-z, z])))

    def row_fn(self) -> RowFn:
        """Single-row kernel: reads ``features_col`` (1-D array, list or ``SparseVector``), writes
        ``prediction_col`` (float) and ``raw_prediction_col`` (1-D array ``[-margin, margin]``)."""
        self._require_model()
        stage = type(self).__name__
        thr, pc, rc = self.threshold, self.prediction_col, self.raw_prediction_col
        margin = row_margin_fn(stage, self.features_col, self._w, self._b)

        def fn(row: dict) -> None:
            z = margin(row)
            row[pc] = 1.0 if z >= thr else 0.0
            row[rc] = np.array([-z, z])

        return fn
