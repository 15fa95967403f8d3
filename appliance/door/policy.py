"""Who may open the door, and when: the access policy as pure functions over plain data.

Nothing here reads a clock, a file, the database or the hardware. The door service loads
plans, closures and the member behind a badge, then asks :func:`decide` with the current
instant; the same call is what the tests drive minute by minute. Keeping it pure is what
lets the door decide in milliseconds without the network, and lets the tests cover every
day of the week and both DST nights without patching anything.

Time model
----------
Schedules are written in the site's wall-clock time ("mon-fri 08:00-20:00" means what the
clock on the telecentre's wall says). A window is turned into a real interval of instants:
it opens at the first instant the wall clock shows its start (or later) and closes at the
first instant the wall clock shows its end (or later). On DST nights this gives what a
person reading the clock expects:

- spring forward (02:00 → 03:00 in Europe/Paris): a window starting in the skipped hour
  opens at 03:00, the first valid instant after; "00:00-24:00" lasts 23 real hours;
- fall back (03:00 → 02:00): a window spanning the repeated hour covers both occurrences
  ("01:00-03:00" lasts 3 real hours); a window ending inside the repeated hour ends at its
  first occurrence and does not open again when the clock shows that time a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "REASON_LABELS",
    "ROLE_ADMIN",
    "ROLE_MEMBER",
    "Closure",
    "Decision",
    "Holder",
    "Plan",
    "Reason",
    "Window",
    "WindowSyntaxError",
    "decide",
    "in_schedule",
    "is_closed",
]

ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"


class Reason(StrEnum):
    """Why a badge event ended the way it did.

    The values are stored in the access log and used as a Prometheus label, so they are
    stable: rename the Python name if you must, never the value.
    """

    GRANTED_SCHEDULE = "granted_schedule"
    GRANTED_ALWAYS = "granted_always"
    GRANTED_EXIT = "granted_exit"
    GRANTED_REMOTE = "granted_remote"
    DENIED_UNKNOWN_CARD = "denied_unknown_card"
    DENIED_REVOKED = "denied_revoked"
    DENIED_BAD_TOKEN = "denied_bad_token"
    DENIED_INACTIVE = "denied_inactive"
    DENIED_SUSPENDED = "denied_suspended"
    DENIED_NOT_YET_VALID = "denied_not_yet_valid"
    DENIED_EXPIRED = "denied_expired"
    DENIED_NO_PLAN = "denied_no_plan"
    DENIED_OUTSIDE_SCHEDULE = "denied_outside_schedule"
    DENIED_CLOSED = "denied_closed"
    DENIED_RATE_LIMITED = "denied_rate_limited"
    ENROLLED = "enrolled"

    @property
    def granted(self) -> bool:
        """True when the door opens. Enrolment binds a card but does not open the door."""
        return self.value.startswith("granted_")


# Shown to the local admin in the panel's access log: plain words, no jargon.
REASON_LABELS: dict[Reason, dict[str, str]] = {
    Reason.GRANTED_SCHEDULE: {
        "fr": "Entrée autorisée (dans les horaires du forfait)",
        "en": "Allowed (within the plan's hours)",
    },
    Reason.GRANTED_ALWAYS: {
        "fr": "Entrée autorisée (accès à toute heure)",
        "en": "Allowed (access at any time)",
    },
    Reason.GRANTED_EXIT: {
        "fr": "Sortie avec le bouton intérieur",
        "en": "Opened with the exit button",
    },
    Reason.GRANTED_REMOTE: {
        "fr": "Ouverture à distance par un administrateur",
        "en": "Opened remotely by an administrator",
    },
    Reason.DENIED_UNKNOWN_CARD: {
        "fr": "Badge inconnu",
        "en": "Unknown badge",
    },
    Reason.DENIED_REVOKED: {
        "fr": "Badge désactivé (perdu, volé ou rendu)",
        "en": "Badge deactivated (lost, stolen or returned)",
    },
    Reason.DENIED_BAD_TOKEN: {
        "fr": "Badge refusé : il ressemble à une copie d'un badge enregistré",
        "en": "Badge refused: it looks like a copy of a registered badge",
    },
    Reason.DENIED_INACTIVE: {
        "fr": "Membre supprimé ou archivé",
        "en": "Member deleted or archived",
    },
    Reason.DENIED_SUSPENDED: {
        "fr": "Membre suspendu",
        "en": "Member suspended",
    },
    Reason.DENIED_NOT_YET_VALID: {
        "fr": "Abonnement pas encore commencé",
        "en": "Membership has not started yet",
    },
    Reason.DENIED_EXPIRED: {
        "fr": "Abonnement terminé",
        "en": "Membership has ended",
    },
    Reason.DENIED_NO_PLAN: {
        "fr": "Aucun forfait valable attribué",
        "en": "No valid plan assigned",
    },
    Reason.DENIED_OUTSIDE_SCHEDULE: {
        "fr": "Hors des horaires du forfait",
        "en": "Outside the plan's hours",
    },
    Reason.DENIED_CLOSED: {
        "fr": "Fermé ce jour-là (jour férié ou fermeture)",
        "en": "Closed that day (holiday or closure)",
    },
    Reason.DENIED_RATE_LIMITED: {
        "fr": "Trop de badges inconnus d'affilée : lecteur en pause quelques instants",
        "en": "Too many unknown badges in a row: reader paused for a moment",
    },
    Reason.ENROLLED: {
        "fr": "Badge enregistré pour un membre",
        "en": "Badge registered to a member",
    },
}


# --- windows ---------------------------------------------------------------------------

_DAY_NAMES: dict[str, int] = {}
for _index, _names in enumerate(
    (
        ("mon", "monday", "lun", "lundi"),
        ("tue", "tuesday", "mar", "mardi"),
        ("wed", "wednesday", "mer", "mercredi"),
        ("thu", "thursday", "jeu", "jeudi"),
        ("fri", "friday", "ven", "vendredi"),
        ("sat", "saturday", "sam", "samedi"),
        ("sun", "sunday", "dim", "dimanche"),
    )
):
    for _name in _names:
        _DAY_NAMES[_name] = _index
_EVERY_DAY_NAMES = frozenset({"daily", "everyday", "tlj"})
_SHORT_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_WINDOW_RE = re.compile(
    r"^\s*(?P<days>\S.*?)\s+(?P<start>\d{1,2}[:hH]\d{2})\s*-\s*(?P<end>\d{1,2}[:hH]\d{2})\s*$"
)
_TIME_RE = re.compile(r"^(?P<h>\d{1,2})[:hH](?P<m>\d{2})$")

_EXPECTED_EN = (
    "expected '<days> HH:MM-HH:MM', for example 'mon-fri 08:00-20:00', "
    "'sat,sun 09:00-13:00', 'fri 22:00-02:00' or 'daily 00:00-24:00'"
)
_EXPECTED_FR = (
    "format attendu : '<jours> HH:MM-HH:MM', par exemple 'lun-ven 08:00-20:00', "
    "'sam,dim 09:00-13:00', 'ven 22:00-02:00' ou 'tlj 00:00-24:00'"
)
_DAYS_EN = (
    "use mon tue wed thu fri sat sun (or lun mar mer jeu ven sam dim), "
    "a range like mon-fri, a list like sat,sun, or daily"
)
_DAYS_FR = (
    "utilisez lun mar mer jeu ven sam dim (ou mon tue wed thu fri sat sun), "
    "une plage comme lun-ven, une liste comme sam,dim, ou tlj (tous les jours)"
)


class WindowSyntaxError(ValueError):
    """A schedule window that cannot be read; carries the message in English and French.

    ``str()`` is the English message; the panel shows ``.fr`` to a French-speaking admin.
    """

    def __init__(self, en: str, fr: str) -> None:
        super().__init__(en)
        self.en = en
        self.fr = fr


@dataclass(frozen=True)
class Window:
    """A weekly opening window in the site's wall-clock time.

    Half-open ``[start, end)``. ``end <= start`` means the window crosses midnight and ends
    the next day; it belongs to the day it starts, so "fri 22:00-02:00" covers Friday 22:00
    to Saturday 02:00. ``start == end`` means a full 24 hours from ``start``.
    """

    days: frozenset[int]  # 0 = Monday … 6 = Sunday, like date.weekday()
    start: time
    end: time

    def __post_init__(self) -> None:
        days = frozenset(self.days)
        if not days or not days <= frozenset(range(7)):
            raise ValueError(f"Window days must be a non-empty subset of 0..6, got {self.days!r}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            # The zone is the site's, given to decide(); a zone here would be a second truth.
            raise ValueError("Window times are wall-clock times and must not carry a tzinfo")
        object.__setattr__(self, "days", days)

    @classmethod
    def parse(cls, text: str) -> Window:
        """Read "mon-fri 08:00-20:00", "sam,dim 9h00-13h00", "fri 22:00-02:00", "daily 00:00-24:00".

        Days: English or French names (short or full), ranges (which may wrap: "fri-mon"),
        comma lists, or daily/everyday/tlj. Times: HH:MM or HHhMM; 24:00 is accepted as an
        end and means midnight at the end of the day.
        Raises :class:`WindowSyntaxError` (a ValueError) saying what was expected.
        """
        if not isinstance(text, str):
            raise WindowSyntaxError(
                f"schedule window must be text, got {type(text).__name__}; {_EXPECTED_EN}",
                f"la plage horaire doit être du texte ; {_EXPECTED_FR}",
            )
        match = _WINDOW_RE.match(text)
        if match is None:
            raise WindowSyntaxError(
                f"cannot read schedule window {text!r}: {_EXPECTED_EN}",
                f"plage horaire illisible {text!r} : {_EXPECTED_FR}",
            )
        days = _parse_days(match["days"], text)
        start = _parse_time(match["start"], text, is_end=False)
        end = _parse_time(match["end"], text, is_end=True)
        return cls(days=days, start=start, end=end)

    def __str__(self) -> str:
        """The window in the syntax :meth:`parse` reads, so the panel can show and re-save it."""
        end = "24:00" if self.end == time(0) else self.end.strftime("%H:%M")
        return f"{_format_days(self.days)} {self.start.strftime('%H:%M')}-{end}"


def _parse_days(spec: str, text: str) -> frozenset[int]:
    """Turn "mon-fri", "sat, sun", "fri-mon" or "daily" into weekday numbers."""
    days: set[int] = set()
    for raw in spec.split(","):
        token = raw.strip().lower()
        if not token:
            raise WindowSyntaxError(
                f"empty day in {text!r}: {_DAYS_EN}",
                f"jour manquant dans {text!r} : {_DAYS_FR}",
            )
        if token in _EVERY_DAY_NAMES:
            days.update(range(7))
            continue
        first, sep, last = token.partition("-")
        first, last = first.strip(), last.strip()
        for name in (first, last) if sep else (first,):
            if name not in _DAY_NAMES:
                raise WindowSyntaxError(
                    f"unknown day {name!r} in {text!r}: {_DAYS_EN}",
                    f"jour inconnu {name!r} dans {text!r} : {_DAYS_FR}",
                )
        lo = _DAY_NAMES[first]
        hi = _DAY_NAMES[last] if sep else lo
        # Ranges wrap around the week so "fri-mon" means a long weekend, not an error.
        days.update((lo + i) % 7 for i in range((hi - lo) % 7 + 1))
    return frozenset(days)


def _parse_time(spec: str, text: str, *, is_end: bool) -> time:
    """Turn "08:00" or "8h00" into a time; "24:00" is midnight, allowed only as an end."""
    match = _TIME_RE.match(spec)
    assert match is not None  # _WINDOW_RE only lets through this shape
    hours, minutes = int(match["h"]), int(match["m"])
    if hours == 24 and minutes == 0:
        if is_end:
            return time(0)
        raise WindowSyntaxError(
            f"a window cannot start at 24:00 in {text!r}: start at 00:00 instead",
            f"une plage ne peut pas commencer à 24:00 dans {text!r} : indiquez 00:00",
        )
    if hours > 23 or minutes > 59:
        raise WindowSyntaxError(
            f"invalid time {spec!r} in {text!r}: expected HH:MM from 00:00 to 23:59 "
            "(24:00 is allowed as an end)",
            f"heure invalide {spec!r} dans {text!r} : attendu HH:MM entre 00:00 et 23:59 "
            "(24:00 accepté comme fin)",
        )
    return time(hours, minutes)


def _format_days(days: frozenset[int]) -> str:
    """Compact day list: "daily", "mon-fri", "mon-wed,sat"."""
    if len(days) == 7:
        return "daily"
    parts: list[str] = []
    ordered = sorted(days)
    run_start = prev = ordered[0]
    for day in [*ordered[1:], None]:
        if day is not None and day == prev + 1:
            prev = day
            continue
        if run_start == prev:
            parts.append(_SHORT_DAYS[run_start])
        else:
            parts.append(f"{_SHORT_DAYS[run_start]}-{_SHORT_DAYS[prev]}")
        if day is not None:
            run_start = prev = day
    return ",".join(parts)


# --- plans, closures, holders ----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A membership plan: when its members may come in.

    ``always=True`` opens at any hour (closures still apply, see :func:`decide`); otherwise
    the door opens inside any of ``windows``. A plan with no windows never opens.
    """

    name: str
    label: str
    windows: tuple[Window, ...] = field(default=())
    always: bool = False

    def __post_init__(self) -> None:
        # A list from a config loader would make the dataclass unhashable; normalise it.
        object.__setattr__(self, "windows", tuple(self.windows))


@dataclass(frozen=True)
class Closure:
    """Days the telecentre is closed (holiday, works), ``start`` to ``end`` inclusive."""

    start: date
    end: date
    label: str = ""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(
                f"Closure {self.label!r} ends ({self.end}) before it starts ({self.start})"
            )


@dataclass(frozen=True)
class Holder:
    """What the door knows about the member behind a badge.

    ``valid_from`` and ``valid_until`` are inclusive local dates; ``None`` means no bound.
    ``role`` is "member" or "admin"; any other value is treated as "member", so a typo can
    never widen access.
    """

    member_id: int
    active: bool
    suspended: bool
    role: str
    plan: str | None
    valid_from: date | None
    valid_until: date | None


@dataclass(frozen=True)
class Decision:
    """The answer for one badge tap: open or not, and why."""

    granted: bool
    reason: Reason

    def __post_init__(self) -> None:
        # Catch a logged "granted" row whose reason says denied (or the reverse) at once.
        if self.granted != self.reason.granted:
            raise ValueError(f"Decision(granted={self.granted}) contradicts {self.reason!r}")


# --- time helpers ----------------------------------------------------------------------


def _wall(instant: datetime, tz: tzinfo) -> datetime:
    """The naive wall-clock reading of ``instant`` at the site."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _first_instant_at(wall: datetime, tz: tzinfo) -> datetime:
    """The first instant (UTC) at which the site's clock shows ``wall`` or later.

    An ordinary time has one instant. A repeated time (fall back) gives its first
    occurrence. A skipped time (spring forward) gives the moment the clock jumps past it,
    found by bisection over whole seconds, since zoneinfo does not expose its transitions
    and tz database transitions fall on whole seconds.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return first
    early, late = min(first, second), max(first, second)
    if _wall(early, tz) == wall:
        return early
    lo, hi = int(early.timestamp()), int(late.timestamp()) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), tz) >= wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _window_contains(window: Window, instant: datetime, tz: tzinfo) -> bool:
    """Whether ``instant`` falls inside ``window`` at a site in zone ``tz``."""
    today = _wall(instant, tz).date()
    crosses_midnight = window.end <= window.start
    # A window lasts at most 24 wall-clock hours, so only one started today or yesterday
    # can still be open.
    for start_day in (today - timedelta(days=1), today):
        if start_day.weekday() not in window.days:
            continue
        end_day = start_day + timedelta(days=1) if crosses_midnight else start_day
        opens = _first_instant_at(datetime.combine(start_day, window.start), tz)
        closes = _first_instant_at(datetime.combine(end_day, window.end), tz)
        if opens <= instant < closes:
            return True
    return False


def _require_aware(moment: datetime, name: str) -> None:
    """Refuse naive datetimes: a naive time would silently be read in the box's zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")


# --- the policy ------------------------------------------------------------------------


def in_schedule(plan: Plan, local: datetime) -> bool:
    """Whether ``local`` (aware, in the site's zone) is inside one of the plan's windows.

    An ``always`` plan is in schedule at every instant. The zone is taken from ``local``
    itself, which is why it must be aware: it is what turns wall-clock windows into real
    instants on DST nights.
    """
    _require_aware(local, "local")
    if plan.always:
        return True
    tz = local.tzinfo
    assert tz is not None
    return any(_window_contains(window, local, tz) for window in plan.windows)


def is_closed(closures: Iterable[Closure], local: datetime) -> Closure | None:
    """The closure covering ``local``'s date (in the site's zone), or None.

    Only the local date matters, so a window crossing midnight into a closure day is cut
    at midnight: the late evening before is open, the night after midnight is closed.
    """
    day = local.date()
    for closure in closures:
        if closure.start <= day <= closure.end:
            return closure
    return None


def decide(
    holder: Holder | None,
    *,
    plans: Mapping[str, Plan],
    closures: Sequence[Closure],
    now: datetime,
    tz: ZoneInfo,
) -> Decision:
    """May the member behind this badge come in at ``now``?

    ``now`` is an aware instant in any zone; every date and hour check uses the site's
    wall clock in ``tz``. The checks run in this order and the first failure is the
    reason logged, chosen so the log tells the admin the most useful thing to fix:

    1. no holder → unknown card;
    2. member deleted/archived → inactive, then suspended → suspended: the state of the
       person comes before their dates, since renewing a suspended member would not help;
    3. before ``valid_from`` → not yet valid; after ``valid_until`` → expired (local
       dates, inclusive both ends);
    4. admin → granted always: admins get in on closure days and outside every schedule,
       because they are the ones who open up, fix things and let the repairman in;
    5. no plan, or a plan name the config does not know → no plan;
    6. closure covering today's local date → closed: closures apply to every plan,
       including ``always`` plans, because a holiday closes the building for members;
    7. ``always`` plan → granted always;
    8. inside a window → granted by schedule, otherwise outside schedule.
    """
    _require_aware(now, "now")
    if holder is None:
        return Decision(False, Reason.DENIED_UNKNOWN_CARD)
    if not holder.active:
        return Decision(False, Reason.DENIED_INACTIVE)
    if holder.suspended:
        return Decision(False, Reason.DENIED_SUSPENDED)

    local = now.astimezone(tz)
    today = local.date()
    if holder.valid_from is not None and today < holder.valid_from:
        return Decision(False, Reason.DENIED_NOT_YET_VALID)
    if holder.valid_until is not None and today > holder.valid_until:
        return Decision(False, Reason.DENIED_EXPIRED)

    if holder.role == ROLE_ADMIN:
        return Decision(True, Reason.GRANTED_ALWAYS)

    plan = plans.get(holder.plan) if holder.plan is not None else None
    if plan is None:
        return Decision(False, Reason.DENIED_NO_PLAN)
    if is_closed(closures, local) is not None:
        return Decision(False, Reason.DENIED_CLOSED)
    if plan.always:
        return Decision(True, Reason.GRANTED_ALWAYS)
    if in_schedule(plan, local):
        return Decision(True, Reason.GRANTED_SCHEDULE)
    return Decision(False, Reason.DENIED_OUTSIDE_SCHEDULE)
