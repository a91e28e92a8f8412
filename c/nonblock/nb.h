/* nb.h — non-blocking socket helpers: a busy loop on EAGAIN, then waiting with poll(2) (lab 1). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/*
 * The story of this module, in four steps:
 *
 *   1. nb_set_nonblocking: after it, send/recv never put the thread to sleep;
 *      when they cannot make progress they fail at once with EAGAIN.
 *   2. nb_send_all_spin / nb_recv_some_spin: the "stupid" way to live with that:
 *      call again, and again, until the call succeeds. Correct, but it burns a
 *      whole CPU core while it waits.
 *   3. nb_wait: ask the kernel to put the thread to sleep until the socket is
 *      ready (poll(2)). This is the seed of every event loop.
 *   4. nb_send_all / nb_recv_some: try the call first, and wait only when it
 *      says EAGAIN. The same shape as asyncio's sock_recv on the talk's slide.
 *
 * Conventions (as everywhere in c/): a result >= 0 is success, a negative result
 * is -errno; EINTR is retried inside; no function keeps any state between calls,
 * so any thread may call them on a socket it owns. None of them takes ownership
 * of fd or buf.
 */

/*
 * Set O_NONBLOCK on fd, keeping its other status flags (fcntl F_GETFL/F_SETFL).
 * Returns 0, or -errno (EBADF for a closed fd).
 */
int nb_set_nonblocking(int fd);

/*
 * Send all len bytes of buf on the non-blocking socket fd, calling send(2) again
 * at once whenever it says EAGAIN (a busy loop: it spins, it never sleeps).
 * A short send is not an error: the rest is sent by the next calls.
 * Returns len, or -errno (EPIPE / ECONNRESET when the peer went away).
 */
ssize_t nb_send_all_spin(int fd, const void *buf, size_t len);

/*
 * Receive at least one byte (at most cap) from the non-blocking socket fd,
 * calling recv(2) again at once whenever it says EAGAIN (a busy loop).
 * Returns the number of bytes received (1..cap), 0 when the peer closed its
 * side (end of stream), or -errno. cap must be > 0.
 */
ssize_t nb_recv_some_spin(int fd, void *buf, size_t cap);

/*
 * Sleep until fd is ready for events (POLLIN, POLLOUT, or both), for at most
 * timeout_ms milliseconds (-1: no limit). Built on poll(2); EINTR is retried
 * (with the full timeout again: simple, and good enough here).
 * Returns the revents poll reported (> 0; it may include POLLERR or POLLHUP,
 * which mean "a call on fd will not block: it will report the error"),
 * 0 when the time ran out, or -errno.
 */
int nb_wait(int fd, short events, int timeout_ms);

/*
 * Send all len bytes of buf on the non-blocking socket fd: try send(2) first,
 * and only when it says EAGAIN, sleep in nb_wait(fd, POLLOUT, timeout_ms).
 * Returns len, -ETIMEDOUT when one wait lasted timeout_ms without the socket
 * becoming writable, or another -errno.
 */
ssize_t nb_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/*
 * Receive at least one byte (at most cap) from the non-blocking socket fd: try
 * recv(2) first, and only when it says EAGAIN, sleep in nb_wait(fd, POLLIN,
 * timeout_ms), then try again.
 * Returns 1..cap bytes, 0 at end of stream, -ETIMEDOUT when the wait lasted
 * timeout_ms without data, or another -errno. cap must be > 0.
 */
ssize_t nb_recv_some(int fd, void *buf, size_t cap, int timeout_ms);
