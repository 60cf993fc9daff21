"""``flowlearn dashboard``: a live web page of a model store and the jobs that feed it.

It shows the model versions over time with their kind (batch / online / rebase) and gate
decisions, windowed evaluation metrics (AUC, log loss, accuracy, RMSE) per window and model
version, the running jobs' throughput, lag and checkpoints, and the newest version's pipeline as
a graph of its stages. Jobs write their metrics as files (:mod:`flowlearn.dashboard.metrics`);
the page (Starlette + uvicorn, charts with uPlot shipped in the package) polls JSON endpoints
(:mod:`flowlearn.dashboard.app`). See ``docs/dashboard.md``.

Example:
    >>> import tempfile
    >>> from flowlearn.dashboard import DashboardData
    >>> DashboardData(tempfile.mkdtemp()).versions()["versions"]
    []
"""
from flowlearn.dashboard.data import CHART_METRICS, DashboardData
from flowlearn.dashboard.metrics import EvalLog, JobMetricsWriter

__all__ = ["DashboardData", "CHART_METRICS", "EvalLog", "JobMetricsWriter", "create_app", "serve_dashboard"]


def __getattr__(name: str):   # the web stack (starlette, uvicorn) only when it is used
    if name in ("create_app", "serve_dashboard", "DashboardServer"):
        from flowlearn.dashboard import app

        return getattr(app, name)
    raise AttributeError(name)
