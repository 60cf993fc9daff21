"""Conformance cases for the binning, scaling, selection, indexing, splitting, SQL and LSH feature
stages (flowlearn.feature.kbins, robust_scaler, selectors, vector_indexer, splitter, sql, lsh), on
slices of scikit-learn's bundled iris, diabetes and digits data."""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
from sklearn.datasets import load_diabetes, load_digits, load_iris

from flowlearn.feature.kbins import KBinsDiscretizer
from flowlearn.feature.lsh import MinHashLSH
from flowlearn.feature.robust_scaler import RobustScaler
from flowlearn.feature.selectors import UnivariateFeatureSelector, VarianceThresholdSelector
from flowlearn.feature.splitter import RandomSplitter
from flowlearn.feature.sql import SQLTransformer
from flowlearn.feature.vector_indexer import VectorIndexer
from flowlearn.linalg import from_numpy


@functools.lru_cache(maxsize=None)
def iris() -> pa.Table:
    """30 iris rows: 4 measurements as a vector, the species as a number, one measurement alone."""
    d = load_iris()
    x, y = d.data[::5], d.target[::5].astype(np.float64)
    return pa.table({"features": from_numpy(x), "label": y, "sepal_length": x[:, 0], "id": np.arange(len(y))})


@functools.lru_cache(maxsize=None)
def diabetes() -> pa.Table:
    """40 diabetes rows: 10 features (one of them sex, 2 values) and the continuous target."""
    d = load_diabetes()
    return pa.table({"features": from_numpy(d.data[:40]), "label": d.target[:40]})


@functools.lru_cache(maxsize=None)
def digits() -> pa.Table:
    """60 digits rows: the 16 pixels of the top two image rows (small integers, many zeros)."""
    d = load_digits()
    return pa.table({"features": from_numpy(d.data[:60, :16]), "label": d.target[:60].astype(np.float64),
                     "id": np.arange(60)})


CASES = {
    "KBinsDiscretizer": lambda: (KBinsDiscretizer(input_col="features", output_col="bins", num_bins=3), iris()),
    "KBinsDiscretizer/uniform": lambda: (KBinsDiscretizer(input_col="features", output_col="bins",
                                                          strategy="uniform"), diabetes()),
    "KBinsDiscretizer/kmeans": lambda: (KBinsDiscretizer(input_col="features", output_col="bins",
                                                         strategy="kmeans", num_bins=3), iris()),
    "RobustScaler": lambda: (RobustScaler(input_col="features", output_col="scaled", with_centering=True),
                             diabetes()),
    "UnivariateFeatureSelector": lambda: (UnivariateFeatureSelector(
        features_col="features", output_col="selected", feature_type="continuous", label_type="categorical",
        selection_threshold=2), iris()),
    "UnivariateFeatureSelector/fregression": lambda: (UnivariateFeatureSelector(
        features_col="features", output_col="selected", feature_type="continuous", label_type="continuous",
        selection_mode="fpr", selection_threshold=0.05), diabetes()),
    "UnivariateFeatureSelector/chi2": lambda: (UnivariateFeatureSelector(
        features_col="features", output_col="selected", feature_type="categorical", label_type="categorical",
        selection_mode="percentile", selection_threshold=0.5), digits()),
    "VarianceThresholdSelector": lambda: (VarianceThresholdSelector(input_col="features", output_col="kept",
                                                                    variance_threshold=4.0), digits()),
    "VectorIndexer": lambda: (VectorIndexer(input_col="features", output_col="indexed", max_categories=8,
                                            handle_invalid="keep"), digits()),
    "RandomSplitter": lambda: (RandomSplitter(weights=[3.0, 1.0, 1.0], seed=5), iris()),
    "SQLTransformer": lambda: (SQLTransformer(
        statement="SELECT id, features, sepal_length * 10 AS mm FROM __THIS__ WHERE label > 0"), iris()),
    "MinHashLSH": lambda: (MinHashLSH(input_col="features", output_col="hashes", num_hash_tables=3,
                                      num_hash_functions_per_table=2, seed=11), digits()),
    # the fitted models on their own (model data set, params copied from the estimator)
    "KBinsDiscretizerModel": lambda: (KBinsDiscretizer(input_col="features", output_col="bins", num_bins=4)
                                      .fit(iris()), iris()),
    "RobustScalerModel": lambda: (RobustScaler(input_col="features", output_col="scaled").fit(diabetes()),
                                  diabetes()),
    "UnivariateFeatureSelectorModel": lambda: (UnivariateFeatureSelector(
        features_col="features", output_col="selected", feature_type="continuous", label_type="categorical",
        selection_mode="fdr", selection_threshold=0.01).fit(iris()), iris()),
    "VarianceThresholdSelectorModel": lambda: (VarianceThresholdSelector(input_col="features", output_col="kept")
                                               .fit(digits()), digits()),
    "VectorIndexerModel": lambda: (VectorIndexer(input_col="features", output_col="indexed", max_categories=5,
                                                 handle_invalid="skip").fit(digits().slice(0, 30)), digits()),
    "MinHashLSHModel": lambda: (MinHashLSH(input_col="features", output_col="hashes", num_hash_tables=2, seed=3)
                                .fit(digits()), digits()),
}
