"""Fast start (issue 11, item 7): ``import flowlearn`` imports no heavy library (names load on first
use), every exported name still resolves, a saved model loads in a fresh process without importing
its package first, and Numba kernels come from the on-disk cache in a new process (no compiling)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import flowlearn as fl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fresh(code: str, cwd: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_import_loads_no_heavy_library(tmp_path):
    loaded = json.loads(run_fresh("""
        import json, sys
        import flowlearn
        print(json.dumps(sorted(m for m in ("numpy", "pyarrow", "scipy", "numba", "pandas") if m in sys.modules)))
    """, str(tmp_path)))
    assert loaded == []


@pytest.mark.parametrize("package", ["flowlearn", "flowlearn.classification", "flowlearn.clustering",
                                     "flowlearn.regression", "flowlearn.evaluation"])
def test_every_exported_name_resolves_and_is_listed(package):
    import importlib

    mod = importlib.import_module(package)
    assert mod.__all__ and len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
        assert name in dir(mod)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'NoSuchThing'"):
        getattr(mod, "NoSuchThing")


def test_names_are_the_eagerly_imported_objects():
    from flowlearn.classification.logistic_regression import LogisticRegression
    from flowlearn.persist import load_stage

    assert fl.classification.LogisticRegression is LogisticRegression
    assert fl.load is load_stage and fl.feature.StandardScaler.__name__ == "StandardScaler"
    ns: dict = {}
    exec("from flowlearn.classification import *", ns)
    assert set(fl.classification.__all__) <= set(ns)


def test_loading_and_predicting_a_scaler_and_logistic_regression_does_not_import_pandas(tmp_path):
    """pandas costs a third of a cold start; pyarrow imports it on its first conversion to NumPy or
    from Python objects, so the prediction path reads float64 buffers directly."""
    t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]], "label": [1.0, 0.0, 1.0]})
    fl.Pipeline([fl.feature.StandardScaler(input_col="features", output_col="scaled"),
                 fl.classification.LogisticRegression(features_col="scaled")]).fit(t).save(str(tmp_path / "m"))
    loaded = json.loads(run_fresh("""
        import json, sys
        import flowlearn as fl
        p = fl.LocalPredictor("m")
        p.predict({"features": [1.0, 1.0]})
        print(json.dumps("pandas" in sys.modules))
    """, str(tmp_path)))
    assert loaded is False


def test_a_saved_model_loads_in_a_fresh_process_through_the_lazy_exports(tmp_path):
    t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]], "label": [1.0, 0.0, 1.0]})
    model = fl.Pipeline([fl.regression.LinearRegression(), fl.clustering.KMeans(k=2, features_col="features")]).fit(t)
    model.save(str(tmp_path / "m"))
    want = model.transform(t).column("prediction").to_pylist()
    got = run_fresh("""
        from flowlearn.serving import LocalPredictor   # nothing imported flowlearn.regression / .clustering
        p = LocalPredictor("m")
        print([p.predict({"features": x})["prediction"] for x in ([0.0, 1.0], [1.0, 0.0], [2.0, 1.0])])
    """, str(tmp_path))
    assert json.loads(got) == want


def test_a_new_process_takes_the_kernels_from_the_numba_cache(tmp_path):
    code = """
        import gc, json
        import numpy as np
        import flowlearn as fl
        from numba.core.dispatcher import Dispatcher
        rng = np.random.default_rng(0)
        X = rng.normal(size=(300, 3))
        t = fl.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": (X[:, 0] > 0).astype(float)})
        pipe = fl.Pipeline([fl.feature.VectorAssembler(input_cols=["a", "b", "c"], output_col="v", input_sizes=[1] * 3),
                            fl.feature.StandardScaler(input_col="v", output_col="features"),
                            fl.classification.LogisticRegression(reg=0.01)])
        model = pipe.fit(t)
        fl.LocalPredictor(model).predict({"a": 1.0, "b": 2.0, "c": 0.0})
        ft = model.stages[0].transform(t).rename_columns(["a", "b", "c", "label", "features"])
        fl.evaluation.progressive_validation(fl.classification.OnlineLogisticRegression(), ft)
        fl.evaluation.progressive_validation(
            fl.classification.OnlineLearning(fl.classification.LogisticRegressionModel(), optim_method="adam"), ft)
        fl.clustering.KMeans(k=2).fit(ft)
        used = [o for o in gc.get_objects() if isinstance(o, Dispatcher) and o.signatures]
        print(json.dumps({"used": len(used),
                          "misses": sum(sum(o.stats.cache_misses.values()) for o in used),
                          "uncached": [o.py_func.__qualname__ for o in used if type(o._cache).__name__ == "NullCache"]}))
    """
    run_fresh(code, str(tmp_path))          # compiles whatever is not cached yet
    second = json.loads(run_fresh(code, str(tmp_path)))
    assert second["used"] > 0
    assert second["misses"] == 0 and second["uncached"] == []


def test_numba_cache_dir_falls_back_to_a_temporary_directory(monkeypatch, tmp_path):
    from flowlearn import _numba_cache_dir

    pkg, home = str(tmp_path / "pkg"), str(tmp_path / "home")
    os.makedirs(pkg)
    os.makedirs(home)
    monkeypatch.setenv("HOME", home)
    writable = {pkg: True, home: True}
    monkeypatch.setattr(os, "access", lambda p, mode: writable.get(p, False))
    assert _numba_cache_dir(pkg, {}) is None                      # next to the source
    writable[pkg] = False
    assert _numba_cache_dir(pkg, {}) is None                      # Numba's user-wide cache
    writable[home] = False
    fallback = _numba_cache_dir(pkg, {})
    assert fallback is not None and fallback.startswith(tempfile.gettempdir())
    assert _numba_cache_dir(pkg, {"NUMBA_CACHE_DIR": "/somewhere"}) is None   # the user's choice wins
