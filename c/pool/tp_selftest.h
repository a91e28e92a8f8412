/* tp_selftest.h: what the files of tp_selftest share — the harness (st.h), waiting, a pool to test, the checks. */
#ifndef TP_SELFTEST_H
#define TP_SELFTEST_H

#include "tp.h"
#include "../common/st.h" /* st_fail, st_res, st_now, st_sleep_ms, st_main: shared with the other self-tests */

#include <stdatomic.h>
#include <sys/types.h>

/* Wait (sleeping, not in the reactor) until *flag >= want, at most timeout_s seconds.
 * True if it got there. */
bool st_wait_for(atomic_int *flag, int want, double timeout_s);

/* The pool's threads alive in this process: the threads /proc/self/task names
 * "tp-worker-N" (tp_create names them). A sanitizer's helper thread is not counted. */
int st_count_workers(void);

/* Wait up to 1 s for every tp-worker thread to be gone (a joined thread leaves /proc a
 * moment after pthread_join returns). True when none is left. */
bool st_workers_gone(void);

/* What every check starts from: a reactor and a pool of n workers in *rx and *pool, and
 * st_done_total back to 0. False with the failure recorded (and nothing left to free). */
bool st_setup(struct rx **rx, struct tp **pool, int n);

/* What every check ends with: st_destroy(pool), then the reactor. */
void st_teardown(struct rx *rx, struct tp *pool);

/* Run the reactor until *count >= want, for at most 3 s; false (recorded) if it did not
 * get there. `what` names the things counted, for the message. */
bool st_run_until(struct rx *rx, const int *count, int want, const char *what);

/* tp_destroy, telling the watchdog (st_hang_during) that a hang in it is tp_destroy's. */
void st_destroy(struct tp *pool);

/* What one job of a check went through. */
struct st_job {
    int64_t id;         /* what tp_submit returned */
    int work_runs;      /* how many times its work ran (written on the worker) */
    pid_t work_tid;     /* the thread its work ran on */
    int done_calls;     /* how many times its done callback ran (written on the loop) */
    pid_t done_tid;     /* the thread the done callback ran on */
    int status;         /* the status the done callback got */
};

extern int st_done_total; /* done callbacks of st_note_done so far, every job of the check */

/* A tp_work_fn that notes the run in its struct st_job. */
void st_note_work(void *arg);

/* A tp_done_fn that notes the call in its struct st_job and counts it in st_done_total. */
void st_note_done(void *arg, int status);

/* The checks (tp_selftest.c and tp_selftest_jobs.c). Each returns true, or false after st_fail(). */
bool check_create(void);
bool check_errors(void);
bool check_run(void);
bool check_parallel(void);
bool check_chain(void);
bool check_cancel(void);
bool check_coalesce(void);
bool check_destroy_pending(void);

#endif
