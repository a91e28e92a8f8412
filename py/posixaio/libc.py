"""glibc's <aio.h>, described for ctypes: struct aiocb, struct sigevent, and the functions.

ctypes cannot read a C header, so the structs are written out here by hand, field by
field, from glibc's <aio.h> and <bits/types/sigevent_t.h>. The layout is the same on
x86_64 and aarch64 (both LP64, both use glibc's generic definitions):

    struct aiocb (168 bytes)                 struct sigevent (64 bytes)
      0 int aio_fildes                         0 union sigval sigev_value   (int or pointer)
      4 int aio_lio_opcode                     8 int sigev_signo
      8 int aio_reqprio                       12 int sigev_notify          (SIGEV_SIGNAL is 0!)
     16 volatile void *aio_buf                16 union: SIGEV_THREAD's function and attributes,
     24 size_t aio_nbytes                              or a thread id, padded to 64 bytes
     32 struct sigevent aio_sigevent
     96 glibc's own: next request, priority, policy, error code, return value
    128 off64_t aio_offset
    136 32 reserved bytes

A wrong offset here would not raise anything: glibc would read the length from the
wrong place and write past the buffer. So the lab checks it against the compiler:
`build/bin/aio_layout` (c/posixaio/aio_layout.c) prints offsetof() of every field,
and `layout()` below gives the same lines from these classes; the tests compare them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Any

# <signal.h>: how a finished request tells you (struct sigevent's sigev_notify).
SIGEV_SIGNAL = 0   # queue a signal to the process (zero: a sigevent left zeroed means this)
SIGEV_NONE = 1     # tell nobody: ask with aio_error, or sleep in aio_suspend
SIGEV_THREAD = 2   # glibc starts a thread that calls sigev_notify_function(sigev_value)

# <aio.h>
LIO_READ = 0
LIO_WRITE = 1
LIO_NOP = 2
AIO_CANCELED = 0      # aio_cancel: dropped before it started
AIO_NOTCANCELED = 1   # aio_cancel: a thread is running it; it will finish on its own
AIO_ALLDONE = 2       # aio_cancel: it was already done

SUPPORTED = ("x86_64", "aarch64")


class Sigval(ctypes.Union):
    """union sigval: what the notification hands back (we use the pointer as a number)."""

    _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]


# void function(union sigval): SIGEV_THREAD's callback. A union of one pointer-sized
# member is passed exactly like a pointer on both ABIs (in rdi on x86_64, x0 on
# aarch64), so the Python side receives sival_ptr as an int (or None for 0).
NOTIFY_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _SigevThread(ctypes.Structure):
    _fields_ = [("function", NOTIFY_FUNCTION), ("attributes", ctypes.c_void_p)]


class _SigevUnion(ctypes.Union):
    # __SIGEV_PAD_SIZE = 64 / sizeof(int) - 4 = 12 ints on a 64-bit machine.
    _fields_ = [("pad", ctypes.c_int * 12), ("tid", ctypes.c_int), ("thread", _SigevThread)]


class Sigevent(ctypes.Structure):
    """struct sigevent. SIGEV_THREAD's function and attributes are in sigev_un.thread."""

    _fields_ = [
        ("sigev_value", Sigval),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_un", _SigevUnion),
    ]


class Aiocb(ctypes.Structure):
    """struct aiocb: one request. Fields starting with '_' are glibc's: leave them zero."""

    _fields_ = [
        ("aio_fildes", ctypes.c_int),
        ("aio_lio_opcode", ctypes.c_int),
        ("aio_reqprio", ctypes.c_int),
        ("aio_buf", ctypes.c_void_p),
        ("aio_nbytes", ctypes.c_size_t),
        ("aio_sigevent", Sigevent),
        ("_next_prio", ctypes.c_void_p),
        ("_abs_prio", ctypes.c_int),
        ("_policy", ctypes.c_int),
        ("_error_code", ctypes.c_int),
        ("_return_value", ctypes.c_ssize_t),
        ("aio_offset", ctypes.c_int64),
        ("_reserved", ctypes.c_char * 32),
    ]


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


AiocbPointer = ctypes.POINTER(Aiocb)


def _load() -> ctypes.CDLL:
    """The library that has aio_read: libc itself since glibc 2.34, librt before."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        raise ImportError("posixaio describes glibc's struct aiocb: it needs Linux with glibc "
                          f"(this is {platform.system()} with {platform.libc_ver()[0] or 'another libc'})")
    if platform.machine() not in SUPPORTED:
        raise ImportError(f"posixaio's struct layout is checked on {', '.join(SUPPORTED)} only, "
                          f"not {platform.machine()}: compare with build/bin/aio_layout first")
    lib = ctypes.CDLL("libc.so.6", use_errno=True)
    if not hasattr(lib, "aio_read"):
        lib = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)
    return lib


lib = _load()


def _function(name: str, restype: Any, *argtypes: Any) -> ctypes._NamedFuncPointer:
    """lib's function `name`, declared as in <aio.h> (ctypes would pass and return ints otherwise)."""
    function: ctypes._NamedFuncPointer = getattr(lib, name)
    function.argtypes = list(argtypes)
    function.restype = restype
    return function


# Every call below releases the GIL while it runs (ctypes.CDLL does that), so a thread
# sleeping in aio_suspend does not stop the others.
aio_read = _function("aio_read", ctypes.c_int, AiocbPointer)
aio_write = _function("aio_write", ctypes.c_int, AiocbPointer)
aio_error = _function("aio_error", ctypes.c_int, AiocbPointer)
aio_return = _function("aio_return", ctypes.c_ssize_t, AiocbPointer)   # ssize_t: a byte count
aio_suspend = _function("aio_suspend", ctypes.c_int, ctypes.POINTER(AiocbPointer), ctypes.c_int,
                        ctypes.POINTER(Timespec))
aio_cancel = _function("aio_cancel", ctypes.c_int, ctypes.c_int, AiocbPointer)


def layout() -> list[str]:
    """The same lines as `aio_layout` prints ("aiocb.aio_offset 128 8"), from the classes above."""
    lines = [f"aiocb 0 {ctypes.sizeof(Aiocb)}"]
    for name in ("aio_fildes", "aio_lio_opcode", "aio_reqprio", "aio_buf", "aio_nbytes", "aio_sigevent",
                 "aio_offset"):
        field = getattr(Aiocb, name)
        lines.append(f"aiocb.{name} {field.offset} {field.size}")
    lines.append(f"sigevent 0 {ctypes.sizeof(Sigevent)}")
    for name in ("sigev_value", "sigev_signo", "sigev_notify"):
        field = getattr(Sigevent, name)
        lines.append(f"sigevent.{name} {field.offset} {field.size}")
    union = Sigevent.sigev_un.offset + _SigevUnion.thread.offset
    lines.append(f"sigevent.sigev_notify_function {union + _SigevThread.function.offset} "
                 f"{_SigevThread.function.size}")
    lines.append(f"sigevent.sigev_notify_attributes {union + _SigevThread.attributes.offset} "
                 f"{_SigevThread.attributes.size}")
    for name, value in (("SIGEV_NONE", SIGEV_NONE), ("SIGEV_SIGNAL", SIGEV_SIGNAL), ("SIGEV_THREAD", SIGEV_THREAD),
                        ("LIO_READ", LIO_READ), ("LIO_WRITE", LIO_WRITE), ("LIO_NOP", LIO_NOP),
                        ("AIO_CANCELED", AIO_CANCELED), ("AIO_NOTCANCELED", AIO_NOTCANCELED),
                        ("AIO_ALLDONE", AIO_ALLDONE)):
        lines.append(f"const {name} {value}")
    return lines
