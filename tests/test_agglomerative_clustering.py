"""AgglomerativeClustering (Flink ML's hierarchical clustering with merge info and windows).

Oracles: Flink ML's published ``AgglomerativeClusteringTest`` merge distances and groups; SciPy's
``scipy.cluster.hierarchy.linkage`` (the merge matrix: ids, distances and sizes) and scikit-learn's
``AgglomerativeClustering`` (labels up to the numbering, which is Flink ML's first appearance here)
on iris and digits, jittered so that no two distances tie; windows against SciPy run on each
window's rows.
"""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from sklearn.cluster import AgglomerativeClustering as SkAgglomerative
from sklearn.datasets import load_digits, load_iris

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.clustering.agglomerative import AgglomerativeClustering

FLINK_INPUT = {"features": [[1.0, 1.0], [1.0, 4.0], [1.0, 0.0], [4.0, 1.5], [4.0, 4.0], [4.0, 0.0]]}
FLINK_DISTANCES = {  # AgglomerativeClusteringTest, full trees (tolerance 1e-7)
    ("average", "euclidean"): [1, 1.5, 3, 3.1394402, 3.9559706],
    ("average", "cosine"): [0, 1.1102230e-16, 0.0636708, 0.1425070, 0.3664484],
    ("average", "manhattan"): [1, 1.5, 3, 3.75, 4.875],
    ("single", "euclidean"): [1, 1.5, 2.5, 3, 3],
    ("ward", "euclidean"): [1, 1.5, 3, 4.2573465, 5.5113519],
    ("complete", "euclidean"): [1, 1.5, 3, 3.3541019, 5],
}
COMBOS = [("ward", "euclidean")] + [(lk, m) for lk in ("complete", "single", "average")
                                   for m in ("euclidean", "manhattan", "cosine")]   # ward is euclidean only
SCIPY_METRIC = {"euclidean": "euclidean", "manhattan": "cityblock", "cosine": "cosine"}


def groups(rows, col="prediction"):
    feats, pred = rows.column("features").to_pylist(), rows.column(col).to_pylist()
    out = {}
    for f, p in zip(feats, pred):
        out.setdefault(p, set()).add(tuple(f))
    return sorted(map(frozenset, out.values()), key=sorted)


def first_appearance(labels):
    seen = {}
    return [seen.setdefault(v, len(seen)) for v in labels]


@pytest.fixture(scope="module")
def iris_x():
    x = load_iris().data
    return x + np.random.default_rng(0).normal(scale=1e-3, size=x.shape)   # no tied distances


@pytest.fixture(scope="module")
def digits_x():
    x = load_digits().data[:300]
    return x + np.random.default_rng(1).normal(scale=1e-3, size=x.shape)


@pytest.mark.parametrize("linkage_,measure", sorted(FLINK_DISTANCES))
def test_flink_ml_merge_distances(linkage_, measure):
    op = AgglomerativeClustering(linkage=linkage_, distance_measure=measure, compute_full_tree=True)
    _, merges = op.transform(FLINK_INPUT)
    np.testing.assert_allclose(merges.column("distance").to_numpy(), FLINK_DISTANCES[(linkage_, measure)],
                               atol=1e-7)
    assert merges.column_names == ["cluster_id1", "cluster_id2", "distance", "size_of_merged_cluster"]


def test_flink_ml_groups_and_cut_merge_info():
    op = AgglomerativeClustering(linkage="average", prediction_col="pred")
    rows, merges = op.transform(FLINK_INPUT)
    assert groups(rows, "pred") == sorted([frozenset({(1, 1), (1, 0), (4, 1.5), (4, 0)}),
                                           frozenset({(1, 4), (4, 4)})], key=sorted)
    assert merges.num_rows == 4                                     # only the merges up to the cut
    # Flink ML's nearest-neighbour-chain operator keeps the merges at distance <= threshold (SciPy's
    # fcluster "distance" criterion): at 2.0 the merges at 1 and 1.5, four groups. (Its test's
    # EUCLIDEAN_WARD_THRESHOLD_AS_TWO_RESULT, three groups, encodes the operator it replaced, which
    # also performed the first merge above the threshold: (1, 4) with (4, 4) at 3.)
    rows, _ = op.set(num_clusters=None, distance_threshold=2.0).transform(FLINK_INPUT)
    assert groups(rows, "pred") == sorted([frozenset({(1, 1), (1, 0)}), frozenset({(1, 4)}), frozenset({(4, 4)}),
                                           frozenset({(4, 1.5), (4, 0)})], key=sorted)
    _, merges = AgglomerativeClustering().transform(FLINK_INPUT)    # ward, full tree off: 4 merges
    np.testing.assert_allclose(merges.column("distance").to_numpy(), FLINK_DISTANCES[("ward", "euclidean")][:4],
                               atol=1e-7)


@pytest.mark.parametrize("linkage_,measure", COMBOS)
def test_merge_tree_equals_scipy(iris_x, digits_x, linkage_, measure):
    for x in (iris_x, digits_x):
        z = linkage(pdist(x, SCIPY_METRIC[measure]), method=linkage_)
        _, merges = AgglomerativeClustering(linkage=linkage_, distance_measure=measure, compute_full_tree=True)\
            .transform({"features": x.tolist()})
        got = np.column_stack([merges.column(c).to_numpy() for c in merges.column_names]).astype(float)
        np.testing.assert_array_equal(got[:, [0, 1, 3]], z[:, [0, 1, 3]])
        np.testing.assert_allclose(got[:, 2], z[:, 2], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("linkage_,measure", COMBOS)
def test_labels_equal_sklearn(iris_x, linkage_, measure):
    x = iris_x
    for k in (2, 3, 7):
        sk = SkAgglomerative(n_clusters=k, linkage=linkage_, metric=measure).fit_predict(x)
        rows, _ = AgglomerativeClustering(num_clusters=k, linkage=linkage_, distance_measure=measure)\
            .transform({"features": x.tolist()})
        assert rows.column("prediction").to_pylist() == first_appearance(sk)
    z = linkage(pdist(x, SCIPY_METRIC[measure]), method=linkage_)
    threshold = float(np.mean(z[-6:-4, 2]))                          # between two merge distances
    sk = SkAgglomerative(n_clusters=None, distance_threshold=threshold, linkage=linkage_, metric=measure).fit_predict(x)
    rows, merges = AgglomerativeClustering(num_clusters=None, distance_threshold=threshold, linkage=linkage_,
                                           distance_measure=measure).transform({"features": x.tolist()})
    assert rows.column("prediction").to_pylist() == first_appearance(sk)
    assert rows.column("prediction").to_pylist() == first_appearance(fcluster(z, threshold, "distance"))
    assert merges.num_rows == int(np.sum(z[:, 2] <= threshold))


def test_sparse_features_equal_dense(iris_x):
    dense = AgglomerativeClustering(num_clusters=3, linkage="average").transform({"features": iris_x.tolist()})
    sparse = AgglomerativeClustering(num_clusters=3, linkage="average").transform(
        pa.table({"features": fl.linalg.from_csr(sps.csr_matrix(iris_x))}))
    assert sparse[0].column("prediction").to_pylist() == dense[0].column("prediction").to_pylist()
    assert sparse[1].equals(dense[1])


def test_count_windows_cluster_each_window(digits_x):
    x = digits_x[:100]
    t = fl.table({"features": x.tolist(), "id": np.arange(100)})
    op = AgglomerativeClustering(num_clusters=4, linkage="complete", windows={"kind": "count", "size": 30})
    rows, merges = op.transform(t)
    assert rows.column("id").to_pylist() == list(range(100))
    want_labels, want_dist = [], []
    for s in range(0, 100, 30):
        z = linkage(pdist(x[s:s + 30]), "complete")
        want_labels += first_appearance(fcluster(z, 4, "maxclust"))
        want_dist += z[:len(x[s:s + 30]) - 4, 2].tolist()
    assert rows.column("prediction").to_pylist() == want_labels
    np.testing.assert_allclose(merges.column("distance").to_numpy(), want_dist, rtol=1e-12)
    srows, smerges = op.transform(fls.from_table(t, batch_size=7))
    assert srows.schema == rows.schema
    assert srows.to_table().equals(rows)
    assert smerges.to_table().equals(merges)


def test_event_time_windows_table_and_stream(iris_x):
    x = iris_x[:40]
    ts = np.linspace(0.0, 5.9, 40)                                   # windows [0, 2), [2, 4), [4, 6)
    t = fl.table({"features": x.tolist(), "ts": ts})
    op = AgglomerativeClustering(num_clusters=2, linkage="single",
                                 windows={"kind": "event_time", "size": 2.0, "time_col": "ts"})
    rows, merges = op.transform(t)
    want, n_merges = [], 0
    for lo in (0.0, 2.0, 4.0):
        idx = np.flatnonzero((ts >= lo) & (ts < lo + 2))
        want += first_appearance(fcluster(linkage(pdist(x[idx]), "single"), 2, "maxclust"))
        n_merges += len(idx) - 2
    assert rows.column("prediction").to_pylist() == want
    assert merges.num_rows == n_merges
    srows, smerges = op.transform(fls.from_table(t, batch_size=5))
    assert srows.to_table().equals(rows) and smerges.to_table().equals(merges)


def test_cosine_zero_vector_is_at_distance_one():
    # 1 - cos is undefined for a zero vector (Flink ML: NaN); here it is at distance 1 from every row
    _, merges = AgglomerativeClustering(linkage="single", distance_measure="cosine", compute_full_tree=True)\
        .transform({"features": [[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]]})
    assert merges.to_pydict() == {"cluster_id1": [0, 1], "cluster_id2": [2, 3], "distance": [0.0, 1.0],
                                  "size_of_merged_cluster": [2, 3]}


def test_fewer_rows_than_clusters_and_empty():
    rows, merges = AgglomerativeClustering(num_clusters=5).transform({"features": [[0.0], [1.0]]})
    assert rows.column("prediction").to_pylist() == [0, 1] and merges.num_rows == 0
    empty = pa.table({"features": pa.array([], fl.linalg.dense_vector_type(2))})
    rows, merges = AgglomerativeClustering().transform(empty)
    assert rows.num_rows == 0 and rows.schema.field("prediction").type == pa.int32() and merges.num_rows == 0


def test_bad_input_named():
    with pytest.raises(ValueError, match="exactly one of num_clusters"):
        AgglomerativeClustering(distance_threshold=1.0).transform(FLINK_INPUT)
    with pytest.raises(ValueError, match="exactly one of num_clusters"):
        AgglomerativeClustering(num_clusters=None).transform(FLINK_INPUT)
    with pytest.raises(ValueError, match="ward.*euclidean"):
        AgglomerativeClustering(distance_measure="cosine").transform(FLINK_INPUT)
    with pytest.raises(ValueError, match="AgglomerativeClustering: parameter 'windows'"):
        AgglomerativeClustering(windows={"kind": "count", "size": 0})
    with pytest.raises(ValueError, match="AgglomerativeClustering: parameter 'linkage'"):
        AgglomerativeClustering(linkage="median")
    with pytest.raises(ValueError, match="'features'"):
        AgglomerativeClustering().transform({"x": [1.0]})
    with pytest.raises(ValueError, match="row 1"):
        AgglomerativeClustering().transform({"features": [[0.0], [float("nan")]]})
    with pytest.raises(ValueError, match="'ts'"):
        AgglomerativeClustering(windows={"kind": "event_time", "size": 1.0, "time_col": "ts"}).transform(FLINK_INPUT)


def test_doctests():
    import doctest

    import flowlearn.clustering.agglomerative as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
