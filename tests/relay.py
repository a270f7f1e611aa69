"""A TCP relay to a real server that can be cut and restored: a storage outage on demand."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit


class Relay:
    """Listens on 127.0.0.1 and passes every connection through to `host:port`.

    `cut()` closes every connection it carries and refuses (accepts, then closes) new ones,
    as a server that went away would look to its clients; `stall()` keeps connections open but
    drops what they carry, as a server that hangs would look; `deafen()` passes what clients
    send but drops the server's answers, as answers lost on the way would look; `restore()`
    undoes any of them.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = False
        self._stalled = False
        self._deaf = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, url: str) -> str:
        """`url` (redis:// or postgresql://, pointing at the target) rewritten to go through
        the relay."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            carried, self._open = self._open, []
        for sock in carried:
            _close(sock)

    def stall(self) -> None:
        self._stalled = True

    def deafen(self) -> None:
        self._deaf = True

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            self._stalled = False
            self._deaf = False

    @contextmanager
    def down(self) -> Iterator[None]:
        """Cut for the length of the block."""
        self.cut()
        try:
            yield
        finally:
            self.restore()

    @contextmanager
    def hung(self) -> Iterator[None]:
        """Stalled for the length of the block."""
        self.stall()
        try:
            yield
        finally:
            self.restore()

    @contextmanager
    def answers_lost(self) -> Iterator[None]:
        """Deaf for the length of the block."""
        self.deafen()
        try:
            yield
        finally:
            self.restore()

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                # Checked under the lock that `cut` takes: no connection slips past a cut.
                refused = self._cut
                if not refused:
                    self._open += [client, server]
            if refused:
                _close(client)
                _close(server)
                continue
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool = False) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if not (self._stalled or (answers and self._deaf)):
                    sink.sendall(data)
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def relay_to(url: str) -> Iterator[Relay]:
    """A relay to the server `url` names."""
    parts = urlsplit(url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 0)
    try:
        yield relay
    finally:
        relay.close()
