"""Univariate hypothesis tests of each feature against the label, as Flink ML 2.x's ``ANOVATest``,
``ChiSqTest`` and ``FValueTest`` (the tests Spark's ``UnivariateFeatureSelector`` ranks by).

Each is an ``AlgoOperator`` over a vector column ``features_col`` and a numeric ``label_col``.
``transform`` returns one row with one value per feature (``p_values`` and the statistic as
dense vectors, ``degrees_of_freedom`` as an integer list), or with ``flatten=True`` one row per
feature (``feature_index``, ``p_value``, ``degree_of_freedom``, and ``statistic`` / ``f_value``).
The statistic kernels are shared with ``UnivariateFeatureSelector``: they live in
``flowlearn.feature.selectors`` (``anova_f_test``, ``chi2_independence_test``,
``f_regression_test``).

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

from flowlearn.api import AlgoOperator, SchemaError
from flowlearn.data.columns import numeric_column, vector_column
from flowlearn.feature.selectors import anova_f_test, chi2_independence_test, f_regression_test
from flowlearn.data.schema import column_size
from flowlearn.linalg import dense_vector_type, from_numpy, is_vector_type
from flowlearn.params import HasFeaturesCol, HasLabelCol, Param

__all__ = ["ANOVATest", "ChiSqTest", "FValueTest"]

class _UnivariateTest(HasFeaturesCol, HasLabelCol, AlgoOperator):
    flatten = Param(bool, default=False,
                    doc="If False, one row with a value per feature in each column; if True, one row per feature.")

    _STAT = "statistic"
    _STATS = "statistics"
    _DOF_TYPE = pa.int64()

    def _kernel(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(statistics, p_values, degrees_of_freedom)`` per feature."""
        raise NotImplementedError

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        for param, col in (("features_col", self.features_col), ("label_col", self.label_col)):
            if col not in input_schema.names:
                raise SchemaError(f"{stage}: input column '{col}' (parameter '{param}') is missing; the input has "
                                  f"columns {input_schema.names}")
        field = input_schema.field(self.features_col)
        if not is_vector_type(field.type):
            raise SchemaError(f"{stage}: column '{self.features_col}' has type {field.type}, expected a vector "
                              f"column")
        if self.flatten:
            return pa.schema([("feature_index", pa.int32()), ("p_value", pa.float64()),
                              ("degree_of_freedom", self._DOF_TYPE), (self._STAT, pa.float64())])
        size = column_size(field)
        if size is None:
            raise SchemaError(f"{stage}: the size of the vectors in column '{self.features_col}' is declared neither "
                              f"by its type nor by its field metadata (flowlearn.size), so the size of the output "
                              f"vectors is unknown before running; set flatten=True for a schema without it")
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
        if x.shape[1] == 0:
            raise ValueError(f"{stage}: column '{self.features_col}' (parameter 'features_col') holds vectors of size "
                             f"0; there is no feature to test")
        try:
            s, p, dof = self._kernel(x, y)
        except ValueError as e:   # too few rows or classes for the test
            raise ValueError(f"{stage}: {e} (columns '{self.features_col}' and '{self.label_col}')") from None
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
    ``ANOVATest`` (kernel: ``flowlearn.feature.selectors.anova_f_test``; equals scikit-learn's ``f_classif``).

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
        return anova_f_test(x, y)


class FValueTest(_UnivariateTest):
    """F-test of each continuous feature's linear correlation with a continuous label, as Flink
    ML's ``FValueTest`` (kernel: ``flowlearn.feature.selectors.f_regression_test``; equals
    scikit-learn's ``f_regression``).

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
        return f_regression_test(x, y)


class ChiSqTest(_UnivariateTest):
    """Pearson's chi-squared test of independence of each categorical feature and a categorical
    label, as Flink ML's ``ChiSqTest`` (kernel: ``flowlearn.feature.selectors.chi2_independence_test``):
    every distinct value of a feature is a category, and the test runs on its contingency table
    against the label.

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
        return chi2_independence_test(x, y)
