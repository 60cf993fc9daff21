"""OnlineKMeans / OnlineKMeansModel (Flink ML's online k-means with decay).

Oracles, none derived from the code under test:
(a) a NumPy/SciPy closed form of Flink ML's update written in this file: per mini-batch, assign
    each point to its closest centroid (``scipy.spatial.distance.cdist``), then
    ``c_i <- (c_i * w_i * decay + s_i) / (w_i * decay + n_i)`` and ``w <- w * decay + n`` for every
    decay in [0, 1], on shuffled iris and standardized wine;
(b) with ``decay_factor=1``, zero initial weights and one mini-batch holding every row, the update
    is one Lloyd step: equal to batch ``KMeans(max_iter=1)`` from the same initial centroids and to
    scikit-learn's ``KMeans(init=<same>, n_init=1, max_iter=1)``;
(c) scikit-learn's ``MiniBatchKMeans.partial_fit`` fed the same consecutive mini-batches. It is
    comparable only for ``decay_factor=1`` with zero initial weights, euclidean distance and
    ``reassignment_ratio=0``: its per-center counts start at 0 and never decay, it has no other
    distance, and it randomly reassigns small clusters unless disabled (its ``fit`` also samples
    random mini-batches, so only ``partial_fit`` is comparable).
"""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import load_iris, load_wine
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.trainer import OperatorState
from online_steps import versions_of_step  # noqa: E402
from flowlearn.clustering import KMeans, KMeansModel
from flowlearn.clustering.online_kmeans import OnlineKMeans, OnlineKMeansModel, OnlineKMeansTrainer


@pytest.fixture(scope="module")
def iris():
    x = load_iris().data
    return x[np.random.default_rng(0).permutation(len(x))]  # iris is sorted by class


@pytest.fixture(scope="module")
def wine():
    x = StandardScaler().fit_transform(load_wine().data)
    return x[np.random.default_rng(1).permutation(len(x))]


def flink_reference(x, c0, w0, decay, batch, metric="euclidean"):
    """Flink ML's OnlineKMeans update, one worker, in closed form; the last incomplete mini-batch
    is applied as a smaller one (flowlearn's end-of-input rule). Returns [(centroids, weights)]."""
    c, w = np.array(c0, dtype=float), np.array(w0, dtype=float)
    out = []
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        a = cdist(xb, c, metric=metric).argmin(axis=1)
        n = np.bincount(a, minlength=len(c)).astype(float)
        sums = np.array([xb[a == i].sum(axis=0) for i in range(len(c))])
        new_c = c.copy()
        for i in range(len(c)):
            if n[i] > 0:
                new_c[i] = (c[i] * w[i] * decay + sums[i]) / (w[i] * decay + n[i])
        c, w = new_c, w * decay + n
        out.append((c.copy(), w.copy()))
    return out


def init_table(c, w):
    return {"centroids": np.asarray(c, dtype=float), "weights": np.asarray(w, dtype=float)}


def unpack(v):
    return (fl.linalg.to_numpy(v.column("centroids")), v.column("weights").to_numpy(),
            v.column("model_version").to_pylist())


# ------------------------------------------------------------------------------------ params


def test_param_defaults_follow_flink_ml():
    est = OnlineKMeans()
    p = est.get_params()
    assert p == {"features_col": "features", "prediction_col": "prediction", "k": 2, "distance_measure": "euclidean",
                 "decay_factor": 0.0, "global_batch_size": 32, "seed": None, "batch_strategy": "COUNT_STRATEGY",
                 "emit_every": None, "emit_every_seconds": None, "model_version_col": "model_version"}
    est.set(decay_factor=0.5, k=3, global_batch_size=10)
    assert (est.decay_factor, est.k, est.global_batch_size) == (0.5, 3, 10)


# ---------------------------------------------------------------------- the update rule (oracle a)


@pytest.mark.parametrize("decay", [0.0, 0.25, 0.7, 1.0])
@pytest.mark.parametrize("dataset, k, batch", [("iris", 3, 16), ("wine", 4, 25)])
def test_versions_equal_flink_closed_form(request, dataset, k, batch, decay):
    x = request.getfixturevalue(dataset)
    c0, w0 = x[:k] + 0.1, np.arange(1.0, k + 1.0) * 3  # nonzero initial weights exercise the decay
    est = OnlineKMeans(k=k, global_batch_size=batch, decay_factor=decay).set_initial_model_data(init_table(c0, w0))
    versions = list(est.fit_versions({"features": x}))
    ref = flink_reference(x, c0, w0, decay, batch)
    assert len(versions) == len(ref) == -(-len(x) // batch)
    for i, (v, (c_ref, w_ref)) in enumerate(zip(versions, ref)):
        c, w, ver = unpack(v)
        np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-12)
        assert ver == [i + 1] * k


@pytest.mark.parametrize("measure, metric", [("manhattan", "cityblock"), ("cosine", "cosine")])
def test_other_distance_measures_follow_closed_form(wine, measure, metric):
    c0, w0 = wine[10:13], np.zeros(3)
    est = OnlineKMeans(k=3, global_batch_size=20, decay_factor=0.5, distance_measure=measure)
    model = est.set_initial_model_data(init_table(c0, w0)).fit({"features": wine})
    c_ref, w_ref = flink_reference(wine, c0, w0, 0.5, 20, metric)[-1]
    c, w, _ = unpack(model.get_model_data()[0])
    np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-12)


def test_decay_zero_is_the_mean_of_the_last_minibatch(iris):
    c0 = iris[:3]
    model = OnlineKMeans(k=3, global_batch_size=50, decay_factor=0.0).set_initial_model_data(
        init_table(c0, [100.0, 100.0, 100.0])).fit({"features": iris})
    (c_before, _), (c_last, w_last) = flink_reference(iris, c0, [100.0] * 3, 0.0, 50)[-2:]
    last = iris[100:]
    a = cdist(last, c_before).argmin(axis=1)
    c, w, _ = unpack(model.get_model_data()[0])
    for i in range(3):
        if (a == i).any():  # a cluster that got points is exactly their mean, its weight their count
            np.testing.assert_allclose(c[i], last[a == i].mean(axis=0), rtol=1e-12)
            assert w[i] == (a == i).sum()


# ------------------------------------------------------------------------ one Lloyd step (oracle b)


@pytest.mark.parametrize("dataset, k", [("iris", 3), ("wine", 5)])
def test_one_huge_batch_with_decay_one_is_one_lloyd_step(request, dataset, k):
    x = request.getfixturevalue(dataset)
    t = fl.table({"features": x})
    batch_est = KMeans(k=k, seed=11, max_iter=1)
    c0 = batch_est._initial_centroids(x)
    lloyd = batch_est.fit(t)
    online = OnlineKMeans(k=k, global_batch_size=len(x), decay_factor=1.0).set_initial_model_data(
        init_table(c0, np.zeros(k))).fit(t)
    c, w, _ = unpack(online.get_model_data()[0])
    (bmd,) = lloyd.get_model_data()
    np.testing.assert_allclose(c, fl.linalg.to_numpy(bmd.column("centroids")), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(w, bmd.column("weights").to_numpy())
    sk = SKKMeans(n_clusters=k, init=c0, n_init=1, max_iter=1, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(c, sk.cluster_centers_, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------- MiniBatchKMeans (oracle c)


@pytest.mark.parametrize("dataset, k, batch", [("iris", 3, 10), ("wine", 3, 32)])
def test_decay_one_equals_sklearn_minibatch_kmeans_partial_fit(request, dataset, k, batch):
    x = request.getfixturevalue(dataset)
    c0 = x[-k:].copy()
    mbk = MiniBatchKMeans(n_clusters=k, init=c0, n_init=1, reassignment_ratio=0.0, batch_size=batch)
    est = OnlineKMeans(k=k, global_batch_size=batch, decay_factor=1.0).set_initial_model_data(
        init_table(c0, np.zeros(k)))
    versions = list(est.fit_versions({"features": x}))
    for i, s in enumerate(range(0, len(x), batch)):
        mbk.partial_fit(x[s:s + batch])
        c, w, _ = unpack(versions[i])
        np.testing.assert_allclose(c, mbk.cluster_centers_, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(w, mbk._counts, rtol=0, atol=0)


# ------------------------------------------------------------------------------ trainer protocol


def test_random_initial_model_is_flink_ml_random_model_data(iris):
    tr = OnlineKMeans(k=3, global_batch_size=1000, seed=5).trainer()
    assert tr.dim is None and tr.partial_fit({"features": iris[:10]}) == []
    c, w = tr.centroids, tr.weights
    assert c.shape == (3, 4) and ((c >= 0) & (c < 1)).all() and (w == 0).all()
    np.testing.assert_array_equal(c, np.random.default_rng(5).random((3, 4)))
    a = OnlineKMeans(k=3, seed=5).fit({"features": iris}).get_model_data()[0]
    b = OnlineKMeans(k=3, seed=5).fit({"features": iris}).get_model_data()[0]
    assert a.equals(b)
    c_ref, w_ref = flink_reference(iris, np.random.default_rng(5).random((3, 4)), np.zeros(3), 0.0, 32)[-1]
    np.testing.assert_allclose(unpack(a)[0], c_ref, rtol=1e-12, atol=1e-12)


def test_input_batching_does_not_change_the_versions(wine):
    t = fl.table({"features": wine})
    est = OnlineKMeans(k=3, global_batch_size=16, decay_factor=0.6, seed=2)
    whole = list(est.fit_versions(t))
    pieces = list(est.fit_versions(iter(t.to_batches(max_chunksize=7))))
    slices = list(est.fit_versions([t.slice(0, 40), t.slice(40, 1), t.slice(41)]))
    assert len(whole) == len(pieces) == len(slices) == 12
    assert all(a.equals(b) and a.equals(c) for a, b, c in zip(whole, pieces, slices))


def test_emit_every_thins_versions_to_minibatch_boundaries(iris):
    # versions after 30, 60, 90 rows: the first mini-batch boundary past 25 rows since the last one
    all_versions = list(OnlineKMeans(k=3, global_batch_size=10, seed=1).fit_versions({"features": iris[:100]}))
    thinned = list(OnlineKMeans(k=3, global_batch_size=10, emit_every=25, seed=1).fit_versions(
        {"features": iris[:100]}))
    assert [v.column("model_version")[0].as_py() for v in thinned] == [1, 2, 3, 4]
    for got, want in zip(thinned[:3], [all_versions[2], all_versions[5], all_versions[8]]):
        np.testing.assert_array_equal(unpack(got)[0], unpack(want)[0])
    np.testing.assert_array_equal(unpack(thinned[3])[0], unpack(all_versions[9])[0])  # finish: rows 91-100


def test_emit_and_finish():
    tr = OnlineKMeans(k=2, global_batch_size=4, seed=3).trainer()
    assert tr.emit() is None and tr.finish() == []
    assert tr.partial_fit({"features": [[0.1], [0.9], [0.2]]}) == []
    assert tr.emit() is None  # three rows buffered, none applied
    (v,) = tr.partial_fit({"features": [[0.8], [0.15]]})
    assert v.column("model_version")[0].as_py() == 1 and tr.rows_seen == 5
    assert tr.emit() is None
    (final,) = tr.finish()
    assert final.column("model_version")[0].as_py() == 2
    assert tr.finish() == [] and tr.emit() is None


def test_versions_continue_from_initial_model_version():
    init = {"centroids": [[0.0], [1.0]], "weights": [1.0, 1.0], "model_version": [41, 41]}
    est = OnlineKMeans(k=2, global_batch_size=2).set_initial_model_data(init)
    assert [unpack(v)[2][0] for v in est.fit_versions({"features": [[0.1], [0.9]] * 3})] == [42, 43, 44]


@pytest.mark.parametrize("via_store", [False, True], ids=["model", "latest version in a store"])
def test_starts_from_batch_kmeans_model_weighted_by_cluster_sizes(tmp_path, iris, via_store):
    batch = KMeans(k=3, seed=4).fit({"features": iris[:100]})
    (md,) = batch.get_model_data()
    c0, w0 = fl.linalg.to_numpy(md.column("centroids")), md.column("weights").to_numpy()
    assert w0.sum() == 100
    start = batch
    if via_store:
        start = fl.ModelStore(str(tmp_path / "store"))
        start.publish(fl.PipelineModel([batch]), {"kind": "batch"})   # a whole pipeline as the version
    model = OnlineKMeans(k=3, global_batch_size=10, decay_factor=0.9).set_initial_model_data(start).fit(
        {"features": iris[100:]})
    c_ref, w_ref = flink_reference(iris[100:], c0, w0, 0.9, 10)[-1]
    c, w, ver = unpack(model.get_model_data()[0])
    np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12)
    assert ver == [5, 5, 5]


@pytest.mark.parametrize("sparse", [False, True])
def test_snapshot_restore_continues_exactly(wine, sparse):
    t = fl.table({"features": sps.csr_matrix(wine) if sparse else wine})
    est = OnlineKMeans(k=4, global_batch_size=16, decay_factor=0.8, seed=9)
    straight = est.trainer()
    v_straight = straight.partial_fit(t) + straight.finish()
    first = est.trainer()
    v1 = first.partial_fit(t.slice(0, 70))  # 70 = 4 * 16 + 6: an open mini-batch
    stored = OperatorState.from_bytes(first.snapshot_state().to_bytes())   # as a checkpoint stores it
    meta = stored.data
    assert meta["format"] == "flowlearn.online_kmeans_state"
    assert meta["open_batch_rows"] == 6 and meta["rows_seen"] == 70 and meta["version"] == 4
    second = est.trainer().restore_state(stored)
    assert isinstance(second, OnlineKMeansTrainer)
    v2 = second.partial_fit(t.slice(70)) + second.finish()
    assert len(v1 + v2) == len(v_straight) == 12
    assert all(a.equals(b) for a, b in zip(v1 + v2, v_straight))


def test_snapshot_of_a_fresh_trainer_and_restore_errors():
    est = OnlineKMeans(k=2, global_batch_size=4, seed=1)
    fresh = est.trainer().restore_state(est.trainer().snapshot_state())
    assert fresh.dim is None and fresh.version == 0
    tr = est.trainer()
    tr.partial_fit({"features": [[0.1], [0.5], [0.9]]})
    state = tr.snapshot_state()
    with pytest.raises(ValueError, match="open mini-batch of global_batch_size=4"):
        OnlineKMeans(k=2, global_batch_size=8).trainer().restore_state(state)
    with pytest.raises(ValueError, match="written with k=2"):
        OnlineKMeans(k=3, global_batch_size=4).trainer().restore_state(state)
    with pytest.raises(ValueError, match="it is not this trainer's state"):
        est.trainer().restore_state(OperatorState({"format": "flowlearn.ftrl_state"}, {"a": pa.table({"a": [1]})}))
    with pytest.raises(TypeError, match="takes the OperatorState of snapshot_state"):
        est.trainer().restore_state([pa.table({"a": [1]}), pa.table({"b": [1]})])


# ------------------------------------------------------------------------------------- the model


def test_output_schema_and_model_data_format(iris):
    model = OnlineKMeans(k=3, global_batch_size=30, seed=2, prediction_col="cluster").fit({"features": iris})
    (md,) = model.get_model_data()
    assert md.schema.field("centroids").type == fl.linalg.dense_vector_type(4)
    assert md.schema.field("weights").type == pa.float64()
    assert md.schema.field("model_version").type == pa.int64()
    assert md.num_rows == 3 and md.column("model_version").to_pylist() == [5, 5, 5]
    assert isinstance(model, OnlineKMeansModel) and model.model_version == 5 and model.prediction_col == "cluster"
    out = model.transform({"features": iris, "id": np.arange(len(iris))})
    assert out.column_names == ["features", "id", "cluster", "model_version"]
    assert out.schema.field("cluster").type == pa.int32()
    np.testing.assert_array_equal(out.column("cluster").to_numpy(),
                                  cdist(iris, fl.linalg.to_numpy(md.column("centroids"))).argmin(axis=1))
    assert set(out.column("model_version").to_pylist()) == {5}
    # the batch KMeansModel reads the same model data and predicts the same
    batch = KMeansModel(k=3, prediction_col="cluster").set_model_data(md)
    assert batch.transform({"features": iris}).column("cluster").equals(out.column("cluster"))
    assert OnlineKMeansModel(k=3, model_version_col=None).set_model_data(md).transform(
        {"features": iris}).column_names == ["features", "prediction"]


def test_get_set_model_data_and_model_from_batch_kmeans(iris):
    model = OnlineKMeans(k=3, seed=2).fit({"features": iris})
    (md,) = model.get_model_data()
    other = OnlineKMeansModel(k=3).set_model_data(md)
    assert other.get_model_data()[0].equals(md)
    assert other.transform({"features": iris}).equals(model.transform({"features": iris}))
    from_batch = OnlineKMeansModel(k=3).set_model_data(KMeans(k=3, seed=1).fit({"features": iris}).get_model_data()[0])
    assert from_batch.model_version == 0


def test_save_load_round_trip(tmp_path, iris):
    model = OnlineKMeans(k=3, seed=3, decay_factor=0.5).fit({"features": iris})
    model.save(str(tmp_path / "m"))
    loaded = fl.load(str(tmp_path / "m"))
    assert isinstance(loaded, OnlineKMeansModel) and loaded.get_params() == model.get_params()
    assert loaded.transform({"features": iris}).equals(model.transform({"features": iris}))
    est = OnlineKMeans(k=3, decay_factor=0.3, global_batch_size=7).set_initial_model_data(model)
    est.save(str(tmp_path / "e"))
    est2 = fl.load(str(tmp_path / "e"))
    assert isinstance(est2, OnlineKMeans) and est2.get_params() == est.get_params()
    assert est2.get_initial_model_data().equals(model.get_model_data()[0])
    assert est2.fit({"features": iris}).get_model_data()[0].equals(est.fit({"features": iris}).get_model_data()[0])


@pytest.mark.parametrize("measure", ["euclidean", "manhattan", "cosine"])
def test_row_kernel_equals_batch(wine, measure):
    model = OnlineKMeans(k=4, distance_measure=measure, global_batch_size=20).set_initial_model_data(
        init_table(wine[:4], np.ones(4))).fit({"features": wine})
    batch = model.transform({"features": wine})
    fn = model.row_fn()
    for r in range(0, len(wine), 7):
        row = {"features": wine[r]}
        fn(row)
        assert row["prediction"] == batch.column("prediction")[r].as_py()
        assert row["model_version"] == batch.column("model_version")[r].as_py()
    assert fl.LocalPredictor(model).predict({"features": wine[0]})["model_version"] == model.model_version


def test_sparse_input_equals_dense(wine):
    x = np.where(np.abs(wine) < 0.5, 0.0, wine)  # sparsify
    est = OnlineKMeans(k=3, global_batch_size=16, decay_factor=0.5).set_initial_model_data(init_table(x[:3], [1, 1, 1]))
    dense = list(est.fit_versions({"features": x}))
    sparse = list(est.fit_versions({"features": sps.csr_matrix(x)}))
    assert len(dense) == len(sparse)
    for a, b in zip(dense, sparse):
        np.testing.assert_allclose(unpack(a)[0], unpack(b)[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(unpack(a)[1], unpack(b)[1])
    model = est.fit({"features": sps.csr_matrix(x)})
    assert model.transform({"features": sps.csr_matrix(x)}).column("prediction").equals(
        model.transform({"features": x}).column("prediction"))


# ------------------------------------------------------------------------- empty and bad input


def test_empty_input():
    empty = fl.table({"features": pa.array([], fl.linalg.dense_vector_type(2))})
    with pytest.raises(ValueError, match="OnlineKMeans.fit: the input has no rows"):
        OnlineKMeans().fit(empty)
    with pytest.raises(ValueError, match="no rows"):
        OnlineKMeans().fit([])
    tr = OnlineKMeans().trainer()
    assert tr.partial_fit(empty) == [] and tr.partial_fit(pa.table({})) == [] and tr.finish() == []
    model = OnlineKMeansModel().set_model_data({"centroids": [[0.0, 0.0], [1.0, 1.0]], "weights": [1.0, 1.0],
                                                "model_version": [2, 2]})
    out = model.transform(empty)
    assert out.num_rows == 0 and out.column_names == ["features", "prediction", "model_version"]


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"input column 'x' \(parameter 'features_col'\) is missing"):
        OnlineKMeans(features_col="x").fit({"features": [[1.0]]})
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 1"):
        OnlineKMeans().fit({"features": [[1.0], [float("nan")]]})
    with pytest.raises(TypeError, match="expected a vector column"):
        OnlineKMeans().fit({"features": [1.0, 2.0]})
    init = {"centroids": [[0.0, 0.0], [1.0, 1.0]], "weights": [0.0, 0.0]}
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        OnlineKMeans().set_initial_model_data(init).fit({"features": [[1.0, 2.0, 3.0]]})
    with pytest.raises(ValueError, match="initial model data has 2 centroids but k=3"):
        OnlineKMeans(k=3).set_initial_model_data(init).fit({"features": [[1.0, 2.0]]})
    tr = OnlineKMeans(global_batch_size=100).trainer()
    tr.partial_fit({"features": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match="holds vectors of size 1, the model expects size 2"):
        tr.partial_fit({"features": [[1.0]]})
    with pytest.raises(ValueError, match="negative weight at row 1"):
        OnlineKMeans().set_initial_model_data({"centroids": [[0.0], [1.0]], "weights": [1.0, -1.0]})
    with pytest.raises(ValueError, match="expected the KMeansModel format"):
        OnlineKMeans().set_initial_model_data({"coefficient": [[0.0]]})
    with pytest.raises(ValueError, match="several model versions"):
        OnlineKMeansModel().set_model_data({"centroids": [[0.0], [1.0]], "weights": [1.0, 1.0],
                                            "model_version": [1, 2]})
    with pytest.raises(TypeError, match="initial model data must be a KMeansModel"):
        OnlineKMeans().set_initial_model_data(3)
    with pytest.raises(ValueError, match="model data has not been set"):
        OnlineKMeansModel().transform({"features": [[1.0]]})


# ------------------------------------------------------------- on the unbounded iteration engine


@pytest.mark.parametrize("emit_every, min_step_rows, step_rows, versions_per_step", [
    (None, 1, 16, 1),     # Flink ML: one version per mini-batch, one step per version
    (40, 1, 48, 1),       # a version at the first mini-batch boundary >= 40 rows
    (None, 50, 64, 4),    # steps of whole version periods, >= MIN_STEP_ROWS rows
])
def test_fit_versions_are_outputs_of_unbounded_iteration_steps(monkeypatch, unbounded_steps, wine, emit_every,
                                                               min_step_rows, step_rows, versions_per_step):
    import flowlearn.iteration.online as online_module

    monkeypatch.setattr(online_module, "MIN_STEP_ROWS", min_step_rows)
    t = fl.table({"features": wine})
    inputs = [t.slice(0, 40), t.slice(40, 1), t.slice(41)]
    est = OnlineKMeans(k=3, global_batch_size=16, decay_factor=0.6, seed=2, emit_every=emit_every)
    versions = list(est.fit_versions(inputs))
    steps, n = unbounded_steps, len(wine)
    assert [s.num_rows for s in steps if not s.final] == [step_rows] * (n // step_rows) + [n % step_rows]
    assert all(len(versions_of_step(s)) == versions_per_step for s in steps if s.num_rows == step_rows)
    assert steps[-1].final and len(versions_of_step(steps[-1])) == 1  # finish(): the rest of the input
    from_steps = [v for s in steps for v in versions_of_step(s)]
    assert len(from_steps) == len(versions) and all(a.equals(b) for a, b in zip(from_steps, versions))
    last = [v for s in steps if not s.final for v in versions_of_step(s)][-1]
    assert steps[-2].variables[0].equals(last)  # the variable stream is the latest version
    tr = est.trainer()  # the trainer driven by hand gives the same versions
    by_hand = [v for x in inputs for v in tr.partial_fit(x)] + tr.finish()
    assert len(by_hand) == len(versions) and all(a.equals(b) for a, b in zip(by_hand, versions))


def test_emit_every_seconds_alone_emits_by_time(iris):
    """With only emit_every_seconds, versions come by processing time (not per mini-batch), each holding
    the mini-batches applied so far (Flink ML's closed form); poll() serves engine timers."""
    x = iris[:60]
    c0, w0 = [[5.0, 3.0, 1.5, 0.2], [6.5, 3.0, 5.5, 2.0]], [0.0, 0.0]
    ref = flink_reference(x, c0, w0, decay=0.5, batch=10)
    now = [0.0]
    tr = (OnlineKMeans(k=2, global_batch_size=10, decay_factor=0.5, emit_every_seconds=5.0)
          .set_initial_model_data(init_table(c0, w0)).trainer(clock=lambda: now[0]))
    assert tr.partial_fit({"features": x[:25]}) == []           # two mini-batches, no time passed
    now[0] = 5.0
    (v1,) = tr.partial_fit({"features": x[25:30]})               # the third completes; 5 s passed
    c, w, ver = unpack(v1)
    np.testing.assert_allclose(c, ref[2][0], rtol=1e-12)
    np.testing.assert_allclose(w, ref[2][1], rtol=1e-12)
    assert ver == [1, 1]
    assert tr.partial_fit({"features": x[30:45]}) == [] and tr.poll(now=9.99) == []
    (v2,) = tr.poll(now=10.0)
    np.testing.assert_allclose(unpack(v2)[0], ref[3][0], rtol=1e-12)
    (v3,) = tr.finish()                                          # rows 41..45 as a smaller mini-batch
    np.testing.assert_allclose(unpack(v3)[0], flink_reference(x[:45], c0, w0, 0.5, 10)[-1][0], rtol=1e-12)
