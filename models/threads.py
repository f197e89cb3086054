"""How many threads LightGBM may use for one prediction."""

from __future__ import annotations


def threads_for(rows: int) -> dict:
    """One thread for small inputs: starting OpenMP threads (which then spin, waiting for more work) costs far
    more than predicting a few hundred leads, and steals the core a server's next request needs."""
    return {"num_threads": 1} if rows < 20_000 else {}
