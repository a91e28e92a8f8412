"""Lab 7, C: uring_cat on your uring_raw.c, uring_liburing.c and uring_cat.c.

First every byte (both backends, O_DIRECT and buffered, reading and copying); then the
mechanism under strace -f: io_uring_setup and io_uring_enter on the one main thread, no
clone, one io_uring_enter per batch, the eventfd in the reactor, no io_uring_enter at all
with SQPOLL; then what strace cannot see: the kernel's own threads, iou-wrk-PID for a
buffered write and iou-sqp-PID for SQPOLL, found in /proc/PID/task while uring_cat is
paused, and in perf. By hand:

    cd build/data && ../bin/uring_cat uring-lab7.bin --buffered --write copy.bin --pause
    strace -f -e trace=io_uring_setup,io_uring_enter,io_uring_register,clone3 ../bin/uring_cat uring-lab7.bin
"""
from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from lab7_order import problems
from lab7_uring import (APIS, BLOCK, BLOCKS, TRACE, URING_CAT, DataFile, check_copy, enters,
                        read_pipe_slowly, require_uring, resume, thread_sched, wait_for_pause)

from grading.plugin import Impl
from grading.programs import file_io, last_words, parse_report, said
from paths import DATA_DIR
from xray import Unavailable, perf, proc, strace
from xray.doctor import filesystem


@pytest.mark.hint("ring")
@pytest.mark.parametrize("mode", ["direct", "buffered"])
def test_raw_ring_reads_every_byte(impl: Impl, data: DataFile, mode: str) -> None:
    """--api raw (io_uring_setup, the mmapped rings, io_uring_enter): the whole file, its CRC-32 a plain read's."""
    URING_CAT.reads_all(impl, data, "--api", "raw", f"--{mode}")


@pytest.mark.hint("liburing")
@pytest.mark.parametrize("mode", ["direct", "buffered"])
def test_liburing_reads_every_byte(impl: Impl, data: DataFile, mode: str) -> None:
    """--api liburing: the same reader through io_uring_queue_init_params, get_sqe, submit_and_wait, for_each_cqe."""
    URING_CAT.reads_all(impl, data, "--api", "liburing", f"--{mode}")


@pytest.mark.hint("no-thread")
@pytest.mark.parametrize("reactor", [False, True], ids=["wait", "reactor"])
@pytest.mark.parametrize("api", APIS)
def test_io_uring_on_one_thread(impl: Impl, data: DataFile, api: str, reactor: bool) -> None:
    """Under strace -f: io_uring_setup and io_uring_enter on the main thread, every SQE taken, no clone, no read."""
    args = ["--api", api, *(["--reactor"] if reactor else [])]
    tr = URING_CAT.traced(impl, data, *args)
    URING_CAT.check_read(tr, data, "uring_cat " + " ".join(args))
    main = tr.main_tid
    ring_calls = tr.named("io_uring_setup", "io_uring_enter")
    assert {c.name for c in ring_calls} == {"io_uring_setup", "io_uring_enter"}, (
        f"strace should see io_uring_setup and io_uring_enter; calls seen: {tr.summary()}")
    elsewhere = {c.tid for c in ring_calls} - {main}
    assert not elsewhere, f"io_uring calls made by thread(s) {sorted(elsewhere)}, not by the main thread {main}"
    assert not tr.threads_created and tr.threads == {main}, (
        f"{len(tr.threads_created)} thread(s) created, threads seen {sorted(tr.threads)}: io_uring needs no thread "
        "of yours (whatever the kernel needs, it makes itself, without clone)")
    reads = file_io(tr, data.name, "read", "pread64")
    assert not reads, f"{len(reads)} read/pread64 of the file itself: the bytes must come through the ring"
    taken = sum(c.retval or 0 for c in enters(tr))
    assert taken == BLOCKS, (f"io_uring_enter took {taken} SQEs in all; the file is {BLOCKS} requests of 64 KiB: "
                             "was the SQ tail published (store-release) before io_uring_enter, with to_submit "
                             "counting the new SQEs?")


@pytest.mark.hint("batch")
@pytest.mark.parametrize("api", APIS)
def test_one_io_uring_enter_per_batch(impl: Impl, data: DataFile, api: str) -> None:
    """--depth 8 --batch 4: each io_uring_enter submits several SQEs AND waits for 4 CQEs; about a call per 4 blocks."""
    tr = URING_CAT.traced(impl, data, "--api", api, "--depth", "8", "--batch", "4")
    URING_CAT.check_read(tr, data, f"uring_cat --api {api} --depth 8 --batch 4")
    calls = enters(tr)
    sizes = [int(c.arg(1)) for c in calls]
    waits = [int(c.arg(2)) for c in calls]
    assert calls and max(sizes) <= 8, f"io_uring_enter was given up to {max(sizes, default=0)} SQEs; --depth is 8"
    assert len(calls) <= BLOCKS // 4 + 3, (
        f"{len(calls)} io_uring_enter calls for {BLOCKS} requests: with --batch 4 each call should wait for 4 "
        f"completions and hand over the SQEs that refill their slots (to_submit {sizes}, min_complete {waits})")
    assert sum(s > 1 for s in sizes) >= len(sizes) // 2, (
        f"to_submit of each io_uring_enter: {sizes}: most calls should carry a batch of SQEs, not one each")
    assert all("IORING_ENTER_GETEVENTS" in c.arg(3) for c in calls[:-1]) and min(waits[:-1], default=4) >= 2, (
        f"min_complete of each io_uring_enter: {waits}: the same call that submits should wait for the batch of "
        "completions (IORING_ENTER_GETEVENTS): ur_submit(cat.u, cat.batch)")


@pytest.mark.hint("eventfd")
@pytest.mark.parametrize("api", APIS)
def test_reactor_wakes_on_the_registered_eventfd(impl: Impl, data: DataFile, api: str) -> None:
    """--reactor: the eventfd registered with the ring, epoll_wait woken, the eventfd read, never a wait in the ring."""
    tr = URING_CAT.traced(impl, data, "--api", api, "--reactor")
    main = tr.main_tid
    # The mechanism first: a reactor that never wakes ends in a timeout, which names no cause.
    efds = [c.retval for c in tr.named("eventfd2") if (c.retval or -1) >= 0]
    assert efds, f"no eventfd was created: {said(tr)}"
    efd = efds[0]
    registered = [c for c in tr.named("io_uring_register") if "IORING_REGISTER_EVENTFD" in c.args and c.retval == 0]
    assert registered and f"[{efd}]" in registered[0].args, (
        f"no io_uring_register(..., IORING_REGISTER_EVENTFD, [{efd}], 1) that succeeded: the kernel does not "
        f"know the eventfd, so it never bumps it and epoll_wait never wakes (calls: "
        f"{[c.args for c in tr.named('io_uring_register')]}): register it in ops->register_eventfd")
    taken = sum(max(c.retval or 0, 0) for c in enters(tr))
    assert taken > 0, (
        f"{len(enters(tr))} io_uring_enter, {taken} SQEs taken: without SQPOLL nobody reads the SQ ring until you "
        "call io_uring_enter, so no request ever started. In the reactor, submit still enters the ring (to_submit "
        "new SQEs, wait_nr 0): only SQPOLL's poller takes SQEs without a system call")
    report = URING_CAT.check_read(tr, data, f"uring_cat --api {api} --reactor")
    woken = [c for c in tr.named("epoll_wait", "epoll_pwait") if c.tid == main and (c.retval or 0) > 0]
    assert woken, "the main thread was never woken from epoll_wait: the eventfd never became readable"
    drains = [c for c in tr.named("read") if c.tid == main and c.fd == efd and c.retval == 8]
    assert drains, f"no 8-byte read of the eventfd {efd}"
    waiting = [c for c in enters(tr) if c.arg(2) != "0" or "GETEVENTS" in c.arg(3)]
    assert enters(tr) and not waiting, (
        f"{len(waiting)} io_uring_enter that wait for completions ({[c.args for c in waiting][:3]}): in the "
        "reactor the only place to sleep is epoll_wait; submit with wait_nr 0")
    assert report.count("completions", r"(\d+) CQEs") == BLOCKS


@pytest.mark.hint("sqpoll")
@pytest.mark.parametrize("api", APIS)
def test_sqpoll_needs_no_io_uring_enter(impl: Impl, data: DataFile, api: str) -> None:
    """--sqpoll --reactor: IORING_SETUP_SQPOLL, every byte, and at most 2 io_uring_enter (to wake the poller)."""
    tr = URING_CAT.traced(impl, data, "--api", api, "--sqpoll", "--reactor")
    URING_CAT.check_read(tr, data, f"uring_cat --api {api} --sqpoll --reactor")
    setups = [c for c in tr.named("io_uring_setup") if (c.retval or -1) >= 0]
    assert setups and "IORING_SETUP_SQPOLL" in setups[-1].args, (
        f"the ring was not made with IORING_SETUP_SQPOLL: {[c.args[:120] for c in setups]}")
    calls = enters(tr)
    assert len(calls) <= 2 and all("SQ_WAKEUP" in c.arg(3) for c in calls), (
        f"{len(calls)} io_uring_enter for {BLOCKS} requests ({[c.args for c in calls][:4]}): with SQPOLL the "
        "kernel's poller takes the SQEs as soon as the tail moves; enter only to wake it "
        "(IORING_SQ_NEED_WAKEUP -> IORING_ENTER_SQ_WAKEUP), never to submit or to wait")
    assert not tr.threads_created, f"{len(tr.threads_created)} thread(s) created with clone: the poller is the kernel's"


@pytest.mark.hint("sqpoll")
@pytest.mark.parametrize("api", APIS)
def test_sqpoll_thread_spins_while_the_program_sleeps(impl: Impl, data: DataFile, api: str) -> None:
    """Paused after --sqpoll: /proc/PID/task has iou-sqp-PID, and it spins while the main thread sleeps.

    Spinning is judged by the time the poller was runnable (on a CPU, or waiting for one: schedstat), not by
    the CPU it got: on a busy machine a spinning thread waits for its turn most of the time, but it still
    wants the CPU all along; a sleeping poller wants none of it.
    """
    require_uring()
    argv = URING_CAT.argv(impl, data, "--api", api, "--sqpoll", "--reactor", "--sq-idle-ms", "8000", "--pause")
    wanted: list[tuple[float, float, float]] = []   # per window: share runnable, seconds on a CPU, waiting
    with proc.launch(argv, cwd=data.dir, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        pause = wait_for_pause(lambda: p.pid, p.readline)
        pollers = [t for t in pause.threads if t.name.startswith("iou-sqp-")]
        if pause.reached and pollers:
            for _ in range(3):   # two more windows if one was short; the poller spins for 8 s
                (cpu0, wait0), t0 = thread_sched(p.pid, pollers[0].tid), time.monotonic()
                time.sleep(0.5)
                (cpu1, wait1), t1 = thread_sched(p.pid, pollers[0].tid), time.monotonic()
                wanted.append(((cpu1 - cpu0 + wait1 - wait0) / (t1 - t0), cpu1 - cpu0, wait1 - wait0))
                if wanted[-1][0] >= 0.5:
                    break
        resume(p.stdin)
        out, err = p.communicate(timeout=15)
    ended = subprocess.CompletedProcess(argv, p.returncode, "\n".join(pause.lines) + "\n" + out.decode(errors="replace"),
                                        err.decode(errors="replace"))
    URING_CAT.check_read(ended, data, f"uring_cat --api {api} --sqpoll --pause")
    assert pause.reached, f"uring_cat never printed its 'paused:' line: {said(ended)}"
    assert pollers, (f"/proc/{pause.pid}/task at the pause: {pause.names()}: no iou-sqp-{pause.pid}; was the ring made "
                     "with IORING_SETUP_SQPOLL?")
    share, cpu, waiting = max(wanted)
    assert share >= 0.5, (
        f"{pollers[0].name} wanted a CPU {share:.0%} of the time while the main thread slept in read() (on one "
        f"{cpu:.3f} s, waiting for one {waiting:.3f} s, per window of 0.5 s): the poller should spin until "
        "--sq-idle-ms passes (IORING_SETUP_SQPOLL with sq_thread_idle)")


@pytest.mark.hint("iou-wrk")
@pytest.mark.parametrize("api", APIS)
def test_buffered_write_runs_on_kernel_workers(impl: Impl, data: DataFile, copy_path: Path, api: str) -> None:
    """--buffered --write: the copy is right; at the pause /proc shows iou-wrk-PID; strace -f saw no clone, no thread."""
    require_uring(direct=False)
    argv = URING_CAT.argv(impl, data, "--api", api, "--buffered", "--write", copy_path.name, "--pause")
    with strace.launch(argv, trace=TRACE, cwd=data.dir, stdin=subprocess.PIPE) as traced_run:
        pause = wait_for_pause(lambda: traced_run.pid, traced_run.readline)
        resume(traced_run.process.stdin)
        tr = traced_run.finish(timeout=20)
    tr.stdout = "\n".join(pause.lines) + "\n" + tr.stdout
    URING_CAT.check_read(tr, data, f"uring_cat --api {api} --buffered --write")
    check_copy(copy_path, data, f"uring_cat --api {api} --buffered --write")
    assert pause.reached, f"uring_cat never printed its 'paused:' line: {said(tr)}"
    writes = [c for c in tr.named("write", "pwrite64") if c.fd is not None and c.fd > 2]
    assert not writes, f"{len(writes)} write/pwrite64 of the copy: the bytes must go through the ring"
    workers = pause.kernel("iou-wrk-")
    if not workers and filesystem(DATA_DIR) != "ext4":
        raise Unavailable(f"no iou-wrk thread on {filesystem(DATA_DIR)}: this filesystem can do buffered writes "
                          "without blocking (the lab's numbers are for ext4)")
    assert workers, (
        f"/proc/{pause.pid}/task at the pause: {pause.names()}: no iou-wrk-* thread. A buffered write that would "
        "block is handed to a kernel worker: were the writes submitted through the ring (IORING_OP_WRITE)?")
    assert not tr.threads_created and tr.threads == {tr.main_tid}, (
        f"strace -f saw {len(tr.threads_created)} thread(s) created, {sorted(tr.threads)} in all: the kernel's "
        "workers are not made by clone and strace follows none of them; a thread here is your own")


@pytest.mark.hint("iou-wrk")
@pytest.mark.parametrize("mode", ["direct", "buffered"])
def test_copy_writes_every_byte(impl: Impl, data: DataFile, copy_path: Path, mode: str) -> None:
    """--write OUT (--reactor, liburing): OUT is the file, byte for byte (O_DIRECT: whole blocks, then cut back)."""
    URING_CAT.reads_all(impl, data, "--api", "liburing", "--reactor", f"--{mode}", "--write", copy_path.name)
    check_copy(copy_path, data, f"uring_cat --{mode} --write")


@pytest.mark.hint("iou-wrk")
def test_perf_sees_the_workers_run(impl: Impl, data: DataFile, copy_path: Path) -> None:
    """perf sched: during a buffered copy, iou-wrk-PID threads ran on a CPU (perf sees what strace cannot)."""
    require_uring(direct=False)
    argv = URING_CAT.argv(impl, data, "--api", "raw", "--buffered", "--write", copy_path.name)
    sched = perf.sched_timehist(argv, cwd=data.dir)
    assert copy_path.exists(), (f"uring_cat made no copy under perf (perf hides its messages): run "
                                f"`{' '.join(argv[1:])}` in {data.dir} with your uring_cat to see why")
    check_copy(copy_path, data, "uring_cat --buffered --write (under perf)")
    ran = {f"{name}[{tid}]": ms for (name, tid), ms in sched.run_ms_by_thread().items()}
    workers = {name: ms for name, ms in ran.items() if name.startswith("iou-wrk-")}
    if not workers and filesystem(DATA_DIR) != "ext4":
        raise Unavailable(f"no iou-wrk thread on {filesystem(DATA_DIR)}: buffered writes did not block here")
    assert workers and sum(workers.values()) > 0, (
        f"perf sched timehist of the copy: threads and their ms on a CPU {ran}: no iou-wrk-* ran; the buffered "
        "writes should have been handed to the kernel's workers")


@pytest.mark.hint("align")
@pytest.mark.parametrize("what,args", [("offset", ["--offset", "100"]), ("length", ["--block", "1000"]),
                                       ("buffer", ["--buffer-offset", "8"])],
                         ids=["offset", "length", "buffer"])
def test_misaligned_request_refused(impl: Impl, data: DataFile, what: str, args: list[str]) -> None:
    """O_DIRECT and a misaligned request: refused (exit 2, the alignment named) before any SQE reaches the kernel."""
    tr = URING_CAT.traced(impl, data, *args)
    assert tr.returncode == 2, (f"uring_cat {' '.join(args)} should stop with exit code 2, refused before any "
                                f"request is queued, not {tr.returncode}: {said(tr)}")
    report = parse_report(tr.stdout)
    need = report.count("alignment", r"offset (\d+)" if what != "buffer" else r"memory (\d+)")
    last = last_words(tr)
    assert what in last and str(need) in last, f"the refusal should name the {what} and {need}; it said {last!r}"
    taken = sum(c.retval or 0 for c in enters(tr))
    assert taken == 0, f"io_uring_enter took {taken} SQEs: a refused request must never reach the ring"


@pytest.mark.hint("cqe-error")
@pytest.mark.parametrize("api", APIS)
def test_the_kernels_error_comes_in_the_cqe(impl: Impl, data: DataFile, api: str) -> None:
    """--offset 100 --unchecked: io_uring_enter accepts the SQE; EINVAL arrives later, as res -22 in its CQE."""
    tr = URING_CAT.traced(impl, data, "--api", api, "--offset", "100", "--unchecked")
    accepted = [c for c in enters(tr) if (c.retval or 0) > 0]
    assert accepted, (f"no io_uring_enter took the request ({[c.result for c in enters(tr)]}): with --unchecked "
                      f"the SQE goes to the kernel as it is: {said(tr)}")
    last = last_words(tr)
    assert tr.returncode == 1 and "CQE" in last and "res -22" in last, (
        f"the kernel's EINVAL should come back in the CQE (res -22) and stop uring_cat with exit code 1: the "
        f"CQE's res must reach settle() unchanged. It said: {said(tr)}")


@pytest.mark.hint("order")
def test_raw_ring_orders_its_indices(impl: Impl) -> None:
    """uring_raw.c's source: SQ tail stored with release, CQ tail loaded with acquire, CQ head stored with release,
    SQ head loaded with acquire, a full fence before SQPOLL's flags are read.

    The one test that reads your source rather than running it, because nothing can be seen at run time:
    on x86 a plain store is already a release and a plain load an acquire for the CPU, so a ring without
    atomics reads every byte here, under any load; on ARM the kernel could take a half-written SQE, or we a
    half-written CQE. (Comments are ignored; lab7_order.py says exactly what counts.)
    """
    found = problems(impl.root / "c" / "uring" / "uring_raw.c")
    assert not found, "\n".join(found)


@pytest.mark.hint("drain")
@pytest.mark.parametrize("api", APIS)
def test_ring_outlives_its_requests(impl: Impl, data: DataFile, copy_path: Path, api: str) -> None:
    """--write into a pipe nobody reads, stopped at the first write: the writes still in flight are waited for.

    A pipe holds one 64 KiB request, so after the first write the others wait in the kernel, in flight, for
    as long as the test likes; --stop-after 1 then stops uring_cat as a failed request would. Closing the
    ring does not wait for requests in flight (the kernel cancels or finishes them later, on its own, into
    memory already freed), so uring_cat must drain them first. The test reads the pipe one request at a
    time, letting uring_cat react after each: every byte the writes in flight carried must come out.
    """
    require_uring(direct=False)
    os.mkfifo(copy_path)
    reader = os.open(copy_path, os.O_RDONLY | os.O_NONBLOCK)   # a reader exists: uring_cat's open does not block
    if fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, BLOCK) != BLOCK:   # one request per pipeful, whatever the default
        os.close(reader)
        raise Unavailable(f"this machine would not make a pipe of {BLOCK} bytes (fs.pipe-user-pages-soft?)")
    args = ["--api", api, "--buffered", "--write", copy_path.name, "--batch", "1", "--stop-after", "1"]
    try:
        with proc.launch(URING_CAT.argv(impl, data, *args), cwd=data.dir, stderr=subprocess.STDOUT) as p:
            lines: list[str] = []
            while not any("stopped on purpose" in line for line in lines):
                try:
                    line = p.readline(30)
                except TimeoutError:
                    line = ""
                if not line:
                    break
                lines.append(line)
            stop = [line for line in lines if "stopped on purpose" in line]
            assert stop, (f"uring_cat {' '.join(args)} never said 'stopped on purpose' at its first write "
                          "completion; it said:\n" + "\n".join(lines))
            piped = read_pipe_slowly(p, reader)
            p.wait(timeout=20)
            rest = (p.lines.rest() + (p.stdout.read() if p.stdout else b"").decode(errors="replace")).strip()
    finally:
        os.close(reader)
    in_flight = int(re.search(r"(\d+) requests still in flight", stop[0]).group(1))   # type: ignore[union-attr]
    carried = (in_flight + 1) * BLOCK   # and the first write's bytes, which wait in the pipe
    assert piped == carried, (
        f"uring_cat stopped with {in_flight} writes in flight, waiting for room in the pipe: with the first they "
        f"carried {carried} bytes, but {piped} came out before uring_cat closed the pipe: it closed the ring without "
        "waiting for them, and the kernel then cancels or finishes them on its own, reading a buffer already "
        "freed. drain() must wait for every request in flight (ur_submit(cat.u, cat.u->in_flight), ur_reap) "
        f"before the ring and the buffer go. It said: {rest}")
    assert "no end after" not in rest, (
        "after the writes came out, uring_cat never ends: its watchdog stopped it. drain() waits in "
        "io_uring_enter, but what reaps the completions (ur_reap until 0)? Without it in_flight never falls, "
        f"and drain waits again, for what already came. It said: {rest}")
    assert p.returncode == 1 and "drain" not in rest, (
        f"after the stop, uring_cat should end with exit code 1 once its requests are done, not "
        f"{p.returncode}: {rest}")
