"""Known wrong solutions: each lab's catalogue of plausible mistakes, proven to fail its grader.

    python -m grading.mutants                 # every lab's catalogue (make test runs this)
    python -m grading.mutants --lab 4         # one lab's
    python -m grading.mutants --lab 4 polling-suspend   # one mutant (a part of its name)

A mutant is a patch to the reference that makes one mistake a learner makes:
labs/NN-topic/tests/mutants/NAME.patch, three header lines and then a unified diff whose
paths are relative to the repository (what `git diff` prints):

    mistake: nb_wait ignores its timeout: poll(..., -1) waits for ever
    caught-by: test_c_wait_honours_its_timeout
    says: timeout

    diff --git a/c/nonblock/nb.c b/c/nonblock/nb.c
    ...

To write one: edit the reference file(s) in your checkout, `git diff > …/NAME.patch`,
`git checkout` the files back, add the header lines, and run this module on it.

The proof of a mutant: the reference tree with the patch applied (an overlay in
build/mutants/, its C built on a copy of the reference's binaries so that only what the
patch touched is recompiled) is graded with only the test `caught-by` names, and that test
must fail — by its own assertion, or by a crash or hang the runner reports in it — with a
message that contains `says` (so the learner is told the mistake, not something else). A
patch that no longer applies, a mutant that does not compile, or a test that is not there
is a broken catalogue, and fails too.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from grading import cli
from grading.labs import Lab, all_labs, find_lab
from grading.overlay import make_overlay
from paths import ROOT

HEADERS = ("mistake", "caught-by", "says")


@dataclass(frozen=True)
class Mutant:
    lab: Lab
    path: Path          # the .patch file
    mistake: str        # what the learner got wrong, in a sentence
    caught_by: str      # the test function that must fail (no parameters, no file)
    says: str           # a part of that test's failure message

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class Verdict:
    mutant: Mutant
    caught: bool
    text: str           # what happened, for the report
    seconds: float


def load(path: Path, lab: Lab) -> Mutant:
    """Read a mutant's header lines; ValueError names a missing one, or a file it must not patch."""
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith(("diff ", "--- ")):
            break
        key, sep, value = line.partition(":")
        if sep and key.strip() in HEADERS:
            fields[key.strip()] = value.strip()
    missing = [h for h in HEADERS if not fields.get(h)]
    if missing:
        raise ValueError(f"{path.relative_to(ROOT)}: no {', '.join(missing)} line (see python -m grading.mutants -h)")
    # A mutant's tree holds the reference's c/ and py/ only: a patch of anything else (a README
    # caught by `git diff` without `-- c/ py/`) could never apply; say that, not "no longer".
    outside = sorted({m for m in re.findall(r"^diff --git a/(\S+)", path.read_text(), re.M)
                      if not m.startswith(("c/", "py/"))})
    if outside:
        raise ValueError(f"{path.relative_to(ROOT)}: patches {', '.join(outside)}, outside c/ and py/; a mutant "
                         "changes the reference only (make it with `git diff -- c/ py/`)")
    return Mutant(lab, path, fields["mistake"], fields["caught-by"], fields["says"])


def catalogue(lab: Lab) -> list[Mutant]:
    return [load(path, lab) for path in sorted((lab.tests_dir / "mutants").glob("*.patch"))]


def make_tree(mutant: Mutant, into: Path) -> str:
    """The reference c/ and py/ in `into`, with the reference's builds, and the patch applied.

    Returns "" or why the patch does not apply.
    """
    make_overlay(mutant.lab, into, "reference")   # copies keep their mtimes: built files stay newer
    if (ROOT / "build" / "bin").is_dir():
        shutil.copytree(ROOT / "build" / "bin", into / "build" / "bin", dirs_exist_ok=True)
    # The tree lies inside the checkout: without a ceiling, git apply would take the paths as
    # relative to the checkout's top, skip every file ("Skipped patch", said only with -v) and exit 0.
    applied = subprocess.run(["git", "apply", "--verbose", "--whitespace=nowarn", str(mutant.path)], cwd=into,
                             capture_output=True, text=True,
                             env=dict(os.environ, GIT_CEILING_DIRECTORIES=str(into.parent)))
    said = (applied.stdout + applied.stderr).strip()
    if applied.returncode or "Skipped patch" in said or "Applied patch" not in said:
        return said or f"git apply exited {applied.returncode}"
    return ""


def judge(mutant: Mutant) -> Verdict:
    """Grade the mutant with its one test; see the module's docstring for what counts as caught."""
    from grading.run import grade   # run imports this module's users; import late
    started = time.monotonic()
    into = ROOT / "build" / "mutants" / f"{mutant.lab.name}-{mutant.name}"

    def verdict(caught: bool, text: str) -> Verdict:
        return Verdict(mutant, caught, text, time.monotonic() - started)

    problem = make_tree(mutant, into)
    if problem:
        return verdict(False, f"the patch no longer applies to the reference: {problem}")
    graded = grade(mutant.lab, "mutant", mutant.caught_by, log=into / "grade.log", impl=into)
    if graded.build_error:
        return verdict(False, "the mutant does not compile, so it proves nothing:\n"
                       + graded.build_error[-800:])
    named = {n: t for n, t in graded.tests.items() if n.split("::")[-1].split("[")[0] == mutant.caught_by}
    if not named:
        return verdict(False, f"there is no test {mutant.caught_by} in {mutant.lab.name} "
                       f"(ran: {', '.join(graded.tests) or 'nothing'}{'; ' + graded.problem if graded.problem else ''})")
    failing = [(n, t) for n, t in named.items() if t["outcome"] == "failed"]
    if not failing:
        outcomes = ", ".join(f"{n}: {t['outcome']}" for n, t in named.items())
        return verdict(False, f"NOT CAUGHT: {outcomes}")
    said = [(n, t) for n, t in failing if mutant.says.lower() in t["message"].lower()]
    if not said:
        name, test = failing[0]
        return verdict(False, f"{name} fails, but its message does not say {mutant.says!r}: {test['message']}")
    name, test = said[0]
    return verdict(True, f"{name}: {test['message']}")


def prove(labs: list[Lab], select: str | None = None, jobs: int = 2,
          report: bool = True) -> list[Verdict]:
    """Judge the catalogues of labs (their mutants whose name contains select), jobs at a time."""
    mutants = [m for lab in labs for m in catalogue(lab) if select is None or select in m.name]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        verdicts = []
        for result in pool.map(judge, mutants):
            verdicts.append(result)
            if report:
                print(line(result), flush=True)
    return verdicts


def line(v: Verdict) -> str:
    mark = "✓" if v.caught else "✗"
    text = v.text if len(v.text) < 400 else v.text[:400] + " …"
    return (f"  {mark} mutant {v.mutant.lab.name}/{v.mutant.name}  ({v.seconds:.0f} s)  — {v.mutant.mistake}\n"
            f"      {text}")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.mutants", __doc__)
    parser.add_argument("--lab", help="one lab's catalogue")
    parser.add_argument("name", nargs="?", help="only the mutants whose name contains this")
    parser.add_argument("--jobs", type=int, default=2, help="mutants judged at once (default 2)")
    args = parser.parse_args(argv)
    labs = [find_lab(args.lab)] if args.lab else all_labs()
    try:
        verdicts = prove(labs, args.name, args.jobs)
    except ValueError as err:   # a catalogue that cannot be read: its file and what is wrong
        print(f"grading.mutants: {err}", file=sys.stderr)
        return 1
    caught = sum(v.caught for v in verdicts)
    print(f"{caught} passed, {len(verdicts) - caught} failed")
    return 0 if verdicts and caught == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
