/* pa: POSIX aio.h in a few small functions — describe a request, submit it, be told, collect it. */
#ifndef PA_H
#define PA_H

/*
 * The life of one POSIX asynchronous read, the way this module spells it:
 *
 *     struct aiocb cb;                                  the request: YOURS, it must stay put
 *     pa_prep(&cb, LIO_READ, fd, buf, len, off, &how);  fill it in (how: pa_notify_* below)
 *     pa_submit(&cb);                                   aio_read: returns at once
 *     ...                                               do something else; glibc works meanwhile
 *     pa_wait(list, n, timeout_ms);                     aio_suspend: sleep until one is done
 *     n = pa_result(&cb);                               aio_error, then aio_return: bytes or -errno
 *
 * Ownership: from pa_submit until pa_result returns something other than -EINPROGRESS,
 * the aiocb and its buffer belong to glibc. Another thread writes into them (that is the
 * lesson of this lab: on Linux, glibc runs every aio.h request on a thread of its own
 * pool). Do not free, reuse or move them until then, not even on an error path: cancel
 * with pa_cancel, which also waits.
 *
 * Errors: functions return >= 0 or -errno, like the rest of the workshop; print them
 * with strerror(-ret). -ENOSYS from this file means "not written yet (lab 4)".
 *
 * Threads: any thread may call these functions; glibc's aio keeps its own lock.
 */

#include <aio.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

/* The callback type of SIGEV_THREAD: glibc calls it on a NEW thread it starts for each
 * notification, with the sigev_value you chose (here: sival_ptr = the arg you gave). */
typedef void pa_thread_cb(union sigval value);

/* How a request says "I am done" (fills *sev; the struct is copied by pa_prep). 0, or
 * -ENOSYS while not written:
 *   pa_notify_none:   nobody is told; you ask with pa_result or sleep in pa_wait.
 *   pa_notify_thread: glibc starts a thread that calls fn(arg) (SIGEV_THREAD).
 *   pa_notify_signal: glibc queues signal signo to the process, with arg as its value
 *                     (SIGEV_SIGNAL; read it from a signalfd, see pa_signal_fd).
 * Watch out: SIGEV_SIGNAL is 0, so a sigevent left zeroed asks for "signal 0". */
int pa_notify_none(struct sigevent *sev);
int pa_notify_thread(struct sigevent *sev, pa_thread_cb *fn, void *arg);
int pa_notify_signal(struct sigevent *sev, int signo, void *arg);

/* Describe one request in *cb (every field; nothing is submitted yet).
 * op: LIO_READ (read len bytes at offset off of fd into buf) or LIO_WRITE (write buf).
 * notify: how to be told (copied), or NULL for pa_notify_none.
 * Returns 0, or -EINVAL (op unknown, off negative). */
int pa_prep(struct aiocb *cb, int op, int fd, void *buf, size_t len, off_t off, const struct sigevent *notify);

/* Submit one prepared request: aio_read or aio_write, as cb->aio_lio_opcode says.
 * Returns 0 (queued: glibc owns cb and its buffer now), or -errno (-EAGAIN: no room
 * in glibc's queue; -EINVAL: a bad field). Errors of the I/O itself (a closed fd, a
 * full disk) do NOT show here: pa_result reports them when the request is done. */
int pa_submit(struct aiocb *cb);

/* Submit n prepared requests (reads and writes may mix) in one lio_listio(LIO_NOWAIT)
 * call. notify: ONE notification for the whole batch, when its last request is done
 * (NULL: none); each request's own sigevent (from pa_prep) fires as well.
 * Returns 0 (all queued), -EINVAL (nothing queued: n too large or a bad opcode), or
 * -EAGAIN/-EIO: SOME were queued and some not; pa_result on each tells which. */
int pa_submit_batch(struct aiocb *const list[], int n, const struct sigevent *notify);

/* The outcome of a submitted request: -EINPROGRESS while it runs; once it is done,
 * the bytes moved (>= 0; fewer than asked at end of file) or -errno of the I/O
 * (-EBADF, -EIO, -ECANCELED...). Call it until it stops saying -EINPROGRESS, then
 * never again for this submission: the final answer hands the aiocb back to you. */
ssize_t pa_result(struct aiocb *cb);

/* Sleep until at least one request of list[0..n) is done (aio_suspend), or timeout_ms
 * has passed (-1: no limit). NULL entries are allowed (ignored). Returns 0 (something
 * is done: check each with pa_result), -EAGAIN (timeout), or -errno. A signal that
 * interrupts the sleep (EINTR) is retried here, with the full timeout again. */
int pa_wait(const struct aiocb *const list[], int n, int timeout_ms);

/* Give requests back on an error path: aio_cancel each one still in flight (glibc can
 * only drop those that have not started: a running pread cannot be stopped), then wait
 * until every one is done and collect it (their results are dropped). Afterwards the
 * aiocbs and buffers are yours again. Returns how many were still in flight when
 * called, or -errno. Given in pa.c, as the worked example of the rule above. */
int pa_cancel(struct aiocb *const list[], int n);

/* For SIGEV_SIGNAL into a reactor: block signo in the calling thread (threads created
 * afterwards inherit the mask; glibc's aio threads block every signal anyway), so the
 * signal stays pending instead of running a handler or killing the process, and return
 * a signalfd (O_NONBLOCK, O_CLOEXEC) that becomes readable while it is pending.
 * Call it before the first submission. Returns the fd, or -errno. */
int pa_signal_fd(int signo);

/* Read every pending signal from a pa_signal_fd until it would block. For each one
 * that came from aio (si_code SI_ASYNCIO), if values != NULL and there is room, store
 * its value (the arg of pa_notify_signal) in values[]. Returns how many signals were
 * read (0: none was pending), or -errno. */
int pa_signal_drain(int sfd, void **values, int max);

#endif
