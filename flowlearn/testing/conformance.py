"""``check_stage``: the checks every flowlearn stage passes, run on one stage and one input table.

In the spirit of scikit-learn's ``check_estimator`` and Flink ML's per-algorithm tests, one call
checks the contracts a stage shares with every other, so a stage's own test module holds only its
comparisons with an independent oracle:

``params``
    every declared parameter round-trips through the constructor and ``get_params`` (as JSON); an
    unknown name is a ``TypeError`` listing the valid ones; a value of the wrong type, and a value
    breaking the parameter's rule, is a ``ValueError`` naming the stage, the parameter and the rule.
``param_copy``
    an estimator's fitted model holds the estimator's value of every parameter they share.
``output_schema``
    ``output_schema(input_schema)``, declared before any row is read, equals the schema
    ``transform`` returns (names, types, declared vector sizes and feature names), and every
    declared vector size holds on the data.
``empty_input``
    a zero-row table gives a zero-row output of the same schema; an estimator refuses to fit it
    with a ``ValueError`` naming the stage.
``unique_columns``
    no output column name appears twice.
``save_load``
    ``save`` / ``fl.load`` give a stage of the same class and params (a model transforms the same;
    an estimator fits the same model).
``model_data``
    ``get_model_data()`` set on a fresh model of the same params transforms the same.
``row_kernel``
    ``row_fn()`` (where offered) gives, row by row, what ``transform`` gives for the table, and a row
    without an input column is refused naming it.
``local_predictor``
    ``LocalPredictor.predict`` row by row and ``predict_batch`` equal ``transform``, also for a
    predictor serving the model from a model store (``model_version`` added once).
``stream``
    ``transform(stream)`` (the table cut into several batches) equals ``transform(table)``, and the
    stream's schema, known when the plan is built, is the real one.
``sparse_input``
    where a dense vector column is read, the same vectors stored sparse give the same results, or an
    error naming the column.
``bad_input``
    a missing input column, or one of another type, is a ``ValueError``/``TypeError`` naming the
    stage and the column, both from ``transform`` (and ``fit``) and from ``output_schema``; never a
    bare error from inside NumPy or pyarrow.

``check_stage`` raises one ``AssertionError`` listing every failed check (with the check's name)
and returns, when all pass, a dict saying for each check ``"ok"`` or why it did not apply.

Example:
    >>> import flowlearn as fl
    >>> from flowlearn.testing import check_stage
    >>> report = check_stage(fl.feature.StandardScaler(input_col="v", output_col="z"),
    ...                      {"v": [[1.0, 2.0], [3.0, 5.0], [4.0, 4.0]]})
    >>> report["output_schema"], report["save_load"]
    ('ok', 'ok')
"""
from __future__ import annotations

import json
import math
import tempfile
import traceback
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import scipy.sparse as sps

from flowlearn.api import AlgoOperator, Estimator, Model, SkipRow, Stage, Transformer
from flowlearn.data.schema import FEATURES_KEY, SIZE_KEY
from flowlearn.data.table import table as to_table
from flowlearn.linalg import SparseVector, from_csr, is_dense, is_sparse, is_vector_type, to_csr, to_numpy
from flowlearn.params import REQUIRED, _coerce

__all__ = ["check_stage", "CHECKS"]

CHECKS = ("params", "param_copy", "output_schema", "empty_input", "unique_columns", "save_load", "model_data",
          "row_kernel", "local_predictor", "stream", "sparse_input", "bad_input")

_ERRORS = (ValueError, TypeError)


class _NotApplicable(Exception):
    """A check that does not apply to this stage (the reason is reported)."""


# ----------------------------------------------------------------------------------- comparing


def _first(out: Any) -> pa.Table:
    return out[0] if isinstance(out, tuple) else out


def _dense(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return to_csr(col).toarray() if is_sparse(col.type) else to_numpy(col)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-7, atol=1e-9, equal_nan=True))


def _assert_same_schema(got: pa.Schema, want: pa.Schema, what: str, metadata: bool = True) -> None:
    assert got.names == want.names, f"{what}: columns {got.names}, expected {want.names}"
    for g, w in zip(got, want):
        assert g.type.equals(w.type), f"{what}: column '{g.name}' has type {g.type}, expected {w.type}"
        if metadata:
            gm = {k: v for k, v in (g.metadata or {}).items() if k in (SIZE_KEY, FEATURES_KEY)}
            wm = {k: v for k, v in (w.metadata or {}).items() if k in (SIZE_KEY, FEATURES_KEY)}
            assert gm == wm, f"{what}: column '{g.name}' has metadata {gm}, expected {wm}"


def _assert_same_column(a: pa.ChunkedArray, b: pa.ChunkedArray, name: str, what: str, layout: bool = True) -> None:
    if layout:
        assert a.type.equals(b.type), f"{what}: column '{name}' has type {a.type}, expected {b.type}"
    if is_vector_type(a.type) and is_vector_type(b.type):
        assert a.null_count == b.null_count, f"{what}: column '{name}' has {a.null_count} nulls, expected {b.null_count}"
        if a.null_count == 0:
            x, y = _dense(a), _dense(b)
            assert _close(x, y), f"{what}: column '{name}' differs: {x[:3].tolist()}... vs {y[:3].tolist()}..."
            return
    if pa.types.is_floating(a.type) and pa.types.is_floating(b.type):
        x = a.to_numpy(zero_copy_only=False).astype(float)
        y = b.to_numpy(zero_copy_only=False).astype(float)
        assert _close(x, y), f"{what}: column '{name}' differs: {x[:5].tolist()} vs {y[:5].tolist()}"
        return
    assert a.to_pylist() == b.to_pylist(), f"{what}: column '{name}' differs: {a.to_pylist()[:5]} vs {b.to_pylist()[:5]}"


def _assert_same_table(got: pa.Table, want: pa.Table, what: str, layout: bool = True) -> None:
    assert got.column_names == want.column_names, f"{what}: columns {got.column_names}, expected {want.column_names}"
    assert got.num_rows == want.num_rows, f"{what}: {got.num_rows} rows, expected {want.num_rows}"
    for name in got.column_names:
        _assert_same_column(got.column(name), want.column(name), name, what, layout)


def _value(v: Any) -> Any:
    """A row value in a comparable form: vectors as dense float arrays."""
    if isinstance(v, SparseVector):
        return v.to_numpy()
    if sps.issparse(v):
        return np.asarray(v.toarray()).ravel()
    if isinstance(v, np.ndarray):
        return v.astype(float).ravel()
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
        return np.asarray(v, dtype=float)
    if isinstance(v, dict) and set(v) == {"size", "indices", "values"}:
        return SparseVector(v["size"], v["indices"], v["values"]).to_numpy()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _same_value(a: Any, b: Any) -> bool:
    a, b = _value(a), _value(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and _close(a, b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or isinstance(a, (str, bool)) or isinstance(b, (str, bool)):
            return a == b
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-9)
    return a == b


def rows_of(t: pa.Table) -> list[dict]:
    """The rows of ``t`` as a service gives them to a row kernel: dense vectors as NumPy arrays,
    sparse vectors as ``SparseVector``, other values as Python objects."""
    cols: dict[str, list] = {}
    for name in t.column_names:
        col = t.column(name)
        if is_vector_type(col.type) and col.null_count == 0:
            if is_sparse(col.type):
                m = to_csr(col)
                cols[name] = [SparseVector(m.shape[1], m[i].indices, m[i].data) for i in range(m.shape[0])]
            elif is_dense(col.type):
                x = to_numpy(col)
                cols[name] = [x[i].copy() for i in range(len(x))]
            continue
        cols[name] = [_row_vector(v) for v in col.to_pylist()]
    return [{k: cols[k][i] for k in t.column_names} for i in range(t.num_rows)]


def _row_vector(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"size", "indices", "values"}:
        return SparseVector(v["size"], v["indices"], v["values"])
    return v


def _as_sparse(t: pa.Table, c: str) -> pa.Table:
    """``t`` with the dense vector column ``c`` stored sparse, its size declared as a stage making
    sparse vectors declares it (field metadata ``flowlearn.size``)."""
    x = to_numpy(t.column(c))
    field = pa.field(c, from_csr(sps.csr_matrix(x)).type, metadata={SIZE_KEY: str(x.shape[1]).encode()})
    return t.set_column(t.column_names.index(c), field, from_csr(sps.csr_matrix(x)))


def _dense_vector_columns(t: pa.Table) -> list[str]:
    return [n for n in t.column_names if is_dense(t.schema.field(n).type) and t.column(n).null_count == 0]


def _same_params(a: Any, b: Any) -> bool:
    """Equal parameter values, NaN equal to NaN (``Imputer.missing_value``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_params(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_params(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _names(err: BaseException, *what: str) -> bool:
    msg = str(err)
    return all(w in msg for w in what)


# ------------------------------------------------------------------------------------ the checks


class _Checker:
    def __init__(self, stage: Stage, table: pa.Table, others: tuple[pa.Table, ...]) -> None:
        self.stage, self.table, self.others = stage, table, others
        self.name = type(stage).__name__
        self.is_estimator = isinstance(stage, Estimator)
        self._op: Any = None

    # the operator whose transform is checked: the stage, or the model it fits
    @property
    def op(self) -> AlgoOperator:
        if self._op is None:
            self._op = self.stage.fit(self.table, *self.others) if self.is_estimator else self.stage
            if not isinstance(self._op, AlgoOperator):
                raise AssertionError(f"{self.name}.fit returned a {type(self._op).__name__}, not a Model")
        return self._op

    @property
    def inputs(self) -> tuple[pa.Table, ...]:
        """The tables the operator transforms (a fitted model: the first input only)."""
        return (self.table,) if self.is_estimator else (self.table, *self.others)

    def transform(self, op: AlgoOperator | None = None, *inputs: pa.Table) -> pa.Table:
        return _first((op or self.op).transform(*(inputs or self.inputs)))

    @property
    def op_name(self) -> str:
        return type(self.op).__name__

    def _names_stage(self, err: BaseException) -> bool:
        return self.name in str(err) or self.op_name in str(err)

    # -- params -----------------------------------------------------------------------------
    def check_params(self) -> str:
        cls = type(self.stage)
        declared = cls.params()
        values = self.stage.get_params()
        json.dumps(values)  # params are JSON values
        try:
            again = cls(**values)
        except TypeError as e:
            raise _NotApplicable(f"its constructor does not take its params ({e})") from None
        assert _same_params(again.get_params(), values), f"{self.name}(**get_params()) has params {again.get_params()}, not {values}"
        try:
            cls(no_such_param_xyz=1)
            raise AssertionError(f"{self.name}(no_such_param_xyz=1) was accepted")
        except TypeError as e:
            assert _names(e, "no_such_param_xyz") and all(p in str(e) for p in list(declared)[:3]), \
                f"the error for an unknown parameter names neither it nor the valid ones: {e}"
        rules = 0
        for pname, p in declared.items():
            probe = cls(**values)
            if p.type is not Any:
                try:
                    probe.set(**{pname: object()})
                    raise AssertionError(f"{self.name}: parameter '{pname}' accepted an object() as its value")
                except ValueError as e:
                    assert _names(e, self.name, f"'{pname}'"), f"{self.name}: bad type error for '{pname}': {e}"
            if p.default is not REQUIRED and p.default is not None:
                got = cls(**{**values, pname: p.default}).get_params()[pname]
                assert _same_params(got, p.default), f"{self.name}({pname}={p.default!r}) holds {got!r}"
            if p.validator is None:
                continue
            bad = _bad_value(p)
            if bad is _NONE:
                continue
            rules += 1
            try:
                probe.set(**{pname: bad})
                raise AssertionError(f"{self.name}: parameter '{pname}' = {bad!r} breaks {p.validator} but was accepted")
            except ValueError as e:
                assert _names(e, self.name, f"'{pname}'", str(p.validator)), \
                    f"{self.name}: the error for '{pname}' = {bad!r} does not name the stage, param and rule: {e}"
        return f"ok ({len(declared)} params, {rules} rules)"

    # -- estimator -> model ------------------------------------------------------------------------
    def check_param_copy(self) -> str:
        if not self.is_estimator:
            raise _NotApplicable("not an estimator")
        mine, theirs = self.stage.get_params(), self.op.get_params()
        shared = [k for k in mine if k in theirs]
        for k in shared:
            assert _same_params(theirs[k], mine[k]), f"{self.op_name}.{k} = {theirs[k]!r}, but the estimator's is {mine[k]!r}"
        return f"ok ({len(shared)} shared params)"

    # -- schema ------------------------------------------------------------------------------------
    def check_output_schema(self) -> str:
        declared = _first(self.op.output_schema(*[t.schema for t in self.inputs]))
        real = self.transform()
        _assert_same_schema(real.schema, declared, f"{self.op_name}: transform's schema vs output_schema")
        for f in real.schema:
            size = (f.metadata or {}).get(SIZE_KEY)
            if size is None or real.num_rows == 0 or real.column(f.name).null_count:
                continue
            col = real.column(f.name)
            widths = to_csr(col).shape[1] if is_sparse(f.type) else {len(v) for v in col.to_pylist()}
            assert widths in (int(size), {int(size)}), \
                f"{self.op_name}: column '{f.name}' declares size {int(size)} but holds vectors of size {widths}"
        return "ok"

    def check_empty_input(self) -> str:
        empties = tuple(t.slice(0, 0) for t in self.inputs)
        if not isinstance(self.op, Transformer):  # an evaluator or another table-to-table operator
            try:
                out = _first(self.op.transform(*empties))
            except _ERRORS as e:
                assert self.op_name in str(e), f"{self.op_name}.transform(empty) error does not name the stage: {e}"
                return "ok (refused, naming the stage)"
        else:
            out = _first(self.op.transform(*empties))
        assert out.num_rows == 0 or not isinstance(self.op, Transformer), \
            f"{self.op_name}.transform of an empty table returned {out.num_rows} rows"
        real = self.transform()
        _assert_same_schema(out.schema, real.schema, f"{self.op_name}: schema for an empty input vs a full one")
        if self.is_estimator:
            try:
                self.stage.fit(self.table.slice(0, 0), *self.others)
            except _ERRORS as e:
                assert self.name in str(e), f"{self.name}.fit(empty) error does not name the stage: {e}"
            else:
                raise AssertionError(f"{self.name}.fit accepted an empty table")
        return "ok"

    def check_unique_columns(self) -> str:
        outs = self.op.transform(*self.inputs)
        for out in outs if isinstance(outs, tuple) else (outs,):
            names = out.column_names
            dup = sorted({n for n in names if names.count(n) > 1})
            assert not dup, f"{self.op_name}.transform returns column(s) {dup} more than once: {names}"
        return "ok"

    # -- persistence -------------------------------------------------------------------------------
    def check_save_load(self) -> str:
        from flowlearn.persist import load_stage

        with tempfile.TemporaryDirectory() as d:
            self.stage.save(f"{d}/stage")
            loaded = load_stage(f"{d}/stage")
            assert type(loaded) is type(self.stage), f"loaded a {type(loaded).__name__}, saved a {self.name}"
            assert _same_params(loaded.get_params(), self.stage.get_params()), \
                f"loaded params {loaded.get_params()} differ from saved {self.stage.get_params()}"
            want = self.transform()
            if self.is_estimator:
                refit = loaded.fit(self.table, *self.others)
                _assert_same_table(self.transform(refit), want, f"the loaded {self.name}'s model vs the original's")
                self.op.save(f"{d}/model")
                model = load_stage(f"{d}/model")
                assert type(model) is type(self.op) and _same_params(model.get_params(), self.op.get_params())
            else:
                model = loaded
            got = self.transform(model)
            _assert_same_schema(got.schema, want.schema, f"a loaded {self.op_name} vs the saved one")
            _assert_same_table(got, want, f"a loaded {self.op_name} vs the saved one")
        return "ok"

    def check_model_data(self) -> str:
        op = self.op
        if not isinstance(op, Model) or getattr(op, "stages", None) is not None or hasattr(op, "nodes"):
            raise _NotApplicable("not a model with model data of its own")
        data = op.get_model_data()
        assert data and all(isinstance(t, pa.Table) for t in data), "get_model_data() must give Arrow tables"
        fresh = type(op)(**op.get_params())
        try:
            fresh.transform(*self.inputs)
            raise AssertionError(f"a {self.op_name} without model data transformed a table")
        except _ERRORS as e:
            assert self.op_name in str(e), f"the error of a {self.op_name} without model data: {e}"
        fresh.set_model_data(*data)
        _assert_same_table(self.transform(fresh), self.transform(), f"{self.op_name} from get/set_model_data")
        return "ok"

    # -- row kernel and serving --------------------------------------------------------------------
    def _compare_rows(self, outputs: list[dict | None], want: pa.Table, what: str) -> None:
        kept = [r for r in outputs if r is not None]
        assert len(kept) == want.num_rows, f"{what}: {len(kept)} rows kept, transform keeps {want.num_rows}"
        expected = rows_of(want)
        for i, (got, exp) in enumerate(zip(kept, expected)):
            for c, v in exp.items():
                assert c in got, f"{what}: row {i} has no column '{c}'"
                assert _same_value(got[c], v), f"{what}: row {i}, column '{c}': {got[c]!r} vs transform's {v!r}"

    def check_row_kernel(self) -> str:
        op = self.op
        if not isinstance(op, Transformer) or len(self.inputs) > 1:
            raise _NotApplicable("not a one-input Transformer")
        fn = op.row_fn()
        if fn is None:
            raise _NotApplicable("no row kernel")
        outputs: list[dict | None] = []
        for row in rows_of(self.table):
            try:
                fn(row)
            except SkipRow:
                row = None
            outputs.append(row)
        self._compare_rows(outputs, self.transform(), f"{self.op_name}.row_fn vs transform")
        rows = rows_of(self.table.slice(0, 1))
        if rows:
            for c in op.input_columns():
                row = {k: v for k, v in rows[0].items() if k != c}
                try:
                    fn(row)
                    raise AssertionError(f"{self.op_name}.row_fn accepted a row without its input column '{c}'")
                except (ValueError, TypeError) as e:
                    assert f"'{c}'" in str(e), f"{self.op_name}.row_fn: the error for a row without '{c}': {e}"
        return "ok"

    def check_local_predictor(self) -> str:
        from flowlearn.modelstream.store import ModelStore
        from flowlearn.serving.predictor import LocalPredictor

        op = self.op
        if not isinstance(op, Transformer) or len(self.inputs) > 1:
            raise _NotApplicable("not a one-input Transformer")
        want = self.transform()
        with LocalPredictor(op) as p:
            outputs = [p.predict(r) for r in rows_of(self.table)]
            self._compare_rows(outputs, want, "LocalPredictor.predict vs transform")
            _assert_same_table(p.predict_batch(self.table), want, "LocalPredictor.predict_batch vs transform")
        with tempfile.TemporaryDirectory() as d:
            store = ModelStore(d)
            version = store.publish(op)
            with LocalPredictor(store, poll_interval=60.0) as p:
                out = p.predict_batch(self.table)
                names = out.column_names
                assert names.count("model_version") == 1, f"predict_batch from a store returns columns {names}"
                assert out.column("model_version").to_pylist() == [version] * out.num_rows
                base = out.drop_columns(["model_version"]) if "model_version" not in want.column_names else \
                    out.set_column(names.index("model_version"), "model_version", want.column("model_version"))
                _assert_same_table(base, want.select(base.column_names) if set(base.column_names) ==
                                   set(want.column_names) else want, "predict_batch from a store vs transform",
                                   layout=False)
                row = p.predict(rows_of(self.table.slice(0, 1))[0]) if self.table.num_rows else None
                assert row is None or row.get("model_version") == version
        return "ok"

    # -- streams -----------------------------------------------------------------------------------
    def check_stream(self) -> str:
        import flowlearn.stream as fls

        if not isinstance(self.op, Transformer):
            raise _NotApplicable("not a Transformer: on a stream it applies to each batch, not to the whole")
        n = self.table.num_rows
        s = fls.from_table(self.table, batch_size=max(1, math.ceil(n / 3)))
        out = self.op.transform(s, *self.inputs[1:])
        declared = out.schema
        got = out.to_table()
        want = self.transform()
        assert declared is not None, f"{self.op_name}.transform(stream): the stream's schema is unknown at plan time"
        _assert_same_schema(declared, want.schema, f"{self.op_name}.transform(stream): the plan's schema vs the "
                                                   f"table's")
        _assert_same_table(got, want, f"{self.op_name}.transform(stream) vs transform(table)", layout=False)
        return "ok"

    # -- sparse and bad input ----------------------------------------------------------------------
    def check_sparse_input(self) -> str:
        reads = set(self.op.input_columns() if isinstance(self.op, AlgoOperator) else [])
        if self.is_estimator:
            reads |= {v for k, v in self.stage.get_params().items() if k.endswith("_col") and isinstance(v, str)}
        cols = [c for c in _dense_vector_columns(self.table) if not reads or c in reads]
        if not cols:
            raise _NotApplicable("no dense vector input column")
        done = []
        want = self.transform()
        for c in cols:
            t = _as_sparse(self.table, c)
            try:
                op = self.stage.fit(t, *self.others) if self.is_estimator else self.op
                got = self.transform(op, t, *self.inputs[1:])
            except _ERRORS as e:
                assert f"'{c}'" in str(e) and self._names_stage(e), \
                    f"sparse '{c}' was refused without naming the stage and the column: {e}"
                continue
            # the input column itself comes back sparse
            got = got.set_column(got.column_names.index(c), c, want.column(c)) if c in got.column_names else got
            _assert_same_table(got, want, f"{self.op_name} with '{c}' sparse vs dense", layout=False)
            done.append(c)
        return f"ok (sparse accepted for {done})" if done else "ok (sparse refused, naming the column)"

    def check_bad_input(self) -> str:
        named = 0
        for c in self.table.column_names:
            for bad, how in ((self.table.drop_columns([c]), "without"), (_retyped(self.table, c), "retyped")):
                if bad is None:
                    continue
                err = None
                try:
                    op = self.stage.fit(bad, *self.others) if self.is_estimator else self.op
                    if self.is_estimator:
                        self.transform(op, bad)  # the model fitted on bad data reads bad data
                    self.transform(self.op, bad, *self.inputs[1:])
                except _ERRORS as e:
                    err = e
                except Exception as e:  # noqa: BLE001 - any other error is the defect reported
                    raise AssertionError(f"{how} '{c}': {type(e).__name__} (not a ValueError/TypeError naming the "
                                         f"column) from {self.name}: {e}") from e
                if err is not None:
                    assert f"'{c}'" in str(err) and self._names_stage(err), \
                        f"the error for the input {how} column '{c}' does not name the stage and the column: {err}"
                    named += 1
                if how == "without":
                    try:
                        self.op.output_schema(bad.schema, *[t.schema for t in self.inputs[1:]])
                        declared_ok = True
                    except ValueError as e:
                        declared_ok = False
                        assert f"'{c}'" in str(e), f"output_schema without '{c}' fails without naming it: {e}"
                    except Exception as e:  # noqa: BLE001
                        raise AssertionError(f"output_schema without '{c}': {type(e).__name__}: {e}") from e
                    transformed_ok = True
                    try:
                        self.transform(self.op, bad, *self.inputs[1:])
                    except _ERRORS:
                        transformed_ok = False
                    assert declared_ok == transformed_ok, (
                        f"without '{c}': transform {'succeeds' if transformed_ok else 'fails'} but output_schema "
                        f"{'succeeds' if declared_ok else 'fails'}")
        return f"ok ({named} bad inputs refused, naming the column)"


_NONE = object()


def _bad_value(p: Any) -> Any:
    """A value of the param's type that breaks its validator (``_NONE`` if none is found)."""
    base = p.type
    import typing

    elem = (typing.get_args(base) or (Any,))[0] if typing.get_origin(base) in (list, tuple) else None
    scalars = [-1, 0, -0.5, 1e300 * 10, 1.5, 2, 10 ** 6, "", "__no_such_value__", [], [""], [-1]]
    for v in scalars if elem is None else [[], [-1], [0], [""], ["__no_such_value__"], [-0.5]]:
        try:
            v = _coerce(v, base)
        except (TypeError, ValueError):
            continue
        if elem is not None and not v:
            ok = p.validator(v) if p.validator.rule == "non_empty()" else True
        elif elem is not None and p.validator.rule != "non_empty()":
            ok = all(p.validator(x) for x in v)
        else:
            ok = p.validator(v)
        if not ok:
            return v
    return _NONE


def _retyped(t: pa.Table, c: str) -> pa.Table | None:
    """``t`` with column ``c`` replaced by one of another kind (strings for numbers and vectors,
    numbers for strings)."""
    typ = t.schema.field(c).type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        col = pa.array(np.arange(t.num_rows, dtype=np.float64))
    elif pa.types.is_timestamp(typ):
        return None
    else:
        col = pa.array(["x"] * t.num_rows)
    return t.set_column(t.column_names.index(c), c, col)


def check_stage(stage: Stage, table: Any, *other_inputs: Any, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Run the conformance checks (:data:`CHECKS`, minus ``skip``) on ``stage`` with ``table`` as its
    first input (and ``other_inputs`` as the rest). An estimator is fitted on the inputs and its
    model transforms ``table``. Raises one ``AssertionError`` listing every failed check; returns
    each check's outcome (``"ok ..."`` or the reason it does not apply)."""
    if not isinstance(stage, (Estimator, AlgoOperator)):
        raise TypeError(f"check_stage expects an Estimator or AlgoOperator, got {type(stage).__name__}")
    unknown = [s for s in skip if s not in CHECKS]
    if unknown:
        raise ValueError(f"check_stage: unknown check(s) {unknown} in skip; checks: {list(CHECKS)}")
    t = table if isinstance(table, pa.Table) else to_table(table)
    others = tuple(o if isinstance(o, pa.Table) else to_table(o) for o in other_inputs)
    if t.num_rows < 2:
        raise ValueError("check_stage needs an input table of at least 2 rows (to cut it into stream batches)")
    checker = _Checker(stage, t, others)
    report: dict[str, str] = {}
    failures: list[str] = []
    for name in CHECKS:
        if name in skip:
            report[name] = "skipped (asked)"
            continue
        fn: Callable[[], str] = getattr(checker, f"check_{name}")
        try:
            report[name] = fn()
        except _NotApplicable as e:
            report[name] = f"not applicable: {e}"
        except AssertionError as e:
            failures.append(f"[{name}] {e}")
        except Exception as e:  # noqa: BLE001 - an unexpected error is a failed check, reported with its origin
            tb = traceback.extract_tb(e.__traceback__)[-1]
            failures.append(f"[{name}] {type(e).__name__}: {e} (at {tb.filename}:{tb.lineno})")
    if failures:
        raise AssertionError(f"{type(stage).__name__} fails {len(failures)} conformance check(s):\n  "
                             + "\n  ".join(failures))
    return report
