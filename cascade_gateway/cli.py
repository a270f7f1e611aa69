"""`cascade-gateway` command line: serve, check-config, fake-upstream."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile

from cascade_gateway import workers
from cascade_gateway.auth.cli import add_commands as add_key_commands
from cascade_gateway.config import CONFIG_ENV, ConfigError, GatewayConfig, load_config, warnings
from cascade_gateway.replay.cli import add_commands as add_replay_commands


def load_or_exit(path: str) -> GatewayConfig:
    """The config at `path`, or exit 2 listing its problems."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for warning in warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    return config


def _check_config(args: argparse.Namespace) -> int:
    config = load_or_exit(args.file)
    print(
        f"{args.file}: ok ({len(config.providers)} providers, {len(config.models)} models, "
        f"{len(config.cascades)} cascades)"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cascade_gateway.observability.logs import configure_logging

    config = load_or_exit(args.config)
    # Workers re-read the (already checked) file through the app factory.
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    made_metrics_dir = _prepare_metrics_dir(args.workers)
    configure_logging(args.log_level or config.log.level, config.log.format)
    # uvicorn re-raises SIGTERM once it has shut down gracefully, which would make the process
    # exit 143; a drained shutdown is a success, so that re-raised signal is absorbed here.
    signal.signal(signal.SIGTERM, lambda *_: None)
    options = {
        "log_config": None,
        "log_level": args.log_level or config.log.level,
        "access_log": args.access_log,
        "timeout_keep_alive": config.server.keep_alive_s,
    }
    try:
        return _run_server(args, config, options)
    finally:
        if made_metrics_dir is not None:
            shutil.rmtree(made_metrics_dir, ignore_errors=True)


def _run_server(args: argparse.Namespace, config: GatewayConfig, options: dict) -> int:
    import uvicorn

    if args.workers > 1 and workers.reuse_port_supported():
        # Drain, then uvicorn's own shutdown: give both their time before giving up on one.
        grace_s = config.server.drain_seconds + 15
        try:
            return workers.serve_workers(args.host, args.port, args.workers, grace_s, options)
        except OSError as exc:
            print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
    uvicorn.run(
        workers.APP, factory=True, host=args.host, port=args.port, workers=args.workers,
        **options,
    )  # fmt: skip
    return 0


def _prepare_metrics_dir(worker_count: int) -> str | None:
    """Several workers share metrics through files; stale files from a previous run would be
    counted again, so the directory starts empty. Returns a directory made here (to remove at
    exit), None when there is none or it was given."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    made = None
    if folder is None and worker_count > 1:
        folder = made = tempfile.mkdtemp(prefix="cascade-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    if folder is None:
        return None
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))
    return made


def _fake_upstream(args: argparse.Namespace) -> int:
    from cascade_gateway.fake_upstream import serve
    from cascade_gateway.fake_upstream.script import HISTORY_LIMIT

    serve(
        host=args.host,
        port=args.port,
        script_path=args.script,
        latency_s=args.latency_ms / 1000.0,
        api_key=args.api_key,
        history=HISTORY_LIMIT if args.history is None else args.history,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cascade-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="YAML config file")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="uvicorn's own access log too")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    check.set_defaults(run=_check_config)

    fake = commands.add_parser("fake-upstream", help="run the fake OpenAI/Anthropic upstream")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9100)
    fake.add_argument("--script", help="YAML file of scripted rules")
    fake.add_argument("--latency-ms", type=float, default=0.0)
    fake.add_argument("--api-key", help="require this key from clients")
    fake.add_argument(
        "--history",
        type=int,
        help="requests to remember for GET /_fake/requests (default 10000; benchmarks: 0)",
    )
    fake.set_defaults(run=_fake_upstream)

    add_key_commands(commands)
    add_replay_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
