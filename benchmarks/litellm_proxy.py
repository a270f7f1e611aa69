"""LiteLLM's proxy as a comparison point for `benchmarks/load.py --with-litellm`.

It lives in its own virtualenv (never the project's: its pins would fight ours), is pointed at
the same fake upstream as the gateway, and serves the upstream's model under the same name, so
the load generator can send it the very same request as path (a).

    python benchmarks/litellm_proxy.py setup [--venv benchmarks/.venv-litellm]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-litellm"


def executable(venv: Path) -> Path:
    """The `litellm` command inside the venv."""
    return venv / "bin" / "litellm"


def setup(venv: Path) -> None:
    """Create the venv and install `litellm[proxy]` into it (a few minutes, ~1 GB)."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "litellm[proxy]"], check=True)


def write_config(path: Path, upstream_v1: str, model: str) -> None:
    """A proxy config with one OpenAI-compatible model served by the fake upstream."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream_v1,
                    "api_key": "unused",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path.write_text(yaml.safe_dump(config))


def command(venv: Path, config: Path, port: int, workers: int) -> list[str]:
    """How to start the proxy: uvicorn, `workers` processes, as its docs advise for production."""
    return [
        str(executable(venv)),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]


def environment() -> dict[str, str]:
    """Offline (bundled cost map), quiet (errors only), no telemetry, no .env loading, and no
    master key — the gateway is benchmarked without API keys too, so neither authenticates."""
    return {
        **os.environ,
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MODE": "PRODUCTION",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("setup", help="create the venv and install litellm[proxy]")
    make.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    setup(args.venv)
    print(f"{executable(args.venv)} is ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
