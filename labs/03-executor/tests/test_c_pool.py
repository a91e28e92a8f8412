"""Lab 3, C half: the thread pool (c/pool/tp.c) and the "looks async" file reader on it.

The first tests run one named check of tp_selftest (c/pool/tp_selftest.c, given) each,
in its own process: the pool's contract from tp.h, one promise at a time. Then the
mechanism, from outside: tp_cat reads a file with preads on the pool's workers, and
/proc and strace show which thread did what; tp_stress pushes 100,000 jobs with random
cancellations through the pool, also in a ThreadSanitizer build. By hand:

    build/bin/tp_selftest                 # every check (`tp_selftest list` names them)
    build/bin/tp_cat FILE --workers 3     # bytes, CRC-32, and how the loop fared
    build/bin/tp_stress                   # 100,000 jobs
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from grading.plugin import Impl
from grading.programs import DataFile, Output, Ran, died, file_opens, last_lines, make_data, run
from xray import Unavailable, proc, strace

DATA_SIZE = (8 << 20) + 12345   # 8 MiB and a bit: the last block is a short one
WORKERS = 3                     # not tp_cat's default (4): the thread count must come from --workers
EPOLL_WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
# tp_cat's last line (c/pool/tp_cat.c: one sentence, not a `key: value` report): what it read.
RESULT = re.compile(r"^bytes (\d+) crc32 ([0-9a-f]{8})$", re.M)


# --- the pool's contract, one check of tp_selftest per test ------------------------------------

def run_check(impl: Impl, name: str) -> None:
    """Run `tp_selftest name`; fail with its own explanation unless it prints `ok name`."""
    impl.selftest("tp_selftest", name)


@pytest.mark.hint("tp-create")
def test_create_registers_an_eventfd_and_starts_the_workers(impl: Impl) -> None:
    """tp_create: an eventfd (close-on-exec, non-blocking) in the reactor and N threads; tp_destroy undoes it."""
    run_check(impl, "create")


@pytest.mark.hint("tp-create")
def test_bad_arguments_and_unknown_ids(impl: Impl) -> None:
    """-EINVAL for 0 workers or a NULL function; tp_cancel of an id never submitted is -ENOENT."""
    run_check(impl, "errors")


@pytest.mark.hint("tp-worker")
def test_work_runs_on_a_worker_and_done_on_the_loop(impl: Impl) -> None:
    """20 jobs: each work once on a worker thread, each done callback once on the loop thread, status 0."""
    run_check(impl, "run")


@pytest.mark.hint("tp-parallel")
def test_workers_run_jobs_at_the_same_time(impl: Impl) -> None:
    """3 jobs on 3 workers that wait for each other all run at once: no lock is held while a job runs."""
    run_check(impl, "parallel")


@pytest.mark.hint("tp-callbacks")
def test_done_callbacks_may_submit_and_cancel(impl: Impl) -> None:
    """Done callbacks submit the next job and cancel another: they must run with no lock held."""
    run_check(impl, "chain")


@pytest.mark.hint("tp-cancel")
def test_cancel_queued_running_and_finished_jobs(impl: Impl) -> None:
    """Queued: 0, done later with -ECANCELED, work never runs. Running: -EBUSY. Finished or cancelled: -ENOENT."""
    run_check(impl, "cancel")


@pytest.mark.hint("tp-coalesce")
def test_a_burst_of_completions_is_one_wakeup(impl: Impl) -> None:
    """200 jobs finish while the loop is busy: the eventfd was written once, and one wake-up delivers all 200."""
    run_check(impl, "coalesce")


@pytest.mark.hint("tp-destroy")
def test_destroy_with_jobs_pending(impl: Impl) -> None:
    """tp_destroy with 2 jobs running, 10 queued: it waits for the 2, cancels the 10, calls every done once, joins."""
    run_check(impl, "destroy_pending")


POLLING = ("The loop reads the eventfd only when epoll says it is readable: a timer (or a loop turn) that reads "
           "it or looks at the done queue 'in case a wake-up was lost' is polling. Nothing is lost if the counter "
           "is 1 exactly when the done queue is not empty (tp.c's rule 3): drop the timer")


def _eventfd(tr: strace.Trace) -> strace.Call:
    """The (first) eventfd2 call of a trace; fails the test when there is none."""
    made = [c for c in tr.named("eventfd2", "eventfd") if c.retval is not None and c.retval >= 0]
    assert made, (f"strace saw no eventfd2 call (exit code {tr.returncode}, stderr {tr.stderr.strip()[-300:]!r}): "
                  "tp_create must make the eventfd the workers wake the loop with")
    return made[0]


@pytest.mark.hint("tp-coalesce")
def test_strace_sees_one_eventfd_write_for_a_burst(impl: Impl) -> None:
    """Under strace, the coalesce check: 200 completions, ONE eventfd write by a worker, at most 2 reads by the loop."""
    tr = strace.run([str(impl.bin("tp_selftest")), "coalesce"], trace="read,write,eventfd2", timeout=30)
    made = _eventfd(tr)
    efd = made.retval
    after = [c for c in tr.calls if c.start > made.start and c.fd == efd]
    worker_writes = [c for c in after if c.name == "write" and c.tid != tr.main_tid]
    loop_reads = [c for c in after if c.name == "read" and c.tid == tr.main_tid]
    assert worker_writes, (f"no worker thread wrote the eventfd (fd {efd}); tp_selftest said "
                           f"{tr.stdout.strip()!r}")
    assert len(worker_writes) == 1, (
        f"200 jobs finished while the loop was busy: the workers wrote the eventfd {len(worker_writes)} times; "
        "expected 1 write: a worker writes only when it finds the done queue empty")
    empty = [c for c in loop_reads if c.errno == "EAGAIN"]
    assert len(loop_reads) <= 2 and not empty, (
        f"the loop read the eventfd {len(loop_reads)} times for one burst, {len(empty)} of them with nothing to "
        "read (EAGAIN); expected 2: the check's own look and one on_wakeup. " + POLLING)


# --- tp_cat: a file read "asynchronously", seen from outside -----------------------------------

@pytest.fixture(scope="module")
def data_file() -> DataFile:
    """An 8 MiB (and a bit) file of random bytes in the labs' data directory (build/data or $LAB_DATA_DIR)."""
    return make_data("lab3-c-pool.bin", DATA_SIZE, seed=33)


def check_result(out: Output, data: DataFile) -> None:
    """tp_cat ended well, having read the size and CRC-32 (zlib's) of a plain read of the file."""
    m = RESULT.search(out.stdout)
    assert out.returncode == 0 and m is not None, (
        f"tp_cat ended ({died(out.returncode)}) without its 'bytes N crc32 X' line. "
        f"stdout {out.stdout.strip()[-300:]!r}, stderr {out.stderr.strip()[-500:]!r}")
    size, crc = int(m.group(1)), int(m.group(2), 16)
    assert (size, crc) == (data.size, data.crc32), (
        f"tp_cat read {size} bytes with CRC-32 {crc:08x}; a plain read gives {data.size} bytes with CRC-32 "
        f"{data.crc32:08x}: a block lost, read twice, or folded out of order")


@pytest.mark.hint("tp-cat")
@pytest.mark.parametrize("options", [["--workers", "1", "--block", "4096"],
                                     ["--workers", "4", "--block", "100000", "--inflight", "32"]],
                         ids=["1-worker-4k-blocks", "4-workers-32-in-flight"])
def test_tp_cat_reads_the_same_bytes_as_a_plain_read(impl: Impl, data_file: DataFile, options: list[str]) -> None:
    """tp_cat's byte count and CRC-32 are those of a plain read of the file, whatever the pool's shape."""
    argv = [str(impl.bin("tp_cat")), str(data_file.path), *options]
    ran = run(argv, 30, advice="Reading 8 MiB takes a fraction of a second: the loop asleep in epoll_wait means a "
                               "completion that never reached it; a thread waiting on a lock, a lock held forever")
    check_result(ran, data_file)


@pytest.mark.hint("tp-threads")
def test_proc_shows_the_loop_and_exactly_the_workers(impl: Impl, data_file: DataFile) -> None:
    """While tp_cat --workers 3 reads (a slow disk: 20 ms a block), /proc/PID/task shows 4 threads, never more."""
    argv = [str(impl.bin("tp_cat")), str(data_file.path), "--workers", str(WORKERS), "--delay-ms", "20"]
    with proc.launch(argv, stderr=subprocess.PIPE) as cat:
        first = ""
        with contextlib.suppress(TimeoutError):
            first = cat.readline(timeout=10)
        if not first.startswith(f"tp_cat: {WORKERS} workers"):
            proc.stop(cat)
            why = cat.stderr.read().decode(errors="replace") if cat.stderr else ""
            pytest.fail(f"tp_cat did not start its pool: first line {first!r}, stderr {why.strip()[-400:]!r}",
                        pytrace=False)
        names = [t.name for t in proc.threads(cat.pid)]
        counts: list[int] = []
        done = threading.Event()

        def sample() -> None:  # watch the thread count for the whole read
            while not done.is_set() and cat.poll() is None:
                with contextlib.suppress(OSError):
                    counts.append(len(proc.threads(cat.pid)))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out, err = cat.communicate(timeout=30)
        finally:
            done.set()
            sampler.join()
    assert len(names) == WORKERS + 1, (
        f"/proc/PID/task of tp_cat --workers {WORKERS}, once the pool runs: {len(names)} threads {names}; "
        f"expected {WORKERS + 1}: the loop's thread and {WORKERS} workers (tp_create starts all of them)")
    assert max(counts, default=0) <= WORKERS + 1, (
        f"while reading, tp_cat had up to {max(counts)} threads: a pool of {WORKERS} runs every job on those "
        "workers, it never starts a thread per job")
    check_result(Ran(argv, cat.returncode, cat.lines.rest() + out.decode(errors="replace"),
                     err.decode(errors="replace")), data_file)


def trace_tp_cat(impl: Impl, data: DataFile) -> tuple[strace.Trace, list[strace.Call]]:
    """tp_cat --workers 3 under strace; the trace, and the preads of the file (found by the fd openat gave)."""
    argv = [str(impl.bin("tp_cat")), str(data.path), "--workers", str(WORKERS), "--delay-ms", "2"]
    tr = strace.run(argv, trace="openat,pread64,read,write,eventfd2," + ",".join(EPOLL_WAITS), timeout=40)
    assert not tr.timed_out, (f"tp_cat did not finish in 40 s under strace (it takes a few seconds), and was stopped. "
                              f"Where its threads waited:\n{tr.stuck or '    (not seen)'}\nWhat it printed last:\n"
                              f"{last_lines(tr.stdout + tr.stderr)}")
    check_result(tr, data)
    opens = file_opens(tr, str(data.path))
    assert opens, f"no openat of {data.path} in the trace (calls seen: {tr.summary()})"
    fd = opens[0].retval
    preads = [c for c in tr.named("pread64") if c.start > opens[0].start and c.fd == fd]
    return tr, preads


@pytest.mark.hint("tp-preads")
def test_strace_every_pread_runs_on_a_worker(impl: Impl, data_file: DataFile) -> None:
    """Under strace: 3 threads created, and every pread64 of the file made by one of them, none by the loop."""
    tr, preads = trace_tp_cat(impl, data_file)
    blocks = -(-DATA_SIZE // 65536)
    assert len(preads) >= blocks, f"{len(preads)} pread64 calls on the file, expected at least {blocks}"
    on_loop = [c for c in preads if c.tid == tr.main_tid]
    assert not on_loop, (
        f"{len(on_loop)} of {len(preads)} preads of the file ran on the loop's thread: every read is a job's "
        "work, and work runs on a worker")
    assert len(tr.threads_created) == WORKERS, (
        f"strace saw {len(tr.threads_created)} threads created (clone/clone3), expected {WORKERS}")
    strangers = {c.tid for c in preads} - set(tr.threads_created)
    assert not strangers, f"preads made by threads that are neither the loop nor the workers: {strangers}"


@pytest.mark.hint("tp-loop-sleeps")
def test_strace_the_loop_sleeps_in_epoll_wait_and_reads_the_eventfd(impl: Impl, data_file: DataFile) -> None:
    """Under strace: workers read while the loop is inside epoll_wait; workers write the eventfd, the loop reads it."""
    tr, preads = trace_tp_cat(impl, data_file)
    main = tr.main_tid
    made = _eventfd(tr)
    assert "EFD_NONBLOCK" in made.args and "EFD_CLOEXEC" in made.args, (
        f"eventfd2({made.args}): the eventfd must be EFD_NONBLOCK (the loop never blocks on it) and EFD_CLOEXEC")
    waits = [c for c in tr.named(*EPOLL_WAITS) if c.tid == main and c.duration is not None]
    assert waits, f"the loop's thread never called epoll_wait (calls seen: {tr.summary()})"
    during = [p for p in preads if any(w.start <= p.start <= w.end for w in waits)]
    assert during, (
        f"none of the {len(preads)} preads started while the loop's thread was inside epoll_wait "
        f"({len(waits)} calls): the loop must sleep in the reactor while the workers read")
    efd = made.retval
    used = [c for c in tr.calls if c.start > made.start and c.fd == efd and c.name in ("read", "write")]
    reads = [c for c in used if c.name == "read" and (c.retval or 0) > 0]
    writes = [c for c in used if c.name == "write"]
    assert reads and all(c.tid == main for c in reads), (
        f"the eventfd (fd {efd}) was read {len(reads)} times, {sum(c.tid != main for c in reads)} of them by a "
        "worker: the loop's thread reads it (on_wakeup), nobody else")
    assert writes and all(c.tid != main for c in writes), (
        f"the eventfd was written {len(writes)} times, {sum(c.tid == main for c in writes)} of them by the loop's "
        "thread: the workers write it when they finish a job")
    assert len(reads) <= len(preads), (
        f"the loop read the eventfd {len(reads)} times for {len(preads)} preads: more wake-ups than jobs")
    # epoll reports the eventfd readable only while its counter is not 0, and only on_wakeup
    # resets it: a read that finds nothing (EAGAIN) was not asked for by epoll.
    empty = [c for c in used if c.name == "read" and c.errno == "EAGAIN"]
    assert not empty, (
        f"the loop read the eventfd {len(empty)} times with nothing to read (EAGAIN), besides its {len(reads)} "
        "reads after a worker's write. " + POLLING)


# --- tp_stress: 100,000 jobs, and the same under ThreadSanitizer -------------------------------

STRESS_OK = re.compile(r"^lost 0, doubled 0, wrong 0$", re.M)
STRESS_ALARM = 30       # tp_stress stops itself after this many seconds (SIGALRM), saying how far it got
LOOK_AT = 15            # ... and after 20 s with no completion; it takes a second (ten under ThreadSanitizer)


def run_stress(argv: list[str], env: dict[str, str] | None = None) -> Ran:
    """tp_stress to its end; looked at (threads, wait channels) before its own watchdogs would stop it."""
    return run(argv, 45, look_at=LOOK_AT, env=env, advice=f"(It stops itself after {STRESS_ALARM} s: stuck for good.)")


def stress_failure(ran: Ran, what: str = "tp_stress") -> str:
    """What a failed tp_stress run showed: how and where (in which phase) it ended, what it printed, where
    its threads waited if it had to stop itself."""
    out = ran.stdout.strip()
    if re.search(r"^shutdown with", out, re.M):
        phase = "after the shutdown, while checking every job's record"
    elif re.search(r"^done \d+:", out, re.M):
        phase = "in the shutdown: 1,000 more jobs submitted, then tp_destroy with most of them queued"
    elif out.startswith("tp_stress:"):
        phase = "in the main phase: 100,000 jobs, 256 in flight, a random cancel every 8 completions"
    else:
        phase = "before its pool ran (tp_create)"
    text = f"{what} ended {phase} ({died(ran.returncode)}). It printed:\n{last_lines(out)}"
    if ran.stderr.strip():
        text += f"\nand on stderr:\n{last_lines(ran.stderr)}"
    if ran.seen and "FAIL" in out:
        text += f"\nWhere its threads waited, {LOOK_AT} s in:\n{ran.seen}"
    if ran.returncode < 0:
        text += ("\nA crash: run it under gdb (`gdb -ex run --args build/grade/lab3/build/bin/tp_stress`) to see "
                 "the line, and `make tsan` to see the race that led there")
    return text


@pytest.mark.hint("tp-stress")
def test_stress_100000_jobs_with_cancellations(impl: Impl) -> None:
    """tp_stress: 100,000 jobs, random cancels, then tp_destroy with 1,000 pending: none lost, none doubled."""
    ran = run_stress([str(impl.bin("tp_stress")), "--jobs", "100000", "--workers", "4"])
    out = ran.stdout.strip()
    assert ran.returncode == 0 and STRESS_OK.search(out) and out.endswith("OK"), stress_failure(ran)


def _tsan_runs(workdir: Path) -> list[str] | None:
    """Can this machine build and run a ThreadSanitizer program? The argv prefix it needs, or None."""
    src = workdir / "probe.c"
    src.write_text("#include <pthread.h>\nstatic void *f(void *a) { return a; }\n"
                   "int main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n")
    exe = workdir / "probe"
    built = subprocess.run(["cc", "-fsanitize=thread", "-pthread", "-o", str(exe), str(src)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        return None
    # Kernels with many bits of mmap randomness break older tsan runtimes ("unexpected memory
    # mapping"); without address randomisation (setarch -R) they work.
    for prefix in ([], ["setarch", os.uname().machine, "-R"]):
        if prefix and shutil.which("setarch") is None:
            continue
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if subprocess.run([*prefix, str(exe)], capture_output=True, timeout=20).returncode == 0:
                return prefix
    return None


@pytest.mark.hint("tp-tsan")
def test_stress_is_clean_under_threadsanitizer(impl: Impl) -> None:
    """tp_stress built with -fsanitize=thread (as `make tsan` does): no data race reported, no job lost."""
    with tempfile.TemporaryDirectory(prefix="lab3-tsan-") as scratch:
        prefix = _tsan_runs(Path(scratch))
    if prefix is None:
        raise Unavailable("this compiler or kernel cannot build and run a ThreadSanitizer program "
                          "(cc -fsanitize=thread); install the libtsan runtime of your gcc (Debian: libtsan2)")
    out_dir = impl.root / "build" / "tsan"
    target = out_dir / "tp_stress"
    built = subprocess.run(["make", "-s", "-C", str(impl.root / "c"), f"O={out_dir}", "SAN=thread", str(target)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"the ThreadSanitizer build failed:\n{built.stdout}{built.stderr}"
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 exitcode=66 report_signal_unsafe=0")
    ran = run_stress([*prefix, str(target), "--jobs", "100000", "--workers", "4"], env=env)
    races = ran.stderr.count("WARNING: ThreadSanitizer")
    first = ran.stderr[ran.stderr.find("WARNING: ThreadSanitizer"):][:1500] if races else ""
    assert races == 0, (
        f"ThreadSanitizer reported {races} problem(s) in tp_stress; the first:\n{first}\n"
        "Two threads touched the same memory with no lock ordering them: find the field it names, and the "
        "lock that must guard it (tp.c's first comment)")
    out = ran.stdout.strip()
    assert ran.returncode == 0 and STRESS_OK.search(out), stress_failure(ran, "tp_stress under ThreadSanitizer")
