"""Which of this process's leases are held, and which are due a renewal."""

from __future__ import annotations

from cascade_gateway.budget.counters import Lease
from cascade_gateway.budget.leases import Leases
from tests.budget.conftest import Wall


def one_held(wall: Wall) -> tuple[Leases, Lease]:
    """One-minute leases, one of them held since `wall.now`."""
    leases = Leases(60, wall)
    lease = leases.new()
    leases.hold(lease)
    return leases, lease


def test_a_new_lease_lapses_one_lease_length_from_now():
    assert Leases(60, Wall()).new().expires_at == 1_060.0


def test_a_lease_is_not_renewed_until_it_is_held():
    wall = Wall()
    leases = Leases(60, wall)
    leases.new()
    wall.now += 59

    assert leases.due()[0] == []


def test_a_held_lease_is_due_within_half_its_length_of_lapsing():
    wall = Wall()
    leases, lease = one_held(wall)

    wall.now += 29
    early = leases.due()
    wall.now += 2
    due, expires_at = leases.due()

    assert early[0] == []
    assert (due, expires_at) == ([lease.id], 1_091.0)


def test_a_renewed_lease_is_not_due_again_until_half_its_new_length_is_gone():
    wall = Wall()
    leases, lease = one_held(wall)
    wall.now += 31

    leases.renewed(*leases.due())

    assert leases.due()[0] == []
    wall.now += 31
    assert leases.due()[0] == [lease.id]


def test_an_ended_lease_is_never_due_even_if_a_renewal_raced_its_end():
    wall = Wall()
    leases, lease = one_held(wall)
    wall.now += 31
    due, expires_at = leases.due()

    leases.end(lease)
    leases.renewed(due, expires_at)

    assert leases.held == 0
    wall.now += 1_000
    assert leases.due()[0] == []
