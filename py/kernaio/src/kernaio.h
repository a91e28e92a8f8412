/* kernaio.h: what the two C files of kernaio._kernaio share (_kernaio.c: kernel AIO; uring_context.c: io_uring). */
#ifndef KERNAIO_H
#define KERNAIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* What a request asks for: the second field of a request tuple (token, op, fd, buffer,
 * offset, length). Both context types take the same numbers; the module exports them to
 * Python under the same names. */
enum {
    OP_READ = 0,     /* read into the caller's writable buffer */
    OP_WRITE = 1,    /* write the caller's buffer */
    OP_FSYNC = 2,    /* flush the file's data and metadata (buffer None, length 0) */
    OP_READ_NEW = 3, /* read into memory of the context's own, handed back as bytes */
};

/* Add the type kernaio._kernaio.UringContext (uring_context.c) to module: called once by
 * the module's Py_mod_exec, with the GIL. 0, or -1 with an exception set. The module's dict
 * holds the type; instances hold their type; nothing else needs to. */
int kernaio_add_uring_type(PyObject *module);

#endif
