"""Hostile input: every bad cell quarantined or named, no traceback, no cell a spreadsheet would execute, and no
bad row that changes the features of the others. One regression test per finding of issue 12, then a
hypothesis suite that builds exports with hostile cells."""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CLEAN_LEADS, copy_home, loose, make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.online import OnlineFeatures
from features.store import load_feature_set
from flows import steps
from ingest.canonical import ingest
from leadscore import cells
from leadscore.config import parse_config
from leadscore.errors import LeadscoreError
from leadscore.paths import Home, one_run_at_a_time, read_latest
from leadscore.problems import environment_problem, user_message
from leadscore.spreadsheet import FORMULA_START
from models import registry


def outcome(fn, *args) -> tuple[int, str]:
    """What the command line would make of a step: exit 0, or exit 2 with one line for a user's problem.
    Anything else propagates (it would be a traceback)."""
    try:
        fn(*args)
        return 0, ""
    except LeadscoreError as exc:
        return 2, str(exc)
    except Exception as exc:
        problem = environment_problem(exc)
        if problem is None:
            raise
        return 2, problem


def executable_cells(folder: Path) -> list[str]:
    """Cells of every CSV under ``folder`` that a spreadsheet would run as a formula (numbers excepted)."""
    import re

    risky = re.compile(FORMULA_START)
    found = []
    for path in folder.rglob("*.csv"):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    if risky.match(cell):
                        try:
                            float(cell)
                        except ValueError:
                            found.append(f"{path.name}: {cell[:40]!r}")
    return found


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",", encoding: str = "utf-8",
               extra_lines: list[str] = ()) -> None:
    buffer = io.StringIO()
    # "\r\n" as the line end makes the writer quote cells holding either character, as a careful exporter does.
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    for line in extra_lines:
        buffer.write(line + "\r\n")
    path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))


@pytest.fixture
def home(small_champion, tmp_path):
    """This test's own copy of the small champion's home: what it ingests and publishes no other test sees."""
    cfg = copy_home(small_champion[0], small_champion[1], tmp_path / "own")
    return cfg.home


def hostile_config(home: Path, export: Path, extra: str = "", data: str = ""):
    """A config for ``export`` in ``home`` (whose champion scores every case)."""
    return make_config(export, home, extra=loose(data) + extra, path=export.parent / f"{export.name}.toml")


def copy_export(small_champion, tmp_path: Path) -> Path:
    _, export, _ = small_champion
    out = tmp_path / "export"
    shutil.copytree(export, out)
    return out


def features_of(cfg) -> pd.DataFrame:
    fs, _ = load_feature_set(Home(cfg.home).features_file)
    return fs.frame.to_pandas().set_index("lead_id")


def assert_online_equals_batch(cfg) -> None:
    """The snapshot scoring builds features from equals the training features, for every lead."""
    home = Home(cfg.home)
    fs, _ = load_feature_set(home.features_file)
    want = fs.frame.to_pandas().set_index("lead_id")
    leads = pq.read_table(home.canonical / "leads.parquet").to_pandas()
    got = pd.DataFrame(OnlineFeatures.load(home.snapshot).build(leads, cfg, fs.features)).set_index("lead_id")
    want = want.loc[got.index]
    for f in fs.numeric:
        np.testing.assert_allclose(got[f].to_numpy(float), want[f].to_numpy(float), rtol=1e-12, atol=1e-12,
                                   equal_nan=True, err_msg=f)
    for f in fs.categorical:
        assert (got[f].astype("string").fillna("<NA>") == want[f].astype("string").fillna("<NA>")).all(), f


# ------------------------------------------------------------------------------------- findings, one by one

def test_1_an_old_date_is_quarantined_and_changes_no_other_score(small_champion, home, tmp_path):
    _, _, clean = small_champion
    export = copy_export(small_champion, tmp_path)
    header, rows = read_rows(export / "leads.csv")
    for i, when in enumerate(("1900-01-01 00:00:00", "0001-01-01", "1677-09-21", "9999-12-31")):
        rows.append([f"OLD{i}", when, *rows[0][2:]])
    write_rows(export / "leads.csv", header, rows)
    cfg = hostile_config(home, export)
    summary = steps.ingest_step(cfg, "old-date")
    assert summary["quarantine_reasons"]["leads"] == {
        "Created Date 1900-01-01 00:00:00 is before data.earliest (1990-01-01)": 1,
        "Created Date 0001-01-01 is before data.earliest (1990-01-01)": 1,
        "Created Date 1677-09-21 is before data.earliest (1990-01-01)": 1,
        "Created Date in the future": 1}
    assert summary["counts"]["leads"] == {"rows_in": CLEAN_LEADS + 4, "kept": CLEAN_LEADS, "quarantined": 4}
    steps.features_step(cfg)
    steps.score_step(cfg, "old-date")
    pd.testing.assert_frame_equal(features_of(cfg), clean, check_like=True)
    assert_online_equals_batch(cfg)


def test_1_event_counts_hold_for_any_time_range():
    """The online features' event index against a plain count, with times from year 1 to year 9999."""
    from features.pit import KeyCodes
    from features.pit import event_index as _events

    rng = np.random.default_rng(0)
    span = np.array([-62_135_596_800, 253_402_300_799]) * 1_000_000  # 0001-01-01 .. 9999-12-31, microseconds
    times = rng.integers(*span, 400)
    times[:50] = times[50]  # ties
    codes = rng.integers(-1, 5, 400)
    events = _events(codes, times, KeyCodes([f"k{i}" for i in range(5)]))
    q_codes, q_times = rng.integers(-1, 5, 300), np.r_[rng.integers(*span, 250), times[:50]]
    want = [((codes == c) & (times < t)).sum() if c >= 0 else 0 for c, t in zip(q_codes, q_times)]
    assert (events.count_before(q_codes, q_times) == want).all()
    last = [times[(codes == c) & (times < t)].max() if c >= 0 and ((codes == c) & (times < t)).any()
            else np.iinfo(np.int64).min for c, t in zip(q_codes, q_times)]
    assert (events.last_before(q_codes, q_times) == last).all()


def test_2_infinite_numbers_are_quarantined_and_training_runs(small_champion, home, tmp_path):
    export = copy_export(small_champion, tmp_path)
    header, rows = read_rows(export / "leads.csv")
    col = header.index("Employees")
    for i, value in enumerate(("inf", "-Infinity", "1e400", "NaN")):
        row = list(rows[i])
        row[0], row[col] = f"INF{i}", value
        rows.append(row)
    write_rows(export / "leads.csv", header, rows)
    cfg = hostile_config(home, export)
    summary = steps.ingest_step(cfg, "inf")
    reasons = summary["quarantine_reasons"]["leads"]
    assert {r for r in reasons if r.startswith("non-numeric Employees")} == {
        "non-numeric Employees: inf", "non-numeric Employees: -Infinity", "non-numeric Employees: 1e400"}
    assert summary["counts"]["leads"]["kept"] == CLEAN_LEADS + 1  # NaN is a missing value, as pandas writes one
    steps.features_step(cfg)
    assert outcome(steps.train_step, cfg, "inf") == (0, "")


@pytest.fixture(scope="module")
def api_client(small_champion, tmp_path_factory):
    from fastapi.testclient import TestClient

    from serving.api import create_app

    cfg = copy_home(small_champion[0], small_champion[1], tmp_path_factory.mktemp("api"))
    steps.ingest_step(cfg, "api")
    steps.features_step(cfg)
    steps.score_step(cfg, "api")
    with TestClient(create_app(cfg, api_key=None, watch=False), raise_server_exceptions=False) as client:
        yield client


LEAD = {"Lead ID": "NEW-1", "Created Date": "2026-06-29 10:00:00", "Campaign": "Webinar 001", "Lead Source": "Webinar",
        "Company": "Northwind", "Country": "Germany", "Industry": "Software", "Employees": "1,200",
        "Job Level": "VP", "Owner": "Rep 07"}


def test_3_the_api_answers_422_not_500_for_odd_dates_and_lone_surrogates(api_client):
    for when in ("9999-12-31", "0001-01-01", "1677-09-21", "June 5", "NaT", "29/06/2026", "2026-02-30"):
        r = api_client.post("/v1/score", json={"leads": [{**LEAD, "Created Date": when}]})
        assert r.status_code == 422, (when, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "leads", 0, "Created Date"]
    for body in ('{"leads": [{"Lead ID": "\\ud800"}]}', '{"leads": [{"Lead ID": "X", "Country": "\\udfff"}]}'):
        r = api_client.post("/v1/score", content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.text)
        json.loads(r.text)  # the answer itself is valid JSON
    # an unmapped field is ignored whatever its name, and named by its escapes
    r = api_client.post("/v1/score", content=b'{"leads": [{"Lead ID": "X", "\\ud800": "y"}]}',
                        headers={"content-type": "application/json"})
    assert r.status_code == 200 and json.loads(r.text)["ignored_fields"] == ["\\ud800"], r.text
    assert api_client.post("/v1/score", json={"leads": [LEAD]}).status_code == 200


def test_3_api_and_ingest_read_dates_alike(small_champion, home, tmp_path):
    """The same strings in a CSV export through ingest and in API requests: kept or refused alike, and the same
    instant when kept (a time in a daylight-saving gap or overlap included)."""
    from serving.api import FieldErrors, ScoringService

    whens = ["2026-03-29 02:30:00", "2026-10-25 02:30:00", "2026-06-29T10:00:00+02:00", "2026-06-29", "29/06/2026",
             "NaT", "2026-06-29 10:00:00 UTC", "1989-12-31 23:59:59", "2024-01-01+99", "2026-06-29T10:00+12:75"]
    export = copy_export(small_champion, tmp_path)
    header, rows = read_rows(export / "leads.csv")
    write_rows(export / "leads.csv", header, rows + [[f"D{i}", when, *rows[0][2:]] for i, when in enumerate(whens)])
    cfg = hostile_config(home, export, data='timezone = "Europe/Berlin"')
    now = pd.Timestamp("2026-11-30T12:00:00Z").to_pydatetime()
    kept = ingest(cfg, now).tables["leads"].to_pandas().set_index("lead_id")["created_at"]
    service = ScoringService(cfg)
    for i, when in enumerate(whens):
        try:
            api = pd.Timestamp(int(service.canonical([{**LEAD, "Created Date": when}], now)["created_at"][0]),
                               unit="us", tz="UTC")
        except FieldErrors:
            api = None
        assert api == kept.get(f"D{i}"), when
    assert kept.index.str.startswith("D").sum() == 5  # the gap, the overlap, an offset, a date, a UTC suffix


def test_4_no_published_csv_cell_is_a_formula(small_champion, home, tmp_path):
    export = copy_export(small_champion, tmp_path)
    header, rows = read_rows(export / "leads.csv")
    owner, campaign = header.index("Owner"), header.index("Campaign")
    evil = ['=HYPERLINK("http://evil.example","click")', "=cmd|' /C calc'!A0", "+1+2", "-3+4", "@SUM(A1)", "\t=1"]
    for i, value in enumerate(evil):  # open leads (the newest), so they are scored and published
        rows[-1 - i][owner] = value
        rows[-1 - i][campaign] = value
    rows[-1][0] = '=HYPERLINK("http://evil.example")'
    write_rows(export / "leads.csv", header, rows)
    cfg = hostile_config(home, export, extra='\n[scoring]\nreason_tiers = ["A", "B", "C", "D"]\n')
    for step, args in ((steps.ingest_step, (cfg, "evil")), (steps.features_step, (cfg,)),
                       (steps.score_step, (cfg, "evil")), (steps.report_step, (cfg, "evil"))):
        assert outcome(step, *args) == (0, "")
    home = Home(cfg.home)
    assert (read_latest(home.scores) / "crm" / "salesforce_leads.csv").is_file()  # the CRM files are checked too
    assert executable_cells(read_latest(home.scores)) == []
    assert executable_cells(read_latest(home.campaign_reports)) == []
    published = pd.read_parquet(read_latest(home.scores) / "scores.parquet")
    assert set(evil) & set(published["Owner"]), "Parquet keeps values as they are"
    assert published["reasons"].str.startswith(("+ ", "- ")).any()
    shown = pd.read_csv(read_latest(home.scores) / "scores.csv", dtype=str, keep_default_na=False)
    assert shown["reasons"].str.startswith(("'+ ", "'- ")).sum() == (published["reasons"].fillna("") != "").sum() > 0


def test_6_config_and_home_mistakes_are_one_line(small_champion, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    cfg = small_champion[0]
    text = cfg.source_file.read_text()
    cases = {
        "encoding": (text.replace('id = "Lead ID"', 'id = "Lead ID"\nencoding = "klingon"', 1), "data.leads.encoding"),
        "delimiter": (text.replace('id = "Lead ID"', 'id = "Lead ID"\ndelimiter = ";;"', 1), "data.leads.delimiter"),
        "route": (text.replace('passthrough = ["Owner"]', 'passthrough = ["Owner", "route"]'),
                  "data.leads.passthrough[1]: 'route' is a column leadscore publishes"),
        "tier": (text.replace('passthrough = ["Owner"]', 'passthrough = ["tier"]'), "data.leads.passthrough[0]"),
        "bool": (text.replace("max_quarantine_share = 0.5", "max_quarantine_share = true"), "data.max_quarantine_share"),
        "sql_url": (text.replace("[publish]\n", '[publish]\nsql_url = "not a url"\n'), "publish.sql_url"),
    }
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases["home is a file"] = (text.replace(f'home = "{cfg.home.as_posix()}"', f'home = "{a_file.as_posix()}"'),
                               "is a file, not a folder")
    cases["home below a file"] = (text.replace(f'home = "{cfg.home.as_posix()}"', f'home = "{a_file.as_posix()}/home"'),
                                  "home:")
    cases["home with ?"] = (text.replace(f'home = "{cfg.home.as_posix()}"', f'home = "{tmp_path.as_posix()}/a?b"'),
                            "contains '?'")
    for name, (body, expected) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.toml"
        path.write_text(body)
        result = CliRunner().invoke(app, ["ingest", "--config", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert expected in result.output and "Traceback" not in result.output, (name, result.output)


def test_6_a_damaged_or_replaced_model_file_is_named(small_champion, tmp_path):
    cfg = copy_home(small_champion[0], small_champion[1], tmp_path)
    home = Home(cfg.home)
    version = registry.champion_version(home)
    _, client = registry._client(home)
    folder = registry._artifact_dir(client, client.get_model_version(registry.MODEL_NAME, version).source[len("models:/"):])
    pickle = next(folder.rglob("python_model.pkl"))
    kept = pickle.read_bytes()
    try:
        pickle.write_bytes(kept[: len(kept) // 2])  # truncated
        with pytest.raises(registry.ModelIntegrityError, match=f"files of model version {version} .* not the ones"):
            registry.load_model(home)
        pickle.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))  # one byte replaced: loads, but is not the model
        assert outcome(steps.score_step, cfg, "damaged")[0] == 2
    finally:
        pickle.write_bytes(kept)
    _, ref = registry.load_model(home)
    manifest = steps.score_step(cfg, "intact")
    assert ref.sha256 and json.loads((Path(manifest["published"]) / "manifest.json").read_text())["model_sha256"] == ref.sha256


def test_6_disk_full_and_refused_writes_are_one_line():
    err = OSError(28, "No space left on device")
    err.filename = "/srv/home/published/scores/.run.partial/scores.csv"
    assert environment_problem(err).startswith("no space left on the device at /srv/home/published")
    assert "no space left" in environment_problem(RuntimeError("sqlite3.OperationalError: database or disk is full"))
    assert environment_problem(ValueError("a bug")) is None  # real bugs keep their traceback
    assert user_message(ValueError("a bug")) is None


def test_6_a_task_whose_dask_worker_dies_every_time_is_one_line():
    from distributed.scheduler import KilledWorker

    dead = KilledWorker("build_partition-3", None, 3)  # as Dask raises it, but for the scheduler's WorkerState
    message, code = user_message(dead)
    assert code == 2 and message.startswith("engine: Dask gave up on the task 'build_partition-3': the worker "
                                            "running it died, 4 times; a worker that runs out of memory")
    assert "engine.memory_per_worker" in message


def test_7_a_kill_between_publishing_and_the_ledger_is_mended(small_champion, tmp_path):
    from serving import ledger
    from serving.publish import publish_run, reconcile_scores

    cfg = copy_home(small_champion[0], small_champion[1], tmp_path)
    home = Home(cfg.home)
    steps.ingest_step(cfg, "k0")
    steps.features_step(cfg)
    steps.score_step(cfg, "k0")
    before = read_latest(home.scores).name
    scores = ledger.run_rows(home.ledger, before)

    # Killed after the ledger rows were written and before LATEST moved: the run never became visible. The next
    # run mends that before it publishes anything.
    def killed(_):
        ledger.append(home.ledger, "k1", scores)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        publish_run(home.scores, "k1", {}, {}, 30, before_latest=killed)
    assert reconcile_scores(home.scores, home.ledger) == {"ledger_committed": [], "ledger_dropped": ["k1"],
                                                          "runs_removed": ["k1"]}
    assert ledger.run_rows(home.ledger, "k1").empty and read_latest(home.scores).name == before
    # Killed after LATEST moved and before the ledger file was committed: the run is visible, its rows are kept.
    publish_run(home.scores, "k2", {}, {}, 30, before_latest=lambda _: ledger.append(home.ledger, "k2", scores))
    assert reconcile_scores(home.scores, home.ledger) == {"ledger_committed": ["k2"], "ledger_dropped": [],
                                                          "runs_removed": []}
    assert len(ledger.run_rows(home.ledger, "k2")) == len(scores)
    assert (home.scores / before).is_dir()  # an earlier run is never taken for a half-published one
    (home.scores / ".k3.partial").mkdir()
    (home.ledger / ".left.tmp").write_text("half")
    with one_run_at_a_time(home):
        pass
    assert not (home.scores / ".k3.partial").exists() and not (home.ledger / ".left.tmp").exists()


def test_8_an_unreachable_sql_sink_stops_scoring_before_anything_is_published(small_champion, tmp_path):
    cfg = copy_home(small_champion[0], small_champion[1], tmp_path)
    steps.ingest_step(cfg, "sql")
    steps.features_step(cfg)
    home = Home(cfg.home)
    steps.score_step(cfg, "sql0")
    before = read_latest(home.scores)
    bad = parse_config(cfg.source_file.read_text().replace(
                           "[publish]\n", f'[publish]\nsql_url = "sqlite:///{tmp_path}/no/such/dir/x.db"\n'),
                       cfg.source_file)
    code, message = outcome(steps.score_step, bad, "sql1")
    assert code == 2 and "publish.sql_url: cannot connect" in message and "nothing was published" in message
    assert read_latest(home.scores) == before


def test_9_quiet_surprises_are_said(small_champion, home, tmp_path, caplog):
    _, _, clean = small_champion
    export = copy_export(small_champion, tmp_path)
    header, rows = read_rows(export / "leads.csv")
    # A duplicate of an unmapped column, a column named like a canonical one, a stray latin-1 byte far past
    # the first 64 KiB, and a semicolon export with decimal commas.
    header = [*header, "Lead Status", "lead_id", "reason"]
    rows = [[*r, "x", "y", "z"] for r in rows]
    rows[-1][header.index("Owner")] = "Rep Ã\x00"
    write_rows(export / "leads.csv", header, rows, delimiter=";")
    data = (export / "leads.csv").read_bytes().replace("Rep Ã\x00".encode(), b"Rep \xe9")
    (export / "leads.csv").write_bytes(data)
    camp_header, camp_rows = read_rows(export / "campaigns.csv")
    cost = camp_header.index("Cost")
    for r in camp_rows:
        r[cost] = r[cost].replace(".", ",")
    write_rows(export / "campaigns.csv", camp_header, camp_rows, delimiter=";")
    cfg = hostile_config(home, export)
    summary = steps.ingest_step(cfg, "quiet")
    assert summary["counts"]["leads"]["quarantined"] == 0 and summary["counts"]["campaigns"]["quarantined"] == 0
    assert summary["files"]["leads"]["encoding"] == "utf-8, 1 cells windows-1252"
    assert "names column 'Lead Status' more than once" in caplog.text
    costs = pq.read_table(Home(cfg.home).canonical / "campaigns.parquet")["cost"].to_pylist()
    assert costs == [float(r[cost]) for r in read_rows(small_champion[1] / "campaigns.csv")[1]]  # 23487,09 is 23487.09
    steps.features_step(cfg)
    got = features_of(cfg)
    pd.testing.assert_frame_equal(got.drop(columns=["export:Owner"], errors="ignore"),
                                  clean.drop(columns=["export:Owner"], errors="ignore"), check_like=True)

    # "3,5" with a '.' decimal is not 35.
    x, problem = cells.number(pa.array(["3,5", "1,200", "1,2,3"]))
    assert x.to_pylist() == [None, 1200.0, None] and list(problem) == [1, 0, 1]

    # A mapped column named twice is an error that names it.
    write_rows(export / "leads.csv", [*header[:-3], "Country"], [[*r[:-3], "DE"] for r in rows], delimiter=";")
    code, message = outcome(steps.ingest_step, cfg, "dup")
    assert code == 2 and "names column 'Country' more than once" in message

    # Every lead row rejected: the message points at a quarantine file that exists.
    write_rows(export / "leads.csv", header[:-3], [[r[0], "someday", *r[2:-3]] for r in rows], delimiter=";")
    code, message = outcome(steps.ingest_step, cfg, "none")
    assert code == 2 and "none of the" in message
    assert Path(message.split("see ")[1].split(" for each")[0]).is_file()


# ------------------------------------------------------------------------------------- the hypothesis suite

BAD_DATES = ["1900-01-01 00:00:00", "0001-01-01", "9999-12-31", "June 5", "29/06/2026", "NaT", "", "infinity",
             "epoch", "2026-02-30 10:00", "=NOW()", "2026-06-29T25:00"]
BAD_NUMBERS = ["inf", "-Infinity", "1e400", "1,2,3", "many", "=1+1", "9" * 400, "0x10", "1_000"]
HOSTILE_TEXT = st.one_of(
    st.sampled_from(['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\t=1",
                     "\r=1", " =1", "\uff1d1", "a,b;c|d\te", 'say "hi"', "line\nbreak", "\x00\x01\x07", "\u202eevil",
                     "\U0001f600", "x" * 100_000, "", "   "]),
    st.text(max_size=30),
)


@st.composite
def bad_lead_row(draw, header, clean_ids, i):
    """A lead row with at least one cell that must quarantine it, and hostile text anywhere else."""
    row = {h: draw(HOSTILE_TEXT) for h in header}
    row["Lead ID"] = f"BAD{i:04d}"
    row["Created Date"] = "2025-01-01 10:00:00"
    row["Employees"] = "10"
    fault = draw(st.sampled_from(["date", "number", "no id", "duplicate"]))
    if fault == "date":
        row["Created Date"] = draw(st.sampled_from(BAD_DATES))
    elif fault == "number":
        row["Employees"] = draw(st.sampled_from(BAD_NUMBERS))
    elif fault == "no id":
        row["Lead ID"] = draw(st.sampled_from(["", "  ", "\t"]))
    else:
        row["Lead ID"] = draw(st.sampled_from(clean_ids))
    return [row[h] for h in header]


@st.composite
def bad_event_row(draw, header, clean_ids, created):
    """An activity or stage row that must be quarantined: unknown lead, unreadable date, or (stages) before
    its lead was created or an unknown stage."""
    row = {h: draw(HOSTILE_TEXT) for h in header}
    lead = draw(st.sampled_from(clean_ids))
    fault = draw(st.sampled_from(["unknown lead", "date", "early", "stage"]))
    date_col = "Activity Date" if "Activity Date" in header else "Stage Date"
    row["Lead ID"], row[date_col] = lead, "2025-01-01 10:00:00"
    if "Stage" in header:
        row["Stage"], row["Amount"] = "Qualified", "10"
    if fault == "unknown lead":
        row["Lead ID"] = draw(st.sampled_from(["NOBODY", "=HYPERLINK(1)", "+L1"]))
    elif fault == "date" or (fault == "stage" and "Stage" not in header):
        row[date_col] = draw(st.sampled_from(BAD_DATES))
    elif fault == "early":
        row[date_col] = "1995-01-01 00:00:00" if "Stage" in header else draw(st.sampled_from(BAD_DATES))
    else:
        # (a spelling of a known stage, "closed won", is that stage: see test_ingest)
        row["Stage"] = draw(st.sampled_from(["=Closed Won", "Negotiation", "Closed Won (old)"]))
    return [row[h] for h in header]


@st.composite
def hostile_export(draw, base_rows):
    (lh, lr), (ah, ar), (oh, orows) = base_rows
    ids = [r[0] for r in lr]
    created = {r[0]: r[1] for r in lr}
    leads = [draw(bad_lead_row(lh, ids, i)) for i in range(draw(st.integers(1, 6)))]
    acts = draw(st.lists(bad_event_row(ah, ids, created), max_size=4))
    stages = draw(st.lists(bad_event_row(oh, ids, created), max_size=4))
    malformed = draw(st.lists(st.sampled_from(["just,two", "a,b,c,d,e,f,g,h,i,j,k,l,m,n"]), max_size=2))
    fmt = draw(st.sampled_from([(",", "utf-8"), (";", "utf-8"), ("\t", "utf-8-sig"), ("|", "cp1252"), (",", "cp1252")]))
    header_trick = draw(st.sampled_from([None, "Lead Status", "lead_id", "reason", "source_row", "export:Country"]))
    return leads, acts, stages, malformed, fmt, header_trick


def _with_header_trick(header, rows, trick):
    if trick is None:
        return header, rows
    return [*header, trick], [[*r, "x"] for r in rows]


@pytest.fixture(scope="module")
def base_rows(small_champion):
    _, export, _ = small_champion
    return (read_rows(export / "leads.csv"), read_rows(export / "activities.csv"),
            read_rows(export / "opportunities.csv"))


def test_bad_rows_are_quarantined_and_change_nothing_else(small_champion, home, base_rows, tmp_path_factory):
    """Whatever bad rows an export carries, and however it is written: every row is kept or quarantined,
    every bad row is quarantined, clean rows keep exactly their features, scoring ends with exit 0 or 2 (never
    a traceback), and no published or quarantined CSV cell is a formula."""
    _, export, clean = small_champion
    (lh, lr), (ah, ar), (oh, orows) = base_rows
    runs = iter(range(1_000_000))

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=hostile_export(base_rows))
    def check(case):
        leads, acts, stages, malformed, (delimiter, encoding), trick = case
        run = f"case{next(runs)}"
        folder = tmp_path_factory.mktemp("case")
        shutil.copy(export / "campaigns.csv", folder / "campaigns.csv")
        shutil.copy(export / "truth.csv", folder / "truth.csv")
        h, rows = _with_header_trick(lh, lr + leads, trick)
        write_rows(folder / "leads.csv", h, rows, delimiter, encoding, malformed)
        write_rows(folder / "activities.csv", ah, ar + acts)
        write_rows(folder / "opportunities.csv", oh, orows + stages)
        cfg = hostile_config(home, folder)
        code, message = outcome(steps.ingest_step, cfg, run)
        assert code == 0, message
        manifest = json.loads((Home(cfg.home).canonical / "manifest.json").read_text())
        for table, c in manifest["counts"].items():
            assert c["rows_in"] == c["kept"] + c["quarantined"], table
        kept = set(pq.read_table(Home(cfg.home).canonical / "leads.parquet")["lead_id"].to_pylist())
        assert kept == set(clean.index), [r for r in leads if r[0].strip() in kept - set(clean.index)]
        assert manifest["counts"]["activities"]["kept"] == len(ar)
        assert manifest["counts"]["outcomes"]["kept"] == len(orows)
        assert executable_cells(Home(cfg.home).quarantine / run) == []
        assert outcome(steps.features_step, cfg)[0] == 0
        pd.testing.assert_frame_equal(features_of(cfg), clean, check_like=True)
        code, message = outcome(steps.score_step, cfg, run)
        assert code == 0, message
        assert executable_cells(read_latest(Home(cfg.home).scores)) == []

    check()


@st.composite
def valid_hostile_lead(draw, header, template, i):
    """A lead that is valid, whatever its text cells hold: it must be kept, scored and published safely."""
    row = dict(zip(header, template))
    for col in ("Campaign", "Lead Source", "Company", "Country", "Industry", "Job Level", "Owner", "Lead Status"):
        row[col] = draw(HOSTILE_TEXT)
    row["Lead ID"] = draw(st.sampled_from([f"=ID{i}", f"+ID{i}", f"@ID{i}", f"-ID{i}", f"ID {i} \u00e9"]))
    row["Created Date"] = "2026-06-20 10:00:00"
    row["Employees"] = draw(st.sampled_from(["", "0", "-5", "1,234,567", "1e5", " 12 ", "NaN"]))
    return [row[h] for h in header]


def test_valid_hostile_cells_are_kept_and_published_safely(small_champion, home, base_rows, tmp_path_factory):
    _, export, _ = small_champion
    (lh, lr), _, _ = base_rows
    runs = iter(range(1_000_000))

    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(leads=st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True).flatmap(
        lambda ns: st.tuples(*[valid_hostile_lead(lh, lr[-1], n) for n in ns])))
    def check(leads):
        folder = tmp_path_factory.mktemp("valid")
        for name in ("activities.csv", "opportunities.csv", "campaigns.csv", "truth.csv"):
            shutil.copy(export / name, folder / name)
        write_rows(folder / "leads.csv", lh, lr + list(leads))
        cfg = hostile_config(home, folder)
        run = f"valid{next(runs)}"
        for step, args in ((steps.ingest_step, (cfg, run)), (steps.features_step, (cfg,)),
                           (steps.score_step, (cfg, run))):
            code, message = outcome(step, *args)
            assert code == 0, message
        paths = Home(cfg.home)
        published = pd.read_parquet(read_latest(paths.scores) / "scores.parquet")
        text = [cells.text(pa.array([r[0]])).to_pylist()[0] for r in leads]
        assert set(text) <= set(published["lead_id"])  # kept, open, scored, with their id exactly
        assert executable_cells(read_latest(paths.scores)) == []
        assert_online_equals_batch(cfg)

    check()


def test_api_fuzz_with_hostile_cells(api_client):
    """The API with the same hostile cells in every mapped field: 200 or 422, never a 5xx, always JSON."""
    fields = list(LEAD)

    @settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(lead=st.fixed_dictionaries({f: st.one_of(HOSTILE_TEXT, st.sampled_from(BAD_DATES + BAD_NUMBERS),
                                                    st.floats(), st.integers(), st.booleans(), st.none())
                                       for f in fields}))
    def check(lead):
        r = api_client.post("/v1/score", content=json.dumps({"leads": [lead]}, allow_nan=True).encode(),
                            headers={"content-type": "application/json"})
        assert r.status_code in (200, 422), r.text
        json.loads(r.text)

    check()


