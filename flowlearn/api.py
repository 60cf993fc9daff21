"""The stage API: ``Stage``, ``AlgoOperator``, ``Transformer``, ``Model``, ``Estimator``.

A stage is configured by :class:`~flowlearn.params.Param` s, saved with ``save(path)`` and
loaded with ``fl.load(path)``. Tables are ``pyarrow.Table``; anything ``fl.table`` accepts
is converted on the way in. A ``Stream`` input is handed to the stream layer (the one
upward hand-off in the layering): the stage then returns a ``Stream``.

Example:
    >>> import flowlearn as fl
    >>> scaler = fl.feature.StandardScaler(input_col="x", output_col="y")
    >>> model = scaler.fit({"x": [[1.0], [3.0]]})
    >>> model.transform({"x": [[2.0]]}).column("y").to_pylist()
    [[1.414213562373095]]
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa

from flowlearn.data.table import table as to_table
from flowlearn.params import HasParams

__all__ = ["Stage", "AlgoOperator", "Transformer", "Model", "Estimator", "OnePassEstimator", "IterativeEstimator",
           "register_stage", "registered_stage", "RowFn", "SkipRow", "SchemaError", "with_trained_rows",
           "trained_rows"]

# A row kernel: reads input columns from a row dict and writes its output columns into it.
RowFn = Callable[[dict], None]

_REGISTRY: dict[str, type] = {}


class SkipRow(Exception):
    """Raised by a row kernel when ``handle_invalid="skip"`` drops the row."""


class SchemaError(ValueError, TypeError):
    """An input schema a stage cannot take (a missing column, a column of the wrong type), found
    before any row is read. It is a ``ValueError`` and, as the kernels' own type errors are, a
    ``TypeError``."""


# Params naming the columns a Transformer reads (checked against the input schema before running).
_INPUT_COL_PARAMS = ("input_col", "input_cols", "features_col")


def _as_schema(x: Any, stage: str) -> pa.Schema:
    if isinstance(x, pa.Schema):
        return x
    if isinstance(x, str):
        from flowlearn.data.schema import parse_schema

        return parse_schema(x)
    if isinstance(x, (pa.Table, pa.RecordBatch)):
        return x.schema
    raise TypeError(f"{stage}.output_schema expects a pyarrow Schema (or a schema string), got {type(x).__name__}")


def _public_name(cls: type) -> str:
    parts = cls.__module__.split(".")
    # flowlearn.feature.scalers.StandardScalerModel -> flowlearn.feature.StandardScalerModel
    return ".".join(parts[:2] + [cls.__qualname__]) if parts[0] == "flowlearn" else f"{cls.__module__}.{cls.__qualname__}"


def register_stage(cls: type, name: str | None = None) -> type:
    """Allow ``fl.load`` to instantiate ``cls`` (flowlearn's own stages register themselves).

    Usable as a decorator on user-defined stages.
    """
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise TypeError(f"register_stage expects a Stage subclass, got {cls!r}")
    _REGISTRY[name or _public_name(cls)] = cls
    cls._registered_name = name or _public_name(cls)
    return cls


def registered_stage(name: str) -> type:
    """The stage class registered under ``name``; a name never registered is refused. A
    flowlearn stage whose module is not imported yet (the packages export lazily) is imported
    through its package's exports, which registers it."""
    if name not in _REGISTRY and name.startswith("flowlearn."):
        package, _, attr = name.rpartition(".")
        try:
            getattr(importlib.import_module(package), attr)
        except (ImportError, AttributeError):
            pass
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"'{name}' is not a registered flowlearn stage class, so it will not be loaded; "
            f"user-defined stages must be registered with fl.register_stage before loading"
        ) from None


def _is_stream(x: Any) -> bool:
    return getattr(x, "_flowlearn_stream", False)


class Stage(HasParams):
    """Base of every stage: parameters plus ``save``/``load``."""

    _registered_name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("flowlearn.") and not cls.__name__.startswith("_"):
            register_stage(cls)

    def save(self, path: str, overwrite: bool = False) -> None:
        """Save params, model data and sub-stages under ``path`` (atomically)."""
        from flowlearn.persist import save_stage

        save_stage(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str) -> "Stage":
        from flowlearn.persist import load_stage

        stage = load_stage(path)
        if not isinstance(stage, cls):
            raise TypeError(f"{path} holds a {type(stage).__name__}, not a {cls.__name__}")
        return stage

    # Persistence hooks (override in composite stages).
    def _sub_stages(self) -> list["Stage"]:
        return []

    def walk(self) -> Iterator["Stage"]:
        """This stage, then its sub-stages (of pipelines, graphs, followed versions), depth first."""
        yield self
        for s in self._sub_stages():
            if isinstance(s, Stage):
                yield from s.walk()

    def _extra_metadata(self) -> dict:
        return {}

    @classmethod
    def _from_saved(cls, params: dict, model_data: list[pa.Table], stages: list["Stage"], extra: dict) -> "Stage":
        stage = cls(**params)
        if model_data:
            stage.set_model_data(*model_data)
        return stage

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._param_values.items())
        return f"{type(self).__name__}({shown})"


class AlgoOperator(Stage):
    """A stage that computes output tables from input tables: ``transform(*inputs)``."""

    def transform(self, *inputs: Any) -> Any:
        """Return a table (a tuple when the stage has several outputs); a Stream for a Stream input."""
        if not inputs:
            raise TypeError(f"{type(self).__name__}.transform needs at least one input table")
        if any(_is_stream(x) for x in inputs):
            return inputs[0]._apply_stage(self, *inputs[1:])
        return self._transform(*[x if isinstance(x, pa.Table) else to_table(x) for x in inputs])

    def _transform(self, *tables: pa.Table) -> Any:
        raise NotImplementedError

    def input_columns(self) -> list[str]:
        """The columns of the first input this stage reads (from its column params)."""
        cols: list[str] = []
        values = self.get_params()
        for p in _INPUT_COL_PARAMS:
            v = values.get(p)
            if v is not None and p in self.params():
                cols += v if isinstance(v, list) else [v]
        return cols

    def _check_input_schema(self, schema: pa.Schema) -> None:
        stage = type(self).__name__
        values = self.get_params()
        for p in _INPUT_COL_PARAMS:
            v = values.get(p) if p in self.params() else None
            for c in (v if isinstance(v, list) else [v] if v is not None else []):
                if c not in schema.names:
                    raise SchemaError(f"{stage}: input column '{c}' (parameter '{p}') is missing; the input has "
                                      f"columns {schema.names}. Set {p} to one of them or add the column.")

    def output_schema(self, input_schema: Any, *other_schemas: Any) -> Any:
        """The schema ``transform`` returns for inputs of these schemas (a tuple for several
        outputs), declared without reading any row: vector sizes as the ``fixed_size_list`` size or
        as field metadata ``{b"flowlearn.size": b"<n>"}``, feature names as ``flowlearn.features``
        (see :mod:`flowlearn.data.schema`). A missing input column, or one of the wrong type, raises
        :class:`SchemaError` (a ``ValueError``) naming the stage and the column.

        The default runs the stage's table kernels on zero-row tables of these schemas, so it is
        exactly what ``transform`` returns (the kernels write the metadata on their outputs).

        Example:
            >>> import flowlearn as fl
            >>> va = fl.feature.VectorAssembler(input_cols=["a", "v"], output_col="f")
            >>> va.output_schema(fl.parse_schema("a double, v vector(3)")).field("f").type
            FixedSizeListType(fixed_size_list<item: double>[4])
        """
        stage = type(self).__name__
        schemas = [_as_schema(s, stage) for s in (input_schema, *other_schemas)]
        self._check_input_schema(schemas[0])
        try:
            out = self._transform(*[s.empty_table() for s in schemas])
        except SchemaError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, pa.ArrowException) as e:
            msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            raise SchemaError(msg if msg.startswith(stage) else f"{stage}: {msg}") from e
        return tuple(o.schema for o in out) if isinstance(out, tuple) else out.schema


class Transformer(AlgoOperator):
    """An ``AlgoOperator`` producing one output row per input row.

    Transformers used in a ``LocalPredictor`` may offer :meth:`row_fn`, a kernel over one row
    dict, so single-row prediction builds no Arrow table.
    """

    def row_fn(self) -> RowFn | None:
        """A function that reads this stage's inputs from a row dict and writes its outputs into it;
        ``None`` if the stage has no row kernel (the predictor then goes through a one-row table)."""
        return None


class Model(Transformer):
    """A ``Transformer`` whose state is model data: a list of Arrow tables."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._model_data: list[pa.Table] | None = None

    def set_model_data(self, *tables: Any) -> "Model":
        """Set the model data. A model stream makes the model follow its newest version."""
        if len(tables) == 1 and _is_stream(tables[0]):
            tables[0]._follow_model_stream(self)
            return self
        converted = [t if isinstance(t, pa.Table) else to_table(t) for t in tables]
        self._load_model_data(converted)
        self._model_data = converted
        return self

    def get_model_data(self) -> list[pa.Table]:
        if self._model_data is None:
            raise ValueError(f"{type(self).__name__}: model data has not been set; fit an estimator or call "
                             f"set_model_data(...) first")
        return list(self._model_data)

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        """Parse model data tables into the arrays the kernels use (override)."""

    def _require_model(self) -> None:
        if self._model_data is None:
            raise ValueError(f"{type(self).__name__}: model data has not been set; fit an estimator or call "
                             f"set_model_data(...) first")


class Estimator(Stage):
    """A stage that fits a :class:`Model` to input tables: ``fit(*inputs)``.

    A bounded ``Stream`` is trained on in full; an unbounded one raises an error naming
    ``online_counterpart`` when the estimator has one.
    """

    online_counterpart: str | None = None

    def fit(self, *inputs: Any) -> Model:
        if not inputs:
            raise TypeError(f"{type(self).__name__}.fit needs at least one input table")
        if any(_is_stream(x) for x in inputs):
            return inputs[0]._fit_stage(self, *inputs[1:])
        return self._fit(*[x if isinstance(x, pa.Table) else to_table(x) for x in inputs])

    def _fit(self, *tables: pa.Table) -> Model:
        raise NotImplementedError


def _as_table(x: Any) -> pa.Table:
    return x if isinstance(x, pa.Table) else to_table(x)


def _state_list(stage: str, what: str, states: Sequence[pa.Table]) -> list[pa.Table]:
    states = list(states)
    if not states:
        raise ValueError(f"{stage}.{what} needs at least one state")
    for i, s in enumerate(states):
        if not isinstance(s, pa.Table):
            raise TypeError(f"{stage}.{what}: state {i} is a {type(s).__name__}; states are pyarrow Tables "
                            f"(as partial returns them)")
    return states


class OnePassEstimator(Estimator):
    """An estimator fitted in one pass, as partial states merged into one:

    * ``partial(table) -> state``: the summary of one part of the input (a table, a record batch or
      anything ``fl.table`` accepts). The part is validated as ``fit`` validates its input; a part
      without rows gives a state without rows, the neutral element of ``merge``;
    * ``merge(states) -> state``: the summary of the parts together, given one state or more in
      input order (order matters only where the model does: ``StringIndexer``'s order of first
      appearance);
    * ``finish(state) -> Model``: the model; a state without rows (an empty input) is refused.

    A state is one ``pyarrow.Table`` of plain Arrow types, so it travels between processes as
    Arrow IPC bytes. ``fit(table)`` is ``finish(merge([partial(table)]))``, and fitting on a table
    equals merging the partials of any split of it (sums up to floating-point rounding). This is
    the protocol an engine uses to run the partials of a fit in parallel. Subclasses implement
    ``_partial``, ``_merge`` and ``_finish``.

    Example:
        >>> import flowlearn as fl
        >>> est = fl.feature.MaxAbsScaler(input_col="x")
        >>> parts = [est.partial({"x": [[1.0, -4.0]]}), est.partial({"x": [[-3.0, 2.0]]})]
        >>> est.finish(est.merge(parts)).get_model_data()[0].column("max_vector").to_pylist()
        [[3.0, 4.0]]
    """

    def partial(self, table: Any) -> pa.Table:
        """The state of one part of the input."""
        return self._partial(_as_table(table))

    def merge(self, states: Sequence[pa.Table]) -> pa.Table:
        """One state for the parts of ``states`` (at least one, in input order)."""
        states = _state_list(type(self).__name__, "merge", states)
        return states[0] if len(states) == 1 else self._merge(states)

    def finish(self, state: pa.Table) -> Model:
        """The model of a (merged) state."""
        (state,) = _state_list(type(self).__name__, "finish", [state])
        if state.num_rows == 0:
            raise ValueError(f"{type(self).__name__}: fit needs at least one row; the input table is empty")
        return self._finish(state)

    def _fit(self, *tables: pa.Table) -> Model:
        if len(tables) != 1:
            raise TypeError(f"{type(self).__name__}.fit takes exactly one input table, got {len(tables)}")
        return self.finish(self.merge([self.partial(tables[0])]))

    def _partial(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        raise NotImplementedError

    def _finish(self, state: pa.Table) -> Model:
        raise NotImplementedError


class IterativeEstimator(Estimator):
    """An estimator fitted in rounds. The driver (an engine's coordinator) holds the variables,
    an Arrow table (centroids, coefficients); in each round

    * ``round_partial(variables, batch) -> state`` runs over every batch of the input (an engine
      runs them in parallel, next to the data),
    * ``round_merge(states) -> state`` combines the states (one or more),
    * and the driver updates the variables from the merged state; each estimator documents its
      update (``KMeans.round_update``; the linear models' ``round_update`` for SGD steps and
      ``round_objective`` for the value and gradient an L-BFGS driver asks for).

    States are ``pyarrow`` Tables of plain types (Arrow IPC without pickle). Merging the partials
    of any split of the input gives the round's state over the whole input (sums up to
    floating-point rounding). ``fit`` runs the same kernels in process. Subclasses implement
    ``_round_partial`` and ``_round_merge``.
    """

    drives_rounds: bool = False   # fit_rounds drives the rounds (see below); declared by estimators that can

    def fit_rounds(self, map_batches: Callable[[Callable[[pa.Table], pa.Table]], list[pa.Table]]) -> Model:
        """Fit with the rounds' partials run by an engine: ``map_batches(fn)`` applies ``fn(batch) ->
        table`` to every batch of the input (in parallel, next to the data) and returns the results
        in any order; the driver (here) merges them and updates the variables until it converges.
        An engine labels each batch with its place in the input (schema metadata
        ``flowlearn.batch`` = ``"<slice or file>.<batch>"``), so drivers that need the row order
        (KMeans's initial rows, SGD's permutation) can restore it."""
        raise NotImplementedError(f"{type(self).__name__} does not drive its rounds for an engine")

    def round_partial(self, variables: pa.Table, batch: Any) -> pa.Table:
        """The state of one round over one batch of the input, at ``variables``."""
        return self._round_partial(_as_table(variables), _as_table(batch))

    def round_merge(self, states: Sequence[pa.Table]) -> pa.Table:
        """One round state for the batches of ``states`` (at least one)."""
        states = _state_list(type(self).__name__, "round_merge", states)
        return states[0] if len(states) == 1 else self._round_merge(states)

    def _round_partial(self, variables: pa.Table, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def _round_merge(self, states: list[pa.Table]) -> pa.Table:
        raise NotImplementedError


_TRAINED_ROWS = b"flowlearn.trained_rows"


def with_trained_rows(t: pa.Table, rows: int) -> pa.Table:
    """Model data ``t`` labelled (in its schema metadata) with the number of rows its weights
    hold. Online trainers label their ``model_data()`` so; a model version's ``trained_rows``
    metadata is read from it, so it does not depend on how the input was cut into batches.

    Example:
        >>> trained_rows(with_trained_rows(pa.table({"w": [0.5]}), 300))
        300
    """
    return t.replace_schema_metadata({**(t.schema.metadata or {}), _TRAINED_ROWS: str(int(rows)).encode()})


def trained_rows(version: Any) -> int | None:
    """The rows a trainer's version holds (a model data table labelled by :func:`with_trained_rows`,
    a list of them, a model or a ``PipelineModel`` whose last stage holds one); ``None`` if unlabelled."""
    stages = getattr(version, "stages", None)
    if stages:
        version = stages[-1]
    if isinstance(version, Model):
        version = version._model_data
    if isinstance(version, (list, tuple)) and version:
        version = version[0]
    meta = version.schema.metadata if isinstance(version, pa.Table) else None
    return int(meta[_TRAINED_ROWS]) if meta and _TRAINED_ROWS in meta else None
