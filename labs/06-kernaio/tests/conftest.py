"""Lab 6's grader fixtures (the helpers are in lab6_kernaio.py)."""
from __future__ import annotations

import pytest
from grading.programs import DataFile, make_data


@pytest.fixture(scope="session")
def data() -> DataFile:
    """1 MiB + 1000 bytes of seeded random bytes in the labs' data directory: the last block is short."""
    return make_data("kernaio-lab6.bin", 1024 * 1024 + 1000, seed=6)
