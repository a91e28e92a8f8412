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
    # BEGIN SOLUTION lab1
    # TODO: one method call on the socket does it (see the socket module's docs:
    #   "blocking mode", not "timeout").
    # STUB: raise NotImplementedError("lab1: sockets.make_nonblocking")
    sock.setblocking(False)
    # END SOLUTION


def wait_until_ready(sock: socket.socket, events: int, timeout: float | None = None) -> bool:
    """Sleep until sock is ready for events, at most timeout seconds (None: no limit).

    events is selectors.EVENT_READ, selectors.EVENT_WRITE or both, or'ed.
    Returns True when sock is ready, False when the time ran out.
    """
    # BEGIN SOLUTION lab1
    # TODO: make a selectors.DefaultSelector (epoll on Linux) in a `with` block,
    #   register sock for events, and call select(timeout): its result is the
    #   list of ready (key, events) pairs, empty when the time ran out.
    # STUB: raise NotImplementedError("lab1: sockets.wait_until_ready")
    # A selector of our own for each wait keeps the example small; an event loop
    # keeps one selector for all its sockets instead (that is lab 2).
    with selectors.DefaultSelector() as selector:
        selector.register(sock, events)
        return bool(selector.select(timeout))
    # END SOLUTION


def recv_some(sock: socket.socket, n: int, timeout: float | None = None) -> bytes:
    """Receive 1 to n bytes from the non-blocking sock; b"" when the peer has closed.

    Tries sock.recv first; only when it raises BlockingIOError, waits until sock
    is readable and tries again. Raises TimeoutError when one wait lasts longer
    than timeout seconds.
    """
    # BEGIN SOLUTION lab1
    # TODO: in a loop: try sock.recv(n) and return what it gives (b"" included);
    #   on BlockingIOError wait_until_ready(sock, selectors.EVENT_READ, timeout),
    #   raising TimeoutError when it returns False. Never wait before trying.
    # STUB: raise NotImplementedError("lab1: sockets.recv_some")
    while True:
        try:
            return sock.recv(n)
        except BlockingIOError:
            pass   # nothing has arrived yet: now, and only now, wait
        if not wait_until_ready(sock, selectors.EVENT_READ, timeout):
            raise TimeoutError(f"no data within {timeout} s")
    # END SOLUTION


def sendall(sock: socket.socket, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
    """Send every byte of data on the non-blocking sock.

    sock.send may take only a part of what it is given (a partial write): the
    rest goes in the next calls. When it raises BlockingIOError (the send buffer
    is full), wait until sock is writable. Raises TimeoutError when one wait lasts
    longer than timeout seconds.
    """
    # BEGIN SOLUTION lab1
    # TODO: keep a count of the bytes sent so far and loop until it reaches
    #   len(data): sock.send(the rest) returns how many bytes it took (maybe fewer
    #   than given). On BlockingIOError wait_until_ready(sock, selectors.EVENT_WRITE,
    #   timeout). A memoryview slices the rest without copying it.
    # STUB: raise NotImplementedError("lab1: sockets.sendall")
    view = memoryview(data).cast("B")   # bytes, whatever the item size of data
    sent = 0
    while sent < len(view):
        try:
            sent += sock.send(view[sent:])
        except BlockingIOError:
            if not wait_until_ready(sock, selectors.EVENT_WRITE, timeout):
                raise TimeoutError(f"the socket did not become writable within {timeout} s") from None
    # END SOLUTION
