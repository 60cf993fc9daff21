"""Plans on Flink's own connectors: a Kafka topic (``from_kafka``) or a watched directory of CSV /
JSON lines files (``from_files(watch=True)``) -> a chain of stateless nodes -> a Kafka topic
(``to_kafka``) or a directory (``to_files``, CSV / JSON lines).

Flink's connectors do the reading and writing, with their state in Flink's checkpoints: the
Kafka source's offsets and the filesystem source's files read; the Kafka sink writes one
transaction per checkpoint and the filesystem sink commits its part files on checkpoints, so
what readers see is exactly once. (The Kafka connector, ``org.apache.flink:flink-sql-connector-
kafka``, is not inside the apache-flink wheel: ``make jars`` fetches it into ``.jars/flink``.)
In between, the records (messages, or lines of files) reach Python as Arrow batches (a
vectorized Python function of PyFlink's Table API): each batch of payloads is parsed with the
local engine's parser, goes through the chain, and each output row is serialized as the local
sinks do. Rows keep their record's position through the chain (a hidden row-number column), so
filters drop records and every other node maps one record to one record.
"""
from __future__ import annotations

import glob
import os
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from flowlearn.stream.files import FilesSourceSpec
from flowlearn.stream.kafka import KafkaSinkSpec, KafkaSourceSpec, _serialize, parse_messages
from flowlearn.stream.sinks import FilesSinkSpec

__all__ = ["connector_jar", "RecordChain", "submit", "SOURCES", "SINKS"]

SOURCES = (KafkaSourceSpec, FilesSourceSpec)
SINKS = (KafkaSinkSpec, FilesSinkSpec)

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


class RecordChain:
    """Payloads -> parsed rows -> the chain -> serialized rows, aligned with the payloads (None
    where the chain dropped the row). A CSV file's header line is no record."""

    def __init__(self, source: Any, specs: list[Any], sink: Any) -> None:
        self.source, self.specs, self.sink = source, specs, sink
        self.header = [n.encode() for n in source.schema.names] if source.format == "csv" else None
        self.where = (f"from_kafka({source.topic!r})" if isinstance(source, KafkaSourceSpec)
                      else f"from_files({source.path!r})")

    def __call__(self, payloads: list[bytes]) -> list[bytes | None]:
        keep = [i for i, p in enumerate(payloads) if p.strip() and not self._is_header(p)]
        out: list[bytes | None] = [None] * len(payloads)
        if keep:
            for i, message in zip(keep, self._chain([payloads[i] for i in keep])):
                out[i] = message
        return out

    def _is_header(self, payload: bytes) -> bool:
        """A CSV file's header line: the schema's names, quoted or not (``fl.write_csv`` quotes them)."""
        return self.header is not None and \
            [f.strip().strip(b'"') for f in payload.strip().split(b",")] == self.header

    def _chain(self, payloads: list[bytes]) -> list[bytes | None]:
        t, bad = parse_messages(payloads, self.source.format, self.source.schema)
        if bad:
            i, col, why = bad[0]
            raise ValueError(f"{self.where}: record {payloads[i][:200]!r}, column '{col}': {why} (dead letters are "
                             f"not translated to Flink yet; use the local engine for handle_invalid='skip')")
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


def _source_table(source: Any, job: str) -> dict[str, str]:
    if isinstance(source, FilesSourceSpec):
        return {"connector": "filesystem", "path": _uri(source.path), "format": "raw",
                "source.monitor-interval": f"{max(int(source.poll_interval * 1000), 1)} ms"}
    start = _STARTS.get(source.start) if isinstance(source.start, str) else None
    src = {"connector": "kafka", "topic": source.topic, "properties.bootstrap.servers": source.bootstrap_servers,
           "properties.group.id": source.group_id, "format": "raw", "scan.startup.mode": start or "timestamp"}
    if start is None:
        src["scan.startup.timestamp-millis"] = str(int(float(source.start) * 1000))
    if start == "group-offsets":
        src["properties.auto.offset.reset"] = "earliest"
    if source.stop_at_end:
        src["scan.bounded.mode"] = "latest-offset"
    for k, v in (source.config or {}).items():
        src[f"properties.{k}"] = str(v)
    return src


def _sink_table(sink: Any, job: str, checkpoint_interval: float, checkpoints: bool) -> dict[str, str]:
    if isinstance(sink, FilesSinkSpec):
        every = f"{max(int(checkpoint_interval * 1000), 1)} ms"
        return {"connector": "filesystem", "path": _uri(sink.path), "format": "raw",
                "sink.rolling-policy.rollover-interval": every, "sink.rolling-policy.check-interval": every,
                "sink.rolling-policy.inactivity-interval": every}
    out = {"connector": "kafka", "topic": sink.topic, "properties.bootstrap.servers": sink.bootstrap_servers,
           "format": "raw"}
    if checkpoints and sink.transactional:
        out.update({"sink.delivery-guarantee": "exactly-once",
                    "sink.transactional-id-prefix": sink.transactional_id or f"flowlearn-{job}",
                    "properties.transaction.timeout.ms": "600000"})
    else:
        out["sink.delivery-guarantee"] = "at-least-once"
    for k, v in (sink.config or {}).items():
        out[f"properties.{k}"] = str(v)
    return out


def _uri(path: str) -> str:
    return path if "://" in path else "file://" + os.path.abspath(path)


def submit(engine: Any, source: Any, specs: list[Any], sink: Any, checkpoint_dir: str | None,
           checkpoint_interval: float) -> Any:
    """Start the job; returns PyFlink's ``TableResult`` of the INSERT."""
    import pandas as pd
    from pyflink.table import DataTypes, EnvironmentSettings, StreamTableEnvironment
    from pyflink.table.udf import udf

    env = engine._env(True, checkpoint_dir, checkpoint_interval)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    if isinstance(source, KafkaSourceSpec) or isinstance(sink, KafkaSinkSpec):
        t_env.get_config().set("pipeline.jars", "file://" + connector_jar())
    job = uuid.uuid4().hex[:12]
    src = _source_table(source, job)
    out = _sink_table(sink, job, checkpoint_interval, checkpoint_dir is not None)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE src_{job} (v BYTES) WITH ({_options(**src)})")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE out_{job} (v BYTES) WITH ({_options(**out)})")
    chain = RecordChain(source, specs, sink)

    def apply(v: pd.Series) -> pd.Series:
        return pd.Series(chain([bytes(x) for x in v]), dtype=object)

    t_env.create_temporary_function(f"chain_{job}", udf(apply, result_type=DataTypes.BYTES(), func_type="pandas"))
    return t_env.execute_sql(f"INSERT INTO out_{job} SELECT v FROM (SELECT chain_{job}(v) AS v FROM src_{job}) "
                             f"WHERE v IS NOT NULL")
