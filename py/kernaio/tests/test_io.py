"""kernaio's surface: reads, writes, fsync, alignment, buffered mode, and every bad input answered clearly."""
from __future__ import annotations

import array
import asyncio
import errno
import io
import os
from pathlib import Path

import pytest

import kernaio
from kernaio import _engine, _kernaio


def test_read_readinto_alignment(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb", direct=True) as f:
            al = f.alignment
            assert al.memory > 0 and al.offset > 0 and 4096 % al.offset == 0
            assert await f.read(4096, offset=8192) == content[8192:12288]
            assert await f.read(4096) == content[:4096]
            buf = kernaio.aligned_buffer(8192)
            assert await f.readinto(buf, offset=4096) == 8192
            assert buf[:] == content[4096:12288]
            # End of file: a short read, then nothing.
            assert await f.read(8192, offset=len(content) - 4096) == content[-4096:]
            assert await f.read(4096, offset=len(content)) == b""
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(len(content) // 4096)))
            assert b"".join(parts) == content

    asyncio.run(main())


def test_write_fsync_and_read_back(scratch: Path) -> None:
    async def main() -> None:
        async with kernaio.open(scratch, "w+b") as f:
            assert await f.write(b"a" * 4096, offset=0) == 4096          # bytes: bounced to aligned memory
            buf = kernaio.aligned_buffer(4096)
            buf[:] = b"b" * 4096
            assert await f.write(buf, offset=4096) == 4096
            assert await f.write(bytearray(b"c" * 4096), offset=8192) == 4096
            ints = array.array("i", range(1024))                          # items of 4 bytes: 4096 bytes
            assert await f.write(ints, offset=12288) == 4096
            await f.fsync()
            assert await f.read(16384) == b"a" * 4096 + b"b" * 4096 + b"c" * 4096 + ints.tobytes()

    asyncio.run(main())
    assert scratch.read_bytes() == b"a" * 4096 + b"b" * 4096 + b"c" * 4096 + array.array("i", range(1024)).tobytes()


def test_buffered_mode_takes_any_offset(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb", direct=False) as f:
            assert f.alignment.offset == 1
            assert await f.read(100, offset=7) == content[7:107]
            buf = bytearray(33)
            assert await f.readinto(buf, offset=1) == 33 and bytes(buf) == content[1:34]

    asyncio.run(main())


def test_open_errors_name_the_file(data_dir: Path, data: tuple[Path, bytes]) -> None:
    missing = data_dir / "no-such-file"
    with pytest.raises(FileNotFoundError) as e1:
        kernaio.open(missing, "rb")
    assert e1.value.filename == str(missing) and e1.value.errno == errno.ENOENT
    with pytest.raises(IsADirectoryError) as e2:
        kernaio.open(data_dir, "rb")
    assert e2.value.filename == str(data_dir)
    with pytest.raises(IsADirectoryError):
        kernaio.open(data_dir, "wb")
    with pytest.raises(FileExistsError):
        kernaio.open(data[0], "xb")
    with pytest.raises(ValueError, match="mode"):
        kernaio.open(data[0], "r")


def test_refused_o_direct_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, data: tuple[Path, bytes]) -> None:
    # Modern tmpfs accepts O_DIRECT, so simulate a filesystem that answers open() with EINVAL.
    real_open = os.open

    def refuse(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refuse)  # the os module kernaio._file uses
    with pytest.raises(kernaio.DirectIOUnsupported, match="refuses O_DIRECT.*direct=False") as err:
        kernaio.open(data[0], "rb")
    assert err.value.errno == errno.EINVAL and err.value.filename == str(data[0])
    monkeypatch.undo()
    buffered = kernaio.open(data[0], "rb", direct=False)  # buffered was asked for: no error
    asyncio.run(buffered.close())


def test_bad_requests(data: tuple[Path, bytes]) -> None:
    path, _ = data

    async def main() -> None:
        async with kernaio.open(path, "rb") as f:
            n = f.alignment.offset
            with pytest.raises(ValueError, match=f"offset 100 is not a multiple of {n}"):
                await f.read(4096, offset=100)
            with pytest.raises(ValueError, match=f"length 100 is not a multiple of {n}"):
                await f.read(100)
            unaligned = memoryview(kernaio.aligned_buffer(8192))[1:4097]
            with pytest.raises(ValueError, match="memory alignment"):
                await f.readinto(unaligned)
            with pytest.raises(ValueError, match="offset must be >= 0"):
                await f.read(4096, offset=-4096)
            with pytest.raises(ValueError, match="size must be >= 0"):
                await f.read(-1)
            with pytest.raises(ValueError, match="more than one request"):
                await f.read(1 << 40)
            with pytest.raises(TypeError, match="integer"):
                await f.read("4096")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="integer"):
                await f.read(4096, offset=0.5)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="writable"):
                await f.readinto(b"\0" * 4096)
            with pytest.raises(TypeError, match="bytes-like"):
                await f.readinto("text")
            with pytest.raises(io.UnsupportedOperation):
                await f.write(b"x" * 4096)
        with pytest.raises(ValueError, match="closed file"):
            await f.read(4096)
        with pytest.raises(ValueError, match="closed file"):
            await f.fsync()

    asyncio.run(main())


def test_a_request_is_checked_when_made_and_pins_its_buffer(data: tuple[Path, bytes]) -> None:
    """The C Request type (src/request.c): the rest of the checks, any __index__ accepted, and
    a queued request's buffer pinned (a bytearray cannot be resized under it)."""
    path, content = data

    class Four:
        def __index__(self) -> int:
            return 4096

    async def main() -> None:
        async with kernaio.open(path, "rb") as f:
            n = f.alignment.offset
            with pytest.raises(ValueError, match="beyond any file"):
                await f.read(n, offset=2**63 - n)
            with pytest.raises(ValueError, match="more than one request"):
                await f.read(1 << 70)
            with pytest.raises(TypeError, match="C-contiguous"):
                await f.readinto(memoryview(kernaio.aligned_buffer(8192))[::2])
            assert await f.read(Four(), offset=Four()) == content[4096:8192]  # type: ignore[arg-type]
        async with kernaio.open(path, "rb", direct=False) as f:
            buf = bytearray(100)
            reading = asyncio.ensure_future(f.readinto(buf, 1))
            await asyncio.sleep(0)                  # its request is made and queued
            with pytest.raises(BufferError):
                buf.extend(b"x")
            assert await reading == 100 and buf == content[1:101]
            buf.extend(b"x")                        # the request is over: free again

    asyncio.run(main())


def test_a_request_ends_in_its_future(data: tuple[Path, bytes]) -> None:
    """Request.complete and fail (src/request.c), by hand: -errno becomes the OSError
    subclass it implies, with the file's name; a read_new gets its bytes, others the count;
    a future already done (cancelled) is left alone; no future yet: nothing to tell."""
    path, _ = data

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with kernaio.open(path, "rb", direct=False) as f:
            def request(op: int) -> _kernaio.Request:
                r = _kernaio.Request(f, op, f.fileno(), bytearray(8) if op == _kernaio.OP_READ else None, 0, 8)
                r.future = loop.create_future()
                return r

            r = request(_kernaio.OP_READ)
            r.complete(-errno.ENOENT, None)
            with pytest.raises(FileNotFoundError) as err:
                r.future.result()
            assert err.value.errno == errno.ENOENT and err.value.filename == str(path)
            r = request(_kernaio.OP_READ_NEW)
            r.complete(3, b"abc")
            assert r.future.result() == b"abc"
            r = request(_kernaio.OP_READ)
            r.complete(8, None)
            assert r.future.result() == 8
            r.complete(5, None)                 # done already: dropped, no InvalidStateError
            r.fail(ValueError("late"))
            assert r.future.result() == 8
            r = request(_kernaio.OP_READ)
            r.future.cancel()
            r.complete(8, None)
            assert r.future.cancelled()
            r = request(_kernaio.OP_READ)
            r.fail(ValueError("refused"))
            with pytest.raises(ValueError, match="refused"):
                r.future.result()
            unqueued = _kernaio.Request(f, _kernaio.OP_FSYNC, f.fileno(), None, 0, 0)
            unqueued.complete(0, None)
            unqueued.fail(ValueError("nobody to tell"))
            with pytest.raises(TypeError, match="complete"):
                unqueued.complete(0)            # type: ignore[call-arg]
            with pytest.raises(TypeError, match="fail"):
                unqueued.fail()                 # type: ignore[call-arg]

    asyncio.run(main())


def test_fd_closed_behind_our_back_is_ebadf(data: tuple[Path, bytes]) -> None:
    path, _ = data

    async def main() -> None:
        f = kernaio.open(path, "rb")
        await f.read(4096)          # the loop's context (and its eventfd) exist: the fd number stays free
        os.close(f.fileno())
        with pytest.raises(OSError) as err:
            await f.read(4096)
        assert err.value.errno == errno.EBADF and err.value.filename == str(path)
        f._closed = True  # its fd is gone already

    asyncio.run(main())


def test_io_error_from_the_kernel_has_errno_and_name(data: tuple[Path, bytes]) -> None:
    # A read from a write-only fd: io_submit accepts the iocb's fd, the kernel says EBADF.
    path, _ = data

    async def main() -> None:
        async with kernaio.open(path, "r+b") as f:
            f.readable = True
            wo = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            real = f._fd
            f._fd = wo
            try:
                with pytest.raises(OSError) as err:
                    await f.read(4096)
            finally:
                f._fd = real
                os.close(wo)
            assert err.value.errno == errno.EBADF and err.value.filename == str(path)

    asyncio.run(main())


def test_batches_and_queue_beyond_capacity(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb") as f:
            engine = _engine.for_running_loop()
            calls = engine.submit_calls
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(64)))
            assert b"".join(parts) == content[:64 * 4096]
            assert engine.submit_calls - calls == 1, "64 reads made in one iteration: one io_submit"
            # 2,000 requests, a context of 128: the rest wait in the queue, none fail.
            n = 2000
            parts = await asyncio.gather(*(f.read(4096, offset=(i % 256) * 4096) for i in range(n)))
            assert all(p == content[(i % 256) * 4096:(i % 256 + 1) * 4096] for i, p in enumerate(parts))
            assert engine.ctx.in_flight == 0 and not engine.queue

    asyncio.run(main())
