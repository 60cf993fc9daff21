"""The ``flowlearn`` command (``flowlearn.cli.main``), imported on first use so that
``python -m flowlearn.cli.main`` runs it without importing it twice."""
from flowlearn._lazy import lazy_exports

lazy_exports(globals(), __name__, {"main": ".main"})
