"""Recommendation: Swing item-item similarity (Flink ML) and FP-growth frequent itemsets and
association rules (Spark MLlib)."""
from flowlearn.recommendation.swing import *  # noqa: F401,F403
from flowlearn.recommendation.fpgrowth import *  # noqa: F401,F403
