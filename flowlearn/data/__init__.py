"""Data layer: ``fl.table``, schema strings, and readers/writers for CSV, JSON lines and Parquet."""
from flowlearn.data.io import (
    format_vector,
    parse_vector,
    read_csv,
    read_json,
    read_parquet,
    write_csv,
    write_json,
    write_parquet,
)
from flowlearn.data.schema import parse_schema, schema_to_string
from flowlearn.data.table import table

__all__ = [
    "table", "parse_schema", "schema_to_string", "read_csv", "read_json", "read_parquet",
    "write_csv", "write_json", "write_parquet", "parse_vector", "format_vector",
]
