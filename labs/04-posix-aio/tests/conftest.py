"""Lab 4's grader fixtures (the helpers are in lab4_aio.py)."""
from __future__ import annotations

import pytest
from grading.programs import DataFile
from lab4_aio import make_data


@pytest.fixture(scope="session")
def data() -> DataFile:
    """The file every test reads: 2 MB of seeded random bytes in the labs' data directory."""
    return make_data()
