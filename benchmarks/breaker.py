"""What a model's circuit breaker holds and costs per call when it is busy.

The breaker keeps its error-rate window as a count of calls and failures (`resilience/
breaker.py`). This fills one window at `--rate` calls a second for the window's length, then
times `record` with `--failing` of the calls failing (a failure is when the breaker checks the
error rate), and prints the window's memory and the time per call.

    python benchmarks/breaker.py [--rate 3500] [--failing 0.1]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from cascade_gateway.resilience.breaker import BreakerSettings, CircuitBreaker


class Clock:
    """Time that moves only when told, so the window fills in no time at all."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3500, help="calls a second (one worker)")
    parser.add_argument("--failing", type=float, default=0.1, help="share of calls failing")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls")
    args = parser.parse_args()
    settings = BreakerSettings()  # the defaults: a 30 s window, opening at 50 % errors
    clock = Clock()
    breaker = CircuitBreaker("model", settings, clock=clock)
    filled = int(args.rate * settings.window_s)

    tracemalloc.start()
    for i in range(filled):
        clock.now = i / args.rate
        breaker.record(True)
    memory, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    every = round(1 / args.failing) if args.failing else 0
    started = time.perf_counter()
    for i in range(args.calls):
        clock.now = settings.window_s + i / args.rate
        breaker.record(not every or i % every != 0)
    per_call = (time.perf_counter() - started) / args.calls

    print(f"window of {filled:,} calls ({args.rate:g}/s over {settings.window_s:g} s)")
    print(f"  memory held: {memory / 1e6:.3f} MB")
    print(f"  record(), {args.failing:.0%} failing: {per_call * 1e6:.2f} µs a call")
    print(f"  state after: {breaker.state}")


if __name__ == "__main__":
    main()
