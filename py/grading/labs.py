"""What a lab is: a folder labs/NN-topic/ with a lab.toml that names its files.

    # labs/01-nonblocking/lab.toml
    title = "Non-blocking sockets"
    builds = "a client that never blocks: busy loop, then poll(2)"
    talk = "Polling model. Non-blocking IO"      # the talk's slide it answers
    deadline = 600                               # optional: seconds a whole grading may take
    [[file]]
    ref = "c/nonblock/nb.c"                      # the reference, with solution markers
    starter = "nb.c"                             # the learner's copy, in the lab folder

Everything else in the folder is hand-written: README.md, hints.md, tests/.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from paths import ROOT


@dataclass(frozen=True)
class Lab:
    number: int
    dir: Path                          # labs/NN-topic, absolute
    title: str
    builds: str
    talk: str
    files: tuple[tuple[Path, str], ...]  # (reference path relative to the repo, starter name)
    deadline: float = 900.0            # seconds one grading may take before the runner stops it

    @property
    def name(self) -> str:
        """'lab1': the name used by markers, make targets and messages."""
        return f"lab{self.number}"

    @property
    def tests_dir(self) -> Path:
        return self.dir / "tests"

    def starter_paths(self) -> list[Path]:
        return [self.dir / starter for _, starter in self.files]

    def fingerprint(self, base: Path | None = None) -> str:
        """A hash of the learner's files (under base, default the lab folder)."""
        digest = hashlib.sha256()
        for _, starter in self.files:
            path = (base or self.dir) / starter
            digest.update(path.read_bytes() if path.exists() else b"<missing>")
        return digest.hexdigest()


def load_lab(folder: Path) -> Lab:
    with open(folder / "lab.toml", "rb") as f:
        meta = tomllib.load(f)
    number = int(folder.name.split("-", 1)[0])
    files = tuple((Path(entry["ref"]), entry["starter"]) for entry in meta.get("file", []))
    return Lab(number=number, dir=folder.resolve(), title=meta["title"], builds=meta.get("builds", ""),
               talk=meta.get("talk", ""), files=files, deadline=float(meta.get("deadline", 900)))


def all_labs(root: Path | None = None) -> list[Lab]:
    root = root or ROOT
    folders = sorted(p.parent for p in (root / "labs").glob("[0-9][0-9]-*/lab.toml"))
    return [load_lab(folder) for folder in folders]


def find_lab(spec: str | int, root: Path | None = None) -> Lab:
    """A lab by number ('3', 3, 'lab3'); ValueError with the list when there is none."""
    text = str(spec).removeprefix("lab")
    labs = all_labs(root)
    for lab in labs:
        if text.isdigit() and lab.number == int(text):
            return lab
    names = ", ".join(str(lab.number) for lab in labs) or "none yet"
    raise ValueError(f"there is no lab {spec!r}; the labs are: {names}")
