"""Where a row's loop stalls come from: `python -m bench.stalls [API] [QD] [--seconds S] [--worst N]`.

The bench's "worst stall" is how late a coroutine that sleeps 1 ms at a time woke up. It
does not say why. This runs one bench.worker under `perf record -a` (the scheduler's
sched_switch on every CPU, the loop thread's io_submit, io_uring_enter and epoll_wait), has
the heartbeat note when each tick was due, and for the N latest ticks splits the time between
the tick's due moment and its wake-up:

- own work: the loop thread on a CPU (its callbacks: a slice of completions, the tasks they
  wake, a submit; and the GC, when it ran then); `longest` is its longest stretch on a CPU;
- waiting for a CPU: woken (or preempted) but not running, while other threads held the CPUs
  (named, with how long each ran in the window): the machine's, not the API's;
- asleep: not yet woken, in epoll_wait past the timer's moment (a timer that fired late).

Nothing is stopped or slowed (no ptrace); perf costs a little CPU of its own.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.run import Config
from measuring import child_env
from xray import Unavailable, perf

# The child: bench.worker's run() with a heartbeat that remembers when each late tick was due.
CHILD = r'''
import gc, json, sys, time
from bench import worker
import measuring

late, collections = [], []
began = [0.0]

def noting_gc(phase, info):
    if phase == "start":
        began[0] = time.monotonic()
    else:
        collections.append((began[0], time.monotonic()))

gc.callbacks.append(noting_gc)

class Noting(measuring.Heartbeat):
    async def run(self):
        while not self.stopped:
            asked = self.clock()
            await self.sleep(measuring.HEARTBEAT)
            now = self.clock()
            self.ticks += 1
            self.worst = max(self.worst, now - asked - measuring.HEARTBEAT)
            late.append((now - asked - measuring.HEARTBEAT, asked + measuring.HEARTBEAT, now))

worker.Heartbeat = Noting
result = worker.run(sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
print(json.dumps({"result": result, "late": sorted(late, reverse=True)[:int(sys.argv[5])], "gc": collections}))
'''
_EVENT = re.compile(r"^\s*(-?\d+)/(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+([\w:]+):\s?(.*)$")
_SWITCH = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")


@dataclass
class Window:
    """One late tick: from when it was due to when it woke up, what the loop thread did."""

    late_ms: float
    own_ms: float = 0.0          # on a CPU
    longest_ms: float = 0.0      # its longest stretch on a CPU
    runnable_ms: float = 0.0     # preempted: ready, waiting for a CPU
    asleep_ms: float = 0.0       # off the CPU by choice (epoll_wait), not woken yet
    gc_ms: float = 0.0           # of the own work, Python's garbage collector
    others: dict[str, float] = field(default_factory=lambda: defaultdict(float))   # comm -> ms on a CPU
    calls: dict[str, float] = field(default_factory=lambda: defaultdict(float))    # syscall -> the loop's ms


def most(spent: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(spent.items(), key=lambda item: -item[1])


def clip(start: float, end: float, lo: float, hi: float) -> float:
    return max(0.0, min(end, hi) - max(start, lo))


def explain(script: str, pid: int, due: float, woke: float, late: float,
            collections: list[tuple[float, float]]) -> Window:
    """The loop thread (pid) between due and woke, from perf script's lines (and the GC's runs)."""
    w = Window(late * 1e3)
    running: dict[int, tuple[str, int, float]] = {}     # cpu -> (comm, tid, since)
    off: tuple[str, float] | None = None                # the loop's state and since when, off the CPU
    entered: dict[str, float] = {}

    def account(state: str, start: float, end: float) -> None:
        spent = clip(start, end, due, woke) * 1e3
        if state == "R":
            w.runnable_ms += spent
        else:
            w.asleep_ms += spent
    for line in script.splitlines():
        m = _EVENT.match(line)
        if not m:
            continue
        tid, cpu, when, event = int(m[2]), int(m[3]), float(m[4]), m[5]
        if when > woke:
            break
        if event == "sched:sched_wakeup" and off is not None and f" pid={pid} " in m[6] + " ":
            account(off[0], off[1], when)           # asleep until now; from now on, waiting for a CPU
            off = ("R", when)
        elif event == "sched:sched_switch" and (s := _SWITCH.search(m[6])):
            prev, nxt = int(s[2]), int(s[5])
            if cpu in running:
                comm, who, since = running[cpu]
                spent = clip(since, when, due, woke)
                if who == pid:
                    w.own_ms += spent * 1e3
                    w.longest_ms = max(w.longest_ms, spent * 1e3)
                elif who:
                    w.others[comm] += spent * 1e3
            running[cpu] = (s[4], nxt, when)
            if prev == pid:
                off = (s[3][:1], when)
            if nxt == pid and off is not None:
                account(off[0], off[1], when)
                off = None
        elif tid == pid and ":sys_enter_" in event:
            entered[event.split("sys_enter_")[1]] = when
        elif tid == pid and ":sys_exit_" in event and (name := event.split("sys_exit_")[1]) in entered:
            w.calls[name] += clip(entered.pop(name), when, due, woke) * 1e3
    for comm, who, since in running.values():
        spent = clip(since, woke, due, woke) * 1e3
        if who == pid:
            w.own_ms += spent
            w.longest_ms = max(w.longest_ms, spent)
        elif who:
            w.others[comm] += spent
    if off is not None:
        account(off[0], off[1], woke)
    w.gc_ms = sum(clip(start, end, due, woke) for start, end in collections) * 1e3
    return w


def record(api: str, qd: int, seconds: float, worst: int) -> tuple[dict[str, object], list[Window]]:
    perf.check()
    path = Config().data_file
    if not path.exists():
        raise Unavailable(f"{path} is missing: run `make bench` once (it makes the file)")
    calls = [f"syscalls:sys_{edge}_{name}" for name in ("io_submit", "io_uring_enter", "epoll_wait")
             for edge in ("enter", "exit")]
    with tempfile.TemporaryDirectory(prefix="bench-stalls-") as folder:
        data = Path(folder) / "perf.data"
        argv = ["perf", "record", "-q", "-B", "-N", "--no-bpf-event", "-a", "-k", "monotonic", "-o", str(data),
                "-e", "sched:sched_switch", "-e", "sched:sched_wakeup", *(x for c in calls for x in ("-e", c)), "--",
                sys.executable, "-c", CHILD, api, str(qd), str(path), str(seconds), str(worst)]
        run = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=seconds + 120)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"the worker said nothing: {run.stderr.strip()[-500:]}")
        out = json.loads(lines[-1])
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,tid,cpu,time,event,trace"],
                                capture_output=True, text=True, timeout=300).stdout
    result = out["result"]
    return result, [explain(script, result["pid"], due, woke, late, out["gc"]) for late, due, woke in out["late"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stalls", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("api", nargs="?", default="kernaio")
    parser.add_argument("qd", nargs="?", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--worst", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        result, windows = record(args.api, args.qd, args.seconds, args.worst)
    except Unavailable as why:
        print(f"cannot record here: {why}", file=sys.stderr)
        return 2
    print(f"{args.api} QD {args.qd}: {result['iops']} IOPS, worst stall {result['stall_ms']} ms, "
          f"{result['runq_wait_ms']} ms runnable without a CPU over the run")
    for w in windows:
        others = ", ".join(f"{comm} {ms:.1f}" for comm, ms in most(w.others)[:4]) or "nobody"
        calls = ", ".join(f"{name} {ms:.2f}" for name, ms in most(w.calls)) or "none"
        print(f"  {w.late_ms:6.2f} ms late: own work {w.own_ms:.2f} ms (longest {w.longest_ms:.2f}, GC {w.gc_ms:.2f}), "
              f"waiting for a CPU {w.runnable_ms:.2f} ms, asleep {w.asleep_ms:.2f} ms; "
              f"in calls: {calls}; others on the CPUs (ms): {others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
