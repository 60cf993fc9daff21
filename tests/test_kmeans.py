"""KMeans / KMeansModel (Flink ML k-means, Lloyd's algorithm).

Oracles: Flink ML's published KMeansTest data (clusters and centroids as closed-form means),
scikit-learn's KMeans(init=<the same initial centroids>, n_init=1, algorithm="lloyd")
converging to the same fixed point on iris and wine, scikit-learn's best inertia (n_init=10)
as a sanity bound for k-means++, and SciPy's cdist for the manhattan/cosine assignment rule
and the Lloyd fixed-point property (each centroid is the mean of its points).
"""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.clustering import KMeans, KMeansModel

# Flink ML KMeansTest
FLINK_DATA = [[0.0, 0.0], [0.0, 0.3], [0.3, 0.0], [9.0, 0.0], [9.0, 0.6], [9.6, 0.0]]


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


@pytest.fixture(scope="module")
def wine():
    return StandardScaler().fit_transform(load_wine().data)


def centroids(model):
    return fl.linalg.to_numpy(model.get_model_data()[0].column("centroids"))


def preds(model, x):
    return np.asarray(model.transform({"features": x}).column(model.prediction_col).to_pylist())


def inertia(x, c):
    return float(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2).min(axis=1).sum())


# --- params --------------------------------------------------------------------------------


def test_param_defaults_and_set():
    km = KMeans()
    assert (km.features_col, km.prediction_col, km.k, km.max_iter, km.init_mode, km.seed, km.distance_measure,
            km.tol) == ("features", "prediction", 2, 20, "random", None, "euclidean", 0.0)
    km.set(k=5, max_iter=3, init_mode="k-means++", seed=7, distance_measure="cosine", tol=1e-4,
           features_col="f", prediction_col="p")
    assert (km.k, km.max_iter, km.init_mode, km.seed, km.distance_measure, km.tol) == (
        5, 3, "k-means++", 7, "cosine", 1e-4)
    m = KMeansModel()
    assert set(m.get_params()) == {"features_col", "prediction_col", "k", "distance_measure"}


# --- fit / transform against oracles -------------------------------------------------------


@pytest.mark.parametrize("init_mode", ["random", "k-means++"])
def test_flink_ml_published_data(init_mode):
    model = KMeans(k=2, init_mode=init_mode, seed=3).fit({"features": FLINK_DATA})
    p = preds(model, FLINK_DATA)
    assert len(set(p[:3])) == 1 and len(set(p[3:])) == 1 and p[0] != p[3]
    c = centroids(model)
    np.testing.assert_allclose(c[p[0]], np.mean(FLINK_DATA[:3], axis=0))  # [0.1, 0.1]
    np.testing.assert_allclose(c[p[3]], np.mean(FLINK_DATA[3:], axis=0))  # [9.2, 0.2]
    assert model.get_model_data()[0].column("weights").to_pylist() == [3.0, 3.0]


@pytest.mark.parametrize("data", ["iris", "wine"])
@pytest.mark.parametrize("init_mode", ["random", "k-means++"])
@pytest.mark.parametrize("k", [3, 6])
def test_fixed_point_matches_sklearn_lloyd(request, data, init_mode, k):
    x = request.getfixturevalue(data)
    est = KMeans(k=k, init_mode=init_mode, seed=11, max_iter=300)
    init = est._initial_centroids(x)
    # the starting points are data rows: for "random", k distinct rows drawn by the seeded generator
    assert init.shape == (k, x.shape[1]) and all((x == c).all(axis=1).any() for c in init)
    if init_mode == "random":
        np.testing.assert_array_equal(init, x[np.sort(np.random.default_rng(11).choice(len(x), k, replace=False))])
    model = est.fit({"features": x})
    oracle = SKKMeans(n_clusters=k, init=init, n_init=1, algorithm="lloyd", max_iter=300, tol=0.0).fit(x)
    np.testing.assert_allclose(centroids(model), oracle.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(preds(model, x), oracle.labels_)
    assert inertia(x, centroids(model)) == pytest.approx(oracle.inertia_, rel=1e-9)
    np.testing.assert_array_equal(model.get_model_data()[0].column("weights").to_numpy(),
                                  np.bincount(oracle.labels_, minlength=k))


def test_max_iter_one_is_one_lloyd_step(iris):
    est = KMeans(k=4, seed=5, max_iter=1)
    init = est._initial_centroids(iris)
    nearest = cdist(iris, init, "sqeuclidean").argmin(axis=1)
    expected = np.array([iris[nearest == i].mean(axis=0) for i in range(4)])
    np.testing.assert_allclose(centroids(est.fit({"features": iris})), expected, rtol=1e-12)
    # A huge tol stops after the first round as well.
    np.testing.assert_allclose(centroids(KMeans(k=4, seed=5, tol=1e9).fit({"features": iris})), expected, rtol=1e-12)


@pytest.mark.parametrize("data", ["iris", "wine"])
def test_kmeans_plus_plus_inertia_near_sklearn(request, data):
    x = request.getfixturevalue(data)
    best = SKKMeans(n_clusters=3, n_init=10, random_state=0).fit(x).inertia_
    ratios = [inertia(x, centroids(KMeans(k=3, init_mode="k-means++", seed=s, max_iter=300).fit({"features": x})))
              / best for s in range(5)]
    assert max(ratios) < 1.02
    assert min(ratios) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("measure, metric", [("manhattan", "cityblock"), ("cosine", "cosine")])
def test_other_distance_measures(wine, measure, metric):
    model = KMeans(k=3, distance_measure=measure, seed=2, max_iter=300).fit({"features": wine})
    c = centroids(model)
    assign = cdist(wine, c, metric).argmin(axis=1)
    np.testing.assert_array_equal(preds(model, wine), assign)
    # Lloyd fixed point (Flink ML moves centroids to the mean for every measure).
    np.testing.assert_allclose(c, [wine[assign == i].mean(axis=0) for i in range(3)], rtol=1e-9, atol=1e-12)


def test_deterministic_for_seed(iris):
    a = KMeans(k=3, seed=42).fit({"features": iris}).get_model_data()[0]
    b = KMeans(k=3, seed=42).fit({"features": iris}).get_model_data()[0]
    assert a.equals(b)
    c = KMeans(k=3).fit({"features": iris}).get_model_data()[0]
    d = KMeans(k=3).fit({"features": iris}).get_model_data()[0]
    assert c.equals(d)


def test_empty_cluster_keeps_its_centroid():
    # Three identical rows: random init always picks at least two equal centroids; ties go to the
    # first, so one cluster stays empty and must keep its old centroid (not NaN).
    x = [[0.0], [0.0], [0.0], [10.0]]
    for seed in range(6):
        model = KMeans(k=3, seed=seed).fit({"features": x})
        c = centroids(model)[:, 0]
        w = model.get_model_data()[0].column("weights").to_numpy()
        assert np.isfinite(c).all() and w.sum() == 4
        assert sorted(c[w > 0].tolist()) == [0.0, 10.0]
        assert c[w == 0].tolist() == [0.0]


def test_output_schema(iris):
    model = KMeans(k=3, features_col="f", prediction_col="cluster", seed=1).fit({"f": iris})
    out = model.transform({"id": np.arange(150), "f": iris, "cluster": ["x"] * 150})
    assert out.column_names == ["id", "f", "cluster"]
    assert out.schema.field("cluster").type == pa.int32()
    assert set(out.column("cluster").to_pylist()) == {0, 1, 2}


# --- persistence and model data ------------------------------------------------------------


def test_get_set_model_data(iris):
    model = KMeans(k=3, seed=4).fit({"features": iris})
    t = model.get_model_data()[0]
    assert t.schema.field("centroids").type == fl.linalg.dense_vector_type(4)
    assert t.schema.field("weights").type == pa.float64() and t.num_rows == 3
    other = KMeansModel(k=3).set_model_data(t)
    np.testing.assert_array_equal(preds(other, iris), preds(model, iris))
    manual = KMeansModel().set_model_data({"centroids": [[0.0, 0.0], [10.0, 10.0]], "weights": [1.0, 1.0]})
    assert preds(manual, [[1.0, 2.0], [9.0, 9.0], [5.0, 5.0]]).tolist() == [0, 1, 0]  # tie -> first


def test_more_centroids_than_k_raises():
    model = KMeansModel(k=2).set_model_data({"centroids": [[0.0], [1.0], [2.0]], "weights": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="model data has 3 centroids but k=2"):
        model.transform({"features": [[0.5]]})
    with pytest.raises(ValueError, match="model data has not been set"):
        KMeansModel().transform({"features": [[0.5]]})


# --- sparse, empty and bad input -----------------------------------------------------------


def test_sparse_input_equals_dense(wine):
    x = np.where(np.abs(wine) < 0.7, 0.0, wine)  # about half zeros
    xs = sps.csr_matrix(x)
    for measure in ["euclidean", "manhattan", "cosine"]:
        for init_mode in ["random", "k-means++"]:
            est = KMeans(k=4, seed=3, init_mode=init_mode, distance_measure=measure, max_iter=50)
            dense, sparse = est.fit({"features": x}), est.fit({"features": xs})
            np.testing.assert_allclose(centroids(sparse), centroids(dense), rtol=1e-9, atol=1e-12)
            np.testing.assert_array_equal(preds(dense, xs), preds(dense, x))


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"input column 'features' \(parameter 'features_col'\) is missing"):
        KMeans().fit({"x": [[1.0], [2.0]]})
    with pytest.raises(TypeError, match="column 'features' has type double, expected a vector column"):
        KMeans().fit({"features": [1.0, 2.0]})
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 2"):
        KMeans().fit({"features": [[1.0], [2.0], [np.inf]]})
    with pytest.raises(ValueError, match="k=3 clusters need at least 3 rows, the input has 2"):
        KMeans(k=3).fit({"features": [[1.0], [2.0]]})
    model = KMeans().fit({"features": FLINK_DATA})
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        model.transform({"features": [[0.0, 1.0, 2.0]]})
    with pytest.raises(ValueError, match="null vector at row 1"):
        model.transform(pa.table({"features": pa.array([[0.0, 1.0], None], fl.linalg.dense_vector_type(2))}))



@pytest.mark.parametrize("data,k", [("wine", 3), ("digits", 10)])
def test_fits_in_concurrent_threads_match_sklearn(request, monkeypatch, data, k):
    # a round's rows go in chunks over a shared thread pool; small chunks make even these data sets
    # many chunks, and fits from several threads at once (CrossValidator's parallel candidates)
    # must each reach scikit-learn's Lloyd fixed point from the same start
    from concurrent.futures import ThreadPoolExecutor

    import flowlearn.clustering.kmeans as km

    x = request.getfixturevalue(data) if data == "wine" else load_digits().data
    monkeypatch.setattr(km, "_CHUNK_ROWS", 13)
    est = KMeans(k=k, seed=5, max_iter=300)
    oracle = SKKMeans(n_clusters=k, init=est._initial_centroids(x), n_init=1, algorithm="lloyd", max_iter=300,
                      tol=0.0).fit(x)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: est.fit({"features": x}), range(6)))
    for model in models:
        np.testing.assert_allclose(centroids(model), oracle.cluster_centers_, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(preds(model, x), oracle.labels_)
        np.testing.assert_array_equal(model.get_model_data()[0].column("weights").to_numpy(),
                                      np.bincount(oracle.labels_, minlength=k))

# --- row kernel ----------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["euclidean", "manhattan", "cosine"])
def test_row_fn_equals_batch(wine, measure):
    model = KMeans(k=4, seed=8, distance_measure=measure).fit({"features": wine})
    batch = preds(model, wine).tolist()
    p = fl.LocalPredictor(model)
    assert [p.predict({"features": v})["prediction"] for v in wine] == batch
    fn = model.row_fn()
    v = wine[0]
    row = {"features": fl.linalg.SparseVector(len(v), np.flatnonzero(v), v[v != 0])}
    fn(row)
    assert row["prediction"] == batch[0]
    with pytest.raises(ValueError, match="expects size 13"):
        fn({"features": [1.0, 2.0]})


# --- iteration engine ----------------------------------------------------------------------


def numpy_lloyd(x, c, max_iter, tol):
    """An independent Lloyd loop: centroids after it stops and the number of iterations it ran."""
    for it in range(1, max_iter + 1):
        a = cdist(x, c, "sqeuclidean").argmin(axis=1)
        new = np.array([x[a == i].mean(axis=0) if (a == i).any() else c[i] for i in range(len(c))])
        shift = np.sqrt(((new - c) ** 2).sum(axis=1)).max()
        c = new
        if shift <= tol:
            break
    return c, it


@pytest.mark.parametrize("k, init_mode, max_iter, tol, lloyd_iterations", [
    (5, "random", 300, 0.0, 10),     # converges to a fixed point
    (3, "k-means++", 300, 0.1, 9),   # stopped by tol, before the fixed point
    (5, "random", 4, 0.0, 4),        # stopped by max_iter
])
def test_fit_runs_lloyd_rounds_on_the_iteration_engine(monkeypatch, wine, k, init_mode, max_iter, tol,
                                                       lloyd_iterations):
    import flowlearn.clustering.kmeans as kmeans_module

    results = []

    def spy(*args, **kwargs):
        results.append(fl.iteration.iterate_bounded(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(kmeans_module, "iterate_bounded", spy)
    est = KMeans(k=k, init_mode=init_mode, seed=11, max_iter=max_iter, tol=tol)
    expected, iterations = numpy_lloyd(wine, est._initial_centroids(wine), max_iter, tol)
    model = est.fit({"features": wine})
    (res,) = results
    assert iterations == lloyd_iterations
    assert res.rounds == iterations and res.termination == "criteria"  # ended by the criteria stream
    assert res.variables[0].equals(model.get_model_data()[0])
    np.testing.assert_allclose(centroids(model), expected, rtol=1e-9, atol=1e-12)
