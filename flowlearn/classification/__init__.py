"""Classification: logistic regression (batch and online), naive Bayes."""
from flowlearn.classification.logistic_regression import *  # noqa: F401,F403
from flowlearn.classification.naive_bayes import *  # noqa: F401,F403
from flowlearn.classification.ftrl import *  # noqa: F401,F403
