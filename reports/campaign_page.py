"""The campaign report page: summary, four kinds of chart (inline SVG) and the tables; nothing fetched at view time."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from leadscore.htmlpage import page

PALETTE = ["#1f6fb2", "#e07b39", "#7a9a3a", "#9b4f96", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d"]
TIER_COLORS = {"A": "#1f6fb2", "B": "#4f9bd9", "C": "#9cc7ec", "D": "#cbd2d9"}
SHOWN_COLUMNS = ["leads", "matured_leads", "open_leads", "mean_probability", "expected_closes", "expected_closes_low",
                 "expected_closes_high", "closes_so_far", "actual_closes", "expected_closes_matured", "tier_a_share",
                 "cost", "cost_per_lead", "cost_per_expected_close", "early_read", "early_wins",
                 "early_wins_expected", "outcome_factor", "weeks_until_outcomes"]


def _svg(name: str, w: int, h: int, parts: list[str], title: str) -> str:
    return (f'<figure><svg class="chart" data-chart="{name}" role="img" aria-label="{html.escape(title)}" '
            f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="{w / 2}" y="16" text-anchor="middle" class="t">{html.escape(title)}</text>{"".join(parts)}</svg></figure>')


def _empty(name: str, title: str, why: str) -> str:
    return _svg(name, 560, 80, [f'<text x="280" y="50" text-anchor="middle">{html.escape(why)}</text>'], title)


def cost_bars(campaigns: pd.DataFrame, top: int = 20) -> str:
    title = "Cost per expected close (lower is better)"
    d = campaigns.dropna(subset=["cost_per_expected_close"]).head(top)
    if d.empty:
        return _empty("cost", title, "No campaign has both a cost and expected closes yet.")
    w, bar, gap, left = 560, 16, 5, 190
    h = len(d) * (bar + gap) + 34
    hi = float(d["cost_per_expected_close"].max()) or 1.0
    parts = []
    for i, (name, v) in enumerate(zip(d["campaign"], d["cost_per_expected_close"])):
        y = 26 + i * (bar + gap)
        width = (w - left - 70) * float(v) / hi
        parts.append(f'<text x="{left - 6}" y="{y + bar * 0.75}" text-anchor="end">{html.escape(str(name)[:30])}</text>'
                     f'<rect class="mark" x="{left}" y="{y}" width="{width:.1f}" height="{bar}" fill="#1f6fb2"/>'
                     f'<text x="{left + width + 4:.1f}" y="{y + bar * 0.75}">{v:,.0f}</text>')
    return _svg("cost", w, h, parts, title)


def expected_vs_actual(campaigns: pd.DataFrame) -> str:
    title = "Matured leads: expected vs actual closes"
    d = campaigns[campaigns["matured_leads"] > 0].dropna(subset=["actual_closes"])
    if d.empty:
        return _empty("calibration", title, "No campaign has matured leads yet.")
    w, h, pad = 420, 340, 46
    hi = float(max(d["expected_closes_matured"].max(), d["actual_closes"].max(), 1.0)) * 1.05
    sx = lambda v: pad + (w - pad - 12) * v / hi  # noqa: E731
    sy = lambda v: h - pad - (h - pad - 26) * v / hi  # noqa: E731
    parts = [f'<rect x="{pad}" y="26" width="{w - pad - 12}" height="{h - pad - 26}" fill="none" stroke="#cbd2d9"/>',
             f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(hi)}" y2="{sy(hi)}" stroke="#9aa5b1" stroke-dasharray="4 3"/>',
             f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">expected closes (sum of probabilities)</text>',
             f'<text x="12" y="{h / 2}" text-anchor="middle" transform="rotate(-90 12 {h / 2})">actual closes</text>']
    for v in np.linspace(0, hi, 4)[:-1]:
        parts.append(f'<text x="{sx(v):.1f}" y="{h - pad + 14}" text-anchor="middle">{v:,.0f}</text>'
                     f'<text x="{pad - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for r in d.itertuples():
        parts.append(f'<circle class="mark" cx="{sx(r.expected_closes_matured):.1f}" cy="{sy(r.actual_closes):.1f}" '
                     f'r="4" fill="#1f6fb2" fill-opacity="0.75"><title>{html.escape(str(r.campaign))}: expected '
                     f'{r.expected_closes_matured:.1f}, actual {r.actual_closes:.0f}</title></circle>')
    return _svg("calibration", w, h, parts, title)


def tier_mix(campaigns: pd.DataFrame, top: int = 20) -> str:
    title = "Tier mix of each campaign's leads (largest campaigns)"
    d = campaigns.sort_values("leads", ascending=False).head(top)
    if d.empty:
        return _empty("tiers", title, "No leads.")
    w, bar, gap, left = 560, 16, 5, 190
    h = len(d) * (bar + gap) + 52
    span = w - left - 20
    parts = []
    for i, r in enumerate(d.itertuples()):
        y = 26 + i * (bar + gap)
        parts.append(f'<text x="{left - 6}" y="{y + bar * 0.75}" text-anchor="end">{html.escape(str(r.campaign)[:30])}</text>')
        x = float(left)
        for t in "ABCD":
            share = float(getattr(r, f"tier_{t.lower()}_share"))
            parts.append(f'<rect class="mark" x="{x:.1f}" y="{y}" width="{span * share:.1f}" height="{bar}" '
                         f'fill="{TIER_COLORS[t]}"><title>tier {t}: {share:.0%}</title></rect>')
            x += span * share
    y = 26 + len(d) * (bar + gap) + 12
    for j, t in enumerate("ABCD"):
        parts.append(f'<rect x="{left + j * 70}" y="{y - 10}" width="12" height="12" fill="{TIER_COLORS[t]}"/>'
                     f'<text x="{left + j * 70 + 16}" y="{y}">tier {t}</text>')
    return _svg("tiers", w, h, parts, title)


def trend_lines(trend: pd.DataFrame, by: str, value: str, title: str, name: str, top: int = 6) -> str:
    if trend.empty:
        return _empty(name, title, "No leads in the last weeks.")
    keep = trend.groupby(by)["leads"].sum().sort_values(ascending=False).head(top).index
    d = trend[trend[by].isin(keep)]
    weeks = np.sort(d["week"].unique())
    w, h, pad, legend = 560, 300, 46, 150
    hi = float(d[value].max()) * 1.1 or 1.0
    sx = lambda i: pad + (w - pad - legend) * (i / max(len(weeks) - 1, 1))  # noqa: E731
    sy = lambda v: h - pad - (h - pad - 26) * v / hi  # noqa: E731
    parts = [f'<rect x="{pad}" y="26" width="{w - pad - legend}" height="{h - pad - 26}" fill="none" stroke="#cbd2d9"/>',
             f'<text x="{pad + (w - pad - legend) / 2}" y="{h - 8}" text-anchor="middle">week of sign-up</text>']
    fmt = (lambda v: f"{v:.0%}") if value == "mean_probability" else (lambda v: f"{v:,.0f}")
    for v in np.linspace(0, hi, 4)[:-1]:
        parts.append(f'<text x="{pad - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
    for i in (0, len(weeks) - 1):
        parts.append(f'<text x="{sx(i):.1f}" y="{h - pad + 14}" text-anchor="middle">'
                     f'{pd.Timestamp(weeks[i]):%Y-%m-%d}</text>')
    index = {wk: i for i, wk in enumerate(weeks)}
    for k, (key, grp) in enumerate(d.groupby(by, sort=False)):
        color = PALETTE[k % len(PALETTE)]
        pts = " ".join(f"{sx(index[wk]):.1f},{sy(v):.1f}" for wk, v in zip(grp["week"], grp[value]))
        parts.append(f'<polyline class="mark" points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{w - legend + 8}" y="{36 + 14 * k}" fill="{color}">{html.escape(str(key)[:22])}</text>')
    return _svg(name, w, h, parts, title)


def _fmt(value, col: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "&ndash;"
    if col in ("mean_probability", "tier_a_share", "chance_any_win", "best_lead_probability"):
        return f"{value:.1%}"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if col == "outcome_factor":
        return f"{value:.2f}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, key: str, shown: list[str] = SHOWN_COLUMNS) -> str:
    cols = [key, *[c for c in shown if c in frame.columns]]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(v, c)}</td>" for c, v in zip(cols, row)) + "</tr>"
                   for row in frame[cols].itertuples(index=False))
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def render_report(campaigns: pd.DataFrame, sources: pd.DataFrame, campaign_trend: pd.DataFrame,
                  source_trend: pd.DataFrame, summary: list[str], title: str, subtitle: str, notes: str,
                  accounts: str = "") -> str:
    """``accounts``: the account section's HTML (see :func:`account_section`), or empty."""
    charts = [
        cost_bars(campaigns),
        expected_vs_actual(campaigns),
        tier_mix(campaigns),
        trend_lines(campaign_trend, "campaign", "leads", "Leads per week (largest campaigns)", "trend_leads"),
        trend_lines(campaign_trend, "campaign", "mean_probability", "Mean probability per week (largest campaigns)",
                    "trend_probability"),
        trend_lines(source_trend, "source", "mean_probability", "Mean probability per week, by source",
                    "trend_sources"),
    ]
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary) or "<li>Not enough data for a summary.</li>"
    body = f"""<h2>In short</h2><ul class="summary">{items}</ul>
<div class="charts">{"".join(charts)}</div>
<h2>Campaigns, best value first</h2>
{_table(campaigns, "campaign")}
<h2>Sources</h2>
{_table(sources, "source")}
{accounts}
<h2>How to read this</h2><p class="notes">{html.escape(notes)}</p>"""
    style = (".wide { overflow-x: auto; } table { min-width: 100%; } th { position: sticky; top: 0; } "
             "figure { margin: 0; } .summary li { margin: .3rem 0; } .notes { color: #52606d; max-width: 60rem; }")
    return page(title, subtitle, body, style)


ACCOUNT_COLUMNS = ["chance_any_win", "expected_wins", "open_leads", "best_lead_id", "best_lead_probability",
                   "best_lead_tier"]


def account_section(accounts: pd.DataFrame | None, top: int = 15) -> str:
    """The accounts most likely to buy now, from the last published scores (``reports.accounts``)."""
    if accounts is None:
        return ('<h2>Accounts</h2><p class="notes">No published scores yet: run <code>leadscore score</code> and the '
                "accounts most likely to buy appear here.</p>")
    if accounts.empty:
        return '<h2>Accounts</h2><p class="notes">No open lead belongs to an account.</p>'
    lead = (f"{len(accounts):,} accounts have open leads; the {min(top, len(accounts))} most likely to buy in the "
            "horizon (the chance that at least one of their open leads wins), from the last published scores. "
            "The whole ranking is in accounts.csv beside scores.csv.")
    return (f'<h2>Accounts most likely to buy</h2><p class="notes">{html.escape(lead)}</p>'
            + _table(accounts.head(top), "account", ACCOUNT_COLUMNS))
