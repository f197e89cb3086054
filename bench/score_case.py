"""Scoring at scale, for `make bench`: every lead of a generated export is open (its outcomes are withheld),
so all of them are scored by a champion trained elsewhere.

    python bench/score_case.py --export DIR --model-home DIR --dir WORK
Prints JSON: seconds for features, for scoring + routing + reasons + publishing (CSV, Parquet, ledger), and
prediction alone against raw ``Booster.predict`` on the same matrix.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--model-home", type=Path, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")

    from ingest.synthetic import FILES, demo_config_text

    from flows import steps
    from leadscore.config import load_config

    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    outcomes = args.dir / "no-outcomes.csv"
    outcomes.write_text("Lead ID,Stage,Stage Date,Amount\n", encoding="utf-8")
    text = demo_config_text(args.export, args.dir / "home")
    text = text.replace((args.export / FILES["opportunities"]).as_posix(), outcomes.as_posix())
    text = text.split("# Synthetic data only")[0]  # no truth: nothing is trained here
    config = args.dir / "open.toml"
    config.write_text(text, encoding="utf-8")
    cfg = load_config(config)
    home = args.dir / "home"
    home.mkdir()
    shutil.copy(args.model_home / "mlflow.db", home / "mlflow.db")  # the champion (artifacts stay where they are)

    steps.ingest_step(cfg, "bench")
    start = time.perf_counter()
    steps.features_step(cfg)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = steps.score_step(cfg, "bench")
    score_s = time.perf_counter() - start

    # Prediction alone: the model's path (encoding + booster + calibration) vs the booster on a ready matrix.
    from features.store import load_feature_set
    from leadscore.paths import Home
    from serving.scorer import LeadScorer

    fs, _ = load_feature_set(Home(home).features_file)
    frame = fs.frame.to_pandas()
    model = LeadScorer.from_registry(Home(home)).model
    x = model.encoder.transform(frame)
    model.booster.predict(x.head(1000))  # warm-up
    start = time.perf_counter()
    model.booster.predict(x)
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    model.predict_frame(frame)
    predict_s = time.perf_counter() - start
    tiers = summary["tiers"]
    print(json.dumps({
        "leads_scored": summary["leads_scored"], "reasons_for": tiers.get("A", 0) + tiers.get("B", 0),
        "features_s": round(features_s, 2), "score_publish_s": round(score_s, 2),
        "end_to_end_s": round(features_s + score_s, 2), "raw_predict_s": round(raw_s, 2),
        "model_predict_s": round(predict_s, 2), "predict_ratio": round(predict_s / raw_s, 3),
        "trees": model.booster.num_trees(),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
