"""``VectorIndexer``: decides which dimensions of a vector column are categorical (at most
``max_categories`` distinct values) and replaces their values by category indices, with Flink
ML 2.x semantics. The fit is one pass (``flowlearn.api.OnePassEstimator``): a part's state holds
each dimension's distinct values, or marks it continuous once it has more than
``max_categories`` of them; merging unites the values.

Example:
    >>> from flowlearn.feature.vector_indexer import VectorIndexer
    >>> t = {"input": [[1.0, 0.5], [-1.0, 2.7], [0.0, 9.1], [1.0, 3.3]]}
    >>> model = VectorIndexer(max_categories=3).fit(t)
    >>> model.transform(t).column("output").to_pylist()
    [[2.0, 0.5], [1.0, 2.7], [0.0, 9.1], [2.0, 3.3]]
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import Model, OnePassEstimator, SkipRow
from flowlearn.data.columns import first_bad_row, vector_column, with_column
from flowlearn.linalg import SparseVector, dense_vector_type, from_csr, from_numpy, is_sparse, is_vector_type
from flowlearn.params import HasHandleInvalid, HasInputCol, HasOutputCol, Param, gt_eq

__all__ = ["VectorIndexer", "VectorIndexerModel"]

_STATE = pa.schema([("feature", pa.int32()), ("value", pa.float64()), ("continuous", pa.bool_()),
                    ("num_features", pa.int32())])


def _category_order(values: np.ndarray) -> np.ndarray:
    """Flink ML's order of a dimension's categories: ascending, except 0.0 first when present."""
    v = np.sort(values)
    zero = v == 0.0
    return np.r_[v[zero], v[~zero]] if zero.any() else v


class _VectorIndexerParams(HasInputCol, HasOutputCol, HasHandleInvalid):
    pass


class VectorIndexer(_VectorIndexerParams, OnePassEstimator):
    """Indexes the categorical dimensions of a vector column, as Flink ML's ``VectorIndexer``.

    A dimension with at most ``max_categories`` distinct values in the fit data is categorical:
    its values are replaced by indices ``0 .. k - 1`` in ascending order of value, except that
    0.0 (when seen) always gets index 0 so sparse vectors stay sparse. Other dimensions pass
    through unchanged. A value of a categorical dimension not seen in the fit is invalid:
    ``handle_invalid="error"`` (default) raises naming the row, dimension and value, ``"skip"``
    drops the row, ``"keep"`` gives it index ``k``. Dense input gives dense output, sparse input
    sparse output. NaN and infinity are refused.

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``max_categories`` (20),
    ``handle_invalid`` ("error").

    Example:
        >>> from flowlearn.feature.vector_indexer import VectorIndexer
        >>> model = VectorIndexer(max_categories=2, handle_invalid="keep").fit({"input": [[1.0], [3.0], [1.0]]})
        >>> model.transform({"input": [[3.0], [7.0]]}).column("output").to_pylist()
        [[1.0], [2.0]]
    """

    max_categories = Param(int, default=20, validator=gt_eq(2),
                           doc="A dimension with more than this many distinct values is continuous.")

    # Fit state: one row per (dimension, distinct value) of the categorical-so-far dimensions and
    # one row with continuous=True (value null) per continuous dimension.

    def _partial(self, t: pa.Table) -> pa.Table:
        x = vector_column(t, self.input_col, type(self).__name__, param="input_col")
        n, d = x.shape
        if n == 0:
            return _STATE.empty_table()
        feats, vals, cont = [], [], []
        if sps.issparse(x):
            csc = x.tocsc()
            has_zero = np.diff(csc.indptr) < n
            for j in range(d):
                u = np.unique(csc.data[csc.indptr[j]:csc.indptr[j + 1]] + 0.0)
                if has_zero[j] and not (u == 0).any():
                    u = np.r_[0.0, u]
                self._append(j, u, feats, vals, cont)
        else:
            xs = np.sort(x + 0.0, axis=0)  # + 0.0: -0.0 and 0.0 are one category
            distinct = 1 + np.count_nonzero(np.diff(xs, axis=0), axis=0)
            for j in range(d):
                u = np.unique(xs[:, j]) if distinct[j] <= self.max_categories else None
                self._append(j, u, feats, vals, cont)
        return _state_table(feats, vals, cont, d)

    def _append(self, j: int, u: np.ndarray | None, feats: list, vals: list, cont: list) -> None:
        if u is None or len(u) > self.max_categories:
            feats.append(np.array([j])), vals.append(np.array([np.nan])), cont.append(np.array([True]))
        else:
            feats.append(np.full(len(u), j)), vals.append(u), cont.append(np.zeros(len(u), bool))

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        stage = type(self).__name__
        ts = [s for s in states if s.num_rows]
        if not ts:
            return _STATE.empty_table()
        for s in ts:
            if set(_STATE.names) - set(s.column_names):
                raise ValueError(f"{stage}: a fit state has columns {s.column_names}, expected {_STATE.names}; merge "
                                 f"states made by {stage}.partial")
        t = pa.concat_tables([s.select(_STATE.names).cast(_STATE) for s in ts])
        dims = {v for v in t.column("num_features").unique().to_pylist()}
        if len(dims) > 1:
            raise ValueError(f"{stage}: the parts of the input hold vectors of sizes {sorted(dims)}; every row of one "
                             f"input needs vectors of one size")
        d = dims.pop()
        f = t.column("feature").to_numpy()
        c = t.column("continuous").to_numpy(zero_copy_only=False)
        v = t.column("value").to_numpy(zero_copy_only=False)
        cont = np.zeros(d, bool)
        cont[f[c]] = True
        keys = np.unique(np.stack([f[~c].astype(np.int64), v[~c].view(np.int64)]), axis=1)
        counts = np.bincount(keys[0], minlength=d)
        cont |= counts > self.max_categories
        keep = ~cont[keys[0]]
        feats, vals = keys[0][keep], keys[1][keep].view(np.float64)
        cd = np.flatnonzero(cont)
        return _state_table([feats, cd], [vals, np.full(len(cd), np.nan)],
                            [np.zeros(len(feats), bool), np.ones(len(cd), bool)], d)

    def _finish(self, state: pa.Table) -> "VectorIndexerModel":
        state = self._merge([state])
        d = int(state.column("num_features")[0].as_py())
        c = state.column("continuous").to_numpy(zero_copy_only=False)
        f = state.column("feature").to_numpy()[~c]
        v = state.column("value").to_numpy(zero_copy_only=False)[~c]
        feats, values, indices = [], [], []
        for j in np.unique(f):
            ordered = _category_order(v[f == j])
            feats += [int(j)] * len(ordered)
            values += ordered.tolist()
            indices += list(range(len(ordered)))
        model = VectorIndexerModel()
        self.copy_params_to(model)
        return model.set_model_data(pa.table({
            "num_features": pa.array([d], pa.int32()),
            "features": pa.array([feats], pa.list_(pa.int32())),
            "values": pa.array([values], pa.list_(pa.float64())),
            "indices": pa.array([indices], pa.list_(pa.int32())),
        }))


def _state_table(feats: list, vals: list, cont: list, d: int) -> pa.Table:
    f = np.concatenate(feats).astype(np.int32) if feats else np.zeros(0, np.int32)
    v = np.concatenate(vals).astype(np.float64) if vals else np.zeros(0)
    c = np.concatenate(cont).astype(bool) if cont else np.zeros(0, bool)
    return pa.table({"feature": pa.array(f), "value": pa.array(v, from_pandas=True), "continuous": pa.array(c),
                     "num_features": pa.array(np.full(len(f), d, np.int32))}, schema=_STATE)


class VectorIndexerModel(_VectorIndexerParams, Model):
    """The model fitted by :class:`VectorIndexer`.

    Model data: one table of one row: ``num_features`` (int32, the vector size) and three
    parallel lists describing the category maps (Flink ML's ``categoryMaps``): ``features``
    (list<int32>, the categorical dimension), ``values`` (list<double>, a value seen in it) and
    ``indices`` (list<int32>, that value's category index).

    Example:
        >>> from flowlearn.feature.vector_indexer import VectorIndexerModel
        >>> m = VectorIndexerModel().set_model_data({"num_features": [2], "features": [[1, 1]],
        ...                                          "values": [[0.0, 5.0]], "indices": [[0, 1]]})
        >>> m.transform({"input": [[3.5, 5.0]]}).column("output").to_pylist()
        [[3.5, 1.0]]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        names = ["num_features", "features", "values", "indices"]
        if len(tables) != 1 or set(names) - set(tables[0].column_names) or tables[0].num_rows != 1:
            raise ValueError(f"{stage}: model data is one table of one row with columns {names}, got "
                             f"{[t.schema for t in tables]}")
        t = tables[0]
        d = t.column("num_features")[0].as_py()
        f = np.asarray(t.column("features")[0].as_py() or [], dtype=np.int64)
        v = np.asarray(t.column("values")[0].as_py() or [], dtype=np.float64)
        i = np.asarray(t.column("indices")[0].as_py() or [], dtype=np.int64)
        if d is None or d < 0 or not len(f) == len(v) == len(i) or (len(f) and (f.min() < 0 or f.max() >= d)):
            raise ValueError(f"{stage}: model data lists 'features', 'values', 'indices' must have one length and "
                             f"dimensions in [0, num_features = {d})")
        self._dim = int(d)
        self._maps = []  # (dimension, sorted values, their category indices, number of categories)
        for j in np.unique(f):
            sel = f == j
            order = np.argsort(v[sel], kind="stable")
            vs, ix = v[sel][order], i[sel][order]
            if (np.diff(vs) == 0).any() or sorted(ix.tolist()) != list(range(len(ix))):
                raise ValueError(f"{stage}: model data for dimension {int(j)} must map distinct values to the "
                                 f"indices 0 .. k - 1 once each")
            self._maps.append((int(j), vs, ix.astype(np.float64), len(vs)))
        self._dicts = [(j, dict(zip(vs.tolist(), ix.tolist())), float(k)) for j, vs, ix, k in self._maps]

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        self._require_model()
        stage, col = type(self).__name__, self.input_col
        if col not in input_schema.names:
            raise ValueError(f"{stage}: input column '{col}' (parameter 'input_col') is missing; the input has "
                             f"columns {input_schema.names}")
        t = input_schema.field(col).type
        if not is_vector_type(t):
            raise ValueError(f"{stage}: column '{col}' has type {t}, expected a vector column")
        field = pa.field(self.output_col, t, metadata={b"flowlearn.size": str(self._dim).encode()}) if is_sparse(t) \
            else pa.field(self.output_col, dense_vector_type(self._dim))
        names = input_schema.names
        return input_schema.set(names.index(self.output_col), field) if self.output_col in names \
            else input_schema.append(field)

    def _map_column(self, x: np.ndarray, j: int, vs: np.ndarray, ix: np.ndarray, k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Category indices of the values ``x`` of dimension ``j`` and the mask of unseen values."""
        pos = np.searchsorted(vs, x)
        posc = np.minimum(pos, k - 1)
        hit = (pos < k) & (vs[posc] == x)
        return np.where(hit, ix[posc], float(k)), ~hit

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        self._require_model()
        x = vector_column(t, self.input_col, stage, param="input_col", size=self._dim)
        n = x.shape[0]
        if n == 0:
            x = sps.csr_matrix((0, self._dim)) if sps.issparse(x) else np.zeros((0, self._dim))
        cats = np.array([m[0] for m in self._maps], dtype=np.int64)
        sub = x[:, cats].toarray() if sps.issparse(x) else x[:, cats]
        mapped = np.empty_like(sub)
        invalid = np.zeros(n, bool)
        for c, (j, vs, ix, k) in enumerate(self._maps):
            mapped[:, c], bad = self._map_column(sub[:, c], j, vs, ix, k)
            if bad.any():
                if self.handle_invalid == "error":
                    r = first_bad_row(bad)
                    raise ValueError(f"{stage}: column '{self.input_col}' row {r} has value {float(sub[r, c])!r} at "
                                     f"dimension {j}, which the fit did not see among its {k} categories; set "
                                     f"handle_invalid='keep' to index it {k} or 'skip' to drop such rows")
                invalid |= bad
        if sps.issparse(x):
            keep_cols = np.ones(self._dim)
            keep_cols[cats] = 0.0
            rest = x @ sps.diags(keep_cols)
            rows = np.repeat(np.arange(n), len(cats))
            out_m = sps.csr_matrix(rest + sps.csr_matrix((mapped.ravel(), (rows, np.tile(cats, n))),
                                                         shape=x.shape))
            out_m.eliminate_zeros()
        else:
            out_m = x.copy()
            out_m[:, cats] = mapped
        if self.handle_invalid == "skip" and invalid.any():
            keep = ~invalid
            t = t.filter(pa.array(keep))
            out_m = out_m[keep]
        out = from_csr(out_m) if sps.issparse(out_m) else from_numpy(out_m)
        return with_column(t, self.output_col, out)

    def row_fn(self):
        self._require_model()
        stage, col, out, d, dicts, mode = type(self).__name__, self.input_col, self.output_col, self._dim, \
            self._dicts, self.handle_invalid

        def fn(row: dict) -> None:
            try:
                v = row[col]
            except KeyError:
                raise ValueError(f"{stage}: input column '{col}' (parameter 'input_col') is missing from the row; "
                                 f"the row has keys {list(row)}") from None
            sparse = isinstance(v, SparseVector)
            if v is None:
                raise ValueError(f"{stage}: column '{col}' is null in this row; drop or impute it first")
            a = v.to_numpy() if sparse else np.array(v, dtype=np.float64)
            if a.shape != (d,):
                raise ValueError(f"{stage}: column '{col}' holds a vector of shape {a.shape}, the model expects size "
                                 f"{d}")
            if not np.isfinite(a).all():
                raise ValueError(f"{stage}: column '{col}' has NaN or infinity; impute or filter such rows first")
            for j, m, k in dicts:
                c = m.get(float(a[j]) + 0.0)
                if c is None:
                    if mode == "skip":
                        raise SkipRow(col)
                    if mode == "error":
                        raise ValueError(f"{stage}: column '{col}' has value {float(a[j])!r} at dimension {j} in this "
                                         f"row, which the fit did not see among its {int(k)} categories; set "
                                         f"handle_invalid='keep' to index it {int(k)} or 'skip' to drop such rows")
                    c = k
                a[j] = c
            if sparse:
                nz = np.flatnonzero(a)
                row[out] = SparseVector.unchecked(d, nz.astype(np.int32), a[nz])
            else:
                row[out] = a

        return fn
