"""Pick a cascade's threshold from replayed rows, and write it into the config file.

The candidates are the thresholds at which the replayed decisions can change: between each
two adjacent verdict scores. A target quality picks the cheapest candidate that meets it; a
maximum escalation rate picks the best quality within it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import yaml

from cascade_gateway.replay.run import Point, RowOutcome, at_threshold


class CalibrationError(Exception):
    """No threshold meets the target (the message gives the best there is)."""


def candidate_thresholds(outcomes: Sequence[RowOutcome]) -> list[float]:
    """Thresholds between each two adjacent scores (and 0 and 1): every distinct decision."""
    scores = sorted({round(o.score, 6) for o in outcomes} | {0.0, 1.0})
    cuts = [0.0]
    for low, high in pairwise(scores):
        cuts.append(round((low + high) / 2, 6))
    cuts.append(1.0)
    return sorted(set(cuts))


def pick(
    outcomes: Sequence[RowOutcome],
    *,
    target_quality: float | None = None,
    max_escalation: float | None = None,
) -> Point:
    """The threshold that meets exactly one of the two targets, with its figures."""
    if (target_quality is None) == (max_escalation is None):
        raise ValueError("give exactly one of target_quality and max_escalation")
    points = [at_threshold(outcomes, t) for t in candidate_thresholds(outcomes)]
    chosen = _choose(points, target_quality, max_escalation)
    assert chosen.threshold is not None
    return at_threshold(outcomes, _shortest(outcomes, chosen.threshold))


def _shortest(outcomes: Sequence[RowOutcome], threshold: float) -> float:
    """The threshold with the fewest decimals that makes the same decisions (0.8420, not
    0.841975), so a config reads well."""
    decisions = [o.escalates_at(threshold) for o in outcomes]
    for digits in range(1, 7):
        short = round(threshold, digits)
        if 0.0 <= short <= 1.0 and [o.escalates_at(short) for o in outcomes] == decisions:
            return short
    return threshold


def _choose(
    points: list[Point], target_quality: float | None, max_escalation: float | None
) -> Point:
    if target_quality is not None:
        meeting = [p for p in points if p.quality >= target_quality - 1e-12]
        if not meeting:
            best = max(points, key=lambda p: p.quality)
            raise CalibrationError(
                f"no threshold reaches quality {target_quality:.4f}; the best is "
                f"{best.quality:.4f} at threshold {best.threshold}"
            )
        # Cheapest first; then the better quality; then the lower threshold.
        return min(meeting, key=lambda p: (p.cost_usd, -p.quality, p.threshold))
    assert max_escalation is not None
    within = [p for p in points if p.escalation_rate <= max_escalation + 1e-12]
    # Threshold 0 escalates only failed gates, so something is always within unless gates fail.
    if not within:
        least = min(points, key=lambda p: p.escalation_rate)
        raise CalibrationError(
            f"every threshold escalates more than {max_escalation:.2%}; the least is "
            f"{least.escalation_rate:.2%} (drafts that fail a gate always escalate)"
        )
    return max(within, key=lambda p: (p.quality, -p.cost_usd, -(p.threshold or 0.0)))


_CASCADES = re.compile(r"^cascades:[ \t]*(?:#.*)?$")


def write_threshold(source: Path, cascade: str, threshold: float, out: Path) -> bool:
    """Copy the config at `source` to `out` with `cascades.<cascade>.threshold` set.

    The file is edited as text, so comments and layout survive, when the cascade is written
    in block style; otherwise it is rewritten from its parsed content. Returns True when the
    text was preserved."""
    text = source.read_text(encoding="utf-8")
    edited = _edit_block_style(text, cascade, threshold)
    if edited is not None:
        out.write_text(edited, encoding="utf-8")
        return True
    raw = yaml.safe_load(text)
    raw["cascades"][cascade]["threshold"] = threshold
    out.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return False


def _edit_block_style(text: str, cascade: str, threshold: float) -> str | None:
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _CASCADES.match(line.rstrip("\n"))), None)
    if start is None:
        return None
    header = re.compile(rf"^([ \t]+){re.escape(cascade)}:[ \t]*(?:#.*)?$")
    for i in range(start + 1, len(lines)):
        line = lines[i].rstrip("\n")
        if line and not line[0].isspace() and not line.startswith("#"):
            return None  # Left the cascades section without finding the cascade.
        match = header.match(line)
        if match is None:
            continue
        indent = len(match.group(1))
        body_indent: str | None = None
        end = i + 1
        while end < len(lines):
            current = lines[end].rstrip("\n")
            stripped = current.lstrip()
            if stripped and not stripped.startswith("#"):
                width = len(current) - len(stripped)
                if width <= indent:
                    break
                body_indent = body_indent or current[:width]
                found = re.match(r"^([ \t]+)threshold:[ \t]*([^#\n]*?)([ \t]*#.*)?$", current)
                if found and len(found.group(1)) == len(body_indent):
                    comment = found.group(3) or ""
                    lines[end] = f"{found.group(1)}threshold: {threshold}{comment}\n"
                    return "".join(lines)
            end += 1
        if body_indent is None:
            return None
        # No threshold yet: add one after the cascade's last line.
        last = end
        while last > i + 1 and not lines[last - 1].strip():
            last -= 1
        if not lines[last - 1].endswith("\n"):
            lines[last - 1] += "\n"
        lines.insert(last, f"{body_indent}threshold: {threshold}\n")
        return "".join(lines)
    return None
