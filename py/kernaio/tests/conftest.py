"""Fixtures for kernaio's tests: data files in the labs' data directory (never /tmp: tmpfs may refuse O_DIRECT)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xray import Unavailable, doctor

from xray.doctor import DATA_DIR

SIZE = 1 << 20  # the test file: 1 MiB of random bytes


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = DATA_DIR / "kernaio-tests"
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".o_direct"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        pytest.skip(f"{path} refuses O_DIRECT ({err.strerror}): set LAB_DATA_DIR to a directory on ext4/xfs")
    os.close(fd)
    probe.unlink()
    return path


@pytest.fixture(scope="session")
def data(data_dir: Path) -> tuple[Path, bytes]:
    """A 1 MiB file of random bytes, and those bytes."""
    path = data_dir / "random-1m"
    content = os.urandom(SIZE)
    path.write_bytes(content)
    return path, content


@pytest.fixture
def scratch(data_dir: Path) -> Iterator[Path]:
    """A path for a test to create (removed afterwards)."""
    path = data_dir / f"scratch-{os.getpid()}"
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(params=["aio", "io_uring"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each kernaio backend in turn; io_uring is skipped, saying why, where it is blocked."""
    name: str = request.param
    if name == "io_uring":
        try:
            doctor.require(doctor.check_io_uring)
        except Unavailable as why:
            pytest.skip(str(why))
    return name
