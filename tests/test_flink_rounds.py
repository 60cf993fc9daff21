"""Iterative fits driven in rounds for an engine (``fit_rounds``): KMeans's initialisation and
Lloyd's rounds, and the linear models' SGD epochs, over batches that come back in any order, in
process and on a real PyFlink mini-cluster at parallelism 2 (marker ``flink``; ``make test`` runs
those in ``.venv-flink``). Oracles: scikit-learn's Lloyd ``KMeans`` from the same initial
centroids on scikit-learn's iris and wine data, and the local fit (whose own oracles are in
tests/test_kmeans.py and the linear models' tests)."""
from __future__ import annotations

import importlib.util
import random

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.clustering.kmeans import KMeans
from flowlearn.engines.flink_functions import with_batch_key

sklearn_datasets = pytest.importorskip("sklearn.datasets")
from sklearn.cluster import KMeans as SKKMeans  # noqa: E402

needs_flink = pytest.mark.skipif(importlib.util.find_spec("pyflink") is None, reason="needs PyFlink (the flink extra)")


def _features(x: np.ndarray | sps.csr_matrix) -> pa.Table:
    return fl.table({"features": fl.linalg.from_csr(x) if sps.issparse(x) else fl.linalg.from_numpy(x)})


def _centroids(model) -> np.ndarray:
    return fl.linalg.to_numpy(model.get_model_data()[0].column("centroids"))


def _sklearn(est: KMeans, t: pa.Table, max_iter: int):
    x = fl.linalg.to_numpy(t.column("features"))
    init = fl.linalg.to_numpy(est.initial_centroids(t).column("centroids"))
    return SKKMeans(n_clusters=est.k, init=init, n_init=1, algorithm="lloyd", max_iter=max_iter, tol=0.0).fit(x)


def _local_fit(monkeypatch, est: KMeans, t: pa.Table):
    """The local fit and its number of Lloyd rounds (from the iteration engine it runs on)."""
    import flowlearn.clustering.kmeans as kmeans_module

    results, iterate = [], kmeans_module.iterate_bounded
    with monkeypatch.context() as m:
        m.setattr(kmeans_module, "iterate_bounded", lambda *a, **kw: results.append(iterate(*a, **kw)) or results[-1])
        model = est.fit(t)
    return model, results[-1].rounds


def _in_any_order(t: pa.Table, cuts: list[int], seed: int):
    """``map_batches`` over the slices of ``t`` between ``cuts``, each labelled with its place as the
    Flink engine's sources label them (two slices share a split), returned in a shuffled order."""
    bounds = list(zip([0] + cuts, cuts + [t.num_rows]))
    parts = [with_batch_key(t.slice(lo, hi - lo), i // 2, i % 2) for i, (lo, hi) in enumerate(bounds)]
    names = []

    def map_batches(fn, name="round"):
        names.append(name)
        out = [fn(p) for p in parts]
        random.Random(seed + len(names)).shuffle(out)
        return out

    return map_batches, names


@pytest.mark.parametrize("data", ["load_iris", "load_wine"])
@pytest.mark.parametrize("init_mode", ["random", "k-means++"])
@pytest.mark.parametrize("measure", ["euclidean", "cosine", "manhattan"])
@pytest.mark.parametrize("sparse", [False, True])
def test_rounds_over_shuffled_batches_give_the_local_fit(monkeypatch, data, init_mode, measure, sparse):
    x = getattr(sklearn_datasets, data)().data
    t = _features(sps.csr_matrix(x) if sparse else x)
    est = KMeans(k=4, init_mode=init_mode, seed=3, distance_measure=measure, max_iter=300)
    map_batches, names = _in_any_order(t, [40, 77, 87, 120], seed=len(data))
    got = est.fit_rounds(map_batches)
    want, rounds = _local_fit(monkeypatch, est, t)
    np.testing.assert_allclose(_centroids(got), _centroids(want), rtol=1e-9, atol=1e-12)
    assert got.get_model_data()[0].column("weights").equals(want.get_model_data()[0].column("weights"))
    assert got.get_params() == want.get_params()
    steps = ["rows"] if init_mode == "random" else ["rows", "potential"] + ["draw", "potential"] * 3
    assert names == ["shape"] + steps + ["lloyd"] * rounds   # a job per round, as many rounds as the fit's
    if measure == "euclidean":   # an independent oracle: scikit-learn's Lloyd from the same start
        oracle = _sklearn(est, t, 300)
        np.testing.assert_allclose(_centroids(got), oracle.cluster_centers_, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(got.transform(t).column("prediction").to_numpy(), oracle.labels_)


@pytest.mark.parametrize("max_iter, tol", [(3, 0.0), (300, 5.0)], ids=["max_iter", "tol"])
def test_rounds_stop_as_the_local_fit_does(monkeypatch, max_iter, tol):
    t = _features(sklearn_datasets.load_wine().data)
    est = KMeans(k=5, seed=11, max_iter=max_iter, tol=tol)
    map_batches, names = _in_any_order(t, [60, 100], seed=1)
    got = est.fit_rounds(map_batches)
    want, rounds = _local_fit(monkeypatch, est, t)
    np.testing.assert_allclose(_centroids(got), _centroids(want), rtol=1e-9)
    _, to_fixed_point = _local_fit(monkeypatch, KMeans(k=5, seed=11, max_iter=300), t)
    assert names.count("lloyd") == rounds < to_fixed_point   # stopped early, by max_iter or by tol
    assert rounds == 3 if max_iter == 3 else rounds > 3


def test_rounds_refuse_bad_inputs_as_the_fit_does():
    t = _features(np.arange(12.0).reshape(6, 2))
    one = lambda fn, name="round": [fn(t)]  # noqa: E731
    with pytest.raises(ValueError, match="k=7 clusters need at least 7 rows"):
        KMeans(k=7).fit_rounds(one)
    with pytest.raises(ValueError, match="input table is empty"):
        KMeans().fit_rounds(lambda fn, name="round": [])
    unnumbered = lambda fn, name="round": [fn(t.slice(0, 3)), fn(t.slice(3))]  # noqa: E731
    with pytest.raises(ValueError, match="numbered by its place in the source"):
        KMeans().fit_rounds(unnumbered)
    bad = fl.table({"features": fl.linalg.from_numpy(np.array([[1.0, np.inf], [0.0, 0.0], [2.0, 2.0]]))})
    with pytest.raises(ValueError) as local:
        KMeans().fit(bad)
    with pytest.raises(ValueError) as rounds:
        KMeans().fit_rounds(lambda fn, name="round": [fn(bad)])
    assert str(rounds.value) == str(local.value)


def _standardized(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / x.std(axis=0)


def _outputs(model, t: pa.Table) -> np.ndarray:
    """The model's probabilities (classifiers) or predictions (regressors) on ``t``."""
    out = model.transform(t)
    col = out.column("raw_prediction" if "raw_prediction" in out.column_names else "prediction")
    return fl.linalg.to_numpy(col) if pa.types.is_fixed_size_list(col.type) else col.to_numpy()


SGD_CASES = {
    "binomial-elastic-net": (lambda: fl.classification.LogisticRegression(
        solver="sgd", reg=0.01, elastic_net=0.5, global_batch_size=64, max_iter=4, tol=0.0), "load_breast_cancer"),
    "multinomial": (lambda: fl.classification.LogisticRegression(
        solver="sgd", multi_class="multinomial", global_batch_size=50, max_iter=300, tol=1e-3), "load_iris"),
    "linear-svc": (lambda: fl.classification.LinearSVC(
        solver="sgd", reg=0.01, global_batch_size=64, max_iter=4, tol=0.0), "load_breast_cancer"),
    "linear-regression": (lambda: fl.regression.LinearRegression(
        solver="sgd", global_batch_size=100, max_iter=5, learning_rate=0.05, tol=0.0), "load_diabetes"),
}


@pytest.mark.parametrize("case", sorted(SGD_CASES))
def test_sgd_rounds_over_shuffled_batches_take_the_local_fits_steps(case):
    make, data = SGD_CASES[case]
    d = getattr(sklearn_datasets, data)()
    y = d.target / 100.0 if data == "load_diabetes" else d.target.astype(np.float64)
    t = fl.table({"features": fl.linalg.from_numpy(_standardized(d.data)), "label": y})
    est = make()
    assert est.drives_rounds
    map_batches, names = _in_any_order(t, [40, 77, 78, 120], seed=7)
    got = est.fit_rounds(map_batches)
    want = make().fit(t)
    np.testing.assert_allclose(_outputs(got, t), _outputs(want, t), rtol=0, atol=1e-9)   # the brief's bar: 1e-4
    assert got.get_params() == want.get_params()
    steps = -(-t.num_rows // est.global_batch_size)   # mini-batches per epoch, one job each
    assert names[0] == "shape" and set(names[1:]) == {"sgd"} and (len(names) - 1) % steps == 0
    epochs = (len(names) - 1) // steps
    assert epochs == est.max_iter if est.tol == 0.0 else 1 < epochs < est.max_iter   # tol stopped the multinomial one


def test_sgd_rounds_need_numbered_batches():
    t = fl.table({"features": fl.linalg.from_numpy(np.eye(4)), "label": [0.0, 1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match="numbered by its place in the source"):
        fl.classification.LogisticRegression(solver="sgd").fit_rounds(
            lambda fn, name="round": [fn(t.slice(0, 2)), fn(t.slice(2))])
    one = fl.classification.LogisticRegression(solver="sgd", max_iter=3).fit_rounds(lambda fn, name="round": [fn(t)])
    want = fl.classification.LogisticRegression(solver="sgd", max_iter=3).fit(t)
    np.testing.assert_allclose(_outputs(one, t), _outputs(want, t), atol=1e-12)   # one batch needs no number


# --- on Flink ------------------------------------------------------------------------------------


def _flink():
    from flowlearn.engines import FlinkEngine

    return FlinkEngine(parallelism=2)


def _spy_jobs(monkeypatch) -> list[str]:
    from flowlearn.engines import FlinkEngine

    names, run = [], FlinkEngine._map_collect

    def spy(self, stream, func, name, *args, **kwargs):
        names.append(name)
        return run(self, stream, func, name, *args, **kwargs)

    monkeypatch.setattr(FlinkEngine, "_map_collect", spy)
    return names


def _same_clusters(got, want, oracle, t: pa.Table) -> None:
    """The Flink fit's centroids and predictions equal the local fit's and scikit-learn's."""
    np.testing.assert_allclose(_centroids(got), _centroids(want), rtol=1e-9)
    np.testing.assert_allclose(_centroids(got), oracle.cluster_centers_, rtol=1e-9)
    pred = got.transform(t).column("prediction").to_numpy()
    np.testing.assert_array_equal(pred, want.transform(t).column("prediction").to_numpy())
    np.testing.assert_array_equal(pred, oracle.labels_)


@pytest.mark.flink
@needs_flink
def test_kmeans_on_flink_from_table_slices_equals_the_local_fit_and_sklearn(monkeypatch):
    t = _features(sklearn_datasets.load_iris().data)
    est = KMeans(k=3, seed=11, max_iter=300)
    names = _spy_jobs(monkeypatch)
    with fl.set_engine(_flink()):
        got = est.fit(fls.from_table(t, batch_size=40))   # 4 batches over 2 workers
    want, rounds = _local_fit(monkeypatch, est, t)
    oracle = _sklearn(est, t, 300)
    assert names == ["shape", "rows"] + ["lloyd"] * rounds and rounds == 4   # to the fixed point
    _same_clusters(got, want, oracle, t)


@pytest.mark.flink
@needs_flink
def test_kmeans_plus_plus_on_flink_from_several_files_equals_the_local_fit_and_sklearn(monkeypatch, tmp_path):
    x = sklearn_datasets.load_wine().data
    for i, (lo, hi) in enumerate([(0, 70), (70, 120), (120, 178)]):   # files 0, 1, 2 in the source's order
        fl.write_parquet(_features(x[lo:hi]), str(tmp_path / f"wine-{i}.parquet"))
    est = KMeans(k=2, init_mode="k-means++", seed=1, max_iter=2)   # 2 of its 4 rounds
    names = _spy_jobs(monkeypatch)
    with fl.set_engine(_flink()):
        got = est.fit(fls.from_files(str(tmp_path), format="parquet", batch_size=30))   # 2-3 batches a file
    t = _features(x)
    want, rounds = _local_fit(monkeypatch, est, t)
    oracle = _sklearn(est, t, 2)
    assert names == ["shape", "rows", "potential", "draw", "potential", "lloyd", "lloyd"] and rounds == 2
    _same_clusters(got, want, oracle, t)


@pytest.mark.flink
@needs_flink
def test_sgd_logistic_regression_on_flink_equals_the_local_fit(monkeypatch):
    d = sklearn_datasets.load_breast_cancer()
    t = fl.table({"features": fl.linalg.from_numpy(_standardized(d.data)), "label": d.target.astype(np.float64)})
    make = lambda: fl.classification.LogisticRegression(solver="sgd", reg=0.01, global_batch_size=300,  # noqa: E731
                                                        max_iter=1)
    names = _spy_jobs(monkeypatch)
    with fl.set_engine(_flink()):
        got = make().fit(fls.from_table(t, batch_size=150))   # 4 batches; 2 mini-batches of rows from all of them
    assert names == ["shape", "sgd", "sgd"]
    np.testing.assert_allclose(_outputs(got, t), _outputs(make().fit(t), t), rtol=0, atol=1e-4)
