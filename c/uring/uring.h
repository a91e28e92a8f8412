/* ur: io_uring in a few small functions — a ring, SQEs in, CQEs out, an eventfd for the reactor. */
#ifndef UR_H
#define UR_H

/*
 * io_uring is two rings of memory shared by the program and the kernel, set up by one
 * system call (io_uring_setup) and mapped into the process with mmap:
 *
 *      program (user space)                         kernel
 *      --------------------                         ------
 *      fill SQE  ──►  SQ ring  [ 0 1 2 3 ...]  ──►  takes SQEs from head to tail,
 *      then move the   ^head (kernel) ^tail (you)   starts each request
 *      SQ tail
 *
 *      read CQE  ◄──  CQ ring  [ 0 1 2 3 ...]  ◄──  writes a CQE per finished request
 *      then move the   ^head (you)   ^tail (kernel) (user_data, res), then moves the CQ tail
 *      CQ head
 *
 * Each side writes only its own index: the program the SQ tail and the CQ head, the
 * kernel the SQ head and the CQ tail. Because the other side may run on another CPU at
 * the same moment, the order of memory writes matters: an SQE must be completely written
 * before the new SQ tail is visible (a store-release of the tail), and a CQE may only be
 * read after the CQ tail that covers it has been seen (a load-acquire of the tail). A
 * compiler barrier is not enough on CPUs that reorder memory (ARM, POWER); C11 atomics
 * (__atomic_store_n(..., __ATOMIC_RELEASE)) say exactly what is needed everywhere.
 *
 * The life of one request, the way this module spells it:
 *
 *     ur_create(&u, &ur_raw_ops, depth, flags, 0);    io_uring_setup + mmap of the rings
 *     ur_queue(u, 0, fd, buf, len, off, tag);         fill an SQE (the kernel cannot see it yet)
 *     ur_submit(u, wait_nr);                          publish the SQ tail, io_uring_enter: the
 *                                                     kernel takes every new SQE in ONE call
 *                                                     (a batch), and maybe waits for wait_nr CQEs
 *     ur_reap(u, done, max);                          read CQEs from memory: NO system call
 *
 * Unlike kernel AIO (lab 5) any file works, buffered or O_DIRECT: when a request cannot
 * finish without blocking (a buffered write, an O_DIRECT write that allocates blocks),
 * the kernel hands it to a worker thread of its own, `iou-wrk-PID`, created inside this
 * process without any clone() of ours: /proc/PID/task shows it, strace does not. With
 * UR_SQPOLL the kernel also starts `iou-sqp-PID`, a thread that polls the SQ ring, so
 * submitting needs no system call at all (it spins on a CPU while it waits for work).
 *
 * Two ways to do it, behind one table of functions (struct ur_ops), as in lab 5:
 * uring_raw.c makes the system calls itself with syscall(2) and <linux/io_uring.h>;
 * uring_liburing.c uses liburing (io_uring_queue_init, io_uring_get_sqe,
 * io_uring_submit_and_wait, io_uring_for_each_cqe). liburing ships its own copy of the
 * kernel header, so each backend lives in its own file.
 *
 * Ownership: from ur_queue until ur_reap hands its CQE back, a request's buffer belongs
 * to the kernel (a worker or the disk may write into it at any moment). Closing the
 * ring does not end that: the kernel cancels what it can and tears the ring down later,
 * in a worker of its own, without waiting for the rest. So wait for every request in
 * flight (ur_submit with wait_nr = in_flight, ur_reap) before ur_destroy, and before
 * the buffers are freed: uring_cat's drain() does. Errors: functions
 * return >= 0 or -errno; a request's own error arrives later, as res < 0 in its CQE.
 * -ENOSYS means "not written yet (lab 7)". Threads: one thread uses a struct ur; no locks.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UR_MAX_DEPTH 1024 /* requests one ring may have in flight (the SQ gets this many entries) */

/* Flags of ur_create. */
enum {
    UR_SQPOLL = 1 << 0, /* IORING_SETUP_SQPOLL: a kernel thread (iou-sqp-PID) takes SQEs from the
                           ring by itself; io_uring_enter only to wake it or to wait */
    UR_FIXED = 1 << 1,  /* extension: requests name a registered file by index and read into the
                           registered buffer (ur_register_fixed): IORING_OP_READ_FIXED */
};

/* What io_uring_setup answered, for messages and pictures. */
struct ur_info {
    int ring_fd;           /* the ring's file descriptor (always close-on-exec) */
    unsigned sq_entries;   /* SQ ring size: a power of two >= what was asked */
    unsigned cq_entries;   /* CQ ring size: twice the SQ by default */
    unsigned features;     /* IORING_FEAT_* the kernel has */
    unsigned setup_flags;  /* IORING_SETUP_* the ring was made with */
    size_t sq_ring_bytes;  /* the SQ ring's mmap (head, tail, flags, the index array) */
    size_t cq_ring_bytes;  /* the CQ ring's mmap; 0 when it shares the SQ ring's (IORING_FEAT_SINGLE_MMAP) */
    size_t sqes_bytes;     /* the SQE array's mmap (64 bytes per entry) */
};

/* One request, as the backends prepare it. */
struct ur_req {
    int write;      /* 0: IORING_OP_READ; 1: IORING_OP_WRITE */
    int fd;         /* the file; when fixed, an index into the registered files */
    void *buf;      /* where the bytes go (or come from) */
    unsigned len;   /* how many (io_uring takes 32 bits) */
    uint64_t off;   /* where in the file */
    uint64_t tag;   /* the SQE's user_data: the kernel copies it into the CQE */
    int fixed;      /* registered file and buffer 0 (READ_FIXED/WRITE_FIXED, IOSQE_FIXED_FILE) */
};

/* One finished request, as ur_reap hands it back. */
struct ur_done {
    uint64_t tag;   /* the tag given to ur_queue (the CQE's user_data) */
    int32_t res;    /* bytes transferred (fewer at end of file), or -errno of the I/O */
    uint32_t flags; /* the CQE's flags (IORING_CQE_F_*; 0 for plain reads and writes) */
};

struct ur_backend; /* a ring and its bookkeeping: private to uring_raw.c / uring_liburing.c */

/* One way to drive io_uring. Every function returns >= 0 or -errno. */
struct ur_ops {
    const char *name; /* "raw" or "liburing" */
    /* io_uring_setup with `entries` SQ entries (UR_SQPOLL: with a polling thread that
     * sleeps after sq_idle_ms without work; 0: the kernel's default, 1 s), map the rings,
     * describe them in *info. *out is freed by close. */
    int (*open)(struct ur_backend **out, unsigned entries, unsigned flags, unsigned sq_idle_ms,
                struct ur_info *info);
    /* Fill the next free SQE from req. The kernel does not see it until submit.
     * -EBUSY: the SQ ring is full (submit first). */
    int (*prep)(struct ur_backend *b, const struct ur_req *req);
    /* Hand every prepared SQE to the kernel, and wait until at least wait_nr CQEs are
     * there (0: do not wait). With SQPOLL no system call is made unless the poller sleeps
     * or wait_nr > 0. Returns how many SQEs the kernel took (SQPOLL: how many were
     * published for the poller), or -errno. */
    int (*submit)(struct ur_backend *b, unsigned wait_nr);
    /* Take up to max CQEs from the CQ ring into done[] (no system call); how many. */
    int (*reap)(struct ur_backend *b, struct ur_done *done, int max);
    /* IORING_REGISTER_EVENTFD: the kernel adds to eventfd efd whenever it posts CQEs. */
    int (*register_eventfd)(struct ur_backend *b, int efd);
    /* Extension (given): register buf[0..len) as fixed buffer 0 and fds[0..nfds) as the
     * fixed files (IORING_REGISTER_BUFFERS, IORING_REGISTER_FILES). */
    int (*register_fixed)(struct ur_backend *b, void *buf, size_t len, const int *fds, unsigned nfds);
    /* Unmap and close the ring. It does not wait for requests in flight (the kernel tears
     * the ring down later): reap them all first, or their buffers are still the kernel's. NULL ok. */
    void (*close)(struct ur_backend *b);
};

extern const struct ur_ops ur_raw_ops;      /* uring_raw.c: syscall(2) + <linux/io_uring.h> + mmap */
extern const struct ur_ops ur_liburing_ops; /* uring_liburing.c: <liburing.h> (link -luring) */

/* Counters: what the program prints, what the graders read. */
struct ur_stats {
    long submit_calls;  /* ur_submit calls that handed SQEs over or waited */
    long submitted;     /* SQEs the kernel took, in all */
    int max_batch;      /* the most SQEs one ur_submit handed over */
    int max_in_flight;  /* the most requests queued or in flight at once (never more than depth) */
    long reaped;        /* CQEs taken by ur_reap */
    long eventfd_reads; /* reads of the eventfd that returned a count */
};

/* An io_uring reader/writer: a ring, a bound on what is in flight, counters. */
struct ur {
    const struct ur_ops *ops; /* raw or liburing */
    struct ur_backend *be;    /* its ring */
    struct ur_info info;      /* what io_uring_setup said */
    unsigned flags;           /* UR_SQPOLL, UR_FIXED */
    int depth;                /* at most this many requests between ur_queue and ur_reap */
    int prepared;             /* SQEs filled since the last ur_submit (not yet the kernel's) */
    int in_flight;            /* requests queued and not yet reaped (prepared included) */
    int efd;                  /* eventfd registered with the ring (ur_use_eventfd), -1: none */
    struct ur_stats st;
};

/* Can this machine make an io_uring at all? One io_uring_setup of a tiny ring (closed at
 * once), made directly, whatever the backends do. 0, or -errno: -EPERM/-EACCES (seccomp
 * or kernel.io_uring_disabled), -ENOSYS (no io_uring in this kernel). */
int ur_probe(void);

/* The ops named "raw" or "liburing"; NULL for another name. (For ctypes callers.) */
const struct ur_ops *ur_ops_named(const char *name);

/* Make a ring for depth (1..UR_MAX_DEPTH) requests in flight. flags: UR_SQPOLL,
 * UR_FIXED; sq_idle_ms: see ur_ops.open. 0 or -errno of the backend's open. */
int ur_create(struct ur **out, const struct ur_ops *ops, int depth, unsigned flags, unsigned sq_idle_ms);

/* Close the ring and the eventfd, free. NULL ok. It does NOT wait for requests in flight:
 * their buffers stay the kernel's until their CQEs come, so wait for those first (see
 * the Ownership paragraph above). */
void ur_destroy(struct ur *u);

/* Queue a read (write != 0: a write) of len bytes at off of fd into buf, with tag:
 * fill an SQE; nothing reaches the kernel before ur_submit. With UR_FIXED, fd is an
 * index into the registered files and buf must lie in the registered buffer.
 * 0, -EBUSY (depth requests are already queued or in flight: reap first), -EINVAL
 * (len does not fit 32 bits), or -errno of ops->prep. */
int ur_queue(struct ur *u, int write, int fd, void *buf, size_t len, uint64_t off, uint64_t tag);

/* Hand the queued SQEs to the kernel in one go, and wait for at least wait_nr CQEs
 * (0: do not wait; never more than are in flight). Counts the batch. Returns how many
 * SQEs the kernel took, or -errno. */
int ur_submit(struct ur *u, unsigned wait_nr);

/* Take up to max finished requests (CQEs) into done[]: no system call, no waiting.
 * Returns how many (0: none yet), or -errno. */
int ur_reap(struct ur *u, struct ur_done *done, int max);

/* Create an eventfd (non-blocking, close-on-exec) and register it with the ring: the
 * kernel bumps it when it posts CQEs. Put it in a reactor (rx_add RX_READABLE). Returns
 * the fd (owned by u), or -errno. */
int ur_use_eventfd(struct ur *u);

/* The eventfd fired: reset its counter. Its value only says "CQEs arrived" (the kernel
 * may post several per bump): the CQ ring says which. The count, 0 if none, or -errno. */
long ur_eventfd_drain(struct ur *u);

/* Extension: register buf[0..len) and the files fds[0..nfds) once, so that requests
 * skip the kernel's per-request page pinning and file lookup (ur_create with UR_FIXED).
 * 0 or -errno. */
int ur_register_fixed(struct ur *u, void *buf, size_t len, const int *fds, unsigned nfds);

#endif
