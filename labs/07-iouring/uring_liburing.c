/* Your copy of c/uring/uring_liburing.c: edit it, then run `make lab7`. (Generated; see docs/ARCHITECTURE.md.) */
/* ur_liburing: the same io_uring calls through liburing (<liburing.h>, link with -luring). */
#include "uring.h"

#include <errno.h>
#include <liburing.h> /* its own copy of the kernel's io_uring.h, and the helpers */
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* liburing is what uring_raw.c does, packaged: io_uring_queue_init makes the ring and its
 * three mmaps, io_uring_get_sqe hands out the next free SQE (NULL when the ring is full),
 * io_uring_prep_read fills it, io_uring_submit publishes the tail with the same
 * store-release and calls io_uring_enter (or, with SQPOLL, only when the poller sleeps),
 * io_uring_for_each_cqe walks the CQEs after a load-acquire of the tail, and
 * io_uring_cq_advance gives them back with a store-release of the head. Like libaio, its
 * functions return -errno themselves; they do not set errno. */

struct ur_backend {
    struct io_uring ring; /* liburing's view of the ring: fd, mapped rings, cached indices */
    int ready;            /* io_uring_queue_init succeeded: io_uring_queue_exit is due */
};

static void lib_close(struct ur_backend *b);

static int lib_open(struct ur_backend **out, unsigned entries, unsigned flags, unsigned sq_idle_ms,
                    struct ur_info *info)
{
    struct ur_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    if (flags & UR_SQPOLL) {
        p.flags |= IORING_SETUP_SQPOLL;
        p.sq_thread_idle = sq_idle_ms;
    }
    int ret;
    /* TODO(lab7): io_uring_queue_init_params(entries, &b->ring, &p): io_uring_setup and the
     * mmaps in one call, p filled in as io_uring_setup left it. It returns 0 or
     * -errno: on failure keep it in ret and go to out; on success set b->ready (so
     * lib_close calls io_uring_queue_exit). */
    (void)entries;
    ret = -ENOSYS;
    goto out;
    *info = (struct ur_info){
        .ring_fd = b->ring.ring_fd, .sq_entries = p.sq_entries, .cq_entries = p.cq_entries,
        .features = p.features, .setup_flags = p.flags, .sq_ring_bytes = b->ring.sq.ring_sz,
        /* liburing records the shared size for both rings when they share one mapping */
        .cq_ring_bytes = (p.features & IORING_FEAT_SINGLE_MMAP) ? 0 : b->ring.cq.ring_sz,
        .sqes_bytes = p.sq_entries * sizeof(struct io_uring_sqe),
    };
    *out = b;
    return 0;
out:
    lib_close(b);
    return ret;
}

static int lib_prep(struct ur_backend *b, const struct ur_req *req)
{
    /* TODO(lab7): sqe = io_uring_get_sqe(&b->ring); NULL means the SQ ring is full: -EBUSY.
     * Fill it with io_uring_prep_read or io_uring_prep_write (fd, buf, len, off);
     * with req->fixed, io_uring_prep_read_fixed/write_fixed with buffer index 0,
     * and IOSQE_FIXED_FILE added to sqe->flags. Then
     * io_uring_sqe_set_data64(sqe, req->tag): it comes back as the CQE's
     * user_data. Return 0 (nothing is submitted yet). */
    (void)b;
    (void)req;
    return -ENOSYS;
}

static int lib_submit(struct ur_backend *b, unsigned wait_nr)
{
    /* TODO(lab7): One call does the batch: io_uring_submit_and_wait(&b->ring, wait_nr) when
     * wait_nr > 0 (submit everything prepared AND wait, in one io_uring_enter),
     * io_uring_submit(&b->ring) otherwise. Both return how many SQEs were
     * submitted, or -errno; retry -EINTR. */
    (void)b;
    (void)wait_nr;
    return -ENOSYS;
}

static int lib_reap(struct ur_backend *b, struct ur_done *done, int max)
{
    /* TODO(lab7): Walk the ready CQEs with io_uring_for_each_cqe(&b->ring, head, cqe) (a
     * macro: declare unsigned head and struct io_uring_cqe *cqe first), copying at
     * most max of them into done[] (tag from io_uring_cqe_get_data64, res,
     * flags); then give them all back in one store with
     * io_uring_cq_advance(&b->ring, n). No system call. Return n. */
    (void)b;
    (void)done;
    (void)max;
    return -ENOSYS;
}

static int lib_register_eventfd(struct ur_backend *b, int efd)
{
    /* TODO(lab7): io_uring_register_eventfd(&b->ring, efd) (0 or -errno). */
    (void)b;
    (void)efd;
    return -ENOSYS;
}

static int lib_register_fixed(struct ur_backend *b, void *buf, size_t len, const int *fds, unsigned nfds)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    int ret = io_uring_register_buffers(&b->ring, &iov, 1);
    return ret < 0 ? ret : io_uring_register_files(&b->ring, fds, nfds);
}

static void lib_close(struct ur_backend *b)
{
    if (b == NULL)
        return;
    if (b->ready)
        io_uring_queue_exit(&b->ring); /* unmaps and closes the ring; waits for no request in flight */
    free(b);
}

const struct ur_ops ur_liburing_ops = {
    .name = "liburing",
    .open = lib_open,
    .prep = lib_prep,
    .submit = lib_submit,
    .reap = lib_reap,
    .register_eventfd = lib_register_eventfd,
    .register_fixed = lib_register_fixed,
    .close = lib_close,
};
