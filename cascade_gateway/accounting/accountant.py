"""Accounting, the last stage of every request: the ledger row and the key's token count."""

from __future__ import annotations

import logging

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.cascade.trace import Trace
from cascade_gateway.ratelimit import RateLimiter

log = logging.getLogger("cascade_gateway.accounting")


class Accountant:
    """The engine's trace sink."""

    def __init__(self, ledger: Ledger, limiter: RateLimiter) -> None:
        self._ledger = ledger
        self._limiter = limiter

    async def record(self, trace: Trace) -> None:
        """Write the request to the ledger and count its tokens against the key's TPM."""
        try:
            await self._ledger.record(trace)
        except Exception:
            # The request already happened; losing its record silently would be worse than a
            # loud log line that carries everything needed to re-enter it.
            log.exception("ledger write failed; trace follows: %s", trace.to_dict())
        key = trace.key
        if key is not None and key.tpm is not None:
            used = trace.input_tokens + trace.output_tokens
            await self._limiter.spend_tokens(key.id, key.tpm, used)
