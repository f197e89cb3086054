"""Ingest on a Dask cluster (issue 16, item 2): the export read in small blocks on a real 2-worker LocalCluster
gives the same canonical rows (partitioned by lead), quarantine files, counts and reasons as the one-machine
ingest, on an export
with the faults that cross a block's edge (a quoted line break, a duplicate lead in another block, events of
leads in other blocks, a line with too few fields, a byte that is not UTF-8)."""

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import loose, make_config, xeducation_config

from ingest.blocks import commit_tables, ingest_on_cluster, partition_of
from ingest.canonical import ingest, write_canonical, write_quarantine
from ingest.synthetic import generate_crm, write_crm
from leadscore import cluster
from leadscore.config import EngineConfig
from leadscore.paths import table_parts

pytestmark = pytest.mark.slow

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def client():
    with cluster.session(EngineConfig(kind="dask", workers=2, threads=1)) as c:
        yield c


def _hostile_export(folder: Path) -> Path:
    export = folder / "crm"
    write_crm(generate_crm(3_000, seed=5), export)
    leads = (export / "leads.csv").read_bytes().splitlines(keepends=True)
    for i in range(1, len(leads), 3):  # quoted line breaks and quotes, so some blocks start inside a cell
        leads[i] = leads[i].replace(b'"Rep ', b'"Rep\n""', 1)
    leads[20] = leads[20].replace(b'"New"', '"Néw"'.encode("latin-1"), 1)  # not UTF-8
    leads.insert(2500, leads[5])  # a duplicate of a lead in the first block, far down the file
    leads.insert(1200, b'"L9999999","2025-01-01"\n')  # too few fields
    leads.insert(1300, leads[30].replace(b'"L0000', b'"X0000', 1).replace(b'"20', b'"not a date 20', 1))
    leads.append(leads[40].replace(b'"L0000', b'"Z0000', 1).replace(b",18,", b",many,", 1))
    (export / "leads.csv").write_bytes(b"".join(leads))
    outcomes = (export / "opportunities.csv").read_bytes().splitlines(keepends=True)
    lead = outcomes[3].split(b",")[0]
    outcomes += [b'"L7777777","Closed Won","2025-03-01 10:00:00",100\n',  # an unknown lead
                 b'"L7777778","Closed Won","2025-03-01 10:00:00",many\n',  # unknown, which is said first
                 lead + b',"Qualified","2001-01-01 00:00:00",\n',  # before the lead was created
                 lead + b',"closed won","2025-03-01 10:00:00",lots\n',  # a bad amount, a second spelling
                 lead + b',"closed-lost","2025-03-02 10:00:00",\n',  # another spelling, kept
                 lead + b',"Demo","2025-03-02 10:00:00",\n']  # a stage the config does not list
    (export / "opportunities.csv").write_bytes(b"".join(outcomes))
    with (export / "activities.csv").open("ab") as fh:
        fh.write(b'"L8888888","Email","2025-02-01 00:00:00"\n"L0000001",,"2025-02-01 00:00:00"\n')
    return export


def _same_rows(path: Path, here: pa.Table, partitions: int) -> None:
    """A table the cluster wrote as one file per partition: each part holds its partition's leads, in file order
    (the one-machine table's order within the partition), and together they are the one-machine table."""
    parts = table_parts(path)
    assert len(parts) == partitions, path
    ids = here["lead_id"].combine_chunks()
    where = partition_of(ids, partitions)
    for p, part in enumerate(parts):
        table = pq.read_table(part)
        assert table.schema.remove_metadata() == here.schema.remove_metadata(), path
        assert table.equals(here.filter(pa.array(where == p))), (path, p)


def _as_parquet(path: Path) -> Path:
    """The rows of a CSV file (each cell text, as read here) as a Parquet file in row groups of 100 (the leads
    with a column named twice)."""
    from ingest.files import read_export
    from leadscore.config import FileTable

    raw, _ = read_export(FileTable(path=path), "data.x")
    if "Lead Status" in raw.column_names:  # an unmapped column named twice, which Parquet allows
        raw = pa.table([*raw.columns, raw["Lead Status"]], names=[*raw.column_names, "Lead Status"])
    out = path.with_suffix(".parquet")
    pq.write_table(raw, out, row_group_size=100)
    return out


def test_blocks_on_the_cluster_give_what_one_machine_gives(client, tmp_path):
    export = _hostile_export(tmp_path)
    cfg = make_config(export, tmp_path / "home", extra=loose())
    here = ingest(cfg, now=NOW)
    write_canonical(here, tmp_path / "here" / "tables")
    written_here = write_quarantine(here, tmp_path / "here" / "quarantine")

    # The same rows as Parquet files in row groups of 100, read as they are written (cells as text).
    as_parquet = cfg.model_copy(update={"data": cfg.data.model_copy(update={
        t: getattr(cfg.data, t).model_copy(update={"path": _as_parquet(getattr(cfg.data, t).path)})
        for t in ("leads", "outcomes", "activities")})})
    parquet_here = ingest(as_parquet, now=NOW)

    there, tables = ingest_on_cluster(client, cfg, tmp_path / "work", now=NOW, block_bytes=20_000, partitions=3)
    parquet_there, parquet_tables = ingest_on_cluster(
        client, as_parquet, tmp_path / "parquet_work", now=NOW,
        block_bytes=100 * 64, partitions=4)
    assert parquet_there.files["leads"]["blocks"] >= 30
    assert parquet_there.counts == parquet_here.counts and parquet_there.reasons() == parquet_here.reasons()
    for name in ("leads", "outcomes", "activities"):
        _same_rows(parquet_tables / f"{name}.parquet", parquet_here.tables[name], partitions=4)
    written = write_quarantine(there, tmp_path / "there" / "quarantine")
    write_canonical(there, tables)
    commit_tables(tmp_path / "work", tmp_path / "there" / "tables")
    assert not (tmp_path / "work").exists()

    assert there.files["leads"]["blocks"] > 5 and there.files["activities"]["blocks"] > 3
    assert there.counts == here.counts
    assert there.reasons() == here.reasons()
    assert there.as_of == here.as_of
    assert {k: {i: v for i, v in f.items() if i != "blocks"} for k, f in there.files.items()} == here.files
    for name in ("leads", "outcomes", "activities"):
        _same_rows(tmp_path / "there" / "tables" / f"{name}.parquet", here.tables[name], partitions=3)
    assert pq.read_table(tmp_path / "there" / "tables" / "campaigns.parquet").equals(here.tables["campaigns"])
    assert sorted(written) == sorted(written_here)
    for key, path in written_here.items():
        assert written[key].read_bytes() == path.read_bytes(), key
    # The faults are there: each reason the export was built to show.
    reasons = here.reasons()
    assert reasons["leads"]["duplicate lead id (first row kept)"] == 1
    assert sum(n for r, n in reasons["leads"].items() if "fields where the header has" in r) == 1
    assert reasons["outcomes"]["outcome for an unknown lead"] >= 1
    assert reasons["activities"]["activity for an unknown lead"] >= 1  # the generator's own too
    assert reasons["outcomes"]["Stage Date before the lead was created"] == 1
    assert reasons["outcomes"]["non-numeric Amount: lots"] == 1 and "non-numeric Amount: many" not in reasons["outcomes"]
    assert "utf-8," in here.files["leads"]["encoding"]
    assert pq.read_table(tmp_path / "here" / "tables" / "leads.parquet")["export:Owner"][0].as_py().startswith('Rep\n"')
    assert here.files["outcomes"]["stage_spellings"]


def _same_as_here(client, cfg, work: Path, blocks: int | None) -> None:
    """``blocks``: how many blocks the leads file must be read in (None: more than 5)."""
    here = ingest(cfg, now=NOW)
    there, tables = ingest_on_cluster(client, cfg, work, now=NOW, block_bytes=20_000, partitions=3)
    assert there.files["leads"]["blocks"] == blocks if blocks else there.files["leads"]["blocks"] > 5
    assert there.counts == here.counts and there.reasons() == here.reasons() and there.as_of == here.as_of
    assert {k: {i: v for i, v in f.items() if i != "blocks"} for k, f in there.files.items()} == here.files
    for name in ("leads", "outcomes", "activities"):
        _same_rows(tables / f"{name}.parquet", here.tables[name], partitions=3)


def test_real_and_awkward_files_read_in_blocks_as_here(client, tmp_path):
    """X Education (a snapshot export with a label column, real text); a UTF-16 file (read whole: its line
    breaks are two bytes); a UTF-8 file with a BOM, semicolons and decimal commas; an unclosed quote, stray
    quotes with quoted line breaks, lines ended by CR alone (each read whole: where lines end is the parser's
    call)."""
    _same_as_here(client, xeducation_config(), tmp_path / "xedu", blocks=None)
    export = tmp_path / "crm"
    write_crm(generate_crm(1_500, seed=1), export)
    text = (export / "leads.csv").read_text(encoding="utf-8").replace('"Rep 1', '"Rép 1')
    # Quotes inside unquoted cells (two, so the count is even) and line breaks inside quoted ones: counting
    # quotes puts the cuts inside rows; the malformed lines at the cuts say so, and the file is read whole.
    stray = text.splitlines(keepends=True)
    for i in (3, len(stray) - 5):
        stray[i] = stray[i].replace(',"Rep', ',Rep 5" x,"Rep', 1).replace(',"Rép', ',Rép 5" x,"Rép', 1)
    stray = "".join(line.replace('"Rep', '"Re\np', 1) for line in stray)
    variants = {"utf-16": (text.encode("utf-16"), 1), "stray quotes": (stray.encode(), 1),
                "old mac": (text.replace("\n", "\r").encode(), 1),
                "bom": (b"\xef\xbb\xbf" + text.replace(",", ";").encode(), None),
                "unclosed": (text.replace('"Rép 1', '"Ré"p 1', 1).encode(), 1)}
    for name, (data, blocks) in variants.items():
        folder = tmp_path / name
        folder.mkdir()
        for f in export.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        (folder / "leads.csv").write_bytes(data)
        cfg = make_config(folder, tmp_path / f"home-{name}", extra=loose())
        if name == "utf-16":
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={
                "leads": cfg.data.leads.model_copy(update={"encoding": "utf-16"})})})
        _same_as_here(client, cfg, tmp_path / f"work-{name}", blocks)


def test_outcome_dates_in_the_leads_file_on_the_cluster(client, tmp_path):
    """A deals export (no stage history, won and lost dates as columns) in several blocks: the dated outcomes
    follow the stage changes of their partition, unreadable and early dates quarantine the lead there too."""
    from leadscore.config import parse_config

    rows = ["id,add_time,won_time,lost_time,value"]
    for i in range(3_000):
        won = f"2025-03-{1 + i % 28:02d} 10:00:00" if i % 4 == 0 else "soon" if i % 97 == 1 else ""
        lost = f"2025-04-{1 + i % 28:02d} 10:00:00" if i % 4 == 1 else "2024-01-01" if i % 89 == 2 else ""
        rows.append(f"D{i % 2_900},2025-01-{1 + i % 28:02d} 10:00:00,{won},{lost},{i % 50}")
    (tmp_path / "deals.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = parse_config('[data]\nmax_quarantine_share = 0.5\n[data.leads]\npath = "deals.csv"\nid = "id"\n'
                       'created_at = "add_time"\nwon_at = "won_time"\nlost_at = "lost_time"\nnumeric = ["value"]\n',
                       tmp_path / "leadscore.toml")
    _same_as_here(client, cfg, tmp_path / "work", blocks=None)
    reasons = ingest(cfg, now=NOW).reasons()["leads"]
    assert {"duplicate lead id (first row kept)", "unparseable won_time: soon", "lost_time before add_time"} \
        <= set(reasons)


def test_ids_that_differ_in_leading_zeros_are_named_on_the_cluster_too(client, tmp_path):
    from ingest.canonical import check_usable
    from leadscore.config import parse_config
    from leadscore.errors import DataError

    (tmp_path / "leads.csv").write_text("Lead ID,Created Date\n" + "".join(
        f"{i:06d},2025-01-0{1 + i % 5} 10:00:00\n" for i in range(1, 41)), encoding="utf-8")
    (tmp_path / "stages.csv").write_text("Lead ID,Stage,Stage Date\n" + "".join(
        f"{i},Closed Won,2025-02-01 00:00:00\n" for i in range(1, 41)), encoding="utf-8")
    cfg = parse_config('[data.leads]\npath = "leads.csv"\nid = "Lead ID"\ncreated_at = "Created Date"\n'
                       '[data.outcomes]\npath = "stages.csv"\nlead_id = "Lead ID"\nstage = "Stage"\n'
                       'occurred_at = "Stage Date"\n[label]\nwon_stages = ["Closed Won"]\n', tmp_path / "l.toml")
    result, _ = ingest_on_cluster(client, cfg, tmp_path / "work", now=NOW)
    written = write_quarantine(result, tmp_path / "quarantine")
    with pytest.raises(DataError, match=r"data.outcomes.lead_id and data.leads.id differ in leading zeros "
                                        r"\('1' against '000001'\)"):
        check_usable(result, cfg, written, tmp_path / "quarantine")


def test_a_worker_lost_during_ingest_and_features_changes_nothing(client, tmp_path):
    """Ingest and features tasks read and write files only, so Dask runs again, on its own, the tasks a dead worker
    was running and those whose results it held; the features equal one machine's."""
    from conftest import StopWorkerOnce

    from flows import steps

    export = tmp_path / "crm"
    write_crm(generate_crm(3_000, seed=7), export)
    here = make_config(export, tmp_path / "here")
    steps.ingest_step(here, "r1")
    steps.features_step(here)
    there = make_config(export, tmp_path / "there", '\n[engine]\nkind = "dask"\npartitions = 3\n')
    marks = tmp_path / "stopped"
    marks.mkdir()
    killed = ("check_block", "relate_partition", "count_partition", "build_partition")  # as Dask names the tasks
    client.register_plugin(StopWorkerOnce(killed, marks))
    try:
        steps.ingest_step(there, "r1")
        steps.features_step(there)
    finally:
        client.unregister_worker_plugin(StopWorkerOnce.name)
    assert sorted(p.name for p in marks.iterdir()) == sorted(killed)  # a worker died in each
    a, b = (pq.read_table(cfg.paths.features_file).to_pandas().sort_values("lead_id", ignore_index=True)
            for cfg in (here, there))
    assert len(a) == 3_000
    pd.testing.assert_frame_equal(b, a)


def test_work_cancelled_on_the_cluster_is_started_again_only_for_a_lost_worker(client, caplog):
    from distributed.client import CancelledFuturesGroup, FutureCancelledError, FuturesCancelledError

    from leadscore.errors import ClusterError

    def cancelled(reason):
        return FuturesCancelledError([CancelledFuturesGroup([FutureCancelledError("part-1", reason)], reason)])

    tries = []

    def lost_twice():
        tries.append(1)
        if len(tries) <= 2:
            raise cancelled("already forgotten")
        return "done"

    with caplog.at_level("WARNING", logger="leadscore"):
        assert cluster.again_if_lost(client, "writing a test", lost_twice) == "done"
    assert len(tries) == 3 and caplog.text.count("a Dask worker was lost while writing a test") == 2

    def always_lost():
        raise cancelled("already forgotten")

    with pytest.raises(ClusterError, match="a Dask worker was lost 3 times while writing a test; a worker that runs "
                                           "out of memory is stopped"):
        cluster.again_if_lost(client, "writing a test", always_lost)

    def restarted():
        tries.append(1)
        raise cancelled("scheduler-restart")

    tries.clear()
    with pytest.raises(ClusterError, match=r"the Dask cluster cancelled writing a test \(scheduler-restart\)"):
        cluster.again_if_lost(client, "writing a test", restarted)
    assert len(tries) == 1  # not started again

