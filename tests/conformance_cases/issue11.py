"""Conformance cases of the model types and start modes added for issue 11: NaiveBayes
'multinomial' and 'gaussian', and OnlineLearning from an unfitted last stage (zero weights)."""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits, load_iris

import flowlearn as fl
from flowlearn.classification.logistic_regression import LogisticRegressionModel
from flowlearn.classification.naive_bayes import NaiveBayes
from flowlearn.classification.online_learning import OnlineLearning


def _iris():
    x, y = load_iris(return_X_y=True)
    return fl.table({"features": x[::3], "label": y[::3].astype(np.float64)})


def _digits():
    x, y = load_digits(return_X_y=True)
    return fl.table({"features": x[:200], "label": y[:200].astype(np.float64)})


def _binary():
    x, y = load_iris(return_X_y=True)
    return fl.table({"features": x[:100], "label": y[:100].astype(np.float64)})


CASES = {
    "NaiveBayes/multinomial": lambda: (NaiveBayes(model_type="multinomial", smoothing=0.5), _digits()),
    "NaiveBayes/gaussian": lambda: (NaiveBayes(model_type="gaussian"), _iris()),
    "NaiveBayesModel/multinomial": lambda: (NaiveBayes(model_type="multinomial").fit(_digits()), _digits()),
    "NaiveBayesModel/gaussian": lambda: (NaiveBayes(model_type="gaussian").fit(_iris()), _iris()),
    "OnlineLearning/zero_start": lambda: (OnlineLearning(LogisticRegressionModel(), optim_method="sgd",
                                                         global_batch_size=10), _binary()),
}
