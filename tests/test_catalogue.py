"""The catalogue is complete (issue 12): every stage issue 12 lists, and the 21 names flowlearn had
before it, is exported under its family (``fl.feature.X``, ``fl.classification.X``, ...), is
registered (so ``fl.load`` finds it), has a case in ``tests/conformance_cases/`` (where
``tests/test_conformance.py`` runs ``check_stage`` on it), has a docs page and has an oracle test.

``ORACLES`` points every stage at the test functions that compare it with an independent
implementation; each entry names the tokens the function's source must contain (the oracle
itself: ``sklearn``, ``scipy``, ``pyspark``, ``river``, a published-vector constant, and for a
test shared by several stages the stage's name), so an entry cannot silently point at a test
that checks the code against itself.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from functools import lru_cache
from pathlib import Path

import pytest

import flowlearn as fl
from flowlearn.api import _REGISTRY

TESTS = Path(__file__).parent
DOCS = TESTS.parent / "docs" / "stages"

# --- the names ---------------------------------------------------------------------------------

# Issue 12's list, by family.
ISSUE_12 = {
    "classification": ["Knn", "NaiveBayes"],
    "clustering": ["AgglomerativeClustering"],
    "feature": ["Binarizer", "CountVectorizer", "DCT", "ElementwiseProduct", "HashingTF", "IDF", "Interaction",
                "KBinsDiscretizer", "MinHashLSH", "NGram", "Normalizer", "PolynomialExpansion", "RandomSplitter",
                "RegexTokenizer", "RobustScaler", "SQLTransformer", "StopWordsRemover", "Tokenizer",
                "UnivariateFeatureSelector", "VarianceThresholdSelector", "VectorIndexer", "VectorSlicer"],
    "recommendation": ["Swing", "FPGrowth"],
    "stats": ["ANOVATest", "ChiSqTest", "FValueTest"],
    "evaluation": ["MulticlassClassificationEvaluator", "RegressionEvaluator", "ClusteringEvaluator"],
    "tuning": ["ParamGridBuilder", "CrossValidator", "TrainValidationSplit"],
}

# The 21 names of the README's catalogue before issue 12 (NaiveBayes is listed above as well:
# issue 12 extends it beyond categorical features).
BEFORE_ISSUE_12 = {
    "feature": ["StandardScaler", "MinMaxScaler", "MaxAbsScaler", "OneHotEncoder", "StringIndexer",
                "IndexToStringModel", "VectorAssembler", "FeatureHasher", "Imputer", "Bucketizer",
                "OnlineStandardScaler"],
    "classification": ["LogisticRegression", "NaiveBayes", "LinearSVC", "OnlineLogisticRegression", "OnlineLearning"],
    "regression": ["LinearRegression"],
    "clustering": ["KMeans", "OnlineKMeans"],
    "evaluation": ["BinaryClassificationEvaluator", "StreamingEvaluator"],
}

# Exported names that are not stages (so not registered, no conformance case), and why.
NOT_STAGES = {
    "ParamGridBuilder": "builds the param maps a CrossValidator / TrainValidationSplit takes",
    "StreamingEvaluator": "a windowed metric accumulator fed batch by batch, not a Stage",
}

# Pages shared by several stages: the page's title must name each of them.
SHARED_PAGES = {"ParamGridBuilder": "tuning.md", "CrossValidator": "tuning.md", "TrainValidationSplit": "tuning.md"}

FAMILY = {name: family for names in (BEFORE_ISSUE_12, ISSUE_12) for family, ns in names.items() for name in ns}
ALL = sorted(FAMILY)
NEW = sorted({n for ns in ISSUE_12.values() for n in ns})
OLD = sorted({n for ns in BEFORE_ISSUE_12.values() for n in ns})

# stage -> [(test module, test function, tokens its source must contain), ...]
ORACLES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    # issue 12
    "Knn": [("test_knn", "test_matches_sklearn_brute", ("sklearn",))],
    "NaiveBayes": [("test_naive_bayes", "test_matches_sklearn_categorical_nb_on_digits", ("CategoricalNB",)),
                   ("test_naive_bayes", "test_multinomial_matches_sklearn_multinomial_nb_on_digits",
                    ("MultinomialNB",)),
                   ("test_naive_bayes", "test_gaussian_matches_sklearn_gaussian_nb", ("GaussianNB",))],
    "AgglomerativeClustering": [("test_agglomerative_clustering", "test_labels_equal_sklearn", ("sklearn",)),
                                ("test_agglomerative_clustering", "test_merge_tree_equals_scipy", ("scipy",))],
    "Binarizer": [("test_vector_features", "test_binarizer_equals_sklearn", ("sklearn",))],
    "CountVectorizer": [("test_text_features", "test_count_vectorizer_equals_sklearn_on_real_text", ("sklearn",)),
                        ("test_text_features", "test_count_vectorizer_and_idf_equal_spark_mllib",
                         ("CountVectorizer", "spark"))],
    "DCT": [("test_vector_features", "test_dct_equals_scipy_ortho", ("scipy",))],
    "ElementwiseProduct": [("test_vector_features", "test_vector_stages_equal_spark_mllib",
                            ("ElementwiseProduct", "pyspark"))],
    "HashingTF": [("test_text_features", "test_hashing_tf_differs_from_spark_by_its_hash", ("HashingTF", "pyspark"))],
    "IDF": [("test_text_features", "test_idf_equals_sklearn_tfidf_on_real_text", ("sklearn",)),
            ("test_text_features", "test_count_vectorizer_and_idf_equal_spark_mllib", ("IDF", "spark"))],
    "Interaction": [("test_vector_features", "test_vector_stages_equal_spark_mllib", ("Interaction", "pyspark"))],
    "KBinsDiscretizer": [("test_kbins_discretizer", "test_uniform_and_quantile_match_sklearn", ("sklearn",))],
    "MinHashLSH": [("test_minhash_lsh", "test_spark_minhash_hashes_neighbours_and_join", ("pyspark",))],
    "NGram": [("test_text_features", "test_text_stages_equal_spark_mllib", ("NGram", "pyspark"))],
    "Normalizer": [("test_vector_features", "test_normalizer_equals_sklearn", ("sklearn",))],
    "PolynomialExpansion": [("test_vector_features", "test_polynomial_expansion_equals_sklearn_reordered",
                             ("sklearn",))],
    # a random split has no reference output: its proportions and row independence are checked with
    # SciPy's chi-squared tests
    "RandomSplitter": [("test_random_splitter", "test_proportions_follow_the_weights", ("scipy.stats",))],
    "RegexTokenizer": [("test_text_features", "test_text_stages_equal_spark_mllib", ("RegexTokenizer", "pyspark"))],
    "RobustScaler": [("test_robust_scaler", "test_matches_sklearn", ("sklearn",)),
                     ("test_robust_scaler", "test_spark_robust_scaler", ("spark",))],
    "SQLTransformer": [("test_sql_transformer", "test_group_by_matches_pandas", ("pandas",))],
    "StopWordsRemover": [("test_text_features", "test_text_stages_equal_spark_mllib", ("StopWordsRemover", "pyspark"))],
    "Tokenizer": [("test_text_features", "test_text_stages_equal_spark_mllib", ("Tokenizer", "pyspark"))],
    "UnivariateFeatureSelector": [("test_feature_selectors", "test_kernels_match_sklearn_and_scipy", ("sklearn",)),
                                  ("test_feature_selectors", "test_spark_univariate_feature_selector", ("spark",))],
    "VarianceThresholdSelector": [("test_feature_selectors", "test_variance_threshold_matches_sklearn", ("sklearn",))],
    "VectorIndexer": [("test_vector_indexer", "test_spark_vector_indexer", ("spark",))],
    "VectorSlicer": [("test_vector_features", "test_vector_stages_equal_spark_mllib", ("VectorSlicer", "pyspark"))],
    "Swing": [("test_swing", "test_flink_ml_published_output", ("FLINK_EXPECTED",))],
    "FPGrowth": [("test_fpgrowth", "test_matches_spark", ("_spark_fit",))],
    "ANOVATest": [("test_stats", "test_anova_matches_f_classif_and_f_oneway", ("f_oneway",))],
    "ChiSqTest": [("test_stats", "test_chisq_two_by_two_without_yates", ("scipy",))],
    "FValueTest": [("test_stats", "test_fvalue_matches_f_regression", ("f_regression",))],
    "MulticlassClassificationEvaluator": [("test_multiclass_evaluator", "test_every_metric_matches_sklearn",
                                           ("sklearn",))],
    "RegressionEvaluator": [("test_regression_evaluator", "test_metrics_match_sklearn", ("sklearn",))],
    "ClusteringEvaluator": [("test_clustering_evaluator", "test_matches_sklearn_silhouette", ("silhouette",))],
    # the grid the builder makes is the one GridSearchCV is given (linreg_cv builds it)
    "ParamGridBuilder": [("test_tuning", "test_cross_validator_matches_grid_search_ridge",
                          ("linreg_cv", "GridSearchCV"))],
    "CrossValidator": [("test_tuning", "test_cross_validator_matches_grid_search_ridge", ("GridSearchCV",)),
                       ("test_tuning", "test_cross_validator_matches_grid_search_logistic", ("GridSearchCV",))],
    "TrainValidationSplit": [("test_tuning", "test_train_validation_split_matches_sklearn_on_its_split",
                              ("GridSearchCV",))],
    # before issue 12
    "StandardScaler": [("test_standard_scaler", "test_matches_sklearn_ddof1", ("sklearn",))],
    "MinMaxScaler": [("test_min_max_scaler", "test_matches_sklearn", ("sklearn",))],
    "MaxAbsScaler": [("test_max_abs_scaler", "test_matches_sklearn_dense", ("sklearn",))],
    "OneHotEncoder": [("test_one_hot_encoder", "test_against_sklearn", ("sklearn",))],
    "StringIndexer": [("test_string_indexer", "test_against_sklearn_ordinal_encoder_on_solar_flare",
                       ("OrdinalEncoder",))],
    # the oracle is the original string column: IndexToStringModel inverts a fitted StringIndexer
    "IndexToStringModel": [("test_string_indexer", "test_index_to_string_inverts_string_indexer", ("solar",))],
    "VectorAssembler": [("test_vector_assembler", "test_flink_ml_published_expectations", ("FLINK",))],
    "FeatureHasher": [("test_feature_hasher", "test_against_sklearn_feature_hasher", ("sklearn",))],
    "Imputer": [("test_imputer", "test_matches_simple_imputer", ("SimpleImputer",))],
    # Java's Arrays.binarySearch written out in the test (the bucket of each value by its definition)
    "Bucketizer": [("test_bucketizer", "test_matches_closed_forms_on_iris", ("reference_bucket",))],
    "OnlineStandardScaler": [("test_online_standard_scaler",
                              "test_final_model_equals_batch_standard_scaler_and_sklearn", ("sklearn",))],
    "LogisticRegression": [("test_logistic_regression", "test_binary_l2_matches_sklearn", ("sklearn",)),
                           ("test_logistic_regression", "test_multinomial_matches_sklearn", ("sklearn",))],
    "LinearSVC": [("test_linear_svc", "test_matches_sklearn_liblinear_without_intercept", ("sklearn",))],
    "OnlineLogisticRegression": [("test_ftrl", "test_equals_river_ftrl_with_eager_weights_on_phishing", ("river",))],
    "OnlineLearning": [("test_online_learning", "test_logistic_regression_matches_river_per_example", ("river",))],
    "LinearRegression": [("test_linear_regression", "test_ridge_matches_sklearn", ("sklearn",)),
                         ("test_linear_regression", "test_ols_matches_numpy_lstsq", ("lstsq",))],
    "KMeans": [("test_kmeans", "test_fixed_point_matches_sklearn_lloyd", ("sklearn",))],
    "OnlineKMeans": [("test_online_kmeans", "test_decay_one_equals_sklearn_minibatch_kmeans_partial_fit",
                      ("sklearn",))],
    "BinaryClassificationEvaluator": [("test_binary_classification_evaluator", "test_matches_sklearn_on_breast_cancer",
                                       ("sklearn",))],
    "StreamingEvaluator": [("test_streaming_evaluation", "test_multiclass_and_regression_match_sklearn", ("sklearn",))],
}


# --- helpers -----------------------------------------------------------------------------------

def _cls(name: str):
    return getattr(getattr(fl, FAMILY[name]), name)


def _companion_model(name: str) -> str | None:
    """The exported ``<name>Model`` of an estimator, if its family exports one."""
    model = name + "Model"
    family = getattr(fl, FAMILY[name])
    return model if model in getattr(family, "__all__", ()) or hasattr(family, model) else None


@lru_cache(maxsize=None)
def _case_names() -> frozenset[str]:
    """Every stage name with a conformance case (variants such as ``NaiveBayes/gaussian`` count for
    ``NaiveBayes``)."""
    names = set()
    for m in pkgutil.iter_modules([str(TESTS / "conformance_cases")]):
        spec = importlib.util.spec_from_file_location(f"_catalogue_cases_{m.name}", TESTS / "conformance_cases" /
                                                      f"{m.name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names.update(key.split("/")[0] for key in getattr(module, "CASES", {}))
    return frozenset(names)


@lru_cache(maxsize=None)
def _test_functions(module: str) -> dict[str, str]:
    """The top-level test functions of ``tests/<module>.py``, by name, with their source."""
    src = (TESTS / f"{module}.py").read_text()
    return {node.name: ast.get_source_segment(src, node) for node in ast.parse(src).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


# --- the checks --------------------------------------------------------------------------------

def test_the_lists():
    assert len(NEW) == 36 and len(OLD) == 21
    assert set(ORACLES) == set(ALL), "every stage has an oracle entry, and only the catalogue's stages"


@pytest.mark.parametrize("name", ALL)
def test_exported_under_its_family(name):
    family = getattr(fl, FAMILY[name])
    assert name in family.__all__, f"fl.{FAMILY[name]}.__all__ lacks {name}"
    cls = getattr(family, name)
    assert cls.__name__ == name and cls.__module__.startswith(f"flowlearn.{FAMILY[name]}.")


@pytest.mark.parametrize("name", [n for n in ALL if n not in NOT_STAGES])
def test_registered(name):
    cls = _cls(name)
    assert issubclass(cls, fl.Stage)
    assert _REGISTRY.get(f"flowlearn.{FAMILY[name]}.{name}") is cls
    model = _companion_model(name)
    if model is not None:
        assert _REGISTRY.get(f"flowlearn.{FAMILY[name]}.{model}") is getattr(getattr(fl, FAMILY[name]), model)


@pytest.mark.parametrize("name", [n for n in ALL if n not in NOT_STAGES])
def test_has_a_conformance_case(name):
    assert name in _case_names(), f"tests/conformance_cases/ has no case for {name}"
    model = _companion_model(name)
    if model is not None:
        assert model in _case_names(), f"tests/conformance_cases/ has no case for {model}"


@pytest.mark.parametrize("name", ALL)
def test_has_a_docs_page(name):
    page = DOCS / SHARED_PAGES.get(name, f"{name}.md")
    assert page.is_file(), f"{page} is missing"
    text = page.read_text()
    title = text.splitlines()[0]
    assert title.startswith("# ") and name in title, f"{page}'s title does not name {name}"
    assert "```python" in text, f"{page} has no runnable example"


@pytest.mark.parametrize("name", ALL)
def test_has_an_oracle_test(name):
    for module, function, tokens in ORACLES[name]:
        functions = _test_functions(module)
        assert function in functions, f"tests/{module}.py has no function {function}"
        source = functions[function]
        for token in tokens:
            assert token in source, f"tests/{module}.py::{function} does not mention {token!r}"
