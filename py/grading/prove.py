"""`make test`: prove the workshop honest, test by test.

1. The committed starter files are what the reference generates (one source of truth).
2. The toolkit's own tests pass (py/tests: the strace parser, the generator, ...), and
   kernaio's, also on a build of it with AddressSanitizer.
3. For every lab, every grader test passes on the reference and FAILS on the pristine
   starter — the grader cannot be satisfied by code the learner has not written.
   A test marked `smoke` may pass on the starter; a test skipped because this machine
   cannot trace is reported with its reason, never counted as proven. A crash, a hang
   or a test that did not run is never a pass (session.py watches each pytest).
   Then every known wrong solution in the lab's catalogue (tests/mutants/, mutants.py)
   fails, by the test it names and with the message it names.
   And every command the lab's README tells the learner to type runs as the README says,
   right after the reference grading (whose data files they read), on the reference built
   in build/grade/labN (readme_commands.py); the top README's too.
4. Every notebook runs top to bottom (its assertion cells check what its prose claims),
   and the slides build, showing only code and make targets that exist.

The last line is "N passed, M failed" (M counts what is not proven), and the exit
code is 0 only when M is 0.
"""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from grading import cli, mutants, readme_commands
from grading.labs import all_labs, find_lab
from grading.run import Graded, grade
from paths import ROOT


def verdict(name: str, ref: dict[str, Any] | None, starter: dict[str, Any] | None) -> tuple[str, bool | None]:
    """(explanation, proven?) for one test; None means skipped here, neither proven nor failed."""
    ref_outcome = ref["outcome"] if ref else "missing"
    starter_outcome = starter["outcome"] if starter else "missing"
    smoke = bool(ref and ref.get("smoke"))
    if ref_outcome in ("skipped", "unjudged"):
        return f"{ref_outcome} on the reference: {ref['message'] if ref else ''}", None
    if ref_outcome != "passed":
        return f"does not pass on the reference ({ref_outcome}: {ref['message'] if ref else ''})", False
    if smoke:
        return "passes on the reference (smoke test: the starter is not judged)", True
    if starter_outcome == "failed":
        return "passes on the reference, fails on the starter", True
    if starter_outcome == "passed":
        return "PASSES ON THE STARTER: the grader does not check the learner's code", False
    if starter_outcome in ("skipped", "unjudged"):
        return f"skipped on the starter: {starter['message'] if starter else ''}", None
    if starter_outcome == "not run":
        return "did not run on the starter (an earlier test crashed or hung the session): not proven", False
    return f"on the starter it did not fail in the test itself ({starter_outcome}): a fixture broke", False


def prove_lab(number: str | int | None, select: str | None,
              commands: list[readme_commands.Result]) -> tuple[int, int, int]:
    """Prove the grader tests of one lab (or all), its mutants and its README's commands
    (appended to commands; not with select). Returns (proven, unproven, skipped) tests."""
    proven = unproven = skipped = 0
    labs = [find_lab(number)] if number is not None else all_labs()
    for lab in labs:
        results: list[Graded] = []
        said: list[str] = []     # the README commands' lines, shown after the lab's tests
        for kind in ("reference", "starter"):
            graded = grade(lab, kind, select, log=ROOT / "build" / "prove" / f"{lab.name}-{kind}.log")
            if graded.build_error:
                print(f"✗ {lab.name} {kind}: does not build\n{graded.build_error}")
                unproven += 1
            if graded.problem and kind == "reference":
                print(f"✗ {lab.name} reference: {graded.problem}")
                unproven += 1
            results.append(graded)
            if kind == "reference" and select is None:   # now: build/data has the graders' files
                commands += readme_commands.prove_lab(lab, say=said.append)
        ref, starter = results
        print(f"{lab.name} — {lab.title}  (reference {ref.seconds:.0f} s, starter {starter.seconds:.0f} s)")
        for name in dict.fromkeys([*ref.tests, *starter.tests]):  # in the order the tests ran
            text, ok = verdict(name, ref.tests.get(name), starter.tests.get(name))
            mark = {True: "✓", False: "✗", None: "-"}[ok]
            print(f"  {mark} {name:<60} {text}")
            if ok is None:
                skipped += 1
            elif ok:
                proven += 1
            else:
                unproven += 1
        print("\n".join(said))
        if select is None:
            started = time.monotonic()
            try:
                verdicts = mutants.prove([lab])
            except ValueError as err:   # a catalogue that cannot be read counts as one not proven
                print(f"  ✗ {lab.name}'s known wrong solutions: {err}")
                unproven += 1
                continue
            caught = sum(v.caught for v in verdicts)
            print(f"  {lab.name}: {caught} of {len(verdicts)} known wrong solutions caught "
                  f"({time.monotonic() - started:.0f} s)")
            proven += caught
            unproven += len(verdicts) - caught
    return proven, unproven, skipped


def run_step(title: str, argv: list[str]) -> bool:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    mark = "✓" if result.returncode == 0 else "✗"
    print(f"{mark} {title}  ({time.monotonic() - started:.0f} s)")
    if result.returncode != 0:
        print("\n".join("    " + line for line in (result.stdout + result.stderr).strip().splitlines()[-60:]))
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.prove", __doc__)
    parser.add_argument("--lab", help="only this lab's grader tests (skips the other steps)")
    parser.add_argument("-k", dest="select", help="only tests whose name contains this")
    args = parser.parse_args(argv)
    started = time.monotonic()
    step_results: list[bool] = []
    py = sys.executable
    if args.lab is None:
        step_results.append(run_step("starter files match the reference", [py, "-m", "grading.starters", "check"]))
        step_results.append(run_step("notebooks are stored without outputs", [py, "-m", "grading.notebooks", "check"]))
        packages = sorted(p.parent.name for p in (ROOT / "py").glob("*/__init__.py") if p.parent.name != "tests")
        modules = sorted(p.stem for p in (ROOT / "py").glob("*.py"))   # paths.py
        step_results.append(run_step("type check (mypy --strict) of " + ", ".join(packages + modules),
                                     [py, "-m", "mypy", "--config-file", "mypy.ini", *(f"-p{p}" for p in packages),
                                      *(f"-m{m}" for m in modules)]))
        step_results.append(run_step("toolkit tests (py/tests)", [py, "-m", "pytest", "-c", "pytest.ini", "-q", "py/tests"]))
        step_results.append(run_step("kernaio's own tests (py/kernaio/tests)",
                                     [py, "-m", "pytest", "-c", "pytest.ini", "-q", "py/kernaio/tests"]))
        step_results.append(run_step("kernaio's tests under AddressSanitizer (100,000 reads; `make asan`: a million)",
                                     ["env", "KERNAIO_LEAK_READS=100000", "tools/kernaio-asan.sh"]))
        step_results.append(run_step("slides: the deck builds offline; every include, file and make target it names exists",
                                     [py, "-m", "deck", "check", "--setup"]))
    commands: list[readme_commands.Result] = []
    if args.lab is None:
        commands += readme_commands.prove_top()
    proven, unproven, skipped = prove_lab(args.lab, args.select, commands)
    if args.lab is None:
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
            step_results.append(run_step(f"notebook {nb.name} runs top to bottom",
                                         [py, "-m", "grading.notebooks", "run", str(nb.relative_to(ROOT))]))
    steps_failed = step_results.count(False)
    minutes = (time.monotonic() - started) / 60
    ran = readme_commands.counts(commands)
    print(f"\nGrader tests proven both ways, and wrong solutions caught: {proven}; not proven: {unproven}; "
          f"skipped here: {skipped}. "
          f"README commands: {ran['passed']} ran as their README says, {ran['failed']} failed, "
          f"{ran['skipped']} skipped here, {ran['not run']} not run (marked so, with the reason). "
          f"Other steps: {step_results.count(True)} passed, {steps_failed} failed.  ({minutes:.1f} min)")
    if skipped or ran["skipped"]:
        print("Skipped tests and commands could not run on this machine (the reasons are above); `make doctor` "
              "says why.")
    passed = proven + ran["passed"] + step_results.count(True)
    failed = unproven + ran["failed"] + steps_failed
    skipped += ran["skipped"]
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
          + (f" (README commands: {ran['passed']} run, {ran['not run']} not run as marked, {ran['skipped']} skipped)"
             if commands else ""))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
