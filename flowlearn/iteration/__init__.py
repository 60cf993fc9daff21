"""Iterations with Flink ML's semantics, in process: bounded (round after round until
termination) and unbounded (one round per mini-batch of a stream).

See ``docs/iteration.md``.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> from flowlearn.iteration import IterationBodyResult, iterate_bounded
    >>> def body(variables, data, epoch):                # x <- cos(x), a fixed point
    ...     x = variables[0].to_table()["x"].to_numpy()
    ...     return IterationBodyResult([pa.table({"x": np.cos(x)})])
    >>> r = iterate_bounded([pa.table({"x": [1.0]})], [], body, max_rounds=100)
    >>> round(r.variables[0]["x"][0].as_py(), 6)
    0.739085
"""
from flowlearn.iteration.cache import DEFAULT_CACHE_BUDGET_BYTES
from flowlearn.iteration.engine import ALL_ROUND, PER_ROUND, IterationBodyResult, IterationResult, iterate_bounded
from flowlearn.iteration.operators import (
    ForwardInputsOfLastRound,
    IterationOperator,
    OperatorContext,
    TerminateOnMaxIter,
    TerminateOnMaxIterOrTol,
)
from flowlearn.iteration.streams import END_EPOCH, BatchStream
from flowlearn.iteration.unbounded import IterationStep, UnboundedIteration, iterate_unbounded, mini_batches

__all__ = [
    "iterate_bounded",
    "iterate_unbounded",
    "IterationBodyResult",
    "IterationResult",
    "IterationStep",
    "UnboundedIteration",
    "BatchStream",
    "IterationOperator",
    "OperatorContext",
    "ForwardInputsOfLastRound",
    "TerminateOnMaxIter",
    "TerminateOnMaxIterOrTol",
    "mini_batches",
    "END_EPOCH",
    "ALL_ROUND",
    "PER_ROUND",
    "DEFAULT_CACHE_BUDGET_BYTES",
]
