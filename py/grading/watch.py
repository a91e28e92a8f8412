"""`make watch LAB=N`: grade a lab again each time one of its files is saved.

    python -m grading.watch 3              # inotify where it works, else polling (chosen here)
    python -m grading.watch 3 --poll       # always poll the files' mtimes (WATCH=poll does too)

Each grading ends with a progress bar of the lab's tests, the first failure and its hint.
A compile error, a crash or a hang is shown like any other failure and the watch goes on;
Ctrl-C stops it.

Why two ways to notice a save: inotify is instant and costs nothing, but its events never
arrive for files changed from outside this kernel -- WSL's /mnt/c, virtiofs and 9p shares
(a container's or a VM's view of the host's folder), network filesystems -- which is exactly
where a learner edits with the host's editor. There, the watch polls the files' mtimes
once a second instead.
"""
from __future__ import annotations

import ctypes
import os
import select
import sys
import time

from grading import cli
from grading.labs import Lab, find_lab
from grading.run import STATE, Graded, grade, hint_text, learner_paths, score
from paths import ROOT
from xray.causes import filesystem

# Filesystems where inotify sees no change made from the other side of a share (Docker Desktop's
# bind mounts show as fakeowner over virtiofs, or fuse.grpcfuse).
REMOTE = {"9p", "virtiofs", "fuse", "fuseblk", "nfs", "nfs4", "cifs", "smb3", "smbfs", "drvfs", "vboxsf",
          "fakeowner", "fuse.grpcfuse"}
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100   # <sys/inotify.h>
SETTLE = 0.3   # seconds of quiet after a save before grading (editors write in several steps)


class Watcher:
    """Waits for a change to the lab's files: by inotify on the lab's folder, or by polling."""

    def __init__(self, lab: Lab, poll: bool) -> None:
        self.lab, self.fd = lab, -1
        self.names = {starter for _, starter in lab.files}
        if not poll:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, str(lab.dir).encode(),
                                                  IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        self.how = "inotify" if self.fd >= 0 else "polling every second"
        self.seen = self._stamps()

    def mark(self) -> None:
        """Called before each grading: a save made while it runs is a change for wait()."""
        self.seen = self._stamps()

    def _stamps(self) -> dict[str, float]:
        return {n: (self.lab.dir / n).stat().st_mtime if (self.lab.dir / n).exists() else 0.0 for n in self.names}

    def wait(self) -> str:
        """Block until one of the lab's files changed; return its name."""
        if self.fd < 0:
            while True:
                now = self._stamps()
                changed = [n for n in self.names if now[n] != self.seen[n]]
                if changed:
                    time.sleep(SETTLE)
                    return changed[0]
                time.sleep(1.0)
        while True:
            select.select([self.fd], [], [])
            names = self._read_names()
            while select.select([self.fd], [], [], SETTLE)[0]:   # let the editor finish
                names += self._read_names()
            mine = [n for n in names if n in self.names]
            if mine:
                return mine[0]

    def _read_names(self) -> list[str]:
        """The file names of the queued inotify events (struct inotify_event: wd, mask, cookie, len, name)."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        names, i = [], 0
        while i + 16 <= len(data):
            length = int.from_bytes(data[i + 12:i + 16], sys.byteorder)
            names.append(data[i + 16:i + 16 + length].rstrip(b"\0").decode(errors="replace"))
            i += 16 + length
        return names


def choose_polling(lab: Lab, asked: bool) -> bool:
    """Poll when asked (--poll, WATCH=poll), or when the lab's folder is a share inotify cannot see."""
    setting = os.environ.get("WATCH", "")
    if asked or setting == "poll":
        return True
    return setting != "inotify" and filesystem(lab.dir) in REMOTE


def bar(passed: int, total: int, width: int = 30) -> str:
    filled = round(width * passed / total) if total else 0
    return f"[{'#' * filled}{'-' * (width - filled)}] {passed}/{total} passed"


def report(lab: Lab, graded: Graded) -> str:
    """What one grading shows: a bar, then the first problem and its hint."""
    if graded.build_error:
        errors = learner_paths(lab, graded.build_error).splitlines()[:20]
        return "✗ the C code does not compile:\n" + "\n".join("    " + line for line in errors)
    result = score(graded)
    lines = [bar(result.passed, result.total)]
    if graded.problem:
        lines.append("✗ " + graded.problem)
    if result.failed:
        name, first = result.failed[0]
        lines += ["", f"✗ {name}", *("    " + line for line in first["message"].splitlines())]
        hint = hint_text(lab, first.get("hint"))
        if hint:
            lines += ["", hint]
    elif result.done:
        lines.append(f"{lab.name} is done ✓")
    elif result.unjudged:
        lines.append(f"{len(result.unjudged)} tests could not judge on a machine this busy: save again")
    elif result.skipped:
        lines.append(f"everything that ran passes; {result.skipped} tests cannot run on this machine "
                     "(make doctor says why): not done until they do")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.watch", __doc__)
    parser.add_argument("number", help="the lab to watch")
    parser.add_argument("--poll", action="store_true", help="poll the files' mtimes instead of inotify")
    args = parser.parse_args(argv)
    try:
        lab = find_lab(args.number)
    except ValueError as err:
        print(f"watch: {err}", file=sys.stderr)
        return 2
    watcher = Watcher(lab, choose_polling(lab, args.poll))
    clear = "\033[2J\033[H" if sys.stdout.isatty() else ""
    changed = ""
    try:
        while True:
            print(f"{clear}{lab.name} — {lab.title}: grading your files in {lab.dir.relative_to(ROOT)}/"
                  + (f" ({changed} saved)" if changed else ""), flush=True)
            watcher.mark()
            graded = grade(lab, "learner", log=STATE / f"{lab.name}.log")
            print(report(lab, graded), flush=True)
            print(f"\nwatching {', '.join(sorted(watcher.names))} ({watcher.how}); Ctrl-C stops", flush=True)
            changed = watcher.wait()
    except KeyboardInterrupt:
        print("\nstopped watching", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
