"""The leases of this process's reservations whose calls are still running.

A reservation's lease is short (`budgets.reservation_lease_s`, a minute by default) so that
one left behind by a replica killed mid-call frees its budget soon. A call may run longer than
that, so while it runs its holder renews the lease (`Budgets.tidy`, every few seconds): a
lease lapses only when nobody is left to renew it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cascade_gateway.budget.counters import Lease
from cascade_gateway.ids import new_id


class Leases:
    """New leases, the ones held (reserved and not yet settled), and which are due a renewal."""

    def __init__(self, lease_s: float, wall: Callable[[], float]) -> None:
        self.lease_s = lease_s
        self._wall = wall
        self._expiry: dict[str, float] = {}  # lease id -> when it lapses, as last recorded

    def new(self) -> Lease:
        """A lease for a reservation about to be made (held once `hold` is called)."""
        return Lease(new_id(), self._wall() + self.lease_s)

    def hold(self, lease: Lease) -> None:
        """The reservation under `lease` was made: renew it until `end`."""
        self._expiry[lease.id] = lease.expires_at

    def end(self, lease: Lease) -> None:
        """The reservation under `lease` is being settled: stop renewing it."""
        self._expiry.pop(lease.id, None)

    @property
    def held(self) -> int:
        """How many leases are held (and renewed when due)."""
        return len(self._expiry)

    def due(self) -> tuple[list[str], float]:
        """The leases within half their length of lapsing, and when they would lapse if
        renewed now."""
        now = self._wall()
        soon = now + self.lease_s / 2
        return [id_ for id_, expiry in self._expiry.items() if expiry < soon], now + self.lease_s

    def renewed(self, ids: Iterable[str], expires_at: float) -> None:
        """Record a renewal, for the leases not ended while it was being written."""
        for id_ in ids:
            if id_ in self._expiry:
                self._expiry[id_] = expires_at
