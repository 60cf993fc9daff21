"""StandardScaler / StandardScalerModel against scikit-learn (corrected to the sample std, ddof=1)
and NumPy closed forms, on bundled scikit-learn data."""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_diabetes, load_digits, load_wine
from sklearn.preprocessing import StandardScaler as SkStandardScaler

import flowlearn as fl
from flowlearn.linalg import SparseVector

fs = fl.feature


@pytest.fixture(scope="module")
def wine():
    return load_wine().data


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes().data


@pytest.fixture(scope="module")
def digits():
    return load_digits().data  # 64 pixel columns, many zeros, some columns all zero


def dense_table(x, name="features"):
    return pa.table({name: fl.linalg.from_numpy(x), "id": np.arange(x.shape[0])})


def sparse_table(x, name="features"):
    return pa.table({name: fl.linalg.from_csr(sps.csr_matrix(x)), "id": np.arange(x.shape[0])})


def sk_expected(x, with_mean, with_std):
    """scikit-learn's StandardScaler uses the population std (ddof=0); Flink ML the sample std."""
    n = x.shape[0]
    sk = SkStandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    out = sk.transform(x)
    if with_std:
        out = out * np.sqrt((n - 1) / n)
    return out, sk


def column_numpy(t, name):
    return fl.linalg.to_numpy(t.column(name))


# ---------------------------------------------------------------------------------------- params


def test_param_defaults_and_set():
    s = fs.StandardScaler()
    assert s.get_params() == {"input_col": "input", "output_col": "output", "with_mean": False, "with_std": True}
    s.set(input_col="f", with_mean=True)
    assert s.input_col == "f" and s.with_mean is True
    s2 = fs.StandardScaler(with_std=False, output_col="o")
    assert (s2.with_std, s2.output_col) == (False, "o")


# ----------------------------------------------------------------------------- fit / transform


@pytest.mark.parametrize("with_mean,with_std", [(False, True), (True, True), (True, False), (False, False)])
@pytest.mark.parametrize("data", ["wine", "diabetes"])
def test_matches_sklearn_ddof1(request, data, with_mean, with_std):
    x = request.getfixturevalue(data)
    t = dense_table(x)
    model = fs.StandardScaler(input_col="features", output_col="scaled", with_mean=with_mean,
                              with_std=with_std).fit(t)
    out = model.transform(t)
    expected, _ = sk_expected(x, with_mean, with_std)
    np.testing.assert_allclose(column_numpy(out, "scaled"), expected, rtol=1e-10, atol=1e-12)
    (md,) = model.get_model_data()
    np.testing.assert_allclose(np.asarray(md.column("mean")[0].as_py()), x.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(md.column("std")[0].as_py()), np.std(x, axis=0, ddof=1), rtol=1e-10)


def test_scaled_columns_have_unit_sample_std(wine):
    t = dense_table(wine)
    y = column_numpy(fs.StandardScaler(input_col="features", with_mean=True).fit(t).transform(t), "output")
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0, ddof=1), 1.0, rtol=1e-12)


def test_new_data_uses_fitted_statistics(wine):
    train, test = wine[:120], wine[120:]
    model = fs.StandardScaler(input_col="features", with_mean=True).fit(dense_table(train))
    expected = (test - train.mean(axis=0)) / train.std(axis=0, ddof=1)
    np.testing.assert_allclose(column_numpy(model.transform(dense_table(test)), "output"), expected, rtol=1e-10)


@pytest.mark.parametrize("with_mean", [False, True])
def test_zero_std_column_scales_to_zero(wine, with_mean):
    # Flink ML: a dimension with std 0 is multiplied by 0 (scikit-learn would leave it as is).
    x = np.column_stack([wine[:, :3], np.full(len(wine), 7.5)])
    t = dense_table(x)
    y = column_numpy(fs.StandardScaler(input_col="features", with_mean=with_mean).fit(t).transform(t), "output")
    assert np.all(y[:, 3] == 0.0)
    expected, _ = sk_expected(x[:, :3], with_mean, True)
    np.testing.assert_allclose(y[:, :3], expected, rtol=1e-10, atol=1e-12)


def test_single_row_has_zero_std():
    model = fs.StandardScaler(input_col="v").fit({"v": [[3.0, -1.0]]})
    (md,) = model.get_model_data()
    assert md.column("std")[0].as_py() == [0.0, 0.0]
    assert model.transform({"v": [[5.0, 2.0]]}).column("output").to_pylist() == [[0.0, 0.0]]


def test_variable_length_list_input_is_accepted():
    t = pa.table({"v": pa.array([[1.0, 2.0], [3.0, 6.0]], type=pa.list_(pa.float64()))})
    out = fs.StandardScaler(input_col="v", with_mean=True).fit(t).transform(t)
    s = np.sqrt(2.0)  # sample std of (1, 3) is sqrt(2); of (2, 6) is 2 * sqrt(2)
    np.testing.assert_allclose(out.column("output").to_pylist(), [[-1 / s, -2 / (2 * s)], [1 / s, 2 / (2 * s)]])


def test_output_schema_and_replacement(wine):
    t = dense_table(wine)
    out = fs.StandardScaler(input_col="features", output_col="scaled").fit(t).transform(t)
    assert out.column_names == ["features", "id", "scaled"]
    assert out.schema.field("scaled").type == fl.linalg.dense_vector_type(13)
    assert out.column("id").equals(t.column("id"))
    same = fs.StandardScaler(input_col="features", output_col="features").fit(t).transform(t)
    assert same.column_names == ["features", "id"]
    np.testing.assert_allclose(column_numpy(same, "features"), column_numpy(out, "scaled"))


# ------------------------------------------------------------------------------------ sparse


def test_sparse_without_mean_stays_sparse(digits):
    x = sps.csr_matrix(digits)
    t = sparse_table(x)
    out = fs.StandardScaler(input_col="features").fit(t).transform(t)
    assert fl.linalg.is_sparse(out.schema.field("output").type)
    y = fl.linalg.to_csr(out.column("output"))
    n = x.shape[0]
    sk = SkStandardScaler(with_mean=False).fit(x)  # scikit-learn accepts sparse input without centering
    expected = sk.transform(x) * np.sqrt((n - 1) / n)
    np.testing.assert_allclose(y.toarray(), expected.toarray(), rtol=1e-10, atol=1e-12)
    assert np.array_equal(y.indptr, x.indptr) and np.array_equal(y.indices, x.indices)  # pattern kept


def test_sparse_with_mean_densifies(digits):
    t = sparse_table(digits)
    out = fs.StandardScaler(input_col="features", with_mean=True).fit(t).transform(t)
    assert out.schema.field("output").type == fl.linalg.dense_vector_type(64)
    expected, _ = sk_expected(digits, True, True)
    expected[:, digits.std(axis=0) == 0] = 0.0  # zero-std pixels scale to 0 (Flink ML)
    np.testing.assert_allclose(column_numpy(out, "output"), expected, rtol=1e-9, atol=1e-12)


def test_sparse_and_dense_fit_agree(digits):
    a = fs.StandardScaler(input_col="features").fit(sparse_table(digits)).get_model_data()[0]
    b = fs.StandardScaler(input_col="features").fit(dense_table(digits)).get_model_data()[0]
    for c in ("mean", "std"):
        np.testing.assert_allclose(a.column(c)[0].as_py(), b.column(c)[0].as_py(), rtol=1e-10, atol=1e-14)
    # and both equal NumPy's statistics (implicit zeros count as values)
    np.testing.assert_allclose(a.column("mean")[0].as_py(), digits.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.column("std")[0].as_py(), digits.std(axis=0, ddof=1), rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------- persistence / model data


def test_get_set_model_data(wine):
    t = dense_table(wine)
    model = fs.StandardScaler(input_col="features", with_mean=True).fit(t)
    (md,) = model.get_model_data()
    assert md.num_rows == 1 and md.column_names == ["mean", "std"]
    assert md.schema.field("mean").type == fl.linalg.dense_vector_type(13)
    other = fs.StandardScalerModel(input_col="features", with_mean=True).set_model_data(*model.get_model_data())
    assert other.transform(t).equals(model.transform(t))
    hand = fs.StandardScalerModel(input_col="v", with_mean=True).set_model_data(
        {"mean": [[1.0, 2.0]], "std": [[2.0, 4.0]]})
    assert hand.transform({"v": [[5.0, 10.0]]}).column("output").to_pylist() == [[2.0, 2.0]]


def test_bad_model_data():
    with pytest.raises(ValueError, match=r"model data has no column\(s\) \['std'\]"):
        fs.StandardScalerModel().set_model_data({"mean": [[1.0]]})
    with pytest.raises(ValueError, match="exactly one row"):
        fs.StandardScalerModel().set_model_data({"mean": [[1.0], [2.0]], "std": [[1.0], [1.0]]})
    with pytest.raises(ValueError, match="different sizes"):
        fs.StandardScalerModel().set_model_data({"mean": [[1.0, 2.0]], "std": [[1.0]]})
    with pytest.raises(ValueError, match="'std' has a negative entry at index 1"):
        fs.StandardScalerModel().set_model_data({"mean": [[1.0, 2.0]], "std": [[1.0, -1.0]]})
    with pytest.raises(ValueError, match="model data has not been set"):
        fs.StandardScalerModel().transform({"input": [[1.0]]})
    with pytest.raises(ValueError, match="model data has not been set"):
        fs.StandardScalerModel().row_fn()


# ----------------------------------------------------------------------------- empty / bad input


def test_empty_input(wine):
    model = fs.StandardScaler(input_col="features").fit(dense_table(wine))
    empty = dense_table(wine[:0])
    out = model.transform(empty)
    assert out.num_rows == 0 and out.schema.field("output").type == fl.linalg.dense_vector_type(13)
    out_sp = model.transform(sparse_table(wine[:0]))
    assert out_sp.num_rows == 0 and out_sp.column_names == ["features", "id", "output"]
    assert fl.linalg.is_sparse(out_sp.schema.field("output").type)  # with_mean=False keeps sparse input sparse
    with pytest.raises(ValueError, match="StandardScaler: fit needs at least one row"):
        fs.StandardScaler(input_col="features").fit(empty)


def test_bad_input(wine):
    t = dense_table(wine)
    with pytest.raises(ValueError, match=r"StandardScaler: input column 'x' \(parameter 'input_col'\) is missing"):
        fs.StandardScaler(input_col="x").fit(t)
    with pytest.raises(TypeError, match="column 'id' has type int64, expected a vector column"):
        fs.StandardScaler(input_col="id").fit(t)
    bad = wine.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="StandardScaler: column 'features' has NaN or infinity at row 5"):
        fs.StandardScaler(input_col="features").fit(dense_table(bad))
    model = fs.StandardScaler(input_col="features").fit(t)
    with pytest.raises(ValueError, match="StandardScalerModel: column 'features' has NaN or infinity at row 5"):
        model.transform(dense_table(bad))
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 13"):
        model.transform(dense_table(wine[:, :3]))
    with pytest.raises(TypeError, match="takes exactly one input table"):
        model.transform(t, t)


# ----------------------------------------------------------------------------------- row kernel


def rows_dense(x):
    return [{"features": r.copy(), "id": i} for i, r in enumerate(x)]


def rows_sparse(x):
    m = sps.csr_matrix(x)
    return [{"features": SparseVector(m.shape[1], m[i].indices, m[i].data), "id": i} for i in range(m.shape[0])]


def assert_row_equals_batch(model, rows, table):
    batch = model.transform(table).column(model.output_col)
    expected_dense = not fl.linalg.is_sparse(batch.type)
    expected = fl.linalg.to_numpy(batch) if expected_dense else fl.linalg.to_csr(batch)
    fn = model.row_fn()
    pred = fl.LocalPredictor(model)
    for i, row in enumerate(rows):
        r = dict(row)
        fn(r)
        got = r[model.output_col]
        via_predictor = pred.predict(row)[model.output_col]
        if expected_dense:
            assert isinstance(got, np.ndarray) and np.array_equal(got, expected[i])
            assert np.array_equal(via_predictor, expected[i])
        else:
            exp = SparseVector(expected.shape[1], expected[i].indices, expected[i].data)
            assert got == exp and via_predictor == exp


@pytest.mark.parametrize("with_mean,with_std", [(False, True), (True, True), (True, False), (False, False)])
def test_row_kernel_equals_batch(wine, digits, with_mean, with_std):
    est = fs.StandardScaler(input_col="features", with_mean=with_mean, with_std=with_std)
    m = est.fit(dense_table(wine))
    assert_row_equals_batch(m, rows_dense(wine[:40]), dense_table(wine[:40]))
    ms = est.fit(sparse_table(digits))
    assert_row_equals_batch(ms, rows_sparse(digits[:40]), sparse_table(digits[:40]))


def test_row_kernel_accepts_lists_and_checks_input(wine):
    m = fs.StandardScaler(input_col="features", output_col="z", with_mean=True).fit(dense_table(wine))
    fn = m.row_fn()
    row = {"features": wine[0].tolist()}
    fn(row)
    np.testing.assert_array_equal(row["z"], fl.linalg.to_numpy(m.transform(dense_table(wine[:1])).column("z"))[0])
    with pytest.raises(ValueError, match="expects size 13"):
        fn({"features": [1.0, 2.0]})
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn({"features": [np.nan] * 13})
    with pytest.raises(ValueError, match="input column 'features' .* is missing from the row"):
        fn({"other": 1})
    with pytest.raises(ValueError, match="is null"):
        fn({"features": None})
