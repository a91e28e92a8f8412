/* Your copy of c/nonblock/nb.c: edit it, then run `make lab1`. (Generated; see docs/ARCHITECTURE.md.) */
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
    /* TODO(lab1): read fd's status flags with fcntl(fd, F_GETFL), add O_NONBLOCK and
     * write them back with fcntl(fd, F_SETFL, ...). Keep the other flags.
     * Return 0, or -errno when fcntl fails. */
    (void)fd;
    return -ENOSYS;
}

ssize_t nb_send_all_spin(int fd, const void *buf, size_t len)
{
    /* TODO(lab1): loop until all len bytes are sent: send(fd, rest, size of rest,
     * MSG_NOSIGNAL). A short send is normal: advance and go on.
     * On EAGAIN (or EINTR) simply call send again at once: that is the
     * busy loop. Any other error: return -errno. At the end return len. */
    (void)fd;
    (void)buf;
    (void)len;
    return -ENOSYS;
}

ssize_t nb_recv_some_spin(int fd, void *buf, size_t cap)
{
    /* TODO(lab1): call recv(fd, buf, cap, 0) in a loop. A result >= 0 is the answer
     * (0 means the peer closed its side). On EAGAIN (or EINTR) call recv
     * again at once (the busy loop). Any other error: return -errno. */
    (void)fd;
    (void)buf;
    (void)cap;
    return -ENOSYS;
}

int nb_wait(int fd, short events, int timeout_ms)
{
    /* TODO(lab1): fill one struct pollfd {fd, events} and call poll(&pfd, 1, timeout_ms).
     * Retry when poll fails with EINTR; return -errno on other errors,
     * 0 when poll returns 0 (time out), else pfd.revents. */
    (void)fd;
    (void)events;
    (void)timeout_ms;
    return -ENOSYS;
}

ssize_t nb_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    /* TODO(lab1): the same loop as nb_send_all_spin, but on EAGAIN sleep in
     * nb_wait(fd, POLLOUT, timeout_ms) before trying again: a negative
     * result is an error to return, 0 means -ETIMEDOUT.
     * Try send first: never wait before you know it would block. */
    (void)fd;
    (void)buf;
    (void)len;
    (void)timeout_ms;
    return -ENOSYS;
}

ssize_t nb_recv_some(int fd, void *buf, size_t cap, int timeout_ms)
{
    /* TODO(lab1): try recv(fd, buf, cap, 0) first; a result >= 0 is the answer.
     * On EAGAIN sleep in nb_wait(fd, POLLIN, timeout_ms) (negative: return
     * it; 0: return -ETIMEDOUT), then try recv again. EINTR: just retry. */
    (void)fd;
    (void)buf;
    (void)cap;
    (void)timeout_ms;
    return -ENOSYS;
}
