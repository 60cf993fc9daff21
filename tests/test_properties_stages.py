"""Property-based bad input for every registered stage's ``fit`` / ``transform``.

The stage registry (flowlearn/api.py) is walked: every concrete stage class is covered by a
spec below (a model through its estimator) or listed in NOT_TABLE_STAGES with the reason, so a
new stage without a spec fails ``test_every_registered_stage_has_a_spec`` (which first imports
every module of the package, so the registry does not depend on what other tests imported).

Each spec builds a good table for its stage; each kind of bad input changes one input column
(chosen by Hypothesis, as are the rows and values): missing column, wrong type, nulls, NaN and
infinities, huge and tiny finite values, no rows, wrong vector sizes, sparse instead of dense,
sparse storage with bad indices, bad labels. The contract: a sound result (as many rows as went
in, finite outputs for finite inputs, the same answers for the same vectors dense or sparse) or a
ValueError/TypeError naming the column (and the row where one row is at fault). Every call runs
in the ISOLATED child process, so a crash in a kernel fails one example, not the run."""
from __future__ import annotations

import functools
import importlib
import math
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings, strategies as st

import flowlearn as fl
from flowlearn.api import _REGISTRY, Estimator, Stage
from flowlearn.linalg import SPARSE_VECTOR, from_csr, is_sparse, is_vector_type, to_numpy
from strategies import EXTREME_FLOATS, ISOLATED, NON_FINITE, check, outcome

pytestmark = pytest.mark.fuzz

EXAMPLES = settings(max_examples=max(4, settings.default.max_examples // 2))

F, C, R = fl.feature, fl.classification, fl.regression


@dataclass
class Spec:
    """How to exercise one stage: ``make()`` builds it; ``columns`` maps each input column to its
    kind (``vector``, ``label``, ``binary label``, ``number``, ``index``, ``string``,
    ``probabilities``, ``weight``); ``fit`` says whether the stage is an estimator (its model is
    then fitted on good data and transformed with the bad data too)."""

    make: Callable[[], Stage]
    columns: dict[str, str]
    size: int = 3                           # vector size
    allow_nan: tuple[str, ...] = ()         # columns where NaN and infinities are valid values
    allow_inf: tuple[str, ...] = ()         # columns where infinities (not NaN) are valid values
    allow_null: tuple[str, ...] = ()        # columns where nulls are valid values
    fit_allows_null: tuple[str, ...] = ()   # columns where fit ignores nulls (transform refuses them)
    fit_only: tuple[str, ...] = ()          # columns the fitted model does not read
    nonnegative: tuple[str, ...] = ()       # vector columns that must hold values >= 0
    discrete: bool = False                  # vectors of small integers (categorical features)
    also_named: tuple[str, ...] = ()        # other names an error may give (a pipeline's inner columns)
    one_row: bool = False                   # outputs its own rows, not one per input row (evaluators, tests)
    splits: bool = False                    # spreads the input rows over several output tables
    nan_ok: bool = False                    # NaN is a valid output for finite input (a test on a constant feature)
    any_size: bool = False                  # takes vectors of any size (no fitted size to refuse others)
    carried: tuple[str, ...] = ()           # columns passed through unread: any value and type is valid
    ragged_ok: bool = False                 # rows' vectors may differ in size (row-wise transforms)
    number_or_vector: tuple[str, ...] = ()  # columns taking numbers and vectors alike (a number: size 1)
    fit_allows_nan: tuple[str, ...] = ()    # columns where fit ignores NaN (transform refuses it)
    transform_allows_nan: tuple[str, ...] = ()  # columns whose NaN and infinities the model carries to the output

    @property
    def fit(self) -> bool:
        return isinstance(self.make(), Estimator)

    def names(self, col: str) -> tuple[str, ...]:
        """What an error about ``col`` may name: the column or one derived from it."""
        return (f"'{col}'",) + tuple(f"'{c}'" for c in self.also_named)

    def columns_in(self, phase: str) -> list[str]:
        return sorted(c for c in self.columns if phase == "fit" or c not in self.fit_only)

    def read_in(self, phase: str) -> list[str]:
        """The columns the stage reads in ``phase`` (what bad input may target)."""
        return [c for c in self.columns_in(phase) if c not in self.carried]


@functools.lru_cache(maxsize=None)
def _lr_pipeline():
    t = fl.table({"vec_in": np.eye(3).tolist() * 4, "lab_in": [0.0, 1.0, 1.0] * 4})
    return fl.Pipeline([C.LogisticRegression(features_col="vec_in", label_col="lab_in")]).fit(t)


def _index_to_string():
    m = F.IndexToStringModel(input_cols=["idx_i"], output_cols=["s_out"])
    return m.set_model_data(pa.table({"string_arrays": [[["a", "b", "c"]]]}))


BINARY = {"vec_in": "vector", "lab_in": "binary label"}
MULTI = {"vec_in": "vector", "lab_in": "label"}
CATEGORIES = {"vec_in": "vector", "lab_in": "category"}     # labels of any value (each value is a class)
LABEL = ("lab_in", "w_in")
SPECS: dict[str, Spec] = {
    "LogisticRegression": Spec(lambda: C.LogisticRegression(features_col="vec_in", label_col="lab_in",
                                                             max_iter=20), MULTI, fit_only=LABEL),
    "LogisticRegression/weights": Spec(lambda: C.LogisticRegression(features_col="vec_in", label_col="lab_in",
                                                                     weight_col="w_in", max_iter=20),
                                       dict(MULTI, w_in="weight"), fit_only=LABEL),
    "LogisticRegression/sgd": Spec(lambda: C.LogisticRegression(features_col="vec_in", label_col="lab_in",
                                                                 solver="sgd", max_iter=5), MULTI, fit_only=LABEL),
    "LinearSVC": Spec(lambda: C.LinearSVC(features_col="vec_in", label_col="lab_in", max_iter=20), BINARY,
                      fit_only=LABEL),
    "NaiveBayes": Spec(lambda: C.NaiveBayes(features_col="vec_in", label_col="lab_in"),
                       {"vec_in": "vector", "lab_in": "class"}, fit_only=LABEL,
                       nonnegative=("vec_in",), discrete=True),
    "OnlineLogisticRegression": Spec(lambda: C.OnlineLogisticRegression(features_col="vec_in", label_col="lab_in"),
                                     BINARY, fit_only=LABEL),
    "OnlineLearning": Spec(lambda: C.OnlineLearning(_lr_pipeline(), label_col="lab_in"), BINARY, fit_only=LABEL),
    "LinearRegression": Spec(lambda: fl.regression.LinearRegression(features_col="vec_in", label_col="lab_in"),
                             {"vec_in": "vector", "lab_in": "number"}, fit_only=LABEL),
    "LinearRegression/lbfgs": Spec(lambda: fl.regression.LinearRegression(features_col="vec_in", label_col="lab_in",
                                                                          solver="lbfgs", max_iter=20),
                                   {"vec_in": "vector", "lab_in": "number"}, fit_only=LABEL),
    "KMeans": Spec(lambda: fl.clustering.KMeans(features_col="vec_in", k=2, max_iter=5), {"vec_in": "vector"}),
    "KMeans/cosine": Spec(lambda: fl.clustering.KMeans(features_col="vec_in", k=2, max_iter=5,
                                                       distance_measure="cosine"), {"vec_in": "vector"}),
    "OnlineKMeans": Spec(lambda: fl.clustering.OnlineKMeans(features_col="vec_in", k=2), {"vec_in": "vector"}),
    "StandardScaler": Spec(lambda: F.StandardScaler(input_col="vec_in", output_col="out", with_mean=True),
                           {"vec_in": "vector"}),
    "MinMaxScaler": Spec(lambda: F.MinMaxScaler(input_col="vec_in", output_col="out"), {"vec_in": "vector"}),
    "MaxAbsScaler": Spec(lambda: F.MaxAbsScaler(input_col="vec_in", output_col="out"), {"vec_in": "vector"}),
    "OnlineStandardScaler": Spec(lambda: F.OnlineStandardScaler(input_col="vec_in", output_col="out", with_mean=True),
                                 {"vec_in": "vector"}),
    "Imputer": Spec(lambda: F.Imputer(input_cols=["num_a"], output_cols=["out_a"]), {"num_a": "number"},
                    allow_nan=("num_a",), allow_null=("num_a",)),
    "Imputer/median": Spec(lambda: F.Imputer(input_cols=["num_a"], output_cols=["out_a"], strategy="median"),
                           {"num_a": "number"}, allow_nan=("num_a",), allow_null=("num_a",)),
    "OneHotEncoder": Spec(lambda: F.OneHotEncoder(input_cols=["idx_i"], output_cols=["oh"]), {"idx_i": "index"}),
    "StringIndexer": Spec(lambda: F.StringIndexer(input_cols=["str_s"], output_cols=["si"]), {"str_s": "string"},
                          fit_allows_null=("str_s",)),
    "IndexToStringModel": Spec(_index_to_string, {"idx_i": "index"}),
    # Bucketizer: infinities fall in the outer buckets of splits from -inf to inf; NaN is invalid.
    "Bucketizer": Spec(lambda: F.Bucketizer(input_cols=["num_a"], output_cols=["bk"],
                                            splits_array=[[-math.inf, -1.0, 0.0, 1.0, math.inf]]),
                       {"num_a": "number"}, allow_inf=("num_a",)),
    # FeatureHasher (as Flink ML): a number is hashed as its value, NaN included; nulls add nothing.
    "FeatureHasher": Spec(lambda: F.FeatureHasher(input_cols=["num_a", "str_s"], categorical_cols=["str_s"],
                                                  output_col="out", num_features=16),
                          {"num_a": "hashed", "str_s": "hashed"}, allow_nan=("num_a",),
                          allow_null=("num_a", "str_s")),
    # VectorAssembler (as Flink ML): a null or NaN number is invalid; vectors' values pass through.
    "VectorAssembler": Spec(lambda: F.VectorAssembler(input_cols=["num_a", "vec_in"], input_sizes=[1, 3],
                                                      output_col="out"),
                            {"num_a": "number", "vec_in": "vector"}, allow_inf=("num_a",), allow_nan=("vec_in",)),
    "BinaryClassificationEvaluator": Spec(
        lambda: fl.evaluation.BinaryClassificationEvaluator(raw_prediction_col="raw_in", label_col="lab_in"),
        {"raw_in": "probabilities", "lab_in": "binary label"}),
    # statistics tests (Flink ML): one row of per-feature results; a constant feature gives NaN
    "ANOVATest": Spec(lambda: fl.stats.ANOVATest(features_col="vec_in", label_col="lab_in"), CATEGORIES, one_row=True,
                      nan_ok=True, any_size=True),
    "FValueTest": Spec(lambda: fl.stats.FValueTest(features_col="vec_in", label_col="num_a"),
                       {"vec_in": "vector", "num_a": "number"}, one_row=True, nan_ok=True, any_size=True),
    "ChiSqTest": Spec(lambda: fl.stats.ChiSqTest(features_col="vec_in", label_col="lab_in"), CATEGORIES, one_row=True,
                      discrete=True, nan_ok=True, any_size=True),
    "MulticlassClassificationEvaluator": Spec(
        lambda: fl.evaluation.MulticlassClassificationEvaluator(label_col="lab_in", prediction_col="num_a",
                                                                metrics_names=["f1", "accuracy"]),
        {"lab_in": "label", "num_a": "index"}, one_row=True),
    "RegressionEvaluator": Spec(
        lambda: fl.evaluation.RegressionEvaluator(label_col="lab_in", prediction_col="num_a",
                                                  metrics_names=["rmse", "mae"]),
        {"lab_in": "number", "num_a": "number"}, one_row=True),
    "ClusteringEvaluator": Spec(
        lambda: fl.evaluation.ClusteringEvaluator(features_col="vec_in", prediction_col="idx_i"),
        {"vec_in": "vector", "idx_i": "index"}, one_row=True, any_size=True),
    "CrossValidator": Spec(lambda: fl.tuning.CrossValidator(
        estimator=R.LinearRegression(features_col="vec_in", label_col="num_a", max_iter=10),
        estimator_param_maps=[{"reg": 0.0}, {"reg": 0.1}], num_folds=2,
        evaluator=fl.evaluation.RegressionEvaluator(label_col="num_a")), {"vec_in": "vector", "num_a": "number"},
        fit_only=("num_a",)),
    "TrainValidationSplit": Spec(lambda: fl.tuning.TrainValidationSplit(
        estimator=R.LinearRegression(features_col="vec_in", label_col="num_a", max_iter=10),
        estimator_param_maps=[{"reg": 0.0}, {"reg": 0.1}],
        evaluator=fl.evaluation.RegressionEvaluator(label_col="num_a")), {"vec_in": "vector", "num_a": "number"},
        fit_only=("num_a",)),
    # feature estimators of vectors
    "KBinsDiscretizer": Spec(lambda: F.KBinsDiscretizer(input_col="vec_in", output_col="out", num_bins=3),
                             {"vec_in": "vector"}),
    "KBinsDiscretizer/uniform": Spec(lambda: F.KBinsDiscretizer(input_col="vec_in", output_col="out", num_bins=3,
                                                                strategy="uniform"), {"vec_in": "vector"}),
    "KBinsDiscretizer/kmeans": Spec(lambda: F.KBinsDiscretizer(input_col="vec_in", output_col="out", num_bins=3,
                                                               strategy="kmeans"), {"vec_in": "vector"}),
    # RobustScaler: the fit ignores NaN (as Flink ML), the model refuses it
    "RobustScaler": Spec(lambda: F.RobustScaler(input_col="vec_in", output_col="out", with_centering=True),
                         {"vec_in": "vector"}, fit_allows_nan=("vec_in",)),
    # the selectors' models only pick entries: NaN and infinities pass unchanged (flowlearn/feature/selectors.py)
    "VarianceThresholdSelector": Spec(lambda: F.VarianceThresholdSelector(input_col="vec_in", output_col="out"),
                                      {"vec_in": "vector"}, transform_allows_nan=("vec_in",)),
    "UnivariateFeatureSelector": Spec(lambda: F.UnivariateFeatureSelector(
        features_col="vec_in", label_col="lab_in", output_col="out", feature_type="continuous",
        label_type="categorical", selection_threshold=2), CATEGORIES, fit_only=("lab_in",),
        transform_allows_nan=("vec_in",)),
    "UnivariateFeatureSelector/fregression": Spec(lambda: F.UnivariateFeatureSelector(
        features_col="vec_in", label_col="num_a", output_col="out", feature_type="continuous",
        label_type="continuous", selection_mode="percentile", selection_threshold=0.5),
        {"vec_in": "vector", "num_a": "number"}, fit_only=("num_a",), transform_allows_nan=("vec_in",)),
    "UnivariateFeatureSelector/chi2": Spec(lambda: F.UnivariateFeatureSelector(
        features_col="vec_in", label_col="lab_in", output_col="out", feature_type="categorical",
        label_type="categorical", selection_threshold=2), CATEGORIES, fit_only=("lab_in",), discrete=True,
        transform_allows_nan=("vec_in",)),
    # VectorIndexer: with 'keep', a value not seen in fit is one more category, not an error
    "VectorIndexer": Spec(lambda: F.VectorIndexer(input_col="vec_in", output_col="out", max_categories=3,
                                                  handle_invalid="keep"), {"vec_in": "vector"}, discrete=True),
    "MinHashLSH": Spec(lambda: F.MinHashLSH(input_col="vec_in", output_col="out", num_hash_tables=2, seed=3),
                       {"vec_in": "vector"}, discrete=True, nonnegative=("vec_in",), any_size=True),
    "IDF": Spec(lambda: F.IDF(input_col="vec_in", output_col="out"), {"vec_in": "vector"}, discrete=True,
                nonnegative=("vec_in",)),
    # vector transformers (no fitted size: any size is a sound input, rows may differ in size)
    "Normalizer": Spec(lambda: F.Normalizer(input_col="vec_in", output_col="out", p=3.0), {"vec_in": "vector"},
                       any_size=True, ragged_ok=True),
    "DCT": Spec(lambda: F.DCT(input_col="vec_in", output_col="out"), {"vec_in": "vector"}, any_size=True,
                ragged_ok=True),
    "PolynomialExpansion": Spec(lambda: F.PolynomialExpansion(input_col="vec_in", output_col="out", degree=2),
                                {"vec_in": "vector"}, any_size=True, ragged_ok=True),
    "ElementwiseProduct": Spec(lambda: F.ElementwiseProduct(input_col="vec_in", output_col="out",
                                                            scaling_vec=[0.5, -1.0, 2.0]), {"vec_in": "vector"}),
    # VectorSlicer: any vector holding its indices (sizes >= 3 here) is sound, a shorter one is refused
    "VectorSlicer": Spec(lambda: F.VectorSlicer(input_col="vec_in", output_col="out", indices=[2, 0]),
                         {"vec_in": "vector"}, any_size=True, ragged_ok=True),
    "Interaction": Spec(lambda: F.Interaction(input_cols=["num_a", "vec_in"], output_col="out"),
                        {"num_a": "number", "vec_in": "vector"}, any_size=True, ragged_ok=True,
                        number_or_vector=("vec_in", "num_a")),
    "Binarizer": Spec(lambda: F.Binarizer(input_cols=["vec_in", "num_a"], output_cols=["o1", "o2"],
                                          thresholds=[0.0, 0.5]), {"vec_in": "vector", "num_a": "number"},
                      any_size=True, ragged_ok=True, number_or_vector=("vec_in", "num_a")),
    # text: a null string or token list gives a null output (flowlearn/feature/text.py)
    "Tokenizer": Spec(lambda: F.Tokenizer(input_col="txt_in", output_col="out"), {"txt_in": "text"},
                      allow_null=("txt_in",)),
    "RegexTokenizer": Spec(lambda: F.RegexTokenizer(input_col="txt_in", output_col="out", gaps=False,
                                                    pattern=r"\w+", min_token_length=2), {"txt_in": "text"},
                           allow_null=("txt_in",)),
    "StopWordsRemover": Spec(lambda: F.StopWordsRemover(input_cols=["tok_in"], output_cols=["out"]),
                             {"tok_in": "tokens"}, allow_null=("tok_in",)),
    "NGram": Spec(lambda: F.NGram(input_col="tok_in", output_col="out", n=2), {"tok_in": "tokens"},
                  allow_null=("tok_in",)),
    # term frequencies: a null list is refused naming the row; HashingTF hashes terms of any type
    "HashingTF": Spec(lambda: F.HashingTF(input_col="tok_in", output_col="out", num_features=16),
                      {"tok_in": "terms"}),
    "CountVectorizer": Spec(lambda: F.CountVectorizer(input_col="tok_in", output_col="out"), {"tok_in": "tokens"}),
    "SQLTransformer": Spec(lambda: F.SQLTransformer(statement="SELECT *, num_a * 2 AS out FROM __THIS__"),
                           {"num_a": "number"}, allow_nan=("num_a",), allow_null=("num_a",)),
    "RandomSplitter": Spec(lambda: F.RandomSplitter(weights=[2.0, 1.0], seed=5), {"num_a": "number"}, splits=True,
                           carried=("num_a",)),
    "Knn": Spec(lambda: C.Knn(features_col="vec_in", label_col="lab_in", k=3), {"vec_in": "vector",
                                                                               "lab_in": "number"}, fit_only=LABEL),
    "AgglomerativeClustering": Spec(lambda: fl.clustering.AgglomerativeClustering(
        features_col="vec_in", num_clusters=2, linkage="average"), {"vec_in": "vector"}, any_size=True),
    "Swing": Spec(lambda: fl.recommendation.Swing(user_col="user_k", item_col="item_k", min_user_behavior=1, k=3),
                  {"user_k": "key", "item_k": "key"}, one_row=True),
    # FPGrowth (as Spark): items are strings or numbers; a null row is no transaction, and predicts an empty array
    "FPGrowth": Spec(lambda: fl.recommendation.FPGrowth(items_col="tok_in", min_support=0.2, min_confidence=0.5),
                     {"tok_in": "terms"}, allow_null=("tok_in",)),
    "Pipeline": Spec(lambda: fl.Pipeline([F.VectorAssembler(input_cols=["num_a", "vec_in"], input_sizes=[1, 3],
                                                            output_col="asm"),
                                          F.StandardScaler(input_col="asm", output_col="scaled"),
                                          C.LogisticRegression(features_col="scaled", label_col="lab_in",
                                                               max_iter=10)]),
                     {"num_a": "number", "vec_in": "vector", "lab_in": "label"}, fit_only=LABEL,
                     also_named=("asm", "scaled")),
}

# Registered stages that do not take tables in fit/transform, or are covered through another.
NOT_TABLE_STAGES = {
    "flowlearn.stream.StreamModel": "runs only inside a stream job (tests/test_model_stream_plans.py)",
    "flowlearn.iteration.OnlineEstimator": "a base of the online estimators covered above",
    "flowlearn.builder.Graph": "a graph of the stages covered above (Pipeline is exercised)",
    "flowlearn.builder.GraphModel": "a graph of the stages covered above",
}


def _import_every_stage_module() -> list[str]:
    """Import every module of the package, so the registry holds every stage whatever ran before;
    the modules skipped because an optional dependency is missing (``name: why``)."""
    skipped = []
    for m in pkgutil.walk_packages(fl.__path__, "flowlearn."):
        if m.name == "flowlearn.testing" or m.name.startswith("flowlearn.testing."):   # test doubles (AddK)
            continue
        try:
            importlib.import_module(m.name)
        except ImportError as e:
            missing = getattr(e, "name", None) or ""
            if missing == "flowlearn" or missing.startswith("flowlearn."):
                raise      # a broken import inside the package is a failure, not an optional dependency
            skipped.append(f"{m.name}: {e}")
    return skipped


def test_every_registered_stage_has_a_spec():
    skipped = _import_every_stage_module()
    covered = set()
    for name, spec in SPECS.items():
        stage = spec.make()
        covered.add(type(stage))
        if spec.fit:
            covered.add(type(stage.fit(good_table(spec, 12, 0))))
    missing = [name for name, cls in _REGISTRY.items()
               if cls.__module__.startswith("flowlearn.") and cls.__module__ != "flowlearn.api"
               and not cls.__module__.startswith("flowlearn.testing.")   # test doubles (AddK)
               and cls not in covered and name not in NOT_TABLE_STAGES]
    assert not missing, f"registered stages without a property spec: {missing} (modules not imported: {skipped})"


# ---------------------------------------------------------------------------------------------
# good tables and bad ones

def good_table(spec: Spec, n: int, seed: int, size: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    size = spec.size if size is None else size
    cols: dict[str, Any] = {"other": [f"r{i}" for i in range(n)]}     # a column no stage reads
    for name, kind in spec.columns.items():
        if kind == "vector":
            x = rng.integers(0, 3, size=(n, size)).astype(float) if spec.discrete else rng.normal(size=(n, size))
            cols[name] = np.abs(x) if name in spec.nonnegative else x
        elif kind == "binary label":
            cols[name] = (np.arange(n) % 2).astype(float)
        elif kind in ("label", "class", "category"):
            cols[name] = (np.arange(n) % 3 % 2 + np.arange(n) % 3 // 2 * 2).astype(float)
        elif kind == "number" or kind == "hashed" and name.startswith("num"):
            cols[name] = rng.normal(size=n)
        elif kind == "weight":
            cols[name] = rng.uniform(0.5, 2.0, size=n)
        elif kind == "index":
            cols[name] = (np.arange(n) % 3).astype(float)
        elif kind in ("string", "hashed"):
            cols[name] = [["a", "b", "c"][i % 3] for i in range(n)]
        elif kind == "probabilities":
            p = rng.uniform(size=n)
            cols[name] = np.c_[1 - p, p]
        elif kind == "text":
            cols[name] = [TEXTS[i] for i in rng.integers(0, len(TEXTS), size=n)]
        elif kind in ("tokens", "terms"):
            cols[name] = pa.array([BASKETS[i] for i in rng.integers(0, len(BASKETS), size=n)], pa.list_(pa.string()))
        elif kind == "key":
            cols[name] = rng.integers(0, 4, size=n)
    return cols


TEXTS = ["The quick brown fox", "jumps over  the lazy dog.", "A b c, d!", "", "one"]
BASKETS = [["a", "b"], ["b", "c", "d"], ["a", "c"], ["a", "b", "c"], ["d"], []]


def _as_arrow(cols: dict) -> pa.Table:
    return fl.table(cols)


def run_stage(spec_name: str, fit_cols: dict | None, transform_cols: dict | None) -> dict:
    """In the child: fit the spec's stage on ``fit_cols`` (or on a good table when only
    ``transform_cols`` is bad), transform ``transform_cols``; a summary of the result."""
    spec = SPECS[spec_name]
    stage = spec.make()
    out: dict[str, Any] = {}
    if spec.fit:
        model = stage.fit(_as_arrow(fit_cols) if fit_cols is not None else _as_arrow(good_table(spec, 12, 1)))
        out["model_data_finite"] = all(_finite(t) for s in model.walk() for t in (getattr(s, "_model_data", None)
                                                                                 or []))
    else:
        model = stage
    if transform_cols is not None:
        t = _as_arrow(transform_cols)
        res = model.transform(t)
        parts = res if isinstance(res, tuple) else (res,)
        res = parts[0]
        new = [c for c in res.column_names if c not in t.column_names]
        out.update(rows_in=t.num_rows, rows_out=sum(p.num_rows for p in parts) if spec.splits else res.num_rows,
                   outputs={c: _values(res.column(c)) for c in new})
    return out


def _values(col: pa.ChunkedArray):
    if is_vector_type(col.type):
        return to_numpy(col, "out").tolist() if len(col) else []
    return col.to_pylist()


def _finite(t: pa.Table) -> bool:
    for c in t.column_names:
        col = t.column(c)
        if is_vector_type(col.type) and not is_sparse(col.type) and len(col):
            if not np.isfinite(to_numpy(col, c)).all():
                return False
        elif pa.types.is_floating(col.type) and not np.isfinite(col.to_numpy(zero_copy_only=False)).all():
            return False
    return True


def _any_nan(outputs: dict) -> bool:
    for vals in outputs.values():
        try:
            arr = np.asarray([v for v in vals if v is not None and not isinstance(v, str)], dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if np.isnan(arr).any():
            return True
    return False


def _spec_cases(kinds_of: Callable[[Spec], list[str]], xfails: dict | None = None):
    cases = []
    for name, spec in SPECS.items():
        for kind in kinds_of(spec):
            mark = (xfails or {}).get((name, kind)) or (xfails or {}).get(("*", kind))
            cases.append(pytest.param(name, kind, marks=[mark] if mark else [], id=f"{name}-{kind}"))
    return cases


def _phases(spec: Spec) -> list[str]:
    return ["fit", "transform"] if spec.fit else ["transform"]


def _call(spec_name: str, phase: str, cols: dict):
    """Run the bad table in ``phase`` (fit: the estimator; transform: a model fitted on good data)."""
    if phase == "fit":
        return ISOLATED(run_stage, spec_name, cols, None)
    return ISOLATED(run_stage, spec_name, None, cols)


def check_sound(o, spec_name, phase, cols, finite_inputs=True):
    """An ok outcome: as many rows out as in; for finite inputs finite model data and no NaN in
    the outputs (an output beyond float64, such as a margin of 1e308-sized features, is infinite)."""
    if o.kind != "ok":
        return
    r = o.value
    if "rows_in" in r and not SPECS[spec_name].one_row:
        assert r["rows_out"] == r["rows_in"], (f"{r['rows_in']} rows in, {r['rows_out']} out", cols)
    if finite_inputs:
        assert r.get("model_data_finite", True), ("non-finite model data from finite input", cols)
        assert SPECS[spec_name].nan_ok or not _any_nan(r.get("outputs", {})), ("NaN output from finite input", r,
                                                                               cols)


# ---------------------------------------------------------------------------------------------
# the properties

def _columns_of(spec: Spec, kinds: tuple[str, ...]) -> list[str]:
    return [c for c, k in spec.columns.items() if k in kinds]


tables = st.tuples(st.integers(4, 12), st.integers(0, 2 ** 16))


# Defects found in stages this suite does not own, reported with a reproduction rather than fixed here:
# (spec, test, phase) -> what is wrong. Those cases are expected failures (not strict: they pass once fixed).
REPORTED: dict[tuple[str, str, str], str] = {}


def _phase_params(test: str, reading: bool = False) -> list:
    """``(spec, phase)`` cases of ``test`` (``reading``: only phases where the stage reads a column)."""
    return [pytest.param(n, p, id=f"{n}-{p}", marks=[pytest.mark.xfail(reason=REPORTED[n, test, p], strict=False)]
                         if (n, test, p) in REPORTED else [])
            for n, s in SPECS.items() for p in _phases(s) if s.read_in(p) or not reading]


@pytest.mark.parametrize("spec_name, phase", _phase_params("test_missing_column", reading=True))
@EXAMPLES
@given(data=st.data())
def test_missing_column(spec_name, phase, data):
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    gone = data.draw(st.sampled_from(spec.read_in(phase)))
    del cols[gone]
    check(_call(spec_name, phase, cols), [spec.names(gone)], ok=False, context=(phase, gone))


WRONG_TYPES = {
    "vector": [["a", "b"], [1.5, 2.5], [True, False], [b"x", b"y"], [{"a": 1.0}, {"a": 2.0}], [["a"], ["b"]]],
    "number": [["a", "b"], [[1.0, 2.0], [3.0, 4.0]], [b"x", b"y"], [{"a": 1.0}, {"a": 2.0}]],
    "hashed": [[[1.0], [2.0]], [b"x", b"y"], [{"a": 1.0}, {"a": 2.0}]],     # numbers and strings are valid
    "label": [["a", "b"], [[1.0], [2.0]], [b"x", b"y"]],
    "class": [["a", "b"], [[1.0], [2.0]], [b"x", b"y"]],
    "category": [["a", "b"], [[1.0], [2.0]], [b"x", b"y"]],
    "binary label": [["a", "b"], [[1.0], [2.0]], [b"x", b"y"]],
    "weight": [["a", "b"], [[1.0], [2.0]]],
    "index": [["a", "b"], [[1.0], [2.0]], [{"a": 1.0}, {"a": 2.0}]],
    "string": [[[1.0], [2.0]], [{"a": 1.0}, {"a": 2.0}], [["a"], ["b"]]],
    "probabilities": [["a", "b"], [[1.0, "x"], [2.0, "y"]]],
    "text": [[1.5, 2.5], [["a"], ["b"]], [{"a": 1.0}, {"a": 2.0}], [b"x", b"y"]],
    "tokens": [["a b", "c"], [1.5, 2.5], [[1.0], [2.0]], [{"a": 1.0}, {"a": 2.0}]],
    "terms": [["a b", "c"], [1.5, 2.5], [{"a": 1.0}, {"a": 2.0}]],      # lists of numbers are terms too
    "key": [[[1.0], [2.0]], [{"a": 1.0}, {"a": 2.0}], [1.5, 2.5]],     # ids are integers
}


@pytest.mark.parametrize("spec_name, phase", _phase_params("test_wrong_type", reading=True))
@EXAMPLES
@given(data=st.data())
def test_wrong_type(spec_name, phase, data):
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    col = data.draw(st.sampled_from(spec.read_in(phase)))
    pattern = data.draw(st.sampled_from([p for p in WRONG_TYPES[spec.columns[col]]
                                         if not (col in spec.number_or_vector and _numeric(p))]))
    cols[col] = (pattern * n)[:n]
    check(_call(spec_name, phase, cols), [spec.names(col)], ok=False, context=(phase, col, pattern))


def _numeric(pattern: list) -> bool:
    """A pattern of numbers (booleans too, as numeric columns take them) or of vectors of numbers."""
    return all(isinstance(v, (float, bool)) or isinstance(v, list) and all(isinstance(x, float) for x in v)
               for v in pattern)


def _set_rows(values: Any, rows: list[int], new: Any) -> Any:
    if isinstance(values, np.ndarray):
        values = values.astype(float).copy() if values.ndim == 1 else values.copy()
    else:
        values = list(values)
    for r in rows:
        if isinstance(values, np.ndarray) and values.ndim == 2:
            values[r, :] = new
        else:
            values[r] = new
    return values


bad_rows = st.lists(st.integers(0, 11), min_size=1, max_size=3, unique=True)


@pytest.mark.parametrize("spec_name, phase", _phase_params("test_nulls", reading=True))
@EXAMPLES
@given(data=st.data())
def test_nulls(spec_name, phase, data):
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    col = data.draw(st.sampled_from(spec.read_in(phase)))
    rows = sorted({r % n for r in data.draw(bad_rows)})
    old = cols[col]
    vals = old.tolist() if isinstance(old, np.ndarray) else old.to_pylist() if isinstance(old, pa.Array) else old
    cols[col] = [None if i in rows else v for i, v in enumerate(vals)]
    if isinstance(old, pa.Array):
        cols[col] = pa.array(cols[col], old.type)
    o = _call(spec_name, phase, cols)
    allowed = col in spec.allow_null or (phase == "fit" and col in spec.fit_allows_null)
    check(o, [spec.names(col), f"row {rows[0]}"], ok=allowed, context=(phase, col, rows))
    check_sound(o, spec_name, phase, cols, finite_inputs=False)


@pytest.mark.parametrize("spec_name, phase", _phase_params("test_non_finite"))
@EXAMPLES
@given(data=st.data())
def test_non_finite(spec_name, phase, data):
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    numeric = [c for c in spec.read_in(phase) if isinstance(cols[c], np.ndarray) and spec.columns[c] != "key"]
    if not numeric:
        return
    col = data.draw(st.sampled_from(numeric))
    rows = sorted({r % n for r in data.draw(bad_rows)})
    value = data.draw(st.sampled_from(NON_FINITE))
    cols[col] = _set_rows(cols[col], rows, value)
    allowed = (col in spec.allow_nan or (col in spec.allow_inf and not math.isnan(value))
               or col in {"fit": spec.fit_allows_nan, "transform": spec.transform_allows_nan}[phase]
               and (math.isnan(value) or phase == "transform"))
    o = _call(spec_name, phase, cols)
    check(o, [spec.names(col), f"row {rows[0]}"], ok=allowed, context=(phase, col, rows, value))
    check_sound(o, spec_name, phase, cols, finite_inputs=False)


@pytest.mark.parametrize("spec_name, phase", _phase_params("test_extreme_finite_values"))
@EXAMPLES
@given(data=st.data())
def test_extreme_finite_values(spec_name, phase, data):
    """Huge and tiny finite values: a sound result (finite outputs) or an error naming the column."""
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    numeric = [c for c in spec.read_in(phase) if spec.columns[c] in ("vector", "number", "weight", "hashed")
               and isinstance(cols[c], np.ndarray)]
    if not numeric:
        return
    col = data.draw(st.sampled_from(numeric))
    rows = sorted({r % n for r in data.draw(bad_rows)})
    value = data.draw(st.sampled_from([v for v in EXTREME_FLOATS if not (col in spec.nonnegative and v < 0)
                                       and not (spec.columns[col] == "weight" and v <= 0)
                                       and not (spec.discrete and v != int(v))]))
    cols[col] = _set_rows(cols[col], rows, value)
    o = _call(spec_name, phase, cols)
    check(o, [spec.names(col)], context=(phase, col, rows, value))
    check_sound(o, spec_name, phase, cols)


@pytest.mark.parametrize("spec_name, phase", _phase_params("test_no_rows"))
def test_no_rows(spec_name, phase):
    """An empty table: an empty result, or an error naming the stage or a column."""
    spec = SPECS[spec_name]
    cols = {c: (np.zeros((0, spec.size)) if k in ("vector",) else np.zeros((0, 2)) if k == "probabilities"
                else pa.array([], pa.string()) if k in ("string", "text")
                else pa.array([], pa.list_(pa.string())) if k in ("tokens", "terms")
                else pa.array([], pa.int64()) if k == "key" else np.zeros(0))
            for c, k in spec.columns.items()}
    o = _call(spec_name, phase, cols)
    stages = tuple(type(s).__name__ for s in spec.make().walk())
    check(o, [stages + tuple(w for c in cols for w in spec.names(c))], context=phase)
    if o.kind == "ok" and phase == "transform" and not spec.one_row:
        assert o.value["rows_out"] == 0


@pytest.mark.parametrize("spec_name", [n for n, s in SPECS.items() if "vector" in s.columns.values()])
@EXAMPLES
@given(data=st.data())
def test_wrong_vector_size(spec_name, data):
    """A model fitted on vectors of size 3 refuses other sizes (a stage with no fitted size takes any size or
    refuses it clearly); ragged vectors are refused in fit, and in transform by a stage taking the vectors as one
    matrix (a statistics test, an evaluator)."""
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    size = data.draw(st.sampled_from([0, 1, 2, 4, 7]))
    cols = good_table(spec, n, seed, size=size)
    col = data.draw(st.sampled_from(_columns_of(spec, ("vector",))))
    sparse = data.draw(st.booleans())
    if sparse:
        cols[col] = from_csr(__import__("scipy.sparse", fromlist=["csr_matrix"]).csr_matrix(cols[col]))
    o = _call(spec_name, "transform", cols)
    check(o, [spec.names(col)], ok=spec.any_size, context=(size, sparse))
    check_sound(o, spec_name, "transform", cols)
    ragged = good_table(spec, n, seed)
    row = data.draw(st.integers(1, n - 1))
    vecs = [list(v) for v in ragged[col]]
    vecs[row] = vecs[row] + [1.0]
    ragged[col] = pa.array(vecs, pa.list_(pa.float64()))
    phase = "fit" if spec.fit else "transform"
    o = _call(spec_name, phase, ragged)
    check(o, [spec.names(col), f"row {row}"], ok=spec.ragged_ok and not spec.fit, context=row)
    check_sound(o, spec_name, phase, ragged)


@pytest.mark.parametrize("spec_name, phase", [pytest.param(n, p, id=f"{n}-{p}") for n, s in SPECS.items()
                                              if "vector" in s.columns.values() for p in _phases(s)])
@EXAMPLES
@given(data=st.data())
def test_sparse_and_dense_agree(spec_name, phase, data):
    """The same vectors as a sparse column give the same result as dense (or a clear refusal)."""
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    col = data.draw(st.sampled_from(_columns_of(spec, ("vector",))))
    dense = cols[col]
    zeros = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, spec.size - 1)), max_size=8))
    for r, c in zeros:
        dense[r, c] = 0.0
    cols[col] = dense
    sparse_cols = dict(cols, **{col: from_csr(__import__("scipy.sparse", fromlist=["x"]).csr_matrix(dense))})
    a = _call(spec_name, phase, cols)
    b = _call(spec_name, phase, sparse_cols)
    check(a, [spec.names(col)], context=phase)
    if check(b, [spec.names(col)], context=(phase, "sparse")) == "ok" and a.kind == "ok" and phase == "transform":
        for name, va in a.value["outputs"].items():
            vb = b.value["outputs"][name]
            if va and isinstance(va[0], (float, int, list)) and not isinstance(va[0], bool):
                np.testing.assert_allclose(np.asarray(vb, dtype=float), np.asarray(va, dtype=float),
                                           rtol=1e-6, atol=1e-9, err_msg=f"output {name}, sparse vs dense")
            else:
                assert va == vb, name


def _raw_sparse_cols(cols: dict, col: str, indices: list[list[int]], size: int) -> dict:
    storage = pa.StructArray.from_arrays(
        [pa.array([size] * len(indices), pa.int32()), pa.array(indices, pa.list_(pa.int32())),
         pa.array([[1.0] * len(i) for i in indices], pa.list_(pa.float64()))],
        fields=list(SPARSE_VECTOR.storage_type))
    return dict(cols, **{col: pa.ExtensionArray.from_storage(SPARSE_VECTOR, storage)})


@pytest.mark.parametrize("spec_name, phase", [pytest.param(n, p, id=f"{n}-{p}") for n, s in SPECS.items()
                                              if "vector" in s.columns.values() for p in _phases(s)])
@EXAMPLES
@given(data=st.data())
def test_sparse_storage_with_bad_indices(spec_name, phase, data):
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    col = data.draw(st.sampled_from(_columns_of(spec, ("vector",))))
    indices = [[0, 1] for _ in range(n)]
    row = data.draw(st.integers(0, n - 1))
    indices[row] = data.draw(st.sampled_from([[0, 7], [0, 100000], [-2, 0], [2, 0], [1, 1]]))
    o = _call(spec_name, phase, _raw_sparse_cols(cols, col, indices, spec.size))
    check(o, [spec.names(col), f"row {row}"], ok=False, context=(phase, indices))


LABELS = {
    "label": [-1.0, 0.5, 2.5, 1e9],          # class indices 0..k-1
    "class": [0.5, -2.5],                    # any integer-valued number (NaiveBayes)
    "binary label": [-1.0, 0.5, 2.0, 3.0],
}


@pytest.mark.parametrize("spec_name", [n for n, s in SPECS.items() if set(LABELS) & set(s.columns.values()) and s.fit])
@EXAMPLES
@given(data=st.data())
def test_bad_labels(spec_name, data):
    """Labels a classifier cannot take (negative, fractional, a third class for a binary one)."""
    spec = SPECS[spec_name]
    n, seed = data.draw(tables)
    cols = good_table(spec, n, seed)
    col = _columns_of(spec, tuple(LABELS))[0]
    rows = sorted({r % n for r in data.draw(bad_rows)})
    value = data.draw(st.sampled_from(LABELS[spec.columns[col]]))
    cols[col] = _set_rows(cols[col], rows, value)
    o = _call(spec_name, "fit", cols)
    check(o, [spec.names(col), f"row {rows[0]}"], ok=False, context=(rows, value))


# ---------------------------------------------------------------------------------------------
# regressions found by the properties above

def _huge(n=6, size=3, row=2, index=1, value=1e300):
    x = np.random.default_rng(0).normal(size=(n, size))
    x[row, index] = value
    return x


@pytest.mark.parametrize("make", [
    lambda: fl.clustering.KMeans(features_col="vec_in", k=2),
    lambda: F.StandardScaler(input_col="vec_in", output_col="out"),
    lambda: F.OnlineStandardScaler(input_col="vec_in", output_col="out"),
    lambda: fl.clustering.OnlineKMeans(features_col="vec_in", k=2),
    lambda: C.OnlineLogisticRegression(features_col="vec_in", label_col="lab_in"),
    lambda: C.OnlineLearning(_lr_pipeline(), label_col="lab_in"),
], ids=["KMeans", "StandardScaler", "OnlineStandardScaler", "OnlineKMeans", "OnlineLogisticRegression",
        "OnlineLearning"])
def test_fit_refuses_values_whose_squares_overflow(make):
    """Was: a model of NaN/inf refused by set_model_data ("model data ... holds NaN or infinity")
    without the input column, or a RuntimeWarning and a meaningless model."""
    t = {"vec_in": _huge(), "lab_in": [0.0, 1.0] * 3}
    with pytest.raises(ValueError, match=r"column 'vec_in' .*1e\+300 at row 2, index 1"):
        make().fit(t)


def test_imputer_mean_refuses_a_sum_beyond_float64():
    """Was: a surrogate of inf refused as "model data: column 'surrogate' has NaN or infinity"."""
    with pytest.raises(ValueError, match=r"column 'num_a' .*1e\+308 at row 0; .*mean overflows"):
        F.Imputer(input_cols=["num_a"], output_cols=["o"]).fit({"num_a": [1e308, 1e308, np.nan]})
    assert F.Imputer(input_cols=["num_a"], output_cols=["o"], strategy="median").fit(
        {"num_a": [1e308, 1e308, np.nan]}).transform({"num_a": [np.nan]}).column("o").to_pylist() == [1e308]


@pytest.mark.parametrize("phase", ["fit", "transform"])
def test_one_hot_encoder_names_an_infinite_index(phase):
    """Was: OverflowError: cannot convert float infinity to integer."""
    enc = F.OneHotEncoder(input_cols=["idx_i"], output_cols=["oh"])
    bad = {"idx_i": [0.0, 1.0, math.inf]}
    with pytest.raises(ValueError, match=r"column 'idx_i' .*inf.*row 2"):
        enc.fit(bad) if phase == "fit" else enc.fit({"idx_i": [0.0, 1.0, 2.0]}).transform(bad)


def test_integers_beyond_2_to_53_are_numbers():
    """Was: pyarrow's ArrowInvalid 'Integer value 9223372036854775807 not in range' (no column) in
    VectorAssembler, FeatureHasher and numeric columns with nulls; fl.table refused the int among floats."""
    big = 2 ** 63 - 1
    t = fl.table({"num_a": [big, 1], "vec_in": [[1.0, 2.0, 3.0]] * 2})
    out = F.VectorAssembler(input_cols=["num_a", "vec_in"], input_sizes=[1, 3], output_col="o").transform(t)
    assert to_numpy(out.column("o"))[0].tolist() == [float(big), 1.0, 2.0, 3.0]
    out = F.FeatureHasher(input_cols=["num_a"], num_features=4, output_col="o").transform(t)
    assert float(big) in out.column("o")[0].as_py()["values"]
    imputed = F.Imputer(input_cols=["num_a"], output_cols=["o"], strategy="median").fit(
        {"num_a": pa.array([big, None, big])}).transform({"num_a": pa.array([None], pa.int64())})
    assert imputed.column("o").to_pylist() == [float(big)]
    assert fl.table({"a": [big, 0.5, None]}).column("a").to_pylist() == [float(big), 0.5, None]


def test_huge_finite_values_do_not_warn():
    """A NaN/inf check summed 1e308s and printed NumPy's 'overflow encountered in reduce'."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.MinMaxScaler(input_col="vec_in", output_col="out").fit({"vec_in": _huge(value=1e308) * 1.5})


def test_logistic_regression_refuses_a_label_asking_for_too_many_classes():
    """Was: label 1e9 made a model of a billion classes: 30 GiB allocated, MemoryError or the OOM killer."""
    with pytest.raises(ValueError, match=r"column 'lab_in' .*1000000000.0 at row 3; .*at most 65536"):
        C.LogisticRegression(features_col="vec_in", label_col="lab_in").fit(
            {"vec_in": np.eye(4), "lab_in": [0.0, 1.0, 2.0, 1e9]})


@pytest.mark.filterwarnings("ignore:overflow encountered")     # the row path's NumPy dot overflows first
@pytest.mark.parametrize("labels", [[0.0, 1.0] * 3, [0.0, 1.0, 2.0] * 2], ids=["binomial", "multinomial"])
def test_logistic_regression_scores_that_overflow_are_refused(labels):
    """Was: NaN probabilities (softmax of infinite scores) for features near 1e308, batch and row path."""
    model = C.LogisticRegression(features_col="vec_in", label_col="lab_in").fit(
        {"vec_in": np.random.default_rng(0).normal(size=(6, 3)), "lab_in": labels})
    x = np.full(3, 1e308)
    with pytest.raises(ValueError, match=r"column 'vec_in' .*so large at row 1 that the model's scores overflow"):
        model.transform({"vec_in": [np.zeros(3), x]})
    with pytest.raises(ValueError, match=r"column 'vec_in' .*scores overflow"):
        fl.LocalPredictor(model).predict({"vec_in": x})


# ---------------------------------------------------------------------------------------------
# parameters: junk values are refused naming the parameter, or the stage still behaves

JUNK_PARAMS = [math.nan, math.inf, -math.inf, -1, 0, 2 ** 63 - 1, 2 ** 63, 10 ** 30, 1e308, -1e308, 5e-324, 2.5, "",
               "x", [], [""], True, {"a": 1}, None, 10 ** 9]

# Absurd but accepted values whose fit still ends in a NaN model refused without naming the
# parameter, or that cost the memory they ask for (left as found; see the reasons).
_PARAM_LEFT = {
    ("LinearSVC", "reg", 5e-324): "the dual solver's C = 1 / (reg * n) overflows: 'LinearSVCModel model data: column "
                                  "'coefficient' has NaN or infinity'",
    ("OnlineLogisticRegression", "alpha", 5e-324): "FTRL divides by alpha: 'model data has NaN or infinite "
                                                   "coefficients'",
    ("OnlineLearning", "alpha", 5e-324): "FTRL divides by alpha: NaN coefficients, message without 'alpha'",
    ("OnlineLearning", "reg", 1e308): "reg * weights overflows: NaN coefficients, message without 'reg'",
    ("OnlineLearning", "beta", 1e308): "beta overflows the FTRL update: NaN coefficients, message without 'beta'",
    ("OnlineKMeans", "k", 2 ** 63 - 1): "k random centroids are allocated up front (k x dim doubles): NumPy's "
                                        "'array is too big'",
    ("OnlineKMeans", "k", 10 ** 9): "k random centroids are allocated up front: 24 GB, a hang",
}


PARAMS = [pytest.param(name, param, id=f"{name}-{param}") for name, spec in SPECS.items()
          for param in type(spec.make()).params() if not param.endswith(("_col", "_cols")) and param != "splits_array"]


def _check_param(spec_name, param, value):
    spec = SPECS[spec_name]
    names = [(f"'{param}'", f"{param}=", f"{param} (")]
    if check(outcome(lambda: spec.make().set(**{param: value})), names, context=value) == "ok":
        check(ISOLATED(run_params, spec_name, param, value), names, context=value)


@pytest.mark.parametrize("spec_name, param", PARAMS)
@EXAMPLES
@given(value=st.sampled_from(JUNK_PARAMS))
def test_parameter_values(spec_name, param, value):
    assume(not isinstance(value, (int, float)) or (spec_name, param, value) not in _PARAM_LEFT)
    _check_param(spec_name, param, value)


@pytest.mark.parametrize("spec_name, param, value", [
    pytest.param(*key, id=f"{key[0]}-{key[1]}={key[2]!r}", marks=pytest.mark.xfail(
        strict=True, run=key[2] != 10 ** 9,     # 10**9 centroids would allocate 24 GB on a shared machine
        reason=f"not fixed: {key[0]}({key[1]}={key[2]!r}): {why}")) for key, why in _PARAM_LEFT.items()])
def test_parameter_values_left(spec_name, param, value):
    _check_param(spec_name, param, value)


def run_params(spec_name: str, param: str, value: Any) -> dict:
    """In the child: the spec's stage with one parameter set, fitted and applied to good data."""
    spec = SPECS[spec_name]
    stage = spec.make().set(**{param: value})
    good = _as_arrow(good_table(spec, 12, 1))
    model = stage.fit(good) if spec.fit else stage
    res = model.transform(good)
    res = res[0] if isinstance(res, tuple) else res
    return {"rows": res.num_rows}


@pytest.mark.parametrize("make, param, value, was", [
    (lambda **p: fl.clustering.KMeans(features_col="vec_in", **p), "seed", -1, "NumPy: expected non-negative integer"),
    (lambda **p: C.OnlineLogisticRegression(features_col="vec_in", label_col="lab_in", **p), "alpha", math.inf,
     "ZeroDivisionError"),
    (lambda **p: C.OnlineLogisticRegression(features_col="vec_in", label_col="lab_in", **p), "global_batch_size",
     10 ** 30, "OverflowError: int too big to convert"),
    (lambda **p: fl.regression.LinearRegression(features_col="vec_in", label_col="lab_in", **p), "reg", math.inf,
     "LinAlgError: SVD did not converge"),
    (lambda **p: F.FeatureHasher(input_cols=["num_a"], output_col="out", **p), "num_features", 1e308,
     "OverflowError: Python int too large to convert to C long"),
    (lambda **p: F.OnlineStandardScaler(input_col="vec_in", output_col="out", windows="processing_time", **p),
     "window_seconds", 1e308, "OverflowError: cannot convert float infinity to integer"),
], ids=["seed", "alpha", "global_batch_size", "reg", "num_features", "window_seconds"])
def test_parameter_regressions(make, param, value, was):
    """Values a parameter cannot mean are refused naming it (each was the raw error in ``was``)."""
    t = {"vec_in": np.random.default_rng(0).normal(size=(6, 3)), "lab_in": [0.0, 1.0] * 3, "num_a": np.arange(6.0)}
    with pytest.raises(ValueError, match=f"parameter '{param}' = "):
        stage = make(**{param: value})
        model = stage.fit(t) if isinstance(stage, Estimator) else stage
        model.transform(t)
