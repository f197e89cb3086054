"""Save and load a FeatureSet as one Parquet file; which columns are features rides in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from leadscore.contract import METADATA_KEY, FeatureSet
from leadscore.errors import DataError
from leadscore.paths import write_parquet_atomic

_KEY = METADATA_KEY.encode()


def save_feature_set(fs: FeatureSet, path: Path, extra: dict | None = None) -> None:
    meta = fs.metadata(extra)
    table = fs.frame.replace_schema_metadata({**(fs.frame.schema.metadata or {}), _KEY: json.dumps(meta).encode()})
    write_parquet_atomic(table, path)


def load_feature_set(path: Path) -> tuple[FeatureSet, dict]:
    if not path.is_file():
        raise DataError(f"no features at {path}; run `leadscore features --config FILE` first")
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(_KEY, b"{}"))
    if "categorical" not in meta:
        raise DataError(f"{path} was not written by leadscore features; run `leadscore features --config FILE`")
    fs = FeatureSet(frame=table, categorical=meta["categorical"], numeric=meta["numeric"],
                    labels=meta.get("labels", {}), counts=meta.get("counts", {}), mode=meta.get("mode", "events"),
                    definitions=meta.get("definitions", []))
    return fs, meta
