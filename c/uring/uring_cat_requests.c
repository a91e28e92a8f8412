/* uring_cat_requests: uring_cat's requests — slots, the O_DIRECT check, a CQE settled, one phase.
 *
 * Given code of lab 7 (read it; uring_cat.c's run_wait calls fill, ur_submit and reap_all).
 * Each request owns a slot, and its slot number is its tag (the SQE's user_data), so the
 * CQE that comes back names the request it ends. A slot is freed when its block is done,
 * or queued again for the rest after a short transfer.
 */
#include "uring_cat.h"
#include "../common/look.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LAB "lab 7: uring_raw.c, uring_liburing.c, uring_cat.c"

struct cat cat;

int cat_fail(const char *what, int err)
{
    fprintf(stderr, "uring_cat: %s: %s%s\n", what, strerror(-err), look_errno_name(-err, LAB));
    return 1;
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

int fill(void)
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
                "(the CQ head not moved past it), the tag not set in the SQE, or sq_array not filled (every slot of "
                "the SQ ring then sends SQE 0)?\n", (unsigned long long)d->tag);
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

int reap_all(void)
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

int busy(void)
{
    return cat.next < cat.end || cat.u->in_flight > 0;
}

int cat_phase(int reactor, int write, int fd, uint64_t start, uint64_t end)
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
