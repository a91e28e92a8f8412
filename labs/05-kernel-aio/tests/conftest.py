"""Lab 5's grader fixtures (the helpers are in lab5_kaio.py)."""
from __future__ import annotations

import pytest
from grading.programs import DataFile, make_data


@pytest.fixture(scope="session")
def data() -> DataFile:
    """The file most tests read: 4 MiB + 12345 bytes of seeded random bytes in the labs' data directory."""
    return make_data("kaio-lab5.bin", 4 * 1024 * 1024 + 12345, seed=5)


@pytest.fixture(scope="session")
def small() -> DataFile:
    """Three blocks of 4 KiB and 100 bytes more: the last read is short (end of file)."""
    return make_data("kaio-lab5-small.bin", 3 * 4096 + 100, seed=6)
