"""A synthetic CRM whose truth is known, written the way a CRM exports it, and as hard as a real one.

What it holds, because real exports hold it:

- a base rate that drifts (``DRIFT_PER_YEAR`` log-odds a year) with a season, and campaigns of very different
  quality, several of them started in the last months before the export;
- each lead's fit when it arrives: a known function of its attributes, its campaign, its engagement in the
  days before it was created, and the wins its account had before that moment. A lead buys at all with
  probability ``q``; a buyer wins after a lag drawn from a known distribution (most within the horizon, some
  much later), so the chance of a win within ``horizon_days`` of creation is ``q * P_IN``;
- most leads that never buy are never closed; a minority is closed lost, some long after arrival;
- engagement after arrival: routine nurture for everyone, fading with age; demo requests and calls in the weeks
  before a win (and, rarely, from leads that never buy); onboarding after a win;
- stage changes (qualified, proposal) on the way to a decision.

``truth.csv`` (never read by the pipeline; tests compare with it) holds each lead's fit (``true_probability``,
a win within the horizon of creation), ``buy_probability`` and its simulated future, even past the export date
(``won_at``, ``lost_at``), so a test can ask what an open lead did in the days after the export.
:func:`future_win_probability` is the reference a model of the fit and the lead's age alone can reach.

Everything is vectorized; the only loop is over weeks, because an account's earlier wins depend on the
outcomes of earlier leads. A win comes at least ``MIN_WIN_LAG_DAYS`` after its lead, so every win that can
precede a lead of week w belongs to a lead of an earlier week: the weekly loop is exact, not approximate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from leadscore.paths import atomic_write

START = np.datetime64("2024-07-01T00:00:00", "s")
END = np.datetime64("2026-06-30T00:00:00", "s")  # the export date: nothing later is in the files
HORIZON_DAYS = 90
MIN_WIN_LAG_DAYS = 7
DAY = 86_400
WEEK = 7 * DAY
NO_TIME = np.iinfo(np.int64).max  # an event that never happens

CHANNELS = np.array(["Webinar", "Paid Search", "Paid Social", "Email", "Trade Show", "Content Syndication",
                     "Partner Referral", "Organic"])
CHANNEL_EFFECT = np.array([0.55, 0.10, -0.35, -0.10, 0.35, -0.25, 0.70, 0.20])
CHANNEL_COST_PER_LEAD = np.array([60.0, 45.0, 25.0, 8.0, 180.0, 35.0, 90.0, 5.0])
SOURCE_OF_CHANNEL = np.array(["Webinar", "Google Ads", "LinkedIn", "Email", "Event", "Syndication",
                              "Partner", "Website"])
SOURCES = np.unique(SOURCE_OF_CHANNEL)

INDUSTRIES = np.array(["Software", "Financial Services", "Healthcare", "Manufacturing", "Retail",
                       "Education", "Government", "Logistics", "Media", "Energy"])
INDUSTRY_EFFECT = np.array([0.40, 0.25, 0.05, 0.10, -0.20, -0.45, -0.30, 0.0, -0.10, 0.15])
COUNTRIES = np.array(["United States", "United Kingdom", "Germany", "France", "India", "Canada",
                      "Australia", "Netherlands", "Brazil", "Japan"])
COUNTRY_WEIGHT = np.array([0.40, 0.12, 0.10, 0.08, 0.08, 0.06, 0.05, 0.04, 0.04, 0.03])
COUNTRY_EFFECT = np.array([0.10, 0.05, 0.05, 0.0, -0.30, 0.05, 0.0, 0.05, -0.25, -0.15])
JOB_LEVELS = np.array(["C-Level", "VP", "Director", "Manager", "Individual Contributor", "Student"])
JOB_WEIGHT = np.array([0.05, 0.08, 0.17, 0.30, 0.32, 0.08])
JOB_EFFECT = np.array([0.60, 0.50, 0.35, 0.10, -0.30, -1.20])
ACTIVITY_TYPES = np.array(["Web Visit", "Email Open", "Email Click", "Demo Request", "Call"])
WEB, OPEN, CLICK, DEMO, CALL = range(5)
NAME_A = np.array(["North", "Blue", "Bright", "Silver", "Iron", "Green", "Apex", "Summit", "Harbor", "Pioneer",
                   "Granite", "Crescent", "Vertex", "Maple", "Atlas", "Nova"])
NAME_B = np.array(["wind", "field", "stone", "bridge", "point", "gate", "line", "works", "dale", "brook"])
NAME_C = np.array(["Inc", "Ltd", "GmbH", "Group", "Labs", "Systems", "Partners", "Co"])
BASE_LOGIT = -3.4
DRIFT_PER_YEAR = -0.3  # the base rate's log-odds fall this much a year
SEASON = 0.15  # log-odds amplitude of a yearly season
P_IN = 0.85  # a buyer's chance to win within the horizon of creation; the rest win later
LAG_SHAPE, LAG_SCALE = 2.0, 12.0  # a buyer's lag within the horizon: MIN_WIN_LAG_DAYS + Gamma(shape, scale) days
LATE_LAG = (HORIZON_DAYS + 5.0, 400.0)  # the late buyers' lag, uniform (days)
LOST_SHARE, LOST_LAG = 0.25, (10.0, 450.0)  # leads that never buy and are closed lost, and when (uniform, days)
NURTURE_PER_ENGAGEMENT, NURTURE_DAYS = 4.5, 45.0  # routine activity after arrival, fading with age


@dataclass(frozen=True)
class GeneratedCRM:
    leads: pa.Table
    activities: pa.Table
    opportunities: pa.Table
    campaigns: pa.Table
    truth: pa.Table


def _seconds(ts: np.ndarray) -> np.ndarray:
    return ts.astype("datetime64[s]").astype(np.int64)


def generate_crm(n_leads: int = 100_000, seed: int = 7, drift_per_year: float = DRIFT_PER_YEAR,
                 season: float = SEASON, product_lines: bool = False) -> GeneratedCRM:
    """Build the CRM tables in memory. Deterministic for given arguments. ``drift_per_year`` and ``season``:
    how fast the base rate's log-odds move, and the amplitude of its yearly swing (tests build exports that
    drift far harder than the default). ``product_lines``: a "Product Line" column whose Enterprise leads (40 %)
    buy differently (job level and industry count the other way, size counts more), as a segment does."""
    if n_leads < 100:
        raise ValueError("n_leads must be at least 100")
    rng = np.random.default_rng(seed)
    start, end = _seconds(START), _seconds(END)
    span = end - start

    # Campaigns: a channel, a window, a quality of their own. Some start near the export date.
    n_campaigns = int(np.clip(n_leads // 2500, 12, 200))
    channel = rng.integers(0, len(CHANNELS), n_campaigns)
    camp_start = start + (rng.random(n_campaigns) * (span - 14 * DAY)).astype(np.int64)
    fresh = max(3, n_campaigns // 8)  # several campaigns started in the last months before the export
    camp_start[-fresh:] = end - rng.integers(20, 100, fresh) * DAY
    camp_end = np.minimum(camp_start + rng.integers(30, 240, n_campaigns) * DAY, end - 1)
    camp_effect = rng.normal(0.0, 0.6, n_campaigns)  # campaigns of very different quality
    camp_weight = rng.lognormal(0.0, 0.7, n_campaigns) * (camp_end - camp_start) / DAY
    campaign = rng.choice(n_campaigns, n_leads, p=camp_weight / camp_weight.sum())
    camp_names = np.char.add(np.char.add(CHANNELS[channel], " "), np.char.zfill(np.arange(1, n_campaigns + 1).astype(str), 3))

    # Arrival time inside the campaign window, with working hours more likely than nights.
    day_offset = (rng.random(n_leads) * ((camp_end - camp_start)[campaign] // DAY)).astype(np.int64)
    hour = np.where(rng.random(n_leads) < 0.8, np.clip(rng.normal(14, 3, n_leads), 0, 23.99), rng.random(n_leads) * 24)
    created = camp_start[campaign] // DAY * DAY + day_offset * DAY + (hour * 3600).astype(np.int64)
    created = np.clip(created, start, end - 1)
    order = np.argsort(created, kind="stable")
    created, campaign = created[order], campaign[order]

    # Accounts: a few large ones with many leads, a long tail of one-lead companies.
    n_accounts = max(10, n_leads // 3)
    acct_weight = 1.0 / np.arange(1, n_accounts + 1) ** 0.75
    account = rng.choice(n_accounts, n_leads, p=acct_weight / acct_weight.sum())
    acct_industry = rng.integers(0, len(INDUSTRIES), n_accounts)
    acct_country = rng.choice(len(COUNTRIES), n_accounts, p=COUNTRY_WEIGHT)
    acct_employees = np.clip(rng.lognormal(5.0, 1.6, n_accounts), 1, 250_000).astype(np.int64)
    acct_names = np.char.add(
        np.char.add(np.char.add(NAME_A[rng.integers(0, len(NAME_A), n_accounts)], NAME_B[rng.integers(0, len(NAME_B), n_accounts)]),
                    np.char.add(" ", np.char.zfill(np.arange(n_accounts).astype(str), 6))),
        np.char.add(" ", NAME_C[rng.integers(0, len(NAME_C), n_accounts)]),
    )

    job = rng.choice(len(JOB_LEVELS), n_leads, p=JOB_WEIGHT)
    source_idx = np.searchsorted(SOURCES, SOURCE_OF_CHANNEL[channel[campaign]])
    stray = rng.random(n_leads) < 0.15
    source_idx[stray] = rng.integers(0, len(SOURCES), stray.sum())
    industry = acct_industry[account]
    country = acct_country[account]
    employees = acct_employees[account].astype(np.float64)
    # A CRM export is never complete: some employee counts are blank.
    employees_missing = rng.random(n_leads) < 0.05

    # Engagement before creation: how much, and when (days before the lead was created).
    engagement = rng.gamma(0.8, 1.0, n_leads)
    lam = np.stack([1.6 * engagement, 1.2 * engagement, 0.45 * engagement, 0.05 * engagement], axis=1)
    counts = rng.poisson(lam)
    pre_lead = np.repeat(np.arange(n_leads), counts.sum(axis=1))
    pre_type = np.repeat(np.tile(np.arange(4), n_leads), counts.ravel())
    days_before = np.minimum(rng.exponential(25.0, len(pre_lead)), 180.0)
    pre_at = created[pre_lead] - (days_before * DAY).astype(np.int64) - 1
    n_by_window = {}
    for w in (30, 90):
        inside = days_before < w - 1e-9
        n_by_window[w] = np.zeros((n_leads, 4), np.int64)
        np.add.at(n_by_window[w], (pre_lead[inside], pre_type[inside]), 1)

    weekday = ((created // DAY) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    years = (created - start) / (365.25 * DAY)
    static_logit = (
        BASE_LOGIT
        + drift_per_year * years + season * np.sin(2 * np.pi * years)
        + CHANNEL_EFFECT[channel[campaign]] + camp_effect[campaign]
        + JOB_EFFECT[job] + INDUSTRY_EFFECT[industry] + COUNTRY_EFFECT[country]
        + 0.22 * np.log10(employees)
        - 0.30 * (weekday >= 5)
        + 0.28 * np.minimum(n_by_window[30][:, 0], 6)
        + 0.35 * np.minimum(n_by_window[30][:, 2], 3)
        + 0.05 * np.minimum(n_by_window[90][:, 1], 10)
        + 1.10 * (n_by_window[90][:, 3] > 0)
    )

    enterprise = None
    if product_lines:  # its own random stream: the rest of the export is the same as without product lines
        enterprise = np.random.default_rng([seed, 17]).random(n_leads) < 0.4
        static_logit = static_logit + enterprise * (-2.0 * JOB_EFFECT[job] - 2.0 * INDUSTRY_EFFECT[industry]
                                                    + 0.30 * np.log10(employees) - 0.40)

    # Outcomes, week by week, so that an account's earlier wins can raise a lead's chance.
    u_buy, u_in = rng.random(n_leads), rng.random(n_leads)
    lag_in = np.minimum(MIN_WIN_LAG_DAYS + rng.gamma(LAG_SHAPE, LAG_SCALE, n_leads), HORIZON_DAYS - 0.5)
    lag_late = rng.uniform(*LATE_LAG, n_leads)
    true_p = np.empty(n_leads)
    buy_p = np.empty(n_leads)
    account_wins = np.zeros(n_leads, np.int64)
    buys = np.zeros(n_leads, bool)
    won_at = np.full(n_leads, NO_TIME)
    win_keys = np.empty(0, np.int64)
    shift = np.int64(1) << 36
    base_t = start - 400 * DAY
    week = (created - start) // WEEK
    bounds = np.searchsorted(week, np.arange(week.max() + 2))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == hi:
            continue
        acct = account[lo:hi].astype(np.int64)
        earlier_wins = (np.searchsorted(win_keys, acct * shift + (created[lo:hi] - base_t), side="left")
                        - np.searchsorted(win_keys, acct * shift, side="left"))
        account_wins[lo:hi] = earlier_wins
        q = np.minimum(1.0 / (1.0 + np.exp(-(static_logit[lo:hi] + 0.45 * np.log1p(earlier_wins)))) / P_IN, 0.99)
        buy_p[lo:hi], true_p[lo:hi] = q, q * P_IN
        b = u_buy[lo:hi] < q
        buys[lo:hi] = b
        lag = np.where(u_in[lo:hi] < P_IN, lag_in[lo:hi], lag_late[lo:hi])
        won_at[lo:hi] = np.where(b, created[lo:hi] + (lag * DAY).astype(np.int64), NO_TIME)
        new_keys = acct[b] * shift + (won_at[lo:hi][b] - base_t)
        win_keys = np.sort(np.concatenate([win_keys, new_keys]))
    won = buys & (won_at < created + HORIZON_DAYS * DAY)  # the fit's label: a win within the horizon

    # Losses: only leads that never buy, and most of those are never closed at all.
    lost = ~buys & (rng.random(n_leads) < LOST_SHARE)
    lost_at = np.where(lost, created + (rng.uniform(*LOST_LAG, n_leads) * DAY).astype(np.int64), NO_TIME)

    # Stage changes on the way to a decision. Nothing after the export date is in the export.
    decided_at = np.where(buys, won_at, np.where(lost, lost_at, created + 120 * DAY))
    qualified = buys | (rng.random(n_leads) < 0.3)
    qualified_at = created + ((decided_at - created) * rng.uniform(0.15, 0.4, n_leads)).astype(np.int64)
    proposal = buys | (lost & (rng.random(n_leads) < 0.3))
    proposal_at = created + ((decided_at - created) * rng.uniform(0.5, 0.85, n_leads)).astype(np.int64)
    stage_lead = np.concatenate([np.flatnonzero(qualified), np.flatnonzero(proposal),
                                 np.flatnonzero(buys), np.flatnonzero(lost)])
    stage_name = np.concatenate([np.full(qualified.sum(), "Qualified"), np.full(proposal.sum(), "Proposal"),
                                 np.full(buys.sum(), "Closed Won"), np.full(lost.sum(), "Closed Lost")])
    stage_at = np.concatenate([qualified_at[qualified], proposal_at[proposal], won_at[buys], lost_at[lost]])
    amount = np.where(stage_name == "Closed Won",
                      np.round(rng.lognormal(9.0, 0.8, len(stage_lead)) * (1 + np.log10(employees[stage_lead])), -1),
                      np.nan)
    keep = stage_at < end
    stage_order = np.lexsort((stage_at[keep], stage_lead[keep]))
    stage_lead, stage_name, stage_at, amount = (a[keep][stage_order] for a in (stage_lead, stage_name, stage_at, amount))

    # Activity after arrival. Routine nurture for everyone, fading with age.
    nurture_lead = np.repeat(np.arange(n_leads), rng.poisson(NURTURE_PER_ENGAGEMENT * engagement + 0.5))
    nurture_at = created[nurture_lead] + (rng.exponential(NURTURE_DAYS, len(nurture_lead)) * DAY).astype(np.int64) + 1
    nurture_type = rng.choice([OPEN, WEB, CLICK], len(nurture_lead), p=[0.55, 0.35, 0.10])
    # Buyers ask for a demo and talk to sales in the weeks before they sign; a few who never buy do too.
    buyer = np.flatnonzero(buys)
    demo_lead = np.repeat(buyer, rng.poisson(1.4, len(buyer)))
    demo_at = won_at[demo_lead] - (rng.uniform(0.5, 21, len(demo_lead)) * DAY).astype(np.int64)
    call_lead = np.repeat(buyer, rng.poisson(2.0, len(buyer)))
    call_at = won_at[call_lead] - (rng.uniform(0.1, 14, len(call_lead)) * DAY).astype(np.int64)
    stray_demo = np.flatnonzero(~buys & (rng.random(n_leads) < 0.08))
    stray_call = np.flatnonzero(~buys & (rng.random(n_leads) < 0.15))
    stray_demo_at = created[stray_demo] + (rng.exponential(60, len(stray_demo)) * DAY).astype(np.int64) + 1
    stray_call_at = created[stray_call] + (rng.exponential(40, len(stray_call)) * DAY).astype(np.int64) + 1
    # Onboarding after a win.
    after_lead = np.repeat(buyer, rng.poisson(3.0, len(buyer)))
    after_at = won_at[after_lead] + (rng.uniform(0.1, 60, len(after_lead)) * DAY).astype(np.int64)
    after_type = rng.choice([OPEN, WEB], len(after_lead), p=[0.6, 0.4])
    act_lead = np.concatenate([pre_lead, nurture_lead, demo_lead, call_lead, stray_demo, stray_call, after_lead])
    act_type = np.concatenate([pre_type, nurture_type, np.full(len(demo_lead), DEMO), np.full(len(call_lead), CALL),
                               np.full(len(stray_demo), DEMO), np.full(len(stray_call), CALL), after_type])
    act_at = np.concatenate([pre_at, nurture_at, np.maximum(demo_at, created[demo_lead] + 1),
                             np.maximum(call_at, created[call_lead] + 1), stray_demo_at, stray_call_at, after_at])
    keep = act_at < end
    act_order = np.lexsort((act_at[keep], act_lead[keep]))
    act_lead, act_type, act_at = (a[keep][act_order] for a in (act_lead, act_type, act_at))

    # The CRM's current status: known only at export time, so it is a leaky column on purpose.
    ever_won = buys
    won_by_end = ever_won & (won_at < end)
    lost_by_end = lost & (lost_at < end)
    status = np.where(won_by_end, "Converted", np.where(lost_by_end, "Disqualified",
                      np.where(qualified & (qualified_at < end), "Working", "New")))

    lead_ids = np.char.add("L", np.char.zfill(np.arange(1, n_leads + 1).astype(str), 7))
    owners = np.char.add("Rep ", np.char.zfill((rng.integers(1, 26, n_leads)).astype(str), 2))
    employees_col = pa.array(employees.astype(np.int64), mask=employees_missing)

    leads = pa.table({
        "Lead ID": lead_ids,
        "Created Date": _timestamps(created),
        "Campaign": camp_names[campaign],
        "Lead Source": SOURCES[source_idx],
        "Company": acct_names[account],
        "Country": COUNTRIES[country],
        "Industry": INDUSTRIES[industry],
        "Employees": employees_col,
        "Job Level": JOB_LEVELS[job],
        "Owner": owners,
        "Lead Status": status,
        **({"Product Line": np.where(enterprise, "Enterprise", "Core")} if product_lines else {}),
    })
    activities = pa.table({
        "Lead ID": lead_ids[act_lead],
        "Activity Type": ACTIVITY_TYPES[act_type],
        "Activity Date": _timestamps(act_at),
    })
    opportunities = pa.table({
        "Lead ID": lead_ids[stage_lead],
        "Stage": stage_name,
        "Stage Date": _timestamps(stage_at),
        "Amount": pa.array(amount, mask=np.isnan(amount)),
    })
    leads_per_campaign = np.bincount(campaign, minlength=n_campaigns)
    cost = np.round(leads_per_campaign * CHANNEL_COST_PER_LEAD[channel] * rng.uniform(0.7, 1.4, n_campaigns), 2)
    campaigns = pa.table({
        "Campaign": camp_names,
        "Channel": CHANNELS[channel],
        "Start Date": _timestamps(camp_start),
        "Cost": cost,
    })
    truth = pa.table({
        "Lead ID": lead_ids,
        "true_probability": true_p,
        "won_within_horizon": won,
        "buy_probability": buy_p,
        "account_wins_before": account_wins,
        "won_at": _timestamps(won_at, won_at != NO_TIME),
        "lost_at": _timestamps(lost_at, lost_at != NO_TIME),
    })
    return GeneratedCRM(leads, activities, opportunities, campaigns, truth)


def _timestamps(seconds: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    mask = None if present is None else ~present
    return pa.array(np.where(mask, 0, seconds).astype("datetime64[s]") if mask is not None else
                    seconds.astype("datetime64[s]"), type=pa.timestamp("s"), mask=mask)


def _gamma2_cdf(y: np.ndarray) -> np.ndarray:
    """P(Gamma(2, LAG_SCALE) <= y)."""
    z = np.maximum(y, 0) / LAG_SCALE
    return 1 - np.exp(-z) * (1 + z)


def win_lag_cdf(days: np.ndarray) -> np.ndarray:
    """P(a buyer has won within ``days`` of arrival): the generator's own lag distribution."""
    days = np.asarray(days, np.float64)
    inside = np.where(days >= HORIZON_DAYS - 0.5, 1.0, _gamma2_cdf(days - MIN_WIN_LAG_DAYS))
    late = np.clip((days - LATE_LAG[0]) / (LATE_LAG[1] - LATE_LAG[0]), 0, 1)
    return P_IN * inside + (1 - P_IN) * late


def future_win_probability(buy_probability, age_days, horizon_days: float = HORIZON_DAYS) -> np.ndarray:
    """The chance that a lead still open at ``age_days`` wins within the next ``horizon_days``, from its fit and
    its age alone (what it does in the meantime unknown): the best a model of fit and age can do."""
    q = np.asarray(buy_probability, np.float64)
    a = np.asarray(age_days, np.float64)
    lost = LOST_SHARE * np.clip((a - LOST_LAG[0]) / (LOST_LAG[1] - LOST_LAG[0]), 0, 1)
    win_next = q * (win_lag_cdf(a + horizon_days) - win_lag_cdf(a))
    still_open = q * (1 - win_lag_cdf(a)) + (1 - q) * (1 - lost)
    return win_next / np.maximum(still_open, 1e-12)


FILES = {
    "leads": "leads.csv",
    "activities": "activities.csv",
    "opportunities": "opportunities.csv",
    "campaigns": "campaigns.csv",
    "truth": "truth.csv",
}


def write_crm(crm: GeneratedCRM, out: Path) -> dict[str, Path]:
    """Write the tables as CSV exports with naive UTC timestamps, as most CRMs do."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, filename in FILES.items():
        table: pa.Table = getattr(crm, name)
        columns = []
        for col in table.columns:
            if pa.types.is_timestamp(col.type):
                col = pc.strftime(col, format="%Y-%m-%d %H:%M:%S")
            columns.append(col)
        table = pa.table(columns, names=table.column_names)
        path = out / filename
        with atomic_write(path) as tmp:
            pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed"))
        written[name] = path
    return written


def demo_config_text(export_dir: Path, home: Path) -> str:
    """A config for the generated files: the demo goes through exactly the path a user's export takes."""
    return f'''# leadscore config for the synthetic CRM written by `leadscore generate`.
home = "{home.as_posix()}"

[data.leads]
path = "{(export_dir / FILES['leads']).as_posix()}"
id = "Lead ID"
created_at = "Created Date"
campaign = "Campaign"
source = "Lead Source"
account = "Company"
categorical = ["Country", "Industry", "Job Level"]
numeric = ["Employees"]
passthrough = ["Owner"]

[data.outcomes]
path = "{(export_dir / FILES['opportunities']).as_posix()}"
lead_id = "Lead ID"
stage = "Stage"
occurred_at = "Stage Date"
amount = "Amount"

[data.activities]
path = "{(export_dir / FILES['activities']).as_posix()}"
lead_id = "Lead ID"
type = "Activity Type"
occurred_at = "Activity Date"

[data.campaigns]
path = "{(export_dir / FILES['campaigns']).as_posix()}"
campaign = "Campaign"
cost = "Cost"
channel = "Channel"

[label]
won_stages = ["Closed Won"]
lost_stages = ["Closed Lost"]
other_stages = ["Qualified", "Proposal"]
horizon_days = {HORIZON_DAYS}

# Besides scores.csv, a file for each CRM's import tool (under crm/ in each published run).
[publish]
crm = ["salesforce", "hubspot", "dynamics"]

# Routing: queues in order, each with a daily capacity; the best leads fill the first matching queue,
# the overflow goes to the next one that matches, and the rest to the fallback queue.
[routing]
fallback = "nurture"

[[routing.queues]]
name = "sdr-europe"
capacity = 150
tiers = ["A", "B"]
where = {{ Country = ["United Kingdom", "Germany", "France"] }}

[[routing.queues]]
name = "sdr-americas"
capacity = 200
tiers = ["A", "B"]
where = {{ Country = ["United States", "Canada"] }}

[[routing.queues]]
name = "sdr-global"
capacity = 250
tiers = ["A", "B"]

# Synthetic data only: the true probabilities, compared with the model after training (never learned from).
[evaluation]
truth_path = "{(export_dir / FILES['truth']).as_posix()}"
'''
