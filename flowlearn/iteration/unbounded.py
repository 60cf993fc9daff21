"""The unbounded (mini-batch streaming) iteration: Flink ML's ``iterateUnboundedStreams``.

The data stream is cut into mini-batches by row count and/or processing time. Mini-batch
``k`` is epoch ``k``: the body runs once on it with the current variables (the shared model
state), and its feedback becomes the model state for the next mini-batch. Each mini-batch
yields an :class:`IterationStep` carrying the updated variables, so the iteration is a
stream of model versions.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa

from flowlearn.iteration.engine import ALL_ROUND, Body, _call_body, _check_result, _input_variables, _materialize, \
    _Outputs, _Registry, _Round, _table
from flowlearn.iteration.streams import END_EPOCH, BatchStream, StreamLike, current_round

__all__ = ["IterationStep", "UnboundedIteration", "iterate_unbounded", "mini_batches"]

log = logging.getLogger("flowlearn.iteration")


@dataclass
class IterationStep:
    """One mini-batch of an unbounded iteration.

    - ``epoch``: the mini-batch index (``END_EPOCH`` for the final step that carries what
      operators emitted when the input ended).
    - ``variables``: the model state after this mini-batch (one table per variable stream).
    - ``updated``: which variable streams this mini-batch's feedback replaced.
    - ``outputs``: this mini-batch's output streams, one table each.
    - ``num_rows``: rows in the mini-batch.
    """

    epoch: int
    variables: list[pa.Table]
    updated: list[bool]
    outputs: list[pa.Table]
    num_rows: int
    final: bool = False


# ---------------------------------------------------------------------------- mini-batching
_END = object()


def _as_batches(item: Any) -> list[pa.RecordBatch]:
    if isinstance(item, pa.RecordBatch):
        return [item]
    if isinstance(item, pa.Table):
        return item.to_batches()
    raise TypeError(f"iterate_unbounded: the data stream must yield pyarrow RecordBatches, got {type(item).__name__}")


class _Accumulator:
    def __init__(self, size: int | None) -> None:
        self.size = size
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> Iterator[list[pa.RecordBatch]]:
        """Add a batch; yield every mini-batch that reached ``size`` rows (cut exactly, zero-copy)."""
        if batch.num_rows == 0:
            return
        while self.size is not None and self.rows + batch.num_rows >= self.size:
            take = self.size - self.rows
            self.batches.append(batch.slice(0, take))
            yield self.flush()
            batch = batch.slice(take)
            if batch.num_rows == 0:
                return
        self.batches.append(batch)
        self.rows += batch.num_rows

    def flush(self) -> list[pa.RecordBatch]:
        out, self.batches, self.rows = self.batches, [], 0
        return out


def mini_batches(
    source: Iterable[Any],
    size: int | None = None,
    seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> Iterator[list[pa.RecordBatch]]:
    """Cut a stream of record batches into mini-batches (lists of batches).

    - ``size``: a mini-batch closes when it holds ``size`` rows; batches are sliced so every
      mini-batch but the last has exactly ``size`` rows.
    - ``seconds``: a mini-batch opens with its first batch and closes ``seconds`` later (by
      ``clock``), also while the source is idle; a batch that arrives at or after the close
      time goes to the next mini-batch. The source is read by a background thread that
      timestamps each batch on arrival.
    - Neither: every (non-empty) input batch is a mini-batch.
    - Both: whichever comes first. Empty mini-batches are never produced.
    """
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
        raise ValueError(f"mini_batch_size must be an integer >= 1 or None, got {size!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"mini_batch_seconds must be > 0 or None, got {seconds!r}")
    acc = _Accumulator(int(size) if size is not None else None)
    if seconds is None:
        for item in source:
            if stop is not None and stop.is_set():
                return
            for b in _as_batches(item):
                if acc.size is None:
                    if b.num_rows:
                        yield [b]
                else:
                    yield from acc.add(b)
        if acc.batches:
            yield acc.flush()
        return

    q: queue.Queue = queue.Queue(maxsize=16)
    stop_event = stop if stop is not None else threading.Event()

    def put(entry: tuple) -> bool:
        while not stop_event.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone away

    def reader() -> None:
        try:
            for item in source:
                if not put((clock(), item)):
                    return
            put((None, _END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            put((None, e))

    thread = threading.Thread(target=reader, name="flowlearn-minibatch-reader", daemon=True)
    thread.start()
    opened: float | None = None
    try:
        while True:
            timeout = None if opened is None else max(0.0, opened + seconds - clock())
            try:
                ts, item = q.get(timeout=timeout)
            except queue.Empty:  # the open mini-batch's time is up while the source is idle
                if acc.batches:
                    yield acc.flush()
                opened = None
                continue
            if item is _END:
                if acc.batches:
                    yield acc.flush()
                return
            if isinstance(item, BaseException):
                raise item
            if opened is not None and ts >= opened + seconds:
                if acc.batches:
                    yield acc.flush()
                opened = None
            for b in _as_batches(item):
                if b.num_rows == 0:
                    continue
                if opened is None:
                    opened = ts
                cut = False
                for mb in acc.add(b):
                    yield mb
                    cut = True
                if cut:  # the remainder of a cut batch opens the next mini-batch at that batch's time
                    opened = ts if acc.batches else None
    finally:
        stop_event.set()


# ---------------------------------------------------------------------------- the iteration
class UnboundedIteration:
    """An iterator of :class:`IterationStep` s (one per mini-batch); see :func:`iterate_unbounded`.

    ``variables`` is the current model state. ``close()`` (or leaving a ``with`` block) stops
    reading the source; operators then get ``on_iteration_terminated`` as when the input ends.
    """

    def __init__(self, variables: list[tuple[list[pa.RecordBatch], pa.Schema | None]], data_stream: Iterable[Any],
                 body: Body, size: int | None, seconds: float | None, clock: Callable[[], float]) -> None:
        self._vars = variables
        self._body = body
        self._stop = threading.Event()
        self._batches = mini_batches(data_stream, size, seconds, clock, self._stop)
        self._gen = self._run()
        self.epoch = -1

    @property
    def variables(self) -> list[pa.Table]:
        return [_table(bs, sc, f"variable {i}") for i, (bs, sc) in enumerate(self._vars)]

    def __iter__(self) -> "UnboundedIteration":
        return self

    def __next__(self) -> IterationStep:
        return next(self._gen)

    def close(self) -> None:
        self._stop.set()
        self._gen.close()

    def __enter__(self) -> "UnboundedIteration":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> Iterator[IterationStep]:
        where = "iterate_unbounded"
        registry = _Registry(ALL_ROUND)
        n_vars = len(self._vars)
        n_outputs: int | None = None
        scope: _Round | None = None
        last_outputs: Sequence[Any] = ()
        try:
            for epoch, mb in enumerate(self._batches):
                self.epoch = epoch
                scope = _Round(registry, epoch)
                var_streams = [BatchStream(bs, schema=sc, epoch=epoch, scope=scope) for bs, sc in self._vars]
                data = BatchStream(mb, epoch=epoch, scope=scope)
                res = _check_result(_call_body(self._body, scope, var_streams, [data], epoch), n_vars, n_outputs, epoch,
                                    where)
                if res.termination_criteria is not None:
                    raise ValueError(f"{where}: termination criteria are not supported by unbounded iterations "
                                     f"(the iteration ends when the data stream ends)")
                n_outputs = len(res.outputs)
                updated, new_vars = [], []
                for i, s in enumerate(res.feedback_variables):
                    bs, sc = _materialize(s, f"{where}: feedback variable {i}")
                    has_rows = any(b.num_rows for b in bs)
                    updated.append(has_rows)
                    new_vars.append((bs, sc if sc is not None else self._vars[i][1]) if has_rows else self._vars[i])
                outs = _Outputs()
                outs.add(epoch, res.outputs, where)
                scope.finished = True
                last_outputs = res.outputs
                self._vars = new_vars
                yield IterationStep(epoch=epoch, variables=self.variables, updated=updated, outputs=outs.tables(),
                                    num_rows=sum(b.num_rows for b in mb))
        except GeneratorExit:  # close(): the consumer stops; operators still get their termination call
            self._stop.set()
            if scope is not None:
                _terminate(scope)
            raise
        finally:
            self._stop.set()
            self._batches.close()
        if scope is None:
            return
        _terminate(scope)
        outs = _Outputs()
        outs.add(END_EPOCH, [None] * len(last_outputs), where)
        outs.add_terminal(last_outputs)
        if any(outs.batches or []):
            yield IterationStep(epoch=END_EPOCH, variables=self.variables, updated=[False] * n_vars,
                                outputs=outs.tables(), num_rows=0, final=True)


def _terminate(scope: _Round) -> None:
    scope.finished = False
    token = current_round.set(scope)
    try:
        scope.terminate()
    finally:
        current_round.reset(token)
        scope.finished = True


def iterate_unbounded(
    init_variables: Sequence[StreamLike],
    data_stream: Iterable[Any],
    body: Body,
    mini_batch_size: int | None = None,
    mini_batch_seconds: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> UnboundedIteration:
    """Run ``body`` once per mini-batch of a (possibly unbounded) stream of record batches.

    Args:
        init_variables: the initial model state, one stream (table) per variable.
        data_stream: an iterable of record batches (or tables); it may never end.
        body: ``body(variable_streams, [mini_batch_stream], epoch) -> IterationBodyResult``.
            Its feedback variables become the model state for the next mini-batch; a feedback
            stream without records leaves that variable unchanged. Operators are ``all_round``:
            one instance per call site lives for the whole iteration and gets
            ``on_epoch_watermark_incremented(k)`` after mini-batch ``k``.
        mini_batch_size: close a mini-batch at this many rows (exact; batches are sliced).
        mini_batch_seconds: close a mini-batch this long after it opened (``clock`` seconds).
        clock: the processing-time clock (injectable for tests).

    Returns an iterator of :class:`IterationStep` s, one per mini-batch, each carrying the
    updated model: the stream of model versions. When the input ends, operators get
    ``on_iteration_terminated``; what they emit then comes as a last step with ``final=True``.

    Example:
        >>> import pyarrow as pa, pyarrow.compute as pc
        >>> from flowlearn.iteration import IterationBodyResult, iterate_unbounded
        >>> def body(variables, data, epoch):          # running count and sum
        ...     m = variables[0].to_table()
        ...     x = data[0].to_table()["x"]
        ...     n, s = m["n"][0].as_py() + len(x), m["s"][0].as_py() + pc.sum(x).as_py()
        ...     new = pa.table({"n": [n], "s": [s]})
        ...     return IterationBodyResult([new])
        >>> stream = (pa.record_batch({"x": [float(i)] * 5}) for i in range(4))
        >>> steps = iterate_unbounded([pa.table({"n": [0], "s": [0.0]})], stream, body, mini_batch_size=10)
        >>> [s.variables[0].to_pylist()[0] for s in steps]
        [{'n': 10, 's': 5.0}, {'n': 20, 's': 30.0}]
    """
    where = "iterate_unbounded"
    if not callable(body):
        raise TypeError(f"{where}: body must be callable, got {type(body).__name__}")
    if isinstance(data_stream, (pa.Table, pa.RecordBatch, BatchStream)):
        data_stream = [data_stream] if not isinstance(data_stream, BatchStream) else data_stream
    variables = _input_variables(init_variables, where)
    if mini_batch_size is not None and (isinstance(mini_batch_size, bool) or int(mini_batch_size) != mini_batch_size
                                        or mini_batch_size < 1):
        raise ValueError(f"{where}: mini_batch_size must be an integer >= 1 or None, got {mini_batch_size!r}")
    if mini_batch_seconds is not None and not mini_batch_seconds > 0:
        raise ValueError(f"{where}: mini_batch_seconds must be > 0 or None, got {mini_batch_seconds!r}")
    return UnboundedIteration(variables, data_stream, body, mini_batch_size, mini_batch_seconds, clock)
