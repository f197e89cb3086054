"""Process set-up done once, at the CLI's edge, before Prefect or MLflow is imported."""

from __future__ import annotations

import logging
import os

from leadscore.errors import LeadscoreError
from leadscore.paths import Home


def prepare_environment(home: Home) -> list[str]:
    """Point Prefect's local server and MLflow at ``home``, keep their chatter down, and choose how OpenMP threads
    wait (:func:`choose_wait_policy`). Returns what the caller should tell the user once logging is set up.

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
    return choose_wait_policy()


def choose_wait_policy(busy_share: float = 0.25) -> list[str]:
    """OpenMP threads that sleep when idle (``OMP_WAIT_POLICY=PASSIVE``) if other processes already keep the cores
    busy when leadscore starts, else OpenMP's default (threads that spin a while between tasks). OpenMP reads it
    once, when LightGBM is first imported, so it is decided here, before that.

    On 2 cores (``make bench``, contention cases): training 1M leads with spinning threads takes 4.3 s alone and
    13.5 s beside a busy core (lightgbm#7399); sleeping threads 6.4 s and 8.0 s. So: sleep only when the machine
    is loaded. A value the user set is kept."""
    if os.environ.get("OMP_WAIT_POLICY"):
        return []
    busy = busy_cores()
    cores = os.cpu_count() or 1
    if not machine_is_busy(busy, cores, busy_share):
        return []
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return [f"the machine is busy ({busy:.1f} of {cores} cores in use by other processes): OpenMP threads sleep when "
            "idle (OMP_WAIT_POLICY=PASSIVE), so LightGBM's threads do not fight them for the cores"]


def machine_is_busy(busy: float | None, cores: int, busy_share: float = 0.25) -> bool:
    """Other processes keep at least ``busy_share`` of the cores busy (half a core of two)."""
    return busy is not None and busy >= busy_share * cores


def busy_cores(seconds: float = 0.2) -> float | None:
    """How many cores other processes keep busy, measured over ``seconds`` (None if it cannot be measured)."""
    try:
        import psutil

        return psutil.cpu_percent(interval=seconds) / 100 * (os.cpu_count() or 1)
    except (ImportError, OSError):
        return None


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


def release_memory() -> None:
    """Hand memory freed by a finished step back to the system: Arrow's allocator and glibc's keep freed pages for
    reuse, so the next step's peak would stack on the last one's (a 3M-lead run peaked 3 GB higher in training
    than training alone)."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
