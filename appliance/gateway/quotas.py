"""Quotas as plain data: whose they are, the local day, restore, extend, reset.

The kernel counts (an nftables `quota` per owner); these functions decide what the
counters should be, so they can be tested with any clock and any stored state.

A day's total for an owner is `base_bytes + kernel used`. `base_bytes` is normally 0;
it holds what was counted before an extension reset a spent kernel counter (a spent
quota's counter keeps adding the packets it drops, and nft reports it capped at the
limit, so an extension restarts the counter rather than trusting it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from appliance.gateway.ruleset import DeviceBytes, Owner, OwnerQuota, QuotaReading

CLASSES = ("guest", "member")


@dataclass(frozen=True)
class ClassPolicy:
    """What one class of user gets each day (from `[gateway.guest]`, `[gateway.member]`)."""

    daily_quota_bytes: int
    down_kbit: int
    up_kbit: int
    when_spent: str = "block"


@dataclass(frozen=True)
class Ledger:
    """One owner's quota for one local day, as stored between restarts."""

    owner: Owner
    day: dt.date
    limit_bytes: int  # the kernel quota's limit
    used_bytes: int  # the kernel quota's count
    policy: str
    base_bytes: int = 0

    @property
    def total_used(self) -> int:
        return self.base_bytes + self.used_bytes

    @property
    def total_limit(self) -> int:
        return self.base_bytes + self.limit_bytes

    @property
    def remaining(self) -> int:
        return max(0, self.limit_bytes - self.used_bytes)

    @property
    def spent(self) -> bool:
        return self.used_bytes >= self.limit_bytes

    def quota(self) -> OwnerQuota:
        return OwnerQuota(
            self.owner, self.limit_bytes, min(self.used_bytes, self.limit_bytes), self.policy
        )


def owner_class(owner: Owner) -> str:
    """The policy class an owner's devices get: vouchers are guests with their own quota."""
    return "member" if owner.kind == "member" else "guest"


def local_day(now: float, tz: ZoneInfo) -> dt.date:
    """The local date at `now` (quotas are daily in the site's time zone)."""
    return dt.datetime.fromtimestamp(now, tz).date()


def next_midnight(now: float, tz: ZoneInfo) -> float:
    """The timestamp of the next local midnight (23 or 25 hours away on DST days)."""
    tomorrow = local_day(now, tz) + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0, 0), tz).timestamp()


def new_ledger(
    owner: Owner, day: dt.date, policy: ClassPolicy, limit_bytes: int | None = None
) -> Ledger:
    """An owner's first quota of the day (a voucher's limit comes from its batch)."""
    limit = policy.daily_quota_bytes if limit_bytes is None else limit_bytes
    return Ledger(owner, day, limit, 0, policy.when_spent)


def restore(
    stored: Iterable[Ledger], kernel: Mapping[Owner, QuotaReading], today: dt.date
) -> list[Ledger]:
    """The ledgers to load after a restart: today's only, with the freshest count.

    After a reboot the kernel has nothing and the stored count (at most one persist
    interval old) is used. After a service restart the kernel table survived and its
    count is newer than the stored one, unless the counter was reset since (a reset
    only ever happens with a new day or an extension, both stored right away).
    """
    out = []
    for ledger in stored:
        if ledger.day != today:
            continue
        reading = kernel.get(ledger.owner)
        if reading is not None and reading.limit_bytes == ledger.limit_bytes:
            ledger = replace(ledger, used_bytes=max(ledger.used_bytes, reading.used_bytes))
        out.append(ledger)
    return out


def observe(ledger: Ledger, reading: QuotaReading | None) -> Ledger:
    """Fold the kernel's latest count into the ledger (counts only grow within a day)."""
    if reading is None:
        return ledger
    return replace(ledger, used_bytes=max(ledger.used_bytes, reading.used_bytes))


@dataclass(frozen=True)
class Extension:
    """How to give an owner `extra` more bytes today: in place, or by restarting the counter."""

    ledger: Ledger
    reset_counter: bool


def extend(ledger: Ledger, extra_bytes: int) -> Extension:
    """Plan an extension by `extra_bytes` from what is left now.

    Not spent: raise the kernel limit in place (the kernel keeps its exact count).
    Spent: the kernel's count includes dropped packets and is reported capped, so
    reset it and give a fresh limit of `extra_bytes` in the same transaction; the day's
    total keeps the spent limit in `base_bytes`.
    """
    if isinstance(extra_bytes, bool) or not isinstance(extra_bytes, int) or extra_bytes <= 0:
        raise ValueError("extra_bytes must be a positive whole number")
    if ledger.spent:
        return Extension(
            replace(
                ledger,
                base_bytes=ledger.base_bytes + ledger.limit_bytes,
                limit_bytes=extra_bytes,
                used_bytes=0,
            ),
            reset_counter=True,
        )
    return Extension(replace(ledger, limit_bytes=ledger.limit_bytes + extra_bytes), False)


def new_day(ledger: Ledger, day: dt.date, limit_bytes: int) -> Ledger:
    """The ledger after midnight: nothing used, the owner's default limit back."""
    return Ledger(ledger.owner, day, limit_bytes, 0, ledger.policy, 0)


# --- a device session's bytes (the legal log) and its current rate ----------------------

RATE_MIN_SECONDS = 1.0  # reads closer than this keep the previous rate


def restore_counted(stored: DeviceBytes, kernel: DeviceBytes | None) -> DeviceBytes:
    """A session's bytes after a restart: the fresher of the database and the kernel.

    The kernel's counters keep counting while the gateway is down (the table stays), so
    they are ahead of the last save; after a reboot they are gone and the database (at
    most `persist_seconds` old) is what is left. Each direction only ever grows.
    """
    if kernel is None:
        return stored
    return DeviceBytes(max(stored.up, kernel.up), max(stored.down, kernel.down))


@dataclass(frozen=True)
class RateSample:
    """The last reading a rate was computed from: when (monotonic seconds) and what."""

    at: float
    counted: DeviceBytes


def rate_bps(
    before: RateSample, after: RateSample
) -> tuple[int, int] | None:
    """(down, up) in bit/s between two readings, None if they are too close together.

    A counter that went backwards (a new session with the same MAC) gives no rate.
    """
    seconds = after.at - before.at
    if seconds < RATE_MIN_SECONDS:
        return None
    down = after.counted.down - before.counted.down
    up = after.counted.up - before.counted.up
    if down < 0 or up < 0:
        return None
    return round(down * 8 / seconds), round(up * 8 / seconds)
