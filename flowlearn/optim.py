"""Shared solvers for linear models: objectives, L-BFGS (with an L1-capable variant) and mini-batch SGD.

Every linear model in flowlearn minimises the same kind of objective (Spark MLlib's convention)::

    F(W, b) = sum_i s_i * loss(y_i, W x_i + b) / sum_i s_i
              + l2 / 2 * ||W||_2^2 + l1 * ||W||_1

with ``l2 = reg * (1 - elastic_net)`` and ``l1 = reg * elastic_net``; the intercept ``b`` is never
penalised. ``loss`` is the logistic loss (binary, labels 0/1), the softmax cross-entropy
(multinomial, labels 0..K-1), half the squared error or (SGD only) the hinge loss (labels 0/1).
Features are used as given (no standardization inside).

Both solvers run in rounds of one kernel, :func:`loss_gradient_sums`: the weighted loss and
gradient sums over some rows (a partial), added up over parts of the rows (a merge,
:func:`merge_loss_gradient_sums`), then an update on the driver: an L-BFGS evaluation sums fixed
row chunks, an SGD step a mini-batch. :class:`LinearRounds` exposes the rounds over Arrow tables,
so an engine can run the partials in parallel.

* :class:`LinearObjective` evaluates ``F`` and its gradient over a dense ``numpy`` matrix (a fused
  one-pass Numba kernel run on fixed row chunks by a thread pool, so results do not depend on the
  number of threads) or a SciPy CSR matrix (sparse matrix-vector products; sparse data stays sparse).
* :func:`minimize_lbfgs` runs SciPy's L-BFGS-B (no bounds) on smooth objectives and :func:`owlqn`
  (orthant-wise limited-memory quasi-Newton, exact zeros) when some coordinates carry an L1
  weight. Both stop when the largest absolute (pseudo-)gradient entry, a KKT residual, is at
  most ``tol``, or after ``max_iter`` iterations.
* :func:`sgd` runs proximal mini-batch SGD (Flink ML's solver): ``max_iter`` epochs over a
  seeded permutation of the rows, mini-batches of ``batch_size`` rows, a constant learning rate,
  and the penalty applied by its proximal step after each mini-batch. Its epochs run as the
  rounds of a bounded iteration (:func:`sgd_epochs` on ``flowlearn.iteration.iterate_bounded``);
  ``LinearSVC(solver="sgd")`` runs it with the hinge loss.

The kernels every linear model shares live here once: the pointwise losses and their gradients
(:func:`loss_gradient`, :func:`softmax_loss_gradient`), the FTRL-Proximal coordinate step
(:func:`ftrl_step`, used by ``OnlineLogisticRegression`` and ``OnlineLearning``), the model data
format (:func:`linear_model_table` / :func:`read_linear_model_table`) and the single-row margin
(:func:`row_margin_fn`).

Example:
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0.0, 0.0, 1.0, 1.0])
    >>> with LinearObjective(X, y, None, "squared", l2=0.0) as obj:
    ...     res = minimize_lbfgs(obj.smooth, obj.initial(), max_iter=100, tol=1e-10)
    >>> np.round(res.x, 6).tolist()   # slope, intercept of the least-squares line
    [0.4, -0.1]
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import logging
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numba as nb
import numpy as np
import pyarrow as pa
import scipy.sparse as sps
from scipy.special import expit, logsumexp

from flowlearn._parallel import num_threads
from flowlearn.data.columns import check_finite, check_squares, numeric_column, vector_column
from flowlearn.iteration import BatchStream, IterationBodyResult, iterate_bounded
from flowlearn.linalg import SparseVector, _numbers, from_numpy

__all__ = ["OptimResult", "LinearObjective", "minimize_lbfgs", "owlqn", "sgd", "sgd_epochs", "sgd_training_batch",
           "sgd_training_arrays", "LOSSES", "read_training_input", "linear_model_table", "read_linear_model_table",
           "loss_gradient_sums", "merge_loss_gradient_sums", "LinearRounds", "sigmoid", "loss_gradient",
           "softmax_loss_gradient", "pointwise_loss_gradient", "ftrl_step", "ftrl_initial_z",
           "read_single_output_model", "row_vector_fn", "row_features_error", "row_margin_fn", "LinearModelResults",
           "report_progress"]

log = logging.getLogger(__name__)

_LOGISTIC, _SQUARED, _MULTINOMIAL, _HINGE = range(4)
LOSSES = {"logistic": _LOGISTIC, "squared": _SQUARED, "multinomial": _MULTINOMIAL,
          "hinge": _HINGE}  # hinge: SGD only (not smooth)

_CHUNK_ROWS = 16384  # fixed row chunk: partial sums are added in chunk order whatever the thread count


@dataclass
class OptimResult:
    """Result of a solver run: parameters ``x``, objective value ``fun`` (penalty included)."""

    x: np.ndarray
    fun: float
    n_iter: int
    converged: bool
    message: str


# ----------------------------------------------------------------------------------------------
# Numba kernels
# ----------------------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot_row(X, i, W, k):
    """X[i] . W[k]; reassociation lets LLVM vectorize the reduction (results stay deterministic)."""
    acc = 0.0
    for j in range(X.shape[1]):
        acc += X[i, j] * W[k, j]
    return acc


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _vdot(a, b):
    """a . b for 1-D arrays without BLAS: OpenBLAS threads level-1 calls on long vectors, which
    costs milliseconds per call on an oversubscribed machine; solvers call this in their loops."""
    acc = 0.0
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


# The pointwise losses, their gradients and the FTRL-Proximal coordinate step: the one copy of each
# that every linear-model kernel inlines (the batch solvers here, OnlineLogisticRegression's FTRL
# and OnlineLearning's optimizers). Numba caches a compiled caller with what it inlined and does not
# notice edits in another file: after changing these, delete the callers' __pycache__ *.nbi/*.nbc.

@nb.njit(cache=True, nogil=True, inline="always")
def sigmoid(t):
    """``1 / (1 + exp(-t))`` without overflow (only ``exp(-|t|)`` is taken) and without a branch."""
    e = math.exp(-abs(t))
    return (1.0 if t >= 0.0 else e) / (1.0 + e)


@nb.njit(cache=True, nogil=True, inline="always")
def loss_gradient(t, yi, kind, with_loss):
    """``(loss, dloss/dt)`` of one row with the single score ``t``: logistic (labels 0/1), half
    squared error, hinge (labels 0/1; the subgradient ``-u`` at the kink, ``u = 2y - 1``). With
    ``with_loss`` False the loss is not computed (0.0): a constant at the call site, so a kernel
    that only steps (the online trainers) pays no ``log1p``."""
    if kind == _LOGISTIC:
        p = sigmoid(t)   # first, so that the loss's exp(-|t|) is the same value, computed once
        loss = math.log1p(math.exp(-abs(t))) + max(t, 0.0) - yi * t if with_loss else 0.0
        return loss, p - yi
    if kind == _HINGE:
        u = 2.0 * yi - 1.0
        m = u * t
        return max(0.0, 1.0 - m) if with_loss else 0.0, (-u if m <= 1.0 else 0.0)
    r = t - yi
    return 0.5 * r * r if with_loss else 0.0, r


@nb.njit(cache=True, nogil=True, inline="always")
def softmax_loss_gradient(z, c):
    """Softmax cross-entropy of one row with scores ``z`` (K,) and class ``c``; overwrites ``z``
    with its gradient ``softmax(z) - e_c``."""
    m = z[0]
    for k in range(1, z.shape[0]):
        if z[k] > m:
            m = z[k]
    tot = 0.0
    for k in range(z.shape[0]):
        tot += math.exp(z[k] - m)
    lse = m + math.log(tot)
    loss = lse - z[c]
    for k in range(z.shape[0]):
        z[k] = math.exp(z[k] - lse)
    z[c] -= 1.0
    return loss


@nb.njit(cache=True, nogil=True, inline="always")
def pointwise_loss_gradient(z, yi, kind, with_loss):
    """Loss of one row given its scores ``z`` (K,) (0.0 without ``with_loss``, except for the
    softmax, whose loss costs one subtraction); overwrites ``z`` with dloss/dz. ``kind`` is a value
    of :data:`LOSSES`; for ``"multinomial"`` ``yi`` is the class index."""
    if kind == _MULTINOMIAL:
        return softmax_loss_gradient(z, int(yi))
    loss, g = loss_gradient(z[0], yi, kind, with_loss)
    z[0] = g
    return loss


@nb.njit(cache=True, nogil=True, inline="always")
def ftrl_step(w, z, n, sqrt_n, g, inv_alpha, beta, l1, l2):
    """One FTRL-Proximal step (McMahan et al., KDD 2013, Algorithm 1) of a coordinate with weight
    ``w``, state ``z``, ``n`` (``sqrt_n = sqrt(n)``, which a caller may keep rather than recompute)
    and gradient ``g``; returns the new ``(w, z, n, sqrt_n)``. A zero gradient changes nothing::

        z += g - (sqrt(n + g^2) - sqrt(n)) / alpha * w;  n += g^2
        w  = -sign(z) * max(|z| - l1, 0) / ((beta + sqrt(n)) / alpha + l2)
    """
    if g == 0.0:
        return w, z, n, sqrt_n
    n_new = n + g * g
    sq_new = math.sqrt(n_new)
    z = z + g - (sq_new - sqrt_n) * inv_alpha * w
    # branch-free; "+ 0.0" turns the -0.0 of a clipped negative z into 0.0
    w = -math.copysign(max(abs(z) - l1, 0.0), z) / ((beta + sq_new) * inv_alpha + l2) + 0.0
    return w, z, n_new, sq_new


def ftrl_initial_z(w: np.ndarray, alpha: float, beta: float, l1: float, l2: float) -> np.ndarray:
    """FTRL's ``z`` at ``n = 0`` whose weights are exactly ``w`` (a warm start from a model)."""
    return -w * (beta / alpha + l2) - np.sign(w) * l1


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot1(X, i, w):
    acc = 0.0
    for j in range(X.shape[1]):
        acc += X[i, j] * w[j]
    return acc


@nb.njit(cache=True, nogil=True)
def _dense_eval1(X, y, s, w, b, kind, rows, lo, hi, g):
    """Single-output version of :func:`_dense_eval`: returns (sum s_i loss_i, sum s_i dloss_i)."""
    d = X.shape[1]
    f = 0.0
    gb = 0.0
    for t in range(lo, hi):
        i = rows[t]
        si = s[i]
        if si == 0.0:
            continue
        loss, r = loss_gradient(b + _dot1(X, i, w), y[i], kind, True)
        f += si * loss
        r *= si
        gb += r
        for j in range(d):
            g[j] += r * X[i, j]
    return f, gb


@nb.njit(cache=True, nogil=True)
def _dense_eval(X, y, s, W, b, kind, rows, lo, hi, G, gb):
    """Sum over the rows ``rows[lo:hi]`` of s_i * loss_i; adds the gradient into G (K, d) and gb (K,).
    The partial of a round: a chunk of an L-BFGS evaluation, a mini-batch of an SGD epoch."""
    K, d = W.shape
    z = np.empty(K)
    f = 0.0
    for t in range(lo, hi):
        i = rows[t]
        si = s[i]
        if si == 0.0:
            continue
        for k in range(K):
            z[k] = b[k] + _dot_row(X, i, W, k)
        f += si * pointwise_loss_gradient(z, y[i], kind, True)
        for k in range(K):
            r = si * z[k]
            if r != 0.0:
                gb[k] += r
                for j in range(d):
                    G[k, j] += r * X[i, j]
    return f


@nb.njit(cache=True, nogil=True)
def _prox(W, lr, l2, l1):
    if l2 == 0.0 and l1 == 0.0:
        return
    shrink = 1.0 / (1.0 + lr * l2)
    th = lr * l1
    K, d = W.shape
    for k in range(K):
        for j in range(d):
            w = W[k, j]
            if w > th:
                w -= th
            elif w < -th:
                w += th
            else:
                w = 0.0
            W[k, j] = w * shrink


@nb.njit(cache=True, nogil=True)
def _sgd_step(W, b, G, gb, step, fit_intercept):
    """The update of an SGD round: ``W -= step * G``, ``b -= step * gb`` (with an intercept)."""
    K, d = W.shape
    for k in range(K):
        if fit_intercept:
            b[k] -= step * gb[k]
        for j in range(d):
            W[k, j] -= step * G[k, j]


@nb.njit(cache=True, nogil=True)
def _sgd_epoch_dense(X, y, s, W, b, kind, fit_intercept, perm, batch, lr, l2, l1):
    """One epoch; per mini-batch of ``perm``: the round's loss-gradient sums (:func:`_dense_eval`),
    a step of ``lr`` along their weighted mean, the penalty's proximal step. Returns (sum of s *
    loss over the rows seen, sum of s)."""
    K, d = W.shape
    n = perm.shape[0]
    G = np.zeros((K, d))
    gb = np.zeros(K)
    loss_sum = 0.0
    w_sum = 0.0
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        sw = 0.0
        for t in range(start, stop):
            sw += s[perm[t]]
        G[:] = 0.0
        gb[:] = 0.0
        if K == 1:
            f, g0 = _dense_eval1(X, y, s, W[0], b[0], kind, perm, start, stop, G[0])
            gb[0] = g0
        else:
            f = _dense_eval(X, y, s, W, b, kind, perm, start, stop, G, gb)
        loss_sum += f
        w_sum += sw
        if sw <= 0.0:
            continue
        _sgd_step(W, b, G, gb, lr / sw, fit_intercept)
        _prox(W, lr, l2, l1)
    return loss_sum, w_sum


@nb.njit(cache=True, nogil=True)
def _sgd_epoch_sparse(indptr, indices, data, y, s, W, b, kind, fit_intercept, perm, batch, lr, l2, l1):
    """CSR version of :func:`_sgd_epoch_dense`. A mini-batch's step ``W -= lr / sw * G`` is applied
    row by row (``G`` is the sum of the rows' ``r_i x_i``), and without an L1 part the L2 shrinkage
    lazily (W = scale * V), so a mini-batch costs O(its non-zeros), not O(d): summing ``G`` at the
    mini-batch's columns first, as the dense kernel does, costs a third pass over them."""
    K, d = W.shape
    n = perm.shape[0]
    R = np.empty((batch, K))
    z = np.empty(K)
    loss_sum = 0.0
    w_sum = 0.0
    lazy = l1 == 0.0
    shrink = 1.0 / (1.0 + lr * l2)
    scale = 1.0
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        sw = 0.0
        for t in range(start, stop):
            i = perm[t]
            si = s[i]
            for k in range(K):
                acc = 0.0
                for p in range(indptr[i], indptr[i + 1]):
                    acc += data[p] * W[k, indices[p]]
                z[k] = b[k] + scale * acc
            loss_sum += si * pointwise_loss_gradient(z, y[i], kind, True)
            sw += si
            for k in range(K):
                R[t - start, k] = si * z[k]
        w_sum += sw
        if sw <= 0.0:
            continue
        step = lr / sw
        for t in range(start, stop):
            i = perm[t]
            for k in range(K):
                c = step * R[t - start, k]
                if c != 0.0:
                    if fit_intercept:
                        b[k] -= c
                    cw = c / scale
                    for p in range(indptr[i], indptr[i + 1]):
                        W[k, indices[p]] -= cw * data[p]
        if lazy:
            scale *= shrink
            if scale < 1e-100:
                W *= scale
                scale = 1.0
        else:
            _prox(W, lr, l2, l1)
    if scale != 1.0:
        W *= scale
    return loss_sum, w_sum


# ----------------------------------------------------------------------------------------------
# Objective
# ----------------------------------------------------------------------------------------------

def loss_gradient_sums(X: np.ndarray | sps.csr_matrix, y: np.ndarray, s: np.ndarray, W: np.ndarray, b: np.ndarray,
                       kind: int, lo: int = 0, hi: int | None = None, rows: np.ndarray | None = None,
                       ) -> tuple[float, np.ndarray, np.ndarray]:
    """The partial of a linear model's round: over the rows ``lo..hi`` (of ``rows``, an index, when
    given; dense ``X`` only) of ``X`` (dense C-contiguous float64 or canonical CSR),
    ``sum_i s_i loss_i`` and its gradient sums ``G`` (K, d) and ``gb`` (K,) at coefficients ``W``
    (K, d) and intercepts ``b``.
    Partials of the parts of the rows add up (:func:`merge_loss_gradient_sums`) to the whole's."""
    hi = X.shape[0] if hi is None else hi
    K, d = W.shape
    if sps.issparse(X):
        if (lo, hi) != (0, X.shape[0]):
            X, y, s = X[lo:hi], y[lo:hi], s[lo:hi]
        return _sparse_sums(X, y, s, W, b, kind)
    G = np.zeros((K, d))
    gb = np.zeros(K)
    rows = np.arange(hi, dtype=np.int64) if rows is None else rows
    if K == 1:
        f, gb[0] = _dense_eval1(X, y, s, W[0], float(b[0]), kind, rows, lo, hi, G[0])
    else:
        f = _dense_eval(X, y, s, W, b, kind, rows, lo, hi, G, gb)
    return f, G, gb


def merge_loss_gradient_sums(parts: list[tuple[float, np.ndarray, np.ndarray]]) -> tuple[float, np.ndarray, np.ndarray]:
    """The merge of a linear model's round: the sums of the partials (added in order)."""
    if len(parts) == 1:
        return parts[0]
    return (float(np.array([p[0] for p in parts]).sum()), np.array([p[1] for p in parts]).sum(axis=0),
            np.array([p[2] for p in parts]).sum(axis=0))


def _sparse_sums(X: sps.csr_matrix, y: np.ndarray, s: np.ndarray, W: np.ndarray, b: np.ndarray, kind: int,
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`loss_gradient_sums` of CSR rows, with SciPy's sparse products: the losses of
    :func:`loss_gradient` and :func:`softmax_loss_gradient` vectorized over the rows (kept apart
    from the Numba row loop, which would add the gradient sums in another order and change the
    sparse L-BFGS fits)."""
    if W.shape[0] == 1:
        z = X @ W[0]
        z += b[0]
        if kind == _LOGISTIC:
            loss = np.logaddexp(0.0, z) - y * z
            r = expit(z) - y
        elif kind == _HINGE:
            t = 2.0 * y - 1.0
            m = t * z
            loss = np.maximum(0.0, 1.0 - m)
            r = np.where(m <= 1.0, -t, 0.0)
        else:
            r = z - y
            loss = 0.5 * r * r
        r *= s
        g = np.asarray(X.T @ r).reshape(1, -1)
        return _vdot(s, loss), g, np.array([r.sum()])
    Z = X @ W.T
    Z += b
    yi = y.astype(np.int64)
    lse = logsumexp(Z, axis=1)
    rows = np.arange(X.shape[0])
    loss = lse - Z[rows, yi]
    P = np.exp(Z - lse[:, None])
    P[rows, yi] -= 1.0
    P *= s[:, None]
    G = np.asarray(X.T @ P).T
    return _vdot(s, loss), np.ascontiguousarray(G), P.sum(axis=0)


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous float64 view (one Numba specialization for Arrow and NumPy input)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    v = a.view()
    v.flags.writeable = False
    return v


class LinearObjective:
    """``F(W, b)`` of a linear model (see the module docstring) over dense or CSR ``X``.

    ``y`` holds labels (0/1 for ``"logistic"``, class indices for ``"multinomial"``, targets for
    ``"squared"``); ``sample_weight`` non-negative weights (None: all 1), normalised to sum to 1.
    Parameters are packed as ``theta = [W.ravel(), b]`` (``b`` only when ``fit_intercept``).
    ``smooth(theta)`` returns the loss plus the L2 term and its gradient; ``l1_weights()`` the
    per-coordinate L1 weights (0 for intercepts). Use as a context manager (it owns a thread pool).
    """

    def __init__(self, X: np.ndarray | sps.spmatrix, y: np.ndarray, sample_weight: np.ndarray | None,
                 loss: str, n_outputs: int = 1, fit_intercept: bool = True, l2: float = 0.0, l1: float = 0.0,
                 n_threads: int | None = None) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.sparse = sps.issparse(X)
        if self.sparse:
            X = sps.csr_matrix(X, dtype=np.float64)
            if not X.has_canonical_format:
                X = X.copy()
                X.sum_duplicates()
        else:
            X = _readonly(X)
        self.X = X
        self.n, self.d = X.shape
        self.y = _readonly(y)
        s = np.ones(self.n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        total = float(s.sum())
        if not total > 0:
            raise ValueError("the sample weights sum to zero; at least one row needs a positive weight")
        self.s = _readonly(s / total)
        self.kind = LOSSES[loss]
        self.loss = loss
        self.K = int(n_outputs)
        self.fit_intercept = bool(fit_intercept)
        self.l2 = float(l2)
        self.l1 = float(l1)
        self.n_params = self.K * self.d + (self.K if self.fit_intercept else 0)
        self.n_threads = n_threads or num_threads()
        self._rows = None if self.sparse else np.arange(self.n, dtype=np.int64)  # dense kernels read rows by index
        self._pool: ThreadPoolExecutor | None = None
        self.n_evals = 0

    # context management (thread pool)
    def __enter__(self) -> "LinearObjective":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # packing
    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kd = self.K * self.d
        W = theta[:kd].reshape(self.K, self.d)
        b = theta[kd:] if self.fit_intercept else np.zeros(self.K)
        return W, b

    def pack(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        parts = [np.asarray(W, dtype=np.float64).reshape(-1)]
        if self.fit_intercept:
            parts.append(np.asarray(b, dtype=np.float64).reshape(-1))
        return np.concatenate(parts)

    def l1_weights(self) -> np.ndarray | None:
        """Per-parameter L1 weights, or None when there is no L1 term."""
        if self.l1 <= 0:
            return None
        w = np.zeros(self.n_params)
        w[: self.K * self.d] = self.l1
        return w

    def initial(self) -> np.ndarray:
        """A starting point: zero coefficients, intercepts at the null model's optimum (0 for hinge)."""
        W = np.zeros((self.K, self.d))
        b = np.zeros(self.K)
        if self.fit_intercept:
            if self.kind == _SQUARED:
                b[0] = float(self.s @ self.y)
            elif self.kind == _LOGISTIC:
                p = min(max(float(self.s @ self.y), 1e-8), 1 - 1e-8)
                b[0] = math.log(p / (1 - p))
            elif self.kind == _HINGE:
                pass  # hinge: from zero, as Flink ML's LinearSVC
            else:
                prior = np.bincount(self.y.astype(np.int64), weights=self.s, minlength=self.K)[: self.K]
                lp = np.log(np.maximum(prior, 1e-8))
                b = lp - lp.mean()
        return self.pack(W, b)

    # evaluation: a round's partials over fixed chunks of rows (in the thread pool), merged in order
    def _data_term(self, W: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Weighted mean loss and its gradients with respect to W (K, d) and b (K,)."""
        self.n_evals += 1
        W = np.ascontiguousarray(W)
        b = np.ascontiguousarray(b, dtype=np.float64)
        if self.sparse:  # one partial: SciPy's products are the parallel part
            return loss_gradient_sums(self.X, self.y, self.s, W, b, self.kind)

        def run(lo: int) -> tuple[float, np.ndarray, np.ndarray]:
            return loss_gradient_sums(self.X, self.y, self.s, W, b, self.kind, lo, min(self.n, lo + _CHUNK_ROWS),
                                      self._rows)

        starts = range(0, self.n, _CHUNK_ROWS)
        if len(starts) == 1 or self.n_threads == 1:
            return merge_loss_gradient_sums([run(lo) for lo in starts])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.n_threads, thread_name_prefix="flowlearn-optim")
        return merge_loss_gradient_sums(list(self._pool.map(run, starts)))

    def smooth(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss + L2 term and the gradient with respect to ``theta``."""
        W, b = self.unpack(theta)
        f, G, gb = self._data_term(W, b)
        if self.l2 > 0:
            w = W.reshape(-1)
            f += 0.5 * self.l2 * _vdot(w, w)
            G = G + self.l2 * W
        g = G.reshape(-1)
        if self.fit_intercept:
            g = np.concatenate([g, gb])
        return f, g

    def value(self, theta: np.ndarray) -> float:
        """The full objective (L1 term included)."""
        f, _ = self.smooth(theta)
        if self.l1 > 0:
            f += self.l1 * float(np.abs(theta[: self.K * self.d]).sum())
        return f


# ----------------------------------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------------------------------

_PROGRESS: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar(
    "flowlearn_optim_progress", default=None)


@contextlib.contextmanager
def report_progress(fn: Callable[[int, int], None]):
    """Within the block, the solvers call ``fn(iteration, max_iter)`` after each L-BFGS / OWL-QN
    iteration and each SGD epoch (e.g. to move a progress bar during a long fit).

    Example:
        >>> seen = []
        >>> with report_progress(lambda it, most: seen.append((it, most))):
        ...     r = minimize_lbfgs(lambda x: (float(x @ x), 2 * x), np.ones(2), max_iter=5)
        >>> seen[0], len(seen) == r.n_iter
        ((1, 5), True)
    """
    token = _PROGRESS.set(fn)
    try:
        yield
    finally:
        _PROGRESS.reset(token)

def minimize_lbfgs(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, max_iter: int = 100,
                   tol: float = 1e-6, l1: np.ndarray | None = None, memory: int = 10) -> OptimResult:
    """Minimise ``fun(x) + sum(l1 * |x|)`` where ``fun`` is smooth and returns ``(value, gradient)``.

    Without an L1 part this is L-BFGS (SciPy's L-BFGS-B without bounds, configured like
    scikit-learn's lbfgs solver). With per-coordinate L1 weights ``l1`` (zeros allowed, e.g. for
    intercepts) it is OWL-QN (:func:`owlqn`). Stops when the largest entry of the (pseudo-)gradient
    is at most ``tol``, when the objective stops decreasing (relative change below 64 machine
    epsilons), or after ``max_iter`` iterations.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    if l1 is not None and np.any(np.asarray(l1) > 0):
        return owlqn(fun, x0, np.asarray(l1, dtype=np.float64), max_iter=max_iter, tol=tol, memory=memory)
    opts = {"maxiter": int(max_iter), "maxls": 50, "gtol": float(tol), "ftol": 64 * np.finfo(float).eps,
            "maxcor": int(memory)}
    import scipy.optimize   # here, not at import: it costs a cold start that prediction never needs

    hook = _PROGRESS.get()
    count = itertools.count(1)
    callback = None if hook is None else (lambda xk: hook(next(count), int(max_iter)))
    res = scipy.optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, options=opts, callback=callback)
    x = np.asarray(res.x, dtype=np.float64)
    return OptimResult(x, float(res.fun), int(res.nit), bool(res.success), _msg(res))


def _pseudo_gradient(x: np.ndarray, g: np.ndarray, l1: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Minimum-norm subgradient of f + sum(l1 |x|): zero where x_j = 0 and |g_j| <= l1_j."""
    pg = g.copy()
    xp, lp = x[P], l1[P]
    gp, gm = g[P] + lp, g[P] - lp
    pg[P] = np.where(xp > 0, gp, np.where(xp < 0, gm, np.where(gp < 0, gp, np.where(gm > 0, gm, 0.0))))
    return pg


def owlqn(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, l1: np.ndarray,
          max_iter: int = 100, tol: float = 1e-6, memory: int = 10, max_ls: int = 50) -> OptimResult:
    """OWL-QN (Andrew & Gao, 2007) for ``fun(x) + sum(l1 * |x|)``, ``fun`` smooth.

    Each iteration takes the L-BFGS direction of the pseudo-gradient, zeroes the components
    whose sign disagrees with the steepest-descent direction, and backtracks along the step
    projected onto the current orthant (coordinates that would cross zero are set to exactly
    zero) until the Armijo condition holds. If the quasi-Newton direction fails the line search,
    the memory is dropped and the step restarts from the pseudo-gradient (steepest descent), so
    the objective decreases monotonically. Stops when the largest pseudo-gradient entry (the
    KKT residual) is at most ``tol``, when the relative decrease of the objective falls below 64
    machine epsilons, or after ``max_iter`` iterations.
    """
    P = np.flatnonzero(l1 > 0)
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    F = f + _vdot(l1, np.abs(x))
    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    R: list[float] = []
    eps64 = 64 * np.finfo(float).eps
    hook = _PROGRESS.get()
    n_iter, converged, msg = 0, False, f"stopped after max_iter={max_iter} iterations"
    while n_iter < max_iter:
        pg = _pseudo_gradient(x, g, l1, P)
        if np.abs(pg).max(initial=0.0) <= tol:
            converged, msg = True, "pseudo-gradient norm <= tol"
            break
        step_done = False
        for attempt in (0, 1):
            if attempt == 1:
                if not S:
                    break
                S.clear(), Y.clear(), R.clear()
            # two-loop recursion on the pseudo-gradient
            q = pg.copy()
            alphas = []
            for s_, y_, r_ in zip(reversed(S), reversed(Y), reversed(R)):
                a = r_ * _vdot(s_, q)
                alphas.append(a)
                q -= a * y_
            if S:
                q *= _vdot(S[-1], Y[-1]) / _vdot(Y[-1], Y[-1])
            for (s_, y_, r_), a in zip(zip(S, Y, R), reversed(alphas)):
                q += (a - r_ * _vdot(y_, q)) * s_
            d = -q
            d[d * pg >= 0] = 0.0  # keep only components that descend along -pg
            if not _vdot(pg, d) < 0:
                d = -pg
            xi = np.sign(x)
            zero = xi == 0
            xi[zero] = -np.sign(pg[zero])
            alpha = 1.0 if S else 1.0 / max(1.0, math.sqrt(_vdot(pg, pg)))
            for _ in range(max_ls):
                xn = x + alpha * d
                xn[P] = np.where(xn[P] * xi[P] > 0, xn[P], 0.0)
                fn, gn = fun(xn)
                Fn = fn + _vdot(l1, np.abs(xn))
                if Fn <= F + 1e-4 * _vdot(pg, xn - x):
                    step_done = True
                    break
                alpha *= 0.5
            if step_done:
                break
        if not step_done:
            converged, msg = True, "no further decrease possible (line search at machine precision)"
            break
        n_iter += 1
        if hook is not None:
            hook(n_iter, int(max_iter))
        s_, y_ = xn - x, gn - g
        sy = _vdot(s_, y_)
        if sy > 1e-12 * _vdot(y_, y_):
            S.append(s_), Y.append(y_), R.append(1.0 / sy)
            if len(S) > memory:
                S.pop(0), Y.pop(0), R.pop(0)
        decrease = F - Fn
        x, f, g, F = xn, fn, gn, Fn
        if decrease <= eps64 * max(abs(F), abs(F + decrease), 1.0):
            converged, msg = True, "relative reduction of the objective <= 64 * machine epsilon"
            break
    return OptimResult(x, F, n_iter, converged, msg)


def _msg(res) -> str:
    m = res.message
    return m.decode() if isinstance(m, bytes) else str(m)


# ----------------------------------------------------------------------------------------------
# Mini-batch SGD on the bounded iteration engine
# ----------------------------------------------------------------------------------------------
#
# Flink ML's SGD as an iteration: the coefficients are the variable stream (one row per output:
# ``coefficient``, ``intercept``), the training data is one record batch replayed every round
# (zero-copy over the solver's arrays, so replaying costs nothing), and round ``e`` runs epoch
# ``e + 1``: the body draws the epoch's permutation, runs the solver's Numba epoch kernel on the
# coefficients it received and feeds the new coefficients back; its termination-criteria stream
# is empty (the iteration ends) after ``max_iter`` epochs or once the objective stops changing.

# An epoch: ``epoch(W, b, data, perm, k)`` updates W (K, d) and b (K,) in place with epoch ``k``
# (1-based) over the rows in the order ``perm`` and returns the epoch's objective.
EpochFn = Callable[[np.ndarray, np.ndarray, tuple, np.ndarray, int], float]


def sgd_training_batch(X: np.ndarray | sps.csr_matrix, y: np.ndarray, s: np.ndarray) -> pa.RecordBatch:
    """Training rows as the record batch an SGD iteration replays, zero-copy over ``X``, ``y``, ``s``:
    ``features`` (dense rows) or ``indices`` and ``values`` (the CSR rows, with ``X.indptr`` as list
    offsets, int32 or int64), ``label`` and ``weight``."""
    cols: dict[str, pa.Array] = {}
    if sps.issparse(X):
        offsets = pa.array(X.indptr)
        lists = pa.LargeListArray if X.indptr.dtype == np.int64 else pa.ListArray
        cols["indices"] = lists.from_arrays(offsets, pa.array(X.indices))
        cols["values"] = lists.from_arrays(offsets, pa.array(X.data))
    else:
        cols["features"] = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
    cols["label"] = pa.array(y)
    cols["weight"] = pa.array(s)
    return pa.record_batch(cols)


def sgd_training_arrays(batch: pa.RecordBatch) -> tuple[np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray],
                                                         np.ndarray, np.ndarray]:
    """``(X, y, s)`` of a :func:`sgd_training_batch`, zero-copy (read-only views): ``X`` is the dense
    matrix or the CSR arrays ``(indptr, indices, data)``."""
    cols = batch.columns
    if len(cols) == 3:  # features, label, weight
        X = _fixed_size_rows(cols[0])
    else:  # indices, values, label, weight
        X = (cols[0].offsets.to_numpy(), cols[0].values.to_numpy(), cols[1].values.to_numpy())
    return X, cols[-2].to_numpy(), cols[-1].to_numpy()


def _fixed_size_rows(col: pa.FixedSizeListArray) -> np.ndarray:
    """A fixed-size list column without nulls as a (rows, size) read-only view of its values."""
    size = col.type.list_size
    return col.values.to_numpy()[col.offset * size:(col.offset + len(col)) * size].reshape(len(col), size)


def _coefficients_batch(W: np.ndarray, b: np.ndarray) -> pa.RecordBatch:
    """The variable stream of an SGD iteration: one row per output (zero-copy over W (K, d) and b)."""
    coefficient = pa.FixedSizeListArray.from_arrays(pa.array(W.reshape(-1)), W.shape[1])
    return pa.RecordBatch.from_arrays([coefficient, pa.array(b)], names=["coefficient", "intercept"])


def _read_coefficients(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """Writable copies of ``(W, b)`` from a :func:`_coefficients_batch`."""
    return _fixed_size_rows(batch.column(0)).copy(), batch.column(1).to_numpy().copy()


def _objective_converged(prev: float | None, cur: float, tol: float) -> bool:
    """SGD's stopping rule: the epoch objective changed by at most ``tol * max(1, |objective|)``."""
    return prev is not None and abs(prev - cur) <= tol * max(1.0, abs(cur))


@functools.lru_cache(maxsize=None)
def _termination(go: bool) -> pa.RecordBatch:
    """The termination-criteria stream of a round: one record to continue, none to stop (built on
    first use: pyarrow's first pa.array imports pandas, a cost prediction need not pay)."""
    batch = pa.RecordBatch.from_arrays([pa.array(np.array([True]))], names=["continue"])
    return batch if go else batch.slice(0, 0)


def sgd_epochs(epoch: EpochFn, W: np.ndarray, b: np.ndarray, data: pa.RecordBatch, max_iter: int, tol: float,
               seed: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Run SGD epochs on ``iterate_bounded`` from coefficients ``W`` (K, d) and intercepts ``b``
    (K,) over ``data`` (a :func:`sgd_training_batch`, replayed every round), one epoch per round,
    each over a fresh permutation of the rows drawn from ``numpy.random.default_rng(seed)``, until
    ``max_iter`` epochs or until the epoch objective changes by at most
    ``tol * max(1, |objective|)`` (the round's termination-criteria stream is then empty).
    Returns ``(W, b, epochs run, converged)``."""
    if int(max_iter) < 1:
        return W, b, 0, False
    rng = np.random.default_rng(seed)
    objectives: list[float] = []
    replayed: list = [None, None]  # the replayed batch and its arrays (views, decoded once)

    def body(variables: list[BatchStream], data_streams: list[BatchStream], round_: int) -> IterationBodyResult:
        (coefficients,), (rows,) = variables[0].batches(), data_streams[0].batches()
        if rows is not replayed[0]:
            replayed[:] = rows, sgd_training_arrays(rows)
        W, b = _read_coefficients(coefficients)
        perm = rng.permutation(rows.num_rows).astype(np.int64)
        objective = epoch(W, b, replayed[1], perm, round_ + 1)
        prev = objectives[-1] if objectives else None
        objectives.append(objective)
        go = round_ + 1 < max_iter and not _objective_converged(prev, objective, tol)
        return IterationBodyResult([_coefficients_batch(W, b)], termination_criteria=_termination(bool(go)))

    res = iterate_bounded([_coefficients_batch(W, b)], [data], body, replay=True)
    W, b = _read_coefficients(res.variables[0].combine_chunks().to_batches()[0])
    converged = len(objectives) > 1 and _objective_converged(objectives[-2], objectives[-1], tol)
    return W, b, res.rounds, converged


def sgd(obj: LinearObjective, x0: np.ndarray, learning_rate: float = 0.1, batch_size: int = 32,
        max_iter: int = 100, tol: float = 1e-6, seed: int = 0, stage: str = "SGD") -> OptimResult:
    """Proximal mini-batch SGD on ``obj`` for ``max_iter`` epochs (Flink ML's solver, run in-process
    on the bounded iteration engine; see :func:`sgd_epochs`).

    Each epoch visits the rows in a fresh permutation drawn from ``numpy.random.default_rng(seed)``
    and, per mini-batch of ``batch_size`` rows, takes a step of ``learning_rate`` along the
    weighted-mean gradient of the batch, then applies the penalty's proximal operator
    (soft-thresholding by ``learning_rate * l1``, shrinking by ``1 / (1 + learning_rate * l2)``).
    Stops early when the epoch's objective (the batch losses seen during the epoch plus the
    penalty) changes by at most ``tol * max(1, |objective|)``. Deterministic for a fixed seed.
    Each mini-batch is a round: the loss-gradient sums of its rows (the kernel of
    :func:`loss_gradient_sums`), then the step and the proximal update. ``stage`` names the caller
    in errors.
    """
    W, b = obj.unpack(np.array(x0, dtype=np.float64))
    W = np.ascontiguousarray(W).copy()
    b = np.array(b, dtype=np.float64)
    batch = int(min(max(1, batch_size), max(1, obj.n)))
    lr = float(learning_rate)
    kind, fit_intercept, l2, l1 = obj.kind, obj.fit_intercept, obj.l2, obj.l1
    hook = _PROGRESS.get()

    def epoch(W: np.ndarray, b: np.ndarray, data: tuple, perm: np.ndarray, k: int) -> float:
        X, y, s = data
        if isinstance(X, tuple):
            loss, wsum = _sgd_epoch_sparse(*X, y, s, W, b, kind, fit_intercept, perm, batch, lr, l2, l1)
        else:
            loss, wsum = _sgd_epoch_dense(X, y, s, W, b, kind, fit_intercept, perm, batch, lr, l2, l1)
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"{stage}: SGD diverged at epoch {k} (non-finite coefficients); lower learning_rate "
                             f"(now {learning_rate}) or standardize the features")
        cur = loss / wsum + 0.5 * l2 * float(np.vdot(W, W)) + l1 * float(np.abs(W).sum())
        log.debug("sgd epoch %d objective %.10g", k, cur)
        if hook is not None:
            hook(k, int(max_iter))
        return cur

    W, b, epochs, converged = sgd_epochs(epoch, W, b, sgd_training_batch(obj.X, obj.y, obj.s), max_iter, tol, seed)
    theta = obj.pack(W, b)
    msg = f"converged after {epochs} epochs" if converged else f"stopped after max_iter={max_iter} epochs"
    return OptimResult(theta, obj.value(theta), epochs, converged, msg)


# ----------------------------------------------------------------------------------------------
# Shared plumbing of linear models: training input and model data tables
# ----------------------------------------------------------------------------------------------

def read_training_input(t: pa.Table, stage: str, features_col: str, label_col: str, weight_col: str | None,
                        part: bool = False) -> tuple[np.ndarray | sps.csr_matrix, np.ndarray, np.ndarray | None]:
    """Features (dense array or CSR, as stored), labels and weights of a training table, validated.

    Raises ``ValueError`` naming the stage, column and row for an empty table, NaN/infinite
    features or labels, values so large that their squares overflow (the training sums would be
    infinite and the solver would stop at a meaningless model), and negative or non-finite weights.
    A ``part`` of the input (a round's batch) may have weights that sum to 0.
    """
    if t.num_rows == 0:
        raise ValueError(f"{stage}: fit needs at least one row; the input table is empty")
    X = vector_column(t, features_col, stage, param="features_col", finite=False)
    data = X.data if sps.issparse(X) else X
    # One summing pass detects any NaN/inf (they propagate); then find the row for the message.
    if data.size and not np.isfinite(np.sum(data)):
        check_finite(X, features_col, stage)
    check_squares(X, features_col, stage, "features_col")
    y = numeric_column(t, label_col, stage, param="label_col")
    check_squares(y, label_col, stage, "label_col")
    s = None
    if weight_col is not None:
        s = numeric_column(t, weight_col, stage, param="weight_col")
        bad = s < 0
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{stage}: column '{weight_col}' (parameter 'weight_col') has the negative weight "
                             f"{float(s[row])!r} at row {row}; weights must be >= 0")
        if not part and not s.sum() > 0:
            raise ValueError(f"{stage}: the weights in column '{weight_col}' (parameter 'weight_col') sum to 0; "
                             f"at least one row needs a positive weight")
    return X, y, s


class LinearRounds:
    """The rounds of a linear model's ``lbfgs`` and ``sgd`` solvers, as an engine runs them (see
    ``flowlearn.api.IterativeEstimator``); a mix-in of ``LogisticRegression``, ``LinearRegression``
    and ``LinearSVC``, which name their loss and check a batch's labels in ``_round_loss``.

    * Variables: the model data table (``coefficient``, ``intercept``: one row per output, as
      :func:`linear_model_table` makes it; ``fit`` starts from zero coefficients and the null
      model's intercepts).
    * ``round_partial(variables, batch)``: one row: ``weight`` (the batch's sum of weights),
      ``loss`` (sum of weighted losses), ``coefficient_gradient`` (K x d, row-major) and
      ``intercept_gradient`` (K), the sums of the weighted loss gradients (:func:`loss_gradient_sums`),
      and ``outputs`` (K).
    * ``round_merge(states)``: their sums.
    * The driver's update: L-BFGS asks for :meth:`round_objective` (the smooth objective and its
      gradient, ``minimize_lbfgs``'s ``fun``, with the L1 part as its ``l1`` weights); an SGD round
      runs over one mini-batch and :meth:`round_update` takes its step.
    """

    def _round_loss(self, y: np.ndarray, n_outputs: int) -> str:
        raise NotImplementedError

    def _penalty(self) -> tuple[float, float]:
        return self.reg * (1.0 - self.elastic_net), self.reg * self.elastic_net  # l2, l1

    def _round_partial(self, variables: pa.Table, batch: pa.Table) -> pa.Table:
        stage = type(self).__name__
        W, b, _ = read_linear_model_table([variables], stage)
        K, d = W.shape
        if batch.num_rows == 0:
            return _round_table(0.0, 0.0, np.zeros((K, d)), np.zeros(K))
        X, y, s = read_training_input(batch, stage, self.features_col, self.label_col, self.weight_col, part=True)
        if X.shape[1] != d:
            raise ValueError(f"{stage}: column '{self.features_col}' (parameter 'features_col') holds vectors of size "
                             f"{X.shape[1]}, the round's coefficients have size {d}")
        kind = LOSSES[self._round_loss(y, K)]
        s = np.ones(len(y)) if s is None else s
        if sps.issparse(X):
            X = sps.csr_matrix(X, dtype=np.float64)
            X.sum_duplicates()
        else:
            X = np.ascontiguousarray(X, dtype=np.float64)
        f, G, gb = loss_gradient_sums(X, y, s, W, np.ascontiguousarray(b), kind)
        return _round_table(float(s.sum()), f, G, gb)

    def _round_merge(self, states: list[pa.Table]) -> pa.Table:
        parts = [_read_round(st, type(self).__name__) for st in states]
        if len({p[2].shape for p in parts}) != 1:
            raise ValueError(f"{type(self).__name__}: round states of different shapes "
                             f"{sorted({p[2].shape for p in parts})} cannot be merged")
        f, G, gb = merge_loss_gradient_sums([p[1:] for p in parts])
        return _round_table(float(np.array([p[0] for p in parts]).sum()), f, G, gb)

    def round_objective(self, variables: pa.Table, state: pa.Table) -> tuple[float, np.ndarray]:
        """The smooth objective (weighted mean loss + L2 term) at ``variables`` and its gradient,
        packed as ``[coefficients (row-major), intercepts (with fit_intercept)]``, from a round's
        merged state over the whole input."""
        stage = type(self).__name__
        W, _, _ = read_linear_model_table([variables], stage)
        weight, f, G, gb = _read_round(state, stage)
        if not weight > 0:
            raise ValueError(f"{stage}: the round's weights sum to {weight}; the objective needs a positive weight")
        l2, _ = self._penalty()
        value = f / weight + 0.5 * l2 * float(np.vdot(W, W))
        grad = [(G / weight + l2 * W).reshape(-1)] + ([gb / weight] if self.fit_intercept else [])
        return value, np.concatenate(grad)

    @property
    def drives_rounds(self) -> bool:   # L-BFGS's rounds; SGD's where the estimator makes its model (_model_of)
        solver = getattr(self, "solver", "lbfgs")
        return solver in ("lbfgs", "auto", "normal") or (
            solver == "sgd" and type(self)._model_of is not LinearRounds._model_of)

    def _batch_shape(self, batch: pa.Table) -> pa.Table:
        X, y, s = read_training_input(batch, type(self).__name__, self.features_col, self.label_col, self.weight_col,
                                      part=True)
        s = np.ones(len(y)) if s is None else s
        multinomial = hasattr(self, "multi_class") and (y >= 0).all() and (y == np.floor(y)).all() and y.max() < 1 << 16
        classes = np.bincount(y.astype(np.int64), weights=s) if multinomial else np.zeros(0)   # the null model's prior
        return with_key_of(pa.table({"size": [X.shape[1]], "max_label": [float(y.max())], "rows": [len(y)],
                                     "weight": [float(s.sum())], "weighted_labels": [float(s @ y)],
                                     "class_weights": pa.array([classes], pa.list_(pa.float64()))}), batch)

    def fit_rounds(self, map_batches: Callable[..., list[pa.Table]]) -> Any:
        """L-BFGS (OWL-QN with an L1 part) here, each evaluation one ``map_batches`` of round partials
        merged here; from zero, stopping as ``fit`` does (``max_iter``, ``tol``), so it reaches the
        optimum ``fit`` reaches. With ``solver="sgd"``: ``fit``'s epochs exactly (see
        :meth:`_sgd_rounds`), a ``map_batches`` per mini-batch."""
        stage = type(self).__name__
        parts = map_batches(self._batch_shape, "shape")
        if not parts:
            raise ValueError(f"{stage}: fit needs at least one row; the input table is empty")
        shapes = pa.concat_tables([t.replace_schema_metadata(None) for t in parts])
        sizes = set(shapes.column("size").to_pylist())
        if len(sizes) != 1:
            raise ValueError(f"{stage}: column '{self.features_col}' (parameter 'features_col') holds vectors of "
                             f"sizes {sorted(sizes)}; all vectors in a column must have the same size")
        d, K = sizes.pop(), self.round_outputs(max(shapes.column("max_label").to_pylist()))
        if getattr(self, "solver", None) == "sgd":
            return self._sgd_rounds(map_batches, parts, d, K)
        _, l1 = self._penalty()
        n = K * d + (K if self.fit_intercept else 0)

        def variables_of(theta: np.ndarray) -> pa.Table:
            return linear_model_table(theta[:K * d].reshape(K, d), theta[K * d:] if self.fit_intercept else np.zeros(K))

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            v = variables_of(theta)
            return self.round_objective(v, self.round_merge(map_batches(functools.partial(self.round_partial, v))))

        res = minimize_lbfgs(objective, np.zeros(n), max_iter=self.max_iter, tol=self.tol,
                             l1=np.r_[np.full(K * d, l1), np.zeros(n - K * d)])
        return self.round_model(variables_of(res.x))

    def _sgd_rounds(self, map_batches: Callable[..., list[pa.Table]], shapes: list[pa.Table], d: int, K: int) -> Any:
        """:func:`sgd` as ``fit`` runs it, over batches numbered by their place in the source (see
        :func:`batch_offsets`): the start of ``fit`` (zero coefficients, the null model's
        intercepts from the batches' weighted label sums), the same permutation of the rows per
        epoch from the same seed, and per mini-batch of ``global_batch_size`` rows one
        ``map_batches`` of ``round_partial`` over the batches' rows in it, merged here, then
        ``round_update``; stopping as ``fit`` does (``max_iter`` epochs or the epoch objective
        changing by at most ``tol * max(1, |objective|)``). The same steps up to the rounding of
        the sums, so the same model to far within 1e-4."""
        stage = type(self).__name__
        offsets, n = batch_offsets(shapes, stage)
        total = pa.concat_tables([t.replace_schema_metadata(None) for t in shapes])
        weight = float(np.sum(total.column("weight").to_numpy()))
        if not weight > 0:
            raise ValueError(f"{stage}: the weights in column '{self.weight_col}' (parameter 'weight_col') sum to 0; "
                             f"at least one row needs a positive weight")
        kind = self._round_loss(np.zeros(1), K)
        b = np.zeros(K)
        if self.fit_intercept:   # LinearObjective.initial's null model
            mean = float(np.sum(total.column("weighted_labels").to_numpy())) / weight
            if kind == "squared":
                b[0] = mean
            elif kind == "logistic":
                p = min(max(mean, 1e-8), 1 - 1e-8)
                b[0] = math.log(p / (1 - p))
            elif kind == "multinomial":
                prior = np.zeros(K)
                for c in total.column("class_weights").to_pylist():
                    prior[:min(K, len(c))] += np.asarray(c[:K])
                lp = np.log(np.maximum(prior / weight, 1e-8))
                b = lp - lp.mean()
        variables = linear_model_table(np.zeros((K, d)), b)
        seed = self.seed if self.seed is not None else zlib.crc32(stage.encode())
        rng = np.random.default_rng(seed)
        batch = int(min(max(1, self.global_batch_size), max(1, n)))
        l2, l1 = self._penalty()
        prev = None
        for epoch in range(1, int(self.max_iter) + 1):
            perm = rng.permutation(n).astype(np.int64)
            loss = wsum = 0.0
            for start in range(0, n, batch):
                rows = np.sort(perm[start:start + batch])
                parts = map_batches(functools.partial(_mini_batch_partial, self, variables, offsets, rows), "sgd")
                state = self.round_merge(sorted(parts, key=lambda t: offsets[batch_key(t)]))   # merged in input order
                w, f, _, _ = _read_round(state, stage)
                loss, wsum = loss + f, wsum + w
                variables = self.round_update(variables, state)
            W, b, _ = read_linear_model_table([variables], stage)
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError(f"{stage}: SGD diverged at epoch {epoch} (non-finite coefficients); lower "
                                 f"learning_rate (now {self.learning_rate}) or standardize the features")
            cur = loss / wsum + 0.5 * l2 * float(np.vdot(W, W)) + l1 * float(np.abs(W).sum())
            if _objective_converged(prev, cur, self.tol):
                break
            prev = cur
        return self.round_model(variables)

    def round_outputs(self, max_label: float) -> int:
        """Rows of the coefficients for labels up to ``max_label`` (1: one output)."""
        return 1

    def round_model(self, variables: pa.Table) -> Any:
        """The model ``fit`` returns, at the driver's final variables."""
        W, b, _ = read_linear_model_table([variables], type(self).__name__)
        return self._model_of(W, b)

    def _model_of(self, W: np.ndarray, b: np.ndarray) -> Any:  # pragma: no cover - each estimator defines it
        raise NotImplementedError

    def round_update(self, variables: pa.Table, state: pa.Table) -> pa.Table:
        """The SGD step of a mini-batch round: ``W -= learning_rate * G / weight`` (and the
        intercepts, with fit_intercept), then the penalty's proximal step; the new variables."""
        stage = type(self).__name__
        W, b, version = read_linear_model_table([variables], stage)
        weight, _, G, gb = _read_round(state, stage)
        if weight > 0:
            lr = float(self.learning_rate)
            l2, l1 = self._penalty()
            W, b = W.copy(), b.astype(np.float64, copy=True)
            _sgd_step(W, b, G, gb, lr / weight, self.fit_intercept)
            _prox(W, lr, l2, l1)
        return linear_model_table(W, b, version)


def _mini_batch_partial(est: LinearRounds, variables: pa.Table, offsets: dict, rows: np.ndarray,
                        batch: pa.Table) -> pa.Table:
    """``round_partial`` over the rows of ``batch`` whose index in the input is in ``rows`` (sorted)."""
    lo = offsets[batch_key(batch)]
    mine = rows[np.searchsorted(rows, lo):np.searchsorted(rows, lo + batch.num_rows)] - lo
    return with_key_of(est.round_partial(variables, batch.take(pa.array(mine, pa.int64()))), batch)


# Schema metadata of a batch of a fit driven in rounds (``IterativeEstimator.fit_rounds``): its
# place in its source, ``"<split>.<batch>"`` (the Flink engine's sources set it:
# flowlearn.engines.flink_functions.BATCH_KEY). An engine returns a job's results in any order;
# a driver that needs the rows' order (KMeans's initial rows, SGD's mini-batches) orders by it.
BATCH_KEY = b"flowlearn.batch"


def batch_key(t: pa.Table) -> tuple[int, int] | None:
    """The place in its source of the batch ``t`` (or of the result computed from it), if labelled."""
    key = (t.schema.metadata or {}).get(BATCH_KEY)
    return None if key is None else tuple(int(v) for v in key.decode().split("."))


def with_key_of(out: pa.Table, batch: pa.Table) -> pa.Table:
    """``out`` labelled with the key of the ``batch`` it was computed from."""
    key = (batch.schema.metadata or {}).get(BATCH_KEY)
    return out if key is None else out.replace_schema_metadata({BATCH_KEY: key})


def batch_offsets(shapes: list[pa.Table], stage: str) -> tuple[dict[tuple[int, int] | None, int], int]:
    """``({key: index of the batch's first row in the input}, rows)`` from one result per batch
    (labelled by :func:`with_key_of`, a ``rows`` column); a single batch needs no label."""
    keys = [batch_key(t) for t in shapes]
    if len(shapes) > 1 and (None in keys or len(set(keys)) != len(keys)):
        raise ValueError(f"{stage}: fit_rounds over several batches needs each batch numbered by its place in the "
                         f"source (schema metadata {BATCH_KEY.decode()!r}, distinct), got {keys}; this fit depends "
                         f"on the rows' order (fit with the local engine)")
    order = sorted(range(len(shapes)), key=lambda i: keys[i] or (0, 0))
    rows = np.array([shapes[i].column("rows")[0].as_py() for i in order], dtype=np.int64)
    return dict(zip([keys[i] for i in order], np.r_[0, np.cumsum(rows)[:-1]].tolist())), int(rows.sum())


def _round_table(weight: float, loss: float, G: np.ndarray, gb: np.ndarray) -> pa.Table:
    K, d = G.shape
    vec = lambda v: pa.ListArray.from_arrays(pa.array([0, len(v)], pa.int32()), pa.array(v, pa.float64()))  # noqa
    return pa.table({"weight": [float(weight)], "loss": [float(loss)], "coefficient_gradient": vec(G.reshape(-1)),
                     "intercept_gradient": vec(gb), "outputs": pa.array([K], pa.int32())})


def _read_round(state: pa.Table, stage: str) -> tuple[float, float, np.ndarray, np.ndarray]:
    """``(weight, loss, G (K, d), gb (K,))`` of a one-row round state."""
    names = ["weight", "loss", "coefficient_gradient", "intercept_gradient", "outputs"]
    if state.column_names != names or state.num_rows != 1:
        raise ValueError(f"{stage}: a round state is one row with columns {names}, got {state.num_rows} rows with "
                         f"{state.column_names}; merge states made by round_partial")
    K = state.column("outputs")[0].as_py()
    G = np.asarray(state.column("coefficient_gradient")[0].values.to_numpy(), dtype=np.float64).reshape(K, -1)
    gb = np.asarray(state.column("intercept_gradient")[0].values.to_numpy(), dtype=np.float64)
    return state.column("weight")[0].as_py(), state.column("loss")[0].as_py(), G, gb


def linear_model_table(W: np.ndarray, b: np.ndarray, model_version: int = 0) -> pa.Table:
    """The model data table of a linear model: one row per output (class), columns
    ``coefficient`` (``fixed_size_list<double>[d]``), ``intercept`` (double), ``model_version`` (int64)."""
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if b.shape[0] != W.shape[0]:
        raise ValueError(f"linear_model_table: {W.shape[0]} coefficient rows but {b.shape[0]} intercepts")
    return pa.table({
        "coefficient": from_numpy(W),
        "intercept": pa.array(b, pa.float64()),
        "model_version": pa.array(np.full(W.shape[0], int(model_version), dtype=np.int64), pa.int64()),
    })


def read_linear_model_table(tables: list[pa.Table], stage: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(W (k, d), b (k,), model_version)`` from linear-model data (see :func:`linear_model_table`)."""
    if len(tables) != 1:
        raise ValueError(f"{stage}: model data must be one table (coefficient, intercept, model_version), "
                         f"got {len(tables)} tables")
    (t,) = tables
    for c in ("coefficient", "intercept"):
        if c not in t.column_names:
            raise ValueError(f"{stage}: model data has no '{c}' column; it has {t.column_names}. Expected columns "
                             f"coefficient (vector), intercept (double), model_version (int64)")
    if t.num_rows == 0:
        raise ValueError(f"{stage}: model data table has no rows; it needs one row per class (one for binary)")
    W = vector_column(t, "coefficient", f"{stage} model data")
    if sps.issparse(W):
        W = W.toarray()
    W = np.ascontiguousarray(W, dtype=np.float64)
    ic = t.column("intercept").combine_chunks()
    if ic.type == pa.float64() and ic.null_count == 0:   # the usual case, read without a pyarrow conversion
        b = np.array(_numbers(ic))
        check_finite(b, "intercept", f"{stage} model data")
    else:
        b = np.ascontiguousarray(numeric_column(t, "intercept", f"{stage} model data"))
    version = 0
    if "model_version" in t.column_names and t.num_rows:
        v = t.column("model_version")[0].as_py()
        version = int(v) if v is not None else 0
    return W, b, version


class LinearModelResults:
    """Mix-in of the linear models (``LogisticRegressionModel``, ``LinearSVCModel``,
    ``LinearRegressionModel``, ``OnlineLogisticRegressionModel``): their weights as NumPy.

    ``coefficients`` is a copy of the coefficients, 1-D ``(d,)`` for a model with one output (binary
    logistic regression: the coefficients of class 1) and 2-D ``(k, d)`` for a multinomial one;
    ``intercept`` is a float, or ``(k,)`` for a multinomial model.

    Example:
        >>> from flowlearn.regression.linear_regression import LinearRegressionModel
        >>> m = LinearRegressionModel().set_model_data({"coefficient": [[2.0, -1.0]], "intercept": [0.5]})
        >>> m.coefficients, m.intercept
        (array([ 2., -1.]), 0.5)
    """

    def _linear_weights(self) -> tuple[np.ndarray, np.ndarray]:
        W, b, _ = read_linear_model_table(self.get_model_data(), type(self).__name__)
        return W, b

    @property
    def coefficients(self) -> np.ndarray:
        W, _ = self._linear_weights()
        return W[0].copy() if W.shape[0] == 1 else W.copy()

    @property
    def intercept(self) -> float | np.ndarray:
        _, b = self._linear_weights()
        return float(b[0]) if b.shape[0] == 1 else b.copy()


def read_single_output_model(tables: list[pa.Table], stage: str) -> tuple[np.ndarray, float, int]:
    """``(w (d,), b, model_version)`` of linear-model data with one output (one row)."""
    W, b, version = read_linear_model_table(tables, stage)
    if W.shape[0] != 1:
        raise ValueError(f"{stage}: model data must have exactly one row, got {W.shape[0]}")
    return W[0].copy(), float(b[0]), version


def row_vector_fn(stage: str, features_col: str, d: int) -> Callable[[dict], np.ndarray | SparseVector]:
    """Single-row reader of a linear model's features: ``read(row)`` is ``row[features_col]`` as a
    float64 array of shape ``(d,)`` (from an array or a list) or a ``SparseVector`` of size ``d``,
    with errors naming the stage, column and rule."""
    fc, ndarray, sparse_vector, asarray = features_col, np.ndarray, SparseVector, np.asarray

    def read(row: dict) -> np.ndarray | SparseVector:
        try:
            x = row[fc]
        except KeyError:
            raise ValueError(f"{stage}: input column '{fc}' (parameter 'features_col') is missing from the row; "
                             f"it has {sorted(row)}") from None
        if isinstance(x, sparse_vector):
            if x.size != d:
                raise ValueError(f"{stage}: column '{fc}' holds a vector of size {x.size}, the model expects size {d}")
            return x
        if not (type(x) is ndarray and x.dtype == np.float64):
            x = asarray(x, dtype=np.float64)
        if x.shape != (d,):
            raise ValueError(f"{stage}: column '{fc}' holds a vector of shape {x.shape}, the model expects size {d}")
        return x

    return read


def row_features_error(stage: str, features_col: str, x: np.ndarray | SparseVector) -> ValueError | None:
    """The error for a row whose vector ``x`` holds NaN or infinity, else None."""
    if np.isfinite(x.values if isinstance(x, SparseVector) else x).all():
        return None
    return ValueError(f"{stage}: column '{features_col}' has NaN or infinity; impute or filter such rows first "
                      f"(for example with fl.feature.Imputer)")


def row_margin_fn(stage: str, features_col: str, w: np.ndarray, b: float) -> Callable[[dict], float]:
    """Single-row kernel of a linear model: ``margin(row) = w . row[features_col] + b`` for a dense
    vector (array or list) or a ``SparseVector`` (read by :func:`row_vector_fn`). NaN or infinity
    in the row is an error; a margin that overflows from finite values is returned (inf), for the
    caller to refuse or keep."""
    w = np.array(w, dtype=np.float64)
    d, fc, b = w.shape[0], features_col, float(b)
    read = row_vector_fn(stage, fc, d)
    take, wdot = w.take, w.dot  # take + dot: half the cost of fancy indexing + matmul on small vectors
    sparse_vector, ndarray, f64, shape, isfinite = SparseVector, np.ndarray, np.dtype(np.float64), (d,), math.isfinite

    def margin(row: dict) -> float:
        x = row.get(fc)
        tx = type(x)
        if tx is sparse_vector and x.size == d:  # the common inputs, without the read() call
            z = b + float(take(x.indices).dot(x.values))
        elif tx is ndarray and x.dtype is f64 and x.shape == shape:
            z = b + float(wdot(x))
        else:
            x = read(row)  # converts, checks, raises
            z = b + float(take(x.indices).dot(x.values) if isinstance(x, sparse_vector) else wdot(x))
        if not isfinite(z):
            err = row_features_error(stage, fc, x)
            if err is not None:
                raise err
        return z

    return margin
