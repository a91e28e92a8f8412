"""Fixtures for kernaio's tests: data files in the labs' data directory (never /tmp: tmpfs may refuse O_DIRECT)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernaio import _engine
from paths import DATA_DIR
from xray import Unavailable, doctor

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
    """Each kernaio backend in turn; io_uring is skipped, saying why, where it is blocked. A
    test that also takes `sqpoll` runs on io_uring twice: without SQPOLL and with it."""
    name: str = request.param
    if name == "io_uring":
        try:
            doctor.require(doctor.check_io_uring)
        except Unavailable as why:
            pytest.skip(str(why))
    return name


@pytest.fixture(autouse=True, params=_engine.ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both engines, the C one and the Python one (lab 6's): one behaviour,
    two implementations, one suite (CPython tests asyncio's futures.py and _asynciomodule.c
    so). The environment variable reaches what the test starts too (strace's children)."""
    name: str = request.param
    monkeypatch.setenv("KERNAIO_ENGINE", name)
    return name


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`sqpoll`: False, and True (io_uring's kernel submission thread, kernaio.open(...,
    sqpoll=True)): a test that takes it runs with and without, on io_uring only."""
    if "sqpoll" in metafunc.fixturenames:
        metafunc.parametrize("sqpoll", [False, True], ids=["", "sqpoll"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """SQPOLL is io_uring's: the (aio, sqpoll) pairs are not tests, and are left out unreported."""
    def aio_with_sqpoll(item: pytest.Item) -> bool:
        params = getattr(item, "callspec", None)
        return params is not None and params.params.get("sqpoll") is True and params.params.get("backend") == "aio"
    dropped = [item for item in items if aio_with_sqpoll(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not aio_with_sqpoll(item)]
