"""Re-check the arithmetic an answer shows: every `expression = value` it writes out.

A model that writes "12 x 5 = 50" on the way to its answer has almost certainly got the answer
wrong, and catching that costs a few regex scans and some additions, with no model call. Only
what can be read without guessing is checked:

- equations whose sides are plain arithmetic on numbers ("3 x $60 = $180", "(4/20)*100% = 20%",
  chains such as "2 + 1/2 = 5/2 = 2.5"), with at least one operator in them;
- calculator annotations in the GSM8K style, `<<3*60=180>>`, also chained
  (`<<2*4+3*6=24+18=42>>`) or several in one (`<<90+150=240;240/3=80>>`).

A side that mixes words and numbers ("3 sprints * 60 meters = 180 meters") is skipped, and so is
an equation whose left side follows an operator or a word such as "times", since only part of
the computation would be seen. A value rounded to the precision it is written with passes
("10/3 = 3.33"); a whole number standing for a fraction ("10/3 = 3") does not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation.verdict import SignalScore

# A number as written in prose: 1,234.5 or 1234 or .5, with an optional currency sign in front
# and a percent sign behind.
_NUMBER = r"\$?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)%?"
_OPERATOR = r"(?:[-+*/\u00d7\u00f7^]|(?<=[\d)%\s])x(?=[\s\d($]))"
_TERM = rf"\(*-?{_NUMBER}\)*"
_EXPRESSION = rf"{_TERM}(?:[ \t]*{_OPERATOR}[ \t]*{_TERM})*"
# Spaces and tabs only, never newlines: an equation is written on one line. The lookahead
# lets the engine skip most positions at the cost of one character test.
_EQUATION = re.compile(
    rf"(?=[\d($.-])(?<![\w.,$]){_EXPRESSION}(?:[ \t]*=[ \t]*{_EXPRESSION}(?!\w))+"
)
_PLAIN_NUMBER = re.compile(r"[ \t]*\$?(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(%?)[ \t]*")
_ANNOTATION = re.compile(r"<<([^<>]{1,300})>>")
_ESCAPED = re.compile(r"\\([*_$])")
_SIDE_SPLIT = re.compile(r"[ \t]*=[ \t]*")
_HAS_OPERATOR = re.compile(_OPERATOR)
# What may come right before an equation whose left side is only part of a computation.
_CUT_OFF = re.compile(
    r"(?:[-+*/\u00d7\u00f7^(x]"
    r"|\b(?:times|of|by|plus|minus|over|per|multiplied|divided|into|less|than))\s*\Z"
)
_LOOKBEHIND = 16
_BULLET = re.compile(r"(?:\A|\n)[ \t]*[-*\u2022][ \t]*\Z")
_MAX_POWER = 64
_MAX_CHECKED = 64


_TOKEN = re.compile(r"\s*(?:\$?(\d[\d,]*(?:\.\d+)?|\.\d+)(%?)|([-+*/\u00d7\u00f7x^()]))")
# Binding strength; "neg" is unary minus: tighter than * and /, looser than ^ (-2^2 is -4).
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4}
_SPELLING = {"\u00d7": "*", "x": "*", "\u00f7": "/"}


class _Unreadable(Exception):
    """The text is not plain arithmetic."""


def _apply(op: str, values: list[float]) -> None:
    if op == "neg":
        values[-1] = -values[-1]
        return
    right = values.pop()
    left = values[-1]
    if op == "+":
        values[-1] = left + right
    elif op == "-":
        values[-1] = left - right
    elif op == "*":
        values[-1] = left * right
    elif op == "/":
        if right == 0:
            raise _Unreadable
        values[-1] = left / right
    else:
        if abs(right) > _MAX_POWER or (left == 0 and right < 0):
            raise _Unreadable
        values[-1] = float(left**right)


def _compute(tokens: list[tuple[str, str, str]]) -> float:
    """Shunting-yard over (number, percent sign, operator) tokens: no recursion, no `eval`,
    and nothing in the text can name a function."""
    values: list[float] = []
    ops: list[str] = []
    operand_next = True
    for number, percent, symbol in tokens:
        if number:
            if not operand_next:
                raise _Unreadable
            value = float(number.replace(",", ""))
            values.append(value / 100.0 if percent else value)
            operand_next = False
        elif symbol == "(":
            if not operand_next:
                raise _Unreadable
            ops.append("(")
        elif symbol == ")":
            if operand_next:
                raise _Unreadable
            while ops and ops[-1] != "(":
                _apply(ops.pop(), values)
            if not ops:
                raise _Unreadable
            ops.pop()
        elif operand_next:
            if symbol != "-":
                raise _Unreadable
            ops.append("neg")
        else:
            op = _SPELLING.get(symbol, symbol)
            rank = _PRECEDENCE[op]
            # ^ groups to the right (2^3^2 is 2^9); the others to the left.
            while (
                ops
                and ops[-1] != "("
                and (_PRECEDENCE[ops[-1]] > rank or (_PRECEDENCE[ops[-1]] == rank and op != "^"))
            ):
                _apply(ops.pop(), values)
            ops.append(op)
            operand_next = True
    if operand_next:
        raise _Unreadable
    while ops:
        op = ops.pop()
        if op == "(":
            raise _Unreadable
        _apply(op, values)
    return values[0]


def evaluate(expression: str) -> float | None:
    """The value of a written arithmetic expression ("$1,200 x 15%" is 180.0), or None."""
    plain = _PLAIN_NUMBER.fullmatch(expression)
    if plain is not None:
        value = float(plain.group(1).replace(",", ""))
        return value / 100.0 if plain.group(2) else value
    tokens: list[tuple[str, str, str]] = []
    end = 0
    for match in _TOKEN.finditer(expression):
        if match.start() != end:
            return None
        number, percent, operator = match.groups("")
        tokens.append((number, percent, operator))
        end = match.end()
    if not tokens or expression[end:].strip():
        return None
    try:
        value = _compute(tokens)
    except (_Unreadable, OverflowError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _agrees(computed: float, written: str) -> bool:
    """Is `written` the computed value, allowing for rounding to the digits it shows? A percent
    may also be written as the ratio times 100: "(4/20) * 100 = 20%"."""
    value = evaluate(written)
    if value is None:
        return True  # Not a number we can read: nothing to hold against the answer.
    percent = written.rstrip().endswith("%")
    digits = written.strip().rstrip("%").split(".")
    decimals = len(digits[1]) if len(digits) == 2 else 0
    if percent:
        return _close(computed, value, decimals + 2) or _close(computed, value * 100.0, decimals)
    return _close(computed, value, decimals)


def _close(computed: float, value: float, decimals: int) -> bool:
    tolerance = 0.5 * 10.0**-decimals if decimals else 1e-6
    return abs(computed - value) <= max(tolerance, 1e-9 * abs(value)) + 1e-9


@dataclass(frozen=True, slots=True)
class ArithmeticCheck:
    """What re-checking an answer's arithmetic found: how many steps, and the wrong ones."""

    checked: int = 0
    wrong: tuple[str, ...] = ()

    @property
    def correct(self) -> int:
        return self.checked - len(self.wrong)


@dataclass(slots=True)
class _Tally:
    """Steps seen so far, each counted once: "3 x 60 = <<3*60=180>>180" shows one step twice."""

    seen: set[tuple[str, str]] = field(default_factory=set)
    wrong: list[str] = field(default_factory=list)


# Several signals read the same draft; its text object is the key, so its hash is computed once.
@lru_cache(maxsize=64)
def check_arithmetic(text: str) -> ArithmeticCheck:
    """Re-compute every readable `expression = value` in `text` (see the module docstring)."""
    if "=" not in text:
        return ArithmeticCheck()
    result = _Tally()
    if "\\" in text:
        text = _ESCAPED.sub(r"\1", text)  # Markdown escapes: "5 \* 3 = 15".
    if "<<" in text:
        for match in _ANNOTATION.finditer(text):
            for part in match.group(1).split(";"):
                _check_chain(result, _SIDE_SPLIT.split(part.strip()))
        text = _ANNOTATION.sub(" ", text)
    for match in _EQUATION.finditer(text):
        if len(result.seen) >= _MAX_CHECKED:
            break
        if _continues(text, match.start()):
            continue
        _check_chain(result, _SIDE_SPLIT.split(match.group(0).strip()))
    return ArithmeticCheck(len(result.seen), tuple(result.wrong))


def _check_chain(result: _Tally, sides: list[str]) -> None:
    """Check each link of `a = b = c`: a link with an operator on either side is a step."""
    for left, right in pairwise(sides):
        if not (_HAS_OPERATOR.search(left) or _HAS_OPERATOR.search(right)):
            continue
        computed = evaluate(left)
        if computed is None:
            continue
        if _HAS_OPERATOR.search(right):
            value = evaluate(right)
            if value is None:
                continue
            _record(result, left, computed, _plain(value))
        else:
            _record(result, left, computed, right.strip())


def _continues(text: str, start: int) -> bool:
    """Does the equation at `start` continue a computation written before it ("3 sprints * 60
    = 180")? A list bullet ("- 3 x 4 = 12") does not count."""
    before = text[max(0, start - _LOOKBEHIND) : start]
    if not _CUT_OFF.search(before):
        return False
    return not _BULLET.search(text, max(0, start - _LOOKBEHIND), start)


_CANONICAL = str.maketrans(
    {"x": "*", "\u00d7": "*", "\u00f7": "/", " ": None, "\t": None, "$": None, ",": None}
)


def _canonical(written: str) -> str:
    """The same step written two ways ("3 x 60" and "3*60") reads the same."""
    return written.translate(_CANONICAL)


def _plain(value: float) -> str:
    return f"{value:.10g}"


def _record(result: _Tally, left: str, computed: float, written: str) -> None:
    key = (_canonical(left), _canonical(written))
    if key in result.seen:
        return
    result.seen.add(key)
    if not _agrees(computed, written):
        result.wrong.append(f"{left.strip()} = {written} (is {_plain(computed)})")


# Each wrong step multiplies the score by this: one slip in a worked answer already makes a
# wrong final answer more likely than not.
WRONG_STEP_FACTOR = 0.25


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """Soft: does the arithmetic the answer shows check out? (Applies only when it shows some.)

    score = WRONG_STEP_FACTOR ** wrong steps: 1.0 when every step checks out, 0.25 with one
    slip, 0.06 with two. "3 x 60 = 180, 180 x 3 = 540" scores 1.0; "12 x 5 = 50" 0.25.
    """

    weight: float = 1.0
    name: str = field(default="arithmetic", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        found = check_arithmetic(completion.text)
        if found.checked == 0:
            return None
        wrong = len(found.wrong)
        detail = f"{found.correct}/{found.checked} steps check out"
        if wrong:
            detail += f"; {found.wrong[0]}"
        return SignalScore.of_soft(self.name, WRONG_STEP_FACTOR**wrong, self.weight, detail)
