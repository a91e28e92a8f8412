/* aio_spy: count the aio.h calls a program makes (LD_PRELOAD), and print the counts at exit. */
/*
 * Usage: LD_PRELOAD=build/bin/aio_spy.so build/bin/aio_cat FILE --batch 8
 * At exit it prints one line, to the file named by $AIO_SPY_OUT or else to stderr:
 *     aio_spy: aio_read 0 aio_write 0 aio_error 70 aio_return 64 aio_suspend 9 lio_listio 8 ...
 * For aio_suspend it also tells how it was used: how many calls ran out of time (-1 with
 * EAGAIN), and the shortest timeout any call was given, in ms (-1: always NULL, no limit).
 * A wait that sleeps until glibc wakes it shows 0 and the caller's timeout; a poll shows
 * a tiny timeout and many calls that expired.
 * strace shows system calls; aio.h functions are library calls, invisible to it. The
 * dynamic linker resolves a program's calls to aio_read & co. to the first library that
 * defines them, and LD_PRELOAD puts this one first: each function here counts, then calls
 * glibc's own (found with dlsym(RTLD_NEXT, ...)). Calls glibc makes internally are not seen.
 */
#include <aio.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* glibc's functions, found once at load time (before main, before any thread). */
static int (*real_read)(struct aiocb *);
static int (*real_write)(struct aiocb *);
static int (*real_error)(const struct aiocb *);
static ssize_t (*real_return)(struct aiocb *);
static int (*real_suspend)(const struct aiocb *const[], int, const struct timespec *);
static int (*real_listio)(int, struct aiocb *const[], int, struct sigevent *);
static int (*real_cancel)(int, struct aiocb *);

static atomic_long n_read, n_write, n_error, n_return, n_suspend, n_listio, n_listio_requests, n_cancel;
static atomic_long n_suspend_expired;         /* aio_suspend calls that returned -1 EAGAIN */
static atomic_long shortest_timeout_ms = -1;  /* the smallest timeout given to aio_suspend; -1: none */

static void *real(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (fn == NULL) {
        fprintf(stderr, "aio_spy: %s not found in the libraries after aio_spy.so\n", name);
        abort();
    }
    return fn;
}

__attribute__((constructor)) static void spy_start(void)
{
    real_read = (int (*)(struct aiocb *))real("aio_read");
    real_write = (int (*)(struct aiocb *))real("aio_write");
    real_error = (int (*)(const struct aiocb *))real("aio_error");
    real_return = (ssize_t (*)(struct aiocb *))real("aio_return");
    real_suspend = (int (*)(const struct aiocb *const[], int, const struct timespec *))real("aio_suspend");
    real_listio = (int (*)(int, struct aiocb *const[], int, struct sigevent *))real("lio_listio");
    real_cancel = (int (*)(int, struct aiocb *))real("aio_cancel");
}

__attribute__((destructor)) static void spy_report(void)
{
    const char *path = getenv("AIO_SPY_OUT");
    FILE *f = path != NULL ? fopen(path, "ae") : NULL;
    fprintf(f != NULL ? f : stderr,
            "aio_spy: aio_read %ld aio_write %ld aio_error %ld aio_return %ld aio_suspend %ld lio_listio %ld "
            "lio_listio_requests %ld aio_cancel %ld aio_suspend_expired %ld aio_suspend_shortest_ms %ld\n",
            atomic_load(&n_read), atomic_load(&n_write), atomic_load(&n_error), atomic_load(&n_return),
            atomic_load(&n_suspend), atomic_load(&n_listio), atomic_load(&n_listio_requests), atomic_load(&n_cancel),
            atomic_load(&n_suspend_expired), atomic_load(&shortest_timeout_ms));
    if (f != NULL)
        fclose(f);
}

/* On 64-bit Linux the *64 names are the same functions; a program built with
 * _FILE_OFFSET_BITS=64 calls those, so both are counted. */

int aio_read(struct aiocb *cb)
{
    atomic_fetch_add(&n_read, 1);
    return real_read(cb);
}

int aio_read64(struct aiocb64 *cb)
{
    return aio_read((struct aiocb *)cb);
}

int aio_write(struct aiocb *cb)
{
    atomic_fetch_add(&n_write, 1);
    return real_write(cb);
}

int aio_write64(struct aiocb64 *cb)
{
    return aio_write((struct aiocb *)cb);
}

int aio_error(const struct aiocb *cb)
{
    atomic_fetch_add(&n_error, 1);
    return real_error(cb);
}

int aio_error64(const struct aiocb64 *cb)
{
    return aio_error((const struct aiocb *)cb);
}

ssize_t aio_return(struct aiocb *cb)
{
    atomic_fetch_add(&n_return, 1);
    return real_return(cb);
}

ssize_t aio_return64(struct aiocb64 *cb)
{
    return aio_return((struct aiocb *)cb);
}

/* Keep the smallest timeout seen (compare-and-swap: several threads may wait at once). */
static void note_timeout(const struct timespec *timeout)
{
    if (timeout == NULL)
        return;
    long ms = (long)timeout->tv_sec * 1000 + timeout->tv_nsec / 1000000;
    long seen = atomic_load(&shortest_timeout_ms);
    while ((seen < 0 || ms < seen) && !atomic_compare_exchange_weak(&shortest_timeout_ms, &seen, ms))
        ;
}

int aio_suspend(const struct aiocb *const list[], int n, const struct timespec *timeout)
{
    atomic_fetch_add(&n_suspend, 1);
    note_timeout(timeout);
    int ret = real_suspend(list, n, timeout);
    if (ret < 0 && errno == EAGAIN)
        atomic_fetch_add(&n_suspend_expired, 1);
    return ret;
}

int aio_suspend64(const struct aiocb64 *const list[], int n, const struct timespec *timeout)
{
    return aio_suspend((const struct aiocb *const *)list, n, timeout);
}

int lio_listio(int mode, struct aiocb *const list[], int n, struct sigevent *sev)
{
    atomic_fetch_add(&n_listio, 1);
    for (int i = 0; i < n; i++)
        if (list[i] != NULL && list[i]->aio_lio_opcode != LIO_NOP)
            atomic_fetch_add(&n_listio_requests, 1);
    return real_listio(mode, list, n, sev);
}

int lio_listio64(int mode, struct aiocb64 *const list[], int n, struct sigevent *sev)
{
    return lio_listio(mode, (struct aiocb *const *)list, n, sev);
}

int aio_cancel(int fd, struct aiocb *cb)
{
    atomic_fetch_add(&n_cancel, 1);
    return real_cancel(fd, cb);
}

int aio_cancel64(int fd, struct aiocb64 *cb)
{
    return aio_cancel(fd, (struct aiocb *)cb);
}
