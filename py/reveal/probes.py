"""One small async function per "async" file API: open the file, read its blocks, close it.

Every probe gets a Plan (which file, O_DIRECT or not, which offsets, how many at once)
and returns the number of bytes it read. It reads the same blocks in the same order as
every other probe, `plan.concurrency` requests in flight at a time, so the rows of the
table differ only by the API. A probe runs inside `reveal.probe`, which adds the
heartbeat and the timing around it.

Adding a row is a few lines: a function, and the decorator that names it (read_kernaio
below is the shortest).

`needs` names the modules the probe uses: they are imported before the clock starts,
and a missing one makes the row "unavailable: not built yet" (a module of this
repository still being written) or "not installed". `loop="miniloop"` runs the probe
on the lab's own event loop instead of asyncio's. When an API cannot do O_DIRECT at
all, raise Unsupported("why") in direct mode; when it tries and the kernel refuses
(EINVAL from an unaligned buffer), that error becomes the row's "unavailable: ..."
reason, and the calls it made are still traced and shown.
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import mmap
import os
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from measuring import CAIO_BACKENDS, Unsupported, aligned_buffer, module, require_caio_backend
from paths import BIN

ALIGN = 4096   # O_DIRECT wants buffers, offsets and sizes aligned to the logical block size; a page covers it


@dataclass(frozen=True)
class Plan:
    """What a probe reads: the same for every API, so that only the API differs."""

    path: str           # the data file (relative to the probe's working directory)
    direct: bool        # open it with O_DIRECT
    block_size: int     # bytes per read (a multiple of ALIGN)
    offsets: list[int]  # where to read, in this order (shuffled: no readahead helps)
    concurrency: int    # requests in flight at once (one worker coroutine each)

    def stripes(self) -> list[list[int]]:
        """The offsets split among the workers: worker k reads offsets[k], offsets[k + c], ..."""
        return [self.offsets[k::self.concurrency] for k in range(self.concurrency)]

    @property
    def total(self) -> int:
        return self.block_size * len(self.offsets)


def make_plan(path: str, direct: bool, file_size: int, block_size: int, blocks: int,
              concurrency: int, seed: int = 2019) -> Plan:
    """`blocks` distinct blocks of the file in a fixed shuffled order (the same every run)."""
    if block_size % ALIGN or file_size < block_size * blocks:
        raise ValueError(f"{blocks} blocks of {block_size} bytes do not fit a {file_size}-byte file aligned")
    indices = list(range(file_size // block_size))
    random.Random(seed).shuffle(indices)
    return Plan(path, direct, block_size, [i * block_size for i in indices[:blocks]], concurrency)


ReadFn = Callable[[Plan], Awaitable[int]]   # a probe: read what the plan says, return the bytes read


@dataclass(frozen=True)
class Probe:
    """One row of the table (twice: buffered and O_DIRECT)."""

    name: str                               # the API as the table shows it
    read: ReadFn                            # the probe itself
    loop: str = "asyncio"                   # which event loop runs it: "asyncio" or "miniloop"
    env: dict[str, str] = field(default_factory=dict)   # extra environment (CAIO_IMPL=...)
    needs: tuple[str, ...] = ()             # modules imported before the clock starts (see measuring.module)


PROBES: dict[str, Probe] = {}   # API name -> its probe, in the table's order


def probe(name: str, *, loop: str = "asyncio", env: dict[str, str] | None = None,
          needs: tuple[str, ...] = ()) -> Callable[[ReadFn], ReadFn]:
    """Register the decorated function as the probe of the API `name` (rows keep this order)."""
    def register(read: ReadFn) -> ReadFn:
        PROBES[name] = Probe(name, read, loop, env or {}, needs)
        return read
    return register


# --- helpers ---------------------------------------------------------------------------

def open_fd(plan: Plan) -> int:
    """Open the data file read-only, with O_DIRECT when the plan says so."""
    return os.open(plan.path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECT if plan.direct else 0))


async def gather_sum(workers: list[Coroutine[Any, Any, int]]) -> int:
    """Run the asyncio workers together; the sum of their results."""
    return sum(await asyncio.gather(*workers))


# The rows that hand every read to a thread (to_thread, run_in_executor, lab 3's pool) differ only by
# how they hand it over: in_thread.
InThread = Callable[..., Awaitable[Any]]   # in_thread(function, *args): function(*args) run on another thread


async def pread_in_threads(plan: Plan, fd: int, offsets: list[int], in_thread: InThread) -> int:
    """One worker: read the blocks at offsets, each in_thread; the bytes read."""
    n = 0
    buf = aligned_buffer(plan.block_size) if plan.direct else None
    for off in offsets:
        if buf is None:
            n += len(await in_thread(os.pread, fd, plan.block_size, off))
        else:   # os.pread's own bytes object is not aligned: read into ours
            n += await in_thread(os.preadv, fd, [buf], off)
    return n


# --- the standard library: a thread per call ------------------------------------------

@probe("asyncio.to_thread(os.pread)")
async def read_to_thread(plan: Plan) -> int:
    fd = open_fd(plan)
    try:
        return await gather_sum([pread_in_threads(plan, fd, s, asyncio.to_thread) for s in plan.stripes()])
    finally:
        os.close(fd)


@probe("loop.run_in_executor(None, os.pread)")
async def read_run_in_executor(plan: Plan) -> int:
    in_executor = functools.partial(asyncio.get_running_loop().run_in_executor, None)
    fd = open_fd(plan)
    try:
        return await gather_sum([pread_in_threads(plan, fd, s, in_executor) for s in plan.stripes()])
    finally:
        os.close(fd)


@probe("aiofiles", needs=("aiofiles",))
async def read_aiofiles(plan: Plan) -> int:
    aiofiles = module("aiofiles")

    def opener(path: str, flags: int) -> int:
        return os.open(path, flags | os.O_DIRECT)

    async def worker(offsets: list[int]) -> int:
        # One file object per worker: aiofiles has no pread, a read is seek() then read().
        n = 0
        if plan.direct:   # unbuffered FileIO, and readinto() an aligned buffer
            buf = aligned_buffer(plan.block_size)
            async with aiofiles.open(plan.path, "rb", buffering=0, opener=opener) as f:
                for off in offsets:
                    await f.seek(off)
                    n += await f.readinto(buf)
        else:
            async with aiofiles.open(plan.path, "rb") as f:
                for off in offsets:
                    await f.seek(off)
                    n += len(await f.read(plan.block_size))
        return n
    return await gather_sum([worker(s) for s in plan.stripes()])


# --- aiofile on each caio backend -------------------------------------------------------

def _aiofile_probe(impl: str) -> ReadFn:
    async def read_aiofile(plan: Plan) -> int:
        require_caio_backend(impl)
        aiofile = module("aiofile")
        # AIOFile opens files itself, with open(name, mode): there is no way to ask for
        # O_DIRECT. For O_DIRECT, open the file ourselves and hand the file object over.
        fp = open(open_fd(plan), "rb", buffering=0) if plan.direct else None
        try:
            # Either way caio allocates each read's buffer itself.
            afp = aiofile.AIOFile.from_fp(fp) if fp is not None else aiofile.AIOFile(plan.path, "rb")
            async with afp:
                async def worker(offsets: list[int]) -> int:
                    return sum([len(await afp.read_bytes(plan.block_size, off)) for off in offsets])
                return await gather_sum([worker(s) for s in plan.stripes()])
        finally:
            if fp is not None:
                fp.close()
    return read_aiofile


for _impl in CAIO_BACKENDS:
    probe(f"aiofile (caio {_impl})", env={"CAIO_IMPL": _impl}, needs=("caio", "aiofile"))(_aiofile_probe(_impl))


# --- the lab's own executor, on the lab's own loop (lab 3 on lab 2) ----------------------

async def gather_miniloop(workers: list[Coroutine[Any, Any, int]]) -> int:
    """gather_sum for the mini loop: a Task per worker, then the sum of their results."""
    from miniloop import get_running_loop
    loop = get_running_loop()
    tasks = [loop.create_task(w) for w in workers]
    return sum([await t for t in tasks])


@probe("lab 3: miniloop run_in_executor(os.pread)", loop="miniloop", needs=("miniloop.executor",))
async def read_lab3_executor(plan: Plan) -> int:
    from miniloop import get_running_loop
    from miniloop.executor import ThreadPool, run_in_executor
    pool = ThreadPool(workers=plan.concurrency)
    in_pool = functools.partial(run_in_executor, get_running_loop(), pool)
    fd = open_fd(plan)
    try:
        return await gather_miniloop([pread_in_threads(plan, fd, s, in_pool) for s in plan.stripes()])
    finally:
        pool.shutdown()
        os.close(fd)


@probe("lab 3: miniloop AsyncFile.read", loop="miniloop", needs=("miniloop.files",))
async def read_lab3_asyncfile(plan: Plan) -> int:
    from miniloop.executor import ThreadPool
    from miniloop.files import AsyncFile
    if plan.direct:
        raise Unsupported("AsyncFile.open has no O_DIRECT mode, and read() returns a new bytes object "
                          "from os.pread, which O_DIRECT would refuse (not aligned)")
    pool = ThreadPool(workers=plan.concurrency)
    try:
        async with AsyncFile.open(plan.path, "rb", pool=pool) as f:
            async def worker(offsets: list[int]) -> int:
                return sum([len(await f.read(plan.block_size, offset=off)) for off in offsets])
            return await gather_miniloop([worker(s) for s in plan.stripes()])
    finally:
        pool.shutdown()


# --- glibc's POSIX aio (lab 4) -----------------------------------------------------------

@probe("glibc POSIX aio (posixaio, lab 4)", needs=("posixaio",))
async def read_posixaio(plan: Plan) -> int:
    import posixaio
    fd = open_fd(plan)   # O_DIRECT too: pread reads into a ctypes buffer of its own, aligned or not
    try:
        async def worker(offsets: list[int]) -> int:
            return sum([len(await posixaio.pread(fd, plan.block_size, off)) for off in offsets])
        return await gather_sum([worker(s) for s in plan.stripes()])
    finally:
        os.close(fd)


# --- kernel AIO: kernaio (lab 6) -------------------------------------------------------------

@probe("kernaio (io_submit, lab 6)", needs=("kernaio",))
async def read_kernaio(plan: Plan) -> int:
    return await kernaio_reads(plan)


@probe("kernaio (io_uring + SQPOLL)", needs=("kernaio",))
async def read_kernaio_sqpoll(plan: Plan) -> int:
    # kernaio.open(..., sqpoll=True): the iou-sqp kernel thread submits, and spins until idle.
    return await kernaio_reads(plan, backend="io_uring", sqpoll=True)


async def kernaio_reads(plan: Plan, **options: Any) -> int:
    import kernaio
    # direct=False is kernaio's explicit buffered mode: io_submit then copies from the page
    # cache before it returns (caveat 1), and the row shows that stall.
    # One buffer per worker, reused, as for the other rows: f.read() would allocate fresh memory
    # per request, and the kernel faults fresh pages in inside io_submit (~1 ms per 4 MiB).
    async with kernaio.open(plan.path, "rb", direct=plan.direct, **options) as f:
        async def worker(offsets: list[int], buf: mmap.mmap) -> int:
            return sum([await f.readinto(buf, off) for off in offsets])
        stripes = plan.stripes()
        buffers = [kernaio.aligned_buffer(plan.block_size) for _ in stripes]
        return await gather_sum([worker(s, b) for s, b in zip(stripes, buffers)])


# --- io_uring: lab 7's ring code (c/uring, built as uring_lab.so) through ctypes -------------

URING_LIB = BIN / "uring_lab.so"
UR_SQPOLL = 1   # c/uring/uring.h


class UringDone(ctypes.Structure):
    """struct ur_done: one CQE as ur_reap hands it back."""

    _fields_ = [("tag", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


@functools.cache
def uring_lib() -> ctypes.CDLL:
    """c/uring's functions (ur_create, ur_queue, ur_submit, ur_reap, ...); ctypes drops the GIL in each call."""
    if not URING_LIB.exists():
        raise Unsupported("not built yet (no build/bin/uring_lab.so: run make build)")
    lib = ctypes.CDLL(str(URING_LIB))
    ring, ptr = ctypes.c_void_p, ctypes.c_void_p
    for name, args in {"ur_probe": [], "ur_ops_named": [ctypes.c_char_p],
                       "ur_create": [ctypes.POINTER(ring), ptr, ctypes.c_int, ctypes.c_uint, ctypes.c_uint],
                       "ur_queue": [ring, ctypes.c_int, ctypes.c_int, ptr, ctypes.c_size_t, ctypes.c_uint64,
                                    ctypes.c_uint64],
                       "ur_submit": [ring, ctypes.c_uint], "ur_reap": [ring, ctypes.POINTER(UringDone), ctypes.c_int],
                       "ur_use_eventfd": [ring], "ur_eventfd_drain": [ring], "ur_destroy": [ring]}.items():
        function = getattr(lib, name)
        function.argtypes = args
        # As declared in c/uring/uring.h: an int is not a long (the upper half of the register is junk).
        function.restype = {"ur_ops_named": ptr, "ur_destroy": None, "ur_eventfd_drain": ctypes.c_long}.get(
            name, ctypes.c_int)
    return lib


def create_ring(depth: int, sqpoll: bool) -> ctypes.c_void_p:
    """A liburing ring of `depth` entries (Unsupported where io_uring is blocked)."""
    lib = uring_lib()
    ring = ctypes.c_void_p()
    err = lib.ur_create(ctypes.byref(ring), lib.ur_ops_named(b"liburing"), depth, UR_SQPOLL if sqpoll else 0, 2000)
    if err < 0:
        blocked = lib.ur_probe()
        if blocked < 0:
            raise Unsupported(f"io_uring is blocked here (io_uring_setup: {os.strerror(-blocked)}): a container's "
                              "seccomp profile or sysctl kernel.io_uring_disabled; see make doctor")
        raise OSError(-err, f"ur_create: {os.strerror(-err)}")
    return ring


class UringReads:
    """One ring per run (depth = concurrency) on the running asyncio loop, its CQEs announced by
    an eventfd in add_reader: a read is a Future that the eventfd's callback resolves.

    Each request goes to the kernel as soon as it is queued (ur_submit: one io_uring_enter,
    none with SQPOLL while its poller is awake): batching the first four would make one
    io_uring_enter pin 16 MiB of pages, a millisecond of CPU on the loop thread that is
    not the disk's. A buffer stays alive while its request is in flight: each worker
    reads into its own mmap, and only one of its requests is in flight at a time (its
    tag is the worker's number).
    """

    def __init__(self, plan: Plan, sqpoll: bool) -> None:
        self.lib = uring_lib()
        self.loop = asyncio.get_running_loop()
        self.plan = plan
        self.ring = create_ring(plan.concurrency, sqpoll)
        self.pending: dict[int, asyncio.Future[int]] = {}   # tag -> the Future of its read in flight
        self.done = (UringDone * plan.concurrency)()
        self.fd = self.efd = -1

    def start(self) -> None:
        """Open the file and watch the ring's eventfd (close() undoes either, however far it got)."""
        self.fd = open_fd(self.plan)
        efd = self.lib.ur_use_eventfd(self.ring)
        if efd < 0:
            raise OSError(-efd, f"ur_use_eventfd: {os.strerror(-efd)}")
        self.efd = efd
        self.loop.add_reader(efd, self.on_cqes)

    def on_cqes(self) -> None:
        """The eventfd's reader callback: resolve the Future of every completed read."""
        self.lib.ur_eventfd_drain(self.ring)
        while (n := self.lib.ur_reap(self.ring, self.done, len(self.done))) > 0:
            for cqe in self.done[:n]:
                fut = self.pending.pop(cqe.tag)
                if fut.done():
                    continue   # its worker was cancelled: the read is over, nobody waits for it
                if cqe.res < 0:
                    fut.set_exception(OSError(-cqe.res, os.strerror(-cqe.res)))
                else:
                    fut.set_result(cqe.res)

    async def read_at(self, tag: int, address: int, length: int, offset: int) -> int:
        """Queue one read, hand it to the kernel at once, wait for its CQE; the bytes read."""
        err = self.lib.ur_queue(self.ring, 0, self.fd, address, length, offset, tag)
        if err < 0:
            raise OSError(-err, f"ur_queue: {os.strerror(-err)}")
        fut: asyncio.Future[int] = self.loop.create_future()
        self.pending[tag] = fut
        err = self.lib.ur_submit(self.ring, 0)
        if err < 0:   # nothing was handed over: every read queued so far fails
            for waiting in self.pending.values():
                waiting.set_exception(OSError(-err, f"ur_submit: {os.strerror(-err)}"))
            self.pending.clear()
        return await fut

    async def worker(self, tag: int, offsets: list[int]) -> int:
        """Read the blocks at offsets into a buffer of this worker's own, one at a time."""
        size = self.plan.block_size
        # MAP_POPULATE: the pages exist before the first read. Otherwise the kernel would
        # fault them in inside io_uring_enter, on the loop thread, when it pins them for
        # the transfer (~2 ms per MiB here): the cost of fresh memory, not of io_uring.
        buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        n = 0
        for off in offsets:
            got = 0
            while got < size:   # a short read: ask again for the rest
                step = await self.read_at(tag, address + got, size - got, off + got)
                if step == 0:
                    break
                got += step
            n += got
        return n

    def close(self) -> None:
        """Stop watching the eventfd, wait for the reads still in flight, free the ring, close the file."""
        if self.efd >= 0:
            self.loop.remove_reader(self.efd)
        # Closing the ring does not wait for its reads, and each one writes into its worker's
        # mmap: wait for every read still in flight (after a failure) before the ring goes.
        while self.pending and self.lib.ur_submit(self.ring, len(self.pending)) >= 0:
            self.on_cqes()
        if not self.pending:
            self.lib.ur_destroy(self.ring)   # closes the eventfd too
        # else the wait itself failed: leak the ring rather than close it under the kernel's reads
        if self.fd >= 0:
            os.close(self.fd)


def _uring_probe(sqpoll: bool) -> ReadFn:
    async def read_uring(plan: Plan) -> int:
        reads = UringReads(plan, sqpoll)
        tasks: list[asyncio.Future[int]] = []
        try:
            reads.start()
            tasks = [asyncio.ensure_future(reads.worker(k, s)) for k, s in enumerate(plan.stripes())]
            return sum(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()   # after a failed read: no worker may queue again on a ring that goes
            reads.close()
    return read_uring


probe("io_uring (uring_lab.so, lab 7)")(_uring_probe(sqpoll=False))
probe("io_uring + SQPOLL (uring_lab.so, lab 7)")(_uring_probe(sqpoll=True))
