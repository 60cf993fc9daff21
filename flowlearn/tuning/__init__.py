"""Model selection (Spark MLlib's ``pyspark.ml.tuning``): ``ParamGridBuilder``, ``CrossValidator``,
``TrainValidationSplit`` and their models.

Names are imported from their modules on first use (``flowlearn._lazy``)."""
from flowlearn._lazy import lazy_exports

lazy_exports(globals(), __name__, {name: ".selection" for name in (
    "ParamGridBuilder", "CrossValidator", "CrossValidatorModel", "TrainValidationSplit", "TrainValidationSplitModel")})
