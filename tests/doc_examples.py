"""Run the ```python blocks of a page of docs/ (or of one ``## section`` of it) as the tests
that keep every code example in the docs true."""
from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def run_doc_examples(page: str, section: str | None = None) -> None:
    """Execute each python block of ``docs/<page>`` (within ``## <section>`` when given), each in
    a fresh namespace; fails if there is none."""
    doc = DOCS / page
    text = doc.read_text()
    if section is not None:
        text = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"no python example in {page}" + (f", section {section!r}" if section else "")
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {"__name__": f"docs_{doc.stem}"})
