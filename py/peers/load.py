"""Hold N echo clients open and make them talk: the load the notebooks put on a server.

    with EchoClients(port, 200) as clients:    # 200 connections, all established
        clients.round_trip(b"ping" * 16)       # every client sends, every echo comes back
        proc.threads(server_pid)               # ... while we look at the server

One thread and one selector drive all clients, so the load itself hides no threads.
"""
from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import cast


class EchoClients:
    def __init__(self, port: int, count: int, timeout: float = 30.0):
        self.port, self.count, self.timeout = port, count, timeout
        self.sockets: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()

    def __enter__(self) -> EchoClients:
        for _ in range(self.count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", self.port))  # EINPROGRESS: finished below
            self.sockets.append(sock)
        self._wait_all(selectors.EVENT_WRITE, lambda sock: True)
        for sock in self.sockets:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise ConnectionError(err, f"a client could not connect to port {self.port}")
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for sock in self.sockets:
            sock.close()
        self._selector.close()

    def round_trip(self, message: bytes) -> float:
        """Every client sends message and reads its echo; returns the seconds it took."""
        started = time.monotonic()
        for sock in self.sockets:
            sock.sendall(message)  # small messages fit in the socket buffer: never blocks long
        received = {sock: b"" for sock in self.sockets}

        def read(sock: socket.socket) -> bool:
            chunk = sock.recv(len(message) - len(received[sock]))
            if not chunk:
                raise ConnectionError(f"the server closed a connection after {len(received[sock])} bytes")
            received[sock] += chunk
            return len(received[sock]) == len(message)

        self._wait_all(selectors.EVENT_READ, read)
        wrong = [sock for sock, data in received.items() if data != message]
        if wrong:
            raise AssertionError(f"{len(wrong)} clients got back bytes different from what they sent")
        return time.monotonic() - started

    def _wait_all(self, event: int, step: Callable[[socket.socket], bool]) -> None:
        """Wait until step(sock) has returned True once for every socket."""
        pending = set(self.sockets)
        for sock in pending:
            self._selector.register(sock, event)
        deadline = time.monotonic() + self.timeout
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(pending)} of {self.count} clients got no answer in {self.timeout:g} s")
                for key, _ in self._selector.select(left):
                    sock = cast(socket.socket, key.fileobj)
                    if step(sock):
                        pending.discard(sock)
                        self._selector.unregister(sock)
        finally:
            for sock in pending:
                self._selector.unregister(sock)
