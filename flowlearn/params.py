"""Parameters: typed, validated, JSON-serializable, declared as class attributes.

Example:
    >>> class Scaler(HasParams):
    ...     input_col = Param(str, default="input", doc="Column of vectors to scale.")
    ...     k = Param(int, default=2, validator=gt(0), doc="Number of things.")
    >>> s = Scaler(k=3)
    >>> s.k, s.get_params()["input_col"]
    (3, 'input')
    >>> Scaler(k=0)
    Traceback (most recent call last):
    ...
    ValueError: Scaler: parameter 'k' = 0 violates gt(0): it must be greater than 0 (and finite).

Every class's docstring gets a generated ``Parameters:`` section (so ``help(Scaler)`` lists
them), each parameter has a readable ``repr``, and ``explain_params()`` describes them with
their current values, as Spark's ``explainParams``:

    >>> Scaler.k
    Param('k', int, default=2, rule=gt(0), doc='Number of things.')
    >>> print(Scaler(k=3).explain_params())
    input_col: Column of vectors to scale. (type: str, default: 'input')
    k: Number of things. (type: int, default: 2, rule: gt(0), current: 3)
"""
from __future__ import annotations

import math
import textwrap
import typing
from typing import Any, Callable, Sequence

__all__ = [
    "Param",
    "HasParams",
    "Validator",
    "gt",
    "gt_eq",
    "lt",
    "lt_eq",
    "in_range",
    "in_array",
    "non_empty",
    "REQUIRED",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class Validator:
    """A named rule on a parameter value; ``str(v)`` is the rule as it appears in errors."""

    def __init__(self, rule: str, explain: str, check: Callable[[Any], bool]) -> None:
        self.rule, self.explain, self._check = rule, explain, check

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self._check(value))
        except TypeError:
            return False

    def __str__(self) -> str:
        return self.rule


# A lower bound admits no infinity: an infinite rate, tolerance, strength or window is never meant
# (an infinite regularization gave NaN models, an infinite FTRL alpha a ZeroDivisionError).
def gt(bound: float) -> Validator:
    return Validator(f"gt({bound})", f"greater than {bound} (and finite)", lambda v: bound < v < math.inf)


def gt_eq(bound: float) -> Validator:
    return Validator(f"gt_eq({bound})", f"greater than or equal to {bound} (and finite)",
                     lambda v: bound <= v < math.inf)


def lt(bound: float) -> Validator:
    return Validator(f"lt({bound})", f"less than {bound}", lambda v: v < bound)


def lt_eq(bound: float) -> Validator:
    return Validator(f"lt_eq({bound})", f"less than or equal to {bound}", lambda v: v <= bound)


def in_range(lo: float, hi: float, lo_inclusive: bool = True, hi_inclusive: bool = True) -> Validator:
    lb, rb = ("[" if lo_inclusive else "("), ("]" if hi_inclusive else ")")

    def check(v: Any) -> bool:
        return (v >= lo if lo_inclusive else v > lo) and (v <= hi if hi_inclusive else v < hi)

    return Validator(f"in_range({lo}, {hi})", f"in {lb}{lo}, {hi}{rb}", check)


def in_array(allowed: Sequence[Any]) -> Validator:
    allowed = list(allowed)
    return Validator(f"in_array({allowed})", f"one of {allowed}", lambda v: v in allowed)


def non_empty() -> Validator:
    return Validator("non_empty()", "non-empty", lambda v: v is not None and len(v) > 0)


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) if typing.get_origin(t) is None else str(t).replace("typing.", "")


def _coerce(value: Any, t: Any) -> Any:
    """Convert ``value`` to type ``t`` where the conversion loses nothing; raise TypeError otherwise."""
    origin = typing.get_origin(t)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError
        (elem,) = typing.get_args(t) or (Any,)
        return [_coerce(v, elem) for v in value]
    if origin is dict or t is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if t is Any:
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise TypeError
        return float(value)
    if t is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if hasattr(value, "__index__"):
            return int(value.__index__())
        raise TypeError
    if t is bool:
        if hasattr(value, "dtype") and value.dtype == bool:
            return bool(value)
        if not isinstance(value, bool):
            raise TypeError
        return value
    if t is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if not isinstance(value, t):
        raise TypeError
    return value


class Param:
    """A declared parameter of a stage: type, default, documentation and validation rule.

    ``Param(str, default=None)`` allows ``None``; a parameter without a default is required.
    """

    def __init__(self, type: Any, default: Any = REQUIRED, doc: str = "", validator: Validator | None = None,
                 optional: bool | None = None) -> None:
        self.type = type
        self.default = default
        self.doc = doc
        self.validator = validator
        self.optional = default is None if optional is None else optional
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def _default_text(self) -> str:
        return "required" if self.default is REQUIRED else repr(self.default)

    def __repr__(self) -> str:
        rule = "" if self.validator is None else f", rule={self.validator}"
        default = ", required" if self.default is REQUIRED else f", default={self.default!r}"
        return f"Param({self.name!r}, {_type_name(self.type)}{default}{rule}, doc={self.doc!r})"

    def describe(self) -> str:
        """One line for docstrings: ``name (type, default ..., rule ...): doc``."""
        parts = [_type_name(self.type), "required" if self.default is REQUIRED else f"default {self.default!r}"]
        if self.validator is not None:
            parts.append(f"rule {self.validator}")
        return f"{self.name} ({', '.join(parts)}): {self.doc}".rstrip(": ")

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        values = instance.__dict__.get("_param_values")
        if values is not None and self.name in values:
            return values[self.name]
        if self.default is REQUIRED:
            raise ValueError(
                f"{type(instance).__name__}: parameter '{self.name}' is required and has not been set; "
                f"set it with {type(instance).__name__}({self.name}=...) or .set({self.name}=...)"
            )
        return list(self.default) if isinstance(self.default, list) else self.default

    def __set__(self, instance: Any, value: Any) -> None:
        instance.set(**{self.name: value})

    def validate(self, owner_name: str, value: Any) -> Any:
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{owner_name}: parameter '{self.name}' must not be None ({self.doc})")
        try:
            value = _coerce(value, self.type)
        except (TypeError, ValueError):
            raise ValueError(
                f"{owner_name}: parameter '{self.name}' = {value!r} has type {type(value).__name__}, "
                f"expected {_type_name(self.type)}"
            ) from None
        if self.validator is not None:
            ok = all(self.validator(v) for v in value) if typing.get_origin(self.type) is list and \
                self.validator.rule != "non_empty()" else self.validator(value)
            if not ok:
                raise ValueError(
                    f"{owner_name}: parameter '{self.name}' = {value!r} violates {self.validator}: "
                    f"it must be {self.validator.explain}."
                )
        if int in (self.type, *typing.get_args(self.type)) and \
                not all(-(1 << 63) <= v < (1 << 63) for v in (value if isinstance(value, list) else [value])):
            raise ValueError(f"{owner_name}: parameter '{self.name}' = {value!r} is outside the 64-bit integer range "
                             f"[-2**63, 2**63 - 1] that kernels and Arrow hold")
        return value


def _params_section(cls: type) -> str:
    """The generated ``Parameters:`` section of ``cls``'s docstring (indented like the docstring)."""
    doc = cls.__dict__.get("__doc__") or ""
    lines = doc.expandtabs().splitlines()[1:]
    indents = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
    pad = " " * (min(indents) if indents else 4)
    out = [f"{pad}Parameters (generated from the declared Params):"]
    for _, p in sorted(cls.params().items()):
        wrapped = textwrap.wrap(p.describe(), width=100, initial_indent=pad + "    ",
                                subsequent_indent=pad + "        ", break_on_hyphens=False)
        out.extend(wrapped)
    return "\n".join(out)


class HasParams:
    """Mix-in giving a class its declared :class:`Param` s, ``set(**params)``, ``get_params()`` and
    ``explain_params()``. Each subclass's docstring gets a generated ``Parameters`` section."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.params():
            return
        doc = cls.__dict__.get("__doc__")
        section = _params_section(cls)
        # a blank line first, so the section never reads as the expected output of a doctest
        cls.__doc__ = f"{doc.rstrip()}\n\n{section}\n" if doc else section.strip() + "\n"

    def __init__(self, **params: Any) -> None:
        self._param_values: dict[str, Any] = {}
        if params:
            self.set(**params)

    @classmethod
    def params(cls) -> dict[str, Param]:
        """All parameters declared on the class and its bases, by name."""
        cached = cls.__dict__.get("_params_cache")
        if cached is not None:
            return cached
        found: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for k, v in vars(klass).items():
                if isinstance(v, Param):
                    found[k] = v
        cls._params_cache = found
        return found

    def set(self, **params: Any) -> "HasParams":
        """Set parameters by name and return ``self``."""
        declared = self.params()
        name = type(self).__name__
        for k in params:
            if k not in declared:
                raise TypeError(
                    f"{name} has no parameter '{k}'; valid parameters: {', '.join(sorted(declared)) or '(none)'}"
                )
        if "_param_values" not in self.__dict__:
            self._param_values = {}
        for k, v in params.items():
            self._param_values[k] = declared[k].validate(name, v)
        return self

    def get_params(self) -> dict[str, Any]:
        """Every parameter's current value (defaults included; unset required ones omitted)."""
        out = {}
        for k, p in self.params().items():
            if k in self._param_values:
                out[k] = self._param_values[k]
            elif p.default is not REQUIRED:
                out[k] = p.__get__(self)
        return out

    def explain_params(self) -> str:
        """Every parameter, one a line, as Spark's ``explainParams``: name, doc, type, default, rule
        and the current value when it was set."""
        lines = []
        for k, p in sorted(self.params().items()):
            extra = [f"type: {_type_name(p.type)}", f"default: {p._default_text()}"]
            if p.validator is not None:
                extra.append(f"rule: {p.validator}")
            if k in self._param_values:
                extra.append(f"current: {self._param_values[k]!r}")
            lines.append(f"{k}: {p.doc} ({', '.join(extra)})")
        return "\n".join(lines)

    def copy_params_to(self, other: "HasParams") -> None:
        """Copy the parameters that ``other`` also declares (estimator -> model)."""
        mine = self.get_params()
        theirs = other.params()
        other.set(**{k: v for k, v in mine.items() if k in theirs})


# Shared parameter mix-ins, named as in Flink ML (snake_case).


class HasInputCol(HasParams):
    input_col = Param(str, default="input", doc="Input column name.")


class HasOutputCol(HasParams):
    output_col = Param(str, default="output", doc="Output column name.")


class HasInputCols(HasParams):
    input_cols = Param(list[str], default=REQUIRED, validator=non_empty(), doc="Input column names.")


class HasOutputCols(HasParams):
    output_cols = Param(list[str], default=REQUIRED, validator=non_empty(), doc="Output column names.")


class HasFeaturesCol(HasParams):
    features_col = Param(str, default="features", doc="Features column name.")


class HasLabelCol(HasParams):
    label_col = Param(str, default="label", doc="Label column name.")


class HasWeightCol(HasParams):
    weight_col = Param(str, default=None, doc="Weight column name; None means every row weighs 1.")


class HasPredictionCol(HasParams):
    prediction_col = Param(str, default="prediction", doc="Prediction column name.")


class HasRawPredictionCol(HasParams):
    raw_prediction_col = Param(str, default="raw_prediction",
                               doc="Raw prediction column (class probabilities or scores).")


class HasHandleInvalid(HasParams):
    handle_invalid = Param(str, default="error", validator=in_array(["error", "skip", "keep"]),
                           doc="How to handle invalid entries: 'error' raises, 'skip' drops the row, "
                               "'keep' keeps it in a special bucket or value.")


class HasMaxIter(HasParams):
    max_iter = Param(int, default=20, validator=gt(0), doc="Maximum number of iterations.")


class HasTol(HasParams):
    tol = Param(float, default=1e-6, validator=gt_eq(0), doc="Convergence tolerance.")


class HasReg(HasParams):
    reg = Param(float, default=0.0, validator=gt_eq(0), doc="Regularization strength.")


class HasElasticNet(HasParams):
    elastic_net = Param(float, default=0.0, validator=in_range(0, 1),
                        doc="ElasticNet mixing: 0 is pure L2, 1 is pure L1.")


class HasLearningRate(HasParams):
    learning_rate = Param(float, default=0.1, validator=gt(0), doc="Learning rate of SGD.")


class HasGlobalBatchSize(HasParams):
    global_batch_size = Param(int, default=32, validator=gt(0), doc="Rows per mini-batch across all workers.")


class HasEmitEverySeconds(HasParams):
    emit_every_seconds = Param(float, default=None, validator=gt(0),
                               doc="Also emit a model version once this many seconds of processing time have "
                                   "passed since the last one (Alink's timeInterval), when rows were learned "
                                   "meanwhile; None: versions by row count only.")


class HasSeed(HasParams):
    seed = Param(int, default=None, validator=gt_eq(0),
                 doc="Random seed (>= 0); None picks one from the class name (deterministic).")


class HasDistanceMeasure(HasParams):
    distance_measure = Param(str, default="euclidean", validator=in_array(["euclidean", "manhattan", "cosine"]),
                             doc="Distance measure.")


class HasCategoricalCols(HasParams):
    categorical_cols = Param(list[str], default=[], doc="Columns to treat as categorical.")


class HasNumFeatures(HasParams):
    num_features = Param(int, default=262144, validator=gt(0), doc="Number of features (hash buckets).")
