# Your copy of py/miniloop/files.py: edit it, then run `make lab3`. (Generated; see docs/ARCHITECTURE.md.)
"""AsyncFile: an aiofiles-like file for the mini loop, every call run in a ThreadPool (lab 3).

    pool = ThreadPool(workers=4)

    async def main() -> bytes:
        async with AsyncFile.open("data.bin", "rb", pool=pool) as f:   # os.open, in a worker
            head = await f.read(4096, offset=0)    # os.pread in a worker; the loop sleeps meanwhile
            rest = await f.read()                  # os.read from the file position to the end
        return head + rest

"Looks asynchronous!" The loop's thread never blocks in a file call: it sleeps in
epoll_wait while a worker blocks in pread, and the worker's eventfd wakes it when the
bytes are there. "Except... it's not!": the file I/O itself is as blocking as ever; it
just happens in threads you do not see. Each call costs a hand-off between threads,
N reads at once need N threads, and a read that has started cannot be cancelled. That
is aiofiles, aiofile's thread backend and asyncio.to_thread; the labs after this one
look for file I/O that is asynchronous in the kernel.

See the threads for yourself (the data file: any large file):

    python -m miniloop.files build/data/big.bin --workers 4 --linger 30
    ls /proc/$(pgrep -f miniloop.files)/task        # in another terminal: 5 threads
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Coroutine, Generator
from typing import Any

from miniloop.command import run_command
from miniloop.executor import ThreadPool, run_in_executor
from miniloop.loop import EventLoop, get_running_loop, sleep

CHUNK = 1 << 20     # bytes per os.read when reading to the end of a file

# The binary modes of open(), as os.open flags (a "+" adds reading or writing).
_MODES = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


def open_flags(mode: str) -> int:
    """The os.open flags for a binary mode: "rb", "wb", "ab", "xb", each with an optional "+"."""
    letters = set(mode)
    kind = letters & set(_MODES)
    if len(kind) != 1 or "b" not in letters or not letters <= set("rwaxb+") or len(letters) != len(mode):
        raise ValueError(f"invalid mode {mode!r}: AsyncFile is binary only ('rb', 'wb', 'ab', 'xb', "
                         "with an optional '+', e.g. 'r+b')")
    flags = _MODES[kind.pop()]
    if "+" in letters:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    return flags | os.O_CLOEXEC       # every fd close-on-exec: a child process must not inherit it


def _read_all(fd: int, offset: int | None) -> bytes:
    """Everything from offset (None: the file position) to the end of the file. Runs in a worker, as one job."""
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, CHUNK) if offset is None else os.pread(fd, CHUNK, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if offset is not None:
            offset += len(chunk)


class AsyncFile:
    """An open file whose every call runs in a ThreadPool's worker, awaited on the mini loop.

    Make one with `await AsyncFile.open(path, mode, pool=pool)`, or `async with
    AsyncFile.open(...) as f:` to close it at the end of the block.
    """

    def __init__(self, fd: int, name: str, mode: str, loop: EventLoop, pool: ThreadPool) -> None:
        self._fd = fd            # -1 once closed
        self.name = name
        self.mode = mode
        self._loop = loop        # the loop whose Futures the calls return
        self._pool = pool        # the threads that make the calls

    def __repr__(self) -> str:
        return f"<AsyncFile {self.name!r} mode={self.mode!r}{' closed' if self.closed else ''}>"

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "rb", *, pool: ThreadPool) -> Opening:
        """Open path in one of pool's workers: os.open can block as well (a cold directory, NFS).

        Await the result for the file, or use it in `async with` (as aiofiles.open).
        Errors (FileNotFoundError, PermissionError...) are raised at the await.
        """
        return Opening(cls._open(os.fspath(path), mode, pool))

    @classmethod
    async def _open(cls, path: str, mode: str, pool: ThreadPool) -> AsyncFile:
        flags = open_flags(mode)     # a bad mode fails here, at once, not in a worker
        loop = get_running_loop()
        # TODO(lab3): run os.open(path, flags, 0o666) in the pool (await run_in_executor(loop,
        #   pool, ...)) and wrap the fd it returns: cls(fd, path, mode, loop, pool). An error
        #   of os.open needs nothing from you: the worker catches it, and it is raised at
        #   your await, with its type and errno.
        raise NotImplementedError("lab3: AsyncFile.open")

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self._check_open()

    def _check_open(self) -> int:
        if self._fd < 0:
            raise ValueError(f"I/O operation on a closed file ({self.name})")
        return self._fd

    async def read(self, n: int = -1, offset: int | None = None) -> bytes:
        """Up to n bytes (n < 0: everything to the end of the file); b"" at the end of the file.

        offset None: read at the file position and move it (os.read), like a file object.
        An offset: read there and leave the position alone (os.pread), so many reads of
        one file can run at the same time, in different workers.
        """
        fd = self._check_open()
        # TODO(lab3): n < 0: run _read_all(fd, offset) in the pool (given above: it reads to the
        #   end in one job). Else run os.pread(fd, n, offset) when an offset is given, and
        #   os.read(fd, n) when it is None. Each is one run_in_executor, awaited.
        raise NotImplementedError("lab3: AsyncFile.read")

    async def write(self, data: bytes, offset: int | None = None) -> int:
        """Write data at the file position (offset None: os.write) or at offset (os.pwrite).

        Returns what the system call returns: the number of bytes written (for a regular
        file all of them, unless the disk is full). data must not change until then: a
        worker reads it.
        """
        fd = self._check_open()
        # TODO(lab3): read's twin: os.pwrite(fd, data, offset) or os.write(fd, data) in the pool;
        #   return the count.
        raise NotImplementedError("lab3: AsyncFile.write")

    async def fsync(self) -> None:
        """Wait until the file's data is on the disk (os.fsync, in a worker: it can take seconds)."""
        await run_in_executor(self._loop, self._pool, os.fsync, self._check_open())

    async def close(self) -> None:
        """Close the file (in a worker too: close can block, flushing to NFS). Closing twice is fine."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1      # from now on read() and write() refuse at once
        await run_in_executor(self._loop, self._pool, os.close, fd)

    async def __aenter__(self) -> AsyncFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Opening:
    """What AsyncFile.open() returns: await it for the file, or `async with` it to close the file at the end."""

    def __init__(self, coro: Coroutine[Any, Any, AsyncFile]) -> None:
        self._coro = coro
        self._file: AsyncFile | None = None

    def __await__(self) -> Generator[Any, None, AsyncFile]:
        return self._coro.__await__()

    async def __aenter__(self) -> AsyncFile:
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc_info: object) -> None:
        if self._file is not None:
            await self._file.close()


# --- python -m miniloop.files: read a file through the pool, and look at the threads --------------

def _threads() -> int:
    """How many threads this process has right now (what `ls /proc/PID/task` shows)."""
    return len(os.listdir("/proc/self/task"))


async def read_through_pool(loop: EventLoop, pool: ThreadPool, path: str, chunk: int) -> bytes:
    """Read the whole file with one pread job per chunk, all of them submitted at once."""
    async with AsyncFile.open(path, "rb", pool=pool) as f:
        size = (await run_in_executor(loop, pool, os.fstat, f.fileno())).st_size
        # One Task per chunk: they all start in the same turn, so the pool's queue fills
        # up at once and every worker has something to do.
        tasks = [loop.create_task(f.read(chunk, offset=offset)) for offset in range(0, size, chunk)]
        parts = [await task for task in tasks]
    return b"".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniloop.files", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="the file to read")
    parser.add_argument("--workers", type=int, default=4, help="threads in the pool (default 4)")
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per pread job (default 65536)")
    parser.add_argument("--linger", type=float, default=0.0,
                        help="seconds to stay idle at the end, the pool still up, to look at /proc/PID/task")
    args = parser.parse_args(argv)

    pool = ThreadPool(workers=args.workers)

    async def run(loop: EventLoop) -> None:
        start = time.monotonic()
        data = await read_through_pool(loop, pool, args.path, args.chunk)
        took = time.monotonic() - start
        jobs = -(-len(data) // args.chunk)
        print(f"read {len(data)} bytes in {jobs} preads ({took:.3f} s), sha256 {hashlib.sha256(data).hexdigest()}, "
              f"{_threads()} threads: the loop's and {pool.workers} workers", flush=True)
        if args.linger > 0:
            await sleep(args.linger)   # idle: the loop in epoll_wait, the workers on their condition

    try:
        return run_command("files", "03-executor", run, before_close=pool.shutdown)
    except OSError as err:   # the file cannot be read: say so, no traceback
        print(f"files: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
