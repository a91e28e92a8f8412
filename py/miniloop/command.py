"""What every `python -m miniloop.X` command does with its loop: run one coroutine on a fresh EventLoop.

The labs' commands (echo, files, demo) run on the learner's loop, so a piece not written yet
is the common way for them to stop: it is said in one line, with the lab's README to read,
instead of a traceback. Ctrl-C ends a command quietly; the loop is always closed.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any

from miniloop.loop import EventLoop


def run_command(name: str, lab: str, main: Callable[[EventLoop], Coroutine[Any, Any, None]], *,
                before_close: Callable[[], None] = lambda: None) -> int:
    """Run main(loop) until it returns; the command's exit status (1: a lab's piece is missing).

    name is the command as its messages begin ("echo"), lab the folder whose README tells
    what to write ("02-reactor"); before_close runs last, the loop still open (a pool's shutdown).
    """
    loop = EventLoop()
    try:
        loop.run_until_complete(main(loop))
    except NotImplementedError as err:
        print(f"{name}: {err} is not written yet (see labs/{lab}/README.md)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        try:
            before_close()
        finally:
            loop.close()
    return 0
