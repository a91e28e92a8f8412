# What one waiting thing costs in asyncio: a Task, its coroutine (with its frame) and the Future
# it awaits, measured with tracemalloc. py/tests/test_slides.py runs this file.
#
#   python3 slides/snippets/waiting_task_size.py
#
# Predict before you run it: a thread reserves 8 MiB of stack (ulimit -s); how much is a Task?
import asyncio
import gc
import sys
import tracemalloc

COUNT = 10_000


async def wait_for(fut):
    await fut


async def main():
    loop = asyncio.get_running_loop()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    futures = [loop.create_future() for _ in range(COUNT)]
    tasks = [asyncio.create_task(wait_for(fut)) for fut in futures]
    await asyncio.sleep(0)            # every task runs up to its await and is suspended there
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    grown -= sys.getsizeof(futures) + sys.getsizeof(tasks)   # the two lists are the measurement's, not asyncio's
    parts = ", ".join(f"{what} {sys.getsizeof(obj)} B" for what, obj in
                      (("Task", tasks[0]), ("coroutine", tasks[0].get_coro()), ("Future", futures[0])))
    print(f"one waiting Task with its coroutine and Future: {grown / COUNT:.0f} bytes "
          f"(tracemalloc, {COUNT:,} of them; sys.getsizeof: {parts})")
    for fut in futures:
        fut.set_result(None)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
