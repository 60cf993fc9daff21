"""Plans on Flink's own connectors: a Kafka topic (``from_kafka``) or a watched directory of CSV /
JSON lines files (``from_files(watch=True)``) -> a chain of stateless nodes -> a Kafka topic
(``to_kafka``) or a directory (``to_files``, CSV / JSON lines).

(Watched Parquet directories and Parquet files written from a stream use Flink's Parquet format,
built on Hadoop's client classes: ``make jars`` fetches them into ``.jars/flink`` too.)

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
parses each window's records at once (:class:`WindowBatch`; a Parquet file's typed rows are put
together by :class:`ParquetWindow`). And other plans that write a topic,
or a stream of files, write them with the same connectors (:class:`FlinkSinks`): each batch's
rows, serialized as the local sinks do, go to Flink's Kafka or filesystem sink.
"""
from __future__ import annotations

import glob
import os
import urllib.parse
import uuid
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from flowlearn.engines.flink_functions import from_ipc, in_worker, to_ipc
from flowlearn.engines.flink_time import output_tag
from flowlearn.stream.files import FilesSourceSpec, first_parquet_schema
from flowlearn.stream.kafka import KafkaSinkSpec, KafkaSourceSpec, _serialize, messages, parse_messages
from flowlearn.stream.parsing import dead_letter_table
from flowlearn.stream.sinks import FilesSinkSpec

__all__ = ["connector_jar", "parquet_jars", "RecordChain", "WindowBatch", "ParquetWindow", "batches", "submit",
           "FlinkSinks", "SINKS"]

SINKS = (KafkaSinkSpec, FilesSinkSpec)

_ROW = "__flowlearn_message"
_STARTS = {"earliest": "earliest-offset", "latest": "latest-offset", "committed": "group-offsets"}


def _jars(patterns: list[str], what: str) -> list[str]:
    """The jars `make jars` put in ``.jars/flink`` of the source tree matching ``patterns`` (the
    newest of each), or a FileNotFoundError naming ``what`` needs them."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(root, ".jars", "flink", pattern)))
        if not found:
            raise FileNotFoundError(f"FlinkEngine: {what} need the jar {pattern} in .jars/flink (run `make jars`)")
        out.append(found[-1])
    return out


def connector_jar() -> str:
    """The Flink Kafka connector jar: ``$FLOWLEARN_FLINK_KAFKA_JAR`` or the one `make jars` put
    in ``.jars/flink`` of the source tree."""
    return os.environ.get("FLOWLEARN_FLINK_KAFKA_JAR") or _jars(
        ["flink-sql-connector-kafka-*.jar"], "Kafka plans (or set FLOWLEARN_FLINK_KAFKA_JAR)")[0]


def parquet_jars() -> list[str]:
    """Flink's Parquet format and the Hadoop client classes it is built on (not inside the
    apache-flink wheel): ``$FLOWLEARN_FLINK_PARQUET_JARS`` (paths joined by ``os.pathsep``) or
    the ones `make jars` put in ``.jars/flink``."""
    given = os.environ.get("FLOWLEARN_FLINK_PARQUET_JARS")
    if given:
        return given.split(os.pathsep)
    return _jars(["flink-sql-parquet-*.jar", "hadoop-client-api-*.jar", "hadoop-client-runtime-*.jar"],
                 "watched Parquet directories and streamed Parquet files")


# Arrow type -> (Flink SQL type, PyFlink row type) of the columns Flink's Parquet format reads and writes
_FLINK_TYPES = {pa.bool_(): ("BOOLEAN", "BOOLEAN"), pa.int8(): ("TINYINT", "BYTE"), pa.int16(): ("SMALLINT", "SHORT"),
                pa.int32(): ("INT", "INT"), pa.int64(): ("BIGINT", "LONG"), pa.float32(): ("FLOAT", "FLOAT"),
                pa.float64(): ("DOUBLE", "DOUBLE"), pa.string(): ("STRING", "STRING"),
                pa.large_string(): ("STRING", "STRING"), pa.date32(): ("DATE", "SQL_DATE")}


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)


def sql_type(t: pa.DataType, column: str) -> str:
    """The Flink SQL type Flink's Parquet format reads or writes for an Arrow column type."""
    if t in _FLINK_TYPES:
        return _FLINK_TYPES[t][0]
    if t in (pa.binary(), pa.large_binary()):
        return "BYTES"
    if pa.types.is_timestamp(t):
        digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
        return f"TIMESTAMP_LTZ({digits})" if t.tz else f"TIMESTAMP({digits})"
    if _is_list(t):
        return f"ARRAY<{sql_type(t.value_type, column)}>"
    raise NotImplementedError(f"FlinkEngine: column '{column}' has the type {t}, which flowlearn does not map to "
                              f"Flink's Parquet format (booleans, integers, floats, strings, binary, dates, "
                              f"timestamps and lists of these are mapped)")


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


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
            raise ValueError(f"{self.where}: record {payloads[i][:200]!r}, column '{col}': {why}; pass "
                             f"handle_invalid='skip' to route bad records to the dead-letter sink")
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
    out = {"connector": "kafka", "topic": sink.topic, "properties.bootstrap.servers": sink.bootstrap_servers}
    if sink.key_col is None:
        out["format"] = "raw"
    else:   # columns (k, v): k is the message's key, v its value
        out.update({"key.format": "raw", "key.fields": "k", "value.format": "raw",
                    "value.fields-include": "EXCEPT_KEY"})
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
    """A window's records -> one batch of parsed rows, then the records that failed to parse
    (``handle_invalid="skip"``) as dead letters, both as Arrow IPC bytes packed by
    :func:`pack_batch` (empty bytes when the window holds no record): the vectorized aggregate
    function of :func:`batches`. Its inputs: the payloads, each record's Kafka partition or
    file path, then for a Kafka topic each message's offset, key and timestamp (ms)."""

    def __call__(self, payloads: Any, places: Any, offsets: Any = None, keys: Any = None,
                 timestamps: Any = None) -> bytes:
        values = [bytes(v) for v in payloads]
        keep = [i for i, v in enumerate(values) if self.is_record(v)]
        if not keep:
            return b""
        records = [values[i] for i in keep]
        t, bad = parse_messages(records, self.source.format, self.source.schema)
        dead = b""
        if bad:
            i, col, why = bad[0]
            if self.source.handle_invalid == "error":
                raise ValueError(f"{self.where}: {self._location(places, offsets, keep[i])}, column '{col}': {why} "
                                 f"(record {records[i][:200]!r}); pass handle_invalid='skip' to route bad records "
                                 f"to the dead-letter sink")
            dead = to_ipc(dead_letter_table(
                self._source(places), [self._location(places, offsets, keep[j]) for j, _, _ in bad],
                [c for _, c, _ in bad],
                [r for _, _, r in bad], [records[j].decode("utf-8", "replace") for j, _, _ in bad]))
            good = np.ones(len(records), bool)
            good[[j for j, _, _ in bad]] = False
            keep = [k for k, g in zip(keep, good) if g]
        for m in getattr(self.source, "metadata_columns", ()):
            t = t.append_column(m, self._metadata(m, keep, places, offsets, keys, timestamps))
        return pack_batch(to_ipc(t) if t.num_rows else b"", dead)

    def _source(self, places: Any) -> str:
        """A dead letter's source, as the local engine names it (a window holds one file's records)."""
        if isinstance(self.source, KafkaSourceSpec):
            return f"kafka topic {self.source.topic}"
        path = str(places.iloc[0])
        return f"file {urllib.parse.urlparse(path).path if path.startswith('file:') else path}"

    def _location(self, places: Any, offsets: Any, i: int) -> str:
        if offsets is not None:
            return f"partition {int(places.iloc[i])}, offset {int(offsets.iloc[i])}"
        return "line not known (Flink's file connector gives no line numbers)"

    def _metadata(self, name: str, rows: list[int], places: Any, offsets: Any, keys: Any, timestamps: Any) -> pa.Array:
        """The Kafka metadata column ``name`` of ``rows``, as the local engine's source gives it."""
        if name == "topic":
            return pa.array([self.source.topic] * len(rows), pa.string())
        column = {"key": keys, "partition": places, "offset": offsets, "timestamp": timestamps}[name]
        values = column.to_numpy()[np.asarray(rows, np.int64)]   # one take, not a lookup per row
        if name == "key":
            return pa.array([None if v is None else bytes(v) for v in values], pa.binary())
        if name == "timestamp":
            return pa.array(values.astype(np.int64)).cast(pa.timestamp("ms"))
        return pa.array(values.astype(np.int32 if name == "partition" else np.int64))


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def parquet_schema(source: FilesSourceSpec) -> pa.Schema:
    """The columns of a watched Parquet directory: the source's schema, or else its first file's,
    as the local engine's reader takes them. Flink's Parquet reader is given its columns before
    the job starts, so a directory with no file yet needs ``schema=``."""
    schema = source.schema if source.schema is not None else first_parquet_schema(source.path, source.pattern)
    if schema is None:
        raise ValueError(f"from_files({source.path!r}): a watched directory of Parquet files with no file yet "
                         f"needs schema=... on Flink, whose Parquet reader is given its columns before the job "
                         f"starts")
    return schema


def parquet_inputs(schema: pa.Schema) -> str:
    """The arguments :class:`ParquetWindow` gets for the columns of ``schema``: each column, and
    for a number column its nulls apart (pandas, which PyFlink hands the columns to, would make
    an integer column with nulls floats, and a float column's nulls NaN)."""
    out = []
    for f in schema:
        c = _quoted(f.name)
        out.append(f"COALESCE({c}, CAST(0 AS {sql_type(f.type, f.name)})), {c} IS NULL" if _numeric(f.type) else c)
    return ", ".join(out)


class ParquetWindow:
    """A window's rows of a watched Parquet directory (read by Flink's Parquet format, handed
    over as pandas columns: see :func:`parquet_inputs`) -> one batch with the source's schema,
    packed as :class:`WindowBatch` packs its batches (no dead letters: a Parquet file's rows are
    typed, and a file that cannot be read fails the job as it fails the local engine's read)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def __call__(self, *columns: Any) -> bytes:
        given = iter(columns)
        arrays = []
        for f in self.schema:
            values = next(given)
            if _numeric(f.type):
                nulls = next(given).to_numpy(dtype=bool)
                arrays.append(pa.array(values.to_numpy(), mask=nulls if nulls.any() else None).cast(f.type))
            elif _is_list(f.type):
                arrays.append(pa.array(values, pa.list_(f.type.value_type), from_pandas=False).cast(f.type))
            else:
                arrays.append(pa.array(values, from_pandas=True).cast(f.type))
        t = pa.Table.from_arrays(arrays, schema=self.schema)
        return pack_batch(to_ipc(t), b"") if t.num_rows else b""


def pack_batch(rows: bytes, dead_letters: bytes) -> bytes:
    """Two IPC byte strings (either may be empty) as one: the length of the first (8 bytes,
    little endian), the first, the second."""
    return len(rows).to_bytes(8, "little") + rows + dead_letters if rows or dead_letters else b""


def unpack_batch(packed: bytes) -> tuple[bytes, bytes]:
    n = int.from_bytes(packed[:8], "little")
    return packed[8:8 + n], packed[8 + n:]


def _split_function() -> Any:
    """The class of Flink process function that unpacks :class:`WindowBatch`'s results: the rows
    on its output, the dead letters on the side output ``dead_letter`` when the plan reads it."""
    from pyflink.datastream import ProcessFunction

    class SplitBatches(ProcessFunction):
        def __init__(self, dead_letters: bool) -> None:
            self.dead_letters = dead_letters

        def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
            if row[0]:
                rows, dead = unpack_batch(bytes(row[0]))
                if dead and self.dead_letters:
                    yield output_tag("dead_letter"), dead
                if rows:
                    yield rows

    return SplitBatches


def batches(env: Any, source: Any, name: str, seconds: float, dead_letters: bool = False) -> Any:
    """A Kafka topic or watched directory as a DataStream of Arrow batches (IPC bytes) for the
    rest of a plan: Flink's connector reads it (offsets or files read in Flink's checkpoints), a
    tumbling processing-time window of ``seconds`` gathers the records of each Kafka partition or
    file (in their order, in Flink's window state until the window fires), and a vectorized
    (pandas) aggregate function of PyFlink's Table API parses each window's records at once.
    With ``dead_letters``, the records that fail to parse go to the side output ``dead_letter``."""
    from pyflink.common import Types
    from pyflink.table import DataTypes, EnvironmentSettings, StreamTableEnvironment
    from pyflink.table.udf import udaf

    job = uuid.uuid4().hex[:12]
    options = _source_table(source, job)
    window: Any = WindowBatch(source)
    if isinstance(source, KafkaSourceSpec):
        env.add_jars("file://" + connector_jar())
        columns = ["v BYTES", "place INT METADATA FROM 'partition' VIRTUAL",
                   "pos BIGINT METADATA FROM 'offset' VIRTUAL", "ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL"]
        inputs = "v, place, pos, k, UNIX_TIMESTAMP(CAST(ts AS STRING)) * 1000 + EXTRACT(MILLISECOND FROM ts)"
        if "key" in source.metadata_columns:   # the key read as the raw bytes it is
            columns.insert(0, "k BYTES")
            del options["format"]
            options.update({"key.format": "raw", "key.fields": "k", "value.format": "raw",
                            "value.fields-include": "EXCEPT_KEY"})
        else:
            inputs = inputs.replace(", k,", ", CAST(NULL AS BYTES),")
    elif source.format == "parquet":   # typed columns, read by Flink's Parquet format
        schema = parquet_schema(source)
        env.add_jars(*("file://" + j for j in parquet_jars()))
        columns = [f"{_quoted(f.name)} {sql_type(f.type, f.name)}" for f in schema]
        columns.append("place STRING NOT NULL METADATA FROM 'file.path' VIRTUAL")
        options["format"] = "parquet"
        inputs = parquet_inputs(schema) + ", place"
        window = ParquetWindow(schema)
    else:
        columns = ["v BYTES", "place STRING NOT NULL METADATA FROM 'file.path' VIRTUAL"]
        inputs = "v, place"
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE src_{job} ({', '.join(columns)}, pt AS PROCTIME()) "
                      f"WITH ({_options(**options)})")
    parse = udaf(window, result_type=DataTypes.BYTES(), func_type="pandas")
    t_env.create_temporary_function(f"batch_{job}", parse)
    windows = t_env.sql_query(f"SELECT batch_{job}({inputs}) AS b FROM src_{job} "
                              f"GROUP BY TUMBLE(pt, INTERVAL '{max(seconds, 0.001):.3f}' SECOND), place")
    return t_env.to_data_stream(windows).process(_split_function()(dead_letters),
                                                 output_type=Types.PICKLED_BYTE_ARRAY()).name(name)


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


class SinkRows:
    """A batch (IPC bytes) -> what Flink's sink of ``spec`` writes, serialized as the local sink
    does: a Kafka message per row, ``(key, value)`` with ``key_col``; for CSV or JSON lines files,
    one record of the batch's lines (Flink's raw format ends each record with a line break); for
    Parquet files, a record per row of its typed values (Flink's Parquet writer takes rows)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def __call__(self, record: bytes) -> tuple[list[tuple[Any, ...]], int]:
        """The sink's records for the batch ``record``, and its number of rows."""
        t = from_ipc(record)
        if not t.num_rows:
            return [], 0
        if isinstance(self.spec, FilesSinkSpec) and self.spec.format == "parquet":
            return list(zip(*(c.to_pylist() for c in t.columns))), t.num_rows
        if isinstance(self.spec, FilesSinkSpec):
            return [(b"\n".join(_serialize(t, self.spec.format)),)], t.num_rows
        keys, values = messages(t, self.spec.format, self.spec.key_col)
        return ([(v,) for v in values] if keys is None else list(zip(keys, values))), t.num_rows


def _type_info(t: pa.DataType, column: str) -> Any:
    """The PyFlink type of a row's value of an Arrow column type (see :func:`sql_type`)."""
    from pyflink.common import Types

    if t in _FLINK_TYPES:
        return getattr(Types, _FLINK_TYPES[t][1])()
    if t in (pa.binary(), pa.large_binary()):
        return Types.PRIMITIVE_ARRAY(Types.BYTE())
    if pa.types.is_timestamp(t) and t.unit != "ns":
        return Types.INSTANT() if t.tz else Types.SQL_TIMESTAMP()
    if _is_list(t) and t.value_type in _FLINK_TYPES and t.value_type != pa.date32():
        return Types.LIST(_type_info(t.value_type, column))   # (BASIC_ARRAY: thread mode cannot hand over a null list)
    raise NotImplementedError(f"FlinkEngine: column '{column}' has the type {t}, which flowlearn does not write "
                              f"with Flink's Parquet format (booleans, integers, floats, strings, binary, dates, "
                              f"timestamps to the microsecond and lists of numbers or strings are written)")


def _sink_rows_function() -> Any:
    """The class of Flink process function that feeds a Flink sink (made on first use, so this
    module imports without PyFlink): the rows of each batch (:class:`SinkRows`) on its output,
    and how many rows it wrote on the side output ``rows_written`` (as ``"\\t<rows>"``,
    a written file without its name, as the client reads it)."""
    from pyflink.datastream import ProcessFunction

    class SinkRowsFunction(ProcessFunction):
        def __init__(self, spec: Any) -> None:
            self.rows = SinkRows(spec)

        def process_element(self, record: bytes, ctx: Any) -> Iterator[Any]:
            from pyflink.common import Row

            out, rows = in_worker(self.rows, record)
            yield from (Row(*r) for r in out)
            if rows:
                yield output_tag("rows_written"), f"\t{rows}".encode()

    return SinkRowsFunction


class FlinkSinks:
    """The ``to_kafka`` and streamed ``to_files`` (CSV, JSON lines, Parquet) sinks of a DataStream job, on
    Flink's Kafka and filesystem connectors: with checkpoints, a Kafka transaction per
    checkpoint (``transactional=True``) and part files committed on checkpoints, so readers of
    committed data see every row once, also across a failure. Made with the specs of the job's
    Flink sinks; ``add`` each, then ``attach()`` them to the job before it is executed."""

    def __init__(self, env: Any, specs: list[Any], checkpoints: bool, checkpoint_interval: float) -> None:
        self.env, self.checkpoints, self.interval = env, checkpoints, checkpoint_interval
        self.kafka = any(isinstance(s, KafkaSinkSpec) for s in specs)
        self.parquet = any(isinstance(s, FilesSinkSpec) and s.format == "parquet" for s in specs)
        self.t_env: Any = None
        self.statements: Any = None

    def add(self, ds: Any, spec: Any, name: str, schema: pa.Schema | None = None) -> Any:
        """Feed ``ds`` (batches) to the sink ``spec``; returns the stream of the rows-written counts.
        A Parquet sink needs the ``schema`` of the batches (Flink's writer is given its columns
        before the job starts)."""
        from pyflink.common import Types
        from pyflink.table import StreamTableEnvironment

        if self.t_env is None:
            # before the Table API's planner is made: its classloader gets the jars
            if self.kafka:
                self.env.add_jars("file://" + connector_jar())
            if self.parquet:
                self.env.add_jars(*("file://" + j for j in parquet_jars()))
            self.t_env = StreamTableEnvironment.create(self.env)
            self.statements = self.t_env.create_statement_set()
        job = uuid.uuid4().hex[:12]
        options = _sink_table(spec, job, self.interval, self.checkpoints)
        if isinstance(spec, FilesSinkSpec) and spec.format == "parquet":
            if schema is None:
                raise NotImplementedError(f"FlinkEngine: the sink {name!r} writes Parquet files of a stream whose "
                                          f"columns are known only at run time; Flink's Parquet writer is given its "
                                          f"columns before the job starts (write CSV or JSON lines, or give the "
                                          f"stream's stage its output schema)")
            names = schema.names
            row_type = Types.ROW_NAMED(names, [_type_info(f.type, f.name) for f in schema])
            types = [sql_type(f.type, f.name) for f in schema]
            options["format"] = "parquet"
            units = {f.type.unit for f in schema if pa.types.is_timestamp(f.type)}
            if units:   # Parquet's INT64 timestamps in the finest unit of the columns (not legacy INT96)
                options.update({"parquet.write.int64.timestamp": "true",
                                "parquet.timestamp.time.unit": "micros" if "us" in units else "millis"})
        else:
            keyed = isinstance(spec, KafkaSinkSpec) and spec.key_col is not None
            names = ["k", "v"] if keyed else ["v"]
            row_type = Types.ROW_NAMED(names, [Types.PRIMITIVE_ARRAY(Types.BYTE())] * len(names))
            types = ["BYTES"] * len(names)
        rows = ds.process(_sink_rows_function()(spec), output_type=row_type).name(name)
        columns = ", ".join(f"{_quoted(n)} {t}" for n, t in zip(names, types))
        self.t_env.execute_sql(f"CREATE TEMPORARY TABLE out_{job} ({columns}) WITH ({_options(**options)})")
        self.t_env.create_temporary_view(f"rows_{job}", self.t_env.from_data_stream(rows))
        casts = ", ".join(f"CAST({_quoted(n)} AS {t}) AS {_quoted(n)}" for n, t in zip(names, types))
        self.statements.add_insert(f"out_{job}", self.t_env.sql_query(f"SELECT {casts} FROM rows_{job}"))
        return rows.get_side_output(output_tag("rows_written"))

    def attach(self) -> None:
        if self.statements is not None:
            self.statements.attach_as_datastream()
