"""xray: see what an "async" program really does — its syscalls, its threads, its stalls.

One toolkit serves the graders, the notebooks and `make reveal`:

    from xray import strace, proc
    tr = strace.run(["python3", "-c", "import os; os.listdir('.')"], trace="file")
    tr.threads_created            # [] — no hidden thread here
    with proc.launch(["sleep", "1"]) as p:
        proc.threads(p.pid)       # [Thread(tid=..., name='sleep')]

When a tool cannot run on this machine (no strace, ptrace forbidden in a container,
perf not permitted), the call raises `Unavailable` with the reason and what to do;
graders turn it into a skip that says so, never a silent pass.
"""


class Unavailable(RuntimeError):
    """A tracing tool cannot run here; str(exc) says why and what to do."""


__all__ = ["Unavailable"]
