"""Clustering: k-means (batch and online) and agglomerative (hierarchical) clustering.

Names are imported from their modules on first use (``flowlearn._lazy``); add an export as one
entry of ``_EXPORTS``."""
from flowlearn._lazy import lazy_exports

_EXPORTS = {
    "KMeans": ".kmeans",
    "KMeansModel": ".kmeans",
    "OnlineKMeans": ".online_kmeans",
    "OnlineKMeansModel": ".online_kmeans",
    "OnlineKMeansTrainer": ".online_kmeans",
    "AgglomerativeClustering": ".agglomerative",
}

lazy_exports(globals(), __name__, _EXPORTS)
