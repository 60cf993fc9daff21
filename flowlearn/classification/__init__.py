"""Classification: logistic regression (batch, and online with FTRL), linear SVM, naive Bayes,
and online learning of a pipeline's last linear stage (Alink's OnlineLearning)."""
from flowlearn.classification.ftrl import *  # noqa: F401,F403
from flowlearn.classification.linear_svc import *  # noqa: F401,F403
from flowlearn.classification.logistic_regression import *  # noqa: F401,F403
from flowlearn.classification.naive_bayes import *  # noqa: F401,F403
from flowlearn.classification.online_learning import *  # noqa: F401,F403
