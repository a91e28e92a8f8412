/* slots: the slot table of both kernaio context types — a request's Python side, from submit to reap. */
#include "kernaio.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The contracts are in kernaio.h; here is how, and why. */

#define MEM_ALIGN 4096        /* OP_READ_NEW memory: a page satisfies every O_DIRECT memory alignment */

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

static void watch_forks_once(void)
{
    remember_pid();
    (void)pthread_atfork(NULL, NULL, remember_pid); /* ENOMEM only; then the pid stays the parent's */
}

void slots_watch_forks(void)
{
    (void)pthread_once(&fork_watch, watch_forks_once);
}

pid_t slots_this_process(void)
{
    return this_process;
}

int slots_forked(const struct slot_table *t)
{
    return t->pid != this_process;
}

PyObject *slots_new(PyTypeObject *type, PyObject *args, PyObject *kwds, const char *format,
                    int max_capacity, const char *what)
{
    static char *kwlist[] = {"capacity", NULL};
    int capacity = 128;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, format, kwlist, &capacity))
        return NULL;
    if (capacity < 1 || capacity > max_capacity) {
        PyErr_Format(PyExc_ValueError, "kernaio: capacity must be in 1..%d", max_capacity);
        return NULL;
    }
    SlotsObject *self = (SlotsObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    /* tp_alloc zeroed everything (open 0, slots NULL): the type's dealloc copes with a
     * half-built object, as long as efd is not 0 (a real fd) by mistake. */
    struct slot_table *t = &self->table;
    t->efd = -1;
    t->pid = this_process;
    t->what = what;
    kernaio_state *st = PyType_GetModuleState(type);
    if (st == NULL || st->request_type == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "kernaio: the module has no Request type");
        Py_DECREF(self);
        return NULL;
    }
    t->request_type = (PyTypeObject *)Py_NewRef(st->request_type);
    t->slots = PyMem_Calloc((size_t)capacity, sizeof(*t->slots));
    t->free_list = PyMem_Calloc((size_t)capacity, sizeof(*t->free_list));
    if (t->slots == NULL || t->free_list == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    t->done = PyList_New(0);
    if (t->done == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    t->capacity = capacity;
    for (int i = capacity - 1; i >= 0; i--)
        t->free_list[t->nfree++] = i; /* pop order 0, 1, 2, ... */
    t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

int slots_check(const struct slot_table *t)
{
    if (!t->open) {
        PyErr_Format(PyExc_ValueError, "kernaio: the %s is closed", t->what);
        return -1;
    }
    if (slots_forked(t)) {
        /* After fork() the kernel side belongs to the parent: an AIO context id is the
         * parent's (EINVAL at best), a ring's memory is shared with it (reaping here would
         * steal the parent's completions). Either way, not the child's requests. */
        PyErr_Format(PyExc_RuntimeError, "kernaio: this %s belongs to process %d, not to this "
                     "fork()ed child", t->what, (int)t->pid);
        return -1;
    }
    if (t->busy) { /* only a ring is ever busy: shared memory with one producer and one consumer */
        PyErr_Format(PyExc_RuntimeError, "kernaio: this %s is in use by another thread "
                     "(a ring has one submitter and one reaper)", t->what);
        return -1;
    }
    return 0;
}

/* Give slot i back: release the buffer, free our memory, drop the token. Only for a slot
 * the kernel does not own (never submitted, or completed, or its context destroyed):
 * releasing earlier would let the kernel write into freed memory. */
static void slot_release(struct slot_table *t, int i)
{
    struct slot *s = &t->slots[i];
    if (s->view.obj != NULL)
        PyBuffer_Release(&s->view);
    free(s->mem);
    s->mem = NULL;
    Py_CLEAR(s->token);
    t->free_list[t->nfree++] = i;
}

/* Put the Request req into free slot i and take the references the kernel's side needs.
 * A Request is checked once, when it is made (request.c: types, ranges, its buffer exported):
 * here only "is it a Request?" and "is it in the kernel already?" remain. It is its own
 * token. 0, or -1 with an exception (the slot holds nothing). */
static int slot_prepare(struct slot_table *t, int i, PyObject *req)
{
    if (!PyObject_TypeCheck(req, t->request_type)) {
        PyErr_Format(PyExc_TypeError, "kernaio: submit() takes a list of kernaio._kernaio.Request(file, op, fd, "
                     "buffer, offset, size), not of %.200s", Py_TYPE(req)->tp_name);
        return -1;
    }
    RequestObject *r = (RequestObject *)req;
    if (r->submitted) { /* twice in the kernel would be two DMAs into one buffer */
        PyErr_SetString(PyExc_ValueError, "kernaio: this request was submitted already");
        return -1;
    }
    struct slot *s = &t->slots[i];
    Py_ssize_t length = r->length;
    s->addr = NULL;
    switch (r->op) {
    case OP_READ:
    case OP_WRITE:
        /* The slot takes its own export of the request's buffer: the kernel's pin, which the
         * GC never drops (slots_clear may drop the token, the Request, in a cycle). While it
         * is held a bytearray cannot be resized, nor an mmap closed: until the completion. */
        if (PyObject_GetBuffer(r->view.obj, &s->view, r->op == OP_READ ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
            return -1;
        if (length > s->view.len) /* an exporter may hand out less memory the second time */
            length = s->view.len;
        s->addr = s->view.buf;
        break;
    case OP_READ_NEW:
        if (posix_memalign(&s->mem, MEM_ALIGN, length > 0 ? (size_t)length : 1) != 0) {
            s->mem = NULL;
            PyErr_NoMemory();
            return -1;
        }
        s->addr = s->mem;
        break;
    default: /* OP_FSYNC: no memory; Request made its length 0 */
        break;
    }
    s->op = r->op;
    s->fd = r->fd;
    s->len = (unsigned)length;
    s->offset = r->offset;
    s->token = Py_NewRef(req);
    return 0;
}

int slots_batch_begin(struct slot_table *t, PyObject *requests, struct slot_batch *b)
{
    b->n = 0;
    b->slot = NULL;
    b->seq = PySequence_Fast(requests, "kernaio: submit() takes a list of requests");
    if (b->seq == NULL)
        return -1;
    Py_ssize_t want = PySequence_Fast_GET_SIZE(b->seq);
    if (want > t->nfree)
        want = t->nfree; /* the rest waits in the caller's queue */
    b->slot = PyMem_Calloc((size_t)want + 1, sizeof(*b->slot));
    if (b->slot == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (; b->n < want; b->n++) {
        int i = t->free_list[--t->nfree];
        if (slot_prepare(t, i, PySequence_Fast_GET_ITEM(b->seq, b->n)) < 0) {
            t->free_list[t->nfree++] = i;
            goto fail;
        }
        b->slot[b->n] = i;
    }
    return 0;
fail:
    /* A malformed request refuses the whole batch: none of it may reach the kernel. */
    slots_batch_end(t, b, 0);
    return -1;
}

void slots_batch_end(struct slot_table *t, struct slot_batch *b, Py_ssize_t took)
{
    t->in_flight += (int)took;
    /* Marked here, in C, in the same call as io_submit: Python code between the two could
     * be interrupted (KeyboardInterrupt), leaving a request the kernel holds looking queued. */
    for (Py_ssize_t k = 0; k < took; k++) {
        /* The slot's token, not b->seq[k]: the caller's list may have changed while the GIL
         * was released; the slot holds the very Request that slot_prepare checked. */
        PyObject *req = t->slots[b->slot[k]].token;
        if (req != NULL)
            ((RequestObject *)req)->submitted = 1;
    }
    for (Py_ssize_t k = took; k < b->n; k++)
        slot_release(t, b->slot[k]);
    PyMem_Free(b->slot);
    Py_CLEAR(b->seq);
    b->slot = NULL;
    b->n = 0;
}

PyObject *slots_reap_begin(struct slot_table *t, PyObject *args, Py_ssize_t *wanted)
{
    Py_ssize_t limit = 0;
    if (!PyArg_ParseTuple(args, "|n:reap", &limit))
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "kernaio: reap limit must be >= 0");
        return NULL;
    }
    *wanted = limit > 0 ? limit : PY_SSIZE_T_MAX;
    if (slots_check(t) < 0)
        return NULL;
    uint64_t count;
    ssize_t nread;
    int efd = t->efd;
    Py_BEGIN_ALLOW_THREADS
    nread = read(efd, &count, sizeof(count));
    Py_END_ALLOW_THREADS
    /* EAGAIN: nothing was counted (a spurious wakeup, or a reap that came before the
     * eventfd was readable); EINTR: the counter is still there, the next reap takes it. */
    if (nread < 0 && errno != EAGAIN && errno != EINTR)
        return PyErr_SetFromErrno(PyExc_OSError);
    return Py_NewRef(t->done);
}

int slots_finish(struct slot_table *t, int i, long long res, PyObject *list)
{
    struct slot *s = &t->slots[i];
    int ret = 0;
    t->in_flight--; /* whatever happens below, the kernel is done with this slot */
    if (list != NULL) {
        PyObject *data = s->op == OP_READ_NEW && res >= 0
            ? PyBytes_FromStringAndSize(s->mem, (Py_ssize_t)res) : Py_NewRef(Py_None);
        PyObject *count = data == NULL ? NULL : PyLong_FromLongLong(res);
        PyObject *item = count == NULL ? NULL : PyTuple_New(3); /* (Py_BuildValue parses its format: 5x slower) */
        if (item != NULL) {
            PyTuple_SET_ITEM(item, 0, Py_NewRef(s->token != NULL ? s->token : Py_None));
            PyTuple_SET_ITEM(item, 1, count);
            PyTuple_SET_ITEM(item, 2, data);
        }
        else {
            Py_XDECREF(count);
            Py_XDECREF(data);
        }
        if (item == NULL || PyList_Append(list, item) < 0)
            ret = -1;
        Py_XDECREF(item);
    }
    slot_release(t, i);
    return ret;
}

int slots_find(const struct slot_table *t, PyObject *token)
{
    for (int i = 0; i < t->capacity; i++)
        if (t->slots[i].token == token)
            return i;
    return -1;
}

void slots_close(struct slot_table *t)
{
    t->open = 0;
    for (int i = 0; t->slots != NULL && i < t->capacity; i++) {
        struct slot *s = &t->slots[i];
        /* A token cleared by the GC still leaves a buffer or memory to give back. */
        if (s->token != NULL || s->view.obj != NULL || s->mem != NULL)
            slot_release(t, i);
    }
    t->in_flight = 0;
    if (t->efd >= 0) {
        close(t->efd);
        t->efd = -1;
    }
}

void slots_free(struct slot_table *t)
{
    Py_CLEAR(t->request_type);
    Py_CLEAR(t->done);
    PyMem_Free(t->slots);
    PyMem_Free(t->free_list);
    t->slots = NULL;
    t->free_list = NULL;
    t->capacity = t->nfree = 0;
}

int slots_traverse(PyObject *self, visitproc visit, void *arg)
{
    const struct slot_table *t = &((SlotsObject *)self)->table;
    Py_VISIT(Py_TYPE(self)); /* a heap type is referenced by its instances */
    Py_VISIT(t->request_type);
    Py_VISIT(t->done);
    for (int i = 0; t->slots != NULL && i < t->capacity; i++)
        Py_VISIT(t->slots[i].token);
    return 0;
}

int slots_clear(PyObject *self)
{
    struct slot_table *t = &((SlotsObject *)self)->table;
    for (int i = 0; t->slots != NULL && i < t->capacity; i++)
        Py_CLEAR(t->slots[i].token); /* reap will hand back None for these */
    if (t->done != NULL && PyList_SetSlice(t->done, 0, PyList_GET_SIZE(t->done), NULL) < 0)
        PyErr_Clear(); /* emptying a list only fails without memory; the cycle then stays */
    return 0;
}

PyObject *slots_in_flight_for(PyObject *self, PyObject *file)
{
    /* A scan, not a count kept per file: only close() asks, and the table is small. */
    const struct slot_table *t = &((SlotsObject *)self)->table;
    long held = 0;
    for (int i = 0; i < t->capacity; i++) {
        PyObject *token = t->slots[i].token; /* a Request, or NULL (free, or cleared by the GC) */
        if (token != NULL && ((RequestObject *)token)->file == file)
            held++;
    }
    return PyLong_FromLong(held);
}

PyObject *slots_fileno(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    const struct slot_table *t = &((SlotsObject *)self)->table;
    if (t->efd < 0) {
        PyErr_Format(PyExc_ValueError, "kernaio: the %s is closed", t->what);
        return NULL;
    }
    return PyLong_FromLong(t->efd);
}

static PyObject *get_free(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromLong(((SlotsObject *)self)->table.nfree);
}

static PyObject *get_in_flight(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromLong(((SlotsObject *)self)->table.in_flight);
}

static PyObject *get_closed(PyObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(!((SlotsObject *)self)->table.open);
}

static PyObject *get_pid(PyObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromLong(((SlotsObject *)self)->table.pid);
}

PyGetSetDef slots_getset[] = {
    {"free", get_free, NULL, "slots free for new requests", NULL},
    {"in_flight", get_in_flight, NULL, "requests the kernel owns", NULL},
    {"closed", get_closed, NULL, "True once close() ran", NULL},
    {"pid", get_pid, NULL, "the process that created the context", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
