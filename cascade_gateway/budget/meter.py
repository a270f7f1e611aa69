"""The per-request budget meter the cascade engine calls around every upstream call.

Before a call it reserves the call's worst case — the prompt (counted, plus a margin for
tokenizers that count more than ours) at the input price, and `max_tokens` at the output price
— and makes sure the upstream is asked for no more than `max_tokens`. After the call it settles
the reservation to the real cost, or releases it. The spend recorded for a budget therefore
never passes its limit, whatever the concurrency. Each reservation has a lease
(`budgets.reservation_lease_s`), renewed while its call runs: if this process dies before
settling it, another releases it once the lease lapses.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from cascade_gateway import tokens
from cascade_gateway.budget.counters import Counters, Lease, Scope, to_nano
from cascade_gateway.budget.leases import Leases
from cascade_gateway.config import ResolvedModel
from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import BudgetExceeded

# Our tokenizer is OpenAI's; others (Anthropic's, Llama's) may count a prompt a little higher.
PROMPT_MARGIN = 1.2
PROMPT_SLACK_TOKENS = 16

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Hold:
    """A reservation: what was put aside, where, and the request to send under it."""

    scopes: tuple[Scope, ...]
    amount_nano: int
    request: ChatRequest
    lease: Lease | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """A call's real cost, to be charged in place of its reservation."""

    scopes: tuple[Scope, ...]
    lease: Lease
    reserved_nano: int
    actual_nano: int

    async def apply(self, counters: Counters) -> None:
        await counters.settle(self.scopes, self.lease, self.reserved_nano, self.actual_nano)

    def describe(self) -> dict[str, object]:
        """Its figures, for a log line."""
        return {
            "scopes": [f"{scope.name}/{scope.period}" for scope in self.scopes],
            "lease": self.lease.id,
            "reserved_nano": self.reserved_nano,
            "actual_nano": self.actual_nano,
        }


class Meter:
    """What the engine sees: reserve, settle, and whether to degrade instead of refusing."""

    degrade: bool = False

    async def reserve(self, model: ResolvedModel, request: ChatRequest) -> Hold:
        return Hold(scopes=(), amount_nano=0, request=request)

    async def settle(self, hold: Hold, cost_usd: float) -> None:
        return None


UNMETERED = Meter()


class BudgetMeter(Meter):
    """Draws every call of one request on the given budget scopes."""

    def __init__(
        self,
        counters: Counters,
        scopes: Sequence[Scope],
        *,
        default_max_tokens: int,
        leases: Leases,
        unsettled: Callable[[Settlement], None],
        degrade: bool = False,
        describe: dict[str, str] | None = None,
    ) -> None:
        self._counters = counters
        self._scopes = tuple(scopes)
        self._default_max_tokens = default_max_tokens
        self._leases = leases
        # Where a settlement the counters' store refused goes, to be retried.
        self._unsettled = unsettled
        self.degrade = degrade
        # Human names of scopes, for the 402 message.
        self._describe = describe or {}
        # Every tier of a cascade sees the same prompt: counted once per request.
        self._prompt: tuple[tuple[int, int], int] | None = None

    async def reserve(self, model: ResolvedModel, request: ChatRequest) -> Hold:
        max_tokens = request.max_tokens or model.price.max_output_tokens or self._default_max_tokens
        bounded = request if request.max_tokens else replace(request, max_tokens=max_tokens)
        prompt = self._prompt_tokens(request)
        worst_prompt = math.ceil(prompt * PROMPT_MARGIN) + PROMPT_SLACK_TOKENS
        amount = to_nano(model.price.cost(worst_prompt, max_tokens))
        lease = self._leases.new()
        refused = await self._counters.reserve(self._scopes, amount, lease)
        if refused is not None:
            what = self._describe.get(refused.name, refused.name)
            raise BudgetExceeded(
                f"Budget exhausted for {what} in period {refused.period}: this request to "
                f"`{model.alias}` could cost up to ${amount / 1e9:.6f} and the remaining budget "
                "cannot cover it. Lower max_tokens, wait for the period to reset, or ask for a "
                "larger budget."
            )
        self._leases.hold(lease)
        return Hold(scopes=self._scopes, amount_nano=amount, request=bounded, lease=lease)

    async def settle(self, hold: Hold, cost_usd: float) -> None:
        """Charge the call's real cost in place of its reservation.

        Never raises for the counters' store: the call was made and paid for, and its answer
        must still reach the client. A settlement the store refuses (an outage) is handed on
        to be retried (`Budgets.tidy`); until it lands, the budget is held for the
        reservation, more than was spent, never less (unless the store stays out of this
        process's reach past the lease while other replicas reach it: they release it then).
        """
        assert hold.lease is not None
        self._leases.end(hold.lease)
        settlement = Settlement(hold.scopes, hold.lease, hold.amount_nano, to_nano(cost_usd))
        try:
            await settlement.apply(self._counters)
        except Exception:
            log.warning(
                "budget not settled yet: the reservation stays held until a retry lands",
                exc_info=True,
                extra={"fields": settlement.describe()},
            )
            self._unsettled(settlement)

    def _prompt_tokens(self, request: ChatRequest) -> int:
        # The tiers' requests share their message and tool lists (they differ in parameters).
        key = (id(request.messages), id(request.tools))
        if self._prompt is None or self._prompt[0] != key:
            self._prompt = (key, tokens.count_messages(request.messages, request.tools))
        return self._prompt[1]
