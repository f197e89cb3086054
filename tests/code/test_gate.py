"""The promotion gate's rules and the calibration noise it allows for."""

import numpy as np
import pytest

from models.gate import decide


def test_gate_rules():
    good = {"roc_auc": 0.80, "ece": 0.01}
    assert decide(good, None, 0.005, 0.03).promote
    assert decide(good, None, 0.005, 0.03, {"logistic": 0.79, "naive_bayes": 0.7}).promote
    first_but_worse = decide(good, None, 0.005, 0.03, {"logistic": 0.82})
    assert not first_but_worse.promote and "below the logistic baseline's 0.8200" in first_but_worse.reasons[0]
    # A first model within noise of the best baseline is promoted: refusing it would leave nothing scored.
    assert decide(good, None, 0.005, 0.03, {"logistic": 0.804}).promote
    # Against a champion, the baselines do not matter any more.
    assert decide(good, 0.80, 0.005, 0.03, {"logistic": 0.82}).promote
    assert decide(good, 0.804, 0.005, 0.03).promote
    refused = decide(good, 0.81, 0.005, 0.03)
    assert not refused.promote and "below the champion's 0.8100" in refused.reasons[0]
    assert "gate.max_ece" in decide({"roc_auc": 0.9, "ece": 0.05}, 0.9, 0.005, 0.03).reasons[0]
    # The calibration limit allows for the ECE a calibrated model shows by chance on that many test leads.
    assert decide({"roc_auc": 0.9, "ece": 0.04, "ece_noise": 0.015}, 0.9, 0.005, 0.03).promote
    assert not decide({"roc_auc": 0.9, "ece": 0.05, "ece_noise": 0.015}, 0.9, 0.005, 0.03).promote
    # A first model is promoted despite its calibration, and says so; refused for its ranking, both are said.
    first = decide({"roc_auc": 0.9, "ece": 0.05}, None, 0.005, 0.03)
    assert first.promote and not first.reasons and "gate.max_ece" in first.warnings[0]
    both = decide({"roc_auc": 0.8, "ece": 0.05}, None, 0.005, 0.03, {"logistic": 0.9})
    assert not both.promote and len(both.reasons) == 2 and not both.warnings
    # Against a champion, a model over the limit is refused only if calibrated worse than it on the same leads: a
    # first model promoted over the limit can be replaced by one no worse.
    over = {"roc_auc": 0.9, "ece": 0.05}
    worse = decide(over, 0.9, 0.005, 0.03, champion_ece=(0.05, 0.04))
    assert not worse.promote and "the champion's 0.0400" in worse.reasons[0]
    no_worse = decide(over, 0.9, 0.005, 0.03, champion_ece=(0.05, 0.05))
    assert no_worse.promote and "gate.max_ece" in no_worse.warnings[0]
    # ...and then the keep rule still applies to it.
    kept = decide(over, 0.9, 0.005, 0.03, keep_champion="recent", champion_ece=(0.05, 0.05))
    assert kept.kept and not kept.promote


def test_ece_noise_floor_matches_simulation():
    from models.metrics import ece_noise_floor, expected_calibration_error

    rng = np.random.default_rng(0)
    for n in (600, 5000):
        p = rng.beta(1.5, 6, n)
        simulated = np.mean([expected_calibration_error((rng.random(n) < p).astype(int), p) for _ in range(300)])
        assert ece_noise_floor(p) == pytest.approx(simulated, rel=0.1)
    # A miscalibrated model's ECE stands well above the floor.
    p = rng.beta(1.5, 6, 5000)
    y = (rng.random(5000) < np.clip(p * 1.5, 0, 1)).astype(int)
    assert expected_calibration_error(y, p) > 4 * ece_noise_floor(p)


def test_a_first_model_is_refused_only_for_a_gap_larger_than_noise():
    # 0.02 below the baseline: refused with the configured tolerance alone, promoted when the difference's standard
    # error on the test leads is 0.015 (twice that is 0.03), refused again when the error is small.
    good = {"roc_auc": 0.80, "ece": 0.01}
    within = decide(good, None, 0.005, 0.03, {"logistic": 0.82}, {"logistic": 0.015})
    # Promoted, and the run says it ranks below the baseline within noise, so it is not read as a win.
    assert within.promote and within.warnings == [
        "ROC AUC 0.8000 is below the logistic baseline's 0.8200, within twice the standard error of the difference "
        "on these test leads (0.0300): too few test wins to tell them apart"]
    assert not decide(good, None, 0.005, 0.03, {"logistic": 0.804}, {"logistic": 0.015}).warnings
    refused = decide(good, None, 0.005, 0.03, {"logistic": 0.82}, {"logistic": 0.002})
    assert not refused.promote and "gate.auc_tolerance = 0.005" in refused.reasons[0]
    noisy = decide(good, None, 0.005, 0.03, {"logistic": 0.85}, {"logistic": 0.015})
    assert not noisy.promote and "twice the standard error" in noisy.reasons[0]


def test_auc_difference_standard_error_matches_the_bootstrap():
    from sklearn.metrics import roc_auc_score

    from models.metrics import auc_difference_se

    rng = np.random.default_rng(3)
    n = 2000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(2 - x))).astype(int)
    a, b = x + rng.normal(size=n) * 0.8, x + rng.normal(size=n) * 0.8
    draws = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        draws.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    assert auc_difference_se(y, a, b) == pytest.approx(np.std(draws), rel=0.15)
    assert auc_difference_se(y, a, a) == pytest.approx(0.0, abs=1e-12)


def test_a_recent_champion_of_the_same_recipe_is_kept_unless_beaten_beyond_noise():
    good = {"roc_auc": 0.80, "ece": 0.01}
    recent = "trained with the same recipe on data 0.04 days older"
    kept = decide(good, 0.79, 0.005, 0.03, keep_champion=recent, champion_noise=0.006)
    assert not kept.promote and kept.kept and recent in kept.reasons[0]
    assert "no gain beyond twice the standard error of the difference (0.0120)" in kept.reasons[0]
    beaten = decide(good, 0.78, 0.005, 0.03, keep_champion=recent, champion_noise=0.006)
    assert beaten.promote and not beaten.kept
    # Near-copies differ with a tiny standard error: their gain must also pass the tolerance.
    near = decide(good, 0.7990, 0.005, 0.03, keep_champion=recent, champion_noise=0.0002)
    assert near.kept and "no gain beyond gate.auc_tolerance = 0.005" in near.reasons[0]
    assert decide(good, 0.7940, 0.005, 0.03, keep_champion=recent, champion_noise=0.0002).promote
    # An old champion, or one of another recipe (no reason given), is replaced by any model that passes.
    assert decide(good, 0.79, 0.005, 0.03, champion_noise=0.006).promote
    # A worse model is refused, not kept: the reason is its ranking.
    refused = decide(good, 0.82, 0.005, 0.03, keep_champion=recent, champion_noise=0.006)
    assert not refused.promote and not refused.kept and "below the champion" in refused.reasons[0]


def test_a_champion_is_recent_only_by_the_same_code_and_recipe_within_the_window():
    from datetime import datetime, timedelta, timezone

    from models.gate import recent_champion

    now = datetime(2026, 6, 30, 12, tzinfo=timezone.utc)
    tags = {"recipe": "r1", "git_sha": "abc", "as_of": "2026-06-28T00:00:00+00:00"}

    def recent(as_of="2026-06-30T00:00:00+00:00", registered=now - timedelta(days=1), keep=5.0, **changed):
        return recent_champion({**tags, **changed}, registered, as_of, now, "r1", "abc", keep)

    assert "on data 2.00 days older, 1.00 days ago" in recent()
    assert recent(as_of="2026-07-03T00:00:00+00:00") is not None  # five days of data
    assert recent(as_of="2026-07-03T00:00:01+00:00") is None
    assert recent(as_of="2026-06-27T00:00:00+00:00") is None  # the champion saw newer data
    assert recent(registered=now - timedelta(days=6)) is None  # a pinned data.as_of still ages out
    assert recent(keep=0) is None
    assert recent(recipe="r2") is None and recent(git_sha="def") is None
    assert recent_champion({"git_sha": "abc"}, now, "2026-06-30T00:00:00+00:00", now, "r1", "abc", 5) is None
    assert recent(as_of=None) is None and recent(as_of="None") is None


def test_the_recipe_leaves_out_paths_dates_threads_and_memory(tmp_path):
    from datetime import datetime, timezone
    from pathlib import Path

    from conftest import make_config

    cfg = make_config(tmp_path / "export", tmp_path / "home")
    elsewhere = {name: getattr(cfg.data, name).model_copy(update={"path": Path(f"/x/{name}.csv")})
                 for name in ("leads", "outcomes")}
    moved = cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"as_of": datetime(2026, 1, 1, tzinfo=timezone.utc), **elsewhere}),
        "train": cfg.train.model_copy(update={"num_threads": 2}),
        "features": cfg.features.model_copy(update={"memory_limit": "8GB"})})
    assert moved.recipe_digest() == cfg.recipe_digest() and moved.digest() != cfg.digest()
    for section, change in (("train", {"learning_rate": 0.05}), ("scoring", {"tier_shares": (0.2, 0.2, 0.3)}),
                            ("label", {"horizon_days": 60}), ("features", {"allow_leaky": ("x",)})):
        other = cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=change)})
        assert other.recipe_digest() != cfg.recipe_digest(), section
