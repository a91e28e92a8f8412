/* ka: Linux kernel AIO (io_submit) in a few small functions — align, prepare, submit, reap, be woken. */
#ifndef KA_H
#define KA_H

/*
 * The life of one kernel asynchronous read, the way this module spells it:
 *
 *     ka_alignment(fd, &al);                   what O_DIRECT needs here (statx STATX_DIOALIGN)
 *     ka_check(&al, buf, off, len, ...);        refuse a misaligned request ourselves
 *     ka_create(&k, &ka_raw_ops, fd, ...);      io_setup: a context in the kernel
 *     ka_queue(k, slot, 0, buf, off, len);       prepare an iocb (nothing submitted yet)
 *     ka_submit(k);                             io_submit: up to `batch` iocbs per call, at
 *                                               most `depth` in flight; requeue what the
 *                                               kernel did not take (EAGAIN, fewer than asked)
 *     ka_reap(k, min, done, n, timeout_ms);     io_getevents: the finished ones
 *
 * Unlike glibc's aio.h (lab 4) there is no thread anywhere: the kernel queues the
 * request to the disk from inside io_submit and completes it from the disk's
 * interrupt. BUT only with O_DIRECT: on a buffered (page cache) file, io_submit does
 * the whole read itself before returning (caveat 1 of the talk; kaio_caveats measures
 * it). Completions can also bump an eventfd (ka_use_eventfd), which an epoll reactor
 * can watch: that is how an event loop uses kernel AIO with one thread.
 *
 * Two ways to make the same system calls, behind one table of functions (struct
 * ka_ops): ka_raw.c calls io_setup/io_submit/io_getevents/io_destroy with syscall(2)
 * and the kernel's own <linux/aio_abi.h>; ka_libaio.c calls libaio's wrappers
 * (<libaio.h>, io_prep_pread, io_set_eventfd). The two headers both define struct iocb,
 * so each backend lives in its own file and the rest of the code never sees an iocb.
 *
 * Ownership: from ka_submit until ka_reap hands a slot back, its buffer belongs to the
 * kernel (the disk writes into it by DMA with O_DIRECT): do not free or reuse it.
 * Errors: functions return >= 0 or -errno; print them with strerror(-ret). -ENOSYS
 * means "not written yet (lab 5)". Threads: one thread uses a struct ka; no locks.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h> /* struct timespec, for ka_timeout */

#define KA_MAX_SLOTS 1024 /* requests one struct ka can hold (queued + in flight) */

/* What O_DIRECT asks of a request on one file. */
struct ka_align {
    size_t mem;         /* the buffer's address must be a multiple of this */
    size_t off;         /* the file offset and the length must be multiples of this */
    const char *source; /* where the numbers came from, for messages ("statx STATX_DIOALIGN") */
};

/* One finished request, as ka_reap hands it back. */
struct ka_done {
    int slot;   /* the slot given to ka_queue */
    long res;   /* bytes transferred (fewer than asked at end of file), or -errno of the I/O */
};

struct ka_backend; /* a kernel AIO context and its iocbs: private to ka_raw.c / ka_libaio.c */

/* One way to make the kernel AIO system calls. Every function returns >= 0 or -errno. */
struct ka_ops {
    const char *name; /* "raw" or "libaio" */
    /* io_setup(nr_events) and room for `slots` iocbs; *out is freed by close. */
    int (*open)(struct ka_backend **out, int nr_events, int slots);
    /* Fill iocb number `slot`: a read (write != 0: a write) of len bytes at off of fd
     * into buf; aio_data = slot; if efd >= 0, the completion also adds 1 to eventfd efd. */
    int (*prep)(struct ka_backend *b, int slot, int write, int fd, void *buf, size_t len, off_t off, int efd);
    /* io_submit the iocbs of slots[0..n): how many the kernel took (maybe fewer than n:
     * the first ones), or -errno (-EAGAIN: none, the context is full). */
    int (*submit)(struct ka_backend *b, const int *slots, int n);
    /* io_getevents: wait for at least min_nr (0: do not wait) and at most max finished
     * requests, at most timeout_ms (-1: no limit); store them in done[]; how many. */
    int (*reap)(struct ka_backend *b, int min_nr, int max, struct ka_done *done, int timeout_ms);
    /* io_destroy (it waits for requests still in flight) and free. NULL allowed. */
    void (*close)(struct ka_backend *b);
};

extern const struct ka_ops ka_raw_ops;    /* ka_raw.c: syscall(2) + <linux/aio_abi.h> */
extern const struct ka_ops ka_libaio_ops; /* ka_libaio.c: <libaio.h> */

/* How a slot is doing. */
enum ka_state {
    KA_FREE,      /* yours */
    KA_QUEUED,    /* prepared by ka_queue, waiting for ka_submit (the kernel has not seen it) */
    KA_IN_FLIGHT, /* the kernel owns it and its buffer until ka_reap returns it */
};

/* Counters: what the program prints, what the graders read. */
struct ka_stats {
    long submit_calls;      /* io_submit calls made */
    long submitted;         /* iocbs the kernel accepted, in all */
    long partial;           /* io_submit calls that took fewer than asked (but some) */
    long eagain;            /* io_submit calls that failed with EAGAIN (the context was full) */
    double submit_seconds;  /* time spent inside io_submit, in all */
    double submit_max;      /* the longest single io_submit */
    long reaped;            /* requests finished and handed back by ka_reap */
    int max_in_flight;      /* the most requests in flight at once (never more than depth) */
    long eventfd_reads;     /* reads of the eventfd that returned a count */
};

/* A kernel AIO reader/writer: a context, slots, a FIFO of prepared requests. */
struct ka {
    const struct ka_ops *ops;        /* raw or libaio */
    struct ka_backend *be;           /* its context */
    int fd;                          /* the file (the caller's: not closed here) */
    int efd;                         /* eventfd for completions (ka_use_eventfd), -1: none */
    int depth;                       /* at most this many in flight */
    int batch;                       /* at most this many iocbs per io_submit */
    int nslots;                      /* slots 0..nslots-1 exist */
    enum ka_state state[KA_MAX_SLOTS];
    int queue[KA_MAX_SLOTS];         /* prepared slots in submission order: queue[0..nqueued) */
    int nqueued;
    int in_flight;                   /* slots the kernel owns now */
    struct ka_stats st;
};

/* What O_DIRECT needs for fd (any fd of a regular file): statx(STATX_DIOALIGN) where
 * the kernel and filesystem report it (Linux >= 6.1; stx_dio_offset_align 0 means
 * "O_DIRECT not supported on this file": -EOPNOTSUPP), else the fallback: the
 * filesystem block size st_blksize for both (a multiple of the device's logical block
 * size, so always safe, perhaps stricter than needed; the device's own BLKSSZGET would
 * need the block device opened, which needs root). Returns 0 or -errno. Given. */
int ka_alignment(int fd, struct ka_align *out);

/* May this request go to the kernel? direct == 0 (buffered file): always 0. With
 * O_DIRECT: buf a multiple of al->mem, off and len multiples of al->off, len > 0;
 * otherwise -EINVAL and a sentence in why[0..size) that names the rule broken and the
 * alignment needed ("offset 100 is not a multiple of 512, the O_DIRECT offset
 * alignment here (statx STATX_DIOALIGN)"). The kernel would only say EINVAL. */
int ka_check(const struct ka_align *al, int direct, const void *buf, off_t off, size_t len, char *why, size_t size);

/* io_setup a context for nr_events (> 0) with nslots slots (<= KA_MAX_SLOTS), depth
 * and batch >= 1 (depth <= nslots). fd is the file every request reads. 0 or -errno
 * (-EAGAIN: /proc/sys/fs/aio-max-nr reached; -ENOSYS: kernel AIO missing). Given. */
int ka_create(struct ka **out, const struct ka_ops *ops, int fd, int nr_events, int nslots, int depth, int batch);

/* io_destroy (waits for what is still in flight), close the eventfd, free. NULL ok. */
void ka_destroy(struct ka *k);

/* Create an eventfd (non-blocking, close-on-exec) that every request prepared from now
 * on bumps when it completes; register it in a reactor (rx_add RX_READABLE). Returns
 * the fd (owned by k), or -errno. */
int ka_use_eventfd(struct ka *k);

/* The eventfd fired: read its counter (how many completions since the last read) and
 * reset it. Returns the count, 0 if nothing was there (EAGAIN), or -errno. */
long ka_eventfd_drain(struct ka *k);

/* Prepare a read (write != 0: a write from buf) of len bytes at off in a FREE slot, and
 * append it to the queue (nothing is submitted yet). 0, -EINVAL (slot out of range),
 * -EBUSY (slot not FREE), or -errno of ops->prep. */
int ka_queue(struct ka *k, int slot, int write, void *buf, off_t off, size_t len);

/* Submit queued requests: io_submit calls of at most `batch` iocbs, never more than
 * `depth` in flight. What the kernel does not take (it returned fewer, or -EAGAIN)
 * stays queued, in order, for a later call (after a ka_reap made room). Returns how
 * many were submitted by this call (0: none could go now), or -errno of io_submit
 * (other than EAGAIN). */
int ka_submit(struct ka *k);

/* Collect finished requests (io_getevents): wait for at least min_nr (0: just look)
 * for at most timeout_ms (-1: no limit), store up to max in done[], and give their
 * slots back (FREE). Returns how many, or -errno. */
int ka_reap(struct ka *k, int min_nr, struct ka_done *done, int max, int timeout_ms);

/* One timed io_submit through the backend: updates st.submit_calls, submitted,
 * partial, eagain and the times. Returns what ops->submit returned. For ka_submit. */
int ka_io_submit(struct ka *k, const int *slots, int n);

/* Seconds on CLOCK_MONOTONIC. */
double ka_now(void);

/* The timeout io_getevents takes, for both backends: ts filled from timeout_ms and
 * returned, or NULL (no limit: wait as long as it takes) when timeout_ms < 0. */
struct timespec *ka_timeout(int timeout_ms, struct timespec *ts);

#endif
