"""Campaign and source lead quality for marketers: expected closes long before deals close.

Attribution: a lead belongs to the campaign in its mapped ``campaign`` column (first touch, as exported).
Expected closes are the sum of calibrated probabilities; the 90 % interval uses the normal approximation
to the Poisson-binomial (sum of p, variance sum of p(1-p)). Actual closes count matured leads only.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from leadscore.htmlpage import page

Z90 = 1.6448536269514722

QUALITY_COLUMNS = [
    "leads", "matured_leads", "open_leads", "mean_probability", "expected_closes", "expected_closes_low",
    "expected_closes_high", "expected_closes_matured", "actual_closes", "tier_a_share", "cost", "cost_per_lead",
    "cost_per_expected_close",
]


def quality_table(scored: pd.DataFrame, by: str, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per value of ``by``. ``scored`` needs: by, probability, tier, mature, label, is_open."""
    df = scored.assign(
        _key=scored[by].astype("string").fillna("(none)"),
        _var=scored["probability"] * (1 - scored["probability"]),
        _mp=np.where(scored["mature"], scored["probability"], 0.0),
        _win=np.where(scored["mature"], scored["label"].fillna(0), 0),
        _a=(scored["tier"] == "A").astype(np.int64),
    )
    g = df.groupby("_key", sort=True)
    out = pd.DataFrame({
        "leads": g.size(),
        "matured_leads": g["mature"].sum().astype(np.int64),
        "open_leads": g["is_open"].sum().astype(np.int64),
        "mean_probability": g["probability"].mean(),
        "expected_closes": g["probability"].sum(),
        "_var": g["_var"].sum(),
        "expected_closes_matured": g["_mp"].sum(),
        "actual_closes": g["_win"].sum().astype(np.int64),
        "tier_a_share": g["_a"].mean(),
    })
    sd = np.sqrt(out.pop("_var"))
    out.insert(5, "expected_closes_low", np.maximum(out["expected_closes"] - Z90 * sd, 0.0))
    out.insert(6, "expected_closes_high", out["expected_closes"] + Z90 * sd)
    out.index.name = by
    if costs is not None and by == "campaign":
        cost = costs.groupby("campaign")["cost"].sum()
        out["cost"] = cost.reindex(out.index)
    else:
        out["cost"] = np.nan
    out["cost_per_lead"] = out["cost"] / out["leads"]
    out["cost_per_expected_close"] = out["cost"] / out["expected_closes"].where(out["expected_closes"] > 0)
    # A campaign with no matured leads has no actual rate yet: leave it empty rather than zero.
    out.loc[out["matured_leads"] == 0, "actual_closes"] = pd.NA
    out = out.sort_values(["cost_per_expected_close", "expected_closes"], ascending=[True, False], na_position="last")
    return out.reset_index()[[by, *QUALITY_COLUMNS]]


def render_html(campaigns: pd.DataFrame, sources: pd.DataFrame, title: str, subtitle: str) -> str:
    """A self-contained page (no network at view time): summary, a bar chart and both tables."""
    chart = _bar_chart(campaigns.dropna(subset=["cost_per_expected_close"]).head(20),
                       "campaign", "cost_per_expected_close", "Cost per expected close")
    body = f"""<h2>Cost per expected close (lower is better)</h2>
{chart}
<h2>Campaigns</h2>
{_table(campaigns)}
<h2>Sources</h2>
{_table(sources)}"""
    return page(title, subtitle, body, "table { width: 100%; } th { position: sticky; top: 0; }")


def _fmt(value, col: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "&ndash;"
    if col in ("mean_probability", "tier_a_share"):
        return f"{value:.1%}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v, c)}</td>" for c, v in zip(frame.columns, row)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _bar_chart(frame: pd.DataFrame, label: str, value: str, title: str) -> str:
    if frame.empty:
        return "<p>No campaign has both a cost and expected closes yet.</p>"
    width, bar, gap, left = 900, 18, 6, 220
    height = len(frame) * (bar + gap) + 10
    top = float(frame[value].max()) or 1.0
    parts = []
    for i, (name, v) in enumerate(zip(frame[label], frame[value])):
        y = i * (bar + gap) + 5
        w = (width - left - 90) * float(v) / top
        parts.append(
            f'<text x="{left - 8}" y="{y + bar * 0.7}" text-anchor="end">{html.escape(str(name))}</text>'
            f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="#3e7cb1"></rect>'
            f'<text x="{left + w + 6:.1f}" y="{y + bar * 0.7}">{v:,.0f}</text>'
        )
    return (f'<svg role="img" aria-label="{html.escape(title)}" width="100%" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')
