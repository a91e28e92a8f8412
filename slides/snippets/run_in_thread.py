# The talk's slide "Thread based implementation": aiofile's run_in_thread, as printed,
# and the few lines that call it. py/tests/test_slides.py runs this file.
#
#   python3 slides/snippets/run_in_thread.py
#
# Predict before you run it: which thread reads the file?
import asyncio
import threading
from functools import partial


def run_in_thread(func, *args, **kwargs) -> asyncio.Future:
    loop = kwargs.pop('loop')       # type: asyncio.AbstractEventLoop
    assert not loop.is_closed(), "Event loop is closed"
    assert loop.is_running(), "Event loop is not running"

    return loop.run_in_executor(None, partial(func, *args, **kwargs))


def read_file(path):
    """A blocking read, and the name of the thread that did it."""
    with open(path, "rb") as f:
        return threading.current_thread().name, len(f.read())


async def main():
    loop = asyncio.get_running_loop()
    reader, size = await run_in_thread(read_file, __file__, loop=loop)
    print(f"the loop runs on {threading.current_thread().name}; "
          f"the {size}-byte read ran on {reader}")


if __name__ == "__main__":
    asyncio.run(main())
