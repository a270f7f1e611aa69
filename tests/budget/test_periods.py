"""Budget periods turn over on calendar boundaries in the configured timezone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from cascade_gateway.budget.periods import period_key, period_reset

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def test_day_period_is_named_by_local_date():
    assert period_key("day", datetime(2026, 11, 23, 23, 59, tzinfo=UTC)) == "2026-11-23"


def test_month_period_resets_on_the_first_of_next_month():
    reset = period_reset("month", datetime(2026, 12, 31, 12, 0, tzinfo=UTC))

    assert reset == datetime(2027, 1, 1, tzinfo=UTC)


def test_day_reset_is_local_midnight_across_a_dst_change():
    # 2026-03-29 is 23 hours long in Paris.
    reset = period_reset("day", datetime(2026, 3, 29, 10, 0, tzinfo=PARIS))

    assert reset == datetime(2026, 3, 30, 0, 0, tzinfo=PARIS)
    assert reset.utcoffset().total_seconds() == 7200


def test_total_budget_never_resets():
    now = datetime(2026, 11, 23, tzinfo=UTC)

    assert period_key("total", now) == "total"
    assert period_reset("total", now) is None


def test_the_same_instant_falls_in_different_days_in_different_timezones():
    instant = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)

    assert period_key("day", instant) == "2026-11-23"
    assert period_key("day", instant.astimezone(PARIS)) == "2026-11-24"
