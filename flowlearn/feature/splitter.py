"""``RandomSplitter``: splits a table's rows at random into several tables by weights, as Flink
ML 2.x's ``RandomSplitter``.

Example:
    >>> from flowlearn.feature.splitter import RandomSplitter
    >>> train, test = RandomSplitter(weights=[4.0, 1.0], seed=7).transform({"x": list(range(1000))})
    >>> train.num_rows + test.num_rows, 700 < train.num_rows < 900
    (1000, True)
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.api import AlgoOperator, _is_stream
from flowlearn.params import HasSeed, Param, gt

__all__ = ["RandomSplitter"]


class RandomSplitter(HasSeed, AlgoOperator):
    """Splits the rows of a table at random into ``len(weights)`` tables: each row goes to output
    ``i`` with probability ``weights[i] / sum(weights)``, independently of the other rows, as
    Flink ML's ``RandomSplitter`` draws a uniform number per row. Every row lands in exactly one
    output, in input order; the outputs have the input's schema.

    The draws come from NumPy's PCG64 seeded with ``seed``, one per row in input order, so the
    split of a table is deterministic given the seed and the number of rows. On a stream,
    ``transform`` splits batch by batch with one generator continued across the batches (as Flink
    ML keeps one ``Random`` per operator), so batches get fresh draws and the whole stream's split
    equals the split of its rows as one table; the first output is the returned stream, the others
    its side outputs ``output_1``, ``output_2``, ... (``stream.side_output("output_1")``). The
    generator's position is not checkpointed: rows replayed after a restore may go elsewhere. An
    engine running a stream's batches in parallel gives each parallel instance its own generator
    started from the seed (Flink ML also mixes in the subtask index, flowlearn does not).

    ``seed=None`` uses a seed derived from the class name, as Flink ML's default.

    Params: ``weights`` ([1.0, 1.0]: at least two positive numbers), ``seed`` (None).

    Example:
        >>> from flowlearn.feature.splitter import RandomSplitter
        >>> parts = RandomSplitter(weights=[1.0, 1.0, 2.0], seed=0).transform({"id": list(range(8))})
        >>> sorted(i for p in parts for i in p.column("id").to_pylist())
        [0, 1, 2, 3, 4, 5, 6, 7]
    """

    weights = Param(list[float], default=[1.0, 1.0], validator=gt(0),
                    doc="Weights of the outputs (at least two, each > 0); output i receives a row with "
                        "probability weights[i] / sum(weights).")

    def _fractions(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=np.float64)
        if len(w) < 2:
            raise ValueError(f"{type(self).__name__}: parameter 'weights' = {self.weights!r} must hold at least two "
                             f"weights (one per output table)")
        return np.cumsum(w) / w.sum()

    def _seed(self) -> int:
        return self.seed if self.seed is not None else zlib.crc32(b"flowlearn.feature.RandomSplitter")

    _stream_rng: np.random.Generator | None = None

    def transform(self, *inputs: Any) -> Any:
        if inputs and _is_stream(inputs[0]):
            stage = RandomSplitter(**self.get_params())  # its own generator, continued batch after batch
            stage._stream_rng = np.random.default_rng(self._seed())
            return AlgoOperator.transform(stage, *inputs)
        return super().transform(*inputs)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The schema of each output: the input's."""
        self._fractions()
        return input_schema

    def _transform(self, *tables: pa.Table) -> tuple[pa.Table, ...]:
        if len(tables) != 1:
            raise TypeError(f"{type(self).__name__}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        fractions = self._fractions()
        k = len(fractions)
        rng = self._stream_rng if self._stream_rng is not None else np.random.default_rng(self._seed())
        which = np.minimum(np.searchsorted(fractions, rng.random(t.num_rows), side="right"), k - 1)
        order = np.argsort(which, kind="stable")
        grouped = t.take(pa.array(order)) if t.num_rows else t
        bounds = np.r_[0, np.cumsum(np.bincount(which, minlength=k))]
        return tuple(grouped.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])) for i in range(k))
