"""Every ```python block of README.md and docs/**/*.md runs as written (tests/doc_examples.py has
the rules: one namespace per page, blocks in order, the test Kafka broker for ``127.0.0.1:9092``,
``no-run`` only for blocks that cannot run here)."""
from __future__ import annotations

import importlib.util

import pytest
from doc_examples import ROOT, blocks, doc_pages, no_run_blocks, run_blocks

# Blocks allowed to be marked no-run, by page and first line of code: each needs something a test
# cannot have. A new no-run block fails test_no_run_blocks_are_the_listed_ones until listed here.
NO_RUN: dict[str, str] = {}


def _cases():
    for page in doc_pages():
        bs = blocks(page)
        if not any(not b.no_run for b in bs):
            continue
        marks = []
        if any(b.needs_kafka for b in bs):
            marks.append(pytest.mark.kafka)
        if any("FlinkEngine(" in b.code for b in bs):
            marks.append(pytest.mark.flink)
        yield pytest.param(page, marks=marks, id=str(page.relative_to(ROOT)))


@pytest.mark.parametrize("page", list(_cases()))
def test_doc_page_examples_run(page, request, tmp_path, monkeypatch):
    bs = blocks(page)
    if any("FlinkEngine(" in b.code for b in bs) and importlib.util.find_spec("pyflink") is None:
        pytest.skip("needs PyFlink (the flink extra; runs in .venv-flink)")
    broker = request.getfixturevalue("kafka_broker") if any(b.needs_kafka for b in bs) else None
    monkeypatch.chdir(tmp_path)
    run_blocks(bs, broker)


def test_no_run_blocks_are_the_listed_ones():
    found = {f"{b.path.relative_to(ROOT)}:{b.code.strip().splitlines()[0]}" for b in no_run_blocks()}
    assert found == {f"{k}:{v}" for k, v in NO_RUN.items()}


def test_the_runner_finds_blocks_and_keeps_the_page_namespace(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# t\n\n```python\nx = 2\n```\n\ntext\n\n```python no-run\nraise SystemExit\n```\n"
                    "```python\ny = x * 21\n```\n```sh\nexit 1\n```\n")
    bs = blocks(page)
    assert [(b.line, b.no_run) for b in bs] == [(4, False), (10, True), (13, False)]
    assert run_blocks(bs)["y"] == 42


def test_a_failing_block_reports_the_page_line(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```python\nok = 1\n```\n\n```python\nok += 1\nundefined_name\n```\n")
    with pytest.raises(NameError) as info:
        run_blocks(blocks(page))
    tb = info.traceback[-1]
    assert str(tb.path) == str(page) and tb.lineno + 1 == 7
