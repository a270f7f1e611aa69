"""Where a validator's ranking earns its escalations, from a replay's decisions.

Rows are taken lowest validator score first (the order in which lowering the threshold
escalates them) in equal slices. For each slice it prints how good the draft and the strong
model were on those rows, what escalating them gained per row, and what the same number of
rows picked at random from those not yet escalated would have gained. Where the two gains
meet, the validator no longer tells bad drafts from good ones: escalating further buys
quality only at the average rate, however the threshold is set.

    cascade-gateway replay --data FILE --split validation --decisions-out /tmp/decisions.jsonl
    python benchmarks/escalation_gain.py --data FILE --decisions /tmp/decisions.jsonl [--json]

Works with either grade: `correct` (gain = the share of rows the strong model fixes, net)
or `score` (gain = the mean score difference).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from cascade_gateway.replay.data import DataError, load


@dataclass(frozen=True, slots=True)
class Slice:
    """One slice of rows, in validator-score order, and what escalating it is worth."""

    escalated_from: float  # share of rows escalated before this slice
    escalated_to: float
    max_score: float
    draft_quality: float
    strong_quality: float
    gain: float  # per row escalated: strong minus draft quality
    random_gain: float  # per row, had these rows been picked at random among those left
    served_quality: float  # with every row up to this slice escalated


def slices(scores: list[float], draft: list[float], strong: list[float], count: int) -> list[Slice]:
    """Cut the rows, lowest score first, into `count` slices of (nearly) equal size."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    n = len(order)
    served = sum(draft)
    left_gain = sum(strong) - served
    out = []
    for k in range(count):
        start, end = k * n // count, (k + 1) * n // count
        part = order[start:end]
        if not part:
            continue
        d = sum(draft[i] for i in part)
        s = sum(strong[i] for i in part)
        out.append(
            Slice(
                escalated_from=start / n,
                escalated_to=end / n,
                max_score=max(scores[i] for i in part),
                draft_quality=d / len(part),
                strong_quality=s / len(part),
                gain=(s - d) / len(part),
                random_gain=left_gain / (n - start),
                served_quality=(served + s - d) / n,
            )
        )
        served += s - d
        left_gain -= s - d
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the replay JSONL file")
    parser.add_argument("--decisions", required=True, help="replay's --decisions-out file")
    parser.add_argument("--draft", default="mixtral-8x7b-instruct", help="the draft model")
    parser.add_argument("--strong", default="gpt-4-1106-preview", help="the strong model")
    parser.add_argument("--slices", type=int, default=10, help="how many slices (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    try:
        rows = {row.id: row for row in load(args.data).rows}
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with open(args.decisions, encoding="utf-8") as lines:
        decisions = [json.loads(line) for line in lines if line.strip()]
    if not decisions:
        print(f"error: no decisions in {args.decisions}", file=sys.stderr)
        return 2
    missing = [d["id"] for d in decisions if d["id"] not in rows]
    if missing:
        print(f"error: decisions name rows the data lacks: {missing[:3]}", file=sys.stderr)
        return 2
    picked = [rows[d["id"]] for d in decisions]
    result = slices(
        [float(d["score"]) for d in decisions],
        [row.answers[args.draft].quality for row in picked],
        [row.answers[args.strong].quality for row in picked],
        args.slices,
    )

    if args.json:
        print(json.dumps({"n": len(decisions), "slices": [asdict(s) for s in result]}))
        return 0
    print(f"{len(decisions)} rows, lowest validator score first")
    print(
        f"{'escalated':>13} {'score <=':>9} {'draft':>7} {'strong':>7} "
        f"{'gain/row':>9} {'random':>8} {'served':>8}"
    )
    for s in result:
        print(
            f"{s.escalated_from:>5.0%} - {s.escalated_to:>4.0%} {s.max_score:>9.3f} "
            f"{s.draft_quality:>7.3f} {s.strong_quality:>7.3f} {s.gain:>+9.3f} "
            f"{s.random_gain:>+8.3f} {s.served_quality:>8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
