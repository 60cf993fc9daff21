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
        fitted: list[AlgoOperator] = []
        for i, stage in enumerate(self.stages):
            op = stage.fit(*inputs) if isinstance(stage, Estimator) else stage
            fitted.append(op)
            if i < last_est:
                inputs = _as_tuple(op.transform(*inputs))
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
