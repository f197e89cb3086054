"""LightGBM's OpenMP threads on a loaded machine, for `make bench` (issue 16, item 7).

    python bench/contention_case.py [--rows N] [--rounds N]

Trains the same booster eight times, each in a fresh process because OpenMP reads its wait policy when it
starts: alone and beside a process that keeps one core busy; on 2 threads with OMP_WAIT_POLICY unset (libgomp
spins a while, then sleeps), ACTIVE (threads spin while they wait for work) and PASSIVE (they sleep), and on one
thread. Prints JSON: seconds per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TRAIN = """
import sys, time
import numpy as np
import lightgbm as lgb
rows, rounds, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(7)
x = rng.normal(size=(rows, 30)).astype(np.float32)
y = (x[:, :5].sum(axis=1) + rng.normal(size=rows) > 0).astype(np.float32)
data = lgb.Dataset(x, y, params={"verbose": -1}).construct()
start = time.perf_counter()
lgb.train({"objective": "binary", "num_threads": threads, "num_leaves": 63, "verbose": -1, "force_row_wise": True},
          data, num_boost_round=rounds)
print(time.perf_counter() - start)
"""

BUSY = "while True:\n    pass\n"
POLICIES = ("DEFAULT", "ACTIVE", "PASSIVE")


def run(policy: str, rows: int, rounds: int, threads: int = 2) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy != "DEFAULT":  # DEFAULT: libgomp's own (spin a while, then sleep)
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", TRAIN, str(rows), str(rounds), str(threads)], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    result = {"rows": args.rows, "rounds": args.rounds, "threads": 2}
    for policy in POLICIES:
        result[f"alone_{policy.lower()}_s"] = round(run(policy, args.rows, args.rounds), 2)
    result["alone_one_thread_s"] = round(run("DEFAULT", args.rows, args.rounds, threads=1), 2)
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(0.5)
        for policy in POLICIES:
            result[f"beside_busy_core_{policy.lower()}_s"] = round(run(policy, args.rows, args.rounds), 2)
        result["beside_busy_core_one_thread_s"] = round(run("DEFAULT", args.rows, args.rounds, threads=1), 2)
    finally:
        busy.kill()
        busy.wait()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
