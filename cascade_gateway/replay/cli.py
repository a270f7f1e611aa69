"""`cascade-gateway replay` and `cascade-gateway calibrate`: the cascade on recorded answers.

Everything heavy (the engine, tiktoken, matplotlib) is imported inside the commands, so adding
them to the command line costs the other commands nothing at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cascade_gateway.config import GatewayConfig
    from cascade_gateway.replay.data import Dataset
    from cascade_gateway.replay.run import Point, Report

CONFIG_NAME = Path("config") / "gsm8k-cascade.yaml"
DEFAULT_PLOT = "replay.png"


def default_config() -> str:
    """config/gsm8k-cascade.yaml in the working directory, else beside the installed package."""
    if CONFIG_NAME.is_file():
        return str(CONFIG_NAME)
    beside = Path(__file__).resolve().parents[2] / CONFIG_NAME
    return str(beside if beside.is_file() else CONFIG_NAME)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `replay` and `calibrate` to the gateway's command line."""
    replay = commands.add_parser(
        "replay",
        help="run recorded answers through the cascade: quality, escalation, cost, savings",
        description="Replay recorded draft and strong answers through the real cascade engine "
        "and validator; report quality, escalation rate, cost and savings, across thresholds.",
    )
    _common(replay)
    replay.add_argument(
        "--threshold", type=float, help="use this threshold instead of the configured one"
    )
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.add_argument(
        "--decisions-out", metavar="FILE", help='write {"id", "escalated", "score", ...} per row'
    )
    replay.add_argument(
        "--plot", metavar="FILE", default=DEFAULT_PLOT, help=f"PNG to write ({DEFAULT_PLOT})"
    )
    replay.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    replay.set_defaults(run=_run_replay)

    calibrate = commands.add_parser(
        "calibrate",
        help="pick the threshold that meets a target on recorded answers; write it to a config",
        description="Replay recorded answers, pick the cascade threshold that meets the target, "
        "and write it into the cascade config (in place, or to --out).",
    )
    _common(calibrate)
    target = calibrate.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--target-quality",
        type=float,
        metavar="Q",
        help="cheapest threshold whose quality is at least Q (fraction correct or mean score)",
    )
    target.add_argument(
        "--max-escalation",
        type=float,
        metavar="R",
        help="best-quality threshold escalating at most a fraction R of queries",
    )
    calibrate.add_argument(
        "--relative",
        action="store_true",
        help="Q is a fraction of the strong model's quality (0.95: 95%% of strong-only)",
    )
    calibrate.add_argument("--out", metavar="FILE", help="write here instead of over --config")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object")
    calibrate.set_defaults(run=_run_calibrate)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="JSONL of recorded, graded answers")
    parser.add_argument(
        "--config", default=None, help=f"cascade config (default {CONFIG_NAME}, calibrated)"
    )
    parser.add_argument("--cascade", default="default", help="cascade to replay (two tiers)")
    parser.add_argument("--draft", help="model in the data whose answers the draft tier replays")
    parser.add_argument("--strong", help="model in the data whose answers the last tier replays")
    for tier in ("draft", "strong"):
        parser.add_argument(
            f"--{tier}-price",
            nargs=2,
            type=float,
            metavar=("IN", "OUT"),
            help=f"USD per million tokens in and out for the {tier} tier (default: the config's)",
        )
    parser.add_argument(
        "--split",
        choices=("all", "train", "validation"),
        default="all",
        help="rows to use: all, or one half fixed by a hash of each id (default all)",
    )


def _load(args: argparse.Namespace) -> tuple[GatewayConfig, Dataset, str]:
    """The config (prices overridden as asked), the rows of the chosen split, the config path."""
    import yaml

    from cascade_gateway.config import ConfigError, parse_config
    from cascade_gateway.replay.data import load

    path = args.config or default_config()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(path, ["the file must be a mapping with providers, models, cascades"])
    cascade = (raw.get("cascades") or {}).get(args.cascade)
    if isinstance(cascade, dict):
        # A missing cascade or model is reported by validation and replay, with its name.
        tiers = cascade.get("tiers") or []
        models = raw.get("models") or {}
        for index, price in ((0, args.draft_price), (-1, args.strong_price)):
            model = models.get(tiers[index]) if price and tiers else None
            if isinstance(model, dict):
                model["input_per_mtok"], model["output_per_mtok"] = price
        if args.threshold_override is not None:
            cascade["threshold"] = args.threshold_override
    config = parse_config(raw, path)
    return config, load(args.data).split(args.split), path


def _report(args: argparse.Namespace) -> tuple[Report, str]:
    from cascade_gateway.replay.run import replay

    config, dataset, path = _load(args)
    report = replay(config, dataset, cascade=args.cascade, draft=args.draft, strong=args.strong)
    return report, path


def _guarded(run: Any, args: argparse.Namespace) -> int:
    from cascade_gateway.config import ConfigError
    from cascade_gateway.replay.calibrate import CalibrationError
    from cascade_gateway.replay.data import DataError
    from cascade_gateway.replay.run import ReplayError

    try:
        return int(run(args))
    except (ConfigError, DataError, ReplayError, CalibrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_replay(args: argparse.Namespace) -> int:
    args.threshold_override = args.threshold
    return _guarded(_replay, args)


def _run_calibrate(args: argparse.Namespace) -> int:
    args.threshold_override = None
    return _guarded(_calibrate, args)


def _replay(args: argparse.Namespace) -> int:
    report, path = _report(args)
    summary = report.summary()
    summary.update(data=args.data, split=args.split, config=path)
    if args.decisions_out:
        _write_decisions(report, args.decisions_out)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(_table(report, summary))
    if args.decisions_out:
        print(f"decisions: {args.decisions_out}")
    if not args.no_plot:
        from cascade_gateway.replay.plot import PlotUnavailable, plot

        try:
            title = (
                f"{Path(args.data).name} ({args.split} split, {summary['n']} rows)\n"
                f"{report.draft_model} drafts, {report.strong_model} on escalation"
            )
            print(f"plot: {plot(report, args.plot, title=title)}")
        except PlotUnavailable as exc:
            print(f"no plot: {exc}")
    return 0


def _write_decisions(report: Report, path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for o in report.outcomes:
            row = {
                "id": o.id,
                "escalated": o.escalated,
                "score": o.score,
                "cost_usd": o.cost_usd,
                "strong_only_cost_usd": o.strong_cost_usd,
            }
            out.write(json.dumps(row) + "\n")


def _table(report: Report, summary: dict[str, Any]) -> str:
    strong = report.strong_only()

    def line(label: str, p: Point) -> str:
        share = 100.0 * p.cost_usd / strong.cost_usd if strong.cost_usd else 0.0
        return (
            f"  {label:<22}{_q(p.quality, report.metric):>9}{p.escalation_rate:>11.1%}"
            f"{p.cost_usd:>13.4f}{share:>10.1f}%"
        )

    served = report.served()
    lines = [
        f"Replay of {summary['n']} rows of {summary['data']} (split: {summary['split']}), "
        f"cascade `{report.cascade}` of {summary['config']}",
        f"draft {report.draft_model} -> strong {report.strong_model}, "
        f"threshold {report.threshold:g}",
        "",
        f"  {'':<22}{'quality':>9}{'escalated':>11}{'cost (USD)':>13}{'cost':>11}",
        line("draft only", report.draft_only()),
        line("strong only", strong),
        line("oracle", report.oracle()),
        line(f"cascade @ {report.threshold:g}", served),
        "",
        f"quality {summary['relative_quality']:.1%} of strong-only, "
        f"savings {summary['savings_pct']:.1f}% against strong-only",
        "",
        f"  {'threshold':>9}{'quality':>9}{'escalated':>11}{'cost (USD)':>13}{'savings':>9}",
    ]
    shown = {round(t / 20, 2) for t in range(21)} | {report.threshold}
    for p in report.curve(shown):
        savings = 100.0 * (1 - p.cost_usd / strong.cost_usd) if strong.cost_usd else 0.0
        mark = "  <- configured" if p.threshold == report.threshold else ""
        lines.append(
            f"  {p.threshold:>9.4g}{_q(p.quality, report.metric):>9}{p.escalation_rate:>11.1%}"
            f"{p.cost_usd:>13.4f}{savings:>8.1f}%{mark}"
        )
    return "\n".join(lines)


def _q(value: float, metric: str) -> str:
    return f"{value:.1%}" if metric == "correct" else f"{value:.2f}"


def _calibrate(args: argparse.Namespace) -> int:
    from cascade_gateway.replay.calibrate import pick, write_threshold

    report, path = _report(args)
    strong = report.strong_only()
    target = args.target_quality
    if target is not None and args.relative:
        target *= strong.quality
    chosen = pick(report.outcomes, target_quality=target, max_escalation=args.max_escalation)
    assert chosen.threshold is not None
    out = Path(args.out or path)
    preserved = write_threshold(Path(path), args.cascade, chosen.threshold, out)
    savings = 100.0 * (1 - chosen.cost_usd / strong.cost_usd) if strong.cost_usd else 0.0
    result = {
        "threshold": chosen.threshold,
        "quality": chosen.quality,
        "strong_only_quality": strong.quality,
        "escalation_rate": chosen.escalation_rate,
        "cost_usd": chosen.cost_usd,
        "savings_pct": savings,
        "n": len(report.outcomes),
        "split": args.split,
        "written_to": str(out),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"threshold {chosen.threshold:g} on {result['n']} rows (split: {args.split}): quality "
        f"{_q(chosen.quality, report.metric)} (strong-only {_q(strong.quality, report.metric)}), "
        f"escalating {chosen.escalation_rate:.1%}, savings {savings:.1f}%"
    )
    note = "" if preserved else " (rewritten from its parsed content: comments were not kept)"
    print(f"wrote cascades.{args.cascade}.threshold to {out}{note}")
    return 0
