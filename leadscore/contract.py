"""Column names every floor agrees on: canonical tables, the feature frame and the published files.

An export may name its columns anything, including names leadscore uses itself (``campaign``, ``lead_id``,
``label``, ``reason``). So inside the pipeline a mapped export column never keeps its bare name: it travels as
``export:<name>`` (see :func:`export_column`) beside the role columns, and only the published files give it
its own name back, where the config has checked that it cannot collide.
"""

from __future__ import annotations

EXPORT_PREFIX = "export:"

# Role columns of the canonical leads table and of the feature frame.
ROLE_COLUMNS = ("lead_id", "created_at", "campaign", "source", "account")
# What the feature frame knows about each lead's outcome.
OUTCOME_COLUMNS = ("label", "mature", "is_open", "won_at")
# The published scores' first columns, in order (campaign and source follow, then the passthrough columns).
SCORE_COLUMNS = ("lead_id", "probability", "score", "tier", "rank", "reasons", "route", "model_version", "scored_at")
PUBLISHED_ROLES = ("campaign", "source")
RESERVED_PUBLISHED = frozenset(SCORE_COLUMNS) | frozenset(PUBLISHED_ROLES)


def export_column(name: str) -> str:
    """The internal name of a mapped export column."""
    return EXPORT_PREFIX + name


def export_name(column: str) -> str:
    """The export's own name of an internal column (the inverse of :func:`export_column`)."""
    return column.removeprefix(EXPORT_PREFIX)
