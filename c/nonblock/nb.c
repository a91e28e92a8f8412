/* nb.c — non-blocking socket helpers: a busy loop on EAGAIN, then waiting with poll(2) (lab 1). */
#include "nb.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

/*
 * A word on EAGAIN and EWOULDBLOCK: POSIX allows either for "this would block";
 * on Linux they are the same number, so testing EAGAIN is enough.
 *
 * Every send here passes MSG_NOSIGNAL: when the peer has gone away, send fails
 * with EPIPE instead of killing the whole process with SIGPIPE.
 */

int nb_set_nonblocking(int fd)
{
    /* BEGIN SOLUTION lab1
     * TODO: read fd's status flags with fcntl(fd, F_GETFL), add O_NONBLOCK and
     *       write them back with fcntl(fd, F_SETFL, ...). Keep the other flags.
     *       Return 0, or -errno when fcntl fails.
     * STUB: (void)fd;
     * STUB: return -ENOSYS;
     */
    /* F_GETFL and F_SETFL never sleep, so they cannot fail with EINTR. */
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (flags & O_NONBLOCK)
        return 0;   /* already non-blocking: nothing to change */
    if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
    /* END SOLUTION */
}

ssize_t nb_send_all_spin(int fd, const void *buf, size_t len)
{
    /* BEGIN SOLUTION lab1
     * TODO: loop until all len bytes are sent: send(fd, rest, size of rest,
     *       MSG_NOSIGNAL). A short send is normal: advance and go on.
     *       On EAGAIN (or EINTR) simply call send again at once: that is the
     *       busy loop. Any other error: return -errno. At the end return len.
     * STUB: (void)fd;
     * STUB: (void)buf;
     * STUB: (void)len;
     * STUB: return -ENOSYS;
     */
    const char *p = buf;
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, p + sent, len - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            /* Maybe fewer bytes than asked: only what fitted in the send buffer. */
            sent += (size_t)n;
            continue;
        }
        if (errno == EAGAIN || errno == EINTR)
            continue;   /* the buffer is full: ask again, right now (this is the spin) */
        return -errno;
    }
    return (ssize_t)sent;
    /* END SOLUTION */
}

ssize_t nb_recv_some_spin(int fd, void *buf, size_t cap)
{
    /* BEGIN SOLUTION lab1
     * TODO: call recv(fd, buf, cap, 0) in a loop. A result >= 0 is the answer
     *       (0 means the peer closed its side). On EAGAIN (or EINTR) call recv
     *       again at once (the busy loop). Any other error: return -errno.
     * STUB: (void)fd;
     * STUB: (void)buf;
     * STUB: (void)cap;
     * STUB: return -ENOSYS;
     */
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        /* Nothing has arrived yet: ask again, right now (this is the spin). */
    }
    /* END SOLUTION */
}

int nb_wait(int fd, short events, int timeout_ms)
{
    /* BEGIN SOLUTION lab1
     * TODO: fill one struct pollfd {fd, events} and call poll(&pfd, 1, timeout_ms).
     *       Retry when poll fails with EINTR; return -errno on other errors,
     *       0 when poll returns 0 (time out), else pfd.revents.
     * STUB: (void)fd;
     * STUB: (void)events;
     * STUB: (void)timeout_ms;
     * STUB: return -ENOSYS;
     */
    struct pollfd pfd = { .fd = fd, .events = events, .revents = 0 };
    int n;
    do {
        /* The thread sleeps here, in the kernel, using no CPU, until the socket
         * is ready or the time runs out. A signal handler may wake it early. */
        n = poll(&pfd, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    return pfd.revents;
    /* END SOLUTION */
}

ssize_t nb_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    /* BEGIN SOLUTION lab1
     * TODO: the same loop as nb_send_all_spin, but on EAGAIN sleep in
     *       nb_wait(fd, POLLOUT, timeout_ms) before trying again: a negative
     *       result is an error to return, 0 means -ETIMEDOUT.
     *       Try send first: never wait before you know it would block.
     * STUB: (void)fd;
     * STUB: (void)buf;
     * STUB: (void)len;
     * STUB: (void)timeout_ms;
     * STUB: return -ENOSYS;
     */
    const char *p = buf;
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, p + sent, len - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;   /* maybe a short send: the loop sends the rest */
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        /* The send buffer is full. Sleep until the peer has read enough to make room. */
        int r = nb_wait(fd, POLLOUT, timeout_ms);
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
    }
    return (ssize_t)sent;
    /* END SOLUTION */
}

ssize_t nb_recv_some(int fd, void *buf, size_t cap, int timeout_ms)
{
    /* BEGIN SOLUTION lab1
     * TODO: try recv(fd, buf, cap, 0) first; a result >= 0 is the answer.
     *       On EAGAIN sleep in nb_wait(fd, POLLIN, timeout_ms) (negative: return
     *       it; 0: return -ETIMEDOUT), then try recv again. EINTR: just retry.
     * STUB: (void)fd;
     * STUB: (void)buf;
     * STUB: (void)cap;
     * STUB: (void)timeout_ms;
     * STUB: return -ENOSYS;
     */
    for (;;) {
        /* Try first: when data is already there, this costs one syscall and no wait. */
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        /* Nothing yet: sleep until something arrives, then go round and recv it. */
        int r = nb_wait(fd, POLLIN, timeout_ms);
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
    }
    /* END SOLUTION */
}
