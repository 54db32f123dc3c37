"""The loopback HTTP server: the same Sandbox over a real socket, for subprocesses and tools
that bring their own HTTP stack. Loopback only: the sandbox has no authentication worth the
name and holds customer data.

    server = serve("state.db", port=0)
    client = StripeClient("sk_test_x", base_addresses={"api": server.url, "meter_events": server.url})
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .core import Sandbox
from .faults import DroppedConnection


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: "SandboxServer"
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        try:
            status, headers, payload = self.server.sandbox.handle(
                self.command, path, query, dict(self.headers.items()), body
            )
        except DroppedConnection:
            # a timeout/reset as the client sees it: close without answering
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: stderr belongs to the CLI
        pass


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: Sandbox, host: str, port: int):
        super().__init__((host, port), _Handler)
        self.sandbox = sandbox
        self._thread: threading.Thread | None = None
        # set when the serving thread ends. Waited on instead of Thread.join: on Python 3.11 a
        # Ctrl-C that interrupts join() marks the still-running thread as stopped, so shutdown
        # skipped stopping it, closed the socket under its loop and could hang at exit
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SandboxServer":
        """Serve from a daemon thread; returns at once."""
        if self._thread is None:
            # a short poll: shutdown() waits for it (tests start and stop many servers)
            self._thread = threading.Thread(target=self._serve, name="usagebill-sandbox", daemon=True)
            self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            super().serve_forever(0.05)
        finally:
            self._stopped.set()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Block until ``shutdown()`` (or Ctrl-C): a foreground ``usagebill sandbox serve``."""
        if self._thread is None:
            super().serve_forever(poll_interval)
            return
        while not self._stopped.wait(poll_interval):
            pass

    def shutdown(self) -> None:
        if self._thread is not None and not self._stopped.is_set():
            super().shutdown()  # returns once the serving loop has ended
            self._stopped.wait(5)
        self.server_close()
        self.sandbox.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def serve(path=None, port: int = 0, host: str = "127.0.0.1", **sandbox_kwargs: Any) -> SandboxServer:
    """A started server over ``Sandbox(path, **sandbox_kwargs)``, answering from a daemon
    thread. ``.serve_forever()`` blocks until ``.shutdown()``. Non-loopback hosts are refused."""
    if not _is_loopback(host):
        raise ValueError(f"the sandbox server only listens on loopback addresses, not {host!r}")
    return SandboxServer(Sandbox(path, **sandbox_kwargs), host, port).start()
