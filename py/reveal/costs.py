"""What the reads cost the event loop's thread, from the kernel's own timeline (xray.timeline).

Per pass of a probe (one cold read of every block), from the loop thread's traced I/O
calls (the read family, io_submit, io_getevents, io_pgetevents, io_uring_enter) and its
sleeps, during the reads:

- device wait: the time it slept in D state inside one of those calls. An uninterruptible
  sleep inside a read is a wait for the disk: a page being read in, a free request slot
  of the device's queue. While it lasts, no other coroutine runs.
- submit cost: the rest of its time inside those calls -- CPU work (copying 4 MiB out of
  the page cache, pinning the pages of an O_DIRECT buffer, building the device's
  requests) and preemption on a busy machine. The loop did nothing else meanwhile, so it
  is shown, but it is not a wait for the device.

The calls are not followed to the data file's descriptor (perf shows numbers, not names),
so the loop's reads of its own self-pipe or eventfd count too: a few microseconds each,
and never a wait for a device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xray.timeline import Span, Timeline

READS = {"read", "pread64", "readv", "preadv", "preadv2"}
KERNEL_IO = {"io_submit", "io_getevents", "io_pgetevents", "io_uring_enter"}
IO_CALLS = sorted(READS | KERNEL_IO)   # what perf records (xray.timeline.record's syscalls)


@dataclass
class PassCost:
    """One pass, seen from the loop thread (ms)."""

    device_wait_ms: float = 0.0          # D-state sleeps inside I/O calls, in all
    longest_wait_ms: float = 0.0         # the longest of them
    wait_call: str | None = None         # the call it happened in
    submit_ms: float = 0.0               # time inside I/O calls, device waits excluded, in all
    longest_submit_ms: float = 0.0       # the call that cost the most that way
    submit_call: str | None = None
    calls: int = 0                       # the loop thread's I/O calls during the reads
    preempted_ms: float = 0.0            # of submit_ms: runnable but off the CPU (a busy machine)

    @property
    def waited(self) -> bool:
        return self.device_wait_ms > 0


def _overlap(span: Span, start: float, end: float) -> float:
    return max(0.0, min(span.end, end) - max(span.start, start))


def pass_cost(timeline: Timeline, loop: int, start: float, end: float) -> PassCost:
    """The loop thread's device waits and submit cost between start and end (monotonic seconds)."""
    cost = PassCost()
    sleeps = timeline.sleeps_of(loop, start=start - 1.0, end=end)   # a sleep may begin before a call ends
    for call in timeline.calls_of(loop, start, end):
        if call.what not in READS | KERNEL_IO:
            continue
        cost.calls += 1
        waited = sum(_overlap(s, call.start, call.end) for s in sleeps if s.what == "D") * 1e3
        preempted = sum(_overlap(s, call.start, call.end) for s in sleeps if s.what == "R") * 1e3
        spent = call.ms - waited
        cost.device_wait_ms += waited
        cost.submit_ms += spent
        cost.preempted_ms += preempted
        longest = max((_overlap(s, call.start, call.end) * 1e3 for s in sleeps if s.what == "D"), default=0.0)
        if longest > cost.longest_wait_ms:
            cost.longest_wait_ms, cost.wait_call = longest, call.what
        if spent > cost.longest_submit_ms:
            cost.longest_submit_ms, cost.submit_call = spent, call.what
    return cost


@dataclass
class PerfRun:
    """One run of a probe under perf record: its passes, and what each cost the loop thread."""

    result: dict[str, Any]
    timeline: Timeline
    costs: list[PassCost] = field(default_factory=list)

    @classmethod
    def of(cls, result: dict[str, Any], timeline: Timeline) -> PerfRun:
        done = [p for p in result["passes"] if p["m_start"] is not None and p["m_end"] is not None]
        costs = [pass_cost(timeline, result["loop_tid"], p["m_start"], p["m_end"]) for p in done]
        return cls(result, timeline, costs)

    def median(self) -> int:
        """The index of the middle pass, by device wait then by submit cost: the one the table and the
        picture show (with an even number of passes, the lower middle)."""
        order = sorted(range(len(self.costs)), key=lambda i: (self.costs[i].device_wait_ms, self.costs[i].submit_ms))
        return order[(len(order) - 1) // 2]


def majority(waited: int, passes: int) -> bool:
    """More than half of the passes waited for the device (2 of 3): one odd pass does not flip a verdict."""
    return waited * 2 > passes
