"""Evaluation: batch evaluators, streaming metrics and progressive validation."""
from flowlearn.evaluation.binary import *  # noqa: F401,F403
