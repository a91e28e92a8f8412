"""What graders share about the lab programs they run: the file they read, and the report they print.

A data file is seeded random bytes in the labs' data directory (build/data or $LAB_DATA_DIR;
never /tmp, where tmpfs may refuse O_DIRECT), written once and atomically (other graders may
run at the same time), with the CRC-32 a plain read gives. Run the programs in that directory
with the file's short name: strace's `openat(AT_FDCWD, "name", ...)` then tells which fd is
the file's, whatever the path of the checkout.

A report is the `key: rest` lines a lab program prints (`read: 2109497 bytes ... crc32 1a2b3c4d`);
Report finds numbers in them, and fails with everything the program printed when one is missing.
"""
from __future__ import annotations

import os
import random
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from xray import Unavailable
from xray.causes import memory_filesystem
from xray.doctor import DATA_DIR


@dataclass(frozen=True)
class DataFile:
    dir: Path        # where to run the programs (their cwd)
    name: str        # the file's name inside dir
    size: int
    crc32: int       # zlib.crc32 of a plain read
    content: bytes = field(repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.dir / self.name


def make_data(name: str, size: int, seed: int) -> DataFile:
    """The file `name` of `size` seeded random bytes in the data directory, (re)written only when it differs."""
    memory = memory_filesystem(DATA_DIR)
    if memory:  # the labs' reads would be page-cache reads, whatever O_DIRECT says: no grade from them
        raise Unavailable(f"the labs' data directory {DATA_DIR} is on {memory}, in memory: O_DIRECT reads "
                          "no device there; set LAB_DATA_DIR to a directory on a disk (see make doctor)")
    content = random.Random(seed).randbytes(size)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / name
    if not path.exists() or path.read_bytes() != content:
        scratch = DATA_DIR / f".{name}.{os.getpid()}"
        scratch.write_bytes(content)
        scratch.replace(path)   # atomic: a grader reading it meanwhile sees all or nothing
    return DataFile(DATA_DIR, name, size, zlib.crc32(content), content)


@dataclass
class Report:
    """What a lab program printed: one `key: rest` line per key (the first one wins)."""

    text: str
    lines: dict[str, str] = field(default_factory=dict)

    def _match(self, key: str, pattern: str) -> re.Match[str]:
        m = re.search(pattern, self.lines.get(key, ""))
        assert m is not None, f"the program did not print a '{key}: ...' line like {pattern!r}; it printed:\n{self.text}"
        return m

    def count(self, key: str, pattern: str, group: int = 1) -> int:
        """A whole number out of the line `key: ...` (0x... accepted); AssertionError for a learner if missing."""
        return int(self._match(key, pattern).group(group), 0)

    def number(self, key: str, pattern: str, group: int = 1) -> float:
        """A number, decimals allowed (timings), out of the line `key: ...`."""
        return float(self._match(key, pattern).group(group))

    def crc(self) -> int:
        """The CRC-32 of the `read: ... crc32 XXXXXXXX` line."""
        return int(self._match("read", r"crc32 ([0-9a-f]{8})").group(1), 16)


def parse_report(text: str) -> Report:
    report = Report(text)
    for line in text.splitlines():
        key, sep, rest = line.partition(": ")
        if sep:
            report.lines.setdefault(key, rest)
    return report
