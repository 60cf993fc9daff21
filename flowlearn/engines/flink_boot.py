"""PyFlink's boot of a process-mode Python worker on the session mini-cluster, without its imports.

In process mode, every Python operator of a job has Beam start a worker: PyFlink's JVM runs
``pyflink-udf-runner.sh``, which runs ``$python -m pyflink.fn_execution.beam.beam_boot --id=...
--provision_endpoint=...``. On a mini-cluster with a loopback server (flowlearn's session
clusters), that boot process only asks the client's worker pool, over gRPC, to run the worker
in the client (a ``StartWorker`` call that returns when the worker ends), yet it first imports
``pyflink.fn_execution``: Apache Beam's coders and I/O, pandas and PyArrow, about 1 s of CPU
per job, most of a small job's start-up.

``FlinkEngine`` points ``python.executable`` at a script (``BootServer.script``) that runs this
file's ``main`` with ``python -I -S``: it hands its arguments and environment to a
``BootServer`` in the client over a local socket (standard library only, about 20 ms), and
waits there as PyFlink's boot does; the server makes the same ``StartWorker`` call on PyFlink's
worker pool in the client (which runs the worker on the server's thread) and answers when the
worker ends. Anything else (no loopback server, another command, no server) runs the real
interpreter with the same arguments. Run by path: the launcher imports nothing of flowlearn.
"""
from __future__ import annotations

import json
import os
import socket
import sys

_BOOT_MODULE = "pyflink.fn_execution.beam.beam_boot"
_ENV = "FLOWLEARN_FLINK_BOOT"   # "port token" of the client's BootServer, set by the script


def _options(args: list[str]) -> dict[str, str]:
    """beam_boot's options (``--id``, ``--provision_endpoint``, ``--semi_persist_dir``), in
    either ``--name=value`` or ``--name value`` form."""
    out, i = {}, 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if not eq and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        out[name.lstrip("-")] = value
        i += 1
    return out


def _recv_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def main(python: str, argv: list[str]) -> int:
    """The launcher: ``python`` is the real interpreter, ``argv`` the runner's arguments."""
    params = dict(os.environ)
    port, _, token = params.pop(_ENV, "").partition(" ")
    opts = _options(argv[2:]) if argv[:2] == ["-m", _BOOT_MODULE] else {}
    if port and "PYTHON_LOOPBACK_SERVER_ADDRESS" in params and "id" in opts and "provision_endpoint" in opts:
        params["SEMI_PERSISTENT_DIRECTORY"] = opts.get("semi_persist_dir", "/tmp")
        request = {"token": token, "worker_id": opts["id"], "provision_endpoint": opts["provision_endpoint"],
                   "params": params}
        try:
            s = socket.create_connection(("127.0.0.1", int(port)))
        except OSError:
            s = None   # (no server: PyFlink's own boot)
        if s is not None:
            with s:
                s.sendall(json.dumps(request).encode("utf-8", "surrogateescape"))
                s.shutdown(socket.SHUT_WR)
                error = _recv_all(s).decode("utf-8", "replace")   # when the worker ends
            if error:
                sys.stderr.write(f"Error starting worker: {error}\n")
                return 1
            return 0
    os.environ.pop(_ENV, None)
    os.execv(python, [python] + argv)
    return 1


class BootServer:
    """The client's end: a local socket whose connections (from ``main``) each start a Python
    worker on PyFlink's loopback worker pool, on the connection's own thread."""

    def __init__(self, folder: str) -> None:
        import secrets
        import shlex
        import threading

        self._token = secrets.token_hex(16)
        self.started = 0   # workers started
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        port = self._sock.getsockname()[1]
        self.script = os.path.join(folder, "python")
        q = shlex.quote
        with open(self.script, "w") as f:
            f.write(f"#!/bin/sh\n{_ENV}={q(f'{port} {self._token}')} exec {q(sys.executable)} -I -S "
                    f"{q(os.path.abspath(__file__))} {q(sys.executable)} \"$@\"\n")
        os.chmod(self.script, 0o700)
        threading.Thread(target=self._accept, name="flowlearn-flink-boot", daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            conn, _ = self._sock.accept()
            threading.Thread(target=self._serve, args=(conn,), name="flowlearn-flink-worker", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        import hmac

        from apache_beam.portability.api import beam_fn_api_pb2, endpoints_pb2
        from pyflink.fn_execution.beam.beam_worker_pool_service import BeamFnLoopbackWorkerPoolServicer

        with conn:
            try:
                request = json.loads(_recv_all(conn).decode("utf-8", "surrogateescape"))
                if not hmac.compare_digest(str(request.get("token", "")), self._token):
                    return
                params = {k: v for k, v in request["params"].items() if _utf8(k) and _utf8(v)}
                start = beam_fn_api_pb2.StartWorkerRequest(
                    worker_id=request["worker_id"], params=params,
                    provision_endpoint=endpoints_pb2.ApiServiceDescriptor(url=request["provision_endpoint"]))
                self.started += 1
                error = BeamFnLoopbackWorkerPoolServicer().StartWorker(start, None).error   # until the worker ends
            except Exception as e:  # noqa: BLE001 - the launcher reports it
                error = f"{type(e).__name__}: {e}"
            try:
                conn.sendall(error.encode())
            except OSError:
                pass   # (the launcher was stopped: a cancelled job)


def _utf8(s: str) -> bool:
    """Whether ``s`` is a protobuf string (an environment entry that is not UTF-8 is left out, as
    PyFlink's boot could not send it either)."""
    try:
        s.encode()
        return True
    except UnicodeEncodeError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
