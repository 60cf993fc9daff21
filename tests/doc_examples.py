"""Run the ```python blocks of README.md and docs/**/*.md as the tests that keep every code example
in the docs true.

Rules (also in docs/contributing.md):

- The blocks of one page run in order in one namespace, so a later block may use what an earlier
  one built (``model``, ``train``, ...). Pages run in a fresh temporary working directory, so
  relative paths such as ``"model/"`` are created there.
- A block that talks to Kafka writes the broker address as ``127.0.0.1:9092``; the runner points
  it at the test broker (the ``kafka_broker`` fixture of tests/conftest.py).
- ```python no-run marks a block that cannot run here (e.g. a cluster submission); it is shown,
  not executed, and listed by :func:`no_run_blocks`. Keep them rare.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_BROKER = "127.0.0.1:9092"

_FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", flags=re.S | re.M)


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    no_run: bool

    @property
    def needs_kafka(self) -> bool:
        return DOC_BROKER in self.code


def doc_pages() -> list[Path]:
    """README.md and every page under docs/, sorted."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _page_path(page: str | Path) -> Path:
    p = Path(page)
    if p.is_absolute():
        return p
    return ROOT / p if (ROOT / p).exists() and p.parts[0] in ("docs", "README.md") else DOCS / p


def blocks(page: str | Path, section: str | None = None) -> list[Block]:
    """The python blocks of a page (within ``## <section>`` when given), in order."""
    path = _page_path(page)
    text = path.read_text()
    offset = 0
    if section is not None:
        head, sep, rest = text.partition(f"## {section}")
        assert sep, f"no section {section!r} in {path}"
        offset = head.count("\n")
        text = sep + rest.split("\n## ", 1)[0]
    out = []
    for m in _FENCE.finditer(text):
        info = m.group(1).split()
        line = offset + text.count("\n", 0, m.start(2)) + 1
        out.append(Block(path, line, m.group(2), "no-run" in info))
    return out


def no_run_blocks() -> list[Block]:
    """Every block marked ``no-run`` in README.md and docs/."""
    return [b for page in doc_pages() for b in blocks(page) if b.no_run]


def run_blocks(bs: list[Block], broker: str | None = None, namespace: dict | None = None) -> dict:
    """Execute ``bs`` in order in one namespace (returned); a block's line numbers in a traceback
    are the page's."""
    ns = {"__name__": f"docs_{bs[0].path.stem}"} if namespace is None else namespace
    for b in bs:
        if b.no_run:
            continue
        code = b.code
        if b.needs_kafka:
            assert broker is not None, f"{b.path.name}:{b.line} needs the test Kafka broker"
            code = code.replace(DOC_BROKER, broker)
        exec(compile("\n" * (b.line - 1) + code, str(b.path), "exec"), ns)
    return ns


def run_doc_examples(page: str, section: str | None = None, broker: str | None = None) -> None:
    """Execute each python block of ``docs/<page>`` (within ``## <section>`` when given), in order,
    in one namespace; fails if there is none."""
    bs = blocks(page, section)
    assert bs, f"no python example in {page}" + (f", section {section!r}" if section else "")
    run_blocks(bs, broker)
