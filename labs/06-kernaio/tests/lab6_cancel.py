"""Cancel reads while the kernel still owns them, and report what kernaio kept; then cancel storms.

    python lab6_cancel.py FILE ROUNDS     -> "key: value" lines, one per fact, printed as they are known

Lab 6's grader runs it in a process of its own: a use-after-free (a slot or buffer given
back while the kernel still writes into it) may abort the process ("corrupted double-linked
list", SIGSEGV), and the grader then names the last phase it printed.

1. One read into an aligned buffer, its completion held back (the loop stops watching the
   eventfd), its task cancelled: the kernel still owns the read, so kernaio must still count
   it in flight and hold the buffer (closing the mmap raises BufferError while exported).
2. ROUNDS storms: 64 reads (half into the caller's buffers, half into kernaio's own memory)
   submitted together, every other task cancelled right after the io_submit; the others
   must return the file's bytes, and at the end nothing may be left in flight.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

import kernaio
from kernaio import _engine

BLOCK = 4096


def say(key: str, value: object) -> None:
    print(f"{key}: {value}", flush=True)


async def settled(engine: _engine.Engine, patience: float = 30.0) -> None:
    """Return once the kernel holds nothing of this engine, or after `patience` seconds (a
    lost completion: the grader says so). A busy machine only makes it return later."""
    deadline = time.monotonic() + patience
    while engine.ctx.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


async def cancel_one_held_back(path: str) -> None:
    loop = asyncio.get_running_loop()
    async with kernaio.open(path, "rb") as f:
        await f.read(BLOCK, 0)                      # the engine exists now
        engine = _engine.for_running_loop()
        loop.remove_reader(engine.ctx.fileno())     # hold the completion back: the test decides
        buf = kernaio.aligned_buffer(16 * BLOCK)
        task = asyncio.create_task(f.readinto(buf, 0))
        while engine.ctx.in_flight == 0 and not task.done():
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        say("in flight after the cancel", engine.ctx.in_flight)
        try:
            buf.close()                             # refused while kernaio holds an export
            say("buffer released after the cancel", "yes")
        except BufferError:
            say("buffer released after the cancel", "no")
        loop.add_reader(engine.ctx.fileno(), engine._on_completions)
        await settled(engine)
        say("in flight once the completion came", engine.ctx.in_flight)


async def storms(path: str, rounds: int, size: int, content: bytes) -> None:
    blocks = size // BLOCK
    wrong = cancelled = 0
    async with kernaio.open(path, "rb") as f:
        await f.read(BLOCK, 0)
        engine = _engine.for_running_loop()
        buffers = [kernaio.aligned_buffer(BLOCK) for _ in range(32)]
        for r in range(rounds):
            offsets = [((r * 64 + k) * 7 % blocks) * BLOCK for k in range(64)]
            tasks = [asyncio.create_task(f.readinto(buffers[k // 2], off) if k % 2 else f.read(BLOCK, off))
                     for k, off in enumerate(offsets)]
            await asyncio.sleep(0)                  # the tasks run and queue their requests
            await asyncio.sleep(0)                  # the flush: one io_submit, all in flight
            for t in tasks[r % 2::2]:
                cancelled += t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await settled(engine)                   # cancelled reads may still fill the buffers
            for k, (off, res) in enumerate(zip(offsets, results)):
                if isinstance(res, BaseException):
                    continue                        # cancelled (or a request that failed: counted below)
                got = res if isinstance(res, bytes) else bytes(buffers[k // 2])
                wrong += got != content[off:off + BLOCK]
        say("storms", rounds)
        say("cancelled", cancelled)
        say("wrong reads", wrong)
        await settled(engine)
        say("in flight after the storms", engine.ctx.in_flight)
        say("free slots after the storms", f"{engine.ctx.free} of {_engine.CAPACITY}")


def main(path: str, rounds: int) -> None:
    with open(path, "rb") as fh:
        content = fh.read()
    say("phase", "one cancelled read, its completion held back")
    asyncio.run(cancel_one_held_back(path))
    say("phase", f"{rounds} cancel storms of 64 reads")
    asyncio.run(storms(path, rounds, os.path.getsize(path), content))
    say("phase", "done")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
