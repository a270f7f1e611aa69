"""Several worker processes, each on its own listening socket (`SO_REUSEPORT`).

uvicorn's own `--workers` hands one listening socket to every worker. Whichever worker is awake
accepts a whole burst of new connections, and keep-alive keeps them there: under a load that
opened 64 connections at once, one worker of two took all of them in about a third of the runs
(0.9 of the 2 cores used, the other worker idle, latency doubled). With a socket per worker the
kernel spreads connections across the workers by hash.

The supervisor starts the workers, replaces one that dies, and on SIGTERM or SIGINT passes the
signal on to every worker (each drains, see `lifecycle.py`), waits for them and exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("cascade_gateway.workers")

APP = "cascade_gateway.app:create_app_from_env"
RESTART_BACKOFF_S = 1.0


def reuse_port_supported() -> bool:
    """Whether this platform can give each worker its own socket on one port."""
    return hasattr(socket, "SO_REUSEPORT")


def serve_workers(
    host: str, port: int, workers: int, grace_s: float, uvicorn_options: dict[str, Any]
) -> int:
    """Run `workers` uvicorn servers of the gateway until SIGTERM/SIGINT; 0 once they drained.

    `grace_s` bounds the wait for the workers after the signal (their drain, then shutdown).
    """
    _check_free(host, port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    context = multiprocessing.get_context("spawn")
    args = (host, port, uvicorn_options)
    slots: list[BaseProcess] = [_start(context, args) for _ in range(workers)]
    started = [time.monotonic()] * workers
    while not stop.wait(0.2):
        for i, process in enumerate(slots):
            if process.is_alive() or time.monotonic() - started[i] < RESTART_BACKOFF_S:
                continue
            log.error(
                "worker died; starting another",
                extra={"fields": {"pid": process.pid, "exit_code": process.exitcode}},
            )
            _forget(process)
            slots[i], started[i] = _start(context, args), time.monotonic()
    for process in slots:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker drains, then stops
    deadline = time.monotonic() + grace_s
    for process in slots:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.error("worker did not stop in time", extra={"fields": {"pid": process.pid}})
            process.kill()
            process.join()
        _forget(process)
    return 0


def _start(context: Any, args: tuple[Any, ...]) -> BaseProcess:
    process = context.Process(target=_worker, args=args, name="cascade-gateway-worker")
    process.start()
    return process


def _worker(host: str, port: int, uvicorn_options: dict[str, Any]) -> None:
    import uvicorn

    # uvicorn re-raises the SIGTERM it shut down for; the supervisor reads exit codes only to
    # report deaths, so a drained worker exits quietly.
    signal.signal(signal.SIGTERM, lambda *_: None)
    sock = _listening_socket(host, port)
    config = uvicorn.Config(APP, factory=True, host=host, port=port, **uvicorn_options)
    uvicorn.Server(config).run(sockets=[sock])


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _check_free(host: str, port: int) -> None:
    """Fail now if something already listens there: with SO_REUSEPORT the workers would
    otherwise quietly share the port with it (a stale gateway, say)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _forget(process: BaseProcess) -> None:
    """Drop a dead worker's live gauges (in-flight requests, circuit state) from /metrics."""
    if process.pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid)
