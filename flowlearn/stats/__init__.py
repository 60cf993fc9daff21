"""Statistics: univariate hypothesis tests of features against the label (Flink ML 2.x's
``ANOVATest``, ``ChiSqTest``, ``FValueTest``).

Names are imported from their modules on first use (``flowlearn._lazy``)."""
from flowlearn._lazy import lazy_exports

lazy_exports(globals(), __name__, {name: ".univariate" for name in ("ANOVATest", "ChiSqTest", "FValueTest")})
