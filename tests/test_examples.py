"""examples/ runs, gives what scikit-learn or River give on the same task, and takes no more lines
of code than they do (the reference programs below, written as their docs write them; lines are
counted without the module docstring, comments and blank lines)."""
from __future__ import annotations

import ast
import contextlib
import io
import os
import runpy

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

REFERENCES = {
    "iris_kmeans.py": '''
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris

X, y = load_iris(return_X_y=True)
model = KMeans(n_clusters=3, n_init=10, random_state=0).fit(X)
labels = model.predict(X)
print(labels[:10], model.cluster_centers_)
''',
    "diabetes_linear_regression.py": '''
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

X, y = load_diabetes(return_X_y=True)
model = LinearRegression().fit(X, y)
print(model.coef_, model.intercept_)
''',
    "mixed_types_pandas.py": '''
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

rng = np.random.default_rng(0)  # made-up data: the label depends on income and the city
df = pd.DataFrame({"age": rng.uniform(1.8, 8.0, 1000), "income": rng.normal(5.0, 1.5, 1000),
                   "city": rng.choice(["Oslo", "Rome", "Lima"], 1000)})
df["label"] = (df.income + (df.city == "Oslo") + rng.normal(0, 1, 1000) > 6).astype(float)

encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["city"]), remainder="passthrough")
model = make_pipeline(encode, LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000))
model.fit(df[["age", "income", "city"]], df["label"])
proba = model.predict_proba(df[["age", "income", "city"]])[:, 1]
print(proba[:5])
''',
    "phishing_online.py": '''
from river import compose
from river import datasets
from river import evaluate
from river import linear_model
from river import metrics
from river import preprocessing

model = compose.Pipeline(
    preprocessing.StandardScaler(),
    linear_model.LogisticRegression()
)
metric = metrics.Accuracy()
evaluate.progressive_val_score(datasets.Phishing(), model, metric)
print(metric)
''',
}


def code_lines(source: str) -> int:
    tree = ast.parse(source)
    first = 0
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None),
                                                                      ast.Constant):
        first = tree.body[0].end_lineno
    lines = source.splitlines()[first:]
    return sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))


def run(source_or_path: str, tmp_path, is_path: bool = True) -> dict:
    os.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        if is_path:
            return runpy.run_path(source_or_path, run_name="__main__")
        ns: dict = {"__name__": "__main__"}
        exec(compile(source_or_path, "reference", "exec"), ns)
        return ns


@pytest.fixture(autouse=True)
def _keep_cwd():
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_every_example_has_a_reference_and_is_no_longer():
    names = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert names == sorted(REFERENCES)
    for name in names:
        with open(os.path.join(EXAMPLES, name)) as f:
            ours = code_lines(f.read())
        assert ours <= code_lines(REFERENCES[name]), (name, ours, code_lines(REFERENCES[name]))


def test_iris_kmeans_finds_scikit_learns_clusters(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    ours = run(os.path.join(EXAMPLES, "iris_kmeans.py"), tmp_path)
    ref = run(REFERENCES["iris_kmeans.py"], tmp_path, is_path=False)
    assert adjusted_rand_score(ref["labels"], ours["labels"]) == 1.0
    centroids = np.array(ours["model"].get_model_data()[0]["centroids"].to_pylist())
    np.testing.assert_allclose(centroids[np.lexsort(centroids.T[::-1])],
                               ref["model"].cluster_centers_[np.lexsort(ref["model"].cluster_centers_.T[::-1])],
                               rtol=1e-9)


def test_diabetes_linear_regression_equals_scikit_learn(tmp_path):
    ours = run(os.path.join(EXAMPLES, "diabetes_linear_regression.py"), tmp_path)
    ref = run(REFERENCES["diabetes_linear_regression.py"], tmp_path, is_path=False)
    np.testing.assert_allclose(ours["model"].coefficients, ref["model"].coef_, rtol=1e-6)
    assert ours["model"].intercept == pytest.approx(ref["model"].intercept_, rel=1e-9)


def test_mixed_types_pandas_probabilities_equal_scikit_learn(tmp_path):
    pytest.importorskip("pandas")
    ours = run(os.path.join(EXAMPLES, "mixed_types_pandas.py"), tmp_path)
    ref = run(REFERENCES["mixed_types_pandas.py"], tmp_path, is_path=False)
    np.testing.assert_allclose(ours["proba"], ref["proba"], atol=1e-5)
    # a city never seen in training is scored too (handle_invalid="keep")
    import flowlearn as fl

    unseen = ours["model"].transform({"age": [3.0], "income": [5.0], "city": ["Paris"]})
    assert 0.0 < fl.linalg.to_numpy(unseen["raw_prediction"])[0, 1] < 1.0


def test_phishing_online_matches_river(tmp_path):
    pytest.importorskip("river")
    ours = run(os.path.join(EXAMPLES, "phishing_online.py"), tmp_path)
    ref = run(REFERENCES["phishing_online.py"], tmp_path, is_path=False)
    assert ref["metric"].get() == pytest.approx(0.8928, abs=1e-4)
    assert abs(ours["metric"]["accuracy"] - ref["metric"].get()) <= 0.005
