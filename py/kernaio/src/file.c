/* file.c: kernaio._kernaio.FileCore — the C engine's File.read, readinto and write: a checked Request, returned to be awaited. */
#include "kernaio.h"

#include <stddef.h> /* offsetof */
#include <structmember.h>

/* _file.CFile is File with this type first among its bases: File's Python code (open,
 * close, the modes, the errors) sets the fields below through members of the same names,
 * and these three methods take the place of File's coroutines. Each does, in one C call,
 * what File.read and File._submit do before they wait: the checks (open? readable? the
 * Request's types and ranges, O_DIRECT alignment), then it returns the Request, which is
 * the coroutine the caller awaits (awaitable.c) and is queued when first awaited.
 *
 * Anything out of the ordinary -- an argument by an unexpected keyword, a check that
 * fails, a zero length, a write whose memory must first be copied into aligned memory --
 * is File's own Python method's to handle: the call goes to it (super(FileCore, self)),
 * which raises the same errors, at the same moment (when awaited), with the same words.
 * So the checks here only say yes or no; the messages live in one place, _file.py. */

static PyObject *FileCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    FileCoreObject *f = (FileCoreObject *)type->tp_alloc(type, 0);
    if (f == NULL)
        return NULL;
    f->fd = -1;
    f->closed = 1; /* until File.__init__ has the fd: __del__ after a failed open closes nothing */
    f->mem_align = f->off_align = 1;
    f->name = Py_NewRef(Py_None);
    f->engine_cache = Py_NewRef(Py_None);
    f->alignment = Py_NewRef(Py_None);
    return (PyObject *)f;
}

static int FileCore_traverse(FileCoreObject *f, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(f));
    Py_VISIT(f->name);
    Py_VISIT(f->engine_cache);
    Py_VISIT(f->alignment);
    return 0;
}

static int FileCore_clear(FileCoreObject *f)
{
    Py_CLEAR(f->name);
    Py_CLEAR(f->engine_cache);
    Py_CLEAR(f->alignment);
    return 0;
}

static void FileCore_dealloc(FileCoreObject *f)
{
    PyTypeObject *tp = Py_TYPE(f);
    PyObject_GC_UnTrack(f);
    (void)FileCore_clear(f);
    tp->tp_free((PyObject *)f);
    Py_DECREF(tp);
}

/* The Python implementation of the same method: super(FileCore, self).name(*args, **kw). */
static PyObject *in_python(PyTypeObject *core, PyObject *self, const char *name, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *super = PyObject_CallFunctionObjArgs((PyObject *)&PySuper_Type, (PyObject *)core, self, NULL);
    PyObject *method = super != NULL ? PyObject_GetAttrString(super, name) : NULL;
    Py_XDECREF(super);
    if (method == NULL)
        return NULL;
    PyObject *result = PyObject_Vectorcall(method, args, (size_t)nargs, kwnames);
    Py_DECREF(method);
    return result;
}

/* The two arguments of (size|buffer|data, offset=0), positional or offset= alone. 0 with
 * *first and *offset set (borrowed; *offset NULL: the default, 0), or 1: anything else
 * (File's method will say what). */
static int two_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **first, PyObject **offset)
{
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 1 || nargs + nkw > 2)
        return 1;
    if (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "offset") != 0)
        return 1;
    *first = args[0];
    *offset = nargs + nkw == 2 ? args[1] : NULL;
    return 0;
}

/* A request of f for op, checked, that may go to the engine as it is; NULL (no exception
 * set, unless it is one to pass on, such as KeyboardInterrupt from an __index__) when File's
 * Python method must take the call. */
static PyObject *fast_request(kernaio_state *st, FileCoreObject *f, int op, PyObject *buffer, PyObject *offset,
                              PyObject *size)
{
    if (f->closed || !(op == OP_WRITE ? f->writable : f->readable))
        return NULL;
    RequestObject *r = kernaio_request_make(st, (PyObject *)f, op, f->fd, buffer, offset, size);
    if (r == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception))
            PyErr_Clear(); /* File's method raises it again, when awaited */
        return NULL;
    }
    int fits = r->length > 0;
    if (fits && f->direct) {
        uintptr_t address = r->view.obj != NULL ? (uintptr_t)r->view.buf : 0; /* 0: kernaio's own memory */
        fits = address % (uintptr_t)f->mem_align == 0 && r->offset % f->off_align == 0
            && r->length % f->off_align == 0;
    }
    if (!fits) {
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

/* The method itself: a fast request, or File's Python method. */
static PyObject *read_or_write(PyTypeObject *core, PyObject *self, const char *name, int op,
                               PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *first, *offset;
    if (two_args(args, nargs, kwnames, &first, &offset) == 0) {
        kernaio_state *st = PyType_GetModuleState(core);
        PyObject *zero = offset == NULL ? PyLong_FromLong(0) : NULL;
        if (offset == NULL && zero == NULL)
            return NULL;
        offset = offset != NULL ? offset : zero;
        PyObject *r = op == OP_READ_NEW ? fast_request(st, (FileCoreObject *)self, op, NULL, offset, first)
                                        : fast_request(st, (FileCoreObject *)self, op, first, offset, NULL);
        Py_XDECREF(zero);
        if (r != NULL || PyErr_Occurred())
            return r;
    }
    return in_python(core, self, name, args, nargs, kwnames);
}

static PyObject *FileCore_read(PyObject *self, PyTypeObject *core, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return read_or_write(core, self, "read", OP_READ_NEW, args, nargs, kwnames);
}

static PyObject *FileCore_readinto(PyObject *self, PyTypeObject *core, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    return read_or_write(core, self, "readinto", OP_READ, args, nargs, kwnames);
}

static PyObject *FileCore_write(PyObject *self, PyTypeObject *core, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    return read_or_write(core, self, "write", OP_WRITE, args, nargs, kwnames);
}

#define FAST (METH_METHOD | METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef FileCore_methods[] = {
    {"read", (PyCFunction)(void (*)(void))FileCore_read, FAST, "read(size, offset=0): await it for the bytes"},
    {"readinto", (PyCFunction)(void (*)(void))FileCore_readinto, FAST,
     "readinto(buffer, offset=0): await it for the count"},
    {"write", (PyCFunction)(void (*)(void))FileCore_write, FAST, "write(data, offset=0): await it for the count"},
    {NULL, NULL, 0, NULL},
};

/* alignment: File sets the Alignment tuple once; its two numbers are kept as C integers. */
static PyObject *FileCore_get_alignment(FileCoreObject *f, void *Py_UNUSED(c))
{
    return Py_NewRef(f->alignment);
}

static int FileCore_set_alignment(FileCoreObject *f, PyObject *value, void *Py_UNUSED(c))
{
    long long mem, off;
    if (value == NULL || !PyTuple_Check(value) || PyTuple_GET_SIZE(value) < 2) {
        PyErr_SetString(PyExc_TypeError, "kernaio: alignment is a tuple (memory, offset, source)");
        return -1;
    }
    mem = PyLong_AsLongLong(PyTuple_GET_ITEM(value, 0));
    off = PyLong_AsLongLong(PyTuple_GET_ITEM(value, 1));
    if ((mem == -1 || off == -1) && PyErr_Occurred())
        return -1;
    if (mem < 1 || off < 1) {
        PyErr_SetString(PyExc_ValueError, "kernaio: alignments are >= 1");
        return -1;
    }
    f->mem_align = mem;
    f->off_align = off;
    Py_SETREF(f->alignment, Py_NewRef(value));
    return 0;
}

static PyGetSetDef FileCore_getset[] = {
    {"alignment", (getter)FileCore_get_alignment, (setter)FileCore_set_alignment,
     "what O_DIRECT needs here: Alignment(memory, offset, source)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef FileCore_members[] = {
    {"name", T_OBJECT, offsetof(FileCoreObject, name), 0, "the path"},
    {"_engine_cache", T_OBJECT, offsetof(FileCoreObject, engine_cache), 0, "the engine of the loop last used"},
    {"_fd", T_INT, offsetof(FileCoreObject, fd), 0, "the file descriptor"},
    {"_closed", T_BOOL, offsetof(FileCoreObject, closed), 0, "True until opened, and once closed"},
    {"readable", T_BOOL, offsetof(FileCoreObject, readable), 0, "opened for reading"},
    {"writable", T_BOOL, offsetof(FileCoreObject, writable), 0, "opened for writing"},
    {"direct", T_BOOL, offsetof(FileCoreObject, direct), 0, "opened with O_DIRECT"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot FileCore_slots[] = {
    {Py_tp_doc, "FileCore: the C engine's read, readinto and write, and the fields they read (the base of "
                "kernaio._file.CFile; see src/file.c)."},
    {Py_tp_new, FileCore_new},
    {Py_tp_dealloc, FileCore_dealloc},
    {Py_tp_traverse, FileCore_traverse},
    {Py_tp_clear, FileCore_clear},
    {Py_tp_methods, FileCore_methods},
    {Py_tp_members, FileCore_members},
    {Py_tp_getset, FileCore_getset},
    {0, NULL},
};

static PyType_Spec FileCore_spec = {
    .name = "kernaio._kernaio.FileCore",
    .basicsize = sizeof(FileCoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = FileCore_slots,
};

int kernaio_add_file_type(PyObject *module, kernaio_state *st)
{
    return kernaio_add_type(module, &FileCore_spec, &st->file_type);
}
