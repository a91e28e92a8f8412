"""What graders share about the lab programs they run: the file they read, and the report they print.

A data file is seeded random bytes in the labs' data directory (build/data or $LAB_DATA_DIR;
never /tmp, where tmpfs may refuse O_DIRECT), written once and atomically (other graders may
run at the same time), with the CRC-32 a plain read gives. Run the programs in that directory
with the file's short name: strace's `openat(AT_FDCWD, "name", ...)` then tells which fd is
the file's, whatever the path of the checkout.

A report is the `key: rest` lines a lab program prints (`read: 2109497 bytes ... crc32 1a2b3c4d`);
Report finds numbers in them, and fails with everything the program printed when one is missing.

A program that does not end is not just "too slow": run() looks at it before it is stopped
(where each of its threads waits, what it printed last) and the failure says so; a program
killed by a signal is told by name (died()). said() is the rest of a failure message: what
the program wrote on stderr, last line first.

A lab's C reader (aio_cat, kaio_cat, uring_cat) is a FileProgram: declared once in the lab's
helper module with its strace set and what its failures most likely mean, then run, traced
and checked byte for byte (check_read: the size and CRC-32 of a plain read) by its flags.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from paths import DATA_DIR
from xray import Unavailable, strace
from xray.causes import memory_filesystem
from xray.proc import family, where_they_wait


@dataclass(frozen=True)
class DataFile:
    dir: Path        # where to run the programs (their cwd)
    name: str        # the file's name inside dir
    size: int
    crc32: int       # zlib.crc32 of a plain read
    content: bytes = field(repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.dir / self.name


def make_data(name: str, size: int, seed: int) -> DataFile:
    """The file `name` of `size` seeded random bytes in the data directory, (re)written only when it differs."""
    memory = memory_filesystem(DATA_DIR)
    if memory:  # the labs' reads would be page-cache reads, whatever O_DIRECT says: no grade from them
        raise Unavailable(f"the labs' data directory {DATA_DIR} is on {memory}, in memory: O_DIRECT reads "
                          "no device there; set LAB_DATA_DIR to a directory on a disk (see make doctor)")
    content = random.Random(seed).randbytes(size)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / name
    if not path.exists() or path.read_bytes() != content:
        scratch = DATA_DIR / f".{name}.{os.getpid()}"
        scratch.write_bytes(content)
        scratch.replace(path)   # atomic: a grader reading it meanwhile sees all or nothing
    return DataFile(DATA_DIR, name, size, zlib.crc32(content), content)


@dataclass
class Report:
    """What a lab program printed: one `key: rest` line per key (the first one wins)."""

    text: str
    lines: dict[str, str] = field(default_factory=dict)

    def _match(self, key: str, pattern: str) -> re.Match[str]:
        m = re.search(pattern, self.lines.get(key, ""))
        assert m is not None, f"the program did not print a '{key}: ...' line like {pattern!r}; it printed:\n{self.text}"
        return m

    def count(self, key: str, pattern: str, group: int = 1) -> int:
        """A whole number out of the line `key: ...` (0x... accepted); AssertionError for a learner if missing."""
        return int(self._match(key, pattern).group(group), 0)

    def number(self, key: str, pattern: str, group: int = 1) -> float:
        """A number, decimals allowed (timings), out of the line `key: ...`."""
        return float(self._match(key, pattern).group(group))

    def crc(self) -> int:
        """The CRC-32 of the `read: ... crc32 XXXXXXXX` line."""
        return int(self._match("read", r"crc32 ([0-9a-f]{8})").group(1), 16)


def parse_report(text: str) -> Report:
    report = Report(text)
    for line in text.splitlines():
        key, sep, rest = line.partition(": ")
        if sep:
            report.lines.setdefault(key, rest)
    return report


class Output(Protocol):
    """How a program ended: a Ran, a subprocess.CompletedProcess[str], an xray.strace.Trace."""

    returncode: int
    stdout: str
    stderr: str


def last_words(out: Output) -> str:
    """The last line the program wrote on stderr ('' when none): where a lab program says why it stopped."""
    lines = out.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def said(out: Output) -> str:
    """What a program said, for a failure message: its last stderr line first (often all a learner
    reads in the summary), with how it ended (killed by a signal, stopped under strace), then the rest
    of its output (what is empty, or only that last line, is not repeated)."""
    last = last_words(out) or "(nothing on stderr)"
    if isinstance(out, strace.Trace) and out.timed_out:
        last = f"it did not finish, and was stopped; where its threads waited:\n{out.stuck}\n{last}"
    elif out.returncode < 0:   # subprocess's way of saying "killed by this signal"
        last = f"killed by {signal_name(-out.returncode)}; {last}"
    parts = [f"{last} [exit code {out.returncode}]"]
    if out.stdout.strip():
        parts.append("stdout:\n" + out.stdout.strip())
    if out.stderr.strip() not in ("", last_words(out)):   # not the one line already shown
        parts.append("stderr:\n" + out.stderr.strip())
    return "\n".join(parts)


# --- running a lab program: a hang or a crash says what was seen -----------------------------

# What a signal that ends a C program most often means in these labs.
SIGNALS = {
    "SIGSEGV": "a crash: memory read or written where there is none (freed, or never allocated)",
    "SIGBUS": "a crash: a bad memory access",
    "SIGABRT": "abort(): an assert failed, or glibc found its heap corrupted (a double free? a write past a block?)",
    "SIGFPE": "a crash: a division by zero",
    "SIGKILL": "killed from outside (the grader, or the kernel out of memory)",
    "SIGPIPE": "a write to a pipe or socket nobody reads any more, without MSG_NOSIGNAL",
}


def died(returncode: int) -> str:
    """'killed by SIGSEGV (a crash: ...)' for a negative return code, else 'exit code N'."""
    if returncode >= 0:
        return f"exit code {returncode}"
    name = signal_name(-returncode)
    return f"killed by {name}" + (f" ({SIGNALS[name]})" if name in SIGNALS else "")


def signal_name(number: int) -> str:
    """SIGSEGV, SIGRTMIN, SIGRTMIN+3...: the name a learner can look up."""
    if signal.SIGRTMIN < number <= signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def last_lines(text: str, lines: int = 12) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line[:300] for line in kept) if kept else "    (nothing)"


@dataclass
class Ran:
    """How a program run by run() ended."""

    argv: list[str]
    returncode: int          # negative: killed by that signal
    stdout: str
    stderr: str
    seen: str = ""           # where its threads waited, when it was still running at look_at


def run(argv: Sequence[str], timeout: float, *, look_at: float | None = None, advice: str = "",
        look: Callable[[int], str] | None = None, **popen: Any) -> Ran:
    """Run argv to its end, its output captured (text). If it is still running after look_at seconds,
    note where each of its threads (and its children's) waits, in Ran.seen: for a program that may
    stop itself, by a watchdog of its own, before the timeout. If it is still running at the timeout,
    stop it and fail (AssertionError) with where its threads wait, what it printed last, and advice.
    look(pid), when given, says instead what the stuck program is doing (a lab's own diagnosis)."""
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=popen.pop("stdin", subprocess.DEVNULL), **popen)
    looked: list[str] = []
    describe = look or (lambda pid: where_they_wait(family(pid)))

    def glance() -> None:
        if process.poll() is None:
            looked.append(describe(process.pid))

    watcher = threading.Timer(look_at, glance) if look_at is not None and look_at < timeout else None
    if watcher:
        watcher.start()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        seen = describe(process.pid) or "    (it ended as it was looked at)"
        process.kill()
        out, err = process.communicate()
        name = " ".join([Path(argv[0]).name, *argv[1:]])
        raise AssertionError(
            f"{name} did not finish in {timeout:g} s, and was stopped. What it was doing then:\n{seen}\n"
            f"What it printed last:\n{last_lines((out + err).decode(errors='replace'))}"
            + (f"\n{advice}" if advice else "")) from None
    finally:
        if watcher:
            watcher.cancel()
            watcher.join()
    return Ran(list(argv), process.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
               "".join(looked))


# --- a lab's C program that reads the data file: aio_cat, kaio_cat, uring_cat ----------------

def file_opens(tr: strace.Trace, name: str) -> list[strace.Call]:
    """The opens of the data file `name` that succeeded, in a trace of a program run in its directory."""
    return [c for c in tr.named("openat", "open") if f'"{name}"' in c.args and (c.retval or -1) >= 0]


def data_fds(tr: strace.Trace, name: str) -> tuple[set[int], float]:
    """The descriptors the program opened the data file `name` as, and when it first did.
    A program that never opened it fails the test here, with what it said."""
    opens = file_opens(tr, name)
    assert opens, f"strace saw no open of {name}: the program failed before reading it? {said(tr)}"
    return {c.retval for c in opens if c.retval is not None}, opens[0].start


def file_io(tr: strace.Trace, name: str, *calls: str) -> list[strace.Call]:
    """The calls named (read, pread64, ...) on a descriptor of the data file `name`, from its first
    open on: before it, the dynamic loader reads its libraries on the same fd numbers."""
    fds, opened = data_fds(tr, name)
    return [c for c in tr.named(*calls) if c.start >= opened and c.fd in fds]


class Programs(Protocol):
    """Where the implementation under test keeps its C programs (grading.plugin.Impl)."""

    def bin(self, name: str) -> Path: ...


def runs_anywhere(args: Sequence[str]) -> None:
    """FileProgram.require's default: nothing to ask the machine first."""


@dataclass(frozen=True)
class FileProgram:
    """A lab program run as `NAME FILE [flags]` in the data directory, and how its grader watches it.

    One per program, in the lab's helper module (lab4_aio.AIO_CAT); the tests then say only
    the flags: AIO_CAT.run(impl, data, "--notify", "thread"), AIO_CAT.traced(impl, data, ...).
    """

    name: str                    # the program in build/bin: "aio_cat"
    trace: str                   # the system calls strace records of it (strace -e trace=...)
    misplaced: str               # in a wrong CRC: which values put a block in the wrong place
    advice: str = ""             # in a run that did not end: what that most likely means
    # Raises xray.Unavailable (a skip that says why) where the program cannot run with these flags.
    require: Callable[[Sequence[str]], None] = runs_anywhere
    # What a stuck process is doing, instead of where its threads wait (see run()).
    look: Callable[[int], str] | None = None
    # What a trace stopped at its deadline shows; with it, traced() fails at once on such a trace.
    stuck: Callable[[strace.Trace], str] | None = None

    def argv(self, impl: Programs, data: DataFile, *args: str) -> list[str]:
        return [str(impl.bin(self.name)), data.name, *args]

    def run(self, impl: Programs, data: DataFile, *args: str, timeout: float = 30,
            env: dict[str, str] | None = None) -> Ran:
        """The program on data, to its end; one that does not end fails, saying what it was doing."""
        self.require(args)
        return run(self.argv(impl, data, *args), timeout, cwd=data.dir, env=env, advice=self.advice, look=self.look)

    def traced(self, impl: Programs, data: DataFile, *args: str, env: dict[str, str] | None = None,
               timeout: float = 40) -> strace.Trace:
        """The program on data under strace -f, to its end."""
        return self.traced_argv(self.argv(impl, data, *args), data, env=env, timeout=timeout)

    def traced_ok(self, impl: Programs, data: DataFile, *args: str, env: dict[str, str] | None = None) -> strace.Trace:
        """traced(), and the program ended well (exit code 0); else the failure says what it said."""
        tr = self.traced(impl, data, *args, env=env)
        assert tr.returncode == 0, f"{' '.join([self.name, *args])} failed under strace: {said(tr)}"
        return tr

    def traced_argv(self, argv: Sequence[str], data: DataFile, *, env: dict[str, str] | None = None,
                    timeout: float = 40) -> strace.Trace:
        """Any argv (the program without a file, a Python twin of it) traced as this program is, in data's directory."""
        self.require(argv)
        tr = strace.run(argv, trace=self.trace, cwd=data.dir, timeout=timeout, env=env)
        if tr.timed_out and self.stuck is not None:
            raise AssertionError(f"{' '.join([Path(argv[0]).name, *argv[1:]])} did not finish in {timeout:g} s "
                                 f"under strace: {self.stuck(tr)}"
                                 + (f"\nWhere its threads waited:\n{tr.stuck}" if tr.stuck else ""))
        return tr

    def reads_all(self, impl: Programs, data: DataFile, *args: str, timeout: float = 30) -> Report:
        """run() then check_read(): the program with these flags reads every byte of data. Its report."""
        return self.check_read(self.run(impl, data, *args, timeout=timeout), data, " ".join([self.name, *args]))

    def check_read(self, out: Output, data: DataFile, what: str) -> Report:
        """The program ended well and read every byte of data (its size and CRC-32): its report."""
        assert out.returncode == 0, f"{what} failed: {said(out)}"
        report = parse_report(out.stdout)
        size = report.count("read", r"^(\d+) bytes")
        assert size == data.size, (f"{what}: {size} bytes read, the file has {data.size}: a short read at the end "
                                   "of the file counts what it returned, once, no more, no less")
        crc = report.crc()
        assert crc == data.crc32, (f"{what}: crc32 {crc:08x}, a plain read of the file gives {data.crc32:08x}: some "
                                   f"block was not read, or landed in the wrong place ({self.misplaced})")
        return report
