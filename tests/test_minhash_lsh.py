"""MinHashLSH against Flink ML's published test vectors (MinHashLSHTest: hashes with seed 2022,
approximate nearest neighbours and similarity join) and against exact Jaccard distances from
SciPy (scipy.spatial.distance.cdist, metric="jaccard") on sets built from scikit-learn's digits
(the pixels above 8), and against Spark MLlib's MinHashLSH through pyspark (same coefficients for
the same seed). Every statement is deterministic given the seed."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits

import flowlearn as fl
from flowlearn.feature.lsh import MinHashLSH, MinHashLSHModel
from flowlearn.linalg import SparseVector

FLINK_A = {"id": [0, 1, 2], "vec": [SparseVector(6, [0, 1, 2], [1.0] * 3), SparseVector(6, [2, 3, 4], [1.0] * 3),
                                    SparseVector(6, [0, 2, 4], [1.0] * 3)]}
FLINK_B = {"id": [3, 4, 5], "vec": [SparseVector(6, [1, 3, 5], [1.0] * 3), SparseVector(6, [2, 3, 5], [1.0] * 3),
                                    SparseVector(6, [1, 2, 4], [1.0] * 3)]}
# Flink ML's expected hashes (5 tables x 3 functions, seed 2022) of the three rows of FLINK_A
FLINK_HASHES = [
    [[1.73046954e8, 1.57275425e8, 6.90717571e8], [5.02301169e8, 7.967141e8, 4.06089319e8],
     [2.83652171e8, 1.97714719e8, 6.04731316e8], [5.2181506e8, 6.36933726e8, 6.13894128e8],
     [3.04301769e8, 1.113672955e9, 6.1388711e8]],
    [[1.73046954e8, 1.57275425e8, 6.7798584e7], [6.38582806e8, 1.78703694e8, 4.06089319e8],
     [6.232638e8, 9.28867e7, 9.92010642e8], [2.461064e8, 1.12787481e8, 1.92180297e8],
     [2.38162496e8, 1.552933319e9, 2.77995137e8]],
    [[1.73046954e8, 1.57275425e8, 6.90717571e8], [1.453197722e9, 7.967141e8, 4.06089319e8],
     [6.232638e8, 1.97714719e8, 6.04731316e8], [2.461064e8, 1.12787481e8, 1.92180297e8],
     [1.224130231e9, 1.113672955e9, 2.77995137e8]],
]


def lsh(**kw):
    return MinHashLSH(input_col="vec", output_col="hashes", **kw)


def test_flink_ml_hashes():
    m = lsh(seed=2022, num_hash_tables=5, num_hash_functions_per_table=3).fit(FLINK_A)
    got = m.transform(FLINK_A).column("hashes").to_pylist()
    assert sorted(got) == sorted(FLINK_HASHES)  # Flink ML's test compares the rows as a set


def test_flink_ml_hash_function():
    # Flink ML's testHashFunction: coefficients a = (0, 1, 3), b = (1, 2, 0); set {2, 3, 5, 7}
    m = MinHashLSHModel(input_col="vec", output_col="hashes").set_model_data(
        {"num_hash_tables": [3], "num_hash_functions_per_table": [1], "rand_coefficient_a": [[0, 1, 3]],
         "rand_coefficient_b": [[1, 2, 0]]})
    t = {"vec": [SparseVector(10, [2, 3, 5, 7], [1.0] * 4)]}
    assert m.transform(t).column("hashes").to_pylist() == [[[1.0], [5.0], [9.0]]]


def test_flink_ml_nearest_neighbors_and_join():
    m = lsh(seed=2022, num_hash_tables=5).fit(FLINK_A)
    nn = m.approx_nearest_neighbors(FLINK_A, SparseVector(6, [1, 3], [1.0, 1.0]), 2)
    assert sorted(nn.select(["id", "distCol"]).to_pylist(), key=lambda r: r["id"]) == \
        [{"id": 0, "distCol": 0.75}, {"id": 1, "distCol": 0.75}]
    join = m.approx_similarity_join(FLINK_A, FLINK_B, 0.6, "id")
    assert [tuple(r.values()) for r in join.to_pylist()] == [(0, 5, 0.5), (1, 4, 0.5), (1, 5, 0.5), (2, 5, 0.5)]
    assert join.column_names == ["datasetA.id", "datasetB.id", "distCol"]


@pytest.fixture(scope="module")
def digit_sets():
    x = load_digits().data > 8  # each image as the set of its darker pixels
    x = x[x.any(axis=1)]
    return x[:400], x[400:700]


def set_table(b, sparse=True):
    x = b.astype(np.float64)
    col = fl.linalg.from_csr(sps.csr_matrix(x)) if sparse else fl.linalg.from_numpy(x)
    return pa.table({"id": np.arange(len(b)), "vec": col})


def test_dense_and_sparse_hash_alike(digit_sets):
    a, _ = digit_sets
    m = lsh(seed=5, num_hash_tables=4, num_hash_functions_per_table=2).fit(set_table(a))
    dense = m.transform(set_table(a, sparse=False)).column("hashes")
    assert dense.equals(m.transform(set_table(a)).column("hashes"))
    assert dense.type == pa.list_(pa.list_(pa.float64(), 2), 4)


def test_collision_rate_is_the_jaccard_similarity(digit_sets):
    a, _ = digit_sets
    h = 4000
    m = lsh(seed=7, num_hash_tables=h).fit(set_table(a))
    hashes = np.array(m.transform(set_table(a[:6])).column("hashes").to_pylist()).reshape(6, h)
    sim = 1.0 - cdist(a[:6], a[:6], metric="jaccard")
    for i in range(6):
        for j in range(i + 1, 6):
            rate = np.mean(hashes[i] == hashes[j])
            sd = np.sqrt(sim[i, j] * (1 - sim[i, j]) / h)
            assert abs(rate - sim[i, j]) < 5 * sd + 1e-9, (i, j, rate, sim[i, j])


def test_similarity_join_precision_and_recall(digit_sets):
    a, b = digit_sets
    m = lsh(seed=11, num_hash_tables=12).fit(set_table(a))
    threshold = 0.35
    join = m.approx_similarity_join(set_table(a), set_table(b), threshold)
    exact = cdist(a, b, metric="jaccard")
    ia, ib, d = (join.column(c).to_numpy() for c in ("datasetA.id", "datasetB.id", "distCol"))
    np.testing.assert_allclose(d, exact[ia, ib], rtol=1e-12)  # distances are exact
    assert (d <= threshold).all() and len(set(zip(ia, ib))) == len(ia)  # precision 1, no pair twice
    truth = set(zip(*np.nonzero(exact <= threshold)))
    assert len(truth) > 50
    # a pair at distance d shares no bucket of 12 one-function tables with probability d ** 12 < 4e-6
    assert set(zip(ia.tolist(), ib.tolist())) == {(int(i), int(j)) for i, j in truth}


def test_nearest_neighbors_against_exact_distances(digit_sets):
    a, b = digit_sets
    m = lsh(seed=13, num_hash_tables=20).fit(set_table(a))
    for q in range(5):
        key = SparseVector(64, np.flatnonzero(b[q]), np.ones(int(b[q].sum())))
        nn = m.approx_nearest_neighbors(set_table(a), key, 5)
        exact = cdist(b[q:q + 1], a, metric="jaccard")[0]
        got = nn.column("distCol").to_numpy()
        np.testing.assert_allclose(got, exact[nn.column("id").to_numpy()], rtol=1e-12)
        assert (np.diff(got) >= 0).all()
        # with 20 tables the 5 nearest (all within distance 0.6 here) share a bucket with the key
        np.testing.assert_allclose(got, np.sort(exact)[:5], rtol=1e-12)


def test_bad_input_named():
    m = lsh(seed=1).fit({"vec": [[1.0, 0.0]]})
    with pytest.raises(ValueError, match="MinHashLSHModel: column 'vec' row 1 has no non-zero entry"):
        m.transform({"vec": [[1.0, 0.0], [0.0, 0.0]]})
    with pytest.raises(ValueError, match="the key has no non-zero entry"):
        m.approx_nearest_neighbors({"vec": [[1.0, 0.0]]}, [0.0, 0.0], 1)
    with pytest.raises(ValueError, match="k = 0 must be a positive integer"):
        m.approx_nearest_neighbors({"vec": [[1.0, 0.0]]}, [1.0, 0.0], 0)
    with pytest.raises(ValueError, match=r"parameter 'num_hash_tables' = 0 violates in_range\(1, 65536\)"):
        lsh(num_hash_tables=0)
    # was (found by tests/test_properties_stages.py): num_hash_tables = 2**63 - 1 reached NumPy's "array is too
    # big" (naming no parameter), and 10**9 drew a billion hash functions in a Python loop into 16 GB of arrays
    with pytest.raises(ValueError, match=r"parameter 'num_hash_tables' = 9223372036854775807 violates in_range"):
        lsh(num_hash_tables=2 ** 63 - 1)
    with pytest.raises(ValueError, match=r"'num_hash_tables' = 1000 and 'num_hash_functions_per_table' = 1000 ask "
                                         r"for 1000000 hash functions; at most 65536"):
        lsh(num_hash_tables=1000, num_hash_functions_per_table=1000).fit({"vec": [[1.0, 0.0]]})
    with pytest.raises(ValueError, match="needs num_hash_tables \\* num_hash_functions_per_table"):
        MinHashLSHModel().set_model_data({"num_hash_tables": [2], "num_hash_functions_per_table": [1],
                                          "rand_coefficient_a": [[1]], "rand_coefficient_b": [[1]]})


# --- Spark MLlib itself (pyspark on local[1]; skipped without pyspark or Java) ------------------


def test_spark_minhash_hashes_neighbours_and_join(spark):
    # Spark's MinHashLSH draws (a, b) pairs from java.util.Random(seed) as Flink ML does: its
    # num_hash_tables functions are flowlearn's with one function per table
    from pyspark.ml.feature import MinHashLSH as SparkMinHashLSH
    from pyspark.ml.linalg import Vectors

    a, b = load_digits().data[:120] > 8, load_digits().data[120:200] > 8

    def df(sets, first_id):
        return spark.createDataFrame([(first_id + i, Vectors.sparse(64, np.flatnonzero(r).tolist(),
                                                                    [1.0] * int(r.sum())))
                                      for i, r in enumerate(sets)], ["id", "vec"])

    sm = SparkMinHashLSH(inputCol="vec", outputCol="hashes", numHashTables=6, seed=77).fit(df(a, 0))
    spark_hashes = [[v.toArray().tolist() for v in r.hashes] for r in sm.transform(df(a, 0)).orderBy("id").collect()]
    ta, tb = set_table(a), set_table(b).set_column(0, "id", pa.array(np.arange(120, 200)))
    m = lsh(seed=77, num_hash_tables=6).fit(ta)
    assert m.transform(ta).column("hashes").to_pylist() == spark_hashes
    # Spark keeps distances < threshold, Flink ML (and flowlearn) <= threshold: 0.41 is no Jaccard
    # distance of sets of at most 64 elements, so both keep the same pairs
    join = sm.approxSimilarityJoin(df(a, 0), df(b, 120), 0.41, "dist").collect()
    want = sorted((r.datasetA.id, r.datasetB.id, r.dist) for r in join)
    got = m.approx_similarity_join(ta, tb, 0.41, dist_col="dist")
    assert sorted(zip(*(got.column(c).to_pylist() for c in got.column_names))) == want
    key = Vectors.sparse(64, np.flatnonzero(b[0]).tolist(), [1.0] * int(b[0].sum()))
    nn = sm.approxNearestNeighbors(df(a, 0), key, 4, "dist").collect()
    ours = m.approx_nearest_neighbors(ta, SparseVector(64, np.flatnonzero(b[0]), np.ones(int(b[0].sum()))), 4,
                                      dist_col="dist")
    assert sorted(r.dist for r in nn) == ours.column("dist").to_pylist()
