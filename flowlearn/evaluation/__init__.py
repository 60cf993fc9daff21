"""Evaluation: batch evaluators (``evaluate(table) -> {metric: float}`` or Flink ML's one-row
table), metric functions, streaming (windowed) evaluation and progressive validation.

Names are imported from their modules on first use (``flowlearn._lazy``); add an export as one
entry of ``_EXPORTS``."""
from flowlearn._lazy import lazy_exports

_EXPORTS = {
    "Evaluator": ".metrics",
    "BinaryClassificationEvaluator": ".binary",
    "binary_metrics": ".binary",
    "METRICS_NAMES": ".binary",
    "StreamingEvaluator": ".streaming",
    "progressive_validation": ".progressive",
    "PROGRESSIVE_METRICS": ".progressive",
    "DEFAULT_METRICS": ".progressive",
    "MulticlassClassificationEvaluator": ".multiclass",
    "MULTICLASS_METRICS_NAMES": ".multiclass",
    "RegressionEvaluator": ".regression",
    "REGRESSION_METRICS_NAMES": ".regression",
    "ClusteringEvaluator": ".clustering",
    "silhouette": ".clustering",
}

lazy_exports(globals(), __name__, _EXPORTS, submodules=("metrics",))
