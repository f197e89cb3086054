"""Training alone, for `make bench`: train_model on a saved feature file, then log the model to MLflow.

    python bench/train_case.py --features FILE --config FILE --home DIR
Prints JSON: seconds to train (model, calibration, baselines, leakage check) and to log + register the model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # before mlflow is imported

    import pandas as pd

    from features.store import load_feature_set
    from leadscore.config import load_config
    from leadscore.paths import Home
    from models import registry
    from models.train import train_model

    cfg = load_config(args.config)
    fs, meta = load_feature_set(args.features)
    start = time.perf_counter()
    as_of = pd.Timestamp(meta["as_of"]) if meta.get("as_of") else None  # the campaign outcome factors need it
    result = train_model(fs, cfg, as_of=as_of)
    train_s = time.perf_counter() - start
    home = Home(args.home)
    registry.log_training_run(home, result, {}, run_name="bench-warmup")  # first connection creates the tables
    start = time.perf_counter()
    registry.log_training_run(home, result, {}, run_name="bench")
    log_s = time.perf_counter() - start
    print(json.dumps({"train_s": round(train_s, 2), "log_model_s": round(log_s, 2),
                      "train_leads": result.split_counts["train_leads"], "trees": result.best_iteration,
                      "roc_auc": round(result.metrics["roc_auc"], 4),
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
