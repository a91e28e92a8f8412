"""The overlay's build of Python C extensions, and compiler messages mapped to the learner's files."""
from __future__ import annotations

import os
from pathlib import Path

from grading.labs import find_lab
from grading.overlay import extension_is_stale
from grading.run import learner_paths


def test_extension_is_rebuilt_only_when_a_source_is_newer(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "src").mkdir(parents=True)
    (package / "setup.py").write_text("")
    (package / "src" / "x.c").write_text("")
    assert extension_is_stale(package), "no compiled extension yet: it must be built"
    built = package / "x.cpython-311-x86_64-linux-gnu.so"
    built.write_text("")
    for source in (package / "setup.py", package / "src" / "x.c"):
        os.utime(source, (1_000_000, 1_000_000))
    os.utime(built, (2_000_000, 2_000_000))
    assert not extension_is_stale(package), "every source is older than the extension"
    os.utime(package / "src" / "x.c", (3_000_000, 3_000_000))
    assert extension_is_stale(package), "a learner's newer aio_context.c must be recompiled"


def test_compiler_messages_name_the_learners_files() -> None:
    out = learner_paths(find_lab(6), "src/aio_context.c:87:84: error: expected ';'\n"
                                     "error: Command '['gcc', ...]' returned non-zero exit status 1.")
    assert out == "labs/06-kernaio/aio_context.c:87:84: error: expected ';'"
    out = learner_paths(find_lab(5), "kaio/ka.c:10:1: error: x\nmake: *** [Makefile] Error 1")
    assert out == "labs/05-kernel-aio/ka.c:10:1: error: x"
