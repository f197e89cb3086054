"""Column names every floor agrees on: canonical tables, the feature frame and the published files.

An export may name its columns anything, including names leadscore uses itself (``campaign``, ``lead_id``,
``label``, ``reason``). So inside the pipeline a mapped export column never keeps its bare name: it travels as
``export:<name>`` (see :func:`export_column`) beside the role columns, and only the published files give it
its own name back, where the config has checked that it cannot collide.
"""

from __future__ import annotations

import re
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


# Names CRM and marketing exports give to columns that are filled in after contact or after the outcome (a
# call's duration, the lead's status or quality, sales tags, the stage reached). Mapped as a feature, such a column
# teaches the model the future; the guard names it even when its AUC stays below the limit. Matched on the
# column name in lower case with every run of other characters as one space.
POST_OUTCOME_NAMES = ("duration", "call duration", "status", "lead status", "quality", "lead quality", "tags", "tag",
                      "lead profile", "last activity", "last notable activity", "stage", "deal stage", "outcome",
                      "converted", "conversion", "closed", "close date", "won", "lost reason", "reason lost",
                      "disqualified reason", "rating", "lead rating", "lead score", "score",
                      # as Salesforce, HubSpot and Dynamics 365 export them
                      "isconverted", "converteddate", "convertedopportunityid", "lifecycle stage", "lifecyclestage",
                      "statuscode", "statecode", "leadqualitycode", "number of sales activities",
                      "became a customer date", "recent deal close date", "days to close", "last contacted",
                      "number of times contacted", "actualdurationminutes")


def column_words(col) -> str:
    """A column name as words for matching: lower case, every run of other characters one space."""
    return re.sub(r"[^0-9a-z]+", " ", str(col).lower()).strip()


def post_outcome_columns(columns, allow: tuple[str, ...] = ()) -> dict[str, str]:
    """Mapped columns whose names are well-known post-outcome ones: column -> the name it matched."""
    known = sorted(set(POST_OUTCOME_NAMES), key=len, reverse=True)  # the most specific name first
    out = {}
    for col in columns:
        words = column_words(col)
        if col in allow or not words:
            continue
        if words in known:
            out[col] = words
        else:
            for name in known:  # "Lead Status Reason", "Total call duration (s)"
                if f" {name} " in f" {words} " and len(name) > 3:
                    out[col] = name
                    break
    return out
