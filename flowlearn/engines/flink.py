"""The Flink engine: flowlearn plans as PyFlink DataStream jobs (``pip install flowlearn[flink]``).

A record is one Arrow record batch (IPC bytes), so Python work is per batch, never per row.
What runs on Flink today (the rest of the plan is refused by node, before anything starts):

- bounded plans: ``from_table`` and ``from_files`` (CSV, JSON lines, Parquet; not watched)
  sources, read in parallel by file (or by slice of the table);
- chains of stateless nodes (``map_batches``, ``filter``, ``select``, every transformer and model
  applied with ``transform``) fused into one Python operator per chain; ``union``;
- ``collect()`` sinks: the batches come back to the client as Arrow tables; ``to_files()`` sinks:
  each batch is written to an in-progress file on a task manager and the client moves them into
  place when the job succeeds (nothing of a failed job is visible; a file per batch);
- fits: a one-pass estimator (scalers, imputer, indexers, encoders, naive Bayes) runs ``partial``
  on every batch in parallel on the task managers and ``merge`` + ``finish`` on the client; an
  iterative one that drives its rounds (the L-BFGS linear models) runs its driver on the client
  and each round's partials as one Flink job; other estimators get their input read and prepared
  by Flink and are fitted on the client.

Example (needs the ``flink`` extra; starts a local mini-cluster; more in ``docs/flink.md``):
    >>> import flowlearn as fl, flowlearn.stream as fls
    >>> with fl.set_engine(FlinkEngine(parallelism=2)):                      # doctest: +SKIP
    ...     fls.from_table({"x": [1.0, 2.0, 3.0]}).select("x").to_table().num_rows
    3
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
import uuid
from typing import Any, Iterator

import pyarrow as pa

from flowlearn.api import IterativeEstimator, OnePassEstimator
from flowlearn.engines.base import Engine, Job
from flowlearn.stream.core import Sink, StatelessSpec, UnionSpec
from flowlearn.stream.files import FilesSourceSpec
from flowlearn.stream.plan import PlanNode, build_operator, plan_nodes
from flowlearn.stream.sinks import EXTENSIONS, CollectSpec, FilesSinkSpec, FormatFile, fsync_dir
from flowlearn.stream.source import TableSourceSpec

__all__ = ["FlinkEngine", "FlinkJob"]


def _to_ipc(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return sink.getvalue().to_pybytes()


def _from_ipc(b: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(b)).read_all()


class _TableSlices:
    """Slice ``i`` of a table as one record (a ``from_table`` source, read by slice in parallel)."""

    def __init__(self, table: pa.Table, batch_size: int) -> None:
        self.table, self.batch_size = table, batch_size

    def __call__(self, i: int) -> Iterator[bytes]:
        yield _to_ipc(self.table.slice(i * self.batch_size, self.batch_size))


class _FileBatches:
    """The batches of one file of a ``from_files`` source, read with the local engine's reader."""

    def __init__(self, spec: FilesSourceSpec) -> None:
        self.spec = spec

    def __call__(self, path: str) -> Iterator[bytes]:
        t = build_operator(self.spec).read_table(path)
        for start in range(0, t.num_rows, self.spec.batch_size):
            yield _to_ipc(t.slice(start, self.spec.batch_size))


class _Chain:
    """A chain of stateless specs applied to each batch in one Python operator; empty batches are
    dropped."""

    def __init__(self, specs: list[StatelessSpec]) -> None:
        self.specs = specs

    def __call__(self, record: bytes) -> Iterator[bytes]:
        t: pa.Table | None = _from_ipc(record)
        for s in self.specs:
            t = s.apply(t)
            if t is None:
                return
        if t.num_rows:
            yield _to_ipc(t)


class _Partial:
    """A one-pass estimator's ``partial`` of one batch, as its state's IPC bytes."""

    def __init__(self, estimator: OnePassEstimator) -> None:
        self.estimator = estimator

    def __call__(self, record: bytes) -> bytes:
        return _to_ipc(self.estimator.partial(_from_ipc(record)))


class _MapBatch:
    """``fn(batch) -> table`` of an estimator's driver, on IPC records."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, record: bytes) -> bytes:
        return _to_ipc(self.fn(_from_ipc(record)))


class _WriteFile:
    """One batch written to its own in-progress file of a ``to_files`` sink; the record is the
    file's name and row count, for the client to commit after the job succeeds."""

    def __init__(self, spec: FilesSinkSpec, token: str) -> None:
        self.spec, self.token = spec, token

    def __call__(self, record: bytes) -> bytes:
        t = _from_ipc(record)
        name = f"{self.spec.prefix}-flink-{self.token}-{uuid.uuid4().hex}.{EXTENSIONS[self.spec.format]}.tmp"
        out = FormatFile(os.path.join(self.spec.path, ".inprogress", name), self.spec.format, t)
        out.write_table(t)
        out.close()
        return f"{name}\t{t.num_rows}".encode()


class _Tag:
    """A record prefixed with the index of the sink it goes to (4 bytes, little endian)."""

    def __init__(self, k: int) -> None:
        self.prefix = k.to_bytes(4, "little")

    def __call__(self, record: bytes) -> bytes:
        return self.prefix + record


class FlinkJob(Job):
    """A job submitted to Flink: its ``collect()`` results arrive on a client thread."""

    def __init__(self, collect: Any, sinks: list[PlanNode], token: str) -> None:
        self._collect = collect            # () -> a closeable iterator of records tagged by _Tag
        self._sinks = sinks
        self._token = token
        self._results: list[list[pa.Table]] = [[] for _ in sinks]
        self._written: list[list[tuple[str, int]]] = [[] for _ in sinks]   # in-progress files of file sinks
        self._error: BaseException | None = None
        self._iterator: Any = None
        self._started = time.monotonic()
        self._finished: float | None = None
        self._thread = threading.Thread(target=self._run, name="flowlearn-flink-job", daemon=True)

    def _run(self) -> None:
        try:
            with self._collect() as it:
                self._iterator = it
                for record in it:
                    k, payload = int.from_bytes(record[:4], "little"), bytes(record[4:])
                    if isinstance(self._sinks[k].spec, CollectSpec):
                        self._results[k].append(_from_ipc(payload))
                    else:
                        name, rows = payload.decode().split("\t")
                        self._written[k].append((name, int(rows)))
            self._commit_files()
        except BaseException as e:  # noqa: BLE001 - re-raised in wait()
            self._error = e
            self._discard_files()
        finally:
            self._finished = time.monotonic()

    def _commit_files(self) -> None:
        """The job succeeded: every in-progress file goes into place (a bounded job's output is
        committed once, whole, by the client: nothing of a failed or stopped job is visible)."""
        for node, files in zip(self._sinks, self._written):
            spec = node.spec
            for i, (name, _) in enumerate(sorted(files)):
                final = f"{spec.prefix}-{self._token}-{i:06d}.{EXTENSIONS[spec.format]}"
                os.replace(os.path.join(spec.path, ".inprogress", name), os.path.join(spec.path, final))
            if files:
                fsync_dir(spec.path)

    def _discard_files(self) -> None:
        for node in self._sinks:
            folder = os.path.join(node.spec.path, ".inprogress") if isinstance(node.spec, FilesSinkSpec) else None
            if folder and os.path.isdir(folder):
                for name in os.listdir(folder):
                    if f"-flink-{self._token}-" in name:
                        os.remove(os.path.join(folder, name))

    def start(self) -> "FlinkJob":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> "FlinkJob":
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the Flink job did not finish within {timeout}s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, wait: bool = True) -> "FlinkJob":
        if self._iterator is not None:
            self._iterator.close()   # cancels the job
        if wait:
            self._thread.join()
        return self

    @property
    def metrics(self) -> dict:
        elapsed = (self._finished or time.monotonic()) - self._started
        per_sink = {n.uid or n.name: sum(t.num_rows for t in ts) + sum(r for _, r in fs)
                    for n, ts, fs in zip(self._sinks, self._results, self._written)}
        return {"engine": "flink", "rows_out": sum(per_sink.values()), "elapsed_seconds": elapsed, "sinks": per_sink}

    def collected(self, sink: Any) -> list[pa.Table]:
        node = getattr(sink, "node", sink)
        for n, ts in zip(self._sinks, self._results):
            if n is node:
                return list(ts)
        raise ValueError(f"{sink!r} is not a collect() sink of this job")


class FlinkEngine(Engine):
    """Runs plans on Apache Flink through PyFlink's DataStream API (see the module docstring).

    ``parallelism``: the job's parallelism; ``config``: Flink configuration entries (strings);
    ``mode``: ``"process"`` (Python workers in their own processes) or ``"thread"`` (inside the
    task manager's JVM). Jobs run on a local mini-cluster in this process.
    """

    name = "flink"

    def __init__(self, parallelism: int = 1, config: dict[str, str] | None = None, mode: str = "process") -> None:
        if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
            raise ValueError(f"FlinkEngine: parameter 'parallelism' = {parallelism!r} violates gt_eq(1)")
        if mode not in ("process", "thread"):
            raise ValueError(f"FlinkEngine: parameter 'mode' = {mode!r} violates in_array(['process', 'thread'])")
        self.parallelism, self.config, self.mode = parallelism, dict(config or {}), mode

    def __repr__(self) -> str:
        return f"FlinkEngine(parallelism={self.parallelism}, mode={self.mode!r})"

    # -- the environment -----------------------------------------------------------------------
    def _env(self) -> Any:
        try:
            from pyflink.common import Configuration
            from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
        except ImportError:
            raise ImportError("FlinkEngine needs PyFlink: pip install 'flowlearn[flink]' (apache-flink 2.3)") from None
        conf = Configuration()
        conf.set_string("python.execution-mode", self.mode)
        conf.set_string("python.executable", sys.executable)
        conf.set_string("python.client.executable", sys.executable)
        for k, v in self.config.items():
            conf.set_string(k, str(v))
        env = StreamExecutionEnvironment.get_execution_environment(conf)
        env.set_runtime_mode(RuntimeExecutionMode.BATCH)
        env.set_parallelism(self.parallelism)
        return env

    # -- translation ---------------------------------------------------------------------------
    def _translate(self, env: Any, roots: list[PlanNode]) -> list[Any]:
        """DataStreams of IPC records for ``roots``' inputs; stateless chains fused."""
        from pyflink.common import Types

        records = Types.PICKLED_BYTE_ARRAY()
        nodes = plan_nodes(roots)
        consumers: dict[int, int] = {}
        for n in nodes:
            for i in n.inputs:
                consumers[id(i)] = consumers.get(id(i), 0) + 1
        out: dict[int, tuple[Any, list[StatelessSpec]]] = {}

        def materialized(n: PlanNode) -> Any:
            ds, chain = out[id(n)]
            if chain:
                ds = ds.flat_map(_Chain(chain), output_type=records).name(f"chain({n.name})")
                out[id(n)] = (ds, [])
            return ds

        for n in nodes:
            spec, where = n.spec, f"plan node {n.name!r} ({type(n.spec).__name__})"
            if n.kind == "sink":
                continue
            if not n.bounded:
                raise NotImplementedError(f"FlinkEngine: {where} is unbounded; the Flink engine runs bounded plans so "
                                          f"far (use the local engine for streams that do not end)")
            if isinstance(spec, TableSourceSpec):
                k = -(-spec.table.num_rows // spec.batch_size)
                ds = env.from_collection(list(range(k)), type_info=Types.INT()) \
                    .flat_map(_TableSlices(spec.table, spec.batch_size), output_type=records).name(n.name)
                out[id(n)] = (ds, [])
            elif isinstance(spec, FilesSourceSpec):
                if spec.handle_invalid != "error":
                    raise NotImplementedError(f"FlinkEngine: {where} has handle_invalid={spec.handle_invalid!r}; dead "
                                              f"letters are not translated to Flink yet, so bad records would be lost: "
                                              f"use handle_invalid='error' or the local engine")
                paths = build_operator(spec).ready_files()
                ds = env.from_collection(paths, type_info=Types.STRING()) \
                    .flat_map(_FileBatches(spec), output_type=records).name(n.name)
                out[id(n)] = (ds, [])
            elif isinstance(spec, StatelessSpec):   # joins its input's chain (a shared input's chain ran below)
                ds, chain = out[id(n.inputs[0])]
                out[id(n)] = (ds, chain + [spec])
            elif isinstance(spec, UnionSpec):
                first, *rest = [materialized(i) for i in n.inputs]
                out[id(n)] = (first.union(*rest) if rest else first, [])
            else:
                raise NotImplementedError(f"FlinkEngine: {where} is not translated to Flink yet; the Flink engine runs "
                                          f"sources from_table/from_files, stateless stages, union and collect() so "
                                          f"far (use the local engine for this plan)")
            if consumers.get(id(n), 0) > 1:   # a shared node's chain runs once, before its consumers
                materialized(n)
        return [materialized(r.inputs[0]) for r in roots]

    def run(self, *sinks: Any, checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0,
            **options: Any) -> FlinkJob:
        """Submit a bounded plan ending in ``collect()`` sinks; returns at once (``wait()`` for the end)."""
        if options:
            raise TypeError(f"FlinkEngine.run: unknown option(s) {sorted(options)}; configure Flink with "
                            f"FlinkEngine(config={{...}})")
        if checkpoint_dir is not None:
            raise NotImplementedError("FlinkEngine.run: bounded Flink jobs rerun from the start on failure; "
                                      "checkpoint_dir is for the local engine")
        roots = [s.node if isinstance(s, Sink) else s for s in sinks]
        if not roots:
            raise ValueError("fl.run needs at least one sink (stream.collect(), ...)")
        for r in roots:
            if not (isinstance(r, PlanNode) and r.kind == "sink"):
                raise TypeError(f"fl.run takes sinks, got {type(r).__name__}")
            if not isinstance(r.spec, (CollectSpec, FilesSinkSpec)):
                raise NotImplementedError(f"FlinkEngine: the sink {r.name!r} ({type(r.spec).__name__}) is not "
                                          f"translated to Flink yet; collect() and to_files() sinks are (use the "
                                          f"local engine)")
            if isinstance(r.spec, FilesSinkSpec):
                os.makedirs(os.path.join(r.spec.path, ".inprogress"), exist_ok=True)
        env = self._env()
        streams = self._translate(env, roots)
        from pyflink.common import Types

        token = uuid.uuid4().hex[:12]
        records = Types.PICKLED_BYTE_ARRAY()
        # paths resolved here: the task managers' Python workers need not share the client's directory
        tagged = [(ds if isinstance(r.spec, CollectSpec) else
                   ds.map(_WriteFile(dataclasses.replace(r.spec, path=os.path.abspath(r.spec.path)), token),
                          output_type=records)).map(_Tag(k), output_type=records)
                  for k, (r, ds) in enumerate(zip(roots, streams))]
        both = tagged[0].union(*tagged[1:]) if len(tagged) > 1 else tagged[0]
        job = FlinkJob(both.execute_and_collect, roots, token)
        for s in sinks:
            if isinstance(s, Sink):
                s.job = job
        return job.start()

    def _map_collect(self, stream: Any, fn: Any, name: str) -> list[pa.Table]:
        """One job: ``fn(record) -> IPC bytes`` over every batch of ``stream`` in parallel; the results."""
        from pyflink.common import Types

        (ds,) = self._translate(self._env(), [stream.collect().node])
        with ds.map(fn, output_type=Types.PICKLED_BYTE_ARRAY()).name(name).execute_and_collect() as it:
            return [_from_ipc(bytes(b)) for b in it]

    def fit(self, estimator: Any, *inputs: Any) -> Any:
        """A one-pass estimator: ``partial`` per batch in parallel on Flink, ``merge`` and ``finish``
        here. An iterative estimator that drives its rounds (``drives_rounds``: the L-BFGS linear
        models): its driver runs here and each round's partials run in parallel on Flink, a job per
        round. Other estimators: their inputs read on Flink and the fit run here."""
        import flowlearn.stream as fls

        rounds = isinstance(estimator, IterativeEstimator) and estimator.drives_rounds
        if not (isinstance(estimator, OnePassEstimator) or rounds) or len(inputs) != 1:
            return super().fit(estimator, *inputs)
        (data,) = inputs
        stream = data if getattr(data, "_flowlearn_stream", False) else fls.from_table(data)
        if not stream.bounded:
            raise ValueError(f"{type(estimator).__name__} is a batch estimator and cannot train on an unbounded stream")
        if rounds:
            return estimator.fit_rounds(lambda fn, name="round": self._map_collect(stream, _MapBatch(fn), name))
        parts = self._map_collect(stream, _Partial(estimator), "partial")
        if not parts:   # no rows: the estimator's own message for an empty input
            return estimator.fit(stream.schema.empty_table() if stream.schema is not None else pa.table({}))
        return estimator.finish(estimator.merge(parts))
