"""The Flink engine: flowlearn plans as PyFlink jobs (``pip install flowlearn[flink]``).

A record is one Arrow record batch (IPC bytes), so Python work is per batch, never per row.
What runs on Flink today (the rest of the plan is refused by node, before anything starts):

- ``from_table`` and ``from_files`` (CSV, JSON lines, Parquet) sources, read in parallel by
  file (or by slice of the table) from a checkpointed source of file or slice numbers;
- chains of stateless nodes (``map_batches``, ``filter``, ``select``, every transformer and model
  applied with ``transform``) fused into one Python operator per chain; ``union``;
- stateful nodes (online trainers, streaming evaluators, ``to_model_store`` sinks) as flowlearn's
  own operator in a one-key Flink function whose state Flink checkpoints (reading its source
  itself when the batches reach it through a chain of their own; a trainer rebased by a model
  store polling the store itself); model streams trained in the job (broadcast to the scorers)
  or followed from a model store on every worker;
- event time as Flink's (batch timestamps, bounded out-of-orderness watermarks) and windows
  (count, processing and event time, tumbling and sliding) as flowlearn's window operator on one
  key driven by Flink's timers; a window's late rows and a files source's dead letters as Flink
  side outputs (:mod:`flink_time`);
- ``collect()`` sinks (the batches come back to the client, exactly once under checkpoints) and
  ``foreach(fn)`` sinks (``fn`` called on the client as each batch comes back),
  ``to_files()`` sinks of a bounded job without checkpoints (a file per batch, moved into place
  by the client when the job succeeds), and ``to_kafka()`` and the other ``to_files()`` sinks
  (CSV, JSON lines, Parquet) on Flink's own Kafka and filesystem sinks, exactly once with checkpoints;
- Kafka topics and watched directories (CSV, JSON lines, Parquet) on Flink's own connectors (:mod:`flink_connectors`),
  with their dead letters and Kafka metadata columns: source -> stateless chain -> ``to_kafka``
  / ``to_files`` end to end on the connectors, any other plan fed by them;
- fits: a one-pass estimator runs ``partial`` on every batch in parallel on the task managers and
  ``merge`` + ``finish`` on the client; an iterative one that drives its rounds (the L-BFGS
  linear models) runs its driver on the client and each round's partials as one Flink job;
  other estimators get their input read and prepared by Flink and are fitted on the client.

Jobs run on a mini-cluster kept for the session in PyFlink's JVM, or on a session cluster
(``cluster="host:port"``); Python runs in process mode (Beam workers; on the mini-cluster, this
process) or thread mode (inside the JVM, one Python operator per task: see
:func:`_may_chain_python_operators`).

Example (needs the ``flink`` extra; starts a local mini-cluster; more in ``docs/flink.md``):
    >>> import flowlearn as fl, flowlearn.stream as fls
    >>> with fl.set_engine(FlinkEngine(parallelism=2)):                      # doctest: +SKIP
    ...     fls.from_table({"x": [1.0, 2.0, 3.0]}).select("x").to_table().num_rows
    3
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import zlib
from typing import Any, Callable

import pyarrow as pa

from flowlearn.api import IterativeEstimator, OnePassEstimator
from flowlearn.engines import flink_functions as fn
from flowlearn.engines.base import Engine, Job
from flowlearn.engines.flink_functions import from_ipc
from flowlearn.engines.flink_time import TimeTranslation
from flowlearn.stream.core import Sink, StatefulMapSpec, StatelessSpec, UnionSpec
from flowlearn.stream.files import FilesSourceSpec
from flowlearn.stream.kafka import KafkaSinkSpec, KafkaSourceSpec
from flowlearn.stream.models import ModelStoreSinkSpec, ModelStoreSourceSpec, ModelStreamSpec, TrainerSpec
from flowlearn.stream.plan import PlanNode, SideOutputSpec, build_operator, plan_nodes
from flowlearn.stream.sinks import EXTENSIONS, CollectSpec, FilesSinkSpec, ForeachSpec, fsync_dir
from flowlearn.stream.source import TableSourceSpec
from flowlearn.stream.window import WatermarkSpec, WindowSpec

# Plan nodes that run flowlearn's own stateful operator on one key, their state in Flink's keyed state.
_KEYED = (TrainerSpec, StatefulMapSpec, ModelStoreSinkSpec)


# A from_table source larger than this goes to the workers as an Arrow IPC file (in the client's
# shared memory or temp directory, removed when the job ends) instead of inside the job graph,
# whose size Java caps.
_SHIPPED_TABLE_BYTES = 32 * 2 ** 20
# A Kafka topic or watched directory read by a plan with stateful nodes reaches them in batches of
# this many seconds of records (each partition's or file's own).
STREAM_BATCH_SECONDS = 0.5
# Cluster hosts whose task managers run on the client's machine (they read its spilled tables).
_THIS_MACHINE = {"localhost", "127.0.0.1", "::1", "[::1]", socket.gethostname()}


def _spread_key(record: bytes) -> int:
    return zlib.crc32(record[-256:]) % 1024

__all__ = ["FlinkEngine", "FlinkJob"]


class _FollowedJob(Job):
    """A Flink job followed by a client thread: ``_follow()`` runs there until the job ends, and
    ``wait()`` re-raises its error."""

    def __init__(self) -> None:
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._finished: float | None = None
        self._thread = threading.Thread(target=self._run, name="flowlearn-flink-job", daemon=True)

    def _follow(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as e:  # noqa: BLE001 - re-raised in wait()
            self._error = e
        finally:
            self._finished = time.monotonic()

    def _elapsed(self) -> float:
        return (self._finished or time.monotonic()) - self._started

    def start(self) -> "_FollowedJob":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> "_FollowedJob":
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the Flink job did not finish within {timeout}s")
        if self._error is not None:
            raise self._error
        return self


class FlinkJob(_FollowedJob):
    """A job of the DataStream API: its ``collect()`` results and written files arrive on the
    client thread."""

    def __init__(self, collect: Any, sinks: list[PlanNode], token: str, temp_folders: list[str]) -> None:
        super().__init__()
        self._collect = collect            # () -> a closeable iterator of chunks made by Tag
        self._temp_folders = temp_folders  # temp folders and client tables, released when the job ends
        self._sinks = sinks
        self._token = token
        self._results: list[list[pa.Table]] = [[] for _ in sinks]
        self._written: list[list[tuple[str, int]]] = [[] for _ in sinks]   # in-progress files of file sinks
        self._iterator: Any = None

    def _follow(self) -> None:
        try:
            with self._collect() as it:
                self._iterator = it
                for k, payload in fn.untag(it):
                    spec = self._sinks[k].spec
                    if isinstance(spec, CollectSpec):
                        self._results[k].append(from_ipc(payload))
                    elif isinstance(spec, ForeachSpec):   # called here, on the client, batch by batch
                        t = from_ipc(payload)
                        spec.fn(t)
                        self._written[k].append(("", t.num_rows))
                    else:
                        name, rows = payload.decode().split("\t")   # no name: rows given to Flink's sink
                        self._written[k].append((name, int(rows)))
            self._commit_files()
        except BaseException:
            self._discard_files()
            raise
        finally:
            _release(self._temp_folders)

    def _commit_files(self) -> None:
        """The job succeeded: every in-progress file goes into place (a bounded job's output is
        committed once, whole, by the client: nothing of a failed or stopped job is visible)."""
        for node, files in zip(self._sinks, self._written):
            spec = node.spec
            names = sorted(name for name, _ in files if name)   # (Flink's own sinks' counts have none)
            for i, name in enumerate(names):
                final = f"{spec.prefix}-{self._token}-{i:06d}.{EXTENSIONS[spec.format]}"
                os.replace(os.path.join(spec.path, ".inprogress", name), os.path.join(spec.path, final))
            if names:
                fsync_dir(spec.path)

    def _discard_files(self) -> None:
        for node in self._sinks:
            folder = os.path.join(node.spec.path, ".inprogress") if isinstance(node.spec, FilesSinkSpec) else None
            if folder and os.path.isdir(folder):
                for name in os.listdir(folder):
                    if f"-flink-{self._token}-" in name:
                        os.remove(os.path.join(folder, name))

    def stop(self, wait: bool = True) -> "FlinkJob":
        if self._iterator is not None:
            self._iterator.close()   # cancels the job
        if wait:
            self._thread.join()
        return self

    @property
    def metrics(self) -> dict:
        elapsed = self._elapsed()
        per_sink = {n.uid or n.name: sum(t.num_rows for t in ts) + sum(r for _, r in fs)
                    for n, ts, fs in zip(self._sinks, self._results, self._written)}
        return {"engine": "flink", "rows_out": sum(per_sink.values()), "elapsed_seconds": elapsed, "sinks": per_sink}

    def collected(self, sink: Any) -> list[pa.Table]:
        node = getattr(sink, "node", sink)
        for n, ts in zip(self._sinks, self._results):
            if n is node:
                return list(ts)
        raise ValueError(f"{sink!r} is not a collect() sink of this job")


def _release(spilled: list[str]) -> None:
    """The temp folders and client tables of a job that ended."""
    for item in spilled:
        if fn.CLIENT_TABLES.pop(item, None) is None:
            shutil.rmtree(item, ignore_errors=True)


def _is_connector_source(spec: Any) -> bool:
    """A source Flink's own connectors read: a Kafka topic or a watched directory."""
    return isinstance(spec, KafkaSourceSpec) or (isinstance(spec, FilesSourceSpec) and spec.watch)


def _check_connector_source(spec: Any) -> None:
    if isinstance(spec, FilesSourceSpec) and spec.pattern is not None:
        raise NotImplementedError(f"FlinkEngine: a watched directory with a pattern ({spec.pattern!r}) is not "
                                  f"translated to Flink: Flink's file source reads every file of the directory "
                                  f"(move the files to a directory of their own, or use the local engine)")


def _on_flink_sink(root: PlanNode, checkpoint_dir: str | None) -> bool:
    """Whether the DataStream translation writes the sink ``root`` with Flink's own connectors:
    every ``to_kafka``, and a ``to_files`` whose stream does not end or that commits on
    checkpoints (a bounded job without checkpoints writes its files from Python, committed by the
    client when the job succeeds, in every format and named as the local sink names them)."""
    return isinstance(root.spec, KafkaSinkSpec) or (
        isinstance(root.spec, FilesSinkSpec) and (not root.bounded or checkpoint_dir is not None))


def _may_chain_python_operators(nodes: list[PlanNode], consumers: dict[int, int], env: Any) -> bool:
    """Whether Flink's operator chaining could put two of PyFlink's embedded Python operators
    (thread mode) into one task of the job of ``nodes``, which then hangs: PyFlink fuses a Python
    operator into the one before it only when that one has a single output, and Flink chains the
    rest. Each embedded operator gets a pemja interpreter of its own, a PyThreadState made on the
    task's thread; CPython binds a thread to the first PyThreadState made on it (PyGILState), so
    a second operator in the task runs Python under a thread state that is not its thread's, and
    C code taking the lock through PyGILState_Ensure there (Arrow freeing a buffer that wraps
    Python bytes) waits for the lock its own thread holds. A job of one line of nodes (one sink,
    no shared node, no side output, no model stream trained in the job, no Flink connector) has
    one fused Python operator per task and keeps chaining, which saves a hop per batch.
    ``consumers``: how many nodes read each node (by ``id``)."""
    checkpoints = env.get_checkpoint_config().is_checkpointing_enabled()
    return (sum(id(n) not in consumers for n in nodes) > 1 or any(c > 1 for c in consumers.values()) or any(
        isinstance(n.spec, (SideOutputSpec, WatermarkSpec, WindowSpec, KafkaSinkSpec)) or _is_connector_source(n.spec)
        or (isinstance(n.spec, ModelStreamSpec) and not isinstance(n.inputs[1].spec, ModelStoreSourceSpec))
        or (isinstance(n.spec, FilesSinkSpec) and (checkpoints or not n.bounded)) for n in nodes))


def _connector_chain(roots: list[PlanNode]) -> tuple[Any, list[Any], Any] | None:
    """``(source, chain, sink)`` when the plan runs on Flink's connectors end to end: one Kafka
    topic or watched directory -> stateless nodes -> one Kafka topic or directory (CSV, JSON
    lines), rows aligned with their records; None for other plans (the DataStream translation)."""
    from flowlearn.engines.flink_connectors import SINKS

    for n in plan_nodes(roots):
        if _is_connector_source(n.spec):
            _check_connector_source(n.spec)
    chain: list[Any] = []
    n = roots[0].inputs[0] if len(roots) == 1 and isinstance(roots[0].spec, SINKS) else None
    while n is not None and isinstance(n.spec, (StatelessSpec, ModelStreamSpec)):
        if isinstance(n.spec, ModelStreamSpec):   # a model following a store, on every worker
            src = n.inputs[1].spec
            if not isinstance(src, ModelStoreSourceSpec) or src.start != "latest" or src.stop_at_end:
                return None
            chain.insert(0, fn.FollowStore(n.spec.stage, src.store, src.poll_interval, src.kinds))
        else:
            chain.insert(0, n.spec)
        n = n.inputs[0]
    if n is None or not _is_connector_source(n.spec) or n.spec.handle_invalid != "error" or \
            getattr(n.spec, "metadata_columns", ()) or n.spec.format == "parquet" or \
            (isinstance(roots[0].spec, FilesSinkSpec) and roots[0].spec.format == "parquet"):
        return None   # (dead letters, Kafka metadata, typed Parquet columns: batches() of the DataStream translation)
    if isinstance(roots[0].spec, KafkaSinkSpec) and roots[0].spec.key_col is not None:
        return None   # keyed messages: a message per row, which the DataStream translation writes
    return n.spec, chain, roots[0].spec


class TableJob(_FollowedJob):
    """A job of PyFlink's Table API (a plan on Flink's connectors), its end awaited on the client
    thread."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self._result = result

    def _follow(self) -> None:
        self._result.wait()

    def stop(self, wait: bool = True) -> "TableJob":
        client = self._result.get_job_client()
        if client is not None and self.running:
            client.cancel()
        if wait:
            self._thread.join()
        return self

    @property
    def metrics(self) -> dict:
        return {"engine": "flink", "elapsed_seconds": self._elapsed()}

    def collected(self, sink: Any) -> list[pa.Table]:
        raise ValueError("a job on Flink's connectors has no collect() sinks")


def _remote_environment(host: str, port: int, conf: Any, jars: list[str]) -> Any:
    """An environment submitting to the cluster whose jobmanager's REST endpoint is
    ``host:port``, shipping ``jars`` with every job."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    j_jars = gateway.new_array(gateway.jvm.String, len(jars))
    for i, j in enumerate(jars):
        j_jars[i] = j
    j_env = gateway.jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment.createRemoteEnvironment(
        host, int(port), conf._j_configuration, j_jars)
    return StreamExecutionEnvironment(j_env)


def _cluster_environment(cluster: str, conf: Any) -> Any:
    """An environment submitting to the session cluster at ``cluster`` ("host:port"); the jobs
    ship PyFlink's runtime jar (flink-python, which a cluster's lib/ lacks)."""
    import pyflink

    opt = os.path.join(os.path.dirname(os.path.abspath(pyflink.__file__)), "opt")
    jars = [os.path.join(opt, n) for n in sorted(os.listdir(opt)) if n.startswith("flink-python")]
    host, _, port = cluster.rpartition(":")
    return _remote_environment(host, int(port), conf, jars)


def _is_local(env: Any) -> bool:
    from pyflink.util.java_utils import get_j_env_configuration, is_local_deployment

    return is_local_deployment(get_j_env_configuration(env._j_stream_execution_environment))


# Mini-clusters kept for the session, by (parallelism, configuration): starting one per job (what a local
# environment does) costs a second or more of every job's start-up.
_SESSIONS: dict[tuple, tuple[Any, str]] = {}
_SESSIONS_LOCK = threading.Lock()
# A session mini-cluster's defaults under its ``config``: Flink gathers a job's slot requests for
# 50 ms (the slot manager's requirement check) and 20 ms (the job master's), which on one task
# manager gains nothing and adds to every job's start-up.
_SESSION_DEFAULTS = {"slotmanager.requirement-check.delay": "0 ms", "slot.request.max-interval": "0 ms"}
_LOCAL: list[bool] = []   # whether this process's default environment is local (not `flink run -py`'s cluster)
_BOOT: list[Any] = []   # flink_boot's server (None: its script does not run here), started on first use


def _boot_script() -> str | None:
    """The ``python.executable`` of process-mode jobs on a session mini-cluster: PyFlink's boot
    of a job's Python worker without its imports (see :mod:`flink_boot`); None where its script
    cannot run (not POSIX, a temp directory mounted noexec)."""
    import atexit
    import subprocess

    from flowlearn.engines.flink_boot import BootServer

    with _SESSIONS_LOCK:
        if not _BOOT:
            server = None
            if os.name == "posix":
                folder = tempfile.mkdtemp(prefix="flowlearn-flink-boot-")
                atexit.register(shutil.rmtree, folder, True)
                server = BootServer(folder)
                try:
                    ok = subprocess.run([server.script, "-c", ""], timeout=60).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
                server = server if ok else None
            _BOOT.append(server)
        return _BOOT[0].script if _BOOT[0] is not None else None


def _session_environment(parallelism: int, config: dict[str, str], conf: Any, process: bool = False) -> Any:
    """An environment submitting to a mini-cluster in this process's JVM, started on first use
    with ``config`` and twice ``parallelism`` slots (a second job fits beside a running one) and
    kept until the process ends; Python functions of process mode run in this process (PyFlink's
    loopback worker, as on a local environment's mini-cluster), each operator's worker started by
    :mod:`flink_boot` (``process``, unless ``config`` names a ``python.executable``)."""
    from pyflink.common import Configuration
    from pyflink.fn_execution.beam.beam_worker_pool_service import BeamFnLoopbackWorkerPoolServicer
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    key = (parallelism, tuple(sorted(config.items())))
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            cluster_conf = Configuration()
            for k, v in {**_SESSION_DEFAULTS, **config}.items():
                cluster_conf.set_string(k, str(v))
            cluster_conf.set_string("rest.bind-address", "127.0.0.1")
            cluster_conf.set_string("rest.address", "127.0.0.1")
            cluster_conf.set_string("rest.port", "0")
            mc = gateway.jvm.org.apache.flink.runtime.minicluster
            built = mc.MiniClusterConfiguration.Builder().setConfiguration(cluster_conf._j_configuration) \
                .setNumTaskManagers(1).setNumSlotsPerTaskManager(2 * parallelism).build()
            cluster = mc.MiniCluster(built)
            cluster.start()
            loopback = BeamFnLoopbackWorkerPoolServicer().configure(Configuration()).start()
            _SESSIONS[key] = (cluster, loopback)
        cluster, loopback = _SESSIONS[key]
    conf.set_string("python.loopback-server.address", loopback)
    boot = _boot_script() if process and "python.executable" not in config else None
    if boot is not None:
        conf.set_string("python.executable", boot)
    rest = cluster.getRestAddress().get()
    return _remote_environment(rest.getHost(), rest.getPort(), conf, [])   # its JVM has flink-python


def _execute_and_collect(env: Any, ds: Any) -> Any:
    """``ds.execute_and_collect()`` with PyFlink's chaining of Python operators applied to the
    whole job (``DataStream.execute_and_collect`` applies it from ``ds`` upwards, which leaves
    unchained copies of the Python operators above a node with two consumers running for nothing:
    twice the Python work, and in-progress files of to_files() sinks that nobody commits)."""
    from pyflink.datastream.data_stream import CloseableIterator

    j_iterator = ds._j_data_stream.collectAsync()
    env.execute_async("flowlearn")
    return CloseableIterator(j_iterator, ds.get_type())


def _uri(path: str) -> str:
    return path if "://" in path else "file://" + os.path.abspath(path)


class FlinkEngine(Engine):
    """Runs plans on Apache Flink through PyFlink's DataStream API (see the module docstring).

    ``parallelism``: the job's parallelism; ``config``: Flink configuration entries (strings);
    ``mode``: ``"process"`` (Python workers in their own processes; on the local mini-cluster,
    this process) or ``"thread"`` (inside the task manager's JVM; jobs start faster, functions are
    imported by module: ship yours with ``config={"python.files": ...}``). ``cluster``: ``None``
    runs jobs on a mini-cluster kept for the session in PyFlink's JVM; ``"host:port"`` (a
    jobmanager's REST address) submits them to that session cluster (standalone, YARN or
    Kubernetes session), whose task managers must reach flowlearn, the data and the model stores
    (see docs/flink.md).
    """

    name = "flink"

    def __init__(self, parallelism: int = 1, config: dict[str, str] | None = None, mode: str = "process",
                 cluster: str | None = None) -> None:
        if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
            raise ValueError(f"FlinkEngine: parameter 'parallelism' = {parallelism!r} violates gt_eq(1)")
        if mode not in ("process", "thread"):
            raise ValueError(f"FlinkEngine: parameter 'mode' = {mode!r} violates in_array(['process', 'thread'])")
        if cluster is not None:
            host, _, port = str(cluster).rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"FlinkEngine: parameter 'cluster' = {cluster!r} must be 'host:port' (the "
                                 f"jobmanager's REST address, e.g. 'localhost:8081') or None (a local mini-cluster)")
        self.parallelism, self.config, self.mode, self.cluster = parallelism, dict(config or {}), mode, cluster
        self._spilled: list[str] = []   # temp folders and client tables (fn.CLIENT_TABLES) of the job being translated
        self._loopback = False          # the job's Python workers run in this process

    def __repr__(self) -> str:
        where = f", cluster={self.cluster!r}" if self.cluster else ""
        return f"FlinkEngine(parallelism={self.parallelism}, mode={self.mode!r}{where})"

    # -- the environment -----------------------------------------------------------------------
    def _env(self, streaming: bool = False, checkpoint_dir: str | None = None,
             checkpoint_interval: float = 10.0) -> Any:
        try:
            from pyflink.common import Configuration
            from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
        except ImportError:
            raise ImportError("FlinkEngine needs PyFlink: pip install 'flowlearn[flink]' (apache-flink 2.3)") from None
        # Thread mode's embedded Python (pemja) finds its packages through the PATH of PyFlink's
        # JVM, which the first environment starts: this environment's bin goes first (as an
        # activated virtualenv's does), in any mode, so that later thread-mode jobs work too.
        fn.IN_CLIENT = True
        bin_dir = os.path.dirname(sys.executable)
        if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        conf = Configuration()
        conf.set_string("python.execution-mode", self.mode)
        conf.set_string("python.executable", sys.executable)
        conf.set_string("python.client.executable", sys.executable)
        if checkpoint_dir is not None:
            conf.set_string("execution.checkpointing.dir", _uri(checkpoint_dir))
            conf.set_string("execution.checkpointing.interval", f"{int(checkpoint_interval * 1000)} ms")
            conf.set_string("restart-strategy.type", "fixed-delay")
            conf.set_string("restart-strategy.fixed-delay.attempts", "3")
            conf.set_string("restart-strategy.fixed-delay.delay", "500 ms")
        for k, v in self.config.items():
            conf.set_string(k, str(v))
        self._loopback = False
        if self.cluster is not None:
            env = _cluster_environment(self.cluster, conf)
        else:   # a mini-cluster kept for the session, or the cluster of `flink run -py`
            if not _LOCAL:
                _LOCAL.append(_is_local(StreamExecutionEnvironment.get_execution_environment(conf)))
            if _LOCAL[0]:
                process = self.config.get("python.execution-mode", self.mode) == "process"
                env = _session_environment(self.parallelism, self.config, conf, process)
                self._loopback = process
            else:
                env = StreamExecutionEnvironment.get_execution_environment(conf)
        env.set_runtime_mode(RuntimeExecutionMode.STREAMING if streaming else RuntimeExecutionMode.BATCH)
        env.set_parallelism(self.parallelism)
        # a record is a whole batch (or a batch's number): send it on at once instead of waiting up to
        # Flink's default 100 ms for its network buffer to fill
        env.set_buffer_timeout(0)
        if checkpoint_dir is not None:
            env.enable_checkpointing(int(checkpoint_interval * 1000))
        return env

    def _pace_reading(self, env: Any) -> None:
        """With checkpoints, for a one-key task that reads its source itself, a number per call:
        one number per PyFlink bundle (a bundle's records go to Python at once, and its outputs
        leave, and a checkpoint's barrier passes, only when Python has done them all) and
        unaligned checkpoints (whose barriers pass the numbers still waiting in the task's
        input), so checkpoints complete, and the task's outputs leave, while it reads, not when
        it has read all. (Without checkpoints a bundle of many numbers: a bundle costs a round
        trip to the Python worker, and most numbers come after the calls have read everything.)"""
        from pyflink.util.java_utils import get_j_env_configuration

        if not env.get_checkpoint_config().is_checkpointing_enabled():
            return
        if "python.fn-execution.bundle.size" not in self.config:
            get_j_env_configuration(env._j_stream_execution_environment).setString(
                "python.fn-execution.bundle.size", "1")
        env.get_checkpoint_config().enable_unaligned_checkpoints()

    def _spill(self, table: pa.Table, batch_size: int, where: str) -> str:
        """``table`` as an Arrow IPC file on the client's machine (removed when the job ends), one
        record batch per slice of ``batch_size`` rows, memory-mapped by the readers: in shared
        memory (``/dev/shm``) when it has room, else in the temp directory."""
        if self.cluster is not None and self.cluster.rpartition(":")[0] not in _THIS_MACHINE:
            raise ValueError(f"FlinkEngine: {where} is a from_table source of {table.nbytes / 2 ** 20:.0f} MB, "
                             f"above the {_SHIPPED_TABLE_BYTES // 2 ** 20} MB shipped inside a job, and the "
                             f"cluster {self.cluster!r} runs on another machine, which cannot read the "
                             f"client's copy; write the table to files on a filesystem the cluster reads "
                             f"and use from_files")
        shm = "/dev/shm"
        room = os.path.isdir(shm) and shutil.disk_usage(shm).free > 2 * table.nbytes
        folder = tempfile.mkdtemp(prefix="flowlearn-flink-", dir=shm if room else None)
        self._spilled.append(folder)
        path = os.path.join(folder, "table.arrow")
        with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            for start in range(0, table.num_rows, batch_size):
                w.write_batch(fn.one_batch(table.slice(start, batch_size)))
        return path

    # -- translation ---------------------------------------------------------------------------
    def _translate(self, env: Any, roots: list[PlanNode], keyed: bool = False) -> list[Any]:
        """DataStreams of IPC records for ``roots`` (sinks: their input; model store sinks: the
        sink itself, which emits nothing); stateless chains fused. ``keyed``: the sources' records
        carry their place in the source (``fn.BATCH_KEY``)."""
        from pyflink.common import Types, WatermarkStrategy
        from pyflink.datastream.connectors.number_seq import NumberSequenceSource

        records = Types.PICKLED_BYTE_ARRAY()
        nodes = plan_nodes(roots)
        consumers: dict[int, int] = {}
        for n in nodes:
            for i in n.inputs:
                consumers[id(i)] = consumers.get(id(i), 0) + 1
        if self.mode == "thread" and _may_chain_python_operators(nodes, consumers, env):
            env.disable_operator_chaining()
        followed = {id(n.inputs[1]) for n in nodes if isinstance(n.spec, ModelStreamSpec)
                    and isinstance(n.inputs[1].spec, ModelStoreSourceSpec) and consumers[id(n.inputs[1])] == 1}
        out: dict[int, tuple[Any, list[Any]]] = {}
        # the reader of a source whose batches reach this node through a chain of its own: a one-key
        # operator fed by it can read them itself, sparing the records a crossing
        read_by: dict[int, fn._Reader] = {}
        timed = TimeTranslation(nodes)   # event time, windows and the side outputs the plan reads

        def stream(ds: Any) -> Any:
            """A DataStream, or a source's reader built now (see ``reader``)."""
            return ds() if callable(ds) else ds

        def reader(read: fn._Reader, name: str) -> Callable[[], Any]:
            """The records of a source read by batch number, made on first use: Flink runs every
            operator a job defines, consumed or not, and a trainer that reads the source itself
            leaves them unconsumed."""
            return functools.cache(lambda: indexes(read.count, name).flat_map(read, output_type=records).name(name))

        def materialized(n: PlanNode) -> Any:
            ds, chain = out[id(n)]
            ds = stream(ds)
            if chain:
                ds = ds.flat_map(fn.Chain(chain), output_type=records).name(f"chain({n.name})")
            out[id(n)] = (ds, [])
            return ds

        def indexes(k: int, name: str) -> Any:
            """Batch numbers 0..k-1 from a checkpointed source: a restored job reads on from its
            checkpoint instead of from the start."""
            numbers = env.from_source(NumberSequenceSource(0, max(k, 1) - 1), WatermarkStrategy.no_watermarks(),
                                      f"{name} batches")
            return numbers.filter(lambda i: False) if k == 0 else numbers   # a sequence has at least one number

        rebases = {id(n.inputs[1]) for n in nodes if isinstance(n.spec, TrainerSpec) and len(n.inputs) == 2
                   and isinstance(n.inputs[1].spec, ModelStoreSourceSpec) and consumers[id(n.inputs[1])] == 1}
        for n in nodes:   # (before its inputs are refused as unbounded sources)
            if isinstance(n.spec, _KEYED) and len(n.inputs) != 1 and id(n.inputs[-1]) not in rebases:
                raise NotImplementedError(f"FlinkEngine: plan node {n.name!r} ({type(n.spec).__name__}) has "
                                          f"{len(n.inputs)} inputs; a trainer is rebased on Flink only by a model "
                                          f"store of its own (fit_online(..., rebase=store)), not by a model "
                                          f"stream of the job (use the local engine)")
        for n in nodes:
            spec, where = n.spec, f"plan node {n.name!r} ({type(n.spec).__name__})"
            if id(n) in followed or id(n) in rebases:   # read by their consumer's task
                continue
            if n.kind == "sink" and not isinstance(spec, ModelStoreSinkSpec):
                continue
            if n.kind == "source" and not n.bounded and not _is_connector_source(spec):
                raise NotImplementedError(f"FlinkEngine: {where} is unbounded; the Flink engine reads streams that do "
                                          f"not end from Kafka topics and watched directories (use the local engine)")
            if _is_connector_source(spec):
                if getattr(spec, "stop_at_end", False):
                    raise NotImplementedError(
                        f"FlinkEngine: {where} stops at the topic's end, and its last records (the last of its "
                        f"batching windows) would not reach this plan's stateful nodes, dead letters, metadata "
                        f"columns or keyed messages; leave the job running and stop it, or use the local engine")
                from flowlearn.engines.flink_connectors import batches

                ds = batches(env, spec, n.name, STREAM_BATCH_SECONDS, timed.reads_side_outputs(n))
                out[id(n)] = (timed.emits(n, ds), [])
            elif isinstance(spec, TableSourceSpec):
                if self._loopback:   # read in this process: neither copied into the job nor spilled
                    token = uuid.uuid4().hex
                    fn.CLIENT_TABLES[token] = spec.table
                    self._spilled.append(token)
                    read = fn.ClientSlices(token, spec.table.num_rows, spec.batch_size)
                elif spec.table.nbytes <= _SHIPPED_TABLE_BYTES:
                    read = fn.TableSlices(spec.table, spec.batch_size)
                else:
                    read = fn.SpilledSlices(self._spill(spec.table, spec.batch_size, where), spec.table.num_rows,
                                            spec.batch_size)
                read.keyed = keyed
                out[id(n)] = (reader(read, n.name), [])
                read_by[id(n)] = read
            elif isinstance(spec, FilesSourceSpec):
                paths = build_operator(spec).ready_files()
                if spec.handle_invalid != "error" or timed.reads_side_outputs(n):   # dead letters: a side output
                    out[id(n)] = (timed.files(indexes(len(paths), n.name), n, paths, keyed), [])
                else:
                    read = fn.FileBatches(spec, paths)
                    read.keyed = keyed
                    out[id(n)] = (reader(read, n.name), [])
                    read_by[id(n)] = read
            elif isinstance(spec, WatermarkSpec):   # Flink timestamps, computed at the end of its input's chain
                ds, chain = out[id(n.inputs[0])]
                idle = None if n.bounded else 2 * STREAM_BATCH_SECONDS   # quiet partitions or files
                out[id(n)] = (timed.watermarks(stream(ds), chain, n, idle), [])
            elif isinstance(spec, WindowSpec):
                out[id(n)] = (timed.window(materialized(n.inputs[0]), n), [])
            elif isinstance(spec, SideOutputSpec):
                out[id(n)] = (timed.side_output(n), [])
            elif isinstance(spec, StatelessSpec):   # joins its input's chain (a shared input's chain ran below)
                ds, chain = out[id(n.inputs[0])]
                out[id(n)] = (ds, chain + [spec])
                if id(n.inputs[0]) in read_by:
                    read_by[id(n)] = read_by[id(n.inputs[0])]
            elif isinstance(spec, ModelStreamSpec) and id(n.inputs[1]) in followed:
                src = n.inputs[1].spec
                if src.start != "latest" or src.stop_at_end:
                    raise NotImplementedError(f"FlinkEngine: {where} follows a model store from start={src.start!r}"
                                              f"{', stop_at_end' if src.stop_at_end else ''}; on Flink every worker "
                                              f"follows the store from its latest version (start='latest')")
                ds, chain = out[id(n.inputs[0])]
                out[id(n)] = (ds, chain + [fn.FollowStore(spec.stage, src.store, src.poll_interval, src.kinds)])
            elif isinstance(spec, ModelStreamSpec):   # versions made in this job: broadcast to the scorers
                data, versions = materialized(n.inputs[0]), materialized(n.inputs[1])

                scorer = fn.broadcast_model_function()
                bc = versions.broadcast(scorer.VERSIONS)
                out[id(n)] = (data.key_by(_spread_key, key_type=Types.INT()).connect(bc)
                              .process(scorer(spec.stage), output_type=records).name(n.name), [])
            elif isinstance(spec, _KEYED):
                rebase = n.inputs[1].spec if len(n.inputs) == 2 else None   # a model store the trainer polls
                _, chain = out[id(n.inputs[0])]
                if id(n.inputs[0]) in read_by and (not chain or self.parallelism == 1):
                    # the trainer's task reads the source and runs the chain itself: no batch crosses to
                    # the JVM and back (a chain still runs in parallel ahead of it at parallelism > 1)
                    read = read_by[id(n.inputs[0])]
                    self._pace_reading(env)
                    op = fn.keyed_operator_function()(spec, n.uid or n.name, read, chain, rebase)
                    ds = indexes(read.count, n.inputs[0].name).key_by(fn.one_key, key_type=Types.INT())
                else:
                    op = fn.keyed_operator_function()(spec, n.uid or n.name, rebase=rebase)
                    ds = materialized(n.inputs[0]).key_by(fn.one_key, key_type=Types.INT())
                ds = ds.process(op, output_type=records).name(n.name).set_parallelism(1)   # one key: one task
                out[id(n)] = (ds.uid(n.uid) if n.uid else ds, [])   # a uid keeps state across plan changes
            elif isinstance(spec, UnionSpec):
                first, *rest = [materialized(i) for i in n.inputs]
                out[id(n)] = (first.union(*rest) if rest else first, [])
            else:
                raise NotImplementedError(f"FlinkEngine: {where} is not translated to Flink yet; the Flink engine runs "
                                          f"from_table/from_files sources, stateless stages, model streams (trained in "
                                          f"the job or followed from a model store), online trainers, streaming "
                                          f"evaluators, watermarks, windows, late rows and dead letters, union and "
                                          f"collect()/to_files()/to_model_store() sinks so far "
                                          f"(use the local engine for this plan)")
            if consumers.get(id(n), 0) > 1:   # a shared node's chain runs once, before its consumers
                materialized(n)
                read_by.pop(id(n), None)
        return [materialized(r) if isinstance(r.spec, ModelStoreSinkSpec) else materialized(r.inputs[0])
                for r in roots]

    def run(self, *sinks: Any, checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0,
            **options: Any) -> FlinkJob:
        """Submit a plan; returns at once (``wait()`` for the end).

        Plans with stateful nodes (online trainers, model streams, streaming evaluators, model
        store sinks) run in Flink's streaming mode, others in batch mode. ``checkpoint_dir`` (a
        path or URI that every task manager reaches) turns on Flink's checkpoints every
        ``checkpoint_interval`` seconds and restarts a failed job from its last checkpoint (up to
        3 times): sources read on from their checkpointed batch, operators resume from their
        checkpointed state, and ``collect()`` results are exactly once."""
        if options:
            raise TypeError(f"FlinkEngine.run: unknown option(s) {sorted(options)}; configure Flink with "
                            f"FlinkEngine(config={{...}})")
        if checkpoint_interval <= 0:
            raise ValueError(f"FlinkEngine.run: checkpoint_interval = {checkpoint_interval!r} violates gt(0)")
        roots = [s.node if isinstance(s, Sink) else s for s in sinks]
        if not roots:
            raise ValueError("fl.run needs at least one sink (stream.collect(), ...)")
        connectors = _connector_chain(roots)
        if connectors is not None:
            from flowlearn.engines.flink_connectors import submit

            return TableJob(submit(self, *connectors, checkpoint_dir, checkpoint_interval)).start()
        for r in roots:
            if not (isinstance(r, PlanNode) and r.kind == "sink"):
                raise TypeError(f"fl.run takes sinks, got {type(r).__name__}")
            if not isinstance(r.spec, (CollectSpec, ForeachSpec, FilesSinkSpec, ModelStoreSinkSpec, KafkaSinkSpec)):
                raise NotImplementedError(f"FlinkEngine: the sink {r.name!r} ({type(r.spec).__name__}) is not "
                                          f"translated to Flink yet; collect(), foreach(), to_files(), to_kafka() "
                                          f"and to_model_store() sinks are (use the local engine)")
            if _on_flink_sink(r, checkpoint_dir):
                if isinstance(r.spec, FilesSinkSpec) and checkpoint_dir is None:
                    raise ValueError(f"FlinkEngine: the sink {r.name!r} writes a stream that does not end, whose "
                                     f"part files Flink commits on checkpoints: pass checkpoint_dir to run()")
            elif isinstance(r.spec, FilesSinkSpec):
                os.makedirs(os.path.join(r.spec.path, ".inprogress"), exist_ok=True)
        stateful = any(isinstance(n.spec, _KEYED + (ModelStreamSpec, WatermarkSpec, WindowSpec))
                       or _is_connector_source(n.spec) for n in plan_nodes(roots))   # Flink's streaming mode
        env = self._env(stateful or checkpoint_dir is not None, checkpoint_dir, checkpoint_interval)
        self._spilled = []
        try:   # (a plan refused here lets go of what its sources spilled or handed over)
            streams = self._translate(env, roots)
            from pyflink.common import Types

            from flowlearn.engines.flink_connectors import FlinkSinks

            token = uuid.uuid4().hex[:12]
            records = Types.PICKLED_BYTE_ARRAY()
            tagged = []
            flink_sinks = FlinkSinks(env, [r.spec for r in roots if _on_flink_sink(r, checkpoint_dir)],
                                     checkpoint_dir is not None, checkpoint_interval)
            for k, (r, ds) in enumerate(zip(roots, streams)):
                if _on_flink_sink(r, checkpoint_dir):   # the client hears only how many rows each batch wrote
                    ds = flink_sinks.add(ds, r.spec, r.name, r.inputs[0].schema)
                elif isinstance(r.spec, FilesSinkSpec):
                    # paths resolved here: the task managers' Python workers need not share the client's directory
                    spec = dataclasses.replace(r.spec, path=os.path.abspath(r.spec.path))
                    ds = ds.map(fn.WriteFile(spec, token), output_type=records)
                tagged.append(ds.flat_map(fn.Tag(k), output_type=records))
            flink_sinks.attach()
            both = tagged[0].union(*tagged[1:]) if len(tagged) > 1 else tagged[0]
        except BaseException:
            _release(self._spilled)
            raise
        job = FlinkJob(lambda: _execute_and_collect(env, both), roots, token, self._spilled)
        for s in sinks:
            if isinstance(s, Sink):
                s.job = job
        return job.start()

    def _map_collect(self, stream: Any, func: Any, name: str, keyed: bool = False) -> list[pa.Table]:
        """One job: ``func(record) -> IPC bytes`` over every batch of ``stream`` in parallel; the results."""
        from pyflink.common import Types

        self._spilled = []
        try:
            (ds,) = self._translate(self._env(), [stream.collect().node], keyed)
            records = Types.PICKLED_BYTE_ARRAY()
            ds = ds.map(func, output_type=records).name(name).flat_map(fn.Tag(0), output_type=records)
            with ds.execute_and_collect() as it:
                return [from_ipc(b) for _, b in fn.untag(it)]
        finally:
            _release(self._spilled)

    def fit(self, estimator: Any, *inputs: Any) -> Any:
        """A one-pass estimator: ``partial`` per batch in parallel on Flink, ``merge`` and ``finish``
        here. An iterative estimator that drives its rounds (``drives_rounds``: the L-BFGS and SGD
        linear models, KMeans): its driver runs here and each round's partials run in parallel on
        Flink, a job per round. A pipeline: each estimator fitted so, on the plan of the stages
        before it applied to the input. Other estimators: their inputs read on Flink and the fit
        run here."""
        import flowlearn.stream as fls
        from flowlearn.builder import Pipeline
        from flowlearn.stream.plan import set_engine

        rounds = isinstance(estimator, IterativeEstimator) and estimator.drives_rounds
        pipeline = isinstance(estimator, Pipeline)
        if not (isinstance(estimator, OnePassEstimator) or rounds or pipeline) or len(inputs) != 1:
            return super().fit(estimator, *inputs)
        (data,) = inputs
        stream = data if getattr(data, "_flowlearn_stream", False) else fls.from_table(data)
        if not stream.bounded:
            raise ValueError(f"{type(estimator).__name__} is a batch estimator and cannot train on an unbounded stream")
        if pipeline:   # the stages' fits come back here, one by one, on streams
            with set_engine(self):
                return estimator._fit(stream)
        if rounds:
            return estimator.fit_rounds(lambda f, name="round": self._map_collect(stream, fn.MapBatch(f), name, True))
        parts = self._map_collect(stream, fn.Partial(estimator), "partial")
        if not parts:   # no rows: the estimator's own message for an empty input
            return estimator.fit(stream.schema.empty_table() if stream.schema is not None else pa.table({}))
        return estimator.finish(estimator.merge(parts))
