/* awaitable.c: a C-engine Request is the coroutine its caller awaits — send, throw, close, in C. */
#include "kernaio.h"

/* With the Python engine, `await f.read(n)` runs two coroutines of kernaio (read and
 * _submit), each a frame made, run and freed per request. The C engine's File.read returns
 * the Request itself, which behaves as those coroutines do, with no frame:
 *
 *   - nothing happens until it is awaited (or its task first runs it): the first send
 *     finds the running loop and its engine, makes the future and queues the request
 *     (kernaio_engine_begin), then yields the future to the task, as `await future` does;
 *   - the next send (the task woken by the future) returns the future's result, or raises
 *     its exception: OSError, CancelledError;
 *   - a CancelledError thrown in (the task was cancelled while it waited) is raised again,
 *     after the engine was told (io_cancel, IORING_OP_ASYNC_CANCEL); the buffer stays held
 *     until the kernel's completion, as with the Python engine.
 *
 * It has __await__, send, throw and close, so asyncio takes it for a coroutine:
 * asyncio.create_task(f.read(n)) and gather() accept it. The task drives it through
 * am_send (PyIter_Send), which returns the result without a StopIteration. */

static kernaio_state *state_of(PyObject *self)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &kernaio_module);
    return module != NULL ? PyModule_GetState(module) : NULL;
}

/* Hand the future to the task, marked as asyncio's own `await future` marks it: the task
 * then waits for it (adds its wake-up as a done callback) instead of refusing it. */
static PySendResult yield_future(kernaio_state *st, RequestObject *r, PyObject **result)
{
    if (PyObject_SetAttr(r->future, st->str_blocking, Py_True) < 0)
        return PYGEN_ERROR;
    *result = Py_NewRef(r->future);
    return PYGEN_NEXT;
}

/* The task is told what happened (a CancelledError about to be raised): tell the engine, which
 * offers a submitted request to the kernel's cancel. The exception set is kept (or, if the
 * cancel itself fails, replaced by that error, with the CancelledError as its context). */
static void on_cancelled(kernaio_state *st, RequestObject *r)
{
    if (r->engine == NULL || !PyErr_ExceptionMatches(st->cancelled_error))
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (kernaio_engine_cancel(st, (EngineObject *)r->engine, r) < 0) {
        PyObject *ntype, *nvalue, *ntb;
        PyErr_NormalizeException(&type, &value, &tb);
        PyErr_Fetch(&ntype, &nvalue, &ntb);
        PyErr_NormalizeException(&ntype, &nvalue, &ntb);
        if (nvalue != NULL && value != NULL)
            PyException_SetContext(nvalue, value); /* steals value */
        else
            Py_XDECREF(value);
        PyErr_Restore(ntype, nvalue, ntb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        return;
    }
    PyErr_Restore(type, value, tb);
}

/* The awaitable is over with its future done: the request can no longer reach the kernel (a
 * done future is left out of every batch), and while the kernel holds it, it holds it through
 * its slot's own export. So let go of the caller's buffer now, as the Python engine's
 * coroutine frame does when it returns: a task keeps its coroutine -- this Request -- as long
 * as the task lives, and the caller's bytearray could not be resized until then. */
static void let_go(kernaio_state *st, RequestObject *r)
{
    if (r->view.obj == NULL || r->future == NULL || r->future == Py_None)
        return;
    PyObject *done = PyObject_CallMethodNoArgs(r->future, st->str_done);
    int yes = done != NULL ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    if (yes < 0)
        PyErr_Clear(); /* then keep it: released with the request */
    else if (yes)
        PyBuffer_Release(&r->view);
}

PySendResult kernaio_request_send(PyObject *self, PyObject *arg, PyObject **result)
{
    RequestObject *r = (RequestObject *)self;
    kernaio_state *st = state_of(self);
    *result = NULL;
    if (st == NULL)
        return PYGEN_ERROR;
    if (r->awaited == AWAIT_NEW) {
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError, "can't send non-None value to a just-started coroutine");
            return PYGEN_ERROR;
        }
        r->awaited = AWAIT_DONE; /* a request that could not begin is over, like a coroutine that raised */
        if (kernaio_engine_begin(st, r) < 0)
            return PYGEN_ERROR;
        r->awaited = AWAIT_WAITING;
        return yield_future(st, r, result);
    }
    if (r->awaited == AWAIT_DONE) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return PYGEN_ERROR;
    }
    PyObject *done = PyObject_CallMethodNoArgs(r->future, st->str_done);
    if (done == NULL)
        return PYGEN_ERROR;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done < 0)
        return PYGEN_ERROR;
    if (!is_done) /* resumed before its future is done (not by a task): wait again, as await does */
        return yield_future(st, r, result);
    r->awaited = AWAIT_DONE;
    if (r->view.obj != NULL)
        PyBuffer_Release(&r->view); /* done: see let_go */
    *result = PyObject_CallMethodNoArgs(r->future, st->str_result);
    if (*result == NULL) {
        on_cancelled(st, r); /* the future itself was cancelled */
        return PYGEN_ERROR;
    }
    return PYGEN_RETURN;
}

/* The iterator protocol's next() and send(value): PYGEN_RETURN becomes StopIteration(value). */
static PyObject *send_as_iterator(PyObject *self, PyObject *arg)
{
    PyObject *result;
    PySendResult how = kernaio_request_send(self, arg, &result);
    if (how == PYGEN_RETURN) {
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result); /* (a tuple stays one value) */
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
        return NULL;
    }
    return result; /* the future (PYGEN_NEXT), or NULL with the exception */
}

PyObject *kernaio_request_iternext(PyObject *self) { return send_as_iterator(self, Py_None); }

PyObject *kernaio_request_await(PyObject *self) { return Py_NewRef(self); }

PyObject *kernaio_request_send_method(PyObject *self, PyObject *arg) { return send_as_iterator(self, arg); }

/* throw(exc) or throw(type[, value[, traceback]]): raise it where the caller waits. */
PyObject *kernaio_request_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    RequestObject *r = (RequestObject *)self;
    kernaio_state *st = state_of(self);
    if (st == NULL)
        return NULL;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    PyObject *type = args[0], *value = nargs > 1 ? args[1] : Py_None, *tb = nargs > 2 ? args[2] : Py_None;
    if (tb != Py_None && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return NULL;
    }
    if (PyExceptionInstance_Check(type)) {
        if (value != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        PyErr_SetObject((PyObject *)Py_TYPE(type), type);
    }
    else if (PyExceptionClass_Check(type))
        PyErr_SetObject(type, value);
    else {
        PyErr_SetString(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException");
        return NULL;
    }
    if (tb != Py_None) {
        PyObject *t, *v, *b;
        PyErr_Fetch(&t, &v, &b);
        Py_XDECREF(b);
        PyErr_Restore(t, v, Py_NewRef(tb));
    }
    int was_waiting = r->awaited == AWAIT_WAITING;
    r->awaited = AWAIT_DONE;
    if (was_waiting) {
        on_cancelled(st, r);
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        let_go(st, r);
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

/* close(): as a coroutine's close() where it waits for its future (GeneratorExit, not
 * caught): the awaitable is over; the request itself goes on, its outcome unclaimed. */
PyObject *kernaio_request_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    RequestObject *r = (RequestObject *)self;
    kernaio_state *st = state_of(self);
    r->awaited = AWAIT_DONE;
    if (st != NULL)
        let_go(st, r);
    Py_RETURN_NONE;
}
