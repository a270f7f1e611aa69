"""Instructions per request of the gateway's own code, counted by valgrind: a figure that does
not move with the machine.

CPU time on this shared 2-core VM moves by ±15 % between runs, which hides the 2-5 % that most
single changes are worth. `valgrind --tool=callgrind` counts the instructions a process
executes, the same from one run to the next. This drives the ASGI app in-process (as
`app_cpu.py` does: no HTTP server, the fake upstream in another process) under callgrind twice,
with `--requests` and with twice as many requests after the same warm-up, and reports the
difference per request: what one request costs, start-up and warm-up excluded.

What it does not see: user space only, so system calls (a socket write costs as much as a few
thousand Python instructions) and cache misses are not in it. Compare versions of the same
code path with it; for what a client sees, `load.py`.

    python benchmarks/instructions.py                         # (b)/(c) x JSON/SSE, ~2 min
    python benchmarks/instructions.py --checkout /tmp/old     # another checkout, for an A/B
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import app_cpu  # the in-process driver
import load
import loadgen

POINTS = (
    ("(b) pass-through", "small", False),
    ("(c) cascade", "default", False),
    ("(b) pass-through", "small", True),
    ("(c) cascade", "default", True),
)
WARMUP_REQUESTS = 50
CONCURRENCY = 8


def drive(model: str, stream: bool, requests: int) -> None:
    """In the counted process: start the app (config from the environment), warm it up, run
    `requests` requests, stop it."""
    import uvloop

    from cascade_gateway.app import create_app_from_env

    async def run() -> None:
        driver = app_cpu.Driver(create_app_from_env())
        await driver.lifespan("startup")
        body = loadgen.chat_body(model, stream)
        await app_cpu.measure(driver, body, WARMUP_REQUESTS, CONCURRENCY)
        if requests:
            await app_cpu.measure(driver, body, requests, CONCURRENCY)
        await driver.lifespan("shutdown")

    uvloop.run(run())


def count(checkout: Path, folder: Path, model: str, stream: bool, requests: int) -> int:
    """Instructions callgrind counted for one driven process."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    argv += [__file__, "drive", "--model", model, "--requests", str(requests)]
    if stream:
        argv.append("--stream")
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=folder, timeout=900)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the counted run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("drive", help="(internal) the counted process")
    run.add_argument("--model", required=True)
    run.add_argument("--stream", action="store_true")
    run.add_argument("--requests", type=int, required=True)
    parser.add_argument("--checkout", type=Path, default=load.HERE.parent, help="default: this")
    parser.add_argument("--requests", type=int, default=500, help="the counted difference")
    args = parser.parse_args(argv)
    if args.command == "drive":
        drive(args.model, args.stream, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    checkout = args.checkout.resolve()
    with tempfile.TemporaryDirectory(prefix="cascade-instr-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        upstream = load.start_fake_upstream(folder, 0, stack).url
        config = folder / "gateway.yaml"
        config.write_text(yaml.safe_dump(load.gateway_config(upstream + "/v1", folder, "info")))
        (folder / "metrics").mkdir()
        os.environ["CASCADE_CONFIG_FILE"] = str(config)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")
        jobs = [
            (model, stream, n)
            for _, model, stream in POINTS
            for n in (args.requests, 2 * args.requests)
        ]
        # Two at a time (the machine's cores): the counts do not depend on the timing.
        with ThreadPoolExecutor(max_workers=2) as pool:
            counted = list(pool.map(lambda job: count(checkout, folder, *job), jobs))
    print(f"checkout {checkout}: instructions per request (valgrind), {args.requests} counted")
    for i, (name, _, stream) in enumerate(POINTS):
        per_request = (counted[2 * i + 1] - counted[2 * i]) / args.requests
        print(f"{name:<18} {'sse' if stream else 'json':<5} {per_request:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
