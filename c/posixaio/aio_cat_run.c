/* aio_cat_run.c: the requests — fill idle slots with reads, wait, reap (a read becomes a
 * write with --copy), until the whole file is read; and cancel them on an error path. */
#include "aio_cat.h"

#include <errno.h>
#include <stdio.h>

/* Hand list[0..n) to glibc: one lio_listio, or one aio_read/aio_write each. On an error
 * the slots that were not queued go back to IDLE. 0, or -errno. */
static int submit(struct slot **slots, int n)
{
    struct aiocb *list[MAX_SLOTS];
    for (int i = 0; i < n; i++)
        list[i] = &slots[i]->cb;
    if (n == 0)
        return 0;
    int ret = 0, queued = 0;
    if (cat.batch > 0) {
        ret = pa_submit_batch(list, n, cat.mode == SUSPEND ? NULL : &cat.notify);
        if (ret == 0 || ret == -EAGAIN || ret == -EIO)
            queued = n; /* all, or some: each one's pa_result tells */
        if (ret == 0) {
            cat.batches++;
            cat.notes_expected += cat.mode != SUSPEND;
        }
    } else {
        for (; queued < n; queued++) {
            ret = pa_submit(list[queued]);
            if (ret < 0)
                break;
            cat.notes_expected += cat.mode != SUSPEND;
        }
    }
    for (int i = queued; i < n; i++)
        slots[i]->state = IDLE;
    cat.busy += queued;
    look_at_threads();
    return ret;
}

/* Fill idle slots with reads of the next chunks (in batch mode: only when all are idle,
 * so that each lio_listio carries a whole batch) and submit them. 0, or -errno. */
static int start_reads(void)
{
    struct slot *todo[MAX_SLOTS];
    int n = 0;
    if (cat.batch > 0 && cat.busy > 0)
        return 0;
    for (int i = 0; i < cat.depth && cat.next < cat.size; i++) {
        struct slot *s = &cat.slots[i];
        if (s->state != IDLE)
            continue;
        s->off = cat.next;
        s->len = (size_t)(cat.size - cat.next) < cat.chunk ? (size_t)(cat.size - cat.next) : cat.chunk;
        int fd = cat.fds[cat.reads % cat.nfds];
        int ret = pa_prep(&s->cb, LIO_READ, fd, cat.data + s->off, s->len, s->off,
                          cat.batch > 0 ? NULL : &cat.notify);
        if (ret < 0)
            return ret;
        s->state = READING;
        cat.next += (off_t)s->len;
        cat.reads++;
        todo[n++] = s;
    }
    return submit(todo, n);
}

/* Collect every finished request; a finished read becomes a write with --copy. 0, or
 * -errno of the first failed request (its message is printed here). */
static int reap(void)
{
    struct slot *writes[MAX_SLOTS];
    int nw = 0;
    for (int i = 0; i < cat.depth; i++) {
        struct slot *s = &cat.slots[i];
        if (s->state == IDLE)
            continue;
        ssize_t got = pa_result(&s->cb);
        if (got == -EINPROGRESS)
            continue;
        cat.busy--;
        const char *op = s->state == READING ? "read" : "write";
        enum state was = s->state;
        s->state = IDLE;
        if (got < 0 || (size_t)got != s->len) {
            char what[160];
            snprintf(what, sizeof(what), "%s of %zu bytes at offset %lld (fd %d), as aio_error/aio_return said",
                     op, s->len, (long long)s->off, s->cb.aio_fildes);
            cat.where = NULL; /* the message is printed here, where we know which request */
            if (got < 0) {
                fail(what, (int)got);
                return (int)got;
            }
            fprintf(stderr, "aio_cat: %s: only %zd bytes (did the file change?)\n", what, got);
            return -EIO;
        }
        if (was == READING && cat.out >= 0) {
            cat.where = "preparing a write (pa_prep)";
            int ret = pa_prep(&s->cb, LIO_WRITE, cat.out, cat.data + s->off, s->len, s->off,
                              cat.batch > 0 ? NULL : &cat.notify);
            if (ret < 0) {
                for (int k = 0; k < nw; k++)
                    writes[k]->state = IDLE; /* prepared, never submitted: nobody else has them */
                return ret;
            }
            s->state = WRITING;
            cat.writes++;
            writes[nw++] = s;
        }
    }
    cat.where = "submitting writes (pa_submit or pa_submit_batch)";
    return submit(writes, nw);
}

/* The whole read (and copy): refill, wait, reap, until nothing is left. 0 or -errno. */
int run(void)
{
    for (;;) {
        cat.where = cat.batch > 0 ? "submitting reads (pa_prep, pa_submit_batch)" : "submitting reads (pa_prep, pa_submit)";
        int ret = start_reads();
        if (ret < 0)
            return ret;
        if (cat.busy == 0)
            break;
        cat.where = cat.mode == SUSPEND ? "waiting (pa_wait)" : cat.mode == THREAD ? "waiting for a callback"
                                                                                  : "waiting in the reactor (pa_signal_drain)";
        ret = wait_some();
        if (ret < 0)
            return ret;
        cat.where = "collecting results (pa_result)";
        ret = reap();
        if (ret < 0)
            return ret;
    }
    /* Every request is collected, but a notification may still be on its way (glibc
     * stores the result first, then notifies): wait for all, so that the counts below
     * are complete and no thread of glibc's is still busy with our data. */
    cat.where = "waiting for the last notifications";
    while (cat.notes_seen < cat.notes_expected) {
        int ret = wait_note();
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* On an error path: give every request in flight back before anything is freed. */
void cancel_all(void)
{
    struct aiocb *list[MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < cat.depth; i++)
        if (cat.slots[i].state != IDLE)
            list[n++] = &cat.slots[i].cb;
    if (n > 0 && pa_cancel(list, n) < 0)
        fprintf(stderr, "aio_cat: could not cancel the requests in flight\n");
}

