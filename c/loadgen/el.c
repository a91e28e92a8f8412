/* el.c: the echo load's engine — non-blocking connects, round trips on one epoll, every byte checked. */
#include "el.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD 65521              /* the pattern's period: a prime, so no message lines up with another */
#define SPARE_FDS 16              /* fds beside the connections: stdio, epoll, what libc may open */
#define MAX_EVENTS 256            /* events taken from one epoll_wait */
#define RECV_CHUNK 65536          /* the most one recv() takes */

uint64_t el_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Remember what went wrong (the first reason wins) and return err, a -errno. */
static int failed(struct el_load *ld, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failed(struct el_load *ld, int err, const char *fmt, ...)
{
    if (ld->why[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->why, sizeof(ld->why), fmt, ap);
        va_end(ap);
    }
    return err;
}

/* The message connection `index` sends in round trip `round`: a window into the pattern.
 * PERIOD is prime, so two connections (fewer than PERIOD) in the same round, or one
 * connection in two rounds in a row, start at different offsets: an echo that went to
 * the wrong connection, or a stale one, does not match what is expected. */
static const unsigned char *message(const struct el_load *ld, int index, long round)
{
    uint64_t off = ((uint64_t)index * 7919u + (uint64_t)round * 104729u) % PERIOD;
    return ld->pattern + off;
}

/* Ask epoll for EPOLLIN, plus EPOLLOUT while a partial send waits. 0 or -errno. */
static int conn_watch(struct el_load *ld, struct el_conn *c, bool want_out)
{
    if (want_out == c->want_out)
        return 0;
    struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(ld->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return failed(ld, -errno, "epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
    return 0;
}

/* Send what is left of the current message, until it is all gone or the socket's
 * buffer is full (then EPOLLOUT tells us when to go on). 0 or -errno. */
static int conn_send(struct el_load *ld, struct el_conn *c)
{
    while (c->sent < ld->size) {
        ssize_t n = send(c->fd, c->msg + c->sent, ld->size - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0)
            return failed(ld, -errno, "connection %d, round trip %ld: send: %s (did the server close it?)",
                          c->index, c->round + 1, strerror(errno));
        c->sent += (size_t)n;
    }
    return conn_watch(ld, c, c->sent < ld->size);
}

/* Start the next round trip of c: a new message, the clock started. 0 or -errno. */
static int conn_start(struct el_load *ld, struct el_conn *c)
{
    c->msg = message(ld, c->index, c->round);
    c->sent = c->got = 0;
    c->started_ns = el_now_ns();
    return conn_send(ld, c);
}

/* The whole echo of c's message is back: count it, start the next one or finish. */
static int conn_done_one(struct el_load *ld, struct el_conn *c)
{
    if (ld->timed)
        ld->latency_ns[ld->latencies++] = el_now_ns() - c->started_ns;
    c->round++;
    if (c->round < c->until)
        return conn_start(ld, c);
    ld->pending--;   /* done for this phase; EPOLLIN stays on, so a late extra byte is caught */
    return 0;
}

/* Read what the server echoed, check each byte against what was sent. 0 or -errno.
 * One recv() per wake-up: epoll is level-triggered, so whatever is left is reported
 * again, and we save the recv() that would only say EAGAIN (a syscall per request). */
static int conn_recv(struct el_load *ld, struct el_conn *c)
{
    unsigned char buf[RECV_CHUNK];
    ssize_t n;
    do
        n = recv(c->fd, buf, sizeof(buf), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;   /* a spurious wake-up: the echo comes later */
    if (n < 0)
        return failed(ld, -errno, "connection %d, round trip %ld: recv: %s", c->index, c->round + 1,
                      strerror(errno));
    if (n == 0)
        return failed(ld, -EPROTO, "connection %d, round trip %ld: the server closed the connection after "
                      "echoing %zu of %zu bytes", c->index, c->round + 1, c->got, ld->size);
    if (c->round >= c->until)
        return failed(ld, -EPROTO, "connection %d: %zd bytes came after its last echo was complete (an echo "
                      "returns exactly what came in)", c->index, n);
    if (c->got + (size_t)n > c->sent)
        return failed(ld, -EPROTO, "connection %d, round trip %ld: %zu bytes came back but only %zu were sent "
                      "(an echo returns exactly what came in)", c->index, c->round + 1, c->got + (size_t)n, c->sent);
    if (memcmp(buf, c->msg + c->got, (size_t)n) != 0) {
        size_t k = 0;
        while (buf[k] == c->msg[c->got + k])
            k++;
        return failed(ld, -EPROTO, "connection %d, round trip %ld: byte %zu of the %zu-byte echo is 0x%02x, "
                      "expected 0x%02x: the server changed, lost or reordered bytes", c->index, c->round + 1,
                      c->got + k, ld->size, buf[k], c->msg[c->got + k]);
    }
    c->got += (size_t)n;
    return c->got == ld->size ? conn_done_one(ld, c) : 0;
}

/* The handshake of c is over (EPOLLOUT on a connecting socket): did it succeed? */
static int conn_connected(struct el_load *ld, struct el_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0)
        return failed(ld, -err, "connection %d: connect to port %d: %s (is the server listening?)", c->index,
                      ntohs(ld->addr.sin_port), strerror(err));
    c->connected = true;
    ld->pending--;
    /* From now on we only want EPOLLIN; EPOLLOUT comes back for a partial send only. */
    c->want_out = true;
    return conn_watch(ld, c, false);
}

/* One epoll event for c. 0 or -errno. */
static int conn_event(struct el_load *ld, struct el_conn *c, uint32_t events)
{
    if (!c->connected)
        return conn_connected(ld, c);
    int ret = 0;
    if (events & EPOLLOUT)
        ret = conn_send(ld, c);
    /* EPOLLHUP/EPOLLERR: recv() returns the 0 or the error that says what happened. */
    if (ret == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        ret = conn_recv(ld, c);
    return ret;
}

/* Wait for events until ld->pending is 0. 0, or -errno (ld->why says why). */
static int run_until_all_done(struct el_load *ld, const char *phase)
{
    struct epoll_event events[MAX_EVENTS];
    while (ld->pending > 0) {
        int n = epoll_wait(ld->epfd, events, MAX_EVENTS, ld->timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return failed(ld, -errno, "epoll_wait: %s", strerror(errno));
        if (n == 0) {   /* silence for timeout_ms: name the first connection still waiting */
            const struct el_conn *c = ld->conns;
            while (c->connected && c->round >= c->until)
                c++;
            if (!c->connected)
                return failed(ld, -ETIMEDOUT, "%s: nothing happened for %d s, %ld connections still waiting; "
                              "connection %d is not even connected", phase, ld->timeout_ms / 1000, ld->pending,
                              c->index);
            return failed(ld, -ETIMEDOUT, "%s: nothing happened for %d s, %ld connections still waiting; "
                          "connection %d got %zu of %zu bytes of round trip %ld back", phase,
                          ld->timeout_ms / 1000, ld->pending, c->index, c->got, ld->size, c->round + 1);
        }
        for (int i = 0; i < n; i++) {
            int ret = conn_event(ld, events[i].data.ptr, events[i].events);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* Raise the soft RLIMIT_NOFILE to fit `need` fds. 0, or -EMFILE with ld->why saying
 * what to do when the hard limit is lower. */
static int fit_fd_limit(struct el_load *ld, rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return failed(ld, -errno, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        return failed(ld, -EMFILE, "%d connections need %llu file descriptors, but this process may open at "
                      "most %llu (the hard RLIMIT_NOFILE): raise it (`ulimit -Hn %llu` as root, or "
                      "LimitNOFILE= for a service) or ask for fewer connections", ld->connections,
                      (unsigned long long)need, (unsigned long long)rl.rlim_max, (unsigned long long)need);
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return failed(ld, -errno, "setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)need, strerror(errno));
    return 0;
}

/* Open every connection (non-blocking connect) and wait until all are established.
 * 0 or -errno; connections already open are closed by el_free. */
int el_connect_all(struct el_load *ld)
{
    int ret = fit_fd_limit(ld, (rlim_t)ld->connections + SPARE_FDS);
    if (ret < 0)
        return ret;
    for (int i = 0; i < ld->connections; i++) {
        struct el_conn *c = &ld->conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            return failed(ld, -errno, "could open only %d of %d connections: socket: %s", i, ld->connections,
                          strerror(errno));
        /* Each message goes out at once, not held back by Nagle's algorithm. */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, (struct sockaddr *)&ld->addr, sizeof(ld->addr)) < 0 && errno != EINPROGRESS)
            return failed(ld, -errno, "connection %d: connect to port %d: %s (is the server listening?)", i,
                          ntohs(ld->addr.sin_port), strerror(errno));
        /* EPOLLOUT: the handshake is over, one way or the other (conn_connected says which). */
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
        if (epoll_ctl(ld->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            return failed(ld, -errno, "epoll_ctl(ADD): %s", strerror(errno));
    }
    ld->pending = ld->connections;
    return run_until_all_done(ld, "connecting");
}

/* Every connection makes round trips until it reaches its share for this phase (el.h). */
int el_run_phase(struct el_load *ld, bool timed, const char *phase)
{
    ld->timed = timed;
    ld->pending = 0;
    for (int i = 0; i < ld->connections; i++) {
        struct el_conn *c = &ld->conns[i];
        c->until = c->round + (timed ? c->rounds : ld->warmup);
        if (c->round < c->until) {
            ld->pending++;
            int ret = conn_start(ld, c);
            if (ret < 0)
                return ret;
        }
    }
    return run_until_all_done(ld, phase);
}

/* See el.h: allocate, make the pattern, create the epoll instance. */
int el_init(struct el_load *ld)
{
    long timed = ld->total ? ld->total : ld->rounds * ld->connections;
    if (timed > EL_MAX_REQUESTS)
        return failed(ld, -E2BIG, "%ld round trips: at most %d, please (each one's latency is kept)", timed,
                      EL_MAX_REQUESTS);
    ld->conns = calloc((size_t)ld->connections, sizeof(*ld->conns));
    if (ld->conns == NULL)
        return failed(ld, -ENOMEM, "out of memory");
    for (int i = 0; i < ld->connections; i++) {
        ld->conns[i].fd = -1;
        ld->conns[i].index = i;
        /* --total T: T / N each, and the first T % N connections one more. */
        ld->conns[i].rounds = ld->total ? ld->total / ld->connections + (i < ld->total % ld->connections)
                                        : ld->rounds;
    }
    ld->pattern = malloc(PERIOD + EL_MAX_SIZE);
    ld->latency_ns = malloc((size_t)timed * sizeof(*ld->latency_ns));
    if (ld->pattern == NULL || ld->latency_ns == NULL)
        return failed(ld, -ENOMEM, "out of memory");
    uint64_t x = 0x9e3779b97f4a7c15u;   /* xorshift64: the same pattern every run */
    for (size_t i = 0; i < PERIOD + EL_MAX_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ld->pattern[i] = i < PERIOD ? (unsigned char)(x >> 56) : ld->pattern[i - PERIOD];
    }
    ld->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ld->epfd < 0)
        return failed(ld, -errno, "epoll_create1: %s", strerror(errno));
    return 0;
}

/* See el.h. Safe after a failed el_init: what was not made is NULL or -1. */
void el_free(struct el_load *ld)
{
    for (int i = 0; ld->conns != NULL && i < ld->connections; i++)
        if (ld->conns[i].fd >= 0)
            close(ld->conns[i].fd);
    if (ld->epfd >= 0)
        close(ld->epfd);
    free(ld->latency_ns);
    free(ld->pattern);
    free(ld->conns);
    ld->conns = NULL;
    ld->pattern = NULL;
    ld->latency_ns = NULL;
    ld->epfd = -1;
}
