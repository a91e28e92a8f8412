# The talk's aiofile example, exactly as printed on the slide. It does not run:
# the body of `async with` is not indented, so Python stops at compile time with
# IndentationError. aiofile_fixed.py is the same program, repaired.
import asyncio
from aiofile import AIOFile


async def main():
    async with AIOFile("/tmp/hello.txt", 'w+') as afp:
    await afp.write("Hello ")
    await afp.write("world", offset=7)
    await afp.fsync()

    print(await afp.read())


loop = asyncio.get_event_loop()
loop.run_until_complete(main())
