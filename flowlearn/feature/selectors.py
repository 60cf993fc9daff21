"""Feature selectors with Flink ML 2.x semantics: ``UnivariateFeatureSelector`` (ANOVA F, Pearson
chi-squared or F-regression tests, then numTopFeatures / percentile / fpr / fdr / fwe) and
``VarianceThresholdSelector`` (drop dimensions whose population variance is not above a
threshold). Both fit in one pass (``flowlearn.api.OnePassEstimator``): their states are
mergeable sufficient statistics (per-class moments, co-moments, contingency counts, moments).

The statistic kernels are plain functions, shared with ``flowlearn.stats`` (``ANOVATest``,
``ChiSqTest``, ``FValueTest``). Each returns ``(statistics, p_values, degrees_of_freedom)``, one
entry per feature, p-values from ``scipy.stats`` survival functions:

* :func:`anova_f_test` / :func:`anova_f_from_groups`: one-way ANOVA F of each continuous feature
  against a categorical label (scikit-learn's ``f_classif``); degrees of freedom ``n - 1`` as
  Flink ML's ``ANOVATest`` reports them (the F distribution itself has ``(k - 1, n - k)``);
* :func:`f_regression_test` / :func:`f_regression_from_moments`: univariate linear regression F of
  each continuous feature against a continuous label (scikit-learn's ``f_regression``);
  degrees of freedom ``n - 2``;
* :func:`chi2_independence_test` / :func:`chi2_from_contingency`: Pearson's chi-squared test of
  independence between each categorical feature and a categorical label (Spark's and Flink ML's
  ``ChiSqTest``; ``scipy.stats.chi2_contingency`` without continuity correction). This is *not*
  scikit-learn's ``chi2``, which treats features as counts per class.

Example:
    >>> import numpy as np
    >>> x = np.array([[1.0, 5.0], [2.0, 5.5], [8.0, 5.2], [9.0, 5.1]])
    >>> f, p, dof = anova_f_test(x, np.array([0.0, 0.0, 1.0, 1.0]))
    >>> np.round(f, 3).tolist(), dof.tolist()
    ([98.0, 0.154], [3, 3])
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pyarrow as pa
import scipy.sparse as sps
import scipy.stats

from flowlearn.api import Model, OnePassEstimator
from flowlearn.data.columns import check_squares, numeric_column, vector_column, with_column
from flowlearn.feature.scalers import _empty_state, _merge_moments, _moments, _state_rows, _state_table, _VEC
from flowlearn.linalg import SPARSE_VECTOR, SparseVector, dense_vector_type, from_csr, from_numpy, is_sparse
from flowlearn.params import (REQUIRED, HasFeaturesCol, HasInputCol, HasLabelCol, HasOutputCol, Param, gt_eq,
                              in_array)

# The statistic kernels (anova_f_test, anova_f_from_groups, f_regression_test,
# f_regression_from_moments, chi2_independence_test, chi2_from_contingency, select_by_p_values) are
# imported from this module by name; fl.feature exports only the stages.
__all__ = [
    "UnivariateFeatureSelector",
    "UnivariateFeatureSelectorModel",
    "VarianceThresholdSelector",
    "VarianceThresholdSelectorModel",
]


# --------------------------------------------------------------------------------------------
# statistic kernels (shared with flowlearn.stats)


_MAX_CELLS = 1 << 22      # counts of the one-bincount path: features x values x classes
_BLOCK_ROWS = 1 << 18


def _labels_index(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, index of each row's class)``, as ``np.unique``. Integral labels of a small
    range (the usual class coding) are indexed by counting instead of sorting."""
    if y.ndim == 1 and len(y):
        lo, hi = float(y.min()), float(y.max())
        if math.isfinite(lo) and math.isfinite(hi) and hi - lo < _MAX_CELLS:
            code = y.astype(np.int64)
            if np.array_equal(code, y):
                code -= int(lo)
                present = np.bincount(code, minlength=int(hi - lo) + 1) > 0
                inv = (np.cumsum(present) - 1)[code]
                classes = np.empty(int(present.sum()), dtype=y.dtype)
                classes[inv] = y   # the labels' own values (as np.unique returns them)
                return classes, inv
    classes, inv = np.unique(y, return_inverse=True)
    return classes, inv.ravel()


def anova_f_from_groups(counts: np.ndarray, means: np.ndarray, m2: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-way ANOVA F per feature from per-class summaries: ``counts`` (k,), ``means`` and
    ``m2`` (k, d: class means and sums of squared deviations from them).

    Returns ``(f_values, p_values, dof)`` with ``dof = n - 1`` for every feature (Flink ML's
    ``ANOVATest``); a feature constant within every class and across them gets NaN, one constant
    within classes only gets F = inf and p = 0 (as scikit-learn's ``f_classif``).
    """
    counts = np.asarray(counts, dtype=np.float64)
    means, m2 = np.atleast_2d(means), np.atleast_2d(m2)
    k, n = len(counts), counts.sum()
    if k < 2 or n <= k:
        raise ValueError(f"ANOVA F test needs at least 2 classes and more rows than classes; got {k} classes "
                         f"and {int(n)} rows")
    grand = counts @ means / n
    ss_between = counts @ (means - grand) ** 2
    ss_within = m2.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss_between / (k - 1)) / (ss_within / (n - k))
    p = scipy.stats.f.sf(f, k - 1, n - k)
    return f, p, np.full(f.shape, int(n) - 1, dtype=np.int64)


def anova_f_test(x: np.ndarray | sps.spmatrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ANOVA F of each column of ``x`` (dense or sparse, rows x features) against the class labels
    ``y``: :func:`anova_f_from_groups` of the per-class summaries."""
    return anova_f_from_groups(*_class_moments(x, y)[1:])


def _class_moments(x: np.ndarray | sps.spmatrix, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(classes, counts, means, m2)`` of the rows of ``x`` grouped by ``y``."""
    classes, inv = _labels_index(y)
    k, n = len(classes), x.shape[0]
    onehot = sps.csr_matrix((np.ones(n), (inv, np.arange(n))), shape=(k, n))
    counts = np.bincount(inv, minlength=k).astype(np.float64)
    sums = onehot @ x
    sums = sums.toarray() if sps.issparse(sums) else np.asarray(sums)
    means = sums / counts[:, None]
    if sps.issparse(x):
        sq = onehot @ x.multiply(x)
        sq = sq.toarray() if sps.issparse(sq) else np.asarray(sq)
        m2 = np.maximum(sq - counts[:, None] * means ** 2, 0.0)
    else:
        m2 = np.asarray(onehot @ (x - means[inv]) ** 2)
    return classes, counts.astype(np.int64), means, m2


def f_regression_from_moments(n: int, mean_x: np.ndarray, mean_y: float, m2_x: np.ndarray, m2_y: float,
                              c_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Univariate regression F per feature from ``n`` rows' means, sums of squared deviations
    (``m2_x`` per feature, ``m2_y``) and co-moments ``c_xy`` (sum of ``(x - mean_x)(y - mean_y)``):
    ``F = r^2 / (1 - r^2) * (n - 2)``, p from F(1, n - 2). Returns ``(f_values, p_values, dof)``."""
    if n < 3:
        raise ValueError(f"F-regression test needs at least 3 rows, got {n}")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.asarray(c_xy, dtype=np.float64) / np.sqrt(np.asarray(m2_x, dtype=np.float64) * m2_y)
        r2 = np.minimum(r * r, 1.0)
        f = r2 / (1.0 - r2) * (n - 2)
    p = scipy.stats.f.sf(f, 1, n - 2)
    return f, p, np.full(f.shape, n - 2, dtype=np.int64)


def f_regression_test(x: np.ndarray | sps.spmatrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F-regression of each column of ``x`` (dense or sparse) against the continuous label ``y``."""
    return f_regression_from_moments(*_regression_moments(x, np.asarray(y, dtype=np.float64)))


@numba.njit(cache=True)
def _dense_co_moments(x, y):
    """``(mean_x, m2_x, c_xy, mean_y, m2_y)`` of a row-major 2-D ``x`` and ``y``: two passes over
    the rows (means, then deviations), without the temporaries NumPy's expressions allocate."""
    n, d = x.shape
    mx = np.zeros(d)
    my = 0.0
    for i in range(n):
        my += y[i]
        for j in range(d):
            mx[j] += x[i, j]
    my /= n
    for j in range(d):
        mx[j] /= n
    m2x = np.zeros(d)
    cxy = np.zeros(d)
    m2y = 0.0
    for i in range(n):
        dy = y[i] - my
        m2y += dy * dy
        for j in range(d):
            dx = x[i, j] - mx[j]
            m2x[j] += dx * dx
            cxy[j] += dx * dy
    return mx, m2x, cxy, my, m2y


def _regression_moments(x: np.ndarray | sps.spmatrix, y: np.ndarray) -> tuple:
    n = x.shape[0]
    if not sps.issparse(x):
        mx, m2x, cxy, my, m2y = _dense_co_moments(np.ascontiguousarray(x, dtype=np.float64),
                                                  np.ascontiguousarray(y, dtype=np.float64))
        return n, mx, float(my), m2x, float(m2y), cxy
    n_, mean_x, m2_x = _moments(x)
    mean_y = float(y.mean())
    yc = y - mean_y
    c = x.T @ yc  # sum of x * (y - mean_y) = sum of (x - mean_x)(y - mean_y)
    return n, mean_x, mean_y, m2_x, float(yc @ yc), np.asarray(c, dtype=np.float64).ravel()


def chi2_from_contingency(feature: np.ndarray, value: np.ndarray, label: np.ndarray, count: np.ndarray,
                          label_counts: np.ndarray, num_features: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson's chi-squared test of independence per feature from sparse contingency counts.

    ``feature``, ``value``, ``label``, ``count`` list the observed cells whose value is non-zero
    (each ``(feature, value, label)`` once, ``label`` an index into ``label_counts``);
    ``label_counts`` holds each label's row count. The cells of value 0 are what the non-zero
    cells leave of each label's rows, so dense and sparse inputs share one form.

    Returns ``(statistics, p_values, dof)``; ``dof = (distinct values - 1) * (labels - 1)``, and a
    feature with ``dof = 0`` gets statistic 0 and p = 1 (as Flink ML's ``ChiSqTest``).
    """
    feature = np.asarray(feature, dtype=np.int64)
    label = np.asarray(label, dtype=np.int64)
    count = np.asarray(count, dtype=np.float64)
    label_counts = np.asarray(label_counts, dtype=np.float64)
    k, n, d = len(label_counts), label_counts.sum(), num_features
    nonzero_by_label = np.zeros((d, k))
    np.add.at(nonzero_by_label, (feature, label), count)
    zeros = label_counts[None, :] - nonzero_by_label  # (d, k) counts of value 0
    has_zero = zeros.sum(axis=1) > 0
    distinct = has_zero.astype(np.int64)
    obs = np.zeros(d)
    if len(feature):
        # group the cells by (feature, value): each group is one row of a feature's contingency table
        value = np.asarray(value, dtype=np.float64)
        order = np.lexsort((value, feature))
        fo, vo = feature[order], value[order]
        start = np.r_[True, (fo[1:] != fo[:-1]) | (vo[1:] != vo[:-1])]
        gid = np.cumsum(start) - 1
        distinct += np.bincount(fo[start], minlength=d)
        row_tot = np.bincount(gid, weights=count[order])[gid]
        c, lab = count[order], label[order]
        obs = np.bincount(fo, weights=c ** 2 / (row_tot * label_counts[lab] / n), minlength=d)
    zero_tot = zeros.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero_part = np.where(has_zero[:, None] & (zeros > 0),
                             zeros ** 2 / (zero_tot[:, None] * label_counts[None, :] / n), 0.0).sum(axis=1)
    stat = np.maximum(obs + zero_part - n, 0.0)
    labels_seen = int((label_counts > 0).sum())
    dof = (distinct - 1) * (labels_seen - 1)
    p = np.ones(d)
    pos = dof > 0
    p[pos] = scipy.stats.chi2.sf(stat[pos], dof[pos])
    stat[~pos] = 0.0
    return stat, p, dof.astype(np.int64)


def _small_integer_contingency(x: np.ndarray, inv: np.ndarray, k: int) -> tuple[np.ndarray, ...] | None:
    """The non-zero cells of :func:`_contingency` when every value of the dense ``x`` is an
    integer of a small range (the usual categorical coding): every (feature, value, label) triple
    gets its slot of one ``bincount``, in row blocks, instead of a sort per feature. ``None`` when
    ``x`` holds other values (NaN, infinity, fractions, a wide range)."""
    n, d = x.shape
    if n == 0 or d == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo != math.floor(lo) or hi - lo >= _MAX_CELLS:
        return None
    r = int(hi - lo) + 1
    if d * r * k > _MAX_CELLS:
        return None
    base = (np.arange(d, dtype=np.int64) * r - int(lo))[None, :]
    cnt = np.zeros(d * r * k, dtype=np.int64)
    for start in range(0, n, _BLOCK_ROWS):
        block = x[start:start + _BLOCK_ROWS]
        keys = block.astype(np.int64)
        if not np.array_equal(keys, block):
            return None
        keys += base
        keys *= k
        keys += inv[start:start + _BLOCK_ROWS, None]
        cnt += np.bincount(keys.ravel(), minlength=d * r * k)
    cell = np.flatnonzero(cnt)
    value = (cell // k) % r + lo
    cell = cell[value != 0]
    return cell // (r * k), ((cell // k) % r + lo).astype(np.float64), cell % k, cnt[cell]


def _contingency(x: np.ndarray | sps.spmatrix, inv: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Non-zero contingency cells ``(feature, value, label, count)`` and ``label_counts`` of ``x``
    with rows labelled by class index ``inv`` (``k`` classes): per feature, its non-zero values are
    factorized and counted with their labels in one ``bincount``."""
    label_counts = np.bincount(inv, minlength=k)
    n, d = x.shape
    if not sps.issparse(x):
        cells = _small_integer_contingency(x, inv, k)
        if cells is not None:
            return (*cells, label_counts)
    csc = x.tocsc() if sps.issparse(x) else None
    fs, vs, ls, cs = [], [], [], []
    for j in range(d):  # per feature, vectorized over the rows
        if csc is not None:
            lo, hi = csc.indptr[j], csc.indptr[j + 1]
            col, labs = csc.data[lo:hi], inv[csc.indices[lo:hi]]
        else:
            col, labs = x[:, j], inv
        nz = col != 0
        if not nz.any():
            continue
        vals, vinv = np.unique(col[nz] + 0.0, return_inverse=True)  # + 0.0: -0.0 is never stored
        cnt = np.bincount(vinv.ravel() * k + labs[nz], minlength=len(vals) * k)
        cell = np.flatnonzero(cnt)
        fs.append(np.full(len(cell), j, np.int64)), vs.append(vals[cell // k])
        ls.append((cell % k).astype(np.int64)), cs.append(cnt[cell].astype(np.int64))
    if not fs:
        e = np.zeros(0)
        return e.astype(np.int64), e, e.astype(np.int64), e.astype(np.int64), label_counts
    return np.concatenate(fs), np.concatenate(vs), np.concatenate(ls), np.concatenate(cs), label_counts


def chi2_independence_test(x: np.ndarray | sps.spmatrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson chi-squared independence test of each column of ``x`` (categorical values, dense or
    sparse) against the class labels ``y`` (see :func:`chi2_from_contingency`)."""
    classes, inv = _labels_index(y)
    f, v, lab, cnt, label_counts = _contingency(x, inv, len(classes))
    return chi2_from_contingency(f, v, lab, cnt, label_counts, x.shape[1])


def select_by_p_values(p_values: np.ndarray, mode: str, threshold: float) -> np.ndarray:
    """The selected feature indices (ascending) for Flink ML's selection modes: ``numTopFeatures``
    (the ``threshold`` lowest p-values, ties by index), ``percentile`` (the ``int(d * threshold)``
    lowest), ``fpr`` (p < threshold), ``fdr`` (Benjamini-Hochberg: the ``i`` lowest where the
    ``i``-th lowest p < threshold * i / d) and ``fwe`` (p < threshold / d). NaN p-values sort last
    and are never below a threshold."""
    p = np.asarray(p_values, dtype=np.float64)
    d = len(p)
    order = np.lexsort((np.arange(d), np.where(np.isnan(p), np.inf, p), np.isnan(p)))
    with np.errstate(invalid="ignore"):
        if mode == "numTopFeatures":
            chosen = order[:min(d, int(threshold))]
        elif mode == "percentile":
            chosen = order[:min(d, int(d * threshold))]
        elif mode == "fpr":
            chosen = np.flatnonzero(p < threshold)
        elif mode == "fwe":
            chosen = np.flatnonzero(p < threshold / d)
        elif mode == "fdr":
            below = np.flatnonzero(p[order] < threshold / d * np.arange(1, d + 1))
            chosen = order[:below[-1] + 1] if below.size else order[:0]
        else:
            raise ValueError(f"unknown selection mode {mode!r}")
    return np.sort(chosen).astype(np.int32)


# --------------------------------------------------------------------------------------------
# shared model machinery: a model selecting vector dimensions by index


def _indices_table(indices: np.ndarray, num_features: int) -> pa.Table:
    return pa.table({"num_features": pa.array([num_features], pa.int32()),
                     "indices": pa.array([np.asarray(indices, dtype=np.int32).tolist()], pa.list_(pa.int32()))})


class _SelectorModel(Model):
    """Selects the model's ``indices`` (ascending) from the vectors of ``_in_param``."""

    _in_param = "features_col"

    def _in_col(self) -> str:
        return getattr(self, self._in_param)

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1 or not {"num_features", "indices"} <= set(tables[0].column_names) \
                or tables[0].num_rows != 1:
            raise ValueError(f"{stage}: model data is one table of one row with columns 'num_features' (int) and "
                             f"'indices' (list<int32>), got {[t.schema for t in tables]}")
        t = tables[0]
        d = t.column("num_features")[0].as_py()
        idx = np.asarray(t.column("indices")[0].as_py() or [], dtype=np.int64)
        if d is None or d < 0 or (idx.size and (idx.min() < 0 or idx.max() >= d or (np.diff(idx) <= 0).any())):
            raise ValueError(f"{stage}: model data 'indices' must be strictly increasing in [0, num_features = {d}); "
                             f"got {idx.tolist()[:20]}")
        self._dim, self._indices = int(d), idx.astype(np.int32)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        stage, col = type(self).__name__, self._in_col()
        if col not in input_schema.names:
            raise ValueError(f"{stage}: input column '{col}' (parameter '{self._in_param}') is missing; the input "
                             f"has columns {input_schema.names}")
        t = input_schema.field(col).type
        if is_sparse(t):
            field = pa.field(self.output_col, SPARSE_VECTOR,
                             metadata={b"flowlearn.size": str(len(self._indices)).encode()})
        elif pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
            field = pa.field(self.output_col, dense_vector_type(len(self._indices)))
        else:
            raise ValueError(f"{stage}: column '{col}' has type {t}, expected a vector column")
        names = input_schema.names
        if self.output_col in names:
            return input_schema.set(names.index(self.output_col), field)
        return input_schema.append(field)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        x = vector_column(t, self._in_col(), stage, param=self._in_param, size=self._dim, finite=False)
        if x.shape[0] == 0:
            x = sps.csr_matrix((0, self._dim)) if sps.issparse(x) else np.zeros((0, self._dim))
        out = from_csr(x[:, self._indices]) if sps.issparse(x) else from_numpy(x.take(self._indices, axis=1))
        return with_column(t, self.output_col, out)

    def row_fn(self):
        self._require_model()
        stage, col, out, d, idx = type(self).__name__, self._in_col(), self.output_col, self._dim, self._indices

        def fn(row: dict) -> None:
            try:
                v = row[col]
            except KeyError:
                raise ValueError(f"{stage}: input column '{col}' (parameter '{self._in_param}') is missing from the "
                                 f"row; the row has keys {list(row)}") from None
            if isinstance(v, SparseVector):
                if v.size != d:
                    raise ValueError(f"{stage}: column '{col}' holds a vector of size {v.size}, the model expects "
                                     f"size {d}")
                pos = np.searchsorted(idx, v.indices)
                pos_c = np.minimum(pos, max(len(idx) - 1, 0))
                hit = (pos < len(idx)) & (idx[pos_c] == v.indices) if len(idx) else np.zeros(len(v.indices), bool)
                row[out] = SparseVector.unchecked(len(idx), pos[hit].astype(np.int32), v.values[hit])
                return
            if v is None:
                raise ValueError(f"{stage}: column '{col}' is null in this row; drop or impute it first")
            a = np.asarray(v, dtype=np.float64)
            if a.shape != (d,):
                raise ValueError(f"{stage}: column '{col}' holds a vector of shape {a.shape}, the model expects "
                                 f"size {d}")
            row[out] = a[idx]

        return fn


def _finish_model(est: OnePassEstimator, model: _SelectorModel, indices: np.ndarray, d: int) -> Model:
    est.copy_params_to(model)
    return model.set_model_data(_indices_table(indices, d))


# --------------------------------------------------------------------------------------------
# UnivariateFeatureSelector

_CATEGORICAL, _CONTINUOUS = "categorical", "continuous"
_MODES = ["numTopFeatures", "percentile", "fpr", "fdr", "fwe"]


class _UnivariateParams(HasFeaturesCol, HasOutputCol):
    pass


class UnivariateFeatureSelector(_UnivariateParams, HasLabelCol, OnePassEstimator):
    """Selects features by a univariate test against the label, as Flink ML's
    ``UnivariateFeatureSelector``. The test follows ``feature_type`` and ``label_type``:

    ========================  ==========================  ======================================
    feature_type              label_type                  test
    ========================  ==========================  ======================================
    ``"categorical"``         ``"categorical"``           Pearson chi-squared independence test
    ``"continuous"``          ``"categorical"``           ANOVA F (``f_classif``)
    ``"continuous"``          ``"continuous"``            F-regression (``f_regression``)
    ========================  ==========================  ======================================

    and the features kept follow ``selection_mode`` with ``selection_threshold``
    (:func:`select_by_p_values`): ``numTopFeatures`` (default threshold 50), ``percentile``
    (0.1), ``fpr``, ``fdr``, ``fwe`` (0.05). Output vectors hold the kept dimensions in ascending
    order; sparse input stays sparse.

    Differences from Flink ML: p-values are survival functions (``scipy.stats.*.sf``) instead of
    ``1 - cdf``, so tiny p-values are not flattened to 0 and rank by their true size; they are not
    rounded to 11 decimals as Flink ML's ``ChiSqTest`` rounds them.

    Params: ``features_col`` ("features"), ``label_col`` ("label"), ``output_col`` ("output"),
    ``feature_type`` and ``label_type`` (required), ``selection_mode`` ("numTopFeatures"),
    ``selection_threshold`` (None: the mode's default).

    Example:
        >>> from flowlearn.feature.selectors import UnivariateFeatureSelector
        >>> t = {"features": [[1.0, 5.0, 0.0], [2.0, 5.5, 1.0], [8.0, 5.2, 0.0], [9.0, 5.1, 1.0]],
        ...      "label": [0.0, 0.0, 1.0, 1.0]}
        >>> sel = UnivariateFeatureSelector(feature_type="continuous", label_type="categorical",
        ...                                 selection_threshold=1)
        >>> sel.fit(t).transform(t).column("output").to_pylist()
        [[1.0], [2.0], [8.0], [9.0]]
    """

    feature_type = Param(str, default=REQUIRED, validator=in_array([_CATEGORICAL, _CONTINUOUS]),
                         doc="The feature type: 'categorical' or 'continuous'.")
    label_type = Param(str, default=REQUIRED, validator=in_array([_CATEGORICAL, _CONTINUOUS]),
                       doc="The label type: 'categorical' or 'continuous'.")
    selection_mode = Param(str, default="numTopFeatures", validator=in_array(_MODES),
                           doc="The feature selection mode: numTopFeatures, percentile, fpr, fdr or fwe.")
    selection_threshold = Param(float, default=None, validator=gt_eq(0),
                                doc="The bound of the selection: a count for numTopFeatures (default 50), a "
                                    "fraction in [0, 1] otherwise (default 0.1 for percentile, 0.05 for fpr, "
                                    "fdr and fwe).")

    def _test(self) -> str:
        ft, lt = self.feature_type, self.label_type
        if ft == _CATEGORICAL and lt == _CATEGORICAL:
            return "chi2"
        if ft == _CONTINUOUS and lt == _CATEGORICAL:
            return "anova"
        if ft == _CONTINUOUS and lt == _CONTINUOUS:
            return "fregression"
        raise ValueError(f"{type(self).__name__}: feature_type='{ft}' with label_type='{lt}' has no test; use "
                         f"categorical/categorical (chi-squared), continuous/categorical (ANOVA F) or "
                         f"continuous/continuous (F-regression)")

    def _threshold(self) -> float:
        mode, t = self.selection_mode, self.selection_threshold
        if t is None:
            return {"numTopFeatures": 50.0, "percentile": 0.1}.get(mode, 0.05)
        if mode == "numTopFeatures":
            if t < 1 or not float(t).is_integer():
                raise ValueError(f"{type(self).__name__}: parameter 'selection_threshold' = {t!r} must be a positive "
                                 f"integer for selection_mode='numTopFeatures'")
        elif t > 1:
            raise ValueError(f"{type(self).__name__}: parameter 'selection_threshold' = {t!r} must be in [0, 1] for "
                             f"selection_mode='{mode}'")
        return float(t)

    def _inputs(self, t: pa.Table) -> tuple[np.ndarray | sps.csr_matrix, np.ndarray]:
        stage = type(self).__name__
        x = vector_column(t, self.features_col, stage, param="features_col")
        y = numeric_column(t, self.label_col, stage, param="label_col")
        return x, y

    # Fit states: "anova": one row per class (label, count, mean, m2); "fregression": one row
    # (count, mean_x, m2_x, c_xy, mean_y, m2_y); "chi2": contingency cells of non-zero values
    # (kind=0: feature, value, label, count) and label totals (kind=1: label, count), with the
    # number of features in every row.

    def _partial(self, t: pa.Table) -> pa.Table:
        test = self._test()
        self._threshold()
        x, y = self._inputs(t)
        n, d = x.shape
        if test == "anova":
            if n == 0:
                return _empty_state(label=pa.float64(), count=pa.int64(), mean=_VEC, m2=_VEC)
            check_squares(x, self.features_col, type(self).__name__, "features_col", "variances")
            classes, counts, means, m2 = _class_moments(x, y)
            return pa.table({"label": pa.array(classes, pa.float64()), "count": pa.array(counts, pa.int64()),
                             "mean": pa.array(means.tolist(), _VEC), "m2": pa.array(m2.tolist(), _VEC)})
        if test == "fregression":
            if n == 0:
                return _fregression_state([])
            check_squares(x, self.features_col, type(self).__name__, "features_col", "variances")
            check_squares(y, self.label_col, type(self).__name__, "label_col", "variances")
            n, mx, my, m2x, m2y, cxy = _regression_moments(x, y)
            return _fregression_state([(n, mx, m2x, cxy, my, m2y)])
        classes, inv = _labels_index(y)
        f, v, lab, cnt, label_counts = _contingency(x, inv, len(classes))
        return _chi2_state(d, f, v, classes[lab] if len(lab) else np.zeros(0), cnt, classes, label_counts)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        test = self._test()
        stage = type(self).__name__
        if test == "anova":
            acc: dict[float, tuple] = {}
            for t in states:
                rows = _state_rows(stage, [t], ["mean", "m2"], ["count"])
                for lab, (c, m, q) in zip(t.column("label").to_pylist(), rows):
                    acc[lab] = _merge_moments(acc.get(lab, (0, None, None)), (c, m, q))
            if not acc:
                return states[0]
            labs = sorted(acc)
            return pa.table({"label": pa.array(labs, pa.float64()),
                             "count": pa.array([acc[k][0] for k in labs], pa.int64()),
                             "mean": pa.array([acc[k][1].tolist() for k in labs], _VEC),
                             "m2": pa.array([acc[k][2].tolist() for k in labs], _VEC)})
        if test == "fregression":
            rows = _fregression_rows(stage, states)
            if not rows:
                return states[0]
            n, mx, m2x, cxy, my, m2y = rows[0]
            for nb, mxb, m2xb, cxyb, myb, m2yb in rows[1:]:
                tot = n + nb
                dx, dy = mxb - mx, myb - my
                cxy = cxy + cxyb + dx * dy * (n * nb / tot)
                m2y = m2y + m2yb + dy ** 2 * (n * nb / tot)
                my = my + dy * nb / tot
                n, mx, m2x = _merge_moments((n, mx, m2x), (nb, mxb, m2xb))
            return _fregression_state([(n, mx, m2x, cxy, my, m2y)])
        t = pa.concat_tables([s.select(list(_CHI2_STATE.names)).cast(_CHI2_STATE) for s in states])
        dims = set(_unique_values(t.column("num_features")))
        if len(dims) > 1:
            raise ValueError(f"{stage}: the parts of the input hold vectors of sizes {sorted(dims)}; every row of one "
                             f"input needs vectors of one size")
        g = t.group_by(["kind", "feature", "value", "label"], use_threads=False).aggregate(
            [("count", "sum"), ("num_features", "max")])
        return g.rename_columns(["kind", "feature", "value", "label", "count", "num_features"]) \
            .select(list(_CHI2_STATE.names)).cast(_CHI2_STATE)

    def _finish(self, state: pa.Table) -> "UnivariateFeatureSelectorModel":
        test = self._test()
        threshold = self._threshold()
        stage = type(self).__name__
        if test == "anova":
            if state.num_rows < 2:
                raise ValueError(f"{stage}: the ANOVA F test needs at least 2 distinct labels in column "
                                 f"'{self.label_col}', got {state.num_rows}")
            rows = _state_rows(stage, [state], ["mean", "m2"], ["count"])
            counts = np.array([r[0] for r in rows])
            if counts.sum() <= len(counts):
                raise ValueError(f"{stage}: the ANOVA F test needs more rows than distinct labels in column "
                                 f"'{self.label_col}', got {int(counts.sum())} rows and {len(counts)} labels")
            _, p, _ = anova_f_from_groups(counts, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
            d = len(rows[0][1])
        elif test == "fregression":
            ((n, mx, m2x, cxy, my, m2y),) = _fregression_rows(stage, [self._merge([state])])
            if n < 3:
                raise ValueError(f"{stage}: the F-regression test needs at least 3 rows, got {n}")
            _, p, _ = f_regression_from_moments(n, mx, my, m2x, m2y, cxy)
            d = len(mx)
        else:
            state = self._merge([state])
            d = int(state.column("num_features")[0].as_py())
            kind = state.column("kind").to_numpy()
            lab_all = state.column("label").to_numpy()
            classes = np.unique(lab_all[kind == 1])
            label_counts = np.zeros(len(classes), dtype=np.int64)
            cnt = state.column("count").to_numpy()
            label_counts[np.searchsorted(classes, lab_all[kind == 1])] += cnt[kind == 1]
            cells = kind == 0
            _, p, _ = chi2_from_contingency(state.column("feature").to_numpy()[cells],
                                            state.column("value").to_numpy()[cells],
                                            np.searchsorted(classes, lab_all[cells]), cnt[cells], label_counts, d)
        return _finish_model(self, UnivariateFeatureSelectorModel(), select_by_p_values(p, self.selection_mode,
                                                                                        threshold), d)


_CHI2_STATE = pa.schema([("kind", pa.int8()), ("feature", pa.int32()), ("value", pa.float64()),
                         ("label", pa.float64()), ("count", pa.int64()), ("num_features", pa.int32())])


def _fregression_state(rows: list[tuple]) -> pa.Table:
    """The F-regression fit state: per part ``(count, mean_x, m2_x, c_xy, mean_y, m2_y)``."""
    cols = list(zip(*rows)) if rows else [[]] * 6
    return pa.table({"count": pa.array(cols[0], pa.int64()),
                     "mean_x": pa.array([np.asarray(v).tolist() for v in cols[1]], _VEC),
                     "m2_x": pa.array([np.asarray(v).tolist() for v in cols[2]], _VEC),
                     "c_xy": pa.array([np.asarray(v).tolist() for v in cols[3]], _VEC),
                     "mean_y": pa.array(cols[4], pa.float64()), "m2_y": pa.array(cols[5], pa.float64())})


def _fregression_rows(stage: str, states: list[pa.Table]) -> list[tuple]:
    rows = _state_rows(stage, states, ["mean_x", "m2_x", "c_xy"], ["count"])
    my = [v for t in states for v in t.column("mean_y").to_pylist()]
    m2y = [v for t in states for v in t.column("m2_y").to_pylist()]
    return [(n, mx, m2x, cxy, a, b) for (n, mx, m2x, cxy), a, b in zip(rows, my, m2y)]


def _unique_values(col: pa.ChunkedArray) -> list:
    return [v for v in col.unique().to_pylist() if v is not None]


def _chi2_state(d: int, f: np.ndarray, v: np.ndarray, lab: np.ndarray, cnt: np.ndarray, classes: np.ndarray,
                label_counts: np.ndarray) -> pa.Table:
    m, k = len(f), len(classes)
    return pa.table({
        "kind": pa.array(np.r_[np.zeros(m, np.int8), np.ones(k, np.int8)]),
        "feature": pa.array(np.r_[np.asarray(f, np.int32), np.full(k, -1, np.int32)]),
        "value": pa.array(np.r_[np.asarray(v, np.float64), np.zeros(k)]),
        "label": pa.array(np.r_[np.asarray(lab, np.float64), np.asarray(classes, np.float64)]),
        "count": pa.array(np.r_[np.asarray(cnt, np.int64), np.asarray(label_counts, np.int64)]),
        "num_features": pa.array(np.full(m + k, d, np.int32)),
    }, schema=_CHI2_STATE)


class UnivariateFeatureSelectorModel(_UnivariateParams, _SelectorModel):
    """The model fitted by :class:`UnivariateFeatureSelector`: keeps the selected dimensions.
    It only picks entries, so NaN and infinite values pass unchanged (as in Flink ML and Spark);
    null vectors are refused.

    Model data: one row with ``num_features`` (int32, the input vector size) and ``indices``
    (list<int32>, the kept dimensions, ascending).

    Example:
        >>> from flowlearn.feature.selectors import UnivariateFeatureSelectorModel
        >>> m = UnivariateFeatureSelectorModel().set_model_data({"num_features": [3], "indices": [[0, 2]]})
        >>> m.transform({"features": [[1.0, 2.0, 3.0]]}).column("output").to_pylist()
        [[1.0, 3.0]]
    """


# --------------------------------------------------------------------------------------------
# VarianceThresholdSelector


class _VarianceThresholdParams(HasInputCol, HasOutputCol):
    pass


class VarianceThresholdSelector(_VarianceThresholdParams, OnePassEstimator):
    """Removes the dimensions whose variance is not greater than ``variance_threshold``, as Flink
    ML's ``VarianceThresholdSelector``. The variance is the population one (divided by ``n``, as
    in Flink ML and scikit-learn's ``VarianceThreshold``; Spark MLlib's divides by ``n - 1``),
    computed from merged moments (Chan et al.), so no ``E[x^2] - E[x]^2`` cancellation turns a
    constant dimension into a tiny positive variance. The default threshold 0 removes the constant
    dimensions. Sparse input stays sparse; if no dimension is kept the output vectors have size 0.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``variance_threshold`` (0.0).

    Example:
        >>> from flowlearn.feature.selectors import VarianceThresholdSelector
        >>> t = {"input": [[1.0, 7.0, 0.0], [2.0, 7.0, 0.5], [3.0, 7.0, 0.0]]}
        >>> VarianceThresholdSelector(variance_threshold=0.1).fit(t).transform(t).column("output").to_pylist()
        [[1.0], [2.0], [3.0]]
    """

    variance_threshold = Param(float, default=0.0, validator=gt_eq(0),
                               doc="Dimensions with a variance not greater than this are removed.")

    def _partial(self, t: pa.Table) -> pa.Table:
        x = vector_column(t, self.input_col, type(self).__name__, param="input_col")
        if x.shape[0] == 0:
            return _empty_state(count=pa.int64(), mean=_VEC, m2=_VEC)
        check_squares(x, self.input_col, type(self).__name__, "input_col", "variances")
        n, mean, m2 = _moments(x)
        return _state_table(count=n, mean=mean, m2=m2)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        acc = (0, None, None)
        for row in _state_rows(type(self).__name__, states, ["mean", "m2"], ["count"]):
            acc = _merge_moments(acc, row)
        if acc[0] == 0:
            return _empty_state(count=pa.int64(), mean=_VEC, m2=_VEC)
        return _state_table(count=acc[0], mean=acc[1], m2=acc[2])

    def _finish(self, state: pa.Table) -> "VarianceThresholdSelectorModel":
        if state.num_rows != 1:
            state = self._merge([state])
        ((n, mean, m2),) = _state_rows(type(self).__name__, [state], ["mean", "m2"], ["count"])
        keep = np.flatnonzero(m2 / n > self.variance_threshold)
        return _finish_model(self, VarianceThresholdSelectorModel(), keep, len(mean))


class VarianceThresholdSelectorModel(_VarianceThresholdParams, _SelectorModel):
    """The model fitted by :class:`VarianceThresholdSelector`: keeps the dimensions whose variance
    was above the threshold. It only picks entries, so NaN and infinite values pass unchanged (as
    in Flink ML and Spark); null vectors are refused.

    Model data: one row with ``num_features`` (int32) and ``indices`` (list<int32>, ascending).

    Example:
        >>> from flowlearn.feature.selectors import VarianceThresholdSelectorModel
        >>> m = VarianceThresholdSelectorModel().set_model_data({"num_features": [2], "indices": [[1]]})
        >>> m.transform({"input": [[1.0, 2.0]]}).column("output").to_pylist()
        [[2.0]]
    """

    _in_param = "input_col"

