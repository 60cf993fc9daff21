"""MaxAbsScaler / MaxAbsScalerModel against scikit-learn's MaxAbsScaler (dense and sparse), on
bundled scikit-learn data."""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_diabetes, load_digits, load_wine
from sklearn.preprocessing import MaxAbsScaler as SkMaxAbsScaler

import flowlearn as fl
from flowlearn.linalg import SparseVector

fs = fl.feature


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes().data  # centered columns: mixed signs


@pytest.fixture(scope="module")
def wine():
    return load_wine().data


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


def dense_table(x, name="features"):
    return pa.table({name: fl.linalg.from_numpy(x), "id": np.arange(x.shape[0])})


def sparse_table(x, name="features"):
    return pa.table({name: fl.linalg.from_csr(sps.csr_matrix(x)), "id": np.arange(x.shape[0])})


def test_param_defaults_and_set():
    s = fs.MaxAbsScaler()
    assert s.get_params() == {"input_col": "input", "output_col": "output"}
    assert s.set(input_col="a", output_col="b").get_params() == {"input_col": "a", "output_col": "b"}
    with pytest.raises(ValueError, match="MaxAbsScaler: parameter 'output_col' must not be None"):
        fs.MaxAbsScaler(output_col=None)
    with pytest.raises(TypeError, match="MaxAbsScaler has no parameter 'with_mean'"):
        fs.MaxAbsScaler(with_mean=True)


@pytest.mark.parametrize("data", ["diabetes", "wine"])
def test_matches_sklearn_dense(request, data):
    x = request.getfixturevalue(data)
    t = dense_table(x)
    model = fs.MaxAbsScaler(input_col="features", output_col="s").fit(t)
    out = model.transform(t)
    sk = SkMaxAbsScaler().fit(x)
    np.testing.assert_allclose(fl.linalg.to_numpy(out.column("s")), sk.transform(x), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(model.get_model_data()[0].column("max_vector")[0].as_py(), sk.max_abs_)
    assert out.column_names == ["features", "id", "s"]
    assert out.schema.field("s").type == fl.linalg.dense_vector_type(x.shape[1])


def test_negative_maximum_and_zero_column():
    x = np.array([[-4.0, 0.0, 1.0], [2.0, 0.0, -3.0]])
    t = dense_table(x)
    y = fl.linalg.to_numpy(fs.MaxAbsScaler(input_col="features").fit(t).transform(t).column("output"))
    np.testing.assert_array_equal(y, [[-1.0, 0.0, 1 / 3], [0.5, 0.0, -1.0]])


def test_unseen_data(diabetes):
    model = fs.MaxAbsScaler(input_col="features").fit(dense_table(diabetes[:300]))
    y = fl.linalg.to_numpy(model.transform(dense_table(diabetes[300:])).column("output"))
    np.testing.assert_allclose(y, SkMaxAbsScaler().fit(diabetes[:300]).transform(diabetes[300:]), rtol=1e-15)


def test_sparse_stays_sparse_and_matches_sklearn(digits):
    x = sps.csr_matrix(digits)
    t = sparse_table(x)
    out = fs.MaxAbsScaler(input_col="features").fit(t).transform(t)
    assert fl.linalg.is_sparse(out.schema.field("output").type)
    y = fl.linalg.to_csr(out.column("output"))
    expected = SkMaxAbsScaler().fit(x).transform(x)  # scikit-learn keeps sparse input sparse too
    np.testing.assert_allclose(y.toarray(), expected.toarray(), rtol=1e-15)
    assert np.array_equal(y.indptr, x.indptr) and np.array_equal(y.indices, x.indices)


def test_sparse_and_dense_fit_agree(digits):
    a = fs.MaxAbsScaler(input_col="features").fit(sparse_table(-digits)).get_model_data()[0]
    b = fs.MaxAbsScaler(input_col="features").fit(dense_table(-digits)).get_model_data()[0]
    assert a.equals(b)
    np.testing.assert_array_equal(a.column("max_vector")[0].as_py(), np.abs(digits).max(axis=0))


def test_get_set_model_data(wine):
    t = dense_table(wine)
    model = fs.MaxAbsScaler(input_col="features").fit(t)
    (md,) = model.get_model_data()
    assert md.column_names == ["max_vector"] and md.num_rows == 1
    assert fs.MaxAbsScalerModel(input_col="features").set_model_data(md).transform(t).equals(model.transform(t))
    with pytest.raises(ValueError, match="'max_vector' has a negative entry at index 0"):
        fs.MaxAbsScalerModel().set_model_data({"max_vector": [[-1.0]]})
    with pytest.raises(ValueError, match="model data is one table"):
        fs.MaxAbsScalerModel().set_model_data(md, md)


def test_empty_input(wine):
    model = fs.MaxAbsScaler(input_col="features").fit(dense_table(wine))
    out = model.transform(dense_table(wine[:0]))
    assert out.num_rows == 0 and out.schema.field("output").type == fl.linalg.dense_vector_type(13)
    out_sp = model.transform(sparse_table(wine[:0]))
    assert out_sp.num_rows == 0 and fl.linalg.is_sparse(out_sp.schema.field("output").type)
    with pytest.raises(ValueError, match="MaxAbsScaler: fit needs at least one row"):
        fs.MaxAbsScaler(input_col="features").fit(sparse_table(wine[:0]))


def test_bad_input(wine):
    t = dense_table(wine)
    with pytest.raises(TypeError, match="MaxAbsScaler: column 'id' has type int64, expected a vector column"):
        fs.MaxAbsScaler(input_col="id").fit(t)
    bad = wine.copy()
    bad[3, 3] = -np.inf
    with pytest.raises(ValueError, match="has NaN or infinity at row 3"):
        fs.MaxAbsScaler(input_col="features").fit(sparse_table(bad))
    model = fs.MaxAbsScaler(input_col="features").fit(t)
    with pytest.raises(ValueError, match="holds vectors of size 5, the model expects size 13"):
        model.transform(sparse_table(wine[:, :5]))


def test_row_kernel_equals_batch(diabetes, digits):
    model = fs.MaxAbsScaler(input_col="features", output_col="s").fit(dense_table(diabetes))
    batch = fl.linalg.to_numpy(model.transform(dense_table(diabetes)).column("s"))
    fn, pred = model.row_fn(), fl.LocalPredictor(model)
    for i in range(0, len(diabetes), 5):
        row = {"features": diabetes[i]}
        fn(row)
        assert np.array_equal(row["s"], batch[i])
        assert np.array_equal(pred.predict({"features": diabetes[i].tolist()})["s"], batch[i])
    sp = fs.MaxAbsScaler(input_col="features", output_col="s").fit(sparse_table(digits))
    m = sps.csr_matrix(digits[:100])
    batch = fl.linalg.to_csr(sp.transform(sparse_table(m)).column("s"))
    fn, pred = sp.row_fn(), fl.LocalPredictor(sp)
    for i in range(100):
        v = SparseVector(64, m[i].indices, m[i].data)
        expected = SparseVector(64, batch[i].indices, batch[i].data)
        row = {"features": v}
        fn(row)
        assert row["s"] == expected and pred.predict({"features": v})["s"] == expected
    with pytest.raises(ValueError, match="size 3, the model expects size 64"):
        fn({"features": SparseVector(3, [0], [1.0])})
