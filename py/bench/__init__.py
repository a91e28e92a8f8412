"""bench: `make bench` -- kernaio against every peer, 4 KiB random reads, one run, one table.

    make bench                       # or: python -m bench [--quick] [--seconds S] [--qd N ...] [--api NAME ...]

Each API reads random 4 KiB blocks of a 1 GiB file (build/data, or $LAB_DATA_DIR; made
once with random bytes, then reused) with QD requests in flight, QD = 1, 8, 32, 128, for a
few seconds, in a process of its own (bench.worker), while the parent samples
/proc/PID/task. The APIs:

- kernaio (O_DIRECT, io_submit from the event loop, the C engine), kernaio (Python engine):
  the same on lab 6's engine, kernaio (io_uring) and kernaio (io_uring, SQPOLL): the same
  reader with kernaio.open(..., backend="io_uring"[, sqpoll=True]); kernaio (uvloop): the same
  reads on uvloop's event loop instead of asyncio's;
- asyncio.to_thread(os.preadv) and aiofiles (O_DIRECT too: they read into an aligned buffer);
- aiofile on each caio backend that loads (CAIO_IMPL=linux|thread|python|uring). caio reads
  into a buffer it allocates itself, which O_DIRECT refuses (EINVAL), so these rows read
  buffered files, with the file's pages dropped first (posix_fadvise DONTNEED); the
  table says so on each of them;
- asyncio alone (no I/O): the same coroutines awaiting futures that one callback per loop
  iteration resolves; asyncio's own cost per await, the most IOPS any asyncio file library
  can reach on this CPU (left out of iops.png: its scale would flatten the other lines);
- fio with the libaio and io_uring engines, and io_uring with its SQPOLL thread (--direct=1,
  same block size and depth): what the device gives a C program with no interpreter in the
  way, the ceiling.

For each (API, QD): IOPS, p50/p99 latency of one read, the threads alive beside the main
one during the reads (user threads and the kernel's io_uring workers), and the worst
lateness of a coroutine that sleeps 1 ms at a time (a loop stall). Out come a table
(printed, and build/bench/bench.txt), bench.json and iops.png (IOPS against QD, fio as
the ceiling), with the ratios kernaio/fio-libaio and kernaio/each peer at each QD, and the
five targets of issue 19, each met or missed from this run's own measurements (report.py):
CPU per read at QD 32 within 1.15 x fio-libaio's + asyncio alone's; at least every Python
peer's IOPS at every QD (3%), SQPOLL at least caio's io_uring; at QD 32 0.8 x fio-libaio
(SQPOLL 1.0 x, beside fio's own SQPOLL reader); no loop stall over max(1 ms, 1.5 x an idle
loop's, sampled before each QD); nothing lost (lost.py). A target between two rows is judged
on the median of three rounds of them run back to back (run.paired_rounds).

Then the echo benchmark (`--only echo`; bench.echo, bench.echo_servers, bench.echo_report):
the lab-2 C reactor and mini loop, asyncio and uvloop (one Protocol) and a thread-per-connection
server under one C load generator (c/loadgen); echo.txt, echo.json, echo.png, ratios to asyncio.

Modules: apis.py (one reader per API: add a row there), worker.py (one measurement in
its own process), fio.py (fio's runs and its JSON), run.py (every run, sampled),
report.py (table, JSON, picture).
"""
