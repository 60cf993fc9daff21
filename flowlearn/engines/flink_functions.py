"""The Python functions a Flink job of :mod:`flowlearn.engines.flink` runs on the task managers.

A record is one Arrow record batch as IPC bytes (``to_ipc`` / ``from_ipc``). Stateless work is
a plain callable; stateful plan nodes run flowlearn's own operator (``build_operator(spec)``, the
one the local engine runs) inside a Flink keyed function whose keyed state holds the operator's
``snapshot_state()`` bytes, rewritten after every batch, so Flink's checkpoints carry it and a
restarted job resumes exactly where its last checkpoint was.

Example (no Flink needed for the codec):
    >>> import pyarrow as pa
    >>> from_ipc(to_ipc(pa.table({"x": [1, 2]}))).column("x").to_pylist()
    [1, 2]
"""
from __future__ import annotations

import functools
import inspect
import os
import time
import uuid
from typing import Any, Callable, Iterator

import pyarrow as pa

from flowlearn.stream.plan import build_operator
from flowlearn.trainer import OperatorState

__all__ = ["to_ipc", "from_ipc"]

# About how long a one-key operator that reads a table itself reads on in one call.
CALL_SECONDS = 0.05
# Fires once a bounded input has ended (Flink's end-of-input watermark is Long.MAX_VALUE).
END_OF_INPUT = 2 ** 63 - 2


def one_key(record: Any) -> int:
    """The key of every record of a one-key Flink function (a stateful node on one task)."""
    return 0


def to_ipc(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return sink.getvalue().to_pybytes()


def from_ipc(b: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(b)).read_all()


# -- every call into flowlearn from a Flink function ------------------------------------------
# True in the process that submits jobs: a local mini-cluster's process-mode tasks run their
# Python there too (PyFlink's loopback worker), and that process is the user's, not a worker's.
IN_CLIENT = False
_WORKER_READY = False


def _set_up_worker() -> None:
    """Once per Python worker: BLAS on one thread. A task slot is Flink's unit of parallelism,
    and OpenBLAS's own threads, spinning while they wait for work, take the cores the other
    slots and the JVM need (as Spark's Python workers do, a task uses its one core)."""
    global _WORKER_READY
    if not _WORKER_READY:
        _WORKER_READY = True
        if not IN_CLIENT:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="blas")


def in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (a generator's items as a list) in a Python worker set up for flowlearn
    (:func:`_set_up_worker`): how every Flink function calls into flowlearn."""
    _set_up_worker()
    out = fn(*args)
    return list(out) if inspect.isgenerator(out) else out


def worker_method(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the method is called through :func:`in_worker`."""
    @functools.wraps(method)
    def run(*args: Any) -> Any:
        return in_worker(method, *args)
    return run


# -- sources ------------------------------------------------------------------------------------
# Schema metadata of a batch of a fit's rounds: its place in its bounded source, "<split>.<batch>"
# (slice or file number, batch within it). Flink returns a job's results in any order; a driver
# that needs the input's row order (KMeans's initial rows, SGD's mini-batches) orders the batches
# by it (flowlearn.optim.batch_offsets). Chains keep it; only the rounds' jobs set it (``keyed``).
BATCH_KEY = b"flowlearn.batch"


def with_batch_key(t: pa.Table, split: int, batch: int) -> pa.Table:
    return t.replace_schema_metadata({**(t.schema.metadata or {}), BATCH_KEY: f"{int(split)}.{int(batch)}".encode()})


def one_batch(t: pa.Table) -> pa.RecordBatch:
    """The rows of ``t`` as one record batch (columns of several chunks are combined)."""
    return pa.RecordBatch.from_arrays([c.combine_chunks() for c in t.columns], schema=t.schema)


class _Reader:
    """A source read by batch number: ``tables(i)`` are batch ``i``'s tables, for ``i`` in
    ``range(count)``; called by Flink with the number, it emits them as records."""

    keyed = False   # records labelled with their place in the source (BATCH_KEY)
    count: int

    def tables(self, i: int) -> Iterator[pa.Table]:
        raise NotImplementedError

    @worker_method
    def __call__(self, i: int) -> Iterator[bytes]:
        for j, t in enumerate(self.tables(int(i))):
            yield to_ipc(with_batch_key(t, i, j) if self.keyed else t)


class _Slices(_Reader):
    """A ``from_table`` source read by slices of ``batch_size`` rows: batch number ``i`` is slice
    ``i`` (``slice(i)``)."""

    def __init__(self, num_rows: int, batch_size: int) -> None:
        self.count, self.batch_size = -(-num_rows // batch_size), batch_size

    def slice(self, j: int) -> pa.Table:
        raise NotImplementedError

    def tables(self, i: int) -> Iterator[pa.Table]:
        yield self.slice(i)


class TableSlices(_Slices):
    """The slices of a table shipped inside the job (a small ``from_table`` source)."""

    def __init__(self, table: pa.Table, batch_size: int) -> None:
        super().__init__(table.num_rows, batch_size)
        self.table = table

    def slice(self, j: int) -> pa.Table:
        return self.table.slice(j * self.batch_size, self.batch_size)


# from_table sources of the jobs running, by token: a local mini-cluster's process-mode tasks run
# their Python in this process (PyFlink's loopback worker), and read them from here.
CLIENT_TABLES: dict[str, pa.Table] = {}


class ClientSlices(_Slices):
    """The slices of a ``from_table`` source read where the client holds it (``CLIENT_TABLES``):
    by Python workers in the client's process, a local mini-cluster's in process mode (no copy
    into the job or to a file)."""

    def __init__(self, token: str, num_rows: int, batch_size: int) -> None:
        super().__init__(num_rows, batch_size)
        self.token = token

    def slice(self, j: int) -> pa.Table:
        table = CLIENT_TABLES.get(self.token)
        if table is None:
            raise RuntimeError(f"the from_table source {self.token} is not in this process: only Python workers in "
                               f"the client's process (a local mini-cluster's, in process mode) read a table there")
        return table.slice(j * self.batch_size, self.batch_size)


class SpilledSlices(_Slices):
    """The slices of a ``from_table`` source too large to ship inside the job: the record batches
    of the Arrow IPC file the client wrote it to, one per slice, memory-mapped (no copy, no
    decoding)."""

    def __init__(self, path: str, num_rows: int, batch_size: int) -> None:
        super().__init__(num_rows, batch_size)
        self.path = path
        self._file: Any = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_file"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _file=None)

    def slice(self, j: int) -> pa.Table:
        if self._file is None:
            self._file = pa.ipc.open_file(pa.memory_map(self.path))
        return pa.Table.from_batches([self._file.get_batch(j)])


class FileBatches(_Reader):
    """The batches of file ``i`` of a ``from_files`` source, read with the local engine's reader."""

    def __init__(self, spec: Any, paths: list[str]) -> None:
        self.spec, self.paths, self.count = spec, paths, len(paths)

    def tables(self, i: int) -> Iterator[pa.Table]:
        t = build_operator(self.spec).read_table(self.paths[i])
        for start in range(0, t.num_rows, self.spec.batch_size):
            yield t.slice(start, self.spec.batch_size)


# -- stateless work ----------------------------------------------------------------------------
def run_chain(specs: list[Any], t: pa.Table) -> pa.Table | None:
    """``t`` through a chain of stateless specs; None when a link drops the batch or it ends empty."""
    for s in specs:
        t = s.apply(t)
        if t is None:
            return None
    return t if t.num_rows else None


class Chain:
    """A chain of stateless specs applied to each batch in one Python operator; empty batches are
    dropped."""

    def __init__(self, specs: list[Any]) -> None:
        self.specs = specs

    @worker_method
    def __call__(self, record: bytes) -> Iterator[bytes]:
        t = from_ipc(record)
        key = (t.schema.metadata or {}).get(BATCH_KEY)
        t = run_chain(self.specs, t)
        if t is not None and key is not None and (t.schema.metadata or {}).get(BATCH_KEY) != key:
            t = t.replace_schema_metadata({**(t.schema.metadata or {}), BATCH_KEY: key})
        if t is not None:
            yield to_ipc(t)


class Partial:
    """A one-pass estimator's ``partial`` of one batch, as its state's IPC bytes."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    @worker_method
    def __call__(self, record: bytes) -> bytes:
        return to_ipc(self.estimator.partial(from_ipc(record)))


class MapBatch:
    """``fn(batch) -> table`` of an estimator's driver, on IPC records."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    @worker_method
    def __call__(self, record: bytes) -> bytes:
        return to_ipc(self.fn(from_ipc(record)))


class WriteFile:
    """One batch written to its own in-progress file of a ``to_files`` sink; the record is the
    file's name and row count, for the client to commit after the job succeeds."""

    def __init__(self, spec: Any, token: str) -> None:
        self.spec, self.token = spec, token

    @worker_method
    def __call__(self, record: bytes) -> bytes:
        from flowlearn.stream.sinks import EXTENSIONS, FormatFile

        t = from_ipc(record)
        name = f"{self.spec.prefix}-flink-{self.token}-{uuid.uuid4().hex}.{EXTENSIONS[self.spec.format]}.tmp"
        out = FormatFile(os.path.join(self.spec.path, ".inprogress", name), self.spec.format, t)
        out.write_table(t)
        out.close()
        return f"{name}\t{t.num_rows}".encode()


# Flink's collect sink refuses a record above 2 MB (collect-sink.batch-size.max) and a remote
# cluster's RPC frames are 10 MB, so records for the client travel in chunks of at most this size.
CHUNK_BYTES = 1 << 20


class Tag:
    """A record for the client, cut into chunks of at most ``CHUNK_BYTES``, each prefixed with
    the index of the sink it goes to, the record's id, the chunk's number and the number of
    chunks (4 + 8 + 4 + 4 bytes, little endian); :func:`untag` puts them back together."""

    def __init__(self, k: int) -> None:
        self.prefix = k.to_bytes(4, "little")

    @worker_method
    def __call__(self, record: bytes) -> Iterator[bytes]:
        head = self.prefix + os.urandom(8)
        total = max(1, -(-len(record) // CHUNK_BYTES))
        for i in range(total):
            yield head + i.to_bytes(4, "little") + total.to_bytes(4, "little") + \
                record[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES]


def untag(records: Any) -> Iterator[tuple[int, bytes]]:
    """``(sink index, record)`` for each whole record of tagged chunks (see :class:`Tag`); the
    chunks of one record come in order from one task, those of different records interleave."""
    parts: dict[bytes, list[bytes]] = {}
    for chunk in records:
        chunk = bytes(chunk)
        head, i, total = chunk[:12], int.from_bytes(chunk[12:16], "little"), int.from_bytes(chunk[16:20], "little")
        if total == 1:
            yield int.from_bytes(head[:4], "little"), chunk[20:]
            continue
        got = parts.setdefault(head, [])
        if len(got) != i:
            raise RuntimeError(f"FlinkEngine: chunk {i} of a record arrived after {len(got)} of its {total} chunks")
        got.append(chunk[20:])
        if len(got) == total:
            del parts[head]
            yield int.from_bytes(head[:4], "little"), b"".join(got)


class FollowStore:
    """A model following a model store (a link of a :class:`Chain`), applied to each batch on
    every task manager: the store is polled at most every ``poll_interval`` seconds and the
    newest version (of the kinds asked for) replaces the model, so all workers swap within a
    poll interval; each row gets the ``model_version`` that scored it. A batch that arrives
    before the store has any version waits for the first one (as rows wait for version 1 on the
    local engine)."""

    def __init__(self, model: Any, store: Any, poll_interval: float, kinds: tuple[str, ...] | None) -> None:
        self.model, self.store, self.poll_interval, self.kinds = model, store, poll_interval, kinds
        self._op: Any = None
        self._source: Any = None

    def _poll(self) -> None:
        from flowlearn.stream.models import ModelStoreSource, ModelStreamOp

        if self._op is None:
            self._op = ModelStreamOp(self.model)
            self._source = ModelStoreSource(self.store, self.poll_interval, "latest", False, self.kinds)
        for version in self._source.poll(16):   # throttled to one look at the store per poll_interval
            self._op.process(version, 1)

    def apply(self, table: pa.Table) -> pa.Table | None:
        self._poll()
        while self._op.version is None:
            time.sleep(self.poll_interval)
            self._poll()
        outs = self._op.process(table, 0)
        return outs[0] if outs else None


# -- stateful plan nodes -------------------------------------------------------------------------
def restored_operator(spec: Any, ctx: Any, saved: Any) -> Any:
    """``build_operator(spec)`` opened with ``ctx`` and restored from ``saved``, the bytes a
    stateful function keeps in Flink's keyed state (None: a fresh start)."""
    def build() -> Any:
        op = build_operator(spec)
        op.open(ctx)
        if saved is not None:
            op.restore_state(OperatorState.from_bytes(bytes(saved)))
        return op
    return in_worker(build)


def outputs_and_state(op: Any, outs: list[pa.Table]) -> tuple[list[bytes], bytes | None]:
    """``outs`` as records, and ``op``'s state after them as the bytes for Flink's keyed state."""
    snap = op.snapshot_state()
    return [to_ipc(t) for t in outs], None if snap is None else snap.to_bytes()


def keyed_operator_function() -> Any:
    """The class of Flink keyed function that runs one flowlearn operator (made on first use, so
    this module imports without PyFlink)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, TimeDomain
    from pyflink.datastream.state import ValueStateDescriptor

    class OperatorFunction(KeyedProcessFunction):
        """A stateful plan node (an online trainer, a streaming evaluator, a model store sink) on
        one key: every batch goes through the flowlearn operator in arrival order, and after each
        the operator's state is written to keyed state, which Flink checkpoints. End of a bounded
        input (an event-time timer at Long.MAX_VALUE - 1) calls the operator's ``on_end``; an
        operator that ``wants_timer`` is polled every second of processing time. A trainer
        ``rebase``d by a model store (``fit_online(..., rebase=store)``) reads the store itself:
        before each batch and on a processing-time timer every ``poll_interval``, the store's new
        versions go to the trainer's input 1, and the store source's place is keyed state too."""

        def __init__(self, spec: Any, uid: str, read: _Reader | None = None, chain: list[Any] = (),
                     rebase: Any = None) -> None:
            self.spec, self.uid, self.read, self.chain, self.rebase = spec, uid, read, list(chain), rebase
            self.op: Any = None

        def open(self, runtime_context: Any) -> None:
            from flowlearn.stream.operator import OperatorContext

            self.state = runtime_context.get_state(ValueStateDescriptor("operator", Types.PICKLED_BYTE_ARRAY()))
            self.position = runtime_context.get_state(ValueStateDescriptor("next slice", Types.LONG()))
            self.rebase_state = runtime_context.get_state(ValueStateDescriptor("rebase", Types.PICKLED_BYTE_ARRAY()))
            self.ctx = OperatorContext(self.uid)
            self.ctx.checkpointing = True
            self.op = self.store = None
            self.next_slice = 0

        def _operator(self, ctx: Any) -> Any:
            if self.op is None:   # first record or timer of this worker: restore what Flink restored
                self.next_slice = self.position.value() or 0
                self.op = restored_operator(self.spec, self.ctx, self.state.value())
                if self.rebase is not None:
                    self.store = restored_operator(self.rebase, self.ctx, self.rebase_state.value())
                ctx.timer_service().register_event_time_timer(END_OF_INPUT)
                if self.op.wants_timer or self.store is not None:
                    self._next_timer(ctx)
            return self.op

        def _next_timer(self, ctx: Any) -> None:
            every = min(1.0, self.rebase.poll_interval) if self.store is not None else 1.0
            ctx.timer_service().register_processing_time_timer(int((time.time() + every) * 1000))

        def _step(self, call: Callable[..., list[pa.Table]], *args: Any) -> tuple[list[bytes], bytes | None,
                                                                                   bytes | None]:
            """The operator's outputs of the store's new versions (a rebased trainer) then of
            ``call(*args)``, its state after them and the store source's, as bytes."""
            outs: list[pa.Table] = []
            if self.store is not None:
                for version in self.store.poll(16):
                    outs += self.op.process(version, 1)
            records, snap = outputs_and_state(self.op, outs + call(*args))
            return records, snap, None if self.store is None else self.store.snapshot_state().to_bytes()

        def _emit(self, call: Callable[..., list[pa.Table]], *args: Any) -> Iterator[bytes]:
            before = self.next_slice
            records, snap, store = in_worker(self._step, call, *args)
            if snap is not None:   # keyed state is written on the thread Flink called us on
                self.state.update(snap)
            if store is not None:
                self.rebase_state.update(store)
            if self.next_slice != before:
                self.position.update(self.next_slice)
            yield from records

        def _read_and_process(self, i: int) -> list[pa.Table]:
            """What the operator makes of the source it reads itself, through its chain: file ``i``,
            or a table's slices from where the last call stopped for about ``CALL_SECONDS`` (a call
            crosses from the JVM and rewrites the state, which a few slices would not amortize; the
            slices' number ``i`` only paces the calls; the ones after the last slice do nothing)."""
            if isinstance(self.read, _Slices):
                tables: Iterator[pa.Table] = self._slices_for_a_while()
            else:
                tables = self.read.tables(int(i))
            outs: list[pa.Table] = []
            for t in tables:
                t = run_chain(self.chain, t)
                if t is not None:
                    outs += self.op.process(t, 0)
            return outs

        def _slices_for_a_while(self) -> Iterator[pa.Table]:
            end = time.perf_counter() + CALL_SECONDS
            while self.next_slice < self.read.count:
                self.next_slice += 1
                yield self.read.slice(self.next_slice - 1)
                if time.perf_counter() >= end:
                    return

        def process_element(self, record: Any, ctx: Any) -> Iterator[bytes]:
            """``record``: a batch's IPC bytes, or the number of a batch to read (with ``read``)."""
            op = self._operator(ctx)
            if isinstance(self.read, _Slices) and self.next_slice >= self.read.count:
                return   # an earlier call read the last slice: nothing to do, no state to rewrite
            if self.read is not None:
                yield from self._emit(self._read_and_process, record)
            else:
                yield from self._emit(lambda r: op.process(from_ipc(r), 0), record)

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[bytes]:
            op = self._operator(ctx)
            if ctx.time_domain() == TimeDomain.EVENT_TIME:
                yield from self._emit(op.on_end)
                return
            self._next_timer(ctx)
            yield from self._emit(op.on_timer, time.time())

    return OperatorFunction


def broadcast_model_function() -> Any:
    """The class of Flink keyed-broadcast function that scores batches with the newest version
    of a model stream produced in the same job (made on first use)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedBroadcastProcessFunction, TimeDomain
    from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor

    class BroadcastModel(KeyedBroadcastProcessFunction):
        """``stage`` applied to data batches (keyed across the workers) with the newest version of
        the broadcast model stream. The newest version sits in Flink's broadcast state (so it is
        checkpointed and restored); a batch that arrives before any version waits in keyed list
        state and is scored by the first version to arrive (checked every 100 ms, and when the
        inputs end)."""

        VERSIONS = MapStateDescriptor("versions", Types.INT(), Types.PICKLED_BYTE_ARRAY())

        def __init__(self, stage: Any) -> None:
            self.stage = stage

        def open(self, runtime_context: Any) -> None:
            self.waiting = runtime_context.get_list_state(ListStateDescriptor("waiting", Types.PICKLED_BYTE_ARRAY()))
            self.op: Any = None
            self.applied: bytes | None = None

        def _model(self, ctx: Any) -> Any:
            """The scoring operator on the newest broadcast version, or None before the first."""
            from flowlearn.stream.models import ModelStreamOp

            current = ctx.get_broadcast_state(self.VERSIONS).get(0)
            if current is None:
                return None
            current = bytes(current)
            if current != self.applied:
                if self.op is None:
                    self.op = ModelStreamOp(self.stage)
                in_worker(self.op.process, from_ipc(current), 1)
                self.applied = current
            return self.op

        def _score(self, op: Any, record: bytes) -> list[bytes]:
            return in_worker(self._scored, op, record)

        @staticmethod
        def _scored(op: Any, record: bytes) -> list[bytes]:
            out = [to_ipc(t) for t in op.process(from_ipc(record), 0)]
            if op.waiting:
                raise NotImplementedError("FlinkEngine: rows that wait for a fresher version (event-time model "
                                          "freshness) are not translated to Flink yet; use the local engine")
            return out

        def process_element(self, record: bytes, ctx: Any) -> Iterator[bytes]:
            op = self._model(ctx)
            if op is None:
                self.waiting.add(record)
                ctx.timer_service().register_processing_time_timer(int(time.time() * 1000) + 100)
                ctx.timer_service().register_event_time_timer(END_OF_INPUT)
                return
            yield from self._score(op, record)

        def process_broadcast_element(self, record: bytes, ctx: Any) -> None:
            from flowlearn.stream.models import read_version

            state = ctx.get_broadcast_state(self.VERSIONS)
            old = state.get(0)
            if old is None or read_version(from_ipc(bytes(old))).version < read_version(from_ipc(record)).version:
                state.put(0, record)

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[bytes]:
            op = self._model(ctx)
            if op is None:
                if ctx.time_domain() == TimeDomain.EVENT_TIME:   # both inputs ended without a version
                    n = sum(from_ipc(bytes(r)).num_rows for r in self.waiting.get())
                    raise RuntimeError(f"FlinkEngine: {n} rows never got a model version: the model stream "
                                       f"ended without one")
                ctx.timer_service().register_processing_time_timer(int(time.time() * 1000) + 100)
                return
            waiting = [bytes(r) for r in self.waiting.get()]
            self.waiting.clear()
            for record in waiting:
                yield from self._score(op, record)

    return BroadcastModel
