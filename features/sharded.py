"""Features on a Dask cluster: the one-machine point-in-time SQL of :mod:`features.build`, run partition by
partition on the workers, with the same result.

1. **Co-partition.** The canonical leads, activities and stage changes are split by a hash of ``lead_id``
   (one task per table), so every lead's own events sit in its partition.
2. **Count what is shared.** Each partition counts its part of the history over keys that many partitions
   share (campaign, source, account, and all leads for the overall win rate); one task per stream then sums
   them into running counts per (key, instant): the only shuffle.
3. **Build.** Each partition writes its query rows (qid, moment, keys); one task per stream counts, by the one
   point-in-time function, what every query row knew, and writes it back by partition; each partition then
   runs the same SQL over its own tables with those counts, and the driver merges the parts in the
   one-machine order. No stream is read more than once per build, however many partitions there are.

The home must be on storage that the driver and every worker see at the same path (a shared or network file
system); the parts move through it, never through the driver's memory.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.build import (HISTORY_KINDS, MAX_STAGES, Shard, build_features, build_landmarks, landmark_rates,
                            shard_queries, shared_counts, stream_name)
from features.pit import known_at
from leadscore.cluster import partition_count, partition_sql, total_threads
from leadscore.config import Config
from leadscore.contract import METADATA_KEY, FeatureSet
from leadscore.duck import days, literal
from leadscore.paths import Home, atomic_write, fresh_folder, part_name, table_parts, write_parquet_atomic

log = logging.getLogger("leadscore")

SHARDED = ("leads", "activities", "outcomes")  # split by lead; any other table (campaigns) is small and whole
LAYOUT = 6  # of the files under the partitions folder; a split made by another layout is made again


def ingested_partitions(canonical: Path) -> int:
    """How many lead partitions a cluster ingest wrote the sharded tables in (0: one file each, to be split)."""
    counts = {len(table_parts(canonical / f"{n}.parquet")) for n in SHARDED}
    return counts.pop() if len(counts) == 1 else 0


def split_tables(client, canonical: Path, work: Path, partitions: int) -> dict[str, Path]:
    """Each sharded canonical table as ``work/<table>/part=<i>/``, one task per table; a table a cluster ingest
    wrote in as many partitions is used as it is."""
    if ingested_partitions(canonical) == partitions:
        return {n: canonical / f"{n}.parquet" for n in SHARDED}
    work.mkdir(parents=True)
    names = [n for n in SHARDED if (canonical / f"{n}.parquet").exists()]
    futures = [client.submit(_split_one, canonical / f"{n}.parquet", work / n, partitions, pure=False) for n in names]
    client.gather(futures)
    return {n: work / n for n in names}


def _split_one(source: Path, out: Path, partitions: int) -> None:
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {_threads()}")
        with fresh_folder(out) as tmp:
            files = literal(str(source / "*.parquet" if source.is_dir() else source))
            con.execute(f"""COPY (SELECT *, {partition_sql(partitions)} AS part FROM read_parquet({files}))
                            TO {literal(str(tmp))} (FORMAT parquet, PARTITION_BY (part))""")
    finally:
        con.close()


def _threads() -> int:
    """This worker's threads (the cores its tasks may use)."""
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return 1


def _partition_tables(canonical: Path, split: dict[str, Path], i: int) -> dict:
    """The tables of partition ``i``: its part of each sharded table (empty with the table's schema when it has
    no rows there), and the small tables whole."""
    tables = {}
    for path in sorted(canonical.glob("*.parquet")):
        name = path.stem
        if name not in split:
            tables[name] = ds.dataset(path)
            continue
        folder, ingested = split[name] / f"part={i}", split[name] / part_name(i)
        tables[name] = (ds.dataset(folder) if folder.is_dir() else ds.dataset(ingested) if ingested.is_file() else
                        pq.read_schema((table_parts(path) or [path])[0]).empty_table())
    return tables


def _count_partition(canonical: Path, split: dict, i: int, cfg: Config, as_of: datetime, spill: Path,
                     out: Path, arrivals: Path) -> dict:
    counts = shared_counts(_partition_tables(canonical, split, i), cfg, as_of, spill / f"p{i}", _threads())
    _write_part(counts.pop("arrivals"), i, arrivals)
    events = counts.pop("events").sort_by([("role", "ascending"), ("kind", "ascending")])
    # Written whole: a task run again (its worker lost) rewrites its files. Small row groups: each sum reads only
    # its role and kind's.
    write_parquet_atomic(events, out, row_group_size=65_536)
    return counts


def _sum_events(parts: list[Path], role: str, kind: str, out: Path, spill: Path) -> None:
    """The running count of one stream (role and kind) per key and instant, over every partition's events: made
    once here rather than in every partition."""
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {_threads()}")
        con.execute(f"SET temp_directory = {literal(str(spill))}")
        files = "[" + ", ".join(literal(str(p)) for p in parts) + "]"
        with atomic_write(out) as tmp:
            con.execute(f"""COPY (SELECT role, kind, key, occurred_at,
                                         SUM(SUM(n)) OVER (PARTITION BY key ORDER BY occurred_at
                                                           ROWS UNBOUNDED PRECEDING)::BIGINT AS cum
                                  FROM read_parquet({files}) WHERE role = {literal(role)} AND kind = {literal(kind)}
                                  GROUP BY role, kind, key, occurred_at ORDER BY key, occurred_at)
                            TO {literal(str(tmp))} (FORMAT parquet)""")
    finally:
        con.close()


def _write_queries(kind: str, canonical: Path, split: dict, i: int, cfg: Config, as_of: datetime, shard: Shard,
                   spill: Path, out: Path) -> None:
    shard = _here(shard)
    _write_part(shard_queries(_partition_tables(canonical, split, i), cfg, as_of, kind, shard, spill / f"p{i}"),
                i, out)


def _write_part(queries: pa.Table, i: int, out: Path) -> None:
    write_parquet_atomic(queries.append_column("part", pa.array([i] * len(queries), pa.int32())), out)


def _count_stream(queries: Path, events: Path, role: str, kind: str, horizon: int, out: Path, spill: Path) -> None:
    """One history count (a shared key ``role``, '' for all leads, and a ``kind``) for every partition's query
    rows, by the one point-in-time function, written back by partition to ``out/<role>-<kind>/``. A matured lead
    is its arrival ``horizon`` days later, so "mat" reads the arrivals, shifted."""
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {_threads()}")
        con.execute(f"SET temp_directory = {literal(str(spill))}")
        # One number per query row across partitions: the partition in the high bits.
        con.execute(f"""CREATE VIEW Qs AS SELECT (part::BIGINT << 40) | qid AS qid, {role or "''"}::VARCHAR AS key, "at"
                        FROM read_parquet({literal(str(queries / '*.parquet'))})""")
        stored, shift = ("leads", f" + {days(horizon)}") if kind == "mat" else (kind, "")
        source = events / f"{stream_name(role, stored)}.parquet"
        con.execute(f"CREATE VIEW Es AS SELECT key, occurred_at{shift} AS occurred_at, cum FROM "
                    f"read_parquet({literal(str(source))})" if source.is_file() else
                    "CREATE VIEW Es AS SELECT NULL::VARCHAR AS key, NULL::TIMESTAMPTZ AS occurred_at, "
                    "NULL::BIGINT AS cum WHERE FALSE")
        counted = known_at(con, "Qs", "Es", ["key"], cumulative="cum")
        with fresh_folder(out / stream_name(role, kind)) as tmp:
            con.execute(f"""COPY (SELECT (qid >> 40)::INTEGER AS part, qid & {(1 << 40) - 1} AS qid, n_all
                                  FROM {counted}) TO {literal(str(tmp))} (FORMAT parquet, PARTITION_BY (part))""")
    finally:
        con.close()


def _here(shard: Shard) -> Shard:
    """The shard as this worker runs it: with its own thread count."""
    return Shard(activity_types=shard.activity_types, stages=shard.stages, landmark_rates=shard.landmark_rates,
                 threads=_threads(), history=shard.history, index=shard.index)


def _build_partition(kind: str, canonical: Path, split: dict, i: int, cfg: Config, as_of: datetime, shard: Shard,
                     spill: Path, out: Path) -> FeatureSet:
    build = build_features if kind == "features" else build_landmarks
    shard = _here(replace(shard, index=i))
    return build(_partition_tables(canonical, split, i), cfg, as_of, out=out, spill_dir=spill / f"p{i}", shard=shard)


def _merge(parts: list[Path], out: Path, order: str, metadata: dict, spill: Path, memory_limit: str) -> None:
    """The parts as one file in the one-machine order. Run by the driver, with all its cores: the file is the
    driver's (training and scoring read it), and the workers have nothing else to do meanwhile."""
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = {literal(str(spill))}")
        con.execute(f"SET memory_limit = {literal(memory_limit)}")
        files = "[" + ", ".join(literal(str(p)) for p in parts) + "]"
        meta = json.dumps(metadata)
        with atomic_write(out) as tmp:
            con.execute(f"COPY (SELECT * FROM read_parquet({files}) ORDER BY {order}) TO {literal(str(tmp))} "
                        f"(FORMAT parquet, KV_METADATA {{{literal(METADATA_KEY)}: {literal(meta)}}})")
    finally:
        con.close()


class ShardedBuild:
    """The canonical tables of one export split into partitions, with its shared history counted: both builds
    (features, then the training step's landmarks) run on them. ``stamp`` names the ingested export and the
    settings: a later step of the same run finds the split made and reuses it."""

    def __init__(self, client, cfg: Config, canonical: Path, work: Path, as_of: datetime, leads: int, stamp: dict):
        self.client, self.cfg, self.canonical, self.work, self.as_of = client, cfg, canonical, work, as_of
        # The partitions of a cluster ingest, else as many as the engine wants.
        self.partitions = ingested_partitions(canonical) or partition_count(cfg.engine.partitions, leads,
                                                                            total_threads(client))
        if cfg.engine.partitions and cfg.engine.partitions != self.partitions:
            log.warning("features: the tables were ingested in %d lead partitions, which the features keep; "
                        "engine.partitions = %d applies from the next ingest", self.partitions,
                        cfg.engine.partitions)
        self.spill = work / "spill"
        stamp = {**stamp, "partitions": self.partitions, "as_of": as_of.isoformat(), "layout": LAYOUT}
        made = work / "stamp.json"
        if made.is_file() and json.loads(made.read_text(encoding="utf-8")).get("stamp") == stamp:
            saved = json.loads(made.read_text(encoding="utf-8"))
            self.split = {n: Path(p) for n, p in saved["split"].items()}
            self.events, self.roles = work / "shared_history", saved["roles"]
            self.shard = Shard(activity_types=saved["activity_types"], stages=saved["stages"],
                               landmark_rates=tuple(saved["landmark_rates"]))
            self.landmark_candidates = tuple(saved["landmark_candidates"])
            return
        shutil.rmtree(work, ignore_errors=True)  # another export's split, or an earlier run stopped half-way
        work.mkdir(parents=True)
        self.split = split_tables(client, canonical, work / "tables", self.partitions)
        self.spill.mkdir(exist_ok=True)
        counts_dir = work / "counts"
        counts_dir.mkdir()
        parts = [counts_dir / f"part-{i}.parquet" for i in range(self.partitions)]
        (work / "arrivals").mkdir()
        counted = client.gather([client.submit(_count_partition, canonical, self.split, i, cfg, as_of, self.spill,
                                               parts[i], work / "arrivals" / f"part-{i}.parquet", pure=False)
                                 for i in range(self.partitions)])
        self.events = work / "shared_history"  # one file per stream, each summed by its own task
        self.events.mkdir()
        self.roles = counted[0]["roles"]
        client.gather([client.submit(_sum_events, parts, role, kind, self.events / f"{stream_name(role, kind)}.parquet",
                                     self.spill, pure=False) for role, kind in self._streams(stored=True)])
        types, stages = Counter(), Counter()
        for c in counted:
            types.update(c["activity_types"])
            stages.update(c["stages"])
        total = sum(c["landmarks"][0] for c in counted)
        positive = sum(c["landmarks"][1] for c in counted)
        has_activities = cfg.data.leads.created_at and sum(types.values()) > 0
        self.shard = Shard(
            # the order of build._activity_types and build._stages: most frequent first, ties by name
            activity_types=_top(types, cfg.features.max_activity_types) if has_activities else None,
            stages=_top(stages, MAX_STAGES), landmark_rates=landmark_rates(cfg, positive, total - positive))
        self.landmark_candidates = (total, positive)
        made.write_text(json.dumps({
            "stamp": stamp, "split": {n: str(p) for n, p in self.split.items()}, "roles": self.roles,
            "activity_types": self.shard.activity_types, "stages": self.shard.stages,
            "landmark_rates": list(self.shard.landmark_rates), "landmark_candidates": list(self.landmark_candidates),
        }), encoding="utf-8")

    def build(self, kind: str, out: Path, extra_metadata: dict | None = None) -> FeatureSet:
        """``kind``: "features" (each lead at its arrival) or "landmarks"; written to ``out`` as one file."""
        client, folder = self.client, self.work / kind
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "counted").mkdir(parents=True)
        # 1. Each partition's query rows (qid, moment, shared keys; the arrivals were written by the first pass),
        # 2. every history count for all of them, one task per stream, written back by partition, 3. each
        # partition's build with its counts.
        queries = self.work / "arrivals" if kind == "features" else folder / "queries"
        if kind != "features":
            queries.mkdir()
            client.gather([client.submit(_write_queries, kind, self.canonical, self.split, i, self.cfg, self.as_of,
                                         replace(self.shard, index=i), self.spill,
                                         queries / f"part-{i}.parquet", pure=False) for i in range(self.partitions)])
        horizon = int(self.cfg.label.horizon_days)
        # One task per stream rather than per key: three keys of four streams each over two workers left one
        # idle for a third of the time (10M leads: 332 s against 315 s).
        client.gather([client.submit(_count_stream, queries, self.events, role, stream, horizon, folder / "counted",
                                     self.spill, pure=False) for role, stream in self._streams(stored=False)])
        shard = replace(self.shard, history=folder / "counted")
        parts = [folder / f"part-{i}.parquet" for i in range(self.partitions)]
        built = client.gather([client.submit(_build_partition, kind, self.canonical, self.split, i, self.cfg,
                                             self.as_of, shard, self.spill, parts[i], pure=False)
                               for i in range(self.partitions)])
        fs = built[0]
        fs.counts = _sum_counts([b.counts for b in built])
        if kind == "landmarks":
            fs.counts["candidate_rows"], fs.counts["positive"] = self.landmark_candidates
            fs.counts["negative"] = self.landmark_candidates[0] - self.landmark_candidates[1]
            fs.counts["positive_sample_rate"], fs.counts["negative_sample_rate"] = (
                round(r, 6) for r in self.shard.landmark_rates)
        order = "created_at, lead_id" if kind == "features" else "\"at\", lead_id, landmark_days"
        _merge(parts, out, order, fs.metadata(extra_metadata), self.spill, self.cfg.features.memory_limit)
        shutil.rmtree(folder, ignore_errors=True)
        return fs


    def _streams(self, stored: bool) -> list[tuple[str, str]]:
        """(role, kind) of each shared history stream: the overall rate's two, and four per shared key. Stored,
        a matured lead is its arrival (the "mat" counts read the "leads" stream, shifted)."""
        kinds = [k for k in HISTORY_KINDS if not (stored and k == "mat")]
        overall = [("", "leads"), ("", "mwin")] if stored else [("", "mat"), ("", "mwin")]
        return overall + [(role, kind) for role in self.roles for kind in kinds]


def _top(counts: Counter, n: int) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _sum_counts(counts: list[dict]) -> dict:
    out = {}
    for c in counts:
        for k, v in c.items():
            if isinstance(v, int):
                out[k] = out.get(k, 0) + v
    return out


def open_build(client, cfg: Config, home: Home, as_of: datetime, ingest_manifest: dict) -> ShardedBuild:
    """The sharded build of the export ingested last (made now, or found made by an earlier step of its run)."""
    leads = int(ingest_manifest["counts"]["leads"]["kept"])
    stamp = {"ingest_run": ingest_manifest["run_id"], "data_fingerprint": ingest_manifest["data_fingerprint"],
             "config_hash": cfg.digest()}
    build = ShardedBuild(client, cfg, home.canonical, home.partitions, as_of, leads, stamp)
    log.info("features: %s leads in %d partitions on the cluster", f"{leads:,}", build.partitions)
    return build
