"""Starts the test server as a child process on free loopback ports (benchmarks and tests)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes via a proxy


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """The test server (``rocket-ctr serve``) in a child process, as a context manager.

    Args:
        base: the export base (``--model_base_path``).
        model_name: ``--model_name``.
        args: extra server flags, e.g. ``["--max-candidates", "50"]``.
        timeout: seconds to wait for a version to become AVAILABLE (loaded and warmed up).
    Attributes:
        grpc_target, rest_target: ``grpc://127.0.0.1:P`` and ``http://127.0.0.1:R``.
    """

    def __init__(self, base, model_name: str = "model", args=(), timeout: float = 120.0):
        self.base, self.model_name, self.args, self.timeout = Path(base), model_name, list(args), timeout
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.grpc_target, self.rest_target = f"grpc://{HOST}:{self.grpc_port}", f"http://{HOST}:{self.rest_port}"
        self.process = None
        self._log = None

    def start(self, wait: bool = True) -> ServerProcess:
        """Starts the server; ``wait``: until a version is AVAILABLE (warmed up)."""
        self._log = tempfile.NamedTemporaryFile(prefix="rocket-ctr-serve-", suffix=".log", delete=False)
        command = [sys.executable, "-m", "rocket_ctr.pipelines.cli", "serve", "--host", HOST,
                   "--port", str(self.grpc_port), "--rest_api_port", str(self.rest_port),
                   "--model_name", self.model_name, "--model_base_path", str(self.base), *self.args]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_for_version(None, self.timeout)
        return self

    def status(self) -> list:
        """The REST status list, or [] while the server is not answering."""
        url = f"{self.rest_target}/v1/models/{self.model_name}"
        try:
            with _DIRECT.open(url, timeout=2) as response:
                return json.loads(response.read())["model_version_status"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return []

    def wait_for_version(self, version: int | None, timeout: float) -> None:
        """Blocks until ``version`` (None: any) is AVAILABLE. Raises RuntimeError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"test server exited with {self.process.returncode}:\n{self.log_tail()}")
            if any(s["state"] == "AVAILABLE" and (version is None or s["version"] == str(version))
                   for s in self.status()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"test server: version {version or 'any'} not AVAILABLE after {timeout:.0f}s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> ServerProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
