"""A chain of signals judged as one: run them in order, combine their scores into a verdict."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import fields
from typing import Any, Protocol

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation.signals import (
    Complexity,
    Empty,
    Hedging,
    JsonFormat,
    LengthFit,
    Logprob,
    Refusal,
    ToolCalls,
    Truncation,
)
from cascade_gateway.validation.signals.arithmetic import Arithmetic
from cascade_gateway.validation.signals.learned import Learned
from cascade_gateway.validation.verdict import SignalScore, Verdict, combine

logger = logging.getLogger(__name__)


class Signal(Protocol):
    """Scores one aspect of a draft; returns None when it does not apply to the request.

    May be sync or async (return an awaitable): the validator awaits only what needs it.
    A signal that reads the answer's token logprobs says so with `needs_logprobs = True`: the
    drafts are asked for them only when a signal of the chain does.

    A signal that reads only the request (a prior on how hard the question is) may also offer
    `score_query(request) -> SignalScore | None`, synchronous: the cascade then scores it while
    the draft is in flight (`Validator.score_query_soon`), off the path from the draft's answer
    to the client, and does not call the signal again.

    Example:
        class Shouting:
            name = "shouting"

            def __call__(self, request, completion):
                loud = completion.text.isupper()
                return SignalScore.of_soft(self.name, 0.0 if loud else 1.0, 1.0, f"{loud=}")
    """

    name: str

    def __call__(
        self, request: ChatRequest, completion: Completion
    ) -> SignalScore | Awaitable[SignalScore | None] | None: ...


class Validator:
    """Runs its signals in order and combines their scores against `threshold`.

    The first failed gate ends the run: the verdict is settled, and a later signal may be
    expensive (a judge model). A signal that raises counts as a failed gate, so a draft nobody
    could judge is escalated rather than served.

    Example:
        verdict = await build_validator(0.7).validate(request, completion)
        if not verdict.accepted:
            print(verdict.reason)  # refusal: "i can't help"
    """

    def __init__(self, signals: Sequence[Signal], threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.signals = tuple(signals)
        self.threshold = threshold
        self.needs_logprobs = any(getattr(s, "needs_logprobs", False) for s in self.signals)
        self._query_signals = tuple(
            (index, signal)
            for index, signal in enumerate(self.signals)
            if callable(getattr(signal, "score_query", None))
        )

    def score_query_soon(self, request: ChatRequest) -> EarlyScores | None:
        """Score the signals that read only the request on the event loop's next turn: called
        just before the draft is awaited, they run while it is in flight. None when the chain
        has no such signal."""
        if not self._query_signals:
            return None
        return EarlyScores(self._query_signals, request)

    async def validate(
        self, request: ChatRequest, completion: Completion, early: EarlyScores | None = None
    ) -> Verdict:
        """Judge one completion of `request`, with the query's scores from `early` if they
        are ready (else scored now)."""
        known = early.take() if early is not None else _NOTHING_KNOWN
        scores: list[SignalScore] = []
        for index, signal in enumerate(self.signals):
            try:
                outcome: SignalScore | Awaitable[SignalScore | None] | None
                if index in known:
                    scored = known[index]
                    if isinstance(scored, Exception):
                        raise scored
                    outcome = scored
                else:
                    outcome = signal(request, completion)
                # Sync signals return their score directly and never touch the event loop.
                if outcome is None or isinstance(outcome, SignalScore):
                    score = outcome
                else:
                    score = await outcome
            except Exception as exc:
                logger.exception("validation signal %r failed", signal.name)
                detail = f"signal raised {type(exc).__name__}: {exc}"
                score = SignalScore.of_gate(signal.name, False, detail)
            if score is None:
                continue
            scores.append(score)
            if score.gate and not score.passed:
                break
        return combine(scores, self.threshold)


# A signal's score, None (does not apply), or what it raised: the same as if it ran in line.
_Outcome = SignalScore | None | Exception
_NOTHING_KNOWN: Mapping[int, _Outcome] = {}


class EarlyScores:
    """The scores of a chain's query-only signals for one request, computed by a callback on
    the event loop's next turn; if that turn has not come when the validator asks (the draft
    answered without waiting), nothing is known yet and the validator scores them itself."""

    __slots__ = ("_handle", "_known", "_request", "_signals")

    def __init__(self, signals: tuple[tuple[int, Any], ...], request: ChatRequest) -> None:
        self._signals = signals
        self._request = request
        self._known: dict[int, _Outcome] = {}
        self._handle: asyncio.Handle | None = asyncio.get_running_loop().call_soon(self._score)

    def _score(self) -> None:
        self._handle = None
        for index, signal in self._signals:
            try:
                self._known[index] = signal.score_query(self._request)
            except Exception as exc:
                self._known[index] = exc

    def take(self) -> Mapping[int, _Outcome]:
        """What is known by now (by signal index); a callback yet to run is cancelled."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        return self._known


# Gates first (cheapest, and the first failure is the reason given), then soft signals. Each is
# a dataclass whose init fields are its options.
_BUILT_IN: dict[str, type[Any]] = {
    "truncation": Truncation,
    "empty": Empty,
    "refusal": Refusal,
    "json": JsonFormat,
    "tool_calls": ToolCalls,
    "hedging": Hedging,
    "logprob": Logprob,
    "arithmetic": Arithmetic,
    "complexity": Complexity,
    "length_fit": LengthFit,
    "learned": Learned,
}
SIGNAL_NAMES: tuple[str, ...] = tuple(_BUILT_IN)
# Off unless a cascade enables them: signals trained on one kind of question.
OPT_IN: frozenset[str] = frozenset({"learned"})


def build_validator(
    threshold: float = 0.7, signals: Mapping[str, Mapping[str, Any]] | None = None
) -> Validator:
    """The built-in signals, configured by per-signal settings from a cascade's config.

    Every signal accepts `enabled` (bool); soft ones also take `weight` (a number >= 0).
    Signals in `OPT_IN` run only when enabled explicitly.
    Unknown signal names, unknown options and bad values raise one ValueError naming them all.

    Example:
        build_validator(0.8, {"logprob": {"enabled": False}, "hedging": {"weight": 2.0}})
    """
    settings = dict(signals or {})
    problems = [
        f"unknown signal {name!r} (known: {', '.join(SIGNAL_NAMES)})"
        for name in settings
        if name not in _BUILT_IN
    ]
    chain: list[Signal] = []
    for name, factory in _BUILT_IN.items():
        options = settings.get(name, {})
        if not isinstance(options, Mapping):
            problems.append(f"{name}: settings must be a mapping, got {options!r}")
            continue
        accepted = ["enabled", *(f.name for f in fields(factory) if f.init)]
        found = [
            problem
            for key, value in options.items()
            if (problem := _option_problem(name, key, value, accepted)) is not None
        ]
        problems.extend(found)
        if not found and options.get("enabled", name not in OPT_IN):
            chain.append(factory(**{k: v for k, v in options.items() if k != "enabled"}))
    if problems:
        raise ValueError("; ".join(problems))
    return Validator(chain, threshold)


def _option_problem(signal: str, key: Any, value: Any, accepted: list[str]) -> str | None:
    if key not in accepted:
        return f"{signal}: unknown option {key!r} (options: {', '.join(accepted)})"
    if key == "enabled":
        return None if isinstance(value, bool) else f"{signal}.enabled must be true or false"
    # Every other option is a weight.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        return f"{signal}.{key} must be a number >= 0, got {value!r}"
    return None
