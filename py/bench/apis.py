"""One entry per Python API: open the file, hand out one reader per request in flight.

An API is an async context manager factory: given the file and the queue depth QD, it
opens what it needs and yields QD readers. A reader reads the 4 KiB block at an offset
(into a buffer of its own) and returns the bytes read; bench.worker calls each reader
again and again from its own coroutine, so QD reads are in flight at any time.

    @api("kernaio", needs=("kernaio",))
    @asynccontextmanager
    async def kernaio_readers(path: str, qd: int) -> AsyncIterator[list[Reader]]:
        ...
        yield [reader() for _ in range(qd)]

`direct=False` marks an API that cannot read O_DIRECT (its buffers are not aligned): the
worker then drops the file's pages from the page cache before the reads and the table
says "buffered, cache dropped"; the opener turns readahead off (POSIX_FADV_RANDOM), and no
block is read twice (bench.worker), so each of its reads is a read of the device too. `needs` names the modules imported before the clock starts.

BUFFERED holds the same readers of kernaio, to_thread and aiofiles on a buffered file, cache
left as it is (not rows of `make bench`: notebook 06 measures them from a warm page cache).
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from measuring import CAIO_BACKENDS, Unsupported, aligned_buffer, module, require_caio_backend
from xray.doctor import check_io_uring

BLOCK = 4096   # bytes per read: the size databases and fio's usual random-read test use
NO_IO = "no I/O"   # the "file" column of a reference row that reads nothing (asyncio alone)

Reader = Callable[[int], Awaitable[int]]          # read the block at this offset; bytes read
Opener = Callable[[str, int], AbstractAsyncContextManager[list[Reader]]]   # (path, qd) -> QD readers


@dataclass(frozen=True)
class Api:
    """One Python API of the table."""

    name: str                    # as the table shows it
    open: Opener                 # (path, qd) -> async context manager of QD readers
    direct: bool = True          # reads an O_DIRECT file (else buffered, cache dropped first)
    env: dict[str, str] = field(default_factory=dict)   # set before the import (CAIO_IMPL)
    needs: tuple[str, ...] = ()  # modules imported before the clock starts
    loop: str = "asyncio"        # the event loop it runs on: "asyncio" or "uvloop"
    reads_file: bool = True      # False: a reference row that does no I/O at all

    @property
    def mode(self) -> str:
        """The table's "file" column."""
        if not self.reads_file:
            return NO_IO
        return "O_DIRECT" if self.direct else "buffered, cache dropped"


APIS: dict[str, Api] = {}   # name -> API, in the table's order


def api(name: str, *, direct: bool = True, env: dict[str, str] | None = None,
        needs: tuple[str, ...] = (), loop: str = "asyncio", reads_file: bool = True) -> Callable[[Opener], Opener]:
    """Register the decorated opener as the API `name` (the table keeps this order)."""
    def register(opener: Opener) -> Opener:
        APIS[name] = Api(name, opener, direct, env or {}, needs, loop, reads_file)
        return opener
    return register


def open_direct(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECT)


def open_file(path: str, direct: bool) -> int:
    return open_direct(path) if direct else os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _kernaio_api(backend: str, direct: bool = True, *, sqpoll: bool = False, engine: str = "c") -> Opener:
    """kernaio's reader on one backend: "aio" (io_submit) or "io_uring" (the same Python API,
    with SQPOLL's kernel thread if asked), on one engine: "c" (the default) or "python"."""
    @asynccontextmanager
    async def kernaio_readers(path: str, qd: int) -> AsyncIterator[list[Reader]]:
        import kernaio
        if backend == "io_uring":
            ok, seen, todo = check_io_uring()
            if not ok:
                raise Unsupported(f"{seen} ({todo})")
        async with kernaio.open(path, "rb", direct=direct, backend=backend, sqpoll=sqpoll, engine=engine) as f:
            def reader() -> Reader:
                buf = kernaio.aligned_buffer(BLOCK)

                async def read(offset: int) -> int:
                    return await f.readinto(buf, offset)
                return read
            yield [reader() for _ in range(qd)]
    return kernaio_readers


api("kernaio", needs=("kernaio",))(_kernaio_api("aio"))
# The Python engine (lab 6's reference): what the C engine saves.
api("kernaio (Python engine)", needs=("kernaio",))(_kernaio_api("aio", engine="python"))
api("kernaio (io_uring)", needs=("kernaio",))(_kernaio_api("io_uring"))
# A kernel thread (iou-sqp) submits: its CPU is the process's, and the threads column counts it.
api("kernaio (io_uring, SQPOLL)", needs=("kernaio",))(_kernaio_api("io_uring", sqpoll=True))
# The same reads on uvloop's event loop (libuv, in Cython): what asyncio's own loop costs kernaio.
api("kernaio (uvloop)", needs=("kernaio", "uvloop"), loop="uvloop")(_kernaio_api("aio"))


def _to_thread_api(direct: bool) -> Opener:
    @asynccontextmanager
    async def to_thread_readers(path: str, qd: int) -> AsyncIterator[list[Reader]]:
        fd = open_file(path, direct)
        try:
            def reader() -> Reader:
                buf = aligned_buffer(BLOCK)   # os.pread's own bytes would not be aligned for O_DIRECT

                async def read(offset: int) -> int:
                    return await asyncio.to_thread(os.preadv, fd, [buf], offset)
                return read
            yield [reader() for _ in range(qd)]
        finally:
            os.close(fd)
    return to_thread_readers


api("asyncio.to_thread(os.preadv)")(_to_thread_api(True))


def _aiofiles_api(direct: bool) -> Opener:
    @asynccontextmanager
    async def aiofiles_readers(path: str, qd: int) -> AsyncIterator[list[Reader]]:
        aiofiles = module("aiofiles")

        def opener(name: str, flags: int) -> int:
            return os.open(name, flags | (os.O_DIRECT if direct else 0))

        # aiofiles has no pread: a read is seek() then readinto(), two trips to a thread, so each
        # reader needs a file object (a file position) of its own.
        files = [await aiofiles.open(path, "rb", buffering=0, opener=opener) for _ in range(qd)]
        try:
            def reader(f: object) -> Reader:
                buf = aligned_buffer(BLOCK)

                async def read(offset: int) -> int:
                    await f.seek(offset)  # type: ignore[attr-defined]
                    n: int = await f.readinto(buf)  # type: ignore[attr-defined]
                    return n
                return read
            yield [reader(f) for f in files]
        finally:
            for f in files:
                await f.close()
    return aiofiles_readers


api("aiofiles", needs=("aiofiles",))(_aiofiles_api(True))


def _aiofile_api(impl: str) -> Opener:
    @asynccontextmanager
    async def aiofile_readers(path: str, qd: int) -> AsyncIterator[list[Reader]]:
        require_caio_backend(impl)
        aiofile = module("aiofile")
        async with aiofile.AIOFile(path, "rb") as afp:
            # Random reads: no readahead, whose neighbouring pages later reads would find in the
            # page cache instead of the device (what an application reading at random says too).
            os.posix_fadvise(afp.fileno(), 0, 0, os.POSIX_FADV_RANDOM)

            async def read(offset: int) -> int:
                return len(await afp.read_bytes(BLOCK, offset))   # caio allocates the buffer
            yield [read] * qd
    return aiofile_readers


for _impl in CAIO_BACKENDS:
    api(f"aiofile (caio {_impl})", direct=False, env={"CAIO_IMPL": _impl},
        needs=("caio", "aiofile"))(_aiofile_api(_impl))


@api("asyncio alone (no I/O)", reads_file=False)
@asynccontextmanager
async def no_io_readers(path: str, qd: int) -> AsyncIterator[list[Reader]]:
    """No file at all: each "read" awaits a future that one callback per loop iteration
    resolves, all of them at once, as kernaio's completions are resolved. What is left is
    asyncio's own cost per await (a future, a task woken through call_soon) and the worker's
    loop: the most IOPS any asyncio file library can reach on this CPU, at any QD."""
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[int]] = []

    def resolve_all() -> None:
        batch = waiting[:]
        waiting.clear()
        for future in batch:
            future.set_result(BLOCK)

    async def read(offset: int) -> int:
        future: asyncio.Future[int] = loop.create_future()
        if not waiting:
            loop.call_soon(resolve_all)
        waiting.append(future)
        return await future
    yield [read] * qd


# The same readers on a buffered file whose pages are left where they are (warm, if the caller
# read the file first): what each API costs when the page cache answers. Not rows of make bench.
BUFFERED: dict[str, Api] = {
    "kernaio": Api("kernaio", _kernaio_api("aio", direct=False), direct=False, needs=("kernaio",)),
    "asyncio.to_thread(os.preadv)": Api("asyncio.to_thread(os.preadv)", _to_thread_api(False), direct=False),
    "aiofiles": Api("aiofiles", _aiofiles_api(False), direct=False, needs=("aiofiles",)),
}
