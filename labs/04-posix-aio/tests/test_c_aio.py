"""Lab 4, C: aio_cat (c/posixaio/aio_cat.c, given) on your pa.c, and what glibc does with it.

The first tests check the result (every byte, in every notify mode); the others check
the mechanism: under strace -f, threads appear that the program never created, and
every pread64 of the file runs on one of them, never on the main thread. aio_spy.so
(LD_PRELOAD) counts the aio.h calls themselves, which strace cannot see. By hand:

    cd build/data && ../bin/aio_cat aio-lab4.bin --notify thread
    strace -f -e trace=clone3,clone,pread64 ../bin/aio_cat aio-lab4.bin
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from lab4_aio import AIO_CAT, DataFile, parse_report, requests, run_cat, sleeps, spy_counts, spy_env

from grading.plugin import Impl
from grading.programs import data_fds, file_io, said
from xray import strace

MODES = ["suspend", "thread", "reactor"]
WAIT_MS = 10000   # the timeout aio_cat gives pa_wait (its WAIT_MS): a wait that long means something is broken


@pytest.mark.hint("pa-read")
@pytest.mark.parametrize("mode", MODES)
def test_reads_every_byte(impl: Impl, data: DataFile, mode: str) -> None:
    """aio_cat reads the whole file (33 requests, the last one short) and its CRC-32 is a plain read's."""
    proc = run_cat(impl, data, "--notify", mode)
    AIO_CAT.check_read(proc, data, f"aio_cat --notify {mode}")


@pytest.mark.hint("pa-wait")
def test_waits_in_aio_suspend(impl: Impl, data: DataFile, tmp_path: Path) -> None:
    """--notify suspend sleeps in aio_suspend until glibc wakes it: no spinning on aio_error, no timeouts, no usleep.

    aio_spy.so counts the aio.h calls (and how aio_suspend was used); strace sees the
    main thread's sleeps. Both are counts of what the program did, not of how long it took,
    so a busy machine changes nothing: a request that takes longer only means a longer
    sleep in aio_suspend, never a timeout (aio_cat asks pa_wait for 10 s).
    """
    spy = tmp_path / "spy.txt"
    tr = AIO_CAT.traced_ok(impl, data, "--notify", "suspend", env=spy_env(impl, spy))
    counts = spy_counts(spy)
    n = requests(data)
    assert counts["aio_read"] == n, f"aio_read was called {counts['aio_read']} times for {n} chunks (pa_submit)"
    assert counts["aio_suspend"] >= 1, (
        f"aio_suspend was never called, aio_error {counts['aio_error']} times: pa_wait must sleep in "
        "aio_suspend, not poll aio_error in a loop")
    assert counts["aio_error"] <= 20 * n, (
        f"aio_error was called {counts['aio_error']} times for {n} requests: something polls "
        "instead of sleeping in aio_suspend")
    shortest, expired = counts["aio_suspend_shortest_ms"], counts["aio_suspend_expired"]
    # Any timeout near the caller's is fine (a pa_wait may compute what is left of it); a poll's is tiny.
    assert expired == 0 and not 0 <= shortest < WAIT_MS // 10, (
        f"{expired} of {counts['aio_suspend']} aio_suspend calls ran out of time, and the shortest timeout "
        f"given was {shortest} ms while aio_cat asked pa_wait for {WAIT_MS} ms: pa_wait polls. Pass "
        "aio_suspend the caller's timeout (NULL for timeout_ms < 0) and let glibc wake it when a request is done")
    naps = sleeps(tr, tr.main_tid)
    assert not naps, (
        f"the main thread slept {len(naps)} times in {naps[0].name} (usleep/nanosleep) for {n} requests: "
        "pa_wait polls. Sleep in aio_suspend instead: glibc's thread wakes it the moment a request is done")
    assert counts["aio_return"] == n, (
        f"aio_return was called {counts['aio_return']} times for {n} requests: exactly once "
        "each, when aio_error stops saying EINPROGRESS (pa_result)")


@pytest.mark.hint("reveal")
@pytest.mark.parametrize("mode", MODES)
def test_glibc_threads_do_the_preads(impl: Impl, data: DataFile, mode: str) -> None:
    """Under strace -f: threads created (clone3/clone, CLONE_THREAD), every pread64 of the file on them, none on main."""
    tr = AIO_CAT.traced_ok(impl, data, "--notify", mode)
    fds, _ = data_fds(tr, data.name)
    preads = file_io(tr, data.name, "pread64")
    assert tr.threads_created, (
        "strace saw no clone/clone3 with CLONE_THREAD: no thread was created, so who read the file? "
        f"(calls seen: {tr.summary()})")
    assert preads, f"strace saw no pread64 on the file (fds {sorted(fds)}): calls seen: {tr.summary()}"
    on_main = [c for c in preads if c.tid == tr.main_tid]
    assert not on_main, (f"{len(on_main)} pread64 of the file ran on the main thread ({tr.main_tid}): with "
                         "aio.h, glibc's threads read, the program only submits (pa_submit: aio_read)")
    strangers = {c.tid for c in preads} - set(tr.threads_created)
    assert not strangers, f"pread64 on threads strace did not see created: {strangers}"
    got = sum(c.retval or 0 for c in preads)
    assert got == data.size, f"the preads on glibc's threads returned {got} bytes in all; the file has {data.size}"
    report = parse_report(tr.stdout)
    assert len(report.snapshot) >= 2, (
        f"aio_cat's own look at /proc/self/task while requests were in flight listed {len(report.snapshot)} "
        f"thread(s); expected the main thread and at least one of glibc's. Output:\n{tr.stdout}")
    readers = {c.tid for c in preads}
    assert readers & set(report.snapshot), (
        f"none of the threads that called pread64 ({sorted(readers)}) is in aio_cat's own /proc report "
        f"({sorted(report.snapshot)})")


@pytest.mark.hint("pa-errors")
def test_bad_fd_reports_ebadf(impl: Impl, data: DataFile) -> None:
    """A read from a closed fd: aio_read accepts it, glibc's thread gets EBADF, aio_error/aio_return report it."""
    tr = AIO_CAT.traced_argv([str(impl.bin("aio_cat")), "--bad-fd"], data)
    assert tr.returncode == 1, f"aio_cat --bad-fd should fail with exit code 1: {said(tr)}"
    assert "EBADF" in tr.stderr and "Bad file descriptor" in tr.stderr, (
        f"aio_cat --bad-fd should say 'Bad file descriptor (EBADF)', the errno aio_error gives (pa_result "
        f"returns -that errno): {said(tr)}")
    failed = [c for c in tr.named("pread64") if c.errno == "EBADF"]
    assert failed, f"strace saw no pread64 failing with EBADF: {tr.summary()}"
    assert all(c.tid != tr.main_tid for c in failed), "the failing pread64 ran on the main thread"


@pytest.mark.hint("pa-write")
def test_copy_with_aio_write(impl: Impl, data: DataFile, tmp_path: Path) -> None:
    """--copy OUT writes every chunk with aio_write; pwrite64 runs on glibc's threads; OUT equals the file."""
    out = data.dir / f"aio-lab4-copy-{os.getpid()}.bin"  # the data directory, not /tmp (maybe tmpfs)
    try:
        copy_and_check(impl, data, out, tmp_path / "spy.txt")
    finally:
        out.unlink(missing_ok=True)


def copy_and_check(impl: Impl, data: DataFile, out: Path, spy: Path) -> None:
    proc = run_cat(impl, data, "--notify", "suspend", "--copy", str(out), spy=spy)
    assert proc.returncode == 0, f"aio_cat --copy failed: {said(proc)}"
    assert out.exists() and out.read_bytes() == data.content, (
        f"the copy differs from the file ({out.stat().st_size if out.exists() else 0} bytes of {data.size}): "
        "aio_write with the chunk's buffer, length and offset (pa_prep with LIO_WRITE, pa_submit)")
    counts = spy_counts(spy)
    assert counts["aio_write"] == requests(data), f"aio_write was called {counts['aio_write']} times"
    tr = AIO_CAT.traced(impl, data, "--copy", str(out))
    writes = [c for c in tr.named("pwrite64") if c.retval and c.retval > 0]
    assert writes and all(c.tid != tr.main_tid for c in writes), (
        f"pwrite64 calls: {len(writes)}, on the main thread: {sum(c.tid == tr.main_tid for c in writes)}: "
        "aio_write's writes run on glibc's threads too")


@pytest.mark.hint("sigev-thread")
def test_sigev_thread_runs_callbacks_on_new_threads(impl: Impl, data: DataFile) -> None:
    """SIGEV_THREAD: the callback runs once per request, never on the main thread, on threads glibc creates for it."""
    tr = AIO_CAT.traced_ok(impl, data, "--notify", "thread")
    report = parse_report(tr.stdout)
    calls = report.count("callbacks", r"^(\d+) on")
    on_main = report.count("callbacks", r"(\d+) on the main thread")
    assert calls == requests(data), (
        f"the SIGEV_THREAD callback ran {calls} times for {requests(data)} requests (pa_notify_thread: "
        "sigev_notify, sigev_notify_function, sigev_value)")
    assert on_main == 0, f"{on_main} callbacks ran on the main thread"
    assert len(tr.threads_created) >= requests(data), (
        f"strace saw {len(tr.threads_created)} threads created for {requests(data)} notifications: glibc "
        "starts a new thread for every SIGEV_THREAD notification")


@pytest.mark.hint("sigev-signal")
def test_reactor_sleeps_in_epoll_wait(impl: Impl, data: DataFile) -> None:
    """--notify reactor: glibc's thread queues SIGRTMIN; the main thread sleeps in epoll_wait on a signalfd."""
    tr = AIO_CAT.traced_ok(impl, data, "--notify", "reactor")
    main = tr.main_tid
    sfds = [c for c in tr.named("signalfd4", "signalfd") if c.tid == main and (c.retval or -1) >= 0]
    assert sfds, "the main thread created no signalfd (pa_signal_fd)"
    sent = tr.named("rt_sigqueueinfo", "rt_tgsigqueueinfo")
    assert sent and all(c.tid != main for c in sent), (
        f"signals queued: {len(sent)}, from the main thread: {sum(c.tid == main for c in sent)}; expected one "
        "rt_sigqueueinfo per request, sent by glibc's thread (pa_notify_signal: SIGEV_SIGNAL)")
    waits = [c for c in tr.named("epoll_wait", "epoll_pwait") if c.tid == main]
    woken = [c for c in waits if (c.retval or 0) > 0]
    assert woken, (f"the main thread made {len(waits)} epoll_wait calls, none woken by the signalfd: "
                   "the reactor should sleep there until a completion's signal arrives")
    assert not [c for c in file_io(tr, data.name, "pread64", "read") if c.tid == main], (
        "the main thread read the file itself")
    report = parse_report(tr.stdout)
    check_drains(tr, sfds[0].retval or 0, report.count("signals", r"in (\d+) reactor wake-ups"))
    signals = report.count("signals", r"^(\d+) in")
    assert signals == requests(data), (f"{signals} signals read from the signalfd for {requests(data)} requests: "
                                      "one SIGRTMIN per request (pa_notify_signal), each read once "
                                      "(pa_signal_drain returns how many it read)")


def check_drains(tr: strace.Trace, sfd: int, wakeups: int) -> None:
    """Every wake-up of the reactor drains the signalfd: its last read() there says EAGAIN.

    Counted in the trace, not timed: how many completions are pending at a wake-up
    depends on the machine's speed, but a drain that stops before EAGAIN is always seen.
    """
    reads = [c for c in tr.named("read") if c.tid == tr.main_tid and c.fd == sfd]
    got = sum(1 for c in reads if (c.retval or 0) > 0)
    emptied = sum(1 for c in reads if c.errno == "EAGAIN")
    assert wakeups > 0 and emptied >= wakeups, (
        f"the reactor woke {wakeups} times and read {got} signals from the signalfd, but only {emptied} of "
        "those wake-ups read it until EAGAIN: pa_signal_drain stops after one signal and leaves the rest "
        "queued, so the reactor wakes once per signal. Read struct signalfd_siginfo in a loop until EAGAIN")


@pytest.mark.hint("lio-listio")
@pytest.mark.parametrize("mode", MODES)
def test_lio_listio_submits_batches(impl: Impl, data: DataFile, tmp_path: Path, mode: str) -> None:
    """--batch 8: 5 lio_listio calls carry all 33 requests (no aio_read); one notification per batch."""
    spy = tmp_path / "spy.txt"
    proc = run_cat(impl, data, "--notify", mode, "--batch", "8", spy=spy)
    AIO_CAT.check_read(proc, data, f"aio_cat --batch 8 --notify {mode}")
    counts = spy_counts(spy)
    batches = -(-requests(data) // 8)
    assert (counts["lio_listio"], counts["lio_listio_requests"], counts["aio_read"]) == (batches, requests(data), 0), (
        f"lio_listio was called {counts['lio_listio']} times with {counts['lio_listio_requests']} requests, "
        f"aio_read {counts['aio_read']} times; expected {batches} calls carrying all {requests(data)} "
        "requests, and no aio_read (pa_submit_batch)")
    report = parse_report(proc.stdout)
    if mode == "thread":
        calls = report.count("callbacks", r"^(\d+) on")
        assert calls == batches, (f"{calls} SIGEV_THREAD callbacks for {batches} batches: the list's sigevent "
                                  "(lio_listio's last argument) notifies once per batch")
    if mode == "reactor":
        signals = report.count("signals", r"^(\d+) in")
        assert signals == batches, f"{signals} signals for {batches} batches: one per lio_listio call"


@pytest.mark.hint("more-fds")
def test_one_thread_per_descriptor(impl: Impl, data: DataFile) -> None:
    """With the file opened 3 times and one lio_listio of 6 requests, glibc starts 3 threads, one per descriptor."""
    tr = AIO_CAT.traced_ok(impl, data, "--notify", "suspend", "--fds", "3", "--batch", "6")
    fds, _ = data_fds(tr, data.name)
    readers = {c.tid for c in file_io(tr, data.name, "pread64")}
    assert len(fds) == 3 and len(readers) >= 3, (
        f"3 descriptors, but pread64 ran on {len(readers)} thread(s): glibc runs the requests of one "
        "descriptor one after another on one thread, and those of different descriptors on different "
        f"threads (threads created: {len(tr.threads_created)})")
    AIO_CAT.check_read(tr, data, "aio_cat --fds 3 --batch 6")
