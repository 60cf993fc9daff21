"""Shared pieces of the property-based bad-input suite (tests/test_properties_*.py).

- The contract every entry point is judged by: :func:`outcome` runs a call and records what
  happened; :func:`check` classifies it as ``ok``, a ``clear`` error or a ``defect`` and fails
  the test on a defect. A clear error is a ``ValueError``/``TypeError`` (flowlearn's own
  subclasses count, pyarrow's/json's/NumPy's do not) or an HTTP 4xx, whose message names every
  required word (the column or parameter, and the row where one is involved). Defects: a crash,
  a hang, any other exception type, a message that does not say what is wrong.
- :data:`ISOLATED`: a long-lived child process that runs calls which could crash the
  interpreter (Numba/SciPy kernels on sparse vectors, the HTTP body parser on deep nesting). A
  segfault or abort fails that one call with the exit status; the child is restarted.
- :func:`run_snippet`: one ``python -c`` snippet in a fresh process, for explicit reproducers.
- Hypothesis strategies for bad cells, numbers, vectors, CSV and JSON lines.
"""
from __future__ import annotations

import json
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from hypothesis import strategies as st

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
CALL_TIMEOUT = float(os.environ.get("FLOWLEARN_PROPERTY_TIMEOUT", "120"))


# ---------------------------------------------------------------------------------------------
# outcomes and the contract

@dataclass
class Outcome:
    """What one call did. ``kind``: ``ok``, ``raised``, ``crash`` (the process died) or ``hang``."""

    kind: str
    value: Any = None
    error_type: str = ""            # module-qualified name of the exception class
    message: str = ""
    status: int | None = None       # the HTTP status of an HTTP error
    clear_type: bool = False        # ValueError/TypeError or a flowlearn subclass of them
    trace: str = ""
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "ok":
            return f"returned {self.value!r}"[:2000]
        if self.kind == "raised":
            return f"raised {self.error_type}: {self.message}\n{self.trace}"[:4000]
        return f"{self.kind}: {self.message}"[:4000]


def _qualname(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_clear_type(e: BaseException) -> bool:
    t = type(e)
    if t in (ValueError, TypeError):
        return True
    return isinstance(e, (ValueError, TypeError)) and t.__module__.startswith("flowlearn")


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    """Call ``fn`` here (in this process) and record the result or the exception."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - classifying every outcome is the point
            if isinstance(e, KeyboardInterrupt):
                raise
            status = getattr(e, "status", None)
            return Outcome("raised", error_type=_qualname(type(e)), message=str(getattr(e, "message", None) or e),
                           status=status if isinstance(status, int) else None, clear_type=_is_clear_type(e),
                           trace="".join(traceback.format_exception(e)[-6:]),
                           warnings=[f"{w.category.__name__}: {w.message}" for w in caught])
    return Outcome("ok", value=value, warnings=[f"{w.category.__name__}: {w.message}" for w in caught])


Words = Sequence["str | Sequence[str]"]


def _missing_words(message: str, words: Words) -> list:
    missing = []
    for w in words:
        alternatives = [w] if isinstance(w, str) else list(w)
        if not any(a in message for a in alternatives):
            missing.append(w)
    return missing


def classify(o: Outcome, names: Words = (), http: bool = False) -> tuple[str, str]:
    """``("ok" | "clear" | "defect", why)``. ``names``: words the error message must contain
    (a tuple among them means any one of its alternatives). ``http``: errors must be HTTP 4xx."""
    if o.kind == "ok":
        return "ok", ""
    if o.kind in ("crash", "hang"):
        return "defect", o.describe()
    if http:
        if o.status is None or not 400 <= o.status < 500:
            return "defect", f"not an HTTP 4xx: {o.describe()}"
    elif not o.clear_type:
        return "defect", f"raw exception type: {o.describe()}"
    missing = _missing_words(o.message, names)
    if missing:
        return "defect", f"the message does not name {missing}: {o.describe()}"
    return "clear", ""


def check(o: Outcome, names: Words = (), http: bool = False, ok: bool = True, context: Any = None) -> str:
    """Assert the contract; returns ``"ok"`` or ``"clear"``. ``ok=False``: the input is bad, so
    returning normally is a defect too (it was accepted silently)."""
    kind, why = classify(o, names, http)
    where = f"\ninput: {context!r}"[:3000] if context is not None else ""
    assert kind != "defect", why + where
    assert ok or kind == "clear", f"bad input was accepted: {o.describe()}{where}"
    return kind


# ---------------------------------------------------------------------------------------------
# running calls in a child process

def _child_main() -> None:
    """The child's loop: read a pickled ``(fn, args, kwargs)``, answer a pickled Outcome."""
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                       # anything the library prints goes to stderr, not the protocol
    proto_in = os.fdopen(os.dup(0), "rb")
    while True:
        head = proto_in.read(8)
        if len(head) < 8:
            return
        call = outcome(pickle.loads, proto_in.read(struct.unpack("<Q", head)[0]))
        if call.kind == "ok":
            fn, args, kwargs = call.value
            sys.stderr.write(f"--- case {getattr(fn, '__name__', fn)}\n")
            sys.stderr.flush()
            o = outcome(fn, *args, **kwargs)
        else:
            o = call   # the test's own bug (an unpicklable call), reported as such
        try:
            data = pickle.dumps(o)
        except Exception as e:  # noqa: BLE001 - an unpicklable result is reported, not fatal
            o.value = f"<unpicklable {type(o.value).__name__}: {e}>"
            data = pickle.dumps(o)
        proto_out.write(struct.pack("<Q", len(data)) + data)
        proto_out.flush()


class Isolated:
    """Run calls in a long-lived child Python (restarted after a crash or a hang).

    ``ISOLATED(fn, *args)`` returns an :class:`Outcome`; ``fn`` must be a module-level function
    of a module importable from tests/ (it is pickled by reference)."""

    def __init__(self, timeout: float = CALL_TIMEOUT) -> None:
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        self._stderr = tempfile.TemporaryFile()
        code = f"import sys; sys.path.insert(0, {TESTS_DIR!r}); import strategies; strategies._child_main()"
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, cwd=REPO_DIR, env=env)
        return self._proc

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        return text[-3000:]

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
        with self._lock:
            proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
            if self._stderr is not None:
                self._stderr.seek(0)
                self._stderr.truncate()
            data = pickle.dumps((fn, args, kwargs))
            try:
                proc.stdin.write(struct.pack("<Q", len(data)) + data)
                proc.stdin.flush()
                head = self._read(proc, 8)
                if isinstance(head, bytes):
                    body = self._read(proc, struct.unpack("<Q", head)[0])
                    if isinstance(body, bytes):
                        return pickle.loads(body)
                    head = body
            except BrokenPipeError:
                head = "eof"
            if head == "timeout":
                self._stop()
                return Outcome("hang", message=f"no answer within {self.timeout} s")
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                rc = "none (it closed its output but did not exit)"
            tail = self._stderr_tail()
            self._stop()
            return Outcome("crash", message=f"the process died with exit status {rc}\n{tail}")

    def _read(self, proc: subprocess.Popen, n: int) -> bytes | str:
        """``n`` bytes of the answer, or ``"timeout"`` / ``"eof"``."""
        out = b""
        fd = proc.stdout.fileno()
        while len(out) < n:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                return "timeout"
            chunk = os.read(fd, n - len(out))
            if not chunk:
                return "eof"
            out += chunk
        return out

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self._stop()


ISOLATED = Isolated()


def run_snippet(code: str, timeout: float = CALL_TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python -c`` in a fresh process (repo root as working directory)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_DIR, env=dict(os.environ, PYTHONFAULTHANDLER="1"))


# ---------------------------------------------------------------------------------------------
# strategies

#: Finite floats that break naive arithmetic (overflow of squares and sums, underflow).
EXTREME_FLOATS = [1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 1e-300, 1e300, -0.0]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]

extreme_floats = st.sampled_from(EXTREME_FLOATS)
non_finite = st.sampled_from(NON_FINITE)
huge_ints = st.sampled_from([2 ** 63 - 1, -(2 ** 63), 2 ** 64, 10 ** 30, -(10 ** 400)])

#: JSON-ish scalars of the wrong kind for a numeric or vector cell.
wrong_scalars = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.sampled_from(["NaN", "Infinity", "1e400", "", " ", "0x10", "1,5", "[]", "{}"]),
)


def json_values(max_leaves: int = 8) -> st.SearchStrategy:
    """Arbitrary JSON values (what a producer may put in any field)."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids,
                                                                                       max_size=3),
                        max_leaves=max_leaves)


def deep_json(depth: int, kind: str = "list") -> str:
    """A JSON text nested ``depth`` levels deep."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def csv_field(text: str) -> str:
    """``text`` as one CSV field (quoted when needed)."""
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def dumps_json_line(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)
