"""A standalone Flink cluster for tests: a jobmanager and taskmanagers started with the scripts
inside the apache-flink wheel (``pyflink/bin``), on free loopback ports, with a configuration of
their own (a temporary ``FLINK_CONF_DIR``; the wheel's ``conf/`` is not touched) and logs in a
temporary folder. ``kill_taskmanager()`` SIGKILLs a taskmanager process, ``start_taskmanager()``
adds one.

Example (needs the flink extra and Java 17):
    >>> with FlinkCluster(slots=2) as c:                     # doctest: +SKIP
    ...     FlinkEngine(parallelism=2, cluster=c.address)
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlinkCluster:
    def __init__(self, slots: int = 2, start_timeout: float = 120.0) -> None:
        import pyflink

        self.home = os.path.dirname(os.path.abspath(pyflink.__file__))
        self.dir = tempfile.mkdtemp(prefix="flowlearn-flink-cluster-")
        self.slots, self.start_timeout = slots, start_timeout
        self.rest_port, self.rpc_port = _free_port(), _free_port()
        self.address = f"localhost:{self.rest_port}"
        self._taskmanagers = 0

    def _config(self) -> None:
        conf = os.path.join(self.dir, "conf")
        shutil.copytree(os.path.join(self.home, "conf"), conf)
        venv_bin = os.path.dirname(sys.executable)
        settings = {
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": self.rpc_port,
            "jobmanager.bind-host": "localhost",
            "rest.address": "localhost",
            "rest.bind-address": "localhost",
            "rest.port": self.rest_port,
            "taskmanager.bind-host": "localhost",
            "taskmanager.host": "localhost",
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": "0",
            "taskmanager.numberOfTaskSlots": self.slots,
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.memory.process.size": "2560m",
            "taskmanager.memory.managed.size": "128m",
            # what the Python workers of a standalone cluster need (the measurements): direct
            # memory for Arrow batches, metaspace for many PyFlink jobs, small bundles of big records
            "taskmanager.memory.task.off-heap.size": "512m",
            "taskmanager.memory.jvm-metaspace.size": "768m",
            "python.fn-execution.bundle.size": "16",
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "heartbeat.timeout": "10000",
            "heartbeat.interval": "1000",
        }
        with open(os.path.join(conf, "config.yaml")) as f:   # keep the wheel's JVM options (--add-opens for Arrow)
            opts = re.search(r"^\s+all:\s*(--add.*)$", f.read(), flags=re.M)
        if opts:
            settings["env.java.opts.all"] = opts.group(1).strip()
        with open(os.path.join(conf, "config.yaml"), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in settings.items())
        self.env = {**os.environ, "FLINK_CONF_DIR": conf, "FLINK_LOG_DIR": os.path.join(self.dir, "log"),
                    "FLINK_PID_DIR": os.path.join(self.dir, "pid"), "FLINK_HOME": self.home,
                    "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
        os.makedirs(self.env["FLINK_LOG_DIR"])
        os.makedirs(self.env["FLINK_PID_DIR"])

    def _script(self, name: str, *args: str) -> None:
        r = subprocess.run(["bash", os.path.join(self.home, "bin", name), *args], env=self.env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")

    def _rest(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=2) as r:
            return r.read().decode()

    def _wait_slots(self, n: int) -> None:
        import json

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                if json.loads(self._rest("/overview"))["slots-total"] >= n:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the Flink cluster did not offer {n} slots within {self.start_timeout}s; logs in "
                           f"{self.env['FLINK_LOG_DIR']}")

    def start(self) -> "FlinkCluster":
        self._config()
        self._script("jobmanager.sh", "start")
        self.start_taskmanager()
        return self

    def start_taskmanager(self) -> None:
        self._script("taskmanager.sh", "start")
        self._taskmanagers += 1
        self._wait_slots(self.slots)

    def taskmanager_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"TaskManagerRunner.*{self.env['FLINK_CONF_DIR']}"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill_taskmanager(self) -> None:
        """SIGKILL every taskmanager JVM (its Python workers die with it)."""
        pids = self.taskmanager_pids()
        if not pids:
            raise RuntimeError("no taskmanager process to kill")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for name in ("taskmanager.sh", "jobmanager.sh"):
            try:
                self._script(name, "stop-all" if name == "taskmanager.sh" else "stop")
            except (subprocess.SubprocessError, OSError):
                pass
        for pid in self.taskmanager_pids():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "FlinkCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
