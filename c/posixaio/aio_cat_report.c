/* aio_cat_report.c: what aio_cat prints — the threads it sees, the summary the lab's tests
 * read, and an error's line. */
#include "aio_cat.h"
#include "../common/look.h"

#include <stdio.h>
#include <string.h>

/* Print "aio_cat: what: strerror (ENAME)" for a -errno; returns 1 (the exit status). */
int fail(const char *what, int err)
{
    fprintf(stderr, "aio_cat: %s: %s%s\n", what, strerror(-err), look_errno_name(-err, "lab 4, pa.c"));
    return 1;
}

/* Look at /proc/self/task: how many threads now, and (the first time) which. This is
 * the whole reveal in C: we never call pthread_create, yet there are more than one. */
void look_at_threads(void)
{
    char line[2048];
    int count = look_threads(cat.main_tid, line, sizeof(line));
    if (count > cat.max_threads)
        cat.max_threads = count;
    if (!cat.reported) {
        printf("threads in flight: %d:%s\n", count, line);
        fflush(stdout); /* now, while the requests are in flight, even when stdout is a pipe */
        cat.reported = 1;
    }
}

/* The summary, one "key: value" line each; the lab's tests read these lines. */
void report(void)
{
    printf("max threads in flight: %d\n", cat.max_threads);
    if (cat.mode == SUSPEND)
        printf("aio_suspend: %ld calls\n", cat.waits);
    if (cat.mode == THREAD) {
        int n = atomic_load(&cat.callbacks), distinct = 0;
        for (int i = 0; i < n && i < MAX_TIDS; i++) {
            int seen = 0;
            for (int j = 0; j < i && !seen; j++)
                seen = cat.cb_tids[j] == cat.cb_tids[i];
            distinct += !seen;
        }
        printf("callbacks: %d on %d threads, %d on the main thread\n", n, distinct, atomic_load(&cat.on_main));
    }
    if (cat.mode == REACTOR)
        printf("signals: %ld in %ld reactor wake-ups\n", cat.signals, cat.wakeups);
    if (cat.batch > 0)
        printf("lio_listio: %ld calls for %ld requests\n", cat.batches, cat.reads + cat.writes);
    printf("read: %lld bytes in %ld requests, crc32 %08x\n", (long long)cat.size, cat.reads,
           look_crc32((const unsigned char *)cat.data, (size_t)cat.size));
    if (cat.out >= 0)
        printf("wrote: %lld bytes in %ld requests to %s\n", (long long)cat.size, cat.writes, cat.out_name);
}

