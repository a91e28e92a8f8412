"""Lab 5's grader helpers: the data files, running kaio_cat and kaio_caveats, reading their reports and straces.

The data files live in the labs' data directory (build/data, or $LAB_DATA_DIR), never in
/tmp (tmpfs refuses O_DIRECT), and the programs run in that directory with a short
relative name, so that strace's `openat(AT_FDCWD, "kaio-lab5.bin", ...)` finds the file's
descriptor whatever the path of the checkout. Before anything runs, the machine is asked
(xray.doctor) whether it has kernel AIO and O_DIRECT here: if not, the test is skipped
with the reason, never passed.
"""
from __future__ import annotations

import subprocess
from collections.abc import Sequence

from grading.plugin import Impl
from grading.programs import DataFile, Report, parse_report
from xray import strace
from xray.doctor import check_kernel_aio, check_o_direct, require


def require_kaio() -> None:
    """Raise xray.Unavailable (the test is skipped, saying why) without kernel AIO or O_DIRECT here."""
    require(check_kernel_aio, check_o_direct)


def cat_argv(impl: Impl, data: DataFile, *args: str) -> list[str]:
    return [str(impl.bin("kaio_cat")), data.name, *args]


def run(impl: Impl, program: str, data: DataFile, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run kaio_cat or kaio_caveats on data, in the data directory."""
    require_kaio()
    try:
        return subprocess.run([str(impl.bin(program)), data.name, *args], cwd=data.dir, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{program} {' '.join(args)} did not finish in {timeout:g} s: a wait nobody ends "
                             "(io_getevents with no request in flight? an eventfd nobody bumps?)") from None


def explain(proc: subprocess.CompletedProcess[str] | strace.Trace) -> str:
    """The program's output for a failure message: its last stderr line first, then everything."""
    said = proc.stderr.strip().splitlines()
    first = said[-1] if said else "(nothing on stderr)"
    return (f"{first} [exit code {proc.returncode}]\nstdout:\n{proc.stdout.strip()}\n"
            f"stderr:\n{proc.stderr.strip()}")


def check_data(proc: subprocess.CompletedProcess[str] | strace.Trace, data: DataFile, what: str) -> Report:
    """The program succeeded and read every byte of data: its report."""
    assert proc.returncode == 0, f"{what} failed: {explain(proc)}"
    report = parse_report(proc.stdout)
    crc = report.crc()
    size = int(report.number("read", r"^(\d+) bytes"))
    assert size == data.size, (f"{what}: {size} bytes read, the file has {data.size}: a short read at the end of "
                               "the file counts what it got, no more, no less")
    assert crc == data.crc32, (f"{what}: crc32 {crc:08x}, a plain read gives {data.crc32:08x}: some block landed "
                               "in the wrong place (aio_buf, aio_offset, or the slot in aio_data)")
    return report


# --- strace ---------------------------------------------------------------------------------

TRACE = ("openat,open,io_setup,io_submit,io_getevents,io_pgetevents,io_destroy,eventfd2,eventfd,"
         "epoll_wait,epoll_pwait,read,pread64")


def traced(argv: Sequence[str], data: DataFile) -> strace.Trace:
    """Run argv to the end under strace -f, in the data directory."""
    require_kaio()
    return strace.run(argv, trace=TRACE, cwd=data.dir, timeout=40)


def file_opens(tr: strace.Trace, name: str) -> list[strace.Call]:
    return [c for c in tr.named("openat", "open") if f'"{name}"' in c.args and (c.retval or -1) >= 0]
