"""Identifiers for requests and ledger rows: unique, time-ordered, not secret."""

from __future__ import annotations

import random
import time

_RAND_B = (1 << 62) - 1


def new_id() -> str:
    """A UUIDv7 as 32 hex digits: the milliseconds since the epoch, then 74 random bits.

    Time first, so ids made close together sort together: the ledger's indexes on them grow
    at one end instead of taking inserts at random pages, which slowed every write as the
    ledger grew. Random bits from the process's PRNG (reseeded at fork), not a system call per
    id: the ids are not secret (traces are only shown to the key that paid for them).
    """
    millis = time.time_ns() // 1_000_000
    rand = random.getrandbits(74)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & _RAND_B)
    return f"{value:032x}"
