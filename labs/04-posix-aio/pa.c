/* Your copy of c/posixaio/pa.c: edit it, then run `make lab4`. (Generated; see docs/ARCHITECTURE.md.) */
/* pa: the aio.h calls — aio_read/aio_write, aio_error/aio_return, aio_suspend, lio_listio, sigevents. */
#include "pa.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* Every function here is a thin layer over one or two aio.h calls: the point is to see
 * exactly what POSIX asks of you, and, with strace, what glibc does with it. */

int pa_notify_none(struct sigevent *sev)
{
    /* TODO(lab4): Zero *sev, then set sigev_notify to SIGEV_NONE. Zeroing alone is not enough:
     * SIGEV_SIGNAL is 0 on Linux, so an all-zero sigevent means "send signal 0". Return 0. */
    (void)sev;
    return -ENOSYS;
}

int pa_notify_thread(struct sigevent *sev, pa_thread_cb *fn, void *arg)
{
    /* TODO(lab4): Zero *sev; SIGEV_THREAD in sigev_notify; the function in
     * sigev_notify_function; arg in sigev_value.sival_ptr; no thread attributes
     * (sigev_notify_attributes NULL: glibc then starts a detached thread with the
     * default stack, one per notification). Return 0. */
    (void)sev;
    (void)fn;
    (void)arg;
    return -ENOSYS;
}

int pa_notify_signal(struct sigevent *sev, int signo, void *arg)
{
    /* TODO(lab4): Zero *sev; SIGEV_SIGNAL in sigev_notify, signo in sigev_signo, arg in
     * sigev_value.sival_ptr (it comes back in the signal's siginfo, so the
     * receiver knows which request, or which batch, is done). Return 0. */
    (void)sev;
    (void)signo;
    (void)arg;
    return -ENOSYS;
}

int pa_prep(struct aiocb *cb, int op, int fd, void *buf, size_t len, off_t off, const struct sigevent *notify)
{
    if ((op != LIO_READ && op != LIO_WRITE) || off < 0)
        return -EINVAL;
    /* TODO(lab4): Zero the whole aiocb first (glibc keeps private fields in it: they must start
     * clean), then fill in aio_fildes, aio_buf, aio_nbytes, aio_offset,
     * aio_lio_opcode (lio_listio reads it; aio_read/aio_write ignore it),
     * aio_reqprio 0, and aio_sigevent: a copy of *notify, or SIGEV_NONE when
     * notify is NULL (pa_notify_none). Return 0. */
    (void)cb;
    (void)fd;
    (void)buf;
    (void)len;
    (void)notify;
    return -ENOSYS;
}

int pa_submit(struct aiocb *cb)
{
    /* TODO(lab4): aio_read(cb) for LIO_READ, aio_write(cb) for LIO_WRITE (cb->aio_lio_opcode),
     * -EINVAL for anything else. They return 0 at once: the request is queued and
     * glibc owns it. On -1 return -errno. */
    (void)cb;
    return -ENOSYS;
}

int pa_submit_batch(struct aiocb *const list[], int n, const struct sigevent *notify)
{
    /* TODO(lab4): One lio_listio call in LIO_NOWAIT mode (return at once, like aio_read) for
     * list[0..n). lio_listio wants a non-const sigevent: copy *notify into a local
     * one (or pass NULL when notify is NULL). 0, or -errno. */
    (void)list;
    (void)n;
    (void)notify;
    return -ENOSYS;
}

ssize_t pa_result(struct aiocb *cb)
{
    /* TODO(lab4): aio_error(cb) says EINPROGRESS while the request runs: return -EINPROGRESS.
     * Once it is done, call aio_return(cb) exactly once (it hands the aiocb back;
     * a second call is undefined): a failed request gives -1 there, and its errno
     * is what aio_error said (return -that); otherwise return aio_return's count.
     * aio_error itself returns -1 (errno EINVAL) for an aiocb that was never
     * submitted: return -errno then. */
    (void)cb;
    return -ENOSYS;
}

int pa_wait(const struct aiocb *const list[], int n, int timeout_ms)
{
    /* TODO(lab4): aio_suspend(list, n, timeout): NULL waits forever (timeout_ms < 0), else a
     * struct timespec of timeout_ms. It returns 0 when at least one is done, or -1
     * with EAGAIN (timeout), EINTR (a signal: call it again), other errno: -errno.
     * Never replace this by a loop around aio_error: that spins a core while glibc's
     * thread does the work. */
    (void)list;
    (void)n;
    (void)timeout_ms;
    return -ENOSYS;
}

/* Given, not an exercise: the rule for every error path, written out once. */
int pa_cancel(struct aiocb *const list[], int n)
{
    /* First ask glibc to drop what has not started. AIO_CANCELED: it was still queued
     * (its error becomes ECANCELED); AIO_NOTCANCELED: a thread is running it, and a
     * running pread cannot be stopped; AIO_ALLDONE: too late, it is finished. */
    int pending = 0;
    for (int i = 0; i < n; i++) {
        if (list[i] != NULL && aio_error(list[i]) == EINPROGRESS) {
            pending++;
            aio_cancel(list[i]->aio_fildes, list[i]);
        }
    }
    /* Then wait for the ones that could not be dropped, and collect every one: only
     * now may the caller free the aiocbs and the buffers. */
    for (int i = 0; i < n; i++) {
        if (list[i] == NULL)
            continue;
        const struct aiocb *one[1] = { list[i] };
        while (aio_error(list[i]) == EINPROGRESS) {
            int ret = pa_wait(one, 1, -1);
            if (ret < 0)
                return ret;
        }
        pa_result(list[i]);
    }
    return pending;
}

int pa_signal_fd(int signo)
{
    /* TODO(lab4): Block signo with pthread_sigmask (SIG_BLOCK, a set holding only signo), then
     * signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC). The fd or -errno
     * (pthread_sigmask returns the error number itself, it does not set errno). */
    (void)signo;
    return -ENOSYS;
}

int pa_signal_drain(int sfd, void **values, int max)
{
    /* TODO(lab4): read() one struct signalfd_siginfo at a time until EAGAIN (retry EINTR; other
     * errors: -errno). Count each. For those with ssi_code == SI_ASYNCIO, store
     * (void *)(uintptr_t)ssi_ptr in values[] while there is room. Return the count.
     * Several completions may be pending at once, and real-time signals queue: one
     * read per wake-up would leave the rest for later. */
    (void)sfd;
    (void)values;
    (void)max;
    return -ENOSYS;
}
