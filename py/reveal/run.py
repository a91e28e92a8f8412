"""Run every probe three ways -- plain, under strace -f, under perf -- and fill the rows.

Per row (one API, one kind of file, one size of read):

1. a plain run (`python -m reveal.probe`, no tracer), while /proc/PID/task is sampled:
   the heartbeat's worst lateness, the reads' duration, the kernel's threads; and the
   answer "cannot run here" when that is the answer (the other runs are then skipped);
2. a run under `strace -f -ttt -T`, sampled too: the threads created, the calls that moved
   the bytes and on which thread (analyze.fill_from_trace);
3. a run under `perf record`, the reads done `passes` times: the loop thread's waits for
   the device and what submitting cost it (analyze.fill_from_perf, reveal.costs).

Every pass starts from a cold page cache: the probe drops the file's pages first. The
probes run in the data directory and name the file without a directory, so strace's
openat shows the whole name (it cuts long strings) and the descriptor can be followed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measuring import child_env, data_file, make_data_file
from paths import DATA_DIR
from reveal.analyze import TRACE, Row, TracedRun, decide, fill_from_perf, fill_from_trace, size_label, workers_during
from reveal.costs import IO_CALLS, PerfRun
from reveal.probe import HELLO
from reveal.probes import PROBES
from xray import Unavailable, proc, strace, timeline
from xray.doctor import check_o_direct
from xray.sampler import ThreadSampler

MODES = ("buffered", "O_DIRECT")


@dataclass(frozen=True)
class Workload:
    """One size of read: `reads` distinct blocks of `read_size` bytes, in a shuffled order."""

    read_size: int
    reads: int

    @property
    def label(self) -> str:
        return f"{self.reads} x {size_label(self.read_size)}"


# Small reads are what applications do (4-64 KiB); large ones make each cost big enough to see.
SMALL = Workload(16 << 10, 256)
LARGE = Workload(4 << 20, 16)


@dataclass(frozen=True)
class Config:
    """What every probe reads, and how. The defaults take about a minute on a 2-core VM."""

    file_size: int = 64 << 20     # the data file, made once in the labs' data directory
    workloads: tuple[Workload, ...] = (SMALL, LARGE)
    concurrency: int = 4          # reads in flight at once
    passes: int = 3               # passes under perf: a verdict needs more than half of them
    apis: tuple[str, ...] = ()    # only these APIs (all when empty)

    @property
    def data_file(self) -> Path:
        """In the labs' data directory: build/data, or $LAB_DATA_DIR (never tmpfs: O_DIRECT)."""
        return data_file(self.file_size)


@dataclass(frozen=True)
class Tools:
    """Why each measuring tool cannot run here (None: it can)."""

    strace: str | None
    perf: str | None
    direct: str | None   # O_DIRECT in the data directory

    @classmethod
    def check(cls) -> Tools:
        def problem(check: Callable[[], object]) -> str | None:
            try:
                check()
            except Unavailable as err:
                return str(err)
            return None
        return cls(problem(strace.check), problem(timeline.check), o_direct_problem())


def probe_argv(api: str, mode: str, workload: Workload, config: Config, passes: int = 1) -> list[str]:
    return [sys.executable, "-m", "reveal.probe", api, mode, config.data_file.name,
            "--block-size", str(workload.read_size), "--blocks", str(workload.reads),
            "--concurrency", str(config.concurrency), "--passes", str(passes)]


def parse_result(stdout: str, stderr: str, what: str) -> dict[str, Any]:
    """The probe's JSON line (its last line of output)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{what}: the probe printed no result ({' | '.join(tail) or 'no output'})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def hello(line: str, what: str) -> int:
    """The pid in the probe's first line (see reveal.probe)."""
    if not line.startswith(HELLO):
        raise RuntimeError(f"{what}: the probe did not start ({line or 'no output'!r})")
    return int(line.split()[-1])


def plain_run(argv: list[str], what: str) -> tuple[dict[str, Any], ThreadSampler]:
    """The probe without a tracer, its threads sampled from /proc while it runs."""
    with proc.launch(argv, cwd=DATA_DIR, env=child_env(), stderr=subprocess.PIPE) as p:
        try:
            first = p.readline(timeout=60)
        except TimeoutError:
            first = ""
        if not first.startswith(HELLO):   # it died at start: its stderr says why
            _, err = p.communicate(timeout=10)
            raise RuntimeError(f"{what}: the probe did not start: {err.decode(errors='replace').strip()[-300:]}")
        with ThreadSampler(hello(first, what)) as sampler:
            try:
                out, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{what}: the probe did not finish in 120 s") from None
    stdout = p.lines.rest() + out.decode(errors="replace")
    return parse_result(stdout, err.decode(errors="replace"), what), sampler


def measured(result: dict[str, Any], what: str) -> dict[str, Any]:
    """result, once it is sure the traced probe read (else RuntimeError: a row cannot be judged on it)."""
    if not result["passes"] or result["passes"][0]["t_start"] is None:
        raise RuntimeError(f"{what}: the probe did not read: {result['error'] or result['unavailable']}")
    if result["error"]:
        raise RuntimeError(f"{what}: the probe failed: {result['error']}")
    return result


def traced_run(argv: list[str], what: str) -> TracedRun:
    """The probe under strace -f, sampled from /proc too (strace cannot see the kernel's threads)."""
    with strace.launch(argv, trace=TRACE, cwd=DATA_DIR, env=child_env(), stdin=subprocess.DEVNULL) as run:
        try:
            pid = hello(run.readline(timeout=60), what)
        except (TimeoutError, RuntimeError):
            trace = run.finish(timeout=10)
            raise RuntimeError(f"{what}: the probe did not start: {trace.stderr.strip()[-300:]}") from None
        with ThreadSampler(pid) as sampler:
            trace = run.finish(timeout=180)
    result = measured(parse_result(trace.stdout, trace.stderr, what), what)
    first = result["passes"][0]
    return TracedRun(result, trace, workers_during(sampler.kernel_workers(), first["t_start"], first["t_end"]))


def perf_run(argv: list[str], what: str) -> PerfRun:
    """The probe under perf record, its passes each timed from the loop thread's point of view."""
    recording = timeline.record(argv, IO_CALLS, cwd=DATA_DIR, env=child_env(), stdin=subprocess.DEVNULL)
    result = measured(parse_result(recording.stdout, recording.stderr, what), what)
    return PerfRun.of(result, recording.timeline)


def o_direct_problem() -> str | None:
    """Why O_DIRECT cannot be used in the data directory (make doctor's own test), or None."""
    ok, seen, todo = check_o_direct()
    return None if ok else f"{seen}; {todo}"


def measure(api: str, mode: str, workload: Workload, config: Config, tools: Tools) -> Row:
    """One row, measured."""
    row = Row(api, mode, workload.read_size, workload.reads)
    if mode == "O_DIRECT" and tools.direct:
        row.reason = tools.direct
        return row
    what = f"{api} {mode} {workload.label}"
    result, sampler = plain_run(probe_argv(api, mode, workload, config), what)
    first = result["passes"][0] if result["passes"] else None
    if first and first["t_end"] is not None:
        workers = workers_during(sampler.kernel_workers(), first["t_start"], first["t_end"])
        row.kernel_threads, row.kernel_thread_names = len(workers), [w.name for w in workers]
        row.heartbeat_late_ms = round(first["heartbeat_max_late_ms"], 3)
    if first and first["bytes"] is not None and not result["error"]:
        row.read_ms = round((first["t_end"] - first["t_start"]) * 1e3, 3)
        row.bytes = first["bytes"]
    if result["error"]:
        row.reason = f"the probe failed: {result['error']}"
        return row
    if not first:
        row.reason = result["unavailable"]   # it never started reading: nothing to trace
        return row
    if tools.strace:
        row.user_threads = len(sampler.user_threads())
        row.reason = (result["unavailable"] or "no strace here, so no syscalls and no verdict: only the "
                      "heartbeat and the threads seen in /proc were measured")
        return row
    traced = traced_run(probe_argv(api, mode, workload, config), f"{what} (strace)")
    if len(traced.workers) > (row.kernel_threads or 0):
        # Under strace the reads take longer: a short-lived kernel worker is easier to catch there.
        row.kernel_threads, row.kernel_thread_names = len(traced.workers), [w.name for w in traced.workers]
    fill_from_trace(row, traced, config.data_file.name)
    if tools.perf:
        row.timed_by = "strace"
    else:   # an EINVAL row too: its calls are shown, timed the same way as the others'
        fill_from_perf(row, perf_run(probe_argv(api, mode, workload, config, config.passes), f"{what} (perf)"))
    if result["unavailable"]:
        # It tried and the kernel said no (O_DIRECT with an unaligned buffer): the calls it made
        # are measured and shown, but there is no verdict on reads that did not happen.
        row.reason = result["unavailable"]
        return row
    decide(row)
    return row


def run_all(config: Config, progress: Callable[[str], None] = print) -> tuple[list[Row], Tools]:
    """Every row, in the table's order (workload, API, file); progress gets one line per finished row."""
    make_data_file(config.file_size)
    tools = Tools.check()
    if tools.strace:
        progress(f"strace cannot run here, so the table has no syscalls and no verdicts: {tools.strace}")
    if tools.perf:
        progress(f"perf cannot run here, so no device wait is measured and strace times the calls: {tools.perf}")
    if tools.direct:
        progress(f"O_DIRECT is not available here, so its rows are skipped: {tools.direct}")
    apis = [a for a in PROBES if not config.apis or a in config.apis]
    rows: list[Row] = []
    total = len(apis) * len(MODES) * len(config.workloads)
    width = max(len(api) for api in apis)
    for workload in config.workloads:
        for api in apis:
            for mode in MODES:
                began = time.monotonic()
                try:
                    row = measure(api, mode, workload, config, tools)
                except (RuntimeError, OSError, Unavailable) as err:   # one broken row must not stop the others
                    row = Row(api, mode, workload.read_size, workload.reads, reason=f"the measurement failed: {err}")
                rows.append(row)
                progress(f"[{len(rows):2}/{total}] {workload.label:>12}  {api:<{width}}  {mode:<8}  "
                         f"{row.verdict:<12} ({time.monotonic() - began:.1f} s)")
    return rows, tools
