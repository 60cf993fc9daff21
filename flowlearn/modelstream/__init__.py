"""Model streams ("Model Flow"): versioned models in a filesystem or Kafka store.

Example:
    >>> import tempfile
    >>> from flowlearn.modelstream import ModelStore
    >>> ModelStore(tempfile.mkdtemp()).versions()
    []
"""
from flowlearn.modelstream.gate import GateResult, ModelGate
from flowlearn.modelstream.kafka_store import KafkaModelStore
from flowlearn.modelstream.store import CorruptVersionError, ModelStore, ModelVersion, Watcher, open_store

__all__ = ["ModelVersion", "ModelStore", "KafkaModelStore", "CorruptVersionError", "Watcher", "open_store", "ModelGate",
           "GateResult"]
