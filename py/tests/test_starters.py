"""The starter generator: what it writes, and how it refuses malformed markers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grading.starters import MarkerError, make_starter
from paths import ROOT

C = """\
int f(int fd)
{
    /* BEGIN SOLUTION lab1
     * TODO: set O_NONBLOCK:
     *       F_GETFL, then F_SETFL.
     * STUB: (void)fd;
     * STUB: return -ENOSYS;
     */
    return fcntl(fd, F_SETFL, O_NONBLOCK);
    /* END SOLUTION */
}
"""

PY = """\
def g(x):
    # BEGIN SOLUTION lab2
    # TODO: double it
    # STUB: raise NotImplementedError("lab2: g")
    # (a comment of the solution, not of the header)
    return 2 * x
    # END SOLUTION
"""


def test_c_block_becomes_todo_and_stub():
    out = make_starter(C, Path("c/x/f.c"), "lab1")
    assert "fcntl" not in out
    assert "    /* TODO(lab1): set O_NONBLOCK:\n     * F_GETFL, then F_SETFL. */\n" in out
    assert "    (void)fd;\n    return -ENOSYS;\n}" in out
    assert out.startswith("/* Your copy of c/x/f.c")


def test_python_block_keeps_indentation_and_drops_solution_comments():
    out = make_starter(PY, Path("py/x/g.py"), "lab2")
    assert '    # TODO(lab2): double it\n    raise NotImplementedError("lab2: g")\n' in out
    assert "2 * x" not in out and "a comment of the solution" not in out


@pytest.mark.parametrize("text, message", [
    (C.replace("    /* END SOLUTION */\n", ""), "without END"),
    (C.replace("lab1", "lab3", 1), "is for lab3"),
    ("int x;\n", "no BEGIN SOLUTION"),
    ("/* END SOLUTION */\n", "END SOLUTION without BEGIN"),
    (C.replace("     * STUB: return -ENOSYS;\n     */\n", "     * STUB: return -ENOSYS;\n"), "not closed"),
])
def test_malformed_markers_are_refused(text, message):
    with pytest.raises(MarkerError, match=message):
        make_starter(text, Path("c/x/f.c"), "lab1")


def test_make_starters_never_loses_a_learners_work(tmp_path: Path) -> None:
    """`make starters` in a learner's checkout refuses; FORCE and `make reset` save the work first."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, PYTHONPATH=str(clone / "py"))

    def starters(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "grading.starters", *args], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=60)

    mine = clone / "labs" / "01-nonblocking" / "nb.c"
    work = mine.read_text() + "/* the learner's work */\n"
    mine.write_text(work)
    refused = starters("write")
    assert refused.returncode == 1 and "NOT overwritten" in refused.stderr and "nb.c" in refused.stderr
    assert mine.read_text() == work, "the learner's file must be left alone"
    for args in (["write", "--force"], ["reset", "1"]):
        mine.write_text(work)
        assert starters(*args).returncode == 0
        assert "the learner's work" not in mine.read_text(), f"{args}: the starter is back"
        saved = list((clone / "build" / "backup").rglob("nb.c"))
        assert any(p.read_text() == work for p in saved), f"{args}: the learner's version is saved first"
