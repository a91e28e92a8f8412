"""Lab 2, Python half: the mini event loop (miniloop/loop.py) and its futures (miniloop/futures.py).

These tests run your loop in this process and look inside it (which callbacks ran, in
which turn, what the selector was asked to wait for): callbacks and timers, watching
fds, futures, tasks. The sockets on top of them are in test_miniloop_sockets.py; the
echo server of miniloop/echo.py on your loop, seen from outside (strace, /proc), in
test_miniloop_echo.py. The spies are in miniloop_spies.py.
"""
from __future__ import annotations

import os
import selectors
import socket
import time
from typing import Any

import pytest

from miniloop_spies import pair, run_turns, spy_select, watched  # noqa: F401  (pair: a fixture)

from grading.loops import loop, run  # noqa: F401  (loop: a fixture)
from miniloop.futures import CancelledError, Future, InvalidStateError
from miniloop.loop import EventLoop, sleep


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
