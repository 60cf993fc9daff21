"""ParamGridBuilder, CrossValidator, TrainValidationSplit (Spark MLlib's model selection).

Oracle: scikit-learn's ``GridSearchCV`` run on the same folds (the CrossValidator's own
(train, validation) indices passed as ``cv``) with the estimator configured to the same
objective: flowlearn's ``LinearRegression(reg=r)`` is ``Ridge(alpha=r * n_train)`` and
``LogisticRegression(reg=r)`` is ``LogisticRegression(C=1 / (r * n_train))`` (see
tests/test_logistic_regression.py); the data are cut to a multiple of the fold count so every
training part has the same ``n_train``. The per-candidate mean (and std) scores, the chosen
candidate and the refitted best model agree; the smaller-is-better metrics (mse, logLoss) are
scikit-learn's negated scores.
"""
from __future__ import annotations

import doctest
import warnings

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SkLR
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

import flowlearn as fl
from flowlearn.evaluation.multiclass import MulticlassClassificationEvaluator
from flowlearn.evaluation.regression import RegressionEvaluator
from flowlearn.tuning import selection as sel_module
from flowlearn.tuning.selection import (CrossValidator, CrossValidatorModel, ParamGridBuilder, TrainValidationSplit,
                                        TrainValidationSplitModel)

REGS = [0.0, 1e-4, 1e-3, 1e-2, 0.1]


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    x, y = x[:441], y[:441]          # 3 folds of 147 rows: every training part has 294 rows
    return x, y, fl.table({"features": x, "label": y})


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)[:567]     # 3 folds of 189 rows: training parts of 378
    y = y[:567].astype(float)
    return x, y, fl.table({"features": x, "label": y})


def linreg_cv(**kw):
    lr = fl.regression.LinearRegression()
    grid = ParamGridBuilder().add_grid(lr, "reg", REGS).build()
    return CrossValidator(estimator=lr, estimator_param_maps=grid,
                          evaluator=RegressionEvaluator(metrics_names=["mse"]), **kw)


def coefficients(model):
    md = model.get_model_data()[0]
    return fl.linalg.to_numpy(md.column("coefficient"))[0], md.column("intercept").to_numpy()[0]


def test_cross_validator_matches_grid_search_ridge(diabetes):
    x, y, t = diabetes
    cv = linreg_cv(num_folds=3, seed=11)
    folds = cv.folds(t)
    n_train = {len(tr) for tr, _ in folds}
    assert n_train == {294}
    model = cv.fit(t)
    gs = GridSearchCV(Ridge(), {"alpha": [r * 294 for r in REGS]}, cv=folds, scoring="neg_mean_squared_error").fit(x, y)
    np.testing.assert_allclose(model.avg_metrics, -gs.cv_results_["mean_test_score"], rtol=1e-8)
    np.testing.assert_allclose(model.std_metrics, gs.cv_results_["std_test_score"], rtol=1e-6)
    assert model.best_index == gs.best_index_
    assert model.best_params == {"reg": REGS[gs.best_index_]}
    # the best candidate refitted on all 441 rows: Ridge with alpha = reg * 441
    w, b = coefficients(model.best_model)
    ref = Ridge(alpha=REGS[gs.best_index_] * 441).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-7, atol=1e-7)
    assert b == pytest.approx(ref.intercept_, rel=1e-9)
    np.testing.assert_allclose(model.transform(t).column("prediction").to_numpy(), ref.predict(x), rtol=1e-8)


def test_cross_validator_matches_grid_search_logistic(cancer):
    x, y, t = cancer
    regs = [1e-3, 1e-2, 1e-1]
    lr = fl.classification.LogisticRegression(tol=1e-10, max_iter=2000)
    cv = CrossValidator(estimator=lr, estimator_param_maps=[{"reg": r} for r in regs],
                        evaluator=MulticlassClassificationEvaluator(metrics_names=["logLoss"]), seed=2)
    folds = cv.folds(t)
    model = cv.fit(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gs = GridSearchCV(SkLR(tol=1e-12, max_iter=20000), {"C": [1.0 / (r * 378) for r in regs]}, cv=folds,
                          scoring="neg_log_loss").fit(x, y)
    np.testing.assert_allclose(model.avg_metrics, -gs.cv_results_["mean_test_score"], rtol=1e-5)
    assert model.best_index == gs.best_index_ == int(np.argmin(model.avg_metrics))   # logLoss: smaller is better


def test_parallel_threads_give_the_same_result(diabetes):
    _, _, t = diabetes
    one = linreg_cv(seed=4, parallelism=1).fit(t)
    four = linreg_cv(seed=4, parallelism=4).fit(t)
    assert one.avg_metrics == four.avg_metrics and one.best_index == four.best_index


def test_larger_is_better_metric_picks_the_maximum(diabetes):
    x, y, t = diabetes
    lr = fl.regression.LinearRegression()
    cv = CrossValidator(estimator=lr, estimator_param_maps=[{"reg": 1.0}, {"reg": 0.0}, {"reg": 0.3}],
                        evaluator=RegressionEvaluator(metrics_names=["r2"]), seed=1)
    model = cv.fit(t)
    gs = GridSearchCV(Ridge(), {"alpha": [294.0, 0.0, 0.3 * 294]}, cv=cv.folds(t), scoring="r2").fit(x, y)
    np.testing.assert_allclose(model.avg_metrics, gs.cv_results_["mean_test_score"], rtol=1e-8)
    assert model.best_index == int(np.argmax(model.avg_metrics)) == gs.best_index_ == 1


def test_folds_partition_the_rows_by_seed(diabetes):
    _, _, t = diabetes
    n = 100
    small = t.slice(0, n)
    folds = linreg_cv(num_folds=3, seed=5).folds(small)
    vals = [va for _, va in folds]
    assert sorted(len(v) for v in vals) == [33, 33, 34]
    assert np.array_equal(np.sort(np.concatenate(vals)), np.arange(n))
    for tr, va in folds:
        assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(n)) and not set(tr) & set(va)
    again = linreg_cv(num_folds=3, seed=5).folds(small)
    other = linreg_cv(num_folds=3, seed=6).folds(small)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(linreg_cv().folds(small), linreg_cv().folds(small)))


def test_fold_col(diabetes):
    x, y, t = diabetes
    fold = np.arange(t.num_rows) % 3
    tf = t.append_column("fold", pa.array(fold))
    cv = linreg_cv(fold_col="fold")
    folds = cv.folds(tf)
    assert all(np.array_equal(va, np.flatnonzero(fold == i)) for i, (_, va) in enumerate(folds))
    model = cv.fit(tf)
    gs = GridSearchCV(Ridge(), {"alpha": [r * 294 for r in REGS]}, cv=folds, scoring="neg_mean_squared_error").fit(x, y)
    np.testing.assert_allclose(model.avg_metrics, -gs.cv_results_["mean_test_score"], rtol=1e-8)
    with pytest.raises(ValueError, match="column 'fold' \\(parameter 'fold_col'\\) holds 3.0 at row 3; folds must be"):
        linreg_cv(fold_col="fold").fit(tf.set_column(2, "fold", pa.array(np.arange(t.num_rows) % 4)))
    with pytest.raises(ValueError, match="has no row in fold 2"):
        linreg_cv(fold_col="fold").fit(tf.set_column(2, "fold", pa.array(np.arange(t.num_rows) % 2)))


def test_train_validation_split_matches_sklearn_on_its_split(diabetes):
    x, y, t = diabetes
    lr = fl.regression.LinearRegression()
    tvs = TrainValidationSplit(estimator=lr, estimator_param_maps=[{"reg": r} for r in REGS],
                               evaluator=RegressionEvaluator(metrics_names=["rmse"]), train_ratio=0.8, seed=9)
    train, valid = tvs.split(t)
    assert len(train) == round(0.8 * 441) and len(valid) == 441 - len(train)
    assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(441))
    model = tvs.fit(t)
    gs = GridSearchCV(Ridge(), {"alpha": [r * len(train) for r in REGS]}, cv=[(train, valid)],
                      scoring="neg_root_mean_squared_error").fit(x, y)
    np.testing.assert_allclose(model.validation_metrics, -gs.cv_results_["mean_test_score"], rtol=1e-8)
    assert model.best_index == gs.best_index_
    w, _ = coefficients(model.best_model)
    np.testing.assert_allclose(w, Ridge(alpha=REGS[gs.best_index_] * 441).fit(x, y).coef_, rtol=1e-7, atol=1e-7)


def test_pipeline_estimator_and_param_keys(diabetes):
    _, _, t = diabetes
    t = t.rename_columns(["x", "label"])
    sc = fl.feature.StandardScaler(input_col="x", output_col="features")
    lr = fl.regression.LinearRegression()
    pipe = fl.Pipeline([sc, lr])
    grid = (ParamGridBuilder().add_grid(fl.regression.LinearRegression.reg, [0.0, 0.1])
            .add_grid((sc, "with_mean"), [True, False]).base_on({"max_iter": 50}).build())
    assert len(grid) == 4 and all(m["max_iter"] == 50 for m in grid)
    cv = CrossValidator(estimator=pipe, estimator_param_maps=grid, evaluator=RegressionEvaluator())
    assert cv.estimator_param_maps[1] == {"LinearRegression.reg": 0.0, "StandardScaler.with_mean": False,
                                          "LinearRegression.max_iter": 50}
    model = cv.fit(t)
    assert isinstance(model.best_model, fl.PipelineModel) and model.best_params["LinearRegression.reg"] == 0.0
    assert lr.reg == 0.0 and lr.max_iter == 100 and sc.with_mean is False   # the user's stages are not touched
    two = fl.Pipeline([fl.feature.StandardScaler(input_col="x", output_col="s"),
                       fl.feature.StandardScaler(input_col="s", output_col="features"), lr])
    with pytest.raises(ValueError, match="parameter 'with_mean' is declared by several stages.*key it as"):
        CrossValidator(estimator=two, estimator_param_maps=[{"with_mean": True}], evaluator=RegressionEvaluator())


def test_save_load_estimators_and_models(diabetes, tmp_path):
    _, _, t = diabetes
    cv = linreg_cv(num_folds=4, seed=8, parallelism=2)
    cv.save(str(tmp_path / "cv"))
    loaded = fl.load(str(tmp_path / "cv"))
    assert isinstance(loaded, CrossValidator) and loaded.get_params() == cv.get_params()
    assert loaded.estimator_param_maps == cv.estimator_param_maps
    assert isinstance(loaded.evaluator, RegressionEvaluator) and loaded.evaluator.metrics_names == ["mse"]
    model = cv.fit(t)
    assert loaded.fit(t).avg_metrics == model.avg_metrics
    model.save(str(tmp_path / "m"))
    m2 = fl.load(str(tmp_path / "m"))
    assert isinstance(m2, CrossValidatorModel)
    assert (m2.avg_metrics, m2.std_metrics, m2.best_index, m2.best_params, m2.param_maps) == \
        (model.avg_metrics, model.std_metrics, model.best_index, model.best_params, model.param_maps)
    assert m2.transform(t).equals(model.transform(t))
    tvs = TrainValidationSplit(estimator=fl.regression.LinearRegression(), estimator_param_maps=[{"reg": 0.5}],
                               evaluator=RegressionEvaluator(), train_ratio=0.6)
    tvs.save(str(tmp_path / "tvs"))
    assert fl.load(str(tmp_path / "tvs")).train_ratio == 0.6
    tm = tvs.fit(t)
    tm.save(str(tmp_path / "tm"))
    tm2 = fl.load(str(tmp_path / "tm"))
    assert isinstance(tm2, TrainValidationSplitModel) and tm2.validation_metrics == tm.validation_metrics
    for path in ("cv", "m", "tvs", "tm"):   # JSON and Arrow only
        assert not list((tmp_path / path).rglob("*.pkl")) and not list((tmp_path / path).rglob("*.pickle"))


def test_model_serves_like_its_best_model(diabetes):
    _, _, t = diabetes
    model = linreg_cv(seed=1).fit(t)
    row = {"features": t.column("features")[0].as_py()}
    got = fl.LocalPredictor(model).predict(dict(row))
    assert got["prediction"] == pytest.approx(model.transform(t.slice(0, 1)).column("prediction")[0].as_py())
    assert model.stages == [model.best_model]


def test_bad_configuration_is_named(diabetes):
    _, _, t = diabetes
    lr = fl.regression.LinearRegression()
    ev = RegressionEvaluator()
    with pytest.raises(ValueError, match="LinearRegression: parameter 'reg' = -1.0 violates gt_eq\\(0\\)"):
        CrossValidator(estimator=lr, estimator_param_maps=[{"reg": -1.0}], evaluator=ev)
    with pytest.raises(ValueError, match="no stage of the estimator \\(LinearRegression\\) has a parameter 'k'"):
        CrossValidator(estimator=lr, estimator_param_maps=[{"k": 2}], evaluator=ev)
    with pytest.raises(ValueError, match="estimator_param_maps is empty"):
        CrossValidator(estimator=lr, estimator_param_maps=[], evaluator=ev)
    with pytest.raises(TypeError, match="a list of param maps \\(dicts\\), got one dict"):
        CrossValidator(estimator=lr, estimator_param_maps={"reg": 0.1}, evaluator=ev)
    with pytest.raises(TypeError, match="expected an Estimator"):
        CrossValidator(estimator=ev, estimator_param_maps=[{}], evaluator=ev)
    with pytest.raises(ValueError, match="parameter 'num_folds' = 1 violates gt_eq\\(2\\)"):
        CrossValidator(estimator=lr, estimator_param_maps=[{}], evaluator=ev, num_folds=1)
    with pytest.raises(ValueError, match="parameter 'train_ratio' = 1.0 violates in_range"):
        TrainValidationSplit(estimator=lr, estimator_param_maps=[{}], evaluator=ev, train_ratio=1.0)
    with pytest.raises(ValueError, match="2 rows cannot be split into 3 folds \\(parameter .num_folds. = 3\\)"):
        CrossValidator(estimator=lr, estimator_param_maps=[{}], evaluator=ev).fit(t.slice(0, 2))
    with pytest.raises(ValueError, match="CrossValidator: candidate 0 \\{'reg': 0.1\\}: LinearRegression: "
                                         "input column 'features'"):
        CrossValidator(estimator=lr, estimator_param_maps=[{"reg": 0.1}], evaluator=ev).fit(
            t.rename_columns(["f", "label"]))
    with pytest.raises(ValueError, match="ParamGridBuilder.add_grid: the values of reg are empty"):
        ParamGridBuilder().add_grid("reg", [])


def test_bad_rows_are_named_by_their_input_row(diabetes):
    x, y, _ = diabetes
    x = x.copy()
    x[300, 2] = np.nan
    with pytest.raises(ValueError, match="CrossValidator: candidate 0 \\{'reg': 0.0\\}: .*column 'features' has NaN "
                                         "or infinity at row 300"):
        linreg_cv(seed=3).fit({"features": x, "label": y})


def test_an_error_of_one_split_only_says_so():
    # label 1 only in fold 0: the model trained on folds 1 and 2 has never seen class 1
    y = np.array([0.0, 1.0, 2.0] * 4 + [0.0, 2.0] * 6)
    fold = np.array([0] * 12 + [1, 2] * 6)
    x = np.c_[y + np.sin(np.arange(len(y))), np.cos(np.arange(len(y)))]
    lr = fl.classification.LogisticRegression(max_iter=10)
    cv = CrossValidator(estimator=lr, estimator_param_maps=[{"reg": 0.1}], fold_col="fold",
                        evaluator=MulticlassClassificationEvaluator())
    with pytest.raises(ValueError, match="candidate 0 \\{'reg': 0.1\\} fails on fold 0 .* alone \\(row numbers "
                                         "count that part's rows\\), though not on the whole input: "
                                         "LogisticRegression: .*class\\(es\\) 1 never occur"):
        cv.fit({"features": x, "label": y, "fold": fold})


def test_doctests():
    assert doctest.testmod(sel_module).failed == 0
