"""Hierarchical (agglomerative) clustering as in Flink ML 2.x: ``AgglomerativeClustering``.

An ``AlgoOperator`` with two outputs: the input rows with a cluster id, and the merges (the
dendrogram), ``cluster_id1``, ``cluster_id2``, ``distance``, ``size_of_merged_cluster``: the
format of SciPy's linkage matrix, merge ``i`` creating cluster ``n + i``. The tree is built with
the nearest-neighbour-chain algorithm (Müllner, "Modern hierarchical, agglomerative clustering
algorithms", as Flink ML) in a Numba kernel over the condensed distance matrix, with the
Lance-Williams updates of the ward, complete, single and average linkages.

The input is cut into windows (``windows``, Flink ML's ``HasWindows``), each clustered on its own:
one window holding everything by default, or tumbling windows by row count, event time or
processing time, so the operator also runs on an unbounded stream.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.clustering.agglomerative import AgglomerativeClustering
    >>> t = fl.table({"features": [[1.0, 1.0], [1.0, 4.0], [1.0, 0.0], [4.0, 1.5], [4.0, 4.0], [4.0, 0.0]]})
    >>> rows, merges = AgglomerativeClustering(linkage="ward", num_clusters=2).transform(t)
    >>> rows.column("prediction").to_pylist()
    [0, 1, 0, 0, 1, 0]
    >>> merges.column("size_of_merged_cluster").to_pylist()
    [2, 2, 2, 4]
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sps
from scipy.spatial.distance import pdist

from flowlearn.api import AlgoOperator
from flowlearn.data.columns import check_squares, require_column, vector_column, with_column
from flowlearn.params import HasDistanceMeasure, HasFeaturesCol, HasPredictionCol, Param, Validator, gt, gt_eq, \
    in_array

__all__ = ["AgglomerativeClustering"]

_LINKAGES = ["ward", "complete", "single", "average"]
_MERGE_SCHEMA = pa.schema([("cluster_id1", pa.int32()), ("cluster_id2", pa.int32()), ("distance", pa.float64()),
                           ("size_of_merged_cluster", pa.int32())])
_MERGE_COL = "__flowlearn_merge_info"
# a count window that never fills: everything up to the end of the input (Flink ML's GlobalWindows)
_ALL_ROWS = 1 << 62


def _valid_windows(w: Any) -> bool:
    if not isinstance(w, dict) or w.get("kind") not in ("global", "count", "event_time", "processing_time"):
        return False
    kind = w["kind"]
    allowed = {"global": {"kind"}, "count": {"kind", "size"}, "processing_time": {"kind", "size"},
               "event_time": {"kind", "size", "time_col", "max_out_of_orderness"}}[kind]
    if set(w) - allowed:
        return False
    if kind == "count":
        return isinstance(w.get("size"), int) and not isinstance(w["size"], bool) and w["size"] > 0
    if kind in ("event_time", "processing_time"):
        size = w.get("size")
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0.001 <= size < math.inf:
            return False
    if kind == "event_time":
        ooo = w.get("max_out_of_orderness", 0.0)
        return isinstance(w.get("time_col"), str) and isinstance(ooo, (int, float)) and 0 <= ooo < math.inf
    return True


_WINDOWS_RULE = Validator(
    "windows()",
    "a dict: {'kind': 'global'} (one window of all rows), {'kind': 'count', 'size': n}, "
    "{'kind': 'processing_time', 'size': seconds} or {'kind': 'event_time', 'size': seconds, 'time_col': column, "
    "'max_out_of_orderness': seconds}",
    _valid_windows)


class _AgglomerativeClusteringParams(HasDistanceMeasure, HasFeaturesCol, HasPredictionCol):
    num_clusters = Param(int, default=2, validator=gt(0), optional=True,
                         doc="The max number of clusters to create; None to cut by distance_threshold instead.")
    distance_threshold = Param(float, default=None, validator=gt_eq(0),
                               doc="Merge clusters while their distance is at most this; None to cut at "
                                   "num_clusters instead.")
    linkage = Param(str, default="ward", validator=in_array(_LINKAGES),
                    doc="Criterion for the distance between two clusters: 'ward' (variance; euclidean only), "
                        "'complete' (max), 'single' (min), 'average' (mean) of the distances between their points.")
    compute_full_tree = Param(bool, default=False,
                              doc="Output every merge of the tree, not only those up to the cut.")
    windows = Param(dict, default=None, validator=_WINDOWS_RULE,
                    doc="How the input is cut into windows clustered independently (Flink ML's HasWindows); "
                        "None is {'kind': 'global'}, one window of all rows (Flink ML's GlobalWindows).")


# --- the nearest-neighbour chain ----------------------------------------------------------------

@numba.njit(cache=True, inline="always")
def _cidx(n: int, i: int, j: int) -> int:
    if i > j:
        i, j = j, i
    return n * i - (i * (i + 1)) // 2 + j - i - 1


@numba.njit(cache=True)
def _nn_chain(d: np.ndarray, n: int, method: int) -> np.ndarray:
    """Merges (slot x, slot y, distance, size), in the order the chain finds them, of the ``n``
    points whose condensed distances are ``d`` (updated in place). The merged cluster takes slot
    ``y`` (the larger). method: 0 ward, 1 complete, 2 single, 3 average."""
    z = np.empty((n - 1, 4))
    size = np.ones(n, dtype=np.int64)
    active = np.ones(n, dtype=np.bool_)
    chain = np.empty(n, dtype=np.int64)
    length = 0
    for k in range(n - 1):
        if length == 0:
            for i in range(n):
                if active[i]:
                    chain[0] = i
                    length = 1
                    break
        while True:
            x = chain[length - 1]
            if length > 1:
                y = chain[length - 2]
                best = d[_cidx(n, x, y)]
            else:
                y = -1
                best = np.inf
            for i in range(n):
                if not active[i] or i == x:
                    continue
                dist = d[_cidx(n, x, i)]
                if dist < best:
                    best = dist
                    y = i
            if length > 1 and y == chain[length - 2]:
                break
            chain[length] = y
            length += 1
        length -= 2
        if x > y:
            x, y = y, x
        nx, ny = size[x], size[y]
        z[k, 0], z[k, 1], z[k, 2], z[k, 3] = x, y, best, nx + ny
        active[x] = False
        size[y] = nx + ny
        for i in range(n):
            if not active[i] or i == y:
                continue
            dxi = d[_cidx(n, x, i)]
            dyi = d[_cidx(n, y, i)]
            if method == 0:
                ni = size[i]
                t = 1.0 / (nx + ny + ni)
                v = math.sqrt(max((nx + ni) * t * dxi * dxi + (ny + ni) * t * dyi * dyi - ni * t * best * best, 0.0))
            elif method == 1:
                v = max(dxi, dyi)
            elif method == 2:
                v = min(dxi, dyi)
            else:
                v = (nx * dxi + ny * dyi) / (nx + ny)
            d[_cidx(n, i, y)] = v
    return z


@numba.njit(cache=True)
def _find(parent: np.ndarray, a: int) -> int:
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:
        nxt = parent[a]
        parent[a] = root
        a = nxt
    return root


@numba.njit(cache=True)
def _relabel(z: np.ndarray, n: int) -> np.ndarray:
    """Merges sorted by distance with slots replaced by cluster ids (points 0..n-1, merge i makes
    cluster n + i), smaller id first: SciPy's linkage format, Flink ML's merge info."""
    parent = np.arange(2 * n - 1)
    out = np.empty((n - 1, 4))
    for k in range(n - 1):
        a = _find(parent, int(z[k, 0]))
        b = _find(parent, int(z[k, 1]))
        out[k, 0], out[k, 1] = min(a, b), max(a, b)
        out[k, 2], out[k, 3] = z[k, 2], z[k, 3]
        parent[a] = n + k
        parent[b] = n + k
    return out


def _distances(x: np.ndarray, measure: str) -> np.ndarray:
    """Condensed pairwise distances (``pdist`` order) under Flink ML's measure: euclidean, manhattan
    (L1), cosine ``1 - cos`` (distance 1 to a zero vector, as the KMeans kernels)."""
    if measure == "euclidean":
        return pdist(x, "euclidean")
    if measure == "manhattan":
        return pdist(x, "cityblock")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    unit = np.divide(x, norms[:, None], out=np.zeros_like(x), where=norms[:, None] > 0)
    d = pdist(unit, "sqeuclidean") * 0.5           # |u - v|^2 / 2 = 1 - cos for unit vectors
    n = len(x)
    for z in np.flatnonzero(norms == 0).tolist():   # a zero vector is at distance 1 from every row
        i = np.arange(z)
        d[n * i - i * (i + 1) // 2 + z - i - 1] = 1.0
        d[n * z - z * (z + 1) // 2 + np.arange(n - z - 1)] = 1.0
    return d


def linkage_tree(x: np.ndarray, linkage: str = "ward", distance_measure: str = "euclidean") -> np.ndarray:
    """The full merge tree of the rows of ``x`` as an ``(n - 1) x 4`` array in SciPy's linkage
    format: ``cluster_id1 < cluster_id2``, ``distance``, ``size_of_merged_cluster``, by distance.

    Example:
        >>> linkage_tree(np.array([[0.0], [1.0], [5.0]]), "single").tolist()
        [[0.0, 1.0, 1.0, 2.0], [2.0, 3.0, 4.0, 3.0]]
    """
    n = x.shape[0]
    if n < 2:
        return np.zeros((0, 4))
    d = np.ascontiguousarray(_distances(np.asarray(x, dtype=np.float64), distance_measure), dtype=np.float64)
    z = _nn_chain(d, n, _LINKAGES.index(linkage))
    z = z[np.argsort(z[:, 2], kind="mergesort")]
    return _relabel(z, n)


def _cut_labels(tree: np.ndarray, n: int, merges: int) -> np.ndarray:
    """Cluster ids (0, 1, ... by first appearance in row order) after the first ``merges`` merges."""
    parent = np.arange(2 * n - 1)
    a, b = tree[:merges, 0].astype(np.int64), tree[:merges, 1].astype(np.int64)
    parent[a] = n + np.arange(merges)
    parent[b] = n + np.arange(merges)
    root = np.arange(n)
    while True:  # pointer jumping: every node reaches its root in O(log depth) vectorized passes
        nxt = parent[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
        parent = parent[parent]
    _, first, inverse = np.unique(root, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)].astype(np.int32)


def _event_ms(t: pa.Table, col: str, stage: str) -> np.ndarray:
    c = require_column(t, col, stage, "windows")
    if c.null_count:
        raise ValueError(f"{stage}: event time column '{col}' has a null at row "
                         f"{int(np.flatnonzero(~np.asarray(pc.is_valid(c).to_numpy(zero_copy_only=False)))[0])}")
    if pa.types.is_timestamp(c.type):
        return c.cast(pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(c.type) or pa.types.is_floating(c.type):
        return np.floor(c.to_numpy().astype(np.float64) * 1000.0).astype(np.int64)
    raise TypeError(f"{stage}: event time column '{col}' must be a timestamp or numbers of seconds, not {c.type}")


class AgglomerativeClustering(_AgglomerativeClusteringParams, AlgoOperator):
    """Agglomerative (bottom-up hierarchical) clustering (Flink ML ``AgglomerativeClustering``).

    Every row starts as its own cluster and the two closest clusters merge, one pair at a time, under
    ``linkage`` (``ward`` needs ``distance_measure="euclidean"``). The tree is cut after
    ``n - num_clusters`` merges, or after the merges at distance at most ``distance_threshold``;
    exactly one of the two is set (``num_clusters`` defaults to 2: set it to ``None`` to cut by
    distance).

    ``transform`` returns two tables:

    * the input rows with ``prediction_col`` (int32): cluster ids 0, 1, ... numbered by first
      appearance in the window's rows (Flink ML's numbering);
    * the merges up to the cut (all of them with ``compute_full_tree``): ``cluster_id1``,
      ``cluster_id2`` (the merged clusters, smaller id first; ids below the window's row count are
      its rows, merge ``i`` creates cluster ``rows + i``), ``distance`` and
      ``size_of_merged_cluster``, in order of distance (SciPy's linkage matrix).

    ``windows`` (a dict) cuts the input into windows, each clustered on its own:
    ``{"kind": "global"}`` (the default, ``None``: everything, up to the end of a bounded stream),
    ``{"kind": "count", "size": n}``, ``{"kind": "event_time", "size": s, "time_col": c,
    "max_out_of_orderness": s}`` or ``{"kind": "processing_time", "size": s}`` (tumbling windows;
    on a table, processing time puts every row in one window and the output is grouped by window).
    On a ``Stream`` it returns the two outputs as two streams.

    Departures from Flink ML: a window with fewer rows than ``num_clusters`` keeps each row in its
    own cluster (Flink ML fails); under cosine distance a zero vector is at distance 1 from every
    row (Flink ML computes NaN); ties between equal distances are broken by the lowest row index.

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.clustering.agglomerative import AgglomerativeClustering
        >>> t = fl.table({"features": [[0.0], [0.5], [3.0], [3.2], [10.0]]})
        >>> op = AgglomerativeClustering(num_clusters=None, distance_threshold=1.0, linkage="single")
        >>> rows, merges = op.transform(t)
        >>> rows.column("prediction").to_pylist(), [round(d, 9) for d in merges.column("distance").to_pylist()]
        ([0, 0, 1, 1, 2], [0.2, 0.5])
    """

    def _check(self) -> None:
        stage = type(self).__name__
        if (self.num_clusters is None) == (self.distance_threshold is None):
            raise ValueError(f"{stage}: exactly one of num_clusters ({self.num_clusters}) and distance_threshold "
                             f"({self.distance_threshold}) must be set; set the other to None")
        if self.linkage == "ward" and self.distance_measure != "euclidean":
            raise ValueError(f"{stage}: linkage='ward' works only with distance_measure='euclidean', got "
                             f"'{self.distance_measure}'")

    def transform(self, *inputs: Any) -> Any:
        if len(inputs) == 1 and getattr(inputs[0], "_flowlearn_stream", False):
            self._check()
            return self._transform_stream(inputs[0])
        return super().transform(*inputs)

    def _windows(self) -> dict:
        return self.windows or {"kind": "global"}

    def _transform_stream(self, stream: Any) -> tuple[Any, Any]:
        w = self._windows()
        kind = w["kind"]
        if kind == "global":
            windowed = stream.window(count=_ALL_ROWS)
        elif kind == "count":
            windowed = stream.window(count=w["size"])
        elif kind == "processing_time":
            windowed = stream.window(processing_time=float(w["size"]))
        else:
            windowed = stream.window(event_time=float(w["size"]), time_col=w["time_col"],
                                     max_out_of_orderness=float(w.get("max_out_of_orderness", 0.0)))
        both = windowed.apply(_ClusterWindow(self), name=type(self).__name__)
        schema = self.output_schema(stream.schema)[0] if stream.schema is not None else None
        rows = both.map_batches(_ClusteredRows(self.prediction_col), name="clustered_rows", schema=schema)
        merges = both.map_batches(_MergeRows(), name="merge_info", schema=_MERGE_SCHEMA)
        return rows, merges

    def _transform(self, *tables: pa.Table) -> tuple[pa.Table, pa.Table]:
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.transform takes one input table, got {len(tables)}")
        self._check()
        (t,) = tables
        x = self._features(t)
        parts = self._window_rows(t)
        if len(parts) == 1:
            labels, merges = self._cluster(x)
            return with_column(t, self.prediction_col, pa.array(labels, pa.int32())), merges
        outs, merge_tables = [], []
        for idx in parts:
            labels, merges = self._cluster(x[idx])
            outs.append(with_column(t.take(pa.array(idx)), self.prediction_col, pa.array(labels, pa.int32())))
            merge_tables.append(merges)
        return pa.concat_tables(outs), pa.concat_tables(merge_tables)

    def _features(self, t: pa.Table) -> np.ndarray:
        stage = type(self).__name__
        x = vector_column(t, self.features_col, stage, param="features_col")
        check_squares(x, self.features_col, stage, "features_col", "squared distances")
        return np.asarray(x.toarray() if sps.issparse(x) else x, dtype=np.float64)

    def _window_rows(self, t: pa.Table) -> list[np.ndarray]:
        """Row indices of each window of the table, in window order (one window for 'global' and
        'processing_time': a table arrives at once)."""
        n = t.num_rows
        w = self._windows()
        if w["kind"] in ("global", "processing_time") or n == 0:
            return [np.arange(n)]
        if w["kind"] == "count":
            return [np.arange(s, min(s + w["size"], n)) for s in range(0, n, w["size"])]
        ms = _event_ms(t, w["time_col"], type(self).__name__)
        size = int(round(float(w["size"]) * 1000))
        win = ms - np.mod(ms, size)
        order = np.argsort(win, kind="stable")
        _, starts = np.unique(win[order], return_index=True)
        return np.split(order, starts[1:])

    def _cluster(self, x: np.ndarray) -> tuple[np.ndarray, pa.Table]:
        """Cluster ids of the rows of one window and its merge info table."""
        n = x.shape[0]
        tree = linkage_tree(x, self.linkage, self.distance_measure)
        if self.distance_threshold is not None:
            cut = int(np.count_nonzero(tree[:, 2] <= self.distance_threshold))
        else:
            cut = max(n - self.num_clusters, 0)
        labels = _cut_labels(tree, n, cut) if n else np.zeros(0, np.int32)
        shown = tree if self.compute_full_tree else tree[:cut]
        merges = pa.table([pa.array(shown[:, 0].astype(np.int32)), pa.array(shown[:, 1].astype(np.int32)),
                           pa.array(shown[:, 2]), pa.array(shown[:, 3].astype(np.int32))], schema=_MERGE_SCHEMA)
        return labels, merges


@dataclasses.dataclass(frozen=True)
class _ClusterWindow:
    """One window's clustering: its rows with the cluster ids, and the window's merge info in a
    hidden list column (all of it on the first row); a value object, so plans holding it serialize."""

    stage: Any

    def __call__(self, t: pa.Table) -> pa.Table:
        rows, merges = self.stage.transform(t)
        n = rows.num_rows
        offsets = np.zeros(n + 1, dtype=np.int32)
        offsets[1:] = merges.num_rows
        packed = pa.ListArray.from_arrays(pa.array(offsets), pa.StructArray.from_arrays(
            [merges.column(i).combine_chunks() if merges.num_rows else pa.array([], f.type)
             for i, f in enumerate(_MERGE_SCHEMA)], fields=list(_MERGE_SCHEMA)))
        return rows.append_column(_MERGE_COL, packed)


@dataclasses.dataclass(frozen=True)
class _ClusteredRows:
    prediction_col: str

    def __call__(self, t: pa.Table) -> pa.Table:
        return t.drop_columns([c for c in (_MERGE_COL, "window_start", "window_end") if c in t.column_names])


@dataclasses.dataclass(frozen=True)
class _MergeRows:
    def __call__(self, t: pa.Table) -> pa.Table:
        if _MERGE_COL not in t.column_names or t.num_rows == 0:
            return _MERGE_SCHEMA.empty_table()
        flat = t.column(_MERGE_COL).combine_chunks().flatten()
        return pa.Table.from_batches([pa.RecordBatch.from_struct_array(flat)], schema=_MERGE_SCHEMA) \
            if len(flat) else _MERGE_SCHEMA.empty_table()

