"""Run one probe with a 1 ms heartbeat beside it: `python -m reveal.probe API MODE FILE`.

    python -m reveal.probe "aiofiles" buffered reveal-64MiB.bin --block-size 4194304 --blocks 16 --passes 3

Each pass drops the file's pages from the page cache (posix_fadvise DONTNEED: no root
needed, so the reads really go to the disk), starts a new event loop of the kind the
probe needs (asyncio, or the lab's miniloop), runs a heartbeat coroutine that asks to
sleep 1 ms again and again and notes how late it wakes, and runs the probe's reads. The
probe prints a line with its pid first, then ONE JSON line:

    reveal.probe pid 4242
    {"api": ..., "mode": ..., "pid": 4242, "loop_tid": 4242, "unavailable": null, "error": null,
     "passes": [{"t_start": 1700000000.1, "t_end": 1700000000.3, "m_start": 9852.1, "m_end": 9852.3,
                 "bytes": 67108864, "heartbeat_max_late_ms": 0.4, "heartbeat_ticks": 180}, ...]}

Each pass is stamped on two clocks: t_* is time.time(), the clock strace -ttt prints; m_*
is time.monotonic(), the clock of `perf record -k monotonic`. So the caller can tell which
traced calls and which sleeps happened during the reads. When the API cannot run here,
"unavailable" says why (and the exit code is still 0: that is an answer, not a failure);
the passes stop at the first one that fails.

The harness itself starts no thread: every thread strace sees belongs to the API.
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from measuring import SETTLE, Heartbeat, Unsupported, drop_cache
from paths import ROOT
from reveal.probes import PROBES, Plan, Probe, make_plan

# This repository's packages that a later lab adds: missing means "not built yet".
OUR_PACKAGES = {"miniloop", "posixaio", "kernaio", "uring"}
HELLO = "reveal.probe pid"   # the first line the probe prints, with its pid


def pollers_gone(timeout: float = 0.5) -> None:
    """Wait (a little) until the io_uring pollers of closed rings have left this process.

    A ring's iou-sqp thread exits after the ring is freed, a moment after close. Waiting
    for it keeps the next pass's kernel threads its own: otherwise the last breaths of the
    previous pass's poller are counted again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = []
        for tid in os.listdir("/proc/self/task"):
            try:
                names.append(Path(f"/proc/self/task/{tid}/comm").read_text())
            except OSError:
                continue   # it just exited
        if not any(name.startswith("iou-sqp-") for name in names):
            return
        time.sleep(0.005)


async def _measured(probe: Probe, plan: Plan, heartbeat: Heartbeat, stamps: dict[str, Any],
                    settle: Callable[[float], Awaitable[Any]]) -> None:
    """The reads between two pairs of time stamps (a coroutine of whichever loop runs it)."""
    await settle(SETTLE)
    stamps["t_start"], stamps["m_start"] = time.time(), time.monotonic()
    try:
        stamps["bytes"] = await probe.read(plan)
    finally:
        stamps["t_end"], stamps["m_end"] = time.time(), time.monotonic()
        heartbeat.stopped = True


def run_on(loop: Any, sleep: Callable[[float], Awaitable[Any]], probe: Probe, plan: Plan,
           stamps: dict[str, Any]) -> None:
    """Run the probe and the heartbeat on loop (asyncio's or miniloop's: they share these methods)."""
    heartbeat = Heartbeat(loop.time, sleep)

    async def main() -> None:
        beat = loop.create_task(heartbeat.run())
        try:
            await _measured(probe, plan, heartbeat, stamps, sleep)
        finally:
            heartbeat.stopped = True
            await beat

    try:
        loop.run_until_complete(main())
    finally:
        stamps["heartbeat_max_late_ms"] = heartbeat.worst * 1e3
        stamps["heartbeat_ticks"] = heartbeat.ticks
        loop.close()


def run_asyncio(probe: Probe, plan: Plan, stamps: dict[str, Any]) -> None:
    # A loop of our own rather than asyncio.run(): run()'s shutdown_default_executor starts a
    # thread to join the executor, which would count as one of the API's threads.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)   # aiofile looks the loop up with get_event_loop()
    run_on(loop, asyncio.sleep, probe, plan, stamps)


def run_miniloop(probe: Probe, plan: Plan, stamps: dict[str, Any]) -> None:
    from miniloop import EventLoop, sleep   # the lab-2 loop: the lab-3 executor runs on it
    run_on(EventLoop(), sleep, probe, plan, stamps)


RUNNERS = {"asyncio": run_asyncio, "miniloop": run_miniloop}


def import_needs(probe: Probe) -> None:
    """Import what the probe uses now, before the clock starts (Unsupported when missing)."""
    for name in probe.needs:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise                  # the module is there but something it imports is not
            top = name.split(".")[0]
            ours = top in OUR_PACKAGES or (ROOT / "py" / top).is_dir()
            raise Unsupported(f"not built yet (no module {name})" if ours else
                              f"not installed (no module {name}): run make setup") from err


def unavailable_reason(err: BaseException, direct: bool) -> str | None:
    """The row's "why" for an exception that means "cannot run here"; None for a real failure."""
    if isinstance(err, Unsupported):
        return str(err)
    if isinstance(err, NotImplementedError):
        return f"not built yet ({err})"
    if direct and isinstance(err, OSError) and err.errno == errno.EINVAL:
        return (f"the O_DIRECT read failed with EINVAL ({err.strerror}): this API reads into a buffer "
                "it allocates itself, at an address that is not a multiple of this device's memory alignment "
                "(dio_mem_align, which statx's STATX_DIOALIGN tells: often 512)")
    if direct and isinstance(err, SystemError) and str(err) == os.strerror(errno.EINVAL):
        # caio reports the kernel's errors as SystemError with strerror's text.
        return ("the O_DIRECT read failed with EINVAL (caio raised SystemError('Invalid argument')): "
                "caio reads into a buffer it allocates itself, 16-byte aligned, while this device wants a multiple "
                "of its dio_mem_align (statx's STATX_DIOALIGN: often 512)")
    return None


def run(api: str, mode: str, path: str, block_size: int, blocks: int, concurrency: int,
        passes: int = 1) -> dict[str, Any]:
    """Run one probe, passes times over (see the module docstring); the JSON-able result."""
    probe = PROBES[api]
    direct = mode == "O_DIRECT"
    os.environ.update(probe.env)   # before the API is imported: caio reads CAIO_IMPL at import
    result: dict[str, Any] = {"api": api, "mode": mode, "pid": os.getpid(), "loop_tid": threading.get_native_id(),
                              "unavailable": None, "error": None, "passes": []}
    plan = make_plan(path, direct, os.path.getsize(path), block_size, blocks, concurrency)
    try:
        import_needs(probe)
    except Unsupported as err:   # refused before any I/O: there is nothing to measure
        result["unavailable"] = str(err)
        return result
    for n in range(passes):
        if n:
            pollers_gone()
        stamps: dict[str, Any] = {"t_start": None, "t_end": None, "m_start": None, "m_end": None,
                                  "bytes": None, "heartbeat_max_late_ms": None, "heartbeat_ticks": 0}
        drop_cache(path)
        try:
            RUNNERS[probe.loop](probe, plan, stamps)
        except Exception as err:  # the row says what went wrong; the other rows go on
            why = unavailable_reason(err, direct)
            if why is None:
                result["error"] = f"{type(err).__name__}: {err}"
            else:
                result["unavailable"] = why
            if not isinstance(err, Unsupported):   # Unsupported: refused before any I/O, nothing measured
                result["passes"].append(stamps)
            return result
        result["passes"].append(stamps)
        if stamps["bytes"] != plan.total:
            result["error"] = f"read {stamps['bytes']} bytes, expected {plan.total}"
            return result
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("api", choices=list(PROBES))
    parser.add_argument("mode", choices=["buffered", "O_DIRECT"])
    parser.add_argument("file")
    parser.add_argument("--block-size", type=int, default=4 << 20)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--passes", type=int, default=1, help="read it all this many times, each from a cold cache")
    args = parser.parse_args(argv)
    # First line: who we are, so that the caller samples /proc/PID/task of the right process
    # (strace forks short-lived children of its own before it starts the program).
    sys.stdout.write(f"{HELLO} {os.getpid()}\n")
    sys.stdout.flush()
    result = run(args.api, args.mode, args.file, args.block_size, args.blocks, args.concurrency,
                 args.passes)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
