"""One raw-socket SCPI server per virtual instrument (127.0.0.1, an ephemeral port), as a LAN
instrument's port 5025 (Keysight) or 5555 (Rigol) serves: program messages in, responses out with
the model's read termination, errors to the instrument's queue."""
from __future__ import annotations

import selectors
import socket
import socketserver
import threading
from typing import TYPE_CHECKING

from rig.bench.scpi import ScpiInput


class _Handler(socketserver.BaseRequestHandler):
    server: InstrumentServer   # the only server this handler serves

    def handle(self) -> None:
        inst = self.server.instrument
        sock: socket.socket = self.request
        term = inst.model.read_termination.encode("latin-1")
        parser = ScpiInput()
        self.server.conns.add(sock)
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                before = parser.overruns
                messages = parser.feed(data)
                if parser.overruns != before:
                    inst.push_error(-363)
                for units in messages:
                    for reply in inst.execute(units):
                        try:
                            sock.sendall(reply + term)
                        except OSError:
                            return
        finally:
            self.server.conns.discard(sock)


class InstrumentServer(socketserver.ThreadingTCPServer):
    """One virtual instrument served on a raw TCP socket; ``close_all`` ends it and its connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, instrument, host: str, port: int):
        self.instrument = instrument
        self.conns: set[socket.socket] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._stopped = threading.Event()
        self._stopped.set()
        super().__init__((host, port), _Handler)

    if TYPE_CHECKING:   # socketserver.BaseServer's own (private, so not in typeshed): accept one connection
        def _handle_request_noblock(self) -> None: ...

    def handle_error(self, request, client_address) -> None:
        """One connection's trouble is not the server's: nothing printed, the server goes on."""
        pass  # one connection's trouble is not the server's

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Accept connections until shutdown().  socketserver's own loop wakes every poll_interval
        to look for a shutdown request, and shutdown() waits for that wake-up (up to 50 ms per
        server, four servers per virtual bench); here a wake-up socket ends the wait at once and
        nothing polls.  (poll_interval is accepted and not needed.)"""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as sel:
                try:
                    sel.register(self, selectors.EVENT_READ)
                    sel.register(self._wake_r, selectors.EVENT_READ)
                except (OSError, ValueError):     # closed before it started serving
                    return
                while not self._stop:
                    for key, _ in sel.select():
                        if key.fileobj is not self._wake_r and not self._stop:
                            self._handle_request_noblock()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever() now (the wake-up socket), and wait until it has stopped."""
        self._stop = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def close_all(self) -> None:
        """Stop serving, end every open connection, and close the server."""
        self.shutdown()
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
