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
The C extension (_kernaio, src/_kernaio.c) releases the GIL around every system call and
holds each buffer until its completion, so a cancelled read never lets the kernel write
into freed memory.

direct=True (O_DIRECT) is the point: io_submit returns at once. With direct=False,
io_submit copies through the page cache before returning, so each request stalls the loop
(caveat 1 of the talk): kernaio does that only when asked, never as a silent fallback.

kernaio.open(..., backend="io_uring") sends the same requests through an io_uring instead
(_kernaio.UringContext, src/uring_context.c): same API, one io_uring_enter per loop
iteration. There direct=False does not stall the loop, but what must block is handed to
iou-wrk KERNEL threads of the process. Chosen explicitly; the default stays "aio".

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
