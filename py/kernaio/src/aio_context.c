/* aio_context: kernaio's kernel-AIO backend — one AIO context (io_setup/io_submit/io_getevents) as a Python type. */
#include "kernaio.h" /* the OP_* enum, the module state, Request (request.c), the slot table (slots.c) */

#include <errno.h>
#include <linux/aio_abi.h> /* the kernel's own struct iocb / struct io_event: no libaio needed */
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Context is the slot table of slots.c (the Requests, their pinned buffers, the eventfd, the
 * checks) with a kernel AIO context underneath; UringContext (uring_context.c) is the same
 * table over io_uring. What this file adds is the kernel's side: an iocb per slot, one
 * io_submit per batch, io_getevents to reap, io_cancel, io_destroy. */

#define AIO_MAX_CAPACITY 65536 /* the most slots of a Context: aio-max-nr's default, the whole system's */
#define REAP_BATCH 128          /* io_events fetched per io_getevents call */

/* The slot table (slots.c: the requests, buffers, tokens, results) and the kernel's side.
 * The kernel keeps the ADDRESS of each submitted iocb (io_cancel finds a request by it), so the
 * iocbs live in an array made once, one per slot, and never move. */
typedef struct {
    SlotsObject base;    /* first: the object header and the slot table, shared with UringContext */
    aio_context_t ctx;   /* the kernel's context id; 0: none (never made, or destroyed) */
    struct iocb *iocbs;  /* iocbs[i]: what io_submit is given for slot i; aio_data = i */
    struct iocb **cbs;   /* submit's argument array: room for every slot */
} ContextObject;

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

/* Context(capacity): the slot table and its eventfd (slots_new), the iocbs, then
 * io_setup(capacity). OSError with the real errno (EAGAIN: /proc/sys/fs/aio-max-nr is
 * reached). */
static PyObject *Context_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ContextObject *self = (ContextObject *)slots_new(type, args, kwds, "|i:Context", AIO_MAX_CAPACITY,
                                                     "AIO context");
    if (self == NULL)
        return NULL;
    int capacity = self->base.table.capacity;
    self->iocbs = PyMem_Calloc((size_t)capacity, sizeof(*self->iocbs));
    self->cbs = PyMem_Calloc((size_t)capacity, sizeof(*self->cbs));
    if (self->iocbs == NULL || self->cbs == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
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
    self->base.table.open = 1;
    return (PyObject *)self;
}

/* Destroy the kernel context and give every slot back. io_destroy WAITS for the requests
 * in flight (the GIL is released meanwhile), so after it no buffer is under the kernel and
 * all can be released. In a fork()ed child only the Python side is dropped: the context is
 * the parent's. Idempotent. Needs the GIL. */
static void context_close(ContextObject *self)
{
    struct slot_table *t = &self->base.table;
    if (self->ctx != 0 && !slots_forked(t)) {
        aio_context_t ctx = self->ctx;
        Py_BEGIN_ALLOW_THREADS
        (void)sys_io_destroy(ctx); /* EINVAL only if ctx is not ours: nothing more to do */
        Py_END_ALLOW_THREADS
    }
    self->ctx = 0;
    slots_close(t);
}

static void Context_dealloc(ContextObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    context_close(self); /* waits for in-flight requests before their buffers go */
    slots_free(&self->base.table);
    PyMem_Free(self->iocbs);
    PyMem_Free(self->cbs);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Fill slot i's iocb from what slots_batch_begin put in the slot (op, fd, addr, len,
 * offset). 0, or -1 with ValueError for an op it has no iocb for. */
static int iocb_fill(ContextObject *self, int i)
{
    const struct slot *s = &self->base.table.slots[i];
    struct iocb *cb = &self->iocbs[i];
    memset(cb, 0, sizeof(*cb));
    /* BEGIN SOLUTION lab6
     * TODO: fill cb from the slot s: aio_lio_opcode for s->op (OP_READ and OP_READ_NEW:
     *       IOCB_CMD_PREAD, OP_WRITE: IOCB_CMD_PWRITE, OP_FSYNC: IOCB_CMD_FSYNC; another op:
     *       ValueError, return -1), aio_fildes = s->fd, aio_buf = s->addr (an address as a
     *       __u64), aio_nbytes = s->len, aio_offset = s->offset; aio_data = i (the kernel hands
     *       it back in the io_event: that is how reap finds the slot); aio_flags =
     *       IOCB_FLAG_RESFD with aio_resfd = the eventfd (self->base.table.efd), so that each
     *       completion bumps it.
     * STUB: (void)s; (void)cb;
     * STUB: PyErr_SetString(PyExc_NotImplementedError, "lab6: iocb_fill (fill the iocb) is not written yet");
     * STUB: return -1;
     */
    switch (s->op) {
    case OP_READ:
    case OP_READ_NEW: /* into our own memory: slots.c allocated it, reap makes bytes of it */
        cb->aio_lio_opcode = IOCB_CMD_PREAD;
        break;
    case OP_WRITE:
        cb->aio_lio_opcode = IOCB_CMD_PWRITE;
        break;
    case OP_FSYNC:
        cb->aio_lio_opcode = IOCB_CMD_FSYNC;
        break;
    default:
        PyErr_Format(PyExc_ValueError, "kernaio: unknown op %d", s->op);
        return -1;
    }
    cb->aio_fildes = (__u32)s->fd;
    cb->aio_buf = (__u64)(uintptr_t)s->addr;
    cb->aio_nbytes = (__u64)s->len;
    cb->aio_offset = (__s64)s->offset;
    cb->aio_data = (__u64)i;                 /* comes back in the io_event: which slot finished */
    cb->aio_flags = IOCB_FLAG_RESFD;         /* ... and the completion bumps our eventfd */
    cb->aio_resfd = (__u32)self->base.table.efd;
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
    struct slot_table *t = &self->base.table;
    struct slot_batch batch;
    if (slots_check(t) < 0 || slots_batch_begin(t, requests, &batch) < 0)
        return NULL;
    PyObject *result = NULL;
    long took = 0;
    struct iocb **cbs = self->cbs;
    Py_ssize_t n = batch.n;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (iocb_fill(self, batch.slot[k]) < 0)
            goto out;
        cbs[k] = &self->iocbs[batch.slot[k]];
    }
    /* BEGIN SOLUTION lab6
     * TODO: ONE io_submit of the n iocbs in cbs, with the GIL released around it
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
    result = PyLong_FromLong(took);
out:
    /* The first took are in flight; the others (all of them on error) go back to free slots. */
    slots_batch_end(t, &batch, took);
    return result;
}

/* reap(limit=0) -> list[(token, res, data)]: the completions not taken yet, without waiting
 * (slots_reap_begin says how that list works), topped up by io_getevents with a zero
 * timeout. res is the byte count, or -errno of the I/O; data is bytes for OP_READ_NEW that
 * succeeded, else None. The slots are free again and their buffers released. OSError if a
 * syscall fails. */
static PyObject *Context_reap(ContextObject *self, PyObject *args)
{
    struct slot_table *t = &self->base.table;
    Py_ssize_t wanted;
    PyObject *list = slots_reap_begin(t, args, &wanted); /* ... and the eventfd drained */
    if (list == NULL)
        return NULL;
    /* BEGIN SOLUTION lab6
     * TODO: io_getevents(ctx, 0, up to REAP_BATCH, events, zero timeout) with the GIL
     *       released, again while it fills the array and fewer than wanted are in the
     *       list. EINTR: check signals and retry; another error: OSError, goto error.
     *       Each event says which slot finished (events[e].data) and its result (res): hand
     *       both to slots_finish(t, slot, res, list), which appends (token, res, data) and
     *       frees the slot. Every event of the batch must reach slots_finish, even after one
     *       failed (MemoryError): from then on pass NULL as the list (the slot is only
     *       freed), and goto error after the batch.
     * STUB: (void)wanted;
     * STUB: PyErr_SetString(PyExc_NotImplementedError, "lab6: Context.reap (io_getevents) is not written yet");
     * STUB: goto error;
     */
    struct io_event events[REAP_BATCH];
    long got, ask;
    /* The list may still hold completions the caller has not taken: they count. */
    while (PyList_GET_SIZE(list) < wanted) {
        struct timespec zero = {0, 0};
        aio_context_t ctx = self->ctx;
        int failed = 0;
        ask = wanted - PyList_GET_SIZE(list) < REAP_BATCH ? (long)(wanted - PyList_GET_SIZE(list)) : REAP_BATCH;
        Py_BEGIN_ALLOW_THREADS
        got = sys_io_getevents(ctx, 0, ask, events, &zero);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto error;
                continue; /* try again */
            }
            PyErr_SetFromErrno(PyExc_OSError);
            goto error;
        }
        /* The kernel has handed these over: each slot must be freed, whatever fails. */
        for (long e = 0; e < got; e++)
            if (slots_finish(t, (int)events[e].data, (long long)events[e].res, failed ? NULL : list) < 0)
                failed = 1;
        if (failed)
            goto error;
        if (got < ask)
            break; /* the ring is empty */
    }
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
    if (slots_check(&self->base.table) < 0)
        return NULL;
    int i = slots_find(&self->base.table, token);
    if (i < 0)
        Py_RETURN_FALSE;
    struct io_event ev;
    long ret;
    aio_context_t ctx = self->ctx;
    struct iocb *cb = &self->iocbs[i];
    Py_BEGIN_ALLOW_THREADS
    ret = sys_io_cancel(ctx, cb, &ev);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ret == 0);
}

/* close(): io_destroy (waits for requests in flight, GIL released), release every buffer,
 * close the eventfd. Safe to call twice, and in a fork()ed child (no io_destroy there). */
static PyObject *Context_close(ContextObject *self, PyObject *Py_UNUSED(ignored))
{
    context_close(self);
    Py_RETURN_NONE;
}

/* settle(): return once the kernel has read every request submitted: at once, since io_submit
 * reads the iocbs (and takes each file) before it returns. UringContext's may have to wait. */
static PyObject *Context_settle(ContextObject *self, PyObject *Py_UNUSED(ignored))
{
    (void)self;
    Py_RETURN_NONE;
}

static PyMethodDef Context_methods[] = {
    {"submit", (PyCFunction)Context_submit, METH_O, "submit(requests) -> how many the kernel took (one io_submit)"},
    {"reap", (PyCFunction)Context_reap, METH_VARARGS, "reap(limit=0) -> the list of completions not taken yet: [(token, res, data)]"},
    {"cancel", (PyCFunction)Context_cancel, METH_O, "cancel(token) -> True if io_cancel succeeded"},
    {"close", (PyCFunction)Context_close, METH_NOARGS, "close(): io_destroy, waiting for requests in flight"},
    {"settle", (PyCFunction)Context_settle, METH_NOARGS, "settle(): the kernel has read every request submitted"},
    SLOTS_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Context_slots[] = {
    {Py_tp_doc, "Context(capacity=128): one kernel AIO context, its eventfd, and room for capacity requests."},
    {Py_tp_new, Context_new},
    {Py_tp_dealloc, Context_dealloc},
    {Py_tp_methods, Context_methods},
    SLOTS_TYPE_SLOTS,
    {0, NULL},
};

static PyType_Spec Context_spec = {
    .name = "kernaio._kernaio.Context",
    .basicsize = sizeof(ContextObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Context_slots,
};

int kernaio_add_context_type(PyObject *module, kernaio_state *st)
{
    return kernaio_add_type(module, &Context_spec, &st->context_type);
}
