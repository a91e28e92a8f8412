"""Why a tool cannot run here, in words that name the cause and the fix.

A tool's own last line rarely says why ("detach: waitpid: No child processes" is what strace
prints when a seccomp filter forbids ptrace), and the same advice given to everyone goes round
in circles ("run make setup" to a user whose perf is installed but not on PATH, "run as root"
to root). These functions look at the machine instead:

    off_path("perf")             # '/usr/bin/perf_6.1' when installed but not on PATH, else None
    ptrace_denied()              # why ptrace is refused: seccomp, a missing capability, Yama
    perf_denied(stderr)          # why perf_event_open is refused, for root and for a user
    memory_filesystem(path)      # 'tmpfs' when path lives in memory, where O_DIRECT reads no device
    unwritable(path)             # why files cannot be written there (a read-only checkout), or ''

Standard library only: `make doctor` runs before any set-up.
"""
from __future__ import annotations

import errno
import glob
import os
import tempfile
from pathlib import Path

# Where distributions put these tools when PATH does not reach them (sbin for a user's PATH,
# versioned perf binaries on Debian and Ubuntu).
_PLACES = {
    "strace": ["/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"],
    "perf": ["/usr/bin/perf", "/usr/sbin/perf", "/usr/bin/perf_*", "/usr/lib/linux-tools/*/perf",
             "/usr/lib/linux-tools-*/perf"],
}
CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_PERFMON = 19, 21, 38
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


def in_container() -> str:
    """'docker', 'podman', a name from /run/.containerenv or $container, or '' when none is seen."""
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    return os.environ.get("container", "")


def ptrace_denied() -> str:
    """Why ptrace is refused to this process, as far as /proc tells; '' when nothing explains it."""
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if scope.exists() and scope.read_text().strip() == "3":
        return "kernel.yama.ptrace_scope is 3, which forbids ptrace to everyone until the next reboot"
    runtime = in_container()
    if not has_capability(CAP_SYS_PTRACE) and _status("Seccomp") == "2":
        return (f"this process runs in a container{' (' + runtime + ')' if runtime else ''} under a seccomp "
                "filter and without CAP_SYS_PTRACE: start it with --cap-add=SYS_PTRACE")
    if _status("Seccomp") == "2":
        return ("this process runs under a seccomp filter that refuses ptrace: start the container with "
                "--cap-add=SYS_PTRACE, or --security-opt seccomp=unconfined")
    return ""


def perf_denied(stderr: str) -> str:
    """Why perf could not open its events, with the fix that applies to who and where we are."""
    paranoid = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
    runtime = in_container()
    if os.geteuid() == 0 or has_capability(CAP_PERFMON) or has_capability(CAP_SYS_ADMIN):
        if runtime or _status("Seccomp") == "2":
            return (f"you are root, but in a container{' (' + runtime + ')' if runtime else ''} whose profile "
                    "refuses perf_event_open: start it with --cap-add=PERFMON (Docker) or --cap-add=SYS_ADMIN "
                    "(podman), or on the host sysctl kernel.perf_event_paranoid=-1")
        return (f"you are root, yet perf_event_open was refused (perf_event_paranoid={paranoid}; perf said: "
                f"{stderr}): a security module (SELinux, lockdown) may forbid it")
    return (f"perf_event_paranoid={paranoid} forbids it to users: run as root, or "
            "sudo sysctl kernel.perf_event_paranoid=-1 (until reboot)")


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
