"""Two versions of the gateway served side by side, loaded in turns: is the change faster?

On a shared 2-core machine, separate `load.py` runs drift by ±15 % within minutes, which
hides a 5 % change. Here both versions run at once against one fake upstream, and short
bursts of the same load alternate between them (in a random order each round), so every
figure of one has a figure of the other taken seconds apart. Reported per version: the median
over rounds of the gateway's CPU per request (its processes only), requests/s and latency
percentiles, and the median of the per-round ratios new / old.

    git worktree add /tmp/old <rev>
    python benchmarks/ab.py --old /tmp/old                        # (b) JSON, c = 64, 0 ms
    python benchmarks/ab.py --old /tmp/old --model default --stream --rounds 12

Each side runs from its own checkout (`PYTHONPATH`), started from a scratch directory so that
`python -m` cannot pick up the current directory's package instead.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # the load benchmark's services, config and load generator


def serve(checkout: Path, name: str, upstream_v1: str, folder: Path, stack: ExitStack) -> Any:
    """A gateway from `checkout` with the load benchmark's config, answering."""
    port = load.free_port()
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(load.gateway_config(upstream_v1, folder / name, "info")))
    (folder / name).mkdir()
    argv = [sys.executable, "-m", "cascade_gateway", "serve", "--config", str(config)]
    argv += ["--port", str(port), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    url = f"http://127.0.0.1:{port}"
    service = stack.enter_context(load.running(name, argv, url, folder, env=env))
    load.wait_answering(service, "/readiness")
    return service


def burst(service: Any, args: argparse.Namespace) -> dict[str, float]:
    """One burst of load; the gateway's CPU per request (ms), requests/s and percentiles."""
    route = load.Route("x", service.name, "gateway", args.model)
    cpu_before = service.cpu_s()
    started = time.monotonic()
    result = load.drive(service, route, args.concurrency, args.stream, args.seconds, 0.5)
    cpu = service.cpu_s() - cpu_before
    wall = time.monotonic() - started
    latency = result["latency_ms"]
    # CPU over the whole burst (warm-up included) against every request it answered.
    answered = result["rps"] * wall
    return {
        "cpu_ms": cpu / answered * 1000,
        "rps": result["rps"],
        "p50": latency["p50"],
        "p99": latency["p99"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="checkout of the base version")
    parser.add_argument("--new", type=Path, default=load.HERE.parent, help="default: this one")
    parser.add_argument("--model", default="small", help="small: (b) pass-through; default: (c)")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per burst")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cascade-ab-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        os.chdir(folder)
        env = {**os.environ, "PYTHONPATH": str(args.new)}
        upstream = load.start_fake_upstream(folder, args.latency_ms, stack, env).url
        sides = {
            "old": serve(args.old.resolve(), "old", upstream + "/v1", folder, stack),
            "new": serve(args.new.resolve(), "new", upstream + "/v1", folder, stack),
        }
        load.wait_idle(list(sides.values()))
        for service in sides.values():  # warm both up
            burst(service, argparse.Namespace(**{**vars(args), "seconds": 1.0}))
        figures: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for round_ in range(args.rounds):
            order = random.sample(list(sides), 2)
            for name in order:
                figures[name].append(burst(sides[name], args))
            row = "  ".join(
                f"{n} {figures[n][-1]['cpu_ms']:.3f} ms {figures[n][-1]['rps']:5.0f}/s"
                for n in ("old", "new")
            )
            print(f"round {round_ + 1}: {row}", file=sys.stderr, flush=True)
    mode = "sse" if args.stream else "json"
    print(f"model {args.model}, {mode}, c = {args.concurrency}, {args.latency_ms:g} ms upstream")
    print(f"{'':6} {'cpu ms/req':>10} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}   (medians)")
    for name in ("old", "new"):
        med = {k: statistics.median(f[k] for f in figures[name]) for k in figures[name][0]}
        figures_row = f"{med['cpu_ms']:10.3f} {med['rps']:7.0f} {med['p50']:7.2f} {med['p99']:7.2f}"
        print(f"{name:6} {figures_row}")
    ratios = {
        k: statistics.median(
            n[k] / o[k] for n, o in zip(figures["new"], figures["old"], strict=True)
        )
        for k in figures["old"][0]
    }
    print(
        "new/old " + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items()) + "  (median of rounds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
