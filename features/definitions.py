"""The feature table: every feature the model sees, defined once.

A feature is a name, the words a person reads about it, and a source saying what it is computed from. The
batch build (:mod:`features.build`: duckdb SQL over every lead, for training) and the online build
(:mod:`features.online`: arrays over the snapshot a scoring run saves, for batch scoring and the API) both
render this table and name no feature of their own; what "known at time t" means for either is
:mod:`features.pit`'s. Tests compare both renderings with a plain loop over the definitions.

Sources:

- ``Column``: a lead's own column, as exported (a mapped attribute, or its campaign's or source's name).
- ``Calendar``: the weekday (ISO, 1 = Monday), hour or month of ``created_at`` in ``data.timezone``.
- ``Count``: events of a stream with the lead's key, known strictly before its ``created_at``; with a window of
  ``w`` days, those at or after ``created_at - w days``; with a level, only activities of that type.
- ``DaysSince``: days (whole seconds / 86,400) from the latest such event to ``created_at`` (with a level: the
  latest activity of that type, or the latest time the lead reached that stage).
- ``Age``: days (whole seconds / 86,400) from the lead's ``created_at`` to the moment.
- ``SmoothedRate``: ``(matured wins + m * overall matured win rate) / (matured leads + m)`` of the lead's key,
  counting leads whose horizon had passed before ``created_at``; a key with few leads is pulled toward the
  overall rate, so a new campaign is not judged on three leads.

Streams: ``activities`` and ``stages`` (the stage changes short of a win or a loss; key: the lead), ``leads``
(each lead's ``created_at``), ``wins`` (its first win), ``matured`` (``created_at + horizon``) and
``matured_wins`` (the same, for leads won within the horizon). Outcomes are known up to ``as_of`` only: the
matured streams are cut there for leads created later.

Two tables. :func:`feature_table` describes a lead at the moment it arrived (``created_at``): what the ``fit``
model learns. :func:`now_table` describes it at any later moment (a landmark of its history, or the moment it
is scored): its attributes, its age, its engagement, the stages it reached and its campaign's history as known
then. A day is 24 hours everywhere (see ``leadscore.duck.days``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from leadscore.config import Config, LeadsTable
from leadscore.contract import OUTCOME_COLUMNS, ROLE_COLUMNS

ROLES = ("campaign", "source", "account")
CALENDAR = (("weekday", "weekday of sign-up"), ("hour", "hour of sign-up"), ("month", "month of sign-up"))
CAPPED_AT_AS_OF = ("matured", "matured_wins")  # their events can lie after as_of, where nothing is known yet


@dataclass(frozen=True)
class Column:
    column: str  # the canonical column: a role ("campaign") or "export:<name>"


@dataclass(frozen=True)
class Calendar:
    part: Literal["weekday", "hour", "month"]


@dataclass(frozen=True)
class Count:
    stream: Literal["activities", "leads", "wins"]
    key: str  # "lead" or a role
    window_days: int | None = None
    level: str | None = None  # activities of this type only


@dataclass(frozen=True)
class DaysSince:
    stream: Literal["activities", "stages"]
    key: str
    level: str | None = None  # the latest activity of this type, or stage of this name, only


@dataclass(frozen=True)
class Age:
    pass


@dataclass(frozen=True)
class SmoothedRate:
    key: str  # a role
    strength: float


Source = Column | Calendar | Count | DaysSince | Age | SmoothedRate
SOURCES = {cls.__name__: cls for cls in (Column, Calendar, Count, DaysSince, Age, SmoothedRate)}


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Literal["categorical", "numeric"]
    words: str
    source: Source

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "words": self.words,
                "source": {"type": type(self.source).__name__, **asdict(self.source)}}

    @staticmethod
    def from_json(d: dict) -> Feature:
        source = dict(d["source"])
        return Feature(d["name"], d["kind"], d["words"], SOURCES[source.pop("type")](**source))


def slug(text: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    return s or "col"


# Columns of the landmark rows besides features, and the shapes of the names the feature tables generate
# (``campaign_name``, ``created_month``, ``act_email_open_7d``, ``now_days_since_demo``, ``source_win_rate``, ...):
# an export column whose slug looks like one of them gets an ``attr_`` name instead, so no export can collide.
LANDMARK_COLUMNS = ("at", "landmark_days", "weight")
GENERATED_PREFIXES = ("act_", "now_", "days_since_", "created_", "attr_", "age_", *(f"{r}_" for r in ROLES))


def attribute_features(lc: LeadsTable) -> dict[str, str]:
    """Feature name -> export column of the mapped categorical, then numeric, columns: a name no other column
    has taken or could take."""
    used = set(ROLE_COLUMNS) | set(OUTCOME_COLUMNS) | set(LANDMARK_COLUMNS)
    names = {}
    for col in (*lc.categorical, *lc.numeric):
        name, n = slug(col), 2
        while name in used or (n == 2 and name.startswith(GENERATED_PREFIXES)):
            name, n = f"attr_{slug(col)}" if n == 2 else f"attr_{slug(col)}_{n}", n + 1
        used.add(name)
        names[name] = col
    return names


def activity_keys(types: list[str]) -> list[str]:
    """The key of each activity type in feature names: its slug, made unique ("E-mail open" and "email open"
    slug alike; "any" stands for every type)."""
    keys: list[str] = []
    for t in types:
        key, n = slug(t), 2
        while key in keys or key == "any":
            key, n = f"{slug(t)}_{n}", n + 1
        keys.append(key)
    return keys


def _activity_counts(cfg: Config, activity_types: list[str], prefix: str, when: str) -> list[Feature]:
    """Activities in each window before the moment a row describes, of any type and of each type. ``when``
    words the window, with ``{w}`` for its days."""
    levels = [(None, "any", "activity"), *zip(activity_types, activity_keys(activity_types), activity_types)]
    return [Feature(f"{prefix}{key}_{w}d", "numeric", f"{text} {when.format(w=w)}", Count("activities", "lead", w, level))
            for level, key, text in levels for w in sorted(set(cfg.features.windows_days))]


def feature_table(cfg: Config, activity_types: list[str] | None) -> list[Feature]:
    """Every feature of this config, in the frame's order. ``activity_types``: the types engagement is counted
    for (the most frequent ones in the data; None: the export has no activities)."""
    lc = cfg.data.leads
    table: list[Feature] = []
    for role in ("campaign", "source"):
        if getattr(lc, role):
            table.append(Feature(f"{role}_name", "categorical", getattr(lc, role), Column(role)))
    for name, col in attribute_features(lc).items():
        kind = "numeric" if col in lc.numeric else "categorical"
        table.append(Feature(name, kind, col, Column(lc.internal_column(col))))
    if not lc.created_at:  # a snapshot export: no time, so no calendar, engagement or history
        return table
    for part, words in CALENDAR:
        table.append(Feature(f"created_{part}", "numeric", words, Calendar(part)))
    if activity_types is not None:
        table += _activity_counts(cfg, activity_types, "act_", "in the {w} days before sign-up")
        table.append(Feature("days_since_last_activity", "numeric", "days since the last activity before sign-up",
                             DaysSince("activities", "lead")))
    if not cfg.snapshot:
        m = float(cfg.features.prior_strength)
        for role in ROLES:
            if not getattr(lc, role):
                continue
            table += [
                Feature(f"{role}_prior_leads", "numeric", f"earlier leads from this {role}", Count("leads", role)),
                Feature(f"{role}_prior_wins", "numeric", f"earlier wins from this {role}", Count("wins", role)),
                Feature(f"{role}_win_rate", "numeric", f"win rate of this {role} (smoothed)", SmoothedRate(role, m)),
            ]
    return table


def now_table(cfg: Config, activity_types: list[str] | None, stages: list[str]) -> list[Feature]:
    """Every feature of a lead as known at a moment after its arrival, in the frame's order: what the model of
    a win from now on learns (landmark rows) and scores with. ``stages``: the stages short of a decision that
    the export records (e.g. qualified, proposal)."""
    lc = cfg.data.leads
    table = [f for f in feature_table(cfg, None) if isinstance(f.source, (Column, Calendar))]
    table.append(Feature("age_days", "numeric", "days since the lead arrived", Age()))
    if activity_types is not None:
        table += _activity_counts(cfg, activity_types, "now_act_", "in the last {w} days")
        table.append(Feature("now_days_since_last_activity", "numeric", "days since the last activity",
                             DaysSince("activities", "lead")))
        for t, key in zip(activity_types, activity_keys(activity_types)):
            table.append(Feature(f"now_days_since_{key}", "numeric", f"days since the last {t}",
                                 DaysSince("activities", "lead", t)))
    for stage, key in zip(stages, activity_keys(stages)):
        table.append(Feature(f"now_days_since_stage_{key}", "numeric", f"days since the lead reached {stage}",
                             DaysSince("stages", "lead", stage)))
    m = float(cfg.features.prior_strength)
    for role in ROLES:
        if getattr(lc, role):
            table += [
                Feature(f"now_{role}_prior_leads", "numeric", f"leads from this {role} so far", Count("leads", role)),
                Feature(f"now_{role}_prior_wins", "numeric", f"wins from this {role} so far", Count("wins", role)),
                Feature(f"now_{role}_win_rate", "numeric", f"win rate of this {role} so far (smoothed)",
                        SmoothedRate(role, m)),
            ]
    return table


def time_groups(definitions: list[dict]) -> dict[str, list[str]]:
    """Features that may tell the model *when* a lead arrived rather than what it is: the month of sign-up (on a
    drifting export, a time ID), and running counts of leads and wins (they grow with time, so the newest
    leads lie outside the range training saw). Training keeps a group only if the validation leads, newer than
    every training lead, say it helps."""
    groups: dict[str, list[str]] = {"month of sign-up": [], "running counts of leads and wins": []}
    for d in definitions:
        source = d["source"]
        if source["type"] == "Calendar" and source.get("part") == "month":
            groups["month of sign-up"].append(d["name"])
        elif source["type"] == "Count" and source.get("stream") in ("leads", "wins"):
            groups["running counts of leads and wins"].append(d["name"])
    return {name: names for name, names in groups.items() if names}


def to_json(table: list[Feature]) -> list[dict]:
    return [f.to_json() for f in table]


def from_json(rows: list[dict]) -> list[Feature]:
    return [Feature.from_json(r) for r in rows]
