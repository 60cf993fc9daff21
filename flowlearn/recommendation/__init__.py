"""Recommendation: Swing item-item similarity (Flink ML) and FP-growth frequent itemsets and
association rules (Spark MLlib).

Names are imported from their modules on first use (``flowlearn._lazy``); add an export as one
entry of ``_EXPORTS``."""
from flowlearn._lazy import lazy_exports

_EXPORTS = {
    "Swing": ".swing",
    "FPGrowth": ".fpgrowth",
    "FPGrowthModel": ".fpgrowth",
}

lazy_exports(globals(), __name__, _EXPORTS)
