"""NaiveBayes / NaiveBayesModel: model_type 'categorical' (Flink ML's naive Bayes over categorical
values), 'multinomial' and 'gaussian' (Spark MLlib's definitions).

Oracles for 'multinomial' and 'gaussian': scikit-learn's MultinomialNB (feature_log_prob_, with
Spark's smoothed class prior given as class_prior, in closed form) on the digits pixel counts and
GaussianNB (theta_, var_, class_prior_) on iris and breast cancer. Oracles for 'categorical': Flink ML's published NaiveBayesTest vectors, scikit-learn's CategoricalNB configured
to the same definition (ordinal-encoded categories = the values seen in training, alpha =
smoothing, class prior = Flink ML's smoothed prior computed here in closed form) on the
digits data set (pixel intensities 0..16 are categorical values), and closed forms.
"""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.naive_bayes import CategoricalNB, GaussianNB, MultinomialNB
from sklearn.preprocessing import OrdinalEncoder

import flowlearn as fl
from flowlearn.classification import NaiveBayes, NaiveBayesModel

# Flink ML NaiveBayesTest
TRAIN = {"features": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], "label": [11, 10, 10]}
PREDICT = {"features": [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]}
EXPECTED = [11.0, 11.0, 10.0, 10.0]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float64), y.astype(np.float64)


def predictions(model, data):
    return model.transform(data).column(model.prediction_col).to_pylist()


def flink_prior(y, d, s):
    """Flink ML's class prior: (n_c * d + s) / (n * d + L * s)."""
    _, n_c = np.unique(y, return_counts=True)
    return (n_c * d + s) / (len(y) * d + len(n_c) * s)


def theta_dicts(model):
    """theta[c][j] as {value: log prob} dicts, read from the model data."""
    (row,) = model.get_model_data()[0].column("theta").to_pylist()
    return [[dict(m) for m in per_label] for per_label in row]


# --- params --------------------------------------------------------------------------------


def test_param_defaults_and_set():
    nb = NaiveBayes()
    assert (nb.features_col, nb.label_col, nb.prediction_col, nb.smoothing, nb.model_type) == (
        "features", "label", "prediction", 1.0, "categorical")
    nb.set(features_col="f", label_col="y", prediction_col="p", smoothing=2)
    assert (nb.features_col, nb.label_col, nb.prediction_col, nb.smoothing) == ("f", "y", "p", 2.0)
    m = NaiveBayesModel()
    assert (m.features_col, m.prediction_col, m.model_type) == ("features", "prediction", "categorical")
    assert "smoothing" not in m.get_params() and "label_col" not in m.get_params()


# --- fit / transform against oracles -------------------------------------------------------


def test_flink_ml_published_vectors():
    model = NaiveBayes(smoothing=1.0).fit(TRAIN)
    assert predictions(model, PREDICT) == EXPECTED


def test_flink_ml_published_model_data():
    model = NaiveBayes().fit({"features": [[1.0, 1.0], [2.0, 1.0]], "label": [11.0, 11.0]})
    t = model.get_model_data()[0]
    assert t.column("labels").to_pylist() == [[11.0]]
    assert t.column("pi_array").to_pylist()[0] == pytest.approx([0.0], abs=1e-12)
    theta = theta_dicts(model)
    assert theta[0][0][1.0] == pytest.approx(-0.6931471805599453)
    assert theta[0][0][2.0] == pytest.approx(-0.6931471805599453)
    assert theta[0][1][1.0] == pytest.approx(0.0, abs=1e-12)


def test_closed_form_small():
    # label 0: rows [0, 5], [0, 7]; label 1: row [1, 5]; s = 0.5. K_0 = 2 ({0, 1}), K_1 = 2 ({5, 7}).
    s = 0.5
    model = NaiveBayes(smoothing=s).fit({"features": [[0.0, 5.0], [0.0, 7.0], [1.0, 5.0]], "label": [0, 0, 1]})
    theta = theta_dicts(model)
    assert theta[0][0] == pytest.approx({0.0: np.log(2.5 / 3.0), 1.0: np.log(0.5 / 3.0)})
    assert theta[0][1] == pytest.approx({5.0: np.log(1.5 / 3.0), 7.0: np.log(1.5 / 3.0)})
    assert theta[1][0] == pytest.approx({0.0: np.log(0.5 / 2.0), 1.0: np.log(1.5 / 2.0)})
    assert theta[1][1] == pytest.approx({5.0: np.log(1.5 / 2.0), 7.0: np.log(0.5 / 2.0)})
    pi = model.get_model_data()[0].column("pi_array").to_pylist()[0]
    assert pi == pytest.approx(np.log([(2 * 2 + s) / (3 * 2 + 2 * s), (1 * 2 + s) / (3 * 2 + 2 * s)]))


@pytest.mark.parametrize("smoothing", [1.0, 0.3])
def test_matches_sklearn_categorical_nb_on_digits(digits, smoothing):
    x, y = digits
    model = NaiveBayes(smoothing=smoothing).fit({"features": x, "label": y})

    enc = OrdinalEncoder().fit(x)  # categories per feature = values seen in training (Flink ML's K_j)
    prior = flink_prior(y, x.shape[1], smoothing)
    oracle = CategoricalNB(alpha=smoothing, force_alpha=True, class_prior=prior).fit(enc.transform(x), y)

    assert predictions(model, {"features": x}) == oracle.predict(enc.transform(x)).tolist()
    theta = theta_dicts(model)
    for j, cats in enumerate(enc.categories_):
        for c in range(len(oracle.classes_)):
            ours = [theta[c][j][float(v)] for v in cats]
            np.testing.assert_allclose(ours, oracle.feature_log_prob_[j][c], rtol=1e-12)
            assert sorted(theta[c][j]) == sorted(cats.tolist())
    pi = model.get_model_data()[0].column("pi_array").to_pylist()[0]
    np.testing.assert_allclose(pi, oracle.class_log_prior_, rtol=1e-12)
    assert model.get_model_data()[0].column("labels").to_pylist()[0] == oracle.classes_.tolist()


def test_ties_go_to_first_label():
    # Both labels see the same rows, so they score the same -> the smaller label wins (Flink: strict >).
    model = NaiveBayes().fit({"features": [[0.0], [1.0], [0.0], [1.0]], "label": [3, 3, 2, 2]})
    assert predictions(model, {"features": [[0.0], [1.0]]}) == [2.0, 2.0]


def test_output_schema():
    model = NaiveBayes(features_col="f", label_col="y", prediction_col="p").fit(
        {"f": TRAIN["features"], "y": TRAIN["label"]})
    out = model.transform({"id": [1, 2, 3, 4], "f": PREDICT["features"], "p": ["x"] * 4})
    assert out.column_names == ["id", "f", "p"]  # an existing output column is replaced
    assert out.schema.field("p").type == pa.float64()
    assert out.column("p").to_pylist() == EXPECTED


# --- persistence and model data ------------------------------------------------------------


def test_get_set_model_data():
    a = NaiveBayes().fit(TRAIN)
    b = NaiveBayesModel().set_model_data(*a.get_model_data())
    assert predictions(b, PREDICT) == EXPECTED
    schema = a.get_model_data()[0].schema
    assert schema.names == ["theta", "pi_array", "labels"]
    assert schema.field("theta").type == pa.list_(pa.list_(pa.map_(pa.float64(), pa.float64())))
    assert schema.field("labels").type == fl.linalg.dense_vector_type(2)


def test_set_model_data_with_unordered_maps():
    # Flink ML's maps are unordered: reversing every map's entries must not change anything.
    a = NaiveBayes().fit(TRAIN)
    t = a.get_model_data()[0]
    (theta,) = t.column("theta").to_pylist()
    reversed_theta = [[list(reversed(m)) for m in per_label] for per_label in theta]
    typ = t.schema.field("theta").type
    t2 = t.set_column(0, "theta", pa.array([reversed_theta], type=typ))
    assert predictions(NaiveBayesModel().set_model_data(t2), PREDICT) == EXPECTED


def test_set_bad_model_data():
    with pytest.raises(ValueError, match="lacks columns"):
        NaiveBayesModel().set_model_data({"labels": [[1.0]]})
    t = NaiveBayes().fit(TRAIN).get_model_data()[0]
    with pytest.raises(ValueError, match="same feature values under every label"):
        theta = t.column("theta").to_pylist()[0]
        theta[1][0] = theta[1][0][:1]
        NaiveBayesModel().set_model_data(t.set_column(0, "theta", pa.array([theta], type=t.schema.field("theta").type)))
    with pytest.raises(ValueError, match="model data has not been set"):
        NaiveBayesModel().transform(PREDICT)


# --- sparse, empty and bad input -----------------------------------------------------------


def test_sparse_input_equals_dense(digits):
    x, y = digits
    xs = sps.csr_matrix(x)  # digits are ~50% zeros
    dense = NaiveBayes(smoothing=0.5).fit({"features": x, "label": y})
    sparse = NaiveBayes(smoothing=0.5).fit({"features": xs, "label": y})
    assert fl.linalg.is_sparse(fl.table({"features": xs}).schema.field("features").type)
    assert sparse.get_model_data()[0].equals(dense.get_model_data()[0])
    assert predictions(dense, {"features": xs}) == predictions(dense, {"features": x})


def test_sparse_input_with_unseen_implicit_zero():
    model = NaiveBayes().fit({"features": [[1.0, 0.0], [2.0, 3.0]], "label": [0, 1]})  # feature 0 never 0.0
    ok = sps.csr_matrix(np.array([[2.0, 0.0], [1.0, 3.0]]))
    assert predictions(model, {"features": ok}) == predictions(model, {"features": ok.toarray()})
    with pytest.raises(ValueError, match=r"row 1: feature 0 has value 0.0, which was not seen"):
        model.transform({"features": sps.csr_matrix(np.array([[2.0, 0.0], [0.0, 3.0]]))})


def test_unseen_value_raises():
    model = NaiveBayes().fit(TRAIN)
    with pytest.raises(ValueError, match=r"NaiveBayesModel: column 'features' row 1: feature 0 has value 2.0, "
                                         r"which was not seen for that feature during training \(seen values: "
                                         r"\[0.0, 1.0\]\)"):
        model.transform({"features": [[1.0, 1.0], [2.0, 1.0]]})


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"input column 'features' \(parameter 'features_col'\) is missing"):
        NaiveBayes().fit({"x": [[1.0]], "label": [1.0]})
    with pytest.raises(ValueError, match=r"non-integer label 0.5 at row 1; labels must be indexed numbers"):
        NaiveBayes().fit({"features": [[1.0], [2.0]], "label": [1.0, 0.5]})
    with pytest.raises(TypeError, match="column 'label' has type string, expected a numeric column"):
        NaiveBayes().fit({"features": [[1.0]], "label": ["a"]})
    with pytest.raises(ValueError, match="column 'features' has NaN or infinity at row 1"):
        NaiveBayes().fit({"features": [[1.0], [np.nan]], "label": [1.0, 0.0]})
    ragged = pa.table({"features": pa.array([[0.0, 0.0], [1.0]], pa.list_(pa.float64())), "label": [1.0, 0.0]})
    with pytest.raises(ValueError, match="vectors of different sizes"):
        NaiveBayes().fit(ragged)
    model = NaiveBayes().fit(TRAIN)
    with pytest.raises(ValueError, match="holds vectors of size 3, the model expects size 2"):
        model.transform({"features": [[0.0, 1.0, 1.0]]})
    with pytest.raises(TypeError, match="expected a vector column"):
        model.transform({"features": [1.0]})


def test_zero_smoothing_zero_probability_raises():
    model = NaiveBayes(smoothing=0.0).fit({"features": [[0.0, 0.0], [1.0, 1.0]], "label": [0, 1]})
    assert predictions(model, {"features": [[0.0, 0.0], [1.0, 1.0]]}) == [0.0, 1.0]
    with pytest.raises(ValueError, match="row 0 has zero probability under every label"):
        model.transform({"features": [[0.0, 1.0]]})


# --- row kernel ----------------------------------------------------------------------------


def test_row_fn_equals_batch(digits):
    x, y = digits
    model = NaiveBayes(smoothing=0.5).fit({"features": x[::2], "label": y[::2]})
    seen = x[1::2][(x[1::2][:, None, :] == x[::2][None, :, :]).any(axis=1).all(axis=1)][:200]  # seen values only
    assert len(seen) >= 100  # enough rows that the comparisons below are not vacuous
    batch = predictions(model, {"features": seen})
    assert len(set(batch)) >= 5
    p = fl.LocalPredictor(model)
    assert [p.predict({"features": v})["prediction"] for v in seen] == batch
    assert [p.predict({"features": list(v)})["prediction"] for v in seen[:20]] == batch[:20]
    fn = model.row_fn()
    sv = seen[0]
    row = {"features": fl.linalg.SparseVector(64, np.flatnonzero(sv), sv[sv != 0])}
    fn(row)
    assert row["prediction"] == batch[0]


def test_row_fn_errors():
    fn = NaiveBayes().fit(TRAIN).row_fn()
    with pytest.raises(ValueError, match=r"row 0: feature 1 has value 5.0, which was not seen"):
        fn({"features": [0.0, 5.0]})
    with pytest.raises(ValueError, match="expects size 2"):
        fn({"features": [0.0]})


# --- model_type='multinomial' and 'gaussian' (Spark MLlib) ----------------------------------


def dense_model(model):
    t = model.get_model_data()[0]
    get = lambda c: np.array(t.column(c).to_pylist())  # noqa: E731
    return get("label"), get("pi"), get("theta"), (get("sigma") if "sigma" in t.column_names else None)


@pytest.mark.parametrize("smoothing", [1.0, 0.25])
def test_multinomial_matches_sklearn_multinomial_nb_on_digits(digits, smoothing):
    x, y = digits
    model = NaiveBayes(model_type="multinomial", smoothing=smoothing).fit({"features": x, "label": y})
    _, n_c = np.unique(y, return_counts=True)
    spark_prior = (n_c + smoothing) / (len(y) + len(n_c) * smoothing)   # Spark: log(n_c + s) - log(n + L s)
    oracle = MultinomialNB(alpha=smoothing, force_alpha=True, class_prior=spark_prior).fit(x, y)
    labels, pi, theta, sigma = dense_model(model)
    assert sigma is None and labels.tolist() == oracle.classes_.tolist()
    np.testing.assert_allclose(theta, oracle.feature_log_prob_, rtol=1e-12)
    np.testing.assert_allclose(pi, oracle.class_log_prior_, rtol=1e-12)
    assert predictions(model, {"features": x}) == oracle.predict(x).tolist()
    # sparse input: same model, same predictions
    sp = fl.table({"features": fl.linalg.from_csr(sps.csr_matrix(x)), "label": y})
    sparse_model = NaiveBayes(model_type="multinomial", smoothing=smoothing).fit(sp)
    np.testing.assert_allclose(dense_model(sparse_model)[2], theta, rtol=1e-12)
    assert predictions(sparse_model, sp) == oracle.predict(x).tolist()


@pytest.mark.parametrize("load", [load_iris, load_breast_cancer])
def test_gaussian_matches_sklearn_gaussian_nb(load):
    x, y = load(return_X_y=True)
    y = y.astype(np.float64)
    model = NaiveBayes(model_type="gaussian").fit({"features": x, "label": y})
    oracle = GaussianNB().fit(x, y)
    labels, pi, theta, sigma = dense_model(model)
    np.testing.assert_allclose(theta, oracle.theta_, rtol=1e-12)
    np.testing.assert_allclose(sigma, oracle.var_, rtol=1e-10)
    np.testing.assert_allclose(pi, np.log(oracle.class_prior_), rtol=1e-12)
    assert predictions(model, {"features": x}) == oracle.predict(x).tolist()
    shifted = x[::7] * 1.1 + 0.3      # real values never seen in training are fine for Gaussian
    assert predictions(model, {"features": shifted}) == oracle.predict(shifted).tolist()


@pytest.mark.parametrize("model_type", ["multinomial", "gaussian"])
def test_fit_over_parts_save_load_and_row_kernel(tmp_path, digits, model_type):
    x, y = digits
    t = fl.table({"features": x, "label": y})
    est = NaiveBayes(model_type=model_type, smoothing=0.5)
    whole = est.fit(t)
    parts = [t.slice(0, 700), t.slice(700, 1), t.slice(701, 0), t.slice(701)]
    merged = est.finish(est.merge([est.partial(p) for p in parts]))
    for a, b in zip(dense_model(whole), dense_model(merged)):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    whole.save(str(tmp_path / "nb"))
    loaded = fl.load(str(tmp_path / "nb"))
    assert loaded.model_type == model_type
    batch = predictions(whole, t)
    assert predictions(loaded, t) == batch
    fn = loaded.row_fn()
    rows = [{"features": x[i]} for i in range(0, len(x), 37)]
    for r in rows:
        fn(r)
    assert [r["prediction"] for r in rows] == batch[::37]


def test_multinomial_refuses_negative_values_and_gaussian_takes_them():
    t = {"features": [[1.0, 2.0], [0.0, -3.0]], "label": [0, 1]}
    with pytest.raises(ValueError, match=r"NaiveBayes: column 'features' \(parameter 'features_col'\) has the negative "
                                         r"value -3.0 at row 1, index 1; model_type='multinomial' needs non-negative"):
        NaiveBayes(model_type="multinomial").fit(t)
    model = NaiveBayes(model_type="multinomial").fit({"features": [[1.0, 2.0], [3.0, 0.0]], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"NaiveBayesModel: column 'features' .* negative value -1.0 at row 0, index 0"):
        model.transform({"features": [[-1.0, 0.0]]})
    assert predictions(NaiveBayes(model_type="gaussian").fit(t), {"features": [[1.0, 2.0], [0.1, -2.5]]}) == [0.0, 1.0]


def test_model_data_of_another_model_type_is_refused(digits):
    x, y = digits
    cat = NaiveBayes().fit({"features": x[:50], "label": y[:50]})
    with pytest.raises(ValueError, match=r"NaiveBayesModel: model data of model_type='gaussian' lacks columns "
                                         r"\['label', 'pi', 'sigma'\]"):
        NaiveBayesModel(model_type="gaussian").set_model_data(*cat.get_model_data())
    with pytest.raises(ValueError, match=r"NaiveBayes: a fit state has schema"):
        NaiveBayes(model_type="gaussian").finish(NaiveBayes().partial({"features": x[:5], "label": y[:5]}))
    with pytest.raises(ValueError, match="NaiveBayes: fit needs at least one row"):
        NaiveBayes(model_type="gaussian").fit({"features": pa.array([], fl.linalg.dense_vector_type(2)),
                                               "label": pa.array([], pa.float64())})
