"""Swing item-item similarity as in Flink ML 2.x: ``Swing`` (an ``AlgoOperator``).

For items ``i`` and ``j``, with ``U_i`` the users who bought ``i`` and ``I_u`` the items user ``u``
bought, the similarity sums over pairs of users who bought both:

    w(i, j) = sum over {u, v} in U_i, u != v, both in U_j, of
              1 / (alpha1 + |I_u|)^beta * 1 / (alpha1 + |I_v|)^beta * 1 / (alpha2 + |I_u & I_v|)

(each unordered pair once, as Flink ML's implementation sums). Users with fewer than
``min_user_behavior`` or more than ``max_user_behavior`` distinct items are left out, and at most
``max_user_num_per_item`` users of an item (a uniform sample for ``seed``) form its pairs.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"user": [0, 0, 0, 1, 1, 2, 2, 2, 3, 3], "item": [10, 11, 12, 13, 12, 10, 11, 12, 13, 12]})
    >>> out = fl.recommendation.Swing(min_user_behavior=2, max_user_behavior=3).transform(t)
    >>> out.column("output").to_pylist()[0]
    '11,0.058845768947156235;12,0.058845768947156235'
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sps

from flowlearn.api import AlgoOperator
from flowlearn.data.columns import first_bad_row, require_column
from flowlearn.params import HasOutputCol, HasSeed, Param, gt, gt_eq

__all__ = ["Swing"]

# Global windows: one window holding the whole (bounded) stream, fired when its input ends.
_ALL_ROWS = 1 << 62
# Items per call of the kernel (bounds the k best of each item that one call returns).
_ITEMS_PER_CALL = 1 << 14


class _SwingParams(HasOutputCol, HasSeed):
    user_col = Param(str, default="user", doc="User column name.")
    item_col = Param(str, default="item", doc="Item column name.")
    max_user_num_per_item = Param(int, default=1000, validator=gt(0),
                                  doc="The max number of users (purchasers) of an item used in its similarities; "
                                      "more are sampled down to this number.")
    k = Param(int, default=100, validator=gt(0), doc="The max number of similar items to output for each item.")
    min_user_behavior = Param(int, default=10, validator=gt(0),
                              doc="Users with fewer distinct items than this are left out.")
    max_user_behavior = Param(int, default=1000, validator=gt(0),
                              doc="Users with more distinct items than this are left out.")
    alpha1 = Param(int, default=15, validator=gt_eq(0), doc="Smooth factor of a user's number of items.")
    alpha2 = Param(int, default=0, validator=gt_eq(0), doc="Smooth factor of two users' number of common items.")
    beta = Param(float, default=0.3, validator=gt_eq(0), doc="Decay factor of a user's number of items.")


def java_double_strings(x: np.ndarray) -> pa.Array:
    """Java's ``Double.toString`` of every (finite) value, vectorized: the shortest digits that read
    back as the value, in decimal notation with at least one fractional digit for magnitudes in
    ``[1e-3, 1e7)`` and zero (``0.058845768947156235``, ``1.0``), else as ``d.dddE<n>``
    (``1.0E-4``, ``1.2345678E7``).

    Example:
        >>> java_double_strings(np.array([1.0, 0.25, 1e-4, 12345678.0, -2.5e-10])).to_pylist()
        ['1.0', '0.25', '1.0E-4', '1.2345678E7', '-2.5E-10']
    """
    x = np.asarray(x, dtype=np.float64)
    s = pc.cast(pa.array(x), pa.string())
    a = np.abs(x)
    sci = ~(((a >= 1e-3) & (a < 1e7)) | (a == 0))
    out = pc.if_else(pc.match_substring(s, "."), s, pc.binary_join_element_wise(s, ".0", ""))
    if not sci.any():
        return out
    idx = np.flatnonzero(sci)
    body = pc.utf8_ltrim(s.take(pa.array(idx)), "-")
    parts = pc.extract_regex(body, r"^(?P<i>\d+)(?:\.(?P<f>\d+))?(?:e(?P<e>[-+]\d+))?$")
    ip, fp, ep = parts.field("i"), parts.field("f"), parts.field("e")
    has_e = np.asarray(pc.not_equal(ep, "").to_numpy(zero_copy_only=False))
    int_len = pc.utf8_length(ip).to_numpy()
    frac_zeros = (pc.utf8_length(fp).to_numpy() - pc.utf8_length(pc.utf8_ltrim(fp, "0")).to_numpy())
    small = np.asarray(pc.equal(ip, "0").to_numpy(zero_copy_only=False))
    exp = np.where(small, -(frac_zeros + 1), int_len - 1)
    if has_e.any():
        e_val = pc.cast(pc.replace_substring(ep.filter(pa.array(has_e)), "+", ""), pa.int64()).to_numpy()
        exp[has_e] = e_val
    digits = pc.utf8_rtrim(pc.utf8_ltrim(pc.binary_join_element_wise(ip, fp, ""), "0"), "0")
    lead = pc.utf8_slice_codeunits(digits, 0, 1)
    rest = pc.utf8_slice_codeunits(digits, 1)
    rest = pc.if_else(pc.equal(rest, ""), "0", rest)
    sign = pa.array(np.where(x[idx] < 0, "-", ""))
    java = pc.binary_join_element_wise(sign, lead, ".", rest, "E", pc.cast(pa.array(exp), pa.string()), "")
    return pc.replace_with_mask(out, pa.array(sci), java)


def _default_seed() -> int:
    return zlib.crc32(b"flowlearn.recommendation.Swing")


def _id_column(t: pa.Table, name: str, stage: str, param: str) -> np.ndarray:
    col = require_column(t, name, stage, param)
    if not pa.types.is_integer(col.type):
        raise TypeError(f"{stage}: column '{name}' (parameter '{param}') has type {col.type}; user and item ids "
                        f"must be integers (Flink ML: Long); index string ids first (fl.feature.StringIndexer)")
    if col.null_count:
        row = first_bad_row(~np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False)))
        raise ValueError(f"{stage}: column '{name}' (parameter '{param}') has a null at row {row}; user and item "
                         f"ids must not be null")
    return col.cast(pa.int64()).to_numpy()


class Swing(_SwingParams, AlgoOperator):
    """Swing item-item similarity (Flink ML ``Swing``): for every item, its ``k`` most similar items.

    Input: one row per (user, item) interaction, integer ids in ``user_col`` / ``item_col`` (a repeated
    pair counts once). Output: one row per item that has a similar item, in ascending item order,
    with ``item_col`` (int64) and ``output_col`` (string): ``"item,score;item,score;..."`` by
    decreasing score, ties by ascending item id, scores written as Java's ``Double.toString``
    (Flink ML's exact output format).

    Params (Flink ML's names and defaults): ``user_col`` ("user"), ``item_col`` ("item"),
    ``output_col`` ("output"), ``k`` (100), ``max_user_num_per_item`` (1000),
    ``min_user_behavior`` (10), ``max_user_behavior`` (1000), ``alpha1`` (15), ``alpha2`` (0),
    ``beta`` (0.3), ``seed``.

    Computation: the interactions as a sparse user x item matrix (sampled per item, vectorized),
    then Flink ML's loop in a Numba kernel: for each item, each pair of its users, the merge of
    their sorted item lists, and the item's ``k`` best kept.

    Departures from Flink ML: an item with more than ``max_user_num_per_item`` users keeps a
    uniform random sample of them drawn with NumPy's generator for ``seed`` (Flink ML's reservoir
    sampling depends on the order records reach its workers, so the sample differs); scores are
    summed in another order (equal up to the last bits).

    On a stream, the whole (bounded) stream is one window (Flink ML requires a bounded input).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"user": [1, 1, 2, 2, 3, 3], "item": [7, 8, 7, 8, 7, 9]})
        >>> fl.recommendation.Swing(min_user_behavior=1, alpha1=0, beta=1.0).transform(t).to_pydict()
        {'item': [7, 8], 'output': ['8,0.125', '7,0.125']}
    """

    def transform(self, *inputs: Any) -> Any:
        if len(inputs) == 1 and getattr(inputs[0], "_flowlearn_stream", False):
            stream = inputs[0]
            schema = self.output_schema(stream.schema) if stream.schema is not None else None
            return stream.window(count=_ALL_ROWS).apply(_SwingWindow(self), name="Swing")\
                .map_batches(_SwingColumns(self.item_col, self.output_col), name="swing_columns", schema=schema)
        return super().transform(*inputs)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes one input table, got {len(tables)}")
        (t,) = tables
        if self.max_user_behavior < self.min_user_behavior:
            raise ValueError(f"{stage}: max_user_behavior={self.max_user_behavior} must be greater than or equal to "
                             f"min_user_behavior={self.min_user_behavior}")
        users = _id_column(t, self.user_col, stage, "user_col")
        items = _id_column(t, self.item_col, stage, "item_col")
        return self._format(*self.similarities(users, items))

    def similarities(self, users: np.ndarray, items: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """From parallel arrays of user and item ids: the item ids (ascending), and each item's ``k``
        most similar items as parallel arrays (item index, similar item index, score), by item, then
        decreasing score, then ascending id."""
        item_ids, icode = np.unique(items, return_inverse=True)
        _, ucode = np.unique(users, return_inverse=True)
        n_items = len(item_ids)
        n_users = int(ucode.max()) + 1 if len(ucode) else 0
        b = sps.csr_matrix((np.ones(len(ucode)), (ucode.reshape(-1), icode.reshape(-1))), shape=(n_users, n_items))
        b.sum_duplicates()                                              # a repeated interaction counts once
        b.sort_indices()
        size = np.diff(b.indptr)
        keep = (size >= self.min_user_behavior) & (size <= self.max_user_behavior)
        weight = np.zeros(n_users)
        weight[keep] = 1.0 / np.power(self.alpha1 + size[keep].astype(np.float64), self.beta)
        b = sps.csr_matrix((np.ones(b.nnz), b.indices, b.indptr), shape=b.shape).multiply(keep[:, None]).tocsr()
        b.eliminate_zeros()
        b.sort_indices()
        sampled = self._sample(b).tocsc()
        sampled.sort_indices()
        parts = []
        for lo in range(0, n_items, _ITEMS_PER_CALL):
            hi = min(lo + _ITEMS_PER_CALL, n_items)
            parts.append(_swing_top_k(b.indptr.astype(np.int64), b.indices.astype(np.int64), weight,
                                      sampled.indptr.astype(np.int64), sampled.indices.astype(np.int64),
                                      float(self.alpha2), lo, hi, n_items, self.k))
        rows, cols, vals = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, dt)
                            for i, dt in enumerate((np.int64, np.int64, np.float64)))
        return item_ids, rows, cols, vals

    def _sample(self, b: sps.csr_matrix) -> sps.csr_matrix:
        """``b`` keeping, for each item (column) with more than ``max_user_num_per_item`` users, a
        uniform random sample of that many."""
        m = self.max_user_num_per_item
        csc = b.tocsc()
        counts = np.diff(csc.indptr)
        if counts.max(initial=0) <= m:
            return b
        rng = np.random.default_rng(self.seed if self.seed is not None else _default_seed())
        col = np.repeat(np.arange(csc.shape[1]), counts)
        order = np.lexsort((rng.random(csc.nnz), col))
        rank = np.empty(csc.nnz, dtype=np.int64)
        rank[order] = np.arange(csc.nnz) - csc.indptr[col[order]]
        data = (rank < m).astype(np.float64)
        out = sps.csc_matrix((data, csc.indices, csc.indptr), shape=csc.shape).tocsr()
        out.eliminate_zeros()
        return out

    def _format(self, item_ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> pa.Table:
        entries = pc.binary_join_element_wise(pc.cast(pa.array(item_ids[cols]), pa.string()),
                                              java_double_strings(vals), ",")
        present, offsets = np.unique(rows, return_index=True)
        lists = pa.ListArray.from_arrays(pa.array(np.append(offsets, len(rows)).astype(np.int32)), entries)
        return pa.table({self.item_col: pa.array(item_ids[present], pa.int64()),
                         self.output_col: pc.binary_join(lists, ";")})


@numba.njit(cache=True, nogil=True)
def _swing_top_k(u_ptr: np.ndarray, u_items: np.ndarray, weight: np.ndarray, i_ptr: np.ndarray,
                 i_users: np.ndarray, alpha2: float, lo: int, hi: int, n_items: int, k: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flink ML's loop, for items ``lo..hi-1``: for every pair of the item's sampled users
    (``i_ptr``/``i_users``, CSC), the items both bought (a merge of their sorted item lists,
    ``u_ptr``/``u_items``) get ``weight[u] * weight[v] / (alpha2 + common)``, the item itself
    excepted; then the item's ``k`` best (score descending, ids ascending on ties)."""
    acc = np.zeros(n_items)
    seen = np.zeros(n_items, dtype=np.bool_)
    touched = np.empty(n_items, dtype=np.int64)
    common = np.empty(n_items, dtype=np.int64)
    out_r, out_c, out_v = [], [], []
    for i in range(lo, hi):
        nt = 0
        s, e = i_ptr[i], i_ptr[i + 1]
        for a in range(s, e):
            u = i_users[a]
            for bb in range(a + 1, e):
                v = i_users[bb]
                pu, eu, pv, ev = u_ptr[u], u_ptr[u + 1], u_ptr[v], u_ptr[v + 1]
                nc = 0
                while pu < eu and pv < ev:
                    x, y = u_items[pu], u_items[pv]
                    if x == y:
                        common[nc] = x
                        nc += 1
                        pu += 1
                        pv += 1
                    elif x < y:
                        pu += 1
                    else:
                        pv += 1
                if nc == 0:
                    continue
                w = weight[u] * weight[v] / (alpha2 + nc)
                for c in range(nc):
                    j = common[c]
                    if j == i:
                        continue
                    if not seen[j]:
                        seen[j] = True
                        touched[nt] = j
                        nt += 1
                    acc[j] += w
        if nt == 0:
            continue
        ids = np.sort(touched[:nt])
        scores = acc[ids]
        order = np.argsort(-scores, kind="mergesort")           # stable: equal scores keep ascending ids
        for t in range(min(k, nt)):
            out_r.append(i)
            out_c.append(ids[order[t]])
            out_v.append(scores[order[t]])
        for t in range(nt):
            acc[touched[t]] = 0.0
            seen[touched[t]] = False
    return np.array(out_r, dtype=np.int64), np.array(out_c, dtype=np.int64), np.array(out_v, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class _SwingWindow:
    """The Swing of one window's rows (a value object, so a plan holding it can be serialized)."""

    stage: Any

    def __call__(self, t: pa.Table) -> pa.Table:
        return self.stage.transform(t)


@dataclasses.dataclass(frozen=True)
class _SwingColumns:
    """A window's output without the window bounds."""

    item_col: str
    output_col: str

    def __call__(self, t: pa.Table) -> pa.Table:
        return t.select([self.item_col, self.output_col])
