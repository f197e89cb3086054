"""What a run records about itself: which code and which data it saw."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def data_fingerprint(paths: list[Path]) -> str:
    """sha256 over the export files' bytes (name order), so a run can say exactly which data it saw."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def wait_policy() -> str:
    """How this process's OpenMP threads wait (chosen at start by ``runtime.choose_wait_policy``)."""
    return os.environ.get("OMP_WAIT_POLICY") or "default (spin)"
