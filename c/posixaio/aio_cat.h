/* aio_cat.h: what the files of aio_cat share — its state, and the functions between them.
 *
 * aio_cat.c           main: the command line's story, start to end
 * aio_cat_options.c   the command line into `cat`
 * aio_cat_notify.c    how glibc tells us a request is done: the three --notify modes
 * aio_cat_run.c       the requests: refill the slots, wait, reap, until the file is read
 * aio_cat_report.c    what it prints: the threads it sees, the summary, an error's line
 */
#ifndef AIO_CAT_H
#define AIO_CAT_H

#include "pa.h"
#include "../reactor/rx.h"

#include <semaphore.h>
#include <stdatomic.h>
#include <sys/types.h>

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

/* Everything aio_cat knows, in one place: the options, the file, the slots, the counts. */
struct cat {
    enum mode mode;
    int depth;                      /* slots in use */
    int batch;                      /* 0: one aio_read per request; N: lio_listio of N */
    size_t chunk;                   /* bytes per request */
    int fds[MAX_FDS], nfds;         /* FILE, opened nfds times (requests spread over them) */
    int out;                        /* --copy: where to write; -1 without */
    const char *out_name;           /* --copy OUT */
    const char *file;               /* FILE; NULL with --bad-fd */
    int bad_fd;                     /* --bad-fd: read from a descriptor that is closed */
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

/* The one aio_cat. Global, not on main's stack: a late notification thread may still touch
 * it while exit() runs, and main's frame is gone by then. */
extern struct cat cat;

/* aio_cat_options.c: fill cat's options from argv. 0, or -1 after saying what is wrong and
 * the usage line. */
int parse_options(int argc, char **argv);

/* aio_cat_notify.c */
int set_up_notify(void);    /* the sigevent of every request (or batch). 0 or -errno */
int wait_note(void);        /* wait for one notification (thread, reactor). 0 or -errno (-ETIMEDOUT) */
int wait_some(void);        /* sleep until something may be done, in the mode's way. 0 or -errno */

/* aio_cat_run.c */
int run(void);              /* the whole read (and copy). 0 or -errno; cat.where says where */
void cancel_all(void);      /* on an error path: give every request in flight back */

/* aio_cat_report.c */
int fail(const char *what, int err);   /* "aio_cat: what: strerror (ENAME)"; returns 1 */
void look_at_threads(void); /* /proc/self/task now: the count, and the first time the names */
void report(void);          /* the summary, one "key: value" line each */

#endif
