"""A tiny registered model for tests and benchmarks of model stores, followers and predictors.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.testing.models import AddK
    >>> AddK().set_model_data({"k": [2.0]}).transform({"x": [1.0]}).column("y").to_pylist()
    [3.0]
"""
from __future__ import annotations

import pyarrow as pa

from flowlearn.api import Model
from flowlearn.params import Param

__all__ = ["AddK"]


class AddK(Model):
    """``output = input + k`` (``k`` from model data table 0; further model data tables are
    carried along, e.g. as ballast to make a version large)."""

    input_col = Param(str, default="x")
    output_col = Param(str, default="y")

    def _load_model_data(self, tables):
        self._k = float(tables[0].column("k")[0].as_py())

    def _transform(self, t):
        return t.append_column(self.output_col, pa.array(t.column(self.input_col).to_numpy() + self._k))

    def row_fn(self):
        k, i, o = self._k, self.input_col, self.output_col

        def f(row):
            row[o] = float(row[i]) + k

        return f
