"""Lab 5's grader helpers: kaio_cat and kaio_caveats (grading.programs.FileProgram), what a stuck one does, /proc.

The data files live in the labs' data directory (build/data, or $LAB_DATA_DIR), never in
/tmp (tmpfs refuses O_DIRECT), and the programs run in that directory with a short
relative name, so that strace's `openat(AT_FDCWD, "kaio-lab5.bin", ...)` finds the file's
descriptor whatever the path of the checkout. Before anything runs, the machine is asked
(xray.doctor) whether it has kernel AIO and O_DIRECT here: if not, the test is skipped
with the reason, never passed.

A program that does not end is not just "too slow": before it is stopped, the grader
looks at what it was doing (in which system call it sleeps, or that it spins on the CPU;
under strace, its last calls) and says which mistake does that.
"""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from grading.plugin import Impl
from grading.programs import DataFile, FileProgram
from xray import proc, strace
from xray.doctor import check_kernel_aio, check_o_direct, require


def require_kaio(args: Sequence[str] = ()) -> None:
    """Raise xray.Unavailable (the test is skipped, saying why) without kernel AIO or O_DIRECT here."""
    require(check_kernel_aio, check_o_direct)


# --- a program that does not end: what was it doing? ------------------------------------------

# The system calls a stuck reader can be in, by the number /proc/PID/syscall shows.
SYSCALLS = {
    "x86_64": {0: "read", 208: "io_getevents", 209: "io_submit", 232: "epoll_wait", 281: "epoll_pwait",
               333: "io_pgetevents", 441: "epoll_pwait2"},
    "aarch64": {63: "read", 4: "io_getevents", 2: "io_submit", 22: "epoll_pwait", 292: "io_pgetevents",
                441: "epoll_pwait2"},
}

# What each of them most likely means here, when the program sleeps in it for ever...
ASLEEP = {
    "io_getevents": ("io_getevents waits for completions that cannot come: min_nr larger than what the kernel really "
                     "has in flight (requests counted in flight that io_submit never took?)"),
    "epoll_wait": ("epoll_wait waits for an eventfd nobody bumps: every iocb must name it (IOCB_FLAG_RESFD and "
                   "aio_resfd, or io_set_eventfd)"),
    "read": ("a read that waits: reading an eventfd whose counter is 0 blocks, unless it was made with "
             "EFD_NONBLOCK"),
}
# ... or makes it again and again, never sleeping.
SPINNING = {
    "io_submit": ("io_submit was called again and again with no io_getevents between: after EAGAIN (the context "
                  "is full) ka_submit must stop and return; only a ka_reap makes room"),
    "epoll_wait": ("epoll_wait returned at once, again and again: the eventfd stays readable while its counter is "
                   "not read back to 0 (ka_eventfd_drain reads it)"),
}
SAME = {"io_pgetevents": "io_getevents", "epoll_pwait": "epoll_wait", "epoll_pwait2": "epoll_wait",
        "pread64": "read"}


def why(call: str, spinning: bool) -> str:
    return (SPINNING if spinning else ASLEEP).get(SAME.get(call, call), "")


def syscall_now(pid: int) -> str:
    """The system call pid is inside ("io_submit"), "" when none, from /proc/PID/syscall's first field."""
    with open(f"/proc/{pid}/syscall") as f:
        first = (f.read().split() or [""])[0]
    if not first.isdigit():
        return ""   # "running" (on a CPU, it cannot be read) or -1 (not in a system call)
    return SYSCALLS.get(platform.machine(), {}).get(int(first), f"system call {first}")


def stopped_in(pid: int, looks: int = 10) -> Counter[str]:
    """Where a spinning process is: stop it (SIGSTOP) a few times and read its system call each time.

    A running process's /proc/PID/syscall only says "running"; stopped, it names the call
    it was in or returning from. Only for a process the grader is about to kill anyway.
    """
    calls: Counter[str] = Counter()
    for _ in range(looks):
        try:
            os.kill(pid, signal.SIGSTOP)
            if proc.wait_until(lambda: proc.state(pid) in "Tt", timeout=1.0):
                calls[syscall_now(pid) or "its own code"] += 1
            os.kill(pid, signal.SIGCONT)
        except (OSError, IndexError):
            break
        time.sleep(0.01)
    return calls


def what_it_does(pid: int, looks: int = 40) -> str:
    """Look at a live process for about a second: asleep in which system call, or running (spinning)?

    A busy machine changes how often a spinning process gets the CPU, not that it is
    runnable (state R) whenever it is looked at, nor that a sleeping one sleeps (state S).
    """
    states: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    try:
        for _ in range(looks):
            states[proc.state(pid)] += 1
            calls[syscall_now(pid)] += 1
            time.sleep(0.025)
    except (OSError, IndexError):
        pass
    seen = sum(states.values())
    if not seen:
        return "it ended just as it was being looked at"
    if states["R"] > seen // 2:
        calls = stopped_in(pid)
        top, n = calls.most_common(1)[0] if calls else ("", 0)
        doing = (f"it was running, not waiting, in {states['R']} of {seen} looks (a loop that never sleeps)"
                 + (f"; stopped {sum(calls.values())} times, it was in {top} {n} times" if top else ""))
    else:
        del calls[""]
        top, n = calls.most_common(1)[0] if calls else ("", 0)
        doing = (f"it was asleep inside {top} in {n} of {seen} looks" if top
                 else f"it was in state {states.most_common(1)[0][0]} in most of {seen} looks")
    cause = why(top, states["R"] > seen // 2)
    return doing + (f": {cause}" if cause else "")


def what_it_did(tr: strace.Trace) -> str:
    """From a trace stopped at its deadline: the call the main thread never left, or the one it repeated."""
    calls = [c for c in tr.on_thread(tr.main_tid) if c.name not in ("clone", "clone3", "fork", "vfork", "execve")]
    if not calls:
        return "strace saw no system call of it"
    last = calls[-1]
    if last.duration is None or last.result.startswith("?") or "ERESTART" in last.result:
        # Still inside it, or interrupted by the grader's SIGTERM: it slept there.
        doing = f"it was asleep inside {last.name}({last.args[:100]}) when it was stopped"
        cause = why(last.name, spinning=False)
    else:
        same = 0
        for c in reversed(calls):
            if (c.name, c.result) != (last.name, last.result):
                break
            same += 1
        doing = f"its last {same} system calls were all {last.name} answering {last.errno or last.result}"
        cause = why(last.name, spinning=same > 1)
    return doing + (f": {cause}" if cause else "")


# --- the programs: kaio_cat (the lab's reader) and kaio_caveats (the talk's three caveats) ----------

TRACE = ("openat,open,io_setup,io_submit,io_getevents,io_pgetevents,io_destroy,eventfd2,eventfd,"
         "epoll_wait,epoll_pwait,read,pread64")

KAIO_CAT = FileProgram("kaio_cat", TRACE, misplaced="aio_buf, aio_offset, or the slot in aio_data",
                       require=require_kaio, look=what_it_does, stuck=what_it_did)
KAIO_CAVEATS = replace(KAIO_CAT, name="kaio_caveats")


# --- a program paused with requests in flight, for /proc --------------------------------------

@dataclass
class Paused:
    """What kaio_cat --pause showed while it waited on stdin, its requests in flight."""

    said: list[str] = field(default_factory=list)       # stdout up to the "paused:" line
    reached: bool = False                               # it paused (False: it ended or stalled first)
    fds: dict[int, str] = field(default_factory=dict)   # fd -> what it points at (/proc/PID/fd)
    info: dict[int, dict[str, str]] = field(default_factory=dict)   # fd -> /proc/PID/fdinfo/FD
    ended: subprocess.CompletedProcess[str] | None = None   # the whole run, after Enter

    def flags(self, fd: int) -> int:
        """The open-file flags of fd (test with os.O_DIRECT, os.O_NONBLOCK, ...)."""
        return int(self.info[fd]["flags"], 8)

    def file_fds(self, data: DataFile) -> list[int]:
        return [fd for fd, target in self.fds.items() if os.path.basename(target) == data.name]

    def eventfds(self) -> list[int]:
        return [fd for fd, target in self.fds.items() if target == "anon_inode:[eventfd]"]


def paused(impl: Impl, data: DataFile, *args: str, timeout: float = 30) -> Paused:
    """kaio_cat --pause: its fds while requests are in flight, then (Enter) the rest of the run."""
    require_kaio()
    argv = KAIO_CAT.argv(impl, data, *args, "--pause")
    seen = Paused()
    with proc.launch(argv, cwd=data.dir, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        deadline = time.monotonic() + timeout
        while not seen.reached:
            try:
                line = p.readline(timeout=max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                raise AssertionError(f"kaio_cat {' '.join(args)} --pause did not pause in {timeout:g} s: "
                                     f"{what_it_does(p.pid)}") from None
            if line == "":
                break   # it ended before any request was in flight: the caller says why
            seen.said.append(line)
            if line.startswith("paused:"):
                seen.fds = proc.fds(p.pid)
                seen.info = {fd: proc.fdinfo(p.pid, fd) for fd in seen.fds}
                seen.reached = True
        try:
            out, err = p.communicate(b"\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"kaio_cat {' '.join(args)} did not finish in {timeout:g} s after its pause: "
                                 f"{what_it_does(p.pid)}") from None
    text = "\n".join(seen.said + [p.lines.rest() + out.decode(errors="replace")])
    seen.ended = subprocess.CompletedProcess(argv, p.returncode, text, err.decode(errors="replace"))
    return seen
