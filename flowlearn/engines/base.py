"""The engine interface. An engine runs plans (``flowlearn.stream.plan``): it reads each node's
kind, spec, inputs, uid and name, builds operators from the specs through its own registry, and
hands results back as Arrow data.

- ``run(*sinks, checkpoint_dir=None, checkpoint_interval=10.0, **options) -> Job`` starts a job;
- ``collect(stream) -> pa.Table`` runs a bounded stream to its end and returns its rows;
- ``fit(estimator, *inputs) -> Model`` fits a batch estimator on bounded streams (or tables).

A :class:`Job` is a handle: ``wait()``, ``stop()``, ``running``, ``metrics`` and
``collected(sink)`` (the batches a ``collect()`` sink received, as Arrow tables).

Example (an engine that counts the plans it runs, on top of the local one):
    >>> import flowlearn as fl, flowlearn.stream as fls
    >>> class Counting(fl.engines.LocalEngine):
    ...     runs = 0
    ...     def run(self, *sinks, **kw):
    ...         Counting.runs += 1
    ...         return super().run(*sinks, **kw)
    >>> with fl.set_engine(Counting()):
    ...     fls.from_table({"x": [1, 2]}).to_table().num_rows
    2
    >>> Counting.runs
    1
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pyarrow as pa

__all__ = ["Engine", "Job"]


class Job(ABC):
    """A running (or finished) job of an engine."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> "Job":
        """Block until the job ends; re-raise its error."""

    @abstractmethod
    def stop(self, wait: bool = True) -> "Job":
        """Stop the sources (with a final checkpoint when checkpointing) and end the job."""

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @property
    @abstractmethod
    def metrics(self) -> dict: ...

    @abstractmethod
    def collected(self, sink: Any) -> list[pa.Table]:
        """The batches the ``collect()`` sink ``sink`` has received so far, in arrival order."""


class Engine(ABC):
    """Runs plans. Subclasses implement :meth:`run`; :meth:`collect` and :meth:`fit` have
    defaults built on it (fit collects bounded stream inputs, then fits on the tables)."""

    name = "engine"

    @abstractmethod
    def run(self, *sinks: Any, checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0,
            **options: Any) -> Job:
        """Start a job writing to ``sinks`` and return its handle (the job runs in the background)."""

    def collect(self, stream: Any) -> pa.Table:
        """Run the bounded ``stream`` to its end and return its rows as one table."""
        if not stream.bounded:
            raise ValueError("to_table() on an unbounded stream would never finish; run it with fl.run(sink) and stop "
                             "the job, or bound the source")
        return stream.collect().result(engine=self)

    def fit(self, estimator: Any, *inputs: Any) -> Any:
        """Fit ``estimator`` on ``inputs`` (bounded streams are collected into tables first)."""
        tables = [self.collect(x) if getattr(x, "_flowlearn_stream", False) else x for x in inputs]
        return estimator.fit(*tables)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
