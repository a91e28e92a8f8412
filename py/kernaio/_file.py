"""kernaio.File: positional async reads and writes of one open file, through the loop's AIO context (or io_uring).

File is the Python engine's (lab 6's reference); CFile, what kernaio.open returns unless
told otherwise, is the same File with read, readinto and write in C (src/file.c), over the
C engine."""
from __future__ import annotations

import asyncio
import errno
import io
import mmap
import os
import stat
import warnings
from types import TracebackType
from typing import NamedTuple

from kernaio import _engine, _kernaio

# mode -> (flags, readable, writable), as the built-in open() spells binary modes.
_MODES = {
    "rb": (os.O_RDONLY, True, False),
    "r+b": (os.O_RDWR, True, True),
    "wb": (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, False, True),
    "w+b": (os.O_RDWR | os.O_CREAT | os.O_TRUNC, True, True),
    "xb": (os.O_WRONLY | os.O_CREAT | os.O_EXCL, False, True),
    "x+b": (os.O_RDWR | os.O_CREAT | os.O_EXCL, True, True),
}


class DirectIOUnsupported(OSError):
    """The filesystem refuses O_DIRECT for this file (tmpfs on old kernels, some overlays...).
    kernaio never falls back to buffered I/O by itself: pass direct=False to ask for it."""


class Alignment(NamedTuple):
    """What a direct request must respect on this file."""

    memory: int   # the buffer's address must be a multiple of this
    offset: int   # the file offset and the length must be multiples of this
    source: str   # where the numbers come from ("statx STATX_DIOALIGN", ...)


def aligned_buffer(size: int) -> mmap.mmap:
    """A zeroed, writable buffer of size bytes that starts on a page boundary (anonymous
    mmap): aligned enough for O_DIRECT on any filesystem. Use it with readinto and write,
    again and again. Its pages are populated now (MAP_POPULATE): the kernel pins a request's
    pages inside io_submit, and would otherwise fault fresh ones in there, on the loop's
    thread (about 1 ms per 4 MiB)."""
    size = _index(size, "size")
    if size <= 0:
        raise ValueError(f"kernaio.aligned_buffer: size must be > 0, not {size}")
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)


def _index(value: object, what: str) -> int:
    """value as an int (anything with __index__), else TypeError naming the argument."""
    try:
        return int(value.__index__())  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"kernaio: {what} must be an integer, not {type(value).__name__}") from None


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


class File:
    """An open file whose reads and writes are kernel AIO (or io_uring) requests (see kernaio.open).
    This class runs them on the Python engine (_engine.Engine); CFile on the C one."""

    _closed = True  # until the fd exists, so that __del__ is quiet after a failed open
    engine = "python"   # which engine runs its requests (kernaio.open's engine=)

    def __init__(self, path: str | os.PathLike[str], mode: str = "rb", *, direct: bool = True,
                 backend: str = "aio", sqpoll: bool = False) -> None:
        if mode not in _MODES:
            raise ValueError(f"kernaio.open: mode must be one of {', '.join(_MODES)}, not {mode!r}")
        if backend not in _engine.BACKENDS:
            raise ValueError(f"kernaio.open: backend must be one of {', '.join(map(repr, _engine.BACKENDS))}, "
                             f"not {backend!r}")
        if sqpoll and backend != "io_uring":
            raise ValueError("kernaio.open: sqpoll=True needs backend=\"io_uring\" (a kernel thread that reads "
                             "the ring's submissions; kernel AIO has no such thing)")
        flags, self.readable, self.writable = _MODES[mode]
        self.name = os.fspath(path)
        self.mode = mode
        self.direct = bool(direct)
        self.backend = backend
        self.sqpoll = bool(sqpoll)
        self._engine_cache: _engine.AnyEngine | None = None    # the engine of the loop last used
        try:
            self._fd = os.open(self.name, flags | os.O_CLOEXEC | (os.O_DIRECT if direct else 0), 0o666)
        except OSError as err:
            if direct and err.errno == errno.EINVAL and _is_dir(self.name):
                # open(dir, O_DIRECT|O_CREAT...) says EINVAL before it says EISDIR.
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.name) from None
            if direct and err.errno == errno.EINVAL:
                raise DirectIOUnsupported(errno.EINVAL, "this filesystem refuses O_DIRECT (open said EINVAL); "
                                          "use a file on ext4/xfs/btrfs, or pass direct=False for buffered "
                                          "I/O, which stalls the event loop", self.name) from None
            raise
        self._closed = False
        try:
            if stat.S_ISDIR(os.fstat(self._fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.name)
            self.alignment = self._alignment()
        except BaseException:
            self._closed = True
            os.close(self._fd)
            raise

    def _alignment(self) -> Alignment:
        if not self.direct:
            return Alignment(1, 1, "buffered I/O: any offset, length and buffer")
        try:
            mem, off, source = _kernaio.alignment(self._fd)
        except OSError as err:
            if err.errno == errno.EOPNOTSUPP:
                raise DirectIOUnsupported(errno.EOPNOTSUPP, "the kernel says this file cannot do O_DIRECT "
                                          "(statx STATX_DIOALIGN); pass direct=False for buffered I/O, "
                                          "which stalls the event loop", self.name) from None
            raise
        return Alignment(mem, off, source)

    # -- the public surface -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    async def read(self, size: int, offset: int = 0) -> bytes:
        """Read up to size bytes at offset (fewer at end of file). Direct: offset and size
        multiples of alignment.offset (the memory is kernaio's own, already aligned)."""
        request = self._request(_kernaio.OP_READ_NEW, None, offset, size, self.readable, "reading")
        if request.length == 0:
            return b""
        self._check_aligned(request)
        result = await self._submit(request)
        assert isinstance(result, bytes)
        return result

    async def readinto(self, buffer: object, offset: int = 0) -> int:
        """Read len(buffer) bytes at offset into buffer (any writable, contiguous buffer);
        return how many were read. Direct: the buffer's address too must be aligned
        (kernaio.aligned_buffer gives one). The buffer is held until the kernel is done."""
        request = self._request(_kernaio.OP_READ, buffer, offset, None, self.readable, "reading")
        if request.length == 0:
            return 0
        self._check_aligned(request)
        result = await self._submit(request)
        assert isinstance(result, int)
        return result

    async def write(self, data: object, offset: int = 0) -> int:
        """Write data (any bytes-like object) at offset; return how many bytes were written.
        Direct: offset and length must be aligned; data in unaligned memory (bytes...) is
        first copied into an aligned buffer."""
        request = self._request(_kernaio.OP_WRITE, data, offset, None, self.writable, "writing")
        if request.length == 0:
            return 0
        if self.direct and (request.address or 0) % self.alignment.memory:
            bounce = aligned_buffer(request.length)
            bounce[:] = request.buffer
            request = self._request(_kernaio.OP_WRITE, bounce, offset, None, self.writable, "writing")
        self._check_aligned(request)
        result = await self._submit(request)
        assert isinstance(result, int)
        return result

    async def fsync(self) -> None:
        """Flush the file's data and metadata to the device (an IOCB_CMD_FSYNC request)."""
        await self._submit(self._request(_kernaio.OP_FSYNC, None, 0, 0, True, "fsync"))

    async def close(self) -> None:
        """Close the file. Requests not yet submitted fail with ValueError; the ones the kernel
        holds are waited for (the kernel keeps its own reference to the file meanwhile)."""
        if self._closed:
            return
        self._check_owner(asyncio.get_running_loop())
        self._closed = True
        # Only the engine of the loop that owns this file can hold its requests (_submit).
        engine = self._engine_cache
        if engine is not None and not engine.closed:
            engine.drop_queued(self, ValueError("kernaio: the file was closed before this request was submitted"))
            engine.ctx.settle()     # with SQPOLL, the kernel's thread may not have read (taken the fd of) all yet
        os.close(self._fd)
        if engine is not None:
            await _engine.drained(engine, self)

    async def __aenter__(self) -> File:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __del__(self) -> None:
        if not self._closed:
            warnings.warn(f"kernaio: unclosed file {self.name!r}", ResourceWarning, stacklevel=2)
            self._closed = True
            os.close(self._fd)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        sqpoll = " sqpoll" if self.sqpoll else ""
        return (f"<kernaio.File {self.name!r} mode={self.mode!r} direct={self.direct} backend={self.backend!r}{sqpoll} "
                f"engine={self.engine!r} {state}>")

    # -- helpers --------------------------------------------------------------------------

    def _check_owner(self, loop: asyncio.AbstractEventLoop) -> None:
        """A File belongs to the event loop that used it, as long as that loop is open: its
        queued requests live in that loop's engine, where no other thread may touch them, and
        closing the fd from elsewhere would let them reach the kernel with a number the next
        open() reuses. RuntimeError when another loop tries; once the owner is closed, the
        next loop to use the file owns it."""
        engine = self._engine_cache
        owner = engine.loop if engine is not None and not engine.closed else None
        if owner is not None and owner is not loop and not owner.is_closed():
            raise RuntimeError(f"kernaio: {self.name!r} belongs to another event loop (the one that used it "
                               "first, still open): a kernaio.File is used and closed by one loop; open the "
                               "file again in each thread or loop that needs it")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file")

    def _request(self, op: int, buffer: object | None, offset: object, size: object | None,
                 allowed: bool, what: str) -> _kernaio.Request:
        """A checked request (size None: the buffer's length), before anything is queued:
        ValueError on a closed file, UnsupportedOperation for the wrong mode; the C type
        checks the rest (integers, ranges, a writable contiguous buffer for a read)."""
        self._check_open()
        if not allowed:
            raise io.UnsupportedOperation(f"File not open for {what} (mode {self.mode!r})")
        return _kernaio.Request(self, op, self._fd, buffer, offset, size)

    def _check_aligned(self, request: _kernaio.Request) -> None:
        """Direct I/O: refuse, with the reason, what the kernel would refuse with a bare EINVAL."""
        # BEGIN SOLUTION lab6
        # TODO: buffered files accept anything. Direct: the buffer's address
        #   (request.address; None: kernaio's own memory), request.offset and request.length
        #   must be multiples of self.alignment's memory / offset numbers; otherwise raise
        #   ValueError naming the number needed and where it comes from (alignment.source).
        # STUB: raise NotImplementedError("lab6: File._check_aligned")
        if not self.direct:
            return
        al = self.alignment
        if request.address is not None and request.address % al.memory:
            raise ValueError(f"kernaio: the buffer's address is not a multiple of {al.memory}, the O_DIRECT "
                             f"memory alignment here ({al.source}); use kernaio.aligned_buffer()")
        if request.offset % al.offset:
            raise ValueError(f"kernaio: offset {request.offset} is not a multiple of {al.offset}, the O_DIRECT "
                             f"offset alignment here ({al.source})")
        if request.length % al.offset:
            raise ValueError(f"kernaio: length {request.length} is not a multiple of {al.offset}, the O_DIRECT "
                             f"length alignment here ({al.source})")
        # END SOLUTION

    async def _submit(self, request: _kernaio.Request) -> object:
        """Queue request on the running loop's engine and wait for its completion."""
        loop = asyncio.get_running_loop()
        engine = self._engine_cache
        if engine is None or engine.closed or engine.loop_id != id(loop):
            # The first request on this loop: find (or make) its engine. A closed one (its
            # loop closed or collected, or the parent's in a fork()ed child) is never
            # reused, so a new loop that inherits a dead one's id() gets its own.
            engine = self._engine_for(loop)
        request.future = future = loop.create_future()
        engine.start(request)
        try:
            return await future
        except asyncio.CancelledError:
            # The task is cancelled at once; the C side keeps the buffer until the kernel's
            # completion arrives, so the memory is never freed under a DMA.
            engine.cancel(request)
            raise

    def _engine_for(self, loop: asyncio.AbstractEventLoop) -> _engine.AnyEngine:
        """The engine of loop for this file's backend and engine kind (the first request on this
        loop: _submit, and the C engine's first step). RuntimeError if another loop owns the file."""
        self._check_owner(loop)
        engine = self._engine_cache = _engine.for_loop(loop, self.backend, sqpoll=self.sqpoll, engine=self.engine)
        return engine


class CFile(_kernaio.FileCore, File):
    """File on the C engine (_kernaio.Engine, src/engine.c): read, readinto and write are
    _kernaio.FileCore's, in C. Each checks its request there and returns it; the request is
    the coroutine the caller awaits (src/awaitable.c): no coroutine frame of kernaio's per
    request. Anything out of the ordinary (a failed check, a zero length, a write to bounce
    through aligned memory) goes to File's method above, which raises the same errors, at the
    same moment. The rest (open, close, fsync, the errors' words) is File's."""

    engine = "c"


def open(path: str | os.PathLike[str], mode: str = "rb", *, direct: bool = True,  # noqa: A001
         backend: str = "aio", sqpoll: bool = False, engine: str | None = None) -> File:
    """Open path for kernel AIO ("rb", "r+b", "wb", "w+b", "xb", "x+b"); use with async with.

    direct=True (the default) opens with O_DIRECT: io_submit hands requests to the device
    and returns before the data moves, so the loop does not wait for the disk; offsets,
    lengths and buffers must be aligned (File.alignment) and the page cache is bypassed.
    The loop still pays inside io_submit: pinning the buffer's pages and building the block
    requests (more for a bigger request), a sleep when the device's queue is full, and on
    ext4 the whole of a write that extends the file or is not aligned to its blocks.
    direct=False is buffered I/O: io_submit then does the whole copy before it returns,
    reading the disk for what is not cached (caveat 1 of the talk), which STALLS the event
    loop for the duration of each request; kernaio does it only if asked.

    backend="aio" (the default) is kernel AIO (io_submit). backend="io_uring" sends the
    same requests through an io_uring (one io_uring_enter per loop iteration), with the
    same API and the same alignment rules. With io_uring, direct=False does not wait for
    the disk inside io_uring_enter, but is not free: what the page cache holds is copied
    there, an uncached read starts its readahead there (more for a bigger read), and what
    would block is handed to iou-wrk KERNEL threads of this process (fsync always is) -- no
    Python thread, but threads all the same (/proc/PID/task, `make reveal`). The io_uring
    backend is only used when asked for; where io_uring is blocked (a container's seccomp
    profile, kernel.io_uring_disabled) the first request raises OSError (PermissionError)
    saying so.

    sqpoll=True (io_uring only, never a default) starts a kernel thread of this process,
    iou-sqp, that reads the ring's submissions by itself: no io_uring_enter per batch, but
    that thread spins on a CPU until it has been idle 50 ms (CPU that `make bench` counts).
    Where it is refused, the first request raises OSError saying so.

    engine="c" (the default, or $KERNAIO_ENGINE) runs requests on the C engine (CFile);
    engine="python" on the Python one (File, lab 6's reference). Same behaviour, same errors.

    Raises FileNotFoundError, IsADirectoryError, PermissionError... (with the file name),
    DirectIOUnsupported when the filesystem refuses O_DIRECT, ValueError for an unknown
    mode, backend or engine, or sqpoll without io_uring.
    """
    cls = CFile if _engine.engine_kind(engine) == "c" else File
    return cls(path, mode, direct=direct, backend=backend, sqpoll=sqpoll)
