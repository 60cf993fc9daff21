"""ClusteringEvaluator (Spark MLlib's silhouette, squaredEuclidean and cosine).

Spark's silhouette is the usual one, (b - a) / max(a, b) with a the mean distance to the other
members of the own cluster, b the least mean distance to another cluster, 0 for singletons,
but with Spark's distances: its default is the *squared* Euclidean distance, so the oracle is
scikit-learn's ``silhouette_score(X, labels, metric="sqeuclidean")`` (``metric="cosine"`` for
cosine), not its default Euclidean metric. With weights, Spark averages a row's distances by
weight excluding the row's own weight and takes the weighted mean of the coefficients; the
oracle for that is a brute-force pairwise computation with ``scipy.spatial.distance.cdist``.
"""
from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.metrics import silhouette_score

import flowlearn as fl
from flowlearn.evaluation import clustering as cl_module
from flowlearn.evaluation.clustering import ClusteringEvaluator
from flowlearn.linalg import from_csr

MEASURES = [("squaredEuclidean", "sqeuclidean"), ("cosine", "cosine")]


@pytest.fixture(scope="module")
def iris():
    x, _ = load_iris(return_X_y=True)
    labels = KMeans(n_clusters=3, n_init=4, random_state=0).fit_predict(x)
    return x, labels


def brute_force(x, labels, w, metric):
    d = cdist(x, x, metric=metric)
    clusters = np.unique(labels)
    s = np.zeros(len(x))
    for i in range(len(x)):
        own = labels == labels[i]
        if w[own].sum() == w[i]:
            continue
        a = (d[i, own] @ w[own]) / (w[own].sum() - w[i])
        b = min((d[i, labels == c] @ w[labels == c]) / w[labels == c].sum() for c in clusters if c != labels[i])
        s[i] = (b - a) / max(a, b)
    return float(s @ w / w.sum())


@pytest.mark.parametrize("measure,sk_metric", MEASURES)
def test_matches_sklearn_silhouette(iris, measure, sk_metric):
    x, labels = iris
    got = ClusteringEvaluator(distance_measure=measure).evaluate({"features": x, "prediction": labels})
    assert got["silhouette"] == pytest.approx(silhouette_score(x, labels, metric=sk_metric), rel=1e-10)


@pytest.mark.parametrize("measure,sk_metric", MEASURES)
def test_sparse_equals_dense(iris, measure, sk_metric):
    x, labels = iris
    x = np.where(x > 3.0, x, 0.0)     # real zeros for the sparse layout
    dense = ClusteringEvaluator(distance_measure=measure).evaluate({"features": x, "prediction": labels})
    sparse = ClusteringEvaluator(distance_measure=measure).evaluate(
        fl.table({"features": from_csr(sps.csr_matrix(x)), "prediction": labels}))
    assert sparse["silhouette"] == pytest.approx(dense["silhouette"], rel=1e-10)
    assert dense["silhouette"] == pytest.approx(silhouette_score(x, labels, metric=sk_metric), rel=1e-10)


@pytest.mark.parametrize("measure,sk_metric", MEASURES)
def test_weighted_matches_brute_force(iris, measure, sk_metric):
    x, labels = iris
    w = np.random.default_rng(3).uniform(0.1, 2.0, len(x))
    got = ClusteringEvaluator(distance_measure=measure, weight_col="w").evaluate(
        {"features": x, "prediction": labels, "w": w})
    assert got["silhouette"] == pytest.approx(brute_force(x, labels, w, sk_metric), rel=1e-10)


def test_singletons_score_zero_and_far_offset_is_harmless():
    x = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0], [20.0, 20.0]]) + 1e6
    labels = np.array([0, 0, 1, 1, 2])
    got = ClusteringEvaluator().evaluate({"features": x, "prediction": labels})["silhouette"]
    assert got == pytest.approx(silhouette_score(x, labels, metric="sqeuclidean"), rel=1e-9)


def test_transform_schema_and_larger_better(iris):
    x, labels = iris
    t = fl.table({"features": x, "prediction": labels})
    ev = ClusteringEvaluator()
    out = ev.transform(t)
    assert out.column_names == ["silhouette"] and out.num_rows == 1
    assert out.schema == ev.output_schema(t.schema)
    assert ev.is_larger_better() is True


def test_kmeans_predictions_end_to_end(iris, tmp_path):
    x, _ = iris
    t = fl.table({"features": x})
    out = fl.clustering.KMeans(k=3, seed=1).fit(t).transform(t)
    ev = ClusteringEvaluator()
    got = ev.evaluate(out)["silhouette"]
    assert got == pytest.approx(silhouette_score(x, out.column("prediction").to_numpy(), metric="sqeuclidean"))
    ev.save(str(tmp_path / "ev"))
    assert fl.load(str(tmp_path / "ev")).evaluate(out)["silhouette"] == got


def test_bad_input_is_named():
    ev = ClusteringEvaluator()
    with pytest.raises(ValueError, match="holds 1 cluster\\(s\\); the silhouette needs at least 2"):
        ev.evaluate({"features": [[0.0], [1.0]], "prediction": [0, 0]})
    with pytest.raises(ValueError, match="zero vector at row 1; the cosine distance needs non-zero vectors"):
        ClusteringEvaluator(distance_measure="cosine").evaluate(
            {"features": [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], "prediction": [0, 0, 1]})
    with pytest.raises(ValueError, match="input column 'features' \\(parameter 'features_col'\\) is missing"):
        ev.evaluate({"prediction": [0, 1]})
    with pytest.raises(TypeError, match="column 'features' has type double, expected a vector column"):
        ev.evaluate({"features": [0.0, 1.0], "prediction": [0, 1]})
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 0"):
        ev.evaluate({"features": [[float("nan")], [1.0]], "prediction": [0, 1]})
    with pytest.raises(ValueError, match="column 'features' \\(parameter 'features_col'\\) holds vectors of size 0"):
        ev.evaluate(pa.table({"features": pa.array([[], []], pa.list_(pa.float64(), 0)), "prediction": [0, 1]}))
    with pytest.raises(ValueError, match="parameter 'distance_measure' = 'euclidean' violates in_array"):
        ClusteringEvaluator(distance_measure="euclidean")


def test_doctests():
    assert doctest.testmod(cl_module).failed == 0
