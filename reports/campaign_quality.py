"""Campaign and source lead quality for marketers: expected closes long before the deals close.

Attribution: a lead belongs to the campaign in its mapped ``campaign`` column, which CRMs export as the first
touch; ``report.attribution`` names the rule so that others (last touch, split credit) can be added beside it.

Expected closes of a group = the wins already known + the chance that each of its other undecided leads still wins
within its horizon. That chance starts from the lead model's calibrated probability at arrival and is corrected
by the group's own early outcomes (:func:`outcome_factors`): a lead that has been open 20 days has had F(20) of its
chance, F the close-lag distribution of the matured wins, so a group whose young leads won less often than their
exposure implies is marked down, shrunk toward the lead model by how much groups really differ (empirical Bayes).
Matured leads count their actual outcome: the model's scores of old leads are fitted, their outcomes are known.
The 90 % interval covers the chance in the undecided leads' outcomes and the uncertainty in the group's factor.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from models.early_outcomes import NEW_GROUP_MATURED_SHARE, exposure, outcome_factors

Z90 = 1.6448536269514722
EXACT_UP_TO = 2000
EARLY_READ_MATURED_SHARE = NEW_GROUP_MATURED_SHARE  # a campaign is "early" while fewer than half its leads have matured

# The CSV contract (spreadsheets depend on these names and their order).
QUALITY_COLUMNS = [
    "leads", "matured_leads", "open_leads", "mean_probability", "expected_closes", "expected_closes_low",
    "expected_closes_high", "expected_closes_matured", "actual_closes", "actual_within_interval",
    "tier_a_share", "tier_b_share", "tier_c_share", "tier_d_share", "cost", "cost_per_lead",
    "cost_per_expected_close", "matured_share", "early_read", "early_read_z", "weeks_until_outcomes",
    "closes_so_far", "early_wins", "early_wins_expected", "outcome_factor",
]


def poisson_binomial_interval(p: np.ndarray, level: float = 0.90) -> tuple[float, float]:
    """Central interval of the number of wins among leads with probabilities ``p``.

    Exact (the distribution from its characteristic function, inverted by FFT) for small groups; the normal
    approximation for large ones, where it is accurate and the exact one costs n^2."""
    p = np.asarray(p, np.float64)
    n = len(p)
    if n == 0:
        return 0.0, 0.0
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    if n > EXACT_UP_TO:
        mean, sd = p.sum(), math.sqrt(float(np.sum(p * (1 - p))))
        return max(mean - Z90 * sd, 0.0), min(mean + Z90 * sd, float(n))
    # Counts beyond mean + 12 sd carry less than 1e-30 of the mass, so a transform of that many points (not n + 1)
    # is exact to rounding: what lies beyond would fold onto the low counts. 10x less work for a large campaign.
    mean, sd = p.sum(), math.sqrt(float(np.sum(p * (1 - p))))
    k = min(n + 1, int(mean + 12 * sd) + 30)
    omega = 2 * np.pi * np.arange(k) / k
    # log of prod_j (1 - p_j + p_j e^{i w}), summed in logs for stability
    terms = np.log((1 - p)[None, :] + p[None, :] * np.exp(1j * omega)[:, None])
    pmf = np.clip(np.fft.fft(np.exp(terms.sum(axis=1))).real / k, 0, None)
    cdf = np.cumsum(pmf / pmf.sum())
    return float(np.searchsorted(cdf, lo_q)), float(np.searchsorted(cdf, hi_q))


def quality_table(scored: pd.DataFrame, by: str, costs: pd.DataFrame | None, as_of: pd.Timestamp,
                  horizon_days: int) -> pd.DataFrame:
    """One row per value of ``by``, ranked by cost per expected close (then expected closes).

    ``scored`` needs: by, probability (at arrival), tier, mature, label (1 for a win known so far), is_open,
    created_at, and won_at for the close-lag distribution (without it, a straight line)."""
    key = scored[by].astype("string").fillna("(none)").to_numpy()
    p = scored["probability"].to_numpy(np.float64)
    mature = scored["mature"].to_numpy(bool)
    won = (scored["label"].to_numpy(np.float64) == 1).astype(np.float64)
    exposed = exposure(scored, as_of, horizon_days)
    factors = outcome_factors(key, p, exposed, won, mature)
    factor = factors["factor"].reindex(key).to_numpy()
    adjusted = np.minimum(p * factor, 0.999)
    undecided = ~mature & (won == 0)
    # the chance of a win in what is left of the horizon, given none so far
    rest = np.where(undecided, adjusted * (1 - exposed) / (1 - adjusted * exposed), 0.0)
    slope = np.where(undecided & (p * factor < 0.999), p * (1 - exposed) / (1 - adjusted * exposed) ** 2, 0.0)
    df = pd.DataFrame({
        "key": key, "p": p, "mature": mature, "open": scored["is_open"].to_numpy(bool),
        "mp": np.where(mature, p, 0.0), "win": np.where(mature, won, 0.0), "known": won,
        "expected": won + rest, "rest_var": rest * (1 - rest), "slope": slope, "undecided": undecided,
        "created_at": scored["created_at"] if "created_at" in scored else pd.NaT,
        **{f"t{t}": (scored["tier"] == t).to_numpy(np.float64) for t in "ABCD"},
    })
    g = df.groupby("key", sort=True)
    out = pd.DataFrame({
        "leads": g.size(),
        "matured_leads": g["mature"].sum().astype(np.int64),
        "open_leads": g["open"].sum().astype(np.int64),
        "mean_probability": g["p"].mean(),
        "expected_closes": g["expected"].sum(),
        "expected_closes_matured": g["mp"].sum(),
        "actual_closes": g["win"].sum(),
        **{f"tier_{t.lower()}_share": g[f"t{t}"].mean() for t in "ABCD"},
        "closes_so_far": g["known"].sum(),
        "early_wins": factors["W"],
        "early_wins_expected": factors["E"],
        "outcome_factor": factors["factor"],
        "last_created_at": g["created_at"].max(),
    })
    sd = np.sqrt(g["rest_var"].sum() + g["slope"].sum() ** 2 * factors["factor_var"])
    out["expected_closes_low"] = np.maximum(out["expected_closes"] - Z90 * sd, out["closes_so_far"])
    out["expected_closes_high"] = np.minimum(out["expected_closes"] + Z90 * sd,
                                             out["closes_so_far"] + g["undecided"].sum())
    # Expected vs actual on matured leads: did they close about as often as the model said?
    matured_bounds = {k: poisson_binomial_interval(grp.to_numpy()) for k, grp in df[df["mature"]].groupby("key")["p"]}
    low = pd.Series({k: b[0] for k, b in matured_bounds.items()}, dtype=float).reindex(out.index)
    high = pd.Series({k: b[1] for k, b in matured_bounds.items()}, dtype=float).reindex(out.index)
    out["actual_within_interval"] = ((out["actual_closes"] >= low) & (out["actual_closes"] <= high)).where(
        out["matured_leads"] > 0)
    out.loc[out["matured_leads"] == 0, "actual_closes"] = np.nan  # no actual rate yet, not zero
    out.index.name = by

    if costs is not None and by == "campaign" and len(costs):
        out["cost"] = costs.groupby("campaign")["cost"].sum().reindex(out.index)
    else:
        out["cost"] = np.nan
    out["cost_per_lead"] = out["cost"] / out["leads"]
    out["cost_per_expected_close"] = out["cost"] / out["expected_closes"].where(out["expected_closes"] > 0)

    average = out["expected_closes"].sum() / max(len(p), 1)
    _early_read(out, sd, average, as_of, horizon_days)
    out = out.sort_values(["cost_per_expected_close", "expected_closes"], ascending=[True, False], na_position="last")
    return out.reset_index()[[by, *QUALITY_COLUMNS]]


def _early_read(out: pd.DataFrame, sd: pd.Series, average: float, as_of: pd.Timestamp, horizon_days: int) -> None:
    """For groups whose leads are mostly immature: are their expected closes different from what as many average
    leads would bring, by more than their own uncertainty explains? |z| > 1.645 is flagged (90 %)."""
    out["matured_share"] = out["matured_leads"] / out["leads"]
    expected_if_average = out["leads"] * average
    # the group's own spread, and at least the binomial spread of as many average leads
    spread = np.sqrt(np.maximum(sd ** 2, out["leads"] * average * (1 - average))).replace(0, np.nan)
    z = (out["expected_closes"] - expected_if_average) / spread
    early = out["matured_share"] < EARLY_READ_MATURED_SHARE
    verdict = np.where(z > Z90, "better than average", np.where(z < -Z90, "worse than average", "no clear difference yet"))
    out["early_read"] = pd.Series(verdict, index=out.index).where(early)
    out["early_read_z"] = z.round(2).where(early)
    last = pd.to_datetime(out.pop("last_created_at"), utc=True)
    days_left = (last + pd.Timedelta(days=horizon_days) - as_of).dt.total_seconds() / 86400
    out["weeks_until_outcomes"] = np.ceil(days_left.clip(lower=0) / 7).astype("Int64")


def weekly_trend(scored: pd.DataFrame, by: str, as_of: pd.Timestamp, weeks: int = 26) -> pd.DataFrame:
    """Leads and mean probability per week (Monday start, UTC) and per value of ``by``, for the last ``weeks``."""
    created = pd.to_datetime(scored["created_at"], utc=True)
    since = as_of - pd.Timedelta(weeks=weeks)
    keep = (created > since).to_numpy()
    week = created[keep].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time
    df = pd.DataFrame({by: scored.loc[keep, by].astype("string").fillna("(none)").to_numpy(), "week": week.to_numpy(),
                       "p": scored.loc[keep, "probability"].to_numpy()})
    t = df.groupby([by, "week"]).agg(leads=("p", "size"), mean_probability=("p", "mean")).reset_index()
    return t.sort_values([by, "week"]).reset_index(drop=True)


def summary_lines(campaigns: pd.DataFrame, previous: pd.DataFrame | None, previous_label: str | None) -> list[str]:
    """A few plain sentences for the top of the report."""
    lines = []
    costed = campaigns.dropna(subset=["cost_per_expected_close"])
    costed = costed[costed["expected_closes"] >= 1]
    if len(costed) >= 2:
        best, worst = costed.iloc[0], costed.iloc[-1]
        lines.append(f"Best value: {best['campaign']}, {_money(best['cost_per_expected_close'])} per expected close "
                     f"({best['expected_closes']:.1f} expected closes from {best['leads']:,} leads).")
        lines.append(f"Worst value: {worst['campaign']}, {_money(worst['cost_per_expected_close'])} per expected close "
                     f"({worst['expected_closes']:.1f} expected closes from {worst['leads']:,} leads).")
    early = campaigns[campaigns["early_read"].notna()]
    if len(early):
        flagged = early[early["early_read"] != "no clear difference yet"]
        weeks = int(early["weeks_until_outcomes"].max())
        text = (f"Early read on {len(early)} campaign(s) whose leads are mostly still open (up to {weeks} weeks of "
                "outcomes missing)")
        if len(flagged):
            text += ": " + "; ".join(f"{r.campaign} looks {r.early_read} ({r.expected_closes / r.leads:.0%} of its leads "
                                     f"expected to close; {r.early_wins:.0f} early wins where its leads' profiles and "
                                     f"time open gave {r.early_wins_expected:.1f})"
                                     for r in flagged.head(5).itertuples()) + "."
        else:
            text += ": none differs clearly from the average yet."
        lines.append(text)
    checked = campaigns.dropna(subset=["actual_within_interval"])
    if len(checked):
        if list(checked["campaign"]) == ["(none)"]:  # no campaign mapped: one group of every lead
            r = checked.iloc[0]
            found = (f"{r['actual_closes']:,.0f} closes against {r['expected_closes_matured']:,.1f} expected, "
                     f"{'inside' if r['actual_within_interval'] else 'outside'} its 90% interval")
        else:
            outside = checked[~checked["actual_within_interval"].astype(bool)]
            said = "; ".join(f"{r.campaign}: {r.actual_closes:,.0f} closes against {r.expected_closes_matured:,.1f} "
                             "expected" for r in outside.head(3).itertuples()) + ("; ..." if len(outside) > 3 else "")
            found = (f"actual closes fell inside the 90% interval of expected closes for {len(checked) - len(outside)} "
                     f"of {len(checked)} campaigns" + (f" (outside it: {said})" if len(outside) else ""))
        lines.append(f"Expected vs actual: on matured leads, {found}. The model in service learned from these "
                     "outcomes, so this shows how well it fits them; its out-of-sample calibration is in the "
                     "training run's evaluation report.")
    if previous is not None and previous_label:
        lines.append(_changes(campaigns, previous, previous_label))
    return lines


def _changes(now: pd.DataFrame, before: pd.DataFrame, label: str) -> str:
    new = sorted(set(now["campaign"].astype(str)) - set(before["campaign"].astype(str)))
    both = now.merge(before, on="campaign", suffixes=("", "_before"))
    parts = []
    if new:
        parts.append(f"new campaigns: {', '.join(new[:5])}{' ...' if len(new) > 5 else ''}")
    if len(both):
        both["move"] = both["mean_probability"] - both["mean_probability_before"]
        top = both.loc[both["move"].abs().idxmax()]
        if abs(top["move"]) >= 0.005:
            parts.append(f"biggest change in predicted quality: {top['campaign']} "
                         f"{top['mean_probability_before']:.1%} -> {top['mean_probability']:.1%}")
        added = int((both["leads"] - both["leads_before"]).clip(lower=0).sum())
        parts.append(f"{added:,} new leads in campaigns already reported")
    return f"Since the previous report ({label}): " + ("; ".join(parts) if parts else "no change") + "."


def _money(value: float) -> str:
    return f"{value:,.0f}"
