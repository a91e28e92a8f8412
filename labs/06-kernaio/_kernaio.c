/* Your copy of py/kernaio/src/_kernaio.c: edit it, then run `make lab6`. (Generated; see docs/ARCHITECTURE.md.) */
/* _kernaio: the C half of kernaio — one Linux kernel AIO context (io_setup/io_submit/io_getevents) as a Python type. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "kernaio.h" /* the OP_* enum, the module state, Request (request.c), the slot table (slots.c), the io_uring type (uring_context.c) */

#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h> /* the kernel's own struct iocb / struct io_event: no libaio needed */
#include <stdint.h>
#include <string.h>
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
"    >>> req = _kernaio.Request(file, _kernaio.OP_READ_NEW, fd, None, 0, 4096)   # checked here\n"
"    >>> ctx.submit([req])                        # one io_submit -> 1 (Requests only: TypeError else)\n"
"    >>> ctx.reap()                               # [(req, 4096, b'...')]  (res < 0 is -errno)\n"
"    >>> _kernaio.alignment(fd)                   # (512, 512, 'statx STATX_DIOALIGN')\n"
"    >>> ctx.close()                              # io_destroy: waits for what is in flight\n"
"\n"
"Every system call runs with the GIL released. A request's buffer stays referenced (a\n"
"Py_buffer export) from submit until reap returns it, or close has waited for it, so\n"
"the kernel never writes into freed memory, even if the Python side gave up on it.");

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
/* TODO(lab6): sys_io_submit(ctx, n, cbs) and sys_io_getevents(ctx, min, max, events, timeout):
 * one line each with syscall(2), like the three above (lab 5 did the same in C). */

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
    /* TODO(lab6): fill cb from the slot s: aio_lio_opcode for s->op (OP_READ and OP_READ_NEW:
     * IOCB_CMD_PREAD, OP_WRITE: IOCB_CMD_PWRITE, OP_FSYNC: IOCB_CMD_FSYNC; another op:
     * ValueError, return -1), aio_fildes = s->fd, aio_buf = s->addr (an address as a
     * __u64), aio_nbytes = s->len, aio_offset = s->offset; aio_data = i (the kernel hands
     * it back in the io_event: that is how reap finds the slot); aio_flags =
     * IOCB_FLAG_RESFD with aio_resfd = the eventfd (self->base.table.efd), so that each
     * completion bumps it. */
    (void)s; (void)cb;
    PyErr_SetString(PyExc_NotImplementedError, "lab6: iocb_fill (fill the iocb) is not written yet");
    return -1;
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
    /* TODO(lab6): ONE io_submit of the n iocbs in cbs, with the GIL released around it
     * (Py_BEGIN/END_ALLOW_THREADS; copy self->ctx to a local first). took = what the
     * kernel accepted. EAGAIN: the context is full, took = 0 (not an error). EINTR:
     * PyErr_CheckSignals(), then again. Any other errno: OSError, goto out. */
    PyErr_SetString(PyExc_NotImplementedError, "lab6: Context.submit (io_submit) is not written yet");
    goto out;
    result = PyLong_FromLong(took);
out:
    /* The first took are in flight; the others (all of them on error) go back to free slots. */
    slots_batch_end(t, &batch, took);
    return result;
}

/* reap(limit=0) -> list[(token, res, data)]: what has completed, without waiting, in the
 * context's own list of completions not taken yet (the same list every call: the caller
 * deletes what it delivered, and what it did not deliver is still there next time). It
 * holds at most limit (0: no limit). Drains the eventfd first (so it is readable again
 * only for new completions), then io_getevents with a zero timeout. When the list holds
 * exactly limit, more may be left in the ring with the eventfd already drained: the
 * caller must call reap again (kernaio's engine does, one loop iteration later).
 * res is the byte count, or -errno of the I/O; data is bytes for OP_READ_NEW that
 * succeeded, else None. The slots are free again and their buffers released. OSError if
 * a syscall fails. */
static PyObject *Context_reap(ContextObject *self, PyObject *args)
{
    struct slot_table *t = &self->base.table;
    Py_ssize_t limit;
    if (slots_reap_limit(args, &limit) < 0 || slots_check(t) < 0)
        return NULL;
    PyObject *list = slots_drain(t);
    if (list == NULL)
        return NULL;
    /* TODO(lab6): io_getevents(ctx, 0, up to REAP_BATCH, events, zero timeout) with the GIL
     * released, again while it fills the array and fewer than limit (0: no limit) are
     * in the list. EINTR: check signals and retry; another error: OSError, goto error.
     * Each event says which slot finished (events[e].data) and its result (res): hand
     * both to slots_finish(t, slot, res, list), which appends (token, res, data) and
     * frees the slot. Every event of the batch must reach slots_finish, even after one
     * failed (MemoryError): from then on pass NULL as the list (the slot is only
     * freed), and goto error after the batch. */
    (void)limit;
    PyErr_SetString(PyExc_NotImplementedError, "lab6: Context.reap (io_getevents) is not written yet");
    goto error;
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
    {"fileno", slots_fileno, METH_NOARGS, "fileno() -> the completion eventfd"},
    {"in_flight_for", slots_in_flight_for, METH_O, "in_flight_for(file) -> how many Requests of file the kernel holds"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Context_slots[] = {
    {Py_tp_doc, "Context(capacity=128): one kernel AIO context, its eventfd, and room for capacity requests."},
    {Py_tp_new, Context_new},
    {Py_tp_dealloc, Context_dealloc},
    {Py_tp_traverse, slots_traverse},
    {Py_tp_clear, slots_clear},
    {Py_tp_methods, Context_methods},
    {Py_tp_getset, slots_getset},
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

static PyMethodDef kernaio_methods[] = {
    {"alignment", kernaio_alignment, METH_O, "alignment(fd) -> (mem, offset, source) that O_DIRECT needs"},
    {NULL, NULL, 0, NULL},
};

/* Py_mod_exec: create the heap type for this module object and add the constants. */
static int kernaio_exec(PyObject *module)
{
    kernaio_state *st = PyModule_GetState(module);
    slots_watch_forks();
    if (kernaio_add_request_type(module, st) < 0) /* first: the contexts look it up when made */
        return -1;
    st->context_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Context_spec, NULL);
    if (st->context_type == NULL)
        return -1;
    if (PyModule_AddType(module, st->context_type) < 0)
        return -1;
    if (kernaio_add_uring_type(module, st) < 0) /* UringContext: the io_uring backend */
        return -1;
    if (kernaio_add_engine_types(module, st) < 0) /* Engine and FileCore: the C engine */
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
    Py_VISIT(st->request_type);
    Py_VISIT(st->uring_type);
    return kernaio_traverse_engine_state(st, visit, arg);
}

static int kernaio_clear(PyObject *module)
{
    kernaio_state *st = PyModule_GetState(module);
    Py_CLEAR(st->context_type);
    Py_CLEAR(st->request_type);
    Py_CLEAR(st->uring_type);
    kernaio_clear_request_state(st);
    kernaio_clear_engine_state(st);
    return 0;
}

static void kernaio_free(void *module) { (void)kernaio_clear((PyObject *)module); }

static PyModuleDef_Slot kernaio_slots[] = {
    {Py_mod_exec, kernaio_exec},
    {0, NULL},
};

struct PyModuleDef kernaio_module = {
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
