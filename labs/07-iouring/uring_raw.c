/* Your copy of c/uring/uring_raw.c: edit it, then run `make lab7`. (Generated; see docs/ARCHITECTURE.md.) */
/* ur_raw: io_uring by hand — io_uring_setup, three mmaps, C11 atomics on the ring indices, io_uring_enter. */
#include "uring.h"

#include <errno.h>
#include <linux/io_uring.h> /* the kernel's own structs: io_uring_params, io_uring_sqe, io_uring_cqe */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* glibc has no wrappers for io_uring_setup, io_uring_enter and io_uring_register:
 * syscall(2) makes them (-1 and errno on failure, which we turn into -errno).
 *
 * Who writes what, and the one rule of ordering that follows:
 *   SQ ring: we write the SQEs and the tail; the kernel writes the head once it has
 *            read (consumed) SQEs. CQ ring: the kernel writes the CQEs and the tail;
 *            we write the head once we have read CQEs.
 * Whoever publishes an index does it with a store-RELEASE (everything written before
 * is visible to whoever sees the new index), and whoever reads the other side's index
 * does it with a load-ACQUIRE (everything the other side wrote before it is visible to
 * us). The kernel does the same on its side (smp_store_release / smp_load_acquire).
 * On x86 these compile to plain moves, but they also stop the COMPILER from moving our
 * SQE writes after the tail store; on ARM they are real barrier instructions. */

struct ur_backend {
    int fd;                      /* the ring, from io_uring_setup (close-on-exec) */
    unsigned setup_flags;        /* IORING_SETUP_* it was made with */
    void *sq_map;                /* mmap of the SQ ring (IORING_OFF_SQ_RING) */
    size_t sq_map_len;
    void *cq_map;                /* mmap of the CQ ring (== sq_map with IORING_FEAT_SINGLE_MMAP) */
    size_t cq_map_len;
    struct io_uring_sqe *sqes;   /* mmap of the SQE array (IORING_OFF_SQES) */
    size_t sqes_len;
    /* Inside the SQ ring (addresses from the offsets io_uring_setup returned in sq_off): */
    unsigned *sq_head;           /* the kernel's: SQEs before it have been consumed */
    unsigned *sq_tail;           /* ours: SQEs before it are published to the kernel */
    unsigned *sq_flags;          /* the kernel's: IORING_SQ_NEED_WAKEUP (SQPOLL's poller sleeps) */
    unsigned *sq_array;          /* ring slot -> SQE index (we set slot i -> SQE i once) */
    unsigned sq_mask;            /* entries - 1: ring slot of index n is n & mask */
    unsigned sq_entries;
    unsigned sq_pending;         /* our private tail: SQEs filled, maybe not yet published */
    /* Inside the CQ ring (cq_off): */
    unsigned *cq_head;           /* ours: CQEs before it have been read */
    unsigned *cq_tail;           /* the kernel's: CQEs before it are complete */
    unsigned cq_mask;
    struct io_uring_cqe *cqes;   /* the CQE array, inside the CQ ring's mapping */
};

static void raw_close(struct ur_backend *b);

/* Map the three regions of a ring io_uring_setup made, and find the indices in them.
 * p: what io_uring_setup wrote. 0 or -errno (what was mapped is unmapped by raw_close). */
static int raw_map(struct ur_backend *b, const struct io_uring_params *p)
{
    /* TODO(lab7): The SQ ring's size is p->sq_off.array + p->sq_entries * sizeof(unsigned) (the
     * index array is its last part), the CQ ring's p->cq_off.cqes + p->cq_entries *
     * sizeof(struct io_uring_cqe). With IORING_FEAT_SINGLE_MMAP in p->features both
     * live in ONE mapping (map the larger size once, set cq_map = sq_map and
     * cq_map_len = 0). mmap each with PROT_READ | PROT_WRITE, MAP_SHARED |
     * MAP_POPULATE, the ring's fd b->fd and the offsets IORING_OFF_SQ_RING,
     * IORING_OFF_CQ_RING and IORING_OFF_SQES (the SQE array: p->sq_entries *
     * sizeof(struct io_uring_sqe)); MAP_FAILED means -errno (leave the pointer NULL).
     * Then point sq_head, sq_tail, sq_flags and sq_array at sq_map + the sq_off
     * offsets, read the mask from sq_map + sq_off.ring_mask, likewise the cq_
     * fields (cqes at cq_map + cq_off.cqes), and fill sq_array[i] = i for every
     * entry: ring slot i always uses SQE i, so the SQE to fill next is
     * sqes[sq_pending & sq_mask]. Return 0. */
    (void)b;
    (void)p;
    return -ENOSYS;
}

static int raw_open(struct ur_backend **out, unsigned entries, unsigned flags, unsigned sq_idle_ms,
                    struct ur_info *info)
{
    struct ur_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    if (flags & UR_SQPOLL) {
        p.flags |= IORING_SETUP_SQPOLL;
        p.sq_thread_idle = sq_idle_ms;
    }
    int ret;
    /* TODO(lab7): Create the ring: syscall(SYS_io_uring_setup, entries, &p). It returns the
     * ring's fd (keep it in b->fd: raw_close closes it) and fills p: the sizes it
     * chose (p.sq_entries, p.cq_entries), p.features, and the offsets of every
     * field inside the rings (p.sq_off, p.cq_off), which raw_map needs. On -1,
     * ret = -errno and go to out. */
    (void)entries;
    ret = -ENOSYS;
    goto out;
    b->setup_flags = p.flags;
    b->sq_entries = p.sq_entries;
    ret = raw_map(b, &p);
    if (ret < 0)
        goto out;
    *info = (struct ur_info){
        .ring_fd = b->fd, .sq_entries = p.sq_entries, .cq_entries = p.cq_entries, .features = p.features,
        .setup_flags = p.flags, .sq_ring_bytes = b->sq_map_len, .cq_ring_bytes = b->cq_map_len,
        .sqes_bytes = b->sqes_len,
    };
    *out = b;
    return 0;
out:
    raw_close(b);
    return ret;
}

static int raw_prep(struct ur_backend *b, const struct ur_req *req)
{
    /* TODO(lab7): Is there a free SQE? Load the kernel's SQ head with
     * __atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE): SQEs before it have been read
     * by the kernel, so they may be reused. If b->sq_pending - head has reached
     * b->sq_entries, the ring is full: -EBUSY. Otherwise fill the SQE
     * b->sqes[b->sq_pending & b->sq_mask] from zero: opcode IORING_OP_READ or
     * IORING_OP_WRITE (with req->fixed: IORING_OP_READ_FIXED/WRITE_FIXED, buf_index
     * 0, and IOSQE_FIXED_FILE in flags), fd, addr (the buffer's address as a
     * uint64_t), len, off, user_data = req->tag. Then count it in b->sq_pending:
     * it is filled but NOT published; the kernel cannot see it until raw_submit
     * moves the shared tail. Return 0. */
    (void)b;
    (void)req;
    return -ENOSYS;
}

static int raw_submit(struct ur_backend *b, unsigned wait_nr)
{
    /* TODO(lab7): Publish: to_submit = b->sq_pending - *b->sq_tail (only we write the tail, so
     * a plain read is fine), then __atomic_store_n(b->sq_tail, b->sq_pending,
     * __ATOMIC_RELEASE): every SQE written before is visible to the kernel before
     * the new tail is. Then decide on io_uring_enter's flags: wait_nr > 0 needs
     * IORING_ENTER_GETEVENTS. With IORING_SETUP_SQPOLL in b->setup_flags the poller
     * thread reads the tail itself: a full fence (__atomic_thread_fence with
     * __ATOMIC_SEQ_CST, so the tail store cannot pass the next load), then if
     * *b->sq_flags (__atomic_load_n, relaxed) has IORING_SQ_NEED_WAKEUP the poller
     * sleeps: add IORING_ENTER_SQ_WAKEUP. With SQPOLL, no flag and no wait: no
     * system call at all, return to_submit. Otherwise
     * syscall(SYS_io_uring_enter, b->fd, to_submit, wait_nr, flags, NULL, 0),
     * retried on EINTR; return what it returns (how many SQEs the kernel took)
     * or -errno. */
    (void)b;
    (void)wait_nr;
    return -ENOSYS;
}

static int raw_reap(struct ur_backend *b, struct ur_done *done, int max)
{
    /* TODO(lab7): head = *b->cq_head (ours: a plain read), tail = __atomic_load_n(b->cq_tail,
     * __ATOMIC_ACQUIRE): the CQEs between them are complete and their contents
     * visible. Copy up to max of them, b->cqes[head & b->cq_mask], into done[]
     * (tag = user_data, res, flags), then give their slots back to the kernel with
     * __atomic_store_n(b->cq_head, head + n, __ATOMIC_RELEASE): after that store the
     * kernel may overwrite them, so it must come after the copies. Return n. */
    (void)b;
    (void)done;
    (void)max;
    return -ENOSYS;
}

static int raw_register(struct ur_backend *b, unsigned opcode, const void *arg, unsigned nr)
{
    if (syscall(SYS_io_uring_register, b->fd, opcode, arg, nr) < 0)
        return -errno;
    return 0;
}

static int raw_register_eventfd(struct ur_backend *b, int efd)
{
    /* TODO(lab7): Register the eventfd: io_uring_register(fd, IORING_REGISTER_EVENTFD, &efd, 1)
     * (raw_register makes that call and returns 0 or -errno). From then on the
     * kernel adds to the eventfd whenever it posts CQEs, so an epoll reactor can
     * sleep until there is something to reap. */
    (void)b;
    (void)efd;
    return -ENOSYS;
}

static int raw_register_fixed(struct ur_backend *b, void *buf, size_t len, const int *fds, unsigned nfds)
{
    /* The kernel pins buf's pages once (not at every request) and keeps references to
     * the files (no fd lookup per request): the "fixed" extension. */
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    int ret = raw_register(b, IORING_REGISTER_BUFFERS, &iov, 1);
    return ret < 0 ? ret : raw_register(b, IORING_REGISTER_FILES, fds, nfds);
}

static void raw_close(struct ur_backend *b)
{
    if (b == NULL)
        return;
    if (b->sqes != NULL)
        munmap(b->sqes, b->sqes_len);
    if (b->cq_map != NULL && b->cq_map != b->sq_map)
        munmap(b->cq_map, b->cq_map_len);
    if (b->sq_map != NULL)
        munmap(b->sq_map, b->sq_map_len);
    if (b->fd >= 0)
        close(b->fd); /* the last reference: the kernel tears the ring down later, in a worker; it
                       * does not wait for requests in flight, so their buffers must outlive this */
    free(b);
}

const struct ur_ops ur_raw_ops = {
    .name = "raw",
    .open = raw_open,
    .prep = raw_prep,
    .submit = raw_submit,
    .reap = raw_reap,
    .register_eventfd = raw_register_eventfd,
    .register_fixed = raw_register_fixed,
    .close = raw_close,
};
