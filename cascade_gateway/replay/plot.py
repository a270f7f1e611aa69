"""The cost-quality picture of a replay: the cascade's curve across thresholds, with the
draft-only, strong-only, oracle and configured points marked. Needs matplotlib (the `plot`
extra); everything else in the replay works without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cascade_gateway.replay.run import Report

INSTALL_HINT = "pip install 'cascade-gateway[plot]'  (or: pip install matplotlib)"


class PlotUnavailable(Exception):
    """matplotlib is not installed; the message says how to install it."""


def plot(report: Report, path: str | Path, *, title: str | None = None) -> Path:
    """Write the picture as a PNG at `path` and return the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(f"the plot needs matplotlib: {INSTALL_HINT}") from exc

    strong = report.strong_only()
    draft = report.draft_only()
    oracle = report.oracle()
    served = report.served()
    curve = report.curve()
    scale = 100.0 / strong.cost_usd if strong.cost_usd else 0.0
    quality_label = "accuracy" if report.metric == "correct" else "mean score"

    def x(cost: float) -> float:
        return cost * scale

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    ax.plot(
        [x(draft.cost_usd), x(strong.cost_usd)],
        [draft.quality, strong.quality],
        linestyle=":",
        color="0.6",
        label="random routing (no validator)",
    )
    ax.plot(
        [x(p.cost_usd) for p in curve],
        [p.quality for p in curve],
        marker=".",
        markersize=4,
        color="tab:blue",
        label="cascade, thresholds 0 to 1",
    )
    points = (
        (draft, "draft only", "tab:orange", "s"),
        (strong, "strong only", "tab:red", "s"),
        (oracle, "oracle", "tab:green", "*"),
        (served, f"configured threshold {report.threshold:g}", "tab:purple", "o"),
    )
    for p, label, color, marker in points:
        ax.scatter(
            [x(p.cost_usd)],
            [p.quality],
            s=140 if marker == "*" else 70,
            color=color,
            marker=marker,
            zorder=5,
            label=f"{label}: {_quality(p.quality, report.metric)}, cost {x(p.cost_usd):.0f}%",
        )
    # Guides for the usual question: how much quality is kept at how much saved.
    guide: dict[str, Any] = {"color": "0.45", "linewidth": 0.8, "linestyle": "--"}
    ax.axhline(0.95 * strong.quality, **guide)
    ax.annotate("95% of strong-only", (1, 0.95 * strong.quality), fontsize=8, va="bottom")
    ax.axvline(50, **guide)
    ax.annotate("50% saved", (51, ax.get_ylim()[0]), fontsize=8, va="bottom")
    n = len(report.outcomes)
    ax.set_xlabel(f"cost, % of strong-only (${strong.cost_usd:.2f} for {n} queries)")
    ax.set_ylabel(quality_label)
    ax.set_xlim(0, 105)
    ax.grid(alpha=0.3)
    ax.set_title(
        title or f"{report.draft_model} drafts, {report.strong_model} takes the escalations",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def _quality(value: float, metric: str) -> str:
    return f"{value:.1%}" if metric == "correct" else f"{value:.2f}"
