"""Gateway overhead and throughput under concurrent load, against the fake upstream.

Starts, as separate processes on 127.0.0.1, the fake upstream (fixed latency), the gateway in
production settings (`cascade-gateway serve --workers 2`: uvicorn with uvloop and httptools,
SQLite ledger, the default JSON request log to a file) and, with `--with-litellm`, LiteLLM's
proxy pointed at the same upstream. Then, for each upstream latency, concurrency and mode
(JSON or SSE), it drives closed-loop load from another process (`benchmarks/loadgen.py`) through:

    (a) the fake upstream directly                       model draft-model
    (b) the gateway, naming a model (pass-through)       model small
    (c) the gateway's 2-tier cascade, draft accepted     model default
    (f) the floor: a bare uvicorn forwarder    model draft-model
        (`benchmarks/floor_proxy.py`, the gateway's server and client with nothing between)
    (l) LiteLLM's proxy (pass-through, --with-litellm)   model draft-model

and prints p50/p90/p99 latency, time to first token (streams), requests/s, errors, the latency
each path adds over (a) per percentile, the CPU each process used (and everything else on the
machine: the noise), and the gateway's RSS before and after (`benchmarks/report.py` renders
it). A point's paths take turns in rounds (`--rounds`, 4 by default: the measured seconds are
split between them, each after its own warm-up), and its figures pool every round's requests.
Each point is time-bounded (rounds x warm-up + duration <= 30 s).

    python benchmarks/load.py                      # 0 and 50 ms upstream, c = 1/16/64, ~8 min
    python benchmarks/load.py --quick              # 0 ms, c = 1/64, 2 s points
    python benchmarks/load.py --with-litellm       # needs: python benchmarks/litellm_proxy.py setup
    python benchmarks/load.py --profile /tmp/gw    # py-spy on the gateway's workers at one point
    python benchmarks/load.py --json               # one JSON object instead of tables
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hotspots  # noqa: E402  (sibling scripts, not a package)
import litellm_proxy  # noqa: E402
import loadgen  # noqa: E402
import report  # noqa: E402

ANSWER = "The capital of France is Paris."
PROMPT = "What is the capital of France?"
MAX_POINT_S = 30.0


@dataclass(frozen=True)
class Route:
    """One way through to the upstream: which service serves it, and the model to ask for."""

    key: str
    label: str
    service: str
    model: str


ROUTES = {
    "a": Route("a", report.LABELS["a"], "upstream", "draft-model"),
    "b": Route("b", report.LABELS["b"], "gateway", "small"),
    "c": Route("c", report.LABELS["c"], "gateway", "default"),
    "f": Route("f", report.LABELS["f"], "floor", "draft-model"),
    "l": Route("l", report.LABELS["l"], "litellm", "draft-model"),
}


# --- processes -------------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid -> parent pid, for every process we can see."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses; fields after it do not.
        result[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return result


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Service:
    """A server process we started (in its own process group), and its descendants."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def pids(self) -> list[int]:
        parents = _parents()
        tree, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            frontier = [pid for pid, parent in parents.items() if parent in frontier]
            tree += frontier
        return tree

    def workers(self) -> list[int]:
        """uvicorn's worker processes (multiprocessing spawn children), or the process itself."""
        found = [pid for pid in self.pids() if "spawn_main" in _cmdline(pid)]
        return found or [self.proc.pid]

    def rss(self) -> dict[str, Any]:
        """Resident memory in MB: the supervisor (none with one worker), each worker, in all."""
        workers = self.workers()
        alone = workers == [self.proc.pid]
        return {
            "supervisor_mb": None if alone else round(_rss_mb(self.proc.pid), 1),
            "workers_mb": [round(_rss_mb(pid), 1) for pid in workers],
            "total_mb": round(sum(_rss_mb(pid) for pid in self.pids()), 1),
        }

    def cpu_s(self) -> float:
        return sum(_cpu_s(pid) for pid in self.pids())


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot (all cores)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    name: str,
    argv: list[str],
    url: str,
    folder: Path,
    env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """Start a server in its own process group (output to `folder/NAME.log`); stop it after."""
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    service = Service(name, proc, url, log)
    try:
        yield service
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # our own group: the server and its workers
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_answering(service: Service, probe: str, timeout: float = 120.0) -> None:
    """Until `probe` answers 200 (or the server dies, or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        if service.proc.poll() is not None:
            tail = service.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} did not become ready; see {service.log}")
        try:
            if httpx.get(service.url + probe, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def wait_idle(services: list[Service], timeout: float = 120.0) -> None:
    """Until every process tree has been idle for a second: each worker has finished starting
    up, and whatever the first requests set off lazily is done. A worker still importing or
    warming up would be counted against the first points."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"never idle: {', '.join(s.name for s in services)}")
        before = [s.cpu_s() for s in services]
        time.sleep(0.5)
        busy = any(s.cpu_s() - b >= 0.05 for s, b in zip(services, before, strict=True))
        quiet = 0 if busy else quiet + 1  # under 10 % of a core, twice in a row


# --- the runs --------------------------------------------------------------------------------


def fake_upstream(folder: Path, latency_ms: float) -> tuple[list[str], str]:
    """The command that runs the benchmarks' fake upstream on a free port, answering `ANSWER`
    after `latency_ms` (its script written to `folder`), and the upstream's URL."""
    script = folder / "script.yaml"
    script.write_text(yaml.safe_dump({"rules": [{"reply": {"text": ANSWER}}]}))
    port = free_port()
    argv = [sys.executable, "-m", "cascade_gateway", "fake-upstream", "--port", str(port)]
    # No request history: keeping one made the fake's own garbage collections stall it.
    argv += ["--script", str(script), "--latency-ms", str(latency_ms), "--history", "0"]
    return argv, f"http://127.0.0.1:{port}"


def start_fake_upstream(
    folder: Path, latency_ms: float, stack: ExitStack, env: dict[str, str] | None = None
) -> Service:
    """`fake_upstream`, started and answering; it stops when `stack` closes."""
    argv, url = fake_upstream(folder, latency_ms)
    service = stack.enter_context(running("upstream", argv, url, folder, env=env))
    wait_answering(service, "/v1/models")
    return service


def gateway_config(upstream_v1: str, folder: Path, log_level: str) -> dict[str, Any]:
    """A 2-tier cascade and two direct aliases on the fake upstream; ledger in SQLite."""
    return {
        "providers": {"local": {"kind": "openai", "base_url": upstream_v1}},
        "models": {
            "small": {
                "provider": "local",
                "model": "draft-model",
                "input_per_mtok": 0.15,
                "output_per_mtok": 0.60,
            },
            "large": {
                "provider": "local",
                "model": "strong-model",
                "input_per_mtok": 2.50,
                "output_per_mtok": 10.00,
            },
        },
        "cascades": {"default": {"tiers": ["small", "large"]}},
        "storage": {"database_url": f"sqlite:///{folder / 'bench.db'}"},
        "log": {"level": log_level, "format": "json"},
    }


def preflight(service: Service, route: Route, stream: bool) -> None:
    """One request the way the load generator sends it: it must succeed, and the cascade's
    draft must be accepted (otherwise (c) would measure two upstream calls)."""
    body = {
        "model": route.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
    }
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=30)
    if response.status_code != 200 or "Paris" not in response.text:
        raise RuntimeError(f"({route.key}) answered {response.status_code}: {response.text[:500]}")
    outcome = response.headers.get("x-cascade-outcome")
    if route.key == "c" and not stream and outcome != "accepted":
        raise RuntimeError(f"(c) the cascade's draft was not accepted: outcome {outcome!r}")


def drive(
    service: Service,
    route: Route,
    concurrency: int,
    stream: bool,
    duration: float,
    warmup: float,
    samples: bool = False,
) -> dict[str, Any]:
    """One point: the load generator in its own process; its JSON summary (with every timing
    measured, if `samples`)."""
    argv = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "drive",
        "--url",
        f"{service.url}/v1/chat/completions",
        "--model",
        route.model,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    if stream:
        argv.append("--stream")
    if samples:
        argv.append("--samples")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 60)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def client_ceiling(duration: float, warmup: float, concurrency: int) -> dict[str, Any]:
    """The load generator against a canned-response server: its own requests/s ceiling."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "loadgen.py"), "null-server", "--port", str(port)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening on ..."
        null = Service("null", server, f"http://127.0.0.1:{port}", Path(os.devnull))
        return drive(
            null, Route("0", "null server", "null", "m"), concurrency, False, duration, warmup
        )
    finally:
        _stop(server)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def start_services(
    args: argparse.Namespace, latency_ms: float, folder: Path, stack: ExitStack
) -> dict[str, Service]:
    """The fake upstream, the gateway and (optionally) LiteLLM's proxy, started in parallel and
    answering; they stop when `stack` closes."""
    gw_port, ll_port, fl_port = free_port(), free_port(), free_port()
    upstream_argv, upstream = fake_upstream(folder, latency_ms)
    config = folder / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(gateway_config(upstream + "/v1", folder, args.gateway_log_level))
    )
    cli = [sys.executable, "-m", "cascade_gateway"]
    gateway_argv = [*cli, "serve", "--config", str(config), "--port", str(gw_port)]
    gateway_argv += ["--workers", str(args.workers)]
    services = {
        "upstream": stack.enter_context(running("upstream", upstream_argv, upstream, folder))
    }
    probes = {
        "upstream": "/v1/models",
        "gateway": "/readiness",
        "floor": "/health",
        "litellm": "/health/liveliness",
    }
    if set(args.paths) & {"b", "c"}:
        gateway = f"http://127.0.0.1:{gw_port}"
        services["gateway"] = stack.enter_context(running("gateway", gateway_argv, gateway, folder))
    if "f" in args.paths:
        floor_argv = [
            sys.executable, "-m", "uvicorn", "floor_proxy:app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(fl_port), "--workers", str(args.workers),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        floor_env = {**os.environ, "FLOOR_UPSTREAM": upstream}
        floor = f"http://127.0.0.1:{fl_port}"
        services["floor"] = stack.enter_context(
            running("floor", floor_argv, floor, folder, env=floor_env)
        )
    if args.with_litellm:
        ll_config = folder / "litellm.yaml"
        litellm_proxy.write_config(ll_config, upstream + "/v1", "draft-model")
        ll_argv = litellm_proxy.command(args.litellm_venv, ll_config, ll_port, args.workers)
        ll_url = f"http://127.0.0.1:{ll_port}"
        ll_env = litellm_proxy.environment()
        services["litellm"] = stack.enter_context(
            running("litellm", ll_argv, ll_url, folder, env=ll_env)
        )
    for name, service in services.items():
        wait_answering(service, probes[name])
    return services


def run_round(
    args: argparse.Namespace,
    services: dict[str, Service],
    route: Route,
    concurrency: int,
    stream: bool,
    latency_ms: float,
    turn: int,
) -> dict[str, Any]:
    """One round of a point: `duration / rounds` seconds measured after the warm-up, with the
    cores each process used over it and every timing (and py-spy on every worker, if this is
    the first round of the point to profile)."""
    service = services[route.service]
    seconds = args.duration / args.rounds
    profilers: list[subprocess.Popen[bytes]] = []
    collapsed: list[Path] = []
    if turn == 0 and _profiled(args, route, concurrency, stream):
        # Every worker: which one gets a connection is the kernel's choice. py-spy attaches
        # within ~0.1 s, which the load generator's warm-up covers.
        for i, pid in enumerate(service.workers()):
            collapsed.append(Path(f"{args.profile}-{latency_ms:g}ms-w{i}.txt"))
            profilers.append(hotspots.record(pid, args.warmup + seconds, collapsed[-1]))
    cpu_before = {n: s.cpu_s() for n, s in services.items()}
    workers_before = {pid: _cpu_s(pid) for pid in service.workers()}
    busy_before = machine_busy_s()
    started = time.monotonic()
    result = drive(service, route, concurrency, stream, seconds, args.warmup, samples=True)
    wall = time.monotonic() - started
    # Cores used over the round: ours, and everyone else's on the machine (the noise).
    cpu = {n: (s.cpu_s() - cpu_before[n]) / wall for n, s in services.items()}
    machine_cores = (machine_busy_s() - busy_before) / wall
    cpu["client"] = result["client_cpu"]
    cpu["other"] = max(0.0, machine_cores - sum(cpu.values()))
    result["cpu"] = cpu
    # Per worker: the kernel spreads connections by hash, so the split shows the balance.
    result["worker_cores"] = [
        (_cpu_s(pid) - before) / wall for pid, before in workers_before.items()
    ]
    result["wall_s"] = wall
    if profilers:
        for profiler in profilers:
            profiler.wait(timeout=args.warmup + seconds + 30)
        result["hot_spots"] = hotspots.summarise(collapsed)
        result["profile"] = " ".join(map(str, collapsed))
    return result


def _profiled(args: argparse.Namespace, route: Route, concurrency: int, stream: bool) -> bool:
    """Whether this is the point `--profile` asks for."""
    wanted = (args.profile_path, args.profile_concurrency, args.profile_stream)
    return bool(args.profile) and (route.key, concurrency, stream) == wanted


def pooled(rounds: list[dict[str, Any]], route: Route, latency_ms: float) -> dict[str, Any]:
    """A point's rounds as one point: percentiles over every request of every round, requests/s
    over the measured seconds, cores averaged over the rounds' wall time."""
    walls = [r["wall_s"] for r in rounds]

    def mean(values: list[float]) -> float:
        return round(sum(v * w for v, w in zip(values, walls, strict=True)) / sum(walls), 2)

    samples = [r.pop("samples") for r in rounds]
    kinds: Counter[str] = Counter()
    for r in rounds:
        kinds.update(r["error_kinds"])
    point = dict(rounds[0])
    del point["wall_s"]
    completed = sum(r["completed"] for r in rounds)
    measured_s = sum(r["duration_s"] for r in rounds)
    point.update(
        duration_s=measured_s,
        rounds=len(rounds),
        completed=completed,
        errors=sum(kinds.values()),
        error_kinds=dict(kinds),
        rps=completed / measured_s,
        latency_ms=loadgen.percentiles([x for s in samples for x in s["latency_ms"]]),
        ttft_ms=loadgen.percentiles([x for s in samples for x in s["ttft_ms"]]),
        client_cpu=mean([r["client_cpu"] for r in rounds]),
        cpu={name: mean([r["cpu"][name] for r in rounds]) for name in rounds[0]["cpu"]},
        worker_cores=[
            mean([r["worker_cores"][i] for r in rounds])
            for i in range(len(rounds[0]["worker_cores"]))
        ],
        path=route.key,
        upstream_latency_ms=latency_ms,
    )
    return point


def run_latency(args: argparse.Namespace, latency_ms: float, folder: Path) -> dict[str, Any]:
    """Every point at one upstream latency: start the servers, drive each point, stop them.
    The paths of one point take turns, `rounds` times, so they share the machine's conditions:
    on a shared VM those drift over seconds by more than the gateway adds at c = 1."""
    routes = [ROUTES[key] for key in args.paths] + ([ROUTES["l"]] if args.with_litellm else [])
    with ExitStack() as stack:
        services = start_services(args, latency_ms, folder, stack)
        for route in routes:
            for stream in args.streams:
                preflight(services[route.service], route, stream)
        wait_idle(list(services.values()))
        rss_before = {n: s.rss() for n, s in services.items() if n != "upstream"}
        points = []
        for concurrency in args.concurrency:
            for stream in args.streams:
                rounds: dict[str, list[dict[str, Any]]] = {route.key: [] for route in routes}
                for turn in range(args.rounds):
                    for route in routes:
                        measured = run_round(
                            args, services, route, concurrency, stream, latency_ms, turn
                        )
                        rounds[route.key].append(measured)
                for route in routes:
                    point = pooled(rounds[route.key], route, latency_ms)
                    points.append(point)
                    print(report.row(point), file=sys.stderr, flush=True)  # progress
        rss_after = {n: s.rss() for n, s in services.items() if n != "upstream"}
    return {
        "upstream_latency_ms": latency_ms,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "points": points,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--modes", nargs="+", choices=["json", "sse"], default=["json", "sse"])
    parser.add_argument(
        "--paths", nargs="+", choices=["a", "b", "c", "f"], default=["a", "b", "c", "f"]
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per point")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds before each round"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="turns the paths of a point take (duration split)"
    )
    parser.add_argument("--quick", action="store_true", help="0 ms, c = 1 and 64, 2 s points")
    parser.add_argument("--workers", type=int, default=2, help="gateway (and litellm) workers")
    parser.add_argument(
        "--gateway-log-level",
        choices=["info", "warning"],
        default="info",
        help="info (default, as in production) logs one JSON line per request",
    )
    parser.add_argument("--with-litellm", action="store_true", help="add LiteLLM's proxy (l)")
    parser.add_argument("--litellm-venv", type=Path, default=litellm_proxy.DEFAULT_VENV)
    parser.add_argument("--no-client-ceiling", action="store_true")
    parser.add_argument(
        "--profile", help="py-spy every gateway worker at one point; stacks to PREFIX-*"
    )
    parser.add_argument("--profile-path", choices=["b", "c"], default="c")
    parser.add_argument("--profile-concurrency", type=int, default=64)
    parser.add_argument("--profile-stream", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--output", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly still win
        quick = {
            "upstream_latency_ms": [0.0],
            "concurrency": [1, 64],
            "duration": 2.0,
            "warmup": 0.5,
            "rounds": 1,
        }
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.duration + args.rounds * args.warmup > MAX_POINT_S:
        parser.error(f"--duration + --rounds x --warmup must be <= {MAX_POINT_S:g} s per point")
    if args.with_litellm and not litellm_proxy.executable(args.litellm_venv).exists():
        parser.error(
            f"no LiteLLM proxy at {litellm_proxy.executable(args.litellm_venv)}; run "
            f"`python benchmarks/litellm_proxy.py setup --venv {args.litellm_venv}` first"
        )
    args.streams = [mode == "sse" for mode in args.modes]
    if "a" not in args.paths:
        args.paths.insert(0, "a")  # the baseline every other path is compared with
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": " ".join(
            ["python", "benchmarks/load.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "workers": args.workers,
            "gateway_log_level": args.gateway_log_level,
        },
        "loadavg_before": loadavg(),
    }
    print(report.HEADER, file=sys.stderr, flush=True)  # progress rows follow on stderr
    if not args.no_client_ceiling:
        result["client_ceiling"] = client_ceiling(args.duration, args.warmup, max(args.concurrency))
    runs = []
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        for latency_ms in args.upstream_latency_ms:
            folder = Path(tmp) / f"{latency_ms:g}ms"
            folder.mkdir()
            runs.append(run_latency(args, latency_ms, folder))
    for run in runs:
        report.add_comparisons(run["points"])
    result["runs"] = runs
    result["loadavg_after"] = loadavg()
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.markdown:
        print(report.markdown(result))
    else:
        print(report.text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
