"""Online learning of a pipeline's last stage: Alink's ``OnlineLearningStreamOp``.

``OnlineLearning(pipeline_model)`` keeps training the **last stage** of a fitted
``PipelineModel`` on incoming batches, while the stages before it (the feature stages) only
transform the data and stay fixed; they change only through a :meth:`~OnlineLearningTrainer.rebase`
onto a newly batch-trained pipeline. The last stage must be a linear model:

=========================================  ==========================================  ============
last stage                                  loss (gradient with respect to the margin)  labels
=========================================  ==========================================  ============
``LogisticRegressionModel``, 1 row          logistic: ``sigmoid(z) - y``                0 / 1
(or ``OnlineLogisticRegressionModel``)
``LogisticRegressionModel``, k rows         softmax cross-entropy: ``softmax(z) - e_y``  0 .. k-1
``LinearRegressionModel``                   half squared error: ``z - y``               numbers
``LinearSVCModel``                          hinge: ``-t if t * z <= 1 else 0``,         0 / 1
                                            ``t = 2y - 1``
=========================================  ==========================================  ============

Every emitted model version is a whole ``PipelineModel``: the same feature stages plus a new
last stage of the same class and parameters whose model data (``coefficient``, ``intercept``,
``model_version``) holds the current weights, so it is saved and loaded with the ordinary
persistence and published to a ``ModelStore`` as one unit.

**Mini-batches.** Rows are grouped into mini-batches of ``global_batch_size`` consecutive rows
(across input batches, exactly as on one long stream). Every row of a mini-batch is predicted
with the weights from before the mini-batch; the gradient of the mini-batch is the mean over
its rows of ``weight_i * dloss/dz_i * x_i`` (and ``weight_i * dloss/dz_i`` for the intercept),
as River's ``learn_many`` and Flink ML do. One optimizer step then follows. With
``global_batch_size=1`` this is per-example online learning.

**Which coordinates a step touches.** For dense features every coordinate is stepped (a zero
gradient still decays momentum and Adam's moments); for sparse features only the coordinates
stored by some row of the mini-batch are (lazy updates, as River's dict-based learners, whose
weights are keyed by the features present). The intercept is always stepped.

**Optimizers** (``optim_method``; per coordinate, ``g`` the mini-batch gradient, ``t`` the
number of steps so far, starting at 1). Except for FTRL, an L2 term ``l2 * w`` is added to
``g`` of every penalized coordinate first (as River's ``l2``):

* ``sgd``:       ``w -= learning_rate * g``
* ``momentum``:  ``s = gamma * s + learning_rate * g;  w -= s``
* ``adagrad``:   ``s += g^2;  w -= learning_rate * g / sqrt(s + epsilon)``
* ``rmsprop``:   ``s = gamma * s + (1 - gamma) * g^2;  w -= learning_rate * g / sqrt(s + epsilon)``
* ``adam``:      ``m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2;``
  ``w -= learning_rate * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)``
* ``ftrl``:      FTRL-Proximal (McMahan et al. 2013) with ``alpha``, ``beta``, ``l1``, ``l2``:
  ``sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;  z += g - sigma * w;  n += g^2;``
  ``w = 0 if |z| <= l1 else -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)``.
  A warm start from weights ``w0`` starts at ``n = 0, z = -w0 * (beta / alpha + l2) - sign(w0) * l1``,
  the state whose weights are ``w0`` (as ``OnlineLogisticRegression`` does).

These are River's update rules (``optim.SGD``, ``Momentum`` with ``rho = gamma``, ``AdaGrad``,
``RMSProp``, ``Adam``), so with ``global_batch_size=1`` the weights equal River's. ``l1 = reg *
elastic_net`` and ``l2 = reg * (1 - elastic_net)``. For the SGD family the L1 part is the
cumulative penalty of Tsuruoka et al. (2009), as River applies it: after each step
``u += l1 * learning_rate`` and every stepped weight is clipped towards zero by what remains of
``u`` for it (never across zero); FTRL has L1 and L2 built in.

**Intercept.** ``fit_intercept=True`` learns it, unpenalized. With ``intercept_lr=None``
(default) the optimizer steps it like any coordinate (FTRL with ``l1 = l2 = 0`` for it); with
``intercept_lr=r`` it takes plain SGD steps ``b -= r * g_b`` whatever the optimizer, which is
River's convention (its ``intercept_lr``, 0.01 by default). ``fit_intercept=False`` keeps the
intercept of the initial model.

**In plans.** ``OnlineLearning(...).fit(stream)`` hands the estimator to the stream layer,
which runs ``trainer()`` as a stateful operator (``partial_fit`` per batch, ``emit``/``finish``,
``rebase(model, version)`` when a batch-retrained pipeline arrives on the rebase input,
``snapshot_state``/``restore_state`` at checkpoints) and returns a model following the stream
of pipeline versions, exactly as for ``OnlineLogisticRegression``; the only difference is that
its versions are whole pipelines rather than one model data table.

**Departures and choices.** Alink emits a model every ``timeInterval`` seconds; flowlearn emits
one every ``emit_every`` rows (at the next mini-batch boundary), every ``emit_every_seconds`` of
processing time (Alink's ``timeInterval``; checked at the end of each batch and on the engine's
timer, and only when rows were learned since the last version), on ``emit()`` and when a bounded
input ends. Alink's ``l1``/``l2`` params are flowlearn's ``reg`` and
``elastic_net``. For sparse features with ``global_batch_size > 1`` FTRL averages over the rows
of the mini-batch, not (as Flink ML's ``OnlineLogisticRegression``) over the rows that carry
each coordinate; with ``global_batch_size=1`` both are the sequential algorithm.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.classification.logistic_regression import LogisticRegression
    >>> t = fl.table({"features": [[1.0, 0.0], [0.0, 1.0]] * 20, "label": [1.0, 0.0] * 20})
    >>> batch = fl.Pipeline([LogisticRegression(reg=0.1)]).fit(t)
    >>> online = OnlineLearning(batch, optim_method="adam", learning_rate=0.05, global_batch_size=4,
    ...                         emit_every=20)
    >>> [v.stages[-1].get_model_data()[0].column("model_version")[0].as_py() for v in online.fit_versions(t)]
    [1, 2]
    >>> online.fit(t).transform(t).column("prediction").to_pylist()[:2]
    [1.0, 0.0]
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import numba as nb
import numpy as np
import pyarrow as pa
import scipy.sparse as sps
from scipy.special import expit, softmax

from flowlearn.api import AlgoOperator, Estimator, Model, _is_stream, with_trained_rows
from flowlearn.trainer import OperatorState, Trainer
from flowlearn.builder import PipelineModel
from flowlearn.iteration.online import (as_table, initial_model, iter_input_tables, step_rows,
                                        train_versions, version_period)
from flowlearn.data.columns import check_squares, numeric_column, require_column, vector_column
from flowlearn.optim import (LOSSES, ftrl_initial_z, ftrl_step, linear_model_table, pointwise_loss_gradient,
                             read_linear_model_table)
from flowlearn.params import (HasElasticNet, HasEmitEverySeconds, HasGlobalBatchSize, HasLabelCol, HasLearningRate, HasReg,
                              HasWeightCol, Param, gt, gt_eq, in_array, in_range)

__all__ = ["OnlineLearning", "OnlineLearningTrainer"]

_log = logging.getLogger(__name__)

_STAGE = "OnlineLearning"
STATE_FORMAT = "flowlearn.online_learning_state"
STATE_FORMAT_VERSION = 2  # 2: an OperatorState (counters in its data) instead of schema metadata

OPTIM_METHODS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "ftrl")
_SGD, _MOMENTUM, _ADAGRAD, _RMSPROP, _ADAM, _FTRL = range(6)

# hyper-parameter vector
_H_LR, _H_GAMMA, _H_B1, _H_B2, _H_EPS, _H_ALPHA, _H_BETA, _H_L1, _H_L2, _H_ILR = range(10)
# integer counters: rows in the open mini-batch, touched coordinates, steps taken, open batch has dense rows
_C_POS, _C_NT, _C_STEPS, _C_DENSE = range(4)


# --------------------------------------------------------------------------------------------
# Numba kernels. The whole state lives in one array S of shape (d + 1, K, 8): for coordinate j
# (the intercept is j = d) and output k, the 64-byte record S[j, k] holds the weight, the two
# optimizer accumulators, the L1 penalty already applied and the open mini-batch's gradient sum,
# so an update of a (hashed, randomly placed) coordinate touches one cache line.
# --------------------------------------------------------------------------------------------

_W, _S1, _S2, _Q, _G = range(5)
_FIELDS = 8


def _allocate_state(d: int, K: int) -> np.ndarray:
    """A zeroed (d + 1, K, 8) float64 array whose records start on 64-byte boundaries."""
    n = (d + 1) * K * _FIELDS
    buf = np.zeros(n + _FIELDS)
    off = (-buf.ctypes.data % 64) // 8
    return buf[off: off + n].reshape(d + 1, K, _FIELDS)


@nb.njit(cache=True, nogil=True, inline="always")
def _coord(S, j, k, g, opt, hp, lr_t, l1, l2):
    """One optimizer step of coordinate (j, k) with gradient g (L2 already in g except for FTRL)."""
    if opt == _SGD:
        S[j, k, _W] -= hp[_H_LR] * g
    elif opt == _MOMENTUM:
        s = hp[_H_GAMMA] * S[j, k, _S1] + hp[_H_LR] * g
        S[j, k, _S1] = s
        S[j, k, _W] -= s
    elif opt == _ADAGRAD:
        s = S[j, k, _S1] + g * g
        S[j, k, _S1] = s
        S[j, k, _W] -= hp[_H_LR] / math.sqrt(s + hp[_H_EPS]) * g
    elif opt == _RMSPROP:
        gm = hp[_H_GAMMA]
        s = gm * S[j, k, _S1] + (1.0 - gm) * g * g
        S[j, k, _S1] = s
        S[j, k, _W] -= hp[_H_LR] / math.sqrt(s + hp[_H_EPS]) * g
    elif opt == _ADAM:
        b1 = hp[_H_B1]
        b2 = hp[_H_B2]
        m = b1 * S[j, k, _S1] + (1.0 - b1) * g
        v = b2 * S[j, k, _S2] + (1.0 - b2) * g * g
        S[j, k, _S1] = m
        S[j, k, _S2] = v
        S[j, k, _W] -= lr_t * m / (math.sqrt(v) + hp[_H_EPS])
    else:  # FTRL-Proximal (optim.ftrl_step); S1 = z, S2 = n
        n = S[j, k, _S2]
        S[j, k, _W], S[j, k, _S1], S[j, k, _S2], _ = ftrl_step(S[j, k, _W], S[j, k, _S1], n, math.sqrt(n), g,
                                                              1.0 / hp[_H_ALPHA], hp[_H_BETA], l1, l2)


@nb.njit(cache=True, nogil=True, inline="always")
def _begin_step(opt, hp, ctr, fs):
    """Count a step; return its rate (Adam's bias-corrected one), whether the cumulative L1
    penalty applies and the penalty accumulated so far, this step's included."""
    ctr[_C_STEPS] += 1
    t = ctr[_C_STEPS]
    lr_t = hp[_H_LR]
    if opt == _ADAM:
        lr_t = hp[_H_LR] * math.sqrt(1.0 - hp[_H_B2] ** t) / (1.0 - hp[_H_B1] ** t)
    penalize_l1 = opt != _FTRL and hp[_H_L1] > 0.0
    if penalize_l1:
        fs[0] += hp[_H_L1] * hp[_H_LR]
    return lr_t, penalize_l1, fs[0]


@nb.njit(cache=True, nogil=True, inline="always")
def _step_intercept(S, k, g, opt, hp, lr_t):
    """The intercept's step: plain SGD with intercept_lr when set, else the optimizer's, unpenalized."""
    d = S.shape[0] - 1
    if hp[_H_ILR] >= 0.0:
        S[d, k, _W] -= hp[_H_ILR] * g
    else:
        _coord(S, d, k, g, opt, hp, lr_t, 0.0, 0.0)


@nb.njit(cache=True, nogil=True, inline="always")
def _step_weight(S, j, k, g, opt, hp, lr_t, l1, l2, penalize_l1, u):
    """The step of weight (j, k): FTRL with its own L1 and L2; otherwise the L2 term added to g, the
    optimizer's step, then the weight clipped towards zero by the L1 penalty it has not had yet."""
    if opt == _FTRL:
        _coord(S, j, k, g, opt, hp, lr_t, l1, l2)
        return
    if l2 > 0.0:
        g += l2 * S[j, k, _W]
    _coord(S, j, k, g, opt, hp, lr_t, 0.0, 0.0)
    if penalize_l1:
        w = S[j, k, _W]
        if w > 0.0:
            nw = max(0.0, w - (u + S[j, k, _Q]))
        elif w < 0.0:
            nw = min(0.0, w + (u - S[j, k, _Q]))
        else:
            nw = w
        S[j, k, _W] = nw
        S[j, k, _Q] += nw - w


@nb.njit(cache=True, nogil=True)
def _step(S, touched, mark, nb_rows, opt, learn_bias, hp, ctr, fs):
    """Apply the open mini-batch of ``nb_rows`` rows: one optimizer step, then the L1 penalty."""
    d = S.shape[0] - 1
    K = S.shape[1]
    lr_t, penalize_l1, u = _begin_step(opt, hp, ctr, fs)
    l1 = hp[_H_L1]
    l2 = hp[_H_L2]
    inv = 1.0 / nb_rows
    dense = ctr[_C_DENSE] != 0
    m = d if dense else ctr[_C_NT]
    # intercept first (River's order; it does not interact with the other coordinates)
    for k in range(K):
        g = S[d, k, _G] * inv
        S[d, k, _G] = 0.0
        if learn_bias:
            _step_intercept(S, k, g, opt, hp, lr_t)
    for q in range(m):
        j = q if dense else touched[q]
        for k in range(K):
            g = S[j, k, _G] * inv
            S[j, k, _G] = 0.0
            _step_weight(S, j, k, g, opt, hp, lr_t, l1, l2, penalize_l1, u)
    for q in range(ctr[_C_NT]):
        mark[touched[q]] = 0
    ctr[_C_NT] = 0
    ctr[_C_DENSE] = 0
    ctr[_C_POS] = 0


@nb.njit(cache=True, nogil=True, inline="always")
def _step_row_sparse(S, indices, data, lo, hi, z, opt, learn_bias, hp, ctr, fs):
    """``_step`` for a one-row mini-batch of CSR entries lo:hi with margin gradients z (the same
    arithmetic, without accumulating into G first)."""
    K = S.shape[1]
    lr_t, penalize_l1, u = _begin_step(opt, hp, ctr, fs)
    l1 = hp[_H_L1]
    l2 = hp[_H_L2]
    if learn_bias:
        for k in range(K):
            _step_intercept(S, k, z[k], opt, hp, lr_t)
    for p in range(lo, hi):
        j = indices[p]
        xv = data[p]
        for k in range(K):
            _step_weight(S, j, k, z[k] * xv, opt, hp, lr_t, l1, l2, penalize_l1, u)


@nb.njit(cache=True, nogil=True)
def _run_dense(X, y, sw, r0, r1, S, touched, mark, opt, kind, batch, learn_bias, hp, ctr, fs, out, z):
    """Predict-then-learn rows r0:r1 of a dense matrix; out[r] gets row r's margins as predicted
    before its mini-batch was applied."""
    d = X.shape[1]
    K = S.shape[1]
    for r in range(r0, r1):
        for k in range(K):
            acc = 0.0
            for j in range(d):
                acc += X[r, j] * S[j, k, _W]
            acc += S[d, k, _W]
            z[k] = acc
            out[r, k] = acc
        pointwise_loss_gradient(z, y[r], kind, False)
        wr = sw[r]
        for k in range(K):
            z[k] *= wr
        for j in range(d):
            xv = X[r, j]
            if xv != 0.0:
                for k in range(K):
                    S[j, k, _G] += z[k] * xv
        for k in range(K):
            S[d, k, _G] += z[k]
        ctr[_C_DENSE] = 1
        ctr[_C_POS] += 1
        if ctr[_C_POS] == batch:
            _step(S, touched, mark, batch, opt, learn_bias, hp, ctr, fs)


@nb.njit(cache=True, nogil=True)
def _run_sparse(indptr, indices, data, y, sw, r0, r1, S, touched, mark, opt, kind, batch, learn_bias, hp, ctr, fs,
                out, z):
    """CSR twin of :func:`_run_dense`: only the coordinates the mini-batch stores are stepped."""
    d = S.shape[0] - 1
    K = S.shape[1]
    for r in range(r0, r1):
        lo = indptr[r]
        hi = indptr[r + 1]
        for k in range(K):
            acc = 0.0
            for p in range(lo, hi):
                acc += data[p] * S[indices[p], k, _W]
            acc += S[d, k, _W]
            z[k] = acc
            out[r, k] = acc
        pointwise_loss_gradient(z, y[r], kind, False)
        wr = sw[r]
        for k in range(K):
            z[k] *= wr
        if batch == 1:
            _step_row_sparse(S, indices, data, lo, hi, z, opt, learn_bias, hp, ctr, fs)
            continue
        for p in range(lo, hi):
            j = indices[p]
            if mark[j] == 0:
                mark[j] = 1
                touched[ctr[_C_NT]] = j
                ctr[_C_NT] += 1
            xv = data[p]
            for k in range(K):
                S[j, k, _G] += z[k] * xv
        for k in range(K):
            S[d, k, _G] += z[k]
        ctr[_C_POS] += 1
        if ctr[_C_POS] == batch:
            _step(S, touched, mark, batch, opt, learn_bias, hp, ctr, fs)


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------


class _OnlineLearningParams(HasLabelCol, HasWeightCol, HasLearningRate, HasReg, HasElasticNet, HasGlobalBatchSize,
                            HasEmitEverySeconds):
    optim_method = Param(str, default="ftrl", validator=in_array(list(OPTIM_METHODS)),
                         doc="Optimizer: 'sgd', 'momentum', 'adagrad', 'rmsprop', 'adam' or 'ftrl' (Alink's "
                             "optimMethod, lower case).")
    gamma = Param(float, default=0.9, validator=in_range(0, 1, hi_inclusive=False),
                  doc="Decay of the momentum ('momentum') and of the squared-gradient average ('rmsprop').")
    beta1 = Param(float, default=0.9, validator=in_range(0, 1, hi_inclusive=False),
                  doc="Adam's decay of the first moment.")
    beta2 = Param(float, default=0.999, validator=in_range(0, 1, hi_inclusive=False),
                  doc="Adam's decay of the second moment.")
    epsilon = Param(float, default=1e-8, validator=gt(0.0),
                    doc="Added for numerical stability in 'adagrad', 'rmsprop' and 'adam'.")
    alpha = Param(float, default=0.1, validator=gt(0.0), doc="FTRL's alpha (learning-rate scale).")
    beta = Param(float, default=1.0, validator=gt(0.0), doc="FTRL's beta (learning-rate smoothing).")
    fit_intercept = Param(bool, default=True,
                          doc="Learn the intercept (unpenalized); False keeps the initial model's intercept.")
    intercept_lr = Param(float, default=None, validator=gt_eq(0.0),
                         doc="None: the optimizer steps the intercept like a coordinate. A number r: the intercept "
                             "takes plain SGD steps of rate r whatever the optimizer (River's intercept_lr).")
    emit_every = Param(int, default=None, validator=gt(0),
                       doc="Emit a new model version after every this many rows (at the next mini-batch "
                           "boundary); None emits one version when a bounded input ends.")
    num_features = Param(int, default=None, validator=gt(0),
                         doc="Size of the features vector when the last stage has no model data (training starts "
                             "from zero weights); None takes it from the first batch.")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _linear_kinds() -> list[tuple[type, str]]:
    from flowlearn.classification.linear_svc import LinearSVCModel
    from flowlearn.classification.logistic_regression import LogisticRegressionModel
    from flowlearn.regression.linear_regression import LinearRegressionModel

    kinds: list[tuple[type, str]] = [(LogisticRegressionModel, "logistic"), (LinearRegressionModel, "squared"),
                                     (LinearSVCModel, "hinge")]
    from flowlearn.classification.ftrl import OnlineLogisticRegressionModel

    kinds.append((OnlineLogisticRegressionModel, "logistic"))
    return kinds


def _as_pipeline_model(obj: Any, what: str) -> PipelineModel:
    """A PipelineModel from a PipelineModel, a lone linear Model, a model version (``.model``) or
    a model store (its newest valid version)."""
    obj = initial_model(obj, _STAGE)
    if isinstance(obj, PipelineModel):
        return obj
    if isinstance(obj, Model):
        return PipelineModel([obj])
    raise TypeError(f"{_STAGE}: {what} must be a fitted PipelineModel whose last stage is a linear model "
                    f"(or such a model alone, or a model version or model store holding one); got "
                    f"{type(obj).__name__}")


def _split_pipeline(pm: PipelineModel) -> tuple[list[AlgoOperator], Model, str]:
    """(feature stages, linear last stage, loss kind) of a pipeline model, validated."""
    if not pm.stages:
        raise ValueError(f"{_STAGE}: the pipeline model has no stages; its last stage must be a linear model")
    last = pm.stages[-1]
    kinds = _linear_kinds()
    kind = next((k for cls, k in kinds if isinstance(last, cls)), None)
    if kind is None:
        names = ", ".join(cls.__name__ for cls, _ in kinds)
        raise ValueError(f"{_STAGE}: the last stage of the pipeline model (stage {len(pm.stages) - 1}) is a "
                         f"{type(last).__name__}, which OnlineLearning cannot train; the last stage must be a "
                         f"linear model ({names}). Fit the pipeline with one of their estimators last")
    if last._model_data is not None:   # without model data: zero weights, one output
        W, _, _ = read_linear_model_table(last.get_model_data(), type(last).__name__)
        if kind == "logistic" and W.shape[0] > 1:
            kind = "multinomial"
    for i, s in enumerate(pm.stages[:-1]):
        if isinstance(s, Model) and not isinstance(s, PipelineModel) and getattr(s, "_model_data", 1) is None:
            raise ValueError(f"{_STAGE}: feature stage {i} ({type(s).__name__}) has no model data; pass a fitted "
                             f"pipeline model")
    return list(pm.stages[:-1]), last, kind


def _zero_pipeline(pm: PipelineModel, d: int) -> PipelineModel:
    """``pm`` with a copy of its last stage holding zero weights for ``d`` features (one output)."""
    last = pm.stages[-1]
    zero = type(last)(**last.get_params()).set_model_data(linear_model_table(np.zeros((1, d)), np.zeros(1), 0))
    return PipelineModel(list(pm.stages[:-1]) + [zero])


def _pipeline_files(pm: PipelineModel) -> pa.Table:
    """The files of ``pm`` in flowlearn's on-disk stage format, as a (path, content) table."""
    from flowlearn.persist import write_stage_files

    import fsspec

    fs = fsspec.filesystem("file")
    paths, blobs = [], []
    with tempfile.TemporaryDirectory(prefix="flowlearn-ol-") as tmp:
        root = os.path.join(tmp, "model")
        write_stage_files(pm, fs, root)
        for dirpath, _, files in os.walk(root):
            for f in sorted(files):
                full = os.path.join(dirpath, f)
                with open(full, "rb") as fh:
                    blobs.append(fh.read())
                paths.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return pa.table({"path": pa.array(paths, pa.string()), "content": pa.array(blobs, pa.binary())})


def _pipeline_from_files(files: pa.Table) -> PipelineModel:
    from flowlearn.persist import load_stage

    with tempfile.TemporaryDirectory(prefix="flowlearn-ol-") as tmp:
        root = os.path.join(tmp, "model")
        for rel, blob in zip(files.column("path").to_pylist(), files.column("content").to_pylist()):
            if rel.startswith("/") or ".." in rel.split("/"):
                raise ValueError(f"{_STAGE}: the state holds a bad file path {rel!r}")
            full = os.path.join(root, *rel.split("/"))
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as fh:
                fh.write(blob)
        stage = load_stage(root)
    return _as_pipeline_model(stage, "the pipeline model in the state")


# --------------------------------------------------------------------------------------------
# Trainer: the incremental state machine the stream engine drives batch by batch
# --------------------------------------------------------------------------------------------


class OnlineLearningTrainer(Trainer):
    """Incremental training state of :class:`OnlineLearning` (made by ``OnlineLearning.trainer()``).

    The same protocol as ``OnlineLogisticRegressionTrainer``, with whole pipelines as versions.
    Feed it raw record batches in order (the feature stages transform them); mini-batches of
    ``global_batch_size`` rows run across batch boundaries exactly as on one long stream.

    * ``partial_fit(batch) -> list[PipelineModel]``: learn from the rows and return the versions
      emitted meanwhile (one every ``emit_every`` rows, at the next mini-batch boundary, and one at
      the end of the call when ``emit_every_seconds`` passed since the last version);
    * ``poll(now=None)``: the version due by ``emit_every_seconds`` (for engine timers);
    * ``predict_and_partial_fit(batch) -> (predictions, versions)``: also return what each row
      was predicted *before* the model learned from it (the probability of class 1 for binary
      logistic regression, class probabilities ``(n, k)`` for softmax, the value for linear
      regression, the margin for a linear SVM);
    * ``emit()``: a version of the current weights now, ``None`` if no row was learned since the
      last one; ``finish()``: apply an incomplete mini-batch and emit the final version;
    * ``rebase(model, version=None)``: swap in new feature stages and last-stage weights (or only
      new weights) and reset the optimizer state (the open mini-batch is dropped); version numbers
      keep increasing;
    * ``pipeline_model()`` / ``model_data()``: the current pipeline / last-stage model data;
      ``version``, ``rows_seen``, ``dim``, ``coefficient``, ``intercept``;
    * ``snapshot_state() -> OperatorState`` / ``restore_state(state)``: the complete state (no
      pickle), for checkpoints (the :class:`~flowlearn.trainer.Trainer` protocol). A restored
      trainer continues exactly as the original would have.

    Versions are numbered from the initial last stage's ``model_version`` + 1.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.regression.linear_regression import LinearRegressionModel
        >>> start = LinearRegressionModel().set_model_data(
        ...     {"coefficient": [[0.0]], "intercept": [0.0], "model_version": [0]})
        >>> tr = OnlineLearning(fl.PipelineModel([start]), optim_method="sgd", learning_rate=0.25,
        ...                     global_batch_size=1, emit_every=2).trainer()
        >>> versions = tr.partial_fit({"features": [[1.0], [1.0], [1.0]], "label": [2.0, 2.0, 2.0]})
        >>> [v.stages[-1].get_model_data()[0].column("model_version")[0].as_py() for v in versions]
        [1]
        >>> float(tr.coefficient[0]), tr.intercept    # w = b: 0 -> 0.5 -> 0.75 -> 0.875
        (0.875, 0.875)
    """

    stage = _STAGE
    state_format = STATE_FORMAT
    state_format_version = STATE_FORMAT_VERSION
    state_tables = ("state", "open_batch", "pipeline")
    can_rebase = True
    predicts = True

    def __init__(self, estimator: "OnlineLearning", clock: Callable[[], float] | None = None) -> None:
        p = estimator.get_params()
        super().__init__(p["emit_every_seconds"], clock)
        self._params = p
        self._label_col = p["label_col"]
        self._weight_col = p["weight_col"]
        self._opt = OPTIM_METHODS.index(p["optim_method"])
        reg, en = float(p["reg"]), float(p["elastic_net"])
        ilr = p["intercept_lr"]
        self._hp = np.array([p["learning_rate"], p["gamma"], p["beta1"], p["beta2"], p["epsilon"], p["alpha"],
                             p["beta"], reg * en, reg * (1.0 - en), -1.0 if ilr is None else float(ilr)],
                            dtype=np.float64)
        self._batch = int(p["global_batch_size"])
        self._emit_every = p["emit_every"]
        self._learn_bias = bool(p["fit_intercept"])
        model = estimator.get_initial_model()
        if model is None:
            raise ValueError(f"{_STAGE}: no initial pipeline model; pass one as OnlineLearning(pipeline_model, ...) "
                             f"or with set_initial_model(...), or an unfitted last stage such as "
                             f"OnlineLearning(LogisticRegressionModel()) to start from zero weights")
        pm = _as_pipeline_model(model, "the initial model")
        # an unfitted last stage starts from zero weights, sized by num_features or the first batch
        self._pending: PipelineModel | None = None
        if pm.stages and isinstance(pm.stages[-1], Model) and pm.stages[-1]._model_data is None:
            if p["num_features"] is None:
                self._pending = pm
                self._features, self._last, self._dim, self._K = list(pm.stages[:-1]), pm.stages[-1], None, 1
                self._features_col = self._last.features_col
                self._kind = _split_pipeline(pm)[2]
                return
            pm = _zero_pipeline(pm, p["num_features"])
        self._set_base(pm)

    # -- state ---------------------------------------------------------------------------

    def _set_base(self, model: Any) -> None:
        pm = _as_pipeline_model(model, "the pipeline model")
        features, last, kind = _split_pipeline(pm)
        W, b, version = read_linear_model_table(last.get_model_data(), type(last).__name__)
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"{_STAGE}: the last stage ({type(last).__name__}) has NaN or infinite coefficients")
        K, d = W.shape
        self._features = features
        self._last = last
        self._kind = kind
        self._features_col = last.features_col
        self._K, self._dim = K, d
        S = _allocate_state(d, K)
        # views of the packed state, for the Python side
        self._S = S
        self._P, self._S1, self._S2, self._Q, self._G = (S[:, :, f] for f in (_W, _S1, _S2, _Q, _G))
        P = self._P
        P[:d] = W.T
        P[d] = b
        self._touched = np.zeros(d + 1, dtype=np.int64)
        self._mark = np.zeros(d + 1, dtype=np.uint8)
        self._ctr = np.zeros(4, dtype=np.int64)
        self._fs = np.zeros(1)
        if self._opt == _FTRL:
            alpha, beta, l1, l2 = self._hp[_H_ALPHA], self._hp[_H_BETA], self._hp[_H_L1], self._hp[_H_L2]
            w = P[:d]
            # the FTRL state whose weights are exactly the initial ones (see the module docstring)
            self._S1[:d] = ftrl_initial_z(w, alpha, beta, l1, l2)
            self._S1[d] = ftrl_initial_z(P[d], alpha, beta, 0.0, 0.0)   # the intercept is not penalized
        self.version = max(self.version, int(version))

    @property
    def dim(self) -> int:
        """Number of features the last stage takes."""
        return self._dim

    @property
    def kind(self) -> str:
        """The loss: 'logistic', 'multinomial', 'squared' or 'hinge'."""
        return self._kind

    @property
    def coefficient(self) -> np.ndarray:
        """A copy of the current coefficients: ``(d,)`` for one output, ``(k, d)`` for softmax."""
        W = self._P[:-1].T.copy()
        return W[0] if self._K == 1 else W

    @property
    def intercept(self) -> float | np.ndarray:
        b = self._P[-1].copy()
        return float(b[0]) if self._K == 1 else b

    @property
    def feature_stages(self) -> list[AlgoOperator]:
        return list(self._features)

    def model_data(self) -> pa.Table:
        """The current weights as last-stage model data, labelled with the last emitted version."""
        # copies: Arrow may wrap a NumPy buffer without copying, and P keeps changing
        return with_trained_rows(linear_model_table(self._P[:-1].T.copy(), self._P[-1].copy(), self.version),
                                 self.rows_seen - int(self._ctr[_C_POS]))

    def pipeline_model(self) -> PipelineModel:
        """The current weights as a whole pipeline (feature stages + a new last stage)."""
        last = type(self._last)(**self._last.get_params())
        last.set_model_data(self.model_data())
        return PipelineModel(list(self._features) + [last])

    # -- input ---------------------------------------------------------------------------

    def _extract(self, t: pa.Table) -> tuple[Any, np.ndarray, np.ndarray]:
        for i, s in enumerate(self._features):
            out = s.transform(t)
            if not isinstance(out, pa.Table):
                raise ValueError(f"{_STAGE}: feature stage {i} ({type(s).__name__}) returned "
                                 f"{type(out).__name__}; feature stages must return one table")
            t = out
        fc = self._features_col
        if t.num_rows == 0:
            require_column(t, fc, _STAGE, "features_col")
            require_column(t, self._label_col, _STAGE, "label_col")
            return np.zeros((0, self._dim or 0)), np.zeros(0), np.zeros(0)
        if self._pending is not None:   # the first rows size the zero weights
            d = vector_column(t, fc, _STAGE, param="features_col").shape[1]
            self._set_base(_zero_pipeline(self._pending, d))
            self._pending = None
        x = vector_column(t, fc, _STAGE, param="features_col", size=self._dim)
        check_squares(x, fc, _STAGE, "features_col", "squared gradients")
        y = numeric_column(t, self._label_col, _STAGE, param="label_col")
        lc = self._label_col
        if self._kind in ("logistic", "hinge"):
            bad = (y != 0.0) & (y != 1.0)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{_STAGE}: column '{lc}' (parameter 'label_col') has value {float(y[row])!r} at row "
                                 f"{row}; the last stage ({type(self._last).__name__}) is a binary classifier and "
                                 f"needs labels 0 or 1")
        elif self._kind == "multinomial":
            bad = (y < 0) | (y >= self._K) | (y != np.floor(y))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{_STAGE}: column '{lc}' (parameter 'label_col') has value {float(y[row])!r} at row "
                                 f"{row}; the softmax model has {self._K} classes, so labels must be class indices "
                                 f"0..{self._K - 1}")
        if self._weight_col is None:
            w = np.ones(len(y))
        else:
            w = numeric_column(t, self._weight_col, _STAGE, param="weight_col")
            neg = w < 0
            if neg.any():
                row = int(np.flatnonzero(neg)[0])
                raise ValueError(f"{_STAGE}: column '{self._weight_col}' (parameter 'weight_col') has weight "
                                 f"{float(w[row])!r} at row {row}; weights must be >= 0")
        if sps.issparse(x) and x.shape[0] and not x.has_canonical_format:
            x = x.copy()
            x.sum_duplicates()
        return x, np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64)

    # -- training ------------------------------------------------------------------------

    def _next_stop(self, start: int, n: int) -> tuple[int, bool]:
        """End of the next kernel run within a chunk of ``n`` rows and whether a version is due there."""
        if self._emit_every is None:
            return n, False
        b = self._batch
        pos = int(self._ctr[_C_POS])
        first = self.rows_seen + (b - pos)  # the next mini-batch boundary, in rows seen
        need = self._last_emit_rows + self._emit_every
        target = first if need <= first else first + -(-(need - first) // b) * b
        stop = start + (target - self.rows_seen)
        return (stop, True) if stop <= n else (n, False)

    def _run(self, t: pa.Table) -> tuple[np.ndarray, list[PipelineModel]]:
        x, y, sw = self._extract(t)
        n = len(y)
        out = np.empty((n, self._K))
        versions: list[PipelineModel] = []
        if n == 0:
            return out, versions
        sparse = sps.issparse(x)
        if sparse:
            indptr = x.indptr.astype(np.int64, copy=False)
            indices = x.indices.astype(np.int64, copy=False)
            data = np.ascontiguousarray(x.data, dtype=np.float64)
        else:
            x = np.ascontiguousarray(x, dtype=np.float64)
        z = np.empty(self._K)
        state = (self._S, self._touched, self._mark, self._opt,
                 LOSSES[self._kind], self._batch, self._learn_bias, self._hp, self._ctr, self._fs, out, z)
        start = 0
        while start < n:
            stop, due = self._next_stop(start, n)
            if sparse:
                _run_sparse(indptr, indices, data, y, sw, start, stop, *state)
            else:
                _run_dense(x, y, sw, start, stop, *state)
            self.rows_seen += stop - start
            if due:
                versions.append(self._emit())
            start = stop
        if not np.isfinite(self._P).all():
            raise ValueError(f"{_STAGE}: the weights became NaN or infinite after {self.rows_seen} rows "
                             f"(optim_method='{OPTIM_METHODS[self._opt]}'); lower learning_rate or scale the "
                             f"features")
        versions += self._versions_due()
        return out, versions

    def _has_model(self) -> bool:
        return self._pending is None   # the initial pipeline, or zero weights once the first batch sized them

    def _rows_in_model(self) -> int:
        return self.rows_seen - int(self._ctr[_C_POS])   # rows of the open mini-batch are not in the weights

    def _current_version(self) -> PipelineModel:
        return self.pipeline_model()

    def partial_fit(self, batch: Any) -> list[PipelineModel]:
        """Learn from the rows of ``batch`` (raw input: a table, record batch or anything
        ``fl.table`` accepts); return the pipeline versions emitted meanwhile."""
        _, versions = self._run(as_table(batch))
        return versions

    def predict_and_partial_fit(self, batch: Any) -> tuple[np.ndarray, list[PipelineModel]]:
        """Like :meth:`partial_fit`, also returning each row's prediction from before the model
        learned from it (from its mini-batch's starting weights); see the class docstring."""
        out, versions = self._run(as_table(batch))
        if self._kind == "logistic":
            return expit(out[:, 0]), versions
        if self._kind == "multinomial":
            return softmax(out, axis=1), versions
        return out[:, 0].copy(), versions

    def _apply_open(self) -> None:
        pos = int(self._ctr[_C_POS])
        if pos > 0:
            _step(self._S, self._touched, self._mark, pos, self._opt, self._learn_bias, self._hp, self._ctr,
                  self._fs)

    def rebase(self, model: Any, version: int | None = None) -> None:
        """Continue from a new model (a batch retrain): a PipelineModel (or a model version holding
        one) replaces the feature stages and the last stage; a lone linear model or a model data
        table (``coefficient``, ``intercept``, ``model_version``) replaces only the last stage's
        weights. The optimizer state (moments, accumulators, FTRL's z and n, the L1 ledger, the step
        count) starts afresh and rows of an open mini-batch are dropped (their gradients belong to
        the old model). The next version is numbered above the last emitted one, the new model's
        ``model_version`` and ``version`` (the stream layer's ``TrainerOp`` passes it)."""
        if isinstance(model, (pa.Table, pa.RecordBatch)) or (isinstance(model, Model)
                                                             and not isinstance(model, PipelineModel)):
            last = model if isinstance(model, Model) else \
                type(self._last)(**self._last.get_params()).set_model_data(as_table(model))
            model = PipelineModel(list(self._features) + [last])
        self._set_base(model)
        self._pending = None
        if version is not None:
            self.version = max(self.version, int(version))
        self._last_emit_rows = self.rows_seen
        if self._emit_seconds is not None:   # as a fresh trainer: the rebase model is the newest version
            self._last_emit_at = self._clock()
        _log.info("%s: rebased onto a new model after %d rows; versions continue above %d", _STAGE,
                  self.rows_seen, self.version)

    # -- checkpoints ---------------------------------------------------------------------

    def _state(self) -> OperatorState:
        """Tables ``state`` (one row per coordinate and output, coordinate-major, the intercept last:
        ``param``, ``s1``, ``s2``, ``l1_applied``, ``gradient_sum``), ``open_batch`` (the coordinates
        the open mini-batch touched) and ``pipeline`` (the files of the current pipeline in the
        on-disk stage format, as ``path``/``content`` rows)."""
        if self._pending is not None:   # nothing learned yet: a fresh trainer of the same estimator is this state
            return OperatorState({"pending": True, "optim_method": OPTIM_METHODS[self._opt]},
                                 {"state": pa.table({"param": pa.array([], pa.float64())}),
                                  "open_batch": pa.table({"index": pa.array([], pa.int64())}),
                                  "pipeline": pa.table({"path": pa.array([], pa.string()),
                                                        "content": pa.array([], pa.binary())})})
        hp = self._hp
        data = {
            "optim_method": OPTIM_METHODS[self._opt], "kind": self._kind, "dim": self._dim, "outputs": self._K,
            "open_batch_rows": int(self._ctr[_C_POS]), "open_batch_dense": int(self._ctr[_C_DENSE]),
            "steps": int(self._ctr[_C_STEPS]), "l1_ledger": float(self._fs[0]),
            "global_batch_size": self._batch, "fit_intercept": self._learn_bias,
            "hyperparameters": {"learning_rate": hp[_H_LR], "gamma": hp[_H_GAMMA], "beta1": hp[_H_B1],
                                "beta2": hp[_H_B2], "epsilon": hp[_H_EPS], "alpha": hp[_H_ALPHA],
                                "beta": hp[_H_BETA], "l1": hp[_H_L1], "l2": hp[_H_L2],
                                "intercept_lr": None if hp[_H_ILR] < 0 else hp[_H_ILR]},
        }
        state = pa.table({
            "param": self._P.reshape(-1).copy(), "s1": self._S1.reshape(-1).copy(), "s2": self._S2.reshape(-1).copy(),
            "l1_applied": self._Q.reshape(-1).copy(), "gradient_sum": self._G.reshape(-1).copy(),
        })
        open_batch = pa.table({"index": pa.array(self._touched[: int(self._ctr[_C_NT])].copy(), pa.int64())})
        return OperatorState(data, {"state": state, "open_batch": open_batch,
                                    "pipeline": _pipeline_files(self.pipeline_model())})

    def _restore(self, st: OperatorState) -> None:
        meta = st.data
        if meta.get("pending"):
            if self._pending is None:
                raise ValueError(f"{_STAGE}: the state was written before the first batch sized the zero weights; "
                                 f"restore it into a trainer of an estimator with an unfitted last stage")
            return
        state, open_batch, files = st.tables["state"], st.tables["open_batch"], st.tables["pipeline"]
        mine = OPTIM_METHODS[self._opt]
        if meta["optim_method"] != mine:
            raise ValueError(f"{_STAGE}: the state was written with optim_method='{meta['optim_method']}', this "
                             f"trainer has optim_method='{mine}'; their optimizer states are not interchangeable")
        if meta["open_batch_rows"] and meta["global_batch_size"] != self._batch:
            raise ValueError(f"{_STAGE}: the state has an open mini-batch of global_batch_size="
                             f"{meta['global_batch_size']}; restore it into a trainer with the same size "
                             f"(this one has {self._batch})")
        self._set_base(_pipeline_from_files(files))
        d, K = int(meta["dim"]), int(meta["outputs"])
        if (d, K) != (self._dim, self._K) or state.num_rows != (d + 1) * K:
            raise ValueError(f"{_STAGE}: the state holds {state.num_rows} rows for dim={d}, outputs={K}, which "
                             f"does not match its pipeline (dim={self._dim}, outputs={self._K})")
        shape = (d + 1, K)
        self._P[:] = state.column("param").to_numpy().reshape(shape)
        self._S1[:] = state.column("s1").to_numpy().reshape(shape)
        self._S2[:] = state.column("s2").to_numpy().reshape(shape)
        self._Q[:] = state.column("l1_applied").to_numpy().reshape(shape)
        self._G[:] = state.column("gradient_sum").to_numpy().reshape(shape)
        idx = open_batch.column("index").to_numpy().astype(np.int64)
        self._touched[: len(idx)] = idx
        self._mark[idx] = 1
        self._ctr[:] = [int(meta["open_batch_rows"]), len(idx), int(meta["steps"]), int(meta["open_batch_dense"])]
        self._fs[0] = float(meta["l1_ledger"])


# --------------------------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------------------------


class OnlineLearning(_OnlineLearningParams, Estimator):
    """Keeps training the linear last stage of a fitted ``PipelineModel`` online (Alink's OnlineLearningStreamOp).

    ``OnlineLearning(pipeline_model, **params)``. The last stage is a ``LogisticRegressionModel``
    (binary or softmax), ``LinearRegressionModel``, ``LinearSVCModel`` or
    ``OnlineLogisticRegressionModel``. Without model data (``OnlineLearning(LogisticRegressionModel())``,
    or a pipeline ending in one) training starts from zero weights (one output: binary, regression
    or SVM) sized by ``num_features`` or by the first batch; the stages before it transform every batch and stay fixed
    (they change only through ``trainer.rebase``). Parameters: ``optim_method`` ('ftrl' as Alink,
    'sgd', 'momentum', 'adagrad', 'rmsprop', 'adam'), ``learning_rate``, ``gamma`` (momentum /
    RMSProp decay), ``beta1``, ``beta2``, ``epsilon`` (Adam, AdaGrad, RMSProp), ``alpha``, ``beta``
    (FTRL), ``reg`` and ``elastic_net`` (``l1 = reg * elastic_net``, ``l2 = reg * (1 -
    elastic_net)``), ``global_batch_size``, ``emit_every``, ``emit_every_seconds``, ``fit_intercept``, ``intercept_lr``,
    ``label_col``, ``weight_col``. The update rules are in the module docstring.

    * ``fit(data)`` trains on a bounded input (a table, or an iterable of tables in order) and
      returns the final version, a ``PipelineModel``; ``fit_versions(data)`` yields every version
      (the trainer runs on ``flowlearn.iteration.iterate_unbounded``; see
      ``flowlearn.iteration.online.train_versions``).
    * ``trainer(clock=None)`` returns the :class:`OnlineLearningTrainer` that stream engines drive batch by
      batch (``partial_fit``, ``emit``, ``finish``, ``rebase``, ``snapshot_state``...).

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.regression.linear_regression import LinearRegression
        >>> t = fl.table({"features": [[0.0], [1.0], [2.0]], "label": [1.0, 3.0, 5.0]})
        >>> pm = fl.Pipeline([LinearRegression()]).fit(t)
        >>> drifted = fl.table({"features": [[0.0], [1.0], [2.0]] * 200, "label": [2.0, 4.0, 6.0] * 200})
        >>> new = OnlineLearning(pm, optim_method="sgd", learning_rate=0.1, global_batch_size=3).fit(drifted)
        >>> [round(v, 2) for v in new.transform(t).column("prediction").to_pylist()]
        [2.0, 4.0, 6.0]

        From zero weights, given only the model type (the first batch gives the number of features):

        >>> from flowlearn.regression.linear_regression import LinearRegressionModel
        >>> fresh = OnlineLearning(LinearRegressionModel(), optim_method="sgd", learning_rate=0.1,
        ...                        global_batch_size=3).fit(drifted)
        >>> [round(v, 2) for v in fresh.transform(t).column("prediction").to_pylist()]
        [2.0, 4.0, 6.0]
    """

    def __init__(self, model: Any = None, **params: Any) -> None:
        super().__init__(**params)
        self._initial: PipelineModel | None = None
        if model is not None:
            self.set_initial_model(model)

    def set_initial_model(self, model: Any) -> "OnlineLearning":
        """Start from ``model``: a fitted PipelineModel with a linear last stage, such a model alone,
        a model version holding one, or a model store (its newest valid version). It is validated now."""
        if model is None:
            self._initial = None
            return self
        pm = _as_pipeline_model(model, "the initial model")
        _split_pipeline(pm)
        self._initial = pm
        return self

    def get_initial_model(self) -> PipelineModel | None:
        return self._initial

    def _sub_stages(self) -> list:
        return [self._initial] if self._initial is not None else []

    @classmethod
    def _from_saved(cls, params: dict, model_data: list[pa.Table], stages: list, extra: dict) -> "OnlineLearning":
        return cls(stages[0] if stages else None, **params)

    def trainer(self, clock: Callable[[], float] | None = None) -> OnlineLearningTrainer:
        """A fresh incremental trainer with this estimator's parameters and initial model
        (``clock() -> seconds`` drives ``emit_every_seconds``; ``time.time`` by default)."""
        return OnlineLearningTrainer(self, clock)

    def fit_versions(self, data: Any) -> Iterator[PipelineModel]:
        """Train on a bounded input (a table or an iterable of tables / record batches) and yield each
        pipeline version as it is emitted, the final one last."""
        tr = self.trainer()
        # On iterate_unbounded (see flowlearn.iteration.online.train_versions), whose outputs are
        # the versions' last-stage model data; each is yielded as the trainer's pipeline of it.
        pipelines: dict[int, PipelineModel] = {}

        def to_table(pm: PipelineModel) -> pa.Table:
            t = pm.stages[-1].get_model_data()[0]
            pipelines[t.column("model_version")[0].as_py()] = pm
            return t

        steps = step_rows(version_period(tr._emit_every, tr._batch))
        for model_data in train_versions(tr, iter_input_tables(data, _STAGE), steps, to_table):
            yield pipelines.pop(model_data.column("model_version")[0].as_py())
        if tr.rows_seen == 0:
            raise ValueError(f"{_STAGE}.fit: the input has no rows; it needs at least one row")

    def fit(self, *inputs: Any) -> PipelineModel:
        """Train on a bounded input (one table or an iterable of tables, in order) and return the
        final version. A ``Stream`` is handed to the stream layer."""
        if not inputs:
            raise TypeError(f"{_STAGE}.fit needs an input table")
        if any(_is_stream(x) for x in inputs):
            return super().fit(*inputs)
        if len(inputs) != 1:
            raise TypeError(f"{_STAGE}.fit takes one input (a table or an iterable of tables), got {len(inputs)}")
        last = None
        for last in self.fit_versions(inputs[0]):
            pass
        return last

    def _fit(self, *tables: pa.Table) -> PipelineModel:
        return self.fit(tables[0])

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._param_values.items())
        return f"{type(self).__name__}({self._initial!r}{', ' if shown else ''}{shown})"
