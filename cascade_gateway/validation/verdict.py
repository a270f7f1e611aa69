"""What a validator says about a draft: one score per signal, combined into a verdict.

`combine` is a pure function of the scores and the threshold, so a calibrator can replay stored
scores at any threshold without calling a single signal again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A soft signal "passes" at or above this score. Informational only: the combination uses the
# scores themselves, never this flag.
SOFT_PASS = 0.5

# The combined score of a draft that failed a gate. Zero keeps it below every threshold a
# calibrator may try, so replaying stored verdicts never accepts one.
GATE_FAILED_SCORE = 0.0


@dataclass(slots=True)
class SignalScore:
    """One signal's opinion of a draft: a 0..1 score (1 = good) and the reason for it.

    A gate (`gate=True`) is a hard check: when it did not pass, the draft is rejected whatever
    the other signals say, and its `weight` is 0. A soft signal's score enters the weighted mean.
    """

    name: str
    score: float
    weight: float
    gate: bool
    passed: bool
    detail: str

    @classmethod
    def of_gate(cls, name: str, passed: bool, detail: str) -> SignalScore:
        """A gate's result: score 1.0 when it passed, 0.0 when it failed."""
        return cls(name, 1.0 if passed else 0.0, 0.0, True, passed, detail)

    @classmethod
    def of_soft(cls, name: str, score: float, weight: float, detail: str) -> SignalScore:
        """A soft signal's result; the score is clamped to 0..1."""
        score = min(1.0, max(0.0, score))
        return cls(name, score, weight, False, score >= SOFT_PASS, detail)


@dataclass(slots=True)
class Verdict:
    """Accept the draft or escalate: the combined score, the threshold it met or missed, every
    signal that was evaluated, and (when rejected) why."""

    accepted: bool
    score: float
    threshold: float
    signals: tuple[SignalScore, ...]
    reason: str | None

    def signal(self, name: str) -> SignalScore | None:
        """The score reported by the signal called `name`, if it was evaluated."""
        return next((s for s in self.signals if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view; `from_dict` reads it back."""
        return {
            "accepted": self.accepted,
            "score": self.score,
            "threshold": self.threshold,
            "reason": self.reason,
            "signals": [
                {
                    "name": s.name,
                    "score": s.score,
                    "weight": s.weight,
                    "gate": s.gate,
                    "passed": s.passed,
                    "detail": s.detail,
                }
                for s in self.signals
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict `to_dict` wrote."""
        signals = tuple(SignalScore(**s) for s in data["signals"])
        return cls(data["accepted"], data["score"], data["threshold"], signals, data["reason"])


def combine(scores: Sequence[SignalScore], threshold: float) -> Verdict:
    """Fold signal scores into a verdict.

    - Any failed gate rejects, with the first one (in evaluation order) as the reason and the
      score set to `GATE_FAILED_SCORE`.
    - Otherwise the score is the weighted mean of the soft signals (1.0 when there are none or
      their weights sum to 0), and the draft is accepted iff `score >= threshold`.

    Example:
        combine([SignalScore.of_soft("hedging", 0.4, 1.0, "2 hedges")], 0.7).reason
        # 'score 0.40 < threshold 0.70 (weakest: hedging 0.40, 2 hedges)'
    """
    signals = tuple(scores)
    failed = next((s for s in signals if s.gate and not s.passed), None)
    if failed is not None:
        return Verdict(
            accepted=False,
            score=GATE_FAILED_SCORE,
            threshold=threshold,
            signals=signals,
            reason=f"{failed.name}: {failed.detail}",
        )
    soft = [s for s in signals if not s.gate]
    total_weight = sum(s.weight for s in soft)
    score = sum(s.score * s.weight for s in soft) / total_weight if total_weight > 0 else 1.0
    if score >= threshold:
        return Verdict(True, score, threshold, signals, None)
    reason = f"score {score:.2f} < threshold {threshold:.2f}"
    weakest = min((s for s in soft if s.weight > 0), key=lambda s: s.score, default=None)
    if weakest is not None:
        reason += f" (weakest: {weakest.name} {weakest.score:.2f}, {weakest.detail})"
    return Verdict(False, score, threshold, signals, reason)
