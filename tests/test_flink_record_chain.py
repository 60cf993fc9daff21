"""The Python side of plans on Flink's connectors (flowlearn.engines.flink_connectors.RecordChain),
which needs no Flink: the lines of a CSV file written by ``fl.write_csv`` go through a chain and
come out as the local engine's ``to_files`` writes them; the header line is no record."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.engines.flink_connectors import RecordChain


def test_csv_lines_through_a_chain_equal_the_local_engine(tmp_path):
    rng = np.random.default_rng(1)
    t = fl.table({"id": np.arange(40), "a": rng.normal(size=40), "city": ["oslo", "rome"] * 20})
    fl.write_csv(t, str(tmp_path / "in.csv"))
    schema = "id long, a double, city string"
    indexer = fl.feature.StringIndexer(input_cols=["city"], output_cols=["ci"]).fit(t)
    stream = fls.from_files(str(tmp_path / "in.csv"), format="csv", schema=schema, watch=False)
    sink = indexer.transform(stream).filter(pc.field("a") > 0.0).select("id", "ci").to_files(
        str(tmp_path / "out"), format="json")
    chain = [n.spec for n in reversed(list(_chain_nodes(sink.node)))]
    lines = (tmp_path / "in.csv").read_bytes().splitlines()
    assert lines[0] == b'"id","a","city"'                      # fl.write_csv quotes the header
    out = RecordChain(stream.node.spec, chain, sink.node.spec)(lines)
    assert out[0] is None                                      # the header is no record
    got = [json.loads(v) for v in out if v is not None]
    fl.run(sink, engine="local").wait()
    want = [json.loads(line) for p in sorted((tmp_path / "out").iterdir()) if p.is_file()
            for line in p.read_text().splitlines()]
    assert got == want and len(got) == int((t.column("a").to_numpy() > 0).sum())


def _chain_nodes(sink_node):
    n = sink_node.inputs[0]
    while n.inputs:
        yield n
        n = n.inputs[0]
