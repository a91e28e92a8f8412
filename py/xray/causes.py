"""Why a tool cannot run here, in words that name the cause and the fix.

A tool's own last line rarely says why ("detach: waitpid: No child processes" is what strace
prints when a seccomp filter forbids ptrace), and the same advice given to everyone goes round
in circles ("run make setup" to a user whose perf is installed but not on PATH, "run as root"
to root). These functions look at the machine instead:

    off_path("perf")             # '/usr/bin/perf_6.1' when installed but not on PATH, else None
    ptrace_denied()              # why ptrace is refused: seccomp, a missing capability, Yama
    perf_denied(stderr)          # why perf cannot trace: capabilities, seccomp, tracefs, paranoid
    io_uring_refused(errno)      # EPERM (Docker's profile, a sysctl) is not ENOSYS (podman's, the kernel)
    kernel_aio_refused(errno)    # the same for io_setup (WSL 1 has none)
    memory_filesystem(path)      # 'tmpfs' when path lives in memory, where O_DIRECT reads no device
    unwritable(path)             # why files cannot be written there (a read-only checkout), or ''

Each fix is the one that applies where this runs (xray.place): a flag of the container's runtime,
a sysctl on the host or inside Docker Desktop's VM, WSL 2 instead of WSL 1. The pure functions
below them (perf_fix, io_uring_fix, kernel_aio_fix) take the place as an argument, for tests.

Standard library only: `make doctor` runs before any set-up.
"""
from __future__ import annotations

import errno
import glob
import os
import re
import tempfile
from pathlib import Path

from xray.place import Place, detect

# Where distributions put these tools when PATH does not reach them (sbin for a user's PATH,
# versioned perf binaries on Debian and Ubuntu).
_PLACES = {
    "strace": ["/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"],
    "perf": ["/usr/bin/perf", "/usr/sbin/perf", "/usr/bin/perf_*", "/usr/lib/linux-tools/*/perf",
             "/usr/lib/linux-tools-*/perf"],
}
CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_PERFMON = 19, 21, 38
# The workshop's seccomp profile: the runtime's own default plus io_uring (and perf_event_open with
# CAP_PERFMON), written on the host by tools/container/seccomp.py; README.md, "On macOS or Windows".
PROFILE = ".devcontainer/seccomp.json"
TRACEFS = "--volume=/sys/kernel/tracing:/sys/kernel/tracing:ro"
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}


def off_path(tool: str) -> str | None:
    """The path of an installed `tool` that PATH does not find (shutil.which already failed)."""
    for pattern in _PLACES.get(tool, []):
        for found in sorted(glob.glob(pattern)):
            if os.access(found, os.X_OK):
                return found
    return None


def not_found(tool: str, package: str) -> str:
    """The message for a tool shutil.which cannot find: installed elsewhere, or not installed."""
    where = off_path(tool)
    if where:
        return (f"{tool} is installed ({where}) but not on your PATH ({os.environ.get('PATH', '')}): "
                f"add its directory, e.g. export PATH=\"$PATH:{os.path.dirname(where)}\"")
    return f"{tool} is not installed: run `make setup` (it installs the package {package})"


def _status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def has_capability(cap: int) -> bool:
    return bool(int(_status("CapEff") or "0", 16) >> cap & 1)


def ptrace_denied() -> str:
    """Why ptrace is refused to this process, as far as /proc tells; '' when nothing explains it."""
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if scope.exists() and scope.read_text().strip() == "3":
        return "kernel.yama.ptrace_scope is 3, which forbids ptrace to everyone until the next reboot"
    runtime = detect().runtime
    if not has_capability(CAP_SYS_PTRACE) and _status("Seccomp") == "2":
        return (f"this process runs in a container{' (' + runtime + ')' if runtime else ''} under a seccomp "
                "filter and without CAP_SYS_PTRACE: start it with --cap-add=SYS_PTRACE")
    if _status("Seccomp") == "2":
        return ("this process runs under a seccomp filter that refuses ptrace: start the container with "
                "--cap-add=SYS_PTRACE, or --security-opt seccomp=unconfined")
    return ""


def tracefs_mounted() -> bool:
    """Whether perf can read the tracepoints' formats (tracefs; a container does not mount it)."""
    return any(Path(p, "events").is_dir() for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))


def perf_denied(stderr: str) -> str:
    """Why perf could not open its events, with the fix that applies to who and where we are."""
    return perf_fix(detect(), stderr, perfmon=has_capability(CAP_PERFMON), sys_admin=has_capability(CAP_SYS_ADMIN),
                    tracefs=tracefs_mounted(), root=os.geteuid() == 0,
                    paranoid=Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip())


def _profile(here: Place) -> str:
    runtime = f" --runtime {here.runtime}" if here.runtime in ("docker", "podman") else ""
    return f"`python3 tools/container/seccomp.py{runtime}` writes it on the host: the runtime's own profile plus io_uring"


def perf_fix(here: Place, said: str, *, perfmon: bool, sys_admin: bool, tracefs: bool, root: bool,
             paranoid: str) -> str:
    """The cause and fix of a refused perf, for a place, this process's capabilities and what perf said."""
    if here.wsl == 1:
        return "WSL 1 has no perf_event_open: move this distribution to WSL 2 (PowerShell: wsl --set-version NAME 2)"
    if here.runtime or here.seccomp:
        needs = []   # (flag, what it is for)
        if not (perfmon or sys_admin):
            needs.append(("--cap-add=PERFMON", "perf_event_open is refused to a container without it"))
        if here.runtime == "podman" and here.seccomp and not sys_admin:
            needs.append((f"--security-opt=seccomp={PROFILE}", "podman's own profile lets perf_event_open through "
                          f"only with CAP_SYS_ADMIN; {_profile(here)}"))
        if not tracefs:
            needs.append((TRACEFS, "perf reads its tracepoints in tracefs, which a container does not mount (if the "
                          "folder is empty where the kernel runs too, mount it "
                          f"{here.as_root('mount -t tracefs nodev /sys/kernel/tracing')})"))
        runtime = here.runtime or "this"
        if needs:
            return (f"start the {runtime} container with {' '.join(flag for flag, _ in needs)} — "
                    + "; ".join(f"{flag.split('=')[0].split()[0]}: {why}" for flag, why in needs))
        return (f"this {runtime} container's seccomp profile refuses perf_event_open even with CAP_PERFMON (perf "
                f"said: {said}): start it with --security-opt=seccomp={PROFILE} ({_profile(here)}), or "
                "--security-opt=seccomp=unconfined")
    if not tracefs:
        return "tracefs is not mounted, and perf reads its tracepoints there: sudo mount -t tracefs nodev /sys/kernel/tracing"
    if root or perfmon or sys_admin:
        return (f"you are root, yet perf_event_open was refused (perf_event_paranoid={paranoid}; perf said: "
                f"{said}): a security module (SELinux, lockdown) may forbid it")
    return (f"perf_event_paranoid={paranoid} forbids it to users: run as root, or "
            f"{here.sysctl('kernel.perf_event_paranoid', '-1')} (until reboot)")


def _older_than(here: Place, major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", here.kernel)
    return found is not None and (int(found[1]), int(found[2])) < (major, minor)


def io_uring_refused(err: int) -> str:
    """Why io_uring_setup failed with errno err here, and the fix."""
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    return io_uring_fix(err, detect(), disabled.read_text().strip() if disabled.exists() else "")


def io_uring_fix(err: int, here: Place, disabled: str) -> str:
    """EPERM and ENOSYS have different causes: a profile that denies (Docker's) or does not know
    (podman's answers ENOSYS), a sysctl that forbids, a kernel without io_uring."""
    name = errno.errorcode.get(err, str(err))
    if here.wsl == 1:
        return "WSL 1 has no io_uring: move this distribution to WSL 2 (PowerShell: wsl --set-version NAME 2)"
    if err == errno.ENOSYS and _older_than(here, 5, 1):
        return f"Linux {here.kernel} predates io_uring (5.1); lab 7 needs Linux >= 5.6"
    if disabled == "2":
        return f"kernel.io_uring_disabled=2 turns io_uring off for everyone: {here.sysctl('kernel.io_uring_disabled', '0')}"
    if disabled == "1" and err == errno.EPERM:
        return ("kernel.io_uring_disabled=1 allows io_uring only to root and to kernel.io_uring_group (a container's "
                f"root does not count): {here.sysctl('kernel.io_uring_disabled', '0')}")
    if here.seccomp:
        runtime = here.runtime or "this container"
        why = {errno.EPERM: f"{runtime}'s seccomp profile denies io_uring (EPERM, as Docker's default does since "
                            "Docker 25)",
               errno.ENOSYS: f"{runtime}'s seccomp profile does not let io_uring through (ENOSYS, as podman's default "
                             "answers every call it does not allow)"}.get(err, f"a seccomp filter refuses io_uring ({name})")
        return (f"{why}: start the container with --security-opt=seccomp={PROFILE} ({_profile(here)}); or "
                "--security-opt=seccomp=unconfined, simpler, but then no system call is filtered at all")
    if err == errno.ENOSYS:
        return f"this kernel (Linux {here.kernel}) was built without io_uring (CONFIG_IO_URING): lab 7 needs one with it"
    if err == errno.EPERM:
        return ("refused with no seccomp filter and kernel.io_uring_disabled unset: a security module (SELinux's "
                "io_uring class, a lockdown policy) forbids it")
    return f"io_uring_setup failed with {name}"


def kernel_aio_refused(err: int) -> str:
    return kernel_aio_fix(err, detect())


def kernel_aio_fix(err: int, here: Place) -> str:
    """Why io_setup failed here (labs 5-6 skip), and the fix."""
    if here.wsl == 1:
        return "WSL 1 has no kernel AIO (io_setup): move this distribution to WSL 2 (PowerShell: wsl --set-version NAME 2)"
    if here.seccomp:
        return (f"{here.runtime or 'this container'}'s seccomp profile refuses io_setup "
                f"({errno.errorcode.get(err, err)}; Docker's and podman's defaults allow it): start the container "
                f"with --security-opt=seccomp={PROFILE} ({_profile(here)}), or --security-opt=seccomp=unconfined")
    if err == errno.EAGAIN:
        return f"fs.aio-max-nr is used up: {here.sysctl('fs.aio-max-nr', '1048576')}"
    return f"this kernel (Linux {here.kernel}) was built without kernel AIO (CONFIG_AIO): labs 5-6 need it"


def filesystem(path: Path) -> str:
    """The filesystem type holding path, from /proc/self/mounts (longest matching mount point)."""
    best, fstype = "", "unknown"
    real = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        mount = fields[1]
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, fstype = mount, fields[2]
    return fstype


def memory_filesystem(path: Path) -> str:
    """The type of a memory-backed filesystem holding path ('tmpfs'), or '' for a device's.

    Recent kernels (6.6+) accept O_DIRECT on tmpfs, but nothing is read from a device there:
    every O_DIRECT result would be a page-cache result in disguise."""
    fstype = filesystem(path)
    return fstype if fstype in MEMORY_FILESYSTEMS else ""


def unwritable(path: Path) -> str:
    """'' when files can be made in path (created if missing), else why not, in words.

    Tried for real: root passes every permission check, but not a read-only mount."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".writable-"):
            pass
    except OSError as err:
        if err.errno == errno.EROFS:
            return f"{path} is on a read-only filesystem"
        return f"{path} cannot be written ({err.strerror})"
    return ""
