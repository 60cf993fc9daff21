"""MinMaxScaler / MinMaxScalerModel against scikit-learn's MinMaxScaler and closed forms, on
bundled scikit-learn data."""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.preprocessing import MinMaxScaler as SkMinMaxScaler

import flowlearn as fl
from flowlearn.linalg import SparseVector

fs = fl.feature


@pytest.fixture(scope="module")
def wine():
    return load_wine().data


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


def dense_table(x, name="features"):
    return pa.table({name: fl.linalg.from_numpy(x), "id": np.arange(x.shape[0])})


def sparse_table(x, name="features"):
    return pa.table({name: fl.linalg.from_csr(sps.csr_matrix(x)), "id": np.arange(x.shape[0])})


def col(t, name="output"):
    return fl.linalg.to_numpy(t.column(name))


# ---------------------------------------------------------------------------------------- params


def test_param_defaults_and_set():
    s = fs.MinMaxScaler()
    assert s.get_params() == {"input_col": "input", "output_col": "output", "min": 0.0, "max": 1.0}
    s.set(min=-1, max=1)
    assert (s.min, s.max) == (-1.0, 1.0) and isinstance(s.min, float)


def test_bad_params(iris):
    with pytest.raises(ValueError, match="MinMaxScaler: parameter 'min' = 'a' has type str, expected float"):
        fs.MinMaxScaler(min="a")
    with pytest.raises(ValueError, match="parameter 'max' must not be None"):
        fs.MinMaxScaler(max=None)
    with pytest.raises(TypeError, match="MinMaxScaler has no parameter 'lower'"):
        fs.MinMaxScaler(lower=0.0)
    t = dense_table(iris)
    for lo, hi in [(1.0, 1.0), (2.0, 1.0), (0.0, float("inf")), (float("nan"), 1.0)]:
        with pytest.raises(ValueError, match=r"MinMaxScaler: parameter 'min' = .* must be less than parameter 'max'"):
            fs.MinMaxScaler(input_col="features", min=lo, max=hi).fit(t)
    model = fs.MinMaxScaler(input_col="features").fit(t)
    model.set(min=5.0, max=-5.0)  # checked again at transform, on the model
    with pytest.raises(ValueError, match=r"MinMaxScalerModel: parameter 'min' = 5.0 must be less than "
                                         r"parameter 'max' = -5.0"):
        model.transform(t)
    with pytest.raises(ValueError, match="must be less than"):
        model.row_fn()


# ----------------------------------------------------------------------------- fit / transform


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 1.0), (2.5, 10.0)])
@pytest.mark.parametrize("data", ["wine", "iris"])
def test_matches_sklearn(request, data, lo, hi):
    x = request.getfixturevalue(data)
    t = dense_table(x)
    model = fs.MinMaxScaler(input_col="features", output_col="mm", min=lo, max=hi).fit(t)
    sk = SkMinMaxScaler(feature_range=(lo, hi)).fit(x)
    np.testing.assert_allclose(col(model.transform(t), "mm"), sk.transform(x), rtol=1e-12, atol=1e-12)
    (md,) = model.get_model_data()
    np.testing.assert_array_equal(md.column("min_vector")[0].as_py(), sk.data_min_)
    np.testing.assert_array_equal(md.column("max_vector")[0].as_py(), sk.data_max_)


def test_unseen_data_is_not_clipped(wine):
    train, test = wine[:100], wine[100:]
    model = fs.MinMaxScaler(input_col="features").fit(dense_table(train))
    y = col(model.transform(dense_table(test)))
    expected = SkMinMaxScaler(clip=False).fit(train).transform(test)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert (y < 0).any() or (y > 1).any()


def test_min_max_set_on_model_after_fit(iris):
    t = dense_table(iris)
    model = fs.MinMaxScaler(input_col="features").fit(t).set(min=-3.0, max=3.0)
    expected = SkMinMaxScaler(feature_range=(-3, 3)).fit_transform(iris)
    np.testing.assert_allclose(col(model.transform(t)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-4.0, 2.0)])
def test_constant_column_maps_to_midpoint(iris, lo, hi):
    # Flink ML maps a constant dimension to (min + max) / 2; scikit-learn would give min.
    x = np.column_stack([iris[:, :2], np.full(len(iris), 3.25), np.zeros(len(iris))])
    t = dense_table(x)
    y = col(fs.MinMaxScaler(input_col="features", min=lo, max=hi).fit(t).transform(t))
    assert np.all(y[:, 2:] == (lo + hi) / 2)
    expected = SkMinMaxScaler(feature_range=(lo, hi)).fit_transform(x[:, :2])
    np.testing.assert_allclose(y[:, :2], expected, rtol=1e-12, atol=1e-12)


def test_small_but_nonconstant_range_is_scaled():
    # Flink ML's absolute 1e-5 threshold would flatten this column; its range is real.
    x = np.array([[1e-9], [2e-9], [3e-9]])
    t = dense_table(x)
    np.testing.assert_allclose(col(fs.MinMaxScaler(input_col="features").fit(t).transform(t)).ravel(),
                               [0.0, 0.5, 1.0], atol=1e-12)


def test_output_schema(wine):
    t = dense_table(wine)
    out = fs.MinMaxScaler(input_col="features", output_col="mm").fit(t).transform(t)
    assert out.column_names == ["features", "id", "mm"]
    assert out.schema.field("mm").type == fl.linalg.dense_vector_type(13)
    same = fs.MinMaxScaler(input_col="features", output_col="features").fit(t).transform(t)
    assert same.column_names == ["features", "id"]


# ------------------------------------------------------------------------------------ sparse


def test_sparse_input_gives_dense_output(digits):
    # The implicit zeros of sparse vectors take part in min and max; every entry shifts, so the
    # output is dense. digits has all-zero pixel columns, which are constant.
    t = sparse_table(digits)
    out = fs.MinMaxScaler(input_col="features").fit(t).transform(t)
    assert out.schema.field("output").type == fl.linalg.dense_vector_type(64)
    y = col(out)
    const = digits.max(axis=0) == digits.min(axis=0)
    assert const.any()
    assert np.all(y[:, const] == 0.5)
    expected = SkMinMaxScaler().fit_transform(digits)
    np.testing.assert_allclose(y[:, ~const], expected[:, ~const], rtol=1e-12, atol=1e-12)


def test_sparse_implicit_zero_counts_in_min():
    t = pa.table({"v": fl.linalg.vectors_to_array([SparseVector(2, [0], [4.0]), SparseVector(2, [0, 1], [2.0, 6.0])])})
    model = fs.MinMaxScaler(input_col="v").fit(t)
    (md,) = model.get_model_data()
    assert md.column("min_vector")[0].as_py() == [2.0, 0.0]
    assert md.column("max_vector")[0].as_py() == [4.0, 6.0]


# ---------------------------------------------------------------------- persistence / model data


def test_get_set_model_data(iris):
    t = dense_table(iris)
    model = fs.MinMaxScaler(input_col="features").fit(t)
    (md,) = model.get_model_data()
    assert md.num_rows == 1 and md.column_names == ["min_vector", "max_vector"]
    other = fs.MinMaxScalerModel(input_col="features").set_model_data(md)
    assert other.transform(t).equals(model.transform(t))
    hand = fs.MinMaxScalerModel(input_col="v").set_model_data({"min_vector": [[0.0]], "max_vector": [[8.0]]})
    assert hand.transform({"v": [[2.0]]}).column("output").to_pylist() == [[0.25]]
    with pytest.raises(ValueError, match=r"min_vector\[0\] = 3.0 greater than max_vector\[0\] = 1.0"):
        fs.MinMaxScalerModel().set_model_data({"min_vector": [[3.0]], "max_vector": [[1.0]]})
    with pytest.raises(ValueError, match=r"model data has no column\(s\) \['max_vector'\]"):
        fs.MinMaxScalerModel().set_model_data({"min_vector": [[3.0]]})


# ----------------------------------------------------------------------------- empty / bad input


def test_empty_input(iris):
    model = fs.MinMaxScaler(input_col="features").fit(dense_table(iris))
    out = model.transform(dense_table(iris[:0]))
    assert out.num_rows == 0 and out.schema.field("output").type == fl.linalg.dense_vector_type(4)
    out_sp = model.transform(sparse_table(iris[:0]))
    assert out_sp.num_rows == 0 and out_sp.column_names == ["features", "id", "output"]
    assert out_sp.schema.field("output").type == fl.linalg.dense_vector_type(4)  # sparse input -> dense output
    with pytest.raises(ValueError, match="MinMaxScaler: fit needs at least one row"):
        fs.MinMaxScaler(input_col="features").fit(dense_table(iris[:0]))


def test_bad_input(iris):
    t = dense_table(iris)
    with pytest.raises(ValueError, match=r"MinMaxScaler: input column 'input' \(parameter 'input_col'\) is missing"):
        fs.MinMaxScaler().fit(t)
    bad = iris.copy()
    bad[7, 0] = np.inf
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 7"):
        fs.MinMaxScaler(input_col="features").fit(dense_table(bad))
    model = fs.MinMaxScaler(input_col="features").fit(t)
    with pytest.raises(ValueError, match="MinMaxScalerModel: column 'features' has NaN or infinity at row 7"):
        model.transform(dense_table(bad))
    with pytest.raises(ValueError, match="holds vectors of size 2, the model expects size 4"):
        model.transform(dense_table(iris[:, :2]))


# ----------------------------------------------------------------------------------- row kernel


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 3.0)])
def test_row_kernel_equals_batch(iris, digits, lo, hi):
    model = fs.MinMaxScaler(input_col="features", output_col="mm", min=lo, max=hi).fit(dense_table(iris))
    batch = col(model.transform(dense_table(iris)), "mm")
    fn = model.row_fn()
    pred = fl.LocalPredictor(model)
    for i in range(0, len(iris), 3):
        row = {"features": iris[i].tolist() if i % 2 else iris[i]}
        fn(row)
        assert isinstance(row["mm"], np.ndarray) and np.array_equal(row["mm"], batch[i])
        assert np.array_equal(pred.predict({"features": iris[i]})["mm"], batch[i])
    sp = fs.MinMaxScaler(input_col="features", output_col="mm", min=lo, max=hi).fit(sparse_table(digits[:200]))
    batch = col(sp.transform(sparse_table(digits[:200])), "mm")
    fn = sp.row_fn()
    m = sps.csr_matrix(digits[:200])
    for i in range(0, 200, 7):
        row = {"features": SparseVector(64, m[i].indices, m[i].data)}
        fn(row)
        assert np.array_equal(row["mm"], batch[i])


def test_row_kernel_bad_row(iris):
    fn = fs.MinMaxScaler(input_col="features").fit(dense_table(iris)).row_fn()
    with pytest.raises(ValueError, match="expects size 4"):
        fn({"features": [1.0]})
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn({"features": [1.0, 2.0, np.nan, 3.0]})
