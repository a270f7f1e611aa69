"""Request and ledger ids: UUIDv7, unique, in the order they were made."""

from __future__ import annotations

import time
import uuid

from cascade_gateway.ids import new_id


def test_an_id_is_a_version_7_uuid_in_32_hex_digits():
    made = new_id()

    assert len(made) == 32
    parsed = uuid.UUID(hex=made)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_ids_start_with_the_time_they_were_made():
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000

    assert before <= int(made[:12], 16) <= after


def test_ids_made_later_sort_later_and_never_repeat():
    earlier = [new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = [new_id() for _ in range(1000)]

    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 2000
