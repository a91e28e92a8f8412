/* engine_type.c: the Python face of the C engine — kernaio._kernaio.Engine's methods and fields, and what the module state holds for it. */
#include "kernaio.h"

#include <stddef.h> /* offsetof */
#include <structmember.h>

/* The behaviour is in engine.c; here is what Python sees: the same methods and fields as
 * _engine.Engine (the shared lifetime code in _engine.py and kernaio's tests use them on
 * both engines), each a thin wrapper. */

static kernaio_state *state_of(EngineObject *e)
{
    return PyType_GetModuleState(Py_TYPE(e));
}

/* Engine(loop, ctx, backend, sqpoll, reap_share, reap_min): the engine of loop over ctx (a
 * Context or UringContext of this process), watching its eventfd with loop.add_reader. */
static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "ctx", "backend", "sqpoll", "reap_share", "reap_min", NULL};
    kernaio_state *st = PyType_GetModuleState(type);
    PyObject *loop, *ctx, *backend;
    int sqpoll, reap_share, reap_min;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOUpii:Engine", kwlist, &loop, &ctx, &backend, &sqpoll,
                                     &reap_share, &reap_min))
        return NULL;
    if (!Py_IS_TYPE(ctx, st->context_type) && !Py_IS_TYPE(ctx, st->uring_type)) {
        PyErr_SetString(PyExc_TypeError, "kernaio: Engine needs a Context or a UringContext");
        return NULL;
    }
    if (reap_share < 1 || reap_min < 1) {
        PyErr_SetString(PyExc_ValueError, "kernaio: reap_share and reap_min must be >= 1");
        return NULL;
    }
    EngineObject *e = (EngineObject *)type->tp_alloc(type, 0);
    if (e == NULL)
        return NULL;
    e->ctx = Py_NewRef(ctx);
    e->backend = Py_NewRef(backend);
    e->sqpoll = (char)sqpoll;
    e->reap_share = reap_share;
    e->reap_min = reap_min;
    e->pid = ((SlotsObject *)ctx)->table.pid;
    e->loop_id = (uintptr_t)loop;
    e->loop_ref = PyWeakref_NewRef(loop, NULL);
    e->drain_waiters = PyList_New(0);
    e->cb_flush = PyObject_GetAttrString((PyObject *)e, "_flush");
    e->cb_completions = PyObject_GetAttrString((PyObject *)e, "_on_completions");
    e->cb_after_slice = PyObject_GetAttrString((PyObject *)e, "_after_slice");
    PyObject *create = PyObject_GetAttr((PyObject *)Py_TYPE(loop), st->str_create_future);
    if (e->loop_ref == NULL || e->drain_waiters == NULL || e->cb_flush == NULL || e->cb_completions == NULL
        || e->cb_after_slice == NULL || create == NULL) {
        Py_XDECREF(create);
        Py_DECREF(e);
        return NULL;
    }
    if (create == st->base_create_future) /* asyncio's own create_future: Future(loop=loop) */
        e->make_future = Py_NewRef(st->future_type);
    Py_DECREF(create);
    /* Completions bump the eventfd: the loop's own selector (epoll, or uvloop's libuv) wakes us. */
    PyObject *fd = PyLong_FromLong(((SlotsObject *)ctx)->table.efd);
    PyObject *added = fd != NULL ? PyObject_CallMethodObjArgs(loop, st->str_add_reader, fd, e->cb_completions, NULL)
                                 : NULL;
    Py_XDECREF(fd);
    if (added == NULL) {
        Py_DECREF(e);
        return NULL;
    }
    Py_DECREF(added);
    return (PyObject *)e;
}

static int Engine_traverse(EngineObject *e, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(e));
    Py_VISIT(e->loop_ref);
    Py_VISIT(e->ctx);
    Py_VISIT(e->backend);
    Py_VISIT(e->drain_waiters);
    Py_VISIT(e->cb_flush);
    Py_VISIT(e->cb_completions);
    Py_VISIT(e->cb_after_slice);
    Py_VISIT(e->make_future);
    for (Py_ssize_t k = 0; k < e->qlen; k++)
        Py_VISIT(e->queue[(e->qhead + k) % e->qcap]);
    return 0;
}

static int Engine_clear(EngineObject *e)
{
    e->closed = 1; /* its callbacks go now: every step checks this first */
    Py_CLEAR(e->cb_flush); /* each holds the engine: the cycle the GC breaks here */
    Py_CLEAR(e->cb_completions);
    Py_CLEAR(e->cb_after_slice);
    Py_CLEAR(e->drain_waiters);
    while (e->qlen > 0)
        Py_DECREF(kernaio_queue_pop(e));
    return 0;
}

static void Engine_dealloc(EngineObject *e)
{
    PyTypeObject *tp = Py_TYPE(e);
    PyObject_GC_UnTrack(e);
    (void)Engine_clear(e);
    Py_CLEAR(e->loop_ref);
    Py_CLEAR(e->ctx);
    Py_CLEAR(e->backend);
    Py_CLEAR(e->make_future);
    PyMem_Free(e->queue);
    tp->tp_free((PyObject *)e);
    Py_DECREF(tp);
}

/* A callback's method: on failure, it asks for itself again (resume_later) and raises. */
static PyObject *callback_result(kernaio_state *st, EngineObject *e, int ret)
{
    if (ret < 0) {
        kernaio_engine_resume_later(st, e);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Engine_on_completions(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    kernaio_state *st = state_of(e);
    if (kernaio_engine_completions(st, e) < 0)
        return callback_result(st, e, -1);
    /* File.close()s waiting: each reap wakes them to look again */
    if (e->drain_waiters != NULL && PyList_GET_SIZE(e->drain_waiters) > 0
        && kernaio_engine_wake_drain_waiters(st, e) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Engine_flush(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    kernaio_state *st = state_of(e);
    return callback_result(st, e, kernaio_engine_flush(st, e));
}

/* _after_slice(full): right after the tasks a slice woke: one flush for their requests, and
 * the next slice if this one was full (more may wait behind a drained eventfd). */
static PyObject *Engine_after_slice(EngineObject *e, PyObject *full)
{
    kernaio_state *st = state_of(e);
    e->flush_pending = 0;
    int more = PyObject_IsTrue(full);
    if (more < 0)
        return NULL;
    if (more)
        return Engine_on_completions(e, NULL);
    return callback_result(st, e, kernaio_engine_flush(st, e));
}

static PyObject *Engine_resume_later(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    kernaio_engine_resume_later(state_of(e), e);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* The argument of start and cancel: 0 if request is a Request, else -1 with a TypeError that
 * names the method. */
static int check_request(kernaio_state *st, PyObject *request, const char *method)
{
    if (PyObject_TypeCheck(request, st->request_type))
        return 0;
    PyErr_Format(PyExc_TypeError, "kernaio: Engine.%s takes a Request", method);
    return -1;
}

static PyObject *Engine_start(EngineObject *e, PyObject *request)
{
    kernaio_state *st = state_of(e);
    if (check_request(st, request, "start") < 0 || kernaio_engine_start(st, e, request) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Engine_cancel(EngineObject *e, PyObject *request)
{
    kernaio_state *st = state_of(e);
    if (check_request(st, request, "cancel") < 0 || kernaio_engine_cancel(st, e, (RequestObject *)request) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* take_queued() -> list: every request still queued, in order; the queue is left empty. */
static PyObject *Engine_take_queued(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(e->qlen);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t k = 0; e->qlen > 0; k++)
        PyList_SET_ITEM(list, k, kernaio_queue_pop(e)); /* the queue's reference, handed over */
    return list;
}

/* drop_queued(file, exc): fail the queued requests of file (its fd is about to be closed and
 * might be reused: they must never reach the kernel); the others stay, in order. */
static PyObject *Engine_drop_queued(EngineObject *e, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "kernaio: Engine.drop_queued(file, exc)");
        return NULL;
    }
    kernaio_state *st = state_of(e);
    PyObject *all = Engine_take_queued(e, NULL), *mine = PyList_New(0);
    int ret = all != NULL && mine != NULL ? 0 : -1;
    for (Py_ssize_t k = 0; ret == 0 && k < PyList_GET_SIZE(all); k++) {
        PyObject *r = PyList_GET_ITEM(all, k);
        ret = ((RequestObject *)r)->file == args[0] ? PyList_Append(mine, r) : kernaio_queue_push(e, r);
    }
    for (Py_ssize_t k = 0; ret == 0 && k < PyList_GET_SIZE(mine); k++)
        ret = kernaio_request_fail(st, (RequestObject *)PyList_GET_ITEM(mine, k), args[1]);
    Py_XDECREF(all);
    Py_XDECREF(mine);
    if (ret < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Engine_wake_drain_waiters(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    if (kernaio_engine_wake_drain_waiters(state_of(e), e) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Engine_methods[] = {
    {"start", (PyCFunction)Engine_start, METH_O, "start(request): queue it; one flush per loop iteration"},
    {"cancel", (PyCFunction)Engine_cancel, METH_O, "cancel(request): the caller gave up; a submitted one is "
     "offered to the kernel's cancel (its buffer stays held until its completion)"},
    {"drop_queued", (PyCFunction)(void (*)(void))Engine_drop_queued, METH_FASTCALL,
     "drop_queued(file, exc): fail file's queued requests with exc"},
    {"take_queued", (PyCFunction)Engine_take_queued, METH_NOARGS, "take_queued() -> the queued requests; the queue empty"},
    {"_on_completions", (PyCFunction)Engine_on_completions, METH_NOARGS, "the eventfd is readable: flush, reap a slice"},
    {"_flush", (PyCFunction)Engine_flush, METH_NOARGS, "submit what is queued"},
    {"_after_slice", (PyCFunction)Engine_after_slice, METH_O, "_after_slice(full): flush after a slice's tasks"},
    {"_resume_later", (PyCFunction)Engine_resume_later, METH_NOARGS, "schedule _on_completions (after an interrupt)"},
    {"_wake_drain_waiters", (PyCFunction)Engine_wake_drain_waiters, METH_NOARGS, "wake the File.close()s waiting"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Engine_get_loop(EngineObject *e, void *Py_UNUSED(c))
{
    PyObject *loop = kernaio_engine_loop(e);
    return loop != NULL ? loop : Py_NewRef(Py_None);
}

static PyObject *Engine_get_loop_id(EngineObject *e, void *Py_UNUSED(c))
{
    return PyLong_FromVoidPtr((void *)e->loop_id);
}

static PyObject *Engine_get_queue(EngineObject *e, void *Py_UNUSED(c))
{
    PyObject *items = PyTuple_New(e->qlen);
    for (Py_ssize_t k = 0; items != NULL && k < e->qlen; k++)
        PyTuple_SET_ITEM(items, k, Py_NewRef(e->queue[(e->qhead + k) % e->qcap]));
    return items;
}

static PyGetSetDef Engine_getset[] = {
    {"loop", (getter)Engine_get_loop, NULL, "the event loop (None once it is gone)", NULL},
    {"loop_id", (getter)Engine_get_loop_id, NULL, "id(loop) when the engine was made", NULL},
    {"queue", (getter)Engine_get_queue, NULL, "the requests waiting for a slot, in order (a copy)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Engine_members[] = {
    {"ctx", T_OBJECT, offsetof(EngineObject, ctx), READONLY, "the Context or UringContext"},
    {"backend", T_OBJECT, offsetof(EngineObject, backend), READONLY, "'aio' or 'io_uring'"},
    {"sqpoll", T_BOOL, offsetof(EngineObject, sqpoll), READONLY, "an io_uring with a kernel submission thread"},
    {"pid", T_INT, offsetof(EngineObject, pid), READONLY, "the process that made it"},
    {"closed", T_BOOL, offsetof(EngineObject, closed), 0, "True once closed (_engine.close_engine)"},
    {"_flush_pending", T_BOOL, offsetof(EngineObject, flush_pending), 0, "a flush is scheduled"},
    {"submit_calls", T_LONGLONG, offsetof(EngineObject, submit_calls), READONLY, "io_submit/io_uring_enter calls"},
    {"_drain_waiters", T_OBJECT, offsetof(EngineObject, drain_waiters), READONLY, "File.close()s waiting"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Engine_slots[] = {
    {Py_tp_doc, "Engine(loop, ctx, backend, sqpoll, reap_share, reap_min): _engine.Engine's twin, its hot "
                "path in C (src/engine.c)."},
    {Py_tp_new, Engine_new},
    {Py_tp_dealloc, Engine_dealloc},
    {Py_tp_traverse, Engine_traverse},
    {Py_tp_clear, Engine_clear},
    {Py_tp_methods, Engine_methods},
    {Py_tp_members, Engine_members},
    {Py_tp_getset, Engine_getset},
    {0, NULL},
};

static PyType_Spec Engine_spec = {
    .name = "kernaio._kernaio.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Engine_slots,
};

/* What the engine takes from asyncio, once. */
static int import_asyncio(kernaio_state *st)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return -1;
    PyObject *base = PyObject_GetAttrString(asyncio, "BaseEventLoop");
    st->get_running_loop = PyObject_GetAttrString(asyncio, "get_running_loop");
    st->cancelled_error = PyObject_GetAttrString(asyncio, "CancelledError");
    st->future_type = PyObject_GetAttrString(asyncio, "Future");
    st->base_create_future = base != NULL ? PyObject_GetAttrString(base, "create_future") : NULL;
    Py_XDECREF(base);
    Py_DECREF(asyncio);
    return st->get_running_loop && st->cancelled_error && st->future_type && st->base_create_future ? 0 : -1;
}

int kernaio_add_engine_types(PyObject *module, kernaio_state *st)
{
    static const char *names[] = {"call_soon", "call_later", "create_future", "add_reader", "result",
                                  "_asyncio_future_blocking", "submit", "reap", "cancel", "fileno",
                                  "_engine_for", "_wake_drain_waiters", "loop", "__asyncio_running_event_loop__"};
    PyObject **slots[] = {&st->str_call_soon, &st->str_call_later, &st->str_create_future, &st->str_add_reader,
                          &st->str_result, &st->str_blocking, &st->str_submit, &st->str_reap, &st->str_cancel,
                          &st->str_fileno, &st->str_engine_for, &st->str_wake_drain_waiters, &st->str_loop,
                          &st->str_running_loop_key};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if ((*slots[k] = PyUnicode_InternFromString(names[k])) == NULL)
            return -1;
    if ((st->kw_loop = PyTuple_Pack(1, st->str_loop)) == NULL || import_asyncio(st) < 0)
        return -1;
    if (kernaio_add_type(module, &Engine_spec, &st->engine_type) < 0)
        return -1;
    return kernaio_add_file_type(module, st);
}

int kernaio_traverse_engine_state(kernaio_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->engine_type);
    Py_VISIT(st->file_type);
    Py_VISIT(st->get_running_loop);
    Py_VISIT(st->cancelled_error);
    Py_VISIT(st->base_create_future);
    Py_VISIT(st->future_type);
    Py_VISIT(st->running_holder);
    Py_VISIT(st->running_loop);
    return 0;
}

void kernaio_clear_engine_state(kernaio_state *st)
{
    Py_CLEAR(st->engine_type);
    Py_CLEAR(st->file_type);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->cancelled_error);
    Py_CLEAR(st->base_create_future);
    Py_CLEAR(st->future_type);
    Py_CLEAR(st->running_holder);
    Py_CLEAR(st->running_loop);
    PyObject **names[] = {&st->str_call_soon, &st->str_call_later, &st->str_create_future, &st->str_add_reader,
                          &st->str_result, &st->str_blocking, &st->str_submit, &st->str_reap, &st->str_cancel,
                          &st->str_fileno, &st->str_engine_for, &st->str_wake_drain_waiters, &st->str_loop,
                          &st->str_running_loop_key, &st->kw_loop};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        Py_CLEAR(*names[k]);
}
