"""The model's own confidence, read from the token logprobs of its answer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation.verdict import SignalScore

# Geometric-mean token probability mapped linearly to 0..1 between these two points: a model
# choosing its tokens at 0.4 on average is guessing; at 0.9 or above it is sure.
NO_CONFIDENCE_P = 0.4
FULL_CONFIDENCE_P = 0.9
# Tokens below this probability were near coin flips among many options; a few of them can
# carry the one fact that matters while barely moving the mean, so they cost extra.
LOW_P = 0.1
LOW_P_PENALTY = 2.0
_LOW_LOGPROB = math.log(LOW_P)


@dataclass(frozen=True, slots=True)
class Logprob:
    """Soft: confidence from token logprobs (applies only when the answer carries them).

    g = exp(mean logprob), the geometric-mean token probability;
    base = clamp((g - NO_CONFIDENCE_P) / (FULL_CONFIDENCE_P - NO_CONFIDENCE_P));
    score = base * (1 - LOW_P_PENALTY * f), f = the fraction of tokens with p < LOW_P.
    """

    weight: float = 1.0
    name: str = field(default="logprob", init=False)
    # The validator asks the draft's upstream for logprobs only for a chain that reads them.
    needs_logprobs: bool = field(default=True, init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        logprobs = [t.logprob for t in completion.logprobs or ()]
        if not logprobs:
            return None
        geometric_mean = math.exp(sum(logprobs) / len(logprobs))
        low = sum(1 for lp in logprobs if lp < _LOW_LOGPROB)
        base = (geometric_mean - NO_CONFIDENCE_P) / (FULL_CONFIDENCE_P - NO_CONFIDENCE_P)
        base = min(1.0, max(0.0, base))
        score = base * max(0.0, 1.0 - LOW_P_PENALTY * low / len(logprobs))
        detail = f"mean p={geometric_mean:.2f}, {low}/{len(logprobs)} tokens below p={LOW_P}"
        return SignalScore.of_soft(self.name, score, self.weight, detail)
