/* engine.c: kernaio._kernaio.Engine — _engine.Engine's hot path in C: the queue, one flush per iteration, the slices. */
#include "kernaio.h"

/* This is _engine.py's Engine, method for method (start, _flush, _on_completions,
 * _after_slice, _resume_later, cancel, drop_queued), and the same policy: requests of one
 * loop iteration go out in one submit (a call_soon flush), completions are reaped in
 * slices of max(reap_min, in_flight // reap_share) (the numbers are _engine.py's, passed
 * in), the tasks a slice woke submit again before the next slice. What it saves is the
 * interpreter: a read on the Python engine runs about 60 lines of Python in kernaio (the
 * numbers are in py/kernaio/README.md). Making an engine for a loop, closing it, pooling
 * idle contexts and fork() stay in _engine.py, for both engines.
 *
 * Nothing is lost when the asyncio calls it makes raise (KeyboardInterrupt in call_soon,
 * in loop.create_future): no Python code runs between two of its own steps, so at every
 * exit each request is in the queue, in the kernel, or ended; a callback that fails asks
 * for itself again (resume_later), as the Python engine's callbacks do. */

/* The engine's loop (a new reference), or NULL if it is gone. No exception either way. */
PyObject *kernaio_engine_loop(EngineObject *e)
{
    PyObject *loop = PyWeakref_GetObject(e->loop_ref); /* borrowed; None once the loop is gone */
    return loop != NULL && loop != Py_None ? Py_NewRef(loop) : NULL;
}

static struct slot_table *table_of(EngineObject *e)
{
    return &((SlotsObject *)e->ctx)->table;
}

static int call_soon(kernaio_state *st, PyObject *loop, PyObject *callback, PyObject *arg)
{
    PyObject *args[3] = {loop, callback, arg};
    PyObject *handle = PyObject_VectorcallMethod(st->str_call_soon, args, arg != NULL ? 3 : 2, NULL);
    Py_XDECREF(handle);
    return handle == NULL ? -1 : 0;
}

/* loop.is_closed(): 1, 0, or -1 with an exception. */
static int loop_is_closed(PyObject *loop)
{
    PyObject *closed = PyObject_CallMethod(loop, "is_closed", NULL);
    int yes = closed != NULL ? PyObject_IsTrue(closed) : -1;
    Py_XDECREF(closed);
    return yes;
}

/* ---- the queue: a ring of strong references, in order ---------------------------------- */

static int queue_grow(EngineObject *e)
{
    Py_ssize_t cap = e->qcap ? 2 * e->qcap : 64;
    PyObject **items = PyMem_Malloc((size_t)cap * sizeof(*items));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < e->qlen; k++)
        items[k] = e->queue[(e->qhead + k) % e->qcap];
    PyMem_Free(e->queue);
    e->queue = items;
    e->qcap = cap;
    e->qhead = 0;
    return 0;
}

/* Append r (a new reference is taken). 0, or -1 with MemoryError. */
int kernaio_queue_push(EngineObject *e, PyObject *r)
{
    if (e->qlen == e->qcap && queue_grow(e) < 0)
        return -1;
    e->queue[(e->qhead + e->qlen++) % e->qcap] = Py_NewRef(r);
    return 0;
}

/* Put r (a reference the queue takes over) back at the front. Never fails: only what was
 * taken from the queue goes back, so there is room. */
static void queue_push_front(EngineObject *e, PyObject *r)
{
    e->qhead = (e->qhead + e->qcap - 1) % e->qcap;
    e->queue[e->qhead] = r;
    e->qlen++;
}

/* The first request (the queue's reference, handed over). The queue must not be empty. */
PyObject *kernaio_queue_pop(EngineObject *e)
{
    PyObject *r = e->queue[e->qhead];
    e->qhead = (e->qhead + 1) % e->qcap;
    e->qlen--;
    return r;
}

/* Put items[from:] of a list back at the front of the queue, in their order. */
static void queue_put_back(EngineObject *e, PyObject *list, Py_ssize_t from)
{
    for (Py_ssize_t k = PyList_GET_SIZE(list) - 1; k >= from; k--)
        queue_push_front(e, Py_NewRef(PyList_GET_ITEM(list, k)));
}

/* 1 if r's caller gave up (its future is done: cancelled), 0 if not, -1 with an exception. */
static int gave_up(kernaio_state *st, PyObject *r)
{
    PyObject *done = PyObject_CallMethodNoArgs(((RequestObject *)r)->future, st->str_done);
    if (done == NULL)
        return -1;
    int yes = PyObject_IsTrue(done);
    Py_DECREF(done);
    return yes;
}

/* ---- the hot path ---------------------------------------------------------------------- */

/* _engine.Engine.start: queue r; the first request of a loop iteration schedules the flush
 * (first, so that a failing call_soon leaves nothing queued: the caller gets its exception). */
int kernaio_engine_start(kernaio_state *st, EngineObject *e, PyObject *r)
{
    if (e->closed) { /* File never uses a closed engine: its cache is looked up again */
        PyErr_SetString(PyExc_RuntimeError, "kernaio: this engine is closed");
        return -1;
    }
    if (!e->flush_pending) {
        PyObject *loop = kernaio_engine_loop(e);
        if (loop == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "kernaio: the engine's event loop is gone");
            return -1;
        }
        int ret = call_soon(st, loop, e->cb_flush, NULL);
        Py_DECREF(loop);
        if (ret < 0)
            return -1;
        e->flush_pending = 1;
    }
    return kernaio_queue_push(e, r);
}

/* The kernel refused the first request of batch (io_submit's OSError): fail it alone with
 * OSError(errno, strerror, its file's name); the error set is consumed. 0, or -1. */
static int fail_first(kernaio_state *st, PyObject *batch)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *number = value != NULL ? PyObject_GetAttrString(value, "errno") : NULL;
    int code = number != NULL && PyLong_Check(number) ? (int)PyLong_AsLong(number) : EIO;
    Py_XDECREF(number);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    RequestObject *first = (RequestObject *)PyList_GET_ITEM(batch, 0);
    PyObject *name = PyObject_GetAttr(first->file, st->str_name);
    if (name == NULL)
        return -1;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isO", code, strerror(code), name);
    Py_DECREF(name);
    if (exc == NULL)
        return -1;
    int ret = kernaio_request_fail(st, first, exc);
    Py_DECREF(exc);
    return ret;
}

/* _engine.Engine._flush: submit what is queued, as few calls as the free slots allow. */
int kernaio_engine_flush(kernaio_state *st, EngineObject *e)
{
    e->flush_pending = 0;
    if (e->closed)
        return 0;
    struct slot_table *t = table_of(e);
    while (e->qlen > 0 && t->nfree > 0) {
        PyObject *batch = PyList_New(0);
        if (batch == NULL)
            return -1;
        while (e->qlen > 0 && PyList_GET_SIZE(batch) < t->nfree) {
            PyObject *r = kernaio_queue_pop(e);
            int skip = gave_up(st, r); /* a cancelled request never reaches the kernel */
            if (skip < 0 || (!skip && PyList_Append(batch, r) < 0)) {
                queue_push_front(e, r);
                queue_put_back(e, batch, 0);
                Py_DECREF(batch);
                return -1;
            }
            Py_DECREF(r);
        }
        Py_ssize_t n = PyList_GET_SIZE(batch);
        if (n == 0) {
            Py_DECREF(batch);
            break;
        }
        PyObject *args[2] = {e->ctx, batch};
        PyObject *took_obj = PyObject_VectorcallMethod(st->str_submit, args, 2, NULL);
        Py_ssize_t took = took_obj != NULL ? PyLong_AsSsize_t(took_obj) : -1;
        Py_XDECREF(took_obj);
        if (took < 0 && PyErr_ExceptionMatches(PyExc_OSError)) {
            /* The kernel refused the FIRST request (EBADF...): its error; the others get their chance. */
            e->submit_calls++;
            queue_put_back(e, batch, 1);
            int ret = fail_first(st, batch);
            Py_DECREF(batch);
            if (ret < 0)
                return -1;
            continue;
        }
        if (took < 0 && PyErr_ExceptionMatches(PyExc_Exception)) {
            /* Not the kernel's answer (MemoryError, a bug): nothing was submitted; fail the batch
             * rather than leave its callers waiting for completions that cannot come. */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            int ret = 0;
            for (Py_ssize_t k = 0; k < n && ret == 0; k++)
                ret = kernaio_request_fail(st, (RequestObject *)PyList_GET_ITEM(batch, k), value);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            Py_DECREF(batch);
            if (ret < 0)
                return -1;
            continue;
        }
        if (took < 0) { /* KeyboardInterrupt (a signal during the call): nothing taken, all back */
            queue_put_back(e, batch, 0);
            Py_DECREF(batch);
            return -1;
        }
        e->submit_calls++;
        queue_put_back(e, batch, took); /* what the kernel did not take: first in the queue again */
        Py_DECREF(batch);
        if (took < n)
            break; /* the kernel is full: the next completion flushes again */
    }
    if (e->qlen > 0 && t->in_flight == 0 && !e->flush_pending) {
        /* Refused with nothing in flight (EAGAIN): no completion will come to retry. */
        PyObject *loop = kernaio_engine_loop(e);
        if (loop == NULL)
            return 0;
        int is_closed = loop_is_closed(loop);
        PyObject *delay = is_closed == 0 ? PyFloat_FromDouble(0.001) : NULL;
        PyObject *later = delay != NULL ? PyObject_CallMethodObjArgs(loop, st->str_call_later, delay, e->cb_flush, NULL)
                                        : NULL;
        Py_XDECREF(delay);
        Py_DECREF(loop);
        if (is_closed < 0 || (is_closed == 0 && later == NULL))
            return -1;
        Py_XDECREF(later);
        e->flush_pending = is_closed == 0;
    }
    return 0;
}

/* _engine.Engine._deliver: complete each reaped request, then take them all out of the
 * context's list (a failure leaves them all there for the next reap: completing twice does
 * nothing). How many, or -1. */
static Py_ssize_t deliver(kernaio_state *st, PyObject *done)
{
    Py_ssize_t n = PyList_GET_SIZE(done);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PyList_GET_ITEM(done, k); /* (token, res, data), made by slots_finish */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3
            || !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 0), st->request_type))
            continue;
        PyObject *token = PyTuple_GET_ITEM(item, 0);
        long long res = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 1));
        if ((res == -1 && PyErr_Occurred())
            || kernaio_request_complete(st, (RequestObject *)token, res, PyTuple_GET_ITEM(item, 2)) < 0)
            return -1;
    }
    return PyList_SetSlice(done, 0, n, NULL) < 0 ? -1 : n;
}

/* _engine.Engine._on_completions, within its try: flush, reap a slice, resolve it, and come
 * back right after the tasks it woke (they are queued before _after_slice). */
int kernaio_engine_completions(kernaio_state *st, EngineObject *e)
{
    if (e->closed)
        return 0;
    e->flush_pending = 0; /* this call flushes; a flush scheduled before finds little */
    if (e->qlen > 0 && kernaio_engine_flush(st, e) < 0)
        return -1;
    int in_flight = table_of(e)->in_flight;
    Py_ssize_t limit = in_flight / e->reap_share > e->reap_min ? in_flight / e->reap_share : e->reap_min;
    PyObject *args[2] = {e->ctx, NULL};
    args[1] = PyLong_FromSsize_t(limit);
    PyObject *done = args[1] != NULL ? PyObject_VectorcallMethod(st->str_reap, args, 2, NULL) : NULL;
    Py_XDECREF(args[1]);
    if (done == NULL)
        return -1;
    Py_ssize_t woke = PyList_GET_SIZE(done);
    int full = woke >= limit;
    woke = deliver(st, done);
    Py_DECREF(done);
    if (woke < 0)
        return -1;
    if (woke > 0) {
        PyObject *loop = kernaio_engine_loop(e);
        if (loop != NULL) {
            int ret = call_soon(st, loop, e->cb_after_slice, full ? Py_True : Py_False);
            Py_DECREF(loop);
            if (ret < 0)
                return -1;
            e->flush_pending = 1;
        }
    }
    else if (e->qlen > 0 && !e->flush_pending)
        return kernaio_engine_flush(st, e);
    return 0;
}

/* _engine.Engine._resume_later, with the exception being raised kept (or, if scheduling
 * fails too, that new exception, with the first as its context): the next run of the loop
 * flushes the queue and delivers what was reaped. An extra call finds nothing to do. */
void kernaio_engine_resume_later(kernaio_state *st, EngineObject *e)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *loop = kernaio_engine_loop(e);
    int ret = 0;
    if (loop != NULL && !e->closed) {
        int is_closed = loop_is_closed(loop);
        ret = is_closed == 0 ? call_soon(st, loop, e->cb_completions, NULL) : is_closed;
        if (is_closed == 0 && ret == 0)
            e->flush_pending = 1; /* _on_completions flushes first */
    }
    Py_XDECREF(loop);
    if (ret == 0) {
        PyErr_Restore(type, value, tb);
        return;
    }
    PyObject *ntype, *nvalue, *ntb;
    PyErr_NormalizeException(&type, &value, &tb);
    PyErr_Fetch(&ntype, &nvalue, &ntb);
    PyErr_NormalizeException(&ntype, &nvalue, &ntb);
    if (nvalue != NULL && value != NULL)
        PyException_SetContext(nvalue, Py_NewRef(value));
    PyErr_Restore(ntype, nvalue, ntb);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

int kernaio_engine_wake_drain_waiters(kernaio_state *st, EngineObject *e)
{
    if (e->drain_waiters == NULL) /* cleared by the GC: nobody waits */
        return 0;
    PyObject *waiters = e->drain_waiters, *fresh = PyList_New(0);
    if (fresh == NULL)
        return -1;
    e->drain_waiters = fresh;
    int ret = 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(waiters) && ret == 0; k++) {
        PyObject *waiter = PyList_GET_ITEM(waiters, k);
        PyObject *done = PyObject_CallMethodNoArgs(waiter, st->str_done);
        int skip = done != NULL ? PyObject_IsTrue(done) : -1; /* a close() cancelled meanwhile */
        Py_XDECREF(done);
        PyObject *args[2] = {waiter, Py_None};
        PyObject *set = skip == 0 ? PyObject_VectorcallMethod(st->str_set_result, args, 2, NULL) : NULL;
        ret = skip < 0 || (skip == 0 && set == NULL) ? -1 : 0;
        Py_XDECREF(set);
    }
    Py_DECREF(waiters);
    return ret;
}

int kernaio_engine_cancel(kernaio_state *st, EngineObject *e, RequestObject *r)
{
    if (!r->submitted || e->closed)
        return 0; /* a queued request is simply left out of the next batch (its future is done) */
    PyObject *args[2] = {e->ctx, (PyObject *)r};
    PyObject *ret = PyObject_VectorcallMethod(st->str_cancel, args, 2, NULL);
    Py_XDECREF(ret);
    return ret == NULL ? -1 : 0;
}

/* The future r's caller will await: asyncio's Future made directly when the loop's own
 * create_future would make just that (it is a Python method: a frame per request), else
 * the loop's. A new reference, or NULL. */
static PyObject *new_future(kernaio_state *st, EngineObject *e, PyObject *loop)
{
    if (e->make_future != NULL) {
        PyObject *args[1] = {loop};
        return PyObject_Vectorcall(e->make_future, args, 0, st->kw_loop);
    }
    return PyObject_CallMethodNoArgs(loop, st->str_create_future);
}


/* The running loop, a new reference; NULL with RuntimeError outside one.
 *
 * Python 3.11's asyncio.get_running_loop() makes a getpid() system call on every call, to
 * notice a fork (3.12 dropped it: python/cpython#100363): 0.7 us here, a tenth of a read's
 * CPU (py/kernaio/README.md). What it reads is an object in the thread's state dictionary
 * (PyThreadState_GetDict), a new one each time a loop starts or stops running in this
 * thread; so while that very object is there, in this process, the running loop is the one
 * get_running_loop() answered when it was. The object and its loop are held here (strong
 * references, so no new object can take the old one's address); any doubt -- another
 * object, another process, a Python that keeps the loop elsewhere -- asks asyncio. */
static PyObject *running_loop(kernaio_state *st)
{
#if PY_VERSION_HEX < 0x030C0000
    PyObject *tsdict = PyThreadState_GetDict(); /* borrowed */
    PyObject *holder = tsdict != NULL ? PyDict_GetItemWithError(tsdict, st->str_running_loop_key) : NULL;
    if (holder == NULL && PyErr_Occurred())
        return NULL;
    if (holder != NULL && holder == st->running_holder && st->running_pid == slots_this_process())
        return Py_NewRef(st->running_loop);
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop != NULL && holder != NULL) {
        Py_XSETREF(st->running_holder, Py_NewRef(holder));
        Py_XSETREF(st->running_loop, Py_NewRef(loop));
        st->running_pid = slots_this_process();
    }
    return loop;
#else
    return PyObject_CallNoArgs(st->get_running_loop);
#endif
}

int kernaio_engine_begin(kernaio_state *st, RequestObject *r)
{
    if (!PyObject_TypeCheck(r->file, st->file_type)) {
        PyErr_SetString(PyExc_TypeError, "kernaio: only the C engine's requests are awaited (File.read and "
                        "the others return them)");
        return -1;
    }
    FileCoreObject *f = (FileCoreObject *)r->file;
    if (f->closed) { /* closed between the call and its first await, as File._check_open says */
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file");
        return -1;
    }
    PyObject *loop = running_loop(st);
    if (loop == NULL)
        return -1;
    EngineObject *e = (EngineObject *)Py_NewRef(f->engine_cache);
    int ret = -1;
    if (!Py_IS_TYPE(e, st->engine_type) || e->closed || e->loop_id != (uintptr_t)loop) {
        /* The first request on this loop: File._engine_for finds (or makes) its engine, after
         * checking that the file may be used here. A closed engine is never reused. */
        Py_SETREF(e, (EngineObject *)PyObject_CallMethodOneArg(r->file, st->str_engine_for, loop));
        if (e == NULL)
            goto out;
        if (!Py_IS_TYPE(e, st->engine_type)) {
            PyErr_SetString(PyExc_TypeError, "kernaio: File._engine_for did not give a C engine");
            goto out;
        }
    }
    PyObject *future = new_future(st, e, loop);
    if (future == NULL)
        goto out;
    Py_SETREF(r->future, future);
    Py_XSETREF(r->engine, Py_NewRef((PyObject *)e));
    ret = kernaio_engine_start(st, e, (PyObject *)r);
out:
    Py_XDECREF(e);
    Py_DECREF(loop);
    return ret;
}
