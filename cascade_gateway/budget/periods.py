"""Budget periods on calendar boundaries, in a configurable timezone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["day", "month", "total"]


def period_key(period: Period, now: datetime) -> str:
    """The name of the period `now` falls in: `2026-11-23`, `2026-11` or `total`."""
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    return "total"


def period_start(period: Period, now: datetime) -> datetime | None:
    """When the current period began (None: a total budget never resets)."""
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def period_reset(period: Period, now: datetime) -> datetime | None:
    """When the next period begins (None: never)."""
    start = period_start(period, now)
    if start is None:
        return None
    if period == "day":
        # Add a calendar day in local time, so DST changes do not shift the boundary.
        following = (start + timedelta(days=1, hours=12)).date()
        return start.replace(year=following.year, month=following.month, day=following.day)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def now_in(timezone: str) -> datetime:
    """The current time in `timezone` (an IANA name such as `UTC` or `Europe/Paris`)."""
    return datetime.now(ZoneInfo(timezone))
