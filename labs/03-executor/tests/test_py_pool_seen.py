"""Lab 3, Python half: `python -m miniloop.files` on your pool, seen from outside.

It reads a 4 MiB file under /proc and strace, to check the mechanism the talk is
about: the reads happen in worker threads you can count, while the loop's thread
sleeps in epoll_wait; and an idle pool costs nothing.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from grading.plugin import Impl
from grading.programs import DataFile, file_opens, make_data
from xray import proc, strace

from executor_support import CHUNK, DATA_SIZE, EPOLL_WAITS, WORKERS


# --- the mechanism, seen from outside: python -m miniloop.files ----------------------------------

RESULT = re.compile(r"read (\d+) bytes in (\d+) preads .*sha256 ([0-9a-f]{64}), (\d+) threads")


@pytest.fixture(scope="module")
def data_file() -> DataFile:
    """A 4 MiB file in the labs' data directory (build/data, or $LAB_DATA_DIR), made once."""
    return make_data("lab3-py-executor.bin", DATA_SIZE, seed=3)


def files_argv(impl: Impl, data: DataFile, linger: float) -> list[str]:
    return impl.python("miniloop.files", str(data.path), "--workers", str(WORKERS), "--chunk", str(CHUNK),
                       "--linger", str(linger))


def parse_result(line: str, stderr: Callable[[], str]) -> re.Match[str]:
    m = RESULT.search(line)
    if m is None:
        pytest.fail(f"`python -m miniloop.files` printed {line!r} instead of its 'read N bytes...' line. "
                    f"Its stderr: {stderr()[-800:]}", pytrace=False)
    return m


@pytest.mark.hint("py-see-threads")
def test_proc_shows_the_loop_thread_and_exactly_the_workers(impl: Impl, data_file: DataFile) -> None:
    """While the script reads 4 MiB through AsyncFile, /proc/PID/task shows workers + 1 threads; the bytes are exact."""
    expected = hashlib.sha256(data_file.content).hexdigest()
    with proc.launch(files_argv(impl, data_file, linger=5.0), env=impl.env(), stderr=subprocess.PIPE) as script:
        def stderr() -> str:
            proc.stop(script)
            return script.stderr.read().decode(errors="replace") if script.stderr else ""

        peak = [0]
        done = threading.Event()

        def sample() -> None:            # watch the thread count while the file is read
            while not done.is_set():
                with contextlib.suppress(OSError):
                    peak[0] = max(peak[0], len(proc.threads(script.pid)))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            line = script.readline(timeout=15)
        finally:
            done.set()
            sampler.join()
        m = parse_result(line, stderr)
        threads = proc.threads(script.pid)
    assert int(m.group(1)) == DATA_SIZE and m.group(3) == expected, (
        f"the script read {m.group(1)} bytes with sha256 {m.group(3)[:16]}..., the file has {DATA_SIZE} bytes "
        f"with sha256 {expected[:16]}...: the bytes must be exactly those of a plain read")
    assert len(threads) == WORKERS + 1, (
        f"/proc/PID/task shows {len(threads)} threads after reading with ThreadPool(workers={WORKERS}): expected "
        f"{WORKERS + 1}, the loop's thread and the {WORKERS} workers, which wait for the next job")
    assert peak[0] <= WORKERS + 1, (
        f"while the file was read the process had up to {peak[0]} threads: a pool of {WORKERS} workers "
        "runs every job in those threads, it never starts one per job")


def _wake_fds(tr: strace.Trace) -> dict[int, float]:
    """The eventfds and pipe read ends made by the loop's thread: fd -> when."""
    fds: dict[int, float] = {}
    for c in tr.named("eventfd2", "eventfd", "pipe2"):
        if c.tid != tr.main_tid or c.retval is None or c.retval < 0:
            continue
        if c.name == "pipe2":
            m = re.match(r"\s*\[(\d+),", c.args)
            if m:
                fds[int(m.group(1))] = c.start
        else:
            fds[c.retval] = c.start
    return fds


@pytest.mark.hint("py-strace-workers")
def test_strace_shows_preads_in_workers_while_the_loop_sleeps_in_epoll_wait(impl: Impl, data_file: DataFile) -> None:
    """Under strace: open and every pread of the file on worker threads; the loop in epoll_wait meanwhile; few wake-ups."""
    tr = strace.run(files_argv(impl, data_file, linger=0), env=impl.env(), timeout=30,
                    trace="desc,openat,eventfd2,pipe2")
    if not RESULT.search(tr.stdout):
        pytest.fail(f"`python -m miniloop.files` under strace did not finish its read (exit {tr.returncode}). "
                    f"stdout {tr.stdout[-300:]!r}, stderr: {tr.stderr[-800:]}", pytrace=False)
    main = tr.main_tid
    opens = file_opens(tr, str(data_file.path))
    assert opens, f"no successful openat of {data_file.path} in the trace (calls seen: {tr.summary()})"
    opened = opens[0]
    assert opened.tid != main, (
        "the file was opened (openat) by the loop's thread: AsyncFile.open must run os.open in the pool")
    fd = opened.retval
    closes = [c.start for c in tr.named("close") if c.fd == fd and c.start > opened.start]
    until = closes[0] if closes else float("inf")
    reads = [c for c in tr.named("pread64", "read", "preadv", "preadv2", "readv")
             if opened.start < c.start <= until and c.fd == fd]
    assert len(reads) >= DATA_SIZE // CHUNK, (
        f"{len(reads)} reads of the file's fd {fd}, expected {DATA_SIZE // CHUNK} preads of {CHUNK} bytes")
    on_loop = [c for c in reads if c.tid == main]
    assert not on_loop, (
        f"{len(on_loop)} of {len(reads)} reads of the file ran on the loop's thread: every read must be a job "
        "for a worker")

    waits = [c for c in tr.named(*EPOLL_WAITS) if c.tid == main and c.duration is not None]
    during = [r for r in reads if any(w.start <= r.start <= w.end for w in waits)]
    assert during, (
        f"no read of the file started while the loop's thread was inside epoll_wait ({len(waits)} calls): "
        "the loop must sleep in epoll_wait while the workers read, not wait for them another way")

    wake_fds = _wake_fds(tr)
    assert wake_fds, (
        "the loop's thread created no eventfd (eventfd2) or pipe (pipe2): how do the workers wake it?")
    wakeups = []        # successful reads of a wake-up fd by the loop's thread
    for c in tr.named("read"):
        wake_fd = c.fd
        if c.tid == main and wake_fd in wake_fds and c.start > wake_fds[wake_fd] and (c.retval or 0) > 0:
            wakeups.append(c)
    assert wakeups, f"the loop's thread never read its wake-up fd(s) {sorted(wake_fds)}"
    assert len(wakeups) < len(reads), (
        f"the loop read its wake-up fd {len(wakeups)} times for {len(reads)} preads: wake-ups must be "
        "coalesced (write the eventfd only when the done-queue was empty, take the whole queue per wake-up)")


@pytest.mark.hint("py-idle")
def test_idle_loop_and_idle_pool_burn_no_cpu(impl: Impl, data_file: DataFile) -> None:
    """After the read, the loop waits on a timer and the workers on their condition: about 0 s of CPU in 1 s."""
    with proc.launch(files_argv(impl, data_file, linger=5.0), env=impl.env(), stderr=subprocess.PIPE) as script:
        def stderr() -> str:
            proc.stop(script)
            return script.stderr.read().decode(errors="replace") if script.stderr else ""

        parse_result(script.readline(timeout=15), stderr)
        time.sleep(0.2)
        before = proc.cpu_seconds(script.pid)
        time.sleep(1.0)
        used = proc.cpu_seconds(script.pid) - before
        threads = len(proc.threads(script.pid))
    assert threads == WORKERS + 1, f"{threads} threads while idle, expected {WORKERS + 1}"
    assert used < 0.1, (
        f"the idle script used {used:.2f} s of CPU in 1 s: something polls. Idle workers must wait on the "
        "condition with no timeout, and the loop must not check the done-queue on a timer")


@pytest.mark.hint("py-idle")
def test_idle_loop_and_idle_pool_make_no_system_calls(impl: Impl, data_file: DataFile) -> None:
    """Under strace: in one idle second no thread makes a single call (no futex, no epoll_wait, no sleep)."""
    trace = "futex,desc,clock_nanosleep,nanosleep"
    tr = strace.run(files_argv(impl, data_file, linger=1.8), env=impl.env(), trace=trace, timeout=30)
    parse_result(tr.stdout, lambda: tr.stderr)
    # The idle second is timed from the script's own write of its result line (then it lingers 1.8 s).
    printed = [c for c in tr.named("write") if c.fd == 1 and "bytes in" in c.args]
    assert printed, f"no write of the result line to stdout in the trace (calls seen: {tr.summary()})"
    idle_from = printed[0].end + 0.3
    idle_to = idle_from + 1.0
    busy = [c for c in tr.calls if idle_from <= c.start <= idle_to and c.name not in ("clone", "clone3")]
    assert len(busy) <= 2, (
        f"{len(busy)} system calls began during one idle second, e.g. "
        f"{[(('loop' if c.tid == tr.main_tid else 'worker'), c.name, c.args[:40]) for c in busy[:6]]}: "
        "an idle worker must sleep in Condition.wait() without a timeout (one futex wait), and the loop in "
        "one epoll_wait; nothing may wake up to check")
    # A wait with a long timeout (5 s) makes no call within the second, but it is a poll all the
    # same: the call each worker sleeps in through the idle second must have no timeout at all.
    workers = set(tr.threads_created)
    asleep = [c for c in tr.calls if c.tid in workers and c.start < idle_from
              and (c.duration is None or c.end > idle_to)]
    timed = [c for c in asleep if _wait_timeout(c)]
    assert not timed, (
        f"{len(timed)} of {len(workers)} idle workers slept through the idle second in a wait with a timeout "
        f"(e.g. {timed[0].name} with {_wait_timeout(timed[0])}). Such a worker "
        "polls: it wakes up on its own, finds nothing and sleeps again, for ever, every idle pool. "
        "Call Condition.wait() with no timeout: only notify() should wake an idle worker")


def _wait_timeout(call: strace.Call) -> str:
    """The timeout of a call a thread sleeps in, as strace printed it; "" when it has none."""
    if call.name == "futex":
        timeout = call.arg(3)         # futex(uaddr, op, val, timeout, ...): NULL is "for ever"
        return "" if timeout in ("", "NULL") else timeout
    if call.name in ("nanosleep", "clock_nanosleep"):
        return call.args[:60]         # a sleep is nothing but a timeout
    return ""
