"""One measurement in a process of its own: `python -m bench.worker API QD FILE --seconds S`.

It imports the API, opens the file, starts a heartbeat (measuring.Heartbeat: sleeps 1 ms again and
again, notes how late it wakes), then QD coroutines each read a random 4 KiB block, again
and again, until the time is up, timing every read (the random offsets are drawn before
the clock starts: each block of the file once, shuffled). Reads that end in the warm-up (the
first tenth of the run) are not counted. It prints a line with its pid (so the parent
samples the right /proc/PID/task), then ONE JSON line:

    bench.worker pid 4242
    {"api": "kernaio", "qd": 32, "mode": "O_DIRECT", "ops": 90000, "seconds": 2.7,
     "iops": 33333.3, "p50_us": 900.1, "p99_us": 3100.0, "stall_ms": 0.4, "t_start": ...,
     "t_end": ..., "cpu_pct": 61.0, "runq_wait_ms": 12.5, "unavailable": null, "error": null}

cpu_pct is the process's CPU time (all its threads) over the whole run, in % of one core;
runq_wait_ms is how long the loop's thread waited for a CPU while runnable (schedstat):
on a busy machine, that is where a loop stall comes from rather than from the API.

t_start/t_end are time.time() of the counted window, for the parent's /proc samples. The
harness starts no thread: every thread the parent sees belongs to the API.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import itertools
import json
import os
import random
import sys
import threading
import time
from typing import Any

from bench.apis import APIS, BLOCK, Api, Reader
from measuring import SETTLE, Heartbeat, Unsupported, drop_cache

HELLO = "bench.worker pid"
WARMUP = 0.1   # this fraction of the run is not counted: the device's and the API's start
SEED = 2019         # the blocks' order: the same for every row


def run_delay_ns() -> int:
    """Nanoseconds this (the loop's) thread has waited on a run queue for a CPU: a loop stall
    that the machine, not the API, caused (other programs on the cores). 0 when unknown."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def measure(entry: Api, path: str, qd: int, seconds: float, result: dict[str, Any]) -> None:
    """Open, run QD readers for `seconds` with the heartbeat beside them, fill result."""
    loop = asyncio.get_running_loop()
    blocks = os.path.getsize(path) // BLOCK
    latencies: list[float] = []
    heartbeat = Heartbeat(loop.time, asyncio.sleep)
    # Drawn now, not per read: random.randrange costs about 0.4 µs of Python, which every
    # Python row would pay and fio (C) would not. Every block of the file once, in a shuffled
    # order, dealt out to the readers: no block is read twice before the whole file has been
    # (a row of ~90,000 reads a second reads it once in 3 s). A block read twice would come
    # from the page cache for the buffered rows (caio's), and be no read of the device.
    order = list(range(blocks))
    random.Random(SEED).shuffle(order)
    offsets = [[block * BLOCK for block in order[k::qd]] for k in range(qd)]
    del order
    # The harness's own objects (these 262,144 offsets, soon the latencies) out of the GC's way:
    # a collection that walks them while young took 6-10 ms here, just as the reads began, and
    # was every row's worst stall. What the API allocates is still collected, at its own cost.
    gc.collect()
    gc.freeze()
    async with entry.open(path, qd) as readers:
        beat = loop.create_task(heartbeat.run())
        await asyncio.sleep(SETTLE)
        began = time.perf_counter()
        counted_from = began + seconds * WARMUP
        until = began + seconds

        async def worker(read: Reader, mine: list[int]) -> None:
            for offset in itertools.cycle(mine):
                sent = time.perf_counter()
                if sent >= until:
                    return
                n = await read(offset)
                done = time.perf_counter()
                if n != BLOCK:
                    raise RuntimeError(f"a read returned {n} bytes, not {BLOCK}")
                if sent >= counted_from:
                    latencies.append(done - sent)

        result["t_start"] = time.time() + seconds * WARMUP
        cpu, waited = time.process_time(), run_delay_ns()
        try:
            await asyncio.gather(*[worker(read, mine) for read, mine in zip(readers, offsets)])
        finally:
            ended = time.perf_counter()
            cpu, waited = time.process_time() - cpu, run_delay_ns() - waited
            result["t_end"] = time.time()
            heartbeat.stopped = True
            await beat
    latencies.sort()
    window = ended - counted_from
    result.update(ops=len(latencies), seconds=round(window, 3), iops=round(len(latencies) / window, 1),
                  p50_us=round(percentile(latencies, 0.50) * 1e6, 1) if latencies else None,
                  p99_us=round(percentile(latencies, 0.99) * 1e6, 1) if latencies else None,
                  stall_ms=round(heartbeat.worst * 1e3, 3), heartbeat_ticks=heartbeat.ticks,
                  cpu_pct=round(100 * cpu / (ended - began), 1), runq_wait_ms=round(waited / 1e6, 1))


def run(name: str, qd: int, path: str, seconds: float) -> dict[str, Any]:
    """One measurement; the JSON-able result (see the module docstring)."""
    entry = APIS[name]
    os.environ.update(entry.env)   # before the import: caio reads CAIO_IMPL then
    result: dict[str, Any] = {"api": name, "qd": qd, "pid": os.getpid(), "loop_tid": threading.get_native_id(),
                              "mode": entry.mode,
                              "ops": 0, "seconds": None, "iops": None, "p50_us": None, "p99_us": None,
                              "stall_ms": None, "t_start": None, "t_end": None, "unavailable": None, "error": None}
    try:
        for needed in entry.needs:
            importlib.import_module(needed)
        if not entry.direct:
            drop_cache(path)
        # A loop of our own, not asyncio.run(): its executor shutdown would start one more thread.
        loop = importlib.import_module("uvloop").new_event_loop() if entry.loop == "uvloop" \
            else asyncio.new_event_loop()
        asyncio.set_event_loop(loop)   # aiofile looks the loop up with get_event_loop()
        try:
            loop.run_until_complete(measure(entry, path, qd, seconds, result))
        finally:
            loop.close()
    except (Unsupported, ModuleNotFoundError) as err:
        result["unavailable"] = str(err)
    except Exception as err:  # the row says what went wrong; the other rows go on
        result["error"] = f"{type(err).__name__}: {err}"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("api", choices=list(APIS))
    parser.add_argument("qd", type=int)
    parser.add_argument("file")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    sys.stdout.write(f"{HELLO} {os.getpid()}\n")
    sys.stdout.flush()
    sys.stdout.write(json.dumps(run(args.api, args.qd, args.file, args.seconds)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
