# The talk's aiofile example, repaired (needs the aiofile package: pip install aiofile).
#
#   python3 aiofile_fixed.py [PATH]        (default: hello.txt in a fresh temporary folder)
#
# Changes from aiofile_as_printed.py:
#   - the body of `async with` is indented (the slide's IndentationError);
#   - the file name is a parameter, so two runs never share /tmp/hello.txt;
#   - asyncio.run(main()) instead of get_event_loop().run_until_complete(): outside
#     a running loop, get_event_loop() is deprecated since Python 3.10;
#   - the result is printed with repr(), to make the surprise visible.
#
# Predict before you run it: "Hello " is 6 characters, and "world" is written at
# offset 7. What is at offset 6? aiofile's write(data, offset) is a pwrite: it
# does not append, it writes exactly there, and the gap it jumps over reads back
# as a NUL byte (a hole). Also note: every write says offset=0 unless told
# otherwise, so there is no "current position" at all.
import asyncio
import sys
import tempfile
from pathlib import Path

from aiofile import AIOFile


async def main(path: Path) -> None:
    async with AIOFile(str(path), 'w+') as afp:
        await afp.write("Hello ")
        await afp.write("world", offset=7)
        await afp.fsync()

        text = await afp.read()
        print(repr(text))
        print(f"{len(text)} characters; offset 6 holds {text[6]!r}, a NUL: the hole between the two writes")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(main(Path(folder) / "hello.txt"))
