"""Run a program under perf and read what the scheduler and the syscall layer saw.

perf complements strace: it does not stop the program at each syscall, so the timings
are the program's own, and it sees kernel threads (io_uring's iou-wrk-*) that strace
cannot follow.

    summary = perf.syscall_summary([sys.executable, "read_with_threads.py"])
    summary[tid].calls["pread64"]               # how many preads that thread made
    sched = perf.sched_timehist([sys.executable, "read_with_threads.py"])
    sched.run_ms_by_thread()                    # {(name, tid): ms on a CPU}

Only software events and tracepoints are used, which work on virtual machines without
hardware counters. When perf is missing or not permitted, every call raises
xray.Unavailable with the reason (see `make doctor`).
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xray import Unavailable, causes


@functools.cache
def check() -> None:
    """Raise Unavailable unless perf can trace a program here (sched tracepoints included)."""
    if shutil.which("perf") is None:
        raise Unavailable(causes.not_found("perf", "linux-perf on Debian, linux-tools-$(uname -r) on Ubuntu"))
    version = subprocess.run(["perf", "--version"], capture_output=True, text=True)
    if version.returncode:   # Ubuntu's wrapper, when the tools of the running kernel are missing
        raise Unavailable(f"perf does not run: {(version.stderr.strip().splitlines() or ['?'])[0]}")
    probe = subprocess.run(["perf", "trace", "-s", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        raise Unavailable(f"perf cannot trace here: {causes.perf_denied(last)}")


# ---- perf trace -s: per-thread syscall counts and times ------------------------------------------

@dataclass
class SyscallStats:
    calls: int
    errors: int
    total_ms: float
    max_ms: float


@dataclass
class ThreadSummary:
    name: str
    tid: int
    calls: dict[str, int] = field(default_factory=dict)  # syscall -> number of calls
    stats: dict[str, SyscallStats] = field(default_factory=dict)


_THREAD_HEADER = re.compile(r"^\s*(?P<name>.+?) \((?P<tid>\d+)\), \d+ events")
_SYSCALL_ROW = re.compile(r"^\s*(?P<name>\w+)\s+(?P<calls>\d+)\s+(?P<errors>\d+)\s+(?P<total>[\d.]+)\s+"
                          r"[\d.]+\s+[\d.]+\s+(?P<max>[\d.]+)")


def parse_summary(text: str) -> dict[int, ThreadSummary]:
    """Parse the per-thread tables `perf trace -s` prints."""
    threads: dict[int, ThreadSummary] = {}
    current: ThreadSummary | None = None
    for line in text.splitlines():
        header = _THREAD_HEADER.match(line)
        if header:
            current = threads.setdefault(int(header["tid"]), ThreadSummary(header["name"], int(header["tid"])))
            continue
        row = _SYSCALL_ROW.match(line)
        if row and current is not None:
            stats = SyscallStats(int(row["calls"]), int(row["errors"]), float(row["total"]), float(row["max"]))
            current.stats[row["name"]] = stats
            current.calls[row["name"]] = stats.calls
    return threads


def syscall_summary(argv: Sequence[str], timeout: float = 60, **popen: Any) -> dict[int, ThreadSummary]:
    """Run argv under `perf trace -s`; return each thread's syscall table, by tid."""
    check()
    # perf trace writes its summary to stderr; -o sends it to a file instead, so the
    # program's own stderr stays its own.
    with tempfile.TemporaryDirectory(prefix="xray-perf-") as folder:
        out = Path(folder) / "summary.txt"
        subprocess.run(["perf", "trace", "-s", "-o", str(out), "--", *argv], timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
        return parse_summary(out.read_text())


# ---- perf sched timehist: when each thread ran ----------------------------------------------------

@dataclass
class Slice:
    """One stretch of a thread on a CPU, ending at `end` (seconds, perf's clock)."""

    end: float
    cpu: int
    name: str
    tid: int
    wait_ms: float   # how long it had been sleeping before this run
    delay_ms: float  # how long it waited for a CPU once woken
    run_ms: float    # how long it ran

    @property
    def start(self) -> float:
        return self.end - self.run_ms / 1000


@dataclass
class SchedTrace:
    slices: list[Slice]

    def threads(self) -> dict[int, str]:
        return {s.tid: s.name for s in self.slices}

    def run_ms_by_thread(self) -> dict[tuple[str, int], float]:
        totals: dict[tuple[str, int], float] = {}
        for s in self.slices:
            totals[(s.name, s.tid)] = totals.get((s.name, s.tid), 0.0) + s.run_ms
        return totals


_TIMEHIST_ROW = re.compile(r"^\s*(?P<time>\d+\.\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<name>.+?)\[(?P<tid>\d+)(?:/\d+)?\]\s+"
                           r"(?P<wait>[\d.]+)\s+(?P<delay>[\d.]+)\s+(?P<run>[\d.]+)")


def parse_timehist(text: str) -> SchedTrace:
    slices = []
    for line in text.splitlines():
        m = _TIMEHIST_ROW.match(line)
        if m:  # the <idle> task has no [tid] and is skipped by the pattern
            slices.append(Slice(float(m["time"]), int(m["cpu"]), m["name"], int(m["tid"]),
                                float(m["wait"]), float(m["delay"]), float(m["run"])))
    return SchedTrace(slices)


def sched_timehist(argv: Sequence[str], timeout: float = 60, **popen: Any) -> SchedTrace:
    """Run argv under `perf sched record`; return the slices of the program's threads.

    perf records the whole machine. A one-line shell wrapper writes its pid and then
    execs argv (exec keeps the pid), and timehist is asked for that process only: its
    threads included, and io_uring's iou-wrk-* workers, which belong to it.
    """
    check()
    with tempfile.TemporaryDirectory(prefix="xray-perf-") as folder:
        data, pidfile = Path(folder) / "sched.data", Path(folder) / "pid"
        wrapper = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pidfile), *argv]
        proc = subprocess.run(["perf", "sched", "record", "-o", str(data), "--", *wrapper], timeout=timeout,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
        if not data.exists() or not pidfile.exists():
            raise Unavailable(f"perf sched record did not run the program: {proc.stderr.strip()[-300:]}")
        return _timehist(data, "--pid", pidfile.read_text().strip())


def _timehist(data: Path, *options: str) -> SchedTrace:
    report = subprocess.run(["perf", "sched", "timehist", "-i", str(data), *options], capture_output=True, text=True)
    return parse_timehist(report.stdout)
