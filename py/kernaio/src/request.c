/* request.c: kernaio._kernaio.Request — one read, write or fsync, checked once, in C, when it is made. */
#include "kernaio.h"

#include <errno.h>
#include <limits.h>
#include <string.h> /* strerror */
#include <stddef.h> /* offsetof */
#include <structmember.h>

/* Why in C: every request passes here, and at tens of thousands of requests a second the
 * Python version of these checks (a memoryview, its flags, two __index__ calls, five
 * comparisons, eight attribute stores) cost as much CPU as the system calls themselves
 * (`make bench`: kernaio was CPU-bound at QD 32). Here they are one call. The checks are
 * the same, and so are the messages. Its ending is here too, for the same reason:
 * complete() turns the kernel's answer into the future's result or OSError, and fail()
 * fails a request that never reached the kernel (callgrind: the Python versions cost about
 * 4% of all the instructions of a read at QD 32). */

/* value as a long long (an int, or anything with __index__), for the argument named what.
 * A value out of range is clamped to LLONG_MIN/LLONG_MAX: the range checks then say what
 * is wrong with it. 0, or -1 with TypeError. */
static int as_long_long(PyObject *value, const char *what, long long *out)
{
    PyObject *number = PyLong_CheckExact(value) ? Py_NewRef(value) : PyNumber_Index(value);
    if (number == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError, "kernaio: %s must be an integer, not %.200s", what,
                         Py_TYPE(value)->tp_name);
        }
        return -1;
    }
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(number, &overflow);
    Py_DECREF(number);
    if (overflow != 0)
        *out = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Export buffer into r->view for op (a read needs writable memory). The caller's object
 * is pinned from now until the request is freed: a bytearray cannot be resized under a
 * queued request, so the address checked now is the one the kernel gets. 0, or -1 with
 * TypeError saying what kind of buffer is needed. */
static int export_buffer(RequestObject *r, PyObject *buffer)
{
    int flags = r->op == OP_READ ? PyBUF_WRITABLE : PyBUF_SIMPLE; /* both: C-contiguous bytes */
    if (PyObject_GetBuffer(buffer, &r->view, flags) == 0)
        return 0;
    r->view.obj = NULL;
    if (!PyObject_CheckBuffer(buffer)) {
        PyErr_Format(PyExc_TypeError, "kernaio: a bytes-like object is required, not %.200s",
                     Py_TYPE(buffer)->tp_name);
        return -1;
    }
    Py_buffer probe; /* why did it refuse? read-only, or not contiguous */
    if (r->op == OP_READ && PyObject_GetBuffer(buffer, &probe, PyBUF_SIMPLE) == 0) {
        PyBuffer_Release(&probe);
        PyErr_Format(PyExc_TypeError, "kernaio: readinto needs a writable buffer, not a read-only %.200s",
                     Py_TYPE(buffer)->tp_name);
        return -1;
    }
    PyErr_SetString(PyExc_TypeError, "kernaio: the buffer must be C-contiguous");
    return -1;
}

/* Fill a freshly allocated r as Request(file, op, fd, buffer, offset, size) asks: file is
 * kept (and named in errors by the Python side); buffer is None for OP_READ_NEW and
 * OP_FSYNC; size None means the whole buffer. 0, or -1 with TypeError for a wrong type,
 * ValueError for a value out of range (r holds what it took; its dealloc releases it). */
static int request_init(RequestObject *r, PyObject *file, long op, long fd, PyObject *buffer,
                        PyObject *offset_arg, PyObject *size)
{
    if (op < OP_READ || op > OP_READ_NEW || fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "kernaio: bad op %ld or fd %ld", op, fd);
        return -1;
    }
    int has_buffer = op == OP_READ || op == OP_WRITE;
    if (has_buffer == (buffer == Py_None) || (op == OP_READ_NEW && size == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "kernaio: reads and writes take a buffer, read_new a size, "
                        "fsync neither");
        return -1;
    }
    r->file = Py_NewRef(file);
    r->future = Py_NewRef(Py_None);
    r->op = (int)op;
    r->fd = (int)fd;
    long long length = 0, offset = 0;
    if (op != OP_FSYNC) {
        if (as_long_long(offset_arg, "offset", &offset) < 0)
            return -1;
        if (has_buffer && export_buffer(r, buffer) < 0)
            return -1;
        if (size == Py_None)
            length = r->view.len;
        else if (as_long_long(size, "size", &length) < 0)
            return -1;
    }
    if (length < 0) {
        PyErr_Format(PyExc_ValueError, "kernaio: size must be >= 0, not %S", size);
        return -1;
    }
    if (length > KERNAIO_MAX_IO) {
        if (size == Py_None)
            PyErr_Format(PyExc_ValueError, "kernaio: size %lld is more than one request can move (%lld)", length, KERNAIO_MAX_IO);
        else
            PyErr_Format(PyExc_ValueError, "kernaio: size %S is more than one request can move (%lld)", size, KERNAIO_MAX_IO);
        return -1;
    }
    if (offset < 0) {
        PyErr_Format(PyExc_ValueError, "kernaio: offset must be >= 0, not %S", offset_arg);
        return -1;
    }
    if (offset > LLONG_MAX - length) {
        PyErr_Format(PyExc_ValueError, "kernaio: offset %S is beyond any file", offset_arg);
        return -1;
    }
    if (has_buffer && length > r->view.len)
        length = r->view.len; /* never past the end of the caller's memory */
    r->offset = offset;
    r->length = (Py_ssize_t)length;
    return 0;
}

/* Request(file, op, fd, buffer, offset, size): request_init's checks. TypeError and
 * ValueError are raised before anything is queued. */
static PyObject *Request_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "kernaio: Request() takes no keyword arguments");
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) != 6) {
        PyErr_SetString(PyExc_TypeError, "kernaio: Request(file, op, fd, buffer, offset, size)");
        return NULL;
    }
    long op = PyLong_AsLong(PyTuple_GET_ITEM(args, 1));
    long fd = PyLong_AsLong(PyTuple_GET_ITEM(args, 2));
    if ((op == -1 || fd == -1) && PyErr_Occurred())
        return NULL;
    RequestObject *r = (RequestObject *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    if (request_init(r, PyTuple_GET_ITEM(args, 0), op, fd, PyTuple_GET_ITEM(args, 3), PyTuple_GET_ITEM(args, 4),
                     PyTuple_GET_ITEM(args, 5)) < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

RequestObject *kernaio_request_make(kernaio_state *st, PyObject *file, int op, int fd, PyObject *buffer,
                                    PyObject *offset, PyObject *size)
{
    PyTypeObject *type = st->request_type;
    RequestObject *r = (RequestObject *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    if (request_init(r, file, op, fd, buffer != NULL ? buffer : Py_None, offset, size != NULL ? size : Py_None) < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

/* Whether r's future still waits: 1 if it does, 0 if it is done already (the caller was
 * cancelled meanwhile: the outcome is dropped) or there is none (never queued, or dropped by
 * the GC: nobody to tell), -1 with an exception. */
static int still_waiting(kernaio_state *st, RequestObject *r)
{
    if (r->future == NULL || r->future == Py_None) /* NULL: cleared by the GC (Request_clear) */
        return 0;
    PyObject *done = PyObject_CallMethodNoArgs(r->future, st->str_done);
    if (done == NULL)
        return -1;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    return is_done < 0 ? -1 : !is_done;
}

/* future.<method>(value); steals the reference to value. 0, or -1 with an exception. */
static int future_settle(PyObject *future, PyObject *method, PyObject *value)
{
    if (value == NULL)
        return -1;
    PyObject *call[2] = {future, value};
    PyObject *ret = PyObject_VectorcallMethod(method, call, 2, NULL);
    Py_DECREF(value);
    Py_XDECREF(ret);
    return ret == NULL ? -1 : 0;
}

int kernaio_request_complete(kernaio_state *st, RequestObject *r, long long res, PyObject *data)
{
    int waiting = still_waiting(st, r);
    if (waiting <= 0)
        return waiting;
    if (res < 0) {
        int code = res < -4095 ? EIO : (int)-res; /* -errno is never below -4095 */
        PyObject *name = r->file != NULL ? PyObject_GetAttr(r->file, st->str_name) : Py_NewRef(Py_None);
        if (name == NULL)
            return -1;
        PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isO", code, strerror(code), name);
        Py_DECREF(name);
        return future_settle(r->future, st->str_set_exception, exc);
    }
    PyObject *result = r->op == OP_READ_NEW ? Py_NewRef(data) : PyLong_FromLongLong(res);
    return future_settle(r->future, st->str_set_result, result);
}

int kernaio_request_fail(kernaio_state *st, RequestObject *r, PyObject *exc)
{
    int waiting = still_waiting(st, r);
    if (waiting <= 0)
        return waiting;
    return future_settle(r->future, st->str_set_exception, Py_NewRef(exc));
}

/* complete(res, data): the kernel finished the request with res, a byte count or -errno;
 * data is what reap handed back with it (the bytes of an OP_READ_NEW, else None). The
 * future gets OSError(errno, strerror, file.name) -- the subclass that errno implies,
 * FileNotFoundError and so on --, the bytes of an OP_READ_NEW, or the byte count. */
static PyObject *Request_complete(RequestObject *r, PyTypeObject *cls, PyObject *const *args,
                                  Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "kernaio: Request.complete(res, data)");
        return NULL;
    }
    long long res = PyLong_AsLongLong(args[0]);
    if (res == -1 && PyErr_Occurred())
        return NULL;
    if (kernaio_request_complete(PyType_GetModuleState(cls), r, res, args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* fail(exc): the request never reached the kernel (closed file, closed loop, io_submit
 * refused it): the future gets exc. */
static PyObject *Request_fail(RequestObject *r, PyTypeObject *cls, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "kernaio: Request.fail(exc)");
        return NULL;
    }
    if (kernaio_request_fail(PyType_GetModuleState(cls), r, args[0]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Request_methods[] = {
    {"complete", (PyCFunction)(void (*)(void))Request_complete, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "complete(res, data): the kernel's answer (a byte count or -errno) to the future"},
    {"fail", (PyCFunction)(void (*)(void))Request_fail, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "fail(exc): it never reached the kernel; the future (unless done) gets exc"},
    /* The coroutine protocol (awaitable.c): what the C engine's File.read returns. */
    {"send", kernaio_request_send_method, METH_O, "send(value): run until the future is yielded or done"},
    {"throw", (PyCFunction)(void (*)(void))kernaio_request_throw, METH_FASTCALL,
     "throw(exc): raise exc where the caller waits (a CancelledError tells the engine)"},
    {"close", kernaio_request_close, METH_NOARGS, "close(): the awaitable is over; the request goes on"},
    {NULL, NULL, 0, NULL},
};

static int Request_traverse(RequestObject *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->future);
    Py_VISIT(r->file);
    Py_VISIT(r->engine);
    return 0;
}

/* The buffer export is not the GC's to drop: a context may still be submitting from it
 * (it holds an export of its own while the kernel does). Only dealloc releases it. */
static int Request_clear(RequestObject *r)
{
    Py_CLEAR(r->future);
    Py_CLEAR(r->file);
    Py_CLEAR(r->engine);
    return 0;
}

static void Request_dealloc(RequestObject *r)
{
    PyTypeObject *tp = Py_TYPE(r);
    PyObject_GC_UnTrack(r);
    (void)Request_clear(r);
    if (r->view.obj != NULL)
        PyBuffer_Release(&r->view);
    tp->tp_free((PyObject *)r);
    Py_DECREF(tp);
}

static PyObject *Request_address(RequestObject *r, void *Py_UNUSED(c))
{
    return r->view.obj != NULL ? PyLong_FromVoidPtr(r->view.buf) : Py_NewRef(Py_None);
}

static PyObject *Request_buffer(RequestObject *r, void *Py_UNUSED(c))
{
    return Py_NewRef(r->view.obj != NULL ? r->view.obj : Py_None);
}

static PyGetSetDef Request_getset[] = {
    {"address", (getter)Request_address, NULL, "where the buffer's memory starts (None: no buffer)", NULL},
    {"buffer", (getter)Request_buffer, NULL, "the caller's buffer object (None: no buffer)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Request_members[] = {
    {"future", T_OBJECT, offsetof(RequestObject, future), 0, "what the caller awaits (set once queued)"},
    {"file", T_OBJECT, offsetof(RequestObject, file), READONLY, "the file (kept alive by the request)"},
    {"op", T_INT, offsetof(RequestObject, op), READONLY, "OP_READ, OP_WRITE, OP_FSYNC or OP_READ_NEW"},
    {"fd", T_INT, offsetof(RequestObject, fd), READONLY, "the file descriptor"},
    {"offset", T_LONGLONG, offsetof(RequestObject, offset), READONLY, "the file offset"},
    {"length", T_PYSSIZET, offsetof(RequestObject, length), READONLY, "bytes to move"},
    {"submitted", T_BOOL, offsetof(RequestObject, submitted), 0, "True once the kernel took it"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Request_slots[] = {
    {Py_tp_doc, "Request(file, op, fd, buffer, offset, size): one request, checked (types, ranges, the "
                "buffer) when it is made; what Context.submit and UringContext.submit take. With the C "
                "engine, also the coroutine its caller awaits (awaitable.c)."},
    {Py_tp_new, Request_new},
    {Py_tp_dealloc, Request_dealloc},
    {Py_tp_traverse, Request_traverse},
    {Py_tp_clear, Request_clear},
    {Py_tp_getset, Request_getset},
    {Py_tp_members, Request_members},
    {Py_tp_methods, Request_methods},
    {Py_am_await, kernaio_request_await},
    {Py_am_send, kernaio_request_send},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, kernaio_request_iternext},
    {0, NULL},
};

static PyType_Spec Request_spec = {
    .name = "kernaio._kernaio.Request",
    .basicsize = sizeof(RequestObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Request_slots,
};

int kernaio_add_request_type(PyObject *module, kernaio_state *st)
{
    if ((st->str_done = PyUnicode_InternFromString("done")) == NULL
        || (st->str_set_result = PyUnicode_InternFromString("set_result")) == NULL
        || (st->str_set_exception = PyUnicode_InternFromString("set_exception")) == NULL
        || (st->str_name = PyUnicode_InternFromString("name")) == NULL)
        return -1;
    return kernaio_add_type(module, &Request_spec, &st->request_type);
}

void kernaio_clear_request_state(kernaio_state *st)
{
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_name);
}
