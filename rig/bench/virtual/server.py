"""One raw-socket SCPI server per virtual instrument (127.0.0.1, an ephemeral port), as a LAN
instrument's port 5025 (Keysight) or 5555 (Rigol) serves: program messages in, responses out with
the model's read termination, errors to the instrument's queue."""
from __future__ import annotations

import socket
import socketserver

from rig.bench.scpi import ScpiInput


class _Handler(socketserver.BaseRequestHandler):
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
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, instrument, host: str, port: int):
        self.instrument = instrument
        self.conns: set[socket.socket] = set()
        super().__init__((host, port), _Handler)

    def handle_error(self, request, client_address) -> None:
        pass  # one connection's trouble is not the server's

    def close_all(self) -> None:
        self.shutdown()
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
