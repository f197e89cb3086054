"""A new model against the champion in service, on leads neither has seen."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger("leadscore")

MIN_COMPARED = 300  # fewer unseen test leads than this make an AUC comparison mostly noise


class Comparison(NamedTuple):
    """The champion and the new model on the same test leads."""

    champion_auc: float
    auc: float
    auc_difference_se: float  # standard error of auc - champion_auc
    ece: float
    champion_ece: float


def compare_with_champion(champion, champion_version: str, frame: pa.Table, test_frame: pd.DataFrame
                          ) -> Comparison | None:
    """The champion and the new model on the same test leads, ones the champion was not fitted on; or
    None (too few such leads, or it cannot score this feature set): the new model is then judged against the
    baselines.

    The registered champion was refit on every lead mature at its time, so it would have seen these test leads
    and had more recent history than the new evaluated model. The fair comparison is between the two evaluated
    models (same recipe shape: fitted without their validation and test leads), on leads neither has seen."""
    from sklearn.metrics import roc_auc_score

    from models.metrics import auc_difference_se, expected_calibration_error

    seen_until = None  # a model registered before refitting existed was fitted on its train slice only
    if getattr(champion, "evaluated", None) is not None:
        champion, seen_until = champion.evaluated, champion.evaluated_through
    if seen_until is not None:
        test_frame = test_frame[test_frame["created_at"] > seen_until]
        if len(test_frame) < MIN_COMPARED or test_frame["label"].nunique() < 2:
            log.info("train: only %d test leads are newer than what champion version %s was fitted on; the new model "
                     "is judged against the baselines", len(test_frame), champion_version)
            return None
    # Only the test leads, filtered in Arrow: converting the whole frame again would double the step's work.
    test_ids = pa.array(test_frame["lead_id"].to_numpy(dtype=object), pa.string())
    rows = frame.filter(pc.is_in(frame["lead_id"], value_set=test_ids)).to_pandas()
    rows = rows.set_index("lead_id").loc[test_frame["lead_id"]].reset_index()
    if any(c not in rows.columns for c in champion.features):
        log.warning("train: champion version %s needs features this run does not build; not compared", champion_version)
        return None
    y = test_frame["label"].to_numpy()
    old, new = np.asarray(champion.probability(rows)), test_frame["probability"].to_numpy(np.float64)
    return Comparison(float(roc_auc_score(y, old)), float(roc_auc_score(y, new)), auc_difference_se(y, new, old),
                      expected_calibration_error(y, new), expected_calibration_error(y, old))
