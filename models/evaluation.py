"""The evaluation report a person reads first: one self-contained HTML page with inline SVG charts.

Everything is computed on the test leads (the newest mature leads, never seen in training or calibration); the
model of a win from now on on its own test rows (the newest landmarks whose horizon has passed), weighted by
what each sampled row stands for.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.htmlpage import page
from models.train import candidates_line

COLORS = {"model": "#1f6fb2", "logistic": "#e07b39", "naive_bayes": "#7a9a3a", "probability": "#1f6fb2",
          "fit": "#e07b39"}
MAX_POINTS = 200


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= MAX_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, MAX_POINTS).astype(int))
    return x[keep], y[keep]


def curves(y: np.ndarray, p: np.ndarray, bins: int = 10,
           weight: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROC, precision-recall, cumulative gain and reliability (bins of equal weight) of one set of probabilities.
    ``weight``: what each row stands for (None: one each)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    w = np.ones(len(p)) if weight is None else np.asarray(weight, np.float64)
    fpr, tpr, _ = roc_curve(y, p, sample_weight=weight)
    precision, recall, _ = precision_recall_curve(y, p, sample_weight=weight)
    order = np.argsort(-p, kind="stable")
    gain_x = np.cumsum(w[order]) / w.sum()
    gain_y = np.cumsum((y * w)[order]) / max((y * w).sum(), 1e-12)
    up = np.argsort(p, kind="stable")
    cut = np.searchsorted(np.cumsum(w[up]) / w.sum(), np.arange(1, bins) / bins)
    groups = [g for g in np.split(up, cut) if len(g)]
    rel_x = np.array([np.average(p[g], weights=w[g]) for g in groups])
    rel_y = np.array([np.average(y[g], weights=w[g]) for g in groups])
    return {"roc": _thin(fpr, tpr), "pr": _thin(recall[::-1], precision[::-1]), "gain": _thin(gain_x, gain_y),
            "reliability": (rel_x, rel_y)}


def _line_chart(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str, ylabel: str,
                diagonal: bool = False, markers: bool = False) -> str:
    w, h, pad = 360, 300, 42
    sx = lambda v: pad + v * (w - pad - 10)  # noqa: E731
    sy = lambda v: h - pad - v * (h - pad - 24)  # noqa: E731
    parts = [f'<text x="{w / 2}" y="16" text-anchor="middle" class="t">{html.escape(title)}</text>',
             f'<rect x="{pad}" y="24" width="{w - pad - 10}" height="{h - pad - 24}" fill="none" stroke="#cbd2d9"/>',
             f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">{html.escape(xlabel)}</text>',
             f'<text x="12" y="{h / 2}" text-anchor="middle" transform="rotate(-90 12 {h / 2})">{html.escape(ylabel)}</text>']
    for v in (0, 0.5, 1):
        parts.append(f'<text x="{sx(v)}" y="{h - pad + 14}" text-anchor="middle">{v:g}</text>')
        parts.append(f'<text x="{pad - 4}" y="{sy(v) + 4}" text-anchor="end">{v:g}</text>')
    if diagonal:
        parts.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#9aa5b1" stroke-dasharray="4 3"/>')
    for i, (name, (x, y)) in enumerate(series.items()):
        color = COLORS.get(name, "#52606d")
        pts = " ".join(f"{sx(float(a)):.1f},{sy(float(b)):.1f}" for a, b in zip(x, y))
        parts.append(f'<polyline class="curve" points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        if markers:
            parts += [f'<circle cx="{sx(float(a)):.1f}" cy="{sy(float(b)):.1f}" r="3" fill="{color}"/>' for a, b in zip(x, y)]
        parts.append(f'<text x="{w - 14}" y="{sy(0) - 8 - 14 * i}" text-anchor="end" fill="{color}">{html.escape(name)}</text>')
    return f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def _bars(labels: list[str], values: list[float], title: str) -> str:
    w, bar, gap, left = 560, 16, 5, 260
    h = len(labels) * (bar + gap) + 30
    top = max(values) if values and max(values) > 0 else 1.0
    parts = [f'<text x="{w / 2}" y="16" text-anchor="middle" class="t">{html.escape(title)}</text>']
    for i, (name, v) in enumerate(zip(labels, values)):
        y = 26 + i * (bar + gap)
        parts.append(f'<text x="{left - 6}" y="{y + bar * 0.75}" text-anchor="end">{html.escape(name[:40])}</text>'
                     f'<rect class="bar" x="{left}" y="{y}" width="{(w - left - 60) * v / top:.1f}" height="{bar}" fill="#1f6fb2"/>'
                     f'<text x="{left + (w - left - 60) * v / top + 4:.1f}" y="{y + bar * 0.75}">{v:.1%}</text>')
    return f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def _score_histogram(p: np.ndarray, tiers: np.ndarray, title: str) -> str:
    """Test leads per score band (5 points wide), each bar coloured by the tier of its leads."""
    w, h, pad = 560, 300, 42
    edges = np.linspace(0, 1, 21)
    band = np.clip(np.digitize(p, edges) - 1, 0, 19)
    tier_colors = {"A": "#1f6fb2", "B": "#4f9bd9", "C": "#9cc7ec", "D": "#cbd2d9"}
    counts = {t: np.bincount(band[tiers == t], minlength=20) for t in tier_colors}
    top = max(int(sum(c for c in counts.values()).max()), 1)
    bw = (w - pad - 10) / 20
    parts = [f'<text x="{w / 2}" y="16" text-anchor="middle" class="t">{html.escape(title)}</text>',
             f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">score (probability in %)</text>',
             f'<text x="12" y="{h / 2}" text-anchor="middle" transform="rotate(-90 12 {h / 2})">test leads</text>',
             f'<text x="{pad - 4}" y="28" text-anchor="end">{top:,}</text>']
    base = np.zeros(20)
    for t, color in tier_colors.items():
        for i in np.flatnonzero(counts[t]):
            height = (h - pad - 24) * counts[t][i] / top
            y = h - pad - (h - pad - 24) * base[i] / top - height
            parts.append(f'<rect class="bar" x="{pad + i * bw + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" '
                         f'height="{height:.1f}" fill="{color}"/>')
        base += counts[t]
    for v in (0, 25, 50, 75, 100):
        parts.append(f'<text x="{pad + v / 100 * (w - pad - 10):.1f}" y="{h - pad + 14}" text-anchor="middle">{v}</text>')
    for i, (t, color) in enumerate(tier_colors.items()):
        parts.append(f'<text x="{w - 14}" y="{40 + 14 * i}" text-anchor="end" fill="{color if t != "D" else "#7b8794"}">'
                     f'tier {t}: {int(counts[t].sum()):,}</text>')
    return f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def evaluation_charts(y: np.ndarray, probabilities: dict[str, np.ndarray], tiers: np.ndarray,
                      importance: pd.Series) -> dict[str, str]:
    """Each chart as a standalone SVG, keyed by a file stem; the page shows them all."""
    c = {name: curves(y, p) for name, p in probabilities.items()}
    share = importance / importance.sum() if importance.sum() > 0 else importance
    top = share.sort_values(ascending=False).head(20)
    return {
        "reliability": _line_chart({n: v["reliability"] for n, v in c.items()}, "Reliability (10 equal-size bins)",
                                   "mean predicted probability", "observed win rate", diagonal=True, markers=True),
        "roc": _line_chart({n: v["roc"] for n, v in c.items()}, "ROC curve", "false positive rate",
                           "true positive rate", diagonal=True),
        "precision_recall": _line_chart({n: v["pr"] for n, v in c.items()}, "Precision-recall", "recall", "precision"),
        "cumulative_gain": _line_chart({n: v["gain"] for n, v in c.items()}, "Cumulative gain",
                                       "share of leads called (best first)", "share of wins found", diagonal=True),
        "score_distribution": _score_histogram(probabilities["model"], tiers, "Model scores on the test leads, by tier"),
        "feature_importance": _bars(list(top.index), list(top.to_numpy()), "Feature importance (share of the total)"),
    }


def now_section(now, horizon_days: int, landmarks_days: tuple[int, ...] = ()) -> tuple[str, dict[str, str]]:
    """The published ``probability`` (a win in the next ``horizon_days`` from a moment) on the newest landmark
    rows, beside the fit (the chance at arrival) on the same rows; its charts by name."""
    tf = now.test_frame
    y, w = tf["label"].to_numpy(), tf["weight"].to_numpy(np.float64)
    probabilities = {"probability": tf["probability"].to_numpy(), "fit": tf["fit"].to_numpy()}
    c = {name: curves(y, p, weight=w) for name, p in probabilities.items()}
    charts = {
        "now_reliability": _line_chart({n: v["reliability"] for n, v in c.items()},
                                       "From now on: reliability (10 bins of equal weight)",
                                       "mean predicted probability", f"won in the next {horizon_days} days",
                                       diagonal=True, markers=True),
        "now_cumulative_gain": _line_chart({n: v["gain"] for n, v in c.items()}, "From now on: cumulative gain",
                                           "share of open leads called (best first)", "share of wins found",
                                           diagonal=True),
    }
    names = ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "calibration_in_the_large", "lift_top_decile"]
    head = "".join(f"<th>{m}</th>" for m in names)
    rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{m.get(k, float('nan')):.4f}</td>" for k in names)
                   + "</tr>" for n, m in (("probability", now.metrics), ("fit", now.baselines.get("fit", {}))))
    by_age = (tf.assign(yw=y * w, pw=probabilities["probability"] * w, fw=probabilities["fit"] * w)
              .groupby("landmark_days")[["weight", "yw", "pw", "fw"]].sum())
    # A landmark row's age was drawn in the span since the landmark before it (features.build.landmark_spans).
    configured = sorted(set(landmarks_days) | {int(a) for a in by_age.index})
    before = {a: configured[i - 1] if i else 0 for i, a in enumerate(configured)}
    spans = [f"{before[int(a)]}-{int(a)}" if a else "0 (arrival)" for a in by_age.index]
    ages = "".join(f"<tr><td>{span}</td><td>{r.weight:,.0f}</td><td>{r.yw / r.weight:.2%}</td>"
                   f"<td>{r.pw / r.weight:.2%}</td><td>{r.fw / r.weight:.2%}</td></tr>"
                   for span, (_, r) in zip(spans, by_age.iterrows()))
    body = f"""<h2>The published probability: a win in the next {horizon_days} days from now on</h2>
<p>{len(tf):,} test rows: leads still open at the age drawn for a landmark, the newest landmarks whose
{horizon_days} days have passed (from {tf['at'].min():%Y-%m-%d} to {tf['at'].max():%Y-%m-%d}), each weighted by
the open leads its sample stands for. <em>fit</em> is the chance at arrival on the same rows, as the evaluated fit model gives it.</p>
<table><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>
<div class="charts">{"".join(charts.values())}</div>
<h2>By age of the lead at the landmark</h2>
<table><thead><tr><th>age span (days)</th><th>open leads (weighted)</th><th>won in the next {horizon_days} days</th>
<th>mean probability</th><th>mean fit</th></tr></thead><tbody>{ages}</tbody></table>"""
    return body, charts


def render_evaluation(title: str, subtitle: str, comparison: dict[str, dict[str, float]], y: np.ndarray,
                      charts: dict[str, str], tiers: np.ndarray, single_feature: pd.DataFrame,
                      extra: str = "") -> str:
    """The page: metrics table, the charts of ``evaluation_charts``, win rate by tier, strongest single features."""
    tier_table = (pd.DataFrame({"tier": tiers, "win": y}).groupby("tier")["win"].agg(["size", "mean"])
                  .rename(columns={"size": "test leads", "mean": "win rate"}))
    metric_names = ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "tier_a_win_share"]
    head = "".join(f"<th>{m}</th>" for m in metric_names)
    rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{m.get(k, float('nan')):.4f}</td>" for k in metric_names)
                   + "</tr>" for n, m in comparison.items())
    tiers_html = "".join(f"<tr><td>{t}</td><td>{int(r['test leads']):,}</td><td>{r['win rate']:.1%}</td></tr>"
                         for t, r in tier_table.iterrows())
    singles = "".join(f"<tr><td>{html.escape(str(r.feature))}</td><td>{r.auc:.3f}</td></tr>"
                      for r in single_feature.head(5).itertuples())
    body = f"""<h2>Model and baselines on the same test leads</h2>
<table><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>
<div class="charts">{"".join(charts.values())}</div>
<h2>Tiers on the test leads</h2>
<table><thead><tr><th>tier</th><th>test leads</th><th>win rate</th></tr></thead><tbody>{tiers_html}</tbody></table>
<h2>Strongest single features (ROC AUC on the training leads)</h2>
<table><thead><tr><th>feature</th><th>ROC AUC</th></tr></thead><tbody>{singles}</tbody></table>{extra}"""
    return page(title, subtitle, body)


COMPARED = (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("log_loss", "log loss"), ("brier", "Brier"),
            ("ece", "ECE"), ("lift_top_decile", "lift@10%"), ("tier_a_win_share", "wins in A"))


def comparison_table(rows: dict[str, dict[str, float]]) -> str:
    """A short fixed-width table: one line per model, the metrics a reader compares."""
    head = f"{'':<12}" + "".join(f"{label:>11}" for _, label in COMPARED)
    lines = [head] + [f"{name:<12}" + "".join(f"{m.get(key, float('nan')):>11.4f}" for key, _ in COMPARED)
                      for name, m in rows.items()]
    return "\n".join(lines)


def evaluation_report(result, fs, horizon_days: int,
                      landmarks_days: tuple[int, ...] = ()) -> tuple[str, dict[str, str]]:
    """The evaluation page of a training run and each of its charts as a standalone SVG (name -> svg)."""
    evaluated = result.model.evaluated or result.model  # the model the page evaluates
    if evaluated.booster is not None:
        importance = pd.Series(evaluated.booster.feature_importance("gain"), index=evaluated.booster.feature_name())
    else:  # a simple model: the mean size of each feature's log-odds on the test leads
        ids = pa.array(result.test_frame["lead_id"].to_numpy(dtype=object), pa.string())
        rows = fs.frame.filter(pc.is_in(fs.frame["lead_id"], value_set=ids)).to_pandas()
        importance = pd.Series(np.abs(evaluated.linear.contributions(rows)).mean(axis=0), index=evaluated.features)
    importance.index = [fs.labels.get(f, f) for f in importance.index]
    single = result.single_feature.assign(feature=[fs.labels.get(f, f) for f in result.single_feature["feature"]])
    tf = result.test_frame
    if fs.mode == "snapshot":
        what = f"{len(tf):,} test leads (random stratified split of a snapshot export); outcome: the label column."
    else:
        what = (f"{len(tf):,} test leads, the newest mature ones (created {tf['created_at'].min():%Y-%m-%d} to "
                f"{tf['created_at'].max():%Y-%m-%d}); outcome: a win within {horizon_days} days.")
    if "candidates_valid_log_loss" in result.params:
        line = candidates_line(result)
        what += f" {line[:1].upper()}{line[1:]}."
    y, tiers = tf["label"].to_numpy(), tf["tier"].to_numpy()
    charts = evaluation_charts(y, {"model": tf["probability"].to_numpy(), **result.baseline_probability}, tiers,
                               importance)
    extra, now_charts = now_section(result.now, horizon_days, landmarks_days) if result.now is not None else ("", {})
    page_html = render_evaluation("Lead-quality model: evaluation", what, {"model": result.metrics, **result.baselines},
                                  y, charts, tiers, single, extra)
    return page_html, {**charts, **now_charts}
