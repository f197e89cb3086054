"""The real-time API: same scores as batch, auth, limits, field-level errors, no 5xx, hot reload under load."""

import json
import os
import subprocess
import threading
import time

import pandas as pd
import pytest
import schemathesis
from conftest import LEADSCORE, copy_home
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error, response_schema_conformance

from flows import steps
from leadscore.paths import Home, read_latest
from models import registry
from serving.api import ScoringService, create_app

pytestmark = pytest.mark.slow

KEY = "test-key-123"


@pytest.fixture(scope="module")
def served(medium_champion, crm_medium, tmp_path_factory):
    """30,000 leads: ingest, features, train (champion; a copy of the session's home), score (saves the snapshot
    the API reads)."""
    cfg = copy_home(medium_champion[0], crm_medium, tmp_path_factory.mktemp("api"),
                    extra="\n[api]\nmax_batch = 500\nmax_body_bytes = 400000\nreload_seconds = 0.2\n")
    steps.score_step(cfg, "r1")
    return cfg


@pytest.fixture(scope="module")
def client(served):
    app = create_app(served, api_key=KEY, watch=False)
    with TestClient(app) as c:
        yield c


def _export_rows(cfg, ids):
    """The export's own rows for these leads, as a CRM would send them (all text)."""
    raw = pd.read_csv(cfg.data.leads.path, dtype=str, keep_default_na=False)
    raw = raw.set_index("Lead ID").loc[ids].reset_index()
    keep = ["Lead ID", "Created Date", "Campaign", "Lead Source", "Company", "Country", "Industry", "Employees",
            "Job Level", "Owner"]
    return raw[keep].to_dict("records")


def test_snapshot_features_equal_the_training_features(served):
    """Scoring (batch and API) builds features from the snapshot with numpy; training builds them in duckdb.
    For every lead of the export, both give the same values."""
    import numpy as np
    import pyarrow.parquet as pq

    from features.online import OnlineFeatures
    from features.store import load_feature_set

    home = Home(served.home)
    fs, _ = load_feature_set(home.features_file)
    want = fs.frame.to_pandas().set_index("lead_id")
    raw = pq.read_table(home.canonical / "leads.parquet").to_pandas()
    got = pd.DataFrame(OnlineFeatures.load(home.snapshot).build(raw, served, fs.features)).set_index("lead_id")
    want = want.loc[got.index]
    assert len(got) == len(want) == 30_000
    for f in fs.categorical:
        assert (got[f].astype("string").fillna("<NA>") == want[f].astype("string").fillna("<NA>")).all(), f
    for f in fs.numeric:
        np.testing.assert_allclose(got[f].to_numpy(float), want[f].to_numpy(float), rtol=1e-12, atol=1e-12,
                                   equal_nan=True, err_msg=f)


def test_api_and_batch_give_identical_scores(served, client):
    published = pd.read_parquet(read_latest(Home(served.home).scores) / "scores.parquet")
    # A mix: the best leads (with reasons) and a spread of the rest.
    sample = pd.concat([published.head(300), published.iloc[300::40].head(700)])
    leads = _export_rows(served, sample["lead_id"].tolist())
    got = []
    for start in range(0, len(leads), 500):
        r = client.post("/v1/score", json={"leads": leads[start:start + 500]}, headers={"X-API-Key": KEY})
        assert r.status_code == 200, r.text
        got += r.json()["results"]
    api = pd.DataFrame(got).set_index("lead_id")
    batch = sample.set_index("lead_id")
    # A known lead is scored from the snapshot (its events up to as_of), as the batch scored it.
    assert (api["probability"] == batch["probability"]).all() and (api["fit"] == batch["fit"]).all()
    assert (api["score"] == batch["score"]).all() and (api["tier"] == batch["tier"]).all()
    assert (api["reasons"].fillna("") == batch["reasons"].fillna("")).all()
    assert (api["fit_reasons"].fillna("") == batch["fit_reasons"].fillna("")).all()
    assert api["reasons"].notna().sum() >= 300


def test_a_new_lead_scores_at_age_0_as_the_batch_landmark_at_age_0(served, client):
    """Leads the snapshot does not know (new ids) are scored at their arrival. Sent with the attributes and
    created date of leads whose landmark row at age 0 the batch built (and no activity before arrival, which a
    new id cannot have), the API's probability is the model's on that batch row, with its campaign's factor."""
    import numpy as np

    from features.store import load_feature_set
    from serving.scorer import LeadScorer

    home = Home(served.home)
    lm, _ = load_feature_set(home.landmarks_file)
    rows = lm.frame.to_pandas().query("landmark_days == 0 and now_act_any_90d == 0")
    rows = rows[rows["now_days_since_last_activity"].isna()].iloc[::7].head(300)
    assert len(rows) >= 100
    model = LeadScorer.from_registry(home).model
    # the model of a win from now on, with the campaign outcome factors the registered model carries
    want = model.outcome_factors.apply(rows, model.now.probability(rows)).round(6)  # published to 6 places
    leads = [r | {"Lead ID": f"NEW-{r['Lead ID']}"} for r in _export_rows(served, rows["lead_id"].tolist())]
    r = client.post("/v1/score", json={"leads": leads}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    got = pd.DataFrame(r.json()["results"])
    assert got["lead_id"].tolist() == [f"NEW-{i}" for i in rows["lead_id"]]
    np.testing.assert_allclose(got["probability"].to_numpy(float), want, rtol=1e-9, atol=1e-12)
    assert not np.allclose(got["probability"].to_numpy(float), got["fit"].to_numpy(float))  # two models


def test_auth_limits_and_field_errors(served, client):
    lead = _export_rows(served, [pd.read_parquet(Home(served.home).features_file, columns=["lead_id"])["lead_id"].iloc[0]])[0]
    assert client.post("/v1/score", json={"leads": [lead]}).status_code == 401
    assert client.post("/v1/score", json={"leads": [lead]}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").json()["ready"]
    ok = client.post("/v1/score", json={"leads": [lead]}, headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and float(ok.headers["server-timing"].split("dur=")[1]) > 0
    model = client.get("/v1/model", headers={"X-API-Key": KEY}).json()
    assert model["version"] == ok.json()["model_version"] and "roc_auc" in model["metrics"] and model["features"]

    too_many = client.post("/v1/score", json={"leads": [lead] * 501}, headers={"X-API-Key": KEY})
    assert too_many.status_code == 422  # api.max_batch = 500
    big = client.post("/v1/score", content=b'{"leads": [' + b"{}," * 200_000 + b"{}]}",
                      headers={"X-API-Key": KEY, "content-type": "application/json"})
    assert big.status_code == 413
    chunked = client.post("/v1/score", content=iter([b'{"leads": [' + b"{}," * 100_000, b"{}" * 100_000 + b"]}"]),
                          headers={"X-API-Key": KEY, "content-type": "application/json"})
    assert chunked.status_code == 413  # no Content-Length: counted while read
    small = client.post("/v1/score", content=iter([b'{"leads": [', json.dumps(lead).encode(), b"]}"]),
                        headers={"X-API-Key": KEY, "content-type": "application/json"})
    assert small.status_code == 200, small.text

    bad = client.post("/v1/score", headers={"X-API-Key": KEY}, json={"leads": [
        {**lead, "Employees": "many"}, {**lead, "Lead ID": " "}, {**lead, "Country": {"name": "France"}},
        {**lead, "Created Date": "yesterday"}, {**lead, "Colour": "red"}]})
    assert bad.status_code == 422
    where = {(e["loc"][2], e["loc"][3]) for e in bad.json()["detail"]}
    assert where == {(0, "Employees"), (1, "Lead ID"), (2, "Country"), (3, "Created Date")}  # not the unmapped one
    assert "Traceback" not in bad.text


def test_a_whole_export_row_scores_and_its_unmapped_fields_are_named(served, client):
    """A webhook sends the full record: every column of the export, the unmapped ones (Status, Lead Score...)
    included, some of them JSON objects. It scores as the mapped fields alone score, and the response names
    what it ignored."""
    raw = pd.read_csv(served.data.leads.path, dtype=str, keep_default_na=False).head(20)
    mapped = _export_rows(served, raw["Lead ID"].tolist())
    unmapped = sorted(set(raw.columns) - set(mapped[0]))
    assert unmapped  # the generator's export carries columns the config leaves out
    full = [row | {"hs_analytics": {"visits": 3}} for row in raw.to_dict("records")]
    got = client.post("/v1/score", json={"leads": full}, headers={"X-API-Key": KEY})
    want = client.post("/v1/score", json={"leads": mapped}, headers={"X-API-Key": KEY})
    assert got.status_code == 200 and want.status_code == 200, got.text
    assert got.json()["ignored_fields"] == sorted([*unmapped, "hs_analytics"])
    assert want.json()["ignored_fields"] == []
    assert got.json()["results"] == want.json()["results"]


def test_a_crash_is_a_500_without_a_stack_trace(served):
    service = ScoringService(served)
    service.reload_if_changed()
    service.state.features.build = None  # the snapshot breaks: calling it fails inside the request
    with TestClient(create_app(served, service, api_key=None, watch=False), raise_server_exceptions=False) as c:
        r = c.post("/v1/score", json={"leads": [{"Lead ID": "X1"}]})
    assert r.status_code == 500 and r.json()["detail"] == "internal error"
    assert "Traceback" not in r.text and "NoneType" not in r.text


def test_no_request_from_the_schema_causes_a_server_error(served):
    """schemathesis generates requests from the app's OpenAPI schema (valid and invalid bodies) for every
    operation; none may get a 5xx, and every response must match the documented schema."""
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(served, api_key=None, watch=False))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/score", "/v1/model", "/healthz", "/readyz"}
    for operation in operations:
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        check()


def test_reload_under_load_loses_no_request(served, crm_medium, tmp_path):
    """Requests keep flowing while a new champion is promoted and then rolled back; every one succeeds and the
    served version follows the alias."""
    home = Home(served.home)
    first = registry.champion_version(home)
    steps.train_step(served, "r2")  # a second version; promote it by hand whatever the gate said
    second = str(int(first) + 1)
    lead = _export_rows(served, [pd.read_parquet(home.features_file, columns=["lead_id"])["lead_id"].iloc[5]])[0]
    app = create_app(served, api_key=KEY, watch=True)  # reload thread checks every 0.2 s
    seen, failures, stop = [], [], threading.Event()

    with TestClient(app) as c:
        def hammer():
            while not stop.is_set():
                r = c.post("/v1/score", json={"leads": [lead]}, headers={"X-API-Key": KEY})
                (seen if r.status_code == 200 else failures).append(r.json().get("model_version", r.status_code))

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        registry.promote(home, second, "reload test", "tester")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not seen or seen[-1] != second):
            time.sleep(0.1)
        registry.rollback(home, "reload test", "tester")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and seen[-1] != first:
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        for w in workers:
            w.join()
    assert not failures
    assert second in seen and seen[-1] == first and len(seen) > 50
    switched = [v for i, v in enumerate(seen) if i and v != seen[i - 1]]
    assert switched == [second, first] or set(switched) <= {first, second}


def test_serve_refuses_a_public_address_without_a_key(served):
    env = {k: v for k, v in os.environ.items() if k != "LEADSCORE_API_KEY"}
    done = subprocess.run([LEADSCORE, "serve", "--config", str(served.source_file),
                           "--host", "0.0.0.0", "--port", "8799"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "LEADSCORE_API_KEY" in done.stderr and "Traceback" not in done.stderr
