"""Adversarial clients for any echo server: the ones a real server meets on a bad day.

Give them the address of a server started by echo_server.start_server:

    with start_server(["build/bin/rx_echo", "--port", "0"]) as server:
        check_echo(server.address, b"hello")              # a well-behaved client
        result = many_clients(server.address, 1000)       # a thousand at once
        reader = SlowReader(server.address); reader.fill()  # sends, never reads...
        reader.drain()                                    # ...then reads it all back

Every client here is driven from the calling thread with non-blocking sockets and
`selectors` (a thousand clients do not need a thousand threads); only DripFeeder,
which must keep going while the test does something else, runs in one thread.
Failures raise AssertionError with a message written for the learner.
"""
from __future__ import annotations

import errno
import fcntl
import os
import resource
import selectors
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from grading.servers import Address

# A byte stream that shows a dropped, repeated or reordered byte: a random block whose
# length is prime, repeated (stream[i] = BLOCK[i % len(BLOCK)]).
_BLOCK = os.urandom(65521)


def pattern(offset: int, size: int) -> bytes:
    """stream[offset : offset + size] of the test pattern."""
    out = bytearray()
    while len(out) < size:
        start = (offset + len(out)) % len(_BLOCK)
        out += _BLOCK[start:start + size - len(out)]
    return bytes(out)


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards wanted (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# ---- a well-behaved client ----

def echo_once(address: Address, data: bytes, timeout: float = 3.0) -> bytes:
    """Connect, send data, read until as many bytes came back (or EOF/timeout); return them."""
    with socket.create_connection(address, timeout=timeout) as sock:
        return echo_on(sock, data, timeout)


def echo_on(sock: socket.socket, data: bytes, timeout: float = 3.0) -> bytes:
    """Send data on a connected socket while reading the echo (so that a large message
    cannot deadlock with a server that stops reading until we read); return what came
    back: all of it, or less on EOF, error or timeout."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    sent = 0
    got = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while len(got) < len(data):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for _, events in sel.select(timeout=left):
                try:
                    if events & selectors.EVENT_WRITE:
                        sent += sock.send(data[sent:sent + (1 << 16)])
                        if sent == len(data):
                            sel.modify(sock, selectors.EVENT_READ)
                    if events & selectors.EVENT_READ:
                        chunk = sock.recv(1 << 16)
                        if not chunk:
                            return bytes(got)
                        got += chunk
                except BlockingIOError:
                    pass
                except OSError:
                    return bytes(got)
    return bytes(got)


def check_echo(address: Address, data: bytes = b"ping\n", timeout: float = 3.0, who: str = "a new client") -> float:
    """Assert that a client gets data echoed within timeout; return how long it took."""
    start = time.monotonic()
    try:
        got = echo_once(address, data, timeout)
    except OSError as err:
        raise AssertionError(f"{who} could not talk to the server: {err}") from None
    took = time.monotonic() - start
    assert got == data, (f"{who} sent {len(data)} bytes and got {len(got)} back within {timeout:g} s "
                         f"({got[:40]!r}...): the server is not serving it")
    return took


# ---- a thousand at once ----

@dataclass
class Crowd:
    """What many_clients saw."""

    clients: int
    done: int                       # clients that got every echo back
    failures: list[str] = field(default_factory=list)  # the first few problems, in words
    seconds: float = 0.0


def many_clients(address: Address, n: int, rounds: int = 2, size: int = 100, timeout: float = 30.0) -> Crowd:
    """n clients connect and stay connected; each round, every one sends `size` bytes and
    waits for them back; no client starts round k+1 before all finished round k.

    So the server holds n connections at the same time, and must serve each of them.
    """
    raise_nofile(n + 256)
    start = time.monotonic()
    deadline = start + timeout
    socks: list[socket.socket] = []
    failures: list[str] = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(address)      # EINPROGRESS: completes in the background
            socks.append(s)
        alive = set(range(n))
        for r in range(rounds):
            payloads = {i: struct.pack("!II", i, r) + pattern(i * 7919 + r, size - 8) for i in alive}
            ok = _exchange(socks, payloads, deadline, failures)
            alive &= ok
        return Crowd(n, len(alive), failures[:5], time.monotonic() - start)
    finally:
        for s in socks:
            s.close()


def _exchange(socks: list[socket.socket], payloads: dict[int, bytes], deadline: float,
              failures: list[str]) -> set[int]:
    """Each socks[i] sends payloads[i] and reads as much back; returns the i that got it all."""
    sel = selectors.DefaultSelector()
    sent = dict.fromkeys(payloads, 0)
    got = {i: bytearray() for i in payloads}
    done: set[int] = set()
    failed: set[int] = set()
    for i in payloads:
        sel.register(socks[i], selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    try:
        while len(done) + len(failed) < len(payloads) and time.monotonic() < deadline:
            for key, events in sel.select(timeout=min(0.5, max(deadline - time.monotonic(), 0))):
                i, sock = key.data, socks[key.data]
                try:
                    if events & selectors.EVENT_WRITE and sent[i] < len(payloads[i]):
                        sent[i] += sock.send(payloads[i][sent[i]:])
                        if sent[i] == len(payloads[i]):
                            sel.modify(sock, selectors.EVENT_READ, i)
                    if events & selectors.EVENT_READ:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionResetError("the server closed the connection")
                        got[i] += chunk
                except BlockingIOError:
                    continue
                except OSError as err:
                    failures.append(f"client {i}: {err}")
                    failed.add(i)
                    sel.unregister(sock)
                    continue
                if len(got[i]) >= len(payloads[i]):
                    if bytes(got[i]) != payloads[i]:
                        failures.append(f"client {i}: got back bytes that differ from what it sent")
                        failed.add(i)
                    else:
                        done.add(i)
                    sel.unregister(sock)
    finally:
        sel.close()
    for i in payloads:
        if i not in done and i not in failed and len(failures) < 5:
            failures.append(f"client {i}: sent {sent[i]} of {len(payloads[i])} bytes, "
                            f"got {len(got[i])} back before the time ran out")
    return done


# ---- clients that take their time ----

@contextmanager
def idle_client(address: Address) -> Iterator[socket.socket]:
    """A client that connects and never says a word (the server must not wait for it)."""
    with socket.create_connection(address, timeout=3) as sock:
        yield sock


class DripFeeder(threading.Thread):
    """Sends data one byte at a time with a pause between bytes, reading the echo as it
    comes; runs in a thread so that the test can use the server meanwhile."""

    def __init__(self, address: Address, data: bytes, pause: float = 0.02):
        super().__init__(daemon=True, name="drip-feeder")
        self.address, self.data, self.pause = address, data, pause
        self.received = bytearray()
        self.error: str | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(self.address, timeout=3) as sock:
                sock.setblocking(False)
                for i in range(len(self.data)):
                    sock.send(self.data[i:i + 1])
                    time.sleep(self.pause)
                    self._read_available(sock)
                deadline = time.monotonic() + 3
                while len(self.received) < len(self.data) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    self._read_available(sock)
        except OSError as err:
            self.error = f"{type(err).__name__}: {err}"

    def _read_available(self, sock: socket.socket) -> None:
        try:
            while chunk := sock.recv(4096):
                self.received += chunk
        except BlockingIOError:
            pass


class SlowReader:
    """A client that sends and sends without reading, until the server stops taking its
    bytes (fill), then reads everything back and checks every byte (drain).

    Its send buffer, the server's receive buffer, the server's own buffer, the server's
    send buffer and its receive buffer fill up, in that order backwards: the server's
    send() goes partial, then fails with EAGAIN. A correct server waits for EPOLLOUT and
    meanwhile stops reading from this client, so this client's sends stall too.
    """

    def __init__(self, address: Address, limit: int = 256 << 20, stall: float = 0.5):
        self.sock = socket.create_connection(address, timeout=3)
        self.sock.setblocking(False)
        self.limit, self.stall = limit, stall
        self.sent = 0
        self.received = 0
        self.stalled = False

    def fill(self) -> int:
        """Send until no byte is taken for `stall` seconds (or until limit); return bytes sent."""
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_WRITE)
        try:
            while self.sent < self.limit:
                if not sel.select(timeout=self.stall):
                    self.stalled = True
                    break
                try:
                    self.sent += self.sock.send(pattern(self.sent, min(1 << 18, self.limit - self.sent)))
                except BlockingIOError:
                    continue
        finally:
            sel.close()
        return self.sent

    def drain(self, timeout: float = 20.0) -> None:
        """Read until every byte sent came back; assert each one is right."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        try:
            while self.received < self.sent:
                if not sel.select(timeout=max(deadline - time.monotonic(), 0)):
                    raise AssertionError(
                        f"a client sent {self.sent} bytes and, reading now, got only {self.received} back "
                        f"within {timeout:g} s: the rest never came (echo dropped after a partial write? "
                        f"EPOLLOUT never enabled, or never acted on?)")
                try:
                    chunk = self.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError as err:
                    raise AssertionError(f"after {self.received} of {self.sent} bytes came back: {err}") from None
                if not chunk:
                    raise AssertionError(f"the server closed the connection after echoing {self.received} of "
                                         f"{self.sent} bytes")
                expected = pattern(self.received, len(chunk))
                if chunk != expected:
                    bad = next(k for k in range(len(chunk)) if chunk[k] != expected[k])
                    raise AssertionError(
                        f"byte {self.received + bad} of the echo is wrong: bytes were lost, repeated or "
                        f"reordered around there (after a partial send, resume from where the kernel "
                        f"stopped taking bytes)")
                self.received += len(chunk)
        finally:
            sel.close()

    def close(self) -> None:
        self.sock.close()


# ---- clients that vanish ----

def _unacked(sock: socket.socket) -> int:
    """Bytes (and a FIN) sent on sock that the peer's kernel has not acknowledged (TIOCOUTQ)."""
    count: int = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, bytes(4)))[0]
    return count


def _stuffed(address: Address, size: int | None) -> tuple[socket.socket, int]:
    """A client with a tiny receive window that sends `size` bytes (None: until the server
    stops taking them, 0.2 s without progress) and reads nothing. Returns it and how many
    bytes the server's side took in (sent minus what is still waiting in our queue)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the window
    sock.settimeout(3)
    sock.connect(address)
    sock.setblocking(False)
    limit = size if size is not None else 256 << 20
    sent = 0
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_WRITE)
        while sent < limit and sel.select(timeout=0.2):
            try:
                sent += sock.send(pattern(sent, min(1 << 16, limit - sent)))
            except BlockingIOError:
                pass
    return sock, sent - _unacked(sock)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel throws away what is queued and sends RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def vanish(address: Address, how: str) -> None:
    """Make the server's echo back up (send without reading), then vanish with RST.

    how="reset":      send until the server stops taking bytes, then reset: the server's
                      next send or recv fails with ECONNRESET.
    how="half-close": the server must also have seen our end of file before the RST. A
                      socket that got the end of file and then RST fails the server's next
                      send with EPIPE, and raises SIGPIPE, which kills the process unless
                      send() had MSG_NOSIGNAL. To get there: measure how much the server's
                      side takes in before it stops reading (its buffers), then on a new
                      connection send a little less, so that every byte and the end of file
                      arrive while the server's echo is still backed up.
    """
    try:
        sock, taken = _stuffed(address, None)
        if how == "half-close":
            _reset(sock)
            sock, _ = _stuffed(address, max(taken - (48 << 10), 1))
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1
            while _unacked(sock) and time.monotonic() < deadline:
                time.sleep(0.005)
        _reset(sock)
    except OSError:
        pass   # it is the server that is under test: it may well have hung up on us first


# ---- more clients than file descriptors ----

@dataclass
class Flood:
    """What each client of a flood saw within the wait: its echo, a refusal, or nothing yet."""

    socks: list[socket.socket]
    echoed: list[int]
    refused: list[int]              # EOF or RST: the server said no
    waiting: list[int]              # no answer yet (queued in the kernel's backlog, or ignored)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def flood(address: Address, n: int, wait: float = 2.0) -> Flood:
    """n clients connect at once and each sends a short line; after `wait` seconds (or
    when all have an answer) sort them by what they got. The sockets stay open."""
    raise_nofile(n + 256)
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(address)
        socks.append(s)
    sel = selectors.DefaultSelector()
    message = b"hello?\n"
    state: dict[int, str] = {}
    got = {i: b"" for i in range(n)}
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_WRITE, i)
    deadline = time.monotonic() + wait
    try:
        while len(state) < n and time.monotonic() < deadline:
            for key, events in sel.select(timeout=0.1):
                i, s = key.data, socks[key.data]
                try:
                    if events & selectors.EVENT_WRITE:
                        s.send(message)
                        sel.modify(s, selectors.EVENT_READ, i)
                        continue
                    chunk = s.recv(100)
                except BlockingIOError:
                    continue
                except OSError as err:
                    if err.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ECONNREFUSED):
                        raise
                    chunk = b""
                if chunk:
                    got[i] += chunk
                    if len(got[i]) < len(message):
                        continue
                state[i] = "echoed" if chunk else "refused"
                sel.unregister(s)
    finally:
        sel.close()
    return Flood(socks,
                 echoed=[i for i in range(n) if state.get(i) == "echoed"],
                 refused=[i for i in range(n) if state.get(i) == "refused"],
                 waiting=[i for i in range(n) if i not in state])
