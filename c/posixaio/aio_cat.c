/* aio_cat: read a file with POSIX aio.h, and report who really did the reading (threads). */
/*
 * Usage: aio_cat FILE [--notify suspend|thread|reactor] [--depth N] [--batch N]
 *                     [--chunk BYTES] [--fds K] [--copy OUT]
 *        aio_cat --bad-fd [--notify ...]
 *
 * Reads FILE into memory in chunks (64 KiB) with up to --depth (4) aio_read requests in
 * flight, then prints its CRC-32, the same number as Python's zlib.crc32. Right after the
 * first submission, and whenever it submits more, it looks at /proc/self/task: "threads
 * in flight" lists the threads the process has while glibc holds requests. It never
 * started one itself.
 *
 *   --notify suspend   wait with aio_suspend (the default)
 *   --notify thread    SIGEV_THREAD: glibc calls a function of ours on a thread it starts;
 *                      the function counts where it ran and posts a semaphore
 *   --notify reactor   SIGEV_SIGNAL: glibc queues SIGRTMIN; we keep it blocked and read
 *                      it from a signalfd that sits in the lab-2 reactor (rx), so the main
 *                      thread sleeps in epoll_wait, like a real event loop
 *   --batch N          submit N requests per lio_listio call (one notification per batch)
 *   --fds K            open FILE K times and spread the requests over the K descriptors
 *   --copy OUT         also write every chunk to OUT with aio_write, at the same offset
 *   --bad-fd           read from a descriptor that is closed: see how an error comes back
 *
 * Try:  build/bin/aio_cat build/data/some-file --notify thread
 *       strace -f -e trace=clone3,clone,pread64 build/bin/aio_cat FILE
 *
 * Sanitizers: `make asan` and `make ubsan` builds run every mode. Under `make tsan`,
 * --notify thread crashes inside ThreadSanitizer: glibc starts its aio threads with its
 * own internal pthread_create, which TSan does not intercept, so when such a thread
 * calls malloc (to start the notification thread) TSan finds no state for it. The
 * other modes run, because there glibc's threads never call back into instrumented code.
 */
#include "aio_cat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct cat cat = { .out = -1, .sfd = -1 };

/* --bad-fd: a descriptor that is surely closed, in cat.fds[0]. A number far above those
 * this program opens (the signalfd, the epoll fd...), taken and given back at once. */
static int find_closed_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 64);
    int err = errno;
    close(fd);
    if (high < 0)
        return -err;
    close(high);
    cat.fds[0] = high;
    cat.nfds = 1;
    cat.size = (off_t)cat.chunk;
    return 0;
}

/* FILE, opened nfds times; its size. 0, or -errno (-EINVAL: not a regular file, too large). */
static int open_file(void)
{
    for (int i = 0; i < cat.nfds; i++) {
        cat.fds[i] = open(cat.file, O_RDONLY | O_CLOEXEC);
        if (cat.fds[i] < 0)
            return -errno;
    }
    struct stat st;
    if (fstat(cat.fds[0], &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size > MAX_SIZE)
        return -EINVAL;
    cat.size = st.st_size;
    return 0;
}

/* The input (FILE, or the closed fd), the memory for it, and --copy's output. 0, or -1
 * after saying what failed. */
static int open_all(void)
{
    int ret = cat.bad_fd ? find_closed_fd() : open_file();
    if (ret == 0) {
        cat.data = malloc(cat.size > 0 ? (size_t)cat.size : 1);
        ret = cat.data == NULL ? -ENOMEM : 0;
    }
    if (ret == -EINVAL) {
        fprintf(stderr, "aio_cat: %s: not a regular file of at most %ld MiB\n", cat.file, MAX_SIZE >> 20);
        return -1;
    }
    if (ret < 0) {
        fail(cat.bad_fd ? "--bad-fd" : cat.file, ret);
        return -1;
    }
    if (cat.out_name != NULL) {
        cat.out = open(cat.out_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (cat.out < 0) {
            fail(cat.out_name, -errno);
            return -1;
        }
    }
    return 0;
}

/* Set up the notification, read (and copy) the whole file, print the summary. 0, or -1
 * after saying what failed (the requests in flight are cancelled). */
static int read_all(void)
{
    int ret = set_up_notify();
    if (ret < 0) {
        fail(cat.mode == SUSPEND ? "pa_notify_none" : cat.mode == THREAD ? "pa_notify_thread"
             : "setting up the reactor (pa_signal_fd, pa_notify_signal)", ret);
        return -1;
    }
    ret = run();
    if (ret < 0) {
        if (ret == -ETIMEDOUT)
            fprintf(stderr, "aio_cat: no request finished within %d s: were they submitted, and does the "
                            "sigevent say how to tell us (pa_notify_%s)?\n", WAIT_MS / 1000,
                    cat.mode == THREAD ? "thread" : cat.mode == REACTOR ? "signal" : "none");
        else if (cat.where != NULL)
            fail(cat.where, ret);
        cancel_all();
        return -1;
    }
    report();
    return 0;
}

/* Close what open_all and set_up_notify opened (not --bad-fd's descriptor: it is closed). */
static void close_all(void)
{
    for (int i = 0; i < cat.nfds && !cat.bad_fd; i++)
        if (cat.fds[i] >= 0)
            close(cat.fds[i]);
    if (cat.out >= 0)
        close(cat.out);
    rx_destroy(cat.rx);
    if (cat.sfd >= 0)
        close(cat.sfd);
    free(cat.data);
}

int main(int argc, char **argv)
{
    if (parse_options(argc, argv) < 0)
        return 2;   /* a usage error */
    cat.main_tid = gettid();
    int status = open_all() == 0 && read_all() == 0 ? 0 : 1;
    close_all();
    return status;
}
