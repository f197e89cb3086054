"""The campaign report of one run: the tables, the page and its summary, from every lead's score."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from leadscore.config import Config
from reports.campaign_page import account_section, render_report
from reports.campaign_quality import quality_table, summary_lines, weekly_trend


@dataclass
class CampaignReport:
    campaigns: pd.DataFrame
    sources: pd.DataFrame
    trend: pd.DataFrame  # dimension, name, week, leads, mean_probability
    page: str
    summary: list[str]


def campaign_report(scores: pd.DataFrame, costs: pd.DataFrame | None, previous: pd.DataFrame | None,
                    previous_label: str | None, cfg: Config, as_of: pd.Timestamp, model_version: str,
                    accounts: pd.DataFrame | None = None) -> CampaignReport:
    """``scores``: every lead with campaign, source, probability, tier, created_at, mature, label, is_open.
    ``previous``: the last report's campaign table, for what changed since. ``accounts``: the last published
    account ranking (``reports.accounts``); the section is left out when the export maps no account."""
    horizon = cfg.label.horizon_days
    campaigns = quality_table(scores, "campaign", costs, as_of, horizon)
    sources = quality_table(scores, "source", None, as_of, horizon)
    campaign_trend = weekly_trend(scores, "campaign", as_of)
    source_trend = weekly_trend(scores, "source", as_of)
    summary = summary_lines(campaigns, previous, previous_label)
    unmapped = [role for role in ("campaign", "source") if not getattr(cfg.data.leads, role)]
    if unmapped:  # one "(none)" row is not a comparison; say why
        keys = ", ".join(f"data.leads.{role}" for role in unmapped)
        summary.insert(0, f"No {' or '.join(unmapped)} column is mapped ({keys}): every lead counts under "
                          "\"(none)\"; map one to compare them.")
    notes = (f"Attribution: {cfg.report.attribution.replace('_', ' ')} (a lead belongs to the campaign in its "
             f"{cfg.data.leads.campaign or 'campaign'!r} column). Expected closes are the wins known so far plus, for "
             f"each undecided lead younger than the horizon ({horizon} days), its chance of a win in what is left of it: "
             "the lead model's calibrated probability at arrival, times the campaign's outcome factor. The factor "
             "compares the campaign's early wins with what its young leads should have brought by now (a lead open "
             "20 days has had the share of its chance that wins within 20 days of arrival have among matured leads), "
             "shrunk toward the lead model by how much campaigns really differ. The 90% interval covers the outcomes "
             "still to come and the uncertainty in that factor (normal approximation). Matured leads (created at least "
             f"{horizon} days before {as_of:%Y-%m-%d}) count their actual outcome; the scatter compares those with the "
             "model's expected closes for the same leads. The early read compares campaigns whose leads are mostly "
             "still open with as many average leads: flagged when the difference is larger than its uncertainty "
             "(90%). Cost per expected close uses the campaign's total cost from the campaigns table.")
    page = render_report(campaigns, sources, campaign_trend, source_trend, summary, "Campaign lead quality",
                         f"{len(scores):,} leads as of {as_of:%Y-%m-%d}, model version {model_version}.", notes,
                         account_section(accounts) if cfg.data.leads.account else "")
    trend = pd.concat([campaign_trend.rename(columns={"campaign": "name"}).assign(dimension="campaign"),
                       source_trend.rename(columns={"source": "name"}).assign(dimension="source")])
    return CampaignReport(campaigns, sources, trend[["dimension", "name", "week", "leads", "mean_probability"]],
                          page, summary)
