"""Where a gateway worker's event loop spends its time under load, from py-spy.

`record()` samples a worker (wall clock: `--idle`, per thread: `--threads`) into py-spy's
collapsed-stack text; `summarise()` keeps only the event-loop (main) thread — for an asyncio
server, any moment that thread is not waiting in the loop's poll is a moment every other
request waits too — and reports the share of its samples that were idle (the loop waiting for
I/O, nothing to do), then, as % of the busy samples:

    self        the function at the top of the stack (time spent in it, or in C it calls)
    inclusive   functions of cascade_gateway anywhere on the stack (time in that stage)
    callers     any function anywhere on the stack, less the plumbing under every request
    packages    self time grouped by the package that owns the top frame

Time blocked on the GIL or in a system call shows at the Python line that made the call.
py-spy sees a coroutine's callers only as far as the task it runs in, so "inclusive" figures
are lower bounds; "self" and "packages" are exact.

    python benchmarks/hotspots.py /tmp/gw-0ms-w*.txt     # summarise recorded profiles
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# The loop's poll is C code under this frame: a sample whose top frame is it is an idle loop.
_IDLE_LEAVES = ("Runner.run (asyncio/runners.py", "run_until_complete (asyncio/base_events.py")


def record(pid: int, duration: float, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` for `duration` seconds, writing collapsed stacks to `out`."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration)))]
    argv += ["--rate", str(rate), "--nonblocking", "--idle", "--threads"]
    argv += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _short(frame: str) -> str:
    """`function (path/module.py:123)` -> `function (path/module.py)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _package(frame: str) -> str:
    where = frame.partition(" (")[2].rsplit(":", 1)[0]
    parts = where.split("/")
    if parts[0] == "cascade_gateway" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py") or "?"


def summarise(collapsed: list[Path], top: int = 15) -> dict[str, Any]:
    """The event-loop threads' profile (one file per worker, added up): the idle share of all
    samples, then top functions, stages and packages as % of the busy samples."""
    own: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    callers: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = idle = 0
    lines = [line for path in collapsed for line in path.read_text().splitlines()]
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        # With --threads the first frame names the thread: `thread (1234): MainThread`.
        if not frames or not frames[0].endswith(": MainThread"):
            continue
        count = int(count_text)
        frames = frames[1:]
        total += count
        if not frames or frames[-1].startswith(_IDLE_LEAVES):
            idle += count
            continue
        own[_short(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            callers[name] += count
            if "(cascade_gateway/" in name:
                stages[name] += count

    busy = total - idle

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / busy, 1)) for name, n in counter.most_common(top)]

    # Frames under nearly every busy sample (the loop, uvicorn, the middleware stack) say nothing.
    plumbing = 0.6 * busy
    callers = Counter({name: n for name, n in callers.items() if n < plumbing})

    return {
        "samples": total,
        "idle_pct": round(100 * idle / total, 1) if total else 0.0,
        "self": share(own) if busy else [],
        "inclusive": share(stages) if busy else [],
        "packages": share(packages) if busy else [],
        "callers": share(callers) if busy else [],
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"event-loop thread(s): {summary['samples']} samples, idle {summary['idle_pct']}%; "
        "the rest (busy) is 100 % below"
    ]
    for kind, title in (
        ("self", "top of stack (self)"),
        ("packages", "self, by package"),
        ("inclusive", "cascade_gateway on the stack (inclusive)"),
        ("callers", "any function on the stack (inclusive, under 60 % of busy samples)"),
    ):
        lines.append(f"  {title}:")
        lines += [f"    {pct:5.1f}%  {name}" for name, pct in summary[kind]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collapsed", type=Path, nargs="+", help="py-spy --format raw output(s)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    print(render(summarise(args.collapsed, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
