"""Clustering metrics with Spark MLlib's names: ``ClusteringEvaluator`` (silhouette).

Example:
    >>> from flowlearn.evaluation.clustering import ClusteringEvaluator
    >>> t = {"features": [[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]], "prediction": [0, 0, 1, 1]}
    >>> round(ClusteringEvaluator().evaluate(t)["silhouette"], 4)
    0.98
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.data.columns import numeric_column, vector_column
from flowlearn.evaluation.multiclass import _MetricsEvaluator
from flowlearn.params import HasFeaturesCol, HasPredictionCol, HasWeightCol, Param, in_array

__all__ = ["ClusteringEvaluator", "silhouette"]

CLUSTERING_METRICS_NAMES = ["silhouette"]
DISTANCE_MEASURES = ["squaredEuclidean", "cosine"]


class ClusteringEvaluator(HasFeaturesCol, HasPredictionCol, HasWeightCol, _MetricsEvaluator):
    """The silhouette of a clustering, as Spark MLlib's ``ClusteringEvaluator``.

    For a row ``i`` of cluster ``c``, ``a(i)`` is the weighted mean distance from ``i`` to the
    other rows of ``c`` and ``b(i)`` the smallest weighted mean distance from ``i`` to the rows of
    another cluster; ``s(i) = (b - a) / max(a, b)``, and 0 for a row alone in its cluster. The
    silhouette is the weighted mean of ``s(i)`` (``weight_col``, or 1). ``distance_measure`` is
    ``"squaredEuclidean"`` (Spark's default: ``|x - y|^2``, not the Euclidean distance) or
    ``"cosine"`` (``1 - cos(x, y)``; every vector must be non-zero).

    As in Spark, the mean distances come from per-cluster sums (``O(n k d)``, no pairwise
    matrix), so this scales to many rows. Unweighted, the value equals scikit-learn's
    ``silhouette_score(X, labels, metric="sqeuclidean")`` (or ``metric="cosine"``); note that
    scikit-learn's default metric is the Euclidean distance, which gives other values.
    Clusters are the distinct values of ``prediction_col``; at least two are needed.

    Example:
        >>> from flowlearn.evaluation.clustering import ClusteringEvaluator
        >>> t = {"features": [[1.0, 0.1], [1.0, 0.2], [0.1, 1.0], [0.3, 1.0]], "prediction": [0, 0, 1, 1]}
        >>> round(ClusteringEvaluator(distance_measure="cosine").evaluate(t)["silhouette"], 4)
        0.9823
    """

    _ALL = CLUSTERING_METRICS_NAMES
    _SMALLER: set[str] = set()

    metrics_names = Param(list[str], default=["silhouette"], validator=in_array(CLUSTERING_METRICS_NAMES),
                          doc="Names of the output metrics: ['silhouette'].")
    distance_measure = Param(str, default="squaredEuclidean", validator=in_array(DISTANCE_MEASURES),
                             doc="Distance between rows: 'squaredEuclidean' or 'cosine' (Spark's names).")

    def _input_cols(self) -> list[tuple[str, str]]:
        cols = [("features_col", self.features_col), ("prediction_col", self.prediction_col)]
        return cols + ([("weight_col", self.weight_col)] if self.weight_col is not None else [])

    def _metrics(self, t: pa.Table, names: list[str]) -> dict[str, float]:
        stage = type(self).__name__
        self._check_schema(t.schema)
        x = vector_column(t, self.features_col, stage, param="features_col")
        cluster = numeric_column(t, self.prediction_col, stage, param="prediction_col")
        w = self._weights(t)
        self._require_rows(t, w)
        if x.shape[1] == 0:
            raise ValueError(f"{stage}: column '{self.features_col}' (parameter 'features_col') holds vectors of size "
                             f"0; points without coordinates have no distances")
        if self.distance_measure == "cosine":
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel() if sps.issparse(x)
                            else np.einsum("ij,ij->i", x, x))
            if (norms == 0).any():
                row = int(np.flatnonzero(norms == 0)[0])
                raise ValueError(f"{stage}: column '{self.features_col}' (parameter 'features_col') holds a zero "
                                 f"vector at row {row}; the cosine distance needs non-zero vectors (use "
                                 f"distance_measure='squaredEuclidean' or drop such rows)")
        k = len(np.unique(cluster))
        if k < 2:
            raise ValueError(f"{stage}: column '{self.prediction_col}' (parameter 'prediction_col') holds {k} "
                             f"cluster(s); the silhouette needs at least 2 clusters")
        return {"silhouette": silhouette(x, cluster, w, self.distance_measure)}


def silhouette(x: np.ndarray | sps.csr_matrix, cluster: np.ndarray, weight: np.ndarray | None = None,
               distance_measure: str = "squaredEuclidean") -> float:
    """The weighted silhouette of :class:`ClusteringEvaluator` from arrays (per-cluster sums).

    Example:
        >>> import numpy as np
        >>> round(silhouette(np.array([[0.0], [1.0], [9.0], [10.0]]), np.array([0, 0, 1, 1])), 4)
        0.9876
    """
    n = x.shape[0]
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    _, codes = np.unique(cluster, return_inverse=True)
    k = int(codes.max()) + 1
    member = sps.csr_matrix((w, (codes, np.arange(n))), shape=(k, n))   # weighted cluster indicator
    size = np.bincount(codes, weights=w, minlength=k)
    if distance_measure == "cosine":
        if sps.issparse(x):
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
            x = sps.diags(1.0 / norms) @ x
        else:
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sums = np.asarray((member @ x).todense()) if sps.issparse(x) else member @ x
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_dist = 1.0 - np.asarray(x @ sums.T) / size
    else:
        if not sps.issparse(x):   # distances do not move with the origin; centring keeps the sums small
            x = x - (w @ x) / w.sum()
            sq = np.einsum("ij,ij->i", x, x)
        else:
            sq = np.asarray(x.multiply(x).sum(axis=1)).ravel()
        sums = np.asarray((member @ x).todense()) if sps.issparse(x) else member @ x
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_dist = sq[:, None] + (member @ sq) / size - 2.0 * np.asarray(x @ sums.T) / size
    mean_dist = np.maximum(mean_dist, 0.0)   # rounding below 0
    mean_dist[:, size <= 0] = np.inf          # clusters of weight 0 are no neighbours
    rows = np.arange(n)
    own_size = size[codes]
    alone = own_size <= w
    with np.errstate(divide="ignore", invalid="ignore"):
        a = mean_dist[rows, codes] * own_size / (own_size - w)    # mean over the *other* rows of the cluster
    mean_dist[rows, codes] = np.inf
    b = mean_dist.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(a < b, 1.0 - a / b, np.where(a > b, b / a - 1.0, 0.0))
    s[alone] = 0.0
    return float(np.dot(w, s) / w.sum())
