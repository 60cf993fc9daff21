"""Univariate hypothesis tests of each feature against the label, as Flink ML 2.x's ``ANOVATest``,
``ChiSqTest`` and ``FValueTest`` (the tests Spark's ``UnivariateFeatureSelector`` ranks by).

Each is an ``AlgoOperator`` over a vector column ``features_col`` and a numeric ``label_col``.
``transform`` returns one row with one value per feature (``p_values`` and the statistic as
dense vectors, ``degrees_of_freedom`` as an integer list), or with ``flatten=True`` one row per
feature (``feature_index``, ``p_value``, ``degree_of_freedom``, and ``statistic`` / ``f_value``).
The kernels (:func:`anova_test`, :func:`chi_square_test`, :func:`f_value_test`) take arrays.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.stats.univariate import FValueTest
    >>> t = {"features": [[1.0, 5.0], [2.0, 3.0], [3.0, 4.0], [4.0, 1.0]], "label": [1.1, 1.9, 3.2, 3.9]}
    >>> FValueTest(flatten=True).transform(t).column("degree_of_freedom").to_pylist()
    [2, 2]
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sps
from scipy import stats as sst

from flowlearn.api import AlgoOperator
from flowlearn.data.columns import numeric_column, vector_column
from flowlearn.linalg import dense_vector_type, from_numpy, is_dense, is_vector_type
from flowlearn.params import HasFeaturesCol, HasLabelCol, Param

__all__ = ["ANOVATest", "ChiSqTest", "FValueTest", "anova_test", "chi_square_test", "f_value_test"]

_SIZE_KEY = b"flowlearn.size"


def _column_sums_sq(x: np.ndarray | sps.csr_matrix) -> np.ndarray:
    return np.asarray(x.multiply(x).sum(axis=0)).ravel() if sps.issparse(x) else np.einsum("ij,ij->j", x, x)


def anova_test(x: np.ndarray | sps.csr_matrix, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-way ANOVA of each feature (column of ``x``) grouped by ``label`` (categorical):
    ``(p_values, degrees_of_freedom, f_values)``. The degrees of freedom are Flink ML's
    ``(k - 1) + (n - k) = n - 1`` for ``k`` classes and ``n`` rows; the F statistic has
    ``(k - 1, n - k)`` degrees of freedom (scikit-learn's ``f_classif``, SciPy's ``f_oneway``).

    Example:
        >>> import numpy as np
        >>> p, dof, f = anova_test(np.array([[1.0], [2.0], [5.0], [6.0]]), np.array([0.0, 0.0, 1.0, 1.0]))
        >>> float(f[0]), int(dof[0])
        (32.0, 3)
    """
    n = x.shape[0]
    classes, codes = np.unique(label, return_inverse=True)
    k = len(classes)
    if k < 2:
        raise ValueError(f"ANOVATest: the label holds {k} class(es); the test needs at least 2 classes")
    if n <= k:
        raise ValueError(f"ANOVATest: {n} rows for {k} classes; the test needs more rows than classes")
    if not sps.issparse(x):
        x = x - x.mean(axis=0)      # the statistic does not move with a shift; centring avoids cancellation
    member = sps.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(k, n))
    class_sums = member @ x
    class_sums = np.asarray(class_sums.todense()) if sps.issparse(class_sums) else class_sums
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    total = class_sums.sum(axis=0)
    ss_total = _column_sums_sq(x) - total * total / n
    ss_between = (class_sums * class_sums / counts[:, None]).sum(axis=0) - total * total / n
    ss_within = ss_total - ss_between
    dfb, dfw = k - 1, n - k
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss_between / dfb) / (ss_within / dfw)
    return sst.f.sf(f, dfb, dfw), np.full(x.shape[1], dfb + dfw, dtype=np.int64), f


def f_value_test(x: np.ndarray | sps.csr_matrix, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The F-test of each feature's linear correlation ``r`` with a continuous label:
    ``F = r^2 / (1 - r^2) * (n - 2)`` with ``(1, n - 2)`` degrees of freedom; returns
    ``(p_values, degrees_of_freedom, f_values)`` (scikit-learn's ``f_regression``). A constant
    feature has no correlation: its F and p-value are NaN, as in Flink ML.

    Example:
        >>> import numpy as np
        >>> p, dof, f = f_value_test(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([1.0, 3.0, 2.0, 4.0]))
        >>> round(float(f[0]), 4), int(dof[0])
        (3.5556, 2)
    """
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"FValueTest: {n} rows; the test needs at least 3 rows (n - 2 degrees of freedom)")
    yc = label - label.mean()
    if sps.issparse(x):
        mean = np.asarray(x.mean(axis=0)).ravel()
        cov = np.asarray(x.T @ yc).ravel()         # sum(yc) = 0, so the feature mean drops out
        ssx = _column_sums_sq(x) - n * mean * mean
    else:
        xc = x - x.mean(axis=0)
        cov = yc @ xc
        ssx = np.einsum("ij,ij->j", xc, xc)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(ssx * float(yc @ yc))
        f = r * r / (1.0 - r * r) * (n - 2)
    return sst.f.sf(f, 1, n - 2), np.full(x.shape[1], n - 2, dtype=np.int64), f


def _contingency(rows: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom of a contingency table (categories x labels)."""
    rows = rows[rows.sum(axis=1) > 0]
    expected = np.outer(rows.sum(axis=1), rows.sum(axis=0)) / rows.sum()
    dof = (rows.shape[0] - 1) * (rows.shape[1] - 1)
    if dof == 0:
        return 0.0, 0
    return float((((rows - expected) ** 2) / expected).sum()), dof


def chi_square_test(x: np.ndarray | sps.csr_matrix, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson's chi-squared test of independence of each feature and the label, both read as
    categorical (each distinct value a category), as Flink ML's and Spark's ``ChiSqTest``: for each
    feature the (value, label) contingency table of counts gives ``sum((O - E)^2 / E)`` with
    ``(values - 1) * (labels - 1)`` degrees of freedom (SciPy's ``chi2_contingency`` without Yates'
    correction). With 0 degrees of freedom the statistic is 0 and the p-value 1.
    Returns ``(p_values, degrees_of_freedom, statistics)``.

    This is not scikit-learn's ``chi2`` (which treats features as counts).

    Example:
        >>> import numpy as np
        >>> p, dof, s = chi_square_test(np.array([[0.0], [0.0], [1.0], [1.0]]), np.array([0.0, 0.0, 1.0, 1.0]))
        >>> float(s[0]), int(dof[0]), round(float(p[0]), 4)
        (4.0, 1, 0.0455)
    """
    n, d = x.shape
    labels, lcodes = np.unique(label, return_inverse=True)
    nl = len(labels)
    label_counts = np.bincount(lcodes, minlength=nl)
    stat = np.zeros(d)
    dof = np.zeros(d, dtype=np.int32)
    if sps.issparse(x):
        xc = sps.csc_matrix(x)
        xc.eliminate_zeros()
    for j in range(d):     # one vectorized contingency table per feature
        if sps.issparse(x):
            lo, hi = xc.indptr[j], xc.indptr[j + 1]
            cats, vcodes = np.unique(xc.data[lo:hi], return_inverse=True)
            rows = np.bincount(vcodes * nl + lcodes[xc.indices[lo:hi]],
                               minlength=len(cats) * nl).reshape(-1, nl)
            rows = np.vstack([rows, label_counts - rows.sum(axis=0)])   # the implicit zeros
        else:
            cats, vcodes = np.unique(x[:, j], return_inverse=True)
            rows = np.bincount(vcodes * nl + lcodes, minlength=len(cats) * nl).reshape(-1, nl)
        stat[j], dof[j] = _contingency(rows.astype(np.float64))
    p = np.where(dof > 0, sst.chi2.sf(stat, np.maximum(dof, 1)), 1.0)
    return p, dof, stat


class _UnivariateTest(HasFeaturesCol, HasLabelCol, AlgoOperator):
    flatten = Param(bool, default=False,
                    doc="If False, one row with a value per feature in each column; if True, one row per feature.")

    _STAT = "statistic"
    _STATS = "statistics"
    _DOF_TYPE = pa.int64()

    def _kernel(self, x, y):
        raise NotImplementedError

    def _dense_only(self) -> bool:
        return False

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        for param, col in (("features_col", self.features_col), ("label_col", self.label_col)):
            if col not in input_schema.names:
                raise ValueError(f"{stage}: input column '{col}' (parameter '{param}') is missing; the input has "
                                 f"columns {input_schema.names}")
        field = input_schema.field(self.features_col)
        if not is_vector_type(field.type):
            raise TypeError(f"{stage}: column '{self.features_col}' has type {field.type}, expected a vector column")
        if self.flatten:
            return pa.schema([("feature_index", pa.int32()), ("p_value", pa.float64()),
                              ("degree_of_freedom", self._DOF_TYPE), (self._STAT, pa.float64())])
        size = field.type.list_size if is_dense(field.type) else None
        if size is None and field.metadata and _SIZE_KEY in field.metadata:
            size = int(field.metadata[_SIZE_KEY])
        if size is None:
            raise ValueError(f"{stage}: the size of the vectors in column '{self.features_col}' is not declared in "
                             f"its type or field metadata {_SIZE_KEY!r}, so the output vector size is unknown "
                             f"before running; set flatten=True for a schema without it")
        return pa.schema([("p_values", dense_vector_type(size)), ("degrees_of_freedom", pa.list_(self._DOF_TYPE)),
                          (self._STATS, dense_vector_type(size))])

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        x = vector_column(t, self.features_col, stage, param="features_col")
        y = numeric_column(t, self.label_col, stage, param="label_col")
        if t.num_rows == 0:
            raise ValueError(f"{stage}: needs at least one row to test; the input table is empty")
        p, dof, s = self._kernel(x, y)
        if self.flatten:
            return pa.table({"feature_index": pa.array(np.arange(len(p), dtype=np.int32)),
                             "p_value": pa.array(p, pa.float64()),
                             "degree_of_freedom": pa.array(dof, self._DOF_TYPE),
                             self._STAT: pa.array(s, pa.float64())})
        return pa.table({"p_values": from_numpy(p[None, :]),
                         "degrees_of_freedom": pa.array([dof.tolist()], pa.list_(self._DOF_TYPE)),
                         self._STATS: from_numpy(s[None, :])})


class ANOVATest(_UnivariateTest):
    """One-way ANOVA F-test of each continuous feature against a categorical label, as Flink ML's
    ``ANOVATest`` (see :func:`anova_test`; equals scikit-learn's ``f_classif``).

    Input: ``features_col`` (vector), ``label_col`` (numeric, each value a class). Output columns:
    ``p_values`` (vector), ``degrees_of_freedom`` (list of int64, ``n - 1`` as Flink ML),
    ``f_values`` (vector); with ``flatten=True``: ``feature_index``, ``p_value``,
    ``degree_of_freedom``, ``f_value``, one row per feature.

    Example:
        >>> from flowlearn.stats.univariate import ANOVATest
        >>> t = {"features": [[1.0, 4.0], [2.0, 4.5], [5.0, 3.0], [6.0, 4.0]], "label": [0, 0, 1, 1]}
        >>> r = ANOVATest().transform(t)
        >>> [round(v, 3) for v in r.column("f_values")[0].as_py()], r.column("degrees_of_freedom").to_pylist()
        ([32.0, 1.8], [[3, 3]])
    """

    _STAT = "f_value"
    _STATS = "f_values"

    def _kernel(self, x, y):
        return anova_test(x, y)


class FValueTest(_UnivariateTest):
    """F-test of each continuous feature's linear correlation with a continuous label, as Flink
    ML's ``FValueTest`` (see :func:`f_value_test`; equals scikit-learn's ``f_regression``).

    Output columns as :class:`ANOVATest` (``p_values``, ``degrees_of_freedom`` = ``n - 2``,
    ``f_values``; flattened ``feature_index``, ``p_value``, ``degree_of_freedom``, ``f_value``).

    Example:
        >>> from flowlearn.stats.univariate import FValueTest
        >>> t = {"features": [[1.0], [2.0], [3.0], [4.0]], "label": [1.0, 3.0, 2.0, 4.0]}
        >>> r = FValueTest().transform(t)
        >>> round(r.column("f_values")[0].as_py()[0], 4), round(r.column("p_values")[0].as_py()[0], 4)
        (3.5556, 0.2)
    """

    _STAT = "f_value"
    _STATS = "f_values"

    def _kernel(self, x, y):
        return f_value_test(x, y)


class ChiSqTest(_UnivariateTest):
    """Pearson's chi-squared test of independence of each categorical feature and a categorical
    label, as Flink ML's ``ChiSqTest`` (see :func:`chi_square_test`): every distinct value of a
    feature is a category, and the test runs on its contingency table against the label.

    Output columns: ``p_values`` (vector), ``degrees_of_freedom`` (list of int32),
    ``statistics`` (vector); with ``flatten=True``: ``feature_index``, ``p_value``,
    ``degree_of_freedom``, ``statistic``. Flink ML rounds the p-values and statistics to 11
    decimals; flowlearn returns them unrounded.

    Example:
        >>> from flowlearn.stats.univariate import ChiSqTest
        >>> t = {"features": [[0.0, 1.0], [0.0, 2.0], [1.0, 1.0], [1.0, 2.0]], "label": [0, 0, 1, 1]}
        >>> ChiSqTest(flatten=True).transform(t).select(["feature_index", "statistic"]).to_pylist()
        [{'feature_index': 0, 'statistic': 4.0}, {'feature_index': 1, 'statistic': 0.0}]
    """

    _DOF_TYPE = pa.int32()

    def _kernel(self, x, y):
        return chi_square_test(x, y)
