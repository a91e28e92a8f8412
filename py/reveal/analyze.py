"""From one row's runs to the table's numbers and its verdict.

A row is one API reading one kind of file (buffered or O_DIRECT) with one size of read.
Three runs of its probe measure it, each with the tool that is exact at one thing:

- plain, no tracer at all: the heartbeat's lateness and how long the reads took;
- `strace -f`: which thread made which call, and which threads the process created.
  Its durations are not used when perf can run: strace stops the thread at each call,
  and on a 2-core machine the time it takes to resume it -- often a millisecond -- is in
  every `-T` it prints;
- `perf record` (reveal.costs), the reads done PASSES times from a cold cache: how long
  the loop thread spent in each I/O call, and whether it slept in D state there, waiting
  for the device. perf stops no thread.

Which calls "moved the bytes" (strace): the read family (read, pread64, readv, preadv,
preadv2) on a descriptor of the data file -- followed from the openat that returned it to
the close that released it -- and every kernel-AIO and io_uring call (io_submit,
io_getevents, io_pgetevents, io_uring_enter: only the APIs under test use them).

The loop's own waits (epoll_wait and friends) are never counted: the loop *chose* to sleep
there. The GIL is not a syscall either: a loop thread waiting for it shows in the
heartbeat, not here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reveal.costs import KERNEL_IO, READS, PerfRun, majority
from xray.sampler import Seen, is_kernel_worker
from xray.strace import Call, Trace
from xray.timeline import Timeline

# What strace stops for: the reads, the AIO and io_uring calls, and openat/close to follow
# the data file's descriptors. Everything else runs at full speed (--seccomp-bpf).
TRACE = ",".join(["openat", "close", *sorted(READS), "io_setup", "io_destroy", "io_cancel", *sorted(KERNEL_IO),
                  "io_uring_setup", "io_uring_register"])
STRACE_STALL_MS = 1.0   # without perf only: a loop-thread call this long under strace counts as a stall


@dataclass
class Bar:
    """A thread inside one I/O call (or asleep, or on a CPU), in ms from the start of the reads."""

    start_ms: float
    length_ms: float
    name: str     # the call, "device wait", or "on CPU"


@dataclass
class Lane:
    """One thread of one row in the timeline picture."""

    label: str    # "loop", "thread 1", "iou-sqp"
    kind: str     # "loop", "user" or "kernel"
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Row:
    """One API, one kind of file, one size of read: what the table, the JSON and the picture show."""

    api: str
    file_mode: str                          # "buffered" or "O_DIRECT"
    read_size: int = 0                      # bytes per read
    reads: int = 0                          # reads per pass
    user_threads: int | None = None         # threads created with clone/clone3 (strace)
    kernel_threads: int | None = None       # iou-wrk-* / iou-sqp-* that ran for it (perf, or /proc)
    io_syscalls: dict[str, int] = field(default_factory=dict)   # call -> how many moved the bytes (strace)
    io_thread: str | None = None            # "loop", "other", "loop+other", "kernel" (no syscall)
    # The loop thread during the reads (perf; the pass in the middle of `passes`, by device wait):
    device_wait_ms: float | None = None     # asleep in D state inside I/O calls, in all
    device_wait_longest_ms: float | None = None
    device_wait_call: str | None = None
    waited_passes: int | None = None        # how many of the passes waited for the device at all
    passes: int = 0                         # passes measured under perf (0: perf could not run)
    submit_ms: float | None = None          # the rest of its time inside I/O calls: what submitting cost
    submit_longest_ms: float | None = None  # the one call that cost the most
    submit_call: str | None = None
    verdict: str = "unavailable"            # threads | blocks-loop | kernel-async | unavailable
    reason: str = ""
    # Beyond the required fields:
    timed_by: str | None = None             # "perf", or "strace" when perf cannot run (degraded)
    strace_longest_ms: float | None = None  # without perf: the longest I/O call of the loop under strace
    strace_longest_call: str | None = None
    io_threads: int | None = None           # how many threads other than the loop's made the calls
    kernel_thread_names: list[str] = field(default_factory=list)
    heartbeat_late_ms: float | None = None  # worst lateness of the 1 ms heartbeat (run without a tracer)
    read_ms: float | None = None            # how long the reads took (run without a tracer)
    bytes: int | None = None
    lanes: list[Lane] = field(default_factory=list)   # for the picture only (not in the JSON)

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        del data["lanes"]
        return data

    @property
    def size_label(self) -> str:
        return size_label(self.read_size)


def size_label(size: int) -> str:
    """16384 -> '16 KiB', 4194304 -> '4 MiB'."""
    return f"{size >> 20} MiB" if size >= 1 << 20 and size % (1 << 20) == 0 else f"{size >> 10} KiB"


def io_calls(calls: list[Call], filename: str) -> list[Call]:
    """The calls that moved the data file's bytes, in time order (see the module docstring)."""
    open_fds: set[int] = set()
    moved: list[Call] = []
    for c in calls:
        if c.name == "openat" and f'"{filename}"' in c.args and c.retval is not None and c.retval >= 0:
            open_fds.add(c.retval)
        elif c.name == "close" and c.retval == 0:
            open_fds.discard(c.fd or -1)   # the number may now name another file
        elif c.name in READS and c.fd in open_fds:
            moved.append(c)
        elif c.name in KERNEL_IO:
            moved.append(c)
    return moved


def ms(value: float) -> str:
    """Milliseconds for people: 12.4, 0.35, 0.02, <0.01 (not 0.00: it was not nothing)."""
    if value == 0:
        return "0"
    if value < 0.005:
        return "<0.01"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


@dataclass
class TracedRun:
    """One run of a probe under strace (one pass), with what the /proc sampler saw meanwhile."""

    result: dict[str, Any]   # the probe's JSON line (loop_tid, passes[0]: t_start, t_end, ...)
    trace: Trace
    workers: list[Seen]      # the kernel's threads seen alive during the reads

    @property
    def start(self) -> float:
        return float(self.result["passes"][0]["t_start"])

    @property
    def end(self) -> float:
        return float(self.result["passes"][0]["t_end"])

    def window(self, calls: list[Call]) -> list[Call]:
        return [c for c in calls if self.start <= c.start <= self.end]

    def io_stall(self, filename: str) -> tuple[str | None, float]:
        """The longest I/O call (one of io_calls) of the loop thread during the reads: (name, ms).
        Only for a machine without perf: strace's own delay is part of it."""
        loop = self.result["loop_tid"]
        mine = [c for c in self.window(io_calls(self.trace.calls, filename)) if c.tid == loop and c.duration]
        worst = max(mine, key=lambda c: c.duration or 0.0, default=None)
        return (worst.name, (worst.duration or 0.0) * 1e3) if worst else (None, 0.0)


def workers_during(seen: list[Seen], start: float, end: float) -> list[Seen]:
    """The kernel threads alive while the probe read (caio's import-time io_uring probe does not count)."""
    return [w for w in seen if w.first <= end and w.last >= start]


def unseen_pollers(run: TracedRun) -> list[Seen]:
    """SQPOLL threads that strace proves but no /proc sample caught.

    A ring made with IORING_SETUP_SQPOLL (a successful io_uring_setup during the reads) has
    a poller, iou-sqp-PID, for as long as it lives. On a busy machine the sampler can be
    starved for the whole of a 100 ms run and miss it; the setup call cannot be missed.
    One iou-sqp-PID per such ring beyond those the sampler saw (tid 0: unknown).
    """
    rings = [c for c in run.window(run.trace.named("io_uring_setup"))
             if "IORING_SETUP_SQPOLL" in c.args and c.retval is not None and c.retval >= 0]
    seen = [w for w in run.workers if w.name.startswith("iou-sqp-")]
    return [Seen(0, f"iou-sqp-{run.result['pid']}", c.start, run.end) for c in rings[len(seen):]]


def fill_from_trace(row: Row, run: TracedRun, filename: str) -> None:
    """The strace half of a row: threads created, the calls that moved the bytes and where.
    Its durations are kept aside (strace_longest_ms), for a machine where perf cannot run."""
    run.workers += unseen_pollers(run)
    loop = run.result["loop_tid"]
    moved = run.window(io_calls(run.trace.calls, filename))
    row.user_threads = len(run.trace.threads_created)
    row.io_syscalls = {}
    for c in moved:
        row.io_syscalls[c.name] = row.io_syscalls.get(c.name, 0) + 1
    movers = {c.tid for c in moved}
    row.io_threads = len(movers - {loop})
    on_loop, elsewhere = loop in movers, bool(movers - {loop})
    row.io_thread = ("loop+other" if on_loop and elsewhere else "loop" if on_loop else
                     "other" if elsewhere else "kernel" if run.workers else None)
    row.strace_longest_call, longest = run.io_stall(filename)
    row.strace_longest_ms = round(longest, 3)
    row.lanes = _strace_lanes(moved, loop, run.start, run.end, run.workers)


def fill_from_perf(row: Row, run: PerfRun) -> None:
    """The perf half: the loop thread's device waits and submit cost, the kernel's threads, the picture.
    The figures are those of the middle pass (PerfRun.median); waited_passes counts them all."""
    row.timed_by = "perf"
    row.passes = len(run.costs)
    if not run.costs:
        return
    row.waited_passes = sum(c.waited for c in run.costs)
    middle = run.median()
    cost = run.costs[middle]
    row.device_wait_ms = round(cost.device_wait_ms, 3)
    row.device_wait_longest_ms = round(cost.longest_wait_ms, 3)
    row.device_wait_call = cost.wait_call
    row.submit_ms = round(cost.submit_ms, 3)
    row.submit_longest_ms = round(cost.longest_submit_ms, 3)
    row.submit_call = cost.submit_call
    window = run.result["passes"][middle]
    start, end = window["m_start"], window["m_end"]
    workers = {tid: name for tid, name in run.timeline.workers().items()
               if any(s.tid == tid and s.end >= start and s.start <= end for s in run.timeline.on_cpu)}
    if row.kernel_threads is None or len(workers) >= row.kernel_threads:
        row.kernel_threads = len(workers)   # exact: every time one ran, the scheduler said so
        row.kernel_thread_names = sorted(workers.values())
    row.lanes = _perf_lanes(run.timeline, run.result["loop_tid"], start, end)


def _strace_lanes(moved: list[Call], loop: int, start: float, end: float, workers: list[Seen]) -> list[Lane]:
    """Without perf: the loop thread, each other thread that moved bytes (in order of its first call), the kernel's."""
    lanes = {loop: Lane("loop", "loop")}
    for c in moved:
        if c.tid not in lanes:
            lanes[c.tid] = Lane(f"thread {len(lanes)}", "user")
        lanes[c.tid].bars.append(Bar((c.start - start) * 1e3, (c.duration or 0.0) * 1e3, c.name))
    result = list(lanes.values())
    for w in workers:
        # No syscall shows a kernel worker's work: draw the time it was seen alive.
        first, last = max(w.first, start), min(w.last, end)
        if last >= first:
            alive = Bar((first - start) * 1e3, (last - first) * 1e3, "on CPU")
            result.append(Lane(w.name.rsplit("-", 1)[0], "kernel", [alive]))   # "iou-sqp-4242" -> "iou-sqp"
    return result


def _perf_lanes(timeline: Timeline, loop: int, start: float, end: float) -> list[Lane]:
    """The loop thread, each other thread that made an I/O call, the kernel's threads: their calls, their
    waits for the device, and (for the kernel's, which make no syscall) their time on a CPU."""
    def bar(s: Any, name: str) -> Bar:
        first, last = max(s.start, start), min(s.end, end)
        return Bar((first - start) * 1e3, max(0.0, last - first) * 1e3, name)

    lanes = {loop: Lane("loop", "loop")}
    calls = sorted((c for c in timeline.calls if start <= c.end and c.start <= end), key=lambda c: c.start)
    for c in calls:
        if c.tid not in lanes:
            if is_kernel_worker(timeline.names.get(c.tid, "")):
                continue
            lanes[c.tid] = Lane(f"thread {len(lanes)}", "user")
        lanes[c.tid].bars.append(bar(c, c.what))
    for s in timeline.sleeps:
        if s.what == "D" and s.tid in lanes and start <= s.end and s.start <= end and s.during:
            lanes[s.tid].bars.append(bar(s, "device wait"))
    result = list(lanes.values())
    for tid, name in sorted(timeline.workers().items()):
        runs = [bar(s, "on CPU") for s in timeline.on_cpu if s.tid == tid and start <= s.end and s.start <= end]
        if runs:
            result.append(Lane(name.rsplit("-", 1)[0], "kernel", runs))   # "iou-sqp-4242" -> "iou-sqp"
    return result


def decide(row: Row) -> None:
    """The verdict and its reason, by the rules of report.LEGEND (the first that applies)."""
    calls = ", ".join(f"{k} {n}" for n, k in sorted(row.io_syscalls.items(), key=lambda kv: -kv[1])) or "no I/O call"
    names = sorted(set(row.kernel_thread_names))
    workers = (f"; {row.kernel_threads} hidden kernel thread(s) worked for it ({', '.join(names)}): no clone "
               "made them and strace follows none") if row.kernel_threads else ""
    spare = f"; {row.user_threads} thread(s) created, but no read ran on them" if row.user_threads else ""
    cost = (f"; its I/O calls kept the loop busy {ms(row.submit_ms)} ms without waiting (CPU work, preemption), "
            f"{ms(row.submit_longest_ms or 0)} ms at most in one {row.submit_call}"
            if row.submit_ms and row.submit_call else "")
    waited = row.waited_passes is not None and majority(row.waited_passes, row.passes)
    stalled = row.timed_by != "perf" and (row.strace_longest_ms or 0.0) >= STRACE_STALL_MS
    if row.io_thread in ("other", "loop+other"):
        row.verdict = "threads"
        also = " (and on the loop thread)" if row.io_thread == "loop+other" else ""
        row.reason = (f"{calls} ran on {row.io_threads} thread(s) other than the loop's{also}; "
                      f"{row.user_threads} thread(s) created{workers}")
    elif waited:
        row.verdict = "blocks-loop"
        why = (" (a buffered io_submit reads the data before it returns)"
               if row.device_wait_call == "io_submit" and row.file_mode == "buffered" else
               " (a read on the loop thread waits for the disk)" if row.device_wait_call in READS else "")
        row.reason = (f"the loop thread waited for the device {ms(row.device_wait_ms or 0)} ms in all, "
                      f"{ms(row.device_wait_longest_ms or 0)} ms at most, in {row.device_wait_call}{why}, "
                      f"in {row.waited_passes} of {row.passes} passes{cost}{spare}{workers}")
    elif stalled:   # no perf: strace's durations, its own delay included
        row.verdict = "blocks-loop"
        row.reason = (f"the loop thread sat {ms(row.strace_longest_ms or 0)} ms in {row.strace_longest_call} under "
                      f"strace (its delay included: perf could not tell a wait for the device from it){spare}"
                      f"{workers}")
    elif row.io_thread == "kernel":
        row.verdict = "kernel-async"
        row.reason = f"no I/O call at all: the kernel's own thread took the requests from the ring{workers}{cost}{spare}"
    elif KERNEL_IO & row.io_syscalls.keys():
        row.verdict = "kernel-async"
        none = (f"never waited for the device (in {row.passes} passes)" if row.timed_by == "perf" else
                f"made no call of {STRACE_STALL_MS:g} ms or more under strace")
        row.reason = f"{calls} on the loop thread, which {none}{cost}{workers}{spare}"
    elif row.io_syscalls:
        row.verdict = "blocks-loop"
        row.reason = f"{calls} ran on the loop thread itself: each waits for the disk when its pages are not cached"
    else:
        row.verdict = "unavailable"
        row.reason = "no call that reads the file was seen"
