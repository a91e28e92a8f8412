/* uring_cat.h: the parts of uring_cat, and the one state they share.
 *
 * uring_cat is one program in four files, so that lab 7's file holds one idea:
 *
 *   uring_cat.c          (lab 7: yours) how the reader waits for the kernel: run_wait, the
 *                        batching loop (one io_uring_enter submits AND waits for a batch), and
 *                        drain (wait for every request in flight before the ring goes); main
 *   uring_cat_requests.c (given) the requests: slots, the O_DIRECT check, short transfers
 *                        queued again, a CQE settled; one phase (a read, or the copy's write)
 *   uring_cat_reactor.c  (given) the other way to wait: an eventfd registered with the ring,
 *                        in the lab-2 reactor (on_cqes, run_reactor)
 *   uring_cat_setup.c    (given) the command line, the file, the ring, the buffer, the fixed
 *                        files, the report lines, --pause, the watchdog, the clean-up
 *
 * One reader runs at a time, on one thread: its state is one global, `cat`.
 */
#ifndef URING_CAT_H
#define URING_CAT_H

#include "uring.h"
#include "../kaio/ka.h"
#include "../common/reader_args.h"

#include <stdint.h>

struct rx; /* the lab-2 reactor (reactor/rx.h) */

#define STUCK_S 20 /* no end after this long: something waits forever; stop (SIGALRM) */

/* What the command line asked for (uring_cat_setup.c: cat_options): the readers' flags
 * (common/reader_args.h: --api, --direct|--buffered, --depth, --batch, --block, --reactor,
 * --unchecked, --pause, --offset, --buffer-offset), and uring_cat's own. */
struct cat_options {
    const char *name;         /* FILE */
    struct reader_options r;
    const struct ur_ops *ops; /* --api raw|liburing */
    const char *out_name;     /* --write OUT, or NULL */
    unsigned flags;           /* UR_SQPOLL (--sqpoll), UR_FIXED (--fixed) */
    long idle_ms;             /* --sq-idle-ms */
    long stop_after;          /* --stop-after: stop at the copy's Nth write completion (0: never) */
};

/* One request slot: tag = slot number. */
struct slot {
    uint64_t off; /* where in the file */
    size_t len;   /* bytes asked */
    int busy;     /* queued or in flight (its CQE not settled yet) */
};

struct cat {
    struct ur *u;
    struct rx *rx;                   /* --reactor: made on first use */
    struct ka_align al;              /* what O_DIRECT needs for FILE */
    int direct, unchecked, refused;
    int write;                       /* this phase writes (else it reads) */
    int fd;                          /* what this phase's requests name: an fd or a fixed-file index */
    uint64_t start, next, end;       /* this phase: first offset, the next to queue, the end */
    size_t block;
    unsigned batch;
    char *data;                      /* data[i] is the byte at offset start + i */
    struct slot slots[UR_MAX_DEPTH]; /* tag = slot number */
    int free[UR_MAX_DEPTH];          /* free slot numbers: free[0..nfree) */
    int nfree;
    long bytes, short_eof, resubmitted, wakeups;
    long stop_after, writes_done;    /* --stop-after N: stop at the copy's Nth write completion */
    int error;                       /* a -errno met in a reactor callback */
    const char *where;               /* the step that failed, for the message (NULL: printed) */
};

extern struct cat cat;

/* uring_cat.c (lab 7) */
int run_wait(void);  /* the batching loop: 0 or -errno */
int drain(void);     /* wait for every request in flight: 0 or -errno */

/* uring_cat_requests.c */
int fill(void);      /* queue the next blocks into every free slot (no system call): how many, or -errno */
int reap_all(void);  /* take every CQE there is (no system call), settle each: how many, or -errno */
int busy(void);      /* blocks left to queue, or requests in flight */
/* One phase: read [start, end) of fd into cat.data, or write it from there, waiting in
 * io_uring_enter (run_wait) or in the reactor (run_reactor). 0 or -errno. */
int cat_phase(int reactor, int write, int fd, uint64_t start, uint64_t end);
/* "uring_cat: WHAT: strerror (ENAME)" on stderr; returns 1, the exit status of a failure. */
int cat_fail(const char *what, int err);

/* uring_cat_reactor.c */
int run_reactor(void); /* the eventfd in the lab-2 reactor: 0 or -errno */

/* uring_cat_setup.c */
void cat_options(struct cat_options *opt, int argc, char **argv); /* exits 2 on a bad command line */
int cat_open(const struct cat_options *opt);     /* the file, the ring, the buffer: 0 or the exit status */
int cat_transfer(const struct cat_options *opt); /* the read, then --write's copy: 0 or the exit status */
void cat_report(const struct cat_options *opt);  /* submit:, completions:, reactor:, threads:, --pause */
void cat_close(void);                            /* the reactor, the ring, the files, the buffer */

#endif
