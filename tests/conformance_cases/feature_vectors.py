"""Conformance cases for the vector feature stages (flowlearn.feature.vectors), on slices of
scikit-learn's bundled iris and diabetes data."""
from __future__ import annotations

import functools

import pyarrow as pa
from sklearn.datasets import load_diabetes, load_iris

from flowlearn.feature.vectors import (
    DCT,
    Binarizer,
    ElementwiseProduct,
    Interaction,
    Normalizer,
    PolynomialExpansion,
    VectorSlicer,
)
from flowlearn.linalg import from_numpy


@functools.lru_cache(maxsize=None)
def iris() -> pa.Table:
    """30 iris rows: a 4-vector, one measurement as a number, and a diabetes 3-vector."""
    x = load_iris().data[::5]
    d = load_diabetes().data[:30, :3]
    return pa.table({"features": from_numpy(x), "petal_width": x[:, 3], "other": from_numpy(d)})


CASES = {
    "Normalizer": lambda: (Normalizer(input_col="features", output_col="unit", p=3.0), iris()),
    "DCT": lambda: (DCT(input_col="features", output_col="dct"), iris()),
    "ElementwiseProduct": lambda: (ElementwiseProduct(input_col="features", output_col="scaled",
                                                      scaling_vec=[0.5, -1.0, 2.0, 0.0]), iris()),
    "PolynomialExpansion": lambda: (PolynomialExpansion(input_col="features", output_col="poly", degree=3), iris()),
    "Interaction": lambda: (Interaction(input_cols=["features", "petal_width", "other"], output_col="inter"),
                            iris()),
    "VectorSlicer": lambda: (VectorSlicer(input_col="features", output_col="slice", indices=[3, 0]), iris()),
    "Binarizer": lambda: (Binarizer(input_cols=["features", "petal_width"], output_cols=["bin", "wide"],
                                    thresholds=[3.0, 1.0]), iris()),
}
