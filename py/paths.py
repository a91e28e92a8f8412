"""Where things are, defined once: the checkout's root, what is built, and the labs' data files.

Every package imports these names and none computes them again, so moving a folder is a change
in one file.

ROOT is the directory holding c/ and py/ — the checkout, or, when the grader copied py/ into an
implementation root (build/grade/labN, see grading/overlay.py), that copy: its BIN is then the
copy's own build of the C programs, which is what a grader must run. DATA_DIR is the exception:
the grader sets LAB_DATA_DIR so that every copy reads and writes the same data directory.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
BIN = BUILD / "bin"           # the C programs and libraries (make -C c O=...)
# Where the labs, reveal, bench and the notebooks put the files they read: not /tmp, which is
# often tmpfs (no device to wait for, and older kernels refuse O_DIRECT there).
DATA_DIR = Path(os.environ.get("LAB_DATA_DIR", BUILD / "data"))
