"""Lab 6: kernaio on your aio_context.c, _engine.py and _file.py.

The first tests check results (every byte read and written, errors with their errno and
file name, misaligned requests refused); the others check the mechanism: one io_submit for
the requests of one loop iteration, more requests than the context holds queued, the
completions arriving through the eventfd on the loop's own thread and reaped in slices,
an idle loop asleep, no thread at all (buffered reads too), the GIL released around
io_submit and io_getevents, cancelled reads whose buffers stay pinned until the kernel is
done, and the same code on uvloop. By hand:

    cd build/data && strace -f -e trace=io_submit,io_getevents,epoll_wait,read \\
        ../../.venv/bin/python ../../labs/06-kernaio/tests/lab6_reader.py kernaio-lab6.bin 64
"""
from __future__ import annotations

import asyncio
import errno
import os
import re
import zlib

import pytest
from lab6_kernaio import GIL_DELAY_MS, gil_probe, run, run_probe, traced_reader

from grading.plugin import Impl, too_busy
from grading.programs import DataFile
from xray import strace

BLOCK = 4096


@pytest.mark.hint("iocb")
def test_read_returns_the_files_bytes(data: DataFile) -> None:
    """read() at aligned offsets gives the file's bytes; at the end of the file, a short read, then b''."""
    import kernaio

    async def main() -> list[bytes]:
        async with kernaio.open(data.path, "rb") as f:
            return [await f.read(BLOCK, 0), await f.read(16 * BLOCK, 5 * BLOCK),
                    await f.read(2 * BLOCK, data.size // BLOCK * BLOCK), await f.read(BLOCK, (data.size // BLOCK + 4) * BLOCK)]

    first, middle, tail, beyond = run(main)
    assert first == data.content[:BLOCK], "read(4096, 0) did not return the file's first 4096 bytes"
    assert middle == data.content[5 * BLOCK:21 * BLOCK], "read(65536, 20480) returned other bytes than the file's"
    assert tail == data.content[data.size // BLOCK * BLOCK:], (
        f"the last block is {data.size % BLOCK} bytes: read must return just those (res is the count), "
        f"got {len(tail)} bytes")
    assert beyond == b"", f"a read past the end must return b'', got {len(beyond)} bytes"


@pytest.mark.hint("iocb")
def test_readinto_any_writable_buffer(data: DataFile) -> None:
    """readinto() fills an aligned mmap and a bytearray (buffered file) and returns the count."""
    import kernaio

    async def main() -> tuple[int, bytes, int, bytes]:
        buf = kernaio.aligned_buffer(8 * BLOCK)
        async with kernaio.open(data.path, "rb") as f:
            n = await f.readinto(buf, 3 * BLOCK)
        plain = bytearray(1000)
        async with kernaio.open(data.path, "rb", direct=False) as f:
            m = await f.readinto(plain, 12345)
        return n, bytes(buf), m, bytes(plain)

    n, direct, m, buffered = run(main)
    assert (n, direct) == (8 * BLOCK, data.content[3 * BLOCK:11 * BLOCK]), (
        f"readinto(32 KiB aligned buffer, 12288) returned {n}; the buffer must hold the file's bytes")
    assert (m, buffered) == (1000, data.content[12345:13345]), (
        "readinto(bytearray(1000), 12345) on a buffered file: wrong count or bytes (OP_READ into the "
        "caller's buffer export, any offset)")


@pytest.mark.hint("iocb")
def test_write_fsync_and_read_back(data: DataFile) -> None:
    """write() of bytes (copied into aligned memory) and of an aligned buffer, fsync(), then the file holds them."""
    import kernaio
    path = data.dir / f"kernaio-lab6-write-{os.getpid()}.bin"
    payload = bytes(range(256)) * 64          # 16 KiB, in unaligned memory (a bytes object)

    async def main() -> tuple[int, int]:
        async with kernaio.open(path, "wb") as f:
            a = await f.write(payload, 0)
            b = await f.write(kernaio.aligned_buffer(BLOCK), len(payload))
            await f.fsync()
        return a, b

    try:
        a, b = run(main)
        written = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    assert (a, b) == (len(payload), BLOCK), f"write returned {a} and {b}: the byte counts from the io_events"
    assert written == payload + bytes(BLOCK), "the file does not hold what was written (IOCB_CMD_PWRITE at the offset?)"


@pytest.mark.hint("alignment")
@pytest.mark.parametrize("case", ["offset", "length", "buffer"])
def test_misaligned_direct_request_is_a_clear_value_error(data: DataFile, case: str) -> None:
    """O_DIRECT: a misaligned offset, length or buffer address is a ValueError naming the alignment, before any io_submit."""
    import kernaio
    from kernaio import _engine

    async def main() -> tuple[str, int, int]:
        async with kernaio.open(data.path, "rb") as f:
            await f.read(BLOCK, 0)                       # the engine exists: count its io_submit calls
            engine = _engine.for_running_loop()
            before = engine.submit_calls
            try:
                if case == "offset":
                    await f.read(BLOCK, 100)
                elif case == "length":
                    await f.read(1000, 0)
                else:
                    await f.readinto(memoryview(kernaio.aligned_buffer(2 * BLOCK))[1:BLOCK + 1], 0)
            except ValueError as err:
                return str(err), f.alignment.offset if case != "buffer" else f.alignment.memory, \
                    engine.submit_calls - before
            except OSError as err:
                raise AssertionError(f"the kernel saw the misaligned request and said {err!r}: refuse it "
                                     "before it is queued, with a ValueError that says why") from None
            raise AssertionError(f"a misaligned {case} was accepted: O_DIRECT needs it aligned")

    message, needed, submits = run(main)
    assert str(needed) in message, f"the ValueError must name the alignment needed ({needed}); it says: {message!r}"
    assert submits == 0, f"{submits} io_submit call(s) after the misaligned request: refuse it before it is queued"


@pytest.mark.hint("errors")
def test_kernel_errors_are_oserrors_with_errno_and_name(data: DataFile) -> None:
    """A request the kernel refuses (its fd closed behind kernaio's back: EBADF) is OSError(EBADF) with the file name."""
    import kernaio

    async def main() -> BaseException | None:
        f = kernaio.open(data.path, "rb")
        await f.read(BLOCK, 0)      # the engine (and its eventfd) exists first: else the eventfd,
        os.close(f.fileno())        # made after the close, would take the freed fd number
        try:
            await f.read(BLOCK, 0)
        except BaseException as err:  # noqa: BLE001 - the test inspects whatever came out
            return err
        finally:
            f._closed = True   # its fd is gone already: nothing for close() to do
        return None

    err = run(main)
    assert isinstance(err, OSError) and err.errno == errno.EBADF, (
        f"expected OSError(EBADF) (io_submit refused the iocb), got {err!r}: the errno of io_submit must reach "
        "the OSError (PyErr_SetFromErrno in Context_submit; _flush fails the first request with it)")
    assert err.filename == str(data.path), f"the OSError must name the file; its filename is {err.filename!r}"


@pytest.mark.hint("one-flush")
def test_requests_of_one_iteration_share_one_io_submit(impl: Impl, data: DataFile) -> None:
    """Under strace: 64 reads made together (one gather) go to the kernel in ONE io_submit of 64 iocbs."""
    tr = traced_reader(impl, data, 64)
    m = re.search(r"read: (\d+) bytes in 64 requests crc32 ([0-9a-f]{8})", tr.stdout)
    assert m, f"lab6_reader.py printed no result:\n{tr.stdout}\n{tr.stderr[-2000:]}"
    assert int(m.group(2), 16) == zlib.crc32(data.content[:64 * BLOCK]), "the bytes read are not the file's"
    submits = [(c.arg(1), c.retval) for c in tr.named("io_submit")]
    assert submits == [("64", 64)], (
        f"{len(submits)} io_submit calls for 64 reads (iocbs given, taken: {submits[:4]}{' …' if len(submits) > 4 else ''}). "
        "The 64 reads were made in one loop iteration: "
        "Engine.start must queue them and schedule a single flush (call_soon), not submit each one")


def eventfd_of(tr: strace.Trace) -> int:
    """The fd of the context's eventfd: what the main thread's eventfd2 returned."""
    made = [fd for c in tr.named("eventfd2") if c.tid == tr.main_tid and (fd := c.retval) is not None and fd >= 0]
    assert made, f"no eventfd was made (eventfd2): the context's completions have nowhere to go; calls: {tr.summary()}"
    return made[-1]


@pytest.mark.hint("completions")
def test_completions_come_through_the_eventfd_on_one_thread(impl: Impl, data: DataFile) -> None:
    """Under strace -f: no thread created; the eventfd wakes the loop (epoll_wait reports it ready, its read
    returns the count, no timer runs out), then io_getevents without waiting."""
    tr = traced_reader(impl, data, 64)
    assert not tr.threads_created, (
        f"{len(tr.threads_created)} thread(s) created: kernel AIO needs none (is something calling run_in_executor?)")
    getevents = tr.named("io_getevents")
    assert getevents, f"no io_getevents seen: how are the completions collected? calls: {tr.summary()}"
    waiting = [c for c in getevents if c.arg(1) != "0" or "tv_sec=0, tv_nsec=0" not in c.args]
    assert not waiting, (
        f"io_getevents that could block the loop: {waiting[0].args}. Call it with min_nr 0 and a zero "
        "timeout: the eventfd already said that something completed")
    efd = eventfd_of(tr)
    main = [c for c in tr.calls if c.tid == tr.main_tid]
    waits = [c for c in main if c.name == "epoll_wait"]
    woken = [c for c in waits if (c.retval or 0) > 0 and re.search(rf"\bu32={efd}\b", c.args)]
    timed_out = [c for c in waits if c.retval == 0 and c.arg(3) not in ("0", "-1")]
    reads = [c for c in main if c.name == "read" and c.fd == efd]
    counted = [c for c in reads if c.retval == 8]
    assert woken and counted, (
        f"the eventfd (fd {efd}) never woke the loop: {len(waits)} epoll_wait calls, {len(woken)} reported it "
        f"ready; {len(reads)} reads of it, {len(counted)} returned its 8-byte count "
        f"({sum(c.errno == 'EAGAIN' for c in reads)} EAGAIN). Every iocb carries IOCB_FLAG_RESFD with the "
        "eventfd, and loop.add_reader runs _on_completions when it is readable: no timer polls for completions")
    assert not timed_out, (
        f"{len(timed_out)} epoll_wait calls ended because a timer ran out (timeouts "
        f"{sorted({c.arg(3) for c in timed_out})[:5]} ms) while the 64 reads were in flight: a timer polls for "
        "completions. Let the eventfd wake the loop (loop.add_reader), and schedule no call_later")
    calls = [c for c in main if c.name in ("epoll_wait", "read", "io_getevents")]
    order = " ".join(c.name for c in calls)
    assert re.search(r"epoll_wait read io_getevents", order), (
        "expected the loop to wake in epoll_wait, read the eventfd (8 bytes), then io_getevents; the main "
        f"thread did: {order[-300:]}")


@pytest.mark.hint("completions")
def test_completions_are_reaped_in_slices(impl: Impl, data: DataFile) -> None:
    """Under strace: with 64 reads in flight, no io_getevents asks for more than a slice (a third, REAP_SHARE)."""
    from kernaio import _engine
    tr = traced_reader(impl, data, 64)
    limit = max(_engine.REAP_MIN, 64 // _engine.REAP_SHARE)
    asked = [int(c.arg(2)) for c in tr.named("io_getevents") if c.arg(2).isdigit()]
    assert asked, f"no io_getevents seen: how are the completions collected? calls: {tr.summary()}"
    assert max(asked) <= limit, (
        f"io_getevents asked for up to {max(asked)} events with at most 64 in flight (a slice is {limit}): "
        "_on_completions reaps a slice, ctx.reap(max(REAP_MIN, in_flight // REAP_SHARE)), and Context.reap "
        "asks the kernel for no more than its limit; the tasks of one slice run (and submit again) before the next")


@pytest.mark.hint("completions")
def test_an_idle_loop_stays_asleep(impl: Impl, data: DataFile) -> None:
    """Under strace: after the reads, 0.5 s of asyncio.sleep with the file open wakes the loop a few times at most:
    no timer polls the context, and the eventfd is drained (else it stays readable and the loop spins)."""
    tr = traced_reader(impl, data, 8, "--idle", "0.5")
    main = [c for c in tr.calls if c.tid == tr.main_tid]
    start = [k for k, c in enumerate(main) if c.name == "write" and c.fd == 1 and '"idle' in c.args]
    end = [k for k, c in enumerate(main) if c.name == "write" and c.fd == 1 and '"read: ' in c.args]
    assert start and end, f"lab6_reader.py printed no 'idle' mark and result:\n{tr.stdout}"
    idle = [c for c in main[start[0]:end[0]] if c.name == "epoll_wait"]
    efd = eventfd_of(tr)
    ready = sum(bool(re.search(rf"\bu32={efd}\b", c.args)) for c in idle)
    timers = sum(c.retval == 0 for c in idle)
    why = ("the eventfd stays readable: each reap must drain it (read its 8-byte counter, slots_reap_begin) "
           "before io_getevents" if ready > timers else
           "a timer polls the context: no call_later; the eventfd wakes the loop when something completes")
    assert len(idle) <= 10, (
        f"with nothing in flight, the loop woke {len(idle)} times in 0.5 s ({ready} times with the eventfd "
        f"(fd {efd}) ready, {timers} times by a timer): {why}")


@pytest.mark.hint("no-thread")
def test_buffered_reads_are_kernel_aio_too_with_no_thread(impl: Impl, data: DataFile) -> None:
    """Under strace -f: 16 reads of a buffered file (direct=False) go to io_submit too, and no thread is made."""
    tr = traced_reader(impl, data, 16, "--buffered")
    m = re.search(r"crc32 ([0-9a-f]{8})", tr.stdout)
    assert m and int(m.group(1), 16) == zlib.crc32(data.content[:16 * BLOCK]), "the bytes read are not the file's"
    taken = sum(c.retval or 0 for c in tr.named("io_submit") if (c.retval or 0) > 0)
    assert not tr.threads_created and taken == 16, (
        f"16 buffered reads: {len(tr.threads_created)} thread(s) created, {taken} iocbs taken by io_submit. "
        "A buffered file is kernel AIO too (io_submit copies from the page cache before it returns: "
        "caveat 1): no asyncio.to_thread, no executor, kernaio has no thread")


@pytest.mark.hint("gil")
def test_io_submit_and_io_getevents_release_the_gil(impl: Impl, data: DataFile) -> None:
    """While the main thread is in io_submit or io_getevents, another Python thread runs.

    How: lab6_gil.py runs an observer thread that notes the time of each of its steps (each
    needs the GIL) while the main thread calls Context.submit, Context.reap and os.pread, under
    strace, which holds each io_submit, io_getevents and pread64 GIL_DELAY_MS at its entry. A
    call made with the GIL held leaves no step of the observer inside its window (exactly
    none: the main thread holds the GIL from just before the call to its end); a call made
    with the GIL released lets the observer run there as much as anywhere. os.pread (which
    CPython runs without the GIL) is the baseline: the probe goes on until the observer has
    taken enough steps there, and a machine too busy for that is told so, not judged.
    """
    report = gil_probe(impl, data)
    rounds = report.count("rounds", r"(\d+)")
    assert report.count("completions", r"(\d+)") == rounds, (
        f"{rounds} buffered reads submitted, {report.lines.get('completions')} reaped: submit and reap must work first")
    baseline = report.count("pread64", r"(\d+)")
    if baseline < 300:      # see lab6_gil.py: it stops once the baseline reaches 300 steps
        too_busy(f"in {rounds} rounds, the observer thread took only {baseline} steps while the main thread "
                 "was in os.pread")
    for call, method in (("io_submit", "Context_submit"), ("io_getevents", "Context_reap")):
        steps = report.count(call, r"(\d+)")
        assert steps * 10 >= baseline, (
            f"while the main thread was in {call} ({rounds} calls, each held {GIL_DELAY_MS} ms), another Python "
            f"thread took {steps} steps, against {baseline} during os.pread held as long: {call} ran with the GIL "
            f"held, which stops every thread of the program. In {method}, put the call between "
            "Py_BEGIN_ALLOW_THREADS and Py_END_ALLOW_THREADS (with the context copied to a local first)")


@pytest.mark.hint("cancel")
def test_cancelled_reads_keep_their_buffers_until_the_kernel_is_done(impl: Impl, data: DataFile) -> None:
    """In a process of its own: a read cancelled while the kernel owns it stays in flight with its buffer pinned
    until its completion is reaped; then 50 cancel storms of 64 reads: no crash, right bytes, nothing left over."""
    from kernaio import _engine
    report, died = run_probe(impl, data, "lab6_cancel.py", "50")
    if died and "in flight after the cancel" not in report.lines:
        raise AssertionError(died)
    held = report.count("in flight after the cancel", r"(-?\d+)")
    released = report.lines.get("buffer released after the cancel") == "yes"
    assert held == 1 and not released, (
        f"a read was cancelled while the kernel still owned it (its completion held back): {held} request(s) "
        f"still in flight, its buffer {'released' if released else 'still pinned'}. The kernel may still write "
        "into that buffer: Context.cancel only asks io_cancel, and the slot (with its buffer) is given back "
        "when the completion is reaped (slots_finish)")
    assert not died, died
    assert report.count("in flight once the completion came", r"(-?\d+)") == 0, (
        "after the cancelled read's completion was reaped, the context still counts "
        f"{report.lines.get('in flight once the completion came')} in flight: each completion frees its slot once")
    wrong = report.count("wrong reads", r"(\d+)")
    assert wrong == 0, f"{wrong} reads that were not cancelled returned other bytes than the file's during the storms"
    left = report.count("in flight after the storms", r"(-?\d+)")
    free = report.lines.get("free slots after the storms", "")
    assert left == 0 and free == f"{_engine.CAPACITY} of {_engine.CAPACITY}", (
        f"after 50 cancel storms (every completion reaped): {left} in flight, {free} slots free. A cancelled "
        "request keeps its slot until its completion, which frees it once")


@pytest.mark.hint("queue")
def test_more_requests_than_the_context_holds_are_queued(data: DataFile) -> None:
    """300 reads at once (the context holds 128): none fails, all bytes right, at least 3 io_submit calls."""
    import kernaio
    from kernaio import _engine
    blocks = data.size // BLOCK

    async def main() -> tuple[list[bytes], int]:
        async with kernaio.open(data.path, "rb") as f:
            await f.read(BLOCK, 0)
            engine = _engine.for_running_loop()
            before = engine.submit_calls
            parts = await asyncio.gather(*(f.read(BLOCK, (k % blocks) * BLOCK) for k in range(300)))
            return parts, engine.submit_calls - before

    parts, submits = run(main)
    capacity = _engine.CAPACITY
    wrong = [k for k, p in enumerate(parts) if p != data.content[(k % blocks) * BLOCK:(k % blocks + 1) * BLOCK]]
    assert not wrong, f"{len(wrong)} of 300 reads returned wrong bytes (first: read #{wrong[0]})"
    assert submits >= 300 // capacity + 1, (
        f"{submits} io_submit call(s) for 300 reads with room for {capacity}: the rest must wait in the queue "
        "and go when completions free slots")


@pytest.mark.hint("add-reader")
def test_works_on_uvloop(data: DataFile) -> None:
    """The same reads on uvloop: the engine watches the eventfd with loop.add_reader (public API), nothing asyncio-only."""
    import kernaio

    async def main() -> bytes:
        async with kernaio.open(data.path, "rb") as f:
            parts = await asyncio.gather(*(f.read(BLOCK, k * BLOCK) for k in range(16)))
        return b"".join(parts)

    assert run(main, uvloop=True) == data.content[:16 * BLOCK], "on uvloop the bytes read are not the file's"
