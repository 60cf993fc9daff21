"""Serving: the LocalPredictor."""
from flowlearn.serving.predictor import LocalPredictor

__all__ = ["LocalPredictor"]
