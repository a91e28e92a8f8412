"""Does Context.submit release the GIL around io_submit, and Context.reap around io_getevents?

    strace -f --seccomp-bpf -e trace=pread64,io_submit,io_getevents \\
        -e inject=pread64,io_submit,io_getevents:delay_enter=20000 python lab6_gil.py FILE

Nothing in the program's output can tell whether a C function released the GIL around a
system call; another Python thread can. While the main thread is inside a system call with
the GIL released, an observer thread runs Python code (it counts steps); with the GIL held,
it cannot take a single step. Real calls are too quick to see this, so the grader makes
each of them long: strace holds every traced call DELAY_MS at its entry (inject delay_enter),
inside the C function, where a correct extension has released the GIL.

The baseline is os.pread, which CPython runs with the GIL released: the observer's steps
while the main thread was in pread64 say how much CPU the busy machine gave it at all.

Prints "pread64: N", "io_submit: N", "io_getevents: N" (the observer's steps while the main
thread was in each, summed over ROUNDS calls) and "completions: N".
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from kernaio import _kernaio

ROUNDS = 8
steps = 0
running = True


def observe() -> None:
    """Count steps; each one takes the GIL and gives it back (sched_yield releases it)."""
    global steps
    while running:
        steps += 1
        os.sched_yield()


def steps_during(call: Callable[[], object]) -> int:
    before = steps
    call()
    return steps - before


def main(path: str) -> None:
    global running
    fd = os.open(path, os.O_RDONLY)         # buffered: the reads complete inside io_submit
    ctx = _kernaio.Context(8)
    buf = bytearray(4096)
    observer = threading.Thread(target=observe)
    observer.start()
    seen = {"pread64": 0, "io_submit": 0, "io_getevents": 0}
    completions = []
    try:
        for _ in range(ROUNDS):
            seen["pread64"] += steps_during(lambda: os.pread(fd, 4096, 0))
            seen["io_submit"] += steps_during(lambda: ctx.submit([("token", _kernaio.OP_READ, fd, buf, 0, 4096)]))
            seen["io_getevents"] += steps_during(lambda: completions.extend(ctx.reap()))
    finally:
        running = False
        observer.join()
        ctx.close()
        os.close(fd)
    for name, count in seen.items():
        print(f"{name}: {count}", flush=True)
    print(f"completions: {len(completions)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
