"""Imputer / ImputerModel against scikit-learn's SimpleImputer and closed forms (the Flink ML
median is the value of rank ceil(n/2)), on bundled scikit-learn data with injected gaps."""
import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.impute import SimpleImputer

import flowlearn as fl

fs = fl.feature


def with_gaps(x, frac, seed):
    """Copy of x with a fraction of entries set to NaN (never a whole column)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    x[rng.random(x.shape) < frac] = np.nan
    return x


def table_of(x, names, nulls=False):
    """A table with one double column per name; NaN becomes null when ``nulls``."""
    cols = {}
    for j, n in enumerate(names):
        v = x[:, j]
        cols[n] = pa.array(v, mask=np.isnan(v)) if nulls else pa.array(v)
    return pa.table(cols)


@pytest.fixture(scope="module")
def diabetes():
    d = load_diabetes()
    return with_gaps(d.data, 0.15, 0), [f"d{i}" for i in range(d.data.shape[1])]


@pytest.fixture(scope="module")
def iris():
    d = load_iris()  # one decimal digit: many ties, good for most_frequent
    return with_gaps(d.data, 0.2, 1), ["sl", "sw", "pl", "pw"]


def outputs(t, names):
    return np.column_stack([t.column(n).to_numpy() for n in names])


# ---------------------------------------------------------------------------------------- params


def test_param_defaults_and_set():
    imp = fs.Imputer(input_cols=["a"], output_cols=["b"])
    p = imp.get_params()
    assert p["strategy"] == "mean" and p["relative_error"] == 0.001 and math.isnan(p["missing_value"])
    assert p["input_cols"] == ["a"] and p["output_cols"] == ["b"]
    imp.set(strategy="median", missing_value=-1, relative_error=0.0)
    assert (imp.strategy, imp.missing_value, imp.relative_error) == ("median", -1.0, 0.0)
    assert "input_cols" not in fs.Imputer().get_params()  # required, no default


def test_bad_params():
    with pytest.raises(ValueError, match=r"Imputer: parameter 'strategy' = 'mode' violates in_array"):
        fs.Imputer(strategy="mode")
    with pytest.raises(ValueError, match=r"parameter 'relative_error' = 1.5 violates in_range\(0, 1\)"):
        fs.Imputer(relative_error=1.5)
    with pytest.raises(ValueError, match="parameter 'input_cols' = \\[\\] violates non_empty"):
        fs.Imputer(input_cols=[])
    with pytest.raises(ValueError, match="parameter 'missing_value' = 'NA' has type str, expected float"):
        fs.Imputer(missing_value="NA")
    with pytest.raises(ValueError, match="Imputer: parameter 'input_cols' is required and has not been set"):
        fs.Imputer().fit({"a": [1.0]})
    with pytest.raises(ValueError, match=r"'input_cols' \(2 columns: \['a', 'b'\]\) and 'output_cols' \(1 columns"):
        fs.Imputer(input_cols=["a", "b"], output_cols=["c"]).fit({"a": [1.0], "b": [2.0]})
    with pytest.raises(TypeError, match="ImputerModel has no parameter 'strategy'"):
        fs.ImputerModel(strategy="mean")


def test_model_params(diabetes):
    x, names = diabetes
    m = fs.Imputer(input_cols=names, output_cols=[n + "_o" for n in names], strategy="median",
                   missing_value=-9.0).fit(table_of(x, names))
    assert isinstance(m, fs.ImputerModel)
    assert set(m.get_params()) == {"input_cols", "output_cols", "missing_value"}
    assert m.missing_value == -9.0


# ----------------------------------------------------------------------------- fit / transform


@pytest.mark.parametrize("strategy", ["mean", "most_frequent"])
@pytest.mark.parametrize("nulls", [False, True])
@pytest.mark.parametrize("data", ["diabetes", "iris"])
def test_matches_simple_imputer(request, data, strategy, nulls):
    x, names = request.getfixturevalue(data)
    outs = [n + "_imp" for n in names]
    t = table_of(x, names, nulls=nulls)
    model = fs.Imputer(input_cols=names, output_cols=outs, strategy=strategy).fit(t)
    out = model.transform(t)
    expected = SimpleImputer(strategy=strategy).fit_transform(x)
    np.testing.assert_allclose(outputs(out, outs), expected, rtol=1e-13, atol=1e-15)
    assert all(out.schema.field(o).type == pa.float64() for o in outs)
    assert out.column_names == names + outs


def test_median_matches_simple_imputer_for_odd_counts(iris):
    # With an odd number of valid values the median is unique, so scikit-learn agrees.
    x, names = iris
    x = x.copy()
    for j in range(x.shape[1]):
        if (~np.isnan(x[:, j])).sum() % 2 == 0:
            x[np.flatnonzero(~np.isnan(x[:, j]))[0], j] = np.nan
    assert all((~np.isnan(x[:, j])).sum() % 2 == 1 for j in range(x.shape[1]))
    t = table_of(x, names)
    out = fs.Imputer(input_cols=names, output_cols=names, strategy="median").fit(t).transform(t)
    np.testing.assert_array_equal(outputs(out, names), SimpleImputer(strategy="median").fit_transform(x))


def test_median_even_count_is_lower_median(diabetes):
    x, names = diabetes
    x = x.copy()
    for j in range(x.shape[1]):
        if (~np.isnan(x[:, j])).sum() % 2 == 1:
            x[np.flatnonzero(~np.isnan(x[:, j]))[0], j] = np.nan
    t = table_of(x, names)
    (md,) = fs.Imputer(input_cols=names, output_cols=names, strategy="median").fit(t).get_model_data()
    got = dict(zip(md.column("column").to_pylist(), md.column("surrogate").to_pylist()))
    for j, n in enumerate(names):
        v = np.sort(x[~np.isnan(x[:, j]), j])
        k = math.ceil(0.5 * len(v))  # Flink ML QuantileSummary: the value of rank ceil(p * n)
        assert got[n] == v[k - 1]
        # so some occurrence of it has rank ceil(n/2): within any relative_error of the 0.5 quantile
        assert np.searchsorted(v, got[n], side="left") < k <= np.searchsorted(v, got[n], side="right")


def test_most_frequent_tie_goes_to_smallest():
    t = pa.table({"a": [3.0, 1.0, 3.0, 1.0, 2.0, None]})
    (md,) = fs.Imputer(input_cols=["a"], output_cols=["b"], strategy="most_frequent").fit(t).get_model_data()
    assert md.column("surrogate").to_pylist() == [1.0]
    sk = SimpleImputer(strategy="most_frequent").fit(np.array([[3.0], [1.0], [3.0], [1.0], [2.0], [np.nan]]))
    assert sk.statistics_.tolist() == [1.0]


def test_numeric_missing_value(diabetes):
    # missing_value = -1: it and nulls are imputed; NaN is excluded from the statistics but, as in
    # Flink ML and Spark, not replaced at transform (it is not the missing value).
    x, names = diabetes
    x = x[:, :3].copy()
    nan_mask = np.isnan(x)
    x[nan_mask] = -1.0
    x[0, 0] = np.nan
    t = table_of(x, names[:3])
    t = t.set_column(1, names[1], pa.array(np.where(x[:, 1] == -1.0, np.nan, x[:, 1]), mask=x[:, 1] == -1.0))
    model = fs.Imputer(input_cols=names[:3], output_cols=["a", "b", "c"], missing_value=-1.0).fit(t)
    out = model.transform(t)
    clean = x.copy()
    clean[0, 0] = -1.0  # for the oracle: the NaN row counts as missing in the statistics only
    expected = SimpleImputer(missing_values=-1.0, strategy="mean").fit_transform(clean)
    got = outputs(out, ["a", "b", "c"])
    assert math.isnan(got[0, 0])
    got[0, 0] = expected[0, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_integer_input_and_in_place_output():
    t = pa.table({"n": pa.array([1, None, 4, 4], pa.int64()), "m": pa.array([0, 2, 0, 0], pa.int32())})
    model = fs.Imputer(input_cols=["n", "m"], output_cols=["n", "m"], strategy="most_frequent",
                       missing_value=0).fit(t)
    out = model.transform(t)
    assert out.column_names == ["n", "m"]
    assert out.column("n").to_pylist() == [1.0, 4.0, 4.0, 4.0]
    assert out.column("m").to_pylist() == [2.0, 2.0, 2.0, 2.0]
    assert out.schema.field("n").type == pa.float64()


def test_swapped_output_columns_read_original_inputs():
    t = pa.table({"a": [1.0, np.nan, 3.0], "b": [10.0, 20.0, np.nan]})
    out = fs.Imputer(input_cols=["a", "b"], output_cols=["b", "a"]).fit(t).transform(t)
    assert out.column("b").to_pylist() == [1.0, 2.0, 3.0]
    assert out.column("a").to_pylist() == [10.0, 20.0, 15.0]


def test_chunked_input(diabetes):
    x, names = diabetes
    t = table_of(x, names)
    chunked = pa.concat_tables([t.slice(0, 100), t.slice(100, 200), t.slice(300)])
    a = fs.Imputer(input_cols=names, output_cols=names, strategy="median").fit(chunked)
    b = fs.Imputer(input_cols=names, output_cols=names, strategy="median").fit(t)
    assert a.get_model_data()[0].equals(b.get_model_data()[0])
    np.testing.assert_array_equal(outputs(a.transform(chunked), names), outputs(b.transform(t), names))


# ---------------------------------------------------------------------- persistence / model data


def test_get_set_model_data(iris):
    x, names = iris
    t = table_of(x, names)
    model = fs.Imputer(input_cols=names, output_cols=names).fit(t)
    (md,) = model.get_model_data()
    assert md.column_names == ["column", "surrogate"] and md.column("column").to_pylist() == names
    np.testing.assert_allclose(md.column("surrogate").to_numpy(), np.nanmean(x, axis=0), rtol=1e-13)
    other = fs.ImputerModel(input_cols=names, output_cols=names).set_model_data(md)
    assert other.transform(t).equals(model.transform(t))
    # a model may apply to a subset of its columns
    sub = fs.ImputerModel(input_cols=["pw"], output_cols=["out"]).set_model_data(md)
    assert sub.transform(t).column("out").to_pylist() == model.transform(t).column("pw").to_pylist()
    with pytest.raises(ValueError, match=r"ImputerModel: the model holds no surrogate for input column 'zz' "
                                         r"\(parameter 'input_cols'\); it was fitted on columns \['sl'"):
        fs.ImputerModel(input_cols=["zz"], output_cols=["o"]).set_model_data(md).transform({"zz": [1.0]})
    with pytest.raises(ValueError, match=r"model data has no column\(s\) \['surrogate'\]"):
        fs.ImputerModel().set_model_data({"column": ["a"]})
    with pytest.raises(ValueError, match="names a column twice"):
        fs.ImputerModel().set_model_data({"column": ["a", "a"], "surrogate": [1.0, 2.0]})


# ----------------------------------------------------------------------------- empty / bad input


def test_bad_input():
    with pytest.raises(ValueError, match=r"Imputer: column 'b' \(parameter 'input_cols'\) has no valid value: all "
                                         r"its values are null, NaN or missing_value=-1.0"):
        fs.Imputer(input_cols=["a", "b"], output_cols=["x", "y"], missing_value=-1.0).fit(
            {"a": [1.0, 2.0], "b": [None, -1.0]})
    with pytest.raises(ValueError, match="column 'b' .* has no valid value"):
        fs.Imputer(input_cols=["b"], output_cols=["y"]).fit({"b": [None, None]})
    with pytest.raises(ValueError, match=r"Imputer: input column 'c' \(parameter 'input_cols'\) is missing"):
        fs.Imputer(input_cols=["c"], output_cols=["y"]).fit({"a": [1.0]})
    with pytest.raises(TypeError, match="Imputer: column 's' has type string, expected a numeric column"):
        fs.Imputer(input_cols=["s"], output_cols=["y"]).fit({"s": ["a", "b"]})
    with pytest.raises(ValueError, match="Imputer: column 'a' has infinity at row 1"):
        fs.Imputer(input_cols=["a"], output_cols=["y"]).fit({"a": [1.0, np.inf]})


def test_vector_column_is_refused():
    # Imputer works on scalar columns (Flink ML); a vector column, dense or sparse, is a type error.
    t = pa.table({"v": fl.linalg.from_numpy(np.eye(2))})
    with pytest.raises(TypeError, match="Imputer: column 'v' has type fixed_size_list"):
        fs.Imputer(input_cols=["v"], output_cols=["o"]).fit(t)
    ts = pa.table({"v": fl.linalg.from_csr(np.eye(2))})
    with pytest.raises(TypeError, match="Imputer: column 'v' has type extension"):
        fs.Imputer(input_cols=["v"], output_cols=["o"]).fit(ts)


# ----------------------------------------------------------------------------------- row kernel


@pytest.mark.parametrize("missing_value", [float("nan"), -1.0])
def test_row_kernel_equals_batch(diabetes, missing_value):
    x, names = diabetes
    names = names[:4]
    x = x[:60, :4].copy()
    x[::7, 0] = -1.0
    t = table_of(x, names, nulls=False).set_column(1, names[1], pa.array(x[:, 1], mask=np.isnan(x[:, 1])))
    outs = ["o0", "o1", "o2", "o3"]
    model = fs.Imputer(input_cols=names, output_cols=outs, missing_value=missing_value).fit(t)
    batch = model.transform(t)
    fn, pred = model.row_fn(), fl.LocalPredictor(model)
    for i, row in enumerate(t.to_pylist()):
        r = dict(row)
        fn(r)
        p = pred.predict(row)
        for o in outs:
            b = batch.column(o)[i].as_py()
            assert (r[o] == b or (math.isnan(r[o]) and math.isnan(b))) and isinstance(r[o], float)
            assert p[o] == b or (math.isnan(p[o]) and math.isnan(b))


def test_row_kernel_bad_row():
    model = fs.Imputer(input_cols=["a"], output_cols=["b"]).fit({"a": [1.0, 3.0]})
    fn = model.row_fn()
    r = {"a": 5}
    fn(r)
    assert r["b"] == 5.0 and isinstance(r["b"], float)
    for missing in (None, float("nan"), np.nan):  # nulls and NaN (the default missing_value) get the mean 2.0
        r = {"a": missing}
        fn(r)
        assert r["b"] == 2.0
    with pytest.raises(ValueError, match="input column 'a' .* is missing from the row"):
        fn({"x": 1.0})
    with pytest.raises(TypeError, match="column 'a' holds str 'x', expected a number"):
        fn({"a": "x"})
