/* Your copy of c/uring/uring_cat.c: edit it, then run `make lab7`. (Generated; see docs/ARCHITECTURE.md.) */
/* uring_cat: read a file (and copy it) with io_uring — raw rings or liburing, in batches, or in the reactor. */
/*
 * Usage: uring_cat FILE [--api raw|liburing] [--direct|--buffered] [--depth N] [--batch B]
 *                       [--block BYTES] [--reactor] [--sqpoll] [--sq-idle-ms MS] [--write OUT]
 *                       [--fixed] [--offset O] [--buffer-offset K] [--unchecked] [--pause]
 *                       [--stop-after N]
 *
 * Reads FILE into memory with up to --depth (8) requests of --block (64 KiB) bytes in
 * flight and prints its CRC-32 (the number Python's zlib.crc32 gives). No thread of ours
 * is created; whatever threads /proc shows besides the main one are the kernel's.
 *
 *   --api raw|liburing  uring_raw.c (syscall(2) and the mmapped rings) or uring_liburing.c
 *   --direct            O_DIRECT (the default); --buffered: through the page cache
 *   --batch B           wait for B completions per io_uring_enter (default 4): one system
 *                       call hands over every new SQE and collects a batch of CQEs
 *   --reactor           completions bump an eventfd registered with the ring, in the lab-2
 *                       reactor: the thread sleeps in epoll_wait, reaps the CQ ring from
 *                       memory, and io_uring_enter never waits
 *   --sqpoll            IORING_SETUP_SQPOLL: the kernel's iou-sqp-PID thread takes the SQEs;
 *                       with --reactor, no io_uring_enter at all. It polls for --sq-idle-ms
 *                       (2000) after the last request before it sleeps: a CPU spent spinning
 *   --write OUT         then write the bytes to OUT with io_uring writes (a copy). Buffered
 *                       writes that would block go to the kernel's iou-wrk-PID workers
 *   --fixed             extension: register the buffer and the files once (READ_FIXED)
 *   --offset O, --buffer-offset K   start at O / read into memory K bytes past an aligned
 *                       address: with O_DIRECT both must be aligned, or it is refused here
 *                       (exit 2) before any request is queued
 *   --unchecked         skip that check: the kernel's answer then comes back in the CQE
 *   --stop-after N      stop at the copy's Nth write completion, as a failed request would,
 *                       with the others still in flight: drain() must wait for them before
 *                       the ring is closed and the buffer freed
 *   --pause             at the end, before the ring is closed, print "paused: ..." and wait
 *                       for a line on stdin: time to look at /proc/PID/task
 *
 * Exit status: 0 done, 1 failed, 2 refused (or usage), 3 io_uring is blocked on this machine.
 *
 * Try:  cd build/data && ../bin/uring_cat uring-lab7.bin --buffered --write copy.bin --pause
 *       strace -f -e trace=io_uring_setup,io_uring_enter,io_uring_register,clone3 ../bin/uring_cat uring-lab7.bin
 */
#include "uring.h"
#include "../kaio/ka.h"
#include "../common/look.h"
#include "../reactor/rx.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SIZE (256L << 20) /* the whole file is kept in memory: 256 MiB at most */
#define STUCK_S 20            /* no end after this long: something waits forever; stop */
#define LAB "lab 7: uring_raw.c, uring_liburing.c, uring_cat.c"

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

static struct cat cat;

static int fail(const char *what, int err)
{
    fprintf(stderr, "uring_cat: %s: %s%s\n", what, strerror(-err), look_errno_name(-err, LAB));
    return 1;
}

static void on_stuck(int sig)
{
    (void)sig;
    static const char msg[] = "uring_cat: no end after 20 s: something waits for what never comes (was the SQ "
                              "tail published before io_uring_enter? is the eventfd registered? are CQEs reaped?)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) { /* nothing more to do: we are leaving */ }
    _exit(1);
}

/* Queue one request of len bytes at off for slot, after the O_DIRECT check. 0 or -errno. */
static int queue(int slot, uint64_t off, size_t len)
{
    char why[256];
    void *buf = cat.data + (off - cat.start);
    if (!cat.unchecked) {
        int ret = ka_check(&cat.al, cat.direct, buf, (off_t)off, len, why, sizeof(why));
        if (ret < 0) {
            fprintf(stderr, "uring_cat: refused before any request was queued: %s\n", why);
            cat.refused = 1;
            cat.where = NULL;
            return ret;
        }
    }
    cat.where = "queueing a request (ur_queue, ops->prep)";
    int ret = ur_queue(cat.u, cat.write, cat.fd, buf, len, off, (uint64_t)slot);
    if (ret < 0)
        return ret;
    cat.slots[slot] = (struct slot){ off, len, 1 };
    return 0;
}

/* Queue the next blocks into every free slot: SQEs only, no system call. How many, or -errno. */
static int fill(void)
{
    int n = 0;
    while (cat.next < cat.end && cat.nfree > 0) {
        size_t len = cat.block;
        /* Reads always ask for a whole block (O_DIRECT lengths must be aligned; the kernel
         * stops at end of file); a buffered write writes exactly the bytes that are left. */
        if (cat.write && !cat.direct && cat.next + len > cat.end)
            len = (size_t)(cat.end - cat.next);
        int ret = queue(cat.free[cat.nfree - 1], cat.next, len);
        if (ret < 0)
            return ret;
        cat.nfree--;
        cat.next += len;
        n++;
    }
    return n;
}

/* One CQE: count its bytes; a short read at end of file ends its slot, a short transfer
 * elsewhere is queued again for the rest. 0 or -errno (the message is printed). */
static int settle(const struct ur_done *d)
{
    if (d->tag >= (uint64_t)cat.u->depth || !cat.slots[d->tag].busy) {
        fprintf(stderr, "uring_cat: a CQE with user_data %llu, which is no request in flight: was it read twice "
                "(the CQ head not moved past it), or the tag not set in the SQE?\n", (unsigned long long)d->tag);
        cat.where = NULL;
        return -EPROTO;
    }
    int slot = (int)d->tag;
    struct slot s = cat.slots[slot];
    const char *op = cat.write ? "write" : "read";
    if (d->res < 0) {
        fprintf(stderr, "uring_cat: the kernel answered in the CQE of the %s of %zu bytes at offset %llu: %s "
                "(res %d)\n", op, s.len, (unsigned long long)s.off, strerror(-d->res), d->res);
        cat.where = NULL;
        return d->res;
    }
    if (cat.write && ++cat.writes_done == cat.stop_after) {
        fprintf(stderr, "uring_cat: stopped on purpose at write completion %ld (--stop-after), %d requests "
                "still in flight\n", cat.writes_done, cat.u->in_flight);
        cat.where = NULL;
        return -ECANCELED;
    }
    size_t got = (size_t)d->res;
    cat.bytes += (long)got;
    cat.slots[slot].busy = 0;
    if (got == s.len || (!cat.write && got > 0 && s.off + got >= cat.end)) {
        cat.short_eof += got != s.len; /* the end of the file: this slot is done */
        cat.free[cat.nfree++] = slot;
        return 0;
    }
    if (got == 0) {
        fprintf(stderr, "uring_cat: a %s at offset %llu moved 0 bytes before the end (%llu)\n", op,
                (unsigned long long)s.off, (unsigned long long)cat.end);
        cat.where = NULL;
        return -EIO;
    }
    cat.resubmitted++; /* short in the middle: ask again for the rest, same slot */
    return queue(slot, s.off + got, s.len - got);
}

/* Take every CQE there is (no system call) and settle each. How many, or -errno. */
static int reap_all(void)
{
    struct ur_done done[64];
    int total = 0, got;
    cat.where = "reaping (ur_reap, ops->reap)";
    while ((got = ur_reap(cat.u, done, 64)) > 0) {
        for (int i = 0; i < got; i++) {
            int ret = settle(&done[i]);
            if (ret < 0)
                return ret;
        }
        total += got;
    }
    return got < 0 ? got : total;
}

static int busy(void)
{
    return cat.next < cat.end || cat.u->in_flight > 0;
}

/* Without the reactor: the thread waits inside io_uring_enter. 0 or -errno. */
static int run_wait(void)
{
    /* TODO(lab7): The batching loop. While busy(): fill() the free slots (SQEs only, no system
     * call), then ONE ur_submit(cat.u, cat.batch) that hands every new SQE to the
     * kernel AND waits for a batch of completions (ur_submit waits for no more than
     * are in flight), then reap_all() (it reads the CQEs from memory and settles
     * each: bytes counted, slot freed or queued again), and go round. Before the
     * submit set cat.where = "submitting (ur_submit, ops->submit)" for the error
     * message. Return 0 at the end, or the first -errno. */
    return -ENOSYS;
}

/* Before the ring and the buffer go: wait until the kernel is done with every request
 * still in flight (after an error, or a stop). 0 or -errno. */
static int drain(void)
{
    struct ur_done done[64];
    /* TODO(lab7): Closing the ring's fd does NOT wait for its requests: the kernel tears the
     * ring down later, in a worker of its own, and a read still in flight may
     * write into cat.data after main has freed it (a write may read freed memory).
     * So wait for them first: while cat.u->in_flight > 0, ur_submit(cat.u,
     * cat.u->in_flight) (one io_uring_enter that waits for all of them; ur_submit
     * never waits for more than are in flight), then ur_reap(cat.u, done, 64) until
     * it returns 0: their results no longer matter, but the reap is what counts
     * them out of in_flight. Return 0, or the first -errno. */
    (void)done;
    return -ENOSYS;
}

/* The eventfd is readable: CQEs arrived. Reap them, refill, submit without waiting. */
static void on_cqes(struct rx *rx, int fd, unsigned events, void *arg)
{
    (void)rx;
    (void)fd;
    (void)events;
    (void)arg;
    cat.wakeups++;
    /* The eventfd's count does not matter (the kernel may bump it once for several CQEs):
     * the CQ ring says what finished. Reaping is a read of shared memory, not a system
     * call; the submit hands the refilled slots over WITHOUT waiting, since in the
     * reactor the one place to sleep is epoll_wait. */
    cat.where = "reading the eventfd (ur_eventfd_drain)";
    long n = ur_eventfd_drain(cat.u);
    int ret = n < 0 ? (int)n : reap_all();
    if (ret >= 0)
        ret = fill();
    if (ret >= 0) {
        cat.where = "submitting (ur_submit, ops->submit)";
        ret = ur_submit(cat.u, 0);
    }
    if (ret < 0)
        cat.error = ret;
}

/* With the reactor: the eventfd registered with the ring, the thread in epoll_wait. */
static int run_reactor(void)
{
    int ret;
    if (cat.rx == NULL) {
        cat.where = "registering an eventfd with the ring (ur_use_eventfd, ops->register_eventfd)";
        int efd = ur_use_eventfd(cat.u);
        if (efd < 0)
            return efd;
        cat.where = "creating the reactor";
        if ((ret = rx_create(&cat.rx)) < 0 || (ret = rx_add(cat.rx, efd, RX_READABLE, on_cqes, NULL)) < 0)
            return ret;
    }
    ret = fill();
    if (ret >= 0) {
        cat.where = "submitting (ur_submit, ops->submit)";
        ret = ur_submit(cat.u, 0);
    }
    double quiet = ka_now();
    while (ret >= 0 && cat.error == 0 && busy()) {
        long before = cat.u->st.reaped;
        ret = rx_run_once(cat.rx, 1000); /* the one place this thread sleeps: epoll_wait */
        if (cat.u->st.reaped != before)
            quiet = ka_now();
        else if (ka_now() - quiet > 10) {
            cat.where = "waiting 10 s for the eventfd (registered with the ring? CQEs reaped?)";
            ret = -ETIMEDOUT;
        }
    }
    return ret < 0 ? ret : cat.error;
}

/* One phase: read [start, end) of fd into data, or write it from data. 0 or -errno. */
static int run(int reactor, int write, int fd, uint64_t start, uint64_t end)
{
    cat.write = write;
    cat.fd = fd;
    cat.start = cat.next = start;
    cat.end = end;
    cat.bytes = 0;
    cat.nfree = cat.u->depth;
    for (int i = 0; i < cat.nfree; i++)
        cat.free[i] = i;
    cat.where = "the batching loop (run_wait in uring_cat.c)";
    return reactor ? run_reactor() : run_wait();
}

static int say_blocked(int err)
{
    fprintf(stderr, "uring_cat: io_uring_setup: %s: io_uring is blocked on this machine. Docker's default "
            "seccomp profile forbids it (run the container with --security-opt seccomp=unconfined), or the "
            "kernel turns it off (sysctl kernel.io_uring_disabled=0 turns it back on). `make doctor` checks "
            "it; lab 7 cannot run here.\n", strerror(-err));
    return 3;
}

static void usage(void)
{
    fprintf(stderr, "usage: uring_cat FILE [--api raw|liburing] [--direct|--buffered] [--depth N] [--batch B]\n"
                    "                      [--block BYTES] [--reactor] [--sqpoll] [--sq-idle-ms MS] [--write OUT]\n"
                    "                      [--fixed] [--offset O] [--buffer-offset K] [--unchecked] [--pause]\n"
                    "                      [--stop-after N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const struct ur_ops *ops = &ur_raw_ops;
    const char *name = NULL, *out_name = NULL;
    int depth = 8, reactor = 0, pause = 0, status = 1, ret, fds[2] = { -1, -1 };
    unsigned flags = 0, idle_ms = 2000;
    long block = 64 * 1024, batch = 4, offset = 0, buffer_offset = 0;
    void *mem = NULL;
    char line[512];
    cat.direct = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--api") && v) {
            if ((ops = ur_ops_named(argv[++i])) == NULL)
                usage();
        } else if (!strcmp(a, "--direct")) cat.direct = 1;
        else if (!strcmp(a, "--buffered")) cat.direct = 0;
        else if (!strcmp(a, "--reactor")) reactor = 1;
        else if (!strcmp(a, "--sqpoll")) flags |= UR_SQPOLL;
        else if (!strcmp(a, "--fixed")) flags |= UR_FIXED;
        else if (!strcmp(a, "--unchecked")) cat.unchecked = 1;
        else if (!strcmp(a, "--pause")) pause = 1;
        else if (!strcmp(a, "--depth") && v) depth = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v) batch = atol(argv[++i]);
        else if (!strcmp(a, "--block") && v) block = atol(argv[++i]);
        else if (!strcmp(a, "--sq-idle-ms") && v) idle_ms = (unsigned)atol(argv[++i]);
        else if (!strcmp(a, "--write") && v) out_name = argv[++i];
        else if (!strcmp(a, "--offset") && v) offset = atol(argv[++i]);
        else if (!strcmp(a, "--buffer-offset") && v) buffer_offset = atol(argv[++i]);
        else if (!strcmp(a, "--stop-after") && v) cat.stop_after = atol(argv[++i]);
        else if (a[0] != '-' && name == NULL) name = a;
        else usage();
    }
    if (name == NULL || depth < 1 || depth > UR_MAX_DEPTH || batch < 1 || block < 1 || block > (1L << 30) ||
        offset < 0 || buffer_offset < 0 || buffer_offset > 4096 || (out_name && offset))
        usage();
    cat.block = (size_t)block;
    cat.batch = (unsigned)batch;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction stuck = { .sa_handler = on_stuck };
    sigaction(SIGALRM, &stuck, NULL);

    fds[0] = open(name, O_RDONLY | O_CLOEXEC | (cat.direct ? O_DIRECT : 0));
    struct stat st;
    if (fds[0] < 0) {
        fail(cat.direct ? "open with O_DIRECT (tmpfs refuses it: use a directory on ext4/xfs)" : "open", -errno);
        goto out;
    }
    if (fstat(fds[0], &st) < 0 || st.st_size > MAX_SIZE) {
        fprintf(stderr, "uring_cat: %s: not a readable file of at most %ld bytes\n", name, MAX_SIZE);
        goto out;
    }
    if ((ret = ka_alignment(fds[0], &cat.al)) < 0) {
        fail("statx (what does O_DIRECT need here?)", ret);
        goto out;
    }
    ret = ur_create(&cat.u, ops, depth, flags, idle_ms);
    if (ret < 0) {
        /* The stub of lab 7 says ENOSYS too: ask the kernel directly before blaming it. */
        int probe = ret == -EPERM || ret == -EACCES || ret == -ENOSYS ? ur_probe() : 0;
        if (probe < 0)
            status = say_blocked(probe);
        else
            fail(ops == &ur_raw_ops ? "creating the ring (raw_open and raw_map in uring_raw.c)"
                                    : "creating the ring (lib_open in uring_liburing.c)", ret);
        goto out;
    }
    struct ur_info *ri = &cat.u->info;
    printf("uring_cat: api %s, %s, depth %d, batch %ld, block %zu%s%s%s, pid %d\n", ops->name,
           cat.direct ? "O_DIRECT" : "buffered", depth, batch, cat.block, reactor ? ", reactor" : "",
           (flags & UR_SQPOLL) ? ", sqpoll" : "", (flags & UR_FIXED) ? ", fixed" : "", (int)getpid());
    if (ri->cq_ring_bytes == 0)
        snprintf(line, sizeof(line), "SQ and CQ rings %zu bytes (one mapping: IORING_FEAT_SINGLE_MMAP)",
                 ri->sq_ring_bytes);
    else
        snprintf(line, sizeof(line), "SQ ring %zu bytes, CQ ring %zu bytes", ri->sq_ring_bytes, ri->cq_ring_bytes);
    printf("ring: fd %d, SQ %u entries, CQ %u entries; mmaps: %s, SQEs %zu bytes; setup flags 0x%x, "
           "features 0x%x\n", ri->ring_fd, ri->sq_entries, ri->cq_entries, line, ri->sqes_bytes, ri->setup_flags,
           ri->features);
    printf("alignment: memory %zu, offset %zu (%s)\n", cat.al.mem, cat.al.off, cat.al.source);

    /* Whole blocks past the end (reads ask for full blocks), aligned for O_DIRECT. */
    size_t span = (size_t)st.st_size > (size_t)offset ? (size_t)st.st_size - (size_t)offset : 0;
    size_t room = (span / cat.block + 1) * cat.block + 4096;
    if (posix_memalign(&mem, 4096, room) != 0) {
        fprintf(stderr, "uring_cat: out of memory\n");
        goto out;
    }
    memset(mem, 0, room);
    cat.data = (char *)mem + buffer_offset;
    if (out_name != NULL) {
        fds[1] = open(out_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (cat.direct ? O_DIRECT : 0), 0644);
        if (fds[1] < 0) {
            fail(out_name, -errno);
            goto out;
        }
    }
    if ((flags & UR_FIXED) && (ret = ur_register_fixed(cat.u, mem, room, fds, out_name ? 2 : 1)) < 0) {
        fail("registering the buffer and files (ops->register_fixed)", ret);
        goto out;
    }

    alarm(STUCK_S);
    double t0 = ka_now();
    ret = run(reactor, 0, (flags & UR_FIXED) ? 0 : fds[0], (uint64_t)offset, (uint64_t)st.st_size);
    double t1 = ka_now();
    if (ret < 0)
        goto failed;
    long total = cat.bytes;
    printf("read: %ld bytes in %.6f s, crc32 %08x\n", total, t1 - t0, look_crc32((unsigned char *)cat.data,
                                                                                 (size_t)total));
    if (out_name != NULL) {
        ret = run(reactor, 1, (flags & UR_FIXED) ? 1 : fds[1], 0, (uint64_t)total);
        if (ret < 0)
            goto failed;
        /* O_DIRECT wrote whole blocks: cut the file back to the bytes that were read. */
        if (ftruncate(fds[1], total) < 0) {
            fail("ftruncate", -errno);
            goto out;
        }
        printf("write: %ld bytes in %.6f s to %s\n", total, ka_now() - t1, out_name);
    }
    alarm(0);
    struct ur_stats *s = &cat.u->st;
    printf("submit: %ld calls, %ld SQEs, largest batch %d, max in flight %d (depth %d)\n", s->submit_calls,
           s->submitted, s->max_batch, s->max_in_flight, depth);
    printf("completions: %ld CQEs, short reads at eof %ld, resubmitted %ld\n", s->reaped, cat.short_eof,
           cat.resubmitted);
    if (reactor)
        printf("reactor: %ld wakeups, %ld eventfd reads\n", cat.wakeups, s->eventfd_reads);
    int n = look_threads(getpid(), line, sizeof(line));
    printf("threads: %d:%s\n", n, line);
    if (pause) {
        /* The ring is still open: its kernel threads are still there to be seen. */
        printf("paused: pid %d; look at /proc/%d/task/*/comm, then press Enter\n", (int)getpid(), (int)getpid());
        while (fgets(line, sizeof(line), stdin) != NULL && strchr(line, '\n') == NULL)
            continue;
    }
    status = 0;
    goto out;
failed:
    if (cat.refused)
        status = 2;
    else if (cat.where != NULL)
        fail(cat.where, ret);
out:
    /* Requests still in flight (an error stopped the loop) own their part of mem until
     * their CQEs come: closing the ring does not wait for them. If the wait fails, leak
     * the ring and the buffer rather than free memory the kernel may still write into. */
    if (cat.u != NULL && cat.u->in_flight > 0) {
        alarm(STUCK_S);
        if ((ret = drain()) < 0) {
            fail("waiting for the requests in flight (drain in uring_cat.c); the ring and buffer are leaked", ret);
            return 1;
        }
    }
    alarm(0);
    rx_destroy(cat.rx);
    ur_destroy(cat.u);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(mem);
    return status;
}
