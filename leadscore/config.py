"""One typed config: the TOML file becomes one frozen object, validated at start-up.

Relative paths in the file are resolved against the folder that holds the file, so a config works from
any working directory. Errors name the key (``data.leads.id``) and what was wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from leadscore.contract import RESERVED_PUBLISHED, export_column
from leadscore.errors import ConfigError
from leadscore.paths import Home

UTC = timezone.utc
NonEmpty = Annotated[str, Field(min_length=1)]
# Numbers from TOML are numbers: `true` is not 1 and "0.5" is not 0.5 (lax parsing would take both silently).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]


def _check_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'") from None
    return value


Zone = Annotated[str, AfterValidator(_check_zone)]


class _Section(BaseModel):
    # Unknown keys are errors: a typo must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_encoding(value: str | None) -> str | None:
    import codecs

    if value is None:
        return None
    try:
        text = codecs.lookup(value)._is_text_encoding  # "hex" or "rot13" are codecs, but not of text files
    except LookupError:
        text = False
    if not text:
        raise ValueError(f"unknown encoding {value!r}; use e.g. 'utf-8', 'utf-8-sig', 'latin-1' or 'cp1252', "
                         "or leave it out to detect")
    return value


def _check_delimiter(value: str | None) -> str | None:
    if value is not None and (len(value) != 1 or value in "\"\r\n"):
        raise ValueError("must be one character such as ',', ';', '\\t' or '|'")
    return value


class FileTable(_Section):
    path: Path
    format: Literal["auto", "csv", "parquet"] = "auto"
    delimiter: Annotated[str | None, AfterValidator(_check_delimiter)] = None  # CSV only; None means detect
    # CSV only; None means detect: UTF-8 (with or without BOM) if the whole file is valid UTF-8, else latin-1.
    encoding: Annotated[str | None, AfterValidator(_check_encoding)] = None
    # The decimal separator of numbers in text: "auto" is "," for a ";"-delimited file, else ".".
    decimal: Literal["auto", ".", ","] = "auto"


class LeadsTable(FileTable):
    id: NonEmpty
    created_at: str | None = None  # required unless the export is a snapshot (see `label`)
    # Snapshot exports: the outcome is a column of the leads file, and there is no outcomes table.
    label: str | None = None
    positive: tuple[str, ...] = ("1", "yes", "true", "won", "converted")  # compared case-insensitively
    # Outcome dates as columns of the leads file (a deals export's won_time / lost_time, HubSpot's "Became a
    # Customer Date"): a filled cell is the lead's win (or loss) at that time, an empty one is none yet.
    won_at: str | None = None
    lost_at: str | None = None
    campaign: str | None = None
    source: str | None = None
    account: str | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()

    @field_validator("passthrough")
    @classmethod
    def _not_a_published_name(cls, value: tuple[str, ...], info) -> tuple[str, ...]:
        roles = {info.data.get(r) for r in ("campaign", "source")}
        for i, col in enumerate(value):
            if col in RESERVED_PUBLISHED and col not in roles:
                raise ValueError(f"[{i}] {col!r} is a column leadscore publishes itself "
                                 f"({', '.join(sorted(RESERVED_PUBLISHED))}); leave it out or rename it in the export")
        return value

    def internal_column(self, name: str) -> str:
        """Where a mapped export column lives in canonical tables: its role's column, else ``export:<name>``."""
        for role in ("campaign", "source", "account"):
            if getattr(self, role) == name:
                return role
        return export_column(name)

    def mapped_columns(self) -> set[str]:
        """Export columns a published score row can be filtered on (routing)."""
        roles = {c for c in (self.campaign, self.source, self.account) if c}
        return roles | set(self.categorical) | set(self.numeric) | set(self.passthrough)

    @model_validator(mode="after")
    def _no_column_twice(self) -> LeadsTable:
        roles: dict[str, str] = {}
        for role in ("id", "created_at", "label", "won_at", "lost_at", "campaign", "source", "account"):
            col = getattr(self, role)
            if col:
                if col in roles:
                    raise ValueError(f"column {col!r} is mapped as both {roles[col]} and {role}")
                roles[col] = role
        for role in ("categorical", "numeric", "passthrough"):
            for col in getattr(self, role):
                if role == "passthrough" and roles.get(col) in ("id", "campaign", "source", "account"):
                    continue  # copying an id or a campaign to the published scores is fine
                if col in roles:
                    raise ValueError(f"column {col!r} is mapped as both {roles[col]} and {role}")
                roles[col] = role
        return self


class OutcomesTable(FileTable):
    lead_id: NonEmpty
    stage: NonEmpty
    occurred_at: NonEmpty
    amount: str | None = None


class ActivitiesTable(FileTable):
    lead_id: NonEmpty
    type: NonEmpty
    occurred_at: NonEmpty


class CampaignsTable(FileTable):
    campaign: NonEmpty
    cost: NonEmpty
    channel: str | None = None


class DataConfig(_Section):
    as_of: datetime | None = None
    timezone: Zone = "UTC"  # how to read timestamps that carry no zone
    # How to read dates written with the year last (20/09/2024, 09-20-2024): "DMY" day first, "MDY" month first.
    # Unset, such a date is unreadable: 01/02/2025 could be either. ISO dates and 31.12.2025 read either way.
    date_order: Literal["DMY", "MDY"] | None = None
    # A timestamp before this is a placeholder (1900-01-01, 0001-01-01), not a date: its row is quarantined.
    earliest: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    max_quarantine_share: Float = Field(0.05, ge=0, le=1)
    leads: LeadsTable
    outcomes: OutcomesTable | None = None
    activities: ActivitiesTable | None = None
    campaigns: CampaignsTable | None = None

    @field_validator("as_of", "earliest")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def stage_key(name: str) -> str:
    """A stage's name as compared: case folded, without spaces, hyphens or underscores ("Closed Won",
    "closed-won" and "CLOSED_WON" are one stage; "=Closed Won" is not). Exports spell a stage several ways where
    people typed it or a tool renamed it."""
    return re.sub(r"[\s_-]+", "", name.casefold()) or name


class LabelConfig(_Section):
    won_stages: tuple[NonEmpty, ...] = ()
    lost_stages: tuple[str, ...] = ()
    # Stages that are neither won nor lost. If given, a stage outside all three lists is quarantined.
    other_stages: tuple[str, ...] | None = None
    horizon_days: Int = Field(90, gt=0, le=3650)
    # The ages (days after arrival) at which the model of a win from now on looks at each lead still open: one
    # row per lead and landmark, at an age drawn (by a hash of the lead id) in the span since the previous
    # landmark. It must hold 0 (arrival): tiers are cut on leads as they arrive.
    landmarks_days: tuple[Annotated[Int, Field(ge=0, le=3650)], ...] = (0, 7, 14, 30, 60, 90, 180, 365)

    @model_validator(mode="after")
    def _disjoint(self) -> LabelConfig:
        lost = {stage_key(s) for s in self.lost_stages}
        both = sorted(s for s in self.won_stages if stage_key(s) in lost)
        if both:
            raise ValueError(f"stages {both} are listed as both won and lost (stage names are compared without case, "
                             "spaces, hyphens or underscores)")
        return self

    @field_validator("landmarks_days")
    @classmethod
    def _arrival_landmark(cls, ages: tuple[int, ...]) -> tuple[int, ...]:
        if 0 not in ages:
            raise ValueError("must include 0: the tiers are cut on leads as they arrive (the landmark at age 0)")
        return ages


class FeaturesConfig(_Section):
    windows_days: tuple[Annotated[Int, Field(gt=0)], ...] = (7, 30, 90)
    max_activity_types: Int = Field(12, ge=0)
    prior_strength: Float = Field(20.0, gt=0)
    # Leakage guard: a feature this predictive on its own stops training unless listed in allow_leaky.
    max_single_auc: Float = Field(0.95, gt=0.5, le=1.0)
    allow_leaky: tuple[str, ...] = ()
    # Memory duckdb may use while building features; beyond it, it spills to home/tmp.
    memory_limit: str = Field("4GB", pattern=r"^\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$")


class EvaluationConfig(_Section):
    """Optional known truth (synthetic data): only compared with the model after training, never learned from."""

    truth_path: Path | None = None
    truth_id: str = "Lead ID"
    truth_probability: str = "true_probability"


class TrainConfig(_Section):
    seed: Int = 42
    num_threads: Int = Field(0, ge=0)  # 0 lets LightGBM pick
    valid_fraction: Float = Field(0.15, gt=0, lt=0.5)
    test_fraction: Float = Field(0.15, gt=0, lt=0.5)
    num_boost_round: Int = Field(1000, gt=0)
    learning_rate: Float = Field(0.1, gt=0, le=1)
    num_leaves: Int = Field(31, ge=2)
    min_child_samples: Int = Field(50, ge=1)
    early_stopping_rounds: Int = Field(50, gt=0)
    # The model of a win from now on (the published probability and tier) can average this many boosters, each on
    # the leads of one bag (a hash of the lead id; fewer when a bag would have under 25,000 training rows): new
    # leads change only their own bags' boosters, so scores churn less on a retrain, at some accuracy and scoring
    # time (models.bags; README "Stable scores" measures both).
    bags: Int = Field(1, ge=1)
    # The models the fit is chosen from, by calibrated log loss on the validation leads ("blend": the booster
    # and the logistic regression, their log-odds averaged).
    candidates: tuple[Literal["lightgbm", "logistic", "naive_bayes", "blend"], ...] = Field(
        ("lightgbm", "logistic", "naive_bayes", "blend"), min_length=1)
    # Landmark rows the model of a win from now on trains on at most: wins kept up to half of them, the rest
    # sampled (with weights that undo the sampling), so a million leads still train in minutes.
    max_landmark_rows: Int = Field(1_000_000, ge=1000)
    # Below these a model is not trained (exit 2, saying what is there): leads with a known outcome, wins and
    # leads that did not win among them. Defaults: Einstein's 1,000 leads and 120 wins; Dynamics' 40 lost.
    min_leads: Int = Field(1000, ge=100)
    min_wins: Int = Field(120, ge=10)
    min_losses: Int = Field(40, ge=10)


Tier = Literal["A", "B", "C", "D"]


class ScoringConfig(_Section):
    tier_shares: tuple[Float, Float, Float] = (0.10, 0.20, 0.30)  # A, B, C; D is the rest
    reason_tiers: tuple[Tier, ...] = ("A", "B")  # leads in these tiers get reasons (they cost a second pass)

    @field_validator("tier_shares")
    @classmethod
    def _shares(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in value) or sum(value) >= 1:
            raise ValueError("each share must be > 0 and A + B + C must be < 1 (D takes the rest)")
        return value


class GateConfig(_Section):
    auc_tolerance: Float = Field(0.005, ge=0, le=1)
    max_ece: Float = Field(0.03, gt=0, le=1)
    # A retrained model replaces a champion of the same code and recipe, trained on data at most this many days
    # older and registered at most this many days ago, only if it ranks the same test leads better beyond noise:
    # scores then hold between runs, where a refit on nearly the same rows would move some leads by chance. 0
    # promotes every model that passes.
    keep_champion_days: Float = Field(5.0, ge=0)


class _CrmFields(_Section):
    """Column names of one CRM's write-back file; a team that named its custom fields otherwise renames them here."""

    @model_validator(mode="after")
    def _distinct(self):
        names = list(self.model_dump().values())
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two fields share the column name {', '.join(map(repr, twice))}")
        return self


class SalesforceFields(_CrmFields):
    # Data Loader upsert on the Lead Id into custom fields of the Lead object.
    id: NonEmpty = "Id"
    score: NonEmpty = "Lead_Score__c"
    tier: NonEmpty = "Lead_Tier__c"
    probability: NonEmpty = "Lead_Probability__c"
    reasons: NonEmpty = "Lead_Score_Reasons__c"
    model: NonEmpty = "Lead_Score_Model__c"


class HubspotFields(_CrmFields):
    # A contacts import matched on HubSpot's Record ID, into custom contact properties.
    id: NonEmpty = "Record ID"
    score: NonEmpty = "leadscore_score"
    tier: NonEmpty = "leadscore_tier"
    probability: NonEmpty = "leadscore_probability"
    reasons: NonEmpty = "leadscore_reasons"


class DynamicsFields(_CrmFields):
    # Rows of the msdyn_predictivescore table, which Dynamics 365 Sales fills from an outside model too.
    id: NonEmpty = "msdyn_entityid"
    entity_type: NonEmpty = "msdyn_entitytype"
    name: NonEmpty = "msdyn_name"
    score: NonEmpty = "msdyn_score"
    grade: NonEmpty = "msdyn_grade"
    trend: NonEmpty = "msdyn_scoretrend"
    reasons: NonEmpty = "msdyn_scorereasons"
    scored_on: NonEmpty = "msdyn_scoredon"


class PublishConfig(_Section):
    keep_runs: Int = Field(30, ge=1)
    # Write-back files for these CRMs' import tools, under crm/ beside scores.csv.
    crm: tuple[Literal["salesforce", "hubspot", "dynamics"], ...] = ()
    salesforce: SalesforceFields = SalesforceFields()
    hubspot: HubspotFields = HubspotFields()
    dynamics: DynamicsFields = DynamicsFields()
    # Optional SQL sink (SQLAlchemy URL, e.g. sqlite:////srv/scores.db or postgresql://user@host/crm):
    # scores are upserted into `sql_table` keyed by lead_id, in one transaction.
    sql_url: str | None = None
    sql_table: str = Field("lead_scores", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("sql_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """Checked when the config loads, so a typo stops the run before anything is published."""
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            dialect = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError("not a SQLAlchemy URL such as 'sqlite:////srv/scores.db' or "
                             "'postgresql://user@host/crm'") from None
        if dialect not in SQL_DIALECTS:
            raise ValueError(f"the {dialect} database has no upsert here; use one of {', '.join(SQL_DIALECTS)}")
        return value


SQL_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")


class QueueConfig(_Section):
    name: NonEmpty
    capacity: Int = Field(ge=0)  # leads per day
    tiers: tuple[Tier, ...] = ()  # empty: any tier
    where: dict[str, tuple[str, ...]] = {}  # export column (as mapped in data.leads) -> allowed values


class RoutingConfig(_Section):
    """Queues in order: each takes the highest-probability matching leads up to its daily capacity; the rest
    fall through to the next matching queue and finally to ``fallback``."""

    queues: tuple[QueueConfig, ...] = ()
    fallback: NonEmpty = "nurture"

    @model_validator(mode="after")
    def _unique(self) -> RoutingConfig:
        names = [q.name for q in self.queues]
        twice = sorted({n for n in names if names.count(n) > 1} | ({self.fallback} & set(names)))
        if twice:
            raise ValueError(f"queue names must be unique and differ from fallback; repeated: {twice}")
        return self


class ReportConfig(_Section):
    # Which campaign a lead counts for. First touch is the campaign column as exported; the key exists so
    # that other rules (last touch, split credit) can be added without changing what this one means.
    attribution: Literal["first_touch"] = "first_touch"


class ApiConfig(_Section):
    max_batch: Int = Field(1000, ge=1, le=100_000)  # leads per request
    max_body_bytes: Int = Field(2_000_000, ge=1024)  # larger requests get 413
    reload_seconds: Float = Field(5.0, gt=0)  # how often the server checks whether the champion moved
    workers: Int = Field(2, ge=1, le=64)  # server processes, each with its own copy of the model; one per core


class DriftConfig(_Section):
    psi_warn: Float = Field(0.2, gt=0)  # population stability index above which a feature is reported as drifted
    # The leads compared with the model's reference: every lead created in these last days before as_of
    # (open or not: the open leads alone are skewed towards leads that do not close).
    window_days: Int = Field(30, gt=0)


def _check_address(value: str) -> str:
    value = value.strip()
    if value != "local" and not re.match(r"^(tcp|tls|ucx|inproc)://\S+$", value):
        raise ValueError(f"engine.address: {value!r} is neither \"local\" (a cluster this run starts) nor a scheduler "
                         "address such as \"tcp://scheduler:8786\"")
    return value


# Open leads a worker scores in one task, and rows it writes in one part of a published file, the ledger or the SQL
# staging table (about 60 MB of CSV).
ROWS_PER_PART = 250_000


class EngineConfig(_Section):
    """Where the stages that scale with the leads run: here (``local``), or on a Dask cluster (``dask``)."""

    kind: Literal["local", "dask"] = "local"
    # "local": a LocalCluster of `workers` processes the run starts and stops; else an existing scheduler's address.
    address: Annotated[str, AfterValidator(_check_address)] = "local"
    workers: Int = Field(2, ge=1, le=256)  # LocalCluster only
    threads: Int = Field(1, ge=1, le=256)  # per worker (LightGBM, duckdb and OpenMP get exactly this many)
    memory_per_worker: str = Field("auto", pattern=r"^\s*(auto|\d+(\.\d+)?\s*(MB|GB|TB|MiB|GiB|TiB))\s*$")
    # Lead partitions: 0 picks one per 2.5M leads, and at least one per worker thread.
    partitions: Int = Field(0, ge=0, le=100_000)
    # Boosters on more rows train across the workers (lightgbm.dask), their rounds picked on a sample this size.
    train_on_cluster_rows: Int = Field(2_000_000, ge=1000)
    # Open leads per scoring task; published files, ledger rows and SQL rows of more leads are written by the
    # workers in parts of this many.
    rows_per_part: Int = Field(ROWS_PER_PART, ge=100)


def _check_cron(value: str) -> str:
    from cronsim import CronSim, CronSimError

    try:
        CronSim(value, datetime(2026, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"not a cron expression ({exc}); e.g. '0 3 * * 1' is Mondays at 03:00") from None
    return value


Cron = Annotated[str, AfterValidator(_check_cron)]


class ScheduleConfig(_Section):
    """When the Prefect deployments made by `leadscore deploy` run (cron, in `timezone`)."""

    retrain: Cron = "0 3 * * 1"  # ingest + features + train (+ gate), Mondays 03:00
    score: Cron = "0 */6 * * *"  # ingest + features + score, every 6 hours
    report: Cron = "0 6 * * 1"  # ingest + features + campaign report, Mondays 06:00
    timezone: Zone = "UTC"
    work_pool: NonEmpty = "leadscore"


class SegmentConfig(_Section):
    """Leads that get a model of their own (a region, a product line), when they meet the train minimums."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")  # lower case: it names the registered model
    where: dict[str, tuple[str, ...]] = Field(min_length=1)  # mapped lead column -> the values that belong


class Config(_Section):
    home: Path = Path(".leadscore")
    data: DataConfig
    label: LabelConfig = LabelConfig()
    features: FeaturesConfig = FeaturesConfig()
    train: TrainConfig = TrainConfig()
    scoring: ScoringConfig = ScoringConfig()
    publish: PublishConfig = PublishConfig()
    gate: GateConfig = GateConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    routing: RoutingConfig = RoutingConfig()
    drift: DriftConfig = DriftConfig()
    report: ReportConfig = ReportConfig()
    api: ApiConfig = ApiConfig()
    engine: EngineConfig = EngineConfig()
    # In order: a lead belongs to the first segment whose filters it matches, else to none (the global model).
    segments: tuple[SegmentConfig, ...] = ()
    source_file: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_kind_of_export(self) -> Config:
        leads = self.data.leads
        if leads.label is not None:
            if self.data.outcomes is not None:
                raise ValueError("data.outcomes: a snapshot export (data.leads.label is set) has no outcomes table; "
                                 "remove one of the two")
            for role in ("won_at", "lost_at"):
                if getattr(leads, role):
                    raise ValueError(f"data.leads.{role}: a snapshot export (data.leads.label is set) has no outcome "
                                     "dates; remove one of the two")
            return self
        if leads.created_at is None:
            raise ValueError("data.leads.created_at: is required (or set data.leads.label for a snapshot export)")
        if self.data.outcomes is None and not leads.won_at:
            if leads.lost_at:
                raise ValueError("data.leads.lost_at: needs data.leads.won_at (the column of win dates) or "
                                 "data.outcomes (the stage history with the won stages) beside it")
            raise ValueError("data.outcomes: is required (or set data.leads.won_at to a column of win dates, or "
                             "data.leads.label for a snapshot export)")
        # The dated columns become stages named after them: one named like a listed stage would count twice.
        listed = {stage_key(s): s for s in (*self.label.won_stages, *self.label.lost_stages,
                                            *(self.label.other_stages or ()))}
        for role in ("won_at", "lost_at"):
            col = getattr(leads, role)
            if col and stage_key(col) in listed:
                raise ValueError(f"data.leads.{role}: {col!r} is also the stage {listed[stage_key(col)]!r} in [label]; "
                                 "a column of dates and a stage of the outcomes file need different names")
        if not self.won_stages:
            raise ValueError("label.won_stages: is required: the stages that count as a win, e.g. [\"Closed Won\"]")
        return self

    @model_validator(mode="after")
    def _routing_columns(self) -> Config:
        mapped = self.data.leads.mapped_columns()
        for i, queue in enumerate(self.routing.queues):
            for col in queue.where:
                if col not in mapped:
                    raise ValueError(f"routing.queues[{i}].where.{col}: not a mapped lead column; use one of "
                                     f"{sorted(mapped)} (map it under data.leads, e.g. as passthrough)")
        return self

    @model_validator(mode="after")
    def _segment_columns(self) -> Config:
        mapped, names = self.data.leads.mapped_columns(), set()
        for i, segment in enumerate(self.segments):
            if segment.name in names:
                raise ValueError(f"segments[{i}].name: {segment.name!r} names two segments")
            names.add(segment.name)
            for col in segment.where:
                if col not in mapped:
                    raise ValueError(f"segments[{i}].where.{col}: not a mapped lead column; use one of {sorted(mapped)}")
                if col in self.data.leads.numeric:  # numbers are read as numbers: "100" would never match
                    raise ValueError(f"segments[{i}].where.{col}: a numeric column; filter on a text column")
        return self

    @property
    def won_stages(self) -> tuple[str, ...]:
        """The stages that count as a win: label.won_stages, and data.leads.won_at, the name ingest gives the wins
        it reads from that column."""
        leads = self.data.leads
        return (*self.label.won_stages, *((leads.won_at,) if leads.won_at and leads.label is None else ()))

    @property
    def lost_stages(self) -> tuple[str, ...]:
        leads = self.data.leads
        return (*self.label.lost_stages, *((leads.lost_at,) if leads.lost_at and leads.label is None else ()))

    @property
    def snapshot(self) -> bool:
        """True for an export with only a label column: no timestamps, random split, no history features."""
        return self.data.leads.label is not None

    def digest(self) -> str:
        """A short hash of the settings (not of the file's layout), tagged on runs and manifests. Where the work
        runs (``engine``) is left out: it must not change a result."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"engine"}), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def recipe_digest(self) -> str:
        """A short hash of what decides a model (how the export is read and mapped, labels, features, training,
        tiers, segments), leaving out file paths, the as-of date, threads and memory: two runs with the same recipe
        differ only in their data."""
        recipe = self.model_dump(mode="json", include={"data", "label", "features", "train", "scoring", "segments"})
        recipe["data"].pop("as_of")
        for name in self.export_tables():
            recipe["data"][name].pop("path")
        recipe["train"].pop("num_threads")
        recipe["features"].pop("memory_limit")
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def paths(self) -> Home:
        """Where this config's runs, models and published files live."""
        return Home(self.home)

    def export_tables(self) -> dict[str, FileTable]:
        """The mapped export files by name (leads, outcomes, activities, campaigns); ``data.<name>`` in the config."""
        d = self.data
        return {name: t for name, t in (("leads", d.leads), ("outcomes", d.outcomes), ("activities", d.activities),
                                        ("campaigns", d.campaigns)) if t is not None}

    def input_paths(self) -> list[Path]:
        return [t.path for t in self.export_tables().values()]

    def with_home(self, home: Path) -> Config:
        return self.model_copy(update={"home": check_home(Path(home).resolve())})


def check_home(home: Path) -> Path:
    """MLflow's and Prefect's SQLite URLs cannot carry '?' or '#' in a path: they would open another file."""
    bad = sorted({c for c in "?#" if c in str(home)})
    if bad:
        raise ConfigError(f"home: the path {home} contains {' and '.join(repr(c) for c in bad)}, which the SQLite URLs "
                          "of MLflow and Prefect cannot hold; choose a folder without them")
    return home


def _resolve(base: Path, cfg: Config) -> Config:
    """Make every relative path absolute against the config file's folder."""

    def fix(table: FileTable | None) -> FileTable | None:
        if table is None or table.path.is_absolute():
            return table
        return table.model_copy(update={"path": (base / table.path).resolve()})

    data = cfg.data.model_copy(
        update={
            "leads": fix(cfg.data.leads),
            "outcomes": fix(cfg.data.outcomes),
            "activities": fix(cfg.data.activities),
            "campaigns": fix(cfg.data.campaigns),
        }
    )
    home = check_home(cfg.home if cfg.home.is_absolute() else (base / cfg.home).resolve())
    truth = cfg.evaluation.truth_path
    if truth is not None and not truth.is_absolute():
        cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"truth_path": (base / truth).resolve()})})
    return cfg.model_copy(update={"data": data, "home": home})


def _explain(err: ValidationError, path: Path) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        key = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)  # publish.crm.0 -> publish.crm[0]
        msg = item["msg"]
        if item["type"] == "missing":
            msg = "is required but missing"
        elif item["type"] == "extra_forbidden":
            msg = "is not a known key (check the spelling)"
        elif item["type"] == "literal_error":
            msg = f"must be one of {item['ctx']['expected']}; found {item['input']!r}"
        else:
            msg = msg.removeprefix("Value error, ")
            if "input" in item and not isinstance(item["input"], dict):
                msg = f"{msg} (found {item['input']!r})"
        if msg.startswith("[") and key:  # the validator named an item of a list: data.leads.passthrough[0]
            index, _, msg = msg.partition("] ")
            key, msg = f"{key}{index}]", msg
        problems.append(f"{key}: {msg}" if key else msg)
    return f"invalid config {path}: " + "; ".join(problems)


def parse_config(text: str, source: Path) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source} is not valid TOML: {exc}") from None
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None
    cfg = _resolve(source.resolve().parent, cfg)
    return cfg.model_copy(update={"source_file": source.resolve()})


def load_config(path: Path | str, home: Path | str | None = None) -> Config:
    """The config file as one frozen object. ``home`` overrides the file's home (``--home``, LEADSCORE_HOME or
    a deployment's parameter): this is the one place an override is applied."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass --config with the path to your leadscore TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    cfg = parse_config(text, path)
    return cfg.with_home(Path(home)) if home else cfg
