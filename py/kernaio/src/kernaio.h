/* kernaio.h: what the C files of kernaio._kernaio share (_kernaio.c: the module; aio_context.c: kernel AIO; uring_context.c: io_uring; slots.c: the slot table of both; request.c: the Request type; engine.c, file.c: the C engine). */
#ifndef KERNAIO_H
#define KERNAIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/types.h>

/* What a request asks for: a Request's op. Both context types take the same numbers; the
 * module exports them to Python under the same names. */
enum {
    OP_READ = 0,     /* read into the caller's writable buffer */
    OP_WRITE = 1,    /* write the caller's buffer */
    OP_FSYNC = 2,    /* flush the file's data and metadata (buffer None, length 0) */
    OP_READ_NEW = 3, /* read into memory of the context's own, handed back as bytes */
};

/* The most one read or write moves: the kernel clamps there (MAX_RW_COUNT), and an SQE's
 * length is 32 bits. A Request refuses more. */
#define KERNAIO_MAX_IO 0x7FFFF000LL

/* Module state (multi-phase init: no C globals, one state per module object). */
typedef struct {
    PyTypeObject *context_type;
    PyTypeObject *request_type; /* what submit recognises as a Request (subclasses too) */
    /* The names Request.complete and fail look up on every call, made once (request.c). */
    PyObject *str_done, *str_set_result, *str_set_exception, *str_name;
    /* The C engine (engine.c, file.c): its two types, what it calls in asyncio, the names
     * it looks up per request or per batch (made once), and the running-loop cache. */
    PyTypeObject *uring_type, *engine_type, *file_type;
    PyObject *get_running_loop;   /* asyncio.get_running_loop */
    PyObject *cancelled_error;    /* asyncio.CancelledError */
    PyObject *base_create_future; /* asyncio.BaseEventLoop.create_future: a loop that keeps it makes
                                     asyncio's own Future, which the engine may then make directly */
    PyObject *future_type;        /* asyncio.Future (the C one when _asyncio is there) */
    PyObject *str_call_soon, *str_call_later, *str_create_future, *str_add_reader, *str_result,
        *str_blocking, *str_submit, *str_reap, *str_cancel, *str_fileno, *str_engine_for,
        *str_wake_drain_waiters, *str_loop, *str_running_loop_key;
    PyObject *kw_loop;            /* ("loop",): the keyword of Future(loop=...) */
    PyObject *running_holder;     /* see running_loop() in engine.c: the thread's running-loop */
    PyObject *running_loop;       /* holder and its loop when last asked, both held; NULL: none */
    pid_t running_pid;            /* ... and in which process */
} kernaio_state;

/* The module definition (_kernaio.c), for PyType_GetModuleByDef from a subclass's method. */
extern struct PyModuleDef kernaio_module;

/* What every kernaio_add_*_type does (_kernaio.c): make the heap type of spec for module, keep
 * it in *type (the module state's reference, which traverse and clear own) and add it to module
 * under its name. 0, or -1 with an exception. */
int kernaio_add_type(PyObject *module, PyType_Spec *spec, PyTypeObject **type);

/* ---- The Request type (request.c) -------------------------------------------------------
 * One read, write or fsync, made by the Python side for each call and checked there and
 * then (types, ranges, the buffer exported); submit reads these fields directly, and
 * complete()/fail() resolve its future. */
typedef struct {
    PyObject_HEAD
    PyObject *future;   /* what the caller awaits (the Python side sets it) */
    PyObject *file;     /* the kernaio.File: kept alive while the request exists */
    PyObject *engine;   /* C engine only: the engine it was queued on (NULL until then) */
    Py_buffer view;     /* OP_READ/OP_WRITE: the caller's buffer, exported until the request is
                           freed; view.obj NULL: none (OP_READ_NEW, OP_FSYNC) */
    long long offset;   /* >= 0, and offset + length fits in a file offset */
    Py_ssize_t length;  /* bytes to move: 0..KERNAIO_MAX_IO, never more than the buffer */
    int op;             /* OP_* */
    int fd;
    char submitted;     /* the kernel took it (set by submit itself; io_cancel may find it) */
    char awaited;       /* C engine: AWAIT_NEW, AWAIT_WAITING or AWAIT_DONE (see request.c) */
} RequestObject;

enum { AWAIT_NEW = 0, AWAIT_WAITING = 1, AWAIT_DONE = 2 };

/* Add the type kernaio._kernaio.Request to module and to st, and st's method names. 0, or
 * -1 with an exception. kernaio_clear_request_state releases what it put in st. */
int kernaio_add_request_type(PyObject *module, kernaio_state *st);
void kernaio_clear_request_state(kernaio_state *st);

/* A new Request, checked exactly as Request(file, op, fd, buffer, offset, size) is (buffer
 * NULL: None; size NULL: None). New reference, or NULL with TypeError/ValueError/... */
RequestObject *kernaio_request_make(kernaio_state *st, PyObject *file, int op, int fd, PyObject *buffer,
                                    PyObject *offset, PyObject *size);

/* The two endings (Request.complete and Request.fail), for the C engine: the future gets
 * the result or the exception, unless it is done already or there is none. 0, or -1 with
 * an exception (from the future's own calls). */
int kernaio_request_complete(kernaio_state *st, RequestObject *r, long long res, PyObject *data);
int kernaio_request_fail(kernaio_state *st, RequestObject *r, PyObject *exc);

/* A Request as the coroutine its caller awaits (awaitable.c): Request's am_await, am_send,
 * tp_iternext and its methods send, throw and close. */
PyObject *kernaio_request_await(PyObject *self);
PySendResult kernaio_request_send(PyObject *self, PyObject *arg, PyObject **result);
PyObject *kernaio_request_iternext(PyObject *self);
PyObject *kernaio_request_send_method(PyObject *self, PyObject *arg);
PyObject *kernaio_request_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *kernaio_request_close(PyObject *self, PyObject *ignored);

/* ---- The C engine (engine.c) and the C file (file.c) ----------------------------------------
 * _engine.Engine and File's read/readinto/write, in C: CPython's own pattern (asyncio's
 * futures.py beside _asynciomodule.c). One behaviour, two implementations; the Python one
 * is lab 6's reference and the readable story. Every method runs in the loop's thread. */
typedef struct {
    PyObject_HEAD
    PyObject *loop_ref;      /* weakref.ref(loop): the loop holds the engine (its reader), not back */
    uintptr_t loop_id;       /* id(loop) when made: the cheap "same loop?" of each request */
    PyObject *ctx;           /* the context (a SlotsObject: Context or UringContext) */
    PyObject *backend;       /* "aio" or "io_uring" */
    PyObject *drain_waiters; /* list of futures: File.close()s waiting until drained */
    PyObject *cb_flush, *cb_completions, *cb_after_slice; /* bound methods, made once */
    PyObject *make_future;   /* asyncio's Future type when the loop's create_future is asyncio's
                                own (then called directly); NULL: call loop.create_future() */
    PyObject **queue;        /* requests waiting for a slot, a ring of qcap: qlen from qhead on */
    Py_ssize_t qhead, qlen, qcap;
    long long submit_calls;  /* io_submit (io_uring_enter) calls made */
    int reap_share, reap_min; /* a slice is max(reap_min, in_flight // reap_share): _engine.py's */
    int pid;                 /* the process that made it (its context's) */
    char closed, flush_pending, sqpoll;
} EngineObject;

/* What file.c's FileCore holds: the hot fields of a File (File's Python code sets them
 * through members of the same names). */
typedef struct {
    PyObject_HEAD
    PyObject *name;          /* the path, for errors */
    PyObject *engine_cache;  /* _engine_cache: the engine of the loop last used, or None */
    PyObject *alignment;     /* the Alignment tuple (memory, offset, source), or None */
    long long mem_align;     /* its first two numbers (1 when buffered, or before it is set) */
    long long off_align;
    int fd;                  /* _fd: -1 until opened */
    char closed;             /* _closed: 1 until opened */
    char readable, writable, direct;
} FileCoreObject;

/* Add the types kernaio._kernaio.Engine (engine_type.c) and FileCore (file.c) to module,
 * and what they need in st (asyncio's functions, the names). 0, or -1 with an exception. */
int kernaio_add_engine_types(PyObject *module, kernaio_state *st);
int kernaio_add_file_type(PyObject *module, kernaio_state *st);
int kernaio_traverse_engine_state(kernaio_state *st, visitproc visit, void *arg);
void kernaio_clear_engine_state(kernaio_state *st);

/* engine.c, for engine_type.c: the engine's loop (a new reference, NULL once gone, no
 * exception); its queue (push takes a new reference: 0, or -1 with MemoryError; pop hands
 * the queue's reference over, from a queue that is not empty); and its steps, each 0 or -1
 * with an exception, every request still queued, in the kernel or ended: start (queue r,
 * scheduling the flush if none is), flush, completions (flush, reap a slice, deliver it,
 * schedule _after_slice), resume_later (schedule _on_completions, keeping the exception being
 * raised), wake_drain_waiters. */
PyObject *kernaio_engine_loop(EngineObject *e);
int kernaio_queue_push(EngineObject *e, PyObject *r);
PyObject *kernaio_queue_pop(EngineObject *e);
int kernaio_engine_start(kernaio_state *st, EngineObject *e, PyObject *r);
int kernaio_engine_flush(kernaio_state *st, EngineObject *e);
int kernaio_engine_completions(kernaio_state *st, EngineObject *e);
void kernaio_engine_resume_later(kernaio_state *st, EngineObject *e);
int kernaio_engine_wake_drain_waiters(kernaio_state *st, EngineObject *e);

/* The first step of a C-engine request that is awaited (request.c's send): find the running
 * loop and the file's engine there, make the future, queue it. 0, or -1 with an exception
 * (RuntimeError outside a running loop, ValueError on a closed file, ...). */
int kernaio_engine_begin(kernaio_state *st, RequestObject *r);

/* The caller gave up on r (its task was cancelled): as _engine.Engine.cancel. 0, or -1. */
int kernaio_engine_cancel(kernaio_state *st, EngineObject *e, RequestObject *r);

/* ---- The slot table (slots.c) ----------------------------------------------------------
 * Context (kernel AIO) and UringContext (io_uring) differ only in how a request reaches the
 * kernel (an iocb, an SQE) and how its completion comes back (an io_event, a CQE). The
 * Python side of a request is the same in both and lives in slots.c: the request put
 * into a slot, the caller's buffer pinned (a Py_buffer export) or memory of our own
 * allocated, the token kept for reap, the (token, res, data) result, the free list, the
 * completion eventfd, and the checks "closed?" and "fork()ed child?". A slot's index is what
 * travels through the kernel (aio_data, user_data) and comes back with the completion.
 * Everything here needs the GIL, and is called from the context's methods. */

/* One request the kernel may own. The table never moves (allocated once), so the index of a
 * slot stays valid from submit to reap. */
struct slot {
    PyObject *token;  /* the Request, handed back by reap (strong reference); NULL: free,
                         or cleared by the GC while in flight (reap then hands back None) */
    Py_buffer view;   /* OP_READ/OP_WRITE: the caller's buffer, held until completion; view.obj NULL: none */
    void *mem;        /* OP_READ_NEW: our aligned memory (free()d when the slot is released), else NULL */
    void *addr;       /* where the kernel reads or writes: view.buf or mem; NULL for OP_FSYNC */
    unsigned len;     /* bytes to move: at most the buffer and the kernel's maximum; 0 for OP_FSYNC */
    long long offset; /* file offset, >= 0 */
    int fd;           /* the file */
    int op;           /* OP_* */
};

/* The slots of one context, and what both context types keep alongside them. */
struct slot_table {
    struct slot *slots; /* slots[0..capacity) */
    int *free_list;     /* indexes of free slots: free_list[0..nfree), popped from the end */
    int nfree;          /* free slots: how many requests submit may take now */
    int capacity;       /* slots in the table: the most requests in flight at once */
    int in_flight;      /* slots the kernel owns: submitted, completion not reaped yet */
    int efd;            /* the completion eventfd (non-blocking, close-on-exec); -1: closed */
    int open;           /* the kernel side (AIO context, ring) exists: set by the context once
                           made; cleared by slots_close */
    int busy;           /* a thread is inside a system call on the kernel side, GIL released, and
                           no other may use it meanwhile: set only by UringContext (a ring has
                           one submitter and one reaper); AIO's calls are safe from any thread */
    pid_t pid;          /* the process that made the context: a fork()ed child must not use it */
    const char *what;   /* "AIO context" or "io_uring context": named in error messages */
    PyTypeObject *request_type; /* the module's Request type (a strong reference) */
    PyObject *done;     /* completions the kernel handed over that the caller has not taken yet:
                           a list of (token, res, data); reap returns it, the caller deletes what
                           it delivered. Kept here, not in a list per call: the kernel hands a
                           completion over once, and an exception (KeyboardInterrupt) between
                           reap and the caller's delivery must not lose it. */
};

/* How both context objects begin: the object header, then the table. Each context type's
 * struct has a SlotsObject as its FIRST member, so a pointer to the object is a pointer to
 * this, and the shared type slots below (traverse, clear, getters, fileno) work on both. */
typedef struct {
    PyObject_HEAD
    struct slot_table table;
} SlotsObject;

/* The requests of one submit call, parsed into slots before any reaches the kernel. */
struct slot_batch {
    PyObject *seq;      /* the requests as a list or tuple (PySequence_Fast): a strong reference */
    int *slot;          /* slot[k]: the slot that holds request k, for k < n */
    Py_ssize_t n;       /* requests prepared: the first n, never more than the free slots */
};

/* Remember this process's pid, and again in every fork()ed child (pthread_atfork). Called
 * by the module's Py_mod_exec, before any context exists; later calls do nothing. */
void slots_watch_forks(void);

/* tp_new of both context types (made from the module: PyType_FromModuleAndSpec): parse
 * (capacity) with format (e.g. "|i:Context"), check it is in 1..max_capacity (ValueError),
 * allocate the object and its table (all slots free) and the completion eventfd. The kernel side is the caller's to make; it sets table.open
 * once it has. New reference, or NULL with an exception (MemoryError, OSError). */
PyObject *slots_new(PyTypeObject *type, PyObject *args, PyObject *kwds, const char *format,
                    int max_capacity, const char *what);

/* This process's pid, as remembered (refreshed in a fork()ed child before any Python code runs). */
pid_t slots_this_process(void);

/* 1 in a fork()ed child of the process that made the context: then the kernel side is the
 * parent's, and the child must neither use it nor wait for its requests. Else 0. */
int slots_forked(const struct slot_table *t);

/* 0 if the context may be used now: open, made by this process, not busy in another thread;
 * else -1 with ValueError (closed) or RuntimeError (a fork()ed child holding its parent's
 * context, or another thread inside a call on it). Every method that reaches the kernel
 * starts with it. */
int slots_check(const struct slot_table *t);

/* Put requests (a sequence of Requests, each checked when it was made, each its own token)
 * into free slots: the first ones, at most as many as are free. Each prepared slot holds a
 * new reference to its Request and, for OP_READ/OP_WRITE, an export of the buffer (writable
 * for a read), for OP_READ_NEW aligned memory of its own; addr/len/offset/fd/op say what the
 * kernel must do. 0 with *b filled (b->n may be 0), or -1 with TypeError (not a Request),
 * ValueError (submitted already), BufferError or MemoryError, and nothing taken. The caller
 * must end the batch with slots_batch_end. */
int slots_batch_begin(struct slot_table *t, PyObject *requests, struct slot_batch *b);

/* End a batch: the kernel took its first took requests (they are now in flight); the others
 * (all of them after an error) go back to free slots, their references released. */
void slots_batch_end(struct slot_table *t, struct slot_batch *b, Py_ssize_t took);

/* How both contexts' reap(limit=0) begins, and what it returns. reap hands back the context's
 * own list of completions (token, res, data) not taken yet: the same list every call, so the
 * caller deletes what it delivered, and what it did not is still there next time. It holds at
 * most limit (0: no limit) when reap returns; when it holds exactly limit, more may be left in
 * the kernel with the eventfd already drained: the caller must call reap again (kernaio's
 * engine does, one loop iteration later).
 * This parses limit, runs slots_check, sets *wanted = limit (PY_SSIZE_T_MAX for 0), drains
 * the eventfd (GIL released: it turns readable again only for completions that come after
 * this call) and returns that list (a new reference to t->done) for reap to append to. NULL
 * with TypeError, ValueError (a negative limit, a closed context), RuntimeError (slots_check)
 * or OSError (the eventfd's read). */
PyObject *slots_reap_begin(struct slot_table *t, PyObject *args, Py_ssize_t *wanted);

/* The kernel has finished slot i with result res (a byte count, or -errno). The slot leaves
 * in_flight and is released (buffer, memory, token), and (token or None, res, data) is
 * appended to list, data = the bytes read for a successful OP_READ_NEW, else None. With list
 * NULL (an earlier completion of the same batch failed) only the slot is released. 0, or -1
 * with MemoryError: the slot is released either way. */
int slots_finish(struct slot_table *t, int i, long long res, PyObject *list);

/* The index of the slot that holds token (the kernel owns it), or -1 if none does. */
int slots_find(const struct slot_table *t, PyObject *token);

/* in_flight_for(file) -> how many Requests of file the kernel holds (File.close waits for
 * them). A method of both context types; 0 once the context is closed. */
PyObject *slots_in_flight_for(PyObject *self, PyObject *file);

/* The kernel owns nothing any more (its side is destroyed, or is the parent's): release
 * every slot, in_flight = 0, open = 0, close the eventfd. Idempotent. */
void slots_close(struct slot_table *t);

/* Free the table's memory: in tp_dealloc, after slots_close. */
void slots_free(struct slot_table *t);

/* Type slots shared by both context types (self is a SlotsObject). GC: the tokens are the
 * only references that can form cycles (token -> file -> ... -> context). The buffers are
 * deliberately NOT visited nor cleared: the kernel may be writing into them, so they live
 * until the completion, or until the context's close has waited for it. */
int slots_traverse(PyObject *self, visitproc visit, void *arg);
int slots_clear(PyObject *self);
/* fileno() -> the eventfd to watch for readability (loop.add_reader); ValueError if closed. */
PyObject *slots_fileno(PyObject *self, PyObject *ignored);
/* The properties free, in_flight, closed and pid. */
extern PyGetSetDef slots_getset[];

/* What both context types' tables spell out the same: the methods that are the slot table's
 * alone (in their PyMethodDef table), and its type slots (in their PyType_Slot array). */
#define SLOTS_METHODS \
    {"fileno", slots_fileno, METH_NOARGS, "fileno() -> the completion eventfd"}, \
    {"in_flight_for", slots_in_flight_for, METH_O, "in_flight_for(file) -> how many Requests of file the kernel holds"}
#define SLOTS_TYPE_SLOTS \
    {Py_tp_traverse, slots_traverse}, \
    {Py_tp_clear, slots_clear}, \
    {Py_tp_getset, slots_getset}

/* Add the type kernaio._kernaio.Context (aio_context.c) or UringContext (uring_context.c) to
 * module and to st: called once by the module's Py_mod_exec, with the GIL, after the Request
 * type. 0, or -1 with an exception set. */
int kernaio_add_context_type(PyObject *module, kernaio_state *st);
int kernaio_add_uring_type(PyObject *module, kernaio_state *st);

#endif
