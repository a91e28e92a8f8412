"""One kernel AIO context per running event loop: a queue, batched io_submit, completions via an eventfd.

    engine = _engine.for_running_loop()       # made lazily, one per loop (and per backend)
    request.future = loop.create_future()     # request: a _kernaio.Request (File._submit makes both)
    engine.start(request)                     # queued; flushed by ONE io_submit per loop iteration
    ...                                       # the eventfd turns readable -> reap -> request.complete()

A request is the C type _kernaio.Request (src/request.c): its fields, checked when it is
made (a request that exists is well-formed, and submit reads it directly), the future its
caller awaits, and its ending: complete(res, data) when the kernel answers, fail(exc) when
it never reaches the kernel. All in C: every request passes there.

Backends: "aio" (kernel AIO: _kernaio.Context, io_submit) and "io_uring"
(_kernaio.UringContext, io_uring_enter; with sqpoll=True a kernel thread submits). Both
types have the same methods and semantics, so one Engine serves both; a loop has one
engine per backend its files use.

Two engines, one behaviour (CPython's pattern: asyncio's futures.py beside
_asynciomodule.c): Engine, below, is the Python one, the readable story and lab 6's
reference; _kernaio.Engine (src/engine.c) is the same engine in C, the default
(kernaio.open's engine=, or $KERNAIO_ENGINE: "c" or "python"). What both share is here
too: making an engine for a loop, closing it (close_engine), File.close's wait (drained),
the pool of idle contexts, fork.

Lifetime: an engine lives as long as its loop is open. When a new engine is made, the
engines of closed (or garbage-collected) loops are closed first, and an engine is also
closed when its loop is garbage-collected and at interpreter exit: `asyncio.run` a
thousand times in a row does not leak kernel contexts (/proc/sys/fs/aio-nr). A fork()ed
child forgets its parent's engines and makes its own.

Closing an engine with requests in flight destroys its context: io_destroy waits for them,
so no buffer is released under the kernel. An IDLE context is not destroyed but kept for
the next loop (at most POOL_SIZE of them): io_destroy waits for an RCU grace period, about
35 ms here, which would make a thousand short `asyncio.run` calls take half a minute.
(io_uring's teardown is not that slow, but reusing an idle ring is cheaper still: the pool
serves both backends, POOL_SIZE each.)
"""
from __future__ import annotations

import asyncio
import atexit
import errno
import os
import weakref
from collections import deque
from typing import TYPE_CHECKING

from kernaio import _kernaio

if TYPE_CHECKING:
    from kernaio._file import File

CAPACITY = 128  # requests one context holds in flight; more wait in the engine's queue
# Completions are handled in slices, one slice per loop iteration: a third of what is in
# flight, at least 4. A virtual disk often completes a whole batch at once: resolving all 32
# futures, then running all 32 tasks, then one io_submit would leave the device idle
# meanwhile (lock-step). In slices, the tasks woken by one slice run, then _after_slice
# submits their next requests before it reaps the next slice: the device gets work back
# while later completions are handled. (Measured with `make bench`: at QD 8, 32 and 128, a
# third beat a fixed 8 and a quarter; reaping everything at once was 30% slower at QD 32.)
REAP_SHARE = 3
REAP_MIN = 4
POOL_SIZE = 2   # idle contexts kept for the next loop instead of a slow io_destroy

AnyContext = _kernaio.Context | _kernaio.UringContext
# backend name (kernaio.open's backend=) -> the C type that implements it
BACKENDS: dict[str, type[AnyContext]] = {"aio": _kernaio.Context, "io_uring": _kernaio.UringContext}
ENGINES = ("c", "python")   # kernaio.open's engine=: the C one (the default) or the Python one (lab 6's)

# per (backend, sqpoll): contexts of closed loops, nothing in flight, ready for reuse
_idle: dict[tuple[str, bool], list[AnyContext]] = {}


def engine_kind(engine: str | None = None) -> str:
    """engine (kernaio.open's engine=), or else $KERNAIO_ENGINE, or else "c"; ValueError for
    another name. Read at each open: the environment variable chooses for code that does
    not say (lab 6's grader runs the learner's Python engine that way)."""
    kind = engine if engine is not None else os.environ.get("KERNAIO_ENGINE") or "c"
    if kind not in ENGINES:
        said = "engine" if engine is not None else "$KERNAIO_ENGINE"
        raise ValueError(f"kernaio: {said} must be one of {', '.join(map(repr, ENGINES))}, not {kind!r}")
    return kind


# os.getpid() is a system call every time, and every request asks "same process?": remember
# the pid; _after_fork_in_child (below) refreshes it in a fork()ed child.
_pid = os.getpid()


def _take_context(backend: str, sqpoll: bool = False) -> AnyContext:
    """An idle context of this process for backend if there is one, else a new one (io_setup,
    or io_uring_setup: OSError saying so when io_uring, or its SQPOLL, is refused here)."""
    idle = _idle.setdefault((backend, sqpoll), [])
    while idle:
        ctx = idle.pop()
        if ctx.pid == _pid and not ctx.closed:
            del ctx.reap()[:]       # drain the eventfd; forget what a closed loop left undelivered
            return ctx
    try:
        if sqpoll:
            return _kernaio.UringContext(CAPACITY, sqpoll=True)
        return BACKENDS[backend](CAPACITY)
    except BlockingIOError as err:
        if backend != "aio":
            raise
        # io_setup's EAGAIN: the machine-wide budget of AIO events is spent. Say which, and how much is ours.
        def sysctl(name: str) -> str:
            try:
                return open(f"/proc/sys/fs/{name}").read().strip()
            except OSError:
                return "?"
        ours = sum(1 for e in _engines.values() if e.backend == "aio" and not e.closed) + \
            len(_idle.get(("aio", False), []))
        raise BlockingIOError(err.errno, (
            f"kernaio: the kernel's AIO events are used up: fs.aio-nr {sysctl('aio-nr')} of fs.aio-max-nr "
            f"{sysctl('aio-max-nr')} reserved on this machine; this process holds {ours} context(s) of "
            f"{CAPACITY} events (one per open event loop). Close the event loops you no longer use, or "
            "raise the limit: sudo sysctl fs.aio-max-nr=1048576")) from None


class Engine:
    """The context of one event loop (for one backend). Every method runs in that loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: AnyContext, backend: str = "aio",
                 sqpoll: bool = False) -> None:
        self._loop_ref = weakref.ref(loop)
        self.loop_id = id(loop)     # for a cheap "same loop?" per request (File._submit)
        self.pid = ctx.pid
        self.backend = backend
        self.sqpoll = sqpoll
        self.ctx = ctx              # a context of its own (_new_engine takes it from the pool or makes it)
        self.closed = False
        self.queue: deque[_kernaio.Request] = deque()
        self._in_hand: list[_kernaio.Request] = []   # taken from the queue for one submit (_take)
        self._flush_pending = False
        self._drain_waiters: list[asyncio.Future[None]] = []  # File.close()s waiting (drained)
        self.submit_calls = 0       # io_submit (or io_uring_enter) calls made (what batching saves)
        # Completions bump the eventfd: the loop's own selector (epoll, or uvloop's libuv)
        # wakes us. add_reader is public API: no asyncio internals needed.
        loop.add_reader(self.ctx.fileno(), self._on_completions)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop_ref()

    def start(self, request: _kernaio.Request) -> None:
        """Queue a request; the first one of a loop iteration schedules the flush."""
        try:
            self._start(request)
        except BaseException:
            self._resume_later()    # KeyboardInterrupt: a request queued with no flush to come?
            raise

    def _start(self, request: _kernaio.Request) -> None:
        # BEGIN SOLUTION lab6
        # TODO: append request to self.queue; if no flush is pending yet, mark one pending
        #   and schedule self._flush with call_soon on the request's loop, so that every
        #   request made in this loop iteration goes out in ONE io_submit.
        # STUB: raise NotImplementedError("lab6: Engine.start (queue, then one flush per iteration)")
        self.queue.append(request)
        if not self._flush_pending:
            # call_soon runs after every callback already ready: all the requests made in
            # this iteration (e.g. by the tasks of one gather) go out in one io_submit.
            request.future.get_loop().call_soon(self._flush)
            self._flush_pending = True
        # END SOLUTION

    def cancel(self, request: _kernaio.Request) -> None:
        """The caller gave up on request. A queued one is simply dropped. A submitted one is
        offered to io_cancel (files usually answer EINVAL: not cancellable) or to
        IORING_OP_ASYNC_CANCEL; its buffer stays held by the C side until the completion
        arrives, whatever the answer."""
        if request.submitted and not self.closed:
            self.ctx.cancel(request)

    def drop_queued(self, file: File, exc: BaseException) -> None:
        """Fail the requests of file that are still queued (its fd is about to be closed and
        might be reused: they must never reach the kernel)."""
        mine = [r for r in self.queue if r.file is file]
        if mine:
            self.queue = deque(r for r in self.queue if r.file is not file)
            for r in mine:
                r.fail(exc)

    def take_queued(self) -> list[_kernaio.Request]:
        """Every request still queued, in order; the queue is left empty (close_engine)."""
        pending = list(self.queue)
        self.queue.clear()
        return pending

    def _take(self, n: int) -> None:
        """Move up to n requests from the front of the queue into self._in_hand, leaving out
        every one whose caller gave up (its future is done: cancelled): a cancelled request
        never reaches the kernel. In hand, not in a local list: a KeyboardInterrupt anywhere
        leaves each request in the queue or in hand (or both for a moment), never nowhere."""
        hand = self._in_hand
        while self.queue and len(hand) < n:
            request = self.queue[0]
            if not request.future.done():
                hand.append(request)
            self.queue.popleft()

    def _put_back(self) -> None:
        """Return what is in hand, and neither submitted nor ended, to the front of the queue.
        (After an interrupt a request can be in both: never put it in twice.)"""
        queued = {id(r) for r in self.queue}    # usually empty: _take emptied the queue
        back = [r for r in self._in_hand if not r.submitted and not r.future.done() and id(r) not in queued]
        self.queue.extendleft(reversed(back))
        self._in_hand.clear()

    def _flush(self) -> None:
        """Submit what is queued, as few io_submit calls as the free slots allow."""
        try:
            self._flush_pending = False
            if self.closed:
                return
            if self._in_hand:
                self._put_back()    # an interrupted flush left some in hand
            # BEGIN SOLUTION lab6
            # TODO: while requests are queued and the context has free slots: self._take(ctx.free)
            #   moves a batch into self._in_hand (leaving out the cancelled ones); submit it in
            #   ONE call (ctx.submit takes the list; it marks the requests the kernel took as
            #   submitted), then self._put_back() the rest and stop if the kernel took fewer
            #   (it is full). An OSError belongs to the first request: fail it alone and put the
            #   others back. Any other exception: fail every request in hand with it, then clear
            #   the hand (never leave a caller waiting).
            # STUB: raise NotImplementedError("lab6: Engine._flush (one io_submit of the queue)")
            while self.queue and self.ctx.free > 0:
                self._take(self.ctx.free)
                batch = self._in_hand
                if not batch:
                    break
                try:
                    took = self.ctx.submit(batch)
                except OSError as err:
                    # io_submit refused the FIRST iocb (EBADF: its fd was closed behind our back,
                    # EINVAL: an fsync the filesystem cannot do asynchronously...): that error is
                    # the first request's; the others get their own chance.
                    self.submit_calls += 1
                    code = err.errno if err.errno is not None else errno.EIO
                    batch[0].fail(OSError(code, os.strerror(code), batch[0].file.name))
                    self._put_back()
                    continue
                except Exception as err:
                    # Not the kernel's answer (a malformed request, MemoryError, a bug): nothing of
                    # the batch was submitted. Fail all of it rather than leave its callers waiting
                    # for completions that can never come (this runs in a loop callback: an
                    # exception escaping it would only be logged).
                    for request in batch:
                        request.fail(err)
                    batch.clear()
                    continue
                self.submit_calls += 1
                full = took < len(batch)
                self._put_back()        # what the kernel did not take: first in the queue again
                if full:
                    break               # the kernel is full: the next completion flushes again
            # END SOLUTION
        except BaseException:
            self._put_back()            # KeyboardInterrupt between two lines: nothing is lost
            self._resume_later()
            raise
        if self.queue and self.ctx.in_flight == 0 and not self._flush_pending:
            # Refused with nothing in flight (EAGAIN): no completion will come to retry.
            loop = self.loop
            if loop is not None and not loop.is_closed():
                loop.call_later(0.001, self._flush)
                self._flush_pending = True

    def _resume_later(self) -> None:
        """After a KeyboardInterrupt (or SystemExit) inside one of the engine's callbacks: make
        sure the next run of the loop flushes the queue and delivers what was reaped (it waits
        in the context's list), whatever line was interrupted. (asyncio lets the exception out
        of run_until_complete and keeps everything else; a notebook then runs the loop again.)
        An extra call finds nothing to do. py/kernaio/tests/test_faults.py interrupts every
        line of the engine in turn to prove it."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon(self._on_completions)
            self._flush_pending = True      # _on_completions flushes first

    def _on_completions(self) -> None:
        """The eventfd is readable (or a slice was full): submit what is queued, resolve the
        next slice of finished requests, and come back right after the tasks they wake."""
        try:
            if self.closed:
                return
            self._flush_pending = False   # this call flushes; a flush scheduled before finds little
            # BEGIN SOLUTION lab6
            # TODO: if requests are queued, flush them first. Then reap a slice (a third of
            #   ctx.in_flight, at least REAP_MIN) and self._deliver(done) them.
            #   If any completed: their tasks run next, so call_soon self._after_slice(full) --
            #   queued AFTER those tasks, it runs right after them in the same loop iteration and
            #   submits the requests they make in one flush (mark a flush pending: start() then
            #   schedules none); full = the slice was full (more may wait in the kernel, and the
            #   eventfd is drained). Nothing completed but requests wait (slots freed): flush.
            # STUB: raise NotImplementedError("lab6: Engine._on_completions (flush, reap, resolve)")
            if self.queue:
                self._flush()
            limit = max(REAP_MIN, self.ctx.in_flight // REAP_SHARE)
            done = self.ctx.reap(limit)
            full = len(done) >= limit
            woke = self._deliver(done)
            loop = self.loop
            if woke and loop is not None:
                loop.call_soon(self._after_slice, full)
                self._flush_pending = True
            elif self.queue and not self._flush_pending:
                self._flush()
            # END SOLUTION
        except BaseException:
            self._resume_later()
            raise
        if self._drain_waiters:
            self._wake_drain_waiters()

    @staticmethod
    def _deliver(done: list[tuple[object, int, bytes | None]]) -> int:
        """Complete the reaped requests and take them out of the context's list (ctx.reap
        returns the same list each time). Taken only after they are all delivered: the kernel
        hands each completion over once, and a KeyboardInterrupt between two of them leaves
        them all there for the next reap (completing a request twice does nothing)."""
        for token, res, data in done:
            if isinstance(token, _kernaio.Request):
                token.complete(res, data)   # a request whose future is done is left alone
        count = len(done)
        del done[:count]
        return count

    def _after_slice(self, full: bool) -> None:
        """Runs right after the tasks a slice woke (they were queued before it): one flush
        for the requests they made, and the next slice if this one was full. Without it,
        their flush would wait for the next loop iteration: one more epoll_wait and pass
        through the loop per request at low queue depth (QD 1: 3 iterations per read, not 2)."""
        try:
            self._flush_pending = False
            if full:
                self._on_completions()  # flushes first
            else:
                self._flush()
        except BaseException:
            self._resume_later()        # a full slice left completions behind a drained eventfd
            raise

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():       # a close() cancelled meanwhile
                waiter.set_result(None)


# Either engine: the Python one above, or its C twin. Both have what the code below and File use.
AnyEngine = Engine | _kernaio.Engine

# (id(loop), backend, sqpoll, engine kind) -> its engine (which holds the loop weakly)
_engines: dict[tuple[int, str, bool, str], AnyEngine] = {}


def for_running_loop(backend: str = "aio", *, sqpoll: bool = False, engine: str | None = None) -> AnyEngine:
    """The running loop's engine for backend, made on first use. RuntimeError outside a loop."""
    return for_loop(asyncio.get_running_loop(), backend, sqpoll=sqpoll, engine=engine)


def for_loop(loop: asyncio.AbstractEventLoop, backend: str = "aio", *, sqpoll: bool = False,
             engine: str | None = None) -> AnyEngine:
    """The engine of loop (the running one: the caller got it from get_running_loop()) for
    backend ("aio" or "io_uring", with or without SQPOLL), of the kind engine_kind(engine)
    says. OSError if its context cannot be made (io_uring blocked)."""
    key = (id(loop), backend, sqpoll, engine_kind(engine))
    found = _engines.get(key)
    if found is not None and found.loop is loop and found.pid == _pid:
        return found
    _sweep()
    made = _new_engine(loop, backend, sqpoll, key[3])
    _engines[key] = made
    weakref.finalize(loop, _close_engine, made)
    return made


def _new_engine(loop: asyncio.AbstractEventLoop, backend: str, sqpoll: bool, kind: str) -> AnyEngine:
    ctx = _take_context(backend, sqpoll)
    try:
        if kind == "c":
            return _kernaio.Engine(loop, ctx, backend, sqpoll, REAP_SHARE, REAP_MIN)
        return Engine(loop, ctx, backend, sqpoll)
    except BaseException:
        ctx.close()
        raise


async def drained(engine: AnyEngine, file: File) -> None:
    """Return once the kernel holds no request of file in engine (File.close). Each reap
    wakes the waiters, which look again: no count is kept per request on the way."""
    loop = asyncio.get_running_loop()
    while not engine.closed and engine.loop is loop and engine.ctx.in_flight_for(file):
        waiter = loop.create_future()
        engine._drain_waiters.append(waiter)
        await waiter


def close_engine(engine: AnyEngine) -> None:
    """Stop watching the eventfd, wait for the requests in flight (io_destroy), release
    everything; queued requests fail. Safe on a closed loop and in a fork()ed child."""
    loop = engine.loop
    if engine.closed:
        return
    engine.closed = True
    ctx = engine.ctx
    if loop is not None and not loop.is_closed() and engine.pid == _pid and not ctx.closed:
        loop.remove_reader(ctx.fileno())
    pending = engine.take_queued()
    idle = _idle.setdefault((engine.backend, engine.sqpoll), [])
    if ctx.in_flight == 0 and engine.pid == _pid and len(idle) < POOL_SIZE:
        idle.append(ctx)            # nothing under the kernel: reuse it, skip the slow io_destroy
    else:
        ctx.close()                 # io_destroy (or io_uring_queue_exit): waits for the requests in flight
    for r in pending:
        try:
            r.fail(RuntimeError("kernaio: the event loop closed before this request was submitted"))
        except RuntimeError:
            pass                    # the loop is closed: nobody can await it any more
    try:
        engine._wake_drain_waiters()  # they look again, and see the engine closed
    except RuntimeError:
        pass


def _close_engine(engine: AnyEngine) -> None:
    """weakref.finalize: the loop was garbage-collected (maybe never closed). It runs whenever
    the GC does, in the middle of any code, _sweep's included: it closes the engine and leaves
    _engines alone (the next _sweep drops the closed engine)."""
    close_engine(engine)


def _sweep() -> None:
    """Close the engines whose loop is closed or gone (the loop's close() does not tell us)."""
    # A copy made in one C call (no Python code runs during it, so no finalizer): iterating
    # the dict itself, or list(items()), can be cut by a GC that runs _close_engine.
    for key, engine in _engines.copy().items():
        loop = engine.loop
        if engine.closed or loop is None or loop.is_closed() or engine.pid != _pid:
            if _engines.get(key) is engine:
                del _engines[key]
            close_engine(engine)


def close_all() -> None:
    """Close every engine of this process (at exit; also handy in tests)."""
    for key in list(_engines):
        close_engine(_engines.pop(key))
    for idle in _idle.values():
        while idle:
            idle.pop().close()


def _after_fork_in_child() -> None:
    # The kernel contexts are the parent's: forget them without io_destroy (Context knows
    # its pid and skips it), and let the child make its own on first use.
    global _pid
    _pid = os.getpid()
    for engine in _engines.values():
        engine.closed = True    # a File's cached engine is then looked up again (File._submit)
    _engines.clear()
    for idle in _idle.values():
        idle.clear()


atexit.register(close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
