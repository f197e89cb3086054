"""A time-telling group whose help is within noise follows the decision of the model in service; without one
(or for a group it never checked) the sign of the help decides."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import parse_config
from leadscore.contract import FeatureSet
from models.train import drop_time_groups

MONTH = {"name": "created_month", "source": {"type": "Calendar", "part": "month"}}


@pytest.fixture(scope="module")
def rows():
    """Wins that depend on ``x`` alone; the month of sign-up is noise."""
    rng = np.random.default_rng(8)
    parts, y, w = {}, {}, {}
    for name, n in (("train", 4000), ("valid", 1500)):
        x = rng.normal(0, 1, n)
        parts[name] = pd.DataFrame({"lead_id": [f"{name}{i}" for i in range(n)], "x": x,
                                    "created_month": rng.choice([f"{m:02d}" for m in range(1, 13)], n)})
        y[name] = (rng.random(n) < 1 / (1 + np.exp(1.5 - x))).astype(int)
        w[name] = np.ones(n)
    fs = FeatureSet(frame=None, categorical=["created_month"], numeric=["x"], definitions=[MONTH])
    cfg = parse_config('[data.leads]\npath = "l.csv"\nid = "id"\ncreated_at = "c"\n[data.outcomes]\npath = "o.csv"\n'
                       'lead_id = "id"\nstage = "s"\noccurred_at = "t"\n[label]\nwon_stages = ["Won"]\n'
                       "[train]\nnum_threads = 1\n", Path("leadscore.toml"))
    return parts, y, w, fs, cfg


@pytest.mark.parametrize("before, dropped, followed", [
    ({"month of sign-up": True}, False, True),
    ({"month of sign-up": False}, True, True),
    ({}, None, False),  # never checked by the model in service: the sign decides
    (None, None, False),  # a first model: the sign decides
])
def test_a_group_within_noise_follows_the_model_in_service(rows, before, dropped, followed):
    out = drop_time_groups(*rows, kept_before=before)
    group = out["groups"]["month of sign-up"]
    gain = group["valid_log_loss_without"] - group["valid_log_loss_with"]
    assert abs(gain) <= 2 * group["standard_error"]  # noise, as built
    assert group["as_in_service"] is followed
    assert group["dropped"] is (dropped if followed else bool(gain <= 0))
    assert ("created_month" in out["features"]) is group["dropped"]
