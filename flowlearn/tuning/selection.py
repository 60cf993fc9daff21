"""Model selection with Spark MLlib's semantics: ``ParamGridBuilder``, ``CrossValidator``,
``TrainValidationSplit``.

An estimator (any stage with ``fit``, a ``Pipeline`` too) is fitted once per candidate param map
and split of the data, scored with an evaluator on the held-out rows, and the candidate with the
best mean score (``evaluator.is_larger_better()`` decides the direction) is fitted again on all
the data. Candidates are fitted in ``parallelism`` threads (NumPy, SciPy and Numba kernels release
the GIL). Everything saves with ``save``/``fl.load``: the estimator and the evaluator as sub-stages,
the param maps as JSON.

Example:
    >>> import numpy as np, flowlearn as fl
    >>> from flowlearn.tuning import CrossValidator, ParamGridBuilder
    >>> from flowlearn.evaluation.regression import RegressionEvaluator
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 3))
    >>> data = fl.table({"features": x, "label": x @ [1.0, -2.0, 0.5] + rng.normal(scale=0.1, size=60)})
    >>> lr = fl.regression.LinearRegression()
    >>> grid = ParamGridBuilder().add_grid(lr, "reg", [0.0, 0.5, 5.0]).build()
    >>> cv = CrossValidator(estimator=lr, estimator_param_maps=grid, evaluator=RegressionEvaluator(), num_folds=3)
    >>> model = cv.fit(data)
    >>> model.best_params, len(model.avg_metrics)
    ({'reg': 0.0}, 3)
"""
from __future__ import annotations

import copy
import itertools
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from flowlearn.api import AlgoOperator, Estimator, Model, RowFn, Stage, Transformer
from flowlearn.data.columns import numeric_column
from flowlearn.params import Param, gt, gt_eq, in_range
from flowlearn.persist import decode_floats, encode_floats

__all__ = ["ParamGridBuilder", "CrossValidator", "CrossValidatorModel", "TrainValidationSplit",
           "TrainValidationSplitModel"]

# A param map: {key: value}; a key is a param name (of the estimator, or of the one stage inside
# it that declares it), a Param descriptor (LogisticRegression.reg), or (stage, name) for a stage
# inside the estimator (a pipeline's stage).
ParamMap = dict


class ParamGridBuilder:
    """Builds the param maps of a grid search (Spark's ``ParamGridBuilder``).

    ``add_grid(key, values)`` or ``add_grid(stage, name, values)`` adds a parameter and its values;
    ``base_on(map)`` fixes values for every candidate; ``build()`` returns the cartesian product as a
    list of dicts. A key is a param name, a ``Param`` descriptor, or a ``(stage, name)`` pair.

    Example:
        >>> from flowlearn.tuning import ParamGridBuilder
        >>> ParamGridBuilder().add_grid("reg", [0.1, 1.0]).add_grid("elastic_net", [0.0, 1.0]).build()[:2]
        [{'reg': 0.1, 'elastic_net': 0.0}, {'reg': 0.1, 'elastic_net': 1.0}]
    """

    def __init__(self) -> None:
        self._grid: dict[Any, list] = {}
        self._base: dict[Any, Any] = {}

    def add_grid(self, *args: Any) -> "ParamGridBuilder":
        if len(args) == 3:
            key, values = (args[0], args[1]), args[2]
        elif len(args) == 2:
            key, values = args
        else:
            raise TypeError("ParamGridBuilder.add_grid takes (key, values) or (stage, name, values)")
        values = list(values)
        if not values:
            raise ValueError(f"ParamGridBuilder.add_grid: the values of {_key_text(key)} are empty; give at least one")
        self._grid[_hashable(key)] = values
        return self

    def base_on(self, *param_maps: ParamMap) -> "ParamGridBuilder":
        for m in param_maps:
            for k, v in m.items():
                self._base[_hashable(k)] = v
        return self

    def build(self) -> list[ParamMap]:
        keys = list(self._grid)
        maps = []
        for combo in itertools.product(*(self._grid[k] for k in keys)):
            m = dict(self._base)
            m.update(zip(keys, combo))
            maps.append(m)
        return maps


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(key)
    return key


def _key_text(key: Any) -> str:
    if isinstance(key, tuple):
        return f"{type(key[0]).__name__}.{key[1]}"
    return getattr(key, "name", None) or str(key)


def _resolve(owner: str, estimator: Stage, key: Any) -> tuple[int, str]:
    """(index of the stage in ``estimator.walk()``, param name) for a param-map key."""
    stages = list(estimator.walk())
    if isinstance(key, tuple):
        if len(key) != 2 or not isinstance(key[1], str):
            raise TypeError(f"{owner}: param map key {key!r} must be a name, a Param or a (stage, name) pair")
        stage, name = key
        found = [i for i, s in enumerate(stages) if s is stage]
        if not found:
            raise ValueError(f"{owner}: param map key ({type(stage).__name__}, {name!r}) names a stage that is not "
                             f"the estimator nor inside it")
        i = found[0]
        if name not in type(stages[i]).params():
            raise ValueError(f"{owner}: {type(stage).__name__} has no parameter {name!r}; valid parameters: "
                             f"{', '.join(sorted(type(stages[i]).params()))}")
        return i, name
    if isinstance(key, Param):
        name = key.name
        found = [i for i, s in enumerate(stages) if type(s).params().get(name) is key]
    elif isinstance(key, str):
        name = key
        found = [i for i, s in enumerate(stages) if name in type(s).params()]
    else:
        raise TypeError(f"{owner}: param map key {key!r} must be a name, a Param or a (stage, name) pair")
    if not found:
        raise ValueError(f"{owner}: no stage of the estimator ({type(estimator).__name__}) has a parameter "
                         f"{name!r}")
    if found[0] != 0 and len(found) > 1:
        raise ValueError(f"{owner}: parameter {name!r} is declared by several stages of the estimator "
                         f"({', '.join(type(stages[i]).__name__ for i in found)}); key it as (stage, {name!r})")
    return found[0], name


def _normalize(owner: str, estimator: Stage, param_maps: Sequence[ParamMap]) -> list[list[tuple[int, str, Any]]]:
    if isinstance(param_maps, dict):
        raise TypeError(f"{owner}: estimator_param_maps is a list of param maps (dicts), got one dict; "
                        f"wrap it in a list or build the list with ParamGridBuilder")
    maps = list(param_maps)
    if not maps:
        raise ValueError(f"{owner}: estimator_param_maps is empty; give at least one param map (ParamGridBuilder)")
    stages = list(estimator.walk())
    out = []
    for j, m in enumerate(maps):
        if not isinstance(m, dict):
            raise TypeError(f"{owner}: estimator_param_maps[{j}] is a {type(m).__name__}, expected a dict")
        entries = []
        for k, v in m.items():
            i, name = _resolve(owner, estimator, k)
            v = type(stages[i]).params()[name].validate(type(stages[i]).__name__, v)   # fails before any fit
            entries.append((i, name, v))
        out.append(entries)
    return out


def _candidate(estimator: Stage, entries: list[tuple[int, str, Any]]) -> Stage:
    est = copy.deepcopy(estimator)
    stages = list(est.walk())
    for i, name, v in entries:
        stages[i].set(**{name: v})
    return est


def _renamed(e: Exception, msg: str) -> Exception:
    """An error of ``e``'s class (a ValueError or TypeError) with the message ``msg``."""
    try:
        return type(e)(msg)
    except Exception:  # noqa: BLE001 - an error class with another constructor
        return (ValueError if isinstance(e, ValueError) else TypeError)(msg)


def _metric(evaluator: AlgoOperator, t: pa.Table) -> float:
    name = evaluator.metrics_names[0]
    evaluate = getattr(evaluator, "evaluate", None)
    if evaluate is not None:
        return float(evaluate(t)[name])
    return float(evaluator.transform(t).column(name)[0].as_py())


def _larger_better(evaluator: AlgoOperator) -> bool:
    fn = getattr(evaluator, "is_larger_better", None)
    return True if fn is None else bool(fn())


class _TuningParams(Stage):
    seed = Param(int, default=None, validator=gt_eq(0),
                 doc="Random seed of the split (>= 0); None derives one from the class name (deterministic).")
    parallelism = Param(int, default=1, validator=gt(0),
                        doc="Number of threads fitting and scoring candidates at once.")


class _Tuning(_TuningParams, Estimator):
    """Shared driver of CrossValidator and TrainValidationSplit."""

    def __init__(self, estimator: Stage | None = None, estimator_param_maps: Sequence[ParamMap] | None = None,
                 evaluator: AlgoOperator | None = None, **params: Any) -> None:
        super().__init__(**params)
        owner = type(self).__name__
        if estimator is None or evaluator is None or estimator_param_maps is None:
            raise TypeError(f"{owner} needs estimator=, estimator_param_maps= and evaluator=")
        if not isinstance(estimator, Estimator):
            raise TypeError(f"{owner}: estimator is a {type(estimator).__name__}, expected an Estimator")
        if not isinstance(evaluator, AlgoOperator) or not hasattr(evaluator, "metrics_names"):
            raise TypeError(f"{owner}: evaluator is a {type(evaluator).__name__}, expected an evaluator "
                            f"(an AlgoOperator with metrics_names, such as fl.evaluation.RegressionEvaluator)")
        self.estimator = estimator
        self.evaluator = evaluator
        self._maps = _normalize(owner, estimator, estimator_param_maps)

    @property
    def estimator_param_maps(self) -> list[dict[str, Any]]:
        """The param maps as ``{name: value}`` (``"Stage.name"`` for a stage inside the estimator)."""
        return _readable(self.estimator, self._maps)

    def _splits(self, n: int, t: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def _part_name(self, s: int) -> str:
        return f"split {s}"

    def _seed(self) -> int:
        return self.seed if self.seed is not None else zlib.crc32(type(self).__name__.encode())

    def _scores(self, t: pa.Table) -> np.ndarray:
        """metrics[split, candidate]."""
        owner = type(self).__name__
        if t.num_rows == 0:
            raise ValueError(f"{owner}: fit needs at least one row; the input table is empty")
        splits = [(t.take(pa.array(tr)), t.take(pa.array(va))) for tr, va in self._splits(t.num_rows, t)]
        tasks = [(s, j) for s in range(len(splits)) for j in range(len(self._maps))]

        def score(j: int, train: pa.Table, valid: pa.Table) -> float:
            model = _candidate(self.estimator, self._maps[j]).fit(train)
            return _metric(self.evaluator, model.transform(valid))

        def run(task: tuple[int, int]) -> float:
            s, j = task
            try:
                return score(j, *splits[s])
            except (ValueError, TypeError) as e:
                params = _readable(self.estimator, [self._maps[j]])[0]
                # The error's row numbers count the rows of the split's part. Bad input fails on the
                # whole table as well, with the input's own row numbers: report that error instead.
                try:
                    score(j, t, t)
                except (ValueError, TypeError) as whole:
                    raise _renamed(whole, f"{owner}: candidate {j} {params}: {whole}") from whole
                raise _renamed(e, f"{owner}: candidate {j} {params} fails on {self._part_name(s)} alone (row "
                                  f"numbers count that part's rows), though not on the whole input: {e}") from e

        if self.parallelism > 1 and len(tasks) > 1:
            with ThreadPoolExecutor(max_workers=min(self.parallelism, len(tasks))) as pool:
                values = list(pool.map(run, tasks))
        else:
            values = [run(task) for task in tasks]
        return np.asarray(values, dtype=np.float64).reshape(len(splits), len(self._maps))

    def _best(self, metrics: np.ndarray) -> int:
        if np.isnan(metrics).all():
            raise ValueError(f"{type(self).__name__}: every candidate scored NaN with "
                             f"{type(self.evaluator).__name__}; no candidate can be chosen")
        larger = _larger_better(self.evaluator)
        return int(np.nanargmax(metrics) if larger else np.nanargmin(metrics))

    def _sub_stages(self) -> list[Stage]:
        return [self.estimator, self.evaluator]

    def _extra_metadata(self) -> dict:
        return {"estimator_param_maps": _maps_json(self._maps)}

    @classmethod
    def _from_saved(cls, params, model_data, stages, extra):
        estimator, evaluator = stages
        maps = _maps_from_json(estimator, extra["estimator_param_maps"])
        return cls(estimator=estimator, evaluator=evaluator, estimator_param_maps=maps, **params)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._param_values.items())
        return (f"{type(self).__name__}(estimator={self.estimator!r}, evaluator={self.evaluator!r}, "
                f"{len(self._maps)} param maps{', ' + shown if shown else ''})")


def _maps_json(maps: list[list[tuple[int, str, Any]]]) -> list:
    return [[{"stage": i, "param": name, "value": encode_floats(v)} for i, name, v in m] for m in maps]


def _maps_from_json(estimator: Stage, data: list) -> list[ParamMap]:
    stages = list(estimator.walk())
    return [{(stages[e["stage"]], e["param"]): decode_floats(e["value"]) for e in m} for m in data]


def _readable(estimator: Stage, maps: list[list[tuple[int, str, Any]]]) -> list[dict[str, Any]]:
    stages = list(estimator.walk())
    return [{(name if i == 0 else f"{type(stages[i]).__name__}.{name}"): v for i, name, v in m} for m in maps]


class CrossValidator(_Tuning):
    """K-fold cross-validation over param maps (Spark's ``CrossValidator``).

    The rows are dealt into ``num_folds`` folds by a seeded permutation (fold sizes differ by at
    most one; Spark samples each row's fold, so its sizes vary), or by ``fold_col`` (integers in
    ``[0, num_folds)``, Spark's ``foldCol``). Each candidate (``estimator`` with one of the
    ``estimator_param_maps``) is fitted on all folds but one and scored by ``evaluator`` (its first
    metric) on the held-out fold; the candidate with the best mean over the folds (the evaluator's
    ``is_larger_better()``) is refitted on all rows. ``fit`` returns a :class:`CrossValidatorModel`
    with ``best_model``, ``avg_metrics``, ``std_metrics`` and ``best_index``; ``folds(table)`` gives
    the (train, validation) row indices it used.

    Constructor arguments: ``estimator``, ``estimator_param_maps`` (list of dicts, see
    :class:`ParamGridBuilder`), ``evaluator``; params ``num_folds`` (3), ``fold_col`` (None),
    ``seed`` (None: from the class name), ``parallelism`` (1).

    Example:
        >>> import flowlearn as fl
        >>> from flowlearn.tuning import CrossValidator, ParamGridBuilder
        >>> from flowlearn.evaluation.multiclass import MulticlassClassificationEvaluator
        >>> from sklearn.datasets import load_iris
        >>> x, y = load_iris(return_X_y=True)
        >>> data = fl.table({"features": x, "label": y.astype(float)})
        >>> lr = fl.classification.LogisticRegression()
        >>> grid = ParamGridBuilder().add_grid("reg", [0.1, 10.0]).build()
        >>> cv = CrossValidator(estimator=lr, estimator_param_maps=grid,
        ...                     evaluator=MulticlassClassificationEvaluator(metrics_names=["accuracy"]), seed=7)
        >>> model = cv.fit(data)
        >>> model.best_params, [round(m, 2) for m in model.avg_metrics]
        ({'reg': 0.1}, [0.95, 0.71])
    """

    num_folds = Param(int, default=3, validator=gt_eq(2), doc="Number of folds (>= 2).")
    fold_col = Param(str, default=None,
                     doc="Column of each row's fold (integers in [0, num_folds)); None: folds by seed.")

    def folds(self, table: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (train row indices, validation row indices) of each fold, as ``fit`` uses them."""
        from flowlearn.api import _as_table

        t = _as_table(table)
        return self._splits(t.num_rows, t)

    def _splits(self, n: int, t: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
        k, owner = self.num_folds, type(self).__name__
        if self.fold_col is not None:
            f = numeric_column(t, self.fold_col, owner, param="fold_col")
            bad = (f != np.floor(f)) | (f < 0) | (f >= k)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{owner}: column '{self.fold_col}' (parameter 'fold_col') holds {float(f[row])!r} "
                                 f"at row {row}; folds must be integers in [0, {k - 1}] (num_folds = {k})")
            fold = f.astype(np.int64)
            empty = [i for i in range(k) if not (fold == i).any()]
            if empty:
                raise ValueError(f"{owner}: column '{self.fold_col}' (parameter 'fold_col') has no row in fold "
                                 f"{empty[0]}; every fold in [0, {k - 1}] needs rows")
        else:
            if n < k:
                raise ValueError(f"{owner}: {n} rows cannot be split into {k} folds (parameter 'num_folds' = {k}); "
                                 f"give at least {k} rows or lower num_folds")
            fold = np.empty(n, dtype=np.int64)
            fold[np.random.default_rng(self._seed()).permutation(n)] = np.arange(n) % k
        return [(np.flatnonzero(fold != i), np.flatnonzero(fold == i)) for i in range(k)]

    def _part_name(self, s: int) -> str:
        return f"fold {s} (trained on the other folds, validated on it)"

    def _fit(self, *tables: pa.Table) -> "CrossValidatorModel":
        (t,) = tables
        metrics = self._scores(t)
        avg = metrics.mean(axis=0)
        std = metrics.std(axis=0)
        best = self._best(avg)
        model = _candidate(self.estimator, self._maps[best]).fit(t)
        out = CrossValidatorModel(best_model=model, param_maps=_readable(self.estimator, self._maps))
        best_mask = np.arange(len(avg)) == best
        return out.set_model_data(pa.table({"avg_metrics": avg, "std_metrics": std, "best": best_mask}))


class TrainValidationSplit(_Tuning):
    """One train/validation split over param maps (Spark's ``TrainValidationSplit``).

    A seeded permutation puts ``round(train_ratio * n)`` rows in the training part (Spark samples
    each row, so its sizes vary) and the rest in the validation part; each candidate is fitted on
    the first and scored by ``evaluator`` (its first metric) on the second, and the best
    (``evaluator.is_larger_better()``) is refitted on all rows. ``fit`` returns a
    :class:`TrainValidationSplitModel` with ``best_model``, ``validation_metrics`` and
    ``best_index``; ``split(table)`` gives the row indices it used.

    Constructor arguments: ``estimator``, ``estimator_param_maps``, ``evaluator``; params
    ``train_ratio`` (0.75), ``seed`` (None: from the class name), ``parallelism`` (1).

    Example:
        >>> import numpy as np, flowlearn as fl
        >>> from flowlearn.tuning import TrainValidationSplit, ParamGridBuilder
        >>> from flowlearn.evaluation.regression import RegressionEvaluator
        >>> rng = np.random.default_rng(1)
        >>> x = rng.normal(size=(40, 2))
        >>> data = {"features": x, "label": x @ [3.0, 1.0] + rng.normal(scale=0.1, size=40)}
        >>> tvs = TrainValidationSplit(estimator=fl.regression.LinearRegression(),
        ...                            estimator_param_maps=[{"reg": 0.0}, {"reg": 10.0}],
        ...                            evaluator=RegressionEvaluator(metrics_names=["r2"]), train_ratio=0.8)
        >>> model = tvs.fit(data)
        >>> model.best_index, model.validation_metrics[0] > model.validation_metrics[1]
        (0, True)
    """

    train_ratio = Param(float, default=0.75, validator=in_range(0, 1, lo_inclusive=False, hi_inclusive=False),
                        doc="Share of the rows used for training, in (0, 1); the rest validate.")

    def split(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        """The (train row indices, validation row indices) that ``fit`` uses."""
        from flowlearn.api import _as_table

        t = _as_table(table)
        return self._splits(t.num_rows, t)[0]

    def _splits(self, n: int, t: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
        owner = type(self).__name__
        n_train = int(round(self.train_ratio * n))
        if n_train < 1 or n_train >= n:
            raise ValueError(f"{owner}: parameter 'train_ratio' = {self.train_ratio} of {n} rows leaves {n_train} "
                             f"training and {n - n_train} validation rows; both parts need at least one row")
        perm = np.random.default_rng(self._seed()).permutation(n)
        return [(np.sort(perm[:n_train]), np.sort(perm[n_train:]))]

    def _part_name(self, s: int) -> str:
        return f"its train/validation split (train_ratio = {self.train_ratio})"

    def _fit(self, *tables: pa.Table) -> "TrainValidationSplitModel":
        (t,) = tables
        metrics = self._scores(t)[0]
        best = self._best(metrics)
        model = _candidate(self.estimator, self._maps[best]).fit(t)
        out = TrainValidationSplitModel(best_model=model, param_maps=_readable(self.estimator, self._maps))
        best_mask = np.arange(len(metrics)) == best
        return out.set_model_data(pa.table({"validation_metrics": metrics, "best": best_mask}))


class _TuningModel(Model):
    """The refitted best model with the candidates' metrics; ``transform`` is the best model's."""

    _METRIC = ""

    def __init__(self, best_model: Stage | None = None, param_maps: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        if not isinstance(best_model, AlgoOperator):
            raise TypeError(f"{type(self).__name__} needs best_model=, a fitted model (an AlgoOperator)")
        self.best_model = best_model
        self.param_maps = list(param_maps or [])
        self._metrics = np.empty(0)
        self._best = -1

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        (t,) = tables
        if self._METRIC not in t.column_names:
            raise ValueError(f"{type(self).__name__}: model data needs a column '{self._METRIC}', got {t.column_names}")
        if self.param_maps and t.num_rows != len(self.param_maps):
            raise ValueError(f"{type(self).__name__}: model data has {t.num_rows} rows for {len(self.param_maps)} "
                             f"param maps; one row per candidate")
        best = t.column("best") if "best" in t.column_names else None
        if best is None or best.null_count or not pa.types.is_boolean(best.type) or sum(best.to_pylist()) != 1:
            raise ValueError(f"{type(self).__name__}: model data needs a boolean column 'best' marking exactly one "
                             f"candidate, the chosen one")
        self._metrics = np.asarray(t.column(self._METRIC).to_numpy(zero_copy_only=False), dtype=np.float64)
        self._best = int(np.flatnonzero(t.column("best").to_numpy(zero_copy_only=False))[0])

    @property
    def stages(self) -> list[Stage]:
        """``[best_model]``: the model runs as a one-stage chain (predictors, streams, model versions)."""
        return [self.best_model]

    @property
    def best_index(self) -> int:
        """Index of the chosen candidate in the param maps (recorded at fit time)."""
        self._require_model()
        return int(self._best)

    @property
    def best_params(self) -> dict[str, Any]:
        """The chosen candidate's param map."""
        return dict(self.param_maps[self.best_index]) if self.param_maps else {}

    def _transform(self, *tables: pa.Table) -> Any:
        try:
            return self.best_model.transform(*tables)
        except (ValueError, TypeError) as e:
            raise _renamed(e, f"{type(self).__name__} (best model): {e}") from e

    def row_fn(self) -> RowFn | None:
        return self.best_model.row_fn() if isinstance(self.best_model, Transformer) else None

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        fn = getattr(self.best_model, "output_schema", None)
        if fn is None:
            raise NotImplementedError(f"{type(self.best_model).__name__} does not declare its output schema")
        return fn(input_schema)

    def _sub_stages(self) -> list[Stage]:
        return [self.best_model]

    def _extra_metadata(self) -> dict:
        return {"param_maps": encode_floats(self.param_maps)}

    @classmethod
    def _from_saved(cls, params, model_data, stages, extra):
        m = cls(best_model=stages[0], param_maps=decode_floats(extra.get("param_maps", [])))
        return m.set_model_data(*model_data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(best_model={self.best_model!r})"


class CrossValidatorModel(_TuningModel):
    """The result of :class:`CrossValidator`: ``best_model`` (refitted on all rows), ``avg_metrics``
    and ``std_metrics`` (per candidate, over the folds), ``best_index``, ``best_params`` and
    ``param_maps``. Model data: one table, one row per candidate, with columns ``avg_metrics``,
    ``std_metrics`` and ``best`` (true for the chosen candidate)."""

    _METRIC = "avg_metrics"

    @property
    def avg_metrics(self) -> list[float]:
        self._require_model()
        return self._metrics.tolist()

    @property
    def std_metrics(self) -> list[float]:
        self._require_model()
        return self._model_data[0].column("std_metrics").to_pylist() if \
            "std_metrics" in self._model_data[0].column_names else []


class TrainValidationSplitModel(_TuningModel):
    """The result of :class:`TrainValidationSplit`: ``best_model`` (refitted on all rows),
    ``validation_metrics`` (per candidate), ``best_index``, ``best_params`` and ``param_maps``.
    Model data: one table, one row per candidate, with columns ``validation_metrics`` and
    ``best`` (true for the chosen candidate)."""

    _METRIC = "validation_metrics"

    @property
    def validation_metrics(self) -> list[float]:
        self._require_model()
        return self._metrics.tolist()
