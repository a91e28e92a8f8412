"""Read COUNT blocks of 4 KiB of FILE with kernaio, all made in one loop iteration (one gather).

    python lab6_reader.py FILE COUNT      -> prints "read: N bytes in COUNT requests crc32 XXXXXXXX"

Lab 6's graders run it under strace to see what the kernel sees.
"""
from __future__ import annotations

import asyncio
import sys
import zlib

import kernaio


async def main(path: str, count: int) -> None:
    async with kernaio.open(path, "rb") as f:
        parts = await asyncio.gather(*(f.read(4096, i * 4096) for i in range(count)))
    data = b"".join(parts)
    print(f"read: {len(data)} bytes in {count} requests crc32 {zlib.crc32(data):08x}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
