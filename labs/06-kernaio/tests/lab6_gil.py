"""Does Context.submit release the GIL around io_submit, and Context.reap around io_getevents?

    strace -f --seccomp-bpf -e trace=pread64,io_submit,io_getevents \\
        -e inject=pread64,io_submit,io_getevents:delay_enter=20000 python lab6_gil.py FILE 20

Nothing in the program's output can tell whether a C function released the GIL around a
system call; another Python thread can. An observer thread notes the time of each of its
steps, and each step needs the GIL. Real calls are too quick to see anything, so the grader
has strace hold each traced call DELAY_MS (the last argument) at its entry: inside the C
function, where a correct extension has released the GIL. The main thread holds the GIL
when it notes the time t0 just before a call, so if the call keeps the GIL, no step of the
observer can fall between t0 + 2 ms and t0 + DELAY_MS - 2 ms; if it releases it, the
observer runs there like anywhere else. (The switch interval is set to 1 s, so the main
thread never hands the GIL over between two bytecodes in the meantime.)

The baseline is os.pread, which CPython runs with the GIL released: the observer's steps in
its windows say how much CPU the busy machine gave the observer at all. Rounds go on until
that baseline reaches BASELINE steps (or MAX_ROUNDS).

Prints "pread64: N", "io_submit: N", "io_getevents: N" (the observer's steps inside the
windows of each kind of call), "rounds: N" and "completions: N".
"""
from __future__ import annotations

import bisect
import os
import sys
import threading
import time
from collections.abc import Callable

from kernaio import _kernaio

BASELINE = 300      # observer steps during os.pread that make the measure worth judging
MAX_ROUNDS = 150
stamps: list[float] = []
running = True


def observe() -> None:
    """Note the time of each step; each takes the GIL and gives it back (sched_yield releases it)."""
    while running:
        stamps.append(time.monotonic())
        os.sched_yield()


def main(path: str, delay_ms: float) -> None:
    global running
    margin = 0.002
    windows: dict[str, list[float]] = {"pread64": [], "io_submit": [], "io_getevents": []}

    def timed(kind: str, call: Callable[[], object]) -> None:
        windows[kind].append(time.monotonic())
        call()

    def steps(kind: str) -> int:
        seen = stamps[:]            # a copy: the observer appends meanwhile
        return sum(bisect.bisect_left(seen, t0 + delay_ms / 1000 - margin) - bisect.bisect_right(seen, t0 + margin)
                   for t0 in windows[kind])

    fd = os.open(path, os.O_RDONLY)         # buffered: the reads complete inside io_submit
    ctx = _kernaio.Context(8)
    buf = bytearray(4096)
    completions: list[object] = []
    sys.setswitchinterval(1.0)
    def take_completions() -> None:
        done = ctx.reap()          # the context's list of completions not taken yet
        completions.extend(done)
        del done[:]

    observer = threading.Thread(target=observe)
    observer.start()
    rounds = 0
    try:
        while rounds < MAX_ROUNDS and (rounds < 8 or steps("pread64") < BASELINE):
            rounds += 1
            timed("pread64", lambda: os.pread(fd, 4096, 0))
            timed("io_submit", lambda: ctx.submit([_kernaio.Request(path, _kernaio.OP_READ, fd, buf, 0, 4096)]))
            timed("io_getevents", take_completions)
    finally:
        running = False
        observer.join()
        ctx.close()
        os.close(fd)
    for kind in windows:
        print(f"{kind}: {steps(kind)}", flush=True)
    print(f"rounds: {rounds}", flush=True)
    print(f"completions: {len(completions)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
