/* tp: a thread pool — blocking jobs run on worker threads, their completions come back on the reactor's thread. */
#ifndef TP_H
#define TP_H

/*
 * What aiofiles, asyncio.to_thread, loop.run_in_executor and libuv's uv_fs_read all
 * do with a file read, in one picture:
 *
 *     loop thread (rx_run)                              worker threads (N of them)
 *
 *     tp_submit(pool, work, done, arg) ──► job queue ──► work(arg)   a blocking pread:
 *                                                          │          fine, only this
 *                                                          ▼          worker waits
 *     done(arg, status)  ◄── on the eventfd ◄────────── done queue
 *     (a callback on the loop,   (one write wakes the      (the finished job)
 *      like any other)            loop's epoll_wait)
 *
 * From the loop's side a read "looks asynchronous": submit, go on serving sockets,
 * get a callback later. Underneath it is an ordinary blocking read on another thread.
 * The talk: "Looks asynchronous! Except... it's not!"
 *
 * The two queues, their locks and the eventfd are the whole design (libuv's threadpool
 * has the same shape):
 *   - a worker takes a job from the job queue and runs it WITHOUT holding any lock, so
 *     N workers run N jobs at once;
 *   - a finished job goes on the done queue, and the worker writes the eventfd only if
 *     that queue was empty: a hundred jobs that finish while the loop is busy cost one
 *     write and one wake-up (coalescing);
 *   - the loop, woken by the eventfd (registered with rx_add(..., RX_READABLE, ...)),
 *     takes the WHOLE done queue in one step and runs the done callbacks with no lock
 *     held, so a callback may submit or cancel jobs.
 *
 * Threads: tp_create, tp_submit, tp_cancel and tp_destroy are called on the loop thread
 * (the one that runs the reactor). Work functions run on workers; done callbacks run on
 * the loop thread, never inside tp_submit or tp_cancel.
 *
 * Errors: functions return >= 0 on success or -errno, like rx_*; print them with
 * strerror(-ret).
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../reactor/rx.h"

#define TP_MAX_WORKERS 128 /* tp_create refuses more: a pool is a few threads, not a thread per job */

/* The blocking part of a job; runs on a worker thread with no lock held. It may block
 * as long as it likes (that is the point), but only its own worker waits. It reports
 * its result through arg (e.g. "bytes read or -errno" in a struct you own). */
typedef void tp_work_fn(void *arg);

/* The job is over; runs on the loop thread, exactly once per submitted job.
 * status: 0 when work(arg) ran (its result is in arg), -ECANCELED when it never ran
 * (tp_cancel, or tp_destroy with the job still queued). What work wrote into arg is
 * visible here: the done queue's lock orders the two threads' memory. */
typedef void tp_done_fn(void *arg, int status);

/* One submitted job. It is in exactly one place at a time: the job queue, a worker's
 * hands, the done queue, or the loop's hands while its done callback runs. */
struct tp_job {
    int64_t id;          /* > 0, what tp_submit returned; unique for the life of the pool */
    tp_work_fn *work;    /* what the worker runs */
    tp_done_fn *done;    /* what the loop runs afterwards */
    void *arg;           /* handed to both untouched; the pool never frees it */
    int status;          /* for done: 0 (work ran) or -ECANCELED (it never will) */
    struct tp_job *next; /* the next job in whichever queue holds this one; NULL at the end */
};

/* A FIFO of jobs: push at the tail, pop at the head. Not locked: whoever touches a
 * queue holds that queue's lock (see struct tp). */
struct tp_queue {
    struct tp_job *head; /* the oldest job, popped first; NULL when empty */
    struct tp_job *tail; /* the newest job; meaningless when head is NULL */
};

/* Append job at the tail of q. */
static inline void tp_queue_push(struct tp_queue *q, struct tp_job *job)
{
    job->next = NULL;
    if (q->head == NULL)
        q->head = job;
    else
        q->tail->next = job;
    q->tail = job;
}

/* Take the job at the head of q; NULL when q is empty. */
static inline struct tp_job *tp_queue_pop(struct tp_queue *q)
{
    struct tp_job *job = q->head;
    if (job != NULL) {
        q->head = job->next;
        job->next = NULL;
    }
    return job;
}

struct tp;

/* One worker thread. */
struct tp_worker {
    struct tp *pool;        /* the pool it serves */
    pthread_t thread;       /* for pthread_join in tp_destroy */
    int index;              /* 0 .. nworkers-1; the thread is named "tp-worker-INDEX" */
    struct tp_job *current; /* the job it runs now, NULL when idle; guarded by pool->lock
                               (tp_cancel looks here to answer -EBUSY) */
};

/* The pool. Use the functions below rather than the fields; the fields are here so that
 * you can see (and the debugger can show) the whole state. Which lock guards what is
 * the heart of the design: tp.c's first comment gives the rules. */
struct tp {
    struct rx *rx;              /* the reactor the eventfd is registered in */
    int efd;                    /* eventfd(EFD_CLOEXEC | EFD_NONBLOCK): workers -> loop; -1 before tp_create made it */
    int nworkers;               /* how many worker threads were started (and must be joined) */
    struct tp_worker *workers;  /* nworkers of them, in an array sized at tp_create */

    pthread_mutex_t lock;       /* guards: jobs, workers[].current, stopping, next_id */
    pthread_cond_t work_ready;  /* idle workers sleep here (with lock); signalled for a new job or stop */
    struct tp_queue jobs;       /* submitted, not started yet */
    bool stopping;              /* tp_destroy has begun: workers exit, tp_submit refuses */
    int64_t next_id;            /* the id the next tp_submit hands out (starts at 1) */

    pthread_mutex_t done_lock;  /* guards: done, and the eventfd's counter (see tp.c) */
    struct tp_queue done;       /* finished or cancelled, done callback not called yet */
};

/* Create a pool of nworkers threads whose completions wake rx: make the eventfd,
 * register it in rx (RX_READABLE), start the workers. Stores the pool in *out and
 * returns 0, or -EINVAL (nworkers < 1 or > TP_MAX_WORKERS), -ENOMEM, -EMFILE, an error
 * of rx_add, or of pthread_create (-EAGAIN: the system is out of threads); on error
 * nothing is left behind (threads already started are stopped). Loop thread only. The
 * caller owns the pool and frees it with tp_destroy before rx_destroy. */
int tp_create(struct tp **out, struct rx *rx, int nworkers);

/* Queue a job: work(arg) will run on a worker, then done(arg, status) on the loop
 * thread, exactly once, whatever happens (even tp_destroy). Returns the job's id (> 0)
 * at once, or -EINVAL (work or done NULL), -ENOMEM, -ESHUTDOWN (tp_destroy is under
 * way: a done callback tried to submit more). Loop thread only, callbacks included. */
int64_t tp_submit(struct tp *pool, tp_work_fn *work, tp_done_fn *done, void *arg);

/* Cancel the job `id` if it has not started: it will never run, and its done callback
 * is called with -ECANCELED on the loop thread (on a later round, never inside
 * tp_cancel). Returns 0, or -EBUSY (a worker is running it: nothing can interrupt a
 * blocking read, its done callback will come with status 0), -ENOENT (no such job is
 * waiting or running: it finished already, or never existed). Loop thread only.
 * Cost: a walk of the job queue (fine for a lab; libuv keeps the queue node in the
 * request and unlinks it in O(1)). */
int tp_cancel(struct tp *pool, int64_t id);

/* Shut the pool down, even with jobs pending: the queued ones are cancelled, the running
 * ones finish (it waits for them), the workers are joined; then every job whose done
 * callback has not run yet gets it now, on this thread (status 0 if its work ran,
 * -ECANCELED if not), the eventfd leaves the reactor and is closed, everything is
 * freed. Done callbacks called from here cannot submit (-ESHUTDOWN). Loop thread only,
 * never from a done callback. NULL is allowed. */
void tp_destroy(struct tp *pool);

#endif
