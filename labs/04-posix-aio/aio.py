# Your copy of py/posixaio/aio.py: edit it, then run `make lab4`. (Generated; see docs/ARCHITECTURE.md.)
"""POSIX aio_read from Python: with ctypes, waited for with aio_suspend, or awaited in asyncio.

    import posixaio
    data = posixaio.read_blocking(fd, 4096, 0)     # aio_read, then aio_suspend: this thread sleeps
    data = await posixaio.pread(fd, 4096, 0)        # inside a running asyncio loop

Neither reads anything itself. aio_read hands the request to glibc, and glibc hands it to
a thread of its own that calls pread64 (strace -f shows it). For pread, the request asks
for SIGEV_THREAD: when it is done, glibc starts yet another thread that calls our ctypes
callback, which passes the news to the event loop with call_soon_threadsafe. In the loop
thread, aio_error and aio_return give the result, and the Future gets the bytes.

Memory: from aio_read until glibc's notification, a thread of glibc's may write into the
aiocb and the buffer. So every request stays in _IN_FLIGHT until that notification, even
if the Task that awaited it was cancelled, or its loop closed: Python must not free what
another thread is writing into.
"""
from __future__ import annotations

import asyncio
import atexit
import ctypes
import errno
import itertools
import os
import threading
import time
import traceback

from posixaio import libc


class Request:
    """One aio_read: the aiocb, the buffer glibc's thread writes into, and who waits for it."""

    def __init__(self, n: int) -> None:
        self.key = next(_keys)                               # sigev_value: which request is done
        self.buffer = ctypes.create_string_buffer(max(n, 1))  # where the bytes land (n == 0 allowed)
        self.aiocb = libc.Aiocb()                            # zeroed by ctypes
        self.loop: asyncio.AbstractEventLoop | None = None   # pread: the loop to wake
        self.future: asyncio.Future[bytes] | None = None     # pread: what the caller awaits


_keys = itertools.count(1)
_LOCK = threading.Lock()                  # guards _IN_FLIGHT: glibc's threads touch it too
_IN_FLIGHT: dict[int, Request] = {}       # key -> request that glibc has not notified yet
_CALLBACK_TIDS: list[int] = []            # native ids of the threads our callback ran on


def in_flight() -> int:
    """How many pread requests glibc holds now (submitted, not yet notified)."""
    with _LOCK:
        return len(_IN_FLIGHT)


def callback_threads() -> list[int]:
    """The native thread ids (as in /proc/self/task) the SIGEV_THREAD callback ran on, oldest first."""
    with _LOCK:
        return list(_CALLBACK_TIDS)


def _prepare(req: Request, fd: int, n: int, offset: int, notify: int) -> None:
    """Fill req.aiocb for a read of n bytes at offset of fd into req.buffer.

    notify: libc.SIGEV_NONE (nobody is told) or libc.SIGEV_THREAD (glibc calls _NOTIFY
    with req.key on a thread it starts).
    """
    if n < 0 or offset < 0:
        raise ValueError(f"n and offset must be >= 0 (got n={n}, offset={offset})")
    # TODO(lab4): Fill req.aiocb: aio_fildes, aio_buf (ctypes.addressof(req.buffer)), aio_nbytes,
    #   aio_offset, aio_lio_opcode libc.LIO_READ. Then its sigevent: sigev_notify = notify;
    #   for SIGEV_THREAD also sigev_value.sival_ptr = req.key (the callback gets it back) and
    #   sigev_un.thread.function = _NOTIFY (the ctypes callback object; never a fresh one:
    #   glibc calls it later, from C, and it must still exist then).
    raise NotImplementedError("lab4: posixaio.aio._prepare (fill the aiocb)")


def _submit(req: Request) -> None:
    """aio_read(req.aiocb); OSError (with the errno) when glibc refuses the request."""
    # TODO(lab4): libc.aio_read(ctypes.byref(req.aiocb)); on -1 raise OSError(err, os.strerror(err))
    #   with err = ctypes.get_errno(). It returns at once: the read has not happened yet.
    raise NotImplementedError("lab4: posixaio.aio._submit (aio_read)")


def _outcome(req: Request) -> bytes | None:
    """None while the request runs; then its bytes, or OSError with the request's errno."""
    # TODO(lab4): err = libc.aio_error(...) is errno.EINPROGRESS while the request runs: return None.
    #   Otherwise call libc.aio_return exactly once (it gives the request back): if err is
    #   not 0, raise OSError(err, os.strerror(err)) (a closed fd gives EBADF here, not at
    #   aio_read); else return the first aio_return bytes of req.buffer (req.buffer.raw[:n]).
    raise NotImplementedError("lab4: posixaio.aio._outcome (aio_error, aio_return)")


def read_blocking(fd: int, n: int, offset: int) -> bytes:
    """Read n bytes at offset with aio_read, sleeping in aio_suspend until it is done.

    Blocks the calling thread (not the others: ctypes releases the GIL). Returns fewer
    bytes at end of file, b"" past it. OSError with the real errno (EBADF...).
    """
    req = Request(n)
    # TODO(lab4): _prepare with SIGEV_NONE, _submit, then until _outcome says something other than
    #   None: aio_suspend on a one-element array of aiocb pointers ((libc.AiocbPointer * 1)(
    #   ctypes.pointer(req.aiocb))), no timeout (None). -1 with EINTR: just go round again.
    raise NotImplementedError("lab4: posixaio.read_blocking (aio_read + aio_suspend)")


def _notified(key: int) -> None:
    """SIGEV_THREAD: glibc calls this (through _NOTIFY) on a thread it started. Not the loop's!"""
    # TODO(lab4): Take the request out of _IN_FLIGHT (under _LOCK; glibc is done with it now, so it
    #   may leave) and pass it to the loop thread: req.loop.call_soon_threadsafe(_deliver, req).
    #   Touch no Future here: asyncio objects belong to their loop's thread. If the loop is
    #   closed (RuntimeError), nobody waits any more: collect the result here with _outcome
    #   and ignore it (or its OSError).
    raise NotImplementedError("lab4: posixaio.aio._notified (hand over to the loop)")


def _deliver(req: Request) -> None:
    """In the loop thread: collect the result and complete the Future, unless it is done."""
    # TODO(lab4): Call _outcome (always: it releases the aiocb); then set the Future's result or
    #   exception, but only if it is not done already (a cancelled Task's Future is).
    raise NotImplementedError("lab4: posixaio.aio._deliver (complete the Future)")


async def pread(fd: int, n: int, offset: int) -> bytes:
    """Read n bytes at offset of fd with aio_read, inside a running asyncio loop.

    The loop thread never waits: glibc's thread reads, a SIGEV_THREAD callback wakes the
    loop. Fewer bytes at end of file; OSError with the real errno. Cancelling the Task
    asks glibc to cancel (aio_cancel) but keeps the request until glibc is done with it.
    """
    loop = asyncio.get_running_loop()
    req = Request(n)
    req.loop = loop
    req.future = loop.create_future()
    # TODO(lab4): _prepare with SIGEV_THREAD; put req in _IN_FLIGHT (under _LOCK) BEFORE _submit (the
    #   notification may come before _submit returns), and take it out again if _submit raises.
    #   Then await req.future. On CancelledError: libc.aio_cancel(fd, the aiocb) and re-raise,
    #   leaving req in _IN_FLIGHT: glibc notifies even a cancelled request, and only then may
    #   the buffer go.
    raise NotImplementedError("lab4: posixaio.pread (aio_read with SIGEV_THREAD)")


def _trampoline(key: int | None) -> None:
    """What glibc's notification thread runs: note where we are, then _notified(key)."""
    with _LOCK:
        _CALLBACK_TIDS.append(threading.get_native_id())
        del _CALLBACK_TIDS[:-1000]
    try:
        _notified(key or 0)
    except BaseException:  # nothing may escape into C: print it, like a thread would
        traceback.print_exc()


# The one C-callable function object every SIGEV_THREAD request points to. It lives as
# long as the module, so glibc can never call a function pointer that Python freed.
_NOTIFY = libc.NOTIFY_FUNCTION(_trampoline)


def _drain_at_exit(seconds: float = 5.0) -> None:
    """Before the interpreter shuts down, let requests still in flight finish (at most `seconds`).

    A notification that arrives during shutdown would call into a half-destroyed
    interpreter. time.sleep releases the GIL, so the callbacks can run meanwhile.
    """
    deadline = time.monotonic() + seconds
    while in_flight() and time.monotonic() < deadline:
        time.sleep(0.005)


atexit.register(_drain_at_exit)
