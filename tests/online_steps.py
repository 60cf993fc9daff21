"""Shared by the online estimators' tests: record the IterationSteps of the iterate_unbounded
runs behind ``fit_versions``, and split a step's output into its model versions."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

import flowlearn as fl


def record_unbounded_steps(monkeypatch) -> list:
    """Patch flowlearn.iteration.online so every IterationStep is appended to the returned list."""
    import flowlearn.iteration.online as online_module

    steps: list = []
    real = fl.iteration.iterate_unbounded

    class Recorded:
        def __init__(self, it):
            self.it = it

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.it.close()

        def __iter__(self):
            for step in self.it:
                steps.append(step)
                yield step

    monkeypatch.setattr(online_module, "iterate_unbounded", lambda *a, **k: Recorded(real(*a, **k)))
    return steps


def versions_of_step(step) -> list[pa.Table]:
    """The model versions a step output (its rows grouped by model_version)."""
    t = step.outputs[0]
    v = t.column("model_version").to_pylist() if t.num_rows else []
    return [t.filter(pa.compute.equal(t.column("model_version"), x)) for x in dict.fromkeys(v)]
