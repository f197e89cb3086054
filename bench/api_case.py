"""The real-time API under load, for `make bench`: `leadscore serve` in one process, load from this one.

    python bench/api_case.py --config DEMO_TOML [--seconds 10]
Prints JSON: single-lead server time p50/p99 (the app's own Server-Timing), requests per second over 16
keep-alive connections, and the server time of batches of 1,000 leads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    from leadscore.config import load_config

    cfg = load_config(args.config)
    raw = pd.read_csv(cfg.data.leads.path, dtype=str, keep_default_na=False, nrows=200_000)
    mapped = {cfg.data.leads.id, cfg.data.leads.created_at, cfg.data.leads.campaign, cfg.data.leads.source,
              cfg.data.leads.account, *cfg.data.leads.categorical, *cfg.data.leads.numeric, *cfg.data.leads.passthrough}
    leads = raw[[c for c in raw.columns if c in mapped]].sample(5000, random_state=1).to_dict("records")

    port, key = _free_port(), "bench-key"
    env = {**os.environ, "LEADSCORE_API_KEY": key}
    server = subprocess.Popen([str(Path(sys.executable).with_name("leadscore")), "serve", "--config", str(args.config),
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        headers = {"X-API-Key": key}

        def server_ms(r: httpx.Response) -> float:
            assert r.status_code == 200, r.text[:300]
            return float(r.headers["server-timing"].split("dur=")[1])

        with httpx.Client(base_url=url, headers=headers) as c:  # warm-up
            for lead in leads[:200]:
                server_ms(c.post("/v1/score", json={"leads": [lead]}))

        # The load: keep-alive connections writing pre-encoded requests with asyncio streams, so this process
        # spends little CPU per request and the 2 cores go to the server.
        import asyncio

        bodies = [json.dumps({"leads": [lead]}).encode() for lead in leads]
        requests = [(f"POST /v1/score HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     f"x-api-key: {key}\r\ncontent-length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
        timings: list[float] = []

        async def connection(offset: int, stop: float):
            i = offset
            while time.monotonic() < stop:
                # A fresh connection every 50 requests, as many clients would make: the server's worker
                # processes share the listening socket, and long-lived connections can pile up on one of them.
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                for _ in range(50):
                    if time.monotonic() >= stop:
                        break
                    writer.write(requests[i % len(requests)])
                    head = await reader.readuntil(b"\r\n\r\n")
                    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
                    assert head.startswith(b"HTTP/1.1 200"), head[:200]
                    await reader.readexactly(int(fields[b"content-length"]))
                    timings.append(float(fields[b"server-timing"].split(b"dur=")[1]))
                    i += 16
                writer.close()

        async def load() -> float:
            stop = time.monotonic() + args.seconds
            started = time.monotonic()
            await asyncio.gather(*(connection(k, stop) for k in range(16)))
            return len(timings) / (time.monotonic() - started)

        rps = asyncio.run(load())

        batch_server, batch_wall = [], []
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            for k in range(10):
                chunk = leads[k * 1000 % 4000:][:1000]
                t0 = time.perf_counter()
                batch_server.append(server_ms(c.post("/v1/score", json={"leads": chunk})))
                batch_wall.append((time.perf_counter() - t0) * 1000)
    finally:
        server.terminate()
        server.wait(timeout=30)
    t = np.asarray(timings)
    print(json.dumps({
        "single_requests": len(t), "single_p50_ms": round(float(np.percentile(t, 50)), 3),
        "single_p99_ms": round(float(np.percentile(t, 99)), 3), "requests_per_s": round(rps, 1),
        "batch_1000_server_ms_p50": round(float(np.median(batch_server)), 1),
        "batch_1000_wall_ms_p50": round(float(np.median(batch_wall)), 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
