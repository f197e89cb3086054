"""How an exception becomes the one line a user reads and an exit code, or stays a bug with its traceback.

A project error (``LeadscoreError``) is the user's to fix: its message and exit code as they are. So is the
machine's state: a full disk or a refused permission, however deep in a library it surfaced. Anything else is
a bug in leadscore and keeps its traceback.
"""

from __future__ import annotations

import errno

from leadscore.errors import LeadscoreError
from leadscore.paths import Home
from leadscore.runtime import free_bytes, min_free_bytes

# What a full disk or a missing permission looks like when it surfaces through a library.
_DISK_FULL = ("No space left on device", "database or disk is full", "Disk quota exceeded")
_FULL = "free some space and run again"
_REFUSED = "fix the permissions and run again"
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: ("no space left on the device", _FULL), errno.EDQUOT: ("disk quota exceeded", _FULL),
                       errno.EFBIG: ("file too large for this system's limits", _FULL),
                       errno.EACCES: ("permission denied", _REFUSED), errno.EPERM: ("operation not permitted", _REFUSED),
                       errno.EROFS: ("read-only file system", _REFUSED),
                       errno.ENOTDIR: ("a file stands where a folder was expected", "choose another path"),
                       errno.EISDIR: ("a folder stands where a file was expected", "choose another path")}


def environment_problem(exc: BaseException) -> str | None:
    """A one-line description if ``exc`` (or what caused it) is a full disk or a refused permission."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            what, advice = _ENVIRONMENT_ERRNOS[exc.errno]
            where = f" at {exc.filename}" if exc.filename else ""
            return f"{what}{where}; {advice}"
        text = str(exc)
        if any(s in text for s in _DISK_FULL):
            return f"no space left on the device ({text.splitlines()[0][:200]}); {_FULL}"
        exc = exc.__cause__ or exc.__context__
    return None


def low_space(home: Home | None) -> str | None:
    """When the home's device is nearly full, any failure is most likely that (a database that runs out of
    space mid-run fails in its own words, and cannot even log why)."""
    if home is None:
        return None
    free = free_bytes(home)
    if free is None or free >= max(min_free_bytes(), 4_000_000):
        return None
    return f"only {free / 1e6:.1f} MB free on the device holding {home.root}, which is most likely why; {_FULL}"


def user_message(exc: BaseException, home: Home | None = None) -> tuple[str, int] | None:
    """(the line to print, the exit code) for a problem the user can fix; None for a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    space = low_space(home)
    if isinstance(exc, LeadscoreError):
        message = str(exc)
        return (f"{message} ({space})" if space and "MB free" not in message else message), exc.exit_code
    if type(exc).__name__ == "KilledWorker":  # a task whose worker died each time it ran
        from leadscore.cluster import WORKER_MEMORY

        return (f"engine: Dask gave up on the task {exc.task!r}: the worker running it died, "
                f"{exc.allowed_failures + 1} times; {WORKER_MEMORY}"), 2
    problem = environment_problem(exc)
    if problem is not None:
        return problem, 2
    if space is not None:
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}; {space}", 2
    return None
