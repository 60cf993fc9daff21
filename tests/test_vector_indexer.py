"""VectorIndexer against Flink ML's published test vectors (VectorIndexerTest: train rows
(1, 1), (2, -1), (3, 1), (4, 0), (5, 0); test rows (0, 2), (0, 0), (0, -1)) and against
scikit-learn's OrdinalEncoder on the digits pixels: for non-negative values with 0.0 present,
Flink ML's order (0.0 first, then ascending) is the ascending order OrdinalEncoder uses; and
against Spark MLlib's VectorIndexer through pyspark on values with negatives and zeros."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_digits
from sklearn.preprocessing import OrdinalEncoder

import flowlearn as fl
from flowlearn.feature.vector_indexer import VectorIndexer, VectorIndexerModel
from spark_oracle import spark_vectors

TRAIN = np.array([[1, 1], [2, -1], [3, 1], [4, 0], [5, 0]], dtype=float)
TEST = np.array([[0, 2], [0, 0], [0, -1]], dtype=float)


def table(x, sparse=False):
    return pa.table({"input": fl.linalg.from_csr(sps.csr_matrix(x)) if sparse else fl.linalg.from_numpy(x)})


def out(model, t):
    return fl.linalg.to_numpy(model.transform(t).column("output"))


def test_flink_ml_vectors_keep():
    # max_categories large: both dimensions categorical; 0.0 unseen in dimension 0 -> index 5,
    # dimension 1 {-1, 0, 1} -> 0 first: 0 -> 0, -1 -> 1, 1 -> 2; 2.0 unseen -> 3
    m = VectorIndexer(max_categories=2 ** 31 - 1, handle_invalid="keep").fit(table(TRAIN))
    np.testing.assert_array_equal(out(m, table(TEST)), [[5, 3], [5, 0], [5, 1]])


def test_flink_ml_vectors_handle_invalid():
    est = VectorIndexer(max_categories=3)  # dimension 0 has 5 values: continuous, passed through
    np.testing.assert_array_equal(out(est.set(handle_invalid="keep").fit(table(TRAIN)), table(TEST)),
                                  [[0, 3], [0, 0], [0, 1]])
    np.testing.assert_array_equal(out(est.set(handle_invalid="skip").fit(table(TRAIN)), table(TEST)),
                                  [[0, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"VectorIndexerModel: column 'input' row 0 has value 2.0 at dimension 1, "
                                         r"which the fit did not see among its 3 categories"):
        est.set(handle_invalid="error").fit(table(TRAIN)).transform(table(TEST))


def test_flink_ml_sparse_vector():
    m = VectorIndexer(max_categories=3).fit(table(TRAIN))
    got = m.transform(table(np.array([[0.0, -1.0]]), sparse=True)).column("output")
    assert fl.linalg.is_sparse(got.type)
    np.testing.assert_array_equal(fl.linalg.to_numpy(got), [[0.0, 1.0]])


@pytest.mark.parametrize("sparse", [False, True])
def test_digits_match_ordinal_encoder(sparse):
    x = load_digits().data[:, :24]
    m = VectorIndexer(max_categories=9).fit(table(x, sparse))
    distinct = np.array([len(np.unique(x[:, j])) for j in range(x.shape[1])])
    cats = np.flatnonzero(distinct <= 9)
    assert 0 < len(cats) < x.shape[1]
    want = x.copy()
    want[:, cats] = OrdinalEncoder().fit_transform(x[:, cats])
    got = m.transform(table(x, sparse)).column("output")
    assert fl.linalg.is_sparse(got.type) == sparse
    np.testing.assert_array_equal(fl.linalg.to_numpy(got), want)


def test_negative_values_and_zero_order():
    x = np.array([[-1.0, -3.0], [1.0, 2.0], [0.0, -0.5]])
    m = VectorIndexer().fit(table(x))
    # dimension 0 {-1, 0, 1}: 0 -> 0, -1 -> 1, 1 -> 2 (Flink ML's documented example);
    # dimension 1 has no 0: ascending -3 -> 0, -0.5 -> 1, 2 -> 2
    np.testing.assert_array_equal(out(m, table(x)), [[1, 0], [2, 2], [0, 1]])
    assert out(m, table(np.array([[-0.0, 2.0]]))).tolist() == [[0.0, 2.0]]  # -0.0 is the category 0.0


def test_partials_merge_to_the_whole_fit():
    x = load_digits().data[:, :24]
    t = table(x)
    est = VectorIndexer(max_categories=6)
    parts = [est.partial(t.slice(0, 300)), est.partial(table(x[300:900], sparse=True)), est.partial(t.slice(900))]
    merged = est.finish(est.merge(parts))
    assert merged.get_model_data()[0].equals(est.fit(t).get_model_data()[0])
    # a dimension categorical in every part but with too many values overall becomes continuous
    a, b = table(np.array([[1.0], [2.0]])), table(np.array([[3.0], [4.0]]))
    est2 = VectorIndexer(max_categories=3)
    assert est2.finish(est2.merge([est2.partial(a), est2.partial(b)])).get_model_data()[0] \
        .column("features")[0].as_py() == []


def test_bad_input_named():
    with pytest.raises(ValueError, match="VectorIndexer: column 'input' has NaN or infinity at row 1"):
        VectorIndexer().fit(table(np.array([[1.0], [np.nan]])))
    with pytest.raises(ValueError, match=r"parameter 'max_categories' = 1 violates gt_eq\(2\)"):
        VectorIndexer(max_categories=1)
    with pytest.raises(ValueError, match="must map distinct values to the indices 0 .. k - 1"):
        VectorIndexerModel().set_model_data({"num_features": [1], "features": [[0, 0]], "values": [[1.0, 2.0]],
                                             "indices": [[0, 0]]})


# --- Spark MLlib itself (pyspark on local[1]; skipped without pyspark or Java) ------------------


@pytest.mark.parametrize("max_categories", [3, 9])
def test_spark_vector_indexer(spark, max_categories):
    from pyspark.ml.feature import VectorIndexer as SparkVectorIndexer

    x = np.r_[load_digits().data[:200, :24], TRAIN.repeat(12, axis=1)[:, :24]] - 2.0  # negatives, zeros
    sm = SparkVectorIndexer(inputCol="features", outputCol="out", maxCategories=max_categories,
                            handleInvalid="keep").fit(spark_vectors(spark, x[:150]))
    want = np.array([r.out.toArray() for r in sm.transform(spark_vectors(spark, x)).collect()])
    m = VectorIndexer(max_categories=max_categories, handle_invalid="keep").fit(table(x[:150]))
    np.testing.assert_array_equal(out(m, table(x)), want)
