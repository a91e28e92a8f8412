"""Lab 4's grader helpers: the file every test reads, running aio_cat, reading its report and its strace.

The data file lives in the labs' data directory (build/data, or $LAB_DATA_DIR), never
in /tmp, and the programs are started in that directory with a short relative name,
so that strace's `openat(AT_FDCWD, "aio-lab4.bin", ...)` tells which descriptor is
the file's, whatever the path of the checkout.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grading.plugin import Impl
from xray import strace
from xray.doctor import DATA_DIR

NAME = "aio-lab4.bin"
SIZE = 2 * 1024 * 1024 + 12345   # 33 requests of 64 KiB, the last one short
CHUNK = 64 * 1024


@dataclass(frozen=True)
class DataFile:
    dir: Path        # where to run the programs (cwd)
    name: str        # the file's name inside dir
    size: int
    crc32: int       # zlib.crc32 of a plain read
    content: bytes

    @property
    def path(self) -> Path:
        return self.dir / self.name

    @property
    def requests(self) -> int:
        return -(-self.size // CHUNK)


def make_data() -> DataFile:
    """A 2 MB file of seeded random bytes, written once (atomically: other graders may run)."""
    content = random.Random(4).randbytes(SIZE)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / NAME
    if not path.exists() or path.read_bytes() != content:
        tmp = DATA_DIR / f".{NAME}.{os.getpid()}"
        tmp.write_bytes(content)
        tmp.replace(path)
    return DataFile(DATA_DIR, NAME, SIZE, zlib.crc32(content), content)


@dataclass
class Report:
    """What aio_cat (or python -m posixaio.cat) printed about itself."""

    text: str
    snapshot: dict[int, str] = field(default_factory=dict)   # tid -> name, from "threads in flight"
    main_tid: int = 0
    lines: dict[str, str] = field(default_factory=dict)       # "read" -> "2109497 bytes in ..."

    def number(self, key: str, pattern: str, group: int = 1) -> int:
        """An int out of the line `key: ...`; AssertionError (for a learner) if it is missing."""
        m = re.search(pattern, self.lines.get(key, ""))
        assert m is not None, f"the program did not print a '{key}: ...' line like {pattern!r}; it printed:\n{self.text}"
        return int(m.group(group), 0)

    def crc(self) -> int:
        m = re.search(r"crc32 ([0-9a-f]{8})", self.lines.get("read", ""))
        assert m is not None, f"no 'read: ... crc32 XXXXXXXX' line; the program printed:\n{self.text}"
        return int(m.group(1), 16)


def parse_report(text: str) -> Report:
    report = Report(text)
    for line in text.splitlines():
        key, sep, rest = line.partition(": ")
        if not sep:
            continue
        report.lines.setdefault(key, rest)
        if key in ("threads in flight", "threads after the first read") and not report.snapshot:
            for m in re.finditer(r"(\d+) \(([^,)]*)(, main)?\)", rest):
                report.snapshot[int(m.group(1))] = m.group(2)
                if m.group(3):
                    report.main_tid = int(m.group(1))
    return report


def cat_argv(impl: Impl, data: DataFile, *args: str) -> list[str]:
    return [str(impl.bin("aio_cat")), data.name, *args]


def run_cat(impl: Impl, data: DataFile, *args: str, spy: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run aio_cat in the data directory (with aio_spy.so preloaded if spy is a file to write)."""
    env = dict(os.environ)
    if spy is not None:
        env.update(LD_PRELOAD=str(impl.bin("aio_spy.so")), AIO_SPY_OUT=str(spy))
    try:
        return subprocess.run(cat_argv(impl, data, *args), cwd=data.dir, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"aio_cat {' '.join(args)} did not finish in {timeout:g} s: a wait that is "
                             "never woken (a sigevent that tells nobody?)") from None


def spy_counts(path: Path) -> dict[str, int]:
    """The counts aio_spy.so wrote at exit: {"aio_read": 33, "lio_listio": 0, ...}."""
    assert path.exists(), "aio_spy.so wrote nothing: did the program crash before exit?"
    words = path.read_text().split()
    return {words[i]: int(words[i + 1]) for i in range(1, len(words) - 1, 2)}


def explain(proc: subprocess.CompletedProcess[str] | strace.Trace) -> str:
    """The program's output, for a failure message: what it said on stderr first (one line
    of it is all a learner sees in the summary), then everything."""
    said = proc.stderr.strip().splitlines()
    first = said[-1] if said else "(nothing on stderr)"
    return (f"{first} [exit code {proc.returncode}]\nstdout:\n{proc.stdout.strip()}\n"
            f"stderr:\n{proc.stderr.strip()}")


# --- reading an strace of a program that reads the data file -------------------------------

TRACE = "openat,open,pread64,pwrite64,read,epoll_wait,epoll_pwait,signalfd,signalfd4,rt_sigqueueinfo,rt_tgsigqueueinfo"


def traced(argv: Sequence[str], data: DataFile, env: dict[str, str] | None = None) -> strace.Trace:
    """Run argv to the end under strace -f, in the data directory."""
    return strace.run(argv, trace=TRACE, cwd=data.dir, timeout=40, env=env)


def data_fds(tr: strace.Trace, name: str) -> tuple[set[int], float]:
    """The descriptors the program opened the data file as, and when it first did."""
    opens = [c for c in tr.named("openat", "open") if f'"{name}"' in c.args and (c.retval or -1) >= 0]
    assert opens, (f"strace saw no open of {name}: the program failed before reading it? "
                   f"{explain(tr)}")
    return {c.retval for c in opens if c.retval is not None}, opens[0].start


def io_on(tr: strace.Trace, names: tuple[str, ...], fds: set[int], since: float) -> list[strace.Call]:
    """Calls in `names` on one of fds, made after `since` (the dynamic loader's own preads come before)."""
    found = []
    for c in tr.named(*names):
        fd = c.args.split(",", 1)[0].strip()
        if c.start >= since and fd.isdigit() and int(fd) in fds:
            found.append(c)
    return found
