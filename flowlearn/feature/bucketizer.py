"""``Bucketizer``: map continuous numeric columns to bucket indices by split points, with Flink ML
2.x semantics.

Example:
    >>> import flowlearn as fl
    >>> b = fl.feature.Bucketizer(input_cols=["x"], output_cols=["b"], splits_array=[[0.0, 1.0, 2.0]])
    >>> b.transform({"x": [0.0, 0.5, 1.0, 2.0]}).column("b").to_pylist()
    [0, 0, 1, 1]
"""
from __future__ import annotations

from bisect import bisect_right
from math import copysign

import numpy as np
import pyarrow as pa

from flowlearn.api import SkipRow, Transformer
from flowlearn.data.columns import first_bad_row, numeric_column, require_column, with_column
from flowlearn.params import REQUIRED, HasHandleInvalid, HasInputCols, HasOutputCols, Param, Validator

__all__ = ["Bucketizer"]


def _valid_splits(splits: list[float]) -> bool:
    s = np.asarray(splits, dtype=np.float64)
    return s.ndim == 1 and s.size >= 3 and bool(np.all(np.diff(s) > 0))


_SPLITS_RULE = Validator(
    "strictly_increasing_splits()",
    "a list with, for each input column, at least 3 strictly increasing split points (no NaN)",
    _valid_splits,
)


def _invalid_message(stage: str, col: str, value: float | None, splits: np.ndarray, where: str) -> str:
    what = "a null" if value is None else ("NaN" if value != value else f"value {value!r}")
    lo, hi = float(splits[0]), float(splits[-1])
    return (f"{stage}: column '{col}' has {what} {where}, which is in no bucket of the splits [{lo!r}, {hi!r}]; "
            f"set handle_invalid='keep' to put such values in bucket {len(splits) - 1} or 'skip' to drop "
            f"their rows, or add -inf/inf as outer splits")


def _positive_zero_split(s: np.ndarray) -> int | None:
    """Where ``s`` has a split at +0.0: Flink ML and Spark search splits with ``Arrays.binarySearch``
    (``Double.compare`` order), where -0.0 sorts just below it, so -0.0 belongs to the bucket below."""
    at = np.flatnonzero((s == 0.0) & ~np.signbit(s))
    return int(at[0]) if len(at) else None


class Bucketizer(HasInputCols, HasOutputCols, HasHandleInvalid, Transformer):
    """Maps each numeric input column to bucket indices (``int32``) given its split points, as
    Flink ML's ``Bucketizer``; no fitting.

    For splits ``s_0 < s_1 < ... < s_n`` (at least 3 points), bucket ``i`` holds
    ``[s_i, s_(i+1))``, and the last bucket ``n - 1`` also holds ``s_n``. Use ``-inf``/``inf`` as
    outer splits to cover every number. A value outside ``[s_0, s_n]``, NaN or null is invalid:
    ``handle_invalid="error"`` (default) raises naming the column and row, ``"skip"`` drops the
    row, ``"keep"`` puts it in the extra bucket ``n`` (= ``len(splits) - 1``). As in Flink ML and
    Spark (``Arrays.binarySearch``), ``-0.0`` sorts just below a split at ``0.0``.

    Params: ``input_cols`` (required), ``output_cols`` (required), ``splits_array`` (required,
    one list of split points per input column), ``handle_invalid`` ("error").

    Example:
        >>> import flowlearn as fl
        >>> b = fl.feature.Bucketizer(input_cols=["age"], output_cols=["bucket"],
        ...                           splits_array=[[0.0, 18.0, 65.0, 120.0]], handle_invalid="keep")
        >>> b.transform({"age": [5.0, 18.0, 70.0, 130.0, None]}).column("bucket").to_pylist()
        [0, 1, 2, 3, 3]
    """

    splits_array = Param(list[list[float]], default=REQUIRED, validator=_SPLITS_RULE,
                         doc="Split points of each input column: at least 3, strictly increasing.")

    def _specs(self) -> list[tuple[str, str, np.ndarray]]:
        ins, outs, splits = self.input_cols, self.output_cols, self.splits_array
        if not (len(ins) == len(outs) == len(splits)):
            raise ValueError(f"{type(self).__name__}: parameters 'input_cols' ({len(ins)}), 'output_cols' "
                             f"({len(outs)}) and 'splits_array' ({len(splits)}) must have the same length: one "
                             f"output column and one list of splits per input column")
        return [(c, o, np.asarray(s, dtype=np.float64)) for c, o, s in zip(ins, outs, splits)]

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        specs = self._specs()
        mode = self.handle_invalid
        results = []
        any_invalid = np.zeros(t.num_rows, dtype=bool)
        for c, o, s in specs:  # read every input before writing any output
            col = require_column(t, c, stage, "input_cols")
            if pa.types.is_null(col.type):  # a column of nulls only: every value is invalid
                x = np.full(len(col), np.nan)
            else:
                x = numeric_column(t, c, stage, param="input_cols", allow_nan=True, allow_null=True)
            idx = np.searchsorted(s, x, side="right") - 1
            idx[x == s[-1]] = len(s) - 2  # the last bucket includes its upper split
            with np.errstate(invalid="ignore"):
                invalid = ~((x >= s[0]) & (x <= s[-1]))  # NaN and nulls (read as NaN) are invalid
            j = _positive_zero_split(s)
            if j is not None and j < len(s) - 1:
                below = (x == 0.0) & np.signbit(x)  # -0.0 sorts below a split at +0.0 (Double.compare)
                if below.any():
                    if j == 0:
                        invalid |= below
                    else:
                        idx[below] = j - 1
            if invalid.any():
                if mode == "error":
                    row = first_bad_row(invalid)
                    value = None if not col[row].is_valid else float(x[row])
                    raise ValueError(_invalid_message(stage, c, value, s, f"at row {row}"))
                idx[invalid] = len(s) - 1
                any_invalid |= invalid
            results.append((o, idx.astype(np.int32)))
        if mode == "skip" and any_invalid.any():
            keep = ~any_invalid
            t = t.filter(pa.array(keep))
            results = [(o, r[keep]) for o, r in results]
        for o, r in results:
            t = with_column(t, o, pa.array(r, pa.int32()))
        return t

    def row_fn(self):
        stage = type(self).__name__
        specs = [(c, o, s.tolist(), float(s[0]), float(s[-1]), len(s) - 2, s, _positive_zero_split(s))
                 for c, o, s in self._specs()]
        mode = self.handle_invalid

        def fn(row: dict) -> None:
            outs = []
            for c, o, s, lo, hi, last, arr, zero in specs:
                try:
                    v = row[c]
                except KeyError:
                    raise ValueError(f"{stage}: input column '{c}' (parameter 'input_cols') is missing from the "
                                     f"row; the row has keys {list(row)}") from None
                f = None
                if v is not None:
                    try:
                        f = float(v)
                    except (TypeError, ValueError):
                        raise TypeError(f"{stage}: column '{c}' holds {type(v).__name__} {v!r}, expected a "
                                        f"number") from None
                if f is not None and lo <= f <= hi and not (f == 0.0 and zero == 0 and copysign(1.0, f) < 0):
                    b = bisect_right(s, f) - 1
                    if f == 0.0 and zero is not None and zero <= last and copysign(1.0, f) < 0:
                        b = zero - 1
                    outs.append((o, last if b > last else b))
                elif mode == "keep":
                    outs.append((o, last + 1))
                elif mode == "skip":
                    raise SkipRow(c)
                else:
                    raise ValueError(_invalid_message(stage, c, f, arr, "in this row"))
            for o, b in outs:
                row[o] = b

        return fn
