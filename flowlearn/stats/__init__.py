"""Statistics: univariate hypothesis tests of features against the label (Flink ML 2.x's
``ANOVATest``, ``ChiSqTest``, ``FValueTest``) and their array kernels."""
from flowlearn.stats.univariate import *  # noqa: F401,F403
