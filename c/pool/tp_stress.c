/* tp_stress: 100,000 jobs with random cancellations — every job must end exactly once, as promised. */
/*
 * Usage: tp_stress [--jobs N] [--workers W] [--inflight K] [--seed S]
 *
 * Keeps K jobs in flight (default 256) on a pool of W workers (default 4) until N jobs
 * (default 100000) have been submitted, and cancels one job in flight, picked at random,
 * after every 8th completion. Then it submits 1,000 more jobs and destroys the pool at
 * once, with most of them still queued. Every job keeps a record, and the program checks
 * it against the contract in tp.h:
 *
 *   - the done callback ran exactly once (0 times: lost; more: doubled), on the loop thread;
 *   - status 0: the work ran exactly once, on a worker thread, and its result is there;
 *     status -ECANCELED: the work never ran;
 *   - tp_cancel said 0 -> the job ended -ECANCELED; -EBUSY or -ENOENT -> it ended with 0.
 *
 * It prints what happened and "OK", or "FAIL" and the first problems, a line at a time (so a
 * crash leaves what came before it). Exit status 0 only with OK. The records are plain ints written by workers and read by the loop: the pool's
 * locks are all that orders them, so a ThreadSanitizer build (`make tsan`, then
 * build/tsan/tp_stress) reports a data race if the pool hands a job over unsafely.
 */
#include "tp.h"
#include "../common/args.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHUTDOWN_JOBS 1000 /* submitted just before tp_destroy */
#define STALL_LIMIT_S 20   /* no completion for this long: give up */
#define DEADLINE_S 30      /* the whole run takes well under a second; this long means stuck */
#define MAX_REPORTS 10     /* problems printed in detail */

/* What happened to one job. Written by the worker (work_*) and by the loop (the rest). */
struct record {
    struct stress *st;
    int64_t id;         /* from tp_submit */
    int work_runs;      /* how many times its work ran */
    pid_t work_tid;     /* the thread it ran on */
    uint64_t result;    /* what the work computed: a function of the input */
    uint64_t input;
    int done_calls;     /* how many times its done callback ran */
    int status;         /* the status that callback got */
    int cancel_ret;     /* what tp_cancel answered; 1: never asked */
};

struct stress {
    struct tp *pool;
    pid_t loop_tid;
    struct record *recs;   /* jobs + SHUTDOWN_JOBS records */
    long jobs;             /* main phase */
    long inflight;
    long submitted;        /* records handed to tp_submit so far */
    long delivered;        /* done callbacks so far */
    long in_flight;        /* submitted in the main phase, done not yet called */
    bool refill;           /* the main phase: done callbacks top the window up */
    uint64_t rng;          /* xorshift state */
    long cancel_ok, cancel_busy, cancel_gone, cancelled, ran;
    long lost, doubled, wrong;  /* problems found */
    int reports;
    int error;             /* a -errno that stopped the run */
    const char *what;
    double last_progress;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_random(struct stress *st)
{
    st->rng ^= st->rng << 13;
    st->rng ^= st->rng >> 7;
    st->rng ^= st->rng << 17;
    return st->rng;
}

static uint64_t expected(uint64_t input)
{
    return input * 0x9E3779B97F4A7C15u + 1;
}

/* Count a problem in *counter; print the first MAX_REPORTS of them. */
static void report(struct stress *st, long *counter, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void report(struct stress *st, long *counter, const char *fmt, ...)
{
    (*counter)++;
    if (st->reports++ >= MAX_REPORTS)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("  problem: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* The work, on a worker: count the run, note the thread, compute something the done
 * callback can check. Plain writes: only the pool's hand-over orders them. */
static void work(void *arg)
{
    struct record *r = arg;
    r->work_runs++;
    r->work_tid = gettid();
    r->result = expected(r->input);
}

static void done(void *arg, int status);

/* Stop the run with err (a -errno), naming the step, unless it is stopped already. */
static void stop(struct stress *st, int err, const char *what)
{
    if (st->error == 0) {
        st->error = err;
        st->what = what;
    }
}

static int submit_record(struct stress *st)
{
    struct record *r = &st->recs[st->submitted];
    r->st = st;
    r->input = next_random(st);
    r->cancel_ret = 1;
    int64_t id = tp_submit(st->pool, work, done, r);
    if (id < 0)
        return (int)id;
    r->id = id;
    st->submitted++;
    return 0;
}

/* The main phase keeps `inflight` jobs in flight until `jobs` were submitted. */
static void top_up(struct stress *st)
{
    while (st->error == 0 && st->submitted < st->jobs && st->in_flight < st->inflight) {
        int ret = submit_record(st);
        if (ret < 0) {
            stop(st, ret, "tp_submit");
            return;
        }
        st->in_flight++;
    }
}

/* Cancel a random job of the main phase that is still in flight (its done not called). */
static void cancel_one(struct stress *st)
{
    long lo = st->submitted - st->inflight;
    if (lo < 0)
        lo = 0;
    long n = st->submitted - lo;
    if (n <= 0)
        return;
    struct record *r = &st->recs[lo + (long)(next_random(st) % (uint64_t)n)];
    if (r->done_calls != 0 || r->cancel_ret != 1)
        return; /* over already, or asked before */
    r->cancel_ret = tp_cancel(st->pool, r->id);
    if (r->cancel_ret == 0)
        st->cancel_ok++;
    else if (r->cancel_ret == -EBUSY)
        st->cancel_busy++;
    else if (r->cancel_ret == -ENOENT)
        st->cancel_gone++;
    else
        stop(st, r->cancel_ret, "tp_cancel");
}

/* The done callback, on the loop thread: check the record, then keep the window full. */
static void done(void *arg, int status)
{
    struct record *r = arg;
    struct stress *st = r->st;
    long job = (long)(r - st->recs);
    r->done_calls++;
    r->status = status;
    st->delivered++;
    st->last_progress = now_s();
    if (r->done_calls > 1)
        report(st, &st->doubled, "job %ld: done callback called again (call %d)", job, r->done_calls);
    if (gettid() != st->loop_tid)
        report(st, &st->wrong, "job %ld: done callback ran on thread %d, not on the loop thread", job,
               (int)gettid());
    if (status == 0) {
        st->ran++;
        if (r->work_runs != 1)
            report(st, &st->wrong, "job %ld: status 0 but its work ran %d times", job, r->work_runs);
        else if (r->work_tid == st->loop_tid)
            report(st, &st->wrong, "job %ld: its work ran on the loop thread", job);
        else if (r->result != expected(r->input))
            report(st, &st->wrong, "job %ld: the done callback does not see what the work wrote", job);
        if (r->cancel_ret == 0)
            report(st, &st->wrong, "job %ld: tp_cancel returned 0, yet the status is 0", job);
    } else if (status == -ECANCELED) {
        st->cancelled++;
        if (r->work_runs != 0)
            report(st, &st->wrong, "job %ld: status -ECANCELED but its work ran %d times", job, r->work_runs);
        if (r->cancel_ret == -EBUSY || r->cancel_ret == -ENOENT)
            report(st, &st->wrong, "job %ld: tp_cancel said it could not cancel (%s), yet the status "
                   "is -ECANCELED", job, strerror(-r->cancel_ret));
    } else {
        report(st, &st->wrong, "job %ld: status %d, expected 0 or -ECANCELED", job, status);
    }
    if (!st->refill)
        return;
    st->in_flight--;
    top_up(st);
    if (st->error == 0 && st->delivered % 8 == 0)
        cancel_one(st);
}

/* Once a second on the loop: give up when nothing completed for STALL_LIMIT_S. */
static void watchdog(struct rx *rx, int64_t id, void *arg)
{
    struct stress *st = arg;
    (void)rx;
    (void)id;
    if (st->error == 0 && now_s() - st->last_progress > STALL_LIMIT_S) {
        st->error = -ETIMEDOUT;
        st->what = "no completion for 20 s (do the workers run jobs? does the eventfd wake the loop?)";
    }
}

static struct stress *running; /* for on_alarm's report */

/* SIGALRM after DEADLINE_S: the loop itself is stuck (the watchdog timer above cannot run),
 * e.g. a done callback called with a lock held that tp_submit then takes again. Say how far
 * it got, from the counters, not a guess. It writes with write(2) and leaves with _exit: the
 * loop may be stopped inside stdio. (snprintf is not on the async-signal-safe list, but nothing
 * else runs on this thread after it.) */
static void on_alarm(int sig)
{
    (void)sig;
    char msg[400];
    const struct stress *st = running;
    int n = snprintf(msg, sizeof(msg),
                     "FAIL: tp_stress still running after %d s, stuck %s: %ld of %ld jobs submitted, %ld done "
                     "callbacks delivered\n", DEADLINE_S,
                     st->refill ? "in the main phase" : "in the shutdown (tp_destroy, or the submits before it)",
                     st->submitted, st->jobs + SHUTDOWN_JOBS, st->delivered);
    if (n >= (int)sizeof(msg))
        n = (int)sizeof(msg) - 1;
    if (write(STDOUT_FILENO, msg, (size_t)n) < 0)
        _exit(2);
    _exit(1);
}

static const char USAGE[] = "tp_stress [--jobs N] [--workers W] [--inflight K] [--seed S]";

struct options {
    long jobs;          /* submitted in the main phase */
    int workers;        /* threads of the pool */
    long inflight;      /* jobs kept in flight in the main phase */
    long seed;          /* of the random choice of the job to cancel */
};

/* Fill *opt from argv. 0, or -1 after saying what is wrong and the usage line. */
static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        { "jobs", required_argument, NULL, 'j' },
        { "workers", required_argument, NULL, 'w' },
        { "inflight", required_argument, NULL, 'i' },
        { "seed", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct options){ .jobs = 100000, .workers = 4, .inflight = 256, .seed = 1 };
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': bad = args_long("tp_stress", "--jobs", optarg, 1, 10000000, &opt->jobs); break;
        case 'w': bad = args_int("tp_stress", "--workers", optarg, 1, TP_MAX_WORKERS, &opt->workers); break;
        case 'i': bad = args_long("tp_stress", "--inflight", optarg, 1, 100000, &opt->inflight); break;
        case 's': bad = args_long("tp_stress", "--seed", optarg, 1, 1L << 30, &opt->seed); break;
        default: bad = -1; /* getopt_long said what */
        }
    }
    return args_end("tp_stress", bad, argc, argv, USAGE);
}

/* The main phase: a full window of jobs, topped up by every done callback (which also
 * cancels one now and then), until `jobs` done callbacks came. 0, or -1 after "FAIL: ...". */
static int main_phase(struct stress *st, struct rx *rx)
{
    st->last_progress = now_s();
    int64_t dog = rx_timer_add(rx, 1000, 1000, watchdog, st);
    if (dog < 0)
        stop(st, (int)dog, "rx_timer_add");
    st->refill = true;
    top_up(st);
    long rounds = 0;
    while (st->error == 0 && st->delivered < st->jobs) {
        int ret = rx_run_once(rx, -1);
        rounds++;
        if (ret < 0)
            stop(st, ret, "rx_run_once");
    }
    st->refill = false;
    if (st->error < 0) {
        printf("FAIL: %s: %s%s (after %ld of %ld done callbacks)\n", st->what, strerror(-st->error),
               st->error == -ENOSYS ? " (not written yet: lab 3, tp.c)" : "", st->delivered, st->jobs);
        return -1;
    }
    printf("done %ld: %ld ran, %ld cancelled; tp_cancel answered 0 %ld times, -EBUSY %ld, -ENOENT %ld; "
           "%ld rounds of the loop\n", st->delivered, st->ran, st->cancelled, st->cancel_ok, st->cancel_busy,
           st->cancel_gone, rounds);
    return 0;
}

/* The shutdown: a burst of jobs, then tp_destroy at once, most of them still queued. */
static void shutdown_phase(struct stress *st)
{
    long ran_before = st->ran, cancelled_before = st->cancelled;
    for (long i = 0; i < SHUTDOWN_JOBS && st->error == 0; i++) {
        int ret = submit_record(st);
        if (ret < 0)
            stop(st, ret, "tp_submit");
    }
    tp_destroy(st->pool);
    st->pool = NULL;
    printf("shutdown with %d jobs pending: %ld ran, %ld cancelled\n", SHUTDOWN_JOBS, st->ran - ran_before,
           st->cancelled - cancelled_before);
}

/* Every job's record against the contract, and the verdict. The exit status: 0 with OK. */
static int verdict(struct stress *st)
{
    for (long i = 0; i < st->submitted; i++) {
        if (st->recs[i].done_calls == 0)
            report(st, &st->lost, "job %ld: its done callback never ran (id %lld)", i, (long long)st->recs[i].id);
    }
    printf("lost %ld, doubled %ld, wrong %ld\n", st->lost, st->doubled, st->wrong);
    if (st->error < 0)
        printf("FAIL: %s: %s\n", st->what, strerror(-st->error));
    else if (st->lost + st->doubled + st->wrong > 0)
        printf("FAIL\n");
    else
        printf("OK\n");
    return st->error < 0 || st->lost + st->doubled + st->wrong > 0 ? 1 : 0;
}

/* The records, the loop and the pool on it. 0, or -1 after saying what failed. */
static int set_up(struct stress *st, struct rx **rx, int workers)
{
    st->recs = calloc((size_t)(st->jobs + SHUTDOWN_JOBS), sizeof(*st->recs));
    int ret = st->recs == NULL ? -ENOMEM : rx_create(rx);
    if (ret < 0) {
        fprintf(stderr, "tp_stress: setting up: %s\n", strerror(-ret));
        return -1;
    }
    ret = tp_create(&st->pool, *rx, workers);
    if (ret < 0) {
        fprintf(stderr, "tp_stress: tp_create: %s%s\n", strerror(-ret),
                ret == -ENOSYS ? " (not written yet: lab 3, tp.c)" : "");
        return -1;
    }
    printf("tp_stress: %ld jobs on %d workers, %ld in flight\n", st->jobs, workers, st->inflight);
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt;
    if (parse_options(argc, argv, &opt) < 0)
        return 2;   /* a usage error */
    /* A line reaches the pipe as soon as it is printed: if the pool crashes the program, what
     * it found before (its "problem:" lines) is not lost in stdio's buffer. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct stress st = { .jobs = opt.jobs, .inflight = opt.inflight, .loop_tid = gettid(),
                         .rng = 0x2545F4914F6CDD1Du ^ (uint64_t)opt.seed };
    running = &st;
    signal(SIGALRM, on_alarm);
    alarm(DEADLINE_S);
    struct rx *rx = NULL;
    int status = 1;
    if (set_up(&st, &rx, opt.workers) == 0 && main_phase(&st, rx) == 0) {
        shutdown_phase(&st);
        status = verdict(&st);
    }
    tp_destroy(st.pool);
    rx_destroy(rx);
    free(st.recs);
    return status;
}
