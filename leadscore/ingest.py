"""Export files -> canonical tables, plus quarantine.

This module is the only one that knows file formats and the config's column map. Every input row ends up
either in a canonical table or in the quarantine with a reason; ``IngestResult.counts`` holds the
accounting (rows in = kept + quarantined, per table) that goes into the run's manifest.

Canonical tables (Arrow, timestamps UTC):
- leads: lead_id, created_at, campaign, source, account, then the mapped categorical (string), numeric
  (double) and passthrough (string) columns under their export names;
- outcomes: lead_id, stage, occurred_at, amount;
- activities: lead_id, type, occurred_at;
- campaigns: campaign, cost, channel.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.config import Config, FileTable
from leadscore.duck import connect, literal, utc_timestamps
from leadscore.errors import DataError
from leadscore.paths import Home

log = logging.getLogger("leadscore")


@dataclass
class IngestResult:
    tables: dict[str, pa.Table]
    quarantined: dict[str, pa.Table] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    as_of: datetime | None = None

    def quarantine_share(self) -> float:
        rows_in = sum(c["rows_in"] for c in self.counts.values())
        bad = sum(c["quarantined"] for c in self.counts.values())
        return bad / rows_in if rows_in else 0.0

    def reasons(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, table in self.quarantined.items():
            values, counts = _value_counts(table.column("reason"))
            out[name] = dict(zip(values, counts))
        return out


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    vc = column.value_counts()
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


# --- reading -----------------------------------------------------------------------------------------

def _sniff(path: Path, table: FileTable) -> tuple[str, str]:
    head = path.open("rb").read(65_536)
    encoding = table.encoding
    if encoding is None:
        if head.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8-sig"
        else:
            try:
                head.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError as exc:
                # A cut in the middle of a multi-byte character at the end of the sample is still UTF-8.
                encoding = "utf-8" if exc.start >= len(head) - 3 else "latin-1"
    delimiter = table.delimiter
    if delimiter is None:
        first = head.split(b"\n", 1)[0].decode("latin-1")
        delimiter = max([",", ";", "\t", "|"], key=first.count)
    return encoding, delimiter


def read_export(table: FileTable, key: str) -> pa.Table:
    """Read one export file as given. CSV cells stay text; parsing and checking happen in SQL."""
    path = table.path
    if not path.is_file():
        raise DataError(f"{key}.path: file {path} not found")
    fmt = table.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        encoding, delimiter = _sniff(path, table)
        names = _header_names(path, encoding, delimiter)
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=encoding.replace("-sig", ""), block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{key}.path: cannot read {path} as {fmt.upper()}: {str(exc).splitlines()[0]}") from None


def _header_names(path: Path, encoding: str, delimiter: str) -> list[str]:
    import csv

    with path.open("r", encoding=encoding, newline="") as fh:
        return next(csv.reader(fh, delimiter=delimiter), [])


def _require_columns(raw: pa.Table, mapping: dict[str, str], key: str) -> None:
    present = set(raw.column_names)
    for cfg_key, column in mapping.items():
        if column not in present:
            close = difflib.get_close_matches(column, raw.column_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the file has {raw.column_names[:12]}"
            raise DataError(f"{key}.{cfg_key}: column {column!r} not found in the export{hint}")


# --- validating --------------------------------------------------------------------------------------

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(col: str) -> str:
    return f"NULLIF(TRIM(CAST({_q(col)} AS VARCHAR)), '')"


def _ts(col: str) -> str:
    return f"TRY_CAST({_text(col)} AS TIMESTAMPTZ)"


def _num(col: str) -> str:
    # Thousands separators are common in exports ("1,200"); anything else that is not a number is bad.
    return f"TRY_CAST(REPLACE({_text(col)}, ',', '') AS DOUBLE)"


def _split(con: duckdb.DuckDBPyConnection, raw: pa.Table, select: str, reason: str) -> tuple[pa.Table, pa.Table]:
    """Run one validation query: rows with a NULL reason are kept, the others are quarantined as read."""
    con.register("raw_in", raw.append_column("_row", pa.array(range(1, raw.num_rows + 1), pa.int64())))
    con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS SELECT *, {reason} AS reason FROM raw_in")
    kept = con.sql(f"SELECT {select} FROM checked WHERE reason IS NULL ORDER BY _row").to_arrow_table()
    bad = con.sql("SELECT * FROM checked WHERE reason IS NOT NULL ORDER BY _row").to_arrow_table()
    con.unregister("raw_in")
    con.execute("DROP TABLE checked")
    return kept, bad


def _first_of(checks: list[tuple[str, str]]) -> str:
    """A CASE expression giving the first failing check's reason, or NULL."""
    whens = " ".join(f"WHEN {cond} THEN {reason}" for cond, reason in checks)
    return f"CASE {whens} ELSE NULL END"


def ingest(cfg: Config, now: datetime | None = None) -> IngestResult:
    """Read, check and canonicalize every mapped export. ``now`` bounds what counts as a future date."""
    now = now or datetime.now(timezone.utc)
    con = connect(cfg.data.timezone, Home(cfg.home).root / "tmp" / "duckdb")
    try:
        future = (now + timedelta(days=1)).isoformat()
        result = IngestResult(tables={})
        for read_table in (_leads, _outcomes, _activities, _campaigns):
            read_table(con, cfg, future, result)
    finally:
        con.close()
    for name, table in result.tables.items():
        result.tables[name] = utc_timestamps(table)
    # A snapshot export may carry no timestamp at all: then it is as of now.
    result.as_of = cfg.data.as_of or _latest(result.tables) or now.replace(microsecond=0)
    return result


def _leads(con: duckdb.DuckDBPyConnection, cfg: Config, future: str, result: IngestResult) -> None:
    lc = cfg.data.leads
    raw = read_export(lc, "data.leads")
    roles = {"id": lc.id}
    for role in ("created_at", "label", "campaign", "source", "account"):
        if getattr(lc, role):
            roles[role] = getattr(lc, role)
    attrs = {f"categorical[{i}]": c for i, c in enumerate(lc.categorical)}
    attrs |= {f"numeric[{i}]": c for i, c in enumerate(lc.numeric)}
    attrs |= {f"passthrough[{i}]": c for i, c in enumerate(lc.passthrough)}
    _require_columns(raw, roles | attrs, "data.leads")
    checks = [(f"{_text(lc.id)} IS NULL", literal("missing lead id"))]
    if lc.created_at:
        checks += [
            (f"{_text(lc.created_at)} IS NULL", literal(f"missing {lc.created_at}")),
            (f"{_ts(lc.created_at)} IS NULL", f"'unparseable {lc.created_at}: ' || {_text(lc.created_at)}"),
            (f"{_ts(lc.created_at)} > TIMESTAMPTZ {literal(future)}", literal(f"{lc.created_at} in the future")),
        ]
    for col in lc.numeric:
        checks.append((f"{_text(col)} IS NOT NULL AND {_num(col)} IS NULL",
                       f"'non-numeric {col}: ' || {_text(col)}"))
    # A repeated id keeps its first valid row; the later ones are quarantined.
    dup = (f"ROW_NUMBER() OVER (PARTITION BY {_text(lc.id)}, ({_first_of(checks)}) IS NULL ORDER BY _row) > 1 "
           f"AND ({_first_of(checks)}) IS NULL")
    checks.append((dup, literal("duplicate lead id (first row kept)")))
    cols = [f"{_text(lc.id)} AS lead_id",
            f"{_ts(lc.created_at)} AS created_at" if lc.created_at else "CAST(NULL AS TIMESTAMPTZ) AS created_at"]
    if lc.label:
        # Snapshot exports: 1 for a positive value, 0 for any other value, NULL (unknown) for an empty cell.
        positive = ", ".join(literal(v.strip().lower()) for v in lc.positive)
        cols.append(f"CASE WHEN {_text(lc.label)} IS NULL THEN NULL "
                    f"WHEN LOWER({_text(lc.label)}) IN ({positive}) THEN 1 ELSE 0 END::TINYINT AS outcome_label")
    for role in ("campaign", "source", "account"):
        col = getattr(lc, role)
        cols.append(f"{_text(col)} AS {role}" if col else f"CAST(NULL AS VARCHAR) AS {role}")
    cols += [f"{_text(c)} AS {_q(c)}" for c in (*lc.categorical, *lc.passthrough) if c not in roles.values()]
    cols += [f"{_num(c)} AS {_q(c)}" for c in lc.numeric]
    leads, bad = _split(con, raw, ", ".join(cols), _first_of(checks))
    _record(result, "leads", raw.num_rows, leads, bad)

    con.register("kept_leads", leads)


def _outcomes(con: duckdb.DuckDBPyConnection, cfg: Config, future: str, result: IngestResult) -> None:
    """Stage changes; a snapshot export has none."""
    oc = cfg.data.outcomes
    if oc is None:
        result.tables["outcomes"] = pa.table({
            "lead_id": pa.array([], pa.string()), "stage": pa.array([], pa.string()),
            "occurred_at": pa.array([], pa.timestamp("us", "UTC")), "amount": pa.array([], pa.float64())})
        return
    raw = read_export(oc, "data.outcomes")
    mapping = {"lead_id": oc.lead_id, "stage": oc.stage, "occurred_at": oc.occurred_at}
    if oc.amount:
        mapping["amount"] = oc.amount
    _require_columns(raw, mapping, "data.outcomes")
    checks = _event_checks(oc.lead_id, oc.occurred_at, future, "outcome")
    checks.insert(1, (f"{_text(oc.stage)} IS NULL", literal(f"missing {oc.stage}")))
    if cfg.label.other_stages is not None:
        known = ", ".join(literal(x) for x in (*cfg.label.won_stages, *cfg.label.lost_stages, *cfg.label.other_stages))
        checks.insert(2, (f"{_text(oc.stage)} NOT IN ({known})", f"'unknown {oc.stage}: ' || {_text(oc.stage)}"))
    checks.append((f"{_ts(oc.occurred_at)} < (SELECT created_at FROM kept_leads k WHERE k.lead_id = {_text(oc.lead_id)})",
                   literal(f"{oc.occurred_at} before the lead was created")))
    if oc.amount:
        checks.append((f"{_text(oc.amount)} IS NOT NULL AND {_num(oc.amount)} IS NULL",
                       f"'non-numeric {oc.amount}: ' || {_text(oc.amount)}"))
    cols = [f"{_text(oc.lead_id)} AS lead_id", f"{_text(oc.stage)} AS stage", f"{_ts(oc.occurred_at)} AS occurred_at",
            (f"{_num(oc.amount)} AS amount" if oc.amount else "CAST(NULL AS DOUBLE) AS amount")]
    outcomes, bad = _split(con, raw, ", ".join(cols), _first_of(checks))
    _record(result, "outcomes", raw.num_rows, outcomes, bad)


def _activities(con: duckdb.DuckDBPyConnection, cfg: Config, future: str, result: IngestResult) -> None:
    ac = cfg.data.activities
    if ac is not None:
        raw = read_export(ac, "data.activities")
        _require_columns(raw, {"lead_id": ac.lead_id, "type": ac.type, "occurred_at": ac.occurred_at}, "data.activities")
        checks = _event_checks(ac.lead_id, ac.occurred_at, future, "activity")
        checks.insert(1, (f"{_text(ac.type)} IS NULL", literal(f"missing {ac.type}")))
        cols = [f"{_text(ac.lead_id)} AS lead_id", f"{_text(ac.type)} AS type", f"{_ts(ac.occurred_at)} AS occurred_at"]
        activities, bad = _split(con, raw, ", ".join(cols), _first_of(checks))
        _record(result, "activities", raw.num_rows, activities, bad)
    else:
        result.tables["activities"] = pa.table({"lead_id": pa.array([], pa.string()), "type": pa.array([], pa.string()),
                                                "occurred_at": pa.array([], pa.timestamp("us", "UTC"))})


def _campaigns(con: duckdb.DuckDBPyConnection, cfg: Config, future: str, result: IngestResult) -> None:
    cc = cfg.data.campaigns
    if cc is not None:
        raw = read_export(cc, "data.campaigns")
        mapping = {"campaign": cc.campaign, "cost": cc.cost}
        if cc.channel:
            mapping["channel"] = cc.channel
        _require_columns(raw, mapping, "data.campaigns")
        checks = [
            (f"{_text(cc.campaign)} IS NULL", literal("missing campaign")),
            (f"{_text(cc.cost)} IS NOT NULL AND {_num(cc.cost)} IS NULL", f"'non-numeric {cc.cost}: ' || {_text(cc.cost)}"),
        ]
        checks.append((f"ROW_NUMBER() OVER (PARTITION BY {_text(cc.campaign)}, ({_first_of(checks)}) IS NULL ORDER BY _row) > 1 "
                       f"AND ({_first_of(checks)}) IS NULL", literal("duplicate campaign (first row kept)")))
        cols = [f"{_text(cc.campaign)} AS campaign", f"{_num(cc.cost)} AS cost",
                (f"{_text(cc.channel)} AS channel" if cc.channel else "CAST(NULL AS VARCHAR) AS channel")]
        campaigns, bad = _split(con, raw, ", ".join(cols), _first_of(checks))
        _record(result, "campaigns", raw.num_rows, campaigns, bad)


def _event_checks(lead_col: str, at_col: str, future: str, what: str) -> list[tuple[str, str]]:
    return [
        (f"{_text(lead_col)} IS NULL", literal("missing lead id")),
        (f"{_text(at_col)} IS NULL", literal(f"missing {at_col}")),
        (f"{_ts(at_col)} IS NULL", f"'unparseable {at_col}: ' || {_text(at_col)}"),
        (f"{_ts(at_col)} > TIMESTAMPTZ {literal(future)}", literal(f"{at_col} in the future")),
        (f"{_text(lead_col)} NOT IN (SELECT lead_id FROM kept_leads)", literal(f"{what} for an unknown lead")),
    ]


def _record(result: IngestResult, name: str, rows_in: int, kept: pa.Table, bad: pa.Table) -> None:
    result.tables[name] = kept
    if bad.num_rows:
        result.quarantined[name] = bad
    result.counts[name] = {"rows_in": rows_in, "kept": kept.num_rows, "quarantined": bad.num_rows}
    if kept.num_rows + bad.num_rows != rows_in:  # a bug, not a user error: keep the traceback
        raise AssertionError(f"{name}: {rows_in} rows in, {kept.num_rows} kept + {bad.num_rows} quarantined")


def _latest(tables: dict[str, pa.Table]) -> datetime | None:
    import pyarrow.compute as pc

    if tables["leads"].num_rows == 0:
        raise DataError("data.leads: no usable lead rows after validation; see the quarantine files")
    found = []
    for name, col in (("leads", "created_at"), ("outcomes", "occurred_at"), ("activities", "occurred_at")):
        table = tables.get(name)
        if table is not None and table.num_rows:
            found.append(pc.max(table.column(col)).as_py())
    found = [t for t in found if t is not None]
    return max(found) if found else None


# --- writing -----------------------------------------------------------------------------------------

def write_canonical(result: IngestResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(folder / f"{name}.parquet")


def read_canonical(folder: Path, lazy: bool = False) -> dict:
    """The canonical tables as Arrow tables, or (``lazy``) as datasets that duckdb scans without loading."""
    if not (folder / "leads.parquet").is_file():
        raise DataError(f"no canonical tables in {folder}; run `leadscore ingest --config FILE` first")
    if lazy:
        import pyarrow.dataset as ds

        return {p.stem: ds.dataset(p) for p in sorted(folder.glob("*.parquet"))}
    return {p.stem: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}


def write_quarantine(result: IngestResult, folder: Path) -> dict[str, Path]:
    written = {}
    for name, table in result.quarantined.items():
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.csv"
        cols = [c for c in table.column_names if c not in ("_row", "reason")]
        out = table.select(["_row", *cols, "reason"]).rename_columns(["source_row", *cols, "reason"])
        out = pa.table([c.cast(pa.string()) if not pa.types.is_string(c.type) else c for c in out.columns], names=out.column_names)
        pacsv.write_csv(out, path)
        written[name] = path
    return written
