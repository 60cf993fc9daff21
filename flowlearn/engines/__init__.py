"""Engines run stream plans. ``local`` (the default) runs them in this process; ``FlinkEngine``
runs them on Apache Flink (the ``flink`` extra).

``run(*sinks, engine=None, checkpoint_dir=None, checkpoint_interval=10.0)`` starts a job on the
current engine (``fl.set_engine``) or the one named, and returns its handle (``wait()``,
``stop()``, ``metrics``). :class:`~flowlearn.engines.base.Engine` is the interface an engine
implements.

Example:
    >>> import flowlearn as fl
    >>> import flowlearn.stream as fls
    >>> out = fls.from_table({"x": [1, 2, 3]}).collect()
    >>> run(out).wait().metrics["rows_in"]
    3
    >>> with fl.set_engine(LocalEngine(max_batch_rows=2)):
    ...     fls.from_table({"x": [1, 2, 3]}, batch_size=1).to_table().num_rows
    3
"""
from __future__ import annotations

import builtins
import sys
from typing import Any


def _let_numba_resolve_print() -> None:
    """A standalone Flink cluster's Python worker replaces ``builtins.print`` with a function of
    its own module, which does not export it under that name; Numba then fails to import
    (``beam_sdk_worker_main has no attribute 'print'``). Exporting it there makes it resolvable.
    This runs before anything imports Numba on a worker (unpickling a job's functions imports
    this package first)."""
    p = builtins.print
    mod = sys.modules.get(getattr(p, "__module__", None) or "")
    if mod is not None and mod is not builtins and getattr(mod, p.__name__, None) is not p:
        setattr(mod, p.__name__, p)


_let_numba_resolve_print()

from flowlearn.engines.base import Engine, Job  # noqa: E402
from flowlearn.engines.flink import FlinkEngine, FlinkJob  # noqa: E402
from flowlearn.engines.local import LocalEngine, LocalJob  # noqa: E402
from flowlearn.stream.plan import current_engine, set_default_engine, set_engine  # noqa: E402

__all__ = ["run", "Engine", "Job", "LocalEngine", "LocalJob", "FlinkEngine", "FlinkJob", "set_engine", "current_engine"]

set_default_engine(LocalEngine())


def run(*sinks: Any, engine: Any = None, checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0,
        **options: Any) -> Job:
    """Start a job writing to ``sinks`` and return its :class:`Job` (running in the background).

    ``engine``: ``None`` (the current engine, see ``fl.set_engine``), ``"local"`` or an
    :class:`Engine`. With ``checkpoint_dir`` the job checkpoints every ``checkpoint_interval``
    seconds, at the end, and on ``stop()``/SIGINT; started again with the same directory it
    resumes from the newest checkpoint. Other options go to the engine (the local engine's:
    ``max_batch_rows``, ``idle_sleep``, ``clock``).
    """
    if engine is None:
        eng = current_engine()
    elif isinstance(engine, str):
        if engine.lower() != "local":
            raise ValueError(f"unknown engine {engine!r}; use 'local' or an engine object (fl.engines.Engine)")
        eng = LocalEngine()
    elif isinstance(engine, Engine) or callable(getattr(engine, "run", None)):
        eng = engine
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'local' or an engine object (fl.engines.Engine)")
    return eng.run(*sinks, checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval, **options)
