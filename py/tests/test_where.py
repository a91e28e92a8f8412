"""make doctor knows where it runs and gives the fix that applies there: made-up machines, no real one."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from xray import causes
from xray.place import Place, detect

DOCKER = Place(runtime="docker", seccomp=True, kernel="6.8.0")
PODMAN = Place(runtime="podman", seccomp=True, kernel="6.1.0")
HOST = Place(kernel="6.1.0")


def machine(tmp_path: Path, files: dict[str, str]) -> Path:
    """A made-up root: /proc, /sys and friends with the given contents."""
    for name, text in {"proc/sys/kernel/osrelease": "6.1.0-27-amd64\n", "proc/self/status": "Seccomp:\t0\n",
                       **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


CONTAINER_MOUNTS = "1 2 0:1 / / rw - overlay overlay rw\n3 1 8:1 /x /etc/hostname rw - ext4 /dev/vda rw\n"


@pytest.mark.parametrize("files, runtime", [
    ({".dockerenv": "", "proc/self/mountinfo": CONTAINER_MOUNTS}, "docker"),
    ({".dockerenv": ""}, ""),   # a VM booted from an image Docker made keeps /.dockerenv: no container
    ({"run/.containerenv": 'engine="podman-4.3.1"\n'}, "podman"),
    ({"run/systemd/container": "systemd-nspawn\n"}, "systemd-nspawn"),
    ({"proc/1/cgroup": "12:pids:/kubepods/burstable/pod1/abc\n"}, "kubernetes"),
    ({}, ""),
])
def test_the_container_runtime_is_named(tmp_path: Path, files: dict[str, str], runtime: str) -> None:
    assert detect(machine(tmp_path, files), environ={}).runtime == runtime


def test_podman_says_its_version(tmp_path: Path) -> None:
    here = detect(machine(tmp_path, {"run/.containerenv": 'engine="podman-4.3.1"\n', "proc/self/status": "Seccomp:\t2\n"}),
                  environ={})
    assert here.engine == "podman-4.3.1" and here.seccomp
    assert here.describe().startswith("a podman container (podman-4.3.1), under a seccomp filter")


@pytest.mark.parametrize("release, wsl, desktop", [
    ("4.4.0-19041-Microsoft", 1, ""),
    ("5.15.167.4-microsoft-standard-WSL2", 2, ""),
    ("6.10.14-linuxkit", 0, "Docker Desktop"),
    ("6.1.0-27-amd64", 0, ""),
])
def test_wsl_and_desktop_vms_are_told_apart(tmp_path: Path, release: str, wsl: int, desktop: str) -> None:
    here = detect(machine(tmp_path, {"proc/sys/kernel/osrelease": release}), environ={})
    assert (here.wsl, here.desktop) == (wsl, desktop)


def test_a_vm_is_named_by_its_firmware(tmp_path: Path) -> None:
    here = detect(machine(tmp_path, {"sys/class/dmi/id/sys_vendor": "QEMU\n"}), environ={})
    assert here.vm == "QEMU/KVM" and "in a VM (QEMU/KVM)" in here.describe()


def test_eperm_and_enosys_name_different_causes() -> None:
    eperm = causes.io_uring_fix(errno.EPERM, DOCKER, "0")
    enosys = causes.io_uring_fix(errno.ENOSYS, PODMAN, "0")
    assert "denies" in eperm and "EPERM" in eperm and "Docker 25" in eperm
    assert "does not let io_uring through" in enosys and "ENOSYS" in enosys
    for fix in (eperm, enosys):   # same remedy: the workshop's profile, made for that runtime
        assert f"--security-opt=seccomp={causes.PROFILE}" in fix and "seccomp=unconfined" in fix
    assert "--runtime docker" in eperm and "--runtime podman" in enosys


def test_enosys_without_a_filter_is_the_kernel() -> None:
    fix = causes.io_uring_fix(errno.ENOSYS, HOST, "0")
    assert "CONFIG_IO_URING" in fix and "seccomp" not in fix
    assert "predates io_uring" in causes.io_uring_fix(errno.ENOSYS, Place(kernel="4.19.0"), "")


def test_a_sysctl_is_set_where_the_kernel_is() -> None:
    assert "sudo sysctl -w kernel.io_uring_disabled=0" in causes.io_uring_fix(errno.EPERM, HOST, "2")
    on_host = causes.io_uring_fix(errno.EPERM, Place(runtime="docker", kernel="6.8.0"), "2")
    assert on_host.endswith("on the host: sudo sysctl -w kernel.io_uring_disabled=0")
    desktop = causes.io_uring_fix(errno.EPERM, Place(runtime="docker", desktop="Docker Desktop", kernel="6.10.14"), "2")
    assert "docker run --rm --privileged --pid=host debian nsenter -t 1 -m -- sysctl -w kernel.io_uring_disabled=0" in desktop


def test_wsl1_is_told_to_move_to_wsl2() -> None:
    wsl1 = Place(wsl=1, kernel="4.4.0-19041-Microsoft")
    for fix in (causes.io_uring_fix(errno.ENOSYS, wsl1, ""), causes.kernel_aio_fix(errno.ENOSYS, wsl1),
                causes.perf_fix(wsl1, "", perfmon=False, sys_admin=False, tracefs=False, root=False, paranoid="2")):
        assert "WSL 2" in fix and "wsl --set-version" in fix


def perf(here: Place, **given: bool) -> str:
    facts = {"perfmon": False, "sys_admin": False, "tracefs": False, "root": True, **given}
    return causes.perf_fix(here, "perf said no", paranoid="2", **facts)


def test_perf_in_docker_needs_perfmon_and_tracefs_but_not_a_profile() -> None:
    fix = perf(DOCKER)
    assert "--cap-add=PERFMON" in fix and causes.TRACEFS in fix
    assert "--security-opt" not in fix, "Docker's own profile lets perf_event_open through with CAP_PERFMON"


def test_perf_in_podman_also_needs_the_workshops_profile() -> None:
    fix = perf(PODMAN)
    assert "--cap-add=PERFMON" in fix and f"--security-opt=seccomp={causes.PROFILE}" in fix and "CAP_SYS_ADMIN" in fix
    assert "--cap-add" not in perf(PODMAN, perfmon=True), "the capability is there: only the profile is missing"
    assert causes.TRACEFS not in perf(PODMAN, tracefs=True)


def test_perf_on_a_host() -> None:
    assert "run as root" not in perf(HOST, tracefs=True)
    user = perf(HOST, tracefs=True, root=False)
    assert "perf_event_paranoid=2" in user and "sudo sysctl -w kernel.perf_event_paranoid=-1" in user
    assert "mount -t tracefs" in perf(HOST)
