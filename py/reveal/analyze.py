"""From one row's two runs (traced and plain) to the table's numbers and its verdict.

Which calls "moved the bytes": the read family (read, pread64, readv, preadv, preadv2)
on a descriptor of the data file -- followed from the openat that returned it to the
close that released it -- and every kernel-AIO and io_uring call (io_submit,
io_getevents, io_pgetevents, io_uring_enter: only the APIs under test use them).

The stall is the longest of those calls that the loop thread made during the reads.
The loop's waits (epoll_wait and friends) are not traced, so they never count: the loop
*chose* to sleep there. The GIL is not a syscall either: a loop thread waiting for it
shows in the heartbeat, not here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xray.sampler import Seen
from xray.strace import Call, Trace

READS = {"read", "pread64", "readv", "preadv", "preadv2"}
KERNEL_IO = {"io_submit", "io_getevents", "io_pgetevents", "io_uring_enter"}
# What strace stops for: the reads, the AIO and io_uring calls, and openat/close to follow
# the data file's descriptors. Everything else runs at full speed (--seccomp-bpf).
TRACE = ",".join(["openat", "close", *sorted(READS), "io_setup", "io_destroy", "io_cancel", *sorted(KERNEL_IO),
                  "io_uring_setup", "io_uring_register"])


@dataclass
class Bar:
    """A thread inside one I/O call, in ms from the start of the reads."""

    start_ms: float
    length_ms: float
    name: str


@dataclass
class Lane:
    """One thread of one row in the timeline picture."""

    label: str    # "loop", "thread 1", "iou-sqp"
    kind: str     # "loop", "user" or "kernel"
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Row:
    """One API on one kind of file: what the table, the JSON and the picture show."""

    api: str
    file_mode: str                          # "buffered" or "O_DIRECT"
    user_threads: int | None = None         # threads created with clone/clone3 (strace)
    kernel_threads: int | None = None       # iou-wrk-* / iou-sqp-* seen in /proc/PID/task
    io_syscalls: dict[str, int] = field(default_factory=dict)   # call -> how many moved the bytes
    io_thread: str | None = None            # "loop", "other", "loop+other", "kernel" (no syscall)
    max_stall_ms: float | None = None       # longest I/O call of the loop thread during the reads
    verdict: str = "unavailable"            # threads | blocks-loop | kernel-async | unavailable
    reason: str = ""
    # Beyond the required fields:
    stall_call: str | None = None           # the call of max_stall_ms
    loop_longest_ms: dict[str, float] = field(default_factory=dict)  # per call, on the loop thread
    io_threads: int | None = None           # how many threads other than the loop's made them
    kernel_thread_names: list[str] = field(default_factory=list)
    heartbeat_late_ms: float | None = None  # worst lateness of the 1 ms heartbeat (run without strace)
    read_ms: float | None = None            # how long the reads took (run without strace)
    bytes: int | None = None
    lanes: list[Lane] = field(default_factory=list)   # for the picture only (not in the JSON)

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        del data["lanes"]
        return data


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
    """Milliseconds for people: 12.4, 0.35, 0.02."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


@dataclass
class TracedRun:
    """One run of a probe under strace, with what the /proc sampler saw meanwhile."""

    result: dict[str, Any]   # the probe's JSON line (t_start, t_end, loop_tid, ...)
    trace: Trace
    workers: list[Seen]      # the kernel's threads seen alive during the reads

    def window(self, calls: list[Call]) -> list[Call]:
        return [c for c in calls if self.result["t_start"] <= c.start <= self.result["t_end"]]

    def loop_longest(self) -> dict[str, float]:
        """Per call name, the longest one the loop thread made during the reads (ms).

        Thread creation is left out: it is traced to count the threads, and under strace
        it is slowed down by the tracer attaching itself to the new thread.
        """
        longest: dict[str, float] = {}
        for c in self.window(self.trace.on_thread(self.result["loop_tid"])):
            if c.duration is not None and c.name not in ("clone", "clone3"):
                longest[c.name] = max(longest.get(c.name, 0.0), c.duration * 1e3)
        return longest

    def io_stall(self, filename: str) -> tuple[str | None, float]:
        """The longest I/O call (one of io_calls) of the loop thread during the reads: (name, ms)."""
        loop = self.result["loop_tid"]
        mine = [c for c in self.window(io_calls(self.trace.calls, filename)) if c.tid == loop and c.duration]
        worst = max(mine, key=lambda c: c.duration or 0.0, default=None)
        return (worst.name, (worst.duration or 0.0) * 1e3) if worst else (None, 0.0)


def workers_during(seen: list[Seen], result: dict[str, Any]) -> list[Seen]:
    """The kernel threads alive while the probe read (caio's import-time io_uring probe does not count)."""
    return [w for w in seen if w.first <= result["t_end"] and w.last >= result["t_start"]]


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
    return [Seen(0, f"iou-sqp-{run.result['pid']}", c.start, run.result["t_end"]) for c in rings[len(seen):]]


def fill_from_trace(row: Row, runs: list[TracedRun], filename: str) -> None:
    """The strace half of a row: threads, the calls that moved the bytes, where, the stall.

    Everything comes from the first traced run, except the stall: it is the smallest of
    the runs' longest calls, so a stall counts only when every run has one. On a busy
    2-core machine a traced program is now and then preempted inside a short call; a
    stall the API causes -- a buffered io_submit reading 4 MiB -- is there every time.
    """
    for run in runs:
        run.workers += unseen_pollers(run)
    first = runs[0]
    start, loop = first.result["t_start"], first.result["loop_tid"]
    moved = first.window(io_calls(first.trace.calls, filename))
    row.user_threads = len(first.trace.threads_created)
    row.io_syscalls = {}
    for c in moved:
        row.io_syscalls[c.name] = row.io_syscalls.get(c.name, 0) + 1
    movers = {c.tid for c in moved}
    row.io_threads = len(movers - {loop})
    on_loop, elsewhere = loop in movers, bool(movers - {loop})
    row.io_thread = ("loop+other" if on_loop and elsewhere else "loop" if on_loop else
                     "other" if elsewhere else "kernel" if first.workers else None)
    stalls = [run.io_stall(filename) for run in runs]
    row.stall_call, stall = min(stalls, key=lambda s: s[1])   # 0.0: the loop never sat in one
    row.max_stall_ms = round(stall, 3)
    longest = [run.loop_longest() for run in runs]
    row.loop_longest_ms = {name: round(min(run.get(name, 0.0) for run in longest), 3) for name in longest[0]}
    row.lanes = _lanes(moved, loop, start, first.result["t_end"], first.workers)


def _lanes(moved: list[Call], loop: int, start: float, end: float, workers: list[Seen]) -> list[Lane]:
    """The loop thread, each other thread that moved bytes (in order of its first call), the kernel's."""
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
            alive = Bar((first - start) * 1e3, (last - first) * 1e3, "alive")
            result.append(Lane(w.name.rsplit("-", 1)[0], "kernel", [alive]))   # "iou-sqp-4242" -> "iou-sqp"
    return result


def decide(row: Row, threshold_ms: float) -> None:
    """The verdict and its reason, by the rules of reveal/__init__.py (the first that applies)."""
    calls = ", ".join(f"{k} {n}" for n, k in sorted(row.io_syscalls.items(), key=lambda kv: -kv[1])) or "no I/O call"
    names = sorted(set(row.kernel_thread_names))
    workers = (f"; {row.kernel_threads} hidden kernel thread(s) worked for it ({', '.join(names)}): /proc/PID/task "
               "shows them, yet no clone made them and strace follows none") if row.kernel_threads else ""
    spare = f"; {row.user_threads} thread(s) created, but no read ran on them" if row.user_threads else ""
    stall = f"{ms(row.max_stall_ms)} ms in {row.stall_call}" if row.stall_call and row.max_stall_ms else "0 ms"
    if row.io_thread in ("other", "loop+other"):
        row.verdict = "threads"
        also = " (and on the loop thread)" if row.io_thread == "loop+other" else ""
        row.reason = (f"{calls} ran on {row.io_threads} thread(s) other than the loop's{also}; "
                      f"{row.user_threads} thread(s) created{workers}")
    elif row.max_stall_ms is not None and row.max_stall_ms >= threshold_ms:
        row.verdict = "blocks-loop"
        why = (" (a buffered io_submit reads the data before it returns)"
               if row.stall_call == "io_submit" and row.file_mode == "buffered" else
               " (an O_DIRECT io_submit pins every page of the buffers and builds the device's requests before "
               "it returns: the bigger the requests it is given, the longer)" if row.stall_call == "io_submit" else
               " (a read on the loop thread waits for the disk)" if row.stall_call in READS else
               " (io_uring_enter starts a cold buffered read itself: it allocates the page-cache pages and sends "
               "the readahead before it returns)" if row.stall_call == "io_uring_enter" and row.file_mode == "buffered"
               else "")
        row.reason = f"the loop thread sat {stall}{why}{spare}{workers}"
    elif row.io_thread == "kernel":
        row.verdict = "kernel-async"
        row.reason = f"no I/O call at all: the kernel's own thread took the requests from the ring{workers}{spare}"
    elif KERNEL_IO & row.io_syscalls.keys():
        row.verdict = "kernel-async"
        row.reason = (f"{calls} on the loop thread, each under {threshold_ms:g} ms (the longest: {stall})"
                      f"{workers}{spare}")
    elif row.io_syscalls:
        row.verdict = "blocks-loop"
        row.reason = f"{calls} ran on the loop thread itself (longest {stall}): each one waits for the disk"
    else:
        row.verdict = "unavailable"
        row.reason = "no call that reads the file was seen"
