/* Your copy of c/kaio/ka_libaio.c: edit it, then run `make lab5`. (Generated; see docs/ARCHITECTURE.md.) */
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
    /* TODO(lab5): io_setup(nr_events, &b->ctx) (b->ctx must be NULL on entry: calloc did it).
     * It returns 0 or -errno: on failure keep it in ret and go to out. */
    (void)nr_events;
    ret = -ENOSYS;
    goto out;
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
    /* TODO(lab5): io_prep_pread (or io_prep_pwrite when write) on b->iocbs[slot]: it zeroes
     * the iocb and fills in the opcode, fd, buffer, length and offset. Then set its
     * data field to the slot (a void *: (void *)(intptr_t)slot), which comes back
     * in the io_event, and if efd >= 0 call io_set_eventfd (it sets
     * IOCB_FLAG_RESFD and the fd for you). Return 0. */
    (void)write;
    (void)fd;
    (void)buf;
    (void)len;
    (void)off;
    (void)efd;
    return -ENOSYS;
}

static int lib_submit(struct ka_backend *b, const int *slots, int n)
{
    if (n < 0 || n > b->slots)
        return -EINVAL;
    /* TODO(lab5): Point b->list[i] at the iocb of slots[i], then io_submit(b->ctx, n,
     * b->list): how many the kernel took (the first ones), or -errno (-EAGAIN:
     * none, the context is full). Return it as it is. */
    (void)slots;
    return -ENOSYS;
}

static int lib_reap(struct ka_backend *b, int min_nr, int max, struct ka_done *done, int timeout_ms)
{
    if (max > b->slots)
        max = b->slots;
    /* TODO(lab5): io_getevents(b->ctx, min_nr, max, b->events, timeout) with the timeout
     * ka_timeout(timeout_ms, &ts) gives (NULL: no limit); it returns the
     * count or -errno: retry -EINTR. For each event: done[i].slot from its data
     * field, done[i].res from res (an unsigned long in libaio's struct: cast it to
     * long to get -errno back). Return the count. */
    (void)min_nr;
    (void)done;
    (void)timeout_ms;
    return -ENOSYS;
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
