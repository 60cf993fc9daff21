"""SQLTransformer: statements over __THIS__ against the same computation in NumPy / pandas on
scikit-learn's iris data (projections, filters, group-by aggregates), Flink ML's documented
example, vector columns kept, and on streams: row-wise statements equal the table's result,
statements combining rows are refused."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_iris

import flowlearn as fl
from flowlearn.feature.sql import SQLTransformer

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def iris():
    d = load_iris()
    return pa.table({"id": np.arange(150), "sepal_length": d.data[:, 0], "petal_length": d.data[:, 2],
                     "species": d.target.astype(np.int64), "features": fl.linalg.from_numpy(d.data)})


def test_flink_ml_documented_example():
    # Flink ML's SQLTransformer docs: rows (0, 1.0, 3.0), (2, 2.0, 5.0) -> v3 = v1 + v2, v4 = v1 * v2
    t = {"id": [0, 2], "v1": [1.0, 2.0], "v2": [3.0, 5.0]}
    out = SQLTransformer(statement="SELECT *, (v1 + v2) AS v3, (v1 * v2) AS v4 FROM __THIS__").transform(t)
    assert out.column_names == ["id", "v1", "v2", "v3", "v4"]
    assert out.column("v3").to_pylist() == [4.0, 7.0] and out.column("v4").to_pylist() == [3.0, 10.0]


def test_projection_and_filter_match_numpy(iris):
    sql = SQLTransformer(statement="SELECT id, sqrt(sepal_length) AS s, sepal_length * petal_length AS p "
                                   "FROM __THIS__ WHERE species = 1 AND petal_length > 4.2")
    out = sql.transform(iris)
    sl, pl, sp = (iris.column(c).to_numpy() for c in ("sepal_length", "petal_length", "species"))
    keep = (sp == 1) & (pl > 4.2)
    np.testing.assert_array_equal(out.column("id").to_numpy(), np.flatnonzero(keep))  # input order kept
    np.testing.assert_allclose(out.column("s").to_numpy(), np.sqrt(sl[keep]), rtol=1e-15)
    np.testing.assert_array_equal(out.column("p").to_numpy(), sl[keep] * pl[keep])


def test_group_by_matches_pandas(iris):
    sql = SQLTransformer(statement="SELECT species, count(*) AS n, avg(sepal_length) AS m, "
                                   "stddev_samp(petal_length) AS s FROM __THIS__ GROUP BY species ORDER BY species")
    out = sql.transform(iris).to_pandas()
    df = iris.select(["species", "sepal_length", "petal_length"]).to_pandas()
    want = df.groupby("species").agg(n=("sepal_length", "size"), m=("sepal_length", "mean"),
                                     s=("petal_length", "std")).reset_index()
    pd.testing.assert_frame_equal(out, want, check_dtype=False, rtol=1e-12)


def test_vector_columns_keep_their_types(iris):
    x = iris.column("features")
    sp = fl.linalg.from_csr(sps.csr_matrix(np.where(fl.linalg.to_numpy(x) > 3.0, fl.linalg.to_numpy(x), 0.0)))
    t = iris.append_column("sparse", sp)
    sql = SQLTransformer(statement="SELECT id, features, sparse AS s FROM __THIS__ WHERE id < 5")
    out = sql.transform(t)
    assert out.schema.field("features").type == t.schema.field("features").type
    assert fl.linalg.is_sparse(out.schema.field("s").type)
    np.testing.assert_array_equal(fl.linalg.to_numpy(out.column("s")), fl.linalg.to_numpy(sp)[:5])
    assert sql.output_schema(t.schema).equals(out.schema)


def test_row_wise_statement_on_a_stream_equals_the_table(iris):
    sql = SQLTransformer(statement="SELECT id, petal_length / sepal_length AS r FROM __THIS__ WHERE species <> 0")
    got = sql.transform(fl.stream.from_table(iris, batch_size=40)).to_table()
    assert got.equals(sql.transform(iris))
    unnest = SQLTransformer(statement="SELECT id, unnest([sepal_length, petal_length]) AS v FROM __THIS__")
    assert unnest.row_wise_problem(iris.schema) is None


@pytest.mark.parametrize("statement,operator", [
    ("SELECT sum(sepal_length) FROM __THIS__", "UNGROUPED_AGGREGATE"),
    ("SELECT species, count(*) FROM __THIS__ GROUP BY species", "HASH_GROUP_BY"),
    ("SELECT DISTINCT species FROM __THIS__", "HASH_GROUP_BY"),
    ("SELECT id FROM __THIS__ ORDER BY sepal_length", "ORDER_BY"),
    ("SELECT id FROM __THIS__ LIMIT 3", "LIMIT"),
    ("SELECT id, row_number() OVER () FROM __THIS__", "WINDOW"),
    ("SELECT id, sepal_length - (SELECT avg(sepal_length) FROM __THIS__) FROM __THIS__", "AGGREGATE"),
])
def test_statements_combining_rows_refused_on_streams(iris, statement, operator):
    sql = SQLTransformer(statement=statement)
    assert operator in sql.row_wise_problem(iris.schema)
    with pytest.raises(ValueError, match="SQLTransformer: statement .* cannot run on a stream batch by batch"):
        sql.transform(fl.stream.from_table(iris, batch_size=40))
    assert sql.transform(iris).num_rows > 0  # on a table it runs


def test_bad_statements_named(iris):
    with pytest.raises(ValueError, match=r"parameter 'statement' = 'SELECT 1' violates mentions_this\(\)"):
        SQLTransformer(statement="SELECT 1")
    with pytest.raises(ValueError, match="must be exactly one SELECT statement over __THIS__, got 2 statement"):
        SQLTransformer(statement="SELECT * FROM __THIS__; DROP TABLE __THIS__").transform(iris)
    with pytest.raises(ValueError, match=r"got 1 statement\(s\) of kind\(s\) \['CREATE'\]"):
        SQLTransformer(statement="CREATE TABLE t AS SELECT * FROM __THIS__").transform(iris)
    with pytest.raises(ValueError, match="parameter 'statement' is not valid SQL"):
        SQLTransformer(statement="SELEC * FROM __THIS__").transform(iris)
    with pytest.raises(ValueError, match="input column 'petal_width' is missing"):
        SQLTransformer(statement="SELECT petal_width FROM __THIS__").transform(iris)
    with pytest.raises(ValueError, match="input column 'petal_width' is missing"):
        SQLTransformer(statement="SELECT petal_width FROM __THIS__").output_schema(iris.schema)
