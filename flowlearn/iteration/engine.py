"""The bounded iteration engine (Flink ML's ``iterateBoundedStreamsUntilTermination``, in process).

Rounds run one after the other. Round ``e`` (epoch ``e``) calls the body with the variable
streams (the initial variables in round 0, the previous round's feedback afterwards) and the
data streams (replayed from the cache, or empty after round 0 when not replayed). Operators
applied in the body run eagerly in the order the body applies them, which is a topological
order of the round's dataflow, so every operator sees all records of epoch ``e`` (including
records its upstream operators emitted from their own watermark callback) before its
``on_epoch_watermark_incremented(e)``. This is one valid schedule of Flink ML's semantics,
made deterministic.
"""
from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pyarrow as pa

from flowlearn.iteration.cache import DEFAULT_CACHE_BUDGET_BYTES, DataSource, MemoryBudget
from flowlearn.iteration.operators import OperatorContext
from flowlearn.iteration.streams import END_EPOCH, BatchStream, StreamLike, current_round, to_batches

__all__ = ["IterationBodyResult", "IterationResult", "iterate_bounded", "ALL_ROUND", "PER_ROUND"]

log = logging.getLogger("flowlearn.iteration")

ALL_ROUND = "all_round"
PER_ROUND = "per_round"
_LIFECYCLES = (ALL_ROUND, PER_ROUND)

Body = Callable[[list[BatchStream], list[BatchStream], int], "IterationBodyResult"]


@dataclass
class IterationBodyResult:
    """What an iteration body returns for a round.

    - ``feedback_variables``: one stream per variable stream; round ``e``'s feedback is the
      variable input of round ``e + 1`` (its records carry epoch ``e + 1``).
    - ``outputs``: streams collected into the iteration's result (the same number every round).
    - ``termination_criteria``: optional; the iteration ends after a round whose criteria
      stream is empty.

    Each entry may be a ``BatchStream``, a ``pyarrow.Table``/``RecordBatch``, a list of
    batches, anything ``fl.table`` accepts, or ``None`` (an empty stream).
    """

    feedback_variables: Sequence[StreamLike]
    outputs: Sequence[StreamLike] = ()
    termination_criteria: StreamLike | None = None


@dataclass
class IterationResult:
    """The result of :func:`iterate_bounded`.

    - ``outputs[i]``: output stream ``i`` of every round, in round order, as one table,
      followed by what operators emitted into it when the iteration terminated.
    - ``output_batches[i]``: the same as ``(epoch, batch)`` pairs (``END_EPOCH`` for records
      emitted by ``on_iteration_terminated``).
    - ``variables[i]``: the last round's feedback for variable stream ``i`` (the variables the
      next round would have seen: after ``max_rounds`` updates, the model after the last update).
    - ``rounds``: rounds executed; ``termination``: ``"empty_feedback"``, ``"criteria"`` or
      ``"max_rounds"``; ``spilled_bytes``: bytes of replayed data the cache wrote to disk.
    """

    outputs: list[pa.Table]
    output_batches: list[list[tuple[int, pa.RecordBatch]]]
    variables: list[pa.Table]
    rounds: int
    termination: str
    spilled_bytes: int = 0


# ---------------------------------------------------------------------------- operators
def _is_instance(op: Any) -> bool:
    return not isinstance(op, type) and hasattr(op, "process")


def _factory_identity(factory: Any) -> Any:
    # The same call site gives the same identity every round, even for a lambda re-created
    # by each call of the body (its code object is shared).
    if isinstance(factory, type):
        return factory
    if isinstance(factory, types.FunctionType):
        return factory.__code__
    func = getattr(factory, "func", None)  # functools.partial
    if func is not None:
        return ("partial", _factory_identity(func))
    return type(factory)


class _Registry:
    """Operator instances of one iteration and their lifecycle."""

    def __init__(self, lifecycle: str) -> None:
        self.lifecycle = lifecycle
        self.by_key: dict[Any, Any] = {}
        self.all_round: list[Any] = []  # all-round instances in first-use order
        self._seen: dict[int, Any] = {}  # id -> instance (the reference keeps ids unique)
        self.instances_created = 0

    def create(self, factory: Any) -> Any:
        op = factory()
        if not hasattr(op, "process"):
            raise TypeError(f"operator factory {factory!r} returned {type(op).__name__}, which has no process()")
        self.instances_created += 1
        return op

    def track(self, op: Any, given: bool) -> None:
        """Remember an instance used in a round (``given``: passed by the caller, not created here)."""
        if self.lifecycle == PER_ROUND:
            if not given:
                return  # a fresh instance, closed at the end of its round
            if id(op) in self._seen:
                raise ValueError(
                    f"lifecycle='per_round' creates a fresh operator each round, but the instance "
                    f"{op!r} was already used in an earlier round; pass its class or a factory instead"
                )
            self._seen[id(op)] = op
            return
        if id(op) not in self._seen:
            self._seen[id(op)] = op
            self.all_round.append(op)


class _Node:
    """One application of an operator in a round."""

    __slots__ = ("op", "factory", "inputs", "main", "side", "schemas", "term_main", "term_side", "scope")

    def __init__(self, op: Any, factory: Any, inputs: list[BatchStream], scope: "_Round") -> None:
        self.op = op
        self.factory = factory
        self.inputs = inputs
        self.scope = scope
        self.main: list[pa.RecordBatch] = []
        self.side: dict[str, list[pa.RecordBatch]] = {}
        self.schemas: dict[str | None, pa.Schema] = {}
        self.term_main: list[pa.RecordBatch] = []
        self.term_side: dict[str, list[pa.RecordBatch]] = {}

    def side_stream(self, tag: str) -> BatchStream:
        batches = self.side.get(tag, [])
        return BatchStream(
            batches, schema=self.schemas.get(tag), epoch=self.scope.epoch, scope=self.scope,
            terminal=lambda: self.term_side.get(tag, []),
        )


def _call(op: Any, name: str, *args: Any) -> None:
    fn = getattr(op, name, None)
    if fn is not None:
        fn(*args)


def _run_operator(op: Any, inputs: Sequence[Sequence[pa.RecordBatch] | BatchStream], ctx: OperatorContext) -> None:
    process = op.process
    for idx, stream in enumerate(inputs):
        ctx.input_index = idx
        for batch in stream:
            process(batch, ctx)
    ctx.input_index = None


class _Round:
    """The scope of one round: applies operators eagerly and remembers the round's dataflow."""

    def __init__(self, registry: _Registry, epoch: int) -> None:
        self.registry = registry
        self.epoch = epoch
        self.nodes: list[_Node] = []
        self._occurrence: dict[Any, int] = {}
        self.finished = False

    def apply(self, operator: Any, inputs: list[BatchStream], key: str | None) -> BatchStream:
        if self.finished:
            raise RuntimeError(
                f"a stream of round {self.epoch} was used after its round ended; streams are only valid "
                f"inside the body call of their round"
            )
        for s in inputs:
            if s._scope is not None and s._scope is not self and s._scope.registry is self.registry:
                raise RuntimeError(f"a stream of round {s._scope.epoch} was used in round {self.epoch}")
        reg = self.registry
        factory = None
        if _is_instance(operator):
            op = operator
        elif callable(operator):
            factory = operator
            ident = _factory_identity(operator)
            n = self._occurrence.get(ident, 0)
            self._occurrence[ident] = n + 1
            k = ("key", key) if key is not None else ("site", ident, n)
            if reg.lifecycle == ALL_ROUND:
                op = reg.by_key.get(k)
                if op is None:
                    op = reg.by_key[k] = reg.create(factory)
            else:
                op = reg.create(factory)
        else:
            raise TypeError(
                f"process() expects an operator (an object with process(batch, ctx)), its class or a "
                f"zero-argument factory, got {type(operator).__name__}"
            )
        reg.track(op, given=factory is None)

        node = _Node(op, factory, inputs, self)
        ctx = OperatorContext(self.epoch)
        _run_operator(op, inputs, ctx)
        _call(op, "on_epoch_watermark_incremented", self.epoch, ctx)
        if reg.lifecycle == PER_ROUND:
            _call(op, "close")
        node.main, node.side, node.schemas = ctx._main, ctx._side, ctx._schemas
        self.nodes.append(node)
        out = BatchStream(
            node.main, schema=node.schemas.get(None), epoch=self.epoch, scope=self,
            terminal=lambda: node.term_main,
        )
        out._node = node
        return out

    def terminate(self) -> None:
        """Deliver ``on_iteration_terminated`` through the last round's dataflow, in order."""
        reg = self.registry
        done: set[int] = set()
        for node in self.nodes:
            term_inputs = [s._terminal() for s in node.inputs]
            op = node.op
            if reg.lifecycle == PER_ROUND:
                if not any(term_inputs):
                    continue  # this round's instance was closed after its watermark
                if node.factory is None:
                    log.warning("per_round operator %r received records at termination but was given as an "
                                "instance; they are dropped", op)
                    continue
                op = reg.create(node.factory)
            ctx = OperatorContext(END_EPOCH)
            _run_operator(op, term_inputs, ctx)
            if id(op) not in done:
                done.add(id(op))
                _call(op, "on_iteration_terminated", ctx)
            if reg.lifecycle == PER_ROUND:
                _call(op, "close")
            node.term_main = ctx._main
            node.term_side = ctx._side
        for op in reg.all_round:  # all-round operators not used in the last round
            if id(op) in done:
                continue
            ctx = OperatorContext(END_EPOCH)
            _call(op, "on_iteration_terminated", ctx)
            if ctx._has_emitted():
                log.warning("operator %r emitted records at termination but was not used in the last round; "
                            "they have no consumer and are dropped", op)
        for op in reg.all_round:
            _call(op, "close")


def _call_body(body: Body, scope: _Round, variables: list[BatchStream], data: list[BatchStream], epoch: int) -> Any:
    token = current_round.set(scope)
    try:
        return body(variables, data, epoch)
    finally:
        current_round.reset(token)


def _standalone_round(epoch: int) -> _Round:
    """A one-off scope for ``process`` on streams built outside an iteration (e.g. in tests)."""
    return _Round(_Registry(PER_ROUND), epoch)


def _materialize(value: Any, what: str) -> tuple[list[pa.RecordBatch], pa.Schema | None]:
    if isinstance(value, BatchStream):
        batches = list(value)
        return batches, (batches[0].schema if batches else value.schema)
    return to_batches(value, what)


def _table(batches: list[pa.RecordBatch], schema: pa.Schema | None, what: str) -> pa.Table:
    if not batches:
        return schema.empty_table() if schema is not None else pa.table({})
    try:
        return pa.Table.from_batches(batches)
    except pa.ArrowInvalid as e:
        raise ValueError(f"{what}: batches of different schemas cannot form one table ({e})") from None


def _check_result(res: Any, n_vars: int, n_outputs: int | None, epoch: int, where: str) -> IterationBodyResult:
    if not isinstance(res, IterationBodyResult):
        raise TypeError(f"{where}: the body must return an IterationBodyResult, got {type(res).__name__} "
                        f"in round {epoch}")
    single = isinstance(res.feedback_variables, (BatchStream, pa.Table, pa.RecordBatch))
    if single or len(res.feedback_variables) != n_vars:
        got = 1 if single else len(res.feedback_variables)
        raise ValueError(f"{where}: round {epoch} returned {got} feedback variable streams for {n_vars} "
                         f"variable streams; return a list with one stream per variable stream")
    if isinstance(res.outputs, (BatchStream, pa.Table, pa.RecordBatch)):
        raise ValueError(f"{where}: outputs must be a list of streams, got a single {type(res.outputs).__name__}")
    if n_outputs is not None and len(res.outputs) != n_outputs:
        raise ValueError(f"{where}: round {epoch} returned {len(res.outputs)} output streams, earlier rounds "
                         f"returned {n_outputs}; every round must return the same number")
    return res


class _Outputs:
    def __init__(self) -> None:
        self.batches: list[list[tuple[int, pa.RecordBatch]]] | None = None
        self.schemas: list[pa.Schema | None] = []

    def add(self, epoch: int, streams: Sequence[Any], where: str) -> None:
        if self.batches is None:
            self.batches = [[] for _ in streams]
            self.schemas = [None] * len(streams)
        for i, s in enumerate(streams):
            bs, schema = _materialize(s, f"{where}: output {i}")
            if self.schemas[i] is None:
                self.schemas[i] = schema
            self.batches[i].extend((epoch, b) for b in bs)

    def add_terminal(self, streams: Sequence[Any]) -> None:
        for i, s in enumerate(streams):
            if isinstance(s, BatchStream):
                for b in s._terminal():
                    if self.schemas[i] is None:
                        self.schemas[i] = b.schema
                    self.batches[i].append((END_EPOCH, b))  # type: ignore[index]

    def tables(self) -> list[pa.Table]:
        return [_table([b for _, b in bs], sc, f"output {i}")
                for i, (bs, sc) in enumerate(zip(self.batches or [], self.schemas))]


def _input_variables(init_variables: Sequence[Any], where: str) -> list[tuple[list[pa.RecordBatch], pa.Schema | None]]:
    if isinstance(init_variables, (pa.Table, pa.RecordBatch, BatchStream)):
        raise TypeError(f"{where}: init_variables must be a list of streams (e.g. [table]), "
                        f"got a single {type(init_variables).__name__}")
    variables = [_materialize(v, f"{where}: init_variables[{i}]") for i, v in enumerate(init_variables)]
    if not variables:
        raise ValueError(f"{where}: there must be at least one variable stream")
    return variables


def iterate_bounded(
    init_variables: Sequence[StreamLike],
    data: Sequence[Any] | None,
    body: Body,
    replay: bool | Sequence[bool] = True,
    lifecycle: str = ALL_ROUND,
    max_rounds: int | None = None,
    *,
    cache_budget_bytes: int = DEFAULT_CACHE_BUDGET_BYTES,
    spill_dir: str | None = None,
) -> IterationResult:
    """Run ``body`` round after round over bounded data until termination.

    Args:
        init_variables: the initial variable streams (tables, batches, lists of batches).
        data: the data streams: tables, lists of batches, ``BatchStream`` s, or any iterable
            of record batches (read once; cached when replayed).
        body: ``body(variable_streams, data_streams, epoch) -> IterationBodyResult``.
        replay: replay every data stream each round (``True``), none (``False``), or one
            flag per data stream, as Flink ML's ``ReplayableDataStreamList``. Not-replayed
            data is seen in round 0 only (later rounds see an empty stream).
        lifecycle: ``"all_round"`` keeps one operator instance per call site for the whole
            iteration; ``"per_round"`` creates a fresh instance each round.
        max_rounds: stop after this many rounds.
        cache_budget_bytes: memory for cached (replayed) iterator data; past it, batches spill
            to Arrow IPC files in a temporary directory (under ``spill_dir`` if given).

    The iteration ends after the first round whose termination-criteria stream is empty,
    whose feedback has no records, or which is round ``max_rounds - 1``.

    Example:
        >>> import pyarrow as pa
        >>> from flowlearn.iteration import IterationBodyResult, iterate_bounded
        >>> def body(variables, data, epoch):          # Newton's method for sqrt(2)
        ...     x = variables[0].to_table()["x"][0].as_py()
        ...     nxt = pa.table({"x": [(x + 2.0 / x) / 2]})
        ...     return IterationBodyResult([nxt], outputs=[nxt])
        >>> r = iterate_bounded([pa.table({"x": [1.0]})], [], body, max_rounds=6)
        >>> round(r.variables[0]["x"][0].as_py(), 12), r.rounds, r.termination
        (1.414213562373, 6, 'max_rounds')
    """
    where = "iterate_bounded"
    if lifecycle not in _LIFECYCLES:
        raise ValueError(f"{where}: lifecycle must be one of {list(_LIFECYCLES)}, got {lifecycle!r}")
    if max_rounds is not None and (isinstance(max_rounds, bool) or int(max_rounds) != max_rounds or max_rounds < 1):
        raise ValueError(f"{where}: max_rounds must be an integer >= 1 or None, got {max_rounds!r}")
    if not callable(body):
        raise TypeError(f"{where}: body must be callable, got {type(body).__name__}")
    variables = _input_variables(init_variables, where)
    data = list(data or [])
    if isinstance(replay, bool):
        flags = [replay] * len(data)
    else:
        flags = [bool(f) for f in replay]
        if len(flags) != len(data):
            raise ValueError(f"{where}: replay has {len(flags)} flags for {len(data)} data streams")

    budget = MemoryBudget(cache_budget_bytes, spill_dir)
    sources = [DataSource(d, f, budget, i) for i, (d, f) in enumerate(zip(data, flags))]
    registry = _Registry(lifecycle)
    outputs = _Outputs()
    n_vars = len(variables)
    epoch = 0
    scope: _Round | None = None
    last_outputs: Sequence[Any] = ()
    try:
        while True:
            scope = _Round(registry, epoch)
            var_streams = [BatchStream(bs, schema=sc, epoch=epoch, scope=scope) for bs, sc in variables]
            data_streams = [src.stream_for(epoch, scope) for src in sources]
            res = _check_result(_call_body(body, scope, var_streams, data_streams, epoch), n_vars,
                                None if outputs.batches is None else len(outputs.batches), epoch, where)
            feedback = []
            for i, s in enumerate(res.feedback_variables):
                bs, sc = _materialize(s, f"{where}: feedback variable {i}")
                feedback.append((bs, sc if sc is not None else variables[i][1]))
            outputs.add(epoch, res.outputs, where)
            criteria_rows = None
            if res.termination_criteria is not None:
                criteria_rows = sum(b.num_rows for b in _materialize(res.termination_criteria,
                                                                     f"{where}: termination criteria")[0])
            for src in sources:
                src.end_round(epoch)
            scope.finished = True
            last_outputs = res.outputs
            feedback_rows = sum(b.num_rows for bs, _ in feedback for b in bs)
            log.debug("iteration round %d: %d feedback rows, criteria %s", epoch, feedback_rows, criteria_rows)
            if criteria_rows == 0:
                reason = "criteria"
            elif feedback_rows == 0:
                reason = "empty_feedback"
            elif max_rounds is not None and epoch + 1 >= max_rounds:
                reason = "max_rounds"
            else:
                variables = feedback
                epoch += 1
                continue
            break
        scope.finished = False  # the termination phase runs in the last round's dataflow
        token = current_round.set(scope)
        try:
            scope.terminate()
        finally:
            current_round.reset(token)
            scope.finished = True
        outputs.add_terminal(last_outputs)
        return IterationResult(
            outputs=outputs.tables(),
            output_batches=outputs.batches or [],
            variables=[_table(bs, sc, f"feedback variable {i}") for i, (bs, sc) in enumerate(feedback)],
            rounds=epoch + 1,
            termination=reason,
            spilled_bytes=budget.spilled_bytes,
        )
    finally:
        for src in sources:
            src.close()
        budget.cleanup()
