"""Knn / KnnModel (Flink ML's k-nearest-neighbours classifier).

Oracles: scikit-learn's ``KNeighborsClassifier(algorithm="brute")`` on iris and digits, compared
on the rows where neither a distance tie at the k-th place nor a vote tie exists (found with exact
SciPy ``cdist`` distances, independently of the model); Flink ML's published ``KnnTest`` vectors;
and Flink ML's tie rule derived by hand from its ``KnnModel.PredictLabelFunction`` (a max-heap of the
k nearest polled farthest first into a ``java.util.HashMap<Double, Double>``, whose iteration order
is by hash bucket, then insertion order), where scikit-learn would pick the smallest label instead.
"""
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits, load_iris
from sklearn.neighbors import KNeighborsClassifier

import flowlearn as fl
from flowlearn.classification.knn import Knn, KnnModel


def _split(x, y, seed):
    idx = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * 0.7)
    return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]


def _unambiguous(xtr, ytr, xte, k):
    """Rows whose k nearest training rows and majority label are unique (exact distances)."""
    d = cdist(xte, xtr)
    ok = np.zeros(len(xte), bool)
    for i, row in enumerate(d):
        s = np.sort(row)
        if s[k] - s[k - 1] <= 1e-9 * max(1.0, s[k]):
            continue
        counts = Counter(ytr[np.argsort(row, kind="stable")[:k]]).most_common()
        ok[i] = len(counts) == 1 or counts[0][1] > counts[1][1]
    return ok


@pytest.mark.parametrize("loader,k,seed", [(load_iris, 5, 0), (load_iris, 3, 1), (load_digits, 5, 2),
                                           (load_digits, 8, 3)])
def test_matches_sklearn_brute(loader, k, seed):
    x, y = loader(return_X_y=True)
    xtr, ytr, xte, _ = _split(x.astype(float), y.astype(float), seed)
    model = Knn(k=k).fit({"features": xtr.tolist(), "label": ytr})
    got = model.transform({"features": xte.tolist()}).column("prediction").to_numpy()
    want = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(xtr, ytr).predict(xte)
    ok = _unambiguous(xtr, ytr, xte, k)
    assert ok.sum() >= 30   # iris has many tied distances (one decimal); digits few
    np.testing.assert_array_equal(got[ok], want[ok])



def test_predictions_in_concurrent_threads_match_sklearn(monkeypatch):
    # dense queries go in chunks over a shared thread pool, each in blocks of query rows side by side;
    # tiny chunks and blocks (a partial last block included) make digits many of both, and
    # predictions from several threads at once (parallel CrossValidator candidates, a server)
    # must each match scikit-learn where the answer is unambiguous
    from concurrent.futures import ThreadPoolExecutor

    import flowlearn.classification.knn as knn

    monkeypatch.setattr(knn, "_CHUNK_QUERIES", 23)
    monkeypatch.setattr(knn, "_QUERY_BLOCK", 5)
    x, y = load_digits(return_X_y=True)
    xtr, ytr, xte, _ = _split(x.astype(float), y.astype(float), 5)
    want = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(xtr, ytr).predict(xte)
    ok = _unambiguous(xtr, ytr, xte, 5)
    assert ok.sum() > 400

    def fit_predict(_):
        model = Knn(k=5).fit({"features": xtr.tolist(), "label": ytr})
        return model.transform({"features": xte.tolist()}).column("prediction").to_numpy()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fit_predict, range(6)))
    for got in results:
        np.testing.assert_array_equal(got[ok], want[ok])
        np.testing.assert_array_equal(got, results[0])

def test_sparse_features_equal_dense():
    x, y = load_digits(return_X_y=True)
    xtr, ytr, xte, _ = _split(x.astype(float), y.astype(float), 4)
    dense = Knn(k=4).fit({"features": xtr.tolist(), "label": ytr})
    sparse = Knn(k=4).fit(pa.table({"features": fl.linalg.from_csr(sps.csr_matrix(xtr)), "label": ytr}))
    assert fl.linalg.is_sparse(sparse.get_model_data()[0].column("features").type)
    want = dense.transform({"features": xte.tolist()}).column("prediction").to_numpy()
    for model in (dense, sparse):
        for q in (pa.table({"features": fl.linalg.from_csr(sps.csr_matrix(xte))}), fl.table({"features": xte.tolist()})):
            np.testing.assert_array_equal(model.transform(q).column("prediction").to_numpy(), want)


# Flink ML KnnTest: trainRows / predictRows (each predict row carries its expected label).
FLINK_TRAIN = {"features": [[2.0, 3.0], [2.1, 3.1], [200.1, 300.1], [200.2, 300.2], [200.3, 300.3],
                            [200.4, 300.4], [200.4, 300.4], [200.6, 300.6], [2.1, 3.1], [2.1, 3.1], [2.1, 3.1],
                            [2.1, 3.1], [2.3, 3.2], [2.3, 3.2], [2.8, 3.2], [300.0, 3.2], [2.2, 3.2], [2.4, 3.2],
                            [2.5, 3.2], [2.5, 3.2], [2.1, 3.1]],
               "label": [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 4.0, 1.0, 5.0,
                         5.0, 5.0, 1.0]}
FLINK_PREDICT = {"features": [[4.0, 4.1], [300.0, 42.0]], "label": [5.0, 2.0]}


def test_flink_ml_fit_and_predict():
    out = Knn().fit(FLINK_TRAIN).transform(FLINK_PREDICT)
    assert out.column_names == ["features", "label", "prediction"]
    assert out.column("prediction").to_pylist() == [5.0, 2.0]


def test_flink_ml_fewer_distinct_points_than_k():
    # KnnTest.testFewerDistinctPointsThanCluster: k=5 over 2 rows, so every query has a 1-1 vote tie
    # between 5.0 and 2.0, which share a bucket (capacity 2: hashes 0x40144014 and 0x40004000 & 1 = 0).
    # The nearer label (its own row, polled last, put at the head of the bin) wins in both rows.
    out = Knn().fit(FLINK_PREDICT).transform(FLINK_PREDICT)
    assert out.column("prediction").to_pylist() == [5.0, 2.0]


def test_vote_tie_same_bucket_nearer_label_wins():
    # k=2, one vote each for 1.0 (at distance 1) and 0.0 (at distance 2). Java: HashMap(2), capacity 2;
    # spread(hash(0.0)) = 0 and spread(hash(1.0)) = 0x3FF03FF0 are both even: one bin. The heap polls
    # 0.0 first, then merge() puts 1.0 at the head of the bin, so 1.0 is iterated first and wins;
    # scikit-learn picks the smallest label, 0.0.
    m = Knn(k=2).fit({"features": [[0.0], [3.0]], "label": [1.0, 0.0]})
    assert m.transform({"features": [[1.0]]}).column("prediction").to_pylist() == [1.0]
    sk = KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit([[0.0], [3.0]], [1.0, 0.0])
    assert sk.predict([[1.0]]).tolist() == [0.0]
    m = Knn(k=2).fit({"features": [[0.0], [3.0]], "label": [0.0, 1.0]})
    assert m.transform({"features": [[1.0]]}).column("prediction").to_pylist() == [0.0]


def test_vote_tie_bucket_order_beats_distance():
    # k=5 -> HashMap(5), capacity 8 (3 labels never trigger a resize). Buckets (spread & 7): 0.0 -> 0,
    # 1.0 -> 0x3FF03FF0 & 7 = 0, 2.0 -> 0x40004000 & 7 = 0, 5.0 -> 0x40144014 & 7 = 4.
    # Query 0.0 over rows 1..5 with labels [5, 5, 0, 0, 1]: votes 5.0 x2 (nearest), 0.0 x2, 1.0 x1.
    # Bucket 0 is iterated before bucket 4, so 0.0 wins although 5.0's neighbours are nearer.
    feats = [[1.0], [2.0], [3.0], [4.0], [5.0]]
    m = Knn(k=5).fit({"features": feats, "label": [5.0, 5.0, 0.0, 0.0, 1.0]})
    assert m.transform({"features": [[0.0]]}).column("prediction").to_pylist() == [0.0]
    # with 2.0 in place of 5.0 all three share bucket 0; polled 1.0, 0.0, 2.0 -> bin order 2.0, 0.0, 1.0
    m = Knn(k=5).fit({"features": feats, "label": [2.0, 2.0, 0.0, 0.0, 1.0]})
    assert m.transform({"features": [[0.0]]}).column("prediction").to_pylist() == [2.0]


def test_distance_tie_keeps_earlier_training_rows():
    # the query is at distance 1 from three rows; k=1 keeps the first (the heap replaces only when closer)
    m = Knn(k=1).fit({"features": [[1.0], [-1.0], [1.0]], "label": [7.0, 8.0, 9.0]})
    assert m.transform({"features": [[0.0]]}).column("prediction").to_pylist() == [7.0]


def test_k_above_rows_uses_all_rows_and_row_fn():
    m = Knn(k=10).fit({"features": [[0.0], [1.0], [9.0]], "label": [2.0, 2.0, 3.0]})
    assert m.transform({"features": [[9.0]]}).column("prediction").to_pylist() == [2.0]
    row = {"features": np.array([9.0])}
    m.row_fn()(row)
    assert row["prediction"] == 2.0


def test_partial_merge_equals_fit():
    x, y = load_iris(return_X_y=True)
    t = fl.table({"features": x.tolist(), "label": y.astype(float)})
    est = Knn(k=3)
    merged = est.finish(est.merge([est.partial(t.slice(0, 40)), est.partial(t.slice(40, 0)), est.partial(t.slice(40))]))
    np.testing.assert_array_equal(merged.transform(t).column("prediction").to_numpy(),
                                  est.fit(t).transform(t).column("prediction").to_numpy())


def test_bad_input_named():
    with pytest.raises(ValueError, match="Knn: parameter 'k'"):
        Knn(k=0)
    with pytest.raises(ValueError, match="'label'"):
        Knn().fit({"features": [[1.0]]})
    m = Knn(k=1).fit({"features": [[0.0, 1.0]], "label": [1.0]})
    with pytest.raises(ValueError, match="size 2"):
        m.transform({"features": [[1.0, 2.0, 3.0]]})
    with pytest.raises(ValueError, match="row 1"):
        m.transform({"features": [[1.0, 2.0], [float("nan"), 0.0]]})
    with pytest.raises(ValueError, match="KnnModel.*'features'"):
        m.output_schema(pa.schema([("x", pa.float64())]))
    assert m.output_schema(pa.schema([("features", fl.linalg.dense_vector_type(2))])).field("prediction").type == \
        pa.float64()
    with pytest.raises(ValueError, match="model data has not been set"):
        KnnModel().transform({"features": [[1.0]]})


def test_doctests():
    import doctest

    import flowlearn.classification.knn as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
