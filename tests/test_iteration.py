"""The iteration engine's semantics, pinned independently of any algorithm.

Expected values come from closed forms and NumPy (``numpy.linalg.eigh``/``lstsq``, ``sqrt``),
never from the engine itself.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from doc_examples import run_doc_examples

from flowlearn.iteration import (
    END_EPOCH,
    BatchStream,
    ForwardInputsOfLastRound,
    IterationBodyResult,
    IterationOperator,
    TerminateOnMaxIter,
    TerminateOnMaxIterOrTol,
    iterate_bounded,
    iterate_unbounded,
    mini_batches,
)


def scalar_table(name: str, value) -> pa.Table:
    return pa.table({name: [value]})


def scalar(stream_or_table, name: str):
    t = stream_or_table.to_table() if isinstance(stream_or_table, BatchStream) else stream_or_table
    return t[name][0].as_py()


def gen_batches(n_batches: int, rows: int, counter: dict | None = None, start: float = 0.0):
    """A one-shot generator of record batches ``x = start, start+1, ...``; counts next() calls."""
    for i in range(n_batches):
        if counter is not None:
            counter["pulled"] = counter.get("pulled", 0) + 1
        base = start + i * rows
        yield pa.record_batch({"x": np.arange(base, base + rows, dtype=np.float64)})


# ------------------------------------------------------------------------------ epochs
class Recorder(IterationOperator):
    """Logs every callback into a shared list; emits one record per watermark (the epoch)."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def process(self, batch, ctx):
        self.log.append((self.name, "process", ctx.epoch, ctx.input_index, batch.num_rows))

    def on_epoch_watermark_incremented(self, epoch, ctx):
        self.log.append((self.name, "watermark", epoch))
        ctx.emit(pa.record_batch({"src": [self.name], "epoch": [epoch]}))

    def on_iteration_terminated(self, ctx):
        self.log.append((self.name, "terminated"))

    def close(self):
        self.log.append((self.name, "close"))


def test_listener_call_order_and_epochs():
    log: list = []
    seen_epochs = []

    def body(variables, data, epoch):
        seen_epochs.append((epoch, variables[0].epoch, data[0].epoch))
        a = data[0].process(lambda: Recorder("A", log))
        b = a.process(lambda: Recorder("B", log), variables[0])  # B sees A's watermark output first
        return IterationBodyResult([variables[0]], outputs=[a, b])

    r = iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1.0, 2.0]})], body, max_rounds=3)
    assert seen_epochs == [(0, 0, 0), (1, 1, 1), (2, 2, 2)]
    expected = []
    for e in range(3):
        expected += [
            ("A", "process", e, 0, 2), ("A", "watermark", e),
            ("B", "process", e, 0, 1), ("B", "process", e, 1, 1), ("B", "watermark", e),
        ]
    expected += [("A", "terminated"), ("B", "terminated"), ("A", "close"), ("B", "close")]
    assert log == expected
    # Records emitted from on_epoch_watermark_incremented(e) carry epoch e.
    assert [(e, b["epoch"][0].as_py()) for e, b in r.output_batches[0]] == [(0, 0), (1, 1), (2, 2)]
    assert r.outputs[1]["epoch"].to_pylist() == [0, 1, 2]
    assert (r.rounds, r.termination) == (3, "max_rounds")


def test_feedback_is_next_rounds_variables_with_epoch_plus_one():
    seen = []

    def body(variables, data, epoch):
        v = scalar(variables[0], "v")
        seen.append((epoch, variables[0].epoch, v))
        return IterationBodyResult([scalar_table("v", v + 10)])

    r = iterate_bounded([scalar_table("v", 0)], [], body, max_rounds=4)
    assert seen == [(0, 0, 0), (1, 1, 10), (2, 2, 20), (3, 3, 30)]
    assert scalar(r.variables[0], "v") == 40  # the last round's feedback


# ------------------------------------------------------------------------------ termination
def test_terminates_on_empty_feedback():
    # Halve n until it reaches 1: the round that sees n == 1 feeds back nothing.
    def body(variables, data, epoch):
        n = scalar(variables[0], "n")
        fb = scalar_table("n", n // 2) if n > 1 else pa.table({"n": pa.array([], pa.int64())})
        return IterationBodyResult([fb], outputs=[variables[0]])

    r = iterate_bounded([scalar_table("n", 1000)], [], body)
    # 1000, 500, 250, 125, 62, 31, 15, 7, 3, 1 -> floor(log2(1000)) + 1 rounds
    assert r.rounds == int(np.floor(np.log2(1000))) + 1
    assert r.termination == "empty_feedback"
    assert r.outputs[0]["n"].to_pylist() == [1000, 500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert r.variables[0].num_rows == 0


def test_terminates_on_empty_criteria_stream():
    def body(variables, data, epoch):
        criteria = scalar_table("go", 1) if epoch < 4 else pa.table({"go": pa.array([], pa.int64())})
        return IterationBodyResult([variables[0]], outputs=[], termination_criteria=criteria)

    r = iterate_bounded([scalar_table("v", 1)], [], body, max_rounds=100)
    assert (r.rounds, r.termination) == (5, "criteria")


def test_criteria_checked_before_max_rounds_and_none_means_no_criteria():
    calls = []

    def body(variables, data, epoch):
        calls.append(epoch)
        return IterationBodyResult([variables[0]], termination_criteria=None)

    r = iterate_bounded([scalar_table("v", 1)], [], body, max_rounds=7)
    assert (r.rounds, r.termination, calls) == (7, "max_rounds", list(range(7)))


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_terminate_on_max_iter_operator(max_iter):
    def body(variables, data, epoch):
        criteria = variables[0].process(TerminateOnMaxIter(max_iter))
        return IterationBodyResult([variables[0]], termination_criteria=criteria)

    r = iterate_bounded([scalar_table("v", 1)], [], body)
    assert (r.rounds, r.termination) == (max_iter, "criteria")


def test_terminate_on_max_iter_or_tol():
    # loss = 2^-epoch; tol 1e-3 is first reached at epoch 10 (2^-10 < 1e-3 < 2^-9).
    def body(variables, data, epoch):
        loss = pa.table({"loss": [2.0 ** -epoch]})
        criteria = BatchStream.of(loss).process(TerminateOnMaxIterOrTol(100, 1e-3), key="criteria")
        return IterationBodyResult([variables[0]], termination_criteria=criteria)

    r = iterate_bounded([scalar_table("v", 1)], [], body)
    assert (r.rounds, r.termination) == (11, "criteria")


def test_empty_feedback_over_several_variable_streams_needs_all_empty():
    def body(variables, data, epoch):
        a = scalar(variables[0], "a") if variables[0].num_rows else None
        empty = pa.table({"a": pa.array([], pa.int64())})
        fb0 = scalar_table("a", a + 1) if a is not None and a < 3 else empty
        fb1 = variables[1] if epoch < 5 else pa.table({"b": pa.array([], pa.int64())})
        return IterationBodyResult([fb0, fb1])

    r = iterate_bounded([scalar_table("a", 0), scalar_table("b", 7)], [], body)
    assert (r.rounds, r.termination) == (6, "empty_feedback")


# ------------------------------------------------------------------------------ replay
@pytest.mark.parametrize("kind", ["generator", "table", "batches"])
def test_replayed_data_is_seen_every_round(kind):
    counter: dict = {}
    expected = np.arange(0, 5 * 100, dtype=np.float64)
    source = {
        "generator": lambda: gen_batches(5, 100, counter),
        "table": lambda: pa.table({"x": expected}),
        "batches": lambda: list(gen_batches(5, 100)),
    }[kind]()
    seen = []

    def body(variables, data, epoch):
        seen.append(data[0].to_table()["x"].to_numpy())
        return IterationBodyResult([variables[0]])

    r = iterate_bounded([scalar_table("v", 1)], [source], body, replay=True, max_rounds=4)
    assert r.rounds == 4 and len(seen) == 4
    for s in seen:
        np.testing.assert_array_equal(s, expected)
    if kind == "generator":
        assert counter["pulled"] == 5  # the source is read once; rounds 1..3 come from the cache


def test_not_replayed_data_only_in_round_zero():
    counter: dict = {}
    rows = []

    def body(variables, data, epoch):
        rows.append((epoch, data[0].num_rows, data[1].num_rows, data[0].epoch))
        return IterationBodyResult([variables[0]])

    iterate_bounded([scalar_table("v", 1)], [gen_batches(3, 10, counter), pa.table({"x": [1.0, 2.0]})], body,
                    replay=False, max_rounds=3)
    assert rows == [(0, 30, 2, 0), (1, 0, 0, 1), (2, 0, 0, 2)]
    assert counter["pulled"] == 3


def test_mixed_replay_flags_and_operator_caching_non_replayed_data():
    """Flink ML's pattern: a non-replayed stream is cached by an all-round operator."""

    class CacheOnce(IterationOperator):
        def __init__(self):
            self.cached = []

        def process(self, batch, ctx):
            if ctx.input_index == 0:
                self.cached.append(batch)

        def on_epoch_watermark_incremented(self, epoch, ctx):
            ctx.emit(pa.record_batch({"epoch": [epoch], "rows": [sum(b.num_rows for b in self.cached)]}))

    def body(variables, data, epoch):
        replayed_rows = data[0].num_rows
        out = data[1].process(CacheOnce, variables[0])
        return IterationBodyResult([variables[0]], outputs=[out, pa.table({"replayed": [replayed_rows]})])

    r = iterate_bounded([scalar_table("v", 1)], [gen_batches(2, 5), gen_batches(4, 3)], body,
                        replay=[True, False], max_rounds=3)
    assert r.outputs[0]["rows"].to_pylist() == [12, 12, 12]
    assert r.outputs[1]["replayed"].to_pylist() == [10, 10, 10]


def test_replayed_generator_body_reads_part_in_round_zero_then_all_later():
    """Whatever round 0 did not read is still cached for later rounds; re-reading in a round works."""
    seen = []

    def body(variables, data, epoch):
        it = iter(data[0])
        first = next(it)
        if epoch == 0:  # read once partially, then fully again (second reader continues the source)
            again = data[0].to_table()
            seen.append((epoch, first.num_rows, again.num_rows))
        else:
            seen.append((epoch, first.num_rows, data[0].num_rows))
        return IterationBodyResult([variables[0]])

    iterate_bounded([scalar_table("v", 1)], [gen_batches(4, 5)], body, max_rounds=3)
    assert seen == [(0, 5, 20), (1, 5, 20), (2, 5, 20)]


def test_not_replayed_iterator_read_twice_is_an_error():
    def body(variables, data, epoch):
        data[0].to_table()
        data[0].to_table()
        return IterationBodyResult([variables[0]])

    with pytest.raises(RuntimeError, match="not-replayed iterator.*replay=True"):
        iterate_bounded([scalar_table("v", 1)], [gen_batches(2, 2)], body, replay=False, max_rounds=2)


def _least_squares_gd(data, budget, spill_dir=None, observe=None):
    """Full-batch gradient descent on 0.5/n ||Xw - y||^2, data replayed from the cache."""

    class Gradient(IterationOperator):  # all-round: accumulates over batches, emits per round
        def __init__(self):
            self.g, self.n, self.w = None, 0, None

        def process(self, batch, ctx):
            if ctx.input_index == 1:  # the model
                self.w = np.asarray(batch.column("w").to_pylist()[0])
                return
            X = np.stack([batch.column(f"x{j}").to_numpy() for j in range(3)], axis=1)
            self.pending = getattr(self, "pending", []) + [(X, batch.column("y").to_numpy())]

        def on_epoch_watermark_incremented(self, epoch, ctx):
            g = np.zeros(3)
            n = 0
            for X, y in self.pending:
                g += X.T @ (X @ self.w - y)
                n += len(y)
            self.pending = []
            ctx.emit(pa.record_batch({"w": [list(self.w - 0.5 * g / n)]}))

    def body(variables, data, epoch):
        if observe is not None:
            observe(epoch)
        new_w = data[0].process(Gradient, variables[0])
        return IterationBodyResult([new_w], outputs=[])

    return iterate_bounded([pa.table({"w": [[0.0, 0.0, 0.0]]})], [data], body, max_rounds=300,
                           cache_budget_bytes=budget, spill_dir=spill_dir)


def _regression_batches(seed=0, n_batches=40, rows=250):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_batches * rows, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=len(X))
    batches = [pa.record_batch({"x0": X[i:i + rows, 0].copy(), "x1": X[i:i + rows, 1].copy(),
                                "x2": X[i:i + rows, 2].copy(), "y": y[i:i + rows].copy()})
               for i in range(0, len(X), rows)]
    return X, y, batches


def test_gradient_descent_least_squares_matches_lstsq():
    X, y, batches = _regression_batches()
    r = _least_squares_gd(iter(batches), budget=1 << 30)
    w = np.asarray(r.variables[0]["w"][0].as_py())
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(w, w_star, atol=1e-9)
    assert r.spilled_bytes == 0


def test_spilling_past_a_tiny_budget_gives_identical_results(tmp_path):
    X, y, batches = _regression_batches(seed=1)
    in_memory = _least_squares_gd(iter(batches), budget=1 << 30)
    spill_files = []

    def observe(epoch):
        spill_files.append(sorted(p.name for p in tmp_path.rglob("*.arrow")))

    spilled = _least_squares_gd(iter(batches), budget=10_000, spill_dir=str(tmp_path), observe=observe)
    assert spilled.spilled_bytes > 0
    assert spill_files[1], "round 1 must replay from spill files"
    assert in_memory.variables[0].equals(spilled.variables[0])  # bit-identical
    assert not list(tmp_path.rglob("*.arrow")), "spill files are removed when the iteration ends"


def test_spill_keeps_batch_order_and_boundaries(tmp_path):
    batches = list(gen_batches(30, 7))
    seen = []

    def body(variables, data, epoch):
        seen.append([b["x"].to_pylist() for b in data[0]])
        return IterationBodyResult([variables[0]])

    r = iterate_bounded([scalar_table("v", 1)], [iter(batches)], body, max_rounds=3, cache_budget_bytes=500,
                        spill_dir=str(tmp_path))
    assert r.spilled_bytes > 0
    assert seen[0] == seen[1] == seen[2] == [b["x"].to_pylist() for b in batches]


# ------------------------------------------------------------------------------ lifecycle
class Counting(IterationOperator):
    created = 0

    def __init__(self):
        type(self).created += 1
        self.rows = 0
        self.watermarks = []
        self.terminated = False

    def process(self, batch, ctx):
        self.rows += batch.num_rows

    def on_epoch_watermark_incremented(self, epoch, ctx):
        self.watermarks.append(epoch)
        ctx.emit(pa.record_batch({"rows": [self.rows], "instance": [id(self)]}))

    def on_iteration_terminated(self, ctx):
        self.terminated = True


@pytest.mark.parametrize("lifecycle", ["all_round", "per_round"])
def test_operator_lifecycle(lifecycle):
    class Op(Counting):
        created = 0

    instances = []
    orig_init = Op.__init__

    def tracking_init(self):
        orig_init(self)
        instances.append(self)

    Op.__init__ = tracking_init

    def body(variables, data, epoch):
        return IterationBodyResult([variables[0]], outputs=[data[0].process(Op)])

    r = iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1.0, 2.0, 3.0]})], body,
                        lifecycle=lifecycle, max_rounds=4)
    rows = r.outputs[0]["rows"].to_pylist()
    if lifecycle == "all_round":
        assert Op.created == 1
        assert rows == [3, 6, 9, 12]  # state kept across rounds
        assert instances[0].watermarks == [0, 1, 2, 3] and instances[0].terminated
        assert len(set(r.outputs[0]["instance"].to_pylist())) == 1
    else:
        assert Op.created == 4
        assert rows == [3, 3, 3, 3]  # fresh state each round
        assert [i.watermarks for i in instances] == [[0], [1], [2], [3]]
        assert not any(i.terminated for i in instances)  # closed at the end of their round
        assert len(set(r.outputs[0]["instance"].to_pylist())) == 4


def test_all_round_keeps_one_instance_per_call_site():
    class A(Counting):
        created = 0

    def body(variables, data, epoch):
        first = data[0].process(A)
        second = data[0].process(A)  # a second call site: its own instance
        keyed = data[0].process(lambda: A(), key="k")
        return IterationBodyResult([variables[0]], outputs=[first, second, keyed])

    r = iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1.0]})], body, max_rounds=3)
    assert A.created == 3
    assert [t["rows"].to_pylist() for t in r.outputs] == [[1, 2, 3]] * 3


def test_per_round_many_rounds_fresh_instances_without_false_reuse_errors():
    # Closed per-round instances are garbage collected; a new one may get the same id().
    def body(variables, data, epoch):
        return IterationBodyResult([variables[0]], outputs=[data[0].process(lambda: Counting())])

    r = iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1.0, 2.0]})], body, lifecycle="per_round",
                        max_rounds=60)
    assert r.outputs[0]["rows"].to_pylist() == [2] * 60


def test_process_outside_an_iteration_runs_one_round():
    log: list = []
    out = BatchStream.of(pa.table({"x": [1.0, 2.0]})).process(Recorder("S", log))
    assert out.to_table()["epoch"].to_pylist() == [0]
    assert log == [("S", "process", 0, 0, 2), ("S", "watermark", 0), ("S", "close")]


def test_per_round_rejects_a_reused_instance():
    op = Counting()

    def body(variables, data, epoch):
        return IterationBodyResult([variables[0]], outputs=[data[0].process(op)])

    with pytest.raises(ValueError, match="per_round.*factory"):
        iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1.0]})], body, lifecycle="per_round", max_rounds=2)


def test_outputs_only_at_termination():
    def body(variables, data, epoch):
        v = scalar(variables[0], "v")
        nxt = scalar_table("v", v * 2)
        final = BatchStream.of(nxt).process(ForwardInputsOfLastRound)
        return IterationBodyResult([nxt], outputs=[final])

    r = iterate_bounded([scalar_table("v", 1)], [], body, max_rounds=5)
    assert r.outputs[0]["v"].to_pylist() == [32]
    assert [e for e, _ in r.output_batches[0]] == [END_EPOCH]


def test_termination_emissions_flow_downstream_in_order():
    log: list = []

    class Upper(IterationOperator):
        def process(self, batch, ctx):
            pass

        def on_iteration_terminated(self, ctx):
            log.append("upper terminated")
            ctx.emit(pa.record_batch({"x": [42]}))

    class Lower(IterationOperator):
        def process(self, batch, ctx):
            if ctx.terminated:
                log.append(("lower got", batch["x"].to_pylist()))

        def on_iteration_terminated(self, ctx):
            log.append("lower terminated")

    def body(variables, data, epoch):
        up = variables[0].process(Upper)
        low = up.map_batches(lambda b: b).process(Lower)
        return IterationBodyResult([variables[0]], outputs=[up, low])

    r = iterate_bounded([scalar_table("v", 1)], [], body, max_rounds=2)
    assert log == ["upper terminated", ("lower got", [42]), "lower terminated"]
    assert r.outputs[0]["x"].to_pylist() == [42]


def test_side_outputs():
    class Split(IterationOperator):
        def process(self, batch, ctx):
            x = batch["x"]
            ctx.emit(batch.filter(pc.greater(x, 1)))
            ctx.output("small", batch.filter(pc.less_equal(x, 1)))

    def body(variables, data, epoch):
        big = data[0].process(Split)
        return IterationBodyResult([variables[0]], outputs=[big, big.side_output("small")])

    r = iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [0, 1, 2, 3]})], body, max_rounds=1)
    assert r.outputs[0]["x"].to_pylist() == [2, 3]
    assert r.outputs[1]["x"].to_pylist() == [0, 1]


# ------------------------------------------------------------------------------ variables
def test_multiple_variable_streams_fibonacci():
    def body(variables, data, epoch):
        a, b = scalar(variables[0], "a"), scalar(variables[1], "b")
        return IterationBodyResult([scalar_table("a", b), scalar_table("b", a + b)])

    r = iterate_bounded([scalar_table("a", 0), scalar_table("b", 1)], [], body, max_rounds=30)
    phi = (1 + 5 ** 0.5) / 2
    fib = lambda n: round((phi ** n - (-1 / phi) ** n) / 5 ** 0.5)  # Binet's formula
    assert (scalar(r.variables[0], "a"), scalar(r.variables[1], "b")) == (fib(30), fib(31))


def test_newton_sqrt_fixed_point():
    values = np.array([2.0, 3.0, 10.0, 1e-4, 12345.678])

    def body(variables, data, epoch):
        x = variables[0].to_table()["x"].to_numpy()
        a = data[0].to_table()["a"].to_numpy()
        nxt = 0.5 * (x + a / x)
        converged = np.all(np.abs(nxt - x) <= 1e-15 * np.abs(nxt))
        criteria = pa.table({"c": pa.array([] if converged else [1], pa.int64())})
        return IterationBodyResult([pa.table({"x": nxt})], termination_criteria=criteria)

    r = iterate_bounded([pa.table({"x": np.maximum(values, 1.0)})], [pa.table({"a": values})], body, max_rounds=200)
    assert r.termination == "criteria"
    np.testing.assert_allclose(r.variables[0]["x"].to_numpy(), np.sqrt(values), rtol=1e-14)


def test_power_iteration_matches_eigh():
    rng = np.random.default_rng(3)
    B = rng.normal(size=(20, 20))
    A = B @ B.T  # symmetric positive semi-definite
    rows = [pa.record_batch({"row": np.arange(i, i + 5), "a": pa.array(list(A[i:i + 5]), pa.list_(pa.float64(), 20))})
            for i in range(0, 20, 5)]

    class MatVec(IterationOperator):  # the matrix arrives in row blocks; v arrives on input 1
        def process(self, batch, ctx):
            if ctx.input_index == 0:
                self.blocks = getattr(self, "blocks", []) + [batch]
            else:
                self.v = np.asarray(batch["v"][0].as_py())

        def on_epoch_watermark_incremented(self, epoch, ctx):
            y = np.zeros(20)
            for b in self.blocks:
                M = b["a"].flatten().to_numpy().reshape(-1, 20)
                y[b["row"].to_numpy()] = M @ self.v
            self.blocks = []
            lam = float(np.linalg.norm(y))
            ctx.emit(pa.record_batch({"v": [list(y / lam)]}))
            ctx.output("delta", pa.record_batch({"loss": [float(np.linalg.norm(y / lam - self.v))]}))

    def body(variables, data, epoch):
        new_v = data[0].process(MatVec, variables[0], key="matvec")
        criteria = new_v.side_output("delta").process(lambda: TerminateOnMaxIterOrTol(5000, 1e-13))
        return IterationBodyResult([new_v], termination_criteria=criteria)

    r = iterate_bounded([pa.table({"v": [list(np.ones(20) / np.sqrt(20))]})], [iter(rows)], body)
    v = np.asarray(r.variables[0]["v"][0].as_py())
    w, V = np.linalg.eigh(A)
    top = V[:, -1]
    assert r.termination == "criteria"
    np.testing.assert_allclose(abs(v @ top), 1.0, atol=1e-10)
    np.testing.assert_allclose(v @ A @ v, w[-1], rtol=1e-10)


# ------------------------------------------------------------------------------ nesting
def test_nested_iteration():
    """Outer: x_{k+1} = sqrt(x_k + 2) (converges to 2); each sqrt is an inner Newton iteration."""
    inner_rounds = []

    def inner_sqrt(a: float) -> float:
        def body(variables, data, epoch):
            x = scalar(variables[0], "x")
            a_ = scalar(data[0], "a")
            nxt = 0.5 * (x + a_ / x)
            crit = pa.table({"c": pa.array([] if abs(nxt - x) < 1e-15 * nxt else [1], pa.int64())})
            return IterationBodyResult([scalar_table("x", nxt)], termination_criteria=crit)

        r = iterate_bounded([scalar_table("x", max(a, 1.0))], [scalar_table("a", a)], body, max_rounds=100)
        inner_rounds.append(r.rounds)
        return scalar(r.variables[0], "x")

    def outer(variables, data, epoch):
        x = scalar(variables[0], "x")
        offset = scalar(data[0], "c")
        return IterationBodyResult([scalar_table("x", inner_sqrt(x + offset))], outputs=[variables[0]])

    r = iterate_bounded([scalar_table("x", 0.0)], [scalar_table("c", 2.0)], outer, max_rounds=12)
    x = 0.0
    for _ in range(12):
        x = np.sqrt(x + 2.0)
    assert abs(scalar(r.variables[0], "x") - x) < 1e-14
    assert len(inner_rounds) == 12 and all(n > 1 for n in inner_rounds)


def test_nested_iteration_over_the_outer_rounds_data_stream():
    """An inner iteration may take the outer round's (replayed, cached) data stream as its data."""

    def outer(variables, data, epoch):
        def inner(v2, d2, e2):
            s = sum(pc.sum(b["x"]).as_py() for b in d2[0])
            return IterationBodyResult([scalar_table("s", scalar(v2[0], "s") + s)])

        r = iterate_bounded([scalar_table("s", 0.0)], [data[0]], inner, max_rounds=3)
        return IterationBodyResult([variables[0]], outputs=[r.variables[0]])

    r = iterate_bounded([scalar_table("v", 1)], [gen_batches(4, 5)], outer, max_rounds=2, cache_budget_bytes=100)
    assert r.outputs[0]["s"].to_pylist() == [3 * sum(range(20))] * 2


# ------------------------------------------------------------------------------ errors
def test_errors_name_the_problem():
    ok = lambda v, d, e: IterationBodyResult([v[0]])
    with pytest.raises(ValueError, match="lifecycle must be one of"):
        iterate_bounded([scalar_table("v", 1)], [], ok, lifecycle="sometimes")
    with pytest.raises(ValueError, match="max_rounds"):
        iterate_bounded([scalar_table("v", 1)], [], ok, max_rounds=0)
    with pytest.raises(ValueError, match="replay has 1 flags for 2 data streams"):
        iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1]}), pa.table({"x": [1]})], ok, replay=[True])
    with pytest.raises(ValueError, match="2 feedback variable streams for 1"):
        iterate_bounded([scalar_table("v", 1)], [], lambda v, d, e: IterationBodyResult([v[0], v[0]]))
    with pytest.raises(TypeError, match="must return an IterationBodyResult"):
        iterate_bounded([scalar_table("v", 1)], [], lambda v, d, e: [v[0]])
    with pytest.raises(TypeError, match="list of streams"):
        iterate_bounded(scalar_table("v", 1), [], ok)
    with pytest.raises(ValueError, match="same number"):
        iterate_bounded([scalar_table("v", 1)], [],
                        lambda v, d, e: IterationBodyResult([v[0]], outputs=[v[0]] * (e + 1)), max_rounds=3)
    kept = {}

    def stale(v, d, e):
        kept.setdefault("s", d[0])
        if e == 1:
            kept["s"].process(Counting)
        return IterationBodyResult([v[0]])

    with pytest.raises(RuntimeError, match="after its round ended"):
        iterate_bounded([scalar_table("v", 1)], [pa.table({"x": [1]})], stale, max_rounds=3)


# ------------------------------------------------------------------------------ unbounded
def _mean_body(variables, data, epoch):
    """Shared model state: running count and mean of x."""
    m = variables[0].to_table()
    n0, mean0 = m["n"][0].as_py(), m["mean"][0].as_py()
    x = data[0].to_table()["x"].to_numpy()
    n = n0 + len(x)
    mean = mean0 + (x.sum() - len(x) * mean0) / n
    new = pa.table({"n": [n], "mean": [mean]})
    return IterationBodyResult([new], outputs=[pa.table({"epoch": [epoch], "rows": [len(x)]})])


def test_unbounded_mini_batches_by_count():
    steps = list(iterate_unbounded([pa.table({"n": [0], "mean": [0.0]})], gen_batches(10, 7), _mean_body,
                                   mini_batch_size=20))
    assert [s.num_rows for s in steps] == [20, 20, 20, 10]
    assert [s.epoch for s in steps] == [0, 1, 2, 3]
    x = np.arange(70, dtype=np.float64)
    ends = np.cumsum([20, 20, 20, 10])
    for s, end in zip(steps, ends):  # each step is a model version: the mean of all rows so far
        assert s.variables[0]["n"][0].as_py() == end
        assert abs(s.variables[0]["mean"][0].as_py() - x[:end].mean()) < 1e-12
        assert s.updated == [True]
    assert [s.outputs[0]["epoch"][0].as_py() for s in steps] == [0, 1, 2, 3]


def test_unbounded_shared_state_in_all_round_operator_and_termination():
    log = []

    class Model(IterationOperator):
        def __init__(self):
            self.total = 0.0

        def process(self, batch, ctx):
            if ctx.input_index == 0:
                self.total += pc.sum(batch["x"]).as_py()

        def on_epoch_watermark_incremented(self, epoch, ctx):
            log.append(("wm", epoch))
            ctx.emit(pa.record_batch({"total": [self.total]}))

        def on_iteration_terminated(self, ctx):
            log.append("terminated")
            ctx.emit(pa.record_batch({"total": [-self.total]}))

    def body(variables, data, epoch):
        out = data[0].process(Model, variables[0])
        return IterationBodyResult([out], outputs=[out])

    steps = list(iterate_unbounded([pa.table({"total": [0.0]})], gen_batches(6, 5), body, mini_batch_size=10))
    totals = np.cumsum([sum(range(i, i + 10)) for i in range(0, 30, 10)])
    assert [s.variables[0]["total"][0].as_py() for s in steps[:3]] == list(totals)
    assert log == [("wm", 0), ("wm", 1), ("wm", 2), "terminated"]
    assert steps[-1].final and steps[-1].epoch == END_EPOCH
    assert steps[-1].outputs[0]["total"].to_pylist() == [-totals[-1]]


def test_unbounded_empty_feedback_keeps_the_model():
    def body(variables, data, epoch):
        fb = pa.table({"v": [epoch]}) if epoch % 2 == 0 else pa.table({"v": pa.array([], pa.int64())})
        return IterationBodyResult([fb])

    steps = list(iterate_unbounded([pa.table({"v": [-1]})], gen_batches(4, 1), body))
    assert [s.variables[0]["v"][0].as_py() for s in steps] == [0, 0, 2, 2]
    assert [s.updated for s in steps] == [[True], [False], [True], [False]]


def test_unbounded_mini_batches_by_time_fake_clock():
    now = [0.0]

    def timed():  # one 3-row batch per (fake) second: t = 0, 1, 2, ...
        for i in range(8):
            now[0] = float(i)
            yield pa.record_batch({"x": np.full(3, float(i))})

    steps = list(iterate_unbounded([pa.table({"n": [0], "mean": [0.0]})], timed(), _mean_body,
                                   mini_batch_seconds=2.5, clock=lambda: now[0]))
    # windows open at the first batch and close 2.5 s later: {0,1,2}, {3,4,5}, {6,7}
    assert [s.num_rows for s in steps] == [9, 9, 6]
    assert [s.variables[0]["n"][0].as_py() for s in steps] == [9, 18, 24]


def test_mini_batches_by_count_and_time_whichever_first():
    now = [0.0]

    def timed():
        for i in range(6):
            now[0] = float(i)
            yield pa.record_batch({"x": np.full(4, float(i))})

    got = [sum(b.num_rows for b in mb) for mb in mini_batches(timed(), size=6, seconds=3.5, clock=lambda: now[0])]
    # count cuts at 6 rows; the remainder of a cut batch opens the next window at that batch's time
    assert got == [6, 6, 6, 6]
    got = [sum(b.num_rows for b in mb) for mb in mini_batches(timed(), size=100, seconds=1.5, clock=lambda: now[0])]
    assert got == [8, 8, 8]


def test_mini_batch_time_window_closes_while_the_source_is_idle():
    events = []
    lock = threading.Lock()

    def slow():
        yield pa.record_batch({"x": [1.0]})
        time.sleep(1.0)  # idle for much longer than the window
        with lock:
            events.append("second batch produced")
        yield pa.record_batch({"x": [2.0]})

    for mb in mini_batches(slow(), seconds=0.05):
        with lock:
            events.append(("mini-batch", [b["x"][0].as_py() for b in mb]))
    assert events == [("mini-batch", [1.0]), "second batch produced", ("mini-batch", [2.0])]


def test_unbounded_rejects_criteria_and_closes_cleanly():
    def body(variables, data, epoch):
        return IterationBodyResult([variables[0]], termination_criteria=pa.table({"c": [1]}))

    with pytest.raises(ValueError, match="termination criteria are not supported"):
        list(iterate_unbounded([pa.table({"v": [1]})], gen_batches(2, 2), body))

    def infinite():
        i = 0
        while True:
            i += 1
            yield pa.record_batch({"x": [float(i)]})

    terminated = []

    class T(IterationOperator):
        def on_iteration_terminated(self, ctx):
            terminated.append(True)

    def body2(variables, data, epoch):
        data[0].process(T)
        return IterationBodyResult([variables[0]])

    with iterate_unbounded([pa.table({"v": [1]})], infinite(), body2, mini_batch_size=3) as it:
        first = [next(it) for _ in range(5)]
    assert [s.epoch for s in first] == [0, 1, 2, 3, 4]
    assert terminated == [True]


# ------------------------------------------------------------------------------ docs
def test_docs_example_runs():
    run_doc_examples("iteration.md")
