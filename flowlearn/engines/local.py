"""The local engine: runs a stream plan in this process, on one background thread.

Execution is push-based and synchronous: the engine polls the sources in turn and pushes
each batch through the operators downstream of it before polling again, so between two polls
no data is in flight. A checkpoint barrier is therefore injected into every source at the
same point between batches and reaches every operator at once: the engine calls
``snapshot_state()`` on all operators in topological order (sources record their offsets,
windows their buffers, sinks pre-commit), writes the checkpoint, tells every operator it is
durable (sinks commit) and marks it complete. A restart with the same ``checkpoint_dir``
restores every operator, downstream ones first (so a sink has discarded its uncommitted files
before anything can write to it), and resumes the sources at their offsets. What an operator
emitted before the checkpoint (rows, dead letters, late rows) is in that checkpoint's committed
output or state: a restored operator does not emit it again.

Watermarks flow with the data: a node's input watermark is the minimum over its inputs, a
bounded input that ends contributes +infinity; ``end_input(i)`` is called when input ``i``
of a node ends and ``on_end`` once every input of a node has ended.

Operators are built from the plan's specs through the stream layer's registry of in-process
operators (``flowlearn.stream.plan.build_operator``).

Example:
    >>> import flowlearn.stream as fls
    >>> sink = fls.from_table({"x": list(range(10))}, batch_size=4).collect()
    >>> job = LocalEngine().run(sink)
    >>> job.wait().metrics["rows_out"]
    10
"""
from __future__ import annotations

import logging
import re
import signal
import threading
import time
from typing import Any, Callable

import pyarrow as pa

from flowlearn.engines.base import Engine, Job
from flowlearn.stream.checkpoint import CheckpointStore
from flowlearn.stream.core import Sink
from flowlearn.stream.operator import MAX_WATERMARK, MIN_WATERMARK, Operator, OperatorContext
from flowlearn.stream.plan import PlanNode, build_operator, plan_nodes
from flowlearn.stream.sinks import CollectSpec
from flowlearn.stream.source import Source

__all__ = ["LocalEngine", "LocalJob"]

log = logging.getLogger(__name__)

# Seconds a failed job's thread waits for wait() to take its error before logging it instead.
_UNCLAIMED_ERROR_GRACE = 2.0


class _Node:
    def __init__(self, plan: PlanNode, uid: str) -> None:
        self.plan = plan
        self.uid = uid
        self.op: Operator = build_operator(plan.spec)
        self.is_source = isinstance(self.op, Source)
        self.inputs: list[_Node] = []
        self.outputs: list[tuple[_Node, int]] = []
        self.side_outs: dict[str, list[tuple[_Node, int]]] = {}
        self.in_wm: list[int] = []
        self.wm_out = MIN_WATERMARK
        self.ended_inputs = 0
        self.ended = False
        self.metrics: dict[str, Any] = {"rows_in": 0, "rows_out": 0, "batches_in": 0, "batches_out": 0}


def _build(roots: list[PlanNode]) -> list[_Node]:
    order = plan_nodes(roots)
    nodes: dict[int, _Node] = {}
    used: set[str] = set()
    for i, p in enumerate(order):
        uid = p.uid or f"{i:03d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', p.name)[:40]}"
        if uid in used:
            raise ValueError(f"two operators of the plan have the uid {uid!r}; uids must be unique")
        used.add(uid)
        nodes[id(p)] = _Node(p, uid)
    for p in order:
        n = nodes[id(p)]
        for idx, inp in enumerate(p.inputs):
            up = nodes[id(inp)]
            n.inputs.append(up)
            n.in_wm.append(MIN_WATERMARK)
            if p.kind == "side":
                up.side_outs.setdefault(p.tag, []).append((n, idx))
            else:
                up.outputs.append((n, idx))
    return [nodes[id(p)] for p in order]


class LocalJob(Job):
    """A running job: ``wait()``, ``stop()``, ``metrics``, ``collected(sink)``. SIGINT during
    ``wait()`` stops the job with a final checkpoint."""

    def __init__(self, engine: "_Execution") -> None:
        self._engine = engine
        self._thread = threading.Thread(target=self._run, name="flowlearn-local-job", daemon=True)
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._claimed = threading.Event()   # set when wait() takes the job's error to raise it

    def _run(self) -> None:
        try:
            self._engine.execute()
        except BaseException as e:  # noqa: BLE001 - re-raised in wait()
            self._error = e
        finally:
            self._done.set()
        # the error surfaces once: raised by wait(), or logged here when nobody waits for the job
        if self._error is not None and not self._claimed.wait(_UNCLAIMED_ERROR_GRACE):
            log.error("stream job failed (and nobody waited on it)", exc_info=self._error)

    def start(self) -> "LocalJob":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self, wait: bool = True) -> "LocalJob":
        """Stop the sources, take a final checkpoint (when checkpointing) and end the job."""
        self._engine.stop_requested = True
        if wait:
            self.wait()
        return self

    def wait(self, timeout: float | None = None) -> "LocalJob":
        """Block until the job ends (bounded sources exhausted, or stopped); re-raise its error."""
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            def on_sigint(signum: int, frame: Any) -> None:
                log.info("SIGINT: stopping the job with a final checkpoint")
                self._engine.stop_requested = True
            previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._done.wait(0.1):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the job did not finish within {timeout}s")
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        if self._error is not None:
            self._claimed.set()
            raise self._error
        return self

    @property
    def metrics(self) -> dict:
        """Rows in/out and batches per operator, rows and batches per second, source lag,
        checkpoints taken, dead letters and late rows."""
        return self._engine.metrics()

    def collected(self, sink: Any) -> list[pa.Table]:
        node = self._engine.by_plan.get(id(getattr(sink, "node", sink)))
        if node is None or not isinstance(node.plan.spec, CollectSpec):
            raise ValueError(f"{sink!r} is not a collect() sink of this job")
        return list(node.op.tables)


class LocalEngine(Engine):
    """The in-process engine (the default). ``max_batch_rows`` bounds a source poll;
    ``idle_sleep`` is the pause when no source had data; ``clock`` (seconds) drives processing
    time (tests pass a fake one). ``run`` options override them per job."""

    name = "local"

    def __init__(self, max_batch_rows: int = 65536, idle_sleep: float = 0.005,
                 clock: Callable[[], float] | None = None) -> None:
        self.options = {"max_batch_rows": max_batch_rows, "idle_sleep": idle_sleep, "clock": clock}

    def run(self, *sinks: Any, checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0,
            **options: Any) -> LocalJob:
        """Start a job writing to ``sinks`` (sinks, or sink plan nodes such as those of a plan read
        back with ``plan_from_json``) on a background thread. With ``checkpoint_dir`` it
        checkpoints every ``checkpoint_interval`` seconds, at the end and on ``stop()``/SIGINT, and
        resumes from the newest checkpoint there."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"LocalEngine.run: unknown option(s) {unknown}; options are {sorted(self.options)}")
        job = LocalJob(_Execution(list(sinks), checkpoint_dir, checkpoint_interval, **{**self.options, **options}))
        for s in sinks:
            if isinstance(s, Sink):
                s.job = job
        return job.start()


class _Execution:
    """One run of a plan: its operators, checkpoints and main loop."""

    def __init__(self, sinks: list[Sink], checkpoint_dir: str | None, checkpoint_interval: float,
                 max_batch_rows: int, idle_sleep: float, clock: Callable[[], float] | None) -> None:
        if not sinks:
            raise ValueError("fl.run needs at least one sink (stream.collect(), .foreach(fn), .to_files(...), ...)")
        for s in sinks:
            if not (isinstance(s, Sink) or isinstance(s, PlanNode) and s.kind == "sink"):
                raise TypeError(f"fl.run takes sinks, got {type(s).__name__}; end the stream with .collect(), "
                                f".foreach(fn), .to_files(path) or .to_kafka(...)")
        self.sinks = sinks
        self.nodes = _build([s.node if isinstance(s, Sink) else s for s in sinks])
        self.by_plan = {id(n.plan): n for n in self.nodes}
        _check_file_sinks(self.nodes)
        self.sources = [n for n in self.nodes if n.is_source]
        self.store = CheckpointStore(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_interval = checkpoint_interval
        self.max_batch_rows = max_batch_rows
        self.idle_sleep = idle_sleep
        self.clock = clock or time.time
        self.stop_requested = False
        self.next_checkpoint_id = 1
        self.checkpoints = 0
        self.restored_from: int | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self.batches = 0

    # -- data flow -------------------------------------------------------------------------
    def _emit(self, node: _Node, outs: list[pa.Table] | None) -> None:
        if not outs:
            return
        for t in outs:
            if t.num_rows == 0:
                continue
            node.metrics["rows_out"] += t.num_rows
            node.metrics["batches_out"] += 1
            for d, i in node.outputs:
                self._push(d, i, t)

    def _push(self, node: _Node, idx: int, t: pa.Table) -> None:
        node.metrics["rows_in"] += t.num_rows
        node.metrics["batches_in"] += 1
        self._emit(node, node.op.process(t, idx))
        self._advance(node)

    def _side(self, node: _Node, tag: str, t: pa.Table) -> None:
        for d, i in node.side_outs.get(tag, []):
            self._push(d, i, t)

    def _advance(self, node: _Node) -> None:
        wm_in = min(node.in_wm) if node.in_wm else MIN_WATERMARK
        if node.ended:
            wm_in = MAX_WATERMARK
        out = node.op.output_watermark(wm_in)
        if out <= node.wm_out:
            return
        node.wm_out = out
        for d, i in node.outputs + [x for v in node.side_outs.values() for x in v]:
            if out > d.in_wm[i]:
                before = min(d.in_wm)
                d.in_wm[i] = out
                after = min(d.in_wm)
                if after > before:
                    self._emit(d, d.op.on_watermark(after))
                    self._advance(d)

    def _end(self, node: _Node) -> None:
        if node.ended:
            return
        node.ended = True
        self._emit(node, node.op.on_end())
        self._advance(node)
        for d, i in node.outputs + [x for v in node.side_outs.values() for x in v]:
            d.ended_inputs += 1
            if not d.ended:
                self._emit(d, d.op.end_input(i))
            if d.ended_inputs == len(d.inputs):
                self._end(d)

    # -- checkpoints -----------------------------------------------------------------------
    def _restore(self) -> None:
        assert self.store is not None
        latest = self.store.latest_complete()
        by_uid = {n.uid: n for n in self.nodes}
        for cid in self.store.candidates():
            states = self.store.read(cid)
            unknown = [u for u in states if u not in by_uid]
            if unknown:
                raise ValueError(f"checkpoint {cid} in {self.store.root} holds state for operator(s) {unknown} that "
                                 f"are not in this plan ({sorted(by_uid)}); restart with the same plan, give "
                                 f"operators stable names with .uid(...), or use a new checkpoint_dir")
            if latest is None or cid > latest:
                if not all(by_uid[u].op.recover_commit(st) for u, st in states.items()):
                    log.warning("checkpoint %d was not committed by every sink; falling back to an older one", cid)
                    self.store.discard(cid)
                    continue
                self.store.mark_complete(cid)
            for n in reversed(self.nodes):  # downstream first: a sink discards its uncommitted files before
                if n.uid in states:         # anything upstream could write to it
                    n.op.restore_state(states[n.uid])
            self.next_checkpoint_id = cid + 1
            self.restored_from = cid
            log.info("restored checkpoint %d from %s", cid, self.store.root)
            return

    def checkpoint(self) -> int:
        assert self.store is not None
        cid = self.next_checkpoint_id
        states = {}
        for n in self.nodes:  # topological order: the barrier passes upstream operators first
            st = n.op.snapshot_state()
            if st is not None:
                states[n.uid] = st
        self.store.write(cid, states, {"metrics": {n.uid: {k: v for k, v in n.metrics.items()
                                                           if isinstance(v, (int, float))} for n in self.nodes}})
        for n in self.nodes:
            n.op.notify_checkpoint_complete(cid)
        self.store.mark_complete(cid)
        self.next_checkpoint_id = cid + 1
        self.checkpoints += 1
        return cid

    # -- main loop -------------------------------------------------------------------------
    def execute(self) -> None:
        for n in self.nodes:
            ctx = OperatorContext(n.uid, side=lambda tag, t, n=n: self._side(n, tag, t), clock=self.clock,
                                  metrics=n.metrics)
            ctx.checkpointing = self.store is not None
            n.op.open(ctx)
        try:
            if self.store is not None:
                self._restore()
            self._loop()
        finally:
            for n in self.nodes:
                try:
                    n.op.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing operator %s failed", n.uid)
            self.finished_at = time.monotonic()

    def _loop(self) -> None:
        timers = [n for n in self.nodes if n.op.wants_timer]
        active = list(self.sources)
        last_cp = time.monotonic()
        while active and not self.stop_requested:
            progressed = False
            for src in list(active):
                for t in src.op.poll(self.max_batch_rows):
                    if t.num_rows:
                        progressed = True
                        self.batches += 1
                        src.metrics["rows_in"] += t.num_rows
                        src.metrics["batches_in"] += 1
                        self._emit(src, [t])
                self._advance(src)
                if src.op.finished():
                    active.remove(src)
                    self._end(src)
            if timers:
                now = self.clock()
                for n in timers:
                    self._emit(n, n.op.on_timer(now))
            if self.store is not None and time.monotonic() - last_cp >= self.checkpoint_interval:
                self.checkpoint()
                last_cp = time.monotonic()
            if not progressed and active:
                time.sleep(self.idle_sleep)
        if self.store is not None:
            self.checkpoint()  # final checkpoint: after the end of bounded input, or on stop()/SIGINT

    def metrics(self) -> dict:
        elapsed = (self.finished_at or time.monotonic()) - self.started_at
        ops = {n.uid: dict(n.metrics) for n in self.nodes}
        rows_in = sum(n.metrics["rows_in"] for n in self.sources)
        rows_out = sum(n.metrics["rows_in"] for n in self.nodes if n.plan.kind == "sink")
        lag = {}
        for n in self.sources:
            try:
                lag[n.uid] = n.op.lag()
            except Exception:  # noqa: BLE001 - metrics are best effort
                lag[n.uid] = None
        dead = sum(v for n in self.nodes for k, v in n.metrics.items() if k == "side_dead_letter_rows")
        late = sum(n.metrics.get("late_rows", 0) for n in self.nodes)
        return {
            "operators": ops, "rows_in": rows_in, "rows_out": rows_out, "batches": self.batches,
            "elapsed_seconds": elapsed, "rows_per_second": rows_in / elapsed if elapsed > 0 else 0.0,
            "batches_per_second": self.batches / elapsed if elapsed > 0 else 0.0, "source_lag": lag,
            "checkpoints": self.checkpoints, "restored_from": self.restored_from, "dead_letters": dead,
            "late_rows": late,
        }


def _check_file_sinks(nodes: list[_Node]) -> None:
    """Two file sinks writing the same prefix into one directory would overwrite each other's committed files."""
    seen: dict[tuple, str] = {}
    for n in nodes:
        key = getattr(n.plan.spec, "file_identity", None)
        if key is None:
            continue
        if key in seen:
            raise ValueError(f"the file sinks {seen[key]} and {n.uid} both write files named {key[1]!r}-* into {key[0]}; "
                             f"give one of them another prefix=... or directory")
        seen[key] = n.uid
