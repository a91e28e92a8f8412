/* ka_libaio: the same kernel AIO calls through libaio (<libaio.h>, link with -laio). */
#include "ka.h"

#include <errno.h>
#include <libaio.h> /* its own struct iocb (same layout as the kernel's) and helpers */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* libaio is a thin library: io_setup, io_submit, io_getevents and io_destroy are the
 * system calls of ka_raw.c under the same names, plus inline helpers that fill an iocb
 * (io_prep_pread, io_set_eventfd). One difference to remember: libaio's functions
 * return -errno THEMSELVES (they do not set errno and return -1). liburing's examples
 * pair the two the same way. */

struct ka_backend {
    io_context_t ctx;        /* libaio's name for the kernel's context (NULL until io_setup) */
    int slots;               /* iocbs[0..slots) */
    struct iocb *iocbs;      /* one per slot: must not move while the kernel owns it */
    struct iocb **list;      /* io_submit takes an array of pointers */
    struct io_event *events; /* io_getevents fills these */
};

static void lib_close(struct ka_backend *b);

static int lib_open(struct ka_backend **out, int nr_events, int slots)
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
     * TODO: io_setup(nr_events, &b->ctx) (b->ctx must be NULL on entry: calloc did it).
     *       It returns 0 or -errno: on failure keep it in ret and go to out.
     * STUB: (void)nr_events;
     * STUB: ret = -ENOSYS;
     * STUB: goto out;
     */
    ret = io_setup(nr_events, &b->ctx);
    if (ret < 0)
        goto out;
    /* END SOLUTION */
    *out = b;
    return 0;
out:
    lib_close(b);
    return ret;
}

static int lib_prep(struct ka_backend *b, int slot, int write, int fd, void *buf, size_t len, off_t off, int efd)
{
    if (slot < 0 || slot >= b->slots)
        return -EINVAL;
    /* BEGIN SOLUTION lab5
     * TODO: io_prep_pread (or io_prep_pwrite when write) on b->iocbs[slot]: it zeroes
     *       the iocb and fills in the opcode, fd, buffer, length and offset. Then set its
     *       data field to the slot (a void *: (void *)(intptr_t)slot), which comes back
     *       in the io_event, and if efd >= 0 call io_set_eventfd (it sets
     *       IOCB_FLAG_RESFD and the fd for you). Return 0.
     * STUB: (void)write;
     * STUB: (void)fd;
     * STUB: (void)buf;
     * STUB: (void)len;
     * STUB: (void)off;
     * STUB: (void)efd;
     * STUB: return -ENOSYS;
     */
    struct iocb *cb = &b->iocbs[slot];
    if (write)
        io_prep_pwrite(cb, fd, buf, len, (long long)off);
    else
        io_prep_pread(cb, fd, buf, len, (long long)off);
    cb->data = (void *)(intptr_t)slot;
    if (efd >= 0)
        io_set_eventfd(cb, efd);
    return 0;
    /* END SOLUTION */
}

static int lib_submit(struct ka_backend *b, const int *slots, int n)
{
    if (n < 0 || n > b->slots)
        return -EINVAL;
    /* BEGIN SOLUTION lab5
     * TODO: Point b->list[i] at the iocb of slots[i], then io_submit(b->ctx, n,
     *       b->list): how many the kernel took (the first ones), or -errno (-EAGAIN:
     *       none, the context is full). Return it as it is.
     * STUB: (void)slots;
     * STUB: return -ENOSYS;
     */
    for (int i = 0; i < n; i++)
        b->list[i] = &b->iocbs[slots[i]];
    return io_submit(b->ctx, n, b->list);
    /* END SOLUTION */
}

static int lib_reap(struct ka_backend *b, int min_nr, int max, struct ka_done *done, int timeout_ms)
{
    if (max > b->slots)
        max = b->slots;
    /* BEGIN SOLUTION lab5
     * TODO: io_getevents(b->ctx, min_nr, max, b->events, timeout) with the timeout
     *       ka_timeout(timeout_ms, &ts) gives (NULL: no limit); it returns the
     *       count or -errno: retry -EINTR. For each event: done[i].slot from its data
     *       field, done[i].res from res (an unsigned long in libaio's struct: cast it to
     *       long to get -errno back). Return the count.
     * STUB: (void)min_nr;
     * STUB: (void)done;
     * STUB: (void)timeout_ms;
     * STUB: return -ENOSYS;
     */
    struct timespec ts;
    int got;
    do
        got = io_getevents(b->ctx, min_nr, max, b->events, ka_timeout(timeout_ms, &ts));
    while (got == -EINTR);
    if (got < 0)
        return got;
    for (int i = 0; i < got; i++) {
        done[i].slot = (int)(intptr_t)b->events[i].data;
        done[i].res = (long)b->events[i].res;
    }
    return got;
    /* END SOLUTION */
}

static void lib_close(struct ka_backend *b)
{
    if (b == NULL)
        return;
    if (b->ctx != NULL)
        io_destroy(b->ctx); /* waits for requests still in flight */
    free(b->iocbs);
    free(b->list);
    free(b->events);
    free(b);
}

const struct ka_ops ka_libaio_ops = {
    .name = "libaio",
    .open = lib_open,
    .prep = lib_prep,
    .submit = lib_submit,
    .reap = lib_reap,
    .close = lib_close,
};
