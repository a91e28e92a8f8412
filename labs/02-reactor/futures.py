# Your copy of py/miniloop/futures.py: edit it, then run `make lab2`. (Generated; see docs/ARCHITECTURE.md.)
"""Futures and tasks for the mini event loop: what a coroutine awaits, and what drives it.

A Future is a box for a result that is not there yet. Whoever will produce the
result (a reader callback, a timer) calls set_result() later; whoever needs it
registers a done-callback, or, inside a coroutine, simply writes `await fut`.

A Task is the bridge between the loop, which only knows callbacks, and a
coroutine, which only knows `await`. It runs the coroutine one step at a time
with send(); each step ends where the coroutine awaits a Future that is not done:
the Future itself comes out of send(), and the Task asks to be called back when it
is done. Nothing else makes a coroutine "asynchronous".

    loop = EventLoop()
    fut = loop.create_future()
    loop.call_later(0.1, fut.set_result, 42)

    async def main() -> int:
        return await fut + 1            # suspends here until the timer fires

    assert loop.run_until_complete(main()) == 43

The same ideas as asyncio.Future and asyncio.Task, in a form small enough to read.
"""
from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # only for type hints: loop.py imports this module
    from miniloop.loop import EventLoop

T = TypeVar("T")

# The three states of a Future. It leaves PENDING once, and never comes back.
PENDING = "PENDING"
CANCELLED = "CANCELLED"
FINISHED = "FINISHED"


class CancelledError(BaseException):
    """The operation was cancelled (a BaseException, so `except Exception` does not swallow it)."""


class InvalidStateError(Exception):
    """The Future is not in a state that allows this (result not ready, or already set)."""


class Future(Generic[T]):
    """A result that will be set later, by a callback of the loop `loop`.

    Done-callbacks are never run inline by set_result(), set_exception() or cancel():
    they are scheduled with loop.call_soon(), so the code that completes a Future
    finishes its own work before anybody reacts to it.
    """

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._state = PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], object]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.lower()}>"

    def get_loop(self) -> EventLoop:
        return self._loop

    def done(self) -> bool:
        """True once the Future has a result, an exception, or was cancelled."""
        return self._state != PENDING

    def cancelled(self) -> bool:
        return self._state == CANCELLED

    def result(self) -> T:
        """The result; raises the exception that was set, CancelledError, or InvalidStateError."""
        # TODO(lab2): CANCELLED: raise CancelledError; PENDING: raise InvalidStateError;
        #   FINISHED: raise the stored exception if there is one, else return the result.
        raise NotImplementedError("lab2: Future.result")

    def exception(self) -> BaseException | None:
        """The exception that was set (None after set_result); same errors as result()."""
        if self._state == CANCELLED:
            raise CancelledError()
        if self._state != FINISHED:
            raise InvalidStateError("the exception is not set yet")
        return self._exception

    def set_result(self, result: T) -> None:
        """Complete the Future with a result and schedule its callbacks."""
        # TODO(lab2): refuse (InvalidStateError) when already done; otherwise store the result,
        #   move to FINISHED and schedule the callbacks.
        raise NotImplementedError("lab2: Future.set_result")

    def set_exception(self, exception: BaseException) -> None:
        """Complete the Future with an exception (raised by result()) and schedule its callbacks."""
        # TODO(lab2): like set_result, but store the exception.
        raise NotImplementedError("lab2: Future.set_exception")

    def cancel(self) -> bool:
        """Cancel the Future; False if it was already done (then nothing changes)."""
        # TODO(lab2): a done Future cannot be cancelled (return False); otherwise move to
        #   CANCELLED, schedule the callbacks, return True.
        raise NotImplementedError("lab2: Future.cancel")

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call fn(self) soon after the Future is done (soon, not now, if it already is)."""
        if self.done():
            self._loop.call_soon(fn, self)
        else:
            self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Future[T]], object]) -> int:
        """Forget every registration of fn; return how many there were."""
        kept = [cb for cb in self._callbacks if cb != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def _schedule_callbacks(self) -> None:
        """Hand every done-callback to the loop, in the order they were added."""
        # TODO(lab2): take the list of callbacks (and empty it: each runs once), then
        #   loop.call_soon(callback, self) for each, in order. Never call them here:
        #   the code completing this Future must finish before anybody reacts to it.
        raise NotImplementedError("lab2: Future._schedule_callbacks")

    def __await__(self) -> Generator[Future[T], None, T]:
        """`await fut`: suspend the coroutine until fut is done, then give its result.

        A generator: the `yield` hands this Future to the Task running the coroutine,
        which will resume it (send) once the Future is done.
        """
        # TODO(lab2): if not done, `yield self` (the Task that runs us receives self from
        #   send() and resumes us when we are done); then return self.result().
        raise NotImplementedError("lab2: Future.__await__")

    __iter__ = __await__  # so `yield from fut` works in generator-based coroutines too


class Task(Future[T]):
    """Run a coroutine on the loop; the Task is a Future for the coroutine's return value.

    Each step of the coroutine runs inside a loop callback (_step). A step ends when the
    coroutine returns, raises, or awaits a Future that is not done yet; in the last case
    the Task registers _wakeup as that Future's done-callback and sleeps.
    """

    def __init__(self, coro: Coroutine[Any, Any, T], loop: EventLoop) -> None:
        super().__init__(loop)
        self._coro = coro
        self._fut_waiter: Future[Any] | None = None  # the Future the coroutine is awaiting
        self._must_cancel = False   # cancel() was called while no Future could carry it
        # The first step runs from the loop, like every other: creating a Task starts nothing.
        loop.call_soon(self._step)

    def __repr__(self) -> str:
        name = getattr(self._coro, "__qualname__", repr(self._coro))
        return f"<Task {self._state.lower()} {name}>"

    def set_result(self, result: T) -> None:
        raise RuntimeError("a Task's result is what its coroutine returns: it cannot be set")

    def set_exception(self, exception: BaseException) -> None:
        raise RuntimeError("a Task's exception is what its coroutine raises: it cannot be set")

    def cancel(self) -> bool:
        """Ask for CancelledError to be thrown into the coroutine, at the await where it sleeps.

        Returns False if the Task is already done. The coroutine may catch the error and
        clean up (a `finally:` runs); the Task ends cancelled if the error escapes it.
        """
        # TODO(lab2): done: return False. If the coroutine is awaiting a Future, cancel that
        #   Future: its done-callback (_wakeup) will throw CancelledError into the
        #   coroutine. Otherwise (not started yet, or a step is already scheduled)
        #   remember it in self._must_cancel for the next _step. Return True.
        raise NotImplementedError("lab2: Task.cancel")

    def _step(self, exc: BaseException | None = None) -> None:
        """Run the coroutine up to its next suspension point (a loop callback)."""
        if self.done():
            return
        # TODO(lab2): if a cancel is pending, exc becomes CancelledError(). Resume the
        #   coroutine: send(None), or throw(exc) when there is an exception to deliver.
        #   - StopIteration: the coroutine returned; its value (stop.value) is the result
        #   (use super().set_result: our own set_result refuses on purpose).
        #   - CancelledError escaping: the Task is cancelled (super().cancel()).
        #   - any other exception: super().set_exception(it).
        #   - it yielded a Future: remember it in self._fut_waiter and add self._wakeup as
        #   its done-callback (cancel it at once if a cancel arrived meanwhile).
        #   - it yielded something else: throw a RuntimeError into it at the next step.
        raise NotImplementedError("lab2: Task._step")

    def _wakeup(self, fut: Future[Any]) -> None:
        """The done-callback of the Future we were waiting for: resume the coroutine."""
        # TODO(lab2): ask fut for its result; if that raises (an exception, CancelledError),
        #   _step(that exception) so it is raised at the coroutine's `await`; else _step().
        #   (The coroutine picks the value up itself: `await` returns fut.result().)
        raise NotImplementedError("lab2: Task._wakeup")
