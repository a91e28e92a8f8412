"""posixaio: POSIX aio.h (glibc's aio_read) from Python through ctypes — lab 4 of the workshop.

    import posixaio
    data = posixaio.read_blocking(fd, 4096, 0)   # aio_read + aio_suspend (this thread sleeps)
    data = await posixaio.pread(fd, 4096, 0)      # in a running asyncio loop (SIGEV_THREAD)
    posixaio.in_flight()                          # requests glibc holds right now
    posixaio.callback_threads()                   # where the SIGEV_THREAD callbacks ran

    python -m posixaio.cat FILE --mode asyncio    # read a file, report the threads it sees

On Linux, glibc runs every aio.h request on threads of its own (see labs/04-posix-aio).
"""
from posixaio.aio import callback_threads, in_flight, pread, read_blocking

__all__ = ["callback_threads", "in_flight", "pread", "read_blocking"]
