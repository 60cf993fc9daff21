"""Kafka plans on Flink: ``from_kafka(...)`` -> a chain of stateless nodes -> ``to_kafka(...)``,
run with Flink's own Kafka connector (``org.apache.flink:flink-sql-connector-kafka``, fetched by
``make jars`` into ``.jars/flink``; not inside the apache-flink wheel).

The connector reads the topic (its offsets in Flink's checkpoints) and writes the output topic
(with checkpoints: one Kafka transaction per checkpoint, committed when the checkpoint
completes, so ``read_committed`` readers see every row exactly once). In between, the messages
reach Python as Arrow batches (a vectorized Python function of PyFlink's Table API): each batch
of payloads is parsed with the local engine's parser, goes through the chain, and each output
row is serialized as the local ``to_kafka`` sink does. Rows keep their message's position
through the chain (a hidden row-number column), so filters drop messages and every other node
maps one message to one message.
"""
from __future__ import annotations

import glob
import os
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.stream.kafka import KafkaSinkSpec, KafkaSourceSpec, _serialize, parse_messages

__all__ = ["connector_jar", "KafkaChain", "submit"]

_ROW = "__flowlearn_message"
_STARTS = {"earliest": "earliest-offset", "latest": "latest-offset", "committed": "group-offsets"}


def connector_jar() -> str:
    """The Flink Kafka connector jar: ``$FLOWLEARN_FLINK_KAFKA_JAR`` or the one `make jars` put
    in ``.jars/flink`` of the source tree."""
    path = os.environ.get("FLOWLEARN_FLINK_KAFKA_JAR")
    if path:
        return path
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = sorted(glob.glob(os.path.join(root, ".jars", "flink", "flink-sql-connector-kafka-*.jar")))
    if not found:
        raise FileNotFoundError("FlinkEngine: Kafka plans need Flink's Kafka connector jar "
                                "(org.apache.flink:flink-sql-connector-kafka); run `make jars` or set "
                                "FLOWLEARN_FLINK_KAFKA_JAR to its path")
    return found[-1]


class KafkaChain:
    """Payloads -> parsed rows -> the chain -> serialized rows, aligned with the payloads (None
    where the chain dropped the row)."""

    def __init__(self, source: KafkaSourceSpec, specs: list[Any], sink: KafkaSinkSpec) -> None:
        self.source, self.specs, self.sink = source, specs, sink

    def __call__(self, payloads: list[bytes]) -> list[bytes | None]:
        t, bad = parse_messages(payloads, self.source.format, self.source.schema)
        if bad:
            i, col, why = bad[0]
            raise ValueError(f"from_kafka({self.source.topic!r}): a message of this batch ({i + 1} of "
                             f"{len(payloads)}), column '{col}': {why} (dead letters are not translated to Flink "
                             f"yet; use handle_invalid='error' data or the local engine)")
        rows: pa.Array = pa.array(np.arange(len(payloads), dtype=np.int64))
        t = t.append_column(_ROW, rows)
        for spec in self.specs:
            before = t
            t = spec.apply(t)
            if t is None:
                return [None] * len(payloads)
            if _ROW not in t.column_names:
                if t.num_rows != before.num_rows:
                    raise NotImplementedError(f"FlinkEngine: {type(spec).__name__} changes the number of rows and "
                                              f"drops their order, so its output cannot be matched to Kafka messages")
                t = t.append_column(_ROW, before.column(_ROW))
        out: list[bytes | None] = [None] * len(payloads)
        where = t.column(_ROW).to_numpy()
        for i, message in zip(where, _serialize(t.drop_columns([_ROW]), self.sink.format)):
            out[int(i)] = message
        return out


def _options(**kw: str) -> str:
    return ", ".join(f"'{k}' = '{v}'" for k, v in kw.items())


def submit(engine: Any, source: KafkaSourceSpec, specs: list[Any], sink: KafkaSinkSpec,
           checkpoint_dir: str | None, checkpoint_interval: float) -> Any:
    """Start the job; returns PyFlink's ``TableResult`` of the INSERT."""
    import pandas as pd
    from pyflink.table import DataTypes, EnvironmentSettings, StreamTableEnvironment
    from pyflink.table.udf import udf

    env = engine._env(True, checkpoint_dir, checkpoint_interval)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    t_env.get_config().set("pipeline.jars", "file://" + connector_jar())
    job = uuid.uuid4().hex[:12]
    start = _STARTS.get(source.start) if isinstance(source.start, str) else None
    src = {"connector": "kafka", "topic": source.topic, "properties.bootstrap.servers": source.bootstrap_servers,
           "properties.group.id": source.group_id, "format": "raw",
           "scan.startup.mode": start or "timestamp"}
    if start is None:
        src["scan.startup.timestamp-millis"] = str(int(float(source.start) * 1000))
    if start == "group-offsets":
        src["properties.auto.offset.reset"] = "earliest"
    if source.stop_at_end:
        src["scan.bounded.mode"] = "latest-offset"
    for k, v in (source.config or {}).items():
        src[f"properties.{k}"] = str(v)
    out = {"connector": "kafka", "topic": sink.topic, "properties.bootstrap.servers": sink.bootstrap_servers,
           "format": "raw"}
    if checkpoint_dir is not None and sink.transactional:
        out.update({"sink.delivery-guarantee": "exactly-once",
                    "sink.transactional-id-prefix": sink.transactional_id or f"flowlearn-{job}",
                    "properties.transaction.timeout.ms": "600000"})
    else:
        out["sink.delivery-guarantee"] = "at-least-once"
    for k, v in (sink.config or {}).items():
        out[f"properties.{k}"] = str(v)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE src_{job} (v BYTES) WITH ({_options(**src)})")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE out_{job} (v BYTES) WITH ({_options(**out)})")
    chain = KafkaChain(source, specs, sink)

    def apply(v: pd.Series) -> pd.Series:
        return pd.Series(chain([bytes(x) for x in v]), dtype=object)

    t_env.create_temporary_function(f"chain_{job}", udf(apply, result_type=DataTypes.BYTES(), func_type="pandas"))
    return t_env.execute_sql(f"INSERT INTO out_{job} SELECT v FROM (SELECT chain_{job}(v) AS v FROM src_{job}) "
                             f"WHERE v IS NOT NULL")
