/* ur: the part of io_uring both backends share — the depth bound, counters, the eventfd, a probe. */
#include "uring.h"

#include <errno.h>
#include <linux/io_uring.h> /* struct io_uring_params, for ur_probe */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

int ur_probe(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    long fd = syscall(SYS_io_uring_setup, 1, &p);
    if (fd < 0)
        return -errno;
    close((int)fd); /* nothing was mapped: closing the fd frees the ring */
    return 0;
}

const struct ur_ops *ur_ops_named(const char *name)
{
    if (name != NULL && strcmp(name, "raw") == 0)
        return &ur_raw_ops;
    if (name != NULL && strcmp(name, "liburing") == 0)
        return &ur_liburing_ops;
    return NULL;
}

int ur_create(struct ur **out, const struct ur_ops *ops, int depth, unsigned flags, unsigned sq_idle_ms)
{
    if (ops == NULL || depth < 1 || depth > UR_MAX_DEPTH)
        return -EINVAL;
    struct ur *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    /* SQ entries = depth: never more in flight than the SQ holds, and the CQ ring (twice
     * as big) always has room for every completion, so it never overflows. With SQPOLL,
     * twice that: the poller moves the SQ head only at the end of a batch, so the CQEs of
     * a batch can be reaped (and their slots refilled) while the SQEs of that batch still
     * occupy the ring. A batch holds at most `depth` SQEs (an SQE cannot complete before
     * it is taken), so depth more entries always leave room. */
    unsigned entries = (unsigned)depth * ((flags & UR_SQPOLL) ? 2 : 1);
    int ret = ops->open(&u->be, entries, flags, sq_idle_ms, &u->info);
    if (ret < 0) {
        free(u);
        return ret;
    }
    u->ops = ops;
    u->flags = flags;
    u->depth = depth;
    u->efd = -1;
    *out = u;
    return 0;
}

void ur_destroy(struct ur *u)
{
    if (u == NULL)
        return;
    u->ops->close(u->be); /* does not wait for what is in flight: the caller has reaped it all */
    if (u->efd >= 0)
        close(u->efd);
    free(u);
}

int ur_queue(struct ur *u, int write, int fd, void *buf, size_t len, uint64_t off, uint64_t tag)
{
    if (len > UINT32_MAX)
        return -EINVAL;
    if (u->in_flight >= u->depth)
        return -EBUSY; /* the depth bound: reap something first */
    struct ur_req req = {
        .write = write, .fd = fd, .buf = buf, .len = (unsigned)len, .off = off, .tag = tag,
        .fixed = (u->flags & UR_FIXED) != 0,
    };
    int ret = u->ops->prep(u->be, &req);
    if (ret < 0)
        return ret;
    u->prepared++;
    u->in_flight++;
    if (u->in_flight > u->st.max_in_flight)
        u->st.max_in_flight = u->in_flight;
    return 0;
}

int ur_submit(struct ur *u, unsigned wait_nr)
{
    if (wait_nr > (unsigned)u->in_flight)
        wait_nr = (unsigned)u->in_flight; /* waiting for more than can come would never end */
    if (u->prepared == 0 && wait_nr == 0)
        return 0;
    int ret = u->ops->submit(u->be, wait_nr);
    if (ret < 0)
        return ret;
    u->st.submit_calls++;
    u->st.submitted += ret;
    if (ret > u->st.max_batch)
        u->st.max_batch = ret;
    /* What the kernel did not take stays in the SQ ring and goes with the next submit. */
    u->prepared -= ret < u->prepared ? ret : u->prepared;
    return ret;
}

int ur_reap(struct ur *u, struct ur_done *done, int max)
{
    int got = u->ops->reap(u->be, done, max);
    if (got < 0)
        return got;
    u->in_flight -= got;
    u->st.reaped += got;
    return got;
}

int ur_use_eventfd(struct ur *u)
{
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0)
        return -errno;
    int ret = u->ops->register_eventfd(u->be, efd);
    if (ret < 0) {
        close(efd);
        return ret;
    }
    u->efd = efd;
    return efd;
}

long ur_eventfd_drain(struct ur *u)
{
    uint64_t count = 0;
    while (read(u->efd, &count, sizeof(count)) < 0) {
        if (errno == EAGAIN)
            return 0; /* already reset: another wake-up read it */
        if (errno != EINTR)
            return -errno;
    }
    u->st.eventfd_reads++;
    return (long)count;
}

int ur_register_fixed(struct ur *u, void *buf, size_t len, const int *fds, unsigned nfds)
{
    return u->ops->register_fixed(u->be, buf, len, fds, nfds);
}
