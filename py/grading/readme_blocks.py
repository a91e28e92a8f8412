"""The commands a README tells a learner to type, found: fenced ```sh blocks and their markers.

Every ```sh (or bash, shell, console) block of a README carries a marker, an HTML comment on the
line before it (a Markdown viewer shows nothing of it), that says how `make test` runs it
(readme_commands.py runs them):

    <!-- run -->                      run it; it must end with status 0 within 60 s
    <!-- run: timeout=120 -->         ... within 120 s
    <!-- run: status=2 -->            it must end with status 2 (a refusal the README shows)
    <!-- run: expect="ok create" -->  what it prints (stdout and stderr) must contain this text;
                                      expect may be given more than once
    <!-- run: stop=3 -->              it runs until stopped (a server, `top`): stopped after 3 s,
                                      which is not a failure; ending earlier must be with status 0
    <!-- run: keep expect="listening on 127.0.0.1:{PORT}" -->
                                      it runs in the background ("leave it running; in a second
                                      terminal...") while the README's next blocks run, and is
                                      stopped after the last one. The next blocks start once the
                                      text is there (timeout= seconds at most, default 30)
    <!-- run: input="hello" -->       a line typed into it; an ordinary block then gets end of file
                                      (Ctrl-D), one that runs until stopped waits like a terminal
    <!-- run: tty stop=2 -->          it runs in a terminal of its own (for `top`)
    <!-- run: needs=io_uring -->      skipped, with the reason, where this machine lacks it:
                                      strace, perf, kernel-aio, o-direct, io_uring, data (the
                                      labs' files in build/data, on a disk), or a program on PATH.
                                      strace, perf and nc are needed by a block that names them.
    <!-- not-run: REASON -->          never run, and reported with its reason (which is required):
                                      for commands that would recurse (make test) or take minutes
    <!-- run-all: needs=io_uring -->  (anywhere) options every run block of the file gets

A placeholder in an expected text, `{PORT}`, takes what the output shows there (a run of
letters, digits, dots or dashes); in the blocks after it, the word PORT (not $PORT) becomes
that value. A README can thus keep `--port PORT` and `/proc/PID/task` as a learner reads them.

And in the Steps of a lab README, an inline command (`$B/rx_selftest create`,
`PYTHONPATH=$P .venv/bin/python -m miniloop.demo`) must also appear in one of its marked blocks,
so that a command a learner is told to type cannot escape `make test`. Left out: `make` targets
(make test's own subject) and patterns with an ellipsis (`PYTHONPATH=$P $PY ...`).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from paths import ROOT

FENCE = re.compile(r"^(\s*)(```+)\s*(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(run-all|run|not-run)\s*(?::\s*(.*?))?\s*-->\s*$")
SHELLS = {"sh", "bash", "shell", "console"}
PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
NEEDS = {"strace", "perf", "kernel-aio", "o-direct", "io_uring", "data"}
NAMED = ("strace", "perf", "nc")     # a block that names one of these needs it (a word of its text)
OPTIONS = {"timeout", "status", "expect", "stop", "keep", "input", "tty", "needs"}
# How an inline command starts, in a lab's Steps (make targets are left out on purpose).
COMMAND = re.compile(r"^(\$B/|\$P\b|PYTHONPATH=|SSL_CERT_FILE=|LD_PRELOAD=|\.venv/|\.\./\.\./\.venv|python3? |"
                     r"strace |perf |ls |cat |grep |top |nc |ss |head |mkfifo |exec |cd |echo |env )")


@dataclass
class Options:
    timeout: float | None = None   # None: 60 s (30 s for a keep block to show its text)
    status: int = 0
    expect: list[str] = field(default_factory=list)
    stop: float | None = None
    keep: bool = False
    input: str | None = None
    tty: bool = False
    needs: list[str] = field(default_factory=list)


@dataclass
class Block:
    readme: Path
    line: int                  # of the opening ``` (1-based)
    text: str                  # the commands, as the README shows them
    run: bool                  # False: a not-run block
    reason: str = ""           # why it is not run
    options: Options = field(default_factory=Options)

    @property
    def title(self) -> str:
        """Its first command, for a one-line report."""
        lines = [ln.split("  #")[0].strip() for ln in self.text.splitlines() if ln.strip()]
        commands = [ln for ln in lines if not re.match(r"(export\s+)?[A-Za-z_]\w*=\S*$|cd\s", ln)]
        first = (commands or lines or [""])[0]
        return first if len(first) <= 70 else first[:69] + "…"

    def declares(self) -> list[str]:
        """The placeholders its expected texts capture ({PORT} -> 'PORT')."""
        return [name for text in self.options.expect for name in PLACEHOLDER.findall(text)]


class MarkerError(ValueError):
    """A README's markers are wrong; the message names the file and the line."""


def parse_options(text: str, where: str) -> Options:
    opts = Options()
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise MarkerError(f"{where}: the marker's options do not parse ({err}): {text!r}") from None
    for word in words:
        key, sep, value = word.partition("=")
        if key not in OPTIONS:
            raise MarkerError(f"{where}: unknown marker option {key!r} (known: {', '.join(sorted(OPTIONS))})")
        if key in ("keep", "tty"):
            if sep:
                raise MarkerError(f"{where}: {key} takes no value")
            setattr(opts, key, True)
            continue
        if not sep or not value:
            raise MarkerError(f"{where}: {key} needs a value ({key}=...)")
        if key == "expect":
            opts.expect.append(value)
        elif key == "input":
            opts.input = value
        elif key == "needs":
            opts.needs += value.split(",")
        else:
            try:
                setattr(opts, key, int(value) if key == "status" else float(value))
            except ValueError:
                raise MarkerError(f"{where}: {key}={value!r} is not a number") from None
    if opts.keep and opts.stop is not None:
        raise MarkerError(f"{where}: keep and stop= exclude each other (keep runs until the README's end)")
    if opts.keep and not opts.expect:
        raise MarkerError(f"{where}: a keep block needs expect=: the text that says it is ready")
    return opts


def merged(base: Options, own: Options) -> Options:
    """A block's options on top of the file's run-all ones."""
    return Options(own.timeout if own.timeout is not None else base.timeout,
                   own.status, base.expect + own.expect, own.stop, own.keep, own.input, own.tty or base.tty,
                   base.needs + own.needs)


def shown(path: Path) -> str:
    """A path for a message: relative to the checkout when it is in it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse(readme: Path, text: str | None = None) -> list[Block]:
    """The shell blocks of a README with their markers; MarkerError for an unmarked block, a
    marker that is not followed by a block, a not-run without its reason, an unknown option."""
    lines = (text if text is not None else readme.read_text()).splitlines()
    name = shown(readme)
    blocks: list[Block] = []
    defaults = Options()
    pending: tuple[int, str, str] | None = None    # (line, kind, rest) of a marker waiting for its block
    k = 0
    while k < len(lines):
        where = f"{name}:{k + 1}"
        marker = MARKER.match(lines[k])
        fence = FENCE.match(lines[k])
        if marker:
            kind, rest = marker.group(1), marker.group(2) or ""
            if kind == "run-all":
                defaults = merged(defaults, parse_options(rest, where))
            elif pending:
                raise MarkerError(f"{name}:{pending[0]}: a marker with no command block after it")
            else:
                pending = (k + 1, kind, rest)
        elif fence:
            indent, ticks, lang = fence.groups()
            end = next((j for j in range(k + 1, len(lines))
                        if lines[j].strip() == ticks and lines[j].startswith(indent)), None)
            if end is None:
                raise MarkerError(f"{where}: a ``` block that never ends")
            body = "\n".join(ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[k + 1:end])
            if lang in SHELLS:
                if pending is None:
                    raise MarkerError(f"{where}: a ```{lang} block with no marker before it: say how make test runs "
                                      "it (<!-- run -->, ...) or why it does not (<!-- not-run: REASON -->)")
                _, kind, rest = pending
                if kind == "not-run":
                    if not rest.strip():
                        raise MarkerError(f"{where}: <!-- not-run --> needs its reason: <!-- not-run: REASON -->")
                    blocks.append(Block(readme, k + 1, body, run=False, reason=rest.strip()))
                else:
                    blocks.append(Block(readme, k + 1, body, run=True, options=parse_options(rest, where)))
            elif pending:
                raise MarkerError(f"{name}:{pending[0]}: a marker before a ```{lang or 'text'} block: only "
                                  "shell blocks (```sh) are run")
            pending = None
            k = end
        elif pending:
            raise MarkerError(f"{name}:{pending[0]}: a marker must be right before its ```sh block")
        k += 1
    if pending:
        raise MarkerError(f"{name}:{pending[0]}: a marker with no command block after it")
    for block in blocks:
        if block.run:
            block.options = merged(defaults, block.options)
            unknown = [n for n in block.options.needs if n not in NEEDS and not re.fullmatch(r"[\w.+-]+", n)]
            if unknown:
                raise MarkerError(f"{name}:{block.line}: needs={','.join(unknown)}: not a feature or a program")
    return blocks


def needs(block: Block) -> list[str]:
    """What the block needs: its needs= and the tools it names."""
    named = [tool for tool in NAMED if re.search(rf"(?<![\w/.-]){tool}(?![\w-])", block.text)]
    return list(dict.fromkeys(block.options.needs + named))


def flat(text: str) -> str:
    """One line, single spaces, continuation backslashes gone: for comparing commands."""
    return " ".join(text.replace("\\\n", " ").split())


def steps_text(readme_text: str) -> str:
    """The '## Steps' section of a lab README (to its next '## ' heading), fenced blocks left out."""
    m = re.search(r"^## Steps\s*$(.*?)(?=^## |\Z)", readme_text, re.M | re.S)
    if not m:
        return ""
    return re.sub(r"^([ \t]*)```.*?^\1```[ \t]*$", "", m.group(1), flags=re.M | re.S)


def unmarked_commands(readme: Path, blocks: list[Block], text: str | None = None) -> list[str]:
    """Inline commands in the Steps that no marked block of the README contains."""
    source = text if text is not None else readme.read_text()
    known = [flat(b.text) for b in blocks]
    missing = []
    for m in re.finditer(r"`([^`]+)`", steps_text(source)):
        span = flat(m.group(1))
        elided = "..." in span or "…" in span      # `PYTHONPATH=$P $PY ...`: a pattern, not a command
        if COMMAND.match(span) and not elided and not any(span in block for block in known):
            missing.append(span)
    return missing
