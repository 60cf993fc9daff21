"""A real Apache Kafka broker (KRaft mode, one node: broker and controller) for tests, run from
the jars `make jars` fetches from Maven Central into ``.jars/kafka`` (tools/jars/pom.xml), on
free loopback ports, with its data in a temporary folder.

Where Kafka semantics matter (transactions, consumer groups, exactly-once) tests use this
broker; tansu (``flowlearn.testing.kafka``) stays the fast broker for plain produce/consume.

Example (needs Java 17 and the jars; the conftest fixture ``kafka_broker`` shares one per session):
    >>> with KafkaBroker() as b:                                  # doctest: +SKIP
    ...     b.bootstrap_servers
    '127.0.0.1:40123'
"""
from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JARS = os.path.join(ROOT, ".jars", "kafka")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """Why the broker cannot start here, or None when it can."""
    if not os.path.isdir(JARS) or not any(n.startswith("kafka_2.13-") for n in os.listdir(JARS)):
        return f"no Kafka jars in {JARS}: run `make jars`"
    if shutil.which("java") is None:
        return "no java on PATH (Java 17 is needed)"
    return None


class KafkaBroker:
    """Starts a one-node KRaft cluster; ``bootstrap_servers`` once started; ``stop()`` kills it
    and deletes its data."""

    def __init__(self, start_timeout: float = 90.0) -> None:
        why = available()
        if why:
            raise RuntimeError(why)
        self.port, self.controller_port = _free_port(), _free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="flowlearn-kafka-")
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def _properties(self) -> str:
        conf = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": os.path.join(self.dir, "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "auto.create.topics.enable": "true",
        }
        path = os.path.join(self.dir, "server.properties")
        with open(path, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in conf.items())
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-cp", os.path.join(JARS, "*"), main, *args]

    def start(self) -> "KafkaBroker":
        props = self._properties()
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", props),
                       check=True, capture_output=True, timeout=120)
        log = open(os.path.join(self.dir, "broker.log"), "wb")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", props), stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self.start_timeout
        admin = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if admin is None:   # a client only once the port is open, so it logs no refused connects
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 3})
                if admin.list_topics(timeout=1).brokers:
                    return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Kafka broker did not start within {self.start_timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(os.path.join(self.dir, "broker.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
