"""Feature building alone, for `make bench`: prepare canonical tables once, then time build_features.

    python bench/features_case.py prepare --leads N --dir DIR   # generate, write Parquet exports, ingest (on
                                                                # one machine, and on a LocalCluster)
    python bench/features_case.py measure --dir DIR             # read canonical tables, build features
    python bench/features_case.py measure --dir DIR --engine dask --workers 2   # the same on a LocalCluster,
                                                                # from the tables the cluster ingested
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def prepare(leads: int, folder: Path) -> None:
    from ingest.canonical import ingest, write_canonical
    from ingest.synthetic import demo_config_text, generate_crm

    from leadscore.config import parse_config

    export = folder / "export"
    export.mkdir(parents=True, exist_ok=True)
    crm = generate_crm(leads, seed=7)
    for name in ("leads", "activities", "opportunities", "campaigns"):
        pq.write_table(getattr(crm, name), export / f"{name}.parquet")
    del crm
    text = demo_config_text(export, folder / "home").replace(".csv", ".parquet")
    text = text.split("# Synthetic data only")[0]  # no truth needed here
    (folder / "leadscore.toml").write_text(text)
    cfg = parse_config(text, folder / "leadscore.toml")
    result = ingest(cfg)
    write_canonical(result, folder / "canonical")
    (folder / "as_of.txt").write_text(result.as_of.isoformat())
    counts = {k: v["kept"] for k, v in result.counts.items()}
    del result
    ingest_on_cluster_once(cfg, folder)
    print(json.dumps(counts))


def ingest_on_cluster_once(cfg, folder: Path) -> None:
    """The same export ingested on a LocalCluster of 2 x 1 thread into ``canonical_dask`` (a folder of lead
    partitions per table): what the sharded build reads in a run on the Dask engine, with no split of its own."""
    from ingest.blocks import commit_tables, ingest_on_cluster
    from ingest.canonical import write_canonical
    from leadscore import cluster
    from leadscore.config import EngineConfig

    engine = EngineConfig(kind="dask", workers=2, threads=1)
    with cluster.session(engine) as client:
        result, tables = ingest_on_cluster(client, cfg, folder / "ingest_blocks")
    write_canonical(result, tables)
    commit_tables(folder / "ingest_blocks", folder / "canonical_dask")


def measure(folder: Path, engine: str = "local", workers: int = 2) -> None:
    from datetime import datetime

    from ingest.canonical import read_canonical

    from features.build import build_features
    from leadscore.config import load_config

    cfg = load_config(folder / "leadscore.toml")
    if engine == "dask":
        return measure_on_cluster(folder, cfg, workers)
    start = time.perf_counter()
    # As `leadscore features` does it: lazy inputs, the frame written by duckdb.
    tables = read_canonical(folder / "canonical", lazy=True)
    as_of = datetime.fromisoformat((folder / "as_of.txt").read_text())
    fs = build_features(tables, cfg, as_of, out=folder / "features.parquet", spill_dir=folder / "spill")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(peak, 1), "leads": fs.counts["leads"],
                      "activities": tables["activities"].count_rows(), "features": len(fs.features)}))


def measure_on_cluster(folder: Path, cfg, workers: int) -> None:
    """The sharded build on a LocalCluster of ``workers`` processes with one thread each, as `leadscore features`
    runs it with ``[engine] kind = "dask"`` (the cluster's start-up is timed too); the peak memory of the driver
    and of each worker."""
    from datetime import datetime

    from features.sharded import ShardedBuild
    from leadscore import cluster
    from leadscore.config import EngineConfig

    engine = EngineConfig(kind="dask", workers=workers, threads=1)
    cfg = cfg.model_copy(update={"engine": engine})
    as_of = datetime.fromisoformat((folder / "as_of.txt").read_text())
    leads = pq.read_metadata(folder / "canonical" / "leads.parquet").num_rows
    start = time.perf_counter()
    with cluster.session(engine) as client:
        build = ShardedBuild(client, cfg, folder / "canonical_dask", folder / "partitions", as_of, leads,
                             {"bench": 1})
        fs = build.build("features", folder / "features-dask.parquet")
        seconds = time.perf_counter() - start
        worker_peaks = sorted(client.run(_peak_mb).values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(peak, 1), "worker_peak_mb": worker_peaks,
                      "partitions": build.partitions, "leads": fs.counts["leads"], "features": len(fs.features)}))


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["prepare", "measure"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["local", "dask"], default="local")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.leads, args.dir)
    elif args.engine == "dask" and not (args.dir / "canonical_dask" / "leads.parquet").exists():
        # prepared before the cluster ingest existed
        from leadscore.config import load_config

        ingest_on_cluster_once(load_config(args.dir / "leadscore.toml"), args.dir)
    if args.what == "measure":
        measure(args.dir, args.engine, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
