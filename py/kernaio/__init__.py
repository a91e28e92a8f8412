"""kernaio: asyncio file I/O on Linux kernel AIO (io_submit), with no thread anywhere.

    import kernaio
    async with kernaio.open(path, "rb", direct=True) as f:     # also "wb", "r+b", ...
        data = await f.read(4096, offset=0)                     # bytes
        n = await f.readinto(buf, offset=8192)                  # any writable buffer
        n = await f.write(data, offset=0)                       # any bytes-like object
        await f.fsync()
        f.alignment                                             # what O_DIRECT needs here
    buf = kernaio.aligned_buffer(1 << 20)                       # writable, page-aligned

How it works: each running event loop gets one kernel AIO context (io_setup), made on
first use and destroyed when the loop is closed or collected (_engine.py). Requests made
during one loop iteration are queued and sent by ONE io_submit (a call_soon flush); more
than the context holds wait in the queue. The kernel signals completions on an eventfd
watched with loop.add_reader (public API: uvloop works too); io_getevents collects them.
The C extension (_kernaio; its AIO backend is src/aio_context.c) releases the GIL around
every system call and holds each buffer until its completion, so a cancelled read never lets
the kernel write into freed memory.

direct=True (O_DIRECT) is the point: io_submit hands the requests to the device and
returns before the data moves, so the loop does not wait for the disk. It is not free:
before returning, io_submit pins the buffer's pages and builds the block requests, which
costs more the bigger the request (on the workshop VM: 0.02 ms for 4 KiB, 0.7 ms for
16 MiB); it sleeps until the device frees room when its queue is full (more requests in
flight than /sys/block/DEV/queue/nr_requests); and on ext4 a write that extends the file,
or is not aligned to the filesystem's blocks, is complete, data written, when io_submit
returns. Notebook 05 measures each. With direct=False, io_submit copies through the page
cache before returning, reading from the disk what is not cached, so each request stalls
the loop (caveat 1 of the talk): kernaio does that only when asked, never as a silent
fallback.

kernaio.open(..., backend="io_uring") sends the same requests through an io_uring instead
(_kernaio.UringContext, src/uring_context.c): same API, one io_uring_enter per loop
iteration. There direct=False does not wait for the disk inside io_uring_enter, but it is
not free either: a cached read is copied there, and an uncached one starts its readahead
there (pages allocated, block requests sent), which costs more the bigger the read. What
would block (a buffered write, every fsync, an extending O_DIRECT write on ext4) is handed
to iou-wrk KERNEL threads of the process. Chosen explicitly; the default stays "aio".

Layout: py/kernaio/ IS the package (py/ is on sys.path through the venv's .pth file); the
extension is built in place next to this file by `make setup`
(`python setup.py build_ext --inplace` in this directory). There is no installed copy, so
exactly one `kernaio` is importable, and it has the compiled module.

Two engines, one behaviour: kernaio.open(..., engine="c"), the default, runs requests on a C
engine (src/engine.c; File.read returns its checked Request, the coroutine awaited: no frame
per request); engine="python" (or $KERNAIO_ENGINE=python) on _engine.py's, lab 6's. And
kernaio.open(..., backend="io_uring", sqpoll=True) asks for io_uring's kernel submission
thread (iou-sqp): no io_uring_enter per batch, a CPU spinning meanwhile; never a default.
"""
from kernaio._file import Alignment, CFile, DirectIOUnsupported, File, aligned_buffer, open

__all__ = ["Alignment", "CFile", "DirectIOUnsupported", "File", "aligned_buffer", "open"]
