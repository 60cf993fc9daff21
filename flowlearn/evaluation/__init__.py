"""Evaluation: batch evaluators, metric functions, streaming (windowed) evaluation and
progressive validation."""
from flowlearn.evaluation import metrics  # noqa: F401  (fl.evaluation.metrics)
from flowlearn.evaluation.binary import *  # noqa: F401,F403
from flowlearn.evaluation.streaming import StreamingEvaluator  # noqa: F401
from flowlearn.evaluation.progressive import *  # noqa: F401,F403
