"""The circuit breaker's states, driven by a hand-moved clock."""

from __future__ import annotations

from cascade_gateway.resilience.breaker import BreakerSettings, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **settings) -> CircuitBreaker:
    return CircuitBreaker("m", BreakerSettings(**settings), clock=clock)


def test_opens_after_n_consecutive_failures():
    b = breaker(Clock(), failure_threshold=3)

    for _ in range(3):
        assert b.allow()
        b.record(False)

    assert b.state == "open" and not b.allow()


def test_a_success_resets_the_consecutive_count():
    b = breaker(Clock(), failure_threshold=3)
    for ok in (False, False, True, False, False):
        b.record(ok)

    assert b.state == "closed"


def test_opens_on_error_rate_over_the_window():
    b = breaker(Clock(), failure_threshold=100, error_rate=0.5, min_calls=10)
    for i in range(10):
        b.record(i % 2 == 0)  # alternate: never 2 failures in a row, 50 % failing

    assert b.state == "open"


def test_old_calls_leave_the_window():
    clock = Clock()
    b = breaker(clock, failure_threshold=100, error_rate=0.5, min_calls=4, window_s=10)
    for _ in range(3):
        b.record(False)
    clock.now = 20
    for _ in range(3):
        b.record(True)

    b.record(False)

    assert b.state == "closed"


def test_half_open_after_the_open_period_lets_one_probe_through():
    clock = Clock()
    b = breaker(clock, failure_threshold=1, open_s=30)
    b.record(False)
    clock.now = 29
    assert not b.allow()
    clock.now = 30

    assert b.state == "half_open"
    assert b.allow() and not b.allow()


def test_a_successful_probe_closes_and_a_failed_one_reopens():
    clock = Clock()
    b = breaker(clock, failure_threshold=1, open_s=30)
    b.record(False)
    clock.now = 30
    b.allow()
    b.record(False)
    assert b.state == "open" and b.retry_after() == 30
    clock.now = 60
    b.allow()

    b.record(True)

    assert b.state == "closed"


def test_state_changes_are_published():
    seen = []
    b = CircuitBreaker(
        "m", BreakerSettings(failure_threshold=1), on_change=lambda n, s: seen.append((n, s))
    )

    b.record(False)

    assert seen == [("m", "open")]


def test_under_load_a_run_of_failures_below_the_error_rate_does_not_open():
    b = breaker(Clock(), failure_threshold=3, error_rate=0.5, min_calls=10)
    for _ in range(20):
        b.record(True)

    for _ in range(5):
        b.record(False)

    assert b.state == "closed"


def test_the_error_rate_counts_every_call_in_a_busy_window():
    clock = Clock()
    b = breaker(clock, failure_threshold=10**6, error_rate=0.5, min_calls=10, window_s=30)
    for i in range(60_000):  # 2,000 calls a second for 30 s, a third failing
        clock.now = i / 2000
        b.record(i % 3 != 0)
    assert b.state == "closed"

    for i in range(20_000):  # then every call fails, until half the window has
        clock.now = 30 + i / 2000
        b.record(False)
        if b.state == "open":
            break

    assert b.state == "open"
    assert 5 < clock.now - 30 < 10  # a third of the calls leaving, all new ones failing


def test_a_closed_breaker_forgets_the_failures_that_opened_it():
    clock = Clock()
    b = breaker(clock, failure_threshold=100, error_rate=0.5, min_calls=4, open_s=30)
    for ok in (True, False, True, False):
        b.record(ok)
    assert b.state == "open"
    clock.now = 30
    b.allow()
    b.record(True)  # the probe

    for ok in (True, True, False):
        b.record(ok)

    assert b.state == "closed"
