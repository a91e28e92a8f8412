"""Run the commands the READMEs tell a learner to type, so that none of them can rot.

    python -m grading.readme_commands --check        every README's markers and inline commands (nothing run)
    python -m grading.readme_commands --lab 3        lab 3's commands (after `make lab3 REF=1`: they read
                                                     the files its graders write in build/data)
    python -m grading.readme_commands --top          the top README's

`make test` (prove.py) runs each lab's commands right after its reference grading. The blocks
and their markers are described in readme_blocks.py. How a README's blocks run:

- one after the other, from the checkout's top, each as `bash -e -o pipefail`, in a process
  group of its own that is ended with it (a `cmd &` it left behind included);
- what a learner's terminal remembers carries over: the lines of earlier blocks that only set a
  variable (`B=build/grade/lab3/build/bin`) or change directory (`cd build/data`) are replayed
  first, and a captured {PLACEHOLDER} replaces its word;
- the commands name the learner's build (build/grade/labN), so while they run that folder
  holds the REFERENCE, built; a learner's own build/grade/labN is set aside and put back
  (also after a run that was killed: the next one puts it back first);
- a block this machine cannot run (no perf, io_uring blocked, the data directory in memory)
  is skipped with the reason, never passed; a not-run block is reported with its reason.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from grading import cli
from grading.labs import Lab, all_labs, find_lab
from grading.overlay import build, make_overlay
from grading.readme_blocks import PLACEHOLDER, Block, MarkerError, needs, parse, unmarked_commands
from paths import DATA_DIR, ROOT
from xray import Unavailable
from xray.causes import memory_filesystem
from xray.doctor import check_io_uring, check_kernel_aio, check_o_direct, check_perf, check_strace, require

STATE = ROOT / "build" / "grade"
DEFAULT_TIMEOUT = 60.0
KEEP_READY = 30.0          # seconds a keep block has to show its text
STOP_GRACE = 3.0           # seconds between SIGTERM and SIGKILL when a block is stopped
# Variables of make's or of the grader's that a learner's shell does not have.
NOT_A_LEARNERS = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "GRADE_IMPL", "GRADE_LIVE_FD", "MAKEFLAGS",
                  "MAKELEVEL", "MFLAGS"}
REMEMBERED = re.compile(r"^\s*((export\s+)?[A-Za-z_]\w*=(\"[^\"]*\"|'[^']*'|\S*)|cd\s+\S+)\s*(#.*)?$")
CHECKS = {"strace": check_strace, "perf": check_perf, "kernel-aio": check_kernel_aio, "o-direct": check_o_direct,
          "io_uring": check_io_uring}


@dataclass
class Result:
    block: Block
    outcome: str               # passed, failed, skipped, not run
    message: str = ""
    seconds: float = 0.0


# ---- one block, running --------------------------------------------------------------------

class Shell:
    """A block's bash, its output gathered as it comes (stdout and stderr together, as a terminal shows them)."""

    def __init__(self, script: str, cwd: Path, env: dict[str, str], tty: bool, typed: str | None,
                 hold_stdin: bool):
        self.started = time.monotonic()
        self._chunks: list[bytes] = []
        argv = ["bash", "--noprofile", "--norc", "-c", script]
        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
            self.process = subprocess.Popen(argv, cwd=cwd, env=dict(env, TERM=env.get("TERM") or "xterm"),
                                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
            os.close(slave)
            self._out, self._in = master, master
        else:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            assert self.process.stdout is not None and self.process.stdin is not None
            self._out, self._in = self.process.stdout.fileno(), self.process.stdin.fileno()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        with contextlib.suppress(OSError):
            if typed is not None:
                os.write(self._in, (typed + "\n").encode())
            if not hold_stdin and self.process.stdin is not None:
                self.process.stdin.close()   # Ctrl-D: the end of what is typed

    def _read(self) -> None:
        with contextlib.suppress(OSError):    # EIO: the terminal's last process has gone
            while chunk := os.read(self._out, 65536):
                self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace").replace("\r\n", "\n")

    def wait(self, seconds: float) -> bool:
        """True if it ended within seconds."""
        try:
            self.process.wait(max(seconds, 0))
            return True
        except subprocess.TimeoutExpired:
            return False

    def end(self) -> None:
        """Stop the block's whole process group (its background jobs too); gather the last output."""
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
                if sig == signal.SIGTERM and not _group_alive(self.process.pid):
                    break
        self._reader.join(2)
        if self.process.stdout is None:      # a terminal: its master end is ours to close
            with contextlib.suppress(OSError):
                os.close(self._out)
        for stream in (self.process.stdout, self.process.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def found(expected: str, output: str) -> re.Match[str] | None:
    """Where an expected text is in the output; {NAME} matches a value and captures it."""
    parts = PLACEHOLDER.split(expected)   # text, name, text, name, ..., text
    pattern = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>[\\w.-]+)" for k, p in enumerate(parts))
    return re.search(pattern, output)


def tail(text: str, lines: int = 15) -> str:
    kept = [ln if len(ln) <= 200 else ln[:200] + " …" for ln in text.rstrip().splitlines()[-lines:]]
    return "\n".join("      | " + ln for ln in kept) or "      | (nothing)"


# ---- one README: the blocks in order, with what a terminal remembers -----------------------

class Session:
    """The blocks of one README run in order, as a learner's terminal(s) would have them."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.remembered: list[str] = []        # assignments and cd lines of the blocks so far
        self.values: dict[str, str] = {}       # captured placeholders
        self.declared: dict[str, int] = {}     # placeholder -> the line of the block that captures it
        self.kept: list[tuple[Result, Shell]] = []

    def run(self, block: Block) -> Result:
        if not block.run:
            return Result(block, "not run", block.reason)
        text = block.text
        for name, line in self.declared.items():
            if re.search(rf"(?<![\w$]){name}(?!\w)", text) and name not in self.values:
                return Result(block, "skipped", f"it uses {name}, which the block at line {line} was to show, "
                                                f"and that block did not run")
        for name, value in self.values.items():
            text = re.sub(rf"(?<![\w$]){name}(?!\w)", value, text)
        for name in block.declares():
            self.declared[name] = block.line
            self.values.pop(name, None)
        script = "\n".join(["set -eo pipefail", *self.remembered, text])
        self.remembered += [ln for ln in text.splitlines() if REMEMBERED.match(ln)]
        why = unavailable(block, self.root)
        if why:
            return Result(block, "skipped", why)
        opts = block.options
        shell = Shell(script, self.root, self.env, opts.tty, opts.input, hold_stdin=opts.keep or opts.stop is not None)
        if opts.keep:
            return self._keep(block, shell)
        limit = opts.stop if opts.stop is not None else opts.timeout or DEFAULT_TIMEOUT
        ended = shell.wait(limit)
        shell.end()
        result = Result(block, "passed", seconds=time.monotonic() - shell.started)
        code = shell.process.returncode
        if not ended and opts.stop is None:
            result.outcome, result.message = "failed", (
                f"still running after {limit:g} s, and stopped (a command that waits for ever? one that runs until "
                "stopped is marked stop=SECONDS)")
        elif ended and code != opts.status:
            result.outcome, result.message = "failed", f"exit status {code}, expected {opts.status}"
        return self._judge(result, shell.output)

    def _keep(self, block: Block, shell: Shell) -> Result:
        limit = block.options.timeout or KEEP_READY
        result = Result(block, "passed", "left running for the blocks after it")
        while time.monotonic() - shell.started < limit:
            if all(found(e, shell.output) for e in block.options.expect) or shell.process.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.05)      # let a last line come with the one awaited
        code = shell.process.poll()
        if code is not None and code != block.options.status:
            result.outcome, result.message = "failed", f"it ended by itself with exit status {code}"
        result.seconds = time.monotonic() - shell.started
        result = self._judge(result, shell.output)
        if result.outcome == "failed" and code is None:
            result.message = f"in {limit:g} s, " + result.message
        if result.outcome == "passed" and code is None:
            self.kept.append((result, shell))
        else:
            shell.end()
        return result

    def _judge(self, result: Result, output: str) -> Result:
        """Check the expected texts (unless it failed already), capture placeholders, add the output to a failure."""
        if result.outcome == "passed":
            missing = [e for e in result.block.options.expect if not found(e, output)]
            if missing:
                result.outcome = "failed"
                result.message = "its output does not show " + " nor ".join(repr(e) for e in missing)
            else:
                for e in result.block.options.expect:
                    m = found(e, output)
                    assert m is not None
                    self.values.update(m.groupdict())
        if result.outcome == "failed":
            result.message += "; it printed:\n" + tail(output)
        return result

    def close(self) -> list[Result]:
        """Stop the blocks kept running. One that had ended by itself with an error fails now: its
        Result is changed, and returned to be shown again."""
        died = []
        for result, shell in self.kept:
            code = shell.process.poll()
            shell.end()
            if code is not None and code != result.block.options.status:
                result.outcome = "failed"
                result.message = (f"kept running for the blocks after it, it ended by itself with exit status {code} "
                                  f"before the README's last block; it printed:\n{tail(shell.output)}")
                died.append(result)
        self.kept.clear()
        return died


def unavailable(block: Block, root: Path) -> str:
    """Why this machine cannot run the block, or ''."""
    for need in needs(block):
        if need == "data":
            data = root / "build" / "data"
            if DATA_DIR.resolve() != data.resolve():
                return (f"LAB_DATA_DIR puts the labs' files in {DATA_DIR}, and the README's commands look for them "
                        "in build/data")
            memory = memory_filesystem(DATA_DIR)
            if memory:
                return f"the labs' data directory is on {memory}, in memory: the graders wrote no files there"
        elif need in CHECKS:
            try:
                require(CHECKS[need])
            except Unavailable as err:
                return f"{need}: {err}"
        elif shutil.which(need) is None:
            return f"{need} is not installed here (make setup installs it on Debian and Ubuntu)"
    return ""


def learner_env() -> dict[str, str]:
    """The environment of a learner's shell: this one, without what make or the grader added."""
    return {k: v for k, v in os.environ.items() if k not in NOT_A_LEARNERS}


def run_readme(readme: Path, root: Path = ROOT, env: dict[str, str] | None = None,
               on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Run every block of a README in order. A README whose markers are wrong is one failed Result."""
    try:
        blocks = parse(readme)
        loose = unmarked_commands(readme, blocks)
    except MarkerError as err:
        wrong = Result(Block(readme, 0, "(its markers)", run=False), "failed", str(err))
        if on_result:
            on_result(wrong)   # said where the others are, not only counted
        return [wrong]
    results = []
    if loose:
        results.append(Result(Block(readme, 0, "(the Steps' inline commands)", run=False), "failed",
                              "commands in the Steps that no marked block contains, so make test does not run "
                              "them (put each in a block, or the block it repeats):\n"
                              + "\n".join(f"      `{c}`" for c in loose)))
        if on_result:
            on_result(results[-1])
    session = Session(root, env if env is not None else learner_env())
    try:
        for block in blocks:
            results.append(session.run(block))
            if on_result:
                on_result(results[-1])
    finally:
        for died in session.close():
            if on_result:
                on_result(died)
    return results


# ---- build/grade/labN as the reference, for the duration --------------------------------------

MARK = ".reference-for-readme-commands"   # says that build/grade/labN is ours, not a learner's


def _aside(state: Path, lab: Lab) -> Path:
    return state / f".{lab.name}.yours"


def put_back(lab: Lab, state: Path = STATE) -> None:
    """Undo what a killed run left: its reference tree out, the learner's tree back. If the learner
    has graded since (a tree of theirs, newer), the older one goes to build/backup/, not away."""
    target, aside = state / lab.name, _aside(state, lab)
    if not aside.exists():
        return
    if not target.exists() or (target / MARK).exists():
        shutil.rmtree(target, ignore_errors=True)
        aside.rename(target)
    else:
        backup = state.parent / "backup" / f"{lab.name}-grade-{time.strftime('%Y%m%d-%H%M%S')}"
        backup.parent.mkdir(parents=True, exist_ok=True)
        aside.rename(backup)


@contextlib.contextmanager
def reference_tree(lab: Lab, state: Path = STATE, root: Path = ROOT,
                   builder: Callable[[Path], subprocess.CompletedProcess[str]] = build) -> Iterator[Path]:
    """build/grade/labN holds the reference, built, inside the block; a learner's own tree is set aside
    meanwhile and put back after. RuntimeError if the reference does not build."""
    target, aside = state / lab.name, _aside(state, lab)
    put_back(lab, state)
    state.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.rename(aside)
    try:
        make_overlay(lab, target, "reference", root)   # copies keep their mtimes: built files stay newer
        (target / MARK).write_text("make test ran the README's commands here; your own tree is put back after\n")
        if (root / "build" / "bin").is_dir():
            shutil.copytree(root / "build" / "bin", target / "build" / "bin", dirs_exist_ok=True)
        built = builder(target)
        if built.returncode != 0:
            raise RuntimeError(f"the reference does not build in {target}:\n{built.stdout}{built.stderr}")
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)
        if aside.exists():
            aside.rename(target)


# ---- reports ------------------------------------------------------------------------------------

MARKS = {"passed": "✓", "failed": "✗", "skipped": "-", "not run": "·"}


def line(result: Result) -> str:
    block = result.block
    where = f"line {block.line}" if block.line else "markers"
    text = f"    {MARKS[result.outcome]} {where:<9} {block.title:<72}"
    if result.outcome == "passed":
        text += f" {result.seconds:5.1f} s" + (f"  ({result.message})" if result.message else "")
    else:
        text += f"  {result.outcome}: {result.message}"
    return text


def _print(text: str) -> None:
    print(text, flush=True)


def prove_lab(lab: Lab, root: Path = ROOT, say: Callable[[str], None] = _print) -> list[Result]:
    """What make test does after lab's reference grading: its README's commands, on the reference in
    build/grade/labN, a line each (to say)."""
    readme = lab.dir / "README.md"
    say(f"  {readme.relative_to(root)}: the commands it tells the learner to type, on the reference "
        f"(in build/grade/{lab.name})")
    try:
        with reference_tree(lab, root=root):
            return run_readme(readme, root, on_result=lambda r: say(line(r)))
    except RuntimeError as err:
        result = Result(Block(readme, 0, "(the reference tree)", run=False), "failed", str(err))
        say(line(result))
        return [result]


def prove_top(root: Path = ROOT, say: Callable[[str], None] = _print) -> list[Result]:
    readme = root / "README.md"
    say(f"{readme.relative_to(root)}: the commands it tells the reader to type")
    return run_readme(readme, root, on_result=lambda r: say(line(r)))


def counts(results: list[Result]) -> dict[str, int]:
    return {k: sum(r.outcome == k for r in results) for k in MARKS}


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.readme_commands", __doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--check", action="store_true", help="check every README's markers; run nothing")
    which.add_argument("--lab", help="run this lab's commands (on the reference in build/grade/labN)")
    which.add_argument("--top", action="store_true", help="run the top README's commands")
    args = parser.parse_args(argv)
    if args.check:
        bad = 0
        for readme in [ROOT / "README.md", *(lab.dir / "README.md" for lab in all_labs())]:
            try:
                blocks = parse(readme)
                loose = unmarked_commands(readme, blocks)
            except MarkerError as err:
                print(f"✗ {err}")
                bad += 1
                continue
            ran = sum(b.run for b in blocks)
            print(f"{'✗' if loose else '✓'} {readme.relative_to(ROOT)}: {ran} blocks run, {len(blocks) - ran} not run"
                  + "".join(f"\n    not in any block: `{c}`" for c in loose))
            bad += bool(loose)
        return 1 if bad else 0
    results = prove_top() if args.top else prove_lab(find_lab(args.lab))
    c = counts(results)
    print(f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped, {c['not run']} not run")
    return 1 if c["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
