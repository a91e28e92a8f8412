/* tp_selftest_jobs: the checks of cancelling, coalescing and shutting down (tp_selftest.c runs them). */
#include "tp_selftest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tp *chain_pool; /* chain: the pool the callbacks submit to */
static int links, cancelled_ok, victims_done, victims_wrong;

static void slow_work(void *arg)
{
    (void)arg;
    st_sleep_ms(2); /* long enough for the victim behind it to still be queued when cancelled */
}

static void victim_done(void *arg, int status)
{
    struct st_job *j = arg;
    victims_done++;
    if ((status == -ECANCELED) != (j->work_runs == 0))
        victims_wrong++;
    free(j);
}

/* A link's done callback: submit the next link and a victim, and cancel the victim, all
 * from inside a done callback. */
static void link_done(void *arg, int status)
{
    (void)arg;
    if (status != 0 || ++links >= 30)
        return;
    if (tp_submit(chain_pool, slow_work, link_done, NULL) <= 0)
        return;
    struct st_job *victim = calloc(1, sizeof(*victim));
    if (victim == NULL)
        return;
    victim->id = tp_submit(chain_pool, st_note_work, victim_done, victim);
    if (victim->id > 0 && tp_cancel(chain_pool, victim->id) == 0)
        cancelled_ok++;
}

bool check_chain(void)
{
    struct rx *rx;
    if (!st_setup(&rx, &chain_pool, 1))
        return false;
    links = cancelled_ok = victims_done = victims_wrong = 0;
    bool ok = tp_submit(chain_pool, slow_work, link_done, NULL) > 0 || st_fail("tp_submit failed");
    ok = ok && st_run_until(rx, &links, 30, "links of the chain (each submitted by a done callback) finished");
    ok = ok && st_run_until(rx, &victims_done, 29, "cancelled jobs got their done callback");
    if (ok && (cancelled_ok == 0 || victims_wrong != 0))
        ok = st_fail("done callbacks that submit and cancel: %d of 29 cancels succeeded, %d victims had "
                     "a status that does not match whether their work ran", cancelled_ok, victims_wrong);
    st_teardown(rx, chain_pool);
    return ok;
}

static atomic_int started, release; /* jobs that began; "blockers may finish now" */

static void blocker(void *arg)
{
    st_note_work(arg);
    atomic_fetch_add(&started, 1);
    st_wait_for(&release, 1, 3);
}

/* With A running on the only worker: queue B and C, cancel A (-EBUSY: it runs), C (the
 * tail; again: -ENOENT), queue D behind B (the tail must be B now), cancel B. True, or false
 * after st_fail. */
static bool cancel_around_the_running_job(struct tp *pool, struct st_job *a, struct st_job *b, struct st_job *c,
                                          struct st_job *d)
{
    int ret;
    double t0 = st_now();
    b->id = tp_submit(pool, st_note_work, st_note_done, b);
    c->id = tp_submit(pool, st_note_work, st_note_done, c);
    if (st_now() - t0 > 0.5)
        return st_fail("tp_submit took %.1f s while a worker ran a job: is pool->lock held while the job runs?",
                       st_now() - t0);
    if ((ret = tp_cancel(pool, a->id)) != -EBUSY)
        return st_fail("tp_cancel of the running job A returned %s, expected -EBUSY", st_res(ret));
    if ((ret = tp_cancel(pool, c->id)) != 0 || (ret = tp_cancel(pool, c->id)) != -ENOENT)
        return st_fail("tp_cancel of the queued job C (the last one), then again: got %s, expected 0 then -ENOENT",
                       st_res(ret));
    d->id = tp_submit(pool, st_note_work, st_note_done, d); /* behind B: the tail must be B now, not C */
    if ((ret = tp_cancel(pool, b->id)) != 0)
        return st_fail("tp_cancel of the queued job B returned %s, expected 0", st_res(ret));
    if (st_done_total != 0)
        return st_fail("a done callback ran inside tp_cancel: it must come later, from the loop");
    return true;
}

/* Each of the four jobs ended once, on the loop, with want_status[i] (0: its work ran once;
 * -ECANCELED: never). True, or false after st_fail. */
static bool ended_as_expected(struct st_job *const all[4], const int want_status[4])
{
    for (int i = 0; i < 4; i++) {
        const struct st_job *j = all[i];
        if (j->done_calls != 1 || j->status != want_status[i] || j->work_runs != (want_status[i] == 0) ||
            j->done_tid != gettid())
            return st_fail("job %c: done called %d times with status %s, work ran %d times; expected once with "
                           "%s, work %s", 'A' + i, j->done_calls, st_res(j->status), j->work_runs,
                           st_res(want_status[i]), want_status[i] ? "never" : "once");
    }
    return true;
}

bool check_cancel(void)
{
    struct rx *rx;
    struct tp *pool;
    if (!st_setup(&rx, &pool, 1))
        return false;
    struct st_job a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
    atomic_store(&started, 0);
    atomic_store(&release, 0);
    bool ok = false;
    a.id = tp_submit(pool, blocker, st_note_done, &a);
    if (a.id <= 0 || !st_wait_for(&started, 1, 2)) {
        st_fail("job A was not started within 2 s by the only worker (tp_submit: %s)", st_res(a.id));
        goto out;
    }
    if (!cancel_around_the_running_job(pool, &a, &b, &c, &d))
        goto out;
    atomic_store(&release, 1);
    if (!st_run_until(rx, &st_done_total, 4, "jobs (A running; B and C cancelled; D queued after C was "
                      "cancelled) ended")) {
        if (d.done_calls == 0 && a.done_calls == 1 && b.done_calls == 1 && c.done_calls == 1)
            st_fail("job D, submitted right after the last queued job C was cancelled, never ended: C was "
                    "unlinked but the queue's tail still pointed at it, so D was hung on a removed job. When "
                    "the job you unlink is the tail, the tail becomes the job before it");
        goto out;
    }
    struct st_job *const all[4] = { &a, &b, &c, &d };
    if (!ended_as_expected(all, (const int[4]){ 0, -ECANCELED, -ECANCELED, 0 }))
        goto out;
    int ret = tp_cancel(pool, a.id);
    ok = ret == -ENOENT || st_fail("tp_cancel of job A after it finished returned %s, expected -ENOENT", st_res(ret));
out:
    atomic_store(&release, 1);
    st_teardown(rx, pool);
    return ok;
}

static atomic_int worked; /* coalesce: jobs whose work is over */

static void count_work(void *arg)
{
    (void)arg;
    atomic_fetch_add(&worked, 1);
}

bool check_coalesce(void)
{
    struct rx *rx;
    struct tp *pool;
    if (!st_setup(&rx, &pool, 2))
        return false;
    enum { N = 200 };
    struct st_job jobs[N] = { 0 };
    atomic_store(&worked, 0);
    bool ok = false;
    for (int i = 0; i < N; i++) {
        if (tp_submit(pool, count_work, st_note_done, &jobs[i]) <= 0) {
            st_fail("tp_submit failed");
            goto out;
        }
    }
    /* The loop is busy (it is us): let every job finish and be posted, then look. */
    if (!st_wait_for(&worked, N, 3)) {
        st_fail("only %d of %d jobs ran within 3 s", atomic_load(&worked), N);
        goto out;
    }
    st_sleep_ms(300);
    uint64_t count = 0;
    ssize_t n = read(pool->efd, &count, sizeof(count));
    if (n != sizeof(count)) {
        st_fail("%d jobs finished, but the eventfd was never written (read: %s): a worker must write it "
                "when it puts a job on an empty done queue", N, n < 0 ? strerror(errno) : "short");
        goto out;
    }
    if (count != 1) {
        st_fail("%d jobs finished while the loop was busy, and the workers wrote the eventfd %llu times; "
                "expected once: write only when the done queue was empty (the loop is already woken "
                "for the others)", N, (unsigned long long)count);
        goto out;
    }
    if (write(pool->efd, &count, sizeof(count)) != sizeof(count)) { /* put it back for the loop */
        st_fail("writing the eventfd back failed: %s", strerror(errno));
        goto out;
    }
    int ret = rx_run_once(rx, 1000);
    if (ret < 0 || st_done_total != N) {
        st_fail("one wake-up of the loop delivered %d of the %d finished jobs (rx_run_once: %s): take the "
                "whole done queue in one step", st_done_total, N, st_res(ret));
        goto out;
    }
    ok = true;
out:
    st_teardown(rx, pool);
    return ok;
}

static struct tp *doomed; /* destroy_pending: the pool being destroyed */
static long late_submit;  /* what tp_submit answered from a done callback during tp_destroy */

/* A slow read: 500 ms. Its run is noted only at the end: a job whose done callback says
 * "status 0" must have finished its work first. */
static void slow_read(void *arg)
{
    atomic_fetch_add(&started, 1);
    st_sleep_ms(500);
    st_note_work(arg);
}

static void destroy_done(void *arg, int status)
{
    st_note_done(arg, status);
    late_submit = tp_submit(doomed, st_note_work, st_note_done, arg);
}

bool check_destroy_pending(void)
{
    struct rx *rx;
    if (!st_setup(&rx, &doomed, 2))
        return false;
    enum { N = 12 };
    struct st_job jobs[N] = { 0 };
    atomic_store(&started, 0);
    late_submit = 0;
    bool ok = true;
    for (int i = 0; i < N && ok; i++)
        if (tp_submit(doomed, slow_read, destroy_done, &jobs[i]) <= 0)
            ok = st_fail("tp_submit failed");
    ok = ok && (st_wait_for(&started, 2, 2) || st_fail("the 2 workers did not start 2 of the %d jobs within 2 s", N));
    st_destroy(doomed); /* while the 2 are in the middle of their 500 ms */
    int unfinished = atomic_load(&started); /* works begun; a joined worker has ended its own */
    for (int i = 0; i < N; i++)
        unfinished -= jobs[i].work_runs;
    if (ok && unfinished > 0)
        ok = st_fail("tp_destroy returned while %d of the running jobs were still in their work: it must wait "
                     "for them (pthread_join every worker: a worker finishes its job and posts it before it "
                     "exits), or the pool is freed under their feet", unfinished);
    int ran = 0, cancelled = 0;
    for (int i = 0; ok && i < N; i++) {
        struct st_job *j = &jobs[i];
        if (j->done_calls != 1 || j->done_tid != gettid())
            ok = st_fail("job %d: its done callback ran %d times%s; tp_destroy must call it exactly once for "
                         "every job still pending", i, j->done_calls, j->done_calls ? "" : " (never)");
        else if (j->status == 0 && j->work_runs == 1)
            ran++;
        else if (j->status == -ECANCELED && j->work_runs == 0)
            cancelled++;
        else
            ok = st_fail("job %d: status %s after its work ran %d times", i, st_res(j->status), j->work_runs);
    }
    if (ok && (ran != 2 || cancelled != N - 2))
        ok = st_fail("tp_destroy with 2 jobs running and %d queued: %d ran, %d were cancelled; expected the "
                     "running ones to finish and the queued ones to be cancelled", N - 2, ran, cancelled);
    if (ok && late_submit != -ESHUTDOWN)
        ok = st_fail("tp_submit from a done callback during tp_destroy returned %s, expected -ESHUTDOWN",
                     st_res(late_submit));
    if (ok && !st_workers_gone())
        ok = st_fail("after tp_destroy %d workers are still alive: stop and join every one", st_count_workers());
    rx_destroy(rx);
    return ok;
}
