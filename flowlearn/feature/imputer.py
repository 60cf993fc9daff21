"""``Imputer`` / ``ImputerModel``: fill missing values of numeric columns with a per-column
statistic (mean, median or most frequent value), with Flink ML 2.x semantics.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"a": [1.0, None, 3.0], "b": [float("nan"), 4.0, 4.0]})
    >>> model = fl.feature.Imputer(input_cols=["a", "b"], output_cols=["a2", "b2"]).fit(t)
    >>> out = model.transform(t)
    >>> out.column("a2").to_pylist(), out.column("b2").to_pylist()
    ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import Estimator, Model
from flowlearn.data.columns import first_bad_row, numeric_column, require_column, with_column
from flowlearn.params import HasInputCols, HasOutputCols, Param, in_array, in_range

__all__ = ["Imputer", "ImputerModel"]


class _ImputerModelParams(HasInputCols, HasOutputCols):
    missing_value = Param(float, default=float("nan"),
                          doc="The placeholder for missing values; all its occurrences (and nulls) are imputed.")

    def _check_cols(self) -> tuple[list[str], list[str]]:
        ins, outs = self.input_cols, self.output_cols
        if len(ins) != len(outs):
            raise ValueError(f"{type(self).__name__}: parameters 'input_cols' ({len(ins)} columns: {ins}) and "
                             f"'output_cols' ({len(outs)} columns: {outs}) must have the same length")
        return ins, outs

    def _missing_mask(self, t: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The column as float64 (nulls as NaN) and the mask of its missing entries."""
        stage = type(self).__name__
        col = require_column(t, name, stage, "input_cols")
        if pa.types.is_null(col.type):  # a column of nulls only (e.g. built from [None, None])
            return np.full(len(col), np.nan), np.ones(len(col), dtype=bool)
        x = numeric_column(t, name, stage, param="input_cols", allow_nan=True, allow_null=True)
        mv = self.missing_value
        if math.isnan(mv):
            return x, np.isnan(x)  # nulls were read as NaN
        miss = x == mv
        if col.null_count:
            miss |= np.asarray(pc.is_null(col).to_numpy(), dtype=bool)
        return x, miss


class Imputer(_ImputerModelParams, Estimator):
    """Completes missing values of numeric columns with the mean, median or most frequent value of
    each column, as Flink ML's ``Imputer``.

    Missing are: nulls, and values equal to ``missing_value`` (default NaN). The statistics are
    computed after dropping missing values and NaN (so with a numeric ``missing_value``, NaN is
    left out of the statistics too; at transform time, as in Flink ML and Spark, NaN is then not
    replaced because it is not the missing value). Each output column is ``double``.

    * ``mean``: the mean of the valid values.
    * ``median``: the median as Flink ML's quantile summary returns it when exact: the valid value
      of rank ``ceil(n / 2)`` (the lower median for even ``n``; scikit-learn averages the two middle
      values instead). flowlearn computes it exactly, which satisfies any ``relative_error``; the
      parameter is kept for Flink ML compatibility.
    * ``most_frequent``: the most frequent valid value; among ties the smallest.

    A column with no valid value, infinite values, and empty input are refused at fit.

    Params: ``input_cols`` (required), ``output_cols`` (required, same length), ``strategy``
    ("mean"), ``missing_value`` (NaN), ``relative_error`` (0.001, in [0, 1]).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"x": [1.0, -1.0, 5.0, 2.0]})
        >>> imp = fl.feature.Imputer(input_cols=["x"], output_cols=["y"], strategy="median", missing_value=-1.0)
        >>> imp.fit(t).transform(t).column("y").to_pylist()
        [1.0, 2.0, 5.0, 2.0]
    """

    strategy = Param(str, default="mean", validator=in_array(["mean", "median", "most_frequent"]),
                     doc="The imputation strategy: mean, median or most_frequent.")
    relative_error = Param(float, default=0.001, validator=in_range(0, 1),
                           doc="Relative error bound of the median (flowlearn computes it exactly).")

    def _fit(self, *tables: pa.Table) -> "ImputerModel":
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.fit takes exactly one input table, got {len(tables)}")
        (t,) = tables
        ins, _ = self._check_cols()
        for c in ins:
            require_column(t, c, stage, "input_cols")
        if t.num_rows == 0:
            raise ValueError(f"{stage}: fit needs at least one row; the input table is empty")
        strategy = self.strategy
        surrogates = []
        for c in ins:
            x, miss = self._missing_mask(t, c)
            valid = x[~miss & ~np.isnan(x)]
            if valid.size == 0:
                raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') has no valid value: all its "
                                 f"values are null, NaN or missing_value={self.missing_value!r}, so no surrogate "
                                 f"can be computed")
            if not np.isfinite(valid).all():
                bad = first_bad_row(np.isinf(x) & ~miss)
                raise ValueError(f"{stage}: column '{c}' has infinity at row {bad}; infinity is not a missing "
                                 f"value and makes the {strategy} meaningless; filter or clip such rows first")
            if strategy == "mean":
                s = float(valid.mean())
            elif strategy == "median":
                k = (valid.size - 1) // 2  # rank ceil(n/2), 0-based
                s = float(np.partition(valid, k)[k])
            else:
                values, counts = np.unique(valid, return_counts=True)
                s = float(values[int(np.argmax(counts))])  # values are sorted: ties go to the smallest
            surrogates.append(s)
        model = ImputerModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({"column": pa.array(ins, pa.string()),
                                              "surrogate": pa.array(surrogates, pa.float64())}))


class ImputerModel(_ImputerModelParams, Model):
    """The model fitted by :class:`Imputer`: replaces nulls and ``missing_value`` in each input
    column with that column's surrogate and writes the result (``double``) to the output column.

    Model data: one table with one row per fitted column: ``column`` (string, the input column
    name) and ``surrogate`` (double). Transforming a column the model holds no surrogate for is
    an error.

    Example:
        >>> import flowlearn as fl
        >>> model = fl.feature.ImputerModel(input_cols=["x"], output_cols=["x"])
        >>> model = model.set_model_data({"column": ["x"], "surrogate": [0.5]})
        >>> model.transform({"x": [1.0, None, float("nan")]}).column("x").to_pylist()
        [1.0, 0.5, 0.5]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1:
            raise ValueError(f"{stage}: model data is one table with columns ['column', 'surrogate'], "
                             f"got {len(tables)} tables")
        t = tables[0]
        missing = [n for n in ("column", "surrogate") if n not in t.column_names]
        if missing:
            raise ValueError(f"{stage}: model data has no column(s) {missing}; expected columns "
                             f"['column', 'surrogate'], got {t.column_names}")
        names = t.column("column").to_pylist()
        if any(not isinstance(n, str) for n in names):
            raise ValueError(f"{stage}: model data column 'column' must hold column names (strings), got {names}")
        values = numeric_column(t, "surrogate", f"{stage} model data")
        if len(set(names)) != len(names):
            raise ValueError(f"{stage}: model data names a column twice: {names}")
        self._surrogates = dict(zip(names, values.tolist()))

    def _surrogate_list(self, ins: list[str]) -> list[float]:
        try:
            return [self._surrogates[c] for c in ins]
        except KeyError as e:
            raise ValueError(f"{type(self).__name__}: the model holds no surrogate for input column {e.args[0]!r} "
                             f"(parameter 'input_cols'); it was fitted on columns {list(self._surrogates)}") from None

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        ins, outs = self._check_cols()
        surrogates = self._surrogate_list(ins)
        filled = []
        for c, s in zip(ins, surrogates):  # read every input before writing any output
            x, miss = self._missing_mask(t, c)
            filled.append(np.where(miss, s, x))
        for o, y in zip(outs, filled):
            t = with_column(t, o, pa.array(y, pa.float64()))
        return t

    def row_fn(self):
        self._require_model()
        stage = type(self).__name__
        ins, outs = self._check_cols()
        specs = list(zip(ins, self._surrogate_list(ins)))
        mv = self.missing_value
        mv_nan = math.isnan(mv)

        def value(row: dict, c: str, s: float) -> float:
            try:
                v = row[c]
            except KeyError:
                raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the row; "
                                 f"the row has keys {list(row)}") from None
            if v is None:
                return s
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{stage}: column '{c}' holds {type(v).__name__} {v!r}, expected a number") from None
            if f == mv or (mv_nan and f != f):
                return s
            return f

        def fn(row: dict) -> None:
            vals = [value(row, c, s) for c, s in specs]
            for o, f in zip(outs, vals):
                row[o] = f

        return fn
