"""Lab 6's grader fixtures (the helpers are in lab6_kernaio.py)."""
from __future__ import annotations

import os

import pytest
from grading.programs import DataFile, make_data

# The lab is the Python engine (_engine.py, _file.py's File): kernaio.open uses it when
# $KERNAIO_ENGINE says so, here and in every program a test starts (they inherit the
# environment). The C engine (src/engine.c) is the reference's default, and not the learner's.
os.environ["KERNAIO_ENGINE"] = "python"


@pytest.fixture(scope="session")
def data() -> DataFile:
    """1 MiB + 1000 bytes of seeded random bytes in the labs' data directory: the last block is short."""
    return make_data("kernaio-lab6.bin", 1024 * 1024 + 1000, seed=6)
