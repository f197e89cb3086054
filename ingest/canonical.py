"""Export files -> canonical tables, plus quarantine.

This module is the only one that knows file formats and the config's column map. Every input row ends up
either in a canonical table or in the quarantine with a reason; ``IngestResult.counts`` holds the
accounting (rows in = kept + quarantined, per table) that goes into the run's manifest. Cells are read by
the rules in :mod:`leadscore.cells` (the same rules the real-time API uses); a row is quarantined for the
first check it fails, so the reason is always one sentence.

Canonical tables (Arrow, timestamps UTC):
- leads: lead_id, created_at, campaign, source, account, then the mapped categorical (string), numeric
  (double) and passthrough (string) columns as ``export:<name>`` (see :mod:`leadscore.contract`);
- outcomes: lead_id, stage, occurred_at, amount;
- activities: lead_id, type, occurred_at;
- campaigns: campaign, cost, channel.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.files import decimal_of, read_export, require_columns
from leadscore import cells
from leadscore.config import Config, stage_key
from leadscore.contract import export_column
from leadscore.errors import DataError
from leadscore.paths import write_parquet_atomic
from leadscore.spreadsheet import write_csv

log = logging.getLogger("leadscore")


@dataclass
class Quarantined:
    """Rejected rows as they were read, with their 1-based row number in the file and the reason."""

    raw: pa.Table
    rows: np.ndarray
    reasons: pa.Array
    malformed: pa.Table | None = None  # lines that could not be split into the header's fields: line, reason


def malformed_table(lines: list[tuple[str, str]]) -> pa.Table | None:
    """Lines that could not be split into the header's fields, as (text, reason): Quarantined.malformed."""
    if not lines:
        return None
    return pa.table({"line": [t for t, _ in lines], "reason": [r for _, r in lines]},
                    schema=pa.schema([("line", pa.string()), ("reason", pa.string())]))


def dated_changes(lead_id, stage: str, at) -> pa.Table:
    """Wins or losses dated in a column of the leads file, as stage changes to a stage named after the column."""
    n = len(lead_id)
    return pa.table({"lead_id": lead_id, "stage": pa.repeat(pa.scalar(stage, pa.string()), n), "occurred_at": at,
                     "amount": pa.nulls(n, pa.float64())})


# Reasons whose value is read back (the hints of check_usable and no_wins_reason): "<reason> <column>: <cell>".
UNPARSEABLE = "unparseable {}: "
UNKNOWN = "unknown {}: "


@dataclass
class IngestResult:
    tables: dict[str, pa.Table]
    quarantined: dict[str, Quarantined] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)  # how each file was read (encoding, delimiter, ...)
    as_of: datetime | None = None
    # A cluster ingest keeps no table in memory: the lead ids of its leads table, read when needed.
    lead_ids_from: Path | None = None

    def quarantine_share(self) -> float:
        rows_in = sum(c["rows_in"] for c in self.counts.values())
        bad = sum(c["quarantined"] for c in self.counts.values())
        return bad / rows_in if rows_in else 0.0

    def reasons(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, q in self.quarantined.items():
            reasons = q.reasons if q.malformed is None else \
                pa.concat_arrays([q.reasons, q.malformed["reason"].combine_chunks()])
            out[name] = value_counts(reasons)
        return out


def value_counts(values: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    vc = (values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values).value_counts()
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


# --- checking ----------------------------------------------------------------------------------------

Reason = str | Callable[[np.ndarray], list[str]]


class Checks:
    """Ordered row checks: each row is kept or quarantined for the first check it fails. Reasons are built for
    the quarantined rows only."""

    def __init__(self, n: int):
        self.first = np.full(n, -1, np.int16)
        self.reasons: list[Reason] = []

    def add(self, failing: np.ndarray, reason: Reason) -> None:
        self.first[(self.first < 0) & np.asarray(failing, bool)] = len(self.reasons)
        self.reasons.append(reason)

    def extend(self, later: Checks) -> None:
        """Add the checks of ``later`` (over the same rows) after these."""
        for i, reason in enumerate(later.reasons):
            self.add(later.first == i, reason)

    @property
    def passing(self) -> np.ndarray:
        return self.first < 0

    def texts(self) -> tuple[np.ndarray, pa.Array]:
        rows = np.flatnonzero(self.first >= 0)
        out = np.empty(len(rows), dtype=object)
        which = self.first[rows]
        for i, reason in enumerate(self.reasons):
            here = which == i
            if here.any():
                out[here] = reason if isinstance(reason, str) else reason(rows[here])
        return rows, pa.array(out, pa.string())


class Reader:
    """The cell rules with this run's settings (time zone, plausible dates), applied to one file's columns."""

    def __init__(self, cfg: Config, now: datetime, raw: pa.Table, decimal: str):
        self.zone = cfg.data.timezone
        self.order = cfg.data.date_order
        self.earliest = cfg.data.earliest
        self.earliest_us = cells.us_of(cfg.data.earliest)
        self.latest_us = cells.us_of(now + timedelta(days=1))
        self.raw = raw
        self.decimal = decimal

    def text(self, col: str) -> pa.Array:
        return cells.text(self.raw.column(col))

    def shown(self, col: str) -> Callable[[np.ndarray], list[str]]:
        """The cell as written, for a reason (cut, so a huge cell does not make a huge quarantine file)."""
        def values(rows: np.ndarray) -> list[str]:
            picked = cells.as_strings(self.raw.column(col).take(pa.array(rows)))
            return [("" if v is None else v)[:200] for v in picked.to_pylist()]
        return values

    def add_timestamp(self, checks: Checks, col: str, required: bool = True) -> np.ndarray:
        """Parse a timestamp column and add its checks (missing, unreadable, too early, in the future)."""
        us, problem = cells.timestamp(self.raw.column(col), self.zone, self.earliest_us, self.latest_us, self.order)
        missing = (us == np.iinfo(np.int64).min) & (problem == cells.OK)
        if required:
            checks.add(missing, f"missing {col}")
        shown = self.shown(col)
        checks.add(problem == cells.UNREADABLE, lambda rows: [UNPARSEABLE.format(col) + v for v in shown(rows)])
        checks.add(problem == cells.TOO_EARLY, lambda rows: [
            f"{col} {v} is before data.earliest ({self.earliest:%Y-%m-%d})" for v in shown(rows)])
        checks.add(problem == cells.TOO_LATE, f"{col} in the future")
        return us

    def add_number(self, checks: Checks, col: str) -> pa.Array:
        x, problem = cells.number(self.raw.column(col), self.decimal)
        shown = self.shown(col)
        checks.add(problem == cells.UNREADABLE, lambda rows: [f"non-numeric {col}: {v}" for v in shown(rows)])
        return x


def later_duplicates(keys: pa.Array, candidates: np.ndarray) -> np.ndarray:
    """Rows among ``candidates`` whose key an earlier candidate row already has (the first one is kept)."""
    idx = np.flatnonzero(candidates)
    out = np.zeros(len(candidates), bool)
    if len(idx) == 0:
        return out
    codes = pc.dictionary_encode(keys.take(pa.array(idx))).indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    repeat = np.empty(len(idx), bool)
    repeat[order] = np.r_[False, codes[order][1:] == codes[order][:-1]]
    out[idx[repeat]] = True
    return out


def _null_of(kind: pa.DataType, n: int) -> pa.Array:
    return pa.nulls(n, kind)


def ingest(cfg: Config, now: datetime | None = None) -> IngestResult:
    """Read, check and canonicalize every mapped export. ``now`` bounds what counts as a future date."""
    now = now or datetime.now(timezone.utc)
    result = IngestResult(tables={})
    leads = _leads(cfg, now, result)
    dated = {}  # the leads file's outcome dates (data.leads.won_at / lost_at): column -> (lead ids, times)
    for role in ("won_at", "lost_at"):
        if f"outcome:{role}" in leads.column_names:
            at = leads[f"outcome:{role}"]
            dated[getattr(cfg.data.leads, role)] = (leads["lead_id"].filter(at.is_valid()), at.filter(at.is_valid()))
            leads = leads.drop_columns([f"outcome:{role}"])
    result.tables["leads"] = leads
    _outcomes(cfg, now, result, leads, dated)
    _activities(cfg, now, result, leads)
    read_campaigns(cfg, now, result)
    # A snapshot export may carry no timestamp at all: then it is as of now.
    if result.tables["leads"].num_rows:
        result.as_of = cfg.data.as_of or _latest(result.tables) or now.replace(microsecond=0)
    return result


def _record(result: IngestResult, name: str, raw: pa.Table, checks: Checks, kept_columns: dict[str, pa.Array],
            info: dict) -> pa.Table:
    keep = pa.array(checks.passing)
    kept = pa.table(kept_columns).filter(keep)
    rows, reasons = checks.texts()
    lines = info.pop("malformed", [])
    malformed = malformed_table(lines)
    result.tables[name] = kept
    if len(rows) or lines:
        result.quarantined[name] = Quarantined(raw.take(pa.array(rows, pa.int64())), rows + 1, reasons, malformed)
    rows_in = raw.num_rows + len(lines)
    result.counts[name] = {"rows_in": rows_in, "kept": kept.num_rows, "quarantined": len(rows) + len(lines)}
    result.files[name] = {**info, "malformed_lines": len(lines)} if lines else info
    if kept.num_rows + len(rows) + len(lines) != rows_in:  # a bug, not a user error: keep the traceback
        raise AssertionError(f"{name}: {rows_in} rows in, {kept.num_rows} kept + {len(rows)} quarantined")
    return kept


# The canonical stage changes and activities (the leads' columns follow the config).
OUTCOMES = pa.schema([("lead_id", pa.string()), ("stage", pa.string()), ("occurred_at", pa.timestamp("us", "UTC")),
                      ("amount", pa.float64())])
ACTIVITIES = pa.schema([("lead_id", pa.string()), ("type", pa.string()), ("occurred_at", pa.timestamp("us", "UTC"))])
DUPLICATE_LEAD = "duplicate lead id (first row kept)"
UNKNOWN_LEAD = {"outcomes": "outcome for an unknown lead", "activities": "activity for an unknown lead"}


def lead_mapping(cfg: Config) -> dict[str, str]:
    """Config key -> export column, for every column of the leads file the config maps."""
    lc = cfg.data.leads
    roles = {"id": lc.id}
    for role in ("created_at", "label", "won_at", "lost_at", "campaign", "source", "account"):
        if getattr(lc, role):
            roles[role] = getattr(lc, role)
    attrs = {f"categorical[{i}]": c for i, c in enumerate(lc.categorical)}
    attrs |= {f"numeric[{i}]": c for i, c in enumerate(lc.numeric)}
    attrs |= {f"passthrough[{i}]": c for i, c in enumerate(lc.passthrough)}
    return roles | attrs


def _leads(cfg: Config, now: datetime, result: IngestResult) -> pa.Table:
    mapping = lead_mapping(cfg)
    raw, info = read_export(cfg.data.leads, "data.leads", set(mapping.values()))
    require_columns(raw, mapping, "data.leads")
    checks, columns = lead_cells(cfg, now, raw, info)
    checks.add(later_duplicates(columns["lead_id"], checks.passing), DUPLICATE_LEAD)
    return _record(result, "leads", raw, checks, columns, info)


def lead_cells(cfg: Config, now: datetime, raw: pa.Table, info: dict) -> tuple[Checks, dict[str, pa.Array]]:
    """Every check of a lead row that reads the row alone (all but the duplicate check, which comes last), and
    the row's canonical columns. Rows of one file may come in blocks: nothing here looks past ``raw``."""
    lc = cfg.data.leads
    n = raw.num_rows
    read = Reader(cfg, now, raw, info.get("decimal", decimal_of(lc, None)))
    checks = Checks(n)
    lead_id = read.text(lc.id)
    checks.add(lead_id.is_null().to_numpy(zero_copy_only=False), "missing lead id")
    created = read.add_timestamp(checks, lc.created_at) if lc.created_at else np.full(n, np.iinfo(np.int64).min)
    # An empty cell is no outcome yet; an unreadable one quarantines the lead, which would otherwise look open.
    decided = {role: read.add_timestamp(checks, getattr(lc, role), required=False)
               for role in ("won_at", "lost_at") if getattr(lc, role) and not lc.label}
    never, day = np.iinfo(np.int64).min, 86_400_000_000
    for role, at in decided.items():
        dated = (at != never) & (created != never)
        # A date without a time reads as midnight: a win on the day the lead arrived comes "before" it. Within a
        # day it is read as at the lead's creation; earlier is a date that cannot be right.
        checks.add(dated & (at <= created - day), f"{getattr(lc, role)} before {lc.created_at}")
        decided[role] = np.where(dated & (at < created), created, at)
    numbers = {c: read.add_number(checks, c) for c in lc.numeric}

    columns: dict[str, pa.Array] = {"lead_id": lead_id, "created_at": cells.to_timestamp_array(created)}
    for role, at in decided.items():
        columns[f"outcome:{role}"] = cells.to_timestamp_array(at)
    if lc.label:
        # Snapshot exports: 1 for a positive value, 0 for any other value, NULL (unknown) for an empty cell.
        label = read.text(lc.label)
        positive = pc.is_in(pc.utf8_lower(label), value_set=pa.array([v.strip().lower() for v in lc.positive]))
        columns["outcome_label"] = pc.if_else(label.is_null(), pa.scalar(None, pa.int8()),
                                              pc.if_else(positive, 1, 0).cast(pa.int8()))
    for role in ("campaign", "source", "account"):
        col = getattr(lc, role)
        columns[role] = read.text(col) if col else _null_of(pa.string(), n)
    for c in (*lc.categorical, *lc.passthrough):
        columns.setdefault(export_column(c), read.text(c))
    for c in lc.numeric:
        columns[export_column(c)] = numbers[c]
    return checks, columns


def first_spellings(stage: pa.Array, at: np.ndarray) -> pa.Table:
    """Each spelling of a stage as written, with the first time (``at``, microseconds) a row used it; rows of
    one file in blocks give tables that :func:`spelling_map` reads together."""
    latest = np.iinfo(np.int64).max
    return pa.table({"stage": stage, "at": np.where(at == np.iinfo(np.int64).min, latest, at)}) \
        .group_by("stage").aggregate([("at", "min")])


def spelling_map(first: pa.Table, configured: list[str]) -> dict[str, str]:
    """Every spelling of a stage (:func:`leadscore.config.stage_key`) as one: the config's, else the one the file
    used first (``first``: :func:`first_spellings`), which a growing export keeps, so the stage features of the
    model in service keep their name. Returns spelling -> the one it is read as, for the spellings that change."""
    found: dict[str, int] = {}
    for v, t in zip(first["stage"].to_pylist(), first["at_min"].to_pylist()):
        if v is not None:
            found[v] = min(t, found.get(v, t))
    chosen: dict[str, str] = {}
    for name in configured:
        chosen.setdefault(stage_key(name), name)
    for name, _ in sorted(found.items(), key=lambda vt: (vt[1], vt[0])):
        chosen.setdefault(stage_key(name), name)
    return {name: chosen[stage_key(name)] for name in found if chosen[stage_key(name)] != name}


def one_spelling(stage: pa.Array, renamed: dict[str, str]) -> pa.Array:
    if not renamed:
        return stage
    spelled = pc.take(pa.array(list(renamed.values()), pa.string()),
                      pc.index_in(stage, value_set=pa.array(list(renamed), pa.string())))
    return pc.coalesce(spelled, stage)


def log_spellings(renamed: dict[str, str], info: dict) -> None:
    """Say which spellings were read as one (the log and the manifest's file info)."""
    if not renamed:
        return
    groups: dict[str, list[str]] = {}
    for name, to in sorted(renamed.items()):
        groups.setdefault(to, []).append(name)
    info["stage_spellings"] = groups
    log.warning("data.outcomes: %s (stage names are compared without case, spaces, hyphens or underscores)",
                "; ".join(f"{', '.join(map(repr, names))} read as {to!r}" for to, names in groups.items()))


def _known_leads(leads: pa.Table, lead_id: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """For each event row: is its lead known, and that lead's created_at (microseconds; int64 min if unknown)."""
    never = np.iinfo(np.int64).min
    found = pc.index_in(lead_id, value_set=leads["lead_id"].combine_chunks(), skip_nulls=True)
    known = found.is_valid().to_numpy(zero_copy_only=False)
    if not len(leads):
        return known, np.full(len(known), never)
    index = found.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    created = leads["created_at"].cast(pa.int64()).fill_null(never).to_numpy(zero_copy_only=False)
    return known, np.where(known, created[index], never)


def _outcomes(cfg: Config, now: datetime, result: IngestResult, leads: pa.Table,
              dated: dict[str, tuple[pa.Array, pa.Array]]) -> None:
    """Stage changes: the outcomes file's, then the wins and losses dated in the leads file (``dated``: column ->
    lead ids and times), each a change to a stage named after its column (``Config.won_stages``). The manifest
    counts those under the leads file (``outcomes_from_columns``): they are cells of its rows. A snapshot
    export has none."""
    _stage_changes(cfg, now, result, leads)
    if dated:
        changes = [dated_changes(ids, col, at) for col, (ids, at) in dated.items()]
        result.tables["outcomes"] = pa.concat_tables([result.tables["outcomes"], *changes]).combine_chunks()
        result.files["leads"]["outcomes_from_columns"] = {col: len(ids) for col, (ids, _) in dated.items()}


def configured_stages(cfg: Config) -> list[str]:
    return [*cfg.label.won_stages, *cfg.label.lost_stages, *(cfg.label.other_stages or ())]


def _stage_changes(cfg: Config, now: datetime, result: IngestResult, leads: pa.Table) -> None:
    """The outcomes file's stage changes."""
    oc = cfg.data.outcomes
    if oc is None:
        result.tables["outcomes"] = OUTCOMES.empty_table()
        return
    mapping = outcome_mapping(cfg)
    raw, info = read_export(oc, "data.outcomes", set(mapping.values()))
    require_columns(raw, mapping, "data.outcomes")
    checks, columns, first, late = outcome_cells(cfg, now, raw, info)
    renamed = spelling_map(first, configured_stages(cfg))
    log_spellings(renamed, info)
    columns["stage"] = one_spelling(columns["stage"], renamed)
    outcome_relations(cfg, checks, columns, leads)
    checks.extend(late)
    _record(result, "outcomes", raw, checks, columns, info)


def outcome_mapping(cfg: Config) -> dict[str, str]:
    oc = cfg.data.outcomes
    mapping = {"lead_id": oc.lead_id, "stage": oc.stage, "occurred_at": oc.occurred_at}
    if oc.amount:
        mapping["amount"] = oc.amount
    return mapping


def outcome_cells(cfg: Config, now: datetime, raw: pa.Table, info: dict
                  ) -> tuple[Checks, dict[str, pa.Array], pa.Table, Checks]:
    """The checks of a stage change that read the row alone, its canonical columns as written, the first use of
    each stage spelling (:func:`first_spellings`), and the amount's checks, which come after those against the
    row's lead (:func:`outcome_relations`)."""
    oc = cfg.data.outcomes
    read = Reader(cfg, now, raw, info.get("decimal", decimal_of(oc, None)))
    checks = Checks(raw.num_rows)
    lead_id, stage = read.text(oc.lead_id), read.text(oc.stage)
    checks.add(lead_id.is_null().to_numpy(zero_copy_only=False), "missing lead id")
    checks.add(stage.is_null().to_numpy(zero_copy_only=False), f"missing {oc.stage}")
    at = read.add_timestamp(checks, oc.occurred_at)
    first = first_spellings(stage, at)
    if cfg.label.other_stages is not None:
        # Unknown unless some spelling of a listed stage: the spellings are read as the listed name.
        keys = {stage_key(s) for s in configured_stages(cfg)}
        values = pc.unique(stage.drop_null()).to_pylist()
        strange = pa.array([v for v in values if stage_key(v) not in keys], pa.string())
        unknown = pc.is_in(stage, value_set=strange).to_numpy(zero_copy_only=False)
        shown = read.shown(oc.stage)
        checks.add(unknown, lambda rows: [UNKNOWN.format(oc.stage) + v for v in shown(rows)])
    late = Checks(raw.num_rows)
    amount = read.add_number(late, oc.amount) if oc.amount else _null_of(pa.float64(), raw.num_rows)
    return checks, {"lead_id": lead_id, "stage": stage, "occurred_at": cells.to_timestamp_array(at),
                    "amount": amount}, first, late


def outcome_relations(cfg: Config, checks: Checks, columns: dict[str, pa.Array], leads: pa.Table) -> None:
    """The checks of stage changes against their leads (``leads``: the kept leads, or those of one partition)."""
    known_lead, created = _known_leads(leads, columns["lead_id"])
    at = columns["occurred_at"].cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
    checks.add(~known_lead, UNKNOWN_LEAD["outcomes"])
    checks.add(known_lead & (created != np.iinfo(np.int64).min) & (at < created),
               f"{cfg.data.outcomes.occurred_at} before the lead was created")


def activity_mapping(cfg: Config) -> dict[str, str]:
    ac = cfg.data.activities
    return {"lead_id": ac.lead_id, "type": ac.type, "occurred_at": ac.occurred_at}


def _activities(cfg: Config, now: datetime, result: IngestResult, leads: pa.Table) -> None:
    ac = cfg.data.activities
    if ac is None:
        result.tables["activities"] = ACTIVITIES.empty_table()
        return
    mapping = activity_mapping(cfg)
    raw, info = read_export(ac, "data.activities", set(mapping.values()))
    require_columns(raw, mapping, "data.activities")
    checks, columns = activity_cells(cfg, now, raw, info)
    activity_relations(checks, columns, leads)
    _record(result, "activities", raw, checks, columns, info)


def activity_cells(cfg: Config, now: datetime, raw: pa.Table, info: dict) -> tuple[Checks, dict[str, pa.Array]]:
    ac = cfg.data.activities
    read = Reader(cfg, now, raw, info.get("decimal", decimal_of(ac, None)))
    checks = Checks(raw.num_rows)
    lead_id, kind = read.text(ac.lead_id), read.text(ac.type)
    checks.add(lead_id.is_null().to_numpy(zero_copy_only=False), "missing lead id")
    checks.add(kind.is_null().to_numpy(zero_copy_only=False), f"missing {ac.type}")
    at = read.add_timestamp(checks, ac.occurred_at)
    return checks, {"lead_id": lead_id, "type": kind, "occurred_at": cells.to_timestamp_array(at)}


def activity_relations(checks: Checks, columns: dict[str, pa.Array], leads: pa.Table) -> None:
    checks.add(~_known_leads(leads, columns["lead_id"])[0], UNKNOWN_LEAD["activities"])


def read_campaigns(cfg: Config, now: datetime, result: IngestResult) -> None:
    cc = cfg.data.campaigns
    if cc is None:
        return
    mapping = {"campaign": cc.campaign, "cost": cc.cost}
    if cc.channel:
        mapping["channel"] = cc.channel
    raw, info = read_export(cc, "data.campaigns", set(mapping.values()))
    require_columns(raw, mapping, "data.campaigns")
    read = Reader(cfg, now, raw, info.get("decimal", decimal_of(cc, None)))
    checks = Checks(raw.num_rows)
    campaign = read.text(cc.campaign)
    checks.add(campaign.is_null().to_numpy(zero_copy_only=False), "missing campaign")
    cost = read.add_number(checks, cc.cost)
    checks.add(later_duplicates(campaign, checks.passing), "duplicate campaign (first row kept)")
    channel = read.text(cc.channel) if cc.channel else _null_of(pa.string(), raw.num_rows)
    _record(result, "campaigns", raw, checks, {"campaign": campaign, "cost": cost, "channel": channel}, info)


def _latest(tables: dict[str, pa.Table]) -> datetime | None:
    found = []
    for name, col in (("leads", "created_at"), ("outcomes", "occurred_at"), ("activities", "occurred_at")):
        table = tables.get(name)
        if table is not None and table.num_rows:
            found.append(pc.max(table.column(col)).as_py())
    found = [t for t in found if t is not None]
    return max(found) if found else None


def check_usable(result: IngestResult, cfg: Config, written: dict[str, Path], quarantine_dir: Path) -> None:
    """Stop when nothing usable is left, or when so much was quarantined that a mapping mistake is likelier than
    bad rows; the message names the quarantine files and the commonest reasons."""
    leads = result.counts["leads"]
    if leads["kept"] == 0:
        where = written.get("leads") or written.get("leads.malformed")
        if not where:
            raise DataError(f"data.leads: {cfg.data.leads.path} has no rows")
        raise DataError(f"data.leads: none of the {leads['rows_in']:,} lead rows can be used "
                        f"({common_reasons(result, tables=('leads',))}); see {where} for each row and its reason"
                        + _date_order_hint(result, cfg))
    share = result.quarantine_share()
    if share > cfg.data.max_quarantine_share:
        raise DataError(
            f"{share:.1%} of input rows were quarantined, more than data.max_quarantine_share = "
            f"{cfg.data.max_quarantine_share:.1%}; see {quarantine_dir} for each row and its reason "
            f"({common_reasons(result)}){_zeros_hint(result, cfg)}{_date_order_hint(result, cfg)}")


def no_wins_reason(cfg: Config, canonical: Path, reasons: dict[str, dict[str, int]]) -> str | None:
    """When an ingested export has no win at all because the config's win values match nothing it holds (a stage
    name or a label value mistyped), what to set, naming the key and what the export holds instead; else None.
    ``reasons``: the ingest manifest's quarantine reasons (stages a listed ``label.other_stages`` left unknown)."""
    lc, oc = cfg.data.leads, cfg.data.outcomes
    if cfg.snapshot:
        labels = pq.read_table(canonical / "leads.parquet", columns=["outcome_label"])["outcome_label"]
        known = len(labels) - labels.null_count
        if known == 0 or (pc.sum(labels).as_py() or 0) > 0:
            return None
        return (f"data.leads.positive = {list(lc.positive)}: no value of {lc.label!r} is one of them (compared without "
                f"case), so none of its {known:,} leads won; set it to the values that mean a win (for a column of "
                "0 and 1: [\"1\"])")
    if oc is None or lc.won_at:
        return None
    stages = value_counts(pq.read_table(canonical / "outcomes.parquet", columns=["stage"])["stage"])
    won = {stage_key(s) for s in cfg.label.won_stages}
    if any(stage_key(s) in won for s in stages if s is not None):
        return None
    prefix = UNKNOWN.format(oc.stage)
    outcome_reasons = reasons.get("outcomes", {})
    unknown = {r[len(prefix):]: n for r, n in outcome_reasons.items() if r.startswith(prefix)}
    other = sum(n for r, n in outcome_reasons.items() if not r.startswith(prefix))
    held = sorted({**stages, **unknown}.items(), key=lambda sn: (-sn[1], str(sn[0])))
    if not held:
        return None
    shown = ", ".join(f"{s!r} ({n:,} rows{', quarantined as unknown' if s in unknown else ''})" for s, n in held[:8])
    return (f"label.won_stages = {list(cfg.label.won_stages)}: no stage change kept from {oc.path} is one of them "
            f"(compared without case, spaces, hyphens or underscores), so no lead won; its stages: {shown}. Set "
            "label.won_stages (and label.lost_stages) to the names your CRM uses"
            + (f" ({other:,} more rows of it were quarantined for other reasons: see the quarantine folder)"
               if other else ""))


def _date_order_hint(result: IngestResult, cfg: Config) -> str:
    """When dates with the year last (20/09/2024) were unreadable for want of ``data.date_order``, say so."""
    if cfg.data.date_order is not None:
        return ""
    for reasons in result.reasons().values():
        for reason in reasons:
            found = re.match(UNPARSEABLE.format("(.+?)") + r"\s*(\d{1,2}[-/]\d{1,2}[-/]\d{4}\b.*)", reason)
            if found:
                return (f"; {found[1]} writes dates with the year last ({found[2]!r}): set data.date_order = \"DMY\" "
                        "(day first) or \"MDY\" (month first) to read them")
    return ""


def _zeros_hint(result: IngestResult, cfg: Config, sample: int = 1000) -> str:
    """When events were quarantined for unknown leads whose ids match a lead's once leading zeros are dropped
    ("015456" against 15456 written as a number), say so: the ids are text and are compared as written."""
    unknown = {table: unknown_lead_ids(result, cfg, table, sample) for table in ("outcomes", "activities")}
    if not any(len(ids) for ids in unknown.values()):
        return ""
    if "leads" in result.tables:
        lead_ids = result.tables["leads"]["lead_id"].combine_chunks()
    elif result.lead_ids_from is not None:
        lead_ids = pq.read_table(result.lead_ids_from, columns=["lead_id"])["lead_id"].combine_chunks()
    else:
        return ""
    stripped = pc.utf8_ltrim(lead_ids, characters="0")
    for table, ids in unknown.items():
        found = pc.is_in(pc.utf8_ltrim(ids, characters="0"), value_set=stripped).fill_null(False)
        if len(ids) and pc.sum(found).as_py() >= len(ids) / 2:
            event = ids.filter(found)[0].as_py()
            lead = lead_ids.filter(pc.equal(stripped, event.lstrip("0")))[0].as_py()
            return (f"; data.{table}.lead_id and data.leads.id differ in leading zeros ({event!r} against {lead!r}): "
                    "ids are compared as written, so write them alike in both files")
    return ""


def unknown_lead_ids(result: IngestResult, cfg: Config, table: str, sample: int = 1000) -> pa.Array:
    """The lead ids (as text) of the first ``sample`` events of ``table`` quarantined for an unknown lead."""
    mapped, q = getattr(cfg.data, table), result.quarantined.get(table)
    if q is None or mapped is None:
        return pa.array([], pa.string())
    unknown = np.flatnonzero(pc.equal(q.reasons, UNKNOWN_LEAD[table]).to_numpy(zero_copy_only=False))
    return cells.text(q.raw.column(mapped.lead_id).take(pa.array(unknown[:sample], pa.int64())))


def common_reasons(result: IngestResult, top: int = 3, tables: tuple[str, ...] | None = None) -> str:
    """The commonest kinds of reason ("non-numeric Employees", without the values), for a one-line error; of
    ``tables`` only, if given."""
    kinds: dict[str, int] = {}
    for table, reasons in result.reasons().items():
        if tables is not None and table not in tables:
            continue
        for reason, n in reasons.items():
            kind = f"{table}: {reason.split(': ', 1)[0]}"
            kinds[kind] = kinds.get(kind, 0) + n
    best = sorted(kinds.items(), key=lambda kv: -kv[1])[:top]
    return "most often " + "; ".join(f"{k} ({n:,})" for k, n in best)


# --- writing -----------------------------------------------------------------------------------------

def write_canonical(result: IngestResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        if (folder / f"{name}.parquet").is_dir():  # a cluster ingest's partitioned table
            shutil.rmtree(folder / f"{name}.parquet")
        write_parquet_atomic(table, folder / f"{name}.parquet")


def read_canonical(folder: Path, lazy: bool = False) -> dict:
    """The canonical tables as Arrow tables, or (``lazy``) as datasets that duckdb scans without loading."""
    if not (folder / "leads.parquet").exists():
        raise DataError(f"no canonical tables in {folder}; run `leadscore ingest --config FILE` first")
    if lazy:
        import pyarrow.dataset as ds

        return {p.stem: ds.dataset(p) for p in sorted(folder.glob("*.parquet"))}
    return {p.stem: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}


def write_quarantine(result: IngestResult, folder: Path) -> dict[str, Path]:
    """One CSV per table: the row's number among the rows read, the row as read, and the reason; lines that
    could not be split into fields go to ``<table>.malformed.csv`` as written. Safe for spreadsheets."""
    written = {}
    for name, q in result.quarantined.items():
        if q.malformed is not None:
            write_csv(q.malformed, folder / f"{name}.malformed.csv")
            written[f"{name}.malformed"] = folder / f"{name}.malformed.csv"
        if not len(q.rows):
            continue
        path = folder / f"{name}.csv"
        write_csv(quarantine_table(q.rows, q.raw, q.reasons), path)
        written[name] = path
    return written


def quarantine_table(rows: np.ndarray, raw: pa.Table, reasons: pa.Array) -> pa.Table:
    """A quarantine file's rows: the row's number among the rows read (1-based), its cells as text, the reason."""
    names = raw.column_names
    return pa.table([pa.array(rows, pa.int64()), *[cells.as_strings(c) for c in raw.columns], reasons],
                    names=[_free_name("source_row", names), *names, _free_name("reason", names)])


def _free_name(name: str, taken: list[str]) -> str:
    while name in taken:
        name = f"leadscore_{name}"
    return name
