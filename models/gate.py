"""The promotion gate: a new model becomes champion only if it is not worse than the one in service, and, against a
recent champion of the same code and recipe, only if it is better beyond noise."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class GateDecision:
    promote: bool
    kept: bool = False  # not promoted only because the recent champion stays in service for stable scores
    reasons: list[str] = field(default_factory=list)  # why it was refused, or why the champion was kept
    warnings: list[str] = field(default_factory=list)  # what a promoted first model falls short in
    beaten_by: list[str] = field(default_factory=list)  # baselines that rank a first model's test leads better


def decide(challenger: dict[str, float], champion_auc: float | None, auc_tolerance: float, max_ece: float,
           baseline_aucs: dict[str, float] | None = None, baseline_noise: dict[str, float] | None = None,
           keep_champion: str | None = None, champion_noise: float = 0.0,
           champion_ece: tuple[float, float] | None = None) -> GateDecision:
    """``challenger``: the new model's test metrics. ``champion_auc``: the champion's ROC AUC on the same test
    leads (None when there is no champion, or it cannot score the new feature set). Without a champion, the
    model must not rank worse than any baseline on the same test leads by more than noise: ``auc_tolerance``,
    or twice the standard error of the difference on these leads (``baseline_noise``) if that is larger.
    Refusing on noise would leave a new user with nothing scored; a gap beyond ``auc_tolerance`` but within
    noise is promoted with a warning.

    ``keep_champion`` (why the champion may stay: trained recently with the same recipe) with ``champion_noise``
    (the standard error of the two AUCs' difference): a model that passes is still not promoted unless it ranks
    the test leads better than the champion by more than twice that and than ``auc_tolerance``. Two refits on
    nearly the same rows differ by chance in a few leads' scores; sales ops should not see those leads change
    tier between runs.

    ``champion_ece``: (the new model's, the champion's) calibration error on those same test leads. A model over
    the calibration limit replaces a champion no better calibrated there, with a warning: else a champion
    promoted over the limit (a first model) could never be replaced."""
    reasons, warnings, beaten_by = [], [], []
    if champion_auc is None:
        for name, auc in (baseline_aucs or {}).items():
            noise = 2 * (baseline_noise or {}).get(name, 0.0)
            allowed = (f"twice the standard error of the difference on these test leads ({noise:.4f})"
                       if noise > auc_tolerance else f"gate.auc_tolerance = {auc_tolerance}")
            if challenger["roc_auc"] < auc - max(auc_tolerance, noise):
                beaten_by.append(name)
                reasons.append(f"ROC AUC {challenger['roc_auc']:.4f} is below the {name} baseline's {auc:.4f} by more "
                               f"than {allowed}")
            elif challenger["roc_auc"] < auc - auc_tolerance:  # said, so a promotion on noise is not read as a win
                warnings.append(f"ROC AUC {challenger['roc_auc']:.4f} is below the {name} baseline's {auc:.4f}, within "
                                f"{allowed}: too few test wins to tell them apart")
    # A perfectly calibrated model shows some ECE by chance on a finite test set; the limit allows for it, so a
    # small export is not refused for noise while a miscalibrated model still is. A first model is promoted
    # anyway, with a warning: a level shift in the newest leads no model could foresee should not leave a new
    # user with nothing scored, while a champion is never replaced by a model over the limit and calibrated worse
    # than it on the same test leads.
    noise = challenger.get("ece_noise", 0.0)
    if challenger["ece"] > max_ece + noise:
        no_worse = champion_ece is not None and champion_ece[0] <= champion_ece[1]
        (reasons if champion_auc is not None and not no_worse else warnings).append(
            f"calibration error {challenger['ece']:.4f} is above gate.max_ece = {max_ece} plus the {noise:.4f} a "
            "calibrated model would show by chance on these test leads"
            + (f"; on the test leads both models are measured on, its calibration error is {champion_ece[0]:.4f} "
               f"and the champion's {champion_ece[1]:.4f}" if champion_ece else "")
            + ("" if champion_auc is not None and not no_worse else
               ": its probabilities of the newest leads may be off until the next training run"))
    if champion_auc is not None and challenger["roc_auc"] < champion_auc - auc_tolerance:
        reasons.append(f"ROC AUC {challenger['roc_auc']:.4f} is below the champion's {champion_auc:.4f} on the same "
                       f"test leads by more than gate.auc_tolerance = {auc_tolerance}")
    if reasons:
        return GateDecision(promote=False, reasons=reasons + warnings, beaten_by=beaten_by)
    # Two near-copies have a tiny standard error of their difference: a gain must also pass the tolerance.
    margin = max(auc_tolerance, 2 * champion_noise)
    if keep_champion and champion_auc is not None and challenger["roc_auc"] <= champion_auc + margin:
        allowed = (f"twice the standard error of the difference ({margin:.4f})" if margin > auc_tolerance
                   else f"gate.auc_tolerance = {auc_tolerance}")
        return GateDecision(promote=False, kept=True, warnings=warnings, reasons=[
            f"the champion is kept for stable scores: ROC AUC {challenger['roc_auc']:.4f} against its "
            f"{champion_auc:.4f} on the same test leads is no gain beyond {allowed}, and the champion was "
            f"{keep_champion}"])
    return GateDecision(promote=True, warnings=warnings)


def recent_champion(tags: dict[str, str], registered_at: datetime, as_of: str, now: datetime, recipe: str, code: str,
                    keep_days: float) -> str | None:
    """How the champion was trained, if it may stay in service unless beaten beyond noise (``keep_champion`` of
    :func:`decide`): by the same code (``git_sha`` tag) with the same recipe, on data at most ``keep_days`` older
    than this run's (``as_of`` tags) and registered at most ``keep_days`` ago, which bounds a pinned
    ``data.as_of``. Else None: a champion tagged before recipes were, trained on newer data, or with
    ``keep_days`` 0."""
    if not keep_days or tags.get("recipe") != recipe or tags.get("git_sha") != code or not tags.get("as_of"):
        return None
    try:
        data_days = (datetime.fromisoformat(as_of) - datetime.fromisoformat(tags["as_of"])).total_seconds() / 86_400
    except (TypeError, ValueError):  # a date this run or the champion does not have
        return None
    age_days = (now - registered_at).total_seconds() / 86_400
    if not (0 <= data_days <= keep_days and age_days <= keep_days):
        return None
    return (f"trained by the same code with the same recipe on data {data_days:.2f} days older, {age_days:.2f} days "
            f"ago (both within gate.keep_champion_days = {keep_days:g})")
