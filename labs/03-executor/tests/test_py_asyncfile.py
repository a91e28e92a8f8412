"""Lab 3, Python half: AsyncFile (miniloop/files.py), a file whose calls run in the pool.

open, pread and write run in a worker (os.open, os.pread, os.pwrite spied on), at the
offset asked for, and concurrent reads give back the file byte for byte.
"""
from __future__ import annotations

import errno
import fcntl
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from miniloop.executor import ThreadPool
from miniloop.files import AsyncFile
from miniloop.loop import EventLoop

from executor_support import pool, run  # noqa: F401  (pool: a fixture)
from grading.loops import loop  # noqa: F401  (a fixture)


# --- AsyncFile -----------------------------------------------------------------------------------

def _spy_thread(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[int, tuple[Any, ...]]]:
    """Record (thread, args) of every call of os.<name>, and still make the call."""
    calls: list[tuple[int, tuple[Any, ...]]] = []
    real = getattr(os, name)

    def wrapper(*args: Any) -> Any:
        calls.append((threading.get_ident(), args))
        return real(*args)

    monkeypatch.setattr(os, name, wrapper)
    return calls


@pytest.mark.hint("py-asyncfile-open")
def test_asyncfile_open_runs_in_a_worker(loop: EventLoop, pool: ThreadPool, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """AsyncFile.open calls os.open in a worker; a missing file raises FileNotFoundError at the await."""
    path = tmp_path / "hello.bin"
    path.write_bytes(b"hello")
    opens = _spy_thread(monkeypatch, "open")

    async def open_it(p: Path) -> AsyncFile:
        return await AsyncFile.open(str(p), "rb", pool=pool)

    f = run(loop, open_it(path))
    try:
        assert isinstance(f, AsyncFile) and f.name == str(path), f"AsyncFile.open gave {f!r}"
        assert [args[0] for _, args in opens] == [str(path)], f"os.open calls: {opens}"
        assert opens[0][0] != threading.get_ident(), (
            "os.open ran in the loop's thread: open can block as well (aiofiles runs it in the pool); "
            "use run_in_executor")
        flags = fcntl.fcntl(f.fileno(), fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == os.O_RDONLY, "mode 'rb' must open the file read-only (use open_flags(mode))"
        assert fcntl.fcntl(f.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "the file's fd is not close-on-exec"
    finally:
        if not f.closed:
            os.close(f.fileno())
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError) as info:
        run(loop, open_it(missing))
    assert info.value.errno == errno.ENOENT and info.value.filename == str(missing), (
        f"errno {info.value.errno}, filename {info.value.filename!r}: the error of os.open must arrive unchanged")


@pytest.mark.hint("py-asyncfile-read")
def test_asyncfile_read_is_pread_with_an_offset_and_read_without(loop: EventLoop, pool: ThreadPool, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """read(n, offset) leaves the file position alone (pread); read(n) reads on from it; read() to the end."""
    data = random.Random(1).randbytes(300_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)

    async def scenario() -> dict[str, bytes]:
        got = {}
        async with AsyncFile.open(str(path), "rb", pool=pool) as f:
            fd = f.fileno()
            preads = _spy_thread(monkeypatch, "pread")
            reads = _spy_thread(monkeypatch, "read")
            got["read(1000, offset=5000)"] = await f.read(1000, offset=5000)
            got["read(100)"] = await f.read(100)
            got["read(100) again"] = await f.read(100)
            got["read(50, offset=size - 20)"] = await f.read(50, offset=len(data) - 20)
            got["read(10, offset=size)"] = await f.read(10, offset=len(data))
            got["read()"] = await f.read()
            got["read(10) at the end"] = await f.read(10)
            got["read(offset=1000)"] = await f.read(offset=1000)
        used = [ident for ident, args in preads + reads if args and args[0] == fd]
        assert used, "no os.pread or os.read on the file's fd: how did the bytes arrive?"
        assert threading.get_ident() not in used, "the file was read in the loop's thread: use run_in_executor"
        assert f.closed, "`async with` must close the file at the end of the block"
        return got

    got = run(loop, scenario())
    expected = {
        "read(1000, offset=5000)": data[5000:6000],
        "read(100)": data[:100],                       # the pread before did not move the position
        "read(100) again": data[100:200],
        "read(50, offset=size - 20)": data[-20:],      # a short read at the end of the file
        "read(10, offset=size)": b"",
        "read()": data[200:],
        "read(10) at the end": b"",
        "read(offset=1000)": data[1000:],
    }
    for call, want in expected.items():
        have = got[call]
        assert have == want, (
            f"f.{call} returned {len(have)} bytes that differ from the file's {len(want)} (starting "
            f"{have[:8]!r}, expected {want[:8]!r}). With an offset use os.pread (the position does not "
            "move); without, os.read; n < 0: _read_all")


@pytest.mark.hint("py-asyncfile-read")
def test_concurrent_preads_give_back_the_file_byte_for_byte(loop: EventLoop, pool: ThreadPool, tmp_path: Path) -> None:
    """32 preads in flight at once, in two workers, reassemble the file exactly."""
    data = random.Random(2).randbytes(1 << 20)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    chunk = 32 << 10

    async def scenario() -> bytes:
        async with AsyncFile.open(str(path), "rb", pool=pool) as f:
            tasks = [loop.create_task(f.read(chunk, offset=off)) for off in range(0, len(data), chunk)]
            return b"".join([await task for task in tasks])

    got = run(loop, scenario())
    assert got == data, (
        f"32 concurrent reads gave back {len(got)} bytes {'that differ from' if len(got) == len(data) else 'instead of'} "
        f"the file's {len(data)}: concurrent reads need os.pread (each at its own offset)")


@pytest.mark.hint("py-asyncfile-write")
def test_asyncfile_write_at_the_position_and_at_an_offset(loop: EventLoop, pool: ThreadPool, tmp_path: Path) -> None:
    """The talk's aiofile example: write("Hello "), write("world", offset=7), fsync, read it back."""
    path = tmp_path / "hello.txt"

    async def scenario() -> tuple[int, int, int, bytes]:
        async with AsyncFile.open(str(path), "w+b", pool=pool) as f:
            first = await f.write(b"Hello ")
            second = await f.write(b"world", offset=7)
            await f.fsync()
            third = await f.write(b"!")          # at the position: pwrite did not move it
            return first, second, third, await f.read(offset=0)

    first, second, third, back = run(loop, scenario())
    assert (first, second, third) == (6, 5, 1), f"write() returned {(first, second, third)}: the counts written"
    assert back == path.read_bytes() == b"Hello !world", (
        f"the file holds {path.read_bytes()!r} (read back: {back!r}), expected b'Hello !world': write(data) "
        "writes at the file position (os.write), write(data, offset) at offset without moving it (os.pwrite)")
