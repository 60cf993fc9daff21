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

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import Model, OnePassEstimator
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


# --------------------------------------------------------------------------------------------
# A mergeable quantile summary (for the median)
#
# A summary of n sorted values is a subsequence of them, each entry with bounds rmin <= rank <= rmax
# on its rank (1-based) among all n. The first and last entries are the minimum and the maximum
# (exact ranks 1 and n), and consecutive entries satisfy rmax[j + 1] - rmin[j] <= max(1, floor(2 e n)).
# Then for any target rank r some entry has r - e n <= rmin and rmax <= r + e n (Greenwald and
# Khanna's argument), so the entry minimizing max(r - rmin, rmax - r) has a rank within e n of r.
# Merging two summaries (Greenwald and Khanna's combine: bounds from the other summary's neighbours)
# keeps that gap bound for the merged n, and pruning keeps it by construction, so the error does
# not grow with the number of merges. With e n < 1 nothing is pruned: the values are exact.


@numba.njit(cache=True)
def _prune(rmin, rmax, limit):
    """Indices of the entries kept: the first, the last, and greedily the farthest next entry whose
    ``rmax`` is within ``limit`` of the kept entry's ``rmin``."""
    m = rmin.shape[0]
    keep = np.empty(m, np.int64)
    keep[0] = 0
    c = 1
    j = 0
    while j < m - 1:
        k = j + 1
        while k + 1 < m and rmax[k + 1] - rmin[j] <= limit:
            k += 1
        keep[c] = k
        c += 1
        j = k
    return keep[:c]


def _compress(values: np.ndarray, rmin: np.ndarray, rmax: np.ndarray, n: int, eps: float) -> tuple:
    keep = _prune(rmin, rmax, max(1, math.floor(2 * eps * n)))
    return values[keep], rmin[keep], rmax[keep]


def _quantile_summary(sorted_values: np.ndarray, eps: float) -> tuple:
    """The summary ``(values, rmin, rmax)`` of sorted values (exact ranks before pruning)."""
    r = np.arange(1, len(sorted_values) + 1, dtype=np.int64)
    return _compress(sorted_values, r, r.copy(), len(sorted_values), eps)


def _merge_summaries(a: tuple, na: int, b: tuple, nb: int, eps: float) -> tuple:
    """The summary of the union of two summarized multisets of ``na`` and ``nb`` values (ties: ``a``'s
    values first)."""
    va, lo_a, hi_a = a
    vb, lo_b, hi_b = b
    if nb == 0:
        return a
    if na == 0:
        return b
    jb = np.searchsorted(vb, va, side="left")   # entries of b before each entry of a
    ja = np.searchsorted(va, vb, side="right")  # entries of a before each entry of b
    m = len(va) + len(vb)
    values, rmin, rmax = np.empty(m), np.empty(m, np.int64), np.empty(m, np.int64)
    pa_, pb = np.arange(len(va)) + jb, np.arange(len(vb)) + ja
    values[pa_], values[pb] = va, vb
    rmin[pa_] = lo_a + np.where(jb > 0, lo_b[np.maximum(jb - 1, 0)], 0)
    rmax[pa_] = hi_a + np.where(jb < len(vb), hi_b[np.minimum(jb, len(vb) - 1)] - 1, nb)
    rmin[pb] = lo_b + np.where(ja > 0, lo_a[np.maximum(ja - 1, 0)], 0)
    rmax[pb] = hi_b + np.where(ja < len(va), hi_a[np.minimum(ja, len(va) - 1)] - 1, na)
    return _compress(values, rmin, rmax, na + nb, eps)


def _summary_quantile(summary: tuple, rank: int) -> float:
    """The value of the entry whose rank is closest to ``rank`` for sure."""
    values, rmin, rmax = summary
    return float(values[int(np.argmin(np.maximum(rank - rmin, rmax - rank)))])


class Imputer(_ImputerModelParams, OnePassEstimator):
    """Completes missing values of numeric columns with the mean, median or most frequent value of
    each column, as Flink ML's ``Imputer``.

    Missing are: nulls, and values equal to ``missing_value`` (default NaN). The statistics are
    computed after dropping missing values and NaN (so with a numeric ``missing_value``, NaN is
    left out of the statistics too; at transform time, as in Flink ML and Spark, NaN is then not
    replaced because it is not the missing value). Each output column is ``double``.

    * ``mean``: the mean of the valid values.
    * ``median``: the valid value of rank ``ceil(n / 2)`` (the lower median for even ``n``;
      scikit-learn averages the two middle values instead), within ``relative_error``, as Flink
      ML's and Spark's approximate quantiles: a valid value whose rank is within
      ``relative_error * n`` of ``ceil(n / 2)``, for any split of the input into fit parts and
      any order of merging them. It comes from a mergeable quantile summary (the fit state) of
      about ``1 / (2 * relative_error)`` values per column and part; merging many parts keeps
      the bound and grows the summary to a few times ``1 / relative_error`` values (about 12
      times for a balanced tree of 80 parts). The median is exact when ``relative_error * n < 1``
      (below 1000 valid values at the default) or ``relative_error=0`` (the state then holds
      every value).
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
                           doc="Relative error of the median: its rank is within relative_error * n of "
                               "ceil(n / 2); 0 computes it exactly.")

    # Fit state: one row per input column (none for an empty input): ``column``, ``count`` (valid
    # values) and, by strategy, ``sum`` (mean); ``values`` and ``counts``, sorted distinct values and
    # their counts (most_frequent); ``values``, ``rmin`` and ``rmax``, the quantile summary (median).

    def _state_schema(self) -> pa.Schema:
        extra = {"mean": [("sum", pa.float64())],
                 "most_frequent": [("values", pa.list_(pa.float64())), ("counts", pa.list_(pa.int64()))],
                 "median": [("values", pa.list_(pa.float64())), ("rmin", pa.list_(pa.int64())),
                            ("rmax", pa.list_(pa.int64()))]}[self.strategy]
        return pa.schema([("column", pa.string()), ("count", pa.int64()), *extra])

    def _state(self, rows: list[dict]) -> pa.Table:
        schema = self._state_schema()
        columns = []
        for f in schema:
            if pa.types.is_list(f.type):  # one list per row, from NumPy arrays without Python objects
                parts = [np.asarray(r[f.name], f.type.value_type.to_pandas_dtype()) for r in rows]
                offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts], dtype=np.int64)])
                values = np.concatenate(parts) if parts else np.empty(0, f.type.value_type.to_pandas_dtype())
                columns.append(pa.LargeListArray.from_arrays(offsets, values).cast(f.type))
            else:
                columns.append(pa.array([r[f.name] for r in rows], f.type))
        return pa.Table.from_arrays(columns, schema=schema)

    @staticmethod
    def _state_rows(st: pa.Table) -> list[dict]:
        """The rows of a state, list columns as NumPy arrays (zero-copy)."""
        cols = {}
        for name in st.schema.names:
            col = st.column(name).combine_chunks()
            if pa.types.is_list(col.type):
                values = col.flatten().to_numpy()
                offsets = col.offsets.to_numpy() - col.offsets[0].as_py()
                cols[name] = [values[offsets[i]:offsets[i + 1]] for i in range(len(col))]
            else:
                cols[name] = col.to_pylist()
        return [{k: v[i] for k, v in cols.items()} for i in range(st.num_rows)]

    def _partial(self, t: pa.Table) -> pa.Table:
        stage = type(self).__name__
        ins, _ = self._check_cols()
        for c in ins:
            require_column(t, c, stage, "input_cols")
        if t.num_rows == 0:
            return self._state([])
        strategy = self.strategy
        rows = []
        for c in ins:
            x, miss = self._missing_mask(t, c)
            valid = x[~miss & ~np.isnan(x)]
            if strategy != "mean":
                valid = valid + 0.0  # -0.0 -> 0.0: one value for both zeros
            if not np.isfinite(valid).all():
                bad = first_bad_row(np.isinf(x) & ~miss)
                raise ValueError(f"{stage}: column '{c}' has infinity at row {bad}; infinity is not a missing "
                                 f"value and makes the {strategy} meaningless; filter or clip such rows first")
            row = {"column": c, "count": valid.size}
            if strategy == "mean":
                with np.errstate(over="ignore"):
                    row["sum"] = float(valid.sum())
                if not math.isfinite(row["sum"]):
                    bad = int(np.argmax(np.where(miss | np.isnan(x), 0.0, np.abs(x))))
                    raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') holds {float(x[bad])!r} at row "
                                     f"{bad}; its values sum beyond float64, so the mean overflows; divide the "
                                     f"column by a constant first")
            elif strategy == "most_frequent":
                values, counts = np.unique(valid, return_counts=True)
                row["values"], row["counts"] = values, counts
            else:
                row["values"], row["rmin"], row["rmax"] = _quantile_summary(np.sort(valid), self.relative_error)
            rows.append(row)
        return self._state(rows)

    def _state_columns(self, states: list[pa.Table]) -> list[list[dict]]:
        """Per input column, its rows in the states (in order); checks the states name the input columns."""
        ins, _ = self._check_cols()
        per_column: list[list[dict]] = [[] for _ in ins]
        for st in states:
            if st.num_rows == 0:
                continue
            if st.schema.names != self._state_schema().names or st.column("column").to_pylist() != ins:
                raise ValueError(f"{type(self).__name__}: a fit state has columns {st.schema.names} for input "
                                 f"columns {st.column('column').to_pylist() if 'column' in st.schema.names else '?'}; "
                                 f"expected a state of strategy {self.strategy!r} for input_cols {ins}. Merge "
                                 f"states made by partial of this estimator")
            for i, row in enumerate(self._state_rows(st)):
                per_column[i].append(row)
        return per_column

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        ins, _ = self._check_cols()
        per_column = self._state_columns(states)
        if not per_column[0]:
            return self._state([])
        strategy, eps = self.strategy, self.relative_error
        rows = []
        for c, parts in zip(ins, per_column):
            count = sum(p["count"] for p in parts)
            row = {"column": c, "count": count}
            if strategy == "mean":
                with np.errstate(over="ignore"):
                    row["sum"] = float(np.sum([p["sum"] for p in parts]))
            elif strategy == "most_frequent":
                values, inverse = np.unique(np.concatenate([np.asarray(p["values"], np.float64) for p in parts]),
                                            return_inverse=True)
                counts = np.concatenate([np.asarray(p["counts"], np.int64) for p in parts])
                row["values"], row["counts"] = values, np.bincount(inverse.reshape(-1), weights=counts).astype(np.int64)
            else:
                acc, n = (np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)), 0
                for p in parts:
                    part = (np.asarray(p["values"], np.float64), np.asarray(p["rmin"], np.int64),
                            np.asarray(p["rmax"], np.int64))
                    acc, n = _merge_summaries(acc, n, part, p["count"], eps), n + p["count"]
                row["values"], row["rmin"], row["rmax"] = acc
            rows.append(row)
        return self._state(rows)

    def _finish(self, state: pa.Table) -> "ImputerModel":
        stage = type(self).__name__
        ins, _ = self._check_cols()
        per_column = self._state_columns([state])
        surrogates = []
        for c, (row,) in zip(ins, per_column):
            if row["count"] == 0:
                raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') has no valid value: all its "
                                 f"values are null, NaN or missing_value={self.missing_value!r}, so no surrogate "
                                 f"can be computed")
            if self.strategy == "mean":
                if not math.isfinite(row["sum"]):  # parts with finite sums can add up beyond float64
                    raise ValueError(f"{stage}: column '{c}' (parameter 'input_cols') sums beyond float64 over the "
                                     f"parts of the input, so the mean overflows; divide the column by a constant first")
                s = row["sum"] / row["count"]
            elif self.strategy == "most_frequent":
                s = row["values"][int(np.argmax(row["counts"]))]  # values are sorted: ties go to the smallest
            else:  # rank ceil(n/2)
                summary = tuple(np.asarray(row[k]) for k in ("values", "rmin", "rmax"))
                s = _summary_quantile(summary, (row["count"] + 1) // 2)
            surrogates.append(float(s))
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
