"""Composite stages: ``Pipeline`` / ``PipelineModel`` (a chain) and ``Graph`` / ``GraphModel``
(a DAG of stages with several inputs and outputs), built with ``GraphBuilder``.

Semantics follow Flink ML 2.x: ``Pipeline.fit`` walks the stages in order, fits each
estimator on the current tables, and transforms the tables through each stage only while an
estimator remains downstream.

Example:
    >>> import flowlearn as fl
    >>> data = {"x": [[1.0], [2.0], [3.0]]}
    >>> pipe = fl.Pipeline([fl.feature.StandardScaler(input_col="x", output_col="y"),
    ...                     fl.feature.MinMaxScaler(input_col="y", output_col="z")])
    >>> model = pipe.fit(data)
    >>> model.transform(data).column("z").to_pylist()
    [[0.0], [0.5], [1.0]]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow as pa

from flowlearn.api import AlgoOperator, Estimator, Model, RowFn, Stage, Transformer, _is_stream

__all__ = ["Pipeline", "PipelineModel", "GraphBuilder", "Graph", "GraphModel", "TableId"]


def _as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


class Pipeline(Estimator):
    """A chain of stages whose ``fit`` returns a :class:`PipelineModel`."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        for i, s in enumerate(stages):
            if not isinstance(s, (Estimator, AlgoOperator)):
                raise TypeError(f"Pipeline: stage {i} is {type(s).__name__}, expected an Estimator or AlgoOperator")
        self.stages = list(stages)

    def _fit(self, *tables: pa.Table) -> "PipelineModel":
        last_est = max((i for i, s in enumerate(self.stages) if isinstance(s, Estimator)), default=-1)
        inputs: tuple = tables
        schemas: tuple | None = tuple(t.schema for t in tables)
        fitted: list[AlgoOperator] = []
        for i, stage in enumerate(self.stages):
            if isinstance(stage, Estimator):
                op = stage.fit(*inputs)
            else:
                # a stage whose params depend on its input's schema (VectorAssembler's input_sizes) is
                # kept bound to the schema it sees here, the declared schema of the stages before it
                bind = getattr(stage, "bind_schema", None)
                op = bind(schemas[0]) if bind is not None and schemas is not None and len(schemas) == 1 else stage
            fitted.append(op)
            if i < last_est:
                inputs = _as_tuple(op.transform(*inputs))
                schemas = tuple(t.schema for t in inputs)
            elif schemas is not None and i + 1 < len(self.stages):
                try:
                    schemas = _as_tuple(op.output_schema(*schemas))
                except (ValueError, TypeError, NotImplementedError):
                    schemas = None  # the stages after it are left unbound
        return PipelineModel(fitted)

    def fit(self, *inputs: Any) -> "PipelineModel":
        return super().fit(*inputs)

    def _sub_stages(self) -> list[Stage]:
        return list(self.stages)

    @classmethod
    def _from_saved(cls, params, model_data, stages, extra):
        return cls(stages)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stages!r})"


class PipelineModel(Model):
    """A chain of fitted stages; ``transform`` runs them in order.

    A ``PipelineModel`` has no model data of its own; its stages carry theirs.
    """

    def __init__(self, stages: Sequence[AlgoOperator]) -> None:
        super().__init__()
        for i, s in enumerate(stages):
            if not isinstance(s, AlgoOperator):
                raise TypeError(f"PipelineModel: stage {i} is {type(s).__name__}, expected an AlgoOperator/Model")
        self.stages = list(stages)

    def _transform(self, *tables: pa.Table) -> Any:
        out: Any = tables
        for stage in self.stages:
            out = stage.transform(*_as_tuple(out))
        return out

    def transform(self, *inputs: Any) -> Any:
        return super().transform(*inputs)

    def output_schema(self, input_schema: Any, *other_schemas: Any) -> Any:
        """The schema after every stage, each stage declaring its output from the schema before it."""
        out: Any = (input_schema, *other_schemas)
        for stage in self.stages:
            out = _as_tuple(stage.output_schema(*out))
        return out[0] if len(out) == 1 else out

    def feature_names(self, input_schema: Any, column: str | None = None) -> list[str]:
        """The names of the features in ``column`` (default: the features column of the last stage)
        after this pipeline transforms inputs of ``input_schema`` (names carried as field metadata by
        VectorAssembler, OneHotEncoder ``city=Oslo``, FeatureHasher and the scalers).

        Example:
            >>> import flowlearn as fl
            >>> t = fl.table({"city": ["Oslo", "Rome", "Oslo"], "age": [30.0, 41.0, 25.0], "label": [1.0, 0.0, 1.0]})
            >>> pm = fl.Pipeline([
            ...     fl.feature.StringIndexer(input_cols=["city"], output_cols=["city_i"]),
            ...     fl.feature.OneHotEncoder(input_cols=["city_i"], output_cols=["city_v"], drop_last=False),
            ...     fl.feature.VectorAssembler(input_cols=["city_v", "age"], output_col="features"),
            ... ]).fit(t)
            >>> pm.feature_names(t.schema, "features")
            ['city=Oslo', 'city=Rome', 'age']
        """
        from flowlearn.data.schema import feature_names, parse_schema

        schema = parse_schema(input_schema) if isinstance(input_schema, str) else input_schema
        if isinstance(schema, pa.Table):
            schema = schema.schema
        if column is None:
            last = self.stages[-1] if self.stages else None
            column = getattr(last, "features_col", None) or getattr(last, "output_col", None)
            if column is None:
                raise ValueError("PipelineModel.feature_names: name the column; the last stage has no "
                                 "features_col or output_col")
        out = self.output_schema(schema) if not self._reads_features(column) else self._schema_before_last(schema)
        if column not in out.names:
            raise ValueError(f"PipelineModel.feature_names: column '{column}' is not in the pipeline's schema "
                             f"{out.names}")
        names = feature_names(out.field(column))
        if names is None:
            raise ValueError(f"PipelineModel.feature_names: the size of column '{column}' "
                             f"({out.field(column).type}) is not declared by the stage that makes it")
        return names

    def _reads_features(self, column: str) -> bool:
        last = self.stages[-1] if self.stages else None
        return last is not None and getattr(last, "features_col", None) == column

    def _schema_before_last(self, schema: pa.Schema) -> pa.Schema:
        return PipelineModel(self.stages[:-1]).output_schema(schema) if len(self.stages) > 1 else schema

    def coefficients(self, input_schema: Any) -> list[tuple[str, float]]:
        """(feature name, coefficient) of the last stage, a linear model (binomial or regression:
        one coefficient per feature; multinomial: ``name[class k]`` pairs, class by class).

        Example:
            >>> import flowlearn as fl
            >>> t = fl.table({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0], "label": [1.0, 3.0, 5.0, 7.0]})
            >>> pm = fl.Pipeline([fl.feature.VectorAssembler(input_cols=["a", "b"], output_col="features"),
            ...                   fl.regression.LinearRegression(max_iter=100, learning_rate=0.1)]).fit(t)
            >>> [(n, round(c, 1)) for n, c in pm.coefficients(t.schema)]
            [('a', 2.0), ('b', 0.0)]
        """
        import numpy as np

        last = self.stages[-1] if self.stages else None
        coef = getattr(last, "coefficients", None)
        if coef is None and isinstance(last, Model):
            md = last.get_model_data()[0]
            if "coefficient" not in md.column_names:
                raise ValueError(f"PipelineModel.coefficients: the last stage, {type(last).__name__}, is not a "
                                 f"linear model (its model data has no 'coefficient')")
            from flowlearn.linalg import to_numpy

            coef = to_numpy(md.column("coefficient"))
            coef = coef[0] if coef.shape[0] == 1 else coef
        if coef is None:
            raise ValueError(f"PipelineModel.coefficients: the last stage, {type(last).__name__}, has no coefficients")
        coef = np.asarray(coef, dtype=float)
        names = self.feature_names(input_schema, getattr(last, "features_col", None))
        if coef.shape[-1] != len(names):
            raise ValueError(f"PipelineModel.coefficients: {coef.shape[-1]} coefficients but {len(names)} feature "
                             f"names")
        if coef.ndim == 1:
            return list(zip(names, coef.tolist()))
        return [(f"{n}[class {k}]", float(c)) for k, row in enumerate(coef) for n, c in zip(names, row)]

    def row_fns(self) -> list[RowFn] | None:
        """Row kernels of every stage, or None if a stage has none."""
        fns = []
        for s in self.stages:
            fn = s.row_fn() if isinstance(s, Transformer) else None
            if fn is None:
                return None
            fns.append(fn)
        return fns

    def row_fn(self) -> RowFn | None:
        fns = self.row_fns()
        if fns is None:
            return None

        def run(row: dict) -> None:
            for fn in fns:
                fn(row)

        return run

    def set_model_data(self, *tables: Any) -> "PipelineModel":
        """Only a model stream of whole pipeline versions: the pipeline follows its newest version on
        streams (each version replaces every stage at once). Model data tables go to the stages."""
        if len(tables) == 1 and _is_stream(tables[0]):
            tables[0]._follow_model_stream(self)
            return self
        raise TypeError("PipelineModel has no model data of its own; set it on its stages, or give a model stream "
                        "of whole pipeline versions")

    def get_model_data(self) -> list[pa.Table]:
        raise TypeError("PipelineModel has no model data of its own; read it from its stages")

    def _sub_stages(self) -> list[Stage]:
        return list(self.stages)

    @classmethod
    def _from_saved(cls, params, model_data, stages, extra):
        return cls(stages)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stages!r})"


@dataclass(frozen=True)
class TableId:
    """A placeholder for a table flowing through a graph."""

    id: int


@dataclass
class _Node:
    stage: Stage
    estimator_inputs: list[TableId]
    model_inputs: list[TableId]
    outputs: list[TableId] = field(default_factory=list)


class GraphBuilder:
    """Builds a :class:`Graph` (estimator), :class:`GraphModel` or generic graph operator.

    Example:
        >>> import flowlearn as fl
        >>> b = fl.GraphBuilder()
        >>> src = b.create_table_id()
        >>> scaled = b.add_estimator(fl.feature.StandardScaler(input_col="x", output_col="y"), src)
        >>> both = b.add_estimator(fl.feature.MinMaxScaler(input_col="y", output_col="z"), scaled)
        >>> graph = b.build_estimator([src], [both])
        >>> graph.fit({"x": [[0.0], [2.0]]}).transform({"x": [[1.0]]}).column("z").to_pylist()
        [[0.5]]
    """

    def __init__(self) -> None:
        self._next = 0
        self._nodes: list[_Node] = []

    def create_table_id(self) -> TableId:
        t = TableId(self._next)
        self._next += 1
        return t

    def _add(self, stage: Stage, est_inputs: Sequence[TableId], model_inputs: Sequence[TableId],
             num_outputs: int) -> Any:
        for t in list(est_inputs) + list(model_inputs):
            if not isinstance(t, TableId):
                raise TypeError(f"GraphBuilder: inputs must be TableIds from create_table_id() or add_*, got {t!r}")
        outs = [self.create_table_id() for _ in range(num_outputs)]
        self._nodes.append(_Node(stage, list(est_inputs), list(model_inputs), outs))
        return outs[0] if num_outputs == 1 else tuple(outs)

    def add_algo_operator(self, op: AlgoOperator, *inputs: TableId, num_outputs: int = 1) -> Any:
        """Add an operator; returns its output TableId (a tuple when ``num_outputs`` > 1)."""
        return self._add(op, inputs, inputs, num_outputs)

    def add_estimator(self, estimator: Estimator, *inputs: TableId, model_inputs: Sequence[TableId] | None = None,
                      num_outputs: int = 1) -> Any:
        """Add an estimator fitted on ``inputs``; its model transforms ``model_inputs`` (default: ``inputs``)."""
        return self._add(estimator, inputs, inputs if model_inputs is None else model_inputs, num_outputs)

    def _graph_args(self, inputs: Sequence[TableId], outputs: Sequence[TableId]) -> dict:
        return {"nodes": list(self._nodes), "inputs": list(inputs), "outputs": list(outputs)}

    def build_estimator(self, inputs: Sequence[TableId], outputs: Sequence[TableId]) -> "Graph":
        return Graph(**self._graph_args(inputs, outputs))

    def build_model(self, inputs: Sequence[TableId], outputs: Sequence[TableId]) -> "GraphModel":
        for n in self._nodes:
            if isinstance(n.stage, Estimator):
                raise TypeError(f"GraphBuilder.build_model: node {type(n.stage).__name__} is an Estimator; "
                                f"use build_estimator and fit it")
        return GraphModel(**self._graph_args(inputs, outputs))

    def build_algo_operator(self, inputs: Sequence[TableId], outputs: Sequence[TableId]) -> "GraphModel":
        return self.build_model(inputs, outputs)


class _GraphBase:
    def _init_graph(self, nodes: list[_Node], inputs: list[TableId], outputs: list[TableId]) -> None:
        self.nodes, self.inputs, self.outputs = nodes, inputs, outputs
        produced = {t for t in inputs}
        for n in nodes:
            for t in n.estimator_inputs + n.model_inputs:
                if t not in produced:
                    raise ValueError(f"{type(self).__name__}: table {t.id} used by {type(n.stage).__name__} is "
                                     f"neither a graph input nor produced by an earlier node")
            produced.update(n.outputs)
        for t in outputs:
            if t not in produced:
                raise ValueError(f"{type(self).__name__}: output table {t.id} is never produced")

    def _bind(self, tables: Sequence[pa.Table]) -> dict[TableId, pa.Table]:
        if len(tables) != len(self.inputs):
            raise ValueError(f"{type(self).__name__} takes {len(self.inputs)} input tables, got {len(tables)}")
        return dict(zip(self.inputs, tables))

    def _extra_metadata(self) -> dict:
        return {
            "inputs": [t.id for t in self.inputs],
            "outputs": [t.id for t in self.outputs],
            "nodes": [{"estimator_inputs": [t.id for t in n.estimator_inputs],
                       "model_inputs": [t.id for t in n.model_inputs],
                       "outputs": [t.id for t in n.outputs]} for n in self.nodes],
        }

    def _sub_stages(self) -> list[Stage]:
        return [n.stage for n in self.nodes]

    @classmethod
    def _from_saved(cls, params, model_data, stages, extra):
        ids = lambda xs: [TableId(i) for i in xs]  # noqa: E731
        if len(stages) != len(extra["nodes"]):
            raise ValueError(f"{cls.__name__}: the saved graph wires {len(extra['nodes'])} nodes but holds "
                             f"{len(stages)} stages; the saved graph is incomplete, save it again")
        nodes = [_Node(s, ids(n["estimator_inputs"]), ids(n["model_inputs"]), ids(n["outputs"]))
                 for s, n in zip(stages, extra["nodes"])]
        return cls(nodes=nodes, inputs=ids(extra["inputs"]), outputs=ids(extra["outputs"]))


class Graph(_GraphBase, Estimator):
    """A DAG of estimators and operators; ``fit`` returns a :class:`GraphModel`."""

    def __init__(self, nodes: list[_Node], inputs: list[TableId], outputs: list[TableId]) -> None:
        Estimator.__init__(self)
        self._init_graph(nodes, inputs, outputs)

    def _fit(self, *tables: pa.Table) -> "GraphModel":
        env = self._bind(tables)
        needed = self._needed_tables()
        fitted = []
        for idx, n in enumerate(self.nodes):
            if isinstance(n.stage, Estimator):
                op = n.stage.fit(*[env[t] for t in n.estimator_inputs])
            else:
                op = n.stage
            fitted.append(_Node(op, n.estimator_inputs, n.model_inputs, n.outputs))
            if any(t in needed[idx] for t in n.outputs):
                env.update(zip(n.outputs, _as_tuple(op.transform(*[env[t] for t in n.model_inputs]))))
        return GraphModel(nodes=fitted, inputs=self.inputs, outputs=self.outputs)

    def _needed_tables(self) -> list[set[TableId]]:
        """For each node, the tables that a later estimator fits on (so must be computed now)."""
        needed: list[set[TableId]] = []
        later: set[TableId] = set()
        for n in reversed(self.nodes):
            needed.append(set(later))
            if isinstance(n.stage, Estimator):
                later.update(n.estimator_inputs)
            # an operator feeding a later estimator needs its inputs computed too
            if later & set(n.outputs):
                later.update(n.model_inputs)
        return list(reversed(needed))


class GraphModel(_GraphBase, Model):
    """A DAG of fitted stages; ``transform`` returns the graph's output tables."""

    def __init__(self, nodes: list[_Node], inputs: list[TableId], outputs: list[TableId]) -> None:
        Model.__init__(self)
        self._init_graph(nodes, inputs, outputs)

    def _transform(self, *tables: pa.Table) -> Any:
        env = self._bind(tables)
        for n in self.nodes:
            env.update(zip(n.outputs, _as_tuple(n.stage.transform(*[env[t] for t in n.model_inputs]))))
        outs = tuple(env[t] for t in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    def set_model_data(self, *tables: Any) -> "GraphModel":
        raise TypeError("GraphModel has no model data of its own; set it on its stages")

    def get_model_data(self) -> list[pa.Table]:
        raise TypeError("GraphModel has no model data of its own; read it from its stages")
