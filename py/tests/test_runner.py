"""`make labN` never says "done" after a crash, a hang or a bad T=: the runner, end to end.

Each test builds a small workshop in a temporary folder — one lab with a Python file and a C
file for the learner, its grader, a copy of py/grading — writes a learner's version of the
files that crashes, hangs, forks or does not compile, and runs `python -m grading.run lab 1`
there, exactly as `make lab1` does.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from paths import ROOT

REFERENCE_PY = '''\
def answer() -> int:
    # BEGIN SOLUTION lab1
    # TODO: return the answer.
    # STUB: raise NotImplementedError("lab1: answer")
    return 42
    # END SOLUTION
'''

REFERENCE_C = '''\
#include <stdio.h>
int main(void)
{
    /* BEGIN SOLUTION lab1
     * TODO: print 42.
     * STUB: return 1;
     */
    printf("42\\n");
    return 0;
    /* END SOLUTION */
}
'''

GRADER = '''\
import subprocess

def test_answer():
    from fake.work import answer
    assert answer() == 42, "answer() must return 42"

def test_program(impl):
    out = subprocess.run([str(impl.bin("prog"))], capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "42", "prog must print 42"

def test_after():
    from fake.work import answer
    assert answer() == 42
'''

# The learner's work.py in each case: the reference's, then wrong ones.
RIGHT = "def answer():\n    return 42\n"
SEGFAULT = "import ctypes\n\ndef answer():\n    return ctypes.string_at(0)  # reads address 0\n"
ABORT = "import os\n\ndef answer():\n    os.abort()\n"
# A wait pytest-timeout cannot interrupt: its SIGALRM is blocked (like a C loop holding the GIL).
HANG = ("import signal, time\n\ndef answer():\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n    time.sleep(600)\n")
FORKS = ("import os, time\n\ndef answer():\n    if os.fork() == 0:\n        time.sleep(600)\n"
         "        os._exit(0)\n    return 42\n")
FILLS_THE_DISK = ("from pathlib import Path\n\ndef answer():\n"
                  "    with open(Path(__file__).parent / 'junk.bin', 'wb') as junk:\n"
                  "        while True:\n            junk.write(bytes(1 << 20))\n")
NEVER_EXITS = ("import threading, time\n\ndef answer():\n"
               "    threading.Thread(target=time.sleep, args=(600,)).start()  # not a daemon\n    return 42\n")


@pytest.fixture
def workshop(tmp_path: Path) -> Path:
    """A one-lab workshop: c/ and py/ of the reference, labs/01-fake with its grader."""
    root = tmp_path / "ws"
    for package in ("grading", "xray"):
        shutil.copytree(ROOT / "py" / package, root / "py" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "py" / "paths.py", root / "py" / "paths.py")
    (root / "py" / "fake").mkdir()
    (root / "py" / "fake" / "__init__.py").write_text("")
    (root / "py" / "fake" / "work.py").write_text(REFERENCE_PY)
    (root / "c" / "fake").mkdir(parents=True)
    (root / "c" / "fake" / "prog.c").write_text(REFERENCE_C)
    (root / "c" / "Makefile").write_text(
        "O ?= ../build/bin\nall: $(O)/prog\n$(O)/prog: fake/prog.c\n\tmkdir -p $(O) && cc -Wall -Werror -o $@ $<\n")
    (root / "pytest.ini").write_text("[pytest]\ntimeout = 3\naddopts = -p no:cacheprovider\n")
    lab = root / "labs" / "01-fake"
    (lab / "tests").mkdir(parents=True)
    (root / "labs" / "conftest.py").write_text('pytest_plugins = ["grading.plugin"]\n')
    (lab / "tests" / "test_fake.py").write_text(GRADER)
    (lab / "lab.toml").write_text(textwrap.dedent('''\
        title = "A fake lab"
        deadline = 20
        [[file]]
        ref = "py/fake/work.py"
        starter = "work.py"
        [[file]]
        ref = "c/fake/prog.c"
        starter = "prog.c"
        '''))
    (lab / "hints.md").write_text("# Hints\n\n## first: Read the test\nIt wants 42.\n")
    (lab / "work.py").write_text(RIGHT)
    (lab / "prog.c").write_text(REFERENCE_C)
    return root


def make_lab(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`make lab1 ARGS` in the fake workshop."""
    env = dict(os.environ, PYTHONPATH=str(root / "py"))
    return subprocess.run([sys.executable, "-m", "grading.run", "lab", "1", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def status(root: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(root / "py"))
    return subprocess.run([sys.executable, "-m", "grading.run", "status"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60).stdout


def learner_writes(root: Path, work_py: str) -> None:
    (root / "labs" / "01-fake" / "work.py").write_text(work_py)


def grade_soon(root: Path, work_py: str) -> subprocess.CompletedProcess[str]:
    """Grade the learner's work_py; the runner must not wait for what it leaves behind."""
    learner_writes(root, work_py)
    started = time.monotonic()
    ran = make_lab(root)
    assert time.monotonic() - started < 60, "the runner must stop what runs past its limits:\n" + ran.stdout
    assert ran.returncode == 1, ran.stdout
    return ran


def test_right_answer_is_done(workshop: Path) -> None:
    ran = make_lab(workshop)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3/3 passed" in ran.stdout and "lab1 is done ✓" in ran.stdout
    assert "done ✓" in status(workshop)


@pytest.mark.parametrize("work_py, signal_name", [(SEGFAULT, "SIGSEGV"), (ABORT, "SIGABRT")])
def test_a_crash_is_a_failure_named_with_its_test(workshop: Path, work_py: str, signal_name: str) -> None:
    make_lab(workshop)                       # a complete, passing run first: it must not be read again
    learner_writes(workshop, work_py)
    ran = make_lab(workshop)
    assert ran.returncode == 1, ran.stdout
    assert f"the tests crashed ({signal_name}) while running test_answer" in ran.stdout, ran.stdout
    assert "done" not in ran.stdout and "3/3" not in ran.stdout, ran.stdout
    assert "tests did not run" in ran.stdout, "the tests after the crash never ran: say so"
    assert "work.py\", line 4 in answer" in ran.stdout, "show the learner's line the process died in"
    assert "done ✓" not in status(workshop)


def test_a_hang_is_stopped_and_says_where_it_waited(workshop: Path) -> None:
    ran = grade_soon(workshop, HANG)
    assert "the tests hung: test_answer was still running" in ran.stdout, ran.stdout
    assert "waiting in" in ran.stdout, "say where each thread of the hung process waited"
    assert "done ✓" not in status(workshop)


def test_a_forked_child_does_not_keep_grading_waiting(workshop: Path) -> None:
    ran = grade_soon(workshop, FORKS)   # its child holds the result pipe open
    assert "still running after the tests ended; they were killed" in ran.stdout, ran.stdout
    left = subprocess.run(["pgrep", "-f", str(workshop)], capture_output=True, text=True).stdout
    assert not left.strip(), "the learner's child processes must be gone after grading"


def test_a_thread_that_never_ends_is_reported(workshop: Path) -> None:
    ran = grade_soon(workshop, NEVER_EXITS)
    assert "pytest did not exit" in ran.stdout and "non-daemon" in ran.stdout, ran.stdout


def test_a_compile_error_is_the_learners_file(workshop: Path) -> None:
    (workshop / "labs" / "01-fake" / "prog.c").write_text(REFERENCE_C.replace("return 0;", "return 0"))
    ran = make_lab(workshop)
    assert ran.returncode == 1
    assert "does not compile" in ran.stdout and "labs/01-fake/prog.c" in ran.stdout, ran.stdout
    assert "done ✓" not in status(workshop)


@pytest.mark.parametrize("select", ["T=test_answer", "no_such_test"])
def test_a_bad_selection_is_an_error(workshop: Path, select: str) -> None:
    ran = make_lab(workshop, "-k", select)
    assert ran.returncode == 2, ran.stdout
    assert "selects no test of lab1" in ran.stdout, ran.stdout
    assert "pass ✓" not in ran.stdout


def test_a_traceback_names_the_learners_file_not_the_graders_copy(workshop: Path) -> None:
    learner_writes(workshop, "def answer():\n    return {}['the key']\n")
    ran = make_lab(workshop, "-k", "answer")
    assert "KeyError" in ran.stdout, ran.stdout
    assert "labs/01-fake/work.py:2" in ran.stdout and "build/grade/lab1/py" not in ran.stdout, ran.stdout


def test_every_test_skipped_is_not_done(workshop: Path) -> None:
    grader = workshop / "labs" / "01-fake" / "tests" / "test_fake.py"
    grader.write_text("import pytest\n\ndef test_needs_a_tracer():\n    pytest.skip('no strace here')\n")
    ran = make_lab(workshop)
    assert ran.returncode == 1
    assert "could not be graded here" in ran.stdout, ran.stdout


def test_a_lab_with_a_skipped_test_is_not_done(workshop: Path) -> None:
    # Everything that ran passes, but one test could not run here: not a pass, so not done.
    grader = workshop / "labs" / "01-fake" / "tests" / "test_fake.py"
    grader.write_text(grader.read_text() + "\n\ndef test_needs_io_uring():\n    import pytest\n"
                      "    pytest.skip('io_uring_setup failed: ENOSYS')\n")
    ran = make_lab(workshop, "--ref")
    assert ran.returncode == 1, ran.stdout
    assert "is done" not in ran.stdout and "1 tests could not run on this machine" in ran.stdout, ran.stdout


def test_a_fixture_this_machine_cannot_make_skips_with_its_reason(workshop: Path) -> None:
    # Unavailable from a fixture (a data file on tmpfs, a tool it starts) is a skip that says
    # why, like Unavailable in a test's body: not an error in setup that reads as the learner's.
    grader = workshop / "labs" / "01-fake" / "tests" / "test_fake.py"
    grader.write_text("import pytest\nfrom xray import Unavailable\n\n"
                      "@pytest.fixture(scope='session')\ndef data():\n"
                      "    raise Unavailable('O_DIRECT: tmpfs here, use LAB_DATA_DIR')\n\n"
                      "def test_reads(data):\n    pass\n")
    ran = make_lab(workshop, "--ref")
    assert ran.returncode == 1, ran.stdout
    assert "could not be graded here" in ran.stdout and "tmpfs here" in ran.stdout, ran.stdout


# ---- the catalogue of known wrong solutions (grading.mutants), in the same fake workshop ----------

def mutant(root: Path, name: str, says: str, old: str, new: str) -> None:
    """Write labs/01-fake/tests/mutants/NAME.patch: the reference's work.py with old replaced by new."""
    reference = root / "py" / "fake" / "work.py"
    text = reference.read_text()
    mutated = text.replace(old, new)
    body = "".join(difflib.unified_diff(text.splitlines(keepends=True), mutated.splitlines(keepends=True),
                                        "a/py/fake/work.py", "b/py/fake/work.py"))
    folder = root / "labs" / "01-fake" / "tests" / "mutants"
    folder.mkdir(exist_ok=True)
    header = "diff --git a/py/fake/work.py b/py/fake/work.py\n"   # as `git diff` writes it
    (folder / f"{name}.patch").write_text(f"mistake: {name}\ncaught-by: test_answer\nsays: {says}\n\n{header}{body}")


def judge(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root / "py"))
    return subprocess.run([sys.executable, "-m", "grading.mutants", "--lab", "1", name], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_mutant_that_patches_more_than_the_reference_is_named(workshop: Path) -> None:
    # `git diff` without `-- c/ py/` also takes a README: such a patch could never apply.
    mutant(workshop, "with-readme", "42", "return 42", "return 41")
    path = workshop / "labs" / "01-fake" / "tests" / "mutants" / "with-readme.patch"
    path.write_text(path.read_text() + "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
                    "@@ -1 +1 @@\n-old\n+new\n")
    ran = judge(workshop, "with-readme")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "README.md, outside c/ and py/" in ran.stderr and "git diff -- c/ py/" in ran.stderr, ran.stderr


def test_a_mutant_is_caught_only_by_its_test_with_its_message(workshop: Path) -> None:
    # In a git checkout whose build/ is ignored, as the workshop is: git apply would skip every
    # file of the tree in build/mutants/ and still exit 0.
    subprocess.run(["git", "init", "-q", str(workshop)], check=True)
    (workshop / ".gitignore").write_text("/build/\n")
    mutant(workshop, "off-by-one", "must return 42", "return 42", "return 41")
    mutant(workshop, "harmless", "must return 42", "# TODO: return the answer.", "# TODO: answer.")
    mutant(workshop, "wrong-words", "timeout", "return 42", "return 41")
    mutant(workshop, "stale", "must return 42", "return 42", "return 43")
    stale = workshop / "labs" / "01-fake" / "tests" / "mutants" / "stale.patch"
    stale.write_text(stale.read_text().replace("    return 42\n", "    return 40\n", 1))
    caught = judge(workshop, "off-by-one")
    assert caught.returncode == 0 and "1 passed, 0 failed" in caught.stdout, caught.stdout + caught.stderr
    for name, why in [("harmless", "NOT CAUGHT"), ("wrong-words", "does not say 'timeout'"),
                      ("stale", "no longer applies")]:
        ran = judge(workshop, name)
        assert ran.returncode == 1 and why in ran.stdout, (name, ran.stdout + ran.stderr)


# ---- a read-only checkout (a mounted share, a container volume) ----------------------------------

def read_only(folder: Path, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run argv with folder mounted read-only (a private mount namespace: root only)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(folder),
                           *argv], capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def can_mount(tmp_path: Path) -> None:
    probe = read_only(tmp_path, ["true"])
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here (needs root and unshare): {probe.stderr.strip()}")


def test_a_read_only_checkout_says_so(workshop: Path, can_mount: None) -> None:
    env = dict(os.environ, PYTHONPATH=str(workshop / "py"))
    graded = read_only(workshop, [sys.executable, "-m", "grading.run", "lab", "1"], cwd=workshop, env=env)
    assert graded.returncode == 2, graded.stdout + graded.stderr
    assert "read-only filesystem" in graded.stdout and "Traceback" not in graded.stderr, graded.stdout + graded.stderr
    hint = read_only(workshop, [sys.executable, "-m", "grading.run", "hint", "1"], cwd=workshop, env=env)
    assert hint.returncode == 0 and "It wants 42." in hint.stdout, hint.stdout + hint.stderr
    assert "not remembered" in hint.stdout and "Traceback" not in hint.stderr


@pytest.mark.parametrize("tool", ["reveal", "bench"])
def test_reveal_and_bench_refuse_before_measuring(tmp_path: Path, can_mount: None, tool: str) -> None:
    started = time.monotonic()
    ran = read_only(tmp_path, [sys.executable, "-m", tool, "--out", str(tmp_path / "out")],
                    env=dict(os.environ, PYTHONPATH=str(ROOT / "py")))
    assert ran.returncode == 2 and "read-only filesystem" in ran.stderr and "nothing was measured" in ran.stderr, ran
    assert time.monotonic() - started < 20, "it must say so before measuring"


def test_a_full_disk_is_named_and_cleaned(workshop: Path, can_mount: None, tmp_path: Path) -> None:
    """The workshop on a 48 MiB filesystem; the learner's code writes until it is full."""
    learner_writes(workshop, FILLS_THE_DISK)
    small = tmp_path / "small"
    small.mkdir()
    script = ('mount -t tmpfs -o size=48m tmpfs "$0" && cp -a "$1"/. "$0" && cd "$0" && '
              f'PYTHONPATH="$0/py" {sys.executable} -m grading.run lab 1; echo "exit $?"; df -m "$0" | tail -1')
    ran = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(small),
                          str(workshop)], capture_output=True, text=True, timeout=120)
    assert "the disk is full" in ran.stdout and "junk.bin" in ran.stdout, ran.stdout + ran.stderr
    assert "exit 1" in ran.stdout and "done ✓" not in ran.stdout
    free_mib = int(ran.stdout.strip().splitlines()[-1].split()[3])
    assert free_mib > 30, "the junk file must be removed after grading"


def test_status_json_records_each_test_and_hint_knows_a_finished_lab(workshop: Path) -> None:
    assert make_lab(workshop).returncode == 0
    record = json.loads((workshop / "build" / "grade" / "status.json").read_text())["lab1"]
    assert record["done"] and record["tests"] == {f"test_fake::{n}": "passed"
                                                 for n in ("test_answer", "test_program", "test_after")}
    env = dict(os.environ, PYTHONPATH=str(workshop / "py"))
    hint = subprocess.run([sys.executable, "-m", "grading.run", "hint", "1"], cwd=workshop, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "lab1 is done ✓" in hint.stdout and "Hint 1" not in hint.stdout, hint.stdout


def test_a_test_too_busy_to_judge_is_not_a_pass(workshop: Path) -> None:
    grader = workshop / "labs" / "01-fake" / "tests" / "test_fake.py"
    grader.write_text("from grading.plugin import too_busy\n\ndef test_fine():\n    pass\n\n"
                      "def test_timed():\n    too_busy('the reference itself would have been too slow')\n")
    ran = make_lab(workshop)
    assert ran.returncode == 1 and "1 not judged" in ran.stdout and "Run again" in ran.stdout, ran.stdout
    assert "done ✓" not in ran.stdout


def test_a_long_failure_message_keeps_its_end(workshop: Path) -> None:
    """A program's output after "failed (exit 1):" is shown, with its last lines (where a
    traceback says what failed), not cut at the colon."""
    grader = workshop / "labs" / "01-fake" / "tests" / "test_fake.py"
    output = "\n".join(f"  frame {i}" for i in range(30)) + "\nValueError: the real cause"
    grader.write_text(f"def test_program():\n    raise AssertionError('prog failed (exit 1):\\n' + {output!r})\n")
    ran = make_lab(workshop)
    assert "prog failed (exit 1):" in ran.stdout and "ValueError: the real cause" in ran.stdout, ran.stdout
    assert "frame 0\n" not in ran.stdout and "lines: the log has them" in ran.stdout, ran.stdout


def test_graders_put_data_files_in_the_checkouts_build_data(workshop: Path) -> None:
    """Where the lab READMEs send the learner (`cd build/data`), not under build/grade/labN/."""
    grader = workshop / "labs" / "01-fake" / "tests" / "test_fake.py"
    grader.write_text("from paths import DATA_DIR\n\ndef test_where():\n"
                      f"    assert str(DATA_DIR) == {str(workshop / 'build' / 'data')!r}, str(DATA_DIR)\n")
    env = dict(os.environ, PYTHONPATH=str(workshop / "py"))
    env.pop("LAB_DATA_DIR", None)
    ran = subprocess.run([sys.executable, "-m", "grading.run", "lab", "1"], cwd=workshop, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout
