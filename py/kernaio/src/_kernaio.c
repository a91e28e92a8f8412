/* _kernaio: the module kernaio._kernaio — its init (the types the other files define, the OP_* constants) and alignment(fd).
 * The backends live beside it: aio_context.c (Context: kernel AIO), uring_context.c (UringContext: io_uring). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "kernaio.h" /* the OP_* enum, the module state, and each file's kernaio_add_*_type */

#include <errno.h>
#include <fcntl.h>    /* AT_EMPTY_PATH */
#include <string.h>
#include <sys/stat.h> /* statx */

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

int kernaio_add_type(PyObject *module, PyType_Spec *spec, PyTypeObject **type)
{
    *type = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (*type == NULL)
        return -1;
    return PyModule_AddType(module, *type);
}

/* Py_mod_exec: create this module object's heap types (each file adds its own) and add the constants. */
static int kernaio_exec(PyObject *module)
{
    kernaio_state *st = PyModule_GetState(module);
    slots_watch_forks();
    if (kernaio_add_request_type(module, st) < 0) /* first: the contexts look it up when made */
        return -1;
    if (kernaio_add_context_type(module, st) < 0) /* Context: the kernel AIO backend */
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
