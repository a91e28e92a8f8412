/* ka_raw: kernel AIO by raw system calls — io_setup, io_submit, io_getevents, io_destroy via syscall(2). */
#include "ka.h"

#include <errno.h>
#include <linux/aio_abi.h> /* the kernel's own struct iocb and struct io_event */
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* glibc has no wrappers for these five calls: syscall(SYS_io_setup, ...) makes them.
 * syscall(2) returns -1 and sets errno, like any libc call; we turn that into -errno. */

struct ka_backend {
    aio_context_t ctx;       /* the kernel's context id (0 until io_setup fills it in) */
    int slots;               /* iocbs[0..slots) */
    struct iocb *iocbs;      /* one per slot: must not move while the kernel owns it */
    struct iocb **list;      /* io_submit takes an array of POINTERS to iocbs */
    struct io_event *events; /* io_getevents fills these */
};

static void raw_close(struct ka_backend *b);

static int raw_open(struct ka_backend **out, int nr_events, int slots)
{
    struct ka_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->slots = slots;
    b->iocbs = calloc((size_t)slots, sizeof(*b->iocbs));
    b->list = calloc((size_t)slots, sizeof(*b->list));
    b->events = calloc((size_t)slots, sizeof(*b->events));
    int ret = -ENOMEM;
    if (b->iocbs == NULL || b->list == NULL || b->events == NULL)
        goto out;
    /* BEGIN SOLUTION lab5
     * TODO: Create the context: syscall(SYS_io_setup, nr_events, &b->ctx). The kernel
     *       wants b->ctx to be 0 on entry (calloc did that) and writes the new context's
     *       id there. On -1, ret = -errno and go to out (which frees b).
     * STUB: (void)nr_events;
     * STUB: ret = -ENOSYS;
     * STUB: goto out;
     */
    if (syscall(SYS_io_setup, nr_events, &b->ctx) < 0) {
        ret = -errno;
        goto out;
    }
    /* END SOLUTION */
    *out = b;
    return 0;
out:
    raw_close(b);
    return ret;
}

static int raw_prep(struct ka_backend *b, int slot, int write, int fd, void *buf, size_t len, off_t off, int efd)
{
    if (slot < 0 || slot >= b->slots)
        return -EINVAL;
    /* BEGIN SOLUTION lab5
     * TODO: Fill b->iocbs[slot] from zero: aio_lio_opcode IOCB_CMD_PREAD (or
     *       IOCB_CMD_PWRITE when write), aio_fildes, aio_buf (the address as a __u64),
     *       aio_nbytes, aio_offset, and aio_data = slot (the kernel copies it into the
     *       io_event, which is how a completion says which request it is). If efd >= 0,
     *       set IOCB_FLAG_RESFD in aio_flags and efd in aio_resfd: the kernel adds 1 to
     *       that eventfd when the request completes. Return 0.
     * STUB: (void)write;
     * STUB: (void)fd;
     * STUB: (void)buf;
     * STUB: (void)len;
     * STUB: (void)off;
     * STUB: (void)efd;
     * STUB: return -ENOSYS;
     */
    struct iocb *cb = &b->iocbs[slot];
    memset(cb, 0, sizeof(*cb));
    cb->aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    cb->aio_fildes = (__u32)fd;
    cb->aio_buf = (__u64)(uintptr_t)buf;
    cb->aio_nbytes = len;
    cb->aio_offset = off;
    cb->aio_data = (__u64)slot;
    if (efd >= 0) {
        cb->aio_flags = IOCB_FLAG_RESFD;
        cb->aio_resfd = (__u32)efd;
    }
    return 0;
    /* END SOLUTION */
}

static int raw_submit(struct ka_backend *b, const int *slots, int n)
{
    if (n < 0 || n > b->slots)
        return -EINVAL;
    /* BEGIN SOLUTION lab5
     * TODO: Point b->list[i] at the iocb of slots[i] for each of the n, then
     *       syscall(SYS_io_submit, b->ctx, n, b->list). It returns how many iocbs the
     *       kernel took (the first ones; maybe fewer than n), or -1 with errno (EAGAIN:
     *       the context has no room for even one). Return that count, or -errno.
     * STUB: (void)slots;
     * STUB: return -ENOSYS;
     */
    for (int i = 0; i < n; i++)
        b->list[i] = &b->iocbs[slots[i]];
    long took = syscall(SYS_io_submit, b->ctx, (long)n, b->list);
    return took < 0 ? -errno : (int)took;
    /* END SOLUTION */
}

static int raw_reap(struct ka_backend *b, int min_nr, int max, struct ka_done *done, int timeout_ms)
{
    if (max > b->slots)
        max = b->slots;
    /* BEGIN SOLUTION lab5
     * TODO: syscall(SYS_io_getevents, b->ctx, min_nr, max, b->events, timeout): the
     *       timeout is a struct timespec * (NULL: wait as long as it takes), which
     *       ka_timeout(timeout_ms, &ts) gives (ka.h). Retry on EINTR. For each event returned, copy
     *       its slot (the aio_data you set in prep) and its res (bytes, or -errno of the
     *       I/O) into done[i]. Return the count, or -errno.
     * STUB: (void)min_nr;
     * STUB: (void)done;
     * STUB: (void)timeout_ms;
     * STUB: return -ENOSYS;
     */
    struct timespec ts;
    long got;
    do
        got = syscall(SYS_io_getevents, b->ctx, (long)min_nr, (long)max, b->events, ka_timeout(timeout_ms, &ts));
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    for (long i = 0; i < got; i++) {
        done[i].slot = (int)b->events[i].data;
        done[i].res = (long)b->events[i].res;
    }
    return (int)got;
    /* END SOLUTION */
}

static void raw_close(struct ka_backend *b)
{
    if (b == NULL)
        return;
    if (b->ctx != 0)
        syscall(SYS_io_destroy, b->ctx); /* waits for requests still in flight */
    free(b->iocbs);
    free(b->list);
    free(b->events);
    free(b);
}

const struct ka_ops ka_raw_ops = {
    .name = "raw",
    .open = raw_open,
    .prep = raw_prep,
    .submit = raw_submit,
    .reap = raw_reap,
    .close = raw_close,
};
