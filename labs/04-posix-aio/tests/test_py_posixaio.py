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
import errno
import fcntl
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest
from lab4_aio import DataFile, data_fds, explain, io_on, parse_report, requests, traced

import posixaio
from grading.plugin import Impl
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
        got = in_thread(lambda: posixaio.read_blocking(fd, 4096, offset), 10, "read_blocking")
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


@pytest.mark.hint("py-pread")
def test_pread_in_asyncio_returns_the_bytes(data: DataFile, fd: int) -> None:
    """await posixaio.pread(...) x 32 in one loop: the right bytes; glibc's threads ran the callback, not the loop's."""
    loop_tid: list[int] = []

    async def main() -> list[bytes]:
        loop_tid.append(threading.get_native_id())
        offsets = [i * 65536 + 7 for i in range(32)]
        return list(await asyncio.gather(*(posixaio.pread(fd, 4096, off) for off in offsets)))

    before = len(posixaio.callback_threads())
    got = run_async(main)
    for i, chunk in enumerate(got):
        off = i * 65536 + 7
        assert chunk == data.content[off:off + 4096], f"pread(fd, 4096, {off}) returned the wrong bytes"
    tids = posixaio.callback_threads()[before:]
    assert len(tids) >= 32, f"the SIGEV_THREAD callback ran {len(tids)} times for 32 preads"
    assert loop_tid[0] not in tids, "the callback ran on the event loop's thread"
    assert posixaio.in_flight() == 0, f"{posixaio.in_flight()} requests still in flight after all completed"


@pytest.mark.hint("py-errors")
def test_pread_bad_fd_raises_ebadf() -> None:
    """await pread on a closed fd raises OSError(EBADF), delivered through the Future."""
    bad = closed_fd()

    async def main() -> bytes:
        return await posixaio.pread(bad, 10, 0)

    with pytest.raises(OSError) as info:
        run_async(main)
    assert info.value.errno == errno.EBADF, f"expected OSError(EBADF), got {info.value!r}"


@pytest.mark.hint("py-cancel")
def test_cancelled_pread_keeps_its_request_until_glibc_is_done() -> None:
    """A pread on an empty pipe blocks glibc's thread; cancelling the Task keeps the request alive until data comes."""
    r, w = os.pipe()
    errors: list[dict[str, Any]] = []
    try:
        async def main() -> tuple[int, int]:
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
            task = asyncio.ensure_future(posixaio.pread(r, 100, 0))
            await asyncio.sleep(0.2)  # glibc's thread is now blocked in read() on the pipe
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
        os.close(w)
        os.close(r)
    assert held == 1, (f"right after the Task was cancelled, in_flight() was {held}: the request (its aiocb "
                       "and buffer) must stay in _IN_FLIGHT while glibc's thread may still write into it")
    assert after == 0, f"after glibc finished, in_flight() is still {after}: _notified must take it out"
    assert not errors, f"the loop reported errors: {[e.get('message') for e in errors]} (set_result on a " \
                       "cancelled Future? check fut.done() first)"


@pytest.mark.hint("py-reveal")
@pytest.mark.parametrize("mode", ["blocking", "asyncio"])
def test_python_reveal_under_strace(impl: Impl, data: DataFile, mode: str) -> None:
    """python -m posixaio.cat under strace -f: threads created, every pread64 of the file on them, the right CRC."""
    argv = impl.python("posixaio.cat", data.name, "--mode", mode)
    tr = traced(argv, data, env=impl.env())
    assert tr.returncode == 0, f"posixaio.cat --mode {mode} failed: {explain(tr)}"
    report = parse_report(tr.stdout)
    assert report.crc() == data.crc32, f"crc32 {report.crc():08x}, a plain read gives {data.crc32:08x}"
    fds, opened = data_fds(tr, data.name)
    preads = io_on(tr, ("pread64",), fds, opened)
    assert tr.threads_created, f"no thread was created: who read the file? ({tr.summary()})"
    assert preads and all(c.tid in tr.threads_created for c in preads), (
        f"pread64 of the file: {len(preads)}, on threads strace saw created: "
        f"{sum(c.tid in tr.threads_created for c in preads)}; on the main thread: "
        f"{sum(c.tid == tr.main_tid for c in preads)}")
    assert len(report.snapshot) >= 2 and {c.tid for c in preads} & set(report.snapshot), (
        f"the program's own /proc report ({report.snapshot}) should list glibc's thread that read the file "
        f"({sorted({c.tid for c in preads})})")
    if mode == "asyncio":
        calls = report.number("callbacks", r"^(\d+) on")
        assert calls == requests(data), f"{calls} SIGEV_THREAD callbacks for {requests(data)} requests"
        assert report.number("callbacks", r"(\d+) on the main thread") == 0, "a callback ran on the main thread"
