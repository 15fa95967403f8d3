"""Bufferbloat grade, ratio to the contract, the monthly budget."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance.link.throughput import (
    added_delay,
    budget_allows,
    contract_ratio,
    grade,
    month_bounds,
    shaped_goodput,
)


@pytest.mark.parametrize(
    "ms,expected",
    [(0, "A+"), (4.999, "A+"), (5, "A"), (29.9, "A"), (30, "B"), (59.9, "B"), (60, "C"),
     (199.9, "C"), (200, "D"), (399.9, "D"), (400, "F"), (5000, "F")],
)
def test_grade_boundaries(ms, expected):
    assert grade(ms / 1000) == expected


def test_added_delay_uses_medians_and_never_goes_negative():
    assert added_delay([0.010, 0.011, 0.5], [0.060, 0.070, 0.080]) == pytest.approx(0.059)
    assert added_delay([0.020], [0.010]) == 0.0
    assert added_delay([], [0.1]) is None and added_delay([0.1], []) is None


def test_contract_ratio():
    assert contract_ratio(24e6, 30e6) == pytest.approx(0.8)
    assert contract_ratio(None, 30e6) is None
    assert contract_ratio(1e6, 0) is None


def test_shaped_goodput_of_a_30_mbit_line():
    assert shaped_goodput(30e6) == pytest.approx(28.69e6, rel=1e-3)


def test_month_bounds_local_time():
    paris = ZoneInfo("Europe/Paris")
    t = dt.datetime(2026, 2, 28, 23, 30, tzinfo=paris).timestamp()
    start, end = month_bounds(t, paris)
    assert start == dt.datetime(2026, 2, 1, tzinfo=paris).timestamp()
    assert end == dt.datetime(2026, 3, 1, tzinfo=paris).timestamp()
    dec = dt.datetime(2026, 12, 31, 12, tzinfo=paris).timestamp()
    assert month_bounds(dec, paris)[1] == dt.datetime(2027, 1, 1, tzinfo=paris).timestamp()


def test_budget():
    gb = 2_000_000_000
    assert budget_allows(0, 40_000_000, gb)
    assert budget_allows(gb - 40_000_000, 40_000_000, gb)
    assert not budget_allows(gb - 39_999_999, 40_000_000, gb)
    assert not budget_allows(gb, 0, gb)  # spent: stop, even without an estimate
    assert not budget_allows(gb + 1, 0, gb)
