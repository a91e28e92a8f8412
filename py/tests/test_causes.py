"""Messages that name the cause and the fix: a tool off PATH, root refused by perf, memory filesystems."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paths import ROOT
from xray import causes


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "py"), **env})


def test_a_tool_installed_but_off_path_is_named_with_its_place() -> None:
    if not causes.off_path("strace"):
        pytest.skip("strace is not installed in a usual place here")
    ran = python("from xray import strace, Unavailable\ntry:\n    strace.check()\nexcept Unavailable as e:\n"
                 "    print(e)", PATH="/nonexistent")
    assert "is installed (" in ran.stdout and "not on your PATH" in ran.stdout, ran.stdout + ran.stderr
    assert "make setup" not in ran.stdout, "make setup cannot help: the package is there"


@pytest.mark.skipif(os.geteuid() != 0, reason="the message for root")
def test_perf_refused_to_root_does_not_say_run_as_root() -> None:
    assert "run as root" not in causes.perf_denied("Permission denied")


def test_data_directory_in_memory_is_refused_by_doctor_and_graders() -> None:
    if causes.filesystem(Path("/dev/shm")) != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    data = "/dev/shm/asyncfs-test-data"
    doctor = python("from xray.doctor import check_o_direct; print(check_o_direct())", LAB_DATA_DIR=data)
    assert "False" in doctor.stdout and "in memory" in doctor.stdout, doctor.stdout + doctor.stderr
    grader = python("from grading.programs import make_data\nfrom xray import Unavailable\ntry:\n"
                    "    make_data('x.bin', 4096, 1)\nexcept Unavailable as e:\n    print('skip:', e)",
                    LAB_DATA_DIR=data)
    assert "skip:" in grader.stdout and "tmpfs" in grader.stdout, grader.stdout + grader.stderr


def test_an_unusable_data_directory_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    doctor = python("from xray.doctor import check_o_direct; print(check_o_direct())",
                    LAB_DATA_DIR=str(blocker / "data"))
    assert "cannot be made" in doctor.stdout and "LAB_DATA_DIR" in doctor.stdout, doctor.stdout + doctor.stderr
