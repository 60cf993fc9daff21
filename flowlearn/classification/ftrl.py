"""Online logistic regression trained with FTRL-Proximal (Flink ML's ``OnlineLogisticRegression``).

The optimizer is the per-coordinate FTRL-Proximal of McMahan et al., "Ad click prediction: a
view from the trenches" (KDD 2013), Algorithm 1, with Flink ML's mini-batch rule on top:

* with ``global_batch_size=1`` every row is predicted with the current weights and then
  updates exactly the coordinates it carries, in order: the sequential algorithm of the paper;
* with ``global_batch_size=B > 1`` the rows of a mini-batch of ``B`` consecutive rows are all
  predicted with the weights from before the batch, their gradients ``(p - y) * x_i`` are
  summed per coordinate and divided by the number of rows of the batch that *carry* the
  coordinate (Flink ML: for a dense vector every row carries every coordinate, so this is the
  batch mean; for a sparse vector only the rows storing the index count), and each touched
  coordinate then takes one FTRL-Proximal step with that averaged gradient.

Per coordinate ``i`` with gradient ``g`` (``l1 = reg * elastic_net``, ``l2 = reg * (1 - elastic_net)``;
:func:`flowlearn.optim.ftrl_step`, the step ``OnlineLearning(optim_method="ftrl")`` takes too)::

    sigma = (sqrt(n_i + g^2) - sqrt(n_i)) / alpha
    z_i  += g - sigma * w_i
    n_i  += g^2
    w_i   = 0                                                   if |z_i| <= l1
          = -(z_i - sign(z_i) * l1) / ((beta + sqrt(n_i)) / alpha + l2)   otherwise

Choices where Flink ML is silent or differs (all documented on the classes):

* **Intercept.** Flink ML's model has no intercept. flowlearn's logistic regression model data
  has one, so ``fit_intercept=True`` (default) learns it as the usual FTRL bias: an implicit
  feature that is always 1, updated and regularized like every other coordinate.
  ``fit_intercept=False`` reproduces Flink ML exactly and keeps the intercept at its initial
  value (0 unless the initial model has one).
* **Warm start.** The state starts at ``n = 0`` and ``z = -w0 * (beta / alpha + l2) - sign(w0) * l1``,
  the unique state whose weights are the initial model ``w0``; with ``l1 = l2 = 0`` the updates are
  then exactly per-coordinate adaptive gradient steps ``w -= alpha * g / (beta + sqrt(n))`` from
  ``w0``. (Flink ML starts from ``z = 0``, which shrinks the initial model at the first update.)
* **Weights.** ``weight_col`` is an importance weight: a row's gradient is multiplied by its weight
  (as River and Vowpal Wabbit do); the per-coordinate average still divides by the row count.
  With unit weights this equals Flink ML.
* **End of a bounded input.** A last, incomplete mini-batch is applied as a smaller batch and a
  final model version is emitted.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
    >>> t = fl.table({"features": [[1.0, 0.0], [0.0, 1.0]] * 50, "label": [1.0, 0.0] * 50})
    >>> model = OnlineLogisticRegression(global_batch_size=1, alpha=0.5).fit(t)
    >>> model.transform(t).column("prediction").to_pylist()[:2]
    [1.0, 0.0]
    >>> model.get_model_data()[0].column("model_version").to_pylist()
    [1]
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable

import numba
import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import Model, with_trained_rows
from flowlearn.trainer import OperatorState, Trainer
from flowlearn.data.columns import check_squares, numeric_column, vector_column, with_column
from flowlearn.data.table import table as to_table
from flowlearn.iteration.online import (HasInitialModelData, OnlineEstimator, initial_model_data,
                                        iter_input_tables, step_rows, train_versions, version_period)
from flowlearn.classification.logistic_regression import predict_row_fn, predict_table
from flowlearn.optim import (LOSSES, LinearModelResults, ftrl_initial_z, ftrl_step, linear_model_table, loss_gradient,
                             read_single_output_model, sigmoid)
from flowlearn.params import (
    HasElasticNet,
    HasFeaturesCol,
    HasEmitEverySeconds,
    HasGlobalBatchSize,
    HasLabelCol,
    HasPredictionCol,
    HasRawPredictionCol,
    HasReg,
    HasWeightCol,
    Param,
    gt,
)

__all__ = ["OnlineLogisticRegression", "OnlineLogisticRegressionModel", "OnlineLogisticRegressionTrainer"]

_log = logging.getLogger(__name__)

STATE_FORMAT = "flowlearn.ftrl_state"
STATE_FORMAT_VERSION = 2  # 2: an OperatorState (counters in its data) instead of schema metadata

# Columns of the per-coordinate state matrix S (one row per coordinate, the intercept last):
# weight, FTRL z, FTRL n, sqrt(n) (cached), and the open mini-batch's gradient sum and row count.
# One 64-byte row per coordinate puts everything a coordinate needs in one cache line.
_W, _Z, _N, _SQN, _G, _C = 0, 1, 2, 3, 4, 5
_STATE_COLS = 8
_LOGISTIC = LOSSES["logistic"]
# Rows ahead whose coordinates the sparse kernel prefetches (hashed features hit random lines).
_PREFETCH_ROWS = 16


@numba.njit(inline="always")
def _no_prefetch(S, i):
    pass


def _make_prefetch():
    """``prefetch(S, i)``: a software prefetch of row ``i`` of the 2-D array ``S`` (LLVM's
    ``llvm.prefetch``), or ``None`` when this numba/llvmlite cannot build it."""
    try:
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on the numba build
        return None

    @intrinsic
    def prefetch(typingctx, arr, i):
        if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(i, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            aryty = sig.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            row = context.cast(builder, args[1], sig.args[1], types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [row, context.get_constant(types.intp, 0)])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            # typed-pointer IR (llvmlite emits i8*; newer LLVMs upgrade the name) or opaque pointers
            name = "llvm.prefetch.p0" if getattr(i8p, "is_opaque", False) else "llvm.prefetch.p0i8"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                name)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])  # read, keep in all cache levels
            return context.get_dummy_value()

        return types.void(arr, i), codegen

    return prefetch


# Resolved by numba when _ftrl_sparse is first compiled; _ensure_prefetch() swaps in the no-op
# before that if the intrinsic does not compile here.
_prefetch = _make_prefetch() or _no_prefetch
_prefetch_checked = False


def _ensure_prefetch() -> None:
    global _prefetch, _prefetch_checked
    if _prefetch_checked:
        return
    _prefetch_checked = True
    if _prefetch is _no_prefetch:
        return
    pf = _prefetch

    @numba.njit
    def probe(S):
        pf(S, 0)

    try:
        probe(np.zeros((1, 1)))
    except Exception as e:  # pragma: no cover - depends on the numba build
        _log.debug("software prefetch unavailable (%s); the FTRL kernel runs without it", e)
        _prefetch = _no_prefetch


# --------------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _coord_step(S, i, g, inv_alpha, beta, l1, l2):
    """The FTRL-Proximal step (:func:`flowlearn.optim.ftrl_step`) of coordinate ``i`` with gradient ``g``."""
    S[i, _W], S[i, _Z], S[i, _N], S[i, _SQN] = ftrl_step(S[i, _W], S[i, _Z], S[i, _N], S[i, _SQN], g, inv_alpha,
                                                         beta, l1, l2)


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate(S, i, g, touched, nt):
    """Add gradient ``g`` of one row to coordinate ``i`` of the open mini-batch; returns the new
    number of touched coordinates (branch-free: ``i`` is always written, kept only if new)."""
    touched[nt] = i
    nt += S[i, _C] == 0.0
    S[i, _G] += g
    S[i, _C] += 1.0
    return nt


@numba.njit(cache=True, nogil=True)
def _apply_minibatch(S, touched, nt, alpha, beta, l1, l2):
    """Average the accumulated gradients per coordinate and take one step on each touched one."""
    inv_alpha = 1.0 / alpha
    for k in range(nt):
        i = touched[k]
        _coord_step(S, i, S[i, _G] / S[i, _C], inv_alpha, beta, l1, l2)
        S[i, _G] = 0.0
        S[i, _C] = 0.0


@numba.njit(cache=True, nogil=True)
def _ftrl_sparse(indptr, indices, data, y, sw, r0, r1, S, touched, acc, learn_bias,
                 alpha, beta, l1, l2, batch, out_p):
    """Predict-then-learn rows ``r0:r1`` of a CSR matrix; ``out_p[r]`` gets the prediction made
    before row ``r`` was learned. ``acc = [rows in the open mini-batch, touched coordinates]``."""
    bias = S.shape[0] - 1
    inv_alpha = 1.0 / alpha
    pos = acc[0]
    nt = acc[1]
    for r in range(r0, r1):
        ahead = r + _PREFETCH_ROWS
        if ahead < r1:
            for k in range(indptr[ahead], indptr[ahead + 1]):
                _prefetch(S, indices[k])
        lo = indptr[r]
        hi = indptr[r + 1]
        m = 0.0
        for k in range(lo, hi):
            m += S[indices[k], _W] * data[k]
        m += S[bias, _W]  # last: the bias, updated by every row, is then off the loads' critical path
        out_p[r] = sigmoid(m)
        gl = sw[r] * loss_gradient(m, y[r], _LOGISTIC, False)[1]  # sigmoid(m) - y; the two sigmoids compile to one
        if batch == 1:
            for k in range(lo, hi):
                _coord_step(S, indices[k], gl * data[k], inv_alpha, beta, l1, l2)
            if learn_bias:
                _coord_step(S, bias, gl, inv_alpha, beta, l1, l2)
        else:
            for k in range(lo, hi):
                nt = _accumulate(S, indices[k], gl * data[k], touched, nt)
            if learn_bias:
                nt = _accumulate(S, bias, gl, touched, nt)
            pos += 1
            if pos == batch:
                _apply_minibatch(S, touched, nt, alpha, beta, l1, l2)
                pos = 0
                nt = 0
    acc[0] = pos
    acc[1] = nt


@numba.njit(cache=True, nogil=True)
def _ftrl_dense(X, y, sw, r0, r1, S, touched, acc, learn_bias, alpha, beta, l1, l2, batch, out_p):
    """Dense twin of :func:`_ftrl_sparse`: every row carries every coordinate."""
    d = X.shape[1]
    bias = S.shape[0] - 1
    inv_alpha = 1.0 / alpha
    pos = acc[0]
    nt = acc[1]
    for r in range(r0, r1):
        m = 0.0
        for j in range(d):
            m += S[j, _W] * X[r, j]
        m += S[bias, _W]
        out_p[r] = sigmoid(m)
        gl = sw[r] * loss_gradient(m, y[r], _LOGISTIC, False)[1]  # sigmoid(m) - y; the two sigmoids compile to one
        if batch == 1:
            for j in range(d):
                _coord_step(S, j, gl * X[r, j], inv_alpha, beta, l1, l2)
            if learn_bias:
                _coord_step(S, bias, gl, inv_alpha, beta, l1, l2)
        else:
            for j in range(d):
                nt = _accumulate(S, j, gl * X[r, j], touched, nt)
            if learn_bias:
                nt = _accumulate(S, bias, gl, touched, nt)
            pos += 1
            if pos == batch:
                _apply_minibatch(S, touched, nt, alpha, beta, l1, l2)
                pos = 0
                nt = 0
    acc[0] = pos
    acc[1] = nt


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------


class _OnlineLogisticRegressionModelParams(HasFeaturesCol, HasPredictionCol, HasRawPredictionCol):
    model_version_col = Param(str, default="model_version",
                              doc="Output column with the version of the model data that made each prediction.")


class _OnlineLogisticRegressionParams(_OnlineLogisticRegressionModelParams, HasLabelCol, HasWeightCol,
                                      HasGlobalBatchSize, HasReg, HasElasticNet, HasEmitEverySeconds):
    alpha = Param(float, default=0.1, validator=gt(0.0), doc="The alpha parameter of FTRL (learning-rate scale).")
    beta = Param(float, default=0.1, validator=gt(0.0), doc="The beta parameter of FTRL (learning-rate smoothing).")
    emit_every = Param(int, default=None, validator=gt(0),
                       doc="Emit a new model version after every this many rows (at the next mini-batch "
                           "boundary); None emits one version when a bounded input ends.")
    fit_intercept = Param(bool, default=True,
                          doc="Learn an intercept as an always-1 bias feature (regularized like the others); "
                              "False keeps it at its initial value, as Flink ML (which has no intercept).")


_STAGE = "OnlineLogisticRegression"


# --------------------------------------------------------------------------------------------
# Trainer: the incremental state machine the stream engine drives batch by batch
# --------------------------------------------------------------------------------------------


class OnlineLogisticRegressionTrainer(Trainer):
    """Incremental FTRL-Proximal training state for :class:`OnlineLogisticRegression`.

    Made by ``OnlineLogisticRegression.trainer()``. Feed it record batches of any size in order;
    mini-batches of ``global_batch_size`` rows run across batch boundaries exactly as on one
    long stream. Its methods:

    * ``partial_fit(batch) -> list[pa.Table]``: learn from the rows and return the model versions
      emitted meanwhile (one every ``emit_every`` rows, at the next mini-batch boundary, and one at
      the end of the call when ``emit_every_seconds`` passed since the last version);
    * ``poll(now=None)``: the version due by ``emit_every_seconds`` (for engine timers);
    * ``predict_and_partial_fit(batch) -> (probabilities, versions)``: the same, also returning the
      probability of class 1 each row got *before* the model learned from it (progressive validation);
    * ``emit()``: a version of the current weights now (for time-based emission), ``None`` if no row
      was learned since the last one; ``finish()``: apply a last incomplete mini-batch and emit
      the final version (a bounded input's end);
    * ``model_data()``: the current weights as model data; ``version``, ``rows_seen``;
    * ``snapshot_state() -> OperatorState`` / ``restore_state(state)``: the complete state (weights,
      FTRL ``z`` and ``n``, the open mini-batch, counters), for checkpoints (the
      :class:`~flowlearn.trainer.Trainer` protocol). A restored trainer continues exactly as the
      original would have.

    Model versions are numbered from the initial model's ``model_version`` + 1 (1 without one).

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
        >>> tr = OnlineLogisticRegression(global_batch_size=2, emit_every=4).trainer()
        >>> t = fl.table({"features": [[1.0], [-1.0]] * 5, "label": [1.0, 0.0] * 5})
        >>> [v.column("model_version")[0].as_py() for v in tr.partial_fit(t)]
        [1, 2]
        >>> [v.column("model_version")[0].as_py() for v in tr.finish()]
        [3]
    """

    stage = _STAGE
    state_format = STATE_FORMAT
    state_format_version = STATE_FORMAT_VERSION
    state_tables = ("state", "open_batch")
    predicts = True

    def __init__(self, estimator: "OnlineLogisticRegression", clock: Callable[[], float] | None = None) -> None:
        p = estimator.get_params()
        super().__init__(p["emit_every_seconds"], clock)
        self._features_col = p["features_col"]
        self._label_col = p["label_col"]
        self._weight_col = p["weight_col"]
        self._alpha = float(p["alpha"])
        self._beta = float(p["beta"])
        reg, en = float(p["reg"]), float(p["elastic_net"])
        self._l1 = reg * en
        self._l2 = reg * (1.0 - en)
        self._batch = int(p["global_batch_size"])
        self._emit_every = p["emit_every"]
        self._learn_bias = bool(p["fit_intercept"])
        self._dim: int | None = None
        self._S: np.ndarray | None = None
        self._acc = np.zeros(2, dtype=np.int64)
        init = estimator.get_initial_model_data()
        if init is not None:
            coef, intercept, version = read_single_output_model([init], _STAGE)
            self.version = version
            self._allocate(len(coef), coef, intercept)

    # -- state ---------------------------------------------------------------------------

    def _allocate(self, d: int, coef: np.ndarray | None = None, intercept: float = 0.0) -> None:
        S = np.zeros((d + 1, _STATE_COLS), dtype=np.float64)
        if coef is not None:
            S[:d, _W] = coef
            S[d, _W] = intercept
            w = S[:, _W]
            # The state whose weights are exactly w0 (see the module docstring, "Warm start").
            S[:, _Z] = ftrl_initial_z(w, self._alpha, self._beta, self._l1, self._l2)
            if not self._learn_bias:
                S[d, _Z] = 0.0
        self._S = S
        self._dim = d
        self._touched = np.zeros(d + 2, dtype=np.int64)  # +1: _accumulate writes one slot past the end

    @property
    def dim(self) -> int | None:
        """Number of features (``None`` until the first row or an initial model fixes it)."""
        return self._dim

    @property
    def coefficient(self) -> np.ndarray:
        """A copy of the current coefficients."""
        self._require_dim()
        return self._S[:-1, _W].copy()

    @property
    def intercept(self) -> float:
        self._require_dim()
        return float(self._S[-1, _W])

    def _require_dim(self) -> None:
        if self._S is None:
            raise ValueError(f"{_STAGE}: no model yet; the trainer has seen no rows and has no initial model data")

    def model_data(self) -> pa.Table:
        """The current weights as model data (``coefficient``, ``intercept``, ``model_version``),
        labelled with the last emitted version."""
        self._require_dim()
        # copies: Arrow may wrap a NumPy buffer without copying, and S keeps changing
        return with_trained_rows(linear_model_table(self._S[None, :-1, _W].copy(), self._S[-1:, _W].copy(),
                                                    self.version), self.rows_seen - int(self._acc[0]))

    # -- input ---------------------------------------------------------------------------

    def _extract(self, t: pa.Table) -> tuple[Any, np.ndarray, np.ndarray]:
        x = vector_column(t, self._features_col, _STAGE, param="features_col", size=self._dim)
        check_squares(x, self._features_col, _STAGE, "features_col", "squared gradients")
        y = numeric_column(t, self._label_col, _STAGE, param="label_col")
        bad = (y != 0.0) & (y != 1.0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{_STAGE}: column '{self._label_col}' (parameter 'label_col') has value {float(y[row])!r} at "
                             f"row {row}; labels must be 0 or 1")
        if self._weight_col is None:
            w = np.ones(len(y))
        else:
            w = numeric_column(t, self._weight_col, _STAGE, param="weight_col")
            neg = w < 0
            if neg.any():
                row = int(np.flatnonzero(neg)[0])
                raise ValueError(f"{_STAGE}: column '{self._weight_col}' (parameter 'weight_col') has weight "
                                 f"{float(w[row])!r} at row {row}; weights must be >= 0")
        return x, np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64)

    # -- training ------------------------------------------------------------------------

    def _next_stop(self, start: int, n: int) -> tuple[int, bool]:
        """End of the next kernel run within a chunk of ``n`` rows and whether a version is due there."""
        if self._emit_every is None:
            return n, False
        b = self._batch
        pos = int(self._acc[0])
        first = self.rows_seen + (b - pos)  # the next mini-batch boundary (in rows seen)
        need = self._last_emit_rows + self._emit_every
        target = first if need <= first else first + -(-(need - first) // b) * b
        stop = start + (target - self.rows_seen)
        return (stop, True) if stop <= n else (n, False)

    def _run(self, t: pa.Table, out_p: np.ndarray | None) -> tuple[np.ndarray, list[pa.Table]]:
        if t.num_rows == 0:  # an empty batch changes nothing (and may come without columns)
            return np.empty(0), []
        x, y, sw = self._extract(t)
        n = len(y)
        if out_p is None:
            out_p = np.empty(n)
        versions: list[pa.Table] = []
        if n == 0:
            return out_p, versions
        if self._S is None:
            self._allocate(x.shape[1])
        sparse = sps.issparse(x)
        if sparse:
            _ensure_prefetch()
            indptr, indices, data = x.indptr, x.indices, x.data
            if indptr.dtype != np.int64:
                indptr = indptr.astype(np.int64)
            if indices.dtype != np.int32:
                indices = indices.astype(np.int32) if x.shape[1] < 2**31 else indices.astype(np.int64)
            data = np.ascontiguousarray(data, dtype=np.float64)
        else:
            x = np.ascontiguousarray(x, dtype=np.float64)
        args = (self._S, self._touched, self._acc, self._learn_bias,
                self._alpha, self._beta, self._l1, self._l2, self._batch, out_p)
        start = 0
        while start < n:
            stop, due = self._next_stop(start, n)
            if sparse:
                _ftrl_sparse(indptr, indices, data, y, sw, start, stop, *args)
            else:
                _ftrl_dense(x, y, sw, start, stop, *args)
            self.rows_seen += stop - start
            if due:
                versions.append(self._emit())
            start = stop
        versions += self._versions_due()
        return out_p, versions

    def _has_model(self) -> bool:
        return self._S is not None

    def _rows_in_model(self) -> int:
        return self.rows_seen - int(self._acc[0])   # rows of the open mini-batch are not in the weights

    def _current_version(self) -> pa.Table:
        return self.model_data()

    def partial_fit(self, batch: Any) -> list[pa.Table]:
        """Learn from the rows of ``batch`` (a table, record batch or anything ``fl.table`` accepts);
        return the model versions emitted meanwhile (a list of one-row model data tables)."""
        _, versions = self._run(self._table(batch), None)
        return versions

    def predict_and_partial_fit(self, batch: Any) -> tuple[np.ndarray, list[pa.Table]]:
        """Like :meth:`partial_fit`, also returning each row's probability of class 1 predicted
        before the model learned from that row (from its mini-batch's starting weights)."""
        return self._run(self._table(batch), None)

    @staticmethod
    def _table(batch: Any) -> pa.Table:
        if isinstance(batch, pa.Table):
            return batch
        if isinstance(batch, pa.RecordBatch):
            return pa.Table.from_batches([batch])
        return to_table(batch)

    def _apply_open(self) -> None:
        if self._acc[0] > 0:
            _apply_minibatch(self._S, self._touched, int(self._acc[1]), self._alpha, self._beta, self._l1, self._l2)
            self._acc[:] = 0

    # -- checkpoints ---------------------------------------------------------------------

    def _state(self) -> OperatorState:
        """Tables ``state`` (one row per coordinate, the intercept last: ``w``, ``z``, ``n``) and
        ``open_batch`` (the open mini-batch's accumulated gradient per touched coordinate)."""
        data = {"dim": self._dim, "open_batch_rows": int(self._acc[0]), "global_batch_size": self._batch,
                "fit_intercept": self._learn_bias, "alpha": self._alpha, "beta": self._beta, "l1": self._l1,
                "l2": self._l2}
        if self._S is None:
            state = pa.table({"w": pa.array([], pa.float64()), "z": pa.array([], pa.float64()),
                              "n": pa.array([], pa.float64())})
            open_batch = pa.table({"index": pa.array([], pa.int64()), "gradient_sum": pa.array([], pa.float64()),
                                   "count": pa.array([], pa.float64())})
        else:
            state = pa.table({"w": self._S[:, _W].copy(), "z": self._S[:, _Z].copy(), "n": self._S[:, _N].copy()})
            idx = self._touched[: int(self._acc[1])].copy()
            open_batch = pa.table({"index": idx, "gradient_sum": self._S[idx, _G], "count": self._S[idx, _C]})
        return OperatorState(data, {"state": state, "open_batch": open_batch})

    def _restore(self, st: OperatorState) -> None:
        meta = st.data
        state, open_batch = st.tables["state"], st.tables["open_batch"]
        if meta["open_batch_rows"] and meta["global_batch_size"] != self._batch:
            raise ValueError(f"{_STAGE}: the state has an open mini-batch of global_batch_size="
                             f"{meta['global_batch_size']}; restore it into a trainer with the same size "
                             f"(this one has {self._batch})")
        if meta["fit_intercept"] != self._learn_bias:
            raise ValueError(f"{_STAGE}: the state was written with fit_intercept={meta['fit_intercept']}, "
                             f"this trainer has fit_intercept={self._learn_bias}")
        d = meta["dim"]
        if d is None:
            self._S, self._dim = None, None
        else:
            if state.num_rows != d + 1:
                raise ValueError(f"{_STAGE}: state table has {state.num_rows} rows, expected dim + 1 = {d + 1}")
            self._allocate(int(d))
            S = self._S
            S[:, _W] = state.column("w").to_numpy()
            S[:, _Z] = state.column("z").to_numpy()
            S[:, _N] = state.column("n").to_numpy()
            S[:, _SQN] = np.sqrt(S[:, _N])
            idx = open_batch.column("index").to_numpy().astype(np.int64)
            self._touched[: len(idx)] = idx
            S[idx, _G] = open_batch.column("gradient_sum").to_numpy()
            S[idx, _C] = open_batch.column("count").to_numpy()
        self._acc[:] = [int(meta["open_batch_rows"]), 0 if d is None else open_batch.num_rows]


# --------------------------------------------------------------------------------------------
# Estimator and model
# --------------------------------------------------------------------------------------------


class OnlineLogisticRegression(_OnlineLogisticRegressionParams, HasInitialModelData, OnlineEstimator):
    """Binary logistic regression trained online with FTRL-Proximal, as Flink ML's OnlineLogisticRegression.

    Parameters (Flink ML names in snake_case): ``features_col`` (dense or sparse vectors),
    ``label_col`` (0/1), ``weight_col`` (importance weights, optional), ``alpha`` (0.1), ``beta``
    (0.1), ``reg`` (0.0) and ``elastic_net`` (0.0) giving ``l1 = reg * elastic_net`` and
    ``l2 = reg * (1 - elastic_net)``, ``global_batch_size`` (32; 1 is the exact sequential
    per-coordinate algorithm), ``emit_every`` (rows per model version; None: one version at the end
    of a bounded input), ``emit_every_seconds`` (also a version after this many seconds of
    processing time; None), ``fit_intercept`` (True: an always-1 bias coordinate; False: as Flink ML).
    The update rules and the departures from Flink ML are in the module docstring.

    Training starts from zero weights, or from ``set_initial_model_data(...)``: a batch
    ``LogisticRegressionModel``, an ``OnlineLogisticRegressionModel``, a ``PipelineModel`` ending in
    one (its last stage), a model version (anything with a ``.model``), a model store (its newest
    valid version), or a one-row model data table (``coefficient``, ``intercept``, ``model_version``).

    * ``fit(table_or_iterable_of_tables)`` trains on a bounded input and returns an
      :class:`OnlineLogisticRegressionModel` holding the final version; ``fit(stream)`` is handed
      to the stream layer.
    * ``fit_versions(data)`` yields every model version as it is emitted: the trainer runs on
      ``flowlearn.iteration.iterate_unbounded``, each version an output of a step (see :func:`train_versions`).
    * ``trainer(clock=None)`` returns the incremental :class:`OnlineLogisticRegressionTrainer` that stream
      engines drive batch by batch (``partial_fit``, ``finish``, ``snapshot_state``...).

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.classification.ftrl import OnlineLogisticRegression
        >>> t = fl.table({"features": [[1.0, 0.0], [0.0, 1.0]] * 20, "label": [1.0, 0.0] * 20})
        >>> est = OnlineLogisticRegression(global_batch_size=4, emit_every=20, alpha=0.5)
        >>> [v.column("model_version")[0].as_py() for v in est.fit_versions(t)]
        [1, 2]
        >>> model = est.fit([t.slice(0, 10), t.slice(10)])   # an iterable of tables
        >>> round(model.get_model_data()[0].column("intercept")[0].as_py(), 6)
        0.0
    """

    def _initial_model_table(self, model_or_table: Any) -> pa.Table:
        t = initial_model_data(model_or_table, _STAGE, "a LogisticRegressionModel or OnlineLogisticRegressionModel")
        read_single_output_model([t], _STAGE)  # validate now
        return t

    def trainer(self, clock: Callable[[], float] | None = None) -> OnlineLogisticRegressionTrainer:
        """A fresh incremental trainer with this estimator's parameters and initial model
        (``clock() -> seconds`` drives ``emit_every_seconds``; ``time.time`` by default)."""
        return OnlineLogisticRegressionTrainer(self, clock)

    def fit_versions(self, data: Any) -> Iterator[pa.Table]:
        """Train on a bounded input (a table or an iterable of tables/record batches) and yield
        each model version as it is emitted, the final one last."""
        tr = self.trainer()
        steps = step_rows(version_period(tr._emit_every, tr._batch))
        yield from train_versions(tr, iter_input_tables(data, _STAGE), steps)
        if tr.rows_seen == 0:
            raise ValueError(f"{_STAGE}.fit: the input has no rows; it needs at least one row")


class OnlineLogisticRegressionModel(_OnlineLogisticRegressionModelParams, LinearModelResults, Model):
    """Applies the latest weights of :class:`OnlineLogisticRegression` (or of a batch LogisticRegression).

    Model data: one table with one row, the ``LogisticRegressionModel`` format:
    ``coefficient`` fixed_size_list<double>[d], ``intercept`` double, ``model_version`` int64.
    Outputs (appended): ``prediction`` (double, 1.0 when ``coefficient . x + intercept >= 0``
    else 0.0), ``raw_prediction`` (fixed_size_list<double>[2], ``[1 - p, p]`` with
    ``p = sigmoid(coefficient . x + intercept)``) and ``model_version`` (int64), as Flink ML's
    OnlineLogisticRegressionModel. Given a model stream it follows the newest version.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.classification.ftrl import OnlineLogisticRegressionModel
        >>> m = OnlineLogisticRegressionModel().set_model_data(
        ...     {"coefficient": [[2.0, -1.0]], "intercept": [0.0], "model_version": [7]})
        >>> out = m.transform({"features": [[1.0, 0.0]]})
        >>> out.column("prediction").to_pylist(), out.column("model_version").to_pylist()
        ([1.0], [7])
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        self._coef, self._intercept, self._version = read_single_output_model(tables, type(self).__name__)

    @property
    def model_version(self) -> int:
        self._require_model()
        return self._version

    def _transform(self, t: pa.Table) -> pa.Table:
        self._require_model()
        out = predict_table(t, type(self).__name__, self.features_col, self.prediction_col, self.raw_prediction_col,
                            self._coef[None], np.array([self._intercept]))
        return with_column(out, self.model_version_col, pa.array(np.full(out.num_rows, self._version, dtype=np.int64)))

    def row_fn(self):
        self._require_model()
        predict = predict_row_fn(type(self).__name__, self.features_col, self.prediction_col,
                                 self.raw_prediction_col, self._coef[None], np.array([self._intercept]))
        vcol, version = self.model_version_col, self._version

        def fn(row: dict) -> None:
            predict(row)
            row[vcol] = version

        return fn


OnlineLogisticRegression.model_class = OnlineLogisticRegressionModel
