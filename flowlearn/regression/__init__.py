"""Regression: linear regression.

Names are imported from their modules on first use (``flowlearn._lazy``); add an export as one
entry of ``_EXPORTS``."""
from flowlearn._lazy import lazy_exports

_EXPORTS = {
    "LinearRegression": ".linear_regression",
    "LinearRegressionModel": ".linear_regression",
}

lazy_exports(globals(), __name__, _EXPORTS)
