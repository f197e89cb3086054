"""Shared fixtures: one small synthetic CRM per session, ingested and featurized once."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports Prefect or MLflow: keep their state out of the user's home.
_STATE = Path(tempfile.mkdtemp(prefix="leadscore-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

from ingest.synthetic import demo_config_text, generate_crm, write_crm  # noqa: E402
from leadscore.config import Config, parse_config  # noqa: E402

# The installed command, as a user runs it.
LEADSCORE = str(Path(sys.executable).with_name("leadscore"))

# Test exports have a few hundred test leads: their ECE is noisy (about 0.03 for a perfectly calibrated model on
# 650 leads), so the gate's calibration limit is looser here than the 0.03 default.
# One thread (`make test` runs two tests at a time on two cores, beside servers they start), and at most 60,000
# landmark rows for the model of a win from now on (every win kept, the rest sampled and weighted): the
# 30,000-lead exports have about 140,000, and training on all of them doubles the suite's training time.
TEST_SETTINGS = """
[train]
num_threads = 1
max_landmark_rows = 60000

[gate]
max_ece = 0.1
"""


_MLFLOW_TEMPLATE: list[Path] = []


@pytest.fixture(autouse=True)
def _leadscore_log_reaches_caplog():
    """The CLI stops the "leadscore" logger from propagating (its own handler prints); a test that ran the CLI
    earlier in the same process would otherwise hide the log from the next test's caplog."""
    import logging

    logging.getLogger("leadscore").propagate = True
    yield


class StopWorkerOnce(WorkerPlugin):
    """A Dask worker plugin that makes the worker starting the first task of each named function exit at once,
    as a worker killed by the machine would (its nanny starts a new one, without the data the old one held). One
    worker per function: the first to create the function's mark in ``marks``."""

    name = "stop-worker-once"

    def __init__(self, functions: tuple[str, ...], marks: Path):
        self.functions, self.marks = functions, marks

    def transition(self, key, start, finish, **kwargs):
        from dask.utils import key_split

        if finish != "executing" or key_split(key) not in self.functions:
            return
        try:
            os.close(os.open(self.marks / key_split(key), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os._exit(1)


def seed_mlflow(home: Path) -> None:
    """Give a new home the empty MLflow database MLflow itself made once this session. Each new sqlite store runs
    MLflow's schema migrations (about 1.7 s); copied, it opens in 0.04 s, and is the same file."""
    import shutil

    from leadscore.paths import Home

    target = Home(home).mlflow_db
    if target.exists() or (home.exists() and any(home.iterdir())):
        return
    if not _MLFLOW_TEMPLATE:
        from mlflow import MlflowClient

        template = _STATE / "mlflow-template.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
        _MLFLOW_TEMPLATE.append(template)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE[0], target)


def make_config(export: Path, home: Path, extra: str = "", path: Path | None = None, publish: str = "") -> Config:
    """The demo config for ``export``, single-threaded for tests, plus any extra TOML (written to ``path``,
    by default beside ``home``) and any extra lines of its ``[publish]`` table. A new home starts with an empty
    MLflow database (:func:`seed_mlflow`)."""
    seed_mlflow(home)
    text = demo_config_text(export, home).replace("[publish]\n", f"[publish]\n{publish}\n", 1) + TEST_SETTINGS + extra
    path = path or home.parent / f"{home.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return parse_config(text, path)


def large_export(n_leads: int, seed: int, folder: Path):
    """A large generator export written as Parquet (quicker than CSV) with its truth.csv, and its config with
    two training threads (the largest tests; OMP_WAIT_POLICY=passive keeps them from
    spinning against the other pytest process). Returns (config, truth frame)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    crm = generate_crm(n_leads, seed=seed)
    export = folder / "crm"
    export.mkdir(parents=True)
    for name in ("leads", "activities", "opportunities", "campaigns"):
        pq.write_table(getattr(crm, name), export / f"{name}.parquet")
    pacsv.write_csv(crm.truth, export / "truth.csv")
    truth = crm.truth.to_pandas()
    cfg = make_config(export, folder / "home")
    cfg = cfg.model_copy(update={
        "train": cfg.train.model_copy(update={"num_threads": 2}),
        "data": cfg.data.model_copy(update={
            t: getattr(cfg.data, t).model_copy(update={"path": getattr(cfg.data, t).path.with_suffix(".parquet")})
            for t in ("leads", "outcomes", "activities", "campaigns")})})
    return cfg, truth


@pytest.fixture(scope="session")
def crm_small(tmp_path_factory) -> Path:
    """5,000 leads written as CSV exports."""
    out = tmp_path_factory.mktemp("crm_small")
    write_crm(generate_crm(5_000, seed=11), out)
    return out


@pytest.fixture(scope="session")
def crm_medium(tmp_path_factory) -> Path:
    """30,000 leads: enough for model-quality checks, small enough to train in a few seconds."""
    out = tmp_path_factory.mktemp("crm_medium")
    write_crm(generate_crm(30_000, seed=3), out)
    return out


@pytest.fixture(scope="session")
def medium_champion(crm_medium, tmp_path_factory):
    """The medium CRM through ingest, features and the training step once: a champion, its evaluation report and
    MLflow run. Tests that write (score, publish, train again) work on a copy (``copy_home``)."""
    from flows import steps

    cfg = make_config(crm_medium, tmp_path_factory.mktemp("medium_champion") / "home")
    steps.ingest_step(cfg, "r0")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r0")
    assert trained["promoted"], trained["gate_reasons"]
    return cfg, trained


@pytest.fixture(scope="session")
def medium_run(crm_medium, tmp_path_factory):
    """Ingest + features + train on the medium CRM, shared by model and report tests."""
    from features.build import build_features
    from ingest.canonical import ingest
    from models.train import train_model

    cfg = make_config(crm_medium, tmp_path_factory.mktemp("medium") / "home")
    result = ingest(cfg)
    fs = build_features(result.tables, cfg, result.as_of)
    trained = train_model(fs, cfg)
    return cfg, result, fs, trained


XEDU_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "xeducation.toml"


def _origin_checkout() -> Path | None:
    """The checkout this one was cloned from, if it is a local folder (``git clone . /tmp/fresh``)."""
    import subprocess

    try:
        url = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=XEDU_CONFIG.parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(url) if url and Path(url).is_dir() else None


def xeducation_config():
    """configs/xeducation.toml, reading the real dataset from ``shared/data`` beside this checkout (as in CI),
    beside the checkout it was cloned from, or from $LEADSCORE_SHARED_DATA."""
    from leadscore.config import load_config

    cfg = load_config(XEDU_CONFIG)
    name = cfg.data.leads.path.name
    candidates = [cfg.data.leads.path]
    if os.environ.get("LEADSCORE_SHARED_DATA"):
        candidates.append(Path(os.environ["LEADSCORE_SHARED_DATA"]) / name)
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.parent / "shared" / "data" / name)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:  # the real-data tests are part of the suite: without the file it fails, saying where to put it
        pytest.fail(f"the X Education dataset {name} is not beside this checkout (../shared/data), beside the one it "
                    "was cloned from, or in $LEADSCORE_SHARED_DATA; put it there (or point that variable at its "
                    "folder)", pytrace=False)
    leads = cfg.data.leads.model_copy(update={"path": found})
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"leads": leads})})


@pytest.fixture(scope="session")
def demo_scale(tmp_path_factory):
    """100,000 generator leads (the demo's size, 40 campaigns), trained once, every lead scored."""
    from features.build import build_features
    from ingest.canonical import ingest
    from models.train import train_model

    export = tmp_path_factory.mktemp("crm_100k")
    write_crm(generate_crm(100_000, seed=7), export)
    cfg = make_config(export, tmp_path_factory.mktemp("report100k") / "home")
    result = ingest(cfg)
    fs = build_features(result.tables, cfg, result.as_of)
    model = train_model(fs, cfg).model
    frame = fs.frame.to_pandas()
    p = model.probability(frame)
    scored = frame[["lead_id", "campaign", "source", "mature", "label", "is_open", "created_at", "won_at"]].assign(
        probability=p, tier=model.tier(p))
    return cfg, result.as_of, scored


CLEAN_LEADS = 2_000


def loose(data: str = "") -> str:
    """Hostile exports may hold more bad rows than the 5 % default allows."""
    return f"\n[data]\nmax_quarantine_share = 0.5\n{data}\n"


@pytest.fixture(scope="session")
def small_champion(tmp_path_factory):
    """A small clean export with a champion model, and the features of its leads (the baseline)."""
    from features.store import load_feature_set
    from flows import steps
    from leadscore.paths import Home
    from models import registry

    export = tmp_path_factory.mktemp("hostile_clean")
    write_crm(generate_crm(CLEAN_LEADS, seed=21), export)
    home = tmp_path_factory.mktemp("hostile") / "home"
    cfg = make_config(export, home, extra=loose(), path=export.parent / "clean.toml")
    steps.ingest_step(cfg, "base")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "base")
    if not trained["promoted"]:  # a small export: the gate may prefer a baseline; these tests need a champion
        registry.promote(Home(home), trained["model_version"], "hostile-input tests", "tests")
    fs, _ = load_feature_set(Home(home).features_file)
    return cfg, export, fs.frame.to_pandas().set_index("lead_id")


def copy_home(cfg: Config, export: Path, folder: Path, extra: str = "", publish: str = "") -> Config:
    """A config for ``export`` whose home is a fresh copy of ``cfg``'s (its trained champion included), so a test
    can ingest, score and publish without touching what other tests see. The model's files stay where they
    are (the copied registry points at them)."""
    import shutil

    home = folder / "home"
    shutil.copytree(cfg.home, home, ignore=shutil.ignore_patterns("prefect"))
    return make_config(export, home, extra=extra, path=folder / f"{export.name}-{folder.name}.toml", publish=publish)
