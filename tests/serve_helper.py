"""`flowlearn serve` in a child process, for the HTTP tests that go through the command line."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from typing import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def cli_server(path: str, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start `flowlearn serve path --port 0 *args`; yields the process and the server's base URL,
    and kills the process at the end if the test has not stopped it."""
    proc = subprocess.Popen([sys.executable, "-m", "flowlearn.cli.serve", "serve", path, "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, m.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
