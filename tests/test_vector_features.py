"""Vector feature stages against independent oracles: scikit-learn (``normalize``,
``PolynomialFeatures``, ``Binarizer``), SciPy (``scipy.fft.dct``), NumPy closed forms (``np.kron``,
fancy indexing) and Flink ML's published test vectors, on bundled scikit-learn data, dense and
sparse."""
import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.fft
import scipy.sparse as sps

from flowlearn.feature.vectors import (
    DCT,
    Binarizer,
    ElementwiseProduct,
    Interaction,
    Normalizer,
    PolynomialExpansion,
    VectorSlicer,
)
from flowlearn.linalg import SparseVector, from_csr, from_numpy, to_csr, to_numpy, vectors_to_array

sk_pre = pytest.importorskip("sklearn.preprocessing")
from sklearn.datasets import load_diabetes, load_digits, load_iris  # noqa: E402


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes().data


@pytest.fixture(scope="module")
def digits():
    return load_digits().data  # 64 pixels a row, mostly zeros: a natural sparse input


def dense_table(x, name="v"):
    return pa.table({name: from_numpy(x)})


def sparse_table(x, name="v"):
    return pa.table({name: from_csr(sps.csr_matrix(x))})


def out_matrix(t, name="o"):
    col = t.column(name)
    return to_csr(col).toarray() if isinstance(col.type, pa.ExtensionType) else to_numpy(col)


# ------------------------------------------------------------------------------------ Normalizer


@pytest.mark.parametrize("p, sk_norm", [(1.0, "l1"), (2.0, "l2"), (math.inf, "max")])
@pytest.mark.parametrize("make", [dense_table, sparse_table])
def test_normalizer_equals_sklearn(digits, p, sk_norm, make):
    x = np.vstack([digits[:300], np.zeros((1, 64))])  # a zero vector stays zero, as in scikit-learn
    out = Normalizer(input_col="v", output_col="o", p=p).transform(make(x))
    assert out.schema.field("o").type == make(x).schema.field("v").type
    np.testing.assert_allclose(out_matrix(out), sk_pre.normalize(x, norm=sk_norm), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("p", [1.5, 3.0, 7.0])
def test_normalizer_general_p_closed_form(iris, p):
    x = iris - iris.mean(axis=0)
    expected = x / np.linalg.norm(x, ord=p, axis=1, keepdims=True)
    for make in (dense_table, sparse_table):
        out = Normalizer(input_col="v", output_col="o", p=p).transform(make(x))
        np.testing.assert_allclose(out_matrix(out), expected, rtol=1e-13)


def test_normalizer_bad_params_and_input():
    with pytest.raises(ValueError, match=r"Normalizer: parameter 'p' = 0.5 violates p_norm\(\)"):
        Normalizer(p=0.5)
    with pytest.raises(ValueError, match=r"Normalizer: column 'v' has NaN or infinity at row 1"):
        Normalizer(input_col="v").transform({"v": [[1.0], [float("inf")]]})
    with pytest.raises(ValueError, match=r"Normalizer: column 'v' has a null vector at row 0"):
        Normalizer(input_col="v").transform(pa.table({"v": pa.array([None], pa.list_(pa.float64(), 2))}))


# ------------------------------------------------------------------------------------------- DCT


def test_dct_flink_published_vectors():
    t = dense_table(np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, -1.0, 0.0]]))
    fwd = out_matrix(DCT(input_col="v", output_col="o").transform(t))
    np.testing.assert_allclose(fwd, [[2.0, 0.0, 0.0, 0.0], [0.0, 0.924, 1.0, -0.383]], atol=1e-3)
    inv = out_matrix(DCT(input_col="v", output_col="o", inverse=True).transform(t))
    np.testing.assert_allclose(inv, [[1.924, -0.383, 0.383, 0.076], [0.0, 1.0, 1.0, 0.0]], atol=1e-3)


@pytest.mark.parametrize("make", [dense_table, sparse_table])
def test_dct_equals_scipy_ortho(digits, make):
    x = digits[:200]
    out = DCT(input_col="v", output_col="o").transform(make(x))
    assert out.schema.field("o").type == pa.list_(pa.float64(), 64)
    y = out_matrix(out)
    np.testing.assert_allclose(y, scipy.fft.dct(x, type=2, norm="ortho", axis=1), rtol=1e-12, atol=1e-11)
    back = out_matrix(DCT(input_col="o", output_col="b", inverse=True).transform(out), "b")
    np.testing.assert_allclose(back, scipy.fft.idct(y, type=2, norm="ortho", axis=1), rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(back, x, atol=1e-10)  # unitary: the inverse undoes the forward transform


def test_dct_matrix_is_dct_ii_definition(iris):
    """Closed form: y_k = s_k sum_n x_n cos(pi k (2n + 1) / 2N), s_0 = sqrt(1/N), s_k = sqrt(2/N)."""
    n = iris.shape[1]
    k, m = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    c = np.cos(np.pi * k * (2 * m + 1) / (2 * n)) * np.where(np.arange(n) == 0, np.sqrt(1 / n), np.sqrt(2 / n))[:, None]
    out = out_matrix(DCT(input_col="v", output_col="o").transform(dense_table(iris)))
    np.testing.assert_allclose(out, iris @ c.T, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- ElementwiseProduct


@pytest.mark.parametrize("make", [dense_table, sparse_table])
def test_elementwise_product_closed_form(diabetes, make):
    s = np.linspace(-2.0, 3.0, diabetes.shape[1])
    out = ElementwiseProduct(input_col="v", output_col="o", scaling_vec=s.tolist()).transform(make(diabetes))
    assert out.schema.field("o").type == make(diabetes).schema.field("v").type
    np.testing.assert_array_equal(out_matrix(out), diabetes * s)


def test_elementwise_product_flink_published_vectors():
    t = pa.table({"d": from_numpy(np.array([[2.1, 3.1]])),
                  "s": vectors_to_array([SparseVector(5, [3], [2.0])])})
    ep = ElementwiseProduct(input_col="d", output_col="o", scaling_vec=[1.1, 1.1])
    np.testing.assert_allclose(ep.transform(t).column("o").to_pylist(), [[2.31, 3.41]])
    ep = ElementwiseProduct(input_col="s", output_col="o", scaling_vec=[1.1, 1.1, 1.1, 1.1, 1.1])
    got = ep.transform(t).column("o").to_pylist()[0]
    assert got["size"] == 5 and got["indices"] == [3] and got["values"] == pytest.approx([2.2])


def test_elementwise_product_size_mismatch_named():
    with pytest.raises(ValueError, match=r"ElementwiseProduct: column 'v' holds vectors of size 3 \(row 0\), but "
                                         r"parameter 'scaling_vec' has size 2"):
        ElementwiseProduct(input_col="v", scaling_vec=[1.0, 2.0]).transform({"v": [[1.0, 2.0, 3.0]]})
    with pytest.raises(ValueError, match=r"parameter 'scaling_vec' is required"):
        ElementwiseProduct(input_col="v").transform({"v": [[1.0]]})


# --------------------------------------------------------------------------- PolynomialExpansion


def flink_order(powers):
    """Flink ML's and Spark's order of monomials, from their documentation: for (x, y) and degree 2,
    (x, x*x, y, x*y, y*y): exponent vectors compared from the last variable to the first."""
    return sorted(range(len(powers)), key=lambda j: tuple(reversed(powers[j].tolist())))


def test_polynomial_expansion_flink_published_vectors():
    t = pa.table({"d": vectors_to_array([[1.0, 2.0, 3.0]]),
                  "s": vectors_to_array([SparseVector(5, [1, 4], [2.0, 3.0])])})
    pe = PolynomialExpansion(input_col="d", output_col="o")
    assert pe.transform(t).column("o").to_pylist() == [[1.0, 1.0, 2.0, 2.0, 4.0, 3.0, 3.0, 6.0, 9.0]]
    pe.set(degree=3)
    assert pe.transform(t).column("o").to_pylist() == [[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 4.0, 4.0, 8.0, 3.0, 3.0, 3.0,
                                                         6.0, 6.0, 12.0, 9.0, 9.0, 18.0, 27.0]]
    pe.set(input_col="s")
    assert pe.transform(t).column("o").to_pylist() == [{"size": 55, "indices": [3, 6, 8, 34, 37, 39, 49, 51, 54],
                                                         "values": [2.0, 4.0, 8.0, 3.0, 6.0, 12.0, 9.0, 18.0, 27.0]}]


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
@pytest.mark.parametrize("make", [dense_table, sparse_table])
def test_polynomial_expansion_equals_sklearn_reordered(diabetes, degree, make):
    x = diabetes[:100]
    if make is sparse_table:
        x = np.where(np.abs(x) < 0.03, 0.0, x)  # a real sparse pattern
    pf = sk_pre.PolynomialFeatures(degree=degree, include_bias=False).fit(x)
    expected = pf.transform(x)[:, flink_order(pf.powers_)]
    out = PolynomialExpansion(input_col="v", output_col="o", degree=degree).transform(make(x))
    assert out_matrix(out).shape == (100, math.comb(10 + degree, degree) - 1)
    np.testing.assert_allclose(out_matrix(out), expected, rtol=1e-12, atol=1e-300)
    if make is sparse_table:  # only monomials of stored entries are stored
        assert to_csr(out.column("o")).nnz == np.count_nonzero(expected)


def test_polynomial_expansion_schema_and_size_limit():
    pe = PolynomialExpansion(input_col="v", output_col="o", degree=3)
    t = dense_table(np.ones((2, 4)))
    assert pe.output_schema(t.schema) == pe.transform(t).schema
    assert pe.output_schema(t.schema).field("o").type == pa.list_(pa.float64(), 34)
    big = pa.table({"v": from_csr(sps.csr_matrix((1, 100000)))})
    with pytest.raises(ValueError, match=r"PolynomialExpansion: vectors of size 100000 expanded to degree 3 have "
                                         r"\d+ monomials, more than a vector holds"):
        pe.transform(big)


# ----------------------------------------------------------------------------------- Interaction


def test_interaction_flink_published_vectors():
    t = pa.table({"f0": [1, 2],
                  "f1": vectors_to_array([[1.0, 2.0], [2.0, 8.0]]),
                  "f2": vectors_to_array([[3.0, 4.0, 0.0], [3.0, 4.0, 5.0]])})
    # Flink ML's rows have f2 of sizes 2 and 3; one column holds one size here, so row 0 is padded
    out = Interaction(input_cols=["f1", "f2"], output_col="o").transform(t).column("o").to_pylist()
    assert out[1] == [6.0, 8.0, 10.0, 24.0, 32.0, 40.0]
    out = Interaction(input_cols=["f0", "f1", "f2"], output_col="o").transform(t).column("o").to_pylist()
    assert out[1] == [12.0, 16.0, 20.0, 48.0, 64.0, 80.0]
    s = pa.table({"f0": [1, 2], "f1": vectors_to_array([[1.0, 2.0], [2.0, 8.0]]),
                  "f2": vectors_to_array([[3.0, 4.0], [3.0, 4.0]]),
                  "f3": vectors_to_array([SparseVector(17, [0, 3, 9], [1.0, 2.0, 7.0]),
                                          SparseVector(17, [0, 2, 14], [5.0, 4.0, 1.0])])})
    out = Interaction(input_cols=["f0", "f1", "f2", "f3"], output_col="o").transform(s).column("o").to_pylist()
    assert out[0] == {"size": 68, "indices": [0, 3, 9, 17, 20, 26, 34, 37, 43, 51, 54, 60],
                      "values": [3.0, 6.0, 21.0, 4.0, 8.0, 28.0, 6.0, 12.0, 42.0, 8.0, 16.0, 56.0]}


@pytest.mark.parametrize("sparse_cols", [(), ("a",), ("b",), ("a", "b")])
def test_interaction_equals_row_kron(iris, diabetes, sparse_cols):
    a = np.where(np.abs(diabetes[:150, :5]) < 0.02, 0.0, diabetes[:150, :5])
    b = iris[:, 1:4]
    t = pa.table({"x": iris[:, 0],
                  "a": from_csr(sps.csr_matrix(a)) if "a" in sparse_cols else from_numpy(a),
                  "b": from_csr(sps.csr_matrix(b)) if "b" in sparse_cols else from_numpy(b)})
    out = Interaction(input_cols=["a", "x", "b"], output_col="o").transform(t)
    expected = np.array([np.kron(np.kron(a[i], [iris[i, 0]]), b[i]) for i in range(150)])
    np.testing.assert_allclose(out_matrix(out), expected, rtol=1e-15)
    assert isinstance(out.schema.field("o").type, pa.ExtensionType) == bool(sparse_cols)
    assert Interaction(input_cols=["a", "x", "b"], output_col="o").output_schema(t.schema).field("o").type == \
        out.schema.field("o").type


def test_interaction_bad_column_named():
    with pytest.raises(TypeError, match=r"Interaction: column 's' has type string, expected a numeric column"):
        Interaction(input_cols=["s", "x"], output_col="o").transform({"s": ["a"], "x": [1.0]})


# ---------------------------------------------------------------------------------- VectorSlicer


@pytest.mark.parametrize("make", [dense_table, sparse_table])
def test_vector_slicer_equals_fancy_indexing(digits, make):
    idx = [63, 0, 17, 5, 40]
    out = VectorSlicer(input_col="v", output_col="o", indices=idx).transform(make(digits))
    np.testing.assert_array_equal(out_matrix(out), digits[:, idx])
    assert out.schema.field("o").type == (pa.list_(pa.float64(), 5) if make is dense_table else
                                          make(digits).schema.field("v").type)


def test_vector_slicer_flink_published_vectors_and_errors():
    t = pa.table({"d": vectors_to_array([[2.1, 3.1, 1.2, 3.1, 4.6]]),
                  "s": vectors_to_array([SparseVector(5, [1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4])])})
    vs = VectorSlicer(input_col="d", output_col="o", indices=[0, 1, 2])
    assert vs.transform(t).column("o").to_pylist() == [[2.1, 3.1, 1.2]]
    vs.set(input_col="s")
    assert vs.transform(t).column("o").to_pylist() == [{"size": 3, "indices": [1, 2], "values": [0.1, 0.2]}]
    with pytest.raises(ValueError, match=r"VectorSlicer: parameter 'indices' holds index 9, but column 's' holds "
                                         r"vectors of size 5"):
        vs.set(indices=[9]).transform(t)
    with pytest.raises(ValueError, match=r"parameter 'indices' = \[1, 1\] holds index 1 twice"):
        vs.set(indices=[1, 1]).transform(t)
    with pytest.raises(ValueError, match=r"parameter 'indices' = \[-1\] violates gt_eq\(0\)"):
        VectorSlicer(indices=[-1])


# ------------------------------------------------------------------------------------- Binarizer


@pytest.mark.parametrize("threshold", [0.0, 0.3, 5.0])
def test_binarizer_equals_sklearn(digits, threshold):
    x = digits / 16.0
    expected = sk_pre.Binarizer(threshold=threshold).fit_transform(x)
    for make in (dense_table, sparse_table):
        out = Binarizer(input_cols=["v"], output_cols=["o"], thresholds=[threshold]).transform(make(x))
        np.testing.assert_array_equal(out_matrix(out), expected)
        if make is sparse_table:
            assert to_csr(out.column("o")).nnz == np.count_nonzero(expected)


def test_binarizer_negative_threshold_sparse_equals_dense(diabetes):
    x = np.where(np.abs(diabetes) < 0.02, 0.0, diabetes)
    expected = sk_pre.Binarizer(threshold=-0.01).fit_transform(x)  # implicit zeros are above -0.01
    for make in (dense_table, sparse_table):
        out = Binarizer(input_cols=["v"], output_cols=["o"], thresholds=[-0.01]).transform(make(x))
        np.testing.assert_array_equal(out_matrix(out), expected)


def test_binarizer_flink_published_vectors_and_numbers():
    t = pa.table({"f0": [1, 2, 0], "f1": vectors_to_array([[1, 2], [2, 1], [5, 18]]),
                  "f2": vectors_to_array([SparseVector(17, [0, 3, 9], [1.0, 2.0, 7.0]),
                                          SparseVector(17, [0, 2, 14], [5.0, 4.0, 1.0]),
                                          SparseVector(17, [0, 11, 12], [2.0, 4.0, 4.0])])})
    b = Binarizer(input_cols=["f0", "f1", "f2"], output_cols=["o0", "o1", "o2"], thresholds=[0.0, 1.0, 1.5])
    out = b.transform(t)
    assert out.column("o0").to_pylist() == [1.0, 1.0, 0.0]
    assert out.column("o1").to_pylist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    assert out.column("o2").to_pylist() == [{"size": 17, "indices": [3, 9], "values": [1.0, 1.0]},
                                            {"size": 17, "indices": [0, 2], "values": [1.0, 1.0]},
                                            {"size": 17, "indices": [0, 11, 12], "values": [1.0, 1.0, 1.0]}]
    assert b.output_schema(t.schema) == out.schema
    with pytest.raises(ValueError, match=r"'input_cols' \(3\), 'output_cols' \(3\) and 'thresholds' \(1\) must "
                                         r"have the same length"):
        b.set(thresholds=[1.0]).transform(t)
    with pytest.raises(ValueError, match=r"Binarizer: column 'f0' has a null at row 1"):
        Binarizer(input_cols=["f0"], output_cols=["o"], thresholds=[0.0]).transform({"f0": [1.0, None]})


# ----------------------------------------------------------------------------------- row kernels


def _row_outputs_equal_batch(stage, t, out_cols):
    from flowlearn.testing.conformance import rows_of

    want = stage.transform(t)
    fn = stage.row_fn()
    rows = rows_of(t)
    for r in rows:
        fn(r)
    for c in out_cols:
        col = want.column(c)
        expected = out_matrix(want, c) if is_vec(col.type) else np.asarray(col.to_pylist())[:, None]
        got = np.array([r[c].to_numpy() if isinstance(r[c], SparseVector) else np.atleast_1d(r[c]) for r in rows])
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
        kinds = {isinstance(r[c], SparseVector) for r in rows}
        assert kinds == {isinstance(col.type, pa.ExtensionType)}, c


def is_vec(t):
    return isinstance(t, pa.ExtensionType) or pa.types.is_fixed_size_list(t)


@pytest.mark.parametrize("make", [dense_table, sparse_table])
def test_row_kernels_equal_batch(diabetes, make):
    x = np.where(np.abs(diabetes[:60, :6]) < 0.02, 0.0, diabetes[:60, :6])
    t = make(x).append_column("w", pa.array(diabetes[:60, 6]))
    stages = [
        Normalizer(input_col="v", output_col="o", p=1.0), Normalizer(input_col="v", output_col="o"),
        Normalizer(input_col="v", output_col="o", p=math.inf), Normalizer(input_col="v", output_col="o", p=3.0),
        DCT(input_col="v", output_col="o"), DCT(input_col="v", output_col="o", inverse=True),
        ElementwiseProduct(input_col="v", output_col="o", scaling_vec=[1.0, -2.0, 0.0, 3.0, 0.5, 1.0]),
        PolynomialExpansion(input_col="v", output_col="o", degree=3),
        Interaction(input_cols=["v", "w", "v"], output_col="o"),
        VectorSlicer(input_col="v", output_col="o", indices=[5, 0, 2]),
        Binarizer(input_cols=["v", "w"], output_cols=["o", "o2"], thresholds=[0.01, 0.0]),
        Binarizer(input_cols=["v"], output_cols=["o"], thresholds=[-0.01]),
    ]
    for s in stages:
        _row_outputs_equal_batch(s, t, [c for c in ("o", "o2") if c in s.output_schema(t.schema).names])


def test_row_kernels_refuse_bad_rows_naming_the_column():
    fn = ElementwiseProduct(input_col="v", output_col="o", scaling_vec=[1.0, 2.0]).row_fn()
    with pytest.raises(ValueError, match=r"ElementwiseProduct: column 'v' holds a vector of size 3 in this row, but "
                                         r"parameter 'scaling_vec' has size 2"):
        fn({"v": np.ones(3)})
    with pytest.raises(ValueError, match=r"Normalizer: column 'v' has NaN or infinity in this row"):
        Normalizer(input_col="v").row_fn()({"v": [1.0, float("nan")]})
    with pytest.raises(ValueError, match=r"VectorSlicer: parameter 'indices' holds index 4, but column 'v' holds a "
                                         r"vector of size 2"):
        VectorSlicer(input_col="v", indices=[4]).row_fn()({"v": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"Interaction: input column 'b' \(parameter 'input_cols'\) is missing"):
        Interaction(input_cols=["a", "b"]).row_fn()({"a": 1.0})


# --- Spark MLlib itself (pyspark on local[1]; skipped without pyspark or Java) ------------------


def _spark_matrix(df, col):
    return np.array([r[col].toArray() for r in df.select(col).collect()])


def test_vector_stages_equal_spark_mllib(spark, diabetes):
    from pyspark.ml import feature as sf
    from pyspark.ml.linalg import Vectors

    x = np.where(np.abs(diabetes[:40, :5]) < 0.02, 0.0, diabetes[:40, :5])
    w = diabetes[:40, 6]
    df = spark.createDataFrame([(Vectors.dense(r.tolist()), Vectors.sparse(5, {j: float(r[j]) for j in
                                                                               np.flatnonzero(r)}), float(wi))
                                for r, wi in zip(x, w)], ["d", "s", "w"])
    # Spark's Interaction reads the ML attributes VectorAssembler writes on its output
    df = sf.VectorAssembler(inputCols=["d"], outputCol="da").transform(df)
    df = sf.VectorAssembler(inputCols=["s"], outputCol="sa").transform(df)
    t = pa.table({"d": from_numpy(x), "s": from_csr(sps.csr_matrix(x)), "w": w})
    pairs = [
        (sf.Normalizer(inputCol="d", outputCol="o", p=1.0), Normalizer(input_col="d", output_col="o", p=1.0)),
        (sf.Normalizer(inputCol="s", outputCol="o", p=3.0), Normalizer(input_col="s", output_col="o", p=3.0)),
        (sf.Normalizer(inputCol="d", outputCol="o", p=float("inf")),
         Normalizer(input_col="d", output_col="o", p=math.inf)),
        (sf.DCT(inputCol="d", outputCol="o"), DCT(input_col="d", output_col="o")),
        (sf.DCT(inputCol="s", outputCol="o", inverse=True), DCT(input_col="s", output_col="o", inverse=True)),
        (sf.ElementwiseProduct(inputCol="s", outputCol="o", scalingVec=Vectors.dense([1.0, -2.0, 0.5, 3.0, 0.0])),
         ElementwiseProduct(input_col="s", output_col="o", scaling_vec=[1.0, -2.0, 0.5, 3.0, 0.0])),
        (sf.PolynomialExpansion(inputCol="d", outputCol="o", degree=3),
         PolynomialExpansion(input_col="d", output_col="o", degree=3)),
        (sf.PolynomialExpansion(inputCol="s", outputCol="o", degree=2),
         PolynomialExpansion(input_col="s", output_col="o", degree=2)),
        (sf.VectorSlicer(inputCol="s", outputCol="o", indices=[4, 0, 2]),
         VectorSlicer(input_col="s", output_col="o", indices=[4, 0, 2])),
        (sf.Binarizer(inputCol="s", outputCol="o", threshold=0.01),
         Binarizer(input_cols=["s"], output_cols=["o"], thresholds=[0.01])),
        (sf.Binarizer(inputCol="s", outputCol="o", threshold=-0.01),  # Spark: implicit zeros above it too
         Binarizer(input_cols=["s"], output_cols=["o"], thresholds=[-0.01])),
        (sf.Interaction(inputCols=["da", "w", "sa"], outputCol="o"),
         Interaction(input_cols=["d", "w", "s"], output_col="o")),
    ]
    for theirs, ours in pairs:
        expected = _spark_matrix(theirs.transform(df), "o")
        np.testing.assert_allclose(out_matrix(ours.transform(t)), expected, rtol=1e-12, atol=1e-15,
                                   err_msg=type(ours).__name__)


def test_dct_of_entries_near_the_float64_limit_is_finite():
    """Found by the property suite: scipy.fft.dct overflowed to [inf, nan, nan]. Oracle: the same
    transform of the data divided by 2**1000 (exact), multiplied back."""
    from flowlearn.linalg import to_numpy

    x = np.array([[1e308, 1.0, 2.0], [-1e308, 1e308, 0.0]])
    got = to_numpy(DCT(input_col="v", output_col="o").transform({"v": x}).column("o"))
    want = scipy.fft.dct(x / 2.0 ** 1000, norm="ortho", axis=1) * 2.0 ** 1000
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-15)
