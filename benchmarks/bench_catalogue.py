"""Benchmark: every flowlearn stage with a scikit-learn counterpart, side by side in one run (issue 12).

Each case builds its data once (fixed seed): flowlearn gets an Arrow table (what users pass),
scikit-learn the same values as NumPy/SciPy arrays; building them is not timed. A case times a fit
followed by a transform on the same rows (estimators), a transform (transformers) or an evaluate
(evaluators), for both libraries with the same settings where the two define the same thing. Each
case is warmed up once on a small slice first (Numba compiles or loads its kernels, scikit-learn
imports its modules), then both run ``--repeat`` times alternately and the best time of each is
kept. Quadratic algorithms (Knn queries, AgglomerativeClustering, silhouette) run on fewer rows;
the ``rows`` column says how many.

Run:  .venv/bin/python benchmarks/bench_catalogue.py [--rows 1000000] [--repeat 2] [--only Knn,IDF]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
import warnings
from typing import Callable

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

import flowlearn as fl
from flowlearn.classification.knn import Knn
from flowlearn.clustering.agglomerative import AgglomerativeClustering
from flowlearn.evaluation.clustering import ClusteringEvaluator
from flowlearn.evaluation.multiclass import MulticlassClassificationEvaluator
from flowlearn.evaluation.regression import RegressionEvaluator
from flowlearn.feature.kbins import KBinsDiscretizer
from flowlearn.feature.robust_scaler import RobustScaler
from flowlearn.feature.selectors import UnivariateFeatureSelector, VarianceThresholdSelector
from flowlearn.feature.term_frequency import IDF, CountVectorizer, HashingTF
from flowlearn.feature.vectors import Binarizer, Normalizer, PolynomialExpansion
from flowlearn.tuning import CrossValidator, ParamGridBuilder

# A case: rows -> (flowlearn callable, scikit-learn callable, rows actually used).
Case = Callable[[int], tuple[Callable[[], object], Callable[[], object], int]]
CASES: dict[str, Case] = {}
DIM = 10


def case(name: str) -> Callable[[Case], Case]:
    def deco(fn: Case) -> Case:
        CASES[name] = fn
        return fn
    return deco


def _rng() -> np.random.Generator:
    return np.random.default_rng(42)


def _dense(n: int, d: int = DIM) -> tuple[np.ndarray, pa.Table]:
    x = _rng().standard_normal((n, d))
    return x, fl.table({"x": x})


def _fit_transform(est, table):
    return lambda: est.fit(table).transform(table)


def _sk_fit_transform(est, x, *y):
    return lambda: est.fit(x, *y).transform(x)


def _scaler_case(fl_cls, sk_factory, **fl_params):
    def run(n):
        x, t = _dense(n)
        return _fit_transform(fl_cls(input_col="x", output_col="y", **fl_params), t), \
            _sk_fit_transform(sk_factory(), x), n
    return run


def _register_scalers() -> None:
    from sklearn import preprocessing as skp
    case("StandardScaler")(_scaler_case(fl.feature.StandardScaler, skp.StandardScaler, with_mean=True))
    case("MinMaxScaler")(_scaler_case(fl.feature.MinMaxScaler, skp.MinMaxScaler))
    case("MaxAbsScaler")(_scaler_case(fl.feature.MaxAbsScaler, skp.MaxAbsScaler))
    # exact quantiles on both sides (relative_error=0: flowlearn keeps every value of each column sorted)
    case("RobustScaler(exact)")(_scaler_case(RobustScaler, lambda: skp.RobustScaler(with_centering=True),
                                             with_centering=True, relative_error=0.0))
    # Flink ML's default: quantiles within 0.001 * n ranks (scikit-learn has no approximate mode)
    case("RobustScaler(relative_error=0.001)")(_scaler_case(RobustScaler,
                                                            lambda: skp.RobustScaler(with_centering=True),
                                                            with_centering=True, relative_error=0.001))


_register_scalers()


@case("Normalizer")
def _normalizer(n):
    from sklearn.preprocessing import Normalizer as Sk
    x, t = _dense(n)
    return (lambda: Normalizer(input_col="x", output_col="y", p=2.0).transform(t)), \
        (lambda: Sk(norm="l2").transform(x)), n


@case("Binarizer")
def _binarizer(n):
    from sklearn.preprocessing import Binarizer as Sk
    x, t = _dense(n)
    return (lambda: Binarizer(input_cols=["x"], output_cols=["y"], thresholds=[0.0]).transform(t)), \
        (lambda: Sk(threshold=0.0).transform(x)), n


@case("PolynomialExpansion(degree 2)")
def _poly(n):
    from sklearn.preprocessing import PolynomialFeatures
    x, t = _dense(n, 5)
    return (lambda: PolynomialExpansion(input_col="x", output_col="y", degree=2).transform(t)), \
        (lambda: PolynomialFeatures(degree=2, include_bias=False).fit_transform(x)), n


def _kbins(strategy):
    def run(n):
        from sklearn.preprocessing import KBinsDiscretizer as Sk
        x, t = _dense(n)
        sub = 200_000
        fl_est = KBinsDiscretizer(input_col="x", output_col="y", num_bins=5, strategy=strategy, sub_samples=sub)
        kw = {"quantile_method": "linear"} if "quantile_method" in Sk().get_params() else {}
        sk_est = Sk(n_bins=5, encode="ordinal", strategy=strategy, subsample=sub, random_state=0, **kw)
        return _fit_transform(fl_est, t), _sk_fit_transform(sk_est, x), n
    return run


case("KBinsDiscretizer(uniform)")(_kbins("uniform"))
case("KBinsDiscretizer(quantile)")(_kbins("quantile"))


@case("OneHotEncoder")
def _one_hot(n):
    from sklearn.preprocessing import OneHotEncoder as Sk
    codes = _rng().integers(0, 100, size=(n, 3)).astype(np.float64)
    t = fl.table({f"c{i}": codes[:, i] for i in range(3)})
    est = fl.feature.OneHotEncoder(input_cols=["c0", "c1", "c2"], output_cols=["o0", "o1", "o2"], drop_last=False)
    return _fit_transform(est, t), _sk_fit_transform(Sk(), codes), n


@case("StringIndexer/OrdinalEncoder")
def _string_indexer(n):
    from sklearn.preprocessing import OrdinalEncoder
    vocab = np.array([f"w{i:04d}" for i in range(1000)], dtype=object)
    strings = vocab[_rng().integers(0, 1000, size=(n, 2))]
    t = pa.table({"s0": pa.array(strings[:, 0], pa.string()), "s1": pa.array(strings[:, 1], pa.string())})
    est = fl.feature.StringIndexer(input_cols=["s0", "s1"], output_cols=["i0", "i1"], string_order_type="alphabetAsc")
    return _fit_transform(est, t), _sk_fit_transform(OrdinalEncoder(), strings), n


@case("Imputer/SimpleImputer(mean)")
def _imputer(n):
    from sklearn.impute import SimpleImputer
    x = _rng().standard_normal((n, DIM))
    x[_rng().random((n, DIM)) < 0.1] = np.nan
    t = fl.table({f"c{i}": x[:, i] for i in range(DIM)})
    est = fl.feature.Imputer(input_cols=[f"c{i}" for i in range(DIM)], output_cols=[f"o{i}" for i in range(DIM)],
                             strategy="mean")
    return _fit_transform(est, t), _sk_fit_transform(SimpleImputer(strategy="mean"), x), n


@case("VarianceThresholdSelector")
def _variance(n):
    from sklearn.feature_selection import VarianceThreshold
    x, t = _dense(n, 20)
    x[:, ::2] *= 0.1
    t = fl.table({"x": x})
    return _fit_transform(VarianceThresholdSelector(input_col="x", output_col="y", variance_threshold=0.5), t), \
        _sk_fit_transform(VarianceThreshold(threshold=0.5), x), n


def _univariate(feature_type, label_type):
    def run(n):
        from sklearn.feature_selection import SelectKBest, chi2, f_classif, f_regression
        rng = _rng()
        d = 20
        if feature_type == "categorical":
            x = rng.integers(0, 5, size=(n, d)).astype(np.float64)
        else:
            x = rng.standard_normal((n, d))
        if label_type == "categorical":
            y = (x[:, 0] + x[:, 1] + rng.standard_normal(n) > 0).astype(np.float64) + (x[:, 2] > 1)
            score = chi2 if feature_type == "categorical" else f_classif
        else:
            y = x[:, 0] + 0.5 * x[:, 1] + rng.standard_normal(n)
            score = f_regression
        t = fl.table({"features": x, "label": y})
        est = UnivariateFeatureSelector(feature_type=feature_type, label_type=label_type,
                                        selection_mode="numTopFeatures", selection_threshold=5)
        return _fit_transform(est, t), _sk_fit_transform(SelectKBest(score, k=5), x, y), n
    return run


case("UnivariateFeatureSelector(f_classif)")(_univariate("continuous", "categorical"))
case("UnivariateFeatureSelector(f_regression)")(_univariate("continuous", "continuous"))
case("UnivariateFeatureSelector(chi2)")(_univariate("categorical", "categorical"))


def _documents(n: int) -> tuple[list[list[str]], pa.Table]:
    """``n`` documents of 5-15 words from a 10,000-word vocabulary with Zipf-like frequencies."""
    rng = _rng()
    vocab = np.array([f"t{i}" for i in range(10_000)], dtype=object)
    lengths = rng.integers(5, 16, size=n)
    words = vocab[np.minimum(rng.zipf(1.3, size=int(lengths.sum())) - 1, len(vocab) - 1)]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(words, pa.string()))
    docs = [list(words[offsets[i]:offsets[i + 1]]) for i in range(n)]
    return docs, pa.table({"words": column})


def _identity(doc):
    return doc


@case("CountVectorizer")
def _count_vectorizer(n):
    from sklearn.feature_extraction.text import CountVectorizer as Sk
    docs, t = _documents(n)
    # both get the documents already split into words (scikit-learn through an identity analyzer)
    return _fit_transform(CountVectorizer(input_col="words", output_col="tf"), t), \
        (lambda: Sk(analyzer=_identity).fit_transform(docs)), n


@case("HashingTF/HashingVectorizer")
def _hashing_tf(n):
    from sklearn.feature_extraction.text import HashingVectorizer
    docs, t = _documents(n)
    return (lambda: HashingTF(input_col="words", output_col="tf", num_features=1 << 18).transform(t)), \
        (lambda: HashingVectorizer(analyzer=_identity, n_features=1 << 18, alternate_sign=False,
                                   norm=None).transform(docs)), n


@case("IDF/TfidfTransformer")
def _idf(n):
    from sklearn.feature_extraction.text import TfidfTransformer
    _, t = _documents(n)
    tf = HashingTF(input_col="words", output_col="tf", num_features=1 << 18).transform(t).select(["tf"])
    csr = fl.linalg.to_csr(tf.column("tf"))
    return _fit_transform(IDF(input_col="tf", output_col="tfidf"), tf), \
        _sk_fit_transform(TfidfTransformer(norm=None, smooth_idf=True), csr), n


def _classification(n, d=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal(d) * (3.0 / np.sqrt(d))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ w + 0.5)))).astype(np.float64)
    return x, y, fl.table({"features": x, "label": y})


@case("LogisticRegression")
def _logistic(n):
    from sklearn.linear_model import LogisticRegression as Sk
    x, y, t = _classification(n)
    reg, tol = 1e-4, 1e-6
    est = fl.classification.LogisticRegression(reg=reg, tol=tol, max_iter=100)
    sk = Sk(C=1.0 / (reg * n), tol=tol, max_iter=100)
    return _fit_transform(est, t), (lambda: sk.fit(x, y).predict(x)), n


@case("LinearSVC")
def _linear_svc(n):
    from sklearn.svm import LinearSVC as Sk
    x, y, t = _classification(n)
    # the same hinge loss on both sides (flowlearn's dual solver, liblinear's dual coordinate descent)
    reg, tol = 1e-2, 1e-3
    est = fl.classification.LinearSVC(reg=reg, tol=tol)
    sk = Sk(loss="hinge", dual=True, C=1.0 / (reg * n), tol=tol, max_iter=1000)
    return _fit_transform(est, t), (lambda: sk.fit(x, y).predict(x)), n


@case("LinearRegression")
def _linear_regression(n):
    from sklearn.linear_model import LinearRegression as Sk
    rng = _rng()
    x = rng.standard_normal((n, 20))
    y = x @ rng.standard_normal(20) + 0.5 + rng.standard_normal(n)
    t = fl.table({"features": x, "label": y})
    sk = Sk()
    return _fit_transform(fl.regression.LinearRegression(reg=0.0), t), (lambda: sk.fit(x, y).predict(x)), n


@case("KMeans")
def _kmeans(n):
    from sklearn.cluster import KMeans as Sk
    rng = _rng()
    centers = rng.standard_normal((8, DIM)) * 5
    x = centers[rng.integers(0, 8, n)] + rng.standard_normal((n, DIM))
    t = fl.table({"features": x})
    # the same 20 Lloyd iterations from random rows on both sides, one initialisation
    est = fl.clustering.KMeans(k=8, max_iter=20, tol=0.0, seed=1, init_mode="random")
    sk = Sk(n_clusters=8, init="random", n_init=1, max_iter=20, tol=0.0, random_state=1, algorithm="lloyd")
    return _fit_transform(est, t), (lambda: sk.fit(x).predict(x)), n


def _naive_bayes(model_type):
    def run(n):
        from sklearn.naive_bayes import GaussianNB, MultinomialNB
        rng = _rng()
        y = rng.integers(0, 5, n).astype(np.float64)
        if model_type == "multinomial":
            x = rng.poisson(1.0 + y[:, None] * np.linspace(0, 1, 20)[None, :]).astype(np.float64)
            sk = MultinomialNB(alpha=1.0)
        else:
            x = rng.standard_normal((n, 20)) + y[:, None] * np.linspace(0, 1, 20)[None, :]
            sk = GaussianNB()
        t = fl.table({"features": x, "label": y})
        est = fl.classification.NaiveBayes(model_type=model_type, smoothing=1.0)
        return _fit_transform(est, t), (lambda: sk.fit(x, y).predict(x)), n
    return run


case("NaiveBayes(multinomial)")(_naive_bayes("multinomial"))
case("NaiveBayes(gaussian)")(_naive_bayes("gaussian"))


@case("Knn/KNeighborsClassifier(brute)")
def _knn(n):
    from sklearn.neighbors import KNeighborsClassifier
    train_rows, query_rows = min(n, 100_000), min(n, 10_000)
    x, y, t = _classification(train_rows, d=DIM)
    q = np.random.default_rng(7).standard_normal((query_rows, DIM))
    queries = fl.table({"features": q})
    sk = KNeighborsClassifier(n_neighbors=5, algorithm="brute", n_jobs=1)
    return (lambda: Knn(k=5).fit(t).transform(queries)), (lambda: sk.fit(x, y).predict(q)), \
        f"{train_rows} train x {query_rows} queries"


@case("AgglomerativeClustering(ward)")
def _agglomerative(n):
    from sklearn.cluster import AgglomerativeClustering as Sk
    rows = min(n, 5_000)
    x, t = _dense(rows)
    t = fl.table({"features": x})
    return (lambda: AgglomerativeClustering(num_clusters=8, linkage="ward").transform(t)), \
        (lambda: Sk(n_clusters=8, linkage="ward").fit_predict(x)), rows


def _scored(n):
    rng = _rng()
    label = rng.integers(0, 5, n).astype(np.float64)
    pred = np.where(rng.random(n) < 0.7, label, rng.integers(0, 5, n)).astype(np.float64)
    return label, pred


@case("MulticlassClassificationEvaluator(f1)")
def _f1(n):
    from sklearn.metrics import f1_score
    label, pred = _scored(n)
    t = fl.table({"label": label, "prediction": pred})
    ev = MulticlassClassificationEvaluator(metrics_names=["f1"])
    return (lambda: ev.evaluate(t)), (lambda: f1_score(label, pred, average="weighted")), n


@case("RegressionEvaluator(rmse)")
def _rmse(n):
    from sklearn.metrics import mean_squared_error
    rng = _rng()
    label = rng.standard_normal(n)
    pred = label + 0.1 * rng.standard_normal(n)
    t = fl.table({"label": label, "prediction": pred})
    ev = RegressionEvaluator(metrics_names=["rmse"])
    return (lambda: ev.evaluate(t)), (lambda: np.sqrt(mean_squared_error(label, pred))), n


@case("ClusteringEvaluator(silhouette)")
def _silhouette(n):
    from sklearn.metrics import silhouette_score
    rows = min(n, 20_000)
    rng = _rng()
    cluster = rng.integers(0, 5, rows)
    x = rng.standard_normal((5, DIM))[cluster] * 3 + rng.standard_normal((rows, DIM))
    t = fl.table({"features": x, "prediction": cluster.astype(np.float64)})
    ev = ClusteringEvaluator()  # Spark's silhouette on squared euclidean distances
    return (lambda: ev.evaluate(t)), (lambda: silhouette_score(x, cluster, metric="sqeuclidean")), rows


@case("CrossValidator/GridSearchCV")
def _cross_validator(n):
    from sklearn.linear_model import LogisticRegression as Sk
    from sklearn.model_selection import GridSearchCV, KFold
    rows = min(n, 20_000)
    x, y, t = _classification(rows, d=10)
    regs = [1e-3, 1e-2, 1e-1]
    lr = fl.classification.LogisticRegression(tol=1e-6)
    grid = ParamGridBuilder().add_grid(lr, "reg", regs).build()
    cv = CrossValidator(estimator=lr, estimator_param_maps=grid, num_folds=3, seed=0,
                        evaluator=MulticlassClassificationEvaluator(metrics_names=["accuracy"]))
    # each fold trains on 2/3 of the rows: the same penalty is C = 1 / (reg * fold rows)
    fold = rows * 2 // 3
    gs = GridSearchCV(Sk(tol=1e-6), {"C": [1.0 / (r * fold) for r in regs]}, cv=KFold(3, shuffle=True, random_state=0),
                      scoring="accuracy", n_jobs=1)
    return (lambda: cv.fit(t).transform(t)), (lambda: gs.fit(x, y).predict(x)), \
        f"{rows} rows, 3 folds x 3 candidates"


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="runs per library; the best is kept")
    ap.add_argument("--only", default="", help="comma-separated case names or name prefixes")
    args = ap.parse_args()
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    names = [c for c in CASES if not wanted or any(c == w or c.startswith(w) for w in wanted)]
    if not names:
        raise SystemExit(f"--only matched no case; cases: {', '.join(CASES)}")
    warnings.filterwarnings("ignore")  # convergence notes of either library are not what is measured

    print(f"{'stage':44} {'rows':>28} {'flowlearn s':>12} {'sklearn s':>10} {'ratio':>7}")
    ratios = []
    for name in names:
        fl_fn, sk_fn, _ = CASES[name](min(args.rows, 2_000))
        fl_fn(), sk_fn()                                   # warm-up: kernels compiled or loaded
        fl_fn, sk_fn, size = CASES[name](args.rows)
        t_fl, t_sk = [], []
        for _ in range(args.repeat):                       # alternate so both see the same load
            t_fl.append(_best(fl_fn, 1))
            t_sk.append(_best(sk_fn, 1))
        best_fl, best_sk = min(t_fl), min(t_sk)
        ratio = best_fl / best_sk
        ratios.append(ratio)
        print(f"{name:44} {size!s:>28} {best_fl:12.3f} {best_sk:10.3f} {ratio:6.2f}x", flush=True)
        del fl_fn, sk_fn
        gc.collect()
    print(f"median ratio (flowlearn / scikit-learn) over {len(ratios)} cases: {statistics.median(ratios):.2f}x; "
          f"above 1.5x: {sum(r > 1.5 for r in ratios)}")


if __name__ == "__main__":
    main()
