"""A ``dagster-webserver`` subprocess on a free loopback port, stopped with its children."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

PROJECT = Path(__file__).resolve().parents[2]
WEBSERVER = PROJECT / ".venv" / "bin" / "dagster-webserver"


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Webserver:
    """``dagster-webserver -h 127.0.0.1 -p PORT -m recs_pipeline.definitions`` with an env."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = env
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log_file = self.log.open("wb")
        # A session of its own: stop() signals the webserver and its code server together. The
        # default SIGINT/SIGTERM handlers: a pytest started in the background ignores both, and
        # a child would inherit that (the webserver would then outlive stop()'s SIGTERM).
        self.process = subprocess.Popen(
            [
                str(WEBSERVER),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                "recs_pipeline.definitions",
            ],
            cwd=PROJECT,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until ``/server_info`` answers; an exited process or a timeout raises with its log."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dagster-webserver exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"dagster-webserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
