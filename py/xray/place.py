"""Where this process runs: a container and its runtime, WSL 1 or 2, a VM, a desktop app's VM.

The fix for a refused feature depends on the place: a flag of `docker run` in a container, a
sysctl on a Linux host, `wsl --set-version` on WSL 1, a sysctl *inside Docker Desktop's VM*.
Everything is read from /proc and /sys (under `root`, so tests can give a made-up tree):

    here = place.detect()
    here.runtime        # 'docker', 'podman', 'lxc', 'kubernetes', ... or '' outside a container
    here.describe()     # 'a podman container under a seccomp filter, in a VM (KVM)'

Standard library only: `make doctor` runs before any set-up.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# /sys/class/dmi/id/sys_vendor (or product_name) -> the hypervisor's name.
_VENDORS = {"QEMU": "QEMU/KVM", "KVM": "KVM", "VMware": "VMware", "innotek": "VirtualBox", "VirtualBox": "VirtualBox",
            "Xen": "Xen", "Parallels": "Parallels", "Amazon EC2": "Amazon EC2", "Google": "Google Compute Engine",
            "Apple": "Apple Virtualization", "Microsoft Corporation": "Hyper-V", "BHYVE": "bhyve"}


@dataclass(frozen=True)
class Place:
    runtime: str = ""     # the container runtime, '' when no container is seen
    engine: str = ""      # what the runtime says of itself, when it does ('podman-4.3.1')
    wsl: int = 0          # 1 or 2 under Windows' WSL, else 0
    desktop: str = ""     # the VM of a desktop app the kernel belongs to ('Docker Desktop', 'OrbStack')
    vm: str = ""          # the hypervisor's name, 'unknown' when only the CPU says there is one
    seccomp: bool = False  # a seccomp filter is on this process (a container's profile, most often)
    kernel: str = ""

    def describe(self) -> str:
        parts = []
        if self.runtime:
            parts.append(f"a {self.runtime} container" + (f" ({self.engine})" if self.engine else ""))
        if self.seccomp:
            parts.append("under a seccomp filter")
        if self.wsl:
            parts.append(f"{'in' if parts else 'on'} WSL {self.wsl}")
        elif self.desktop:
            parts.append(f"in {self.desktop}'s VM")
        elif self.vm:
            parts.append("in a VM" + (f" ({self.vm})" if self.vm != "unknown" else ""))
        if not parts:
            parts.append("directly on Linux (no container or VM seen)")
        return ", ".join(parts) + (f"; Linux {self.kernel}" if self.kernel else "")

    def as_root(self, command: str) -> str:
        """How to run a root command where this kernel is: here, on the host, or in a desktop app's VM."""
        if self.runtime and (self.desktop or self.wsl):
            # The kernel is the VM's: a privileged container enters its mount namespace and runs it there.
            return ("in the VM that runs your containers: docker run --rm --privileged --pid=host debian "
                    f"nsenter -t 1 -m -- {command}")
        return f"{'on the host: ' if self.runtime else ''}sudo {command}"

    def sysctl(self, name: str, value: str) -> str:
        """The command that sets a sysctl of this kernel (until it restarts), where it must run."""
        return self.as_root(f"sysctl -w {name}={value}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _runtime(root: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    # Every OCI runtime bind-mounts /etc/hostname; a machine booted from an image made by Docker
    # keeps the image's /.dockerenv without being in a container.
    mounts = {fields[4] for fields in map(str.split, _read(root / "proc" / "self" / "mountinfo").splitlines())
              if len(fields) > 4}
    if (root / ".dockerenv").exists() and "/etc/hostname" in mounts:
        return "docker", ""
    containerenv = root / "run" / ".containerenv"
    if containerenv.exists():   # podman writes it; engine="podman-4.3.1" when it says more
        engine = re.search(r'^engine="([^"]+)"', _read(containerenv), re.M)
        return "podman", engine.group(1) if engine else ""
    # systemd-nspawn, LXC and podman set $container in PID 1's environment (and systemd writes it down).
    named = environ.get("container", "") or _read(root / "run" / "systemd" / "container").strip()
    if named:
        return named, ""
    cgroup = _read(root / "proc" / "1" / "cgroup")   # cgroup v1 paths still name the runtime
    for needle, name in (("kubepods", "kubernetes"), ("/docker", "docker"), ("libpod", "podman"), ("/lxc", "lxc")):
        if needle in cgroup:
            return name, ""
    return "", ""


def _vm(root: Path) -> str:
    dmi = root / "sys" / "class" / "dmi" / "id"
    text = _read(dmi / "sys_vendor") + " " + _read(dmi / "product_name")
    for needle, name in _VENDORS.items():
        if needle in text:
            return name
    hypervisor = _read(root / "sys" / "hypervisor" / "type").strip()
    if hypervisor:
        return hypervisor
    if re.search(r"^flags\s*:.*\bhypervisor\b", _read(root / "proc" / "cpuinfo"), re.M):
        return _detect_virt() or "unknown"
    return ""


def _detect_virt() -> str:
    """systemd-detect-virt's name for the VM, when it is installed (a host more often than an image)."""
    tool = shutil.which("systemd-detect-virt")
    if tool is None:
        return ""
    done = subprocess.run([tool, "--vm"], capture_output=True, text=True)
    name = done.stdout.strip()
    return name if done.returncode == 0 and name not in ("", "none") else ""


def detect(root: Path = Path("/"), environ: Mapping[str, str] | None = None) -> Place:
    """The place of this process, read from root's /proc and /sys (a made-up tree in tests)."""
    environ = os.environ if environ is None else environ
    release = _read(root / "proc" / "sys" / "kernel" / "osrelease").strip()
    runtime, engine = _runtime(root, environ)
    wsl = 0
    if "microsoft" in release.lower():   # WSL 1: 4.4.0-19041-Microsoft; WSL 2: 5.15.x-microsoft-standard-WSL2
        wsl = 2 if ("WSL2" in release or "microsoft-standard" in release) else 1
    desktop = {"linuxkit": "Docker Desktop", "orbstack": "OrbStack"}
    found = next((name for needle, name in desktop.items() if needle in release.lower()), "")
    status = _read(root / "proc" / "self" / "status")
    seccomp = re.search(r"^Seccomp:\s*2", status, re.M) is not None
    return Place(runtime=runtime, engine=engine, wsl=wsl, desktop=found, vm="" if wsl or found else _vm(root),
                 seccomp=seccomp, kernel=release)
