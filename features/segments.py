"""Which segment (``[[segments]]`` in the config) each lead belongs to: the first whose filters it matches.

Filters compare a mapped lead column's values as text, the way routing's ``where`` does, so a segment means the
same rows in training, the batch scores and the real-time API.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.config import Config


def segment_of(columns, cfg: Config) -> np.ndarray:
    """Each lead's segment name, or None. ``columns``: canonical lead columns (a frame or a dict of arrays, as in
    the canonical leads table: roles by their role name, other columns as ``export:<name>``)."""
    lc = cfg.data.leads
    n = len(columns["lead_id"])
    out = np.full(n, None, dtype=object)
    free = np.ones(n, bool)
    for segment in cfg.segments:
        match = free.copy()
        for col, allowed in segment.where.items():
            values = pd.Series(np.asarray(columns[lc.internal_column(col)], dtype=object), dtype="string")
            match &= values.isin(allowed).fillna(False).to_numpy(dtype=bool)
        out[match], free[match] = segment.name, False
    return out


def members(leads: pd.DataFrame, cfg: Config) -> dict[str, np.ndarray]:
    """Segment name -> the lead ids in it (canonical ``leads``)."""
    segment = segment_of(leads, cfg)
    ids = leads["lead_id"].to_numpy()
    return {s.name: ids[segment == s.name] for s in cfg.segments}
