"""Process set-up done once, at the CLI's edge, before Prefect or MLflow is imported."""

from __future__ import annotations

import logging
import os

from leadscore.errors import LeadscoreError
from leadscore.paths import Home


def prepare_environment(home: Home) -> None:
    """Point Prefect's local server and MLflow at ``home`` and keep their chatter down.

    Prefect reads its settings when it is imported, so this must run first. A ``PREFECT_API_URL`` that the
    user set (their own server) is respected; otherwise Prefect starts a temporary local server whose
    database lives in ``home/prefect``.
    """
    home.ensure()
    check_free_space(home)
    os.environ["PREFECT_HOME"] = str(home.prefect)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # Prefect's console handler stays quiet: leadscore prints its own progress, a user error becomes one line
    # and a real bug still ends in its traceback. Flow and task logs still reach Prefect's server and UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("MLFLOW_TRACKING_URI", home.tracking_uri)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for noisy in ("mlflow", "alembic", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def min_free_bytes() -> int:
    """The free space a run needs on the device holding its home (LEADSCORE_MIN_FREE_MB, default 64 MB): below
    it, databases fail half-way (Prefect's answers HTTP 500 and cannot even log why)."""
    return int(float(os.environ.get("LEADSCORE_MIN_FREE_MB", "64")) * 1_000_000)


def free_bytes(home: Home) -> int | None:
    import shutil

    try:
        return shutil.disk_usage(home.root).free
    except OSError:
        return None


def check_free_space(home: Home) -> None:
    free = free_bytes(home)
    if free is not None and free < min_free_bytes():
        raise LeadscoreError(f"only {free / 1e6:.1f} MB free on the device holding {home.root}; a run needs at least "
                             f"{min_free_bytes() / 1e6:.0f} MB (LEADSCORE_MIN_FREE_MB): free some space and run again")


def die_with_parent(parent_pid: int | None = None) -> None:
    """End this process when the process that started it ends, even by ``kill -9``: on Linux the kernel sends
    SIGTERM (``PR_SET_PDEATHSIG``); everywhere a watchdog thread checks the parent every second as well."""
    import signal
    import threading
    import time

    expected = parent_pid or os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog alone
    if os.getppid() != expected:  # the parent died before the signal was armed
        os._exit(0)

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="leadscore-parent-watch", daemon=True).start()
