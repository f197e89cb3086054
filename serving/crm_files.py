"""Write-back files: the published scores in the layout each CRM's own import tool reads.

Each file has one row per published lead, keyed by the lead id of the export (which is the CRM's record id
when the export came from that CRM). Probabilities are percentages (0-100, two decimals), the form both
Salesforce's Percent fields and a HubSpot number property show as they are. The files go through the
spreadsheet-safe CSV writer like every other published CSV.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.config import Config

FILES = {"salesforce": "salesforce_leads.csv", "hubspot": "hubspot_contacts.csv",
         "dynamics": "dynamics_predictivescores.csv"}

# msdyn_predictivescore's choice labels, which the Dynamics import wizard matches.
DYNAMICS_GRADES = {"A": "Grade A", "B": "Grade B", "C": "Grade C", "D": "Grade D"}
DYNAMICS_TRENDS = {"rising": "Improving", "steady": "Steady", "falling": "Declining", "new": "Not enough info"}


def crm_frames(published: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """{file name under crm/: frame} for each CRM in ``publish.crm``."""
    out = {}
    for crm in cfg.publish.crm:
        out[FILES[crm]] = _LAYOUTS[crm](published, getattr(cfg.publish, crm))
    return out


def _percent(published: pd.DataFrame) -> np.ndarray:
    return (published["probability"].to_numpy(np.float64) * 100).round(2)


def crm_reasons(reasons: pd.Series) -> pd.Series:
    """Reasons as a CRM field shows them: each factor's + or - as an arrow. A cell starting with + or - is a
    formula to a spreadsheet and would be written with a leading apostrophe, which the CRM would then keep."""
    text = reasons.fillna("").astype(str)
    return text.str.replace(r"(^|; )\+ ", r"\1▲ ", regex=True).str.replace(r"(^|; )- ", r"\1▼ ", regex=True)


def _reasons(published: pd.DataFrame) -> pd.Series:
    return crm_reasons(published["reasons"]) if "reasons" in published else pd.Series("", index=published.index)


def _salesforce(published: pd.DataFrame, f) -> pd.DataFrame:
    return pd.DataFrame({f.id: published["lead_id"], f.score: published["score"], f.tier: published["tier"],
                         f.probability: _percent(published), f.reasons: _reasons(published),
                         f.model: published["model_version"]})


def _hubspot(published: pd.DataFrame, f) -> pd.DataFrame:
    return pd.DataFrame({f.id: published["lead_id"], f.score: published["score"], f.tier: published["tier"],
                         f.probability: _percent(published), f.reasons: _reasons(published)})


def _dynamics(published: pd.DataFrame, f) -> pd.DataFrame:
    trend = published["trend"] if "trend" in published else pd.Series("new", index=published.index)
    scored_on = pd.to_datetime(published["scored_at"], utc=True).dt.strftime("%Y-%m-%d")
    return pd.DataFrame({f.id: published["lead_id"], f.entity_type: "lead",
                         f.name: "leadscore model " + published["model_version"].astype(str),
                         f.score: published["score"], f.grade: published["tier"].map(DYNAMICS_GRADES),
                         f.trend: trend.map(DYNAMICS_TRENDS), f.reasons: _reasons(published),
                         f.scored_on: scored_on})


_LAYOUTS = {"salesforce": _salesforce, "hubspot": _hubspot, "dynamics": _dynamics}
