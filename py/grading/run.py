"""Grade labs, show progress and hints: what `make labN`, `make status` and `make hint` run.

    python -m grading.run lab 2 [--ref] [-k NAME]   grade the learner's lab 2 (or the reference)
    python -m grading.run status                    a progress table for every lab
    python -m grading.run hint 2                    the next hint of lab 2

`make test` is `python -m grading.prove` (see prove.py), built on grade() below.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from grading import cli
from grading.labs import Lab, all_labs, find_lab
from grading.overlay import build, make_overlay
from grading.session import run_session
from paths import DATA_DIR, ROOT
from xray.causes import unwritable

STATE = ROOT / "build" / "grade"  # overlays, logs, status.json, hints.json


@dataclass
class Graded:
    """The outcome of grading one implementation of one lab."""

    lab: Lab
    kind: str                                  # "reference", "learner" or "starter"
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # short name -> outcome record
    build_error: str = ""
    problem: str = ""                          # the session itself went wrong: a crash, a hang, ...
    selected_none: bool = False                # -k (make labN T=...) selected no test
    seconds: float = 0.0


@dataclass
class Score:
    """What one grading says about the learner's code: its scored tests (the talk's own
    checks, marked smoke, are left out) by outcome, and whether the lab is done."""

    passed: int
    total: int
    skipped: int
    failed: list[tuple[str, dict[str, Any]]]   # (name, record), in the order they ran
    not_run: list[str]
    unjudged: list[str]
    done: bool


def score(graded: Graded) -> Score:
    scored = {n: t for n, t in graded.tests.items() if not t.get("smoke")}

    def named(*outcomes: str) -> list[str]:
        return [n for n, t in scored.items() if t["outcome"] in outcomes]

    passed, skipped = len(named("passed")), len(named("skipped"))
    failed = [(n, t) for n, t in graded.tests.items() if t["outcome"] in ("failed", "error")]
    # Done: every test passed. A test this machine could not run (skipped: no io_uring, no perf) is
    # not a pass: the lab is done where every test can run (a container with the workshop's flags).
    done = passed > 0 and passed == len(scored) and not graded.problem and not failed
    return Score(passed, len(scored), skipped, failed, named("not run"), named("unjudged"), done)


def short_name(nodeid: str) -> str:
    """'labs/01-x/tests/test_c.py::test_flag[poll]' -> 'test_c::test_flag[poll]'."""
    path, _, name = nodeid.partition("::")
    return f"{Path(path).stem}::{name}"


def implementation_root(lab: Lab, kind: str) -> Path:
    """The tree a grading runs on: the repo itself, or an overlay with the lab's files swapped in."""
    if kind == "reference":
        return ROOT
    into = STATE / lab.name if kind == "learner" else ROOT / "build" / "prove" / lab.name
    return make_overlay(lab, into, "learner" if kind == "learner" else "starter")


def grade(lab: Lab, kind: str, select: str | None = None,
          on_test: Callable[[str, dict[str, Any]], None] | None = None, log: Path | None = None,
          impl: Path | None = None) -> Graded:
    """Build one implementation of lab and run its grader tests; on_test sees each result live.

    impl: an implementation root made by the caller (a mutant's tree); by default the one of kind.
    """
    started = time.monotonic()
    graded = Graded(lab, kind)
    impl = impl or implementation_root(lab, kind)
    compiled = build(impl)
    if compiled.returncode != 0:
        graded.build_error = (compiled.stdout + compiled.stderr).strip()
        graded.seconds = time.monotonic() - started
        return graded
    argv = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT),
            str(lab.tests_dir), "-q", "-rN"]
    if select:
        argv += ["-k", select]
    env = dict(os.environ, GRADE_IMPL=str(impl), PYTHONPATH=str(impl / "py"))
    # The data files go where the READMEs say, the checkout's build/data (or the learner's
    # LAB_DATA_DIR), not the overlay's: the overlay's xray would put them under build/grade/.
    env.setdefault("LAB_DATA_DIR", str(DATA_DIR))
    session_began = time.time()

    def seen(record: dict[str, Any]) -> dict[str, Any]:
        # make labN, make watch and status.json all name the learner's files, not the copies.
        return dict(record, message=in_learners_files(lab, record["message"])) if kind == "learner" else record

    outcome = run_session(argv, env, ROOT, log or STATE / f"{lab.name}.log", lab.deadline,
                          None if on_test is None else lambda nodeid, rec: on_test(short_name(nodeid), seen(rec)))
    graded.tests = {short_name(nodeid): seen(record) for nodeid, record in outcome.tests.items()}
    graded.problem, graded.selected_none = outcome.problem, outcome.selected_none
    full = disk_full(impl, session_began)
    if full:
        graded.problem = full + ("\n" + graded.problem if graded.problem else "")
    graded.seconds = time.monotonic() - started
    return graded


def disk_full(impl: Path, since: float, low: int = 64 << 20) -> str:
    """If the disk under build/ ran (almost) full while the tests ran, remove the large files they
    wrote in the tree under test and in the data directory, and say so; else ''."""
    stat = os.statvfs(impl)
    if stat.f_bavail * stat.f_frsize >= low:
        return ""
    written = []
    for folder in (impl, DATA_DIR):
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                info = path.lstat()
                if path.is_file() and not path.is_symlink() and info.st_mtime >= since and info.st_size >= 1 << 20:
                    written.append((info.st_size, path))
    for _, path in written:
        path.unlink(missing_ok=True)
    total = sum(size for size, _ in written) >> 20
    biggest = ", ".join(f"{path.name} ({size >> 20} MiB)" for size, path in sorted(written, reverse=True)[:3])
    return (f"the disk is full: {total} MiB were written during the tests ({biggest or 'no large file found'}), "
            f"and removed again ({len(written)} files). Does your code write in a loop that never ends?")


# ---- hints -------------------------------------------------------------------------------------

def hints(lab: Lab) -> list[tuple[str, str, str]]:
    """The sections of the lab's hints.md as (key, title, text), in order."""
    path = lab.dir / "hints.md"
    if not path.exists():
        return []
    sections = re.split(r"^## ", path.read_text(), flags=re.M)[1:]
    result = []
    for section in sections:
        heading, _, body = section.partition("\n")
        key, _, title = heading.partition(":")
        result.append((key.strip(), title.strip(), body.strip()))
    return result


def hint_text(lab: Lab, key: str | None) -> str | None:
    for k, title, body in hints(lab):
        if k == key:
            return f"Hint ({k}) — {title}\n{body}"
    return None


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    """Write a small state file; on a read-only checkout say so and go on (it is only memory)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
    except OSError as err:
        print(f"(not remembered: {path.relative_to(ROOT)} cannot be written: {err.strerror})")


def next_hint(lab: Lab) -> int:
    """Print the next hint of lab (one more each call); 0 when shown, 1 when there is none."""
    shown = _load(STATE / "hints.json")
    all_hints = hints(lab)
    if not all_hints:
        print(f"{lab.name} has no hints yet.")
        return 1
    last = _load(STATE / "status.json").get(lab.name)
    if last and last.get("done") and last["fingerprint"] == lab.fingerprint():
        print(f"{lab.name} is done ✓ (graded {last.get('when', 'earlier')}): no hint needed. All "
              f"{len(all_hints)} are in {(lab.dir / 'hints.md').relative_to(ROOT)}, to read for the ideas.")
        return 0
    n = shown.get(lab.name, 0)
    if n >= len(all_hints):
        print(f"That was the last of {len(all_hints)} hints for {lab.name}; they start again from the first.")
        n = 0
    key, title, body = all_hints[n]
    print(f"Hint {n + 1} of {len(all_hints)} for {lab.name} ({key}) — {title}\n\n{body}")
    shown[lab.name] = n + 1
    _save(STATE / "hints.json", shown)
    return 0


# ---- make labN -----------------------------------------------------------------------------------

def is_started(lab: Lab) -> bool:
    """Has the learner changed any of the lab's files from the generated starters?"""
    from grading.starters import make_starter
    for ref, starter in lab.files:
        path = lab.dir / starter
        if not path.exists() or path.read_text() != make_starter((ROOT / ref).read_text(), ref, lab.name):
            return True
    return False


def learner_paths(lab: Lab, compiler_output: str) -> str:
    """Compiler messages name the overlay's copy (nonblock/nb.c, or src/aio_context.c for an
    extension built in its package): name the learner's file instead."""
    for ref, starter in lab.files:
        if ref.parts[0] == "c":
            as_compiled = ref.relative_to("c").as_posix()
        elif ref.suffix in (".c", ".h") and ref.parts[0] == "py":
            as_compiled = ref.relative_to(*ref.parts[:2]).as_posix()   # py/PACKAGE/src/x.c -> src/x.c
        else:
            continue
        mine = (lab.dir / starter).relative_to(ROOT).as_posix()
        compiler_output = re.sub(rf"(?<![\w/]){re.escape(as_compiled)}\b", mine, compiler_output)
    # make's own "*** Error" lines, and setuptools' echo of the compiler's command, name build
    # paths and say nothing the compiler did not.
    return "\n".join(line for line in compiler_output.splitlines()
                     if not line.startswith(("make", "error: Command")))


def in_learners_files(lab: Lab, text: str) -> str:
    """A failure's traceback names the grader's copy of a learner's file
    (build/grade/lab6/py/kernaio/_file.py:253): name the learner's own (labs/06-kernaio/_file.py:253),
    the one to edit. The copy is the learner's file as it was, so the line numbers hold."""
    for ref, starter in lab.files:
        copy = STATE / lab.name / ref
        mine = (lab.dir / starter).relative_to(ROOT).as_posix()
        text = text.replace(str(copy), mine).replace(copy.relative_to(ROOT).as_posix(), mine)
    return text


def _line(name: str, record: dict[str, Any]) -> str:
    mark = {"passed": "✓", "failed": "✗", "error": "✗", "skipped": "-", "unjudged": "?"}.get(record["outcome"], "?")
    if record.get("smoke"):
        mark = "·"  # a check of the talk's own code: shown, but not part of the learner's score
    text = f"  {mark} {name:<58} {record['duration']:6.2f}s"
    if record["outcome"] in ("skipped", "unjudged"):
        text += f"  {record['outcome']}: {record['message']}"
    elif record["outcome"] in ("failed", "error"):
        text += "".join(f"\n      {line}" for line in record["message"].splitlines())
    return text


def run_lab(spec: str, reference: bool, select: str | None) -> int:
    lab = find_lab(spec)
    problem = unwritable(STATE)
    if problem:   # grading builds a copy of the tree there: nothing can be graded without it
        print(f"{lab.name}: cannot grade, because {problem}: grading builds your code in build/. Copy the "
              "checkout to a writable place (git clone, or cp -a) and run make there.")
        return 2
    kind = "reference" if reference else "learner"
    where = "the reference code" if reference else f"your files in {lab.dir.relative_to(ROOT)}/"
    print(f"{lab.name} — {lab.title}: grading {where}")
    if not reference and not is_started(lab):
        print(f"  not started: your files are still the untouched starters. "
              f"Read {(lab.dir / 'README.md').relative_to(ROOT)} to begin.")
    print(flush=True)
    log = STATE / f"{lab.name}.log"
    graded = grade(lab, kind, select, on_test=lambda name, rec: print(_line(name, rec), flush=True), log=log)
    if graded.build_error:
        print("  ✗ build: the C code does not compile:\n")
        print("\n".join("    " + line for line in learner_paths(lab, graded.build_error).splitlines()[:40]))
        return 1
    if graded.selected_none:
        print(f"  ✗ T={select!r} selects no test of {lab.name}: T= is pytest's -k, a part of a test's name "
              f"(or an expression: 'nonblocking and not py'). The tests are listed by `make {lab.name}`.\n"
              f"{graded.problem}")
        return 2
    result = score(graded)
    passed, total, skipped, failed = result.passed, result.total, result.skipped, result.failed
    not_run, unjudged, done = result.not_run, result.unjudged, result.done
    talk = len(graded.tests) - total
    if graded.problem:
        print("\n  ✗ " + graded.problem)
    if not_run:
        print(f"\n  {len(not_run)} tests did not run, so they count as not passed: " + ", ".join(
            n.split("::")[-1] for n in not_run[:8]) + (" …" if len(not_run) > 8 else ""))
    summary = (f"\n{lab.name}: {passed}/{total} passed" + (f", {skipped} skipped" if skipped else "")
               + (f", {len(not_run)} not run" if not_run else "")
               + (f", {len(unjudged)} not judged (the machine was too busy: run again)" if unjudged else "")
               + (f" (· = {talk} checks of the talk's own code, not scored)" if talk else ""))
    print(f"{summary}  ({graded.seconds:.1f} s)")
    if not reference and not select:  # a subset says nothing about the whole lab
        status = _load(STATE / "status.json")
        # Also for instructors: per test what happened, collected with no network and no server.
        status[lab.name] = {"passed": passed, "total": total, "done": done, "fingerprint": lab.fingerprint(),
                            "when": time.strftime("%Y-%m-%d %H:%M:%S"), "problem": graded.problem.split("\n")[0],
                            "tests": {n: t["outcome"] for n, t in graded.tests.items() if not t.get("smoke")}}
        _save(STATE / "status.json", status)
    if done:
        log.unlink(missing_ok=True)
        print(f"{lab.name} is done ✓" if not select else "the selected tests pass ✓")
        return 0
    if not failed:
        if graded.problem:
            print(f"{lab.name} is not done: the grading itself went wrong (✗ above).")
        elif unjudged:
            print(f"{lab.name} is not done yet: {len(unjudged)} tests could not judge on a machine this busy "
                  "(? above). Run again.")
        elif total and skipped == total:
            print(f"{lab.name} could not be graded here: every test was skipped (the reasons are above; "
                  "`make doctor` says what this machine lacks).")
        elif skipped:
            print(f"{lab.name} is not done yet: everything that ran passes, but {skipped} tests could not run "
                  "on this machine (the reasons are above; `make doctor` says what is missing and how to get "
                  "it, e.g. the container with the workshop's flags, README: On macOS or Windows).")
        print(f"\nFull details: {log.relative_to(ROOT)}")
        return 1
    name, first = failed[0]
    hint = hint_text(lab, first.get("hint"))
    print(f"\nFirst failure: {name}" + (f" — {first['doc']}" if first.get("doc") else ""))
    if hint:
        print("\n" + hint)
    print(f"\nFull details: {log.relative_to(ROOT)}    More hints: make hint LAB={lab.number}"
          f"    One test: make {lab.name} T={name.split('::')[-1].split('[')[0]}")
    return 1


def status() -> int:
    recorded = _load(STATE / "status.json")
    labs = all_labs()
    width = max(len(lab.title) for lab in labs) + 2
    print(f"{'lab':<6}{'topic':<{width}}{'state':<14}{'last run':<10}")
    for lab in labs:
        last = recorded.get(lab.name)
        score = f"{last['passed']}/{last['total']}" if last else ""
        if not is_started(lab):
            state = "not started"
        elif last is None or last["fingerprint"] != lab.fingerprint():
            state = "in progress"   # edited since the last `make labN`
            score += " (stale)" if last else ""
        elif last.get("done"):
            state = "done ✓"
        elif last["passed"] and all(o in ("passed", "skipped") for o in last.get("tests", {}).values()):
            state = "not judged"   # everything that ran passed; some tests cannot run on this machine
        else:
            state = "failing"
        print(f"{lab.name:<6}{lab.title:<{width}}{state:<14}{score:<10}")
    print("\nmake labN grades a lab; make hint LAB=N shows its next hint.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.run", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("lab", help="grade a lab")
    lab.add_argument("number")
    lab.add_argument("--ref", action="store_true", help="grade the reference instead of your files")
    lab.add_argument("-k", dest="select", help="only the tests whose name contains this (pytest -k)")
    sub.add_parser("status", help="progress of every lab")
    hint = sub.add_parser("hint", help="the next hint of a lab")
    hint.add_argument("number")
    args = parser.parse_args(argv)
    try:
        if args.command == "lab":
            return run_lab(args.number, args.ref, args.select or None)
        if args.command == "hint":
            return next_hint(find_lab(args.number))
        return status()
    except ValueError as err:
        print(f"grading: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
