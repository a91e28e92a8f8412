/* _kernaio: the C half of kernaio — one Linux kernel AIO context (io_setup/io_submit/io_getevents) as a Python type. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "kernaio.h" /* the OP_* enum, and the io_uring type of uring_context.c */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/aio_abi.h> /* the kernel's own struct iocb / struct io_event: no libaio needed */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

PyDoc_STRVAR(module_doc,
"Linux kernel AIO (io_submit) for kernaio's asyncio wrapper. Not meant to be used directly:\n"
"\n"
"    >>> from kernaio import _kernaio\n"
"    >>> ctx = _kernaio.Context(128)              # io_setup + an eventfd\n"
"    >>> ctx.fileno()                             # the eventfd: readable when something completed\n"
"    >>> ctx.submit([(token, _kernaio.OP_READ_NEW, fd, None, 0, 4096)])   # one io_submit -> 1\n"
"    >>> ctx.reap()                               # [(token, 4096, b'...')]  (res < 0 is -errno)\n"
"    >>> _kernaio.alignment(fd)                   # (512, 512, 'statx STATX_DIOALIGN')\n"
"    >>> ctx.close()                              # io_destroy: waits for what is in flight\n"
"\n"
"Every system call runs with the GIL released. A request's buffer stays referenced (a\n"
"Py_buffer export) from submit until reap returns it, or close has waited for it, so\n"
"the kernel never writes into freed memory, even if the Python side gave up on it.");

#define MEM_ALIGN 4096    /* OP_READ_NEW memory: a page satisfies every O_DIRECT memory alignment */
#define REAP_BATCH 128    /* io_events fetched per io_getevents call */

/* One request the kernel may own. Slots never move: the kernel holds pointers to their iocbs. */
struct slot {
    struct iocb cb;   /* what io_submit is given; aio_data = the slot's index */
    PyObject *token;  /* the caller's object, handed back by reap (strong reference), NULL: free */
    Py_buffer view;   /* OP_READ/OP_WRITE: the caller's buffer, held until completion; view.obj NULL: none */
    void *mem;        /* OP_READ_NEW: our aligned memory (free()d at completion), else NULL */
    int op;           /* OP_* */
};

typedef struct {
    PyObject_HEAD
    aio_context_t ctx; /* the kernel's context id; 0: closed */
    int efd;           /* eventfd bumped by every completion; -1: closed */
    pid_t pid;         /* the process that made the context: a fork()ed child must not use it */
    int capacity;      /* slots[0..capacity) */
    int in_flight;     /* slots the kernel owns */
    struct slot *slots;
    int *free_list;    /* indexes of free slots: free_list[0..nfree) */
    int nfree;
} ContextObject;

/* getpid() is a system call every time (glibc no longer caches it), and a context asks "am I
 * still in the process that made me?" on every request. So the pid is remembered once and
 * refreshed only in a fork()ed child, by a pthread_atfork handler that runs there before any
 * Python code. The pid is a fact of the process, not of an interpreter: the one plain C static. */
static pid_t this_process;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void remember_pid(void)
{
    this_process = getpid();
}

static void watch_forks(void)
{
    remember_pid();
    (void)pthread_atfork(NULL, NULL, remember_pid); /* ENOMEM only; then the pid stays the parent's */
}

/* Module state (multi-phase init: no C globals, one state per module object). */
typedef struct {
    PyTypeObject *context_type;
} kernaio_state;

/* The five AIO calls have no glibc wrapper. Each returns >= 0 or -1 with errno, and is
 * called WITHOUT the GIL. */
static long sys_io_setup(unsigned nr, aio_context_t *ctx) { return syscall(SYS_io_setup, nr, ctx); }
static long sys_io_destroy(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long sys_io_cancel(aio_context_t ctx, struct iocb *cb, struct io_event *ev)
{
    return syscall(SYS_io_cancel, ctx, cb, ev);
}
/* BEGIN SOLUTION lab6
 * TODO: sys_io_submit(ctx, n, cbs) and sys_io_getevents(ctx, min, max, events, timeout):
 *       one line each with syscall(2), like the three above (lab 5 did the same in C).
 */
static long sys_io_submit(aio_context_t ctx, long n, struct iocb **cbs) { return syscall(SYS_io_submit, ctx, n, cbs); }
static long sys_io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev, struct timespec *ts)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, ts);
}
/* END SOLUTION */

/* Give slot i back: release the buffer, free our memory, drop the token. Needs the GIL.
 * Only for a slot the kernel does not own (never submitted, or completed, or destroyed). */
static void slot_release(ContextObject *self, int i)
{
    struct slot *s = &self->slots[i];
    if (s->view.obj != NULL)
        PyBuffer_Release(&s->view);
    free(s->mem);
    s->mem = NULL;
    Py_CLEAR(s->token);
    self->free_list[self->nfree++] = i;
}

/* 0 if the context is open and this process made it; else -1 with ValueError (closed) or
 * RuntimeError (a fork()ed child holding its parent's context). */
static int check_usable(ContextObject *self)
{
    if (self->ctx == 0) {
        PyErr_SetString(PyExc_ValueError, "kernaio: the AIO context is closed");
        return -1;
    }
    if (self->pid != this_process) {
        /* After fork() the context id belongs to the parent's mm: the child gets EINVAL at
         * best, and must not touch the parent's requests. */
        PyErr_Format(PyExc_RuntimeError, "kernaio: this AIO context belongs to process %d, not to this "
                     "fork()ed child", (int)self->pid);
        return -1;
    }
    return 0;
}

/* Context(capacity): io_setup(capacity) and a non-blocking close-on-exec eventfd.
 * OSError with the real errno (EAGAIN: /proc/sys/fs/aio-max-nr is reached). */
static PyObject *Context_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", NULL};
    int capacity = 128;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i:Context", kwlist, &capacity))
        return NULL;
    if (capacity < 1 || capacity > 65536) {
        PyErr_SetString(PyExc_ValueError, "kernaio: capacity must be in 1..65536");
        return NULL;
    }
    ContextObject *self = (ContextObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    /* tp_alloc zeroed everything: ctx 0, slots NULL; dealloc copes with a half-built object. */
    self->efd = -1;
    self->pid = this_process;
    self->slots = PyMem_Calloc((size_t)capacity, sizeof(*self->slots));
    self->free_list = PyMem_Calloc((size_t)capacity, sizeof(*self->free_list));
    if (self->slots == NULL || self->free_list == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->capacity = capacity;
    for (int i = capacity - 1; i >= 0; i--)
        self->free_list[self->nfree++] = i; /* pop order 0, 1, 2, ... */

    long ret;
    aio_context_t ctx = 0;
    Py_BEGIN_ALLOW_THREADS
    ret = sys_io_setup((unsigned)capacity, &ctx);
    Py_END_ALLOW_THREADS
    if (ret < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    self->ctx = ctx;
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Destroy the kernel context and give every slot back. io_destroy WAITS for the requests
 * in flight (the GIL is released meanwhile), so after it no buffer is under the kernel and
 * all can be released. In a fork()ed child only the Python side is dropped: the context is
 * the parent's. Idempotent. Needs the GIL. */
static void context_close(ContextObject *self)
{
    if (self->ctx != 0 && self->pid == this_process) {
        aio_context_t ctx = self->ctx;
        Py_BEGIN_ALLOW_THREADS
        (void)sys_io_destroy(ctx); /* EINVAL only if ctx is not ours: nothing more to do */
        Py_END_ALLOW_THREADS
    }
    self->ctx = 0;
    if (self->slots != NULL) {
        for (int i = 0; i < self->capacity; i++)
            if (self->slots[i].token != NULL || self->slots[i].view.obj != NULL || self->slots[i].mem != NULL)
                slot_release(self, i);
    }
    self->in_flight = 0;
    if (self->efd >= 0) {
        close(self->efd);
        self->efd = -1;
    }
}

/* GC: the tokens are the only references that can form cycles (token -> file -> ... ->
 * context). The buffers are deliberately NOT visited nor cleared: the kernel may be
 * writing into them, so they live until the completion, or io_destroy in dealloc. */
static int Context_traverse(ContextObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self)); /* a heap type is referenced by its instances */
    for (int i = 0; self->slots != NULL && i < self->capacity; i++)
        Py_VISIT(self->slots[i].token);
    return 0;
}

static int Context_clear(ContextObject *self)
{
    for (int i = 0; self->slots != NULL && i < self->capacity; i++)
        Py_CLEAR(self->slots[i].token); /* reap will hand back None for these */
    return 0;
}

static void Context_dealloc(ContextObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    context_close(self); /* waits for in-flight requests before their buffers go */
    PyMem_Free(self->slots);
    PyMem_Free(self->free_list);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Fill slot i's iocb from one request tuple (token, op, fd, buffer|None, offset, length)
 * and take the references it needs. 0, or -1 with an exception (the slot stays free). */
static int slot_prepare(ContextObject *self, int i, PyObject *req)
{
    struct slot *s = &self->slots[i];
    PyObject *token, *buf;
    int op, fd;
    long long offset;
    Py_ssize_t length;
    if (!PyTuple_Check(req)) {
        PyErr_SetString(PyExc_TypeError, "kernaio: a request is a tuple (token, op, fd, buffer, offset, length)");
        return -1;
    }
    if (!PyArg_ParseTuple(req, "OiiOLn:submit", &token, &op, &fd, &buf, &offset, &length))
        return -1;
    if (offset < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "kernaio: negative offset or length");
        return -1;
    }
    memset(&s->cb, 0, sizeof(s->cb));
    /* BEGIN SOLUTION lab6
     * TODO: fill s->cb for op. OP_READ/OP_WRITE: take a buffer export of buf into s->view
     *       (PyObject_GetBuffer, writable for a read: it pins the memory until the completion),
     *       clamp length to it, IOCB_CMD_PREAD/PWRITE at view.buf. OP_READ_NEW: posix_memalign
     *       MEM_ALIGN bytes into s->mem and read there. OP_FSYNC: IOCB_CMD_FSYNC, length 0.
     *       Then fd, length, offset, aio_data = i (which slot finished comes back in the
     *       io_event), IOCB_FLAG_RESFD with the eventfd, s->op, and a new reference to token.
     * STUB: (void)token; (void)buf; (void)op; (void)fd;
     * STUB: PyErr_SetString(PyExc_NotImplementedError, "lab6: slot_prepare (fill the iocb) is not written yet");
     * STUB: return -1;
     */
    switch (op) {
    case OP_READ:
    case OP_WRITE:
        /* The export pins the memory: a bytearray cannot be resized, nor an mmap closed,
         * while we hold it. A read needs a writable buffer. */
        if (PyObject_GetBuffer(buf, &s->view, op == OP_READ ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
            return -1;
        if (length > s->view.len)
            length = s->view.len;
        s->cb.aio_lio_opcode = op == OP_READ ? IOCB_CMD_PREAD : IOCB_CMD_PWRITE;
        s->cb.aio_buf = (__u64)(uintptr_t)s->view.buf;
        break;
    case OP_READ_NEW:
        if (posix_memalign(&s->mem, MEM_ALIGN, length > 0 ? (size_t)length : 1) != 0) {
            s->mem = NULL;
            PyErr_NoMemory();
            return -1;
        }
        s->cb.aio_lio_opcode = IOCB_CMD_PREAD;
        s->cb.aio_buf = (__u64)(uintptr_t)s->mem;
        break;
    case OP_FSYNC:
        s->cb.aio_lio_opcode = IOCB_CMD_FSYNC;
        length = 0;
        break;
    default:
        PyErr_Format(PyExc_ValueError, "kernaio: unknown op %d", op);
        return -1;
    }
    s->op = op;
    s->cb.aio_fildes = (__u32)fd;
    s->cb.aio_nbytes = (__u64)length;
    s->cb.aio_offset = (__s64)offset;
    s->cb.aio_data = (__u64)i;               /* comes back in the io_event: which slot finished */
    s->cb.aio_flags = IOCB_FLAG_RESFD;       /* ... and the completion bumps our eventfd */
    s->cb.aio_resfd = (__u32)self->efd;
    s->token = Py_NewRef(token);
    return 0;
    /* END SOLUTION */
}

/* submit(requests) -> int: prepare up to len(requests) iocbs (never more than the free
 * slots) and give them to the kernel in ONE io_submit. Returns how many the kernel took:
 * always the first ones; the others were rolled back (slots free, buffers released) for
 * the caller to requeue. 0 when the context is full (EAGAIN). If the kernel refuses the
 * FIRST request (EBADF, EINVAL...), nothing was taken and OSError is raised with its
 * errno: it belongs to requests[0]. TypeError/ValueError for a malformed request. */
static PyObject *Context_submit(ContextObject *self, PyObject *requests)
{
    if (check_usable(self) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(requests, "kernaio: submit() takes a list of requests");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > self->nfree)
        n = self->nfree;
    PyObject *result = NULL;
    int *used = PyMem_Calloc((size_t)n + 1, sizeof(*used));
    struct iocb **cbs = PyMem_Calloc((size_t)n + 1, sizeof(*cbs));
    Py_ssize_t prepared = 0;
    long took = 0;
    if (used == NULL || cbs == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (; prepared < n; prepared++) {
        int i = self->free_list[--self->nfree];
        if (slot_prepare(self, i, PySequence_Fast_GET_ITEM(seq, prepared)) < 0) {
            self->free_list[self->nfree++] = i;
            goto out; /* rolls back the ones before */
        }
        used[prepared] = i;
        cbs[prepared] = &self->slots[i].cb;
    }
    /* BEGIN SOLUTION lab6
     * TODO: ONE io_submit of the n prepared iocbs, with the GIL released around it
     *       (Py_BEGIN/END_ALLOW_THREADS; copy self->ctx to a local first). took = what the
     *       kernel accepted. EAGAIN: the context is full, took = 0 (not an error). EINTR:
     *       PyErr_CheckSignals(), then again. Any other errno: OSError, goto out.
     * STUB: PyErr_SetString(PyExc_NotImplementedError, "lab6: Context.submit (io_submit) is not written yet");
     * STUB: goto out;
     */
    for (;;) {
        aio_context_t ctx = self->ctx;
        Py_BEGIN_ALLOW_THREADS
        took = n > 0 ? sys_io_submit(ctx, (long)n, cbs) : 0;
        Py_END_ALLOW_THREADS
        if (took >= 0)
            break;
        int err = errno;
        took = 0;
        if (err == EAGAIN) /* no room in the kernel now: a completion will make some */
            break;
        if (err == EINTR) { /* a signal: let Python handlers run, then try again */
            if (PyErr_CheckSignals() < 0)
                goto out;
            continue;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    /* END SOLUTION */
    self->in_flight += (int)took;
    result = PyLong_FromLong(took);
out:
    /* The requests the kernel did not take (all of them on error) go back to free slots. */
    for (Py_ssize_t k = took; k < prepared; k++)
        slot_release(self, used[k]);
    PyMem_Free(used);
    PyMem_Free(cbs);
    Py_DECREF(seq);
    return result;
}

/* reap(limit=0) -> list[(token, res, data)]: what has completed, without waiting: at
 * most limit events (0: all of them). Drains the eventfd first (so it is readable again
 * only for new completions), then io_getevents with a zero timeout. When it returns
 * exactly limit events, more may be left in the ring with the eventfd already drained:
 * the caller must call reap again (kernaio's engine does, one loop iteration later).
 * res is the byte count, or -errno of the I/O; data is bytes for OP_READ_NEW that
 * succeeded, else None. The slots are free again and their buffers released. OSError if
 * a syscall fails. */
static PyObject *Context_reap(ContextObject *self, PyObject *args)
{
    Py_ssize_t limit = 0;
    if (!PyArg_ParseTuple(args, "|n:reap", &limit))
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "kernaio: reap limit must be >= 0");
        return NULL;
    }
    if (check_usable(self) < 0)
        return NULL;
    uint64_t count;
    ssize_t nread;
    int efd = self->efd;
    Py_BEGIN_ALLOW_THREADS
    nread = read(efd, &count, sizeof(count));
    Py_END_ALLOW_THREADS
    if (nread < 0 && errno != EAGAIN && errno != EINTR)
        return PyErr_SetFromErrno(PyExc_OSError);

    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    /* BEGIN SOLUTION lab6
     * TODO: io_getevents(ctx, 0, up to REAP_BATCH, events, zero timeout) with the GIL
     *       released, again while it fills the array and fewer than limit (0: no limit) are
     *       in the list. For each event: its slot is events[e].data; the kernel is done with
     *       it (in_flight--); append (token or None, res, data) with data = the bytes read
     *       for OP_READ_NEW when res >= 0, else None; then slot_release. EINTR: check
     *       signals and retry. Errors: goto error.
     * STUB: (void)limit;
     * STUB: PyErr_SetString(PyExc_NotImplementedError, "lab6: Context.reap (io_getevents) is not written yet");
     * STUB: goto error;
     */
    struct io_event events[REAP_BATCH];
    Py_ssize_t wanted = limit > 0 ? limit : PY_SSIZE_T_MAX;
    long got, ask;
    do {
        struct timespec zero = {0, 0};
        aio_context_t ctx = self->ctx;
        ask = wanted - PyList_GET_SIZE(list) < REAP_BATCH ? (long)(wanted - PyList_GET_SIZE(list)) : REAP_BATCH;
        Py_BEGIN_ALLOW_THREADS
        got = sys_io_getevents(ctx, 0, ask, events, &zero);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto error;
                got = ask; /* try again */
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            goto error;
        }
        for (long e = 0; e < got; e++) {
            int i = (int)events[e].data;
            struct slot *s = &self->slots[i];
            long long res = (long long)events[e].res;
            PyObject *data = Py_None;
            /* Whatever happens below, the kernel is done with this slot. */
            self->in_flight--;
            if (s->op == OP_READ_NEW && res >= 0)
                data = PyBytes_FromStringAndSize(s->mem, (Py_ssize_t)res);
            else
                Py_INCREF(data);
            PyObject *item = data == NULL ? NULL
                : Py_BuildValue("(OLN)", s->token != NULL ? s->token : Py_None, res, data);
            slot_release(self, i);
            if (item == NULL || PyList_Append(list, item) < 0) {
                Py_XDECREF(item);
                goto error;
            }
            Py_DECREF(item);
        }
    } while (got == ask && PyList_GET_SIZE(list) < wanted);
    /* END SOLUTION */
    return list;
error:
    Py_DECREF(list);
    return NULL;
}

/* cancel(token) -> bool: ask the kernel to cancel the request submitted with this token
 * (io_cancel). True if it was cancelled; False if the kernel cannot (EINVAL: file reads
 * and writes are not cancellable, the usual answer; EAGAIN) or the request is unknown.
 * Either way the completion still arrives through reap, which releases the buffer: a
 * cancelled request never frees memory the kernel may still write into. */
static PyObject *Context_cancel(ContextObject *self, PyObject *token)
{
    if (check_usable(self) < 0)
        return NULL;
    for (int i = 0; i < self->capacity; i++) {
        if (self->slots[i].token != token)
            continue;
        struct io_event ev;
        long ret;
        aio_context_t ctx = self->ctx;
        struct iocb *cb = &self->slots[i].cb;
        Py_BEGIN_ALLOW_THREADS
        ret = sys_io_cancel(ctx, cb, &ev);
        Py_END_ALLOW_THREADS
        return PyBool_FromLong(ret == 0);
    }
    Py_RETURN_FALSE;
}

/* close(): io_destroy (waits for requests in flight, GIL released), release every buffer,
 * close the eventfd. Safe to call twice, and in a fork()ed child (no io_destroy there). */
static PyObject *Context_close(ContextObject *self, PyObject *Py_UNUSED(ignored))
{
    context_close(self);
    Py_RETURN_NONE;
}

/* fileno() -> int: the eventfd to watch for readability (loop.add_reader). */
static PyObject *Context_fileno(ContextObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->efd < 0) {
        PyErr_SetString(PyExc_ValueError, "kernaio: the AIO context is closed");
        return NULL;
    }
    return PyLong_FromLong(self->efd);
}

static PyObject *Context_get_free(ContextObject *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->nfree); }
static PyObject *Context_get_in_flight(ContextObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromLong(self->in_flight);
}
static PyObject *Context_get_closed(ContextObject *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->ctx == 0); }
static PyObject *Context_get_pid(ContextObject *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->pid); }

static PyMethodDef Context_methods[] = {
    {"submit", (PyCFunction)Context_submit, METH_O, "submit(requests) -> how many the kernel took (one io_submit)"},
    {"reap", (PyCFunction)Context_reap, METH_VARARGS, "reap(limit=0) -> [(token, res, data)] of completed requests"},
    {"cancel", (PyCFunction)Context_cancel, METH_O, "cancel(token) -> True if io_cancel succeeded"},
    {"close", (PyCFunction)Context_close, METH_NOARGS, "close(): io_destroy, waiting for requests in flight"},
    {"fileno", (PyCFunction)Context_fileno, METH_NOARGS, "fileno() -> the completion eventfd"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Context_getset[] = {
    {"free", (getter)Context_get_free, NULL, "slots free for new requests", NULL},
    {"in_flight", (getter)Context_get_in_flight, NULL, "requests the kernel owns", NULL},
    {"closed", (getter)Context_get_closed, NULL, "True once close() ran", NULL},
    {"pid", (getter)Context_get_pid, NULL, "the process that created the context", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Context_slots[] = {
    {Py_tp_doc, "Context(capacity=128): one kernel AIO context, its eventfd, and room for capacity requests."},
    {Py_tp_new, Context_new},
    {Py_tp_dealloc, Context_dealloc},
    {Py_tp_traverse, Context_traverse},
    {Py_tp_clear, Context_clear},
    {Py_tp_methods, Context_methods},
    {Py_tp_getset, Context_getset},
    {0, NULL},
};

static PyType_Spec Context_spec = {
    .name = "kernaio._kernaio.Context",
    .basicsize = sizeof(ContextObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Context_slots,
};

/* alignment(fd) -> (mem, offset, source): what O_DIRECT needs for this open file, from
 * statx STATX_DIOALIGN (Linux >= 6.1) or else st_blksize (always enough, maybe stricter).
 * OSError(EOPNOTSUPP) when the kernel says the file cannot do direct I/O at all. */
static PyObject *kernaio_alignment(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    struct statx stx;
    int ret;
    memset(&stx, 0, sizeof(stx));
    Py_BEGIN_ALLOW_THREADS
    ret = statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN | STATX_BASIC_STATS, &stx);
    Py_END_ALLOW_THREADS
    if (ret < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (stx.stx_mask & STATX_DIOALIGN) {
        if (stx.stx_dio_offset_align == 0) {
            errno = EOPNOTSUPP;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(IIs)", stx.stx_dio_mem_align, stx.stx_dio_offset_align, "statx STATX_DIOALIGN");
    }
    unsigned blk = stx.stx_blksize ? stx.stx_blksize : 4096;
    return Py_BuildValue("(IIs)", blk, blk, "st_blksize, the filesystem block size");
}

/* address(buffer) -> int: where a bytes-like object's memory starts (for alignment checks).
 * TypeError if it does not support the buffer protocol. */
static PyObject *kernaio_address(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *addr = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return addr;
}

static PyMethodDef kernaio_methods[] = {
    {"alignment", kernaio_alignment, METH_O, "alignment(fd) -> (mem, offset, source) that O_DIRECT needs"},
    {"address", kernaio_address, METH_O, "address(buffer) -> the address of its first byte"},
    {NULL, NULL, 0, NULL},
};

/* Py_mod_exec: create the heap type for this module object and add the constants. */
static int kernaio_exec(PyObject *module)
{
    kernaio_state *st = PyModule_GetState(module);
    pthread_once(&fork_watch, watch_forks);
    st->context_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Context_spec, NULL);
    if (st->context_type == NULL)
        return -1;
    if (PyModule_AddType(module, st->context_type) < 0)
        return -1;
    if (kernaio_add_uring_type(module) < 0) /* UringContext: the io_uring backend */
        return -1;
    if (PyModule_AddIntConstant(module, "OP_READ", OP_READ) < 0
        || PyModule_AddIntConstant(module, "OP_WRITE", OP_WRITE) < 0
        || PyModule_AddIntConstant(module, "OP_FSYNC", OP_FSYNC) < 0
        || PyModule_AddIntConstant(module, "OP_READ_NEW", OP_READ_NEW) < 0)
        return -1;
    return 0;
}

static int kernaio_traverse(PyObject *module, visitproc visit, void *arg)
{
    kernaio_state *st = PyModule_GetState(module);
    Py_VISIT(st->context_type);
    return 0;
}

static int kernaio_clear(PyObject *module)
{
    kernaio_state *st = PyModule_GetState(module);
    Py_CLEAR(st->context_type);
    return 0;
}

static void kernaio_free(void *module) { (void)kernaio_clear((PyObject *)module); }

static PyModuleDef_Slot kernaio_slots[] = {
    {Py_mod_exec, kernaio_exec},
    {0, NULL},
};

static struct PyModuleDef kernaio_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kernaio._kernaio",
    .m_doc = module_doc,
    .m_size = sizeof(kernaio_state),
    .m_methods = kernaio_methods,
    .m_slots = kernaio_slots,
    .m_traverse = kernaio_traverse,
    .m_clear = kernaio_clear,
    .m_free = kernaio_free,
};

PyMODINIT_FUNC PyInit__kernaio(void) { return PyModuleDef_Init(&kernaio_module); }
