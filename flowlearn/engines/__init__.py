"""Engines run stream plans. ``local`` (the default) runs them in this process.

``run(*sinks, engine="local", checkpoint_dir=None, checkpoint_interval=10.0)`` starts a job
and returns its handle (``wait()``, ``stop()``, ``metrics``).

Example:
    >>> import flowlearn.stream as fls
    >>> from flowlearn.engines import run
    >>> out = fls.from_table({"x": [1, 2, 3]}).collect()
    >>> run(out).wait().metrics["rows_in"]
    3
"""
from __future__ import annotations

from typing import Any

from flowlearn.engines.local import Job, LocalEngine

__all__ = ["run", "Job", "LocalEngine"]


def run(*sinks: Any, engine: Any = "local", checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0,
        **options: Any) -> Job:
    """Start a job writing to ``sinks`` and return its :class:`Job` (running in the background).

    With ``checkpoint_dir`` the job checkpoints every ``checkpoint_interval`` seconds, at the
    end, and on ``stop()``/SIGINT; started again with the same directory it resumes from the
    newest checkpoint. Other options go to the engine (``max_batch_rows``, ``clock``).
    """
    if engine == "local" or isinstance(engine, str) and engine.lower() == "local":
        eng = LocalEngine(list(sinks), checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval,
                          **options)
    elif hasattr(engine, "run_stream"):
        return engine.run_stream(list(sinks), checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval,
                                 **options)
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'local' or an engine object such as "
                         f"fl.engines.FlinkEngine(...)")
    job = Job(eng)
    for s in sinks:
        s.job = job
    return job.start()
