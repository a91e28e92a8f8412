# Your copy of py/nonblock/sockets.py: edit it, then run `make lab1`. (Generated; see docs/ARCHITECTURE.md.)
"""Non-blocking sockets from Python: try the call first, wait only if it would block (lab 1).

This is the heart of asyncio's sock_recv, from the talk's slide "Some Python
code, at last!", without the event loop around it:

    try:
        return sock.recv(n)              # 1. try: maybe the data is already there
    except (BlockingIOError, InterruptedError):
        pass                             # 2. EAGAIN: it would block
    ... add_reader(fd, ...)              # 3. only now, wait until the fd is readable

Here step 3 is a plain wait in a selector (epoll on Linux) instead of a callback
in an event loop: the thread sleeps in epoll_wait, using no CPU, then tries again.

    sock = socket.create_connection(("127.0.0.1", port))
    make_nonblocking(sock)
    sendall(sock, b"x" * 1_000_000)      # many partial sends, each wait in epoll_wait
    data = recv_some(sock, 65536)        # b"" once the peer has closed its side

(InterruptedError, i.e. EINTR, never reaches us: since Python 3.5 the socket
methods retry it themselves (PEP 475). The slide's code still catches it.)
"""
from __future__ import annotations

import selectors
import socket


def make_nonblocking(sock: socket.socket) -> None:
    """Put sock in non-blocking mode: from now on its calls never sleep.

    A send/recv that cannot make progress raises BlockingIOError (EAGAIN) at
    once. Under the hood this sets O_NONBLOCK on the file descriptor.
    """
    # TODO(lab1): one method call on the socket does it (see the socket module's docs:
    #   "blocking mode", not "timeout").
    raise NotImplementedError("lab1: sockets.make_nonblocking")


def wait_until_ready(sock: socket.socket, events: int, timeout: float | None = None) -> bool:
    """Sleep until sock is ready for events, at most timeout seconds (None: no limit).

    events is selectors.EVENT_READ, selectors.EVENT_WRITE or both, or'ed.
    Returns True when sock is ready, False when the time ran out.
    """
    # TODO(lab1): make a selectors.DefaultSelector (epoll on Linux) in a `with` block,
    #   register sock for events, and call select(timeout): its result is the
    #   list of ready (key, events) pairs, empty when the time ran out.
    raise NotImplementedError("lab1: sockets.wait_until_ready")


def recv_some(sock: socket.socket, n: int, timeout: float | None = None) -> bytes:
    """Receive 1 to n bytes from the non-blocking sock; b"" when the peer has closed.

    Tries sock.recv first; only when it raises BlockingIOError, waits until sock
    is readable and tries again. Raises TimeoutError when one wait lasts longer
    than timeout seconds.
    """
    # TODO(lab1): in a loop: try sock.recv(n) and return what it gives (b"" included);
    #   on BlockingIOError wait_until_ready(sock, selectors.EVENT_READ, timeout),
    #   raising TimeoutError when it returns False. Never wait before trying.
    raise NotImplementedError("lab1: sockets.recv_some")


def sendall(sock: socket.socket, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
    """Send every byte of data on the non-blocking sock.

    sock.send may take only a part of what it is given (a partial write): the
    rest goes in the next calls. When it raises BlockingIOError (the send buffer
    is full), wait until sock is writable. Raises TimeoutError when one wait lasts
    longer than timeout seconds.
    """
    # TODO(lab1): keep a count of the bytes sent so far and loop until it reaches
    #   len(data): sock.send(the rest) returns how many bytes it took (maybe fewer
    #   than given). On BlockingIOError wait_until_ready(sock, selectors.EVENT_WRITE,
    #   timeout). A memoryview slices the rest without copying it.
    raise NotImplementedError("lab1: sockets.sendall")
