"""Tests for appliance.door.policy: every reason, every edge of the clock, and a brute-force
cross-check of decide() against a deliberately naive reference, minute by minute."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from appliance.door.policy import (
    REASON_LABELS,
    Closure,
    Decision,
    Holder,
    Plan,
    Reason,
    Window,
    WindowSyntaxError,
    decide,
    in_schedule,
    is_closed,
)

PARIS = ZoneInfo("Europe/Paris")
SPRING_FORWARD = date(2026, 3, 29)  # Sunday: 02:00 CET -> 03:00 CEST
FALL_BACK = date(2026, 10, 25)  # Sunday: 03:00 CEST -> 02:00 CET
MINUTE = timedelta(minutes=1)


def paris(y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> datetime:
    """An instant given by the Paris wall clock (fold=1: second occurrence on fall-back)."""
    return datetime(y, mo, d, h, mi, tzinfo=PARIS, fold=fold)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def plan_of(*windows: str, name: str = "p") -> Plan:
    return Plan(name=name, label=name, windows=tuple(Window.parse(w) for w in windows))


def holder(**changes: object) -> Holder:
    base = Holder(
        member_id=1,
        active=True,
        suspended=False,
        role="member",
        plan="office",
        valid_from=None,
        valid_until=None,
    )
    return replace(base, **changes)


OFFICE = plan_of("mon-fri 08:00-20:00", "sat 09:00-13:00", name="office")
ALWAYS = Plan(name="always", label="24/7", always=True)
PLANS = {"office": OFFICE, "always": ALWAYS}


def decide_at(
    who: Holder | None,
    now: datetime,
    *,
    plans: dict[str, Plan] | None = None,
    closures: tuple[Closure, ...] = (),
) -> Decision:
    plans = PLANS if plans is None else plans
    return decide(who, plans=plans, closures=closures, now=now, tz=PARIS)


def minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every whole minute in [start, end), in UTC."""
    t = start.astimezone(UTC)
    while t < end:
        yield t
        t += MINUTE


def open_minutes(plan: Plan, start: datetime, end: datetime) -> int:
    """Real minutes the plan is open in [start, end)."""
    return sum(in_schedule(plan, t.astimezone(PARIS)) for t in minutes(start, end))


# --- Reason, labels, Decision ------------------------------------------------------------


def test_reason_values_are_stable() -> None:
    # These strings are in access logs and metric labels: changing one breaks history.
    assert {r.name: r.value for r in Reason} == {
        "GRANTED_SCHEDULE": "granted_schedule",
        "GRANTED_ALWAYS": "granted_always",
        "GRANTED_EXIT": "granted_exit",
        "GRANTED_REMOTE": "granted_remote",
        "DENIED_UNKNOWN_CARD": "denied_unknown_card",
        "DENIED_REVOKED": "denied_revoked",
        "DENIED_BAD_TOKEN": "denied_bad_token",
        "DENIED_INACTIVE": "denied_inactive",
        "DENIED_SUSPENDED": "denied_suspended",
        "DENIED_NOT_YET_VALID": "denied_not_yet_valid",
        "DENIED_EXPIRED": "denied_expired",
        "DENIED_NO_PLAN": "denied_no_plan",
        "DENIED_OUTSIDE_SCHEDULE": "denied_outside_schedule",
        "DENIED_CLOSED": "denied_closed",
        "DENIED_RATE_LIMITED": "denied_rate_limited",
        "ENROLLED": "enrolled",
    }
    assert Reason("denied_closed") is Reason.DENIED_CLOSED
    assert f"{Reason.GRANTED_EXIT}" == "granted_exit"


@pytest.mark.parametrize("reason", list(Reason))
def test_reason_granted(reason: Reason) -> None:
    expected = reason in {
        Reason.GRANTED_SCHEDULE,
        Reason.GRANTED_ALWAYS,
        Reason.GRANTED_EXIT,
        Reason.GRANTED_REMOTE,
    }
    assert reason.granted is expected


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_french_and_english_labels(reason: Reason) -> None:
    labels = REASON_LABELS[reason]
    assert set(labels) == {"fr", "en"}
    assert labels["fr"].strip() and labels["en"].strip()
    # Plain words for the admin, not the machine value.
    assert reason.value not in labels["fr"] and "_" not in labels["fr"]


def test_labels_are_distinct_and_complete() -> None:
    assert set(REASON_LABELS) == set(Reason)
    for lang in ("fr", "en"):
        texts = [REASON_LABELS[r][lang] for r in Reason]
        assert len(set(texts)) == len(texts), lang
    assert REASON_LABELS[Reason.DENIED_OUTSIDE_SCHEDULE] == {
        "fr": "Hors des horaires du forfait",
        "en": "Outside the plan's hours",
    }


def test_decision_must_agree_with_its_reason() -> None:
    assert Decision(True, Reason.GRANTED_EXIT).granted
    with pytest.raises(ValueError):
        Decision(True, Reason.DENIED_CLOSED)
    with pytest.raises(ValueError):
        Decision(False, Reason.GRANTED_SCHEDULE)


# --- decide(): one test per reason, then the order of checks ------------------------------

WEDNESDAY_NOON = paris(2026, 6, 3, 12)  # inside OFFICE
WEDNESDAY_NIGHT = paris(2026, 6, 3, 22)  # outside OFFICE


@pytest.mark.parametrize(
    ("who", "now", "closures", "expected"),
    [
        pytest.param(None, WEDNESDAY_NOON, (), Reason.DENIED_UNKNOWN_CARD, id="unknown"),
        pytest.param(holder(active=False), WEDNESDAY_NOON, (), Reason.DENIED_INACTIVE, id="inact"),
        pytest.param(holder(suspended=True), WEDNESDAY_NOON, (), Reason.DENIED_SUSPENDED, id="sus"),
        pytest.param(
            holder(valid_from=date(2026, 6, 4)),
            WEDNESDAY_NOON,
            (),
            Reason.DENIED_NOT_YET_VALID,
            id="not-yet-valid",
        ),
        pytest.param(
            holder(valid_until=date(2026, 6, 2)),
            WEDNESDAY_NOON,
            (),
            Reason.DENIED_EXPIRED,
            id="expired",
        ),
        pytest.param(holder(plan=None), WEDNESDAY_NOON, (), Reason.DENIED_NO_PLAN, id="no-plan"),
        pytest.param(
            holder(plan="gold"), WEDNESDAY_NOON, (), Reason.DENIED_NO_PLAN, id="unknown-plan"
        ),
        pytest.param(
            holder(),
            WEDNESDAY_NOON,
            (Closure(date(2026, 6, 3), date(2026, 6, 3), "works"),),
            Reason.DENIED_CLOSED,
            id="closed",
        ),
        pytest.param(holder(), WEDNESDAY_NIGHT, (), Reason.DENIED_OUTSIDE_SCHEDULE, id="outside"),
        pytest.param(holder(), WEDNESDAY_NOON, (), Reason.GRANTED_SCHEDULE, id="schedule"),
        pytest.param(
            holder(role="admin", plan=None), WEDNESDAY_NIGHT, (), Reason.GRANTED_ALWAYS, id="admin"
        ),
        pytest.param(
            holder(plan="always"), WEDNESDAY_NIGHT, (), Reason.GRANTED_ALWAYS, id="always-plan"
        ),
    ],
)
def test_each_reason(
    who: Holder | None, now: datetime, closures: tuple[Closure, ...], expected: Reason
) -> None:
    decision = decide_at(who, now, closures=closures)
    assert decision == Decision(expected.granted, expected)


CLOSED_TODAY = (Closure(date(2026, 6, 3), date(2026, 6, 3)),)


@pytest.mark.parametrize(
    ("who", "closures", "expected"),
    [
        # Person state first: inactive beats everything, suspended beats dates.
        (
            holder(active=False, suspended=True, valid_until=date(2020, 1, 1), plan=None),
            CLOSED_TODAY,
            Reason.DENIED_INACTIVE,
        ),
        (
            holder(suspended=True, valid_until=date(2020, 1, 1), plan=None),
            CLOSED_TODAY,
            Reason.DENIED_SUSPENDED,
        ),
        (holder(role="admin", active=False), (), Reason.DENIED_INACTIVE),
        (holder(role="admin", suspended=True), (), Reason.DENIED_SUSPENDED),
        # Dates next; not-yet-valid is checked before expired (a range given backwards).
        (
            holder(valid_from=date(2026, 7, 1), valid_until=date(2026, 5, 1)),
            (),
            Reason.DENIED_NOT_YET_VALID,
        ),
        (holder(valid_until=date(2026, 6, 2), plan=None), CLOSED_TODAY, Reason.DENIED_EXPIRED),
        # Admins are bound by dates too...
        (holder(role="admin", valid_until=date(2026, 6, 2)), (), Reason.DENIED_EXPIRED),
        (holder(role="admin", valid_from=date(2026, 6, 4)), (), Reason.DENIED_NOT_YET_VALID),
        # ...but not by plans, closures or schedules.
        (holder(role="admin", plan="nonexistent"), CLOSED_TODAY, Reason.GRANTED_ALWAYS),
        # No plan is reported before a closure: the admin must fix the member, not wait.
        (holder(plan=None), CLOSED_TODAY, Reason.DENIED_NO_PLAN),
        # Closures apply to always-plans.
        (holder(plan="always"), CLOSED_TODAY, Reason.DENIED_CLOSED),
        # Closure beats being outside the schedule.
        (holder(), CLOSED_TODAY, Reason.DENIED_CLOSED),
        # An unknown role is an ordinary member, never an admin.
        (holder(role="Admin"), (), Reason.DENIED_OUTSIDE_SCHEDULE),
        (holder(role="superuser"), (), Reason.DENIED_OUTSIDE_SCHEDULE),
    ],
)
def test_order_of_checks(who: Holder, closures: tuple[Closure, ...], expected: Reason) -> None:
    assert decide_at(who, WEDNESDAY_NIGHT, closures=closures).reason is expected


def test_decide_is_the_same_whatever_zone_now_is_given_in() -> None:
    instant = paris(2026, 6, 5, 19, 59)
    for zone in (UTC, PARIS, ZoneInfo("America/New_York"), ZoneInfo("Pacific/Kiritimati")):
        assert decide_at(holder(), instant.astimezone(zone)).reason is Reason.GRANTED_SCHEDULE
        later = (instant + MINUTE).astimezone(zone)
        assert decide_at(holder(), later).reason is Reason.DENIED_OUTSIDE_SCHEDULE


def test_decide_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide_at(holder(), datetime(2026, 6, 3, 12))
    with pytest.raises(ValueError, match="aware"):
        in_schedule(OFFICE, datetime(2026, 6, 3, 12))


def test_plan_with_no_windows_never_opens() -> None:
    empty = Plan(name="empty", label="Empty")
    for t in minutes(paris(2026, 6, 1), paris(2026, 6, 8)):
        assert not in_schedule(empty, t.astimezone(PARIS))
    assert decide_at(holder(plan="empty"), WEDNESDAY_NOON, plans={"empty": empty}).reason is (
        Reason.DENIED_OUTSIDE_SCHEDULE
    )


def test_always_plan_is_in_schedule_at_any_time() -> None:
    assert in_schedule(ALWAYS, paris(2026, 6, 7, 3, 17))


def test_plan_accepts_a_list_of_windows() -> None:
    plan = Plan(name="x", label="X", windows=[Window.parse("mon 08:00-09:00")])  # type: ignore[arg-type]
    assert isinstance(plan.windows, tuple)
    hash(plan)


# --- schedules: boundaries, weekdays, midnight, 24 h ---------------------------------------


def test_window_is_half_open_to_the_microsecond() -> None:
    plan = plan_of("mon 08:00-20:00")
    monday = date(2026, 6, 1)
    assert monday.weekday() == 0

    def at(t: time) -> bool:
        return in_schedule(plan, datetime.combine(monday, t, tzinfo=PARIS))

    assert not at(time(7, 59, 59, 999999))
    assert at(time(8, 0))
    assert at(time(19, 59, 59, 999999))
    assert not at(time(20, 0))


@pytest.mark.parametrize("day", range(7))
def test_single_day_window_on_each_weekday(day: int) -> None:
    name = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day]
    plan = plan_of(f"{name} 10:00-11:00")
    week = [date(2026, 6, 1) + timedelta(days=i) for i in range(7)]  # Monday..Sunday
    for d in week:
        inside = paris(d.year, d.month, d.day, 10, 30)
        assert in_schedule(plan, inside) is (d.weekday() == day), d
        assert not in_schedule(plan, paris(d.year, d.month, d.day, 11, 0))
        assert not in_schedule(plan, paris(d.year, d.month, d.day, 9, 59))


@pytest.mark.parametrize("text", ["fri 22:00-02:00", "ven 22h00-02h00"])
def test_window_crossing_midnight_every_minute(text: str) -> None:
    plan = plan_of(text)
    # Thursday 20:00 to Sunday 04:00: only Friday 22:00 -> Saturday 02:00 is open.
    opens, closes = paris(2026, 6, 5, 22), paris(2026, 6, 6, 2)
    for t in minutes(paris(2026, 6, 4, 20), paris(2026, 6, 7, 4)):
        assert in_schedule(plan, t.astimezone(PARIS)) is (opens <= t < closes), t


def test_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    plan = plan_of("sat 22:00-02:00")
    assert not in_schedule(plan, paris(2026, 6, 6, 1))  # Saturday 01:00: Friday's night
    assert in_schedule(plan, paris(2026, 6, 6, 23))
    assert in_schedule(plan, paris(2026, 6, 7, 1, 59))  # Sunday 01:59: Saturday's night
    assert not in_schedule(plan, paris(2026, 6, 7, 2))
    assert not in_schedule(plan, paris(2026, 6, 7, 23))  # Sunday night is not Saturday


def test_window_crossing_midnight_wraps_sunday_to_monday() -> None:
    plan = plan_of("sun 23:00-01:00")
    assert in_schedule(plan, paris(2026, 6, 8, 0, 30))  # Monday 00:30
    assert not in_schedule(plan, paris(2026, 6, 2, 0, 30))  # Tuesday 00:30


def test_window_ending_at_24_00() -> None:
    plan = plan_of("tue 18:00-24:00")
    assert in_schedule(plan, paris(2026, 6, 2, 23, 59))
    assert not in_schedule(plan, paris(2026, 6, 3, 0, 0))
    assert not in_schedule(plan, paris(2026, 6, 2, 17, 59))


def test_daily_full_day_is_always_open() -> None:
    plan = plan_of("daily 00:00-24:00")
    assert all(
        in_schedule(plan, t.astimezone(PARIS))
        for t in minutes(paris(2026, 6, 1), paris(2026, 6, 8))
    )


def test_24_hour_window_starting_mid_day() -> None:
    plan = plan_of("wed 08:00-08:00")
    opens, closes = paris(2026, 6, 3, 8), paris(2026, 6, 4, 8)
    for t in minutes(paris(2026, 6, 3, 7), paris(2026, 6, 4, 9)):
        assert in_schedule(plan, t.astimezone(PARIS)) is (opens <= t < closes), t


def test_several_windows_are_a_union() -> None:
    plan = plan_of("mon-fri 09:00-12:00", "mon-fri 14:00-18:00", "sat 10:00-12:00")
    assert in_schedule(plan, paris(2026, 6, 3, 11, 59))
    assert not in_schedule(plan, paris(2026, 6, 3, 13))
    assert in_schedule(plan, paris(2026, 6, 3, 14))
    assert in_schedule(plan, paris(2026, 6, 6, 10))
    assert not in_schedule(plan, paris(2026, 6, 7, 10))


# --- DST in Europe/Paris ---------------------------------------------------------------------


def test_the_dst_dates_are_what_these_tests_assume() -> None:
    assert SPRING_FORWARD.weekday() == 6 and FALL_BACK.weekday() == 6
    assert paris(2026, 3, 29, 1, 59).utcoffset() == timedelta(hours=1)
    assert paris(2026, 3, 29, 3, 0).utcoffset() == timedelta(hours=2)
    assert paris(2026, 10, 25, 2, 30, fold=0).utcoffset() == timedelta(hours=2)
    assert paris(2026, 10, 25, 2, 30, fold=1).utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("window", "expected_minutes"),
    [
        # The jump is at 02:00, so a day-time window keeps its 12 real hours.
        ("sun 08:00-20:00", 12 * 60),
        ("sun 00:00-24:00", 23 * 60),
        ("sun 01:00-04:00", 2 * 60),
        # Starts in the skipped hour: opens at 03:00, the first valid instant after.
        ("sun 02:30-04:00", 60),
        # Ends in the skipped hour: closes when the clock jumps to 03:00.
        ("sun 01:30-02:30", 30),
        # Lies entirely in the skipped hour: that night it never opens.
        ("sun 02:00-02:45", 0),
        # Crosses midnight into the change: Saturday 22:00 CET to Sunday 03:00 CEST.
        ("sat 22:00-03:00", 4 * 60),
        ("sat 22:00-02:00", 4 * 60),
        ("sat 23:00-23:00", 23 * 60),
    ],
)
def test_spring_forward_durations(window: str, expected_minutes: int) -> None:
    plan = plan_of(window)
    assert open_minutes(plan, paris(2026, 3, 28, 12), paris(2026, 3, 30, 12)) == expected_minutes


@pytest.mark.parametrize(
    ("monday", "expected_hours"),
    [(date(2026, 3, 23), 23), (date(2026, 10, 19), 25), (date(2026, 6, 1), 24)],
)
def test_daily_full_day_lasts_as_long_as_the_day(monday: date, expected_hours: int) -> None:
    plan = plan_of("daily 00:00-24:00")
    sunday = datetime.combine(monday + timedelta(days=6), time(0), tzinfo=PARIS)
    next_monday = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=PARIS)
    assert next_monday.astimezone(UTC) - sunday.astimezone(UTC) == timedelta(hours=expected_hours)
    assert open_minutes(plan, sunday, next_monday) == expected_hours * 60


def test_spring_forward_window_starting_in_the_skipped_hour_opens_at_03_00() -> None:
    plan = plan_of("sun 02:30-04:00")
    assert not in_schedule(plan, paris(2026, 3, 29, 1, 59))
    assert not in_schedule(plan, utc(2026, 3, 29, 0, 59).astimezone(PARIS))
    last_cet_second = datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC).astimezone(PARIS)
    assert not in_schedule(plan, last_cet_second)  # 01:59:59.999999 CET
    assert in_schedule(plan, utc(2026, 3, 29, 1, 0).astimezone(PARIS))  # 03:00 CEST
    assert in_schedule(plan, paris(2026, 3, 29, 3, 0))
    assert not in_schedule(plan, paris(2026, 3, 29, 4, 0))


def test_spring_forward_night_window_every_minute() -> None:
    plan = plan_of("sat 22:00-03:00")
    opens, closes = utc(2026, 3, 28, 21), utc(2026, 3, 29, 1)  # 22:00 CET, 03:00 CEST
    for t in minutes(utc(2026, 3, 28, 18), utc(2026, 3, 29, 6)):
        assert in_schedule(plan, t.astimezone(PARIS)) is (opens <= t < closes), t


@pytest.mark.parametrize(
    ("window", "expected_minutes"),
    [
        ("sun 08:00-20:00", 12 * 60),
        ("sun 00:00-24:00", 25 * 60),
        # Covers both 02:xx occurrences.
        ("sun 01:00-03:00", 3 * 60),
        ("sun 02:00-03:00", 2 * 60),
        # Starts at the first 02:30 and stays open through the repeated hour.
        ("sun 02:30-04:00", 150),
        # Ends at the first 02:30 and does not open again when 02:30 comes round again.
        ("sun 01:00-02:30", 90),
        ("sat 22:00-03:00", 6 * 60),
        ("sat 22:00-02:00", 4 * 60),
        ("sat 23:00-23:00", 25 * 60),
    ],
)
def test_fall_back_durations(window: str, expected_minutes: int) -> None:
    plan = plan_of(window)
    assert open_minutes(plan, paris(2026, 10, 24, 12), paris(2026, 10, 26, 12)) == expected_minutes


def test_fall_back_window_covers_both_occurrences_of_the_repeated_hour() -> None:
    plan = plan_of("sun 01:00-03:00")
    for fold in (0, 1):
        assert in_schedule(plan, paris(2026, 10, 25, 2, 15, fold=fold)), fold
    assert in_schedule(plan, paris(2026, 10, 25, 2, 59, fold=1))
    assert not in_schedule(plan, paris(2026, 10, 25, 3, 0))
    assert not in_schedule(plan, paris(2026, 10, 25, 0, 59))


def test_fall_back_window_with_a_bound_inside_the_repeated_hour() -> None:
    ends_inside = plan_of("sun 01:00-02:30")
    assert in_schedule(ends_inside, paris(2026, 10, 25, 2, 29, fold=0))
    assert not in_schedule(ends_inside, paris(2026, 10, 25, 2, 30, fold=0))
    assert not in_schedule(ends_inside, paris(2026, 10, 25, 2, 15, fold=1))
    starts_inside = plan_of("sun 02:30-04:00")
    assert not in_schedule(starts_inside, paris(2026, 10, 25, 2, 29, fold=0))
    assert in_schedule(starts_inside, paris(2026, 10, 25, 2, 30, fold=0))
    assert in_schedule(starts_inside, paris(2026, 10, 25, 2, 0, fold=1))


def test_fall_back_night_window_every_minute() -> None:
    plan = plan_of("sat 22:00-03:00")
    opens, closes = utc(2026, 10, 24, 20), utc(2026, 10, 25, 2)  # 22:00 CEST, 03:00 CET
    for t in minutes(utc(2026, 10, 24, 17), utc(2026, 10, 25, 6)):
        assert in_schedule(plan, t.astimezone(PARIS)) is (opens <= t < closes), t


def test_dst_with_a_fixed_offset_zone_is_just_wall_clock() -> None:
    fixed = ZoneInfo("Etc/GMT-1")  # UTC+1 all year, no DST
    plan = plan_of("sun 02:30-04:00")
    assert in_schedule(plan, datetime(2026, 3, 29, 2, 30, tzinfo=fixed))
    assert not in_schedule(plan, datetime(2026, 3, 29, 2, 29, tzinfo=fixed))


# --- validity dates: local, inclusive --------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (paris(2026, 6, 29, 12), Reason.GRANTED_ALWAYS),  # the day before
        (paris(2026, 6, 30, 12), Reason.GRANTED_ALWAYS),  # the day itself
        (paris(2026, 6, 30, 23, 59), Reason.GRANTED_ALWAYS),  # 21:59 UTC
        (paris(2026, 7, 1, 0, 0), Reason.DENIED_EXPIRED),  # 22:00 UTC, still June 30 in UTC
        (utc(2026, 6, 30, 21, 59), Reason.GRANTED_ALWAYS),
        (utc(2026, 6, 30, 22, 0), Reason.DENIED_EXPIRED),
        (paris(2026, 7, 1, 12), Reason.DENIED_EXPIRED),  # the day after
    ],
)
def test_valid_until_is_inclusive_in_local_time(now: datetime, expected: Reason) -> None:
    who = holder(plan="always", valid_until=date(2026, 6, 30))
    assert decide_at(who, now).reason is expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (paris(2026, 6, 30, 12), Reason.DENIED_NOT_YET_VALID),  # the day before
        (paris(2026, 6, 30, 23, 59), Reason.DENIED_NOT_YET_VALID),
        (utc(2026, 6, 30, 21, 59), Reason.DENIED_NOT_YET_VALID),
        (utc(2026, 6, 30, 22, 0), Reason.GRANTED_ALWAYS),  # 00:00 Paris on July 1
        (paris(2026, 7, 1, 0, 0), Reason.GRANTED_ALWAYS),  # the day itself
        (paris(2026, 7, 2, 12), Reason.GRANTED_ALWAYS),  # the day after
    ],
)
def test_valid_from_is_inclusive_in_local_time(now: datetime, expected: Reason) -> None:
    who = holder(plan="always", valid_from=date(2026, 7, 1))
    assert decide_at(who, now).reason is expected


def test_validity_in_winter_uses_the_winter_offset() -> None:
    who = holder(plan="always", valid_until=date(2026, 1, 31))
    assert decide_at(who, utc(2026, 1, 31, 22, 59)).granted
    assert decide_at(who, utc(2026, 1, 31, 23, 0)).reason is Reason.DENIED_EXPIRED


def test_single_day_validity() -> None:
    who = holder(plan="always", valid_from=date(2026, 6, 3), valid_until=date(2026, 6, 3))
    assert decide_at(who, paris(2026, 6, 2, 23, 59)).reason is Reason.DENIED_NOT_YET_VALID
    assert decide_at(who, paris(2026, 6, 3, 0, 0)).granted
    assert decide_at(who, paris(2026, 6, 3, 23, 59)).granted
    assert decide_at(who, paris(2026, 6, 4, 0, 0)).reason is Reason.DENIED_EXPIRED


# --- closures --------------------------------------------------------------------------------

BASTILLE_DAY = Closure(date(2026, 7, 14), date(2026, 7, 14), "Fête nationale")
SUMMER_BREAK = Closure(date(2026, 8, 3), date(2026, 8, 7), "Congés d'été")


@pytest.mark.parametrize(
    ("now", "closed_by"),
    [
        (paris(2026, 7, 13, 23, 59), None),
        (paris(2026, 7, 14, 0, 0), BASTILLE_DAY),
        (utc(2026, 7, 13, 22, 0), BASTILLE_DAY),  # 00:00 Paris
        (paris(2026, 7, 14, 12), BASTILLE_DAY),
        (paris(2026, 7, 14, 23, 59), BASTILLE_DAY),
        (paris(2026, 7, 15, 0, 0), None),
        (paris(2026, 8, 2, 23, 59), None),
        (paris(2026, 8, 3, 0, 0), SUMMER_BREAK),  # first day, inclusive
        (paris(2026, 8, 5, 10), SUMMER_BREAK),
        (paris(2026, 8, 7, 23, 59), SUMMER_BREAK),  # last day, inclusive
        (paris(2026, 8, 8, 0, 0), None),
    ],
)
def test_closures(now: datetime, closed_by: Closure | None) -> None:
    closures = (BASTILLE_DAY, SUMMER_BREAK)
    local = now.astimezone(PARIS)
    assert is_closed(closures, local) == closed_by
    member = holder(plan="always")
    expected = Reason.DENIED_CLOSED if closed_by else Reason.GRANTED_ALWAYS
    assert decide_at(member, now, closures=closures).reason is expected
    # Admins pass closures.
    admin = holder(role="admin")
    assert decide_at(admin, now, closures=closures).reason is Reason.GRANTED_ALWAYS


def test_is_closed_accepts_any_iterable_and_returns_none_when_empty() -> None:
    assert is_closed(iter([SUMMER_BREAK]), paris(2026, 8, 4)) is SUMMER_BREAK
    assert is_closed([], paris(2026, 8, 4)) is None


def test_closure_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        Closure(date(2026, 8, 7), date(2026, 8, 3))


def test_night_window_into_a_closure_day_is_cut_at_local_midnight() -> None:
    plans = {"night": plan_of("fri 22:00-02:00", name="night")}
    who = holder(plan="night")
    saturday_closed = (Closure(date(2026, 6, 6), date(2026, 6, 6)),)
    assert decide_at(who, paris(2026, 6, 5, 23, 59), plans=plans, closures=saturday_closed).granted
    for t in (paris(2026, 6, 6, 0, 0), paris(2026, 6, 6, 1, 30)):
        assert decide_at(who, t, plans=plans, closures=saturday_closed).reason is (
            Reason.DENIED_CLOSED
        )
    friday_closed = (Closure(date(2026, 6, 5), date(2026, 6, 5)),)
    assert decide_at(who, paris(2026, 6, 5, 23), plans=plans, closures=friday_closed).reason is (
        Reason.DENIED_CLOSED
    )
    assert decide_at(who, paris(2026, 6, 6, 1), plans=plans, closures=friday_closed).granted


# --- Window.parse ----------------------------------------------------------------------------

WEEKDAYS = frozenset(range(5))


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("mon-fri 08:00-20:00", WEEKDAYS, time(8), time(20)),
        ("lun-ven 08:00-20:00", WEEKDAYS, time(8), time(20)),
        ("Lundi-Vendredi 08:00-20:00", WEEKDAYS, time(8), time(20)),
        ("monday-friday 8:00-20:00", WEEKDAYS, time(8), time(20)),
        ("  MON-FRI   08:00 - 20:00  ", WEEKDAYS, time(8), time(20)),
        ("mon - fri 08h00-20h00", WEEKDAYS, time(8), time(20)),
        ("sat,sun 09:00-13:00", frozenset({5, 6}), time(9), time(13)),
        ("sam, dim 09:00-13:00", frozenset({5, 6}), time(9), time(13)),
        ("fri 22:00-02:00", frozenset({4}), time(22), time(2)),
        ("ven 22:00-02:00", frozenset({4}), time(22), time(2)),
        ("daily 00:00-24:00", frozenset(range(7)), time(0), time(0)),
        ("tlj 07:30-21:15", frozenset(range(7)), time(7, 30), time(21, 15)),
        ("everyday 07:30-21:15", frozenset(range(7)), time(7, 30), time(21, 15)),
        ("mon-sun 06:00-23:00", frozenset(range(7)), time(6), time(23)),
        ("fri-mon 18:00-09:00", frozenset({4, 5, 6, 0}), time(18), time(9)),
        ("sun-sun 10:00-11:00", frozenset({6}), time(10), time(11)),
        ("mon,wed,fri-sat 10:00-11:00", frozenset({0, 2, 4, 5}), time(10), time(11)),
        ("mer,mercredi 10:00-11:00", frozenset({2}), time(10), time(11)),
        ("mar 10:00-11:00", frozenset({1}), time(10), time(11)),  # French mardi, not March
        ("jeu 18:00-24:00", frozenset({3}), time(18), time(0)),
        ("dim 23:59-00:00", frozenset({6}), time(23, 59), time(0)),
        ("wed 08:00-08:00", frozenset({2}), time(8), time(8)),
    ],
)
def test_parse_good(text: str, days: frozenset[int], start: time, end: time) -> None:
    assert Window.parse(text) == Window(days=days, start=start, end=end)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "expected '<days> HH:MM-HH:MM'"),
        ("   ", "expected '<days> HH:MM-HH:MM'"),
        ("mon-fri", "expected '<days> HH:MM-HH:MM'"),
        ("08:00-20:00", "expected '<days> HH:MM-HH:MM'"),
        ("mon-fri 08:00", "expected '<days> HH:MM-HH:MM'"),
        ("mon-fri 08:00-", "expected '<days> HH:MM-HH:MM'"),
        ("mon-fri 8-20", "expected '<days> HH:MM-HH:MM'"),
        ("mon-fri 08:00-20:00 extra", "expected '<days> HH:MM-HH:MM'"),
        ("mon-fri 08:00–20:00", "expected '<days> HH:MM-HH:MM'"),  # en dash
        ("funday 08:00-20:00", "unknown day 'funday'"),
        ("mon-fryday 08:00-20:00", "unknown day 'fryday'"),
        ("monday-fri-sat 08:00-20:00", "unknown day 'fri-sat'"),
        ("mon,,fri 08:00-20:00", "empty day"),
        ("mon, 08:00-20:00", "empty day"),
        ("mon-fri 25:00-26:00", "invalid time '25:00'"),
        ("mon-fri 08:60-20:00", "invalid time '08:60'"),
        ("mon-fri 08:00-24:01", "invalid time '24:01'"),
        ("mon-fri 24:00-08:00", "cannot start at 24:00"),
    ],
)
def test_parse_bad(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        Window.parse(text)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, WindowSyntaxError)
    assert caught.value.fr and caught.value.fr != caught.value.en


def test_parse_bad_day_message_lists_what_is_accepted() -> None:
    with pytest.raises(WindowSyntaxError) as caught:
        Window.parse("weekend 10:00-12:00")
    assert "mon tue wed thu fri sat sun" in caught.value.en
    assert "lun mar mer jeu ven sam dim" in caught.value.fr


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="must be text"):
        Window.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("window", "text"),
    [
        (Window(frozenset(range(5)), time(8), time(20)), "mon-fri 08:00-20:00"),
        (Window(frozenset(range(7)), time(0), time(0)), "daily 00:00-24:00"),
        (Window(frozenset({0, 1, 2, 5}), time(9), time(13)), "mon-wed,sat 09:00-13:00"),
        (Window(frozenset({4}), time(22), time(2)), "fri 22:00-02:00"),
        (Window(frozenset({0, 6}), time(18), time(0)), "mon,sun 18:00-24:00"),
    ],
)
def test_window_text_round_trips(window: Window, text: str) -> None:
    assert str(window) == text
    assert Window.parse(text) == window


@pytest.mark.parametrize("days", [frozenset(), frozenset({7}), frozenset({-1, 0})])
def test_window_rejects_bad_days(days: frozenset[int]) -> None:
    with pytest.raises(ValueError, match="0..6"):
        Window(days=days, start=time(8), end=time(9))


def test_window_rejects_aware_times_and_normalises_days() -> None:
    with pytest.raises(ValueError, match="tzinfo"):
        Window(frozenset({0}), time(8, tzinfo=UTC), time(9))
    assert Window({0, 1}, time(8), time(9)).days == frozenset({0, 1})  # type: ignore[arg-type]


# --- brute force: decide() against a naive reference, minute by minute ----------------------


def reference_open_minutes(plan: Plan, instants: list[datetime]) -> set[int]:
    """Indexes of the minutes at which ``plan`` is open, by the simplest possible route.

    Read the wall clock at every minute; a window occurrence opens at the first minute whose
    clock shows its start or later and closes at the first minute whose clock shows its end
    or later. No timezone arithmetic beyond reading the clock.
    """
    walls = [t.astimezone(PARIS).replace(tzinfo=None) for t in instants]

    def first_showing(target: datetime) -> int:
        for index, wall in enumerate(walls):
            if wall >= target:
                return index
        return len(walls)

    first_day = walls[0].date() - timedelta(days=1)
    open_at: set[int] = set()
    for window in plan.windows:
        for offset in range((walls[-1].date() - first_day).days + 1):
            day = first_day + timedelta(days=offset)
            if day.weekday() not in window.days:
                continue
            end_day = day if window.end > window.start else day + timedelta(days=1)
            opens = first_showing(datetime.combine(day, window.start))
            closes = first_showing(datetime.combine(end_day, window.end))
            open_at.update(range(opens, closes))
    return open_at


def reference_decide(
    who: Holder, plan_open: dict[str, set[int]], closures: list[Closure], index: int, t: datetime
) -> Reason:
    """The documented order of checks, written out longhand."""
    local_day = t.astimezone(PARIS).date()
    if not who.active:
        return Reason.DENIED_INACTIVE
    if who.suspended:
        return Reason.DENIED_SUSPENDED
    if who.valid_from and local_day < who.valid_from:
        return Reason.DENIED_NOT_YET_VALID
    if who.valid_until and local_day > who.valid_until:
        return Reason.DENIED_EXPIRED
    if who.role == "admin":
        return Reason.GRANTED_ALWAYS
    if who.plan not in BRUTE_PLANS:
        return Reason.DENIED_NO_PLAN
    if any(c.start <= local_day <= c.end for c in closures):
        return Reason.DENIED_CLOSED
    if BRUTE_PLANS[who.plan].always:
        return Reason.GRANTED_ALWAYS
    if index in plan_open[who.plan]:
        return Reason.GRANTED_SCHEDULE
    return Reason.DENIED_OUTSIDE_SCHEDULE


BRUTE_PLANS = {
    p.name: p
    for p in (
        plan_of("mon-fri 08:00-20:00", "sat 09:00-13:00", name="office"),
        plan_of("fri,sat 22:00-02:00", "sun 23:30-00:30", name="nights"),
        plan_of("daily 01:00-03:00", "sun 02:30-04:00", "sat 01:30-02:30", name="small_hours"),
        plan_of(
            "mon,wed,fri 09:00-12:00", "mon,wed,fri 14:00-18:00", "tue 06:00-06:00", name="split"
        ),
        plan_of("fri-mon 18:00-09:00", name="long_weekend"),
        plan_of("daily 00:00-24:00", name="full_days"),
        Plan(name="always", label="Always", always=True),
    )
}


@pytest.mark.parametrize(
    "monday",
    [
        pytest.param(date(2026, 6, 1), id="ordinary-week"),
        pytest.param(date(2026, 3, 23), id="spring-forward-week"),
        pytest.param(date(2026, 10, 19), id="fall-back-week"),
    ],
)
def test_brute_force_week_against_reference(monday: date) -> None:
    assert monday.weekday() == 0
    start = datetime.combine(monday, time(0), tzinfo=PARIS).astimezone(UTC)
    # Monday 00:00 through the following Monday 03:00, so Sunday-night windows finish.
    instants = list(minutes(start, start + timedelta(days=7, hours=3)))
    plan_open = {name: reference_open_minutes(plan, instants) for name, plan in BRUTE_PLANS.items()}
    wednesday, thursday = monday + timedelta(days=2), monday + timedelta(days=3)
    closures = [Closure(wednesday, wednesday, "closed Wednesday")]
    holders = [holder(member_id=i, plan=name) for i, name in enumerate(BRUTE_PLANS)]
    holders += [
        holder(member_id=100, plan="office", valid_until=thursday),
        holder(member_id=101, plan="nights", valid_from=thursday),
        holder(member_id=102, role="admin", plan=None),
        holder(member_id=103, plan="unknown"),
    ]
    # The reference must not be vacuous: every plan is open some minutes and shut others.
    for name, opened in plan_open.items():
        assert 0 < len(opened) < len(instants) or name in {"always", "full_days"}, name

    mismatches = []
    for index, t in enumerate(instants):
        local = t.astimezone(PARIS)
        for name, plan in BRUTE_PLANS.items():
            expected_open = plan.always or index in plan_open[name]
            if in_schedule(plan, local) is not expected_open:
                mismatches.append((local.isoformat(), name, "in_schedule", expected_open))
        if index % 5:
            continue  # decide() adds no clock logic of its own; every 5th minute suffices
        for who in holders:
            got = decide(who, plans=BRUTE_PLANS, closures=closures, now=t, tz=PARIS).reason
            want = reference_decide(who, plan_open, closures, index, t)
            if got is not want:
                mismatches.append((local.isoformat(), who.member_id, got, want))
    assert mismatches[:10] == []


def test_reference_spots_a_wrong_schedule() -> None:
    """The brute-force reference is sharp enough to catch an off-by-one-minute plan."""
    instants = list(minutes(paris(2026, 6, 1), paris(2026, 6, 2)))
    right = reference_open_minutes(plan_of("mon 08:00-20:00"), instants)
    wrong = reference_open_minutes(plan_of("mon 08:01-20:00"), instants)
    assert len(right) == 720 and right - wrong == {8 * 60}
