"""Conformance cases for flowlearn's first stages (classification, regression, clustering, the
feature stages, the binary evaluator), on small slices of scikit-learn's bundled data."""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

import flowlearn as fl
from flowlearn.linalg import from_numpy

C, F, R, K = fl.classification, fl.feature, fl.regression, fl.clustering


@functools.lru_cache(maxsize=None)
def iris() -> pa.Table:
    """30 iris rows (10 per class): features, label 0..2, a weight, a string species."""
    d = load_iris()
    idx = np.r_[0:10, 50:60, 100:110]
    names = np.array(d.target_names)[d.target[idx]]
    return pa.table({"features": from_numpy(d.data[idx]), "label": d.target[idx].astype(float),
                     "weight": np.linspace(0.5, 1.5, len(idx)), "species": names.tolist()})


@functools.lru_cache(maxsize=None)
def cancer() -> pa.Table:
    """40 breast-cancer rows, 5 standardized features, label 0/1."""
    d = load_breast_cancer()
    idx = np.r_[0:20, 19:39]
    x = d.data[:, :5]
    x = (x - x.mean(0)) / x.std(0)
    return pa.table({"features": from_numpy(x[idx]), "label": d.target[idx].astype(float)})


@functools.lru_cache(maxsize=None)
def diabetes() -> pa.Table:
    d = load_diabetes()
    return pa.table({"features": from_numpy(d.data[:40, :4]), "label": d.target[:40]})


@functools.lru_cache(maxsize=None)
def mixed() -> pa.Table:
    """Iris measurements as scalar columns, with a city and a category index."""
    d = load_iris()
    x = d.data[::5]
    n = len(x)
    cities = ["Oslo", "Rome", "Lima", "Oslo", "Rome"]
    return pa.table({"sepal_length": x[:, 0], "sepal_width": x[:, 1], "petal": from_numpy(x[:, 2:]),
                     "city": [cities[i % 5] for i in range(n)], "cat": (np.arange(n) % 3).astype(float),
                     "count": np.arange(n, dtype=np.int64)})


def discrete() -> pa.Table:
    t = iris()
    return t.set_column(0, "features", from_numpy(np.floor(fl.linalg.to_numpy(t.column("features")))))


def _lr():
    return C.LogisticRegression(max_iter=30, reg=0.01, weight_col="weight")


def _svc():
    return C.LinearSVC(max_iter=20, reg=0.01)


def _nb():
    return C.NaiveBayes(smoothing=1.0)


def _olr():
    return C.OnlineLogisticRegression(global_batch_size=8, alpha=0.5, beta=1.0)


def _online_learning():
    return C.OnlineLearning(fl.Pipeline([R.LinearRegression(max_iter=5)]).fit(diabetes()),
                            optim_method="sgd", learning_rate=0.01, global_batch_size=8)


def _linreg():
    return R.LinearRegression(max_iter=20, reg=0.1)


def _kmeans():
    return K.KMeans(k=3, max_iter=10, seed=7)


def _okmeans():
    return K.OnlineKMeans(k=3, global_batch_size=10, seed=7)


def _std():
    return F.StandardScaler(input_col="features", output_col="scaled", with_mean=True)


def _minmax():
    return F.MinMaxScaler(input_col="features", output_col="scaled", min=-1.0, max=1.0)


def _maxabs():
    return F.MaxAbsScaler(input_col="features", output_col="scaled")


def _ostd():
    return F.OnlineStandardScaler(input_col="features", output_col="scaled", with_mean=True)


def _imputer():
    t = mixed()
    x = t.column("sepal_length").to_numpy().copy()
    x[[1, 4]] = np.nan
    return F.Imputer(input_cols=["sepal_length", "sepal_width"], output_cols=["sl", "sw"], strategy="median"), \
        t.set_column(0, "sepal_length", pa.array(x))


def _ohe():
    return F.OneHotEncoder(input_cols=["cat"], output_cols=["cat_vec"], handle_invalid="keep")


def _si():
    return F.StringIndexer(input_cols=["city"], output_cols=["city_index"], string_order_type="alphabetAsc")


def _its():
    m = F.IndexToStringModel(input_cols=["cat"], output_cols=["cat_name"])
    return m.set_model_data(pa.table({"string_arrays": [[["zero", "one", "two"]]]}))


def _evaluator_input() -> pa.Table:
    t = cancer()
    raw = C.LogisticRegression(max_iter=10).fit(t).transform(t)
    return raw.select(["label", "raw_prediction"])


CASES = {
    "LogisticRegression": lambda: (_lr(), iris()),
    "LogisticRegressionModel": lambda: (_lr().fit(iris()), iris()),
    "LinearSVC": lambda: (_svc(), cancer()),
    "LinearSVCModel": lambda: (_svc().fit(cancer()), cancer()),
    "NaiveBayes": lambda: (_nb(), discrete()),
    "NaiveBayesModel": lambda: (_nb().fit(discrete()), discrete()),
    "OnlineLogisticRegression": lambda: (_olr(), cancer()),
    "OnlineLogisticRegressionModel": lambda: (_olr().fit(cancer()), cancer()),
    "OnlineLearning": lambda: (_online_learning(), diabetes()),
    "LinearRegression": lambda: (_linreg(), diabetes()),
    "LinearRegressionModel": lambda: (_linreg().fit(diabetes()), diabetes()),
    "KMeans": lambda: (_kmeans(), iris()),
    "KMeansModel": lambda: (_kmeans().fit(iris()), iris()),
    "OnlineKMeans": lambda: (_okmeans(), iris()),
    "OnlineKMeansModel": lambda: (_okmeans().fit(iris()), iris()),
    "StandardScaler": lambda: (_std(), iris()),
    "StandardScalerModel": lambda: (_std().fit(iris()), iris()),
    "MinMaxScaler": lambda: (_minmax(), iris()),
    "MinMaxScalerModel": lambda: (_minmax().fit(iris()), iris()),
    "MaxAbsScaler": lambda: (_maxabs(), iris()),
    "MaxAbsScalerModel": lambda: (_maxabs().fit(iris()), iris()),
    "OnlineStandardScaler": lambda: (_ostd(), iris()),
    "OnlineStandardScalerModel": lambda: (_ostd().fit(iris()), iris()),
    "Imputer": _imputer,
    "ImputerModel": lambda: (_imputer()[0].fit(_imputer()[1]), _imputer()[1]),
    "OneHotEncoder": lambda: (_ohe(), mixed()),
    "OneHotEncoderModel": lambda: (_ohe().fit(mixed()), mixed()),
    "StringIndexer": lambda: (_si(), mixed()),
    "StringIndexerModel": lambda: (_si().fit(mixed()), mixed()),
    "IndexToStringModel": lambda: (_its(), mixed()),
    "Bucketizer": lambda: (F.Bucketizer(input_cols=["sepal_length", "sepal_width"], output_cols=["b1", "b2"],
                                        splits_array=[[-np.inf, 5.0, 6.0, np.inf], [0.0, 3.0, 10.0]]), mixed()),
    "FeatureHasher": lambda: (F.FeatureHasher(input_cols=["sepal_length", "city", "count"],
                                              categorical_cols=["count"], output_col="hashed", num_features=64),
                              mixed()),
    "VectorAssembler": lambda: (F.VectorAssembler(input_cols=["sepal_length", "petal", "sepal_width"],
                                                  output_col="assembled"), mixed()),
    "VectorAssembler/sizes": lambda: (F.VectorAssembler(input_cols=["petal", "count"], input_sizes=[2, 1],
                                                        output_col="assembled", handle_invalid="skip"), mixed()),
    "BinaryClassificationEvaluator": lambda: (fl.evaluation.BinaryClassificationEvaluator(
        metrics_names=["areaUnderROC", "areaUnderPR"]), _evaluator_input()),
}
