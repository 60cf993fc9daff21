"""Every registered stage passes ``flowlearn.testing.check_stage`` (params, param copy, declared
output schema, empty input, save/load, model data, row kernel == batch == LocalPredictor, streams,
sparse input, bad input). Cases come from every module ``tests/conformance_cases/*.py``
(``CASES = {"<StageName>": lambda: (stage, table[, other_tables])}``); a registered stage with no
case fails ``test_every_registered_stage_has_a_case`` unless it is listed in ``NO_CASE`` below."""
from __future__ import annotations

import importlib
import re
import importlib.util
import pkgutil
import sys
from pathlib import Path

import pytest

import flowlearn as fl
from flowlearn.api import _REGISTRY
from flowlearn.testing import check_stage

CASES_DIR = Path(__file__).parent / "conformance_cases"

# Registered stages that get no case of their own, and why.
NO_CASE = {
    # abstract bases: no kernels of their own
    "flowlearn.api.AlgoOperator": "abstract base",
    "flowlearn.api.Transformer": "abstract base",
    "flowlearn.api.Model": "abstract base",
    "flowlearn.api.Estimator": "abstract base",
    "flowlearn.api.OnePassEstimator": "abstract base",
    "flowlearn.api.IterativeEstimator": "abstract base",
    "flowlearn.iteration.OnlineEstimator": "abstract base of the online estimators",
    # composites: chains and graphs of the stages checked on their own (tests/test_core_api.py,
    # tests/test_schema_flow.py)
    "flowlearn.builder.Pipeline": "composite",
    "flowlearn.builder.PipelineModel": "composite",
    "flowlearn.builder.Graph": "composite",
    "flowlearn.builder.GraphModel": "composite",
    # a holder of whatever model version a stream job gave it last (tests/test_model_stream_plans.py)
    "flowlearn.stream.StreamModel": "runs whole model versions inside a stream job",
    # a test double (registers when a test imports flowlearn.testing.models)
    "flowlearn.testing.AddK": "test double",
}


def _import_all() -> list[str]:
    """Import every flowlearn module so every stage registers; the modules that fail to import."""
    failed = []
    for m in pkgutil.walk_packages(fl.__path__, "flowlearn."):
        if m.name.startswith(("flowlearn.engines.flink", "flowlearn.cli", "flowlearn.testing.kafka")):
            continue
        try:
            importlib.import_module(m.name)
        except Exception as e:  # noqa: BLE001 - reported by test_every_module_imports
            failed.append(f"{m.name}: {type(e).__name__}: {e}")
    return failed


IMPORT_FAILURES = _import_all()


def _load_cases() -> dict[str, object]:
    cases: dict[str, object] = {}
    for path in sorted(CASES_DIR.glob("*.py")):
        if path.name == "__init__.py":
            continue
        spec = importlib.util.spec_from_file_location(f"conformance_cases_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name, make in getattr(mod, "CASES", {}).items():
            if name in cases:
                raise ValueError(f"conformance case '{name}' is defined twice (again in {path.name})")
            cases[name] = make
    return cases


CASES = _load_cases()


def _short(registered: str) -> str:
    return registered.rsplit(".", 1)[-1]


def test_every_module_imports():
    assert not IMPORT_FAILURES, "\n".join(IMPORT_FAILURES)


def _library_stage(cls: type) -> bool:
    """A class its module defines (not one a docstring example or a test defines while it runs)."""
    return getattr(sys.modules.get(cls.__module__), cls.__qualname__, None) is cls


def test_every_registered_stage_has_a_case():
    covered = {k.split("/")[0] for k in CASES}
    missing = sorted(name for name, cls in list(_REGISTRY.items()) if name.startswith("flowlearn.")
                     and name not in NO_CASE and _library_stage(cls)
                     and _short(name) not in covered and name not in covered)
    assert not missing, f"registered stages without a conformance case (add one to tests/conformance_cases/): {missing}"


def test_every_case_names_a_registered_stage():
    names = {_short(n) for n in _REGISTRY} | set(_REGISTRY)
    unknown = sorted(k for k in CASES if k.split("/")[0] not in names)
    assert not unknown, f"conformance cases for unregistered stages: {unknown}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name):
    case = CASES[name]()
    stage, table, *rest = case
    others = tuple(rest[0]) if rest else ()
    assert type(stage).__name__ == name.split("/")[0] or type(stage)._registered_name == name.split("/")[0], \
        f"case '{name}' builds a {type(stage).__name__}"
    check_stage(stage, table, *others)


# ------------------------------------------------------------------ the suite finds planted defects

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from flowlearn.api import Transformer  # noqa: E402
from flowlearn.params import Param  # noqa: E402


class _Doubler(Transformer):
    """``y = 2 x``, correct unless a test subclass plants a defect."""

    input_col = Param(str, default="x")
    output_col = Param(str, default="y")

    def _transform(self, t):
        if self.input_col not in t.column_names:
            raise ValueError(f"{type(self).__name__}: input column '{self.input_col}' is missing")
        if not pa.types.is_floating(t.schema.field(self.input_col).type):
            raise TypeError(f"{type(self).__name__}: column '{self.input_col}' is not a float column")
        x = t.column(self.input_col).to_numpy().astype(float)
        return t.append_column(self.output_col, pa.array(2 * x))

    def row_fn(self):
        i, o, name = self.input_col, self.output_col, type(self).__name__

        def run(row):
            if i not in row:
                raise ValueError(f"{name}: input column '{i}' is missing from the row")
            row[o] = 2.0 * float(row[i])

        return run


class _RowKernelDiffers(_Doubler):
    def row_fn(self):
        o, i = self.output_col, self.input_col

        def run(row):
            row[o] = 3.0 * float(row[i]) if i in row else None

        return run


class _DuplicateColumn(_Doubler):
    def _transform(self, t):
        out = super()._transform(t)
        return out.append_column("model_version", pa.array(np.zeros(out.num_rows, np.int64))).append_column(
            "model_version", pa.array(np.ones(out.num_rows, np.int64)))


class _SchemaLies(_Doubler):
    def output_schema(self, input_schema, *others):
        return input_schema.append(pa.field(self.output_col, pa.int64()))


class _BareKeyError(_Doubler):
    def _transform(self, t):
        x = t.column(self.input_col).to_numpy().astype(float)   # pyarrow's KeyError for a missing column
        return t.append_column(self.output_col, pa.array(2 * x))


for _cls in (_Doubler, _RowKernelDiffers, _DuplicateColumn, _SchemaLies, _BareKeyError):
    fl.register_stage(_cls, f"tests.{_cls.__name__}")


@pytest.mark.parametrize("stage,check", [
    (_RowKernelDiffers(), "[row_kernel]"),
    (_DuplicateColumn(), "[unique_columns]"),
    (_SchemaLies(), "[output_schema]"),
    (_BareKeyError(), "[bad_input]"),
])
def test_check_stage_finds_planted_defects(stage, check):
    table = {"x": [1.0, 2.0, 3.0, 4.0], "z": ["a", "b", "c", "d"]}
    assert check_stage(_Doubler(), table)["row_kernel"] == "ok"   # the correct stage passes
    with pytest.raises(AssertionError, match=re.escape(check)):
        check_stage(stage, table)
