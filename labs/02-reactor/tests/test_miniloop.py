"""Lab 2, Python half: the mini event loop (miniloop/loop.py) and its futures (miniloop/futures.py).

The first tests run your loop in this process and look inside it (which callbacks
ran, in which turn, what the selector was asked to wait for). The last ones run the
echo server of miniloop/echo.py on your loop under strace and /proc, to check the
mechanism: it sleeps in epoll_wait, never in recv, burns no CPU when idle, and has
one thread.
"""
from __future__ import annotations

import os
import selectors
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from echo_clients import runnable_seconds

from grading.deadline import LoopStuck, deadline
from grading.plugin import Impl
from grading.servers import EXPECTED, Talking, first_line, listening_address
from miniloop.futures import CancelledError, Future, InvalidStateError
from miniloop.loop import EventLoop, sleep
from xray import proc, strace

EPOLL_WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")


# --- helpers ------------------------------------------------------------------------------

def run(loop: EventLoop, aw: Future[Any] | Coroutine[Any, Any, Any], seconds: float = 3.0, advice: str = "") -> Any:
    """loop.run_until_complete(aw), failing after `seconds` (with advice) instead of hanging."""
    with deadline(seconds, "run_until_complete", advice):
        return loop.run_until_complete(aw)


def run_turns(loop: EventLoop, seconds: float = 3.0) -> None:
    """loop.run_forever() until a callback calls loop.stop(), failing after `seconds`."""
    with deadline(seconds, "run_forever (waiting for loop.stop())"):
        loop.run_forever()


def spy(loop: EventLoop, name: str) -> list[tuple[Any, ...]]:
    """Record every call of loop.<name> (the arguments) and still do the real call."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(loop, name)

    def wrapper(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    setattr(loop, name, wrapper)   # an instance attribute hides the method: self.<name>() finds it
    return calls


def spy_select(loop: EventLoop, on_call: Callable[[float | None], None] | None = None) -> list[float | None]:
    """Record the timeout of every selector.select() (one per turn of the loop)."""
    timeouts: list[float | None] = []
    real = loop._selector.select

    def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        timeouts.append(timeout)
        if on_call is not None:
            on_call(timeout)
        return real(timeout)

    loop._selector.select = select  # type: ignore[method-assign]
    return timeouts


def watched(loop: EventLoop, fd: int) -> int:
    """The events the loop's selector watches on fd (0 if it does not know fd)."""
    key = loop._selector.get_map().get(fd)
    return key.events if key is not None else 0


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    lp = EventLoop()
    yield lp
    lp.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected non-blocking sockets (a socketpair: no network needed)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


# --- callbacks and timers --------------------------------------------------------------------

@pytest.mark.hint("py-call-soon")
def test_call_soon_runs_callbacks_in_order_one_turn_at_a_time(loop: EventLoop) -> None:
    """call_soon callbacks run in order; those they add wait for the next turn."""
    seen: list[str] = []
    at_select: list[list[str]] = []
    spy_select(loop, lambda timeout: at_select.append(list(seen)))

    def first() -> None:
        seen.append("first")
        loop.call_soon(seen.append, "added by first")

    loop.call_soon(first)
    loop.call_soon(seen.append, "second")
    cancelled = loop.call_soon(seen.append, "cancelled")
    cancelled.cancel()
    loop.call_soon(lambda: loop.call_soon(loop.stop))   # stop at the end of the second turn
    run_turns(loop)

    assert seen == ["first", "second", "added by first"], (
        f"callbacks ran as {seen}: expected the order of the call_soon calls, a cancelled Handle "
        "skipped, and a callback added by a callback run after the ones already queued")
    assert len(at_select) >= 2 and at_select[1] == ["first", "second"], (
        f"what had run at each select(): {at_select}. A turn must run only the callbacks that were "
        "ready when it began; 'added by first' belongs to the next turn")


@pytest.mark.hint("py-call-soon")
def test_a_callback_that_reschedules_itself_does_not_starve_the_loop(loop: EventLoop) -> None:
    """Each turn goes back to select(), even when callbacks keep calling call_soon."""
    timeouts = spy_select(loop)
    runs = [0]

    def again() -> None:
        runs[0] += 1
        if runs[0] < 100:
            loop.call_soon(again)
        else:
            loop.stop()

    loop.call_soon(again)
    run_turns(loop)
    assert len(timeouts) >= 90, (
        f"the callback ran 100 times but the loop looked at its fds and timers only {len(timeouts)} "
        "time(s): run the callbacks that are ready when the turn begins, not until the queue is empty")


@pytest.mark.hint("py-call-later")
def test_call_later_runs_timers_in_time_order_and_not_early(loop: EventLoop) -> None:
    """Timers fire in the order of their due time, whatever the order of the call_later calls."""
    fired: list[tuple[str, float]] = []
    start = loop.time()

    def record(name: str) -> None:
        fired.append((name, loop.time() - start))

    loop.call_later(0.06, record, "c")
    loop.call_later(0.02, record, "a")
    loop.call_later(0.04, record, "b")
    loop.call_later(0.0, record, "now")
    loop.call_later(0.08, loop.stop)
    run_turns(loop)

    names = [name for name, _ in fired]
    assert names == ["now", "a", "b", "c"], f"timers fired in the order {names}, expected now, a, b, c"
    for (name, at), due in zip(fired, (0.0, 0.02, 0.04, 0.06)):
        assert at >= due - 0.002, f"timer {name!r} due at {due} s fired early, at {at:.3f} s"


@pytest.mark.hint("py-call-later")
def test_cancelled_timer_does_not_fire(loop: EventLoop) -> None:
    """cancel() on the handle call_later returned keeps the callback from running."""
    fired: list[str] = []
    handle = loop.call_later(0.02, fired.append, "cancelled")
    loop.call_later(0.01, fired.append, "kept")
    handle.cancel()
    loop.call_later(0.05, loop.stop)
    run_turns(loop)
    assert fired == ["kept"], f"fired: {fired}; a timer whose handle was cancelled must never run"


@pytest.mark.hint("py-select-timeout")
def test_select_timeout_is_zero_with_work_and_the_nearest_timer_otherwise(loop: EventLoop) -> None:
    """select() gets 0 when callbacks are ready, and the time to the nearest timer when not."""
    timeouts = spy_select(loop)
    loop.call_soon(lambda: None)
    loop.call_later(0.2, loop.stop)
    loop.call_later(5.0, lambda: None)   # a later timer must not matter
    started = time.monotonic()
    run_turns(loop)
    elapsed = time.monotonic() - started

    assert timeouts and timeouts[0] == 0, (
        f"first select() timeout: {timeouts[:1]}; with a callback ready the loop must not sleep (0)")
    assert len(timeouts) <= 4, (
        f"{len(timeouts)} select() calls while waiting 0.2 s for one timer (timeouts {timeouts[:6]}...): "
        "the loop spins; sleep until the nearest timer instead")
    assert all(t is not None for t in timeouts), (
        f"select() timeouts {timeouts}: None means 'sleep until a fd is ready', but a timer was pending")
    assert any(t is not None and 0.05 <= t <= 0.2 for t in timeouts), (
        f"select() timeouts {timeouts}: expected one of about 0.2 s, the time left to the nearest timer")
    assert elapsed >= 0.19, f"the 0.2 s timer fired after {elapsed:.3f} s"


@pytest.mark.hint("py-select-timeout")
def test_select_timeout_is_none_when_there_is_nothing_to_do_but_wait(loop: EventLoop) -> None:
    """With no callback ready and no timer, the loop sleeps until a fd is ready (None)."""
    r, w = os.pipe()
    try:
        os.write(w, b"x")       # readable already: select() returns at once, whatever the timeout
        timeouts = spy_select(loop)
        loop.add_reader(r, loop.stop)
        run_turns(loop)
    finally:
        os.close(r)
        os.close(w)
    assert timeouts[:1] == [None], (
        f"select() timeouts: {timeouts}; with nothing ready and no timer the timeout must be None "
        "(sleep in epoll_wait until a fd is ready): a number makes an idle loop wake up for nothing")


# --- watching fds ------------------------------------------------------------------------------

@pytest.mark.hint("py-add-reader")
def test_add_reader_calls_back_when_readable_and_remove_reader_stops_it(loop: EventLoop) -> None:
    """add_reader registers the fd for EVENT_READ; remove_reader unregisters it."""
    r, w = os.pipe()
    calls: list[tuple[str, int]] = []

    def on_readable(tag: str, n: int) -> None:
        calls.append((tag, n))
        os.read(r, 100)
        loop.stop()

    try:
        loop.add_reader(r, on_readable, "pipe", 7)
        assert watched(loop, r) == selectors.EVENT_READ, "after add_reader the selector must watch the fd for reading"
        os.write(w, b"hello")
        run_turns(loop)
        assert calls == [("pipe", 7)], f"reader callback calls: {calls}, expected one call with ('pipe', 7)"
        assert loop.remove_reader(r) is True, "remove_reader must return True when the fd had a reader"
        assert watched(loop, r) == 0, "after remove_reader the selector must forget the fd (unregister it)"
        assert loop.remove_reader(r) is False, "remove_reader of an fd without reader must return False"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.hint("py-add-reader")
def test_reader_and_writer_share_one_registration(loop: EventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    """A reader and a writer on the same fd: both watched; removing one keeps the other."""
    a, b = pair
    seen: list[str] = []

    def on_writable() -> None:
        seen.append("writable")
        loop.remove_writer(a.fileno())
        loop.stop()

    loop.add_reader(a.fileno(), seen.append, "readable")
    loop.add_writer(a.fileno(), on_writable)
    assert watched(loop, a.fileno()) == selectors.EVENT_READ | selectors.EVENT_WRITE, (
        "add_reader then add_writer on one fd: the selector must watch it for both (modify, not register twice)")
    run_turns(loop)
    assert seen == ["writable"], f"callbacks: {seen}; the socket was writable, not readable"
    assert watched(loop, a.fileno()) == selectors.EVENT_READ, (
        "after remove_writer the fd must still be watched for reading")
    loop.add_writer(a.fileno(), seen.append, "writable again")
    assert loop.remove_reader(a.fileno()) is True
    assert watched(loop, a.fileno()) == selectors.EVENT_WRITE, (
        "after remove_reader the fd must still be watched for writing")
    assert loop.remove_writer(a.fileno()) is True
    assert watched(loop, a.fileno()) == 0, "with neither reader nor writer the fd must be unregistered"


# --- futures -------------------------------------------------------------------------------------

@pytest.mark.hint("py-future")
def test_future_result_and_exception(loop: EventLoop) -> None:
    """result() before done raises InvalidStateError; then it returns the result or raises the exception."""
    fut = loop.create_future()
    assert not fut.done()
    with pytest.raises(InvalidStateError):
        fut.result()
    fut.set_result(42)
    assert fut.done() and not fut.cancelled()
    assert fut.result() == 42
    assert fut.exception() is None
    with pytest.raises(InvalidStateError):
        fut.set_result(43)          # a result is set once

    failed = loop.create_future()
    error = ValueError("boom")
    failed.set_exception(error)
    assert failed.done()
    assert failed.exception() is error
    with pytest.raises(ValueError, match="boom"):
        failed.result()
    with pytest.raises(InvalidStateError):
        failed.set_exception(ValueError("again"))


@pytest.mark.hint("py-future")
def test_future_cancel(loop: EventLoop) -> None:
    """cancel() ends a pending Future (result() raises CancelledError); a done one stays as it is."""
    fut = loop.create_future()
    assert fut.cancel() is True
    assert fut.cancelled() and fut.done()
    with pytest.raises(CancelledError):
        fut.result()
    assert fut.cancel() is False, "cancelling a cancelled Future again must return False"
    with pytest.raises(InvalidStateError):
        fut.set_result(1)

    done = loop.create_future()
    done.set_result(1)
    assert done.cancel() is False, "cancel() on a finished Future must return False and change nothing"
    assert done.result() == 1


@pytest.mark.hint("py-future")
def test_done_callbacks_are_scheduled_with_call_soon_not_run_inline(loop: EventLoop) -> None:
    """Done-callbacks run from the loop, in order, with the Future as argument; never inside set_result."""
    fut = loop.create_future()
    seen: list[Any] = []
    fut.add_done_callback(lambda f: seen.append(("first", f)))
    fut.add_done_callback(lambda f: seen.append(("second", f)))
    fut.add_done_callback(seen.append)
    assert fut.remove_done_callback(seen.append) == 1    # removed: never called
    fut.set_result("value")
    assert seen == [], (
        "set_result() ran the done-callbacks itself. Schedule them with loop.call_soon(callback, fut): "
        "the code completing a Future must finish before anybody reacts to it")
    fut.add_done_callback(lambda f: seen.append(("late", f)))   # already done: scheduled too
    assert seen == [], "add_done_callback on a done Future must schedule the callback, not call it"
    loop.call_soon(loop.stop)
    run_turns(loop)
    assert seen == [("first", fut), ("second", fut), ("late", fut)], (
        f"done-callbacks ran as {seen}: expected first, second, late, each called with the Future")

    cancelled = loop.create_future()
    cancelled.add_done_callback(lambda f: seen.append(("cancelled", f.cancelled())))
    cancelled.cancel()
    loop.call_soon(loop.stop)
    run_turns(loop)
    assert seen[-1] == ("cancelled", True), "cancel() must schedule the done-callbacks as well"


@pytest.mark.hint("py-future-await")
def test_awaiting_a_future_yields_it_and_returns_its_result(loop: EventLoop) -> None:
    """`await fut` hands fut to whoever drives the coroutine, then returns fut.result()."""
    fut = loop.create_future()

    async def waiter() -> Any:
        return await fut

    coro = waiter()
    yielded = coro.send(None)
    assert yielded is fut, (
        f"awaiting a pending Future made the coroutine yield {yielded!r}: __await__ must `yield self`, "
        "so the Task running the coroutine knows what to wait for")
    fut.set_result("ready")
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == "ready", "after resuming, `await fut` must return fut.result()"

    done = loop.create_future()
    done.set_result(5)
    with pytest.raises(StopIteration) as stop:
        next(done.__await__())      # the first step already returns: nothing to wait for
    assert stop.value.value == 5, "awaiting a Future that is already done must not suspend at all"


# --- tasks ---------------------------------------------------------------------------------------

@pytest.mark.hint("py-task")
def test_task_runs_its_coroutine_from_the_loop(loop: EventLoop) -> None:
    """A Task is a Future for its coroutine's return value; the coroutine starts at the next turn."""
    started: list[bool] = []

    async def answer() -> int:
        started.append(True)
        return 42

    task = loop.create_task(answer())
    assert isinstance(task, Future), "a Task must be a Future (class Task(Future))"
    assert started == [], "creating a Task must not run the coroutine: its first step is a call_soon"
    assert run(loop, task) == 42
    assert task.done() and task.result() == 42


@pytest.mark.hint("py-task")
def test_task_suspends_on_a_pending_future_until_it_is_done(loop: EventLoop) -> None:
    """A coroutine awaiting a Future sleeps until something sets it, then goes on with its value."""
    fut: Future[int] = loop.create_future()
    steps: list[Any] = []
    seen_when_set: list[list[Any]] = []

    async def waiter() -> int:
        steps.append("before await")
        value = await fut
        steps.append(("after await", value))
        return value * 2

    def complete() -> None:
        seen_when_set.append(list(steps))
        fut.set_result(21)

    task = loop.create_task(waiter())
    loop.call_later(0.05, complete)
    assert run(loop, task) == 42
    assert seen_when_set == [["before await"]], (
        f"when the timer set the Future the coroutine had done {seen_when_set}: it must stop at the await")
    assert steps == ["before await", ("after await", 21)]


@pytest.mark.hint("py-task")
def test_tasks_chain_coroutines_and_deliver_exceptions_at_the_await(loop: EventLoop) -> None:
    """await on a coroutine, on a Task, on a failed Future; an exception escaping ends the Task."""
    value: Future[int] = loop.create_future()
    broken: Future[None] = loop.create_future()
    loop.call_later(0.01, value.set_result, 4)
    loop.call_later(0.02, broken.set_exception, ValueError("disk on fire"))

    async def inner(x: int) -> int:
        return await value + x

    async def middle() -> int:
        return await inner(1) * 10

    async def outer() -> tuple[int, str, int]:
        a = await middle()                               # a coroutine awaiting a coroutine
        try:
            await broken
            b = "no exception"
        except ValueError as err:                        # raised at the await
            b = str(err)
        c = await loop.create_task(inner(100))           # a Task is awaitable: it is a Future
        return a, b, c

    assert run(loop, outer()) == (50, "disk on fire", 104)

    async def fails() -> None:
        await sleep(0.01)
        raise KeyError("lost")

    task = loop.create_task(fails())
    with pytest.raises(KeyError):
        run(loop, task)
    assert isinstance(task.exception(), KeyError), "an exception escaping the coroutine must end the Task with it"


@pytest.mark.hint("py-task-cancel")
def test_cancelling_a_task_throws_cancelled_error_at_its_await(loop: EventLoop) -> None:
    """Task.cancel() cancels the awaited Future; the coroutine sees CancelledError where it sleeps."""
    fut = loop.create_future()
    log: list[str] = []

    async def sleeper() -> None:
        try:
            await fut
            log.append("resumed normally")
        except CancelledError:
            log.append("CancelledError at the await")
            raise
        finally:
            log.append("finally")

    task = loop.create_task(sleeper())
    loop.call_later(0.02, task.cancel)
    with pytest.raises(CancelledError):
        run(loop, task, advice="The Task was cancelled while its coroutine awaited a Future, and never woke up: "
            "Task.cancel() must cancel that Future (self._fut_waiter), whose done-callback, _wakeup, then "
            "throws CancelledError into the coroutine")
    assert log == ["CancelledError at the await", "finally"], f"the coroutine saw: {log}"
    assert task.cancelled(), "a Task whose coroutine let CancelledError escape must end cancelled"
    assert fut.cancelled(), "Task.cancel() must cancel the Future the coroutine was awaiting"
    assert task.cancel() is False, "cancelling a finished Task must return False"

    body: list[str] = []

    async def never_started() -> None:
        body.append("ran")

    early = loop.create_task(never_started())
    assert early.cancel() is True
    with pytest.raises(CancelledError):
        run(loop, early)
    assert body == [], "a Task cancelled before its first step must not run its coroutine's body"


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


# --- the mechanism, seen from outside: the echo server on your loop ------------------------------

def _listening_port(server: Talking, timeout: float, stderr: Callable[[], str]) -> int:
    line = first_line(server, timeout)
    address = listening_address(line)
    if address is None:
        pytest.fail(f"the echo server printed {line!r} instead of '{EXPECTED}'. "
                    f"Its stderr: {stderr()[-600:]}", pytrace=False)
    return address[1]


def _echo(port: int, message: bytes, *, pause: float = 0.0, stderr: Callable[[], str]) -> socket.socket:
    """Connect, wait `pause`, send message, expect it back; return the open client socket."""
    error: OSError | None = None
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(pause)
        client.sendall(message)
        got = b""
        while len(got) < len(message):
            chunk = client.recv(len(message) - len(got))
            if not chunk:
                break
            got += chunk
    except OSError as err:
        error = err
    if error is not None:
        pytest.fail(f"the echo server on your loop did not answer ({error!r}). Its stderr: {stderr()[-600:]}",
                    pytrace=False)
    assert got == message, f"the echo server sent back {got!r} for {message!r}"
    return client


@pytest.mark.hint("py-echo-epoll")
def test_echo_server_waits_in_epoll_wait_never_in_recv(impl: Impl) -> None:
    """Under strace: epoll_wait does the waiting; every recv on a client returns data, EOF or EAGAIN at once; one thread."""
    trace = "network,desc"   # desc: read, close, and the epoll family (epoll_wait or epoll_pwait, per arch)
    with strace.launch(impl.python("miniloop.echo", "--port", "0"), env=impl.env(), trace=trace) as server:
        port = _listening_port(server, 15, lambda: server.finish(timeout=2).stderr)
        client = _echo(port, b"ping", pause=0.5, stderr=lambda: server.finish(timeout=2).stderr)
        with client:
            time.sleep(0.3)
            client.sendall(b"pong")
            assert client.recv(4) == b"pong"
            threads = proc.threads(server.pid)
        time.sleep(0.2)                  # let the server see the end of the stream
        server.terminate()
        tr = server.finish(timeout=10)

    assert len(threads) == 1 and not tr.threads_created, (
        f"the echo server ran {len(threads)} threads ({[t.name for t in threads]}): a reactor needs only one")
    waits = tr.named(*EPOLL_WAITS)
    assert waits, f"no epoll_wait call at all (calls seen: {tr.summary()}): the loop must wait in selector.select()"

    accepts = [c for c in tr.named("accept4", "accept") if c.retval is not None and c.retval >= 0]
    assert accepts, f"the server never accepted a connection (calls seen: {tr.summary()})"
    fd, since = accepts[0].retval, accepts[0].start
    recvs = [c for c in tr.named("recvfrom", "recv", "read", "recvmsg")
             if c.start >= since and c.fd == fd]
    assert recvs, f"no recv on the client's fd {fd} (calls seen: {tr.summary()})"
    for c in recvs:
        assert c.errno in (None, "EAGAIN"), f"{c.name} on the client's fd failed: {c.result}"
        assert c.duration is not None and c.duration < 0.2, (
            f"{c.name}(fd {fd}) took {c.duration} s: it blocked the whole loop. The socket must be "
            "non-blocking, and the loop must wait in epoll_wait, not in recv")
    eagain = [c for c in recvs if c.errno == "EAGAIN"]
    assert eagain, (
        f"recv on the client's fd returned EAGAIN 0 times in {len(recvs)} calls, although the client waited "
        "0.5 s before sending: sock_recv must try recv first (EAGAIN: nothing yet), then wait with add_reader")
    long_waits = [c for c in waits if c.start >= since and c.duration is not None and c.duration >= 0.3]
    assert long_waits, (
        "while the client paused, no epoll_wait lasted 0.3 s or more: the loop should have slept in "
        f"epoll_wait (durations: {[c.duration for c in waits if c.start >= since][:10]})")


@pytest.mark.hint("py-idle-loop")
def test_idle_echo_server_burns_no_cpu(impl: Impl) -> None:
    """An idle loop (no client, no timer) sleeps: about 0 s of CPU in one second, and it still answers."""
    with proc.launch(impl.python("miniloop.echo", "--port", "0"), env=impl.env(),
                     stderr=subprocess.PIPE) as server:
        def stderr() -> str:
            proc.stop(server)
            return server.stderr.read().decode(errors="replace") if server.stderr else ""

        port = _listening_port(server, 10, stderr)
        time.sleep(0.3)          # imports and the first turns are done
        if server.poll() is not None:
            pytest.fail(f"the echo server exited (code {server.returncode}) instead of waiting for clients. "
                        f"Its stderr: {stderr()[-600:]}", pytrace=False)
        before, runnable_before, started = proc.cpu_seconds(server.pid), runnable_seconds(server.pid), time.monotonic()
        time.sleep(1.0)
        used = proc.cpu_seconds(server.pid) - before
        runnable = runnable_seconds(server.pid) - runnable_before
        elapsed = time.monotonic() - started
        _echo(port, b"still there?", stderr=stderr).close()
    # Runnable most of the second: a spin, however little CPU a busy machine gave it. CPU at all: a poll.
    assert runnable < elapsed / 2 and used < 0.1, (
        f"the idle echo server was runnable {runnable:.2f} s of {elapsed:.2f} s and used {used:.2f} s of CPU: "
        "the loop spins instead of sleeping. With nothing ready and no timer, select() must get timeout None "
        "(epoll_wait(..., -1))")


@pytest.mark.hint("py-idle-loop")
def test_idle_echo_server_sleeps_in_epoll_wait_with_no_timeout(impl: Impl) -> None:
    """Under strace: one idle second is one epoll_wait(..., -1) that returns when a client arrives."""
    trace = "network,desc"
    with strace.launch(impl.python("miniloop.echo", "--port", "0"), env=impl.env(), trace=trace) as server:
        port = _listening_port(server, 15, lambda: server.finish(timeout=2).stderr)
        idle_from = time.time()
        time.sleep(1.0)
        idle_to = time.time()
        _echo(port, b"wake up", stderr=lambda: server.finish(timeout=2).stderr).close()
        server.terminate()
        tr = server.finish(timeout=10)

    waits = tr.named(*EPOLL_WAITS)
    during = [c for c in waits if idle_from + 0.1 <= c.start <= idle_to - 0.1]
    assert len(during) <= 2, (
        f"{len(during)} epoll_wait calls began during one idle second (timeouts "
        f"{sorted({c.arg(3) for c in during})}): an idle loop must make one call and sleep in it")
    sleepers = [c for c in waits if c.duration is not None and c.duration >= 0.7]
    assert sleepers, (
        f"no epoll_wait slept through the idle second ({len(waits)} calls, timeouts "
        f"{sorted({c.arg(3) for c in waits})}): the loop is not sleeping in epoll_wait")
    assert sleepers[0].arg(3) == "-1", (
        f"the idle loop slept in epoll_wait with timeout {sleepers[0].arg(3)} ms: with no timer "
        "pending it must be -1 (selector.select(None)), i.e. 'until a fd is ready'")
