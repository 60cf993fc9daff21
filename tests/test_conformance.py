"""Every registered stage passes ``flowlearn.testing.check_stage`` (params, param copy, declared
output schema, empty input, save/load, model data, row kernel == batch == LocalPredictor, streams,
sparse input, bad input). Cases come from every module ``tests/conformance_cases/*.py``
(``CASES = {"<StageName>": lambda: (stage, table[, other_tables])}``); a registered stage with no
case fails ``test_every_registered_stage_has_a_case`` unless it is listed in ``NO_CASE`` below."""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
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


def test_every_registered_stage_has_a_case():
    covered = {k.split("/")[0] for k in CASES}
    missing = sorted(name for name in _REGISTRY if name.startswith("flowlearn.") and name not in NO_CASE
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
