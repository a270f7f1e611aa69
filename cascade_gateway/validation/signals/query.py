"""Signals that look at the question: how hard it is, and whether the answer is long enough."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import islice

from cascade_gateway.domain import ChatRequest, Completion, last_user_text
from cascade_gateway.validation.signals.phrases import Phrases
from cascade_gateway.validation.verdict import SignalScore

# Questions and instructions sit at the ends of a long prompt, so reading only this many
# characters from each end keeps the cost bounded when a whole document is pasted in.
_SAMPLE_CHARS = 1000


def query_text(request: ChatRequest) -> str:
    """The last user message's text (its text parts, when the content is a list); only its
    first and last `_SAMPLE_CHARS` characters when it is longer than twice that."""
    text = last_user_text(request.messages)
    if len(text) > 2 * _SAMPLE_CHARS:
        return text[:_SAMPLE_CHARS] + "\n" + text[-_SAMPLE_CHARS:]
    return text


# A question mark ends a question only before whitespace or the end ("?a=1" in a URL does not).
_QUESTION = re.compile(r"\?(?=\s|$)")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022]|\(?[a-z]\))\s+\S", re.MULTILINE)


def query_parts(text: str) -> int:
    """How many things the query asks: its questions or list items, whichever is more (>= 1)."""
    return max(1, len(_QUESTION.findall(text)), len(_LIST_ITEM.findall(text)))


_REASONING = Phrases(
    (
        *("prove", "proof", "derive", "derivation", "step[- ]by[- ]step", "explain why"),
        *("analy[sz]e", "analysis", "compare", "contrast", "trade-?offs?", "evaluate"),
        *("implement", "design", "architect", "optimi[sz]e", "debug", "refactor"),
        *("algorithm", "complexity", "theorem", "lemma", "integral", "derivative"),
        *("calculate", "compute", "solve", "justify", "estimate"),
    )
)
_CODE_BLOCK = re.compile(r"```")
# Code-like text outside a fence: `inline code`, a line ending in { } or ;, "=>", "::", a
# method call, or a definition. Separate patterns that each start with a literal scan several
# times faster than one alternation.
_INLINE_CODE = (
    re.compile(r"`[^`\n]+`"),
    re.compile(r"[{};][ \t]*$", re.MULTILINE),
    re.compile(r"=>|::"),
    re.compile(r"\.\w+\("),
    re.compile(r"(?:def|fn|func|function) \w+\("),
)
# LaTeX, $inline math$, arithmetic between numbers, "= 12" or "^2", common functions.
_MATH = re.compile(
    r"\\(?:frac|sum|int|sqrt|lim)|\$[^$\n]+\$|\d\s*[-+*/^=<>]\s*\d|[=^]\s*-?\d"
    r"|(?:sin|cos|tan|log|exp|sqrt)\s*\("
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

# Difficulty points per feature; see Complexity for how points become a score.
_POINTS_PER_MARKER, _MAX_MARKER_POINTS = 0.35, 1.05
_POINTS_PER_EXTRA_PART, _MAX_PART_POINTS = 0.3, 0.9
_CODE_BLOCK_POINTS, _INLINE_CODE_POINTS, _MATH_POINTS = 0.6, 0.3, 0.4
_POINTS_PER_EXTRA_NUMBER, _MAX_NUMBER_POINTS = 0.1, 0.3
_MAX_COUNTED_NUMBERS = 5
_WORDS_PER_POINT, _MAX_LENGTH_POINTS = 400, 0.75
# The score never falls below 1 - this: a prior should lean on the verdict, not decide it.
MAX_COMPLEXITY_PENALTY = 0.8


@dataclass(frozen=True, slots=True)
class Complexity:
    """Soft, query-side: a prior on how likely a cheap draft is to be good enough.

    It reads only the last user message (both ends of a long one), never the answer.
    Difficulty points: 0.35 per distinct reasoning marker ("prove", "step by step",
    "implement", ...; up to 1.05), 0.3 per question or list item beyond the first (up to
    0.9), 0.6 for a code block or 0.3 for inline code, 0.4 for math notation, 0.1 per number
    beyond two (up to 0.3), and one per 400 words (up to 0.75).
    difficulty = 1 - exp(-points); score = 1 - MAX_COMPLEXITY_PENALTY * difficulty, so 1.0
    for trivia and never below 0.2.
    """

    weight: float = 0.5
    name: str = field(default="complexity", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        return self.score_query(request)

    def score_query(self, request: ChatRequest) -> SignalScore | None:
        """The score from the request alone (the cascade computes it while the draft is in
        flight)."""
        # Lowercase once: the patterns are written in lowercase, faster than IGNORECASE.
        text = query_text(request).lower()
        if not text.strip():
            return None
        points = 0.0
        reasons: list[str] = []
        markers = {m.replace("-", " ") for m in _REASONING.findall(text)}
        if markers:
            points += min(_MAX_MARKER_POINTS, _POINTS_PER_MARKER * len(markers))
            reasons.append(", ".join(sorted(markers)))
        parts = query_parts(text)
        if parts > 1:
            points += min(_MAX_PART_POINTS, _POINTS_PER_EXTRA_PART * (parts - 1))
            reasons.append(f"{parts} parts")
        if _CODE_BLOCK.search(text):
            points += _CODE_BLOCK_POINTS
            reasons.append("code block")
        elif any(pattern.search(text) for pattern in _INLINE_CODE):
            points += _INLINE_CODE_POINTS
            reasons.append("code")
        if _MATH.search(text):
            points += _MATH_POINTS
            reasons.append("math")
        # Counting stops where the points stop growing.
        numbers = sum(1 for _ in islice(_NUMBER.finditer(text), _MAX_COUNTED_NUMBERS))
        if numbers > 2:
            points += min(_MAX_NUMBER_POINTS, _POINTS_PER_EXTRA_NUMBER * (numbers - 2))
            reasons.append(f"{numbers} numbers")
        words = len(text.split())
        points += min(_MAX_LENGTH_POINTS, words / _WORDS_PER_POINT)
        reasons.append(f"{words} words")
        difficulty = 1.0 - math.exp(-points)
        detail = f"difficulty {difficulty:.2f}: " + "; ".join(reasons)
        return SignalScore.of_soft(
            self.name, 1.0 - MAX_COMPLEXITY_PENALTY * difficulty, self.weight, detail
        )


# Fewer words than this per question asked makes an answer suspiciously short.
MIN_WORDS_PER_PART = 4


@dataclass(frozen=True, slots=True)
class LengthFit:
    """Soft: is the answer long enough for a query that asks several things?

    Applies only to text answers to queries of two or more parts, outside JSON mode (terse
    by design). score = min(1, answer words / (MIN_WORDS_PER_PART * parts)): "Yes." to a
    five-part question scores 0.05; "4 and 6." to "What is 2+2? And 3+3?" scores 0.38.
    """

    weight: float = 0.5
    name: str = field(default="length_fit", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        json_mode = (request.response_format or {}).get("type") in ("json_object", "json_schema")
        if json_mode or not completion.text.strip():
            return None
        parts = query_parts(query_text(request))
        if parts < 2:
            return None
        words = len(completion.text.split())
        score = words / (MIN_WORDS_PER_PART * parts)
        detail = f"{words} words for {parts} parts"
        return SignalScore.of_soft(self.name, score, self.weight, detail)
