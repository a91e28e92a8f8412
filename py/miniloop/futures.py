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
        # BEGIN SOLUTION lab2
        # TODO: CANCELLED: raise CancelledError; PENDING: raise InvalidStateError;
        #   FINISHED: raise the stored exception if there is one, else return the result.
        # STUB: raise NotImplementedError("lab2: Future.result")
        if self._state == CANCELLED:
            raise CancelledError()
        if self._state != FINISHED:
            raise InvalidStateError("the result is not ready yet")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]  # FINISHED without exception: a T
        # END SOLUTION

    def exception(self) -> BaseException | None:
        """The exception that was set (None after set_result); same errors as result()."""
        if self._state == CANCELLED:
            raise CancelledError()
        if self._state != FINISHED:
            raise InvalidStateError("the exception is not set yet")
        return self._exception

    def set_result(self, result: T) -> None:
        """Complete the Future with a result and schedule its callbacks."""
        # BEGIN SOLUTION lab2
        # TODO: refuse (InvalidStateError) when already done; otherwise store the result,
        #   move to FINISHED and schedule the callbacks.
        # STUB: raise NotImplementedError("lab2: Future.set_result")
        if self._state != PENDING:
            raise InvalidStateError(f"set_result on a future that is already {self._state.lower()}")
        self._result = result
        self._state = FINISHED
        self._schedule_callbacks()
        # END SOLUTION

    def set_exception(self, exception: BaseException) -> None:
        """Complete the Future with an exception (raised by result()) and schedule its callbacks."""
        # BEGIN SOLUTION lab2
        # TODO: like set_result, but store the exception.
        # STUB: raise NotImplementedError("lab2: Future.set_exception")
        if self._state != PENDING:
            raise InvalidStateError(f"set_exception on a future that is already {self._state.lower()}")
        self._exception = exception
        self._state = FINISHED
        self._schedule_callbacks()
        # END SOLUTION

    def cancel(self) -> bool:
        """Cancel the Future; False if it was already done (then nothing changes)."""
        # BEGIN SOLUTION lab2
        # TODO: a done Future cannot be cancelled (return False); otherwise move to
        #   CANCELLED, schedule the callbacks, return True.
        # STUB: raise NotImplementedError("lab2: Future.cancel")
        if self._state != PENDING:
            return False
        self._state = CANCELLED
        self._schedule_callbacks()
        return True
        # END SOLUTION

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
        # BEGIN SOLUTION lab2
        # TODO: take the list of callbacks (and empty it: each runs once), then
        #   loop.call_soon(callback, self) for each, in order. Never call them here:
        #   the code completing this Future must finish before anybody reacts to it.
        # STUB: raise NotImplementedError("lab2: Future._schedule_callbacks")
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._loop.call_soon(callback, self)
        # END SOLUTION

    def __await__(self) -> Generator[Future[T], None, T]:
        """`await fut`: suspend the coroutine until fut is done, then give its result.

        A generator: the `yield` hands this Future to the Task running the coroutine,
        which will resume it (send) once the Future is done.
        """
        # BEGIN SOLUTION lab2
        # TODO: if not done, `yield self` (the Task that runs us receives self from
        #   send() and resumes us when we are done); then return self.result().
        # STUB: raise NotImplementedError("lab2: Future.__await__")
        if not self.done():
            yield self
        if not self.done():
            raise RuntimeError("a Future was resumed before it was done: was it awaited outside a Task?")
        return self.result()
        # END SOLUTION

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
        # BEGIN SOLUTION lab2
        # TODO: done: return False. If the coroutine is awaiting a Future, cancel that
        #   Future: its done-callback (_wakeup) will throw CancelledError into the
        #   coroutine. Otherwise (not started yet, or a step is already scheduled)
        #   remember it in self._must_cancel for the next _step. Return True.
        # STUB: raise NotImplementedError("lab2: Task.cancel")
        if self.done():
            return False
        if self._fut_waiter is not None and self._fut_waiter.cancel():
            return True
        self._must_cancel = True
        return True
        # END SOLUTION

    def _step(self, exc: BaseException | None = None) -> None:
        """Run the coroutine up to its next suspension point (a loop callback)."""
        if self.done():
            return
        # BEGIN SOLUTION lab2
        # TODO: if a cancel is pending, exc becomes CancelledError(). Resume the
        #   coroutine: send(None), or throw(exc) when there is an exception to deliver.
        #   - StopIteration: the coroutine returned; its value (stop.value) is the result
        #     (use super().set_result: our own set_result refuses on purpose).
        #   - CancelledError escaping: the Task is cancelled (super().cancel()).
        #   - any other exception: super().set_exception(it).
        #   - it yielded a Future: remember it in self._fut_waiter and add self._wakeup as
        #     its done-callback (cancel it at once if a cancel arrived meanwhile).
        #   - it yielded something else: throw a RuntimeError into it at the next step.
        # STUB: raise NotImplementedError("lab2: Task._step")
        if self._must_cancel:
            exc = CancelledError()
            self._must_cancel = False
        self._fut_waiter = None
        try:
            if exc is None:
                yielded = self._coro.send(None)
            else:
                yielded = self._coro.throw(exc)
        except StopIteration as stop:
            super().set_result(stop.value)
        except CancelledError:
            super().cancel()
        except (KeyboardInterrupt, SystemExit) as err:
            super().set_exception(err)
            raise   # Ctrl-C must stop the loop, not just this Task
        except BaseException as err:
            super().set_exception(err)
        else:
            if isinstance(yielded, Future):
                self._fut_waiter = yielded
                yielded.add_done_callback(self._wakeup)
                if self._must_cancel and yielded.cancel():
                    self._must_cancel = False
            else:
                error = RuntimeError(f"a miniloop Task can only await miniloop Futures, got {yielded!r}")
                self._loop.call_soon(self._step, error)
        # END SOLUTION

    def _wakeup(self, fut: Future[Any]) -> None:
        """The done-callback of the Future we were waiting for: resume the coroutine."""
        # BEGIN SOLUTION lab2
        # TODO: ask fut for its result; if that raises (an exception, CancelledError),
        #   _step(that exception) so it is raised at the coroutine's `await`; else _step().
        #   (The coroutine picks the value up itself: `await` returns fut.result().)
        # STUB: raise NotImplementedError("lab2: Task._wakeup")
        try:
            fut.result()
        except BaseException as err:
            self._step(err)
        else:
            self._step()
        # END SOLUTION
