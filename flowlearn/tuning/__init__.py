"""Model selection (Spark MLlib's ``pyspark.ml.tuning``): ``ParamGridBuilder``, ``CrossValidator``,
``TrainValidationSplit`` and their models."""
from flowlearn.tuning.selection import *  # noqa: F401,F403
