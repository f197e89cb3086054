"""The temporary Prefect server of one leadscore command, used when ``PREFECT_API_URL`` names none.

Prefect would start the same server itself (uvicorn with ``prefect.server.api.server:create_app``, its database
in ``PREFECT_HOME``), but as a plain child process: a run killed with ``kill -9`` left it listening. Started
from here, the server ends with the process that started it (``leadscore.runtime.die_with_parent``), and a
server that cannot start (a full disk, a broken database) is said in one line.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from leadscore.errors import LeadscoreError


class PrefectServerError(LeadscoreError):
    pass


class TemporaryServer:
    def __init__(self, prefect_home: Path, timeout: float):
        self.log_path = prefect_home / "server.log"
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
               "LEADSCORE_PARENT_PID": str(os.getpid())}
        env.pop("PREFECT_API_URL", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "flows.server", str(port)], env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        self.url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise PrefectServerError(f"the temporary Prefect server did not start: {self._last_line()} "
                                         f"(log: {self.log_path})")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self.url
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise PrefectServerError(f"the temporary Prefect server did not answer within {self.timeout:.0f} s "
                                 f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); log: {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        _drain_prefect()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _last_line(self) -> str:
        try:
            lines = [l for l in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
        except OSError:
            return "no log"
        errors = [l for l in lines if "Error" in l or "error" in l]
        return (errors or lines or ["no output"])[-1].strip()[:300]


def _drain_prefect() -> None:
    """Send what Prefect still holds (logs, events) while its server is up; it would try at exit otherwise,
    and print that it could not."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # noqa: BLE001 - a failed flush must not hide the run's own outcome
            pass


def start_temporary_server(prefect_home: Path) -> TemporaryServer:
    """Start the server and point this process's Prefect at it (before Prefect is imported)."""
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
    server = TemporaryServer(prefect_home, timeout)
    os.environ["PREFECT_API_URL"] = server.start()
    return server


def _serve(port: int) -> None:
    from leadscore.runtime import die_with_parent

    die_with_parent(int(os.environ["LEADSCORE_PARENT_PID"]))
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
