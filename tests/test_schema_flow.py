"""Declared schemas flow through tables, pipelines and stream plans (issue 11, items 2, 5, 6):
VectorAssembler sizes its inputs from the schema (no ``input_sizes`` by hand), feature names
(``city=Oslo``) reach a fitted pipeline's coefficients, stream plans are checked when built, and a
failed job's error surfaces once. Oracles: scikit-learn's bundled data and models, pandas' one-hot
encoding, NumPy's least squares."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression as SkLinearRegression

import flowlearn as fl
import flowlearn.engines  # noqa: F401 - the local engine for the stream plans below
import flowlearn.stream as fls
from flowlearn.builder import PipelineModel
from flowlearn.data.schema import SIZE_KEY, column_size, feature_names
from flowlearn.feature.assemblers import VectorAssembler
from flowlearn.linalg import SparseVector, to_csr, to_numpy

F = fl.feature


@pytest.fixture(scope="module")
def iris_table():
    d = load_iris(as_frame=True)
    df = d.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return pa.Table.from_pandas(df, preserve_index=False), d.data.to_numpy()


CITIES = ["Oslo", "Rome", "Lima", "Oslo", "Rome", "Oslo", "Kyiv", "Lima"]


def mixed(cities=CITIES):
    n = len(cities)
    return pa.table({"city": cities, "age": np.linspace(20.0, 60.0, n), "v": pa.array(
        [[float(i), float(-i)] for i in range(n)], pa.list_(pa.float64(), 2)), "label": (np.arange(n) % 2) * 1.0})


# ------------------------------------------------------------------------------------ VectorAssembler


def test_iris_kmeans_needs_no_input_sizes(iris_table):
    t, x = iris_table
    cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    pm = fl.Pipeline([VectorAssembler(input_cols=cols, output_col="features"),
                      fl.clustering.KMeans(k=3, seed=1)]).fit(t)
    out = pm.transform(t)
    np.testing.assert_array_equal(to_numpy(out.column("features")), x)
    assert pm.stages[0].input_sizes == [1, 1, 1, 1]       # bound to the schema it was fitted on
    assert pm.feature_names(t.schema) == cols
    assert len(set(out.column("prediction").to_pylist())) == 3


def test_diabetes_linear_regression_needs_no_input_sizes():
    d = load_diabetes(as_frame=True)
    t = pa.Table.from_pandas(d.frame, preserve_index=False)
    cols = list(d.data.columns)
    pm = fl.Pipeline([VectorAssembler(input_cols=cols, output_col="features"),
                      fl.regression.LinearRegression(solver="lbfgs", max_iter=500, tol=1e-12, label_col="target")]).fit(t)
    sk = SkLinearRegression().fit(d.data.to_numpy(), d.target.to_numpy())
    pairs = pm.coefficients(t.schema)
    assert [n for n, _ in pairs] == cols
    np.testing.assert_allclose([c for _, c in pairs], sk.coef_, rtol=1e-3, atol=0.5)


def test_string_indexer_one_hot_assembler_without_sizes_matches_pandas():
    train = mixed()
    pipe = fl.Pipeline([
        F.StringIndexer(input_cols=["city"], output_cols=["city_i"], string_order_type="alphabetAsc",
                        handle_invalid="keep"),
        F.OneHotEncoder(input_cols=["city_i"], output_cols=["city_v"], handle_invalid="keep", drop_last=True),
        VectorAssembler(input_cols=["city_v", "age", "v"], output_col="features"),
        fl.classification.LogisticRegression(max_iter=5),
    ])
    pm = pipe.fit(train)
    test = mixed(["Rome", "Paris", "Oslo", "Kyiv"])
    out = pm.transform(test)
    # oracle: pandas' one-hot columns of the fitted cities in alphabetical order; an unseen city is
    # the extra 'keep' category, which drop_last drops, so it encodes as zeros
    known = sorted(set(CITIES))
    seen = [c if c in known else None for c in test.column("city").to_pylist()]
    dummies = pd.get_dummies(pd.Categorical(seen, categories=known)).to_numpy(float)
    expected = np.hstack([dummies, test.column("age").to_numpy()[:, None], to_numpy(test.column("v"))])
    np.testing.assert_array_equal(to_csr(out.column("features")).toarray(), expected)
    names = [f"city={c}" for c in known] + ["age", "v[0]", "v[1]"]
    assert pm.feature_names(train.schema) == names
    # the coefficients pair with those names in the model's order (read from the model data)
    coef = to_numpy(pm.stages[-1].get_model_data()[0].column("coefficient"))[0]
    assert pm.coefficients(train.schema) == list(zip(names, coef.tolist()))
    # the same pipeline on a stream: the plan declares the size before running, results agree
    s = pm.transform(fls.from_table(test, batch_size=1))
    assert s.schema.field("features").metadata[SIZE_KEY] == str(len(names)).encode()
    assert column_size(s.schema.field("features")) == len(names)
    got = s.to_table()
    np.testing.assert_array_equal(to_csr(got.column("features")).toarray(), expected)
    # and one row at a time in a service
    pred = fl.LocalPredictor(pm)
    row = pred.predict({"city": "Paris", "age": 30.0, "v": [1.0, 2.0]})
    np.testing.assert_array_equal(row["features"].to_numpy(), [0, 0, 0, 0, 30.0, 1.0, 2.0])


def test_feature_hasher_and_scaler_names():
    t = mixed()
    fh = F.FeatureHasher(input_cols=["age", "city"], output_col="h", num_features=32)
    out = fh.transform(t)
    names = feature_names(out.schema.field("h"))
    assert len(names) == 32
    # the numeric column's bucket is named after it, as the hashed values show
    (age_index,) = {int(i) for r in out.column("h").to_pylist() for i, v in zip(r["indices"], r["values"])
                    if v not in (1.0, 2.0)}
    assert names[age_index] == "age"
    assert names[(age_index + 1) % 32].startswith("h[")
    va = VectorAssembler(input_cols=["age", "v"], output_col="f")
    scaled = F.StandardScaler(input_col="f", output_col="z").fit(va.transform(t)).transform(va.transform(t))
    assert feature_names(scaled.schema.field("z")) == ["age", "v[0]", "v[1]"]


def test_assembler_names_the_column_it_cannot_size():
    t = pa.table({"x": [1.0, 2.0], "s": fl.linalg.vectors_to_array([SparseVector(3, [0], [1.0])] * 2)})
    va = VectorAssembler(input_cols=["x", "s"])
    with pytest.raises(ValueError, match=r"cannot tell the size of column 's' \(parameter 'input_cols'\): it is a "
                                         r"sparse vector column"):
        va.transform(t)
    with pytest.raises(ValueError, match="cannot tell the size of column 's'"):
        va.output_schema(t.schema)
    assert to_csr(VectorAssembler(input_cols=["x", "s"], input_sizes=[1, 3]).transform(t).column("output")).shape \
        == (2, 4)


def test_declared_schema_needs_no_rows():
    schema = fl.data.schema.parse_schema("a double, v vector(3), n int")
    out = VectorAssembler(input_cols=["a", "v", "n"], output_col="f").output_schema(schema)
    assert out.field("f").type == pa.list_(pa.float64(), 5)
    assert feature_names(out.field("f")) == ["a", "v[0]", "v[1]", "v[2]", "n"]
    with pytest.raises(ValueError, match=r"VectorAssembler: input column 'b' \(parameter 'input_cols'\) is missing"):
        VectorAssembler(input_cols=["a", "b"]).output_schema(schema)


def test_a_number_for_a_string_column_is_an_error():
    m = F.StringIndexer(input_cols=["city"], output_cols=["i"], handle_invalid="keep").fit(mixed())
    with pytest.raises(TypeError, match=r"column 'city' .* has the number 7 at row 1, but it was fitted on strings"):
        m.transform({"city": pa.array([None, 7, 8])})
    with pytest.raises(TypeError, match=r"column 'city' .* has the number 3"):
        m.row_fn()({"city": 3})
    assert m.transform({"city": ["Atlantis"]}).column("i").to_pylist() == [4.0]  # an unseen string is kept


# ------------------------------------------------------------------------------------- stream plans


def test_stream_plans_are_checked_when_built():
    s = fls.from_table({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": ["x", "y"]})
    assert s.select(["a", "b"]).to_table().column_names == ["a", "b"]
    assert s.select("c", "a").schema.names == ["c", "a"]
    with pytest.raises(ValueError, match=r"select: column\(s\) \['zz'\] not in the stream; it has \['a', 'b', 'c'\]"):
        s.select(["a", "zz"])
    with pytest.raises(ValueError, match=r"VectorAssembler: input column 'y' \(parameter 'input_cols'\) is missing"):
        VectorAssembler(input_cols=["a", "y"]).transform(s)
    with pytest.raises(ValueError, match="VectorAssembler: column 'c' .* has type string"):
        VectorAssembler(input_cols=["a", "c"]).transform(s)
    with pytest.raises(ValueError, match=r"window aggregate t=\('y', 'sum'\): column 'y' is not in the stream"):
        s.window(count=2).aggregate(t=("y", "sum"))
    with pytest.raises(ValueError, match="window aggregate t=.*'c' has type string; sum needs a numeric column"):
        s.window(count=2).aggregate(t=("c", "sum"))
    with pytest.raises(ValueError, match="window: the time column 'q' .* is not in the stream"):
        s.window(event_time=1.0, time_col="q")
    with pytest.raises(ValueError, match="StandardScalerModel: input column 'nope'"):
        F.StandardScaler(input_col="v", output_col="z").fit(mixed()).set(input_col="nope").transform(s)


def test_generate_is_bounded_by_a_function_returning_none():
    s = fls.generate(lambda i: {"i": [i, i]} if i < 3 else None, bounded=True)
    assert s.bounded
    assert s.to_table().column("i").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert not fls.generate(lambda i: {"i": [i]}).bounded


def _boom(t):
    raise RuntimeError("boom in a map")


def test_a_failed_job_surfaces_its_error_once(caplog):
    s = fls.from_table({"a": [1.0, 2.0]}).map_batches(_boom)
    with caplog.at_level(logging.DEBUG, logger="flowlearn"):
        with pytest.raises(RuntimeError, match="boom in a map"):
            s.to_table()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_pipeline_model_output_schema_chains_declared_schemas():
    pm = fl.Pipeline([F.StringIndexer(input_cols=["city"], output_cols=["ci"]),
                      F.OneHotEncoder(input_cols=["ci"], output_cols=["cv"], drop_last=False),
                      VectorAssembler(input_cols=["cv", "age"], output_col="f")]).fit(mixed())
    assert isinstance(pm, PipelineModel)
    declared = pm.output_schema(mixed().schema)
    real = pm.transform(mixed()).schema
    assert declared.equals(real, check_metadata=True)
    assert feature_names(declared.field("f")) == ["city=Oslo", "city=Rome", "city=Lima", "city=Kyiv", "age"]


def test_a_stream_binds_the_assembler_to_the_plan_schema():
    # the plan declares 'v' as a 2-vector: the stage in the plan holds the sizes it read there
    src = fls.from_table(pa.table({"a": [1.0, 2.0], "v": pa.array([[1.0, 2.0], [3.0, 4.0]],
                                                                  pa.list_(pa.float64(), 2))}))
    out = VectorAssembler(input_cols=["a", "v"], output_col="f").transform(src)
    assert out.schema.field("f").type == pa.list_(pa.float64(), 3)
    assert out.node.spec.stage.input_sizes == [1, 2]
    assert out.to_table().column("f").to_pylist() == [[1.0, 1.0, 2.0], [2.0, 3.0, 4.0]]
    unsized = fls.from_table(pa.table({"s": fl.linalg.vectors_to_array([SparseVector(3, [0], [1.0])] * 2)}))
    with pytest.raises(ValueError, match="cannot tell the size of column 's'"):
        VectorAssembler(input_cols=["s"]).transform(unsized)
