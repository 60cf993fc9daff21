"""flowlearn: machine learning where a batch is a bounded stream.

Example:
    >>> import flowlearn as fl
    >>> t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0]], "label": [1.0, 0.0]})
    >>> model = fl.classification.LogisticRegression().fit(t)
    >>> sorted(model.transform(t).column_names)
    ['features', 'label', 'prediction', 'raw_prediction']
"""
from flowlearn._version import __version__
from flowlearn import linalg
from flowlearn.data import (
    parse_schema,
    read_csv,
    read_json,
    read_parquet,
    table,
    write_csv,
    write_json,
    write_parquet,
)
from flowlearn.api import AlgoOperator, Estimator, Model, Stage, Transformer, register_stage
from flowlearn.builder import Graph, GraphBuilder, GraphModel, Pipeline, PipelineModel
from flowlearn.persist import load_stage as load
from flowlearn import classification, clustering, evaluation, feature, recommendation, regression, stats
from flowlearn import engines, iteration, stream
from flowlearn.engines import run, set_engine
from flowlearn.modelstream import KafkaModelStore, ModelStore, ModelVersion
from flowlearn.serving import LocalPredictor

__all__ = [
    "__version__", "linalg", "table", "parse_schema", "read_csv", "read_json", "read_parquet", "write_csv",
    "write_json", "write_parquet", "Stage", "AlgoOperator", "Transformer", "Model", "Estimator", "register_stage",
    "Pipeline", "PipelineModel", "GraphBuilder", "Graph", "GraphModel", "load", "classification", "clustering",
    "evaluation", "feature", "recommendation", "regression", "stats", "LocalPredictor", "stream", "engines", "run", "set_engine", "iteration",
    "ModelStore", "KafkaModelStore", "ModelVersion",
]
