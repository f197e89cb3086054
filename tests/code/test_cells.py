"""The cell rules: the grammar of numbers and dates, and the same reading whichever engine matches the patterns
(Python's re for the few fields of an API request, Arrow's RE2 for a column)."""

from datetime import datetime

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore import cells

LO, HI = cells.us_of(datetime(1990, 1, 1)), cells.us_of(datetime(2027, 1, 1))


def test_numbers_follow_the_grammar():
    x, problem = cells.number(["1,200", "3,5", "12,345.6", "inf", "1e400", "NaN", "", " 5 ", ".5", "1,2,3", None])
    assert x.to_pylist() == [1200.0, None, 12345.6, None, None, None, None, 5.0, 0.5, None, None]
    assert list(problem) == [0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0]
    x, problem = cells.number(["1.200,5", "1 200,5", "3,5", "3.5"], decimal=",")
    assert x.to_pylist() == [1200.5, 1200.5, 3.5, None] and list(problem) == [0, 0, 0, 1]
    x, problem = cells.number(pa.array([1.0, float("inf"), None, float("nan")]))
    assert x.to_pylist() == [1.0, None, None, None] and list(problem) == [0, 1, 0, 0]


def test_dates_follow_the_grammar():
    when = ["1900-01-01", "9999-12-31", "2026-03-29 02:30:00", "2026-10-25 02:30:00", "29/06/2026", "NaT", "epoch",
            "2026-02-30", "2026-06-29T10:00:00+02:00", "2024-01-01+99", "2026-06-29T10:00+12:75", "2026-06-29T24:00",
            "2026-06-29 10:00:00.1234567 UTC", " 2026-01-01 "]
    us, problem = cells.timestamp(when, "Europe/Berlin", LO, HI)
    shown = [str(np.datetime64(int(u), "us")) if p == 0 else int(p) for u, p in zip(us, problem)]
    assert shown == [cells.TOO_EARLY, cells.TOO_LATE, "2026-03-29T01:00:00.000000",  # the gap: first instant after
                     "2026-10-25T00:30:00.000000",  # twice: the first one
                     1, 1, 1, 1, "2026-06-29T08:00:00.000000", 1, 1, 1, "2026-06-29T10:00:00.123456",
                     "2025-12-31T23:00:00.000000"]
    # The day first with dots (local time like ISO without a zone); seconds or milliseconds since 1970 (UTC).
    # Not a month first, two-digit years, or digits of another length.
    when = ["31.12.2025 14:05", "1.2.2026", "29.06.2026T10:00Z", "12.31.2025", "31.12.25", "31.12.2025.",
            "1767225600", "1767225600500", "176722560", "17672256000", "1767225600.5", "2026.12.31"]
    us, problem = cells.timestamp(when, "Europe/Berlin", LO, HI)
    shown = [str(np.datetime64(int(u), "us")) if p == 0 else int(p) for u, p in zip(us, problem)]
    assert shown == ["2025-12-31T13:05:00.000000", "2026-01-31T23:00:00.000000", "2026-06-29T10:00:00.000000",
                     1, 1, 1, "2026-01-01T00:00:00.000000", "2026-01-01T00:00:00.500000", 1, 1, 1, 1]
    # Typed numbers by the same rule (a float column with gaps, as pandas writes epoch milliseconds); digits
    # other than 0-9 are no digits, for the few cells of an API request as for a column.
    us, problem = cells.timestamp(pa.array([1767225600.0, None, 1767225600500.0, 17.0]), "UTC", LO, HI)
    assert list(problem) == [0, 0, 0, 1] and list(us[[0, 2]]) == [1767225600 * 10**6, 1767225600500 * 10**3]
    arabic_indic = "\u0661\u0667\u0666\u0667\u0662\u0662\u0665\u0666\u0660\u0660"  # 1767225600
    assert list(cells.timestamp([arabic_indic], "UTC", LO, HI)[1]) == [1]


def test_dates_with_the_year_last_read_as_data_date_order_says():
    """20/09/2024 only with data.date_order: 01/02/2025 is the first of February to some, the second of January to
    others. The order applies to slashes and dashes with the year last, never to ISO or dotted dates."""
    when = ["20/09/2024 02:57", "09/20/2024", "01/02/2025", "1-2-2025T10:00Z", "31/02/2025", "2024-09-20",
            "20.09.2024"]
    want = {None: [1, 1, 1, 1, 1, "2024-09-20T00:00", "2024-09-20T00:00"],
            "DMY": ["2024-09-20T02:57", 1, "2025-02-01T00:00", "2025-02-01T10:00", 1, "2024-09-20T00:00",
                    "2024-09-20T00:00"],
            "MDY": [1, "2024-09-20T00:00", "2025-01-02T00:00", "2025-01-02T10:00", 1, "2024-09-20T00:00",
                    "2024-09-20T00:00"]}
    for order, expected in want.items():
        for us, problem in _both(lambda v: cells.timestamp(v, "UTC", LO, HI, order), when):
            shown = [str(np.datetime64(int(u), "us").astype("datetime64[m]")) if p == 0 else int(p)
                     for u, p in zip(us, problem)]
            assert shown[:len(when)] == expected, order


TEXT = st.lists(st.sampled_from(list("0123456789+-.,:/ TtZzeE\u00a0\u202f\u3000\t\nUTCGMnaN") + ["12", "2026-", "000"]),
                max_size=14).map("".join)
DATES = st.builds(lambda y, m, d, rest: f"{y:04d}-{m}-{d}{rest}", st.integers(1980, 2030), st.integers(0, 13),
                  st.integers(0, 32), st.sampled_from(["", " 10:00", "T23:59:59", "T01:02:03.5", " 02:30:00",
                                                       "T10:00Z", "T10:00+05:30", "T10:00-0800", "+14", "+15",
                                                       "T10:00 UTC", "T10:00:61"]))

DOTTED = st.builds(lambda d, m, y, rest: f"{d}.{m}.{y}{rest}", st.integers(0, 32), st.integers(0, 13),
                   st.integers(1980, 2030), st.sampled_from(["", " 10:00", "T23:59:59", " 02:30:00", "T10:00Z", "."]))
YEAR_LAST = st.builds(lambda a, b, sep, y, rest: f"{a}{sep}{b}{sep}{y}{rest}", st.integers(0, 32), st.integers(0, 32),
                      st.sampled_from(["/", "-"]), st.integers(1980, 2030), st.sampled_from(["", " 10:00", "T10:00Z"]))
EPOCHS = st.integers(0, 10**14).map(str)


# Numbers built to the grammar and just beside it: grouped, decimal point or comma, exponent, sign, spaces.
NUMBERS = st.builds(lambda sign, whole, group, frac, exp, pad: f"{pad}{sign}{whole}{group}{frac}{exp}{pad}",
                    st.sampled_from(["", "+", "-"]), st.sampled_from(["0", "7", "12", "123", "1,234", "1.234",
                                                                      "12,34", "1 234", "1\u202f234", "1234567"]),
                    st.sampled_from(["", ",567", ".567", ",56", " 567"]), st.sampled_from(["", ".5", ",5", ".", ","]),
                    st.sampled_from(["", "e3", "E-2", "e400", "e"]), st.sampled_from(["", " ", "\u00a0"]))


def _both(fn, values):
    """``fn`` on the values read by Python's re (a short list) and by Arrow's RE2 (the same values padded to a
    column longer than cells.SMALL)."""
    small = fn(list(values))
    big = fn(pa.array(list(values) * (cells.SMALL // max(len(values), 1) + 2), pa.string()))
    return small, big


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(st.one_of(TEXT, DATES, DOTTED, YEAR_LAST, EPOCHS, NUMBERS, st.none()), min_size=1, max_size=12),
       zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]))
def test_both_engines_read_every_cell_alike(values, zone):
    n = len(values)
    small, big = _both(cells.text, values)
    assert small.to_pylist() == big.to_pylist()[:n]
    for decimal in (".", ","):
        (xs, ps), (xb, pb) = _both(lambda v: cells.number(v, decimal), values)
        assert xs.to_pylist() == xb.to_pylist()[:n] and list(ps) == list(pb[:n]), decimal
    for order in (None, "DMY", "MDY"):
        (us, ps), (ub, pb) = _both(lambda v: cells.timestamp(v, zone, LO, HI, order), values)
        assert list(us) == list(ub[:n]) and list(ps) == list(pb[:n]), order
