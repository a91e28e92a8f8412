"""`make doctor`: what this machine can do for the workshop, one line per feature, and what to do.

Runs on the system Python with the standard library only, so it works before any set-up.
Each check tries the real thing (a real io_setup, a real O_DIRECT write, a real traced
program) instead of guessing from versions.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from paths import DATA_DIR, ROOT
from xray import causes
from xray.causes import filesystem
from xray.place import detect

# System call numbers are per architecture; these are the two the workshop has been run on.
SYSCALLS = {
    "x86_64": {"io_setup": 206, "io_destroy": 207, "io_uring_setup": 425},
    "aarch64": {"io_setup": 0, "io_destroy": 1, "io_uring_setup": 425},
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(name: str, *args: object) -> tuple[int, int]:
    """(result, errno) of a raw system call by name."""
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return -1, errno.ENOSYS
    result = _libc.syscall(ctypes.c_long(numbers[name]), *args)
    return result, ctypes.get_errno() if result < 0 else 0


Check = tuple[bool, str, str]  # (ok, what was seen, what to do when not ok)


def _errno(err: int) -> str:
    """'ENOSYS (Function not implemented)': the name tells EPERM from ENOSYS at a glance."""
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def check_kernel() -> Check:
    release = platform.release()
    major, minor = (int(x) for x in release.split(".")[:2])
    ok = (major, minor) >= (5, 6)  # io_uring with the operations lab 7 uses
    return ok, f"Linux {release}", "io_uring needs Linux >= 5.6; kernel AIO and the other labs work on older kernels"


def check_kernel_aio() -> Check:
    ctx = ctypes.c_ulong(0)
    result, err = _syscall("io_setup", ctypes.c_uint(8), ctypes.byref(ctx))
    if result < 0:
        return False, f"io_setup failed: {_errno(err)}", causes.kernel_aio_refused(err) + "; labs 5-6 skip until then"
    _syscall("io_destroy", ctx)
    return True, "io_setup/io_destroy work", ""


def check_aio_limits() -> Check:
    try:
        max_nr = int(Path("/proc/sys/fs/aio-max-nr").read_text())
        used = int(Path("/proc/sys/fs/aio-nr").read_text())
    except OSError as err:
        return False, f"cannot read /proc/sys/fs/aio-*: {err}", "is /proc mounted?"
    ok = max_nr - used >= 4096
    return ok, f"aio-nr {used} of aio-max-nr {max_nr}", "raise it: sudo sysctl fs.aio-max-nr=1048576"


def check_o_direct() -> Check:
    """Write and read one aligned block with O_DIRECT in the directory the labs use, which must
    be on a device: on a memory filesystem O_DIRECT may be accepted but reads no device."""
    where = f"{_short(DATA_DIR)}" + (" (LAB_DATA_DIR)" if "LAB_DATA_DIR" in os.environ else "")
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return False, f"the labs' data directory {where} cannot be made: {err.strerror}", (
            "point LAB_DATA_DIR at a writable directory on a disk (ext4, xfs, btrfs)")
    fs = filesystem(DATA_DIR)
    memory = causes.memory_filesystem(DATA_DIR)
    if memory:
        return False, f"{where} is on {memory}, in memory: O_DIRECT there reads no device, so the labs' and " \
            "make reveal's O_DIRECT results would be page-cache results", (
            "point LAB_DATA_DIR at a directory on a disk (ext4, xfs, btrfs); the graders that read files skip here")
    path = DATA_DIR / ".doctor-o-direct"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        shared = (" In a container, build/ is shared from the host here: mount a volume over it instead "
                  "(-v asyncfs-build:/workshop/build, as README.md's run line does).") if detect().runtime else ""
        return False, f"{where} ({fs}) refuses O_DIRECT: {err.strerror}", (
            "some overlay, network and FUSE filesystems refuse it: set LAB_DATA_DIR to a directory on "
            "ext4/xfs/btrfs." + shared)
    try:
        block = mmap.mmap(-1, 4096)  # page-aligned memory, as O_DIRECT wants
        block.write(b"x" * 4096)
        os.pwrite(fd, block, 0)
        os.preadv(fd, [block], 0)
    except OSError as err:
        return False, f"O_DIRECT I/O fails on {where} ({fs}): {err.strerror}", (
            "set LAB_DATA_DIR to a directory on ext4/xfs/btrfs")
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return True, f"O_DIRECT works in {where} ({fs}, a device)", ""


def check_io_uring() -> Check:
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    fd, err = _syscall("io_uring_setup", ctypes.c_uint(4), params)
    if fd >= 0:
        os.close(fd)
        return True, "io_uring_setup works", ""
    extra = f" (kernel.io_uring_disabled={disabled.read_text().strip()})" if disabled.exists() else ""
    return False, f"io_uring_setup failed: {_errno(err)}{extra}", (
        causes.io_uring_refused(err) + "; lab 7 skips until then")


def check_strace() -> Check:
    from xray import Unavailable, strace
    try:
        strace.check()
    except Unavailable as err:
        return False, "strace cannot trace", str(err)
    version = subprocess.run(["strace", "-V"], capture_output=True, text=True).stdout.split("\n")[0]
    return True, f"{version}: tracing a child works", ""


def check_perf() -> Check:
    from xray import Unavailable, perf, timeline
    paranoid = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
    try:
        perf.check()  # a real `perf trace` of a child: syscall tracepoints included
    except Unavailable as err:
        return False, f"perf cannot trace here (perf_event_paranoid={paranoid})", (
            str(err).removeprefix("perf cannot trace here: "))
    try:
        timeline.check()  # the scheduler's events machine-wide: make reveal's device waits
    except Unavailable as err:
        return False, (f"perf traces a program but not the scheduler machine-wide (perf_event_paranoid={paranoid}): "
                       "make reveal cannot tell a wait for the device"), str(err)
    return True, (f"perf works: software events, tracepoints, the scheduler machine-wide "
                  f"(perf_event_paranoid={paranoid})"), ""


def check_toolchain() -> Check:
    missing = [tool for tool in ("cc", "make") if shutil.which(tool) is None]
    headers = [h for h in ("libaio.h", "liburing.h") if not Path("/usr/include", h).exists()]
    if missing or headers:
        return False, f"missing: {' '.join(missing + headers)}", "run `make setup` (or see README.md)"
    return True, "cc, make, libaio.h and liburing.h are installed", ""


def check_python() -> Check:
    version = platform.python_version()
    venv = (ROOT / ".venv" / ".installed").exists()
    ok = sys.version_info >= (3, 11)
    return ok, f"Python {version}; project venv {'ready' if venv else 'not made yet (any make target makes it)'}", (
        "the workshop needs Python >= 3.11: run make with PYTHON=/path/to/python3.11")


CHECKS: list[tuple[str, Callable[[], Check]]] = [
    ("kernel", check_kernel),
    ("toolchain", check_toolchain),
    ("python", check_python),
    ("strace/ptrace", check_strace),
    ("perf", check_perf),
    ("kernel AIO", check_kernel_aio),
    ("aio-max-nr", check_aio_limits),
    ("O_DIRECT", check_o_direct),
    ("io_uring", check_io_uring),
]


_answers: dict[Callable[[], Check], Check] = {}


def require(*checks: Callable[[], Check]) -> None:
    """For graders: raise xray.Unavailable (the test is skipped, saying why and what to do)
    unless every check passes here. Each check runs once per process."""
    from xray import Unavailable
    for check in checks:
        if check not in _answers:
            _answers[check] = check()
        ok, seen, todo = _answers[check]
        if not ok:
            raise Unavailable(f"{seen} ({todo})")


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    print("make doctor — what this machine can do for the workshop\n")
    print(f"  · {'where':<14} {detect().describe()}")
    failures = 0
    for name, check in CHECKS:
        try:
            ok, seen, todo = check()
        except Exception as err:  # a check that breaks must not hide the others
            ok, seen, todo = False, f"the check itself failed: {err!r}", "please report this"
        failures += not ok
        print(f"  {'✓' if ok else '✗'} {name:<14} {seen}")
        if not ok:
            print(textwrap.fill(todo, 112, initial_indent=f"  {'':16} → ", subsequent_indent=" " * 21,
                                break_on_hyphens=False, break_long_words=False))
    print("\nAll set." if not failures else
          f"\n{failures} feature(s) missing: the labs that need them skip and say why; the rest works.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
