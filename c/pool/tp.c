/* tp: the thread pool — a job queue, N workers, a done queue, and one eventfd into the reactor. */
#include "tp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*
 * The rules. Read them before changing anything; every function below keeps them.
 *
 *   pool->lock       guards the job queue, workers[].current, stopping, next_id.
 *                    Idle workers sleep on pool->work_ready, which releases it.
 *   pool->done_lock  guards the done queue AND the eventfd's counter: both are only
 *                    changed (written, read back) with it held.
 *
 *   1. No work function and no done callback ever runs with a lock held. A lock is
 *      held for a few pointer moves (and one 8-byte eventfd write or read), never for
 *      a job: a worker that held pool->lock through a 10 ms pread would make every
 *      other worker, and tp_submit on the loop, wait for it.
 *   2. Lock order: a thread holds at most ONE of the two locks at any moment. With no
 *      thread ever waiting for one lock while holding the other, no two threads can
 *      wait for each other: no deadlock. (If you ever need both, take pool->lock
 *      first, the way a job travels: queued, then done.) A job taken off one queue
 *      belongs to the thread that took it until it puts it on the next, so nothing
 *      needs both at once.
 *   3. The eventfd's counter is 1 exactly when the done queue is not empty. The
 *      worker that makes the queue non-empty writes 1; the loop reads it back to 0
 *      in the same critical section that empties the queue. So a burst of jobs that
 *      finish while the loop is busy costs one write and one wake-up (coalescing),
 *      and no completion can sit in the queue with nobody woken to take it.
 */

/* Hand a job back to its owner: call its done callback with its status, then free it.
 * On the loop thread (or in tp_destroy once the workers are gone), with NO lock held
 * (rule 1): the callback may call tp_submit or tp_cancel, which take pool->lock. */
static void finish_job(struct tp_job *job)
{
    job->done(job->arg, job->status);
    free(job);
}

/* BEGIN SOLUTION lab3
 * TODO: static void post_done(struct tp *pool, struct tp_job *job): put a finished (or
 *       cancelled) job on the done queue and wake the loop; called on any thread.
 *       Under pool->done_lock: note whether the done queue is empty, push the job, and
 *       only if it WAS empty write the 8-byte value 1 to pool->efd (retry EINTR). A
 *       queue that already had jobs in it has already woken the loop, which has not
 *       taken them yet: writing again would only cost a syscall (rule 3, coalescing).
 *       Write while holding done_lock, so that the loop cannot empty the queue between
 *       your "was it empty?" and your write.
 */
static void post_done(struct tp *pool, struct tp_job *job)
{
    pthread_mutex_lock(&pool->done_lock);
    bool was_empty = pool->done.head == NULL;
    tp_queue_push(&pool->done, job);
    if (was_empty) {
        uint64_t one = 1;
        /* Cannot fail with EAGAIN: the counter is 0 here (rule 3), far from its maximum. */
        while (write(pool->efd, &one, sizeof(one)) < 0 && errno == EINTR)
            continue;
    }
    pthread_mutex_unlock(&pool->done_lock);
}
/* END SOLUTION */

/* What each worker thread runs, from tp_create until tp_destroy stops it. arg: its
 * struct tp_worker. */
static void *worker_main(void *arg)
{
    struct tp_worker *self = arg;
    struct tp *pool = self->pool;
    /* BEGIN SOLUTION lab3
     * TODO: Loop until the pool is stopping. Under pool->lock: while the job queue is
     *       empty and nobody asked us to stop, pthread_cond_wait on pool->work_ready (it
     *       releases the lock while we sleep, and takes it back before it returns; always
     *       in a while loop: a wake-up does not promise a job). Stopping: return
     *       (tp_destroy deals with the jobs still queued). Else pop a job, note it in
     *       self->current (so that tp_cancel answers -EBUSY), unlock, and run
     *       job->work(job->arg) with NO lock held (rule 1: the other workers take jobs
     *       meanwhile). Then, under pool->lock, clear self->current; unlock; set the job's
     *       status to 0 and post_done() it. Clear current BEFORE posting: once posted, the
     *       loop may free the job at any moment.
     * STUB: (void)pool;
     * STUB: return NULL;
     */
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->jobs.head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->work_ready, &pool->lock);
        if (pool->stopping)
            break;
        struct tp_job *job = tp_queue_pop(&pool->jobs);
        self->current = job;
        pthread_mutex_unlock(&pool->lock);

        job->work(job->arg); /* the blocking part: only this thread waits */

        pthread_mutex_lock(&pool->lock);
        self->current = NULL;
        pthread_mutex_unlock(&pool->lock); /* rule 2: release it before done_lock */
        job->status = 0;
        post_done(pool, job); /* from here on the job belongs to the loop thread */
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
    /* END SOLUTION */
}

/* BEGIN SOLUTION lab3
 * TODO: static void on_wakeup(struct rx *rx, int fd, unsigned events, void *arg): the
 *       reactor's callback for the eventfd (an rx_io_cb; arg is the pool), on the loop
 *       thread. Under pool->done_lock: read the eventfd's 8-byte counter (back to 0;
 *       retry EINTR; EAGAIN would only mean "nothing to do"), and take the WHOLE done
 *       queue in one step (copy the struct, set the pool's queue to empty). Unlock, then
 *       finish_job() each job of your copy, oldest first, with no lock held (rule 1: a
 *       done callback may call tp_submit, which takes pool->lock). Reading the counter
 *       and emptying the queue under the same lock keeps rule 3.
 */
static void on_wakeup(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct tp *pool = arg;
    (void)rx;
    (void)events;
    uint64_t count;
    pthread_mutex_lock(&pool->done_lock);
    while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR)
        continue;
    struct tp_queue batch = pool->done;
    pool->done.head = pool->done.tail = NULL;
    pthread_mutex_unlock(&pool->done_lock);

    struct tp_job *job;
    while ((job = tp_queue_pop(&batch)) != NULL)
        finish_job(job);
}
/* END SOLUTION */

int tp_create(struct tp **out, struct rx *rx, int nworkers)
{
    if (nworkers < 1 || nworkers > TP_MAX_WORKERS)
        return -EINVAL;
    struct tp *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return -ENOMEM;
    pool->workers = calloc((size_t)nworkers, sizeof(*pool->workers));
    if (pool->workers == NULL) {
        free(pool);
        return -ENOMEM;
    }
    pool->rx = rx;
    pool->efd = -1;
    pool->next_id = 1;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work_ready, NULL);
    pthread_mutex_init(&pool->done_lock, NULL);

    int ret;
    /* BEGIN SOLUTION lab3
     * TODO: The line from the workers to the loop: an eventfd, close-on-exec and
     *       non-blocking (the loop must never block reading it), stored in pool->efd;
     *       -errno if that fails. Then register it in the reactor for RX_READABLE with
     *       on_wakeup as the callback and the pool as its argument; rx_add's error is the
     *       answer if it fails. (On a failure, `goto out`: it undoes everything.)
     * STUB: ret = -ENOSYS;
     * STUB: goto out;
     */
    pool->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pool->efd < 0) {
        ret = -errno;
        goto out;
    }
    ret = rx_add(rx, pool->efd, RX_READABLE, on_wakeup, pool);
    if (ret < 0)
        goto out;
    /* END SOLUTION */

    for (int i = 0; i < nworkers; i++) {
        struct tp_worker *w = &pool->workers[i];
        w->pool = pool;
        w->index = i;
        int err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) { /* pthread functions return the error number, not -1 + errno */
            ret = -err;
            goto out;
        }
        pool->nworkers++; /* started: tp_destroy joins exactly these */
        char name[32];    /* what /proc/PID/task/TID/comm and `top -H` show (15 chars at most) */
        snprintf(name, sizeof(name), "tp-worker-%d", i);
        pthread_setname_np(w->thread, name);
    }
    *out = pool;
    return 0;
out:
    tp_destroy(pool); /* stops the workers started so far, closes the eventfd, frees */
    return ret;
}

int64_t tp_submit(struct tp *pool, tp_work_fn *work, tp_done_fn *done, void *arg)
{
    if (work == NULL || done == NULL)
        return -EINVAL;
    struct tp_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return -ENOMEM;
    job->work = work;
    job->done = done;
    job->arg = arg;
    /* BEGIN SOLUTION lab3
     * TODO: Under pool->lock: once pool->stopping is set, free the job and return
     *       -ESHUTDOWN (tp_destroy is delivering the last callbacks and no worker is left
     *       to run it). Otherwise give the job the next id (pool->next_id++), push it on the
     *       job queue and wake ONE sleeping worker with pthread_cond_signal (one job needs
     *       one worker; a busy worker will find it when it looks at the queue again).
     *       Unlock and return the id, read while you held the lock: after the unlock a
     *       worker may run the job at once, and it is no longer yours to read.
     * STUB: (void)pool;
     * STUB: free(job);
     * STUB: return -ENOSYS;
     */
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        free(job);
        return -ESHUTDOWN;
    }
    int64_t id = job->id = pool->next_id++;
    tp_queue_push(&pool->jobs, job);
    pthread_cond_signal(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    return id;
    /* END SOLUTION */
}

int tp_cancel(struct tp *pool, int64_t id)
{
    /* BEGIN SOLUTION lab3
     * TODO: Under pool->lock, look for the job in the job queue (walk it keeping the
     *       previous job, to unlink it from the middle; mind the tail when it is the last
     *       one). Found: unlink it, unlock, set its status to -ECANCELED and post_done()
     *       it, so that its done callback runs on the loop's next round like any other
     *       completion (never from inside tp_cancel: the caller may hold state the callback
     *       also touches); return 0. Not queued: if a worker's `current` has this id,
     *       -EBUSY (it runs; a blocking read cannot be interrupted), else -ENOENT. Unlock
     *       before you return, whatever the answer.
     * STUB: (void)pool;
     * STUB: (void)id;
     * STUB: return -ENOSYS;
     */
    struct tp_job *found = NULL;
    int ret = -ENOENT;
    pthread_mutex_lock(&pool->lock);
    struct tp_job *prev = NULL;
    for (struct tp_job *job = pool->jobs.head; job != NULL; prev = job, job = job->next) {
        if (job->id != id)
            continue;
        if (prev == NULL)
            pool->jobs.head = job->next;
        else
            prev->next = job->next;
        if (pool->jobs.tail == job)
            pool->jobs.tail = prev;
        job->next = NULL;
        found = job;
        break;
    }
    for (int i = 0; found == NULL && i < pool->nworkers; i++) {
        if (pool->workers[i].current != NULL && pool->workers[i].current->id == id)
            ret = -EBUSY;
    }
    pthread_mutex_unlock(&pool->lock);
    if (found == NULL)
        return ret;
    found->status = -ECANCELED;
    post_done(pool, found); /* rule 2: pool->lock is released already */
    return 0;
    /* END SOLUTION */
}

void tp_destroy(struct tp *pool)
{
    if (pool == NULL)
        return;
    struct tp_queue never_run = { NULL, NULL };
    /* BEGIN SOLUTION lab3
     * TODO: Stop the workers, jobs pending or not. Under pool->lock: set pool->stopping,
     *       move the whole job queue into never_run (those jobs will not run), and wake
     *       EVERY worker with pthread_cond_broadcast (each must see `stopping`; a signal
     *       wakes only one). Unlock, then pthread_join each of the pool->nworkers threads.
     *       A running job finishes first (nothing interrupts a blocking pread), and its
     *       worker posts it on the done queue before it returns. The code below
     *       delivers every callback still owed.
     * STUB: if (pool->nworkers > 0) return; // not written yet: the workers are left running
     */
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    never_run = pool->jobs;
    pool->jobs.head = pool->jobs.tail = NULL;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nworkers; i++)
        pthread_join(pool->workers[i].thread, NULL);
    /* END SOLUTION */

    /* The workers are gone: this thread is alone with the pool and needs no lock. Every
     * job gets its done callback exactly once: first those that finished (in the order
     * they finished), then those that never ran. */
    struct tp_job *job;
    while ((job = tp_queue_pop(&pool->done)) != NULL)
        finish_job(job);
    while ((job = tp_queue_pop(&never_run)) != NULL) {
        job->status = -ECANCELED;
        finish_job(job);
    }
    if (pool->efd >= 0) {
        rx_del(pool->rx, pool->efd); /* before close: the number may be reused at once */
        close(pool->efd);
    }
    pthread_cond_destroy(&pool->work_ready);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->done_lock);
    free(pool->workers);
    free(pool);
}
