"""Lab 2, Python half: the loop's sockets (sock_recv, sock_sendall, sock_accept in miniloop/loop.py).

The talk's rule, tested from inside the loop: try the call first, and wait (add_reader,
add_writer) only when it would block; a cancelled wait leaves nothing watched behind.
"""
from __future__ import annotations

import selectors
import socket

import pytest

from miniloop_spies import pair, spy, watched  # noqa: F401  (pair: a fixture)

from grading.deadline import LoopStuck
from grading.loops import loop, run  # noqa: F401  (loop: a fixture)
from miniloop.futures import CancelledError, InvalidStateError
from miniloop.loop import EventLoop, sleep


# --- sockets: try first, wait only if it would block -----------------------------------------

@pytest.mark.hint("py-sock-recv-try-first")
def test_sock_recv_with_data_waiting_returns_without_add_reader(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """The talk's slide: try sock.recv() first; data already there means no add_reader at all."""
    a, b = pair
    b.send(b"already here")
    add_reader = spy(loop, "add_reader")
    assert run(loop, loop.sock_recv(a, 100)) == b"already here"
    assert add_reader == [], (
        f"sock_recv called add_reader{add_reader[0][:1]} although data was waiting: try sock.recv(n) "
        "first and wait only on BlockingIOError (that saves a whole turn of the loop)")


@pytest.mark.hint("py-sock-recv-wait")
def test_sock_recv_waits_with_add_reader_and_removes_it(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """No data yet: add_reader and a Future; the data arrives, the reader is removed."""
    a, b = pair
    add_reader = spy(loop, "add_reader")
    remove_reader = spy(loop, "remove_reader")
    registered: list[int] = []

    def send_later() -> None:
        registered.append(watched(loop, a.fileno()))
        b.send(b"late data")

    loop.call_later(0.05, send_later)
    assert run(loop, loop.sock_recv(a, 100)) == b"late data"
    assert [args[0] for args in add_reader] == [a.fileno()], (
        f"add_reader calls: {[args[0] for args in add_reader]}; sock_recv must wait with add_reader(sock.fileno(), ...)"
        f" once when recv would block (fd {a.fileno()})")
    assert registered == [selectors.EVENT_READ], "while sock_recv waits, its fd must be watched for reading"
    assert (a.fileno(),) in remove_reader and watched(loop, a.fileno()) == 0, (
        "after sock_recv returned, its fd is still registered: add a done-callback to the Future that "
        "calls remove_reader(fd)")


@pytest.mark.hint("py-sock-recv-wait")
def test_cancelled_sock_recv_removes_its_reader(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """Cancelling the Task waiting in sock_recv cancels its Future, whose done-callback removes the reader."""
    a, b = pair
    task = loop.create_task(loop.sock_recv(a, 100))
    loop.call_later(0.05, task.cancel)
    with pytest.raises(CancelledError):
        run(loop, task)
    run(loop, sleep(0.01))   # let the done-callbacks run
    assert watched(loop, a.fileno()) == 0, (
        "a cancelled sock_recv left its fd registered: remove the reader in a done-callback of the Future, "
        "which runs however the Future ends (result, exception or cancel)")
    b.send(b"after")
    assert a.recv(100) == b"after", "nothing may read from the socket after sock_recv was cancelled"


@pytest.mark.hint("py-callback-guard")
def test_reader_callback_of_a_cancelled_sock_recv_does_nothing(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """The reader callback starts with `if fut.done(): return` (asyncio's rule).

    Here the Task is cancelled and the socket becomes readable in the same turn: the
    reader callback is already queued when it runs, and must neither read nor set the Future.
    """
    a, b = pair
    task = loop.create_task(loop.sock_recv(a, 100))

    def data_and_cancel() -> None:   # next turn: [task.cancel, reader callback]
        b.send(b"not for you")
        loop.call_soon(task.cancel)

    loop.call_later(0.05, data_and_cancel)
    outcome: BaseException | None = None
    try:
        run(loop, task)
    except BaseException as err:      # CancelledError is what we expect
        outcome = err
    assert not isinstance(outcome, InvalidStateError), (
        f"the reader callback set the result of a cancelled Future ({outcome}): start it with "
        "`if fut.done(): return`")
    assert isinstance(outcome, CancelledError), f"the cancelled Task ended with {outcome!r}, not CancelledError"
    run(loop, sleep(0.01))
    assert a.recv(100) == b"not for you", (
        "the reader callback of a cancelled sock_recv consumed the data: check fut.done() before recv")


@pytest.mark.hint("py-sock-sendall")
def test_sock_sendall_with_room_sends_at_once(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """Small data fits in the send buffer: sock_sendall sends it without add_writer."""
    a, b = pair
    add_writer = spy(loop, "add_writer")
    run(loop, loop.sock_sendall(a, b"small"))
    assert b.recv(100) == b"small"
    assert add_writer == [], "sock_sendall waited with add_writer although the data fitted: try send() first"


@pytest.mark.hint("py-sock-sendall")
def test_sock_sendall_waits_for_room_and_sends_everything_in_order(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """More data than the kernel buffers hold: partial sends, add_writer, the rest when there is room."""
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    payload = bytes(range(256)) * 8192          # 2 MiB, each position recognisable
    add_writer = spy(loop, "add_writer")
    received = bytearray()

    async def receive_all() -> None:
        while len(received) < len(payload):
            await sleep(0.001)                  # a slow reader: the sender must wait for room
            chunk = await loop.sock_recv(b, 65536)
            if not chunk:
                break
            received.extend(chunk)

    async def both() -> None:
        receiver = loop.create_task(receive_all())
        await loop.sock_sendall(a, payload)
        await receiver

    try:
        run(loop, both(), seconds=10)
    except LoopStuck:
        _check_in_order(received, payload)     # the likely reason it never ended: the position is wrong
        raise
    assert len(received) == len(payload), f"received {len(received)} bytes of {len(payload)}"
    _check_in_order(received, payload)
    assert add_writer and add_writer[0][0] == a.fileno(), (
        "2 MiB cannot fit in the socket buffers: sock_sendall must wait with add_writer(fd, ...) when send "
        "is partial or raises BlockingIOError")
    assert watched(loop, a.fileno()) == 0, "after sock_sendall returned its fd is still watched: remove the writer"


def _check_in_order(received: bytes | bytearray, payload: bytes) -> None:
    """Fail, saying where, unless received is the beginning of payload."""
    if payload.startswith(received):
        return
    first = next((i for i, (got, sent) in enumerate(zip(received, payload)) if got != sent), len(payload))
    raise AssertionError(
        f"the bytes arrived out of order or repeated: {len(received)} bytes received, the first {first} as sent, "
        f"then byte {first} differs. After a partial send, send view[pos:] and advance pos by what send took")


@pytest.mark.hint("py-sock-accept")
def test_sock_accept_waits_for_a_client_and_returns_a_non_blocking_socket(loop: EventLoop) -> None:
    """sock_accept waits with add_reader on the listening socket; the accepted socket is non-blocking."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    add_reader = spy(loop, "add_reader")

    async def server() -> bytes:
        conn, address = await loop.sock_accept(listener)
        with conn:
            assert conn.gettimeout() == 0, "the socket sock_accept returns must be non-blocking"
            assert address == client.getsockname()
            return await loop.sock_recv(conn, 100)

    async def scenario() -> bytes:
        accepting = loop.create_task(server())
        await sleep(0.05)                                # the server is waiting by now
        await loop.sock_connect(client, listener.getsockname())
        await loop.sock_sendall(client, b"hello")
        return await accepting

    second = socket.socket()
    try:
        assert run(loop, scenario()) == b"hello"
        assert add_reader and add_reader[0][0] == listener.fileno(), (
            "with no client yet sock_accept must wait with add_reader(listener.fileno(), ...)")
        assert watched(loop, listener.fileno()) == 0, "after sock_accept returned the listener is still watched"

        second.connect(listener.getsockname())          # queued by the kernel before we accept
        del add_reader[:]
        conn, _ = run(loop, loop.sock_accept(listener))
        with conn:
            assert conn.gettimeout() == 0, "the socket sock_accept returns must be non-blocking (accepted at once)"
        assert add_reader == [], "a client was already waiting: sock_accept must accept() first, not add_reader"
    finally:
        second.close()
        client.close()
        listener.close()
