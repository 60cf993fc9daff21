"""Classification: logistic regression (batch, and online with FTRL), linear SVM, naive Bayes,
k nearest neighbours, and online learning of a pipeline's last linear stage (Alink's OnlineLearning).

Names are imported from their modules on first use (``flowlearn._lazy``); add an export as one
entry of ``_EXPORTS``."""
from flowlearn._lazy import lazy_exports

_EXPORTS = {
    "LogisticRegression": ".logistic_regression",
    "LogisticRegressionModel": ".logistic_regression",
    "LinearSVC": ".linear_svc",
    "LinearSVCModel": ".linear_svc",
    "NaiveBayes": ".naive_bayes",
    "NaiveBayesModel": ".naive_bayes",
    "OnlineLogisticRegression": ".ftrl",
    "OnlineLogisticRegressionModel": ".ftrl",
    "OnlineLogisticRegressionTrainer": ".ftrl",
    "OnlineLearning": ".online_learning",
    "OnlineLearningTrainer": ".online_learning",
    "Knn": ".knn",
    "KnnModel": ".knn",
}

lazy_exports(globals(), __name__, _EXPORTS)
