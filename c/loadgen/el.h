/* el: the echo load — N non-blocking client connections on one epoll, each with one message in flight. */
#ifndef EL_H
#define EL_H

/*
 * The engine of echo_load (echo_load.c is its command line and its report):
 *
 *     struct el_load ld = { .addr = ..., .connections = 100, .size = 64, .rounds = 10, ... };
 *     el_init(&ld);                          allocate, make the byte pattern, the epoll instance
 *     el_connect_all(&ld);                   N non-blocking connects, wait until all are up
 *     el_run_phase(&ld, false, "warm-up");   ld.warmup round trips per connection, not timed
 *     el_run_phase(&ld, true, "timed");      each connection's timed round trips; latencies kept
 *     el_free(&ld);
 *
 * A round trip: send a message (a window into a fixed pseudo-random pattern, different
 * for each connection and each round), wait for all of its echo, compare every byte.
 * Partial sends wait for EPOLLOUT; echoes arrive in as many pieces as they like.
 *
 * One thread; every function is called from it. Errors: >= 0 or -errno, and ld->why
 * says in words what went wrong (which connection, which round trip, which byte).
 */

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EL_MAX_SIZE (1 << 20)        /* the largest message: 1 MiB */
#define EL_MAX_REQUESTS 50000000     /* timed round trips in one run: each latency is kept (8 bytes) */

/* One client connection. */
struct el_conn {
    int fd;                       /* non-blocking TCP socket; -1 until opened */
    int index;                    /* its number, 0 .. N-1, for the messages */
    long round;                   /* round trips finished, warm-ups included */
    long until;                   /* the running phase ends for it when round reaches this */
    long rounds;                  /* its timed round trips (its share of --total) */
    size_t sent, got;             /* bytes of the current message sent, and echoed back */
    const unsigned char *msg;     /* the current message: a window into el_load.pattern */
    uint64_t started_ns;          /* when the current message's first byte went to send() */
    bool want_out;                /* EPOLLOUT asked for: the rest of a partial send waits for room */
    bool connected;               /* the TCP handshake is over */
};

/* The whole load. The caller fills the first block; el_init and the phases the rest. */
struct el_load {
    struct sockaddr_in addr;      /* the server */
    int connections;              /* N */
    size_t size;                  /* bytes per message, 1 .. EL_MAX_SIZE */
    long rounds;                  /* timed round trips per connection (0: use total) */
    long total;                   /* timed round trips in all, shared out (0: use rounds) */
    long warmup;                  /* uncounted round trips per connection, before the timed ones */
    int timeout_ms;               /* the longest silence we wait through */

    int epfd;                     /* from epoll_create1(EPOLL_CLOEXEC); -1 before el_init */
    struct el_conn *conns;        /* conns[N] */
    unsigned char *pattern;       /* every message is a window into it */
    uint64_t *latency_ns;         /* one per timed round trip, in completion order */
    long latencies;               /* how many are filled */
    long pending;                 /* connections that have not finished the running phase */
    bool timed;                   /* the running phase records latencies */
    char why[512];                /* what went wrong, in words, for the caller to print */
};

/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t el_now_ns(void);

/* Allocate the connections, the pattern and the latencies, and create the epoll
 * instance. 0, or -E2BIG (more than EL_MAX_REQUESTS timed round trips), -ENOMEM, -errno
 * of epoll_create1. el_free frees it all, even after a failure. */
int el_init(struct el_load *ld);

/* Open every connection (raising the soft RLIMIT_NOFILE if it must: -EMFILE, and ld->why
 * says what to do, when the hard limit is too low) and wait until all are established.
 * 0 or -errno (ECONNREFUSED: nobody listens). */
int el_connect_all(struct el_load *ld);

/* Every connection makes round trips until it has made its share of this phase:
 * ld->warmup, or (timed) its timed round trips, whose latencies go to ld->latency_ns.
 * 0, or -EPROTO (the server closed a connection, changed a byte, sent too much),
 * -ETIMEDOUT (nothing happened for ld->timeout_ms), another -errno. `phase` names the
 * phase in ld->why. */
int el_run_phase(struct el_load *ld, bool timed, const char *phase);

/* Close the connections and the epoll instance, free the memory. */
void el_free(struct el_load *ld);

#endif
