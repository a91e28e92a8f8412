"""The two engines, one behaviour: what File.read promises as a coroutine, whichever engine runs it.

The Python engine's read is an `async def`; the C engine's returns its Request, which
plays the coroutine (src/awaitable.c). Every test here runs on both (conftest's `engine`
fixture) and checks what a caller can see: nothing happens until it is awaited, errors come
when awaited, asyncio's task functions take it, a coroutine is awaited once.
"""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import kernaio
from kernaio import _engine

BLOCK = 4096


def test_kernaio_open_picks_the_engine(data: tuple[Path, bytes], engine: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = data
    f = kernaio.open(path, "rb")
    assert f.engine == engine and isinstance(f, kernaio.File) and (type(f) is kernaio.CFile) == (engine == "c")
    assert f"engine={engine!r}" in repr(f)
    asyncio.run(f.close())
    other = "python" if engine == "c" else "c"
    g = kernaio.open(path, "rb", engine=other)       # the argument wins over $KERNAIO_ENGINE
    assert g.engine == other
    asyncio.run(g.close())
    with pytest.raises(ValueError, match="engine must be one of 'c', 'python', not 'rust'"):
        kernaio.open(path, "rb", engine="rust")
    with pytest.raises(ValueError, match="sqpoll=True needs backend=\"io_uring\""):
        kernaio.open(path, "rb", sqpoll=True)
    monkeypatch.setenv("KERNAIO_ENGINE", "fortran")
    with pytest.raises(ValueError, match=r"\$KERNAIO_ENGINE must be one of"):
        kernaio.open(path, "rb")


def test_a_read_is_a_coroutine_that_does_nothing_until_awaited(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb") as f:
            await f.read(BLOCK)                       # the engine exists: count what reaches it
            engine = _engine.for_running_loop()
            calls = engine.submit_calls
            unused: Coroutine[Any, Any, bytes] = f.read(BLOCK, BLOCK)
            assert asyncio.iscoroutine(unused) and inspect.isawaitable(unused)
            await asyncio.sleep(0.01)
            assert engine.submit_calls == calls and not engine.queue, "a read never awaited reached the engine"
            unused.close()
            task = asyncio.create_task(f.read(BLOCK, 2 * BLOCK))   # a task takes it, as any coroutine
            assert await task == content[2 * BLOCK:3 * BLOCK]
            assert await asyncio.wait_for(f.read(BLOCK, 3 * BLOCK), 5) == content[3 * BLOCK:4 * BLOCK]

    asyncio.run(main())


def test_errors_come_when_awaited_not_when_called(data: tuple[Path, bytes], scratch: Path) -> None:
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb") as f:
            misaligned = f.read(BLOCK, 100)                    # no exception yet
            bad_type = f.readinto(b"read-only", 0)
            not_writable = f.write(b"x" * BLOCK)
            results = await asyncio.gather(misaligned, bad_type, not_writable, f.read(BLOCK),
                                           return_exceptions=True)
            assert isinstance(results[0], ValueError) and "offset 100 is not a multiple" in str(results[0])
            assert isinstance(results[1], TypeError) and "writable" in str(results[1])
            assert type(results[2]).__name__ == "UnsupportedOperation"
            assert results[3] == content[:BLOCK], "one bad request must not disturb the others"
            pending = f.read(BLOCK)
        with pytest.raises(ValueError, match="closed file"):   # closed between the call and the await
            await pending

    asyncio.run(main())


def test_a_coroutine_is_awaited_once(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb") as f:
            reading = f.read(BLOCK)
            assert await reading == content[:BLOCK]
            with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
                await reading

    asyncio.run(main())


def test_awaited_outside_a_running_loop_is_a_runtime_error(data: tuple[Path, bytes]) -> None:
    """After a loop has run (and stopped) in this thread, a read driven by hand outside any
    loop must not find the old one (the C engine remembers the last running loop)."""
    path, content = data
    f = kernaio.open(path, "rb")
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(f.read(BLOCK)) == content[:BLOCK]
        stray = f.read(BLOCK)
        with pytest.raises(RuntimeError, match="no running event loop"):
            stray.send(None)
        stray.close()
    finally:
        loop.run_until_complete(f.close())
        loop.close()


def test_the_buffer_is_free_once_the_read_is_over(data: tuple[Path, bytes]) -> None:
    """A task keeps its coroutine as long as the task lives: a finished read must not keep
    the caller's buffer exported through it (a bytearray could not be resized)."""
    path, content = data

    async def main() -> None:
        async with kernaio.open(path, "rb", direct=False) as f:
            buf = bytearray(BLOCK)
            task = asyncio.ensure_future(f.readinto(buf, 0))
            assert await task == BLOCK and buf == content[:BLOCK]
            buf.extend(b"x")                                    # no export left, the task still held
            assert task.done()

    asyncio.run(main())
