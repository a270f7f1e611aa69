"""Reading a `benchmarks/load.py` report: comparisons between paths, text tables, Markdown
tables (as in RESULTS.md), and the issue's targets checked point by point.

    python benchmarks/report.py /tmp/load.json              # the text tables again
    python benchmarks/report.py /tmp/load.json --markdown   # Markdown, for RESULTS.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import hotspots

LABELS = {
    "a": "direct upstream",
    "b": "gateway pass-through",
    "c": "gateway cascade",
    "f": "floor (bare proxy)",
    "l": "litellm proxy",
    "0": "null server",
}
_CORES = ("gateway", "upstream", "floor", "litellm", "client", "other")
_SERVER = {"a": "upstream", "b": "gateway", "c": "gateway", "f": "floor", "l": "litellm"}


def cpu_ms_per_request(p: dict[str, Any]) -> float | None:
    """CPU time the serving process (upstream, gateway or LiteLLM) spent per request: the
    figure least disturbed by a noisy machine."""
    cores = p.get("cpu", {}).get(_SERVER.get(p["path"], ""))
    return 1000 * cores / p["rps"] if cores is not None and p["rps"] else None


def add_comparisons(points: list[dict[str, Any]]) -> None:
    """Give each point other than (a) the latency it adds over (a) at the same upstream latency,
    concurrency and mode, per percentile, and gateway points their requests/s over LiteLLM's."""
    index = {
        (p["upstream_latency_ms"], p["concurrency"], p["stream"], p["path"]): p for p in points
    }
    for p in points:
        key = (p["upstream_latency_ms"], p["concurrency"], p["stream"])
        base = index.get((*key, "a"))
        if p["path"] != "a" and base is not None:
            p["added_ms"] = _minus(p["latency_ms"], base["latency_ms"])
            if p["stream"]:
                p["added_ttft_ms"] = _minus(p["ttft_ms"], base["ttft_ms"])
        litellm = index.get((*key, "l"))
        if p["path"] in ("b", "c") and litellm is not None and litellm["rps"]:
            p["rps_vs_litellm"] = round(p["rps"] / litellm["rps"], 2)


def _minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(a[k] - b[k], 3) for k in a if k in b}


def targets(points: list[dict[str, Any]]) -> list[tuple[bool, str, str]]:
    """The issue's targets for a 2-core machine, per gateway point: (met, where, target)."""
    results = []
    for p in points:
        # The floor (f) is checked too: what the stack alone makes of each target.
        if p["path"] not in ("b", "c", "f") or "added_ms" not in p:
            continue
        where = (
            f"({p['path']}) {'sse ' if p['stream'] else 'json'} "
            f"{p['upstream_latency_ms']:g} ms c={p['concurrency']}"
        )
        added = p["added_ms"]
        if p["concurrency"] == 1:
            results.append((added["p50"] <= 1, where, f"added p50 {added['p50']:.2f} <= 1 ms"))
            results.append((added["p99"] <= 5, where, f"added p99 {added['p99']:.2f} <= 5 ms"))
        if p["concurrency"] == 64:
            results.append((added["p99"] <= 25, where, f"added p99 {added['p99']:.1f} <= 25 ms"))
            if "rps_vs_litellm" in p:
                ratio = p["rps_vs_litellm"]
                results.append((ratio >= 3, where, f"rps {ratio:.2f}x litellm's >= 3x"))
    return results


# --- text ------------------------------------------------------------------------------------

HEADER = (
    f"{'path':25} {'c':>3} {'mode':6} {'p50':>7} {'p90':>7} {'p99':>7} {'ttft50':>7} "
    f"{'ttft99':>7} {'rps':>7} {'err':>4} {'+p50':>7} {'+p90':>7} {'+p99':>7} {'cpu/req':>7}  "
    "cores gw/up/fl/ll/client/other"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cores(p: dict[str, Any]) -> str:
    cpu = p.get("cpu", {})
    return "/".join(f"{cpu[n]:.2f}" if n in cpu else "-" for n in _CORES)


def row(p: dict[str, Any]) -> str:
    """One point as a line under HEADER (latencies in ms)."""
    lat, ttft, added = p["latency_ms"], p.get("ttft_ms") or {}, p.get("added_ms") or {}
    label = f"({p['path']}) {LABELS.get(p['path'], '')}"
    return (
        f"{label:25} {p['concurrency']:>3} {'sse' if p['stream'] else 'json':6} "
        f"{_ms(lat.get('p50')):>7} {_ms(lat.get('p90')):>7} {_ms(lat.get('p99')):>7} "
        f"{_ms(ttft.get('p50')):>7} {_ms(ttft.get('p99')):>7} {p['rps']:>7.0f} {p['errors']:>4} "
        f"{_ms(added.get('p50')):>7} {_ms(added.get('p90')):>7} {_ms(added.get('p99')):>7} "
        f"{_ms(cpu_ms_per_request(p)):>7}  {_cores(p)}"
    )


def _rss(name: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    return (
        f"{name} RSS MB: before {before['total_mb']} (supervisor {before['supervisor_mb']}, "
        f"workers {before['workers_mb']}), after {after['total_mb']} "
        f"(workers {after['workers_mb']})"
    )


def _ceiling(report: dict[str, Any]) -> str:
    ceiling = report.get("client_ceiling")
    if not ceiling:
        return "client ceiling: not measured"
    return (
        f"client ceiling (load generator vs a canned-response server, "
        f"c={ceiling['concurrency']}): {ceiling['rps']:.0f} rps at "
        f"{ceiling['client_cpu']:.2f} of a core"
    )


def text(report: dict[str, Any]) -> str:
    """The whole report as plain-text tables."""
    m = report["machine"]
    lines = [
        f"{report['date']}  {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, "
        f"Python {m['python']}; load average {report['loadavg_before']} -> "
        f"{report['loadavg_after']}",
        _ceiling(report),
    ]
    for run in report["runs"]:
        lines += ["", f"upstream latency {run['upstream_latency_ms']:g} ms (ms; +pXX over (a))"]
        lines += [HEADER, *(row(p) for p in run["points"])]
        lines += [_rss(n, run["rss_before"][n], run["rss_after"][n]) for n in run["rss_before"]]
        for p in run["points"]:
            if "hot_spots" in p:
                lines.append(
                    f"\nhot spots of the gateway workers, ({p['path']}) c={p['concurrency']} "
                    f"{'sse' if p['stream'] else 'json'} ({p['profile']}):"
                )
                lines.append(hotspots.render(p["hot_spots"]))
    checked = targets([p for run in report["runs"] for p in run["points"]])
    if checked:
        lines += ["", "targets:"]
        lines += [f"{'PASS' if ok else 'FAIL'}  {where:28} {what}" for ok, where, what in checked]
    return "\n".join(lines)


# --- Markdown --------------------------------------------------------------------------------


def _md_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables, one per upstream latency (for RESULTS.md)."""
    lines = [f"`{report['command']}` — {_ceiling(report)}."]
    for run in report["runs"]:
        lines += [
            "",
            f"**Upstream latency {run['upstream_latency_ms']:g} ms** (ms; *+pXX* = added over "
            "(a) at the same point; *CPU/req* = CPU ms the serving process spent per request; "
            "cores used over the point by gateway / upstream / floor proxy / LiteLLM / load "
            "generator / everything else on the machine)",
            "",
            "| path | c | mode | p50 | p90 | p99 | TTFT p50 | TTFT p99 | req/s | err "
            "| +p50 | +p90 | +p99 | CPU/req | cores gw/up/fl/ll/client/other |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        for p in run["points"]:
            lat, ttft, added = p["latency_ms"], p.get("ttft_ms") or {}, p.get("added_ms") or {}
            cells = [
                f"({p['path']}) {LABELS.get(p['path'], '')}",
                str(p["concurrency"]),
                "SSE" if p["stream"] else "JSON",
                *(_md_ms(lat.get(k)) for k in ("p50", "p90", "p99")),
                *(_md_ms(ttft.get(k)) for k in ("p50", "p99")),
                f"{p['rps']:.0f}",
                str(p["errors"]),
                *(_md_ms(added.get(k)) for k in ("p50", "p90", "p99")),
                _md_ms(cpu_ms_per_request(p)),
                _cores(p),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [
            f"- {_rss(n, run['rss_before'][n], run['rss_after'][n])}" for n in run["rss_before"]
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report written by load.py --output/--json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    print(markdown(report) if args.markdown else text(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
