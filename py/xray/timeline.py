"""What each thread of a program did, in time, as the kernel saw it: no ptrace, no slowed thread.

strace stops a thread at every call it traces, so the durations it prints include its own
delay (on a 2-core machine, often a millisecond). This module asks the kernel's
tracepoints instead, through `perf record -a`, which never stops anybody:

    rec = timeline.record([sys.executable, "reader.py"], syscalls=["pread64", "io_submit"])
    t = rec.timeline
    t.calls_of(t.pid)                       # [Span(tid, 'io_submit', start, end), ...]
    t.sleeps_of(t.pid, state="D")           # the main thread's waits in D state
    t.workers()                             # {tid: 'iou-wrk-4242'}: the kernel's threads for it

Three kinds of events are recorded:

- `raw_syscalls:sys_enter` / `sys_exit`, filtered in the kernel to the calls asked for:
  when each thread entered and left each one. The filter needs the calls' numbers, which
  the C compiler's <sys/syscall.h> gives for this machine; without a compiler, the
  per-call tracepoints (`syscalls:sys_enter_NAME`) do the same, a little slower to set up;
- `sched:sched_switch` and `sched:sched_wakeup`, machine-wide: when each thread left a CPU
  and in which state, when it was woken, and when it came back. The state is the point:
  `S` is a sleep the thread chose (epoll_wait, a futex); `D` is an uninterruptible sleep:
  inside a read, that is a wait for the device (a page being read in, a request tag); `R`
  means it was preempted, still runnable -- the machine was busy. A sleep ends when the
  thread is woken; its wait for a free CPU after that is the machine's, not the device's.

Times are CLOCK_MONOTONIC seconds (`perf record -k monotonic`): the program can stamp its own
moments with time.monotonic() and compare. perf's build-id pass is turned off (-B -N): it
took a second per recording and we never resolve symbols.
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

from xray import Unavailable, perf


@dataclass(frozen=True)
class Span:
    """One thread between two moments: inside a call (what = its name), or off the CPU (what = its state)."""

    tid: int
    what: str
    start: float
    end: float
    during: str | None = None   # for a sleep: the traced call it happened in, if any

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1e3


@dataclass
class Timeline:
    """One program's threads, from its recording (see the module docstring)."""

    pid: int                                               # the process (its main thread's tid)
    names: dict[int, str] = field(default_factory=dict)    # tid -> comm, for the process's threads
    calls: list[Span] = field(default_factory=list)        # traced syscalls, every thread
    sleeps: list[Span] = field(default_factory=list)       # off-CPU stretches, every thread
    on_cpu: list[Span] = field(default_factory=list)       # on-CPU stretches, every thread (what="run")

    def calls_of(self, tid: int, start: float = 0.0, end: float = float("inf")) -> list[Span]:
        return [c for c in self.calls if c.tid == tid and start <= c.start <= end]

    def sleeps_of(self, tid: int, state: str | None = None, start: float = 0.0,
                  end: float = float("inf")) -> list[Span]:
        return [s for s in self.sleeps if s.tid == tid and (state is None or s.what == state)
                and start <= s.start <= end]

    def workers(self) -> dict[int, str]:
        """The threads the kernel made for the process (iou-wrk-*, iou-sqp-*): no clone of its own made them."""
        from xray.sampler import is_kernel_worker
        return {tid: name for tid, name in self.names.items() if is_kernel_worker(name)}


# `perf script -F pid,tid,time,event,trace` prints one event a line:
#   25467/25467  9924.767495:      syscalls:sys_enter_io_submit: ctx_id: 0x7fa4, nr: 0x00000004, iocbpp: 0x5624
#   25467/25467  9924.771637:      sched:sched_switch: prev_comm=python prev_pid=25467 prev_prio=120 prev_state=D
#                                      ==> next_comm=swapper/0 next_pid=0 next_prio=120          (one line)
_EVENT = re.compile(r"^\s*(?P<pid>-?\d+)/(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s+(?P<event>[\w:]+):\s?(?P<rest>.*)$")
_RAW = re.compile(r"NR (?P<nr>\d+)")
_WAKEUP = re.compile(r"comm=.*? pid=(?P<tid>\d+) ")
_SWITCH = re.compile(r"prev_comm=(?P<prev_comm>.*?) prev_pid=(?P<prev>\d+) .*?prev_state=(?P<state>\S+) ==> "
                     r"next_comm=(?P<next_comm>.*?) next_pid=(?P<next>\d+)")


def parse(text: str, pid: int, numbers: dict[int, str] | None = None) -> Timeline:
    """The events of process pid (and of its threads) in perf script's text; numbers names the
    syscalls of raw_syscalls events (number -> name)."""
    t = Timeline(pid)
    numbers = numbers or {}
    inside: dict[int, tuple[str, float]] = {}       # tid -> (call, entered at)
    left: dict[int, tuple[str, float, str | None]] = {}   # tid -> (state, left the CPU at, in call)
    woken: dict[int, float] = {}                    # tid -> woken at, while it is off the CPU
    arrived: dict[int, float] = {}                  # tid -> came on a CPU at (any tid: we learn later whose)
    for line in text.splitlines():
        m = _EVENT.match(line)
        if not m:
            continue
        tid, when, event = int(m["tid"]), float(m["time"]), m["event"]
        if event == "sched:sched_wakeup":             # in the waker's context: an interrupt, a kernel thread
            w = _WAKEUP.match(m["rest"])
            if w and int(w["tid"]) in left:
                woken.setdefault(int(w["tid"]), when)
        elif event == "sched:sched_switch":
            s = _SWITCH.search(m["rest"])
            if not s:
                continue
            prev, nxt = int(s["prev"]), int(s["next"])
            if int(m["pid"]) == pid and prev == tid:   # one of ours leaves the CPU (the event is in its context)
                t.names[prev] = s["prev_comm"]         # the latest: a thread may rename itself, exec does
                if prev in arrived:
                    t.on_cpu.append(Span(prev, "run", arrived.pop(prev), when))
                busy = inside.get(prev)
                left[prev] = (s["state"][:1], when, busy[0] if busy else None)
            if nxt in left:                            # one of ours comes back
                state, since, during = left.pop(nxt)
                t.sleeps.append(Span(nxt, state, since, woken.pop(nxt, when), during))
            if nxt:                                    # whose it is, we learn when it leaves
                arrived[nxt] = when
        elif int(m["pid"]) != pid:
            continue
        elif event == "raw_syscalls:sys_enter" or event.startswith("syscalls:sys_enter_"):
            raw = _RAW.match(m["rest"]) if event.startswith("raw") else None
            name = numbers.get(int(raw["nr"]), f"syscall {raw['nr']}") if raw else event.removeprefix(
                "syscalls:sys_enter_")
            inside[tid] = (name, when)
        elif (event == "raw_syscalls:sys_exit" or event.startswith("syscalls:sys_exit_")) and tid in inside:
            name, since = inside.pop(tid)
            t.calls.append(Span(tid, name, since, when))
    return t


@functools.cache
def check() -> None:
    """Raise Unavailable unless perf can record sched_switch machine-wide here (root or perf_event_paranoid -1)."""
    perf.check()
    probe = subprocess.run(["perf", "record", "-q", "-B", "-N", "--no-bpf-event", "-a", "-o", "/dev/null",
                            "-e", "sched:sched_switch", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        from xray import causes
        raise Unavailable(f"perf cannot record the scheduler's events machine-wide: {causes.perf_denied(last)}")


@functools.cache
def syscall_numbers(names: tuple[str, ...]) -> dict[str, int]:
    """This machine's number of each call, from the C compiler's <sys/syscall.h>; {} without one."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return {}
    source = "#include <sys/syscall.h>\n" + "".join(f"{name} SYS_{name}\n" for name in names)
    done = subprocess.run([compiler, "-E", "-P", "-x", "c", "-"], input=source, capture_output=True, text=True)
    if done.returncode != 0:
        return {}
    pairs = (line.split() for line in done.stdout.splitlines())
    found = {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[0] in names and p[1].isdigit()}
    return found if len(found) == len(names) else {}


def _syscall_events(names: Sequence[str]) -> tuple[list[str], dict[int, str]]:
    """perf record's options for entering and leaving the calls, and number -> name for parse()."""
    numbers = syscall_numbers(tuple(names))
    # --exclude-perf applies to the event before it: perf's own calls are not the program's.
    if numbers:
        wanted = " || ".join(f"id == {n}" for n in numbers.values())
        return (["-e", "raw_syscalls:sys_enter", "--filter", wanted, "--exclude-perf",
                 "-e", "raw_syscalls:sys_exit", "--filter", wanted, "--exclude-perf"],
                {n: name for name, n in numbers.items()})
    events = []
    for name in names:
        events += ["-e", f"syscalls:sys_enter_{name}", "--exclude-perf",
                   "-e", f"syscalls:sys_exit_{name}", "--exclude-perf"]
    return events, {}


@dataclass
class Recording:
    """A program run under `perf record`: what it printed, and its timeline."""

    timeline: Timeline
    returncode: int
    stdout: str
    stderr: str


def record(argv: Sequence[str], syscalls: Sequence[str], timeout: float = 120, **popen: Any) -> Recording:
    """Run argv under `perf record -a`, recording the given syscalls (every thread of the program) and
    every sched_switch of the machine; return its timeline. Unavailable when perf cannot do that here."""
    check()
    calls, numbers = _syscall_events(syscalls)
    events = ["-e", "sched:sched_switch", "-e", "sched:sched_wakeup", *calls]
    with tempfile.TemporaryDirectory(prefix="xray-timeline-") as folder:
        data, pidfile = Path(folder) / "perf.data", Path(folder) / "pid"
        # The program's pid, before it runs: the wrapper writes its own and execs argv (exec keeps it).
        wrapper = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pidfile), *argv]
        try:
            run = subprocess.run(["perf", "record", "-q", "-B", "-N", "--no-bpf-event", "-a", "-k", "monotonic",
                                  "-o", str(data), *events, "--", *wrapper], timeout=timeout, capture_output=True,
                                 text=True, **popen)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"perf record: the program did not finish in {timeout:g} s") from err
        if not data.exists() or not pidfile.exists():
            raise Unavailable(f"perf record did not run the program: {run.stderr.strip()[-300:]}")
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,tid,time,event,trace"],
                                capture_output=True, text=True, timeout=timeout)
        timeline = parse(script.stdout, int(pidfile.read_text()), numbers)
    return Recording(timeline, run.returncode, run.stdout, run.stderr)
