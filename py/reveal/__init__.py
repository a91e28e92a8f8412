"""reveal: `make reveal` -- every "async" file API of this machine, traced: its threads, its stalls.

    make reveal                        # or: python -m reveal [--api NAME] [--blocks N] [--out DIR]

For each API (asyncio.to_thread, run_in_executor, aiofiles, aiofile on each caio
backend, glibc's POSIX aio, the lab's own executor, ...) and each kind of file
(buffered, O_DIRECT), the same reads run twice from a cold page cache: once plain with
a 1 ms heartbeat coroutine beside them, once under `strace -f -ttt -T`, while
/proc/PID/task is sampled. One table comes out (build/reveal/reveal.txt, and
reveal.json: a list of rows with the fields api, file_mode, user_threads,
kernel_threads, io_syscalls, io_thread, max_stall_ms, verdict, reason, and a few more),
and a picture of the threads at work (build/reveal/threads.png).

The two axes of "really async" (the talk: "all that has await in it isn't always
really async"):

- hidden threads: user threads the process created (clone/clone3 under strace), and
  the kernel's own workers for it (iou-wrk-*, iou-sqp-*), which no syscall shows but
  /proc/PID/task does;
- loop stalls: how long the event loop's thread sat inside one I/O call (strace -T),
  and how late a coroutine that sleeps 1 ms at a time woke up (the heartbeat, in the
  run without strace, which slows everything down ~20x).

The verdict, by the first rule that applies:

1. `threads`      -- a call that moved the bytes (read, pread64, preadv... on the data
                     file) ran on a thread other than the loop's;
2. `blocks-loop`  -- else, one I/O call of the loop thread lasted at least the threshold
                     (1 ms; in every traced run, so that a tracer preempted once on a busy
                     machine does not make a stall): caio's linux_aio on a buffered file
                     sits in io_submit while the kernel reads, since a buffered io_submit
                     does the read before it returns;
3. `kernel-async` -- else, the bytes moved through io_submit/io_getevents or io_uring
                     with no stall: the kernel did the reads (the kernel-thread column
                     says whether it used threads of its own to do so);
4. `blocks-loop`  -- else, plain reads ran on the loop thread: each one waits for the disk;
5. `unavailable: <why>` -- the API cannot run here: a module not built yet, a backend
                     caio cannot load, O_DIRECT refused by the filesystem, or an API whose
                     own buffer is not aligned, so the kernel refuses its O_DIRECT reads
                     with EINVAL (the calls it made are still shown, measured).

Two counts are reported side by side on purpose: `user_threads` counts every thread
the process created, and `io_thread` says where the reads ran. They differ for aiofile
on caio's linux backend: aiofile opens and closes files (and stats them, for a read of
unknown size) with loop.run_in_executor even there, so it creates a thread, yet every
read is an io_submit on the loop thread. Both are true; the table shows both.

Without strace (a container without ptrace), the heartbeat and /proc parts still run,
and each row says that the syscalls could not be seen.

Modules: probes.py (one small async function per API: add a row there), probe.py (one
probe with its heartbeat, in a process of its own), analyze.py (trace -> numbers ->
verdict), run.py (the runs), report.py (table, JSON, picture).
"""
