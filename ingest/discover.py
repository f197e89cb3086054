"""`leadscore init`: a config proposed from an export folder, by the CRM's own column names and each column's content.

Each file is read as ingest reads it (text cells, the same encoding and delimiter rules) and recognised by the
columns it has: the leads file by an id and a creation time, the stage history by a stage, the activities by a
type, the campaigns by a cost. The names Salesforce, HubSpot and Dynamics 365 give those columns in their default
exports are known; other columns of the leads file are judged by content (numbers, a few repeated values, free
text, dates). Columns filled in after contact or after the outcome (``leadscore.contract.POST_OUTCOME_NAMES``)
are left out with a comment saying why, so training starts from a mapping the leakage guard accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore import cells
from leadscore.config import FileTable
from leadscore.contract import column_words, post_outcome_columns
from leadscore.errors import DataError
from ingest.files import read_export

SAMPLE_ROWS = 20_000
CRMS = ("salesforce", "hubspot", "dynamics")

# Column names by role, as each CRM's default exports write them (matched as column_words). "generic" holds the
# names of leadscore's own generator and other common ones; every CRM's list is tried after its own.
NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "salesforce": {
        "lead_id": ("lead id", "id", "leadid", "lead id 18"),
        "created_at": ("created date", "createddate", "create date"),
        "campaign": ("campaign name", "primary campaign source", "campaign", "campaignid"),
        "source": ("lead source", "leadsource"),
        "account": ("company account", "company", "account name"),
        "owner": ("lead owner", "owner", "ownerid", "owner name"),
        "ref": ("lead id", "leadid", "whoid", "who id", "name id", "converted lead id"),
        "stage": ("to stage", "stage", "stagename", "new value", "newvalue"),
        "stage_at": ("edit date", "stage change date", "createddate", "created date", "last modified date",
                     "close date"),
        "amount": ("amount",),
        "type": ("task subtype", "tasksubtype", "activity type", "activitytype", "type", "event subtype"),
        "activity_at": ("date", "activity date", "activitydate", "created date", "createddate", "start"),
        "cost": ("actual cost", "actualcost", "budgeted cost", "budgetedcost"),
        "channel": ("type", "campaign type"),
        "campaign_key": ("campaign name", "name", "campaign", "id", "campaignid"),
    },
    "hubspot": {
        "lead_id": ("record id", "contact id", "hs object id"),
        "created_at": ("create date", "createdate"),
        "campaign": ("first touch converting campaign", "last touch converting campaign", "campaign", "utm campaign"),
        "source": ("original source", "original source type", "hs analytics source"),
        "account": ("company name", "associated company", "company"),
        "owner": ("contact owner", "hubspot owner", "owner"),
        "ref": ("associated contact id", "associated contact ids", "contact id", "contact record id",
                "associated contact"),
        "stage": ("deal stage", "dealstage", "stage"),
        "stage_at": ("date entered stage", "stage date", "last modified date", "close date", "create date"),
        "amount": ("amount",),
        "type": ("activity type", "engagement type", "type"),
        "activity_at": ("activity date", "timestamp", "create date", "date"),
        "cost": ("spend", "budget", "cost", "actual spend"),
        "channel": ("campaign type", "type"),
        "campaign_key": ("campaign name", "campaign", "name"),
    },
    "dynamics": {
        "lead_id": ("leadid",),
        "created_at": ("createdon",),
        "campaign": ("campaignid", "campaignidname", "relatedobjectid"),
        "source": ("leadsourcecode", "leadsourcecodename"),
        "account": ("companyname", "parentaccountid", "parentaccountidname"),
        "owner": ("ownerid", "owneridname"),
        "ref": ("originatingleadid", "regardingobjectid", "leadid"),
        "stage": ("stepname", "salesstage", "salesstagecode", "statuscode"),
        "stage_at": ("modifiedon", "actualclosedate", "createdon"),
        "amount": ("actualvalue", "estimatedvalue"),
        "type": ("activitytypecode", "activitytypecodename"),
        "activity_at": ("actualstart", "scheduledstart", "createdon"),
        "cost": ("totalactualcost", "budgetedcost", "totalcampaignactivityactualcost"),
        "channel": ("typecode", "typecodename"),
        "campaign_key": ("campaignid", "name"),
    },
    "generic": {
        "lead_id": ("lead id", "lead", "id", "lead number"),
        "created_at": ("created date", "created at", "created", "create date", "created on", "signup date",
                       "add time", "added at", "date added"),
        "campaign": ("campaign", "campaign name", "utm campaign"),
        "source": ("lead source", "source", "channel", "utm source"),
        "account": ("company", "account", "organization", "organisation", "account name", "company name",
                    "org name", "organization name", "organisation name"),
        "owner": ("owner", "lead owner", "assigned to", "rep", "sales rep"),
        "ref": ("lead id", "leadid", "lead", "lead number", "contact id", "contactid", "who id", "whoid"),
        "stage": ("stage", "status", "deal stage", "to stage"),
        "stage_at": ("stage date", "date", "changed at", "occurred at", "updated at", "date entered stage"),
        "amount": ("amount", "value", "deal value"),
        "type": ("activity type", "activitytype", "type", "event", "event type"),
        "activity_at": ("activity date", "date", "occurred at", "timestamp", "event date"),
        "cost": ("cost", "spend", "budget"),
        "channel": ("channel", "type", "campaign type"),
        "campaign_key": ("campaign", "campaign name", "name"),
    },
}

# A snapshot export's outcome column (one row per lead, no stage history), and the values config's
# data.leads.positive counts as a win by default.
LABEL_NAMES = ("converted", "is converted", "isconverted", "won", "is won", "outcome", "label", "target", "closed won")
POSITIVE = ("1", "yes", "true", "won", "converted")

# Outcome dates as columns of the leads file (a deals export, HubSpot's lifecycle dates): used when no stage
# history file is found.
WON_DATE_NAMES = ("won at", "won time", "won date", "date won", "won on", "closed won date", "close won date",
                  "became a customer date", "converted date", "conversion date", "date converted", "converted at",
                  "converted on")
LOST_DATE_NAMES = ("lost at", "lost time", "lost date", "date lost", "lost on", "closed lost date", "close lost date")

# Stage values: a loss first ("Closed - Not Converted" holds "converted"), then a win.
LOST_WORDS = ("lost", "not converted", "disqualif", "unqualif", "dead", "cancel", "rejected", "junk", "churn")
WON_WORDS = ("won", "converted", "closed win", "customer", "signed", "win")

# Columns that describe a person or hold free text: never a feature, whatever their content.
PERSONAL_WORDS = ("first name", "last name", "full name", "name", "firstname", "lastname", "fullname", "email",
                  "emailaddress1", "e mail", "phone", "mobile", "telephone1", "mobilephone", "fax", "street",
                  "address", "address1 line1", "zip", "postal code", "postalcode", "website", "url", "websiteurl",
                  "description", "notes", "comments", "subject", "topic", "ip address", "linkedin", "twitter",
                  "salutation", "middle name", "lead name", "contact name", "title name")


OWNER_WORDS = {n for crm in NAMES.values() for n in crm["owner"]}


@dataclass
class FileSample:
    path: Path
    table: pa.Table  # every cell as text, the first SAMPLE_ROWS rows
    rows: int
    words: dict[str, str]  # column -> column_words
    decimal: str = "."  # how the file writes numbers as text (ingest's rule: "," in a ";"-delimited file)

    def find(self, names: tuple[str, ...], taken: set[str] = frozenset()) -> str | None:
        """The first column (in the order of ``names``) whose words are one of ``names``."""
        for name in names:
            for col, words in self.words.items():
                if words == name and col not in taken:
                    return col
        return None


@dataclass
class Proposal:
    crm: str
    text: str  # the commented TOML
    files: dict[str, Path]
    left_out: dict[str, str] = field(default_factory=dict)  # leads column -> why
    warnings: list[str] = field(default_factory=list)


def _sample(path: Path) -> FileSample:
    """The file as ingest reads it, every cell as text (typed Parquet columns too)."""
    raw, info = read_export(FileTable(path=path), f"init ({path.name})")
    head = raw.slice(0, SAMPLE_ROWS)
    head = pa.table([cells.as_strings(c.combine_chunks()) for c in head.columns], names=head.column_names)
    return FileSample(path, head, raw.num_rows, {c: column_words(c) for c in raw.column_names},
                      info.get("decimal", "."))


def _names(crm: str, role: str) -> tuple[str, ...]:
    if crm == "generic":
        return NAMES["generic"][role]
    return NAMES[crm][role] + tuple(n for n in NAMES["generic"][role] if n not in NAMES[crm][role])


def _crm_of(samples: list[FileSample]) -> str:
    """The CRM whose own names (generic ones aside) the export's columns match most; "generic" if none."""
    words = {w for s in samples for w in s.words.values()}
    hits = {crm: len(words & {n for names in NAMES[crm].values() for n in names} - set(
        n for names in NAMES["generic"].values() for n in names)) for crm in CRMS}
    best = max(hits, key=hits.get)
    return best if hits[best] > 0 else "generic"


def _present(column: pa.Array) -> np.ndarray:
    trimmed = pc.utf8_trim_whitespace(column)
    return (pc.fill_null(pc.not_equal(trimmed, ""), False)).to_numpy(zero_copy_only=False)


def _share_parsed(column: pa.Array, kind: str, decimal: str = ".", order: str | None = None) -> float:
    """Of the non-empty cells, the share the cell rules read as a number or a date-time (``order``:
    ``data.date_order``)."""
    present = _present(column)
    if not present.any():
        return 0.0
    if kind == "number":
        _, problem = cells.number(column, decimal)
    else:
        _, problem = cells.timestamp(column, "UTC", np.iinfo(np.int64).min + 1, np.iinfo(np.int64).max, order)
    return float((problem[present] == cells.OK).mean())


DATE_ORDER_WORDS = {"DMY": "the day first (20/09/2024)", "MDY": "the month first (09/20/2024)"}


def _date_order(leads: FileSample, created: str | None) -> tuple[str | None, str | None]:
    """``data.date_order`` for a creation date written with the year last, when the first rows tell the day from
    the month; and a note for the user when they do not, or when the column reads as no date at all."""
    if created is None:
        return None, None
    column = leads.table[created].combine_chunks()
    if _share_parsed(column, "time") >= 0.9:
        return None, None
    share = {o: _share_parsed(column, "time", order=o) for o in DATE_ORDER_WORDS}
    best = max(share, key=share.get)
    where = f"{leads.path.name}: {created!r}"
    if share[best] >= 0.9 and share[best] > min(share.values()):  # a cell one order reads and the other cannot
        return best, (f"{where} writes dates with the year last and {DATE_ORDER_WORDS[best]}: "
                      f"data.date_order = {best!r} reads them")
    if share[best] >= 0.9:
        return None, (f"{where} writes dates with the year last, and no day in the first rows is above 12: set "
                      "data.date_order to \"DMY\" (day first) or \"MDY\" (month first), or those leads are quarantined")
    return None, (f"{where} does not read as date-times such as 2026-05-01T09:30:00Z in most rows; export it in ISO "
                  "8601 (or those leads are quarantined)")


def _role_of_file(sample: FileSample, crm: str) -> str | None:
    """What a file other than the leads file holds, by the columns it has."""
    def has(role: str) -> bool:
        return sample.find(_names(crm, role)) is not None

    if has("stage") and has("ref"):
        return "outcomes"
    if has("type") and has("ref"):
        return "activities"
    if has("cost") and has("campaign_key"):
        return "campaigns"
    return None


def _campaign_key(campaigns: FileSample, crm: str, lead_campaigns: pa.Array) -> tuple[str | None, int]:
    """The campaigns file's column whose values name the leads' campaigns (a name or an id), and how many of
    the leads' campaigns it names."""
    wanted = pc.unique(lead_campaigns)
    best, overlap = None, -1
    for name in _names(crm, "campaign_key"):
        col = campaigns.find((name,))
        if col is not None:
            found = int(pc.sum(pc.is_in(wanted, value_set=campaigns.table[col].combine_chunks())).as_py() or 0)
            if found > overlap:
                best, overlap = col, found
    return best, max(overlap, 0)


def _pick_leads(samples: list[FileSample], crm: str) -> FileSample:
    """The leads file: an id, a creation time (or, in a snapshot export, an outcome column), and the most
    columns (stage and activity files have few)."""
    candidates = [s for s in samples if s.find(_names(crm, "lead_id"))
                  and (s.find(_names(crm, "created_at")) or _label_column(s))]
    if not candidates:
        raise DataError("no file in the export has a lead id and a creation date column (looked for "
                        f"{', '.join(repr(n) for n in _names(crm, 'lead_id')[:4])} and "
                        f"{', '.join(repr(n) for n in _names(crm, 'created_at')[:3])}); rename those columns in the "
                        "export, or write the config by hand (README: Use your own CRM export)")
    return max(candidates, key=lambda s: (s.rows > 0, s.find(_names(crm, "created_at")) is not None,
                                          len(s.words), s.rows))


ID_WORDS = ("id", "number", "no", "key", "code", "guid", "uuid")


def _id_problem(sample: FileSample, col: str) -> str | None:
    """Why the column cannot be the lead id (empty or repeated cells in the first rows), or None."""
    column = sample.table[col].combine_chunks()
    present = _present(column)
    filled = int(present.sum())
    repeated = filled - (len(pc.unique(column.filter(pa.array(present)))) if filled else 0)
    if filled < 0.99 * len(column) or repeated > 0.01 * max(filled, 1):
        return f"{len(column) - filled:,} empty and {repeated:,} repeated cells in the first {len(column):,} rows"
    return None


def _lead_id(sample: FileSample, names: tuple[str, ...], other_columns: bool) -> tuple[str, str | None]:
    """The lead id: the first column named like one that is filled and unique; else (``other_columns``: no other
    file refers to leads) a column named like any identifier ("Customer Number") that is; else the first named
    like a lead id, with a warning."""
    named = [c for name in names for c, words in sample.words.items() if words == name]
    for col in dict.fromkeys(named):
        if _id_problem(sample, col) is None:
            return col, None
    other = [c for c, words in sample.words.items() if other_columns and c not in named
             and (words.split()[-1:] and words.split()[-1] in ID_WORDS or (" " not in words and words.endswith("id")))]
    for col in other:
        if _id_problem(sample, col) is None:
            return col, (f"{sample.path.name}: {named[0]!r} is not an id ({_id_problem(sample, named[0])}); {col!r}, "
                         "filled and unique, is used as the lead id") if named else None
    return named[0], (f"{sample.path.name}: the lead id {named[0]!r} has {_id_problem(sample, named[0])}; those rows "
                      "will be quarantined (missing or duplicate lead id)")


def _label_column(sample: FileSample) -> str | None:
    """A snapshot export's outcome column: named like one, with two values of which one reads as a win."""
    for col, words in sample.words.items():
        if words in LABEL_NAMES:
            values = _values(sample, col)
            if len(values) == 2 and any(v.lower() in POSITIVE for v in values):
                return col
    return None


def _values(sample: FileSample, column: str) -> list[str]:
    """The distinct non-empty values of a column in the sample, sorted."""
    return sorted(v for v in pc.unique(pc.utf8_trim_whitespace(sample.table[column])).to_pylist() if v)


def _stage_labels(values: list[str]) -> tuple[list[str], list[str], list[str]]:
    won, lost, other = [], [], []
    for v in values:
        low = v.lower()
        if any(w in low for w in LOST_WORDS):
            lost.append(v)
        elif any(w in low for w in WON_WORDS):
            won.append(v)
        else:
            other.append(v)
    return won, lost, other


def _judge_lead_columns(sample: FileSample, taken: set[str],
                        order: str | None = None) -> tuple[list[str], list[str], list[str], dict[str, str]]:
    """(categorical, numeric, passthrough, left out with why) for the leads columns no role took."""
    categorical, numeric, passthrough, left = [], [], [], {}
    leaky = post_outcome_columns([c for c in sample.words if c not in taken])
    for col, words in sample.words.items():
        if col in taken:
            continue
        column = sample.table[col].combine_chunks()
        present = _present(column)
        filled = int(present.sum())
        distinct = len(pc.unique(column.filter(pa.array(present)))) if filled else 0
        if col in leaky:
            left[col] = (f"post-outcome: named like a column filled in after contact or after the outcome "
                         f"({leaky[col]!r}); mapping it would teach the model the future")
        elif words in PERSONAL_WORDS or (words.endswith((" email", " phone")) and distinct > 20):
            left[col] = "describes a person or holds free text: never a feature"
        elif filled == 0:
            left[col] = "empty in the first rows"
        elif distinct == 1:
            left[col] = "one value in every row: tells nothing apart"
        elif words in OWNER_WORDS or words.removesuffix(" id").removesuffix("id") in OWNER_WORDS:
            passthrough.append(col)
        elif (_share_parsed(column, "time", order=order) >= 0.9
              and _share_parsed(column, "number", sample.decimal) < 0.5):
            left[col] = ("a date: dates other than the creation time are often set later, and the lead's age "
                         "is a feature already")
        elif words.split()[-1] in ("id", "guid", "uuid") or (
                " " not in words and words.endswith("id") and distinct > 0.5 * filled):  # "Account ID", "parentid"
            left[col] = "another record's id"
        elif _share_parsed(column, "number", sample.decimal) >= 0.95:
            numeric.append(col)
        elif distinct > 50 and distinct > 0.5 * filled:
            left[col] = f"an identifier or free text ({distinct:,} different values in {filled:,} rows)"
        else:
            categorical.append(col)
    return categorical, numeric, passthrough, left


def _toml(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string or list of strings is valid TOML


def propose_config(export_dir: Path, crm: str = "auto", horizon_days: int = 90) -> Proposal:
    """Read every CSV or Parquet file in ``export_dir`` and propose the config that maps them."""
    export_dir = Path(export_dir).resolve()
    if not export_dir.is_dir():
        raise DataError(f"EXPORT_DIR: {export_dir} is not a folder")
    paths = sorted(p for p in export_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".txt", ".parquet", ".pq")
                   and not p.name.startswith("."))
    if not paths:
        raise DataError(f"EXPORT_DIR: no .csv or .parquet file in {export_dir}")
    samples, warnings = [], []
    for path in paths:
        try:
            samples.append(_sample(path))
        except DataError as exc:  # one unreadable or empty file must not hide the others
            warnings.append(f"{path.name}: cannot be read ({str(exc).split(': ', 1)[-1]}); left out")
    crm = _crm_of(samples) if crm == "auto" else crm
    leads = _pick_leads(samples, crm)
    others = [s for s in samples if s is not leads and s.rows > 0]
    warnings += [f"{s.path.name}: no rows; left out" for s in samples if s is not leads and s.rows == 0]
    roles = {s.path: _role_of_file(s, crm) for s in others}
    picked = {}
    for role in ("outcomes", "activities", "campaigns"):
        found = [s for s in others if roles[s.path] == role]
        if role == "outcomes" and len(found) > 1:  # the one whose stages include a win
            found.sort(key=lambda s: not _stage_labels(_values(s, s.find(_names(crm, "stage"))))[0])
        picked[role] = found[0] if found else None
        warnings += [f"{s.path.name}: also looks like {role}; {found[0].path.name} is used" for s in found[1:]]
    outcomes, activities, campaigns = picked["outcomes"], picked["activities"], picked["campaigns"]
    warnings += [f"{s.path.name}: not recognised as stage history, activities or campaigns; left out"
                 for s in others if roles[s.path] is None]

    def find(sample: FileSample, role: str, taken: set[str] = frozenset()) -> str | None:
        return sample.find(_names(crm, role), taken)

    # Stage and activity files name the lead by their own id column: with them, the id is the one named so.
    lead_id, note = _lead_id(leads, _names(crm, "lead_id"), other_columns=outcomes is None and activities is None)
    if note:
        warnings.append(note)
    created = find(leads, "created_at", {lead_id})
    order, note = _date_order(leads, created)
    if note:
        warnings.append(note)
    dated = {}  # won_at / lost_at: outcome dates in the leads file, when there is no stage history
    if outcomes is None and created is not None:
        for role, names in (("won_at", WON_DATE_NAMES), ("lost_at", LOST_DATE_NAMES)):
            col = leads.find(names, {lead_id, created})
            if col is not None and _share_parsed(leads.table[col].combine_chunks(), "time", order=order) >= 0.9:
                dated[role] = col
        dated = dated if "won_at" in dated else {}
    label_column = _label_column(leads) if outcomes is None and not dated else None
    if created is None and label_column is None:
        raise DataError(f"{leads.path.name}: no creation date column and no outcome column; write the config by hand "
                        "(README: Use your own CRM export)")
    taken = {lead_id, created, label_column, *dated.values()} - {None}
    mapping = {}
    for role in ("campaign", "source", "account"):
        col = find(leads, role, taken)
        if col:
            mapping[role] = col
            taken.add(col)
            column = leads.table[col].combine_chunks()
            if _share_parsed(column, "number", leads.decimal) >= 0.95:  # a count named like a role ("campaign")
                warnings.append(f"{leads.path.name}: {col!r} is mapped as the {role}, but it holds numbers; if they "
                                f"count something rather than name a {role}, move it to numeric")
    categorical, numeric, passthrough, left = _judge_lead_columns(leads, taken, order)

    title = {"salesforce": "a Salesforce export", "hubspot": "a HubSpot export", "dynamics": "a Dynamics 365 export",
             "generic": "column names of no CRM leadscore knows: matched by common names"}[crm]
    lines = [f"# leadscore config proposed by `leadscore init` from {export_dir.as_posix()}",
             f"# ({title}). Check each mapping; `leadscore run --config THIS_FILE` accepts it as is.",
             ""]
    if order:
        lines += ["[data]", f"date_order = {_toml(order)}  # dates with the year last: {DATE_ORDER_WORDS[order]}", ""]
    lines += ["[data.leads]", f"path = {_toml(leads.path.as_posix())}", f"id = {_toml(lead_id)}"]
    if label_column is not None:
        lines += [f"# A snapshot export: no stage history, the outcome is {label_column!r} (random split, no history "
                  "features).", f"label = {_toml(label_column)}"]
        if created is not None:
            warnings.append(f"{leads.path.name}: no stage history file; the outcome is read from {label_column!r}, so "
                            f"{created!r} is left out: a snapshot has no time to split by")
    elif created is not None:
        lines.append(f"created_at = {_toml(created)}")
    if dated:
        lines.append("# Outcomes: a date in won_at is a win at that time, in lost_at a loss; an empty cell is none yet.")
        lines += [f"{role} = {_toml(col)}" for role, col in dated.items()]
    lines += [f"{role} = {_toml(col)}" for role, col in mapping.items()]
    lines += [f"categorical = {_toml(categorical)}", f"numeric = {_toml(numeric)}",
              f"passthrough = {_toml(passthrough)}  # copied to the published scores, never a feature"]
    if left:
        lines.append("# Left out (map one only if it is known when the lead arrives):")
        lines += [f"#   {_toml(col)}: {why}" for col, why in left.items()]

    label: list[str] = []
    if outcomes is not None:
        ref, stage = find(outcomes, "ref"), find(outcomes, "stage")
        at = find(outcomes, "stage_at", {ref, stage})
        amount = find(outcomes, "amount", {ref, stage, at})
        if at is None:
            warnings.append(f"{outcomes.path.name}: no stage date column found; stage history left out")
        else:
            full, _ = read_export(FileTable(path=outcomes.path), "init")  # every stage: an unlisted one is quarantined
            values = sorted(v for v in pc.unique(pc.utf8_trim_whitespace(cells.as_strings(full[stage]))).to_pylist() if v)
            field_col = outcomes.find(("field", "field event"))
            if field_col is not None and len(_values(outcomes, field_col)) > 1:  # a field-history export
                warnings.append(f"{outcomes.path.name}: {field_col!r} holds changes of several fields; export only the "
                                "status or stage changes, or every other field's values count as stages")
            won, lost, other = _stage_labels(values)
            lines += ["", "[data.outcomes]", f"path = {_toml(outcomes.path.as_posix())}", f"lead_id = {_toml(ref)}",
                      f"stage = {_toml(stage)}", f"occurred_at = {_toml(at)}"]
            if amount:
                lines.append(f"amount = {_toml(amount)}")
            if not won:
                raise DataError(f"{outcomes.path.name}: no value of {stage!r} reads as a win ({', '.join(values[:12])}); "
                                "write the config by hand with label.won_stages")
            label = [f"# From the {len(values)} values of {stage!r} in {outcomes.path.name}.",
                     f"won_stages = {_toml(won)}", f"lost_stages = {_toml(lost)}", f"other_stages = {_toml(other)}"]
    if activities is not None:
        ref, kind = find(activities, "ref"), find(activities, "type")
        at = find(activities, "activity_at", {ref, kind})
        if at is None:
            warnings.append(f"{activities.path.name}: no activity date column found; activities left out")
        else:
            lines += ["", "[data.activities]", f"path = {_toml(activities.path.as_posix())}",
                      f"lead_id = {_toml(ref)}", f"type = {_toml(kind)}", f"occurred_at = {_toml(at)}"]
    if campaigns is not None and "campaign" not in mapping:
        warnings.append(f"{campaigns.path.name}: campaign costs found, but no campaign column in the leads file")
    if campaigns is not None and "campaign" in mapping:
        cost = find(campaigns, "cost")
        key, overlap = _campaign_key(campaigns, crm, leads.table[mapping["campaign"]].combine_chunks())
        if not overlap:
            warnings.append(f"{campaigns.path.name}: no value of {key!r} names a campaign of the leads' "
                            f"{mapping['campaign']!r}; campaign costs will join nothing until they match")
        channel = find(campaigns, "channel", {key, cost})
        lines += ["", "[data.campaigns]", f"path = {_toml(campaigns.path.as_posix())}", f"campaign = {_toml(key)}",
                  f"cost = {_toml(cost)}"]
        if channel:
            lines.append(f"channel = {_toml(channel)}")
    if dated and not label:
        label = [f"# Wins are the dates in {dated['won_at']!r} of {leads.path.name}"
                 + (f", losses those in {dated['lost_at']!r}." if "lost_at" in dated else ".")]
    if not label and label_column is None:
        unknown = "; ".join(f"{s.path.name} ({', '.join(list(s.words)[:8])}{', ...' if len(s.words) > 8 else ''})"
                            for s in others if roles[s.path] is None)
        raise DataError(f"no stage history found in {export_dir} (a file with a lead reference, a stage and a date), "
                        "and no outcome column (such as 'Converted') in the leads: leadscore needs the outcomes to "
                        "learn from" + (f". Files not recognised, with their columns: {unknown}; a stage history "
                                        "needs a lead reference (e.g. 'Lead ID'), a stage and a date column, or "
                                        "write [data.outcomes] by hand" if unknown else ""))
    if label:
        lines += ["", "[label]", *label,
                  f"horizon_days = {horizon_days}  # a lead is a win if won within this many days"]
    lines += ["", "[publish]", f"crm = {_toml([crm] if crm in CRMS else [])}  # write-back files under crm/", "",
              "# Routing (README: Routing): every lead goes to the fallback queue until queues are listed, e.g.",
              "# [[routing.queues]]", '# name = "sdr"', "# capacity = 100        # leads per day",
              '# tiers = ["A", "B"]', ""]
    files = {"leads": leads.path, **{k: s.path for k, s in (("outcomes", outcomes), ("activities", activities),
                                                             ("campaigns", campaigns)) if s is not None}}
    return Proposal(crm, "\n".join(lines), files, left, warnings)
