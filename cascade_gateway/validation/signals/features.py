"""Features of a worked answer to a quantitative question, for the learned scorer.

Each feature is a general property of a question and its answer: does the arithmetic shown
check out, is there a final answer and is it a whole number, were the question's numbers all
used, do operands appear from nowhere, does the answer correct itself or round, how long are
both. None is keyed to a data set: no ids, no phrases mined from one. Pure Python (about
0.1 ms for a 300-character answer), so the gateway can compute them on every draft.
"""

from __future__ import annotations

import math
import re

from cascade_gateway.validation.signals.arithmetic import check_arithmetic
from cascade_gateway.validation.signals.phrases import Phrases

# The names, in the order `math_features` returns them and the learned weights use them.
FEATURE_NAMES: tuple[str, ...] = (
    "arith_steps",  # log(1 + equations re-checked)
    "arith_wrong",  # equations that do not check out (at most 3)
    "arith_none",  # 1 when the answer shows no checkable arithmetic
    "final_marker",  # "####", "the answer is", "answer:", \boxed
    "ends_cleanly",  # the last line ends a sentence or states the final answer
    "final_missing",  # no number where the final answer should be
    "final_fraction",  # the final number is not a whole number
    "final_is_last_result",  # the final number is the result of the last equation
    "final_in_query",  # the final number was given in the question
    "query_coverage",  # share of the question's numbers that the answer uses
    "unsupported_operands",  # operands neither given, computed, nor common constants (max 5)
    "steps_per_number",  # equations per number in the question
    "answer_words",  # log(1 + words)
    "query_words",  # log(1 + words)
    "answer_to_query",  # log of the length ratio
    "self_corrections",  # "however", "actually", "wait", "mistake", ... (at most 3)
    "approximations",  # "approximately", "round", "≈", ... (at most 3)
    "unknowns",  # algebra with a letter for the unknown ("let x be", "x = ")
    "query_numbers",  # log(1 + numbers in the question)
    "query_percent",  # the question involves percentages
    "query_fraction_words",  # "half", "twice", "a third", ...
    "lines",  # log(1 + non-empty lines of the answer)
)

# Patterns start with a digit class rather than a lookbehind, which lets `re` skip most
# positions quickly; `_standalone` then rejects numbers glued to a word ("x2", "v1.5").
_NUMBER = re.compile(r"(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?!\d)")
# Number words a question may use instead of digits ("twice", "half", "a dozen").
_NUMBER_WORDS = {
    "one": 1.0,
    "two": 2.0,
    "three": 3.0,
    "four": 4.0,
    "five": 5.0,
    "six": 6.0,
    "seven": 7.0,
    "eight": 8.0,
    "nine": 9.0,
    "ten": 10.0,
    "eleven": 11.0,
    "twelve": 12.0,
    "fifteen": 15.0,
    "twenty": 20.0,
    "thirty": 30.0,
    "forty": 40.0,
    "fifty": 50.0,
    "hundred": 100.0,
    "thousand": 1000.0,
    "half": 2.0,
    "twice": 2.0,
    "double": 2.0,
    "triple": 3.0,
    "thrice": 3.0,
    "third": 3.0,
    "quarter": 4.0,
    "fourth": 4.0,
    "fifth": 5.0,
    "dozen": 12.0,
}
_NUMBER_WORD = Phrases([f"{word}s?" for word in _NUMBER_WORDS])
# Constants any worked answer may bring in: small counts and everyday unit conversions.
_KNOWN_CONSTANTS = frozenset(
    (*(float(n) for n in range(11)), 12.0, 24.0, 30.0, 52.0, 60.0, 100.0, 365.0, 1000.0, 0.5)
)
# What follows a number that is an operand: an operator, then another number or a bracket.
_OPERATOR_AFTER = re.compile(r"[ \t]*[-+*/\u00d7\u00f7x][ \t]*[\d$(]")
_RESULT = re.compile(r"=[ \t]*\$?(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)")
_FINAL_MARKER = re.compile(r"####|\\boxed|the (?:final )?answer is|answer:|final answer")
_PERCENT = re.compile(r"%|percent")
_FRACTION_WORD = Phrases(
    ("half", "halves", "thirds?", "quarters?", "fourths?", "fifths?", "twice", "double", "triple")
)
_SELF_CORRECTION = Phrases(
    (
        "however",
        "actually",
        "wait",
        "mistake",
        "correction",
        "re-?evaluate",
        "re-?calculate",
        "let me re",
        "let's re",
        "instead",
        "oops",
        "i apologi[sz]e",
    )
)
_APPROXIMATION = Phrases(
    ("approximately", "about", "roughly", "round(?:ed|ing)?", "nearest", "estimate[ds]?")
)
# A letter standing for an unknown: "let x be", "x = 40", "4x + 2".
_UNKNOWN = re.compile(r"let [a-z] |[a-wyz] = |\d[a-wyz](?![a-z])")
_ESCAPED = re.compile(r"\\([*_$])")
_CLEAN_ENDINGS = frozenset(".!?)]}*\"'")


def _standalone(text: str, start: int) -> bool:
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isalnum() or before in "._")


def _numbers(text: str) -> list[tuple[int, int, float]]:
    """(start, end, value) of each standalone number in `text`."""
    return [
        (m.start(), m.end(), float(m.group(0).replace(",", "")))
        for m in _NUMBER.finditer(text)
        if _standalone(text, m.start())
    ]


def _values(text: str) -> list[float]:
    return [value for _, _, value in _numbers(text)]


def _has_unknown(lowered: str) -> bool:
    """A letter standing for an unknown: "let x be", "x = 40", "4x + 2"."""
    for match in _UNKNOWN.finditer(lowered):
        start = match.start()
        text = match.group(0)
        # "a = " must be a lone letter, not the end of a word ("area = ").
        if text.endswith(" = ") and start > 0 and lowered[start - 1].isalpha():
            continue
        return True
    return False


def _in(value: float, pool: set[float]) -> bool:
    """`value` is in `pool`, allowing for float noise (25.0 and 25.000000001)."""
    if value in pool:
        return True
    return any(abs(value - other) <= 1e-6 * max(1.0, abs(other)) for other in pool)


def _last_line(text: str) -> str:
    stripped = text.rstrip()
    return stripped[stripped.rfind("\n") + 1 :].strip()


def math_features(query: str, answer: str) -> list[float]:
    """The feature vector of `answer` to the question `query`, in `FEATURE_NAMES` order."""
    if "\\" in answer:
        answer = _ESCAPED.sub(r"\1", answer)  # Markdown escapes: "5 \* 3".
    lowered = answer.lower()
    lowered_query = query.lower()
    check = check_arithmetic(answer)

    given = _values(query)
    given_set = set(given)
    known = given_set | {_NUMBER_WORDS[w.rstrip("s")] for w in _NUMBER_WORD.findall(lowered_query)}
    found = _numbers(answer)
    found_set = {value for _, _, value in found}

    markers = list(_FINAL_MARKER.finditer(lowered))
    final: float | None = None
    if markers:
        after = markers[-1].end()
        final = next((value for start, _, value in found if start >= after), None)
    last_line = _last_line(answer)
    if final is None:
        values = _values(last_line)
        final = values[-1] if values else None

    results = _RESULT.findall(answer)
    last_result = float(results[-1].replace(",", "")) if results else None

    counts: dict[float, int] = {}
    for _, _, value in found:
        counts[value] = counts.get(value, 0) + 1
    unsupported = 0
    for _, end, value in found:
        if not _OPERATOR_AFTER.match(answer, end):
            continue
        # Supported: given, a common constant, or a number the answer computes and reuses.
        if value not in _KNOWN_CONSTANTS and counts.get(value, 0) < 2 and not _in(value, known):
            unsupported += 1

    coverage = sum(1 for v in given if _in(v, found_set)) / len(given) if given else 1.0
    ends_cleanly = bool(last_line) and (
        last_line[-1] in _CLEAN_ENDINGS or _FINAL_MARKER.search(last_line.lower()) is not None
    )
    query_words = len(query.split())
    answer_words = len(answer.split())
    return [
        math.log1p(check.checked),
        float(min(3, len(check.wrong))),
        1.0 if check.checked == 0 else 0.0,
        1.0 if markers else 0.0,
        1.0 if ends_cleanly else 0.0,
        1.0 if final is None else 0.0,
        1.0 if final is not None and final != int(final) else 0.0,
        1.0 if final is not None and final == last_result else 0.0,
        1.0 if final is not None and _in(final, given_set) else 0.0,
        coverage,
        float(min(5, unsupported)),
        check.checked / (len(given) + 1),
        math.log1p(answer_words),
        math.log1p(query_words),
        math.log((answer_words + 1) / (query_words + 1)),
        float(min(3, len(_SELF_CORRECTION.findall(lowered)))),
        float(min(3, len(_APPROXIMATION.findall(lowered)) + lowered.count("\u2248"))),
        1.0 if _has_unknown(lowered) else 0.0,
        math.log1p(len(given)),
        1.0 if _PERCENT.search(lowered_query) else 0.0,
        1.0 if _FRACTION_WORD.findall(lowered_query) else 0.0,
        math.log1p(sum(1 for line in answer.splitlines() if line.strip())),
    ]
