"""Lab 7's grader fixtures (the helpers are in lab7_uring.py)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from grading.programs import DataFile, make_data
from paths import DATA_DIR


@pytest.fixture(scope="session")
def data() -> DataFile:
    """The file the tests read: 4 MiB + 12345 bytes of seeded random bytes in the labs' data directory."""
    return make_data("uring-lab7.bin", 4 * 1024 * 1024 + 12345, seed=7)


@pytest.fixture
def copy_path(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh name for `uring_cat --write` in the data directory (graders may run side by side); removed after."""
    path = DATA_DIR / f"uring-lab7-copy-{os.getpid()}-{request.node.name.replace('[', '-').rstrip(']')}.bin"
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)
