"""Plans as data: every node of a stream plan is a :class:`PlanNode` holding a *spec*, a frozen
dataclass of the values that define its operator (a source's path, format and schema; a window's
size and time column; the stage a node applies). Building a plan runs nothing and opens nothing.

Engines build operators from specs through a registry: :func:`register_operator` maps a spec
type to a factory of the in-process :class:`~flowlearn.stream.operator.Operator` that the local
engine runs; another engine keeps its own registry of translations. ``describe()`` gives a
spec's plain values (for ``explain()`` and JSON), and :func:`plan_to_json` serializes a whole
plan: tables as Arrow IPC, stages as saved stages, functions by import path (a lambda or a
closure cannot be serialized and is refused by name).

Example:
    >>> import flowlearn.stream as fls
    >>> s = fls.from_table({"x": [1.0, 2.0]}).select("x")
    >>> print(s.explain())                                     # doctest: +NORMALIZE_WHITESPACE
    000 source from_table  TableSourceSpec(rows=2, batch_size=65536)  schema: x: double  state: offset
    001 op     select      SelectSpec(columns=['x'], rename={})       schema: x: double  state: none
    >>> [n.kind for n in s.node.walk()]
    ['source', 'op']
"""
from __future__ import annotations

import base64
import contextvars
import dataclasses
import importlib
import io
import itertools
import json
from typing import Any, Callable, ClassVar, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Spec", "PlanNode", "register_operator", "build_operator", "plan_nodes", "explain", "plan_to_json",
           "plan_from_json", "SideOutputSpec", "current_engine", "set_engine", "set_default_engine"]

_ids = itertools.count()


@dataclasses.dataclass(frozen=True)
class Spec:
    """Base of node specs. Subclasses are frozen dataclasses; ``state`` says what the node keeps
    in checkpoints (``none``, ``offset``, ``window buffers``, ...), for ``explain()``."""

    state: ClassVar[str] = "none"

    def describe(self) -> dict[str, Any]:
        """The spec's values as plain data (tables summarized, stages and functions named)."""
        return {f.name: _describe(getattr(self, f.name)) for f in dataclasses.fields(self) if f.repr}

    def output_schema(self, inputs: Sequence[pa.Schema | None]) -> pa.Schema | None:
        """The node's output schema from its inputs' (``None``: known only when it runs)."""
        return None


@dataclasses.dataclass(frozen=True)
class SideOutputSpec(Spec):
    """The side output ``tag`` of the input node (dead letters, late rows, unscored rows, ...)."""

    tag: str


def _describe(v: Any) -> Any:
    if isinstance(v, pa.Table):
        return f"<table {v.num_rows} rows>"
    if isinstance(v, pa.Schema):
        return ", ".join(f"{f.name} {f.type}" for f in v)
    if callable(v) and not isinstance(v, type) and hasattr(v, "__qualname__"):
        return f"{getattr(v, '__module__', '?')}.{v.__qualname__}"
    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return f"{type(v).__name__}({', '.join(f'{k}={x!r}' for k, x in dataclasses.asdict(v).items())})"
    if isinstance(v, (list, tuple)):
        return [_describe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _describe(x) for k, x in v.items()}
    return type(v).__name__


_OPERATORS: dict[type, Callable[[Any], Any]] = {}


def register_operator(spec_type: type, factory: Callable[[Any], Any]) -> None:
    """Make ``factory(spec)`` the in-process operator of nodes whose spec is a ``spec_type``."""
    _OPERATORS[spec_type] = factory


def build_operator(spec: Spec) -> Any:
    """A fresh in-process operator for ``spec`` (through the registry)."""
    for cls in type(spec).__mro__:
        if cls in _OPERATORS:
            return _OPERATORS[cls](spec)
    raise TypeError(f"no in-process operator is registered for {type(spec).__name__}; "
                    f"call flowlearn.stream.plan.register_operator({type(spec).__name__}, factory)")


class PlanNode:
    """One node of a plan: ``kind`` (``source``, ``op``, ``side``, ``sink``), ``spec``, ``inputs``
    (nodes), ``uid`` (a stable name for its checkpointed state, or ``None``), ``name``, and the
    output ``schema`` (``None`` when known only at run time) and ``bounded`` it is built with."""

    def __init__(self, kind: str, spec: Spec, inputs: Sequence["PlanNode"] = (), name: str = "",
                 uid: str | None = None, schema: pa.Schema | Callable[[], pa.Schema | None] | None = None,
                 bounded: bool | None = None) -> None:
        if not isinstance(spec, Spec):
            raise TypeError(f"a plan node needs a Spec, got {type(spec).__name__}")
        self.kind = kind
        self.spec = spec
        self.inputs = tuple(inputs)
        self.name = name or type(spec).__name__
        self.uid = uid
        self._schema = schema
        self._bounded = bounded
        self.seq = next(_ids)

    @property
    def schema(self) -> pa.Schema | None:
        if callable(self._schema):
            try:
                self._schema = self._schema()
            except Exception:  # noqa: BLE001 - a schema the plan cannot infer is known at run time
                self._schema = None
        return self._schema

    @property
    def bounded(self) -> bool:
        """True when the node's output ends (every source it reads is bounded)."""
        if self._bounded is not None:
            return self._bounded
        return all(i.bounded for i in self.inputs)

    @property
    def tag(self) -> str | None:
        return self.spec.tag if isinstance(self.spec, SideOutputSpec) else None

    def walk(self) -> Iterator["PlanNode"]:
        """This node and everything upstream of it, inputs before the nodes reading them."""
        return iter(plan_nodes([self]))

    def __repr__(self) -> str:
        return f"PlanNode({self.kind}, {self.name})"


def plan_nodes(roots: Sequence[PlanNode]) -> list[PlanNode]:
    """The nodes of the plan ending in ``roots``, in a topological order (inputs first)."""
    order: list[PlanNode] = []
    seen: set[int] = set()
    stack: list[tuple[PlanNode, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:  # iterative DFS: long chains of operators must not hit the recursion limit
        n, expanded = stack.pop()
        if expanded:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        stack.extend((i, False) for i in reversed(n.inputs) if id(i) not in seen)
    return order


def _schema_text(s: pa.Schema | None) -> str:
    return "?" if s is None else ", ".join(f"{f.name}: {f.type}" for f in s)


def explain(roots: Sequence[PlanNode]) -> str:
    """One line per node: number, kind, name (or uid), spec, output schema and what it checkpoints."""
    nodes = plan_nodes(roots)
    num = {id(n): i for i, n in enumerate(nodes)}
    rows = []
    for n in nodes:
        vals = ", ".join(f"{k}={v!r}" for k, v in n.spec.describe().items())
        ins = f" <- {[num[id(i)] for i in n.inputs]}" if len(n.inputs) > 1 or n.kind == "side" else ""
        rows.append([f"{num[id(n)]:03d}", n.kind, (n.uid or n.name) + ins, f"{type(n.spec).__name__}({vals})",
                     f"schema: {_schema_text(n.schema)}", f"state: {n.spec.state}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(" ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]) for r in rows)


# -- the current engine ------------------------------------------------------------------------
# The stream layer runs plans through whatever engine is current, without importing engines:
# ``import flowlearn`` makes the local engine the default (see flowlearn.engines).

_DEFAULT_ENGINE: list[Any] = []
_ENGINE: contextvars.ContextVar[Any] = contextvars.ContextVar("flowlearn_engine", default=None)


class _EngineScope:
    """What :func:`set_engine` returns: a context manager that restores the previous engine."""

    def __init__(self, token: contextvars.Token) -> None:
        self._token = token

    def __enter__(self) -> Any:
        return _ENGINE.get()

    def __exit__(self, *exc: Any) -> None:
        _ENGINE.reset(self._token)


def set_engine(engine: Any) -> _EngineScope:
    """Make ``engine`` the one that ``fl.run``, ``to_table()``, ``sink.result()`` and
    ``Estimator.fit(stream)`` use (in this thread or task). Used as a context manager
    (``with fl.set_engine(e): ...``) it restores the previous engine on exit."""
    if not all(callable(getattr(engine, m, None)) for m in ("run", "collect", "fit")):
        raise TypeError(f"set_engine: an engine has run(*sinks), collect(stream) and fit(estimator, *inputs); "
                        f"got {type(engine).__name__}")
    return _EngineScope(_ENGINE.set(engine))


def set_default_engine(engine: Any) -> None:
    """The engine used where none was set (``import flowlearn`` sets the local engine)."""
    _DEFAULT_ENGINE[:] = [engine]


def current_engine() -> Any:
    engine = _ENGINE.get()
    if engine is not None:
        return engine
    if not _DEFAULT_ENGINE:  # flowlearn's exports are lazy: importing the engines sets the local one
        import flowlearn.engines  # noqa: F401
    return _DEFAULT_ENGINE[0]


# -- serialization ---------------------------------------------------------------------------

def _encode(v: Any, where: str) -> Any:
    from flowlearn.api import Stage

    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    if isinstance(v, (list, tuple)):
        return {"$list" if isinstance(v, list) else "$tuple": [_encode(x, where) for x in v]}
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise TypeError(f"{where}: a dict with non-string keys cannot be serialized")
        return {"$dict": {k: _encode(x, where) for k, x in v.items()}}
    if isinstance(v, pa.Schema):
        return {"$schema": base64.b64encode(v.serialize().to_pybytes()).decode()}
    if isinstance(v, pa.Table):
        buf = io.BytesIO()
        with pa.ipc.new_stream(buf, v.schema) as w:
            w.write_table(v)
        return {"$table": base64.b64encode(buf.getvalue()).decode()}
    if isinstance(v, Stage):
        return {"$stage": _stage_files(v)}
    if isinstance(v, pc.Expression):  # Arrow's own serialization of the expression tree
        return {"$expression": base64.b64encode(v.__reduce__()[1][0].to_pybytes()).decode()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):  # a value object such as a window aggregation
        cls = type(v)
        ref = f"{cls.__module__}:{cls.__qualname__}"
        if _resolve(ref) is not cls:
            raise TypeError(f"{where}: {ref} cannot be imported by name, so it cannot be serialized")
        return {"$data": {"class": ref, "fields": {f.name: _encode(getattr(v, f.name), where)
                                                   for f in dataclasses.fields(v)}}}
    if callable(v) and hasattr(v, "__qualname__") and hasattr(v, "__module__"):
        ref = f"{v.__module__}:{v.__qualname__}"
        if "<" in v.__qualname__ or _resolve(ref) is not v:
            raise TypeError(f"{where}: {ref} cannot be serialized (a lambda, a closure or a nested function); "
                            f"define it at module level so it can be imported by name")
        return {"$ref": ref}
    raise TypeError(f"{where}: a {type(v).__name__} cannot be serialized; use plain values, tables, stages or "
                    f"functions defined at module level")


def _stage_files(stage: Any) -> dict[str, str]:
    import uuid

    import fsspec

    from flowlearn.persist import write_stage_files

    fs = fsspec.filesystem("memory")
    root = f"/flowlearn-plan-{uuid.uuid4().hex}"
    try:
        write_stage_files(stage, fs, root)
        return {p[len(root) + 1:]: base64.b64encode(fs.cat_file(p)).decode() for p in fs.find(root)}
    finally:
        fs.rm(root, recursive=True)


def _load_stage_files(files: dict[str, str]) -> Any:
    import uuid

    import fsspec

    from flowlearn.persist import load_stage_files

    fs = fsspec.filesystem("memory")
    root = f"/flowlearn-plan-{uuid.uuid4().hex}"
    try:
        for rel, data in files.items():
            fs.pipe_file(f"{root}/{rel}", base64.b64decode(data))
        return load_stage_files(fs, root)
    finally:
        fs.rm(root, recursive=True)


def _resolve(ref: str) -> Any:
    module, _, qual = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def _decode(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    (key, x), = v.items()
    if key == "$list":
        return [_decode(i) for i in x]
    if key == "$tuple":
        return tuple(_decode(i) for i in x)
    if key == "$dict":
        return {k: _decode(i) for k, i in x.items()}
    if key == "$schema":
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(x)))
    if key == "$table":
        return pa.ipc.open_stream(base64.b64decode(x)).read_all()
    if key == "$expression":
        return pc.Expression._deserialize(pa.py_buffer(base64.b64decode(x)))
    if key == "$stage":
        return _load_stage_files(x)
    if key == "$data":
        cls = _resolve(x["class"])
        if not dataclasses.is_dataclass(cls) or issubclass(cls, Spec):
            raise ValueError(f"the plan names {x['class']}, which is not a value dataclass")
        return cls(**{k: _decode(i) for k, i in x["fields"].items()})
    if key == "$ref":
        obj = _resolve(x)
        if obj is None:
            raise ValueError(f"the plan refers to {x}, which cannot be imported here")
        return obj
    raise ValueError(f"unknown value encoding {key!r} in a serialized plan")


def plan_to_json(roots: Sequence[PlanNode]) -> str:
    """The plan ending in ``roots`` as JSON (specs by their registered class path)."""
    nodes = plan_nodes(roots)
    num = {id(n): i for i, n in enumerate(nodes)}
    out = []
    for i, n in enumerate(nodes):
        where = f"plan node {i:03d} ({n.name})"
        spec = {f.name: _encode(getattr(n.spec, f.name), where) for f in dataclasses.fields(n.spec)}
        schema = n.schema
        out.append({"kind": n.kind, "name": n.name, "uid": n.uid, "inputs": [num[id(x)] for x in n.inputs],
                    "spec_class": f"{type(n.spec).__module__}:{type(n.spec).__qualname__}", "spec": spec,
                    "schema": None if schema is None else _encode(schema, where), "bounded": n.bounded})
    return json.dumps({"format": "flowlearn.plan", "format_version": 1, "nodes": out,
                       "roots": [num[id(r)] for r in roots]})


def plan_from_json(text: str) -> list[PlanNode]:
    """The root nodes of a plan serialized by :func:`plan_to_json`. Only ``Spec`` subclasses are
    instantiated, so reading a plan runs no other code than the functions it names."""
    doc = json.loads(text)
    if doc.get("format") != "flowlearn.plan":
        raise ValueError(f"not a serialized flowlearn plan (format {doc.get('format')!r})")
    nodes: list[PlanNode] = []
    for i, d in enumerate(doc["nodes"]):
        cls = _resolve(d["spec_class"])
        if not (isinstance(cls, type) and issubclass(cls, Spec)):
            raise ValueError(f"plan node {i:03d}: {d['spec_class']} is not a plan spec class")
        spec = cls(**{k: _decode(v) for k, v in d["spec"].items()})
        nodes.append(PlanNode(d["kind"], spec, [nodes[j] for j in d["inputs"]], name=d["name"], uid=d["uid"],
                              schema=None if d["schema"] is None else _decode(d["schema"]), bounded=d["bounded"]))
    return [nodes[j] for j in doc["roots"]]
