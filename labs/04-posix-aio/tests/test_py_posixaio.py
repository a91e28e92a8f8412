"""Lab 4, Python: posixaio (py/posixaio/aio.py, your aio.py) — aio_read through ctypes.

The first tests call your functions in this process: the bytes must be a plain
os.pread's, errors the real errno, and a cancelled pread must keep its request (the
aiocb and the buffer glibc's thread writes into) until glibc is done with it. The last
ones run `python -m posixaio.cat` under strace -f: the same threads as in C do the
reading. By hand:

    cd build/data && PYTHONPATH=../grade/lab4/py ../../.venv/bin/python -m posixaio.cat aio-lab4.bin
"""
from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import gc
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from lab4_aio import AIO_CAT, DataFile, parse_report, requests, sleeps, timed_out_polls

import posixaio
from grading.plugin import Impl
from grading.programs import data_fds, file_io, said
from posixaio import libc

OFFSETS = [0, 4096, 65536 + 123, 2 * 1024 * 1024 + 12345 - 100]   # the last: a short read


def in_thread(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """fn() on a helper thread; fail (instead of hanging the grader) if it is not back in time."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test below
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{what} did not return within {seconds:g} s: a wait that nothing ends?"
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_async(coro_fn: Callable[[], Any], seconds: float = 10.0) -> Any:
    """asyncio.run(coro_fn()) with a time limit."""
    async def limited() -> Any:
        return await asyncio.wait_for(coro_fn(), seconds)
    try:
        return asyncio.run(limited())
    except asyncio.TimeoutError:
        raise AssertionError(f"the coroutine did not finish in {seconds:g} s: is the Future ever completed "
                             "(_notified, _deliver)?") from None


@pytest.fixture
def fd(data: DataFile) -> Any:
    handle = os.open(data.path, os.O_RDONLY | os.O_CLOEXEC)
    yield handle
    os.close(handle)


def closed_fd() -> int:
    """A descriptor number that is surely closed, and far above those an event loop opens next."""
    low = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    high = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, 500)
    os.close(low)
    os.close(high)
    return high


@pytest.mark.smoke  # libc.py is given: this checks the machine (glibc's struct layout), not the learner
@pytest.mark.hint("py-layout")
def test_ctypes_layout_matches_the_c_header(impl: Impl) -> None:
    """posixaio.libc's struct aiocb and struct sigevent have the offsets the C compiler gives (aio_layout)."""
    proc = subprocess.run([str(impl.bin("aio_layout"))], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, f"aio_layout failed: {proc.stderr}"
    assert libc.layout() == proc.stdout.splitlines(), (
        "the ctypes structs differ from <aio.h> on this machine:\n"
        + "\n".join(f"  ctypes {a!r:40} C {b!r}" for a, b in zip(libc.layout(), proc.stdout.splitlines()) if a != b))


@pytest.mark.hint("py-read-blocking")
def test_read_blocking_returns_what_pread_returns(data: DataFile, fd: int) -> None:
    """read_blocking(fd, n, offset) gives os.pread's bytes, a short read at the end, b"" past it."""
    for offset in OFFSETS:
        try:
            got = in_thread(lambda: posixaio.read_blocking(fd, 4096, offset), 10, "read_blocking")
        except OSError as exc:
            if exc.errno != errno.EINPROGRESS:
                raise
            raise AssertionError(f"read_blocking(fd, 4096, {offset}) raised {exc!r}: EINPROGRESS from aio_error "
                                 "is not an error, it means 'still running'. _outcome returns None then, and "
                                 "read_blocking sleeps in aio_suspend and asks again") from None
        want = data.content[offset:offset + 4096]
        assert got == want, (f"read_blocking(fd, 4096, {offset}) returned {len(got)} bytes that differ from "
                             f"os.pread's {len(want)}")
    past = in_thread(lambda: posixaio.read_blocking(fd, 100, data.size + 10), 10, "read_blocking")
    assert past == b"", f"read_blocking past the end of the file returned {past[:20]!r}, not b''"


@pytest.mark.hint("py-errors")
def test_read_blocking_bad_fd_raises_ebadf() -> None:
    """A closed fd: aio_read accepts the request; the error (EBADF) comes from aio_error, as an OSError."""
    bad = closed_fd()
    with pytest.raises(OSError) as info:
        in_thread(lambda: posixaio.read_blocking(bad, 10, 0), 10, "read_blocking")
    assert info.value.errno == errno.EBADF, f"expected OSError(EBADF), got {info.value!r}"


def record_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Record the calls of owner.NAME made from now on (libc.aio_return, posixaio.aio._deliver: your
    code looks them up by that name when it calls them): the thread each ran on, in order."""
    real = getattr(owner, name)
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(threading.get_native_id())
        return real(*args)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.hint("py-pread")
def test_pread_in_asyncio_returns_the_bytes(data: DataFile, fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """await posixaio.pread(...) x 32 in one loop: the right bytes; glibc's threads ran the callback, not the loop's;
    aio_return exactly once per request (a second call on the same aiocb is undefined behaviour)."""
    returns = record_calls(monkeypatch, libc, "aio_return")
    delivered = record_calls(monkeypatch, posixaio.aio, "_deliver")
    loop_tid: list[int] = []

    async def main() -> list[bytes]:
        loop_tid.append(threading.get_native_id())
        offsets = [i * 65536 + 7 for i in range(32)]
        return list(await asyncio.gather(*(posixaio.pread(fd, 4096, off) for off in offsets)))

    before = len(posixaio.callback_threads())
    try:
        got = run_async(main)
    except AssertionError:
        check_delivered_on(loop_tid[0], delivered)   # the likeliest reason it hung, said plainly
        raise
    wait_for_callbacks_to_end(before, 32)   # every notification handled: then count the calls
    check_delivered_on(loop_tid[0], delivered)
    assert len(returns) <= 32, (
        f"aio_return was called {len(returns)} times for 32 preads: a second aio_return on the same aiocb is "
        "undefined (glibc has already given the request back). Does pread poll _outcome while _deliver "
        "collects it too? Collect once, in _deliver, and just await the Future in pread")
    for i, chunk in enumerate(got):
        off = i * 65536 + 7
        assert chunk == data.content[off:off + 4096], f"pread(fd, 4096, {off}) returned the wrong bytes"
    tids = posixaio.callback_threads()[before:]
    assert len(tids) >= 32, f"the SIGEV_THREAD callback ran {len(tids)} times for 32 preads"
    assert loop_tid[0] not in tids, "the callback ran on the event loop's thread"
    assert posixaio.in_flight() == 0, f"{posixaio.in_flight()} requests still in flight after all completed"


def check_delivered_on(loop_tid: int, delivered: list[int]) -> None:
    elsewhere = [tid for tid in delivered if tid != loop_tid]
    assert not elsewhere, (
        f"_deliver ran {len(elsewhere)} of {len(delivered)} times on glibc's threads, not on the event loop's: "
        "a Future belongs to its loop's thread, and completing it from another thread does not even wake "
        "the loop. In _notified, hand over with req.loop.call_soon_threadsafe(_deliver, req)")


def wait_for_callbacks_to_end(before: int, count: int = 1, seconds: float = 5.0) -> None:
    """Wait until `count` more SIGEV_THREAD callbacks (after the first `before`) have run and
    their threads have ended (glibc's notification thread exits when the callback returns:
    /proc/self/task says so). Gives up quietly after `seconds`: the test's checks then fail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tids = posixaio.callback_threads()[before:before + count]
        if len(tids) == count and not any(os.path.exists(f"/proc/self/task/{tid}") for tid in tids):
            return
        time.sleep(0.001)   # releases the GIL: the callback's thread needs it


@pytest.mark.hint("py-pread")
def test_pread_notified_before_aio_read_returns(data: DataFile, fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc may finish a request, and call the SIGEV_THREAD callback, before aio_read even returns: pread copes.

    The test makes that happen every time instead of once in a while: its aio_read waits
    until the callback has run before it returns. A request registered in _IN_FLIGHT only
    after _submit is then never found by _notified, and its Future is never completed.
    """
    real_aio_read = libc.aio_read

    def aio_read_then_wait_for_the_callback(aiocb: Any) -> int:
        before = len(posixaio.callback_threads())
        ret = real_aio_read(aiocb)
        if ret == 0:
            wait_for_callbacks_to_end(before)
        return int(ret)

    monkeypatch.setattr(libc, "aio_read", aio_read_then_wait_for_the_callback)

    async def main() -> bytes:
        return await posixaio.pread(fd, 4096, 4096)

    before = len(posixaio.callback_threads())
    try:
        got = run_async(main, seconds=10)
    except AssertionError:
        ran = len(posixaio.callback_threads()) - before
        raise AssertionError(
            f"the SIGEV_THREAD callback ran {ran} time(s) before aio_read returned, and the Future was never "
            "completed: a lost wake-up, _notified found no request. Put the request in _IN_FLIGHT before "
            "_submit (under _LOCK), so that a notification that comes early finds it") from None
    assert got == data.content[4096:8192], "pread returned the wrong bytes"


@pytest.mark.hint("py-errors")
def test_pread_bad_fd_raises_ebadf() -> None:
    """await pread on a closed fd raises OSError(EBADF), delivered through the Future."""
    bad = closed_fd()

    async def main() -> bytes:
        return await posixaio.pread(bad, 10, 0)

    with pytest.raises(OSError) as info:
        run_async(main)
    assert info.value.errno == errno.EBADF, f"expected OSError(EBADF), got {info.value!r}"


def requests_reading(fd: int) -> list[Any]:
    """Every posixaio Request alive now whose aiocb reads fd (found through the garbage collector)."""
    return [o for o in gc.get_objects() if isinstance(o, posixaio.aio.Request) and o.aiocb.aio_fildes == fd]


def wait_until_glibc_is_done(kept: list[Any], seconds: float = 5.0) -> None:
    """Until aio_error stops saying EINPROGRESS for each kept request, then a little longer: glibc
    reads the aiocb's sigevent after it stores the result, to notify."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(
            libc.aio_error(ctypes.byref(k.aiocb)) == errno.EINPROGRESS for k in kept):
        time.sleep(0.005)
    time.sleep(0.2)


@pytest.mark.hint("py-cancel")
def test_cancelled_pread_keeps_its_request_until_glibc_is_done() -> None:
    """A pread on an empty pipe blocks glibc's thread; cancelling the Task keeps the request alive until data comes.

    A pread that drops its request on cancel lets Python free the buffer glibc's thread then
    writes into: memory corruption, a crash some time later. So this test keeps its own
    reference to the request while glibc may still use it (the process survives to say what
    went wrong), and judges what your code holds: in_flight() right after the cancel.
    """
    r, w = os.pipe()
    errors: list[dict[str, Any]] = []
    kept: list[Any] = []
    try:
        async def main() -> tuple[int, int]:
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
            task = asyncio.ensure_future(posixaio.pread(r, 100, 0))
            await asyncio.sleep(0.2)  # glibc's thread is now blocked in read() on the pipe
            kept.extend(requests_reading(r))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            held = posixaio.in_flight()
            os.write(w, b"late data")  # glibc's read returns into OUR buffer now
            for _ in range(200):
                if posixaio.in_flight() == 0:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            return held, posixaio.in_flight()

        held, after = run_async(main)
    finally:
        os.close(w)   # a glibc thread still in read() gets end-of-file, and is done
        wait_until_glibc_is_done(kept)
        os.close(r)
    assert held == 1, (f"right after the Task was cancelled, in_flight() was {held}: the request (its aiocb "
                       "and buffer) must stay in _IN_FLIGHT while glibc's thread may still write into it. "
                       "On cancel: libc.aio_cancel, re-raise, and leave the request for _notified to take out")
    assert after == 0, f"after glibc finished, in_flight() is still {after}: _notified must take it out"
    assert not errors, f"the loop reported errors: {[e.get('message') for e in errors]} (set_result on a " \
                       "cancelled Future? check fut.done() first)"


@pytest.mark.hint("py-reveal")
@pytest.mark.parametrize("mode", ["blocking", "asyncio"])
def test_python_reveal_under_strace(impl: Impl, data: DataFile, mode: str) -> None:
    """python -m posixaio.cat under strace -f: threads created, every pread64 of the file on them, the right CRC."""
    argv = impl.python("posixaio.cat", data.name, "--mode", mode)
    tr = AIO_CAT.traced_argv(argv, data, env=impl.env())   # the same calls as aio_cat: its Python twin
    assert tr.returncode == 0, f"posixaio.cat --mode {mode} failed: {said(tr)}"
    report = parse_report(tr.stdout)
    assert report.crc() == data.crc32, f"crc32 {report.crc():08x}, a plain read gives {data.crc32:08x}"
    fds, _ = data_fds(tr, data.name)
    preads = file_io(tr, data.name, "pread64")
    assert tr.threads_created, f"no thread was created: who read the file? ({tr.summary()})"
    assert preads and all(c.tid in tr.threads_created for c in preads), (
        f"pread64 of the file: {len(preads)}, on threads strace saw created: "
        f"{sum(c.tid in tr.threads_created for c in preads)}; on the main thread: "
        f"{sum(c.tid == tr.main_tid for c in preads)}")
    assert len(report.snapshot) >= 2 and {c.tid for c in preads} & set(report.snapshot), (
        f"the program's own /proc report ({report.snapshot}) should list glibc's thread that read the file "
        f"({sorted({c.tid for c in preads})})")
    naps = sleeps(tr, tr.main_tid)
    assert not naps, (
        f"the main thread slept {len(naps)} times in {naps[0].name} (time.sleep) for {requests(data)} requests: "
        "a loop that polls _outcome. Wait where glibc wakes you: libc.aio_suspend in read_blocking, the "
        "Future that _deliver completes in pread")
    idle = timed_out_polls(tr, tr.main_tid)
    assert not idle, (
        f"the event loop woke {len(idle)} times from epoll_wait on a timer with nothing to do, for "
        f"{requests(data)} requests: pread polls (asyncio.sleep in a loop). Just await req.future: "
        "_notified wakes the loop with call_soon_threadsafe when glibc is done")
    if mode == "asyncio":
        calls = report.number("callbacks", r"^(\d+) on")
        assert calls == requests(data), f"{calls} SIGEV_THREAD callbacks for {requests(data)} requests"
        assert report.number("callbacks", r"(\d+) on the main thread") == 0, "a callback ran on the main thread"
