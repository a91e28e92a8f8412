/* Your copy of c/kaio/ka.c: edit it, then run `make lab5`. (Generated; see docs/ARCHITECTURE.md.) */
/* ka: the scheduler over kernel AIO — alignment, a bounded queue, io_submit with requeue, reaping, an eventfd. */
#include "ka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Caveat 3 of the talk lives in this file: with kernel AIO you are the I/O scheduler.
 * Nobody else bounds how much is in flight, splits work into batches, or retries what
 * the kernel refused: ka_submit does, and the counters in k->st show what happened. */

double ka_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timespec *ka_timeout(int timeout_ms, struct timespec *ts)
{
    if (timeout_ms < 0)
        return NULL;
    *ts = (struct timespec){ .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000 };
    return ts;
}

int ka_alignment(int fd, struct ka_align *out)
{
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    /* AT_EMPTY_PATH with "": statx of the open fd itself. */
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN | STATX_BASIC_STATS, &stx) < 0)
        return -errno;
    if (stx.stx_mask & STATX_DIOALIGN) {
        /* The kernel knows (Linux >= 6.1, and a filesystem that fills it in). 0 means
         * "this file cannot do O_DIRECT at all". */
        if (stx.stx_dio_offset_align == 0)
            return -EOPNOTSUPP;
        out->mem = stx.stx_dio_mem_align;
        out->off = stx.stx_dio_offset_align;
        out->source = "statx STATX_DIOALIGN";
        return 0;
    }
    /* An older kernel: the filesystem block size is a multiple of the device's logical
     * block size (what O_DIRECT really needs), so it is always enough. */
    out->mem = out->off = stx.stx_blksize ? stx.stx_blksize : 4096;
    out->source = "fallback: st_blksize, the filesystem block size";
    return 0;
}

int ka_check(const struct ka_align *al, int direct, const void *buf, off_t off, size_t len, char *why, size_t size)
{
    if (!direct)
        return 0; /* the page cache takes any offset, length and buffer */
    /* TODO(lab5): Refuse what the kernel would refuse with a bare EINVAL, and say why: the
     * buffer's address ((uintptr_t)buf) must be a multiple of al->mem, off and len
     * multiples of al->off, and len must not be 0. For the first rule broken, write
     * a sentence into why with snprintf that names the number at fault and the
     * alignment needed, and where it came from (al->source), e.g. "offset 100 is not
     * a multiple of 512, the O_DIRECT offset alignment here (statx STATX_DIOALIGN)",
     * then return -EINVAL. Return 0 when all is well. */
    (void)al;
    (void)buf;
    (void)off;
    (void)len;
    (void)why;
    (void)size;
    return -ENOSYS;
}

int ka_create(struct ka **out, const struct ka_ops *ops, int fd, int nr_events, int nslots, int depth, int batch)
{
    if (nr_events < 1 || nslots < 1 || nslots > KA_MAX_SLOTS || depth < 1 || depth > nslots || batch < 1)
        return -EINVAL;
    struct ka *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    int ret = ops->open(&k->be, nr_events, nslots);
    if (ret < 0) {
        free(k);
        return ret;
    }
    k->ops = ops;
    k->fd = fd;
    k->efd = -1;
    k->nslots = nslots;
    k->depth = depth;
    k->batch = batch;
    *out = k; /* every slot starts KA_FREE (0) */
    return 0;
}

void ka_destroy(struct ka *k)
{
    if (k == NULL)
        return;
    k->ops->close(k->be); /* io_destroy waits for requests still in flight: buffers are safe after */
    if (k->efd >= 0)
        close(k->efd);
    free(k);
}

int ka_use_eventfd(struct ka *k)
{
    /* TODO(lab5): Create an eventfd with initial value 0, non-blocking (the reactor's callback
     * must never block) and close-on-exec, keep it in k->efd (ka_queue passes it
     * to every iocb it prepares, and ka_destroy closes it), and return it; -errno
     * if eventfd fails. */
    (void)k;
    return -ENOSYS;
}

long ka_eventfd_drain(struct ka *k)
{
    /* TODO(lab5): An eventfd holds a 64-bit counter: read exactly 8 bytes (a uint64_t) from
     * k->efd; the read returns the count and resets it to 0. Retry EINTR; EAGAIN
     * means the counter was 0: return 0. Count successful reads in
     * k->st.eventfd_reads and return the counter's value. */
    (void)k;
    return -ENOSYS;
}

int ka_queue(struct ka *k, int slot, int write, void *buf, off_t off, size_t len)
{
    if (slot < 0 || slot >= k->nslots)
        return -EINVAL;
    if (k->state[slot] != KA_FREE)
        return -EBUSY;
    /* TODO(lab5): Prepare the slot's iocb with k->ops->prep (the backend fills the kernel's
     * struct; pass k->fd, and k->efd so the completion bumps the eventfd if there
     * is one), then mark the slot KA_QUEUED and append it at the end of
     * k->queue (k->nqueued grows). Nothing is submitted here. Return 0, or what
     * prep returned if it failed. */
    (void)write;
    (void)buf;
    (void)off;
    (void)len;
    return -ENOSYS;
}

int ka_io_submit(struct ka *k, const int *slots, int n)
{
    double t0 = ka_now();
    int ret = k->ops->submit(k->be, slots, n);
    double took = ka_now() - t0;
    k->st.submit_calls++;
    k->st.submit_seconds += took;
    if (took > k->st.submit_max)
        k->st.submit_max = took;
    if (ret == -EAGAIN)
        k->st.eagain++;
    if (ret > 0) {
        k->st.submitted += ret;
        if (ret < n)
            k->st.partial++;
    }
    return ret;
}

int ka_submit(struct ka *k)
{
    /* TODO(lab5): While requests are queued and fewer than k->depth are in flight: take
     * n = the smallest of k->nqueued, k->batch and the room left under the depth,
     * and submit the first n of k->queue with ka_io_submit (it times the call and
     * counts it). It answers how many the kernel took, always the first ones: mark
     * those KA_IN_FLIGHT, add them to k->in_flight (and keep k->st.max_in_flight
     * up to date), and remove them from the front of the queue (memmove the rest
     * down), so that what was refused stays queued, in order. If the kernel took
     * fewer than n, or said -EAGAIN (its context is full: nothing taken), stop for
     * now: only a ka_reap makes room. Any other negative answer is an error: return
     * it. Return how many this call submitted in all. */
    (void)k;
    return -ENOSYS;
}

int ka_reap(struct ka *k, int min_nr, struct ka_done *done, int max, int timeout_ms)
{
    /* TODO(lab5): Ask the backend for finished requests (k->ops->reap with min_nr, max, done,
     * timeout_ms). For each one returned, its slot goes back to KA_FREE and
     * k->in_flight shrinks; count them in k->st.reaped. Return how many, or the
     * backend's -errno. */
    (void)k;
    (void)min_nr;
    (void)done;
    (void)max;
    (void)timeout_ms;
    return -ENOSYS;
}
