"""Conformance cases for Knn, AgglomerativeClustering, Swing and FPGrowth, on small slices of
scikit-learn's bundled data (iris; digits pixels as transactions) and Flink ML's Swing input."""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
from sklearn.datasets import load_digits, load_iris

from flowlearn.classification.knn import Knn
from flowlearn.clustering.agglomerative import AgglomerativeClustering
from flowlearn.linalg import from_numpy
from flowlearn.recommendation.fpgrowth import FPGrowth
from flowlearn.recommendation.swing import Swing


@functools.lru_cache(maxsize=None)
def iris() -> pa.Table:
    """30 iris rows (10 per class): features, label 0..2."""
    d = load_iris()
    idx = np.r_[0:10, 50:60, 100:110]
    return pa.table({"features": from_numpy(d.data[idx]), "label": d.target[idx].astype(float)})


@functools.lru_cache(maxsize=None)
def baskets() -> pa.Table:
    """40 digits images as transactions: the names of their brightest pixels."""
    x = load_digits().data[:40]
    return pa.table({"items": pa.array([[f"p{j}" for j in np.flatnonzero(img >= 14)] for img in x],
                                       pa.list_(pa.string())), "id": np.arange(40)})


@functools.lru_cache(maxsize=None)
def interactions() -> pa.Table:
    """Flink ML's SwingTest input (user, item) and a few more rows."""
    users = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5]
    items = [10, 11, 12, 13, 12, 10, 11, 12, 13, 12, 12, 10, 11, 12, 13, 10, 13, 14]
    return pa.table({"user": pa.array(users, pa.int64()), "item": pa.array(items, pa.int64())})


def _knn() -> Knn:
    return Knn(k=4)


def _fpgrowth() -> FPGrowth:
    return FPGrowth(min_support=0.3, min_confidence=0.6)


CASES = {
    "Knn": lambda: (_knn(), iris()),
    "KnnModel": lambda: (_knn().fit(iris()), iris()),
    "AgglomerativeClustering": lambda: (AgglomerativeClustering(num_clusters=3, linkage="average"), iris()),
    "Swing": lambda: (Swing(min_user_behavior=2, max_user_behavior=4, k=2), interactions()),
    "FPGrowth": lambda: (_fpgrowth(), baskets()),
    "FPGrowthModel": lambda: (_fpgrowth().fit(baskets()), baskets()),
}
