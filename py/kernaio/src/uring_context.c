/* uring_context: kernaio's io_uring backend — one ring (liburing) as a Python type with Context's interface. */
#include "kernaio.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h> /* offsetof */
#include <string.h>
#include <structmember.h>
#include <liburing.h> /* link with -luring (setup.py); lab 7's uring_liburing.c shows the same calls */
#include <stdint.h>

/* UringContext is Context (aio_context.c) with io_uring underneath: the same Requests,
 * the same slots (a buffer stays pinned from submit until its completion is reaped), the
 * same eventfd for the event loop, the same methods; all of that is the slot table of
 * slots.c. What this file adds is the ring, and what differs, and why:
 *
 * - A slot travels as the SQE's user_data (its index) and comes back in the CQE.
 * - submit: io_uring_get_sqe + io_uring_prep_* per request, then ONE io_uring_submit (one
 *   io_uring_enter). Per-request errors (EBADF...) are not refused at submit as io_submit
 *   does: they come back as CQEs with res = -errno, like any other completion.
 * - reap reads the CQ ring in user memory (io_uring_peek_batch_cqe, io_uring_cq_advance):
 *   no system call except the eventfd's read.
 * - Buffered files: io_uring_enter does not wait for the disk. An uncached read is started
 *   there (its readahead: pages allocated, block requests sent, a cost that grows with the
 *   read) and finishes later (ext4, xfs: page-cache callbacks); what must block (a buffered
 *   write, every fsync) is handed to iou-wrk kernel threads of this process. io_submit
 *   would do the whole read before returning, stalling the loop.
 * - The ring is shared memory with ONE producer (submit) and ONE consumer (reap): a ring is
 *   not for two threads at once, so a method refuses to run while another thread is inside
 *   a system call on this ring with the GIL released (the table's busy flag: slots_check).
 *
 * Sizes: the SQ ring has at least capacity entries and the CQ ring twice that. At most
 * capacity requests are in flight (the slots), plus at most capacity cancel requests, so
 * the CQ ring can never overflow and every completion lands in it.
 *
 * SQPOLL (UringContext(capacity, sqpoll=True), kernaio.open(..., sqpoll=True)): a kernel
 * thread of this process, iou-sqp-PID, reads the SQ ring by itself, so submit publishes the
 * SQEs and returns: no io_uring_enter, unless that thread has gone to sleep after
 * SQPOLL_IDLE_MS without work (liburing's io_uring_submit then wakes it). The price: the
 * thread spins on a CPU all that time, which `make bench` counts in the process's CPU and
 * `make reveal` shows. What changes here: the kernel consumes SQEs whenever it likes, so
 * SQEs once published are never taken back (they are all the kernel's: submit took them
 * all; a request it cannot start comes back as a CQE with its error), and the SQ ring is
 * twice as long, because consumed-or-not SQEs of cancels may still occupy it when a full
 * batch comes. */

#define URING_REAP_BATCH 128       /* CQEs looked at per io_uring_peek_batch_cqe */
#define URING_MAX_CAPACITY 32768   /* the largest SQ ring io_uring_setup makes (IORING_MAX_ENTRIES) */
#define CANCEL_DATA UINT64_MAX     /* user_data of our IORING_OP_ASYNC_CANCEL requests: no slot has it */
#define SQPOLL_IDLE_MS 50          /* an idle iou-sqp thread spins this long before it sleeps (caio: 100) */

typedef struct {
    SlotsObject base;     /* first: the object header and the slot table, shared with Context */
    struct io_uring ring; /* liburing's view of the ring: its fd, the mapped SQ and CQ rings;
                             valid while base.table.open */
    int cancels;          /* IORING_OP_ASYNC_CANCEL requests whose CQE is not reaped yet */
    char sqpoll;          /* made with IORING_SETUP_SQPOLL: a kernel thread reads the SQ ring */
} UringObject;

/* Set OSError for a failed io_uring_setup (err > 0). EPERM/EACCES/ENOSYS mean io_uring is
 * blocked here (a container's seccomp profile, kernel.io_uring_disabled): say so and what
 * to do; with SQPOLL asked for, EPERM and EINVAL may be SQPOLL's alone (before Linux 5.11 it
 * needs CAP_SYS_NICE), and that is said too. The errno is kept, so Python raises
 * PermissionError etc. */
static void set_setup_error(int err, int sqpoll)
{
    int blocked = err == EPERM || err == EACCES || err == ENOSYS;
    if (!blocked && !(sqpoll && err == EINVAL)) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return;
    }
    PyObject *args = Py_BuildValue("(is)", err, !sqpoll
        ? "kernaio: io_uring is blocked here (io_uring_setup was refused): a container's seccomp profile "
          "(Docker: run with --security-opt seccomp=unconfined) or sysctl kernel.io_uring_disabled; `make doctor` "
          "says which. Or use backend=\"aio\""
        : "kernaio: io_uring_setup with SQPOLL was refused: SQPOLL itself may be (before Linux 5.11 it needs "
          "CAP_SYS_NICE; a container may forbid it), or io_uring altogether (a seccomp profile, sysctl "
          "kernel.io_uring_disabled: `make doctor` says). sqpoll=True is only ever asked for, never assumed: "
          "open without it, or use backend=\"aio\"");
    if (args != NULL) {
        PyErr_SetObject(PyExc_OSError, args); /* OSError(errno, message) picks the subclass */
        Py_DECREF(args);
    }
}

/* UringContext(capacity): the slot table and its eventfd (slots_new), then a ring of at
 * least capacity entries (io_uring_queue_init) with the eventfd registered. The ring's own
 * fd is always close-on-exec (io_uring_setup makes it so). OSError with the real errno. */
static PyObject *Uring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    /* sqpoll is keyword-only, after slots_new's (capacity): parsed here, then removed */
    int sqpoll = 0;
    PyObject *flag = kwds != NULL ? PyDict_GetItemString(kwds, "sqpoll") : NULL; /* borrowed */
    if (flag != NULL) {
        if ((sqpoll = PyObject_IsTrue(flag)) < 0)
            return NULL;
        kwds = PyDict_Copy(kwds);
        if (kwds == NULL || PyDict_DelItemString(kwds, "sqpoll") < 0) {
            Py_XDECREF(kwds);
            return NULL;
        }
    }
    UringObject *self = (UringObject *)slots_new(type, args, kwds, "|i:UringContext", URING_MAX_CAPACITY,
                                                 "io_uring context");
    if (flag != NULL)
        Py_DECREF(kwds);
    if (self == NULL)
        return NULL;
    int ret;
    struct io_uring *ring = &self->ring;
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    unsigned entries = (unsigned)self->base.table.capacity;
    if (sqpoll) {
        params.flags = IORING_SETUP_SQPOLL;
        params.sq_thread_idle = SQPOLL_IDLE_MS;
        entries *= 2; /* room for cancels the poller has not consumed yet */
    }
    Py_BEGIN_ALLOW_THREADS
    ret = io_uring_queue_init_params(entries, ring, &params); /* liburing returns -errno */
    Py_END_ALLOW_THREADS
    if (ret < 0) {
        set_setup_error(-ret, sqpoll);
        Py_DECREF(self);
        return NULL;
    }
    self->sqpoll = (char)sqpoll;
    self->base.table.open = 1;
    int efd = self->base.table.efd;
    Py_BEGIN_ALLOW_THREADS
    ret = io_uring_register_eventfd(ring, efd); /* each posted CQE now bumps efd */
    Py_END_ALLOW_THREADS
    if (ret < 0) {
        errno = -ret;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Take back the SQEs that io_uring_enter left in the SQ ring. It consumes them in order and
 * stops early only when the kernel cannot allocate (EAGAIN) or at a malformed one (which
 * still gets its CQE and counts as consumed): the rest were published (the tail moved past
 * them) but not consumed (the head did not). Without SQPOLL the kernel reads the tail only
 * inside io_uring_enter, so moving it back to the head is safe; liburing keeps its own
 * copies (sqe_head, sqe_tail), moved with it. The caller requeues those requests, exactly
 * as with kernel AIO. Lab 7's uring_raw.c shows the same indices by hand. */
static void sq_take_back(struct io_uring *ring)
{
    unsigned head = io_uring_smp_load_acquire(ring->sq.khead);
    ring->sq.sqe_head = ring->sq.sqe_tail = head;
    io_uring_smp_store_release(ring->sq.ktail, head);
}

/* io_uring_submit of everything prepared, the GIL released, EINTR retried (after Python's
 * signal handlers ran). Sets busy meanwhile. Returns how many SQEs the kernel consumed:
 * always the first ones; the rest are taken back. *err: 0, or the -errno io_uring_enter
 * gave when it consumed nothing (-EINTR with a Python exception set if a handler raised). */
static unsigned ring_submit(UringObject *self, unsigned prepared, int *err)
{
    struct io_uring *ring = &self->ring;
    int ret;
    for (;;) {
        self->base.table.busy = 1;
        Py_BEGIN_ALLOW_THREADS
        ret = io_uring_submit(ring); /* one io_uring_enter(to_submit = prepared) */
        Py_END_ALLOW_THREADS
        self->base.table.busy = 0;
        /* EINTR: again, without running Python's signal handlers here: their exception
         * (KeyboardInterrupt) would make submit fail with requests the kernel may have taken.
         * They run as soon as submit returns. */
        if (ret != -EINTR)
            break;
    }
    *err = ret < 0 ? ret : 0;
    if (self->sqpoll) /* published is taken: the poller consumes them when it likes */
        return prepared;
    unsigned left = io_uring_sq_ready(ring); /* published, not consumed */
    if (left > 0)
        sq_take_back(ring);
    return prepared - left;
}

/* Fill the next SQE from slot i. Never fails: submit asks for at most the free slots, and
 * the SQ ring (at least capacity entries) is empty between calls. */
static void slot_to_sqe(UringObject *self, int i)
{
    const struct slot *s = &self->base.table.slots[i];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&self->ring);
    if (s->op == OP_WRITE)
        io_uring_prep_write(sqe, s->fd, s->addr, s->len, (__u64)s->offset);
    else if (s->op == OP_FSYNC)
        io_uring_prep_fsync(sqe, s->fd, 0); /* data and metadata, like IOCB_CMD_FSYNC */
    else
        io_uring_prep_read(sqe, s->fd, s->addr, s->len, (__u64)s->offset);
    io_uring_sqe_set_data64(sqe, (__u64)i); /* comes back in the CQE: which slot finished */
}

/* submit(requests) -> int: prepare up to len(requests) requests (never more than the free
 * slots) and give them to the kernel in ONE io_uring_submit. Returns how many the kernel
 * took: always the first ones; the others were rolled back (slots free, buffers released)
 * for the caller to requeue. 0 when the kernel is short of memory (EAGAIN, EBUSY). An error
 * of one request (EBADF...) arrives later as its completion. OSError if io_uring_enter
 * itself fails; TypeError/ValueError for a malformed request. */
static PyObject *Uring_submit(UringObject *self, PyObject *requests)
{
    struct slot_table *t = &self->base.table;
    struct slot_batch batch;
    if (slots_check(t) < 0 || slots_batch_begin(t, requests, &batch) < 0)
        return NULL;
    /* Every request was parsed before any SQE is taken: a bad one leaves the ring untouched. */
    for (Py_ssize_t k = 0; k < batch.n; k++)
        slot_to_sqe(self, batch.slot[k]);
    int err = 0;
    Py_ssize_t took = batch.n > 0 ? (Py_ssize_t)ring_submit(self, (unsigned)batch.n, &err) : 0;
    PyObject *result = NULL;
    if (took > 0 || err == 0 || err == -EAGAIN || err == -EBUSY)
        result = PyLong_FromSsize_t(took);  /* EAGAIN, EBUSY: the kernel is short of memory now */
    else {
        errno = -err;
        PyErr_SetFromErrno(PyExc_OSError);
    }
    /* The first took are in flight; the others (all of them on error) go back to free slots. */
    slots_batch_end(t, &batch, took);
    return result;
}

/* reap(limit=0) -> list[(token, res, data)]: the completions not taken yet, without waiting
 * (slots_reap_begin says how that list works), topped up from the CQ ring in our memory: no
 * system call. res is the byte count, or -errno; data is bytes for OP_READ_NEW that
 * succeeded, else None. The slots are free again and their buffers released. */
static PyObject *Uring_reap(UringObject *self, PyObject *args)
{
    struct slot_table *t = &self->base.table;
    Py_ssize_t wanted;
    PyObject *list = slots_reap_begin(t, args, &wanted); /* ... and the eventfd drained */
    if (list == NULL)
        return NULL;
    struct io_uring_cqe *cqes[URING_REAP_BATCH];
    struct { __u64 data; int res; } done[URING_REAP_BATCH];
    unsigned got, ask;
    int failed = 0;
    do {
        Py_ssize_t room = wanted - PyList_GET_SIZE(list);
        ask = room < URING_REAP_BATCH ? (unsigned)room : URING_REAP_BATCH;
        /* (It would call io_uring_enter only to flush an overflowed CQ ring: ours cannot.) */
        got = io_uring_peek_batch_cqe(&self->ring, cqes, ask);
        for (unsigned k = 0; k < got; k++) {
            done[k].data = io_uring_cqe_get_data64(cqes[k]);
            done[k].res = cqes[k]->res;
        }
        io_uring_cq_advance(&self->ring, got); /* copied: the kernel may reuse those CQEs */
        for (unsigned k = 0; k < got; k++) {
            if (done[k].data == CANCEL_DATA) /* a cancel's own answer: the request's comes apart */
                self->cancels--;
            else if (slots_finish(t, (int)done[k].data, done[k].res, failed ? NULL : list) < 0)
                failed = 1; /* MemoryError: the other slots of this batch are still released */
        }
    } while (!failed && got == ask && PyList_GET_SIZE(list) < wanted);
    if (failed)
        Py_CLEAR(list);
    return list;
}

/* cancel(token) -> bool: ask the kernel to cancel the request submitted with this token
 * (one IORING_OP_ASYNC_CANCEL, submitted at once). True if the kernel was asked; False if
 * the token is unknown, or too many cancels are pending. Unlike io_cancel, the answer is
 * not known on return: the request's own completion says, later, whether it was cancelled
 * (res = -ECANCELED or -EINTR) or had already reached the device (its normal result: a
 * direct read or write under way cannot be called back). Either way that completion
 * arrives through reap, which releases the buffer: never memory the kernel may write into. */
static PyObject *Uring_cancel(UringObject *self, PyObject *token)
{
    if (slots_check(&self->base.table) < 0)
        return NULL;
    int i = slots_find(&self->base.table, token);
    if (i < 0 || self->cancels >= self->base.table.capacity) /* each cancel adds a CQE: keep the */
        Py_RETURN_FALSE;                                      /* CQ ring from overflowing */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&self->ring); /* the SQ ring is empty here */
    if (sqe == NULL)
        Py_RETURN_FALSE;
    io_uring_prep_cancel64(sqe, (__u64)i, 0);
    io_uring_sqe_set_data64(sqe, CANCEL_DATA);
    int err;
    unsigned took = ring_submit(self, 1, &err);
    if (took == 0 && PyErr_Occurred())
        return NULL;
    self->cancels += (int)took;
    return PyBool_FromLong(took == 1);
}

/* Wait for every request in flight, drop the ring, give every slot back, close the
 * eventfd. The requests' completions are waited for one by one (io_uring_wait_cqe, GIL
 * released) BEFORE io_uring_queue_exit: closing a ring's fd does not wait for its requests
 * (the kernel tears it down later, in a worker), so their buffers could be written after
 * we released them. In a fork()ed child nothing is waited for (the ring and its CQEs are
 * the parent's): io_uring_queue_exit only unmaps the child's copy of the mappings and
 * closes its copy of the fd. 0, or -1 with RuntimeError if another thread is using the
 * ring, or OSError if the wait failed (then nothing was released). Idempotent; needs the GIL. */
static int uring_close(UringObject *self)
{
    if (self->base.table.busy) {
        PyErr_SetString(PyExc_RuntimeError, "kernaio: this io_uring context is in use by another thread");
        return -1;
    }
    struct slot_table *t = &self->base.table;
    if (t->open) {
        struct io_uring *ring = &self->ring;
        int in_flight = slots_forked(t) ? 0 : t->in_flight;
        int cancels = self->cancels, ret = 0;
        self->base.table.busy = 1;
        Py_BEGIN_ALLOW_THREADS
        while (in_flight > 0) {
            struct io_uring_cqe *cqe;
            ret = io_uring_wait_cqe(ring, &cqe);
            if (ret == -EINTR) /* a signal: the kernel still owns the buffers, wait on */
                continue;
            if (ret < 0)
                break;
            if (io_uring_cqe_get_data64(cqe) == CANCEL_DATA)
                cancels--;
            else
                in_flight--;
            io_uring_cqe_seen(ring, cqe);
        }
        if (ret == 0)
            io_uring_queue_exit(ring);
        Py_END_ALLOW_THREADS
        self->base.table.busy = 0;
        if (ret < 0) {
            t->in_flight = in_flight;
            self->cancels = cancels;
            errno = -ret;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    slots_close(t); /* the kernel owns nothing now: every slot back, open 0, the eventfd closed */
    self->cancels = 0;
    return 0;
}

static void Uring_dealloc(UringObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (uring_close(self) == 0) { /* waits for in-flight requests before their buffers go */
        slots_free(&self->base.table);
    } else {
        /* The kernel may still own buffers: leak them (and the ring) rather than free them. */
        PyErr_WriteUnraisable(NULL);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* settle(): return once the kernel has read every request submitted so far, and so holds its
 * own reference to each one's file: only then may a file's fd be closed (File.close), or the
 * number, reused by the next open(), would be what a late request reads or writes. Without
 * SQPOLL that is always so (io_uring_enter read them). With it, the iou-sqp thread reads the
 * ring a moment after submit returned: wait for it, waking it if it went to sleep, the GIL
 * released. RuntimeError while another thread uses the ring; nothing in a fork()ed child. */
static PyObject *Uring_settle(UringObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->sqpoll || !self->base.table.open || slots_forked(&self->base.table))
        Py_RETURN_NONE;
    if (slots_check(&self->base.table) < 0)
        return NULL;
    struct io_uring *ring = &self->ring;
    self->base.table.busy = 1;
    Py_BEGIN_ALLOW_THREADS
    while (io_uring_sq_ready(ring) > 0) {
        if (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_NEED_WAKEUP)
            (void)io_uring_submit(ring); /* nothing new: only the wake-up (IORING_ENTER_SQ_WAKEUP) */
        else
            sched_yield(); /* it is awake: a few microseconds */
    }
    Py_END_ALLOW_THREADS
    self->base.table.busy = 0;
    Py_RETURN_NONE;
}

/* close(): wait for the requests in flight (GIL released), io_uring_queue_exit, release
 * every buffer, close the eventfd. Safe to call twice, and in a fork()ed child. */
static PyObject *Uring_close(UringObject *self, PyObject *Py_UNUSED(ignored))
{
    if (uring_close(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Uring_methods[] = {
    {"submit", (PyCFunction)Uring_submit, METH_O, "submit(requests) -> how many the kernel took (one io_uring_enter)"},
    {"reap", (PyCFunction)Uring_reap, METH_VARARGS, "reap(limit=0) -> the list of completions not taken yet: [(token, res, data)]"},
    {"cancel", (PyCFunction)Uring_cancel, METH_O, "cancel(token) -> True if an IORING_OP_ASYNC_CANCEL was submitted"},
    {"close", (PyCFunction)Uring_close, METH_NOARGS, "close(): wait for requests in flight, then io_uring_queue_exit"},
    {"settle", (PyCFunction)Uring_settle, METH_NOARGS, "settle(): return once the kernel has read every request "
     "submitted (with SQPOLL, its thread may not have yet)"},
    SLOTS_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Uring_members[] = {
    {"sqpoll", T_BOOL, offsetof(UringObject, sqpoll), READONLY, "made with IORING_SETUP_SQPOLL (a kernel thread submits)"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Uring_slots[] = {
    {Py_tp_doc, "UringContext(capacity=128): one io_uring, its eventfd, and room for capacity requests; "
                "the same interface as Context. OSError if io_uring is blocked here."},
    {Py_tp_new, Uring_new},
    {Py_tp_dealloc, Uring_dealloc},
    {Py_tp_methods, Uring_methods},
    {Py_tp_members, Uring_members},
    SLOTS_TYPE_SLOTS,
    {0, NULL},
};

static PyType_Spec Uring_spec = {
    .name = "kernaio._kernaio.UringContext",
    .basicsize = sizeof(UringObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Uring_slots,
};

int kernaio_add_uring_type(PyObject *module, kernaio_state *st)
{
    return kernaio_add_type(module, &Uring_spec, &st->uring_type);
}
