"""Signals read from the answer's text: was it cut short, empty, a refusal, or hedged?"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation.signals.phrases import Phrases
from cascade_gateway.validation.verdict import SignalScore

# Code is not prose: "# might be None" in a snippet is not the model hedging.
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)


# Refusal and Hedging both read an answer's prose, one after the other: made once.
@functools.lru_cache(maxsize=16)
def prose(text: str) -> str:
    """The answer's text without code, lowercased, apostrophes normalized: what the phrase
    patterns match (lowercase patterns without IGNORECASE run about four times faster)."""
    if "`" in text:
        text = _CODE.sub(" ", text)
    # Typographic apostrophes are common in model output; the patterns spell only "'".
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


@dataclass(frozen=True, slots=True)
class Truncation:
    """Gate: the upstream stopped before the answer was finished.

    Fails on `finish_reason` "length" (out of tokens) and "content_filter" (cut by the
    upstream's filter): either way the client would get half an answer.
    """

    name: str = field(default="truncation", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore:
        reason = completion.finish_reason
        return SignalScore.of_gate(
            self.name, reason not in ("length", "content_filter"), f"finish_reason={reason}"
        )


@dataclass(frozen=True, slots=True)
class Empty:
    """Gate: the answer has neither text (beyond whitespace) nor a tool call."""

    name: str = field(default="empty", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore:
        if completion.tool_calls:
            detail = f"{len(completion.tool_calls)} tool call(s)"
            return SignalScore.of_gate(self.name, True, detail)
        if completion.text.strip():
            return SignalScore.of_gate(self.name, True, f"{len(completion.text)} chars")
        return SignalScore.of_gate(self.name, False, "no text and no tool calls")


# Softeners that may precede a refusal in the same sentence: "Unfortunately, I can't ...".
_LEAD_IN = (
    r"(?:(?:(?:i'm|i am)(?: really| very| so)? sorry|sorry|i apologi[sz]e|unfortunately"
    r"|regrettably|however)\s*[,.!]?\s*(?:but\s+)?)?"
)
# "cannot"/"can't" count only with a verb of serving the request, so "I cannot stress enough"
# passes; "help" is excluded in idioms such as "I can't help but notice".
_SERVE = (
    r"(?:help(?!\s+(?:but|thinking|feeling|wondering|noticing|it)\b)|assist|provide|comply"
    r"|fulfill?|do (?:that|this)|answer|create|generate|write|share|support|engage|complete"
    r"|give|offer|discuss|produce|continue|participate|tell you|make)\b"
)
_CORE = Phrases(
    [
        r"i ?(?:cannot|can't|can not|won't|will not|(?:am|'m) not going to)"
        r"(?: (?:be able to|really|in good conscience))? " + _SERVE,
        r"i(?: am|'m) (?:unable|not able|not allowed|not permitted) to",
        r"i (?:must|have to|need to) (?:decline|refuse)",
        r"i (?:do not|don't) feel comfortable",
        r"that(?:'s| is) not something i (?:can|will|am able to)",
        r"as an ai",
    ]
)
# A refusal phrase counts only where a sentence starts: at the beginning, after a newline, or
# after . ! ? (and any closing quote or bracket), past markdown decoration such as "**" and a
# softener. Checked backwards from each phrase found, since phrases are rare and scanning the
# whole answer for sentence starts costs several times more.
_SENTENCE_OPENER = re.compile(r"(?:\A|\n|[.!?][\"')\]]*\s+)[\s*_>\"'#-]*" + _LEAD_IN + r"\Z")
_OPENER_REACH = 60
# An answer that opens with an apology and a "but" is, in practice, almost always a refusal.
_APOLOGY_OPENING = re.compile(
    r"\A[\s*_>\"'#-]*(?:(?:i'm|i am)(?: really| very| so)? sorry|sorry|i apologi[sz]e),? but\b"
)
# "As an AI language model" gives the game away wherever it appears ("As an AI" only counts at
# a sentence start, in _CORE, since "use it as an AI assistant" is fine).
_AI_DISCLAIMER = "as an ai language model"
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*")

# A refusal in the first two sentences refuses the request; later, it declines one part of an
# otherwise given answer ("Here is X. I can't help with Y.") and only shows in the detail.
_OPENING_SENTENCES = 2


@dataclass(frozen=True, slots=True)
class Refusal:
    """Gate: the model declined to answer ("I can't help with that", "As an AI ...").

    A gate rather than a heavy soft signal: a refused draft is exactly what a stronger tier
    should retry, and a heavy weight would also inflate the mean of every answer that does not
    refuse, drowning the other signals. Phrases count only at the start of one of the first
    two sentences (after an optional "Sorry,"/"Unfortunately,"), so "I cannot stress enough"
    or "... and I can't help but notice" do not trip it.
    """

    name: str = field(default="refusal", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        text = prose(completion.text)
        if not text.strip():
            return None
        match = _first_refusal(text)
        sentence = 0
        if match is not None:
            sentence = len(_SENTENCE_END.findall(text, 0, match.start())) + 1
            if sentence <= _OPENING_SENTENCES:
                return SignalScore.of_gate(self.name, False, f"{match.group(0)!r}")
        if _APOLOGY_OPENING.match(text):
            return SignalScore.of_gate(self.name, False, "opens with an apology and a 'but'")
        if _AI_DISCLAIMER in text:
            return SignalScore.of_gate(self.name, False, f"{_AI_DISCLAIMER!r}")
        if match is not None:
            return SignalScore.of_gate(self.name, True, f"partial refusal in sentence {sentence}")
        return SignalScore.of_gate(self.name, True, "no refusal")


def _first_refusal(text: str) -> re.Match[str] | None:
    for match in _CORE.finditer(text):
        start = match.start()
        if _SENTENCE_OPENER.search(text, max(0, start - _OPENER_REACH), start):
            return match
    return None


# Strong hedges doubt the answer itself; weak ones are also ordinary caution in good prose.
_STRONG_HEDGES = (
    r"i(?:'m| am) not (?:entirely |completely |totally |quite |really |100% )?"
    r"(?:sure|certain|confident)",
    r"i (?:do not|don't) (?:really |actually )?know",
    r"i have no idea",
    r"hard to say",
    r"difficult to say",
    r"impossible to say",
    r"i (?:cannot|can't|can not) be (?:sure|certain)",
    r"i (?:could|may|might) be (?:wrong|mistaken)",
    r"if i (?:recall|remember)(?: correctly| right)?",
    r"my best guess",
    r"an educated guess",
    r"a wild guess",
    r"i(?:'m| am) guessing",
    r"do(?:n't| not) quote me",
)
_WEAK_HEDGES = (
    r"i (?:think|believe|guess|suppose|assume)",
    r"might",
    r"possibly",
    r"perhaps",
    r"maybe",
    r"probably",
    r"it (?:seems|appears)",
    r"this (?:seems|appears)",
    r"that (?:seems|appears)",
    r"seems to be",
    r"it(?:'s| is) (?:unclear|not clear)",
    r"could be",
    r"may be",
)
# Strong hedges come first, so one claims its words before a weak one ("I might be wrong"
# counts once, as strong). Matches are few: each is then classified.
_HEDGE = Phrases(_STRONG_HEDGES + _WEAK_HEDGES)
_STRONG_HEDGE = re.compile("|".join(_STRONG_HEDGES))
STRONG_HEDGE_UNITS = 1.0
WEAK_HEDGE_UNITS = 0.5
# Hedge units per 100 words at which the score falls to 1/e.
HEDGE_SCALE = 5.0
# Very short answers are measured as if this long, so "Maybe." is hedged but not infinitely.
MIN_HEDGE_WORDS = 10


@dataclass(frozen=True, slots=True)
class Hedging:
    """Soft: how uncertain the answer sounds, by the density of hedging phrases.

    score = exp(-density / HEDGE_SCALE), density = hedge units per 100 words (a strong hedge
    such as "I'm not sure" is 1 unit, a weak one such as "might" 0.5), over at least
    MIN_HEDGE_WORDS words. One "might" in 200 words scores 0.95; "I'm not sure, but it might
    possibly be Lyon, I think." scores 0.01.
    """

    weight: float = 1.0
    name: str = field(default="hedging", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        text = prose(completion.text)
        words = len(text.split())
        if words == 0:
            return None
        hedges = _HEDGE.findall(text)
        strong = sum(1 for hedge in hedges if _STRONG_HEDGE.fullmatch(hedge))
        weak = len(hedges) - strong
        units = strong * STRONG_HEDGE_UNITS + weak * WEAK_HEDGE_UNITS
        density = 100.0 * units / max(words, MIN_HEDGE_WORDS)
        detail = f"{strong} strong + {weak} weak hedges in {words} words"
        return SignalScore.of_soft(self.name, math.exp(-density / HEDGE_SCALE), self.weight, detail)
