/* aio_cat: read a file with POSIX aio.h, and report who really did the reading (threads). */
/*
 * Usage: aio_cat FILE [--notify suspend|thread|reactor] [--depth N] [--batch N]
 *                     [--chunk BYTES] [--fds K] [--copy OUT]
 *        aio_cat --bad-fd [--notify ...]
 *
 * Reads FILE into memory in chunks (64 KiB) with up to --depth (4) aio_read requests in
 * flight, then prints its CRC-32, the same number as Python's zlib.crc32. Right after the
 * first submission, and whenever it submits more, it looks at /proc/self/task: "threads
 * in flight" lists the threads the process has while glibc holds requests. It never
 * started one itself.
 *
 *   --notify suspend   wait with aio_suspend (the default)
 *   --notify thread    SIGEV_THREAD: glibc calls a function of ours on a thread it starts;
 *                      the function counts where it ran and posts a semaphore
 *   --notify reactor   SIGEV_SIGNAL: glibc queues SIGRTMIN; we keep it blocked and read
 *                      it from a signalfd that sits in the lab-2 reactor (rx), so the main
 *                      thread sleeps in epoll_wait, like a real event loop
 *   --batch N          submit N requests per lio_listio call (one notification per batch)
 *   --fds K            open FILE K times and spread the requests over the K descriptors
 *   --copy OUT         also write every chunk to OUT with aio_write, at the same offset
 *   --bad-fd           read from a descriptor that is closed: see how an error comes back
 *
 * Try:  build/bin/aio_cat build/data/some-file --notify thread
 *       strace -f -e trace=clone3,clone,pread64 build/bin/aio_cat FILE
 *
 * Sanitizers: `make asan` and `make ubsan` builds run every mode. Under `make tsan`,
 * --notify thread crashes inside ThreadSanitizer: glibc starts its aio threads with its
 * own internal pthread_create, which TSan does not intercept, so when such a thread
 * calls malloc (to start the notification thread) TSan finds no state for it. The
 * other modes run, because there glibc's threads never call back into instrumented code.
 */
#include "../common/look.h"
#include "pa.h"
#include "../reactor/rx.h"

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 64               /* requests in flight at most (--depth, --batch) */
#define MAX_FDS 8                  /* --fds */
#define MAX_SIZE (256L << 20)      /* the whole file is kept in memory: 256 MiB at most */
#define WAIT_MS 10000              /* no completion for this long: something is wrong, stop */
#define MAX_TIDS 4096              /* SIGEV_THREAD callbacks whose thread we remember */

enum mode { SUSPEND, THREAD, REACTOR };
enum state { IDLE, READING, WRITING };

/* One request slot. Its aiocb belongs to glibc while state != IDLE. */
struct slot {
    struct aiocb cb;    /* the request: must not move or be reused while in flight */
    enum state state;   /* what the request in cb is doing */
    off_t off;          /* where in the file */
    size_t len;         /* how many bytes */
};

struct cat {
    enum mode mode;
    int depth;                      /* slots in use */
    int batch;                      /* 0: one aio_read per request; N: lio_listio of N */
    size_t chunk;                   /* bytes per request */
    int fds[MAX_FDS], nfds;         /* FILE, opened nfds times (requests spread over them) */
    int out;                        /* --copy: where to write; -1 without */
    const char *out_name;
    char *data;                     /* the whole file, in memory */
    off_t size;                     /* its size */
    off_t next;                     /* the next offset to read */
    struct slot slots[MAX_SLOTS];
    int busy;                       /* slots in flight */
    struct sigevent notify;         /* how glibc tells us (per request, or per batch) */
    long reads, writes, batches;    /* requests submitted; lio_listio calls */
    long waits;                     /* aio_suspend rounds (suspend mode) */
    long notes_expected, notes_seen; /* notifications we asked for / received */
    pid_t main_tid;
    /* --notify thread: written by glibc's notification threads */
    sem_t sem;                      /* posted once per notification */
    atomic_int callbacks;           /* how many ran */
    atomic_int on_main;             /* how many of them ran on the main thread (should be 0) */
    pid_t cb_tids[MAX_TIDS];        /* the thread each ran on */
    /* --notify reactor */
    struct rx *rx;
    int sfd;                        /* the signalfd for SIGRTMIN; -1 otherwise */
    long signals, wakeups;          /* signals read; reactor callbacks */
    int error;                      /* a -errno met in a reactor callback */
    const char *where;              /* the step that failed, for main's message; NULL: printed */
    /* what /proc/self/task showed */
    int max_threads;
    int reported;                   /* the first look has been printed */
};

/* Global, not on main's stack: a late notification thread may still touch it while
 * exit() runs, and main's frame is gone by then. */
static struct cat cat = { .out = -1, .sfd = -1 };

/* Print "aio_cat: what: strerror (ENAME)" for a -errno; returns 1 (the exit status). */
static int fail(const char *what, int err)
{
    fprintf(stderr, "aio_cat: %s: %s%s\n", what, strerror(-err), look_errno_name(-err, "lab 4, pa.c"));
    return 1;
}

/* Look at /proc/self/task: how many threads now, and (the first time) which. This is
 * the whole reveal in C: we never call pthread_create, yet there are more than one. */
static void look_at_threads(void)
{
    char line[2048];
    int count = look_threads(cat.main_tid, line, sizeof(line));
    if (count > cat.max_threads)
        cat.max_threads = count;
    if (!cat.reported) {
        printf("threads in flight: %d:%s\n", count, line);
        fflush(stdout); /* now, while the requests are in flight, even when stdout is a pipe */
        cat.reported = 1;
    }
}

/* SIGEV_THREAD: glibc runs this on a thread it created for this one notification. */
static void on_done(union sigval value)
{
    struct cat *c = value.sival_ptr;
    pid_t tid = gettid();
    int i = atomic_fetch_add(&c->callbacks, 1);
    if (i < MAX_TIDS)
        c->cb_tids[i] = tid;
    if (tid == c->main_tid)
        atomic_fetch_add(&c->on_main, 1);
    sem_post(&c->sem); /* async-signal-safe and cheap: wakes the main thread */
}

/* The reactor saw the signalfd readable: take every pending SIGRTMIN. */
static void on_signal(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct cat *c = arg;
    (void)events;
    c->wakeups++;
    int n = pa_signal_drain(fd, NULL, 0);
    if (n < 0) {
        c->error = n;
        rx_stop(rx);
        return;
    }
    c->signals += n;
    c->notes_seen += n;
}

/* Wait for one notification (thread and reactor modes). 0, or -errno (-ETIMEDOUT). */
static int wait_note(void)
{
    if (cat.mode == THREAD) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += WAIT_MS / 1000;
        while (sem_timedwait(&cat.sem, &ts) < 0) {
            if (errno != EINTR)
                return -errno;
        }
        cat.notes_seen++;
        return 0;
    }
    int ret = rx_run_once(cat.rx, WAIT_MS);
    if (ret < 0)
        return ret;
    if (cat.error < 0)
        return cat.error;
    return ret == 0 ? -ETIMEDOUT : 0;
}

/* Sleep until something may be done. 0, or -errno. */
static int wait_some(void)
{
    if (cat.mode != SUSPEND)
        return wait_note();
    const struct aiocb *list[MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < cat.depth; i++)
        if (cat.slots[i].state != IDLE)
            list[n++] = &cat.slots[i].cb;
    cat.waits++;
    int ret = pa_wait(list, n, WAIT_MS);
    return ret == -EAGAIN ? -ETIMEDOUT : ret;
}

/* Hand list[0..n) to glibc: one lio_listio, or one aio_read/aio_write each. On an error
 * the slots that were not queued go back to IDLE. 0, or -errno. */
static int submit(struct slot **slots, int n)
{
    struct aiocb *list[MAX_SLOTS];
    for (int i = 0; i < n; i++)
        list[i] = &slots[i]->cb;
    if (n == 0)
        return 0;
    int ret = 0, queued = 0;
    if (cat.batch > 0) {
        ret = pa_submit_batch(list, n, cat.mode == SUSPEND ? NULL : &cat.notify);
        if (ret == 0 || ret == -EAGAIN || ret == -EIO)
            queued = n; /* all, or some: each one's pa_result tells */
        if (ret == 0) {
            cat.batches++;
            cat.notes_expected += cat.mode != SUSPEND;
        }
    } else {
        for (; queued < n; queued++) {
            ret = pa_submit(list[queued]);
            if (ret < 0)
                break;
            cat.notes_expected += cat.mode != SUSPEND;
        }
    }
    for (int i = queued; i < n; i++)
        slots[i]->state = IDLE;
    cat.busy += queued;
    look_at_threads();
    return ret;
}

/* Fill idle slots with reads of the next chunks (in batch mode: only when all are idle,
 * so that each lio_listio carries a whole batch) and submit them. 0, or -errno. */
static int start_reads(void)
{
    struct slot *todo[MAX_SLOTS];
    int n = 0;
    if (cat.batch > 0 && cat.busy > 0)
        return 0;
    for (int i = 0; i < cat.depth && cat.next < cat.size; i++) {
        struct slot *s = &cat.slots[i];
        if (s->state != IDLE)
            continue;
        s->off = cat.next;
        s->len = (size_t)(cat.size - cat.next) < cat.chunk ? (size_t)(cat.size - cat.next) : cat.chunk;
        int fd = cat.fds[cat.reads % cat.nfds];
        int ret = pa_prep(&s->cb, LIO_READ, fd, cat.data + s->off, s->len, s->off,
                          cat.batch > 0 ? NULL : &cat.notify);
        if (ret < 0)
            return ret;
        s->state = READING;
        cat.next += (off_t)s->len;
        cat.reads++;
        todo[n++] = s;
    }
    return submit(todo, n);
}

/* Collect every finished request; a finished read becomes a write with --copy. 0, or
 * -errno of the first failed request (its message is printed here). */
static int reap(void)
{
    struct slot *writes[MAX_SLOTS];
    int nw = 0;
    for (int i = 0; i < cat.depth; i++) {
        struct slot *s = &cat.slots[i];
        if (s->state == IDLE)
            continue;
        ssize_t got = pa_result(&s->cb);
        if (got == -EINPROGRESS)
            continue;
        cat.busy--;
        const char *op = s->state == READING ? "read" : "write";
        enum state was = s->state;
        s->state = IDLE;
        if (got < 0 || (size_t)got != s->len) {
            char what[160];
            snprintf(what, sizeof(what), "%s of %zu bytes at offset %lld (fd %d), as aio_error/aio_return said",
                     op, s->len, (long long)s->off, s->cb.aio_fildes);
            cat.where = NULL; /* the message is printed here, where we know which request */
            if (got < 0) {
                fail(what, (int)got);
                return (int)got;
            }
            fprintf(stderr, "aio_cat: %s: only %zd bytes (did the file change?)\n", what, got);
            return -EIO;
        }
        if (was == READING && cat.out >= 0) {
            cat.where = "preparing a write (pa_prep)";
            int ret = pa_prep(&s->cb, LIO_WRITE, cat.out, cat.data + s->off, s->len, s->off,
                              cat.batch > 0 ? NULL : &cat.notify);
            if (ret < 0) {
                for (int k = 0; k < nw; k++)
                    writes[k]->state = IDLE; /* prepared, never submitted: nobody else has them */
                return ret;
            }
            s->state = WRITING;
            cat.writes++;
            writes[nw++] = s;
        }
    }
    cat.where = "submitting writes (pa_submit or pa_submit_batch)";
    return submit(writes, nw);
}

/* The whole read (and copy): refill, wait, reap, until nothing is left. 0 or -errno. */
static int run(void)
{
    for (;;) {
        cat.where = cat.batch > 0 ? "submitting reads (pa_prep, pa_submit_batch)" : "submitting reads (pa_prep, pa_submit)";
        int ret = start_reads();
        if (ret < 0)
            return ret;
        if (cat.busy == 0)
            break;
        cat.where = cat.mode == SUSPEND ? "waiting (pa_wait)" : cat.mode == THREAD ? "waiting for a callback"
                                                                                  : "waiting in the reactor (pa_signal_drain)";
        ret = wait_some();
        if (ret < 0)
            return ret;
        cat.where = "collecting results (pa_result)";
        ret = reap();
        if (ret < 0)
            return ret;
    }
    /* Every request is collected, but a notification may still be on its way (glibc
     * stores the result first, then notifies): wait for all, so that the counts below
     * are complete and no thread of glibc's is still busy with our data. */
    cat.where = "waiting for the last notifications";
    while (cat.notes_seen < cat.notes_expected) {
        int ret = wait_note();
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* On an error path: give every request in flight back before anything is freed. */
static void cancel_all(void)
{
    struct aiocb *list[MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < cat.depth; i++)
        if (cat.slots[i].state != IDLE)
            list[n++] = &cat.slots[i].cb;
    if (n > 0 && pa_cancel(list, n) < 0)
        fprintf(stderr, "aio_cat: could not cancel the requests in flight\n");
}

/* The summary, one "key: value" line each; the lab's tests read these lines. */
static void report(void)
{
    printf("max threads in flight: %d\n", cat.max_threads);
    if (cat.mode == SUSPEND)
        printf("aio_suspend: %ld calls\n", cat.waits);
    if (cat.mode == THREAD) {
        int n = atomic_load(&cat.callbacks), distinct = 0;
        for (int i = 0; i < n && i < MAX_TIDS; i++) {
            int seen = 0;
            for (int j = 0; j < i && !seen; j++)
                seen = cat.cb_tids[j] == cat.cb_tids[i];
            distinct += !seen;
        }
        printf("callbacks: %d on %d threads, %d on the main thread\n", n, distinct, atomic_load(&cat.on_main));
    }
    if (cat.mode == REACTOR)
        printf("signals: %ld in %ld reactor wake-ups\n", cat.signals, cat.wakeups);
    if (cat.batch > 0)
        printf("lio_listio: %ld calls for %ld requests\n", cat.batches, cat.reads + cat.writes);
    printf("read: %lld bytes in %ld requests, crc32 %08x\n", (long long)cat.size, cat.reads,
           look_crc32((const unsigned char *)cat.data, (size_t)cat.size));
    if (cat.out >= 0)
        printf("wrote: %lld bytes in %ld requests to %s\n", (long long)cat.size, cat.writes, cat.out_name);
}

/* Print how to call us; returns 2, the exit status of a usage error. */
static int usage(void)
{
    fprintf(stderr, "usage: aio_cat FILE|--bad-fd [--notify suspend|thread|reactor] [--depth N] [--batch N]\n"
                    "               [--chunk BYTES] [--fds K] [--copy OUT]\n");
    return 2;
}

/* A number for an option, within [lo, hi]; -1 when it is not one. */
static long number(const char *text, long lo, long hi)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    return (*text != '\0' && *end == '\0' && v >= lo && v <= hi) ? v : -1;
}

/* Parse argv into cat. 0, or 2 (usage). */
static int parse(int argc, char **argv, const char **file, int *bad_fd)
{
    cat.depth = 4;
    cat.chunk = 64 * 1024;
    cat.nfds = 1;
    for (int i = 0; i < MAX_FDS; i++)
        cat.fds[i] = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        if (strcmp(a, "--bad-fd") == 0) {
            *bad_fd = 1;
            continue;
        }
        if (a[0] != '-') {
            *file = a;
            continue;
        }
        if (v == NULL)
            return usage();
        i++;
        if (strcmp(a, "--notify") == 0 && strcmp(v, "suspend") == 0)
            cat.mode = SUSPEND;
        else if (strcmp(a, "--notify") == 0 && strcmp(v, "thread") == 0)
            cat.mode = THREAD;
        else if (strcmp(a, "--notify") == 0 && strcmp(v, "reactor") == 0)
            cat.mode = REACTOR;
        else if (strcmp(a, "--depth") == 0 && (n = number(v, 1, MAX_SLOTS)) > 0)
            cat.depth = (int)n;
        else if (strcmp(a, "--batch") == 0 && (n = number(v, 1, MAX_SLOTS)) > 0)
            cat.batch = (int)n;
        else if (strcmp(a, "--chunk") == 0 && (n = number(v, 512, 16L << 20)) > 0)
            cat.chunk = (size_t)n;
        else if (strcmp(a, "--fds") == 0 && (n = number(v, 1, MAX_FDS)) > 0)
            cat.nfds = (int)n;
        else if (strcmp(a, "--copy") == 0)
            cat.out_name = v;
        else
            return usage();
    }
    if ((*file == NULL) == !*bad_fd)
        return usage();
    if (cat.batch > 0)
        cat.depth = cat.batch; /* a batch at a time: its N requests are the ones in flight */
    return 0;
}

/* Open FILE nfds times (or, for --bad-fd, find a closed descriptor) and get the memory. */
static int open_input(const char *file, int bad_fd)
{
    if (bad_fd) {
        /* A number far above those this program opens (the signalfd, the epoll fd...),
         * taken and given back at once: a descriptor that is surely closed. */
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        int high = fcntl(fd, F_DUPFD_CLOEXEC, 64);
        int err = errno;
        close(fd);
        if (high < 0)
            return -err;
        close(high);
        cat.fds[0] = high;
        cat.nfds = 1;
        cat.size = (off_t)cat.chunk;
    } else {
        for (int i = 0; i < cat.nfds; i++) {
            cat.fds[i] = open(file, O_RDONLY | O_CLOEXEC);
            if (cat.fds[i] < 0)
                return -errno;
        }
        struct stat st;
        if (fstat(cat.fds[0], &st) < 0)
            return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size > MAX_SIZE)
            return -EINVAL;
        cat.size = st.st_size;
    }
    cat.data = malloc(cat.size > 0 ? (size_t)cat.size : 1);
    return cat.data == NULL ? -ENOMEM : 0;
}

/* The notification every request (or batch) asks for. 0 or -errno. */
static int set_up_notify(void)
{
    if (cat.mode == SUSPEND)
        return pa_notify_none(&cat.notify);
    if (cat.mode == THREAD) {
        if (sem_init(&cat.sem, 0, 0) < 0)
            return -errno;
        return pa_notify_thread(&cat.notify, on_done, &cat);
    }
    /* REACTOR: block SIGRTMIN first (before glibc starts a thread), then wait for it
     * in the reactor through a signalfd. */
    cat.sfd = pa_signal_fd(SIGRTMIN);
    if (cat.sfd < 0)
        return cat.sfd;
    int ret = rx_create(&cat.rx);
    if (ret < 0)
        return ret;
    ret = rx_add(cat.rx, cat.sfd, RX_READABLE, on_signal, &cat);
    if (ret < 0)
        return ret;
    return pa_notify_signal(&cat.notify, SIGRTMIN, &cat);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int bad_fd = 0;
    if (parse(argc, argv, &file, &bad_fd) != 0)
        return 2;
    cat.main_tid = gettid();
    int status = 1, ret = open_input(file, bad_fd);
    if (ret < 0) {
        if (ret == -EINVAL)
            fprintf(stderr, "aio_cat: %s: not a regular file of at most %ld MiB\n", file, MAX_SIZE >> 20);
        else
            fail(file, ret);
        goto out;
    }
    if (cat.out_name != NULL) {
        cat.out = open(cat.out_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (cat.out < 0) {
            fail(cat.out_name, -errno);
            goto out;
        }
    }
    ret = set_up_notify();
    if (ret < 0) {
        fail(cat.mode == SUSPEND ? "pa_notify_none" : cat.mode == THREAD ? "pa_notify_thread"
                                                                         : "setting up the reactor (pa_signal_fd, pa_notify_signal)", ret);
        goto out;
    }
    ret = run();
    if (ret < 0) {
        if (ret == -ETIMEDOUT)
            fprintf(stderr, "aio_cat: no request finished within %d s: were they submitted, and does the "
                            "sigevent say how to tell us (pa_notify_%s)?\n", WAIT_MS / 1000,
                    cat.mode == THREAD ? "thread" : cat.mode == REACTOR ? "signal" : "none");
        else if (cat.where != NULL)
            fail(cat.where, ret);
        cancel_all();
        goto out;
    }
    report();
    status = 0;
out:
    for (int i = 0; i < cat.nfds && !bad_fd; i++)
        if (cat.fds[i] >= 0)
            close(cat.fds[i]);
    if (cat.out >= 0)
        close(cat.out);
    rx_destroy(cat.rx);
    if (cat.sfd >= 0)
        close(cat.sfd);
    free(cat.data);
    return status;
}
