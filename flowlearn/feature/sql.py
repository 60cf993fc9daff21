"""``SQLTransformer``: transforms a table with a SQL ``SELECT`` statement in which ``__THIS__``
names the input, as Flink ML 2.x's ``SQLTransformer``. The statement runs in DuckDB (embedded,
in process) over the Arrow table without copying it in; flowlearn parses no SQL itself.

Example:
    >>> from flowlearn.feature.sql import SQLTransformer
    >>> sql = SQLTransformer(statement="SELECT id, v1 + v2 AS v3 FROM __THIS__ WHERE v1 > 0")
    >>> sql.transform({"id": [0, 1, 2], "v1": [1.0, -2.0, 3.0], "v2": [3.0, 5.0, 1.0]}).to_pylist()
    [{'id': 0, 'v3': 4.0}, {'id': 2, 'v3': 4.0}]
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any

import pyarrow as pa

from flowlearn.api import AlgoOperator, _is_stream
from flowlearn.linalg import SPARSE_VECTOR
from flowlearn.params import REQUIRED, Param, Validator

__all__ = ["SQLTransformer"]

_THIS = "__THIS__"
_STATEMENT_RULE = Validator("mentions_this()", f"a SQL statement that reads the input table as {_THIS}",
                            lambda s: isinstance(s, str) and _THIS in s)
# Plan operators that map each input row to output rows on their own: a statement built only of
# these gives the same rows batch by batch as on the whole input.
_ROW_WISE = {"PROJECTION", "FILTER", "UNNEST"}

_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found')

_local = threading.local()


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a dependency of the 'sql' extra
        raise ImportError("SQLTransformer runs its statement with DuckDB; install it with "
                          "pip install 'flowlearn[sql]' (or pip install duckdb)") from None
    return duckdb


def _connection() -> Any:
    """This thread's in-memory DuckDB connection (a connection is not shared between threads)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = _duckdb().connect(":memory:")
    return con


def _is_sparse_storage(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) and [f.name for f in t] == ["size", "indices", "values"]


def _restore_sparse(t: pa.Table) -> pa.Table:
    """DuckDB returns sparse vector columns as their storage struct: make them sparse vectors again."""
    for i, f in enumerate(t.schema):
        if _is_sparse_storage(f.type):
            col = t.column(i).cast(SPARSE_VECTOR.storage_type)
            t = t.set_column(i, f.name, pa.chunked_array(
                [pa.ExtensionArray.from_storage(SPARSE_VECTOR, c) for c in col.chunks], SPARSE_VECTOR))
    return t


def _plan_operators(node: dict) -> list[str]:
    out = [node.get("name", "")]
    for c in node.get("children", []):
        out += _plan_operators(c)
    return out


class SQLTransformer(AlgoOperator):
    """Runs ``statement`` (one SQL ``SELECT``; ``__THIS__`` names the input table) with DuckDB and
    returns its result, as Flink ML's ``SQLTransformer``; DuckDB's SQL dialect and functions
    apply. For example ``SELECT *, a + b AS c FROM __THIS__``, ``SELECT a, SQRT(b) AS b_sqrt FROM
    __THIS__ WHERE a > 5`` or ``SELECT a, SUM(c) AS c_sum FROM __THIS__ GROUP BY a``.

    On a table any ``SELECT`` over ``__THIS__`` runs. Row order is the input's for statements
    without ``ORDER BY``, grouping or joins. Vector columns keep their types (dense as fixed-size
    lists; sparse vectors come back as sparse vectors).

    On a stream the statement runs batch by batch, which equals running it on the whole stream
    only for row-wise statements: projections, filters and ``UNNEST`` over ``__THIS__``. Any other
    statement (aggregates with or without ``GROUP BY``, ``DISTINCT``, ``ORDER BY``, ``LIMIT``,
    window functions, joins, set operations, sub-queries over ``__THIS__``) is refused with a
    ``ValueError`` when applied to a stream, as its per-batch results would silently differ from
    the whole stream's; aggregate over a stream with ``fl.stream`` windows instead. Flink ML
    instead runs such a statement on its changelog and keeps the final state, which needs the
    whole (bounded) input. The check is DuckDB's own plan of the statement
    (``EXPLAIN``), not a parse by flowlearn.

    Params: ``statement`` (required).

    Example:
        >>> from flowlearn.feature.sql import SQLTransformer
        >>> t = {"k": ["a", "b", "a"], "x": [1.0, 2.0, 4.0]}
        >>> sums = SQLTransformer(statement="SELECT k, SUM(x) AS s FROM __THIS__ GROUP BY k ORDER BY k")
        >>> sums.transform(t).to_pylist()
        [{'k': 'a', 's': 5.0}, {'k': 'b', 's': 2.0}]
    """

    statement = Param(str, default=REQUIRED, validator=_STATEMENT_RULE,
                      doc="The SQL SELECT statement; __THIS__ names the input table.")

    def _check_select(self) -> None:
        stage, statement = type(self).__name__, self.statement
        duckdb = _duckdb()
        try:
            parsed = duckdb.extract_statements(statement)
        except duckdb.Error as e:
            raise ValueError(f"{stage}: parameter 'statement' is not valid SQL: {e}") from None
        if len(parsed) != 1 or parsed[0].type != duckdb.StatementType.SELECT:
            kinds = [str(s.type).rsplit(".", 1)[-1] for s in parsed]
            raise ValueError(f"{stage}: parameter 'statement' must be exactly one SELECT statement over {_THIS}, got "
                             f"{len(parsed)} statement(s) of kind(s) {kinds}")

    def _run(self, t: pa.Table, prefix: str = "") -> Any:
        stage = type(self).__name__
        self._check_select()
        duckdb = _duckdb()
        con = _connection()
        con.register(_THIS, t)
        try:
            return con.sql(prefix + self.statement)
        except duckdb.Error as e:
            missing = _MISSING_COLUMN.search(str(e))
            what = f"input column '{missing.group(1)}' is missing" if missing else "it failed"
            raise ValueError(f"{stage}: statement {self.statement!r} cannot run on an input with columns "
                             f"{t.column_names}: {what} ({str(e).splitlines()[0]})") from None

    def _query(self, t: pa.Table) -> pa.Table:
        con = _connection()
        try:
            rel = self._run(t)
            out = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        finally:
            con.unregister(_THIS)
        return _restore_sparse(out)

    def row_wise_problem(self, input_schema: pa.Schema) -> str | None:
        """Why the statement is not row-wise on inputs of ``input_schema`` (None when it is): the
        operators of DuckDB's plan that need more than one row at a time."""
        con = _connection()
        try:
            plan = self._run(input_schema.empty_table(), "EXPLAIN (FORMAT JSON) ").fetchall()
        finally:
            con.unregister(_THIS)
        ops = [op for root in json.loads(plan[0][1]) for op in _plan_operators(root)]
        is_input = [("ARROW" in op and "SCAN" in op) for op in ops]  # the scan of the registered Arrow table
        scans = sum(is_input)
        other = sorted({op for op, inp in zip(ops, is_input) if op not in _ROW_WISE and not inp})
        if scans == 1 and not other:
            return None
        if other:
            return f"its plan has the operator(s) {other}, which combine rows"
        return f"it reads {_THIS} {scans} times"

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The schema of the result for an input of ``input_schema`` (DuckDB plans the statement on
        an empty table of that schema)."""
        return self._query(input_schema.empty_table()).schema

    def transform(self, *inputs: Any) -> Any:
        if inputs and _is_stream(inputs[0]):
            schema = getattr(inputs[0], "schema", None)
            stage = SQLTransformer(**self.get_params())
            stage._row_wise_only = True
            if schema is not None:
                stage._check_stream(schema)
            return AlgoOperator.transform(stage, *inputs)
        return super().transform(*inputs)

    _row_wise_only = False
    _checked_schema: pa.Schema | None = None

    def _check_stream(self, schema: pa.Schema) -> None:
        if self._checked_schema is not None and self._checked_schema.equals(schema):
            return
        problem = self.row_wise_problem(schema)
        if problem:
            raise ValueError(f"{type(self).__name__}: statement {self.statement!r} cannot run on a stream batch by "
                             f"batch: {problem}, so per-batch results would differ from the whole stream's. Only "
                             f"projections, filters and UNNEST over {_THIS} run on streams; aggregate a stream with "
                             f"windows, or collect a bounded stream to a table first")
        self._checked_schema = schema

    def _transform(self, *tables: pa.Table) -> pa.Table:
        if len(tables) != 1:
            raise TypeError(f"{type(self).__name__}.transform takes exactly one input table, got {len(tables)}")
        (t,) = tables
        if self._row_wise_only:
            self._check_stream(t.schema)
        return self._query(t)
