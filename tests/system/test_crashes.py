"""Crashes and full disks: kill -9 at random points of `leadscore score`, and a file system that fills up. No
child process outlives the command, the ledger agrees with what was published, and a full disk is one line."""

import json
from pathlib import Path

import pytest
from conftest import LEADSCORE, copy_home

from flows import steps
from leadscore.paths import Home, read_latest

pytestmark = pytest.mark.slow


def _cli(args, env, **kw):
    import subprocess

    return subprocess.Popen([LEADSCORE, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


def _plain_env():
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            living.append(pid)
    return living


def _check_published(home: Home) -> None:
    """LATEST names a complete run whose files match the manifest's sha256."""
    import hashlib

    latest = read_latest(home.scores)
    assert latest is not None and latest.is_dir()
    manifest = json.loads((latest / "manifest.json").read_text())
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((latest / name).read_bytes()).hexdigest() == meta["sha256"], name


PREFECT_START_SECONDS = 8  # a CLI run's temporary Prefect server, measured here at 6-10 s


def test_kill_9_at_random_points_of_score_leaves_no_process_and_a_consistent_ledger(small_champion, tmp_path):
    import random
    import time

    from serving import ledger

    cfg = copy_home(small_champion[0], small_champion[1], tmp_path)
    home = Home(cfg.home)
    steps.ingest_step(cfg, "kill")
    steps.features_step(cfg)
    env = _plain_env()
    # A first publication to protect, made in-process (a CLI run costs a Prefect server start more); the CLI run
    # to kill takes about as long plus that start, which is where the random point falls.
    started = time.monotonic()
    steps.score_step(cfg, "first")
    duration = time.monotonic() - started + PREFECT_START_SECONDS
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    for _ in range(1):  # a random point (a new seed each run), then a clean run; the seed is in every message
        delay = rng.uniform(0.3, duration)
        run = _cli(["score", "--config", str(cfg.source_file)], env)
        time.sleep(delay)
        family = _descendants(run.pid)
        run.kill()
        run.wait()
        deadline = time.monotonic() + 15
        while _alive(family) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(family), f"seed {seed}: killed after {delay:.1f} s, still running: {_alive(family)}"
        _check_published(home)
    last = _cli(["score", "--config", str(cfg.source_file)], env)
    assert last.wait(timeout=300) == 0, last.stderr.read()[-2000:]
    _check_published(home)
    left = [p for folder in (home.data, home.published, home.ledger, home.root / "serving")
            for p in folder.rglob(".*") if p.name.endswith((".tmp", ".partial", ledger.PENDING))]
    assert left == [], f"seed {seed}: {left}"
    runs = {p.name for p in home.scores.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert runs <= ledger.recorded_runs(home.ledger), f"seed {seed}: published runs the ledger never saw"


DISK_SCRIPT = """set -e
mount -t tmpfs -o size={size}k tmpfs {disk}
cp -a {home} {disk}/home
rm -rf {disk}/home/prefect
free=$(df -k {disk} | tail -1 | awk '{{print $4}}')
dd if=/dev/zero of={disk}/filler bs=1k count=$((free - {leave})) 2>/dev/null
run() {{  # floor, then the Prefect API to use ("" = the run's own temporary server)
  PREFECT_API_URL=$2 LEADSCORE_MIN_FREE_MB=$1 {leadscore} score --config {config} --home {disk}/home \\
      > {out}/stdout.$1 2> {out}/stderr.$1 && echo 0 > {out}/code.$1 || echo $? > {out}/code.$1
}}
run 0 {api}
run 64 ""
cat {disk}/home/published/scores/LATEST > {out}/latest
ls -a {disk}/home/published/scores > {out}/runs
umount {disk} 2>/dev/null || true
"""


def test_a_full_disk_is_one_line_and_publishes_nothing(small_champion, tmp_path):
    """On a real file system that fills up. With the free-space floor off, the write that fails is named in
    one line (Prefect's database lives elsewhere here, so the first write to fail is leadscore's own); with it
    on, the run refuses to start. Either way exit code 2, no traceback, LATEST unchanged."""
    import os
    import subprocess

    from flows.server import TemporaryServer

    cfg = copy_home(small_champion[0], small_champion[1], tmp_path / "copy")
    home = Home(cfg.home)
    steps.ingest_step(cfg, "before-full")
    steps.features_step(cfg)
    steps.score_step(cfg, "before-full")
    before = read_latest(home.scores).name
    used = sum(p.stat().st_size for p in home.root.rglob("*") if p.is_file() and "prefect" not in p.parts) // 1024
    (tmp_path / "disk").mkdir()
    server = TemporaryServer(tmp_path / "prefect", timeout=90)
    env = {**_plain_env(), "PREFECT_HOME": str(tmp_path / "prefect")}
    old = os.environ.copy()
    os.environ.update(env)
    try:
        api = server.start()
    finally:
        os.environ.clear()
        os.environ.update(old)
    script = DISK_SCRIPT.format(size=used + 16_000, disk=tmp_path / "disk", home=home.root, leave=100, api=api,
                                leadscore=LEADSCORE, config=cfg.source_file, out=tmp_path)
    # Mounting needs root; elsewhere a user namespace gives a private root that may mount a tmpfs.
    command = ["sh", "-c", script] if os.geteuid() == 0 else ["unshare", "-rm", "sh", "-c", script]
    try:
        done = subprocess.run(command, env=_plain_env(), capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    for floor, expected in (("0", f"no space left on the device at {tmp_path / 'disk'}"),
                            ("64", "MB free on the device holding")):
        stderr = (tmp_path / f"stderr.{floor}").read_text()
        assert (tmp_path / f"code.{floor}").read_text().strip() == "2", stderr
        assert expected in stderr and "Traceback" not in stderr, stderr
        assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1
    assert (tmp_path / "latest").read_text().strip() == before
    assert [n for n in (tmp_path / "runs").read_text().split() if n.startswith(".") and n not in (".", "..")] == []
