"""Column names every floor agrees on: canonical tables, the feature frame and the published files.

An export may name its columns anything, including names leadscore uses itself (``campaign``, ``lead_id``,
``label``, ``reason``). So inside the pipeline a mapped export column never keeps its bare name: it travels as
``export:<name>`` (see :func:`export_column`) beside the role columns, and only the published files give it
its own name back, where the config has checked that it cannot collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

EXPORT_PREFIX = "export:"

# Role columns of the canonical leads table and of the feature frame.
ROLE_COLUMNS = ("lead_id", "created_at", "campaign", "source", "account")
# What the feature frame knows about each lead's outcome.
OUTCOME_COLUMNS = ("label", "mature", "is_open", "won_at")
# The published scores' first columns, in order (campaign and source follow, then the passthrough columns).
SCORE_COLUMNS = ("lead_id", "probability", "fit", "score", "tier", "rank", "trend", "reasons", "fit_reasons", "route",
                 "model_version", "scored_at")
PUBLISHED_ROLES = ("campaign", "source")
RESERVED_PUBLISHED = frozenset(SCORE_COLUMNS) | frozenset(PUBLISHED_ROLES)


def export_column(name: str) -> str:
    """The internal name of a mapped export column."""
    return EXPORT_PREFIX + name


def export_name(column: str) -> str:
    """The export's own name of an internal column (the inverse of :func:`export_column`)."""
    return column.removeprefix(EXPORT_PREFIX)


@dataclass
class FeatureSet:
    """The frame (one row per lead) and which of its columns are model features.

    ``frame`` is None when the features were written straight to a Parquet file (large exports).
    """

    frame: pa.Table | None
    categorical: list[str]
    numeric: list[str]
    labels: dict[str, str] = field(default_factory=dict)  # feature -> words a person reads
    counts: dict[str, int] = field(default_factory=dict)
    mode: str = "events"  # "snapshot": outcome from a label column, random split, no history features
    definitions: list[dict] = field(default_factory=list)  # the feature table (features.definitions), as JSON

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def metadata(self, extra: dict | None = None) -> dict:
        """What a reader of the saved frame needs to know besides its columns."""
        return {"categorical": self.categorical, "numeric": self.numeric, "labels": self.labels,
                "counts": self.counts, "mode": self.mode, "definitions": self.definitions, **(extra or {})}


METADATA_KEY = "leadscore.features"
