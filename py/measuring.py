"""The measuring kit that `make reveal` and `make bench` share, and the notebooks after them.

Both ask the same question of an async file API -- does the event loop keep its pace while
the reads run? -- and answer it with the same tools, kept here so neither reaches into the other:

    Heartbeat          a coroutine that sleeps 1 ms again and again and notes how late it wakes
    drop_cache(path)   the file's pages out of the page cache: the next reads go to the disk
    aligned_buffer(n)  a page-aligned buffer, what O_DIRECT wants
    make_data_file(n)  the file of random bytes they read, made once in the data directory
    child_env()        the environment of a measured child process (`python -m reveal.probe`, bench.worker)
    Unsupported        "this API cannot run this way here", the row's reason
    module(name)       an import that costs nothing inside the measured window
    require_caio_backend(impl)   caio on the backend asked for, or Unsupported
    cannot_write, write_all      the outputs: checked before measuring, written after
"""
from __future__ import annotations

import importlib
import mmap
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from paths import DATA_DIR, ROOT

HEARTBEAT = 0.001   # seconds the heartbeat asks to sleep
SETTLE = 0.02       # the heartbeat runs this long before the reads start


class Heartbeat:
    """Sleep HEARTBEAT again and again on the loop; remember the worst lateness.

    clock and sleep are the loop's own (asyncio's, uvloop's or the lab's miniloop), so the
    lateness is what a coroutine of that loop suffers."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.clock = clock
        self.sleep = sleep
        self.worst = 0.0
        self.ticks = 0
        self.stopped = False

    async def run(self) -> None:
        while not self.stopped:
            asked = self.clock()
            await self.sleep(HEARTBEAT)
            late = self.clock() - asked - HEARTBEAT
            self.ticks += 1
            self.worst = max(self.worst, late)


def drop_cache(path: str | Path) -> None:
    """Evict the file's clean pages from the page cache, so the next reads go to the disk.

    posix_fadvise(DONTNEED) needs no root, unlike /proc/sys/vm/drop_caches; dirty pages stay,
    which is why make_data_file writes its file out before anyone reads it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def aligned_buffer(size: int) -> mmap.mmap:
    """A writable buffer aligned to a page (anonymous memory): what O_DIRECT needs."""
    return mmap.mmap(-1, size)


def data_file(size: int) -> Path:
    """The data file of `size` bytes (whole MiB), in the labs' data directory: build/data or
    $LAB_DATA_DIR, never tmpfs (O_DIRECT). reveal named it first; bench reads the same one."""
    return DATA_DIR / f"reveal-{size >> 20}MiB.bin"


def make_data_file(size: int) -> Path:
    """Create the data file of `size` bytes once (random bytes, written to the disk); reuse it afterwards."""
    if size <= 0 or size % (1 << 20):
        raise ValueError(f"a data file is a whole number of MiB, not {size} bytes")
    path = data_file(size)
    if path.exists() and path.stat().st_size == size:
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")   # a run stopped half-way leaves no short file under the real name
    with open(partial, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())   # dirty pages cannot be dropped from the cache: write them out now
    partial.rename(path)
    return path


def child_env() -> dict[str, str]:
    """This environment for a child that measures: this checkout's py/ first on its path, and no
    CAIO_IMPL (the child sets it for the caio rows alone; nobody else's must leak in)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "py"), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("CAIO_IMPL", None)
    return env


class Unsupported(Exception):
    """This API cannot run this way here; str(exc) says why (the row's reason)."""


def module(name: str) -> Any:
    """A module the measured code `needs`: already imported by then, so this costs the loop nothing.

    (Importing aiofile and caio takes ~80 ms of the loop thread: inside the measured
    window, that would be the worst "stall" of every row that uses them.)
    """
    return importlib.import_module(name)


# CAIO_IMPL value -> the module caio picks for it. Without CAIO_IMPL, caio takes the first
# it can load, in this order. When it cannot load the one asked for, it warns and takes
# its default: require_caio_backend checks which one it really got.
CAIO_BACKENDS = {
    "uring": "caio.linux_uring_asyncio",      # io_uring (with SQPOLL when the kernel allows it)
    "linux": "caio.linux_aio_asyncio",        # io_submit, completions through an eventfd
    "thread": "caio.thread_aio_asyncio",      # a C thread pool doing pread
    "python": "caio.python_aio_asyncio",      # multiprocessing.pool.ThreadPool doing os.pread
}


def require_caio_backend(impl: str) -> None:
    """Unsupported unless caio (imported with CAIO_IMPL=impl) really runs on that backend."""
    caio = module("caio")
    got = caio.AsyncioContext.__module__
    if got != CAIO_BACKENDS[impl]:
        raise Unsupported(f"caio {caio.__version__} cannot load its {impl} backend here (it chose {got})")


def cannot_write(out: Path, target: str) -> str:
    """Why the outputs (out) or the data files (the labs' data directory) cannot be written, with
    what to do; '' when both can. Checked before measuring, so no minute of measuring is lost."""
    from xray.causes import unwritable
    problems = [p for p in (unwritable(out), unwritable(DATA_DIR)) if p]
    if not problems:
        return ""
    return (f"make {target}: {'; '.join(problems)}, so nothing was measured. Write elsewhere: "
            f"python -m {target} --out DIR, and LAB_DATA_DIR=DIR for its data file (a directory on a disk, "
            "not tmpfs); or copy the checkout to a writable place (git clone) and run make there.")


def write_all(out: Path, table_name: str, table: str, outputs: dict[str, Callable[[Path], None]],
              elapsed: float, root: Path) -> None:
    """Write the table and each output (name -> writer) into out; print the table, then what
    was written where (relative to root when inside it). make reveal and make bench both end so."""
    print("\n" + table)   # first: whatever happens to the files, the measurement is not lost
    try:
        where = str(out.resolve().relative_to(root))
    except ValueError:
        where = str(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / table_name).write_text(table)
        for name, write in outputs.items():
            write(out / name)
    except OSError as err:
        print(f"The table is above, but it could not be written to {where}/: {err}. "
              "Run again with --out pointing at a writable directory.")
        return
    print(f"Written to {where}/: {', '.join([table_name, *outputs])} ({elapsed:.0f} s)")
