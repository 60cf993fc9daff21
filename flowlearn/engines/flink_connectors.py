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

Other plans that read a topic or watched directory (trainers, windows, model streams) get it as
a DataStream of Arrow batches from :func:`batches`: the same connector, a tumbling
processing-time window per Kafka partition or file, and a vectorized aggregate function that
parses each window's records at once (:class:`WindowBatch`).
"""
from __future__ import annotations

import glob
import os
import uuid
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from flowlearn.engines.flink_functions import to_ipc
from flowlearn.stream.files import FilesSourceSpec
from flowlearn.stream.kafka import KafkaSinkSpec, KafkaSourceSpec, _serialize, parse_messages
from flowlearn.stream.sinks import FilesSinkSpec

__all__ = ["connector_jar", "RecordChain", "WindowBatch", "batches", "submit", "SOURCES", "SINKS"]

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


class _Records:
    """Payloads of a Kafka topic or lines of watched files, parsed with the local engine's parser.
    A CSV file's header line and blank lines are no records."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.header = [n.encode() for n in source.schema.names] if source.format == "csv" else None
        self.where = (f"from_kafka({source.topic!r})" if isinstance(source, KafkaSourceSpec)
                      else f"from_files({source.path!r})")

    def is_record(self, payload: bytes) -> bool:
        """Not blank, and not a CSV header: the schema's names, quoted or not (``fl.write_csv`` quotes them)."""
        return bool(payload.strip()) and not (
            self.header is not None and [f.strip().strip(b'"') for f in payload.strip().split(b",")] == self.header)

    def parse(self, payloads: list[bytes]) -> pa.Table:
        t, bad = parse_messages(payloads, self.source.format, self.source.schema)
        if bad:
            i, col, why = bad[0]
            raise ValueError(f"{self.where}: record {payloads[i][:200]!r}, column '{col}': {why} (dead letters are "
                             f"not translated to Flink yet; use the local engine for handle_invalid='skip')")
        return t


class RecordChain(_Records):
    """Payloads -> parsed rows -> the chain -> serialized rows, aligned with the payloads (None
    where the chain dropped the row)."""

    def __init__(self, source: Any, specs: list[Any], sink: Any) -> None:
        super().__init__(source)
        self.specs, self.sink = specs, sink

    def __call__(self, payloads: list[bytes]) -> list[bytes | None]:
        keep = [i for i, p in enumerate(payloads) if self.is_record(p)]
        out: list[bytes | None] = [None] * len(payloads)
        if keep:
            for i, message in zip(keep, self._chain([payloads[i] for i in keep])):
                out[i] = message
        return out

    def _chain(self, payloads: list[bytes]) -> list[bytes | None]:
        t = self.parse(payloads)
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


class WindowBatch(_Records):
    """A window's payloads -> one batch of parsed rows as Arrow IPC bytes (empty bytes when none
    is a record): the vectorized aggregate function of :func:`batches`."""

    def __call__(self, payloads: Any) -> bytes:
        records = [b for b in (bytes(v) for v in payloads) if self.is_record(b)]
        return to_ipc(self.parse(records)) if records else b""


def batches(env: Any, source: Any, name: str, seconds: float) -> Any:
    """A Kafka topic or watched directory as a DataStream of Arrow batches (IPC bytes) for the
    rest of a plan: Flink's connector reads it (offsets or files read in Flink's checkpoints), a
    tumbling processing-time window of ``seconds`` gathers the records of each Kafka partition or
    file (in their order, in Flink's window state until the window fires), and a vectorized
    (pandas) aggregate function of PyFlink's Table API parses each window's records at once."""
    from pyflink.common import Types
    from pyflink.table import DataTypes, EnvironmentSettings, StreamTableEnvironment
    from pyflink.table.udf import udaf

    if isinstance(source, KafkaSourceSpec):
        env.add_jars("file://" + connector_jar())
        place = "place INT METADATA FROM 'partition' VIRTUAL"
    else:
        place = "place STRING NOT NULL METADATA FROM 'file.path' VIRTUAL"
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    job = uuid.uuid4().hex[:12]
    t_env.execute_sql(f"CREATE TEMPORARY TABLE src_{job} (v BYTES, {place}, pt AS PROCTIME()) "
                      f"WITH ({_options(**_source_table(source, job))})")
    parse = udaf(WindowBatch(source), result_type=DataTypes.BYTES(), func_type="pandas")
    t_env.create_temporary_function(f"batch_{job}", parse)
    windows = t_env.sql_query(f"SELECT batch_{job}(v) AS b FROM src_{job} "
                              f"GROUP BY TUMBLE(pt, INTERVAL '{max(seconds, 0.001):.3f}' SECOND), place")
    return t_env.to_data_stream(windows).flat_map(_nonempty, output_type=Types.PICKLED_BYTE_ARRAY()).name(name)


def _nonempty(row: Any) -> Iterator[bytes]:
    if row[0]:
        yield bytes(row[0])


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
