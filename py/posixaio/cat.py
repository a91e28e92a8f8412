"""Read a file with posixaio and report the threads the process has while requests are in flight.

    python -m posixaio.cat FILE [--mode blocking|asyncio] [--depth N] [--chunk BYTES]

The Python twin of build/bin/aio_cat. It prints what /proc/self/task shows (this
program starts no thread itself), where the SIGEV_THREAD callbacks ran (asyncio mode),
and the CRC-32 of the file, to compare with zlib.crc32 of a plain read:

    threads in flight: 2: 4242 (python3, main) 4243 (python3)
    callbacks: 33 on 33 threads, 0 on the main thread
    read: 2109497 bytes in 33 requests, crc32 fefd221c
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import zlib

import posixaio


def threads_now() -> list[tuple[int, str]]:
    """(tid, name) of every thread of this process, from /proc/self/task."""
    found = []
    for entry in sorted(os.listdir("/proc/self/task"), key=int):
        try:
            with open(f"/proc/self/task/{entry}/comm") as f:
                found.append((int(entry), f.read().strip()))
        except FileNotFoundError:  # it ended while we looked
            continue
    return found


def report_threads(label: str) -> None:
    main = threading.get_native_id()
    seen = threads_now()
    listed = " ".join(f"{tid} ({name}{', main' if tid == main else ''})" for tid, name in seen)
    print(f"{label}: {len(seen)}: {listed}", flush=True)


def offsets(size: int, chunk: int) -> list[int]:
    return list(range(0, size, chunk))


def read_with_suspend(fd: int, size: int, chunk: int) -> list[bytes]:
    """One read_blocking after another. The worker thread glibc started for the first
    one lingers (about a second, waiting for more work): the report catches it."""
    parts = []
    for i, offset in enumerate(offsets(size, chunk)):
        parts.append(posixaio.read_blocking(fd, chunk, offset))
        if i == 0:
            report_threads("threads after the first read")
    return parts


async def read_with_asyncio(fd: int, size: int, chunk: int, depth: int) -> list[bytes]:
    """A Task per chunk, at most `depth` requests in flight at once."""
    slots = asyncio.Semaphore(depth)
    reported = asyncio.Event()

    async def one(offset: int) -> bytes:
        async with slots:
            read = asyncio.ensure_future(posixaio.pread(fd, chunk, offset))
            await asyncio.sleep(0)  # let it submit
            if not reported.is_set() and posixaio.in_flight() > 0:
                reported.set()
                report_threads("threads in flight")
            return await read

    return list(await asyncio.gather(*(one(offset) for offset in offsets(size, chunk))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m posixaio.cat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--mode", choices=["blocking", "asyncio"], default="asyncio")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    args = parser.parse_args(argv)
    fd = os.open(args.file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if args.mode == "blocking":
            parts = read_with_suspend(fd, size, args.chunk)
        else:
            parts = asyncio.run(read_with_asyncio(fd, size, args.chunk, args.depth))
    except (OSError, NotImplementedError) as exc:
        print(f"posixaio.cat: {args.file}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
    data = b"".join(parts)
    if args.mode == "asyncio":
        main_tid = threading.get_native_id()
        tids = posixaio.callback_threads()
        print(f"callbacks: {len(tids)} on {len(set(tids))} threads, "
              f"{sum(1 for t in tids if t == main_tid)} on the main thread")
    print(f"read: {len(data)} bytes in {len(parts)} requests, crc32 {zlib.crc32(data):08x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
