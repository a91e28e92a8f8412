"""Lab 4's grader helpers: the file every test reads, aio_cat (grading.programs.FileProgram), its report and strace.

The data file lives in the labs' data directory (build/data, or $LAB_DATA_DIR), never
in /tmp, and the programs are started in that directory with a short relative name,
so that strace's `openat(AT_FDCWD, "aio-lab4.bin", ...)` tells which descriptor is
the file's, whatever the path of the checkout.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from grading import programs
from grading.plugin import Impl
from grading.programs import DataFile, FileProgram, Ran, Report
from xray import strace

NAME = "aio-lab4.bin"
SIZE = 2 * 1024 * 1024 + 12345   # 33 requests of 64 KiB, the last one short
CHUNK = 64 * 1024


def requests(data: DataFile) -> int:
    """How many CHUNK-sized requests aio_cat makes for the file (the last one short)."""
    return -(-data.size // CHUNK)


def make_data() -> DataFile:
    """A 2 MB file of seeded random bytes (33 requests), written once."""
    return programs.make_data(NAME, SIZE, seed=4)


@dataclass
class AioReport(Report):
    """aio_cat's report, with its own look at /proc/self/task while requests were in flight."""

    snapshot: dict[int, str] = field(default_factory=dict)   # tid -> name
    main_tid: int = 0


def parse_report(text: str) -> AioReport:
    report = AioReport(text, programs.parse_report(text).lines)
    for key in ("threads in flight", "threads after the first read"):
        for m in re.finditer(r"(\d+) \(([^,)]*)(, main)?\)", report.lines.get(key, "")):
            report.snapshot[int(m.group(1))] = m.group(2)
            if m.group(3):
                report.main_tid = int(m.group(1))
        if report.snapshot:
            break
    return report


# The system calls strace records: the file's opens and reads, the waits, and the signals glibc queues.
TRACE = ("openat,open,pread64,pwrite64,read,epoll_wait,epoll_pwait,signalfd,signalfd4,rt_sigqueueinfo,"
         "rt_tgsigqueueinfo,nanosleep,clock_nanosleep")

AIO_CAT = FileProgram("aio_cat", TRACE, misplaced="aio_buf, aio_offset",
                      advice="A wait that is never woken: a sigevent that tells nobody?")


def run_cat(impl: Impl, data: DataFile, *args: str, spy: Path | None = None, timeout: float = 30) -> Ran:
    """AIO_CAT.run, with aio_spy.so preloaded if spy is a file for its counts."""
    return AIO_CAT.run(impl, data, *args, timeout=timeout, env=spy_env(impl, spy) if spy is not None else None)


def spy_counts(path: Path) -> dict[str, int]:
    """The counts aio_spy.so wrote at exit: {"aio_read": 33, "lio_listio": 0, ...}."""
    assert path.exists(), "aio_spy.so wrote nothing: did the program crash before exit?"
    for line in reversed(path.read_text().splitlines()):
        words = line.split()
        counts = {words[i]: int(words[i + 1]) for i in range(1, len(words) - 1, 2)}
        # Under strace the preload reaches strace too, which writes a line of zeros: skip it.
        if any(counts[name] for name in ("aio_read", "aio_write", "lio_listio")):
            return counts
    raise AssertionError(f"aio_spy.so saw no aio_read, aio_write or lio_listio: {path.read_text()!r}")


# --- reading an strace of a program that reads the data file -------------------------------

def spy_env(impl: Impl, spy: Path) -> dict[str, str]:
    """The environment that preloads aio_spy.so, which writes its counts to `spy` at exit."""
    return dict(os.environ, LD_PRELOAD=str(impl.bin("aio_spy.so")), AIO_SPY_OUT=str(spy))


def sleeps(tr: strace.Trace, tid: int) -> list[strace.Call]:
    """The nanosleep/clock_nanosleep calls of thread tid: usleep, sleep, Python's time.sleep.

    A thread that waits for a request to finish never needs one: it sleeps where the
    completion wakes it (aio_suspend, epoll_wait). A sleep of a fixed time is a poll.
    """
    return [c for c in tr.named("nanosleep", "clock_nanosleep") if c.tid == tid]


def timed_out_polls(tr: strace.Trace, tid: int) -> list[strace.Call]:
    """The epoll_wait calls of thread tid that were given a time limit and returned 0: woken by
    the clock, with nothing to do. An event loop whose waits all end by an event has none."""
    waits = [c for c in tr.named("epoll_wait", "epoll_pwait") if c.tid == tid]
    return [c for c in waits if c.retval == 0 and c.arg(3) not in ("0", "-1")]
