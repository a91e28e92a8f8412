"""reveal: `make reveal` -- every "async" file API of this machine: its threads, its loop's waits for the device.

    make reveal                 # or: python -m reveal [--api NAME] [--reads 16Kx256] [--out DIR]
    make reveal REPEAT=3        # three runs, each row's verdicts side by side

For each API (asyncio.to_thread, run_in_executor, aiofiles, aiofile on each caio
backend, glibc's POSIX aio, the labs' own executor, kernaio, io_uring...), each kind of
file (buffered, O_DIRECT) and each size of read (16 KiB: what applications read; 4 MiB:
big enough to see each call's cost), the same reads run from a cold page cache three ways:

- plain, with a 1 ms heartbeat coroutine beside them and /proc/PID/task sampled: how late
  the loop let the heartbeat wake up, with no tracer slowing anything down;
- under `strace -f`: which thread made which call (the data file's descriptor is followed),
  which threads the process created. strace is exact at that, and only at that: it stops
  the thread at every traced call, so its durations carry its own delay;
- under `perf record`, three passes: every I/O call of every thread, and every time a
  thread left a CPU and in which state (xray.timeline). A loop thread asleep in D state
  inside a read, io_submit or io_uring_enter is waiting for the device; nobody is stopped.

One table per size comes out (build/reveal/reveal.txt; reveal.json, a list of rows with
the fields api, file_mode, read_size, reads, user_threads, kernel_threads, io_syscalls,
io_thread, device_wait_ms, device_wait_longest_ms, waited_passes, passes, submit_ms,
submit_longest_ms, verdict, reason, and a few more), and a picture per size
(build/reveal/threads-16KiB.png, threads-4MiB.png: a lane per thread, its calls and its
waits).

The verdict, by the first rule that applies (report.legend prints them under the table):

1. `threads`      -- strace saw a read of the file on a thread other than the loop's;
2. `blocks-loop`  -- the loop thread waited for the device inside an I/O call during the
                     reads, in more than half of the passes (caio's linux_aio on a buffered
                     file: a buffered io_submit reads the data before it returns);
3. `kernel-async` -- else, the bytes moved through io_submit/io_getevents or io_uring: the
                     loop only submitted and collected. What those calls cost it anyway
                     (CPU work: pinning a 4 MiB O_DIRECT buffer, io_uring starting a cold
                     buffered read) is the "submit cost" column, shown but not judged;
4. `blocks-loop`  -- else, plain reads ran on the loop thread;
5. `unavailable: <why>` -- the API cannot run here: a module not built yet, a backend
                     caio cannot load, O_DIRECT refused by the filesystem, or an API whose
                     own buffer is not aligned, so the kernel refuses its O_DIRECT reads
                     with EINVAL (the calls it made are still shown, measured).

Two counts are reported side by side on purpose: `user_threads` counts every thread the
process created, and `io_thread` says where the reads ran. They differ for aiofile on
caio's linux backend: aiofile opens and closes files (and stats them, for a read of
unknown size) with loop.run_in_executor even there, so it creates a thread, yet every read
is an io_submit on the loop thread. Both are true; the table shows both.

Where perf cannot run, strace's durations stand in (a loop call of 1 ms or more is a
stall) and the table's header says the verdicts are degraded; without strace, only the
heartbeat and /proc are measured, and each row says so.

Modules: probes.py (one small async function per API: add a row there), probe.py (one
probe, N passes, with its heartbeat, in a process of its own), run.py (the runs),
analyze.py (strace -> who read where; the verdict), costs.py (perf's timeline -> the
loop's device waits and submit cost), report.py (tables, JSON, pictures, agreement).
"""
