"""miniloop: a small asyncio, rebuilt on epoll to see how `await sock_recv()` really works (lab 2).

    from miniloop import EventLoop, sleep
    loop = EventLoop()
    loop.run_until_complete(sleep(0.1))

futures.py holds Future and Task, loop.py the EventLoop (callbacks, timers, epoll,
the sock_* coroutines), echo.py an echo server written with them, command.py what each
`python -m miniloop.X` command does with its loop.
"""
from miniloop.futures import CancelledError, Future, InvalidStateError, Task
from miniloop.loop import EventLoop, Handle, TimerHandle, get_running_loop, sleep

__all__ = ["CancelledError", "EventLoop", "Future", "Handle", "InvalidStateError", "Task", "TimerHandle",
           "get_running_loop", "sleep"]
