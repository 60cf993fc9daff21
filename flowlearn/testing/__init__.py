"""Test utilities shipped with flowlearn: :func:`check_stage`, the conformance checks every stage
passes (``flowlearn.testing.conformance``), and a local Kafka-protocol broker for tests and demos
(``flowlearn.testing.kafka``)."""
from flowlearn.testing.conformance import CHECKS, check_stage

__all__ = ["check_stage", "CHECKS"]
