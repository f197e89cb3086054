"""Segments: leads that buy differently get a model of their own when they meet the minimums, and keep it only
where it ranks them at least as well as the global model does; the rest are scored by the global model."""

import json

import pandas as pd
import pytest
from conftest import make_config

from flows import steps
from ingest.synthetic import generate_crm, write_crm
from leadscore.config import parse_config
from leadscore.paths import Home, read_latest

pytestmark = pytest.mark.slow

SEGMENTS = """
[[segments]]
name = "enterprise"
where = { "Product Line" = ["Enterprise"] }

[[segments]]
name = "students"
where = { "Job Level" = ["Student"] }
"""


def test_a_segment_that_buys_differently_gets_its_own_model(tmp_path):
    """16,000 generator leads with product lines: Enterprise leads (40 %) weigh job level and industry the other
    way. The global model sees the product line as a feature; the Enterprise model must still rank the newest
    Enterprise leads at least as well as it does, on the same leads. Students are too few for the minimums."""
    write_crm(generate_crm(16_000, seed=71, product_lines=True), tmp_path / "crm")
    plain = make_config(tmp_path / "crm", tmp_path / "home")
    text = plain.source_file.read_text().replace('categorical = ["Country", "Industry", "Job Level"]',
                                                 'categorical = ["Country", "Industry", "Job Level", "Product Line"]')
    cfg = parse_config(text + SEGMENTS, plain.source_file)
    steps.ingest_step(cfg, "r1")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r1")
    assert trained["promoted"], trained["gate_reasons"]
    enterprise, students = trained["segments"]["enterprise"], trained["segments"]["students"]
    print({k: enterprise[k] for k in ("leads", "roc_auc", "global_roc_auc")}, students["reason"][:120])
    assert enterprise["trained"] and enterprise["promoted"], enterprise["gate_reasons"]
    assert enterprise["roc_auc"] >= enterprise["global_roc_auc"]
    assert any(k.startswith("baseline_") for k in enterprise["metrics"])  # judged against its own baselines
    assert not students["trained"] and "train.min_leads" in students["reason"]
    assert (Home(cfg.home).runs / "r1" / "segments" / "enterprise" / "evaluation.html").is_file()

    steps.score_step(cfg, "r1")
    folder = read_latest(Home(cfg.home).scores)
    scores = pd.read_parquet(folder / "scores.parquet")
    line = pd.read_parquet(Home(cfg.home).canonical / "leads.parquet", columns=["lead_id", "export:Product Line"])
    scores = scores.merge(line, on="lead_id")
    ent = scores["export:Product Line"] == "Enterprise"
    version = enterprise["model_version"]
    assert (scores.loc[ent, "model_version"] == f"enterprise/{version}").all()
    assert (scores.loc[~ent, "model_version"] == trained["model_version"]).all()  # students: the global model
    top = scores[ent & scores["tier"].isin(["A", "B"])]
    assert len(top) and top["reasons"].str.startswith(("+ ", "- ")).all()  # its own reasons
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"] == {trained["model_version"]: int((~ent).sum()), f"enterprise/{version}": int(ent.sum())}
    assert manifest["segment_models"]["enterprise"]["model_version"] == version
    assert len(manifest["segment_models"]["enterprise"]["model_sha256"]) == 64

    # The real-time API scores a segment's lead with the segment's model, as the batch did.
    from fastapi.testclient import TestClient

    from serving.api import create_app

    raw = pd.read_csv(cfg.data.leads.path, dtype=str, keep_default_na=False).set_index("Lead ID")
    sample = pd.concat([scores[ent].head(20), scores[~ent].head(20)])
    leads = raw.loc[sample["lead_id"]].reset_index().to_dict("records")
    with TestClient(create_app(cfg, api_key=None, watch=False)) as client:
        answer = client.post("/v1/score", json={"leads": leads})
        described = client.get("/v1/model").json()
    assert described["segments"] == {"enterprise": {"version": version, "label": f"enterprise/{version}"}}
    assert answer.status_code == 200, answer.text
    got = pd.DataFrame(answer.json()["results"])
    assert got["model_version"].tolist() == sample["model_version"].tolist()
    assert got["probability"].tolist() == sample["probability"].tolist()

    # Nothing changed: --since-last carries every row. Then the segment's champion is retired (as training does
    # when it falls below the minimums or the global model ranks its leads better): its leads are rescored by
    # the global model, and only they.
    again = steps.score_step(cfg, "r2", since_last=True)
    assert again["rows"]["scored"] == 0 and again["rows"]["unchanged_since_last"] == len(scores)
    from models import registry

    assert registry.retire_champion(Home(cfg.home), registry.segment_model_name("enterprise"), "test", "test") == version
    moved = steps.score_step(cfg, "r3", since_last=True)
    assert moved["rows"]["scored"] == int(ent.sum())
    after = pd.read_parquet(read_latest(Home(cfg.home).scores) / "scores.parquet")
    assert (after["model_version"] == trained["model_version"]).all()
