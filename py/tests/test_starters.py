"""The starter generator: what it writes, and how it refuses malformed markers."""
from pathlib import Path

import pytest

from grading.starters import MarkerError, make_starter

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
