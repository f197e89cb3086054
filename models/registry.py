"""The only module that talks to MLflow: log a training run, register, set aliases, load by alias.

Tracking and registry live in ``home/mlflow.db`` (sqlite) with artifacts in ``home/mlartifacts``.
Aliases (``champion``, ``challenger``), never stages.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from leadscore.errors import LeadscoreError, ModelNotFoundError
from leadscore.paths import Home

MODEL_NAME = "lead-quality"


def segment_model_name(segment: str) -> str:
    """The registered model of one segment (``[[segments]]``), with its own versions and champion."""
    return f"{MODEL_NAME}-{segment}"
EXPERIMENT = "leadscore"
CHAMPION = "champion"
CHALLENGER = "challenger"

# What the logged model needs to load outside this checkout's venv (besides the leadscore package itself).
PIP_REQUIREMENTS = ["lightgbm>=4.7,<5", "scikit-learn>=1.9,<2", "pandas>=3.1,<4", "numpy>=2.4,<3", "mlflow>=3.17.2,<3.18"]


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    sha256: str | None = None  # of the model's files, recorded at registration and checked at load


class ModelIntegrityError(LeadscoreError):
    """The files of a registered model are not the ones that were registered, or cannot be loaded."""


def _artifact_dir(client, model_id: str) -> Path:
    """The folder of a logged model's files. (A version's ``model_id`` reads back as None from the sqlite
    store; its ``source``, ``models:/<model id>``, holds it.)"""
    from urllib.parse import unquote, urlparse

    location = client.get_logged_model(model_id).artifact_location
    return Path(unquote(urlparse(location).path)) if location.startswith("file:") else Path(location)


# Written by MLflow into a model's folder after it was logged (on its first load), so not part of its identity.
LATER_FILES = frozenset({"registered_model_meta"})


def files_sha256(folder: Path) -> str:
    """One sha256 over every file of a logged model (names and bytes, in name order)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in LATER_FILES):
        h.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _client(home: Home):
    import mlflow
    from mlflow import MlflowClient

    home.ensure()
    mlflow.set_tracking_uri(home.tracking_uri)
    mlflow.set_registry_uri(home.tracking_uri)
    return mlflow, MlflowClient(tracking_uri=home.tracking_uri, registry_uri=home.tracking_uri)


def _experiment_id(client, home: Home) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(EXPERIMENT, artifact_location=home.artifacts.as_uri())


def _signature(model):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", c, required=False) for c in model.encoder.categorical]
                    + [ColSpec("double", c, required=False) for c in model.encoder.numeric])
    outputs = Schema([ColSpec("double", "probability"), ColSpec("long", "score"), ColSpec("string", "tier")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_training_run(home: Home, result, tags: dict[str, str], run_name: str, artifacts: dict[str, Path] | None = None,
                     name: str = MODEL_NAME) -> ModelRef:
    """Log params, metrics, tags and the pyfunc model in one run, and register it as a new version."""
    mlflow, client = _client(home)
    exp_id = _experiment_id(client, home)
    project_run = _project_run_id(client)
    start = {"run_id": project_run} if project_run else {"experiment_id": exp_id, "run_name": run_name}
    import warnings

    with mlflow.start_run(**start) as run, warnings.catch_warnings():
        # The signature is explicit; an input example with categoricals is what MLflow cannot take.
        warnings.filterwarnings("ignore", message=".*input example.*")
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in result.params.items()})
        mlflow.log_metrics(result.metrics)
        mlflow.log_metrics({k: float(v) for k, v in result.split_counts.items()})
        mlflow.set_tags(tags)
        for folder_name, path in (artifacts or {}).items():
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=folder_name)
            else:
                mlflow.log_artifact(str(path))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=result.model,
            signature=_signature(result.model),
            pip_requirements=PIP_REQUIREMENTS,
        )
    _ensure_registered_model(client, name)
    sha = files_sha256(_artifact_dir(client, info.model_id))
    version_tags = {k: tags[k] for k in ("git_sha", "config_hash", "recipe", "as_of", "data_fingerprint")
                    if k in tags}
    mv = client.create_model_version(name, source=info.model_uri, run_id=run.info.run_id,
                                     model_id=info.model_id, tags={**version_tags, "model_sha256": sha})
    return ModelRef(name, str(mv.version), run.info.run_id, sha)


def _project_run_id(client) -> str | None:
    """``mlflow run`` hands its run to the entry point in MLFLOW_RUN_ID; log into it if it is in our store."""
    from mlflow.exceptions import MlflowException

    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if not run_id:
        return None
    try:
        client.get_run(run_id)
    except MlflowException:
        return None
    return run_id


def _ensure_registered_model(client, name: str = MODEL_NAME) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        what = "" if name == MODEL_NAME else f", for the leads of segment {name.removeprefix(MODEL_NAME + '-')}"
        client.create_registered_model(name, description=f"Chance that a lead is won within the label horizon{what}.")


def set_alias(home: Home, version: str, alias: str = CHAMPION, name: str = MODEL_NAME) -> None:
    _, client = _client(home)
    client.set_registered_model_alias(name, alias, version)


def load_model(home: Home, alias: str = CHAMPION, name: str = MODEL_NAME):
    """The LeadModel behind ``models:/lead-quality@<alias>`` and its version reference."""
    mlflow, client = _client(home)
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        hint = "run `leadscore train --config FILE` first"
        if alias == CHAMPION and any(CHALLENGER in v["aliases"] for v in list_versions(home)):
            hint = ("the promotion gate kept the trained version as challenger (see `leadscore models`); "
                    "improve it, or promote it by hand with `leadscore promote VERSION`")
        raise ModelNotFoundError(f"no model '{name}@{alias}' in {home.mlflow_db}; {hint}") from None
    folder = _artifact_dir(client, mv.model_id or mv.source.removeprefix("models:/"))
    expected = (mv.tags or {}).get("model_sha256")
    found = files_sha256(folder) if folder.is_dir() else "missing"
    if expected:  # a version registered before hashes were recorded is loaded as it is, its hash taken now
        if found != expected:
            raise ModelIntegrityError(
                f"the files of model version {mv.version} in {folder} are not the ones registered (sha256 "
                f"{found[:12]}, registered {expected[:12]}); restore them, promote another version or retrain")
    try:  # by version: the alias may move meanwhile, and this is the version whose files were checked
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    except Exception as exc:  # unpickling a damaged file can raise nearly anything
        raise ModelIntegrityError(f"cannot load model version {mv.version} from {folder}: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return loaded.unwrap_python_model(), ModelRef(name, str(mv.version), mv.run_id, expected or found)


def model_summary(home: Home, alias: str = CHAMPION) -> dict[str, object]:
    """Version, run and key metrics of an alias, for CLI output and manifests."""
    _, client = _client(home)
    mv = client.get_model_version_by_alias(MODEL_NAME, alias)
    run = client.get_run(mv.run_id)
    from datetime import datetime, timezone

    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds")
    return {"version": str(mv.version), "run_id": mv.run_id, "metrics": dict(run.data.metrics), "created_at": created}


def champion_version(home: Home, name: str = MODEL_NAME) -> str | None:
    from mlflow.exceptions import MlflowException

    _, client = _client(home)
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def promote(home: Home, version: str, reason: str, who: str, name: str = MODEL_NAME) -> str | None:
    """Make ``version`` the champion; record who, why, when and the champion it replaces. Returns that one."""
    from mlflow.exceptions import MlflowException

    _, client = _client(home)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise ModelNotFoundError(f"no version {version} of '{name}'; `leadscore models` lists them") from None
    previous = champion_version(home, name)
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    tags = {"promoted_at": _now(), "promoted_by": who, "promotion_reason": reason}
    if previous is not None and previous != str(mv.version):
        tags["previous_champion"] = previous
    for key, value in tags.items():
        client.set_model_version_tag(name, mv.version, key, value)
    if str(client.get_registered_model(name).aliases.get(CHALLENGER)) == str(mv.version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return previous


def retire_champion(home: Home, name: str, reason: str, who: str) -> str | None:
    """Take the champion alias off ``name`` (a segment's model that may no longer score: the global model
    takes its leads), saying why on the version. Returns the version retired, or None if there was none."""
    current = champion_version(home, name)
    if current is None:
        return None
    _, client = _client(home)
    client.delete_registered_model_alias(name, CHAMPION)
    for key, value in {"retired_at": _now(), "retired_by": who, "retirement_reason": reason}.items():
        client.set_model_version_tag(name, current, key, value)
    return current


def rollback(home: Home, reason: str, who: str) -> tuple[str, str]:
    """Give the champion alias back to the version the current champion replaced. Returns (from, to)."""
    _, client = _client(home)
    current = champion_version(home)
    if current is None:
        raise ModelNotFoundError(f"no champion of '{MODEL_NAME}' to roll back")
    previous = client.get_model_version(MODEL_NAME, current).tags.get("previous_champion")
    if not previous:
        raise LeadscoreError(f"version {current} is the first champion: there is no earlier one to roll back to")
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, previous)
    for key, value in {"rolled_back_at": _now(), "rolled_back_by": who, "rollback_reason": reason,
                       "rolled_back_to": previous}.items():
        client.set_model_version_tag(MODEL_NAME, current, key, value)
    return current, previous


def list_versions(home: Home, name: str = MODEL_NAME) -> list[dict]:
    """Every registered version with its aliases, when it was made and its key test metrics."""
    from mlflow.exceptions import MlflowException

    _, client = _client(home)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    if not versions:  # nothing registered yet: the registered model itself may not exist
        return []
    # Search results do not carry aliases; the registered model does (alias -> version).
    by_version: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        data = client.get_run(mv.run_id).data if mv.run_id else None
        metrics, params = (data.metrics, data.params) if data else ({}, {})
        rows.append({"version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
                     "created_at": mv.creation_timestamp, "roc_auc": metrics.get("roc_auc"),
                     "ece": metrics.get("ece"), "log_loss": metrics.get("log_loss"),
                     "now_roc_auc": metrics.get("now_roc_auc"), "now_ece": metrics.get("now_ece"),
                     "model_kind": params.get("model_kind", "lightgbm"),
                     "tags": dict(mv.tags or {})})
    return rows


def version_info(home: Home, version: str, name: str = MODEL_NAME):
    """A version's tags and when it was registered (aware UTC)."""
    from datetime import datetime, timezone

    _, client = _client(home)
    mv = client.get_model_version(name, str(version))
    return dict(mv.tags or {}), datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc)


def tag_version(home: Home, version: str, tags: dict[str, str], name: str = MODEL_NAME) -> None:
    _, client = _client(home)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
