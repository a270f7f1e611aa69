"""Is the draft good enough to serve? Signals score it; the verdict accepts it or escalates.

Built-in signals, in evaluation order (`SIGNAL_NAMES`):

    gate   truncation   finish_reason "length" or "content_filter"
    gate   empty        no text (beyond whitespace) and no tool call
    gate   refusal      "I can't help with ...", "As an AI ..." starting one of the first
                        two sentences; "I'm sorry, but" opening the answer
    gate   json         JSON mode: raw JSON, an object, valid against the given schema
    gate   tool_calls   offered tool, JSON-object arguments valid against its parameters
    soft   hedging      weight 1.0   density of "I'm not sure", "might", "I think", ...
    soft   logprob      weight 1.0   geometric-mean token probability, low-probability tokens
    soft   complexity   weight 0.5   a prior from the query alone: hard questions score lower
    soft   length_fit   weight 0.5   answer too short for a question with several parts
    soft   arithmetic   weight 1.0   re-checks every "expression = value" the answer writes out
    soft   learned      opt-in       P(correct) from weights trained on math word problems

A signal returns None when it does not apply (no logprobs, no JSON mode, ...) and is left out.
The first failed gate rejects and ends the run (score 0.0); otherwise the score is the weighted
mean of the soft scores (1.0 when none apply) and the draft is accepted iff score >= threshold.
`combine` is that rule alone, so stored scores can be replayed at any threshold.
"""

from cascade_gateway.validation.validator import (
    SIGNAL_NAMES,
    EarlyScores,
    Signal,
    Validator,
    build_validator,
)
from cascade_gateway.validation.verdict import SignalScore, Verdict, combine

__all__ = [
    "SIGNAL_NAMES",
    "EarlyScores",
    "Signal",
    "SignalScore",
    "Validator",
    "Verdict",
    "build_validator",
    "combine",
]
