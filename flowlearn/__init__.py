"""flowlearn: machine learning where a batch is a bounded stream.

``import flowlearn`` is fast: every name below is imported from its module on first use
(``flowlearn._lazy``), so a command or a service pays only for what it touches.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0]], "label": [1.0, 0.0]})
    >>> model = fl.classification.LogisticRegression().fit(t)
    >>> sorted(model.transform(t).column_names)
    ['features', 'label', 'prediction', 'raw_prediction']
"""
from __future__ import annotations

import os
import sys
import tempfile

from flowlearn._lazy import lazy_exports
from flowlearn._version import __version__


def _numba_cache_dir(package_dir: str, environ: dict) -> str | None:
    """Where Numba should cache compiled kernels when it cannot by itself, or None when it can.

    Kernels are compiled with ``cache=True``: the first process writes them next to the source
    (``__pycache__``) or, when that is read-only, to the user's cache directory, and later processes
    load them instead of compiling. With neither writable (a read-only install run by a user with
    no writable home) Numba would refuse to import the kernels, so a directory under the system
    temporary directory is used instead (``NUMBA_CACHE_DIR`` set by the user always wins)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    if os.access(package_dir, os.W_OK):
        return None
    home = os.path.expanduser("~")
    user_cache = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    if os.access(user_cache if os.path.isdir(user_cache) else home, os.W_OK):
        return None
    return os.path.join(tempfile.gettempdir(), f"flowlearn-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 0}")


_fallback = _numba_cache_dir(os.path.dirname(os.path.abspath(__file__)), dict(os.environ))
if _fallback is not None and "numba" not in sys.modules:
    os.environ["NUMBA_CACHE_DIR"] = _fallback


_EXPORTS = {
    **{name: ".data" for name in ("table", "parse_schema", "read_csv", "read_json", "read_parquet", "write_csv",
                                  "write_json", "write_parquet")},
    **{name: ".api" for name in ("Stage", "AlgoOperator", "Transformer", "Model", "Estimator", "register_stage")},
    **{name: ".builder" for name in ("Pipeline", "PipelineModel", "GraphBuilder", "Graph", "GraphModel")},
    "load": (".persist", "load_stage"),
    "LocalPredictor": ".serving",
    "run": ".engines",
    "set_engine": ".engines",
    **{name: ".modelstream" for name in ("ModelStore", "KafkaModelStore", "ModelVersion")},
}
_SUBMODULES = ("linalg", "classification", "clustering", "evaluation", "feature", "recommendation", "regression", "stats",
               "tuning", "stream", "engines", "iteration", "datasets", "testing", "modelstream", "serving", "plot",
               "dashboard", "cli")

lazy_exports(globals(), __name__, _EXPORTS, _SUBMODULES)
__all__ = ["__version__", *__all__]  # noqa: F821 - set by lazy_exports
