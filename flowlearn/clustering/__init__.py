"""Clustering: k-means (batch and online)."""
from flowlearn.clustering.kmeans import *  # noqa: F401,F403
from flowlearn.clustering.online_kmeans import *  # noqa: F401,F403
