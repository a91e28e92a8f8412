# kernaio, the capstone (lab 6): 64 reads in flight at once, O_DIRECT, and no thread.
# py/tests/test_slides.py runs this file.
#
#   python3 slides/snippets/kernaio_gather.py FILE     (FILE: 256 KiB or more, on a disk, not tmpfs)
#
# Predict before you run it: how many threads does this process have while it reads?
import asyncio
import os
import sys

import kernaio


async def main(path):
    async with kernaio.open(path, "rb", direct=True) as f:
        reads = (f.read(4096, offset=i * 4096) for i in range(64))
        blocks = await asyncio.gather(*reads)
        threads = len(os.listdir("/proc/self/task"))
    print(f"{sum(map(len, blocks))} bytes in 64 reads; threads: {threads}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
