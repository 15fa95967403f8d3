"""Quota decisions as plain data: the local day, restore, extend, new day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance.gateway import quotas as qm
from appliance.gateway import ruleset as rs
from appliance.gateway.ruleset import Owner, QuotaReading

PARIS = ZoneInfo("Europe/Paris")
M = Owner("member", 1)
V = Owner("voucher", 2)
DAY = dt.date(2026, 3, 28)


def ts(y, mo, d, h, mi=0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=PARIS).timestamp()


def test_local_day_is_the_sites_not_utc():
    # 00:30 in Paris is still the previous day in UTC.
    assert qm.local_day(ts(2026, 3, 28, 0, 30), PARIS) == dt.date(2026, 3, 28)
    assert qm.local_day(ts(2026, 3, 27, 23, 59), PARIS) == dt.date(2026, 3, 27)


@pytest.mark.parametrize(
    "now, hours",
    [
        (ts(2026, 3, 28, 12), 12),  # an ordinary day
        (ts(2026, 3, 29, 0, 0), 23),  # spring forward: the day has 23 hours
        (ts(2026, 10, 25, 0, 0), 25),  # fall back: 25 hours
    ],
)
def test_next_midnight_handles_summer_time(now, hours):
    nxt = qm.next_midnight(now, PARIS)
    assert (nxt - now) / 3600 == pytest.approx(hours)
    assert dt.datetime.fromtimestamp(nxt, PARIS).time() == dt.time(0, 0)


def _ledger(**kw):
    base = {"owner": M, "day": DAY, "limit_bytes": 1000, "used_bytes": 100, "policy": "block"}
    return qm.Ledger(**{**base, **kw})


def test_restore_keeps_todays_ledgers_only_and_takes_the_freshest_count():
    old = _ledger(owner=V, day=DAY - dt.timedelta(days=1))
    stored = [_ledger(), old]
    # Reboot: no kernel table, the stored count.
    assert qm.restore(stored, {}, DAY) == [_ledger()]
    # Service restart: the kernel counted more since the last save.
    assert qm.restore(stored, {M: QuotaReading(1000, 450)}, DAY)[0].used_bytes == 450
    # Never go backwards.
    assert qm.restore(stored, {M: QuotaReading(1000, 40)}, DAY)[0].used_bytes == 100
    # A kernel object with another limit is not this ledger's counter.
    assert qm.restore(stored, {M: QuotaReading(5, 5)}, DAY)[0].used_bytes == 100


def test_quota_passed_to_the_kernel_never_exceeds_its_limit():
    q = _ledger(used_bytes=5000).quota()
    assert (q.limit_bytes, q.used_bytes) == (1000, 1000)


def test_extend_in_place_when_not_spent():
    plan = qm.extend(_ledger(), 500)
    assert not plan.reset_counter
    assert (plan.ledger.limit_bytes, plan.ledger.used_bytes) == (1500, 100)
    assert plan.ledger.total_limit == 1500 and plan.ledger.remaining == 1400


def test_extend_when_spent_restarts_the_counter_and_keeps_the_days_total():
    plan = qm.extend(_ledger(used_bytes=1000), 300)
    assert plan.reset_counter
    x = plan.ledger
    assert (x.limit_bytes, x.used_bytes, x.base_bytes) == (300, 0, 1000)
    assert (x.total_used, x.total_limit, x.remaining, x.spent) == (1000, 1300, 300, False)


@pytest.mark.parametrize("extra", [0, -1, 1.5, True, None])
def test_extend_refuses_nonsense(extra):
    with pytest.raises(ValueError):
        qm.extend(_ledger(), extra)


def test_new_day_resets_count_base_and_limit():
    x = qm.new_day(_ledger(used_bytes=900, base_bytes=1000, limit_bytes=5), DAY, 2000)
    assert (x.day, x.limit_bytes, x.used_bytes, x.base_bytes) == (DAY, 2000, 0, 0)


def test_observe_only_grows():
    x = _ledger()
    assert qm.observe(x, QuotaReading(1000, 700)).used_bytes == 700
    assert qm.observe(x, QuotaReading(1000, 7)).used_bytes == 100
    assert qm.observe(x, None) == x


def test_owner_class():
    assert qm.owner_class(M) == "member"
    assert qm.owner_class(V) == "guest"
    assert qm.owner_class(Owner("guest", 1)) == "guest"


def test_session_bytes_restored_from_the_fresher_side_per_direction():
    stored = rs.DeviceBytes(up=500, down=9_000)
    # Restart: the kernel kept counting past the last save.
    assert qm.restore_counted(stored, rs.DeviceBytes(700, 12_000)) == rs.DeviceBytes(700, 12_000)
    # Reboot: no kernel counter, the database is what is left.
    assert qm.restore_counted(stored, None) == stored
    # Never backwards, direction by direction.
    assert qm.restore_counted(stored, rs.DeviceBytes(400, 10_000)) == rs.DeviceBytes(500, 10_000)


def test_rate_from_two_readings():
    a = qm.RateSample(100.0, rs.DeviceBytes(up=0, down=1_000_000))
    b = qm.RateSample(102.0, rs.DeviceBytes(up=250_000, down=3_500_000))
    assert qm.rate_bps(a, b) == (10_000_000, 1_000_000)
    assert qm.rate_bps(a, qm.RateSample(100.5, b.counted)) is None  # too close
    assert qm.rate_bps(b, qm.RateSample(110.0, a.counted)) is None  # a new session's counter
