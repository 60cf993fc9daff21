"""Regression: linear regression."""
from flowlearn.regression.linear_regression import *  # noqa: F401,F403
