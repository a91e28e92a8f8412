/* rx: a small epoll reactor — say which fds you care about, get a callback when one is ready. */
#ifndef RX_H
#define RX_H

/*
 * The reactor pattern in one picture:
 *
 *     rx_add(rx, fd, RX_READABLE, on_ready, arg)      "tell me when fd has data"
 *     rx_timer_add(rx, 500, 0, on_timeout, arg)       "tell me in 500 ms"
 *     rx_run(rx)                                      sleep in epoll_wait, wake up,
 *                                                     call on_ready / on_timeout, repeat
 *
 * One thread runs everything. A callback must never block (no blocking read, no
 * sleep): while it runs, every other fd waits. It does a little work on an fd that is
 * ready and returns to the loop.
 *
 * Any fd that epoll accepts works: sockets, pipes, eventfds (lab 3 wakes the reactor
 * from a thread pool with one, lab 5 gets kernel-AIO completions with one), timerfds,
 * signalfds. Regular files do not: epoll_ctl refuses them with EPERM, because the
 * kernel calls a file on disk "always ready", even when reading it means waiting for
 * the disk. That refusal is what the talk is about.
 *
 * Threads: every function here must be called from the thread that runs the reactor
 * (usually the thread that created it); there are no locks. Another thread that wants
 * to wake the reactor writes to an eventfd registered here (lab 3).
 *
 * Errors: functions return >= 0 on success or -errno (-EBADF, -ENOMEM, ...), like the
 * kernel does; print them with strerror(-ret).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

/* What you can ask for in rx_add/rx_mod, and what a callback is told in `events`. */
enum {
    RX_READABLE = 1 << 0, /* a read/recv/accept would not block: data, end of file, or a new connection */
    RX_WRITABLE = 1 << 1, /* a write/send would not block: room in the send buffer, or a connect finished */
};

/* Level-triggered: as long as the fd stays ready, every rx_run_once reports it again.
 * So a callback may read only part of what is there (the rest comes next round), but
 * it must not leave RX_WRITABLE switched on with nothing to write (that would wake the
 * loop forever: a 100% CPU spin). An error or hang-up on the fd (EPOLLERR, EPOLLHUP) is
 * reported as whichever of RX_READABLE/RX_WRITABLE you asked for: your next read or
 * write returns the error (ECONNRESET, EPIPE) or 0 (end of file), and you handle it
 * there, where you already handle errors. */

#define RX_MAX_EVENTS 64 /* events taken from one epoll_wait; more ready fds wait for the next round */

struct rx;

/* Called when fd is ready. events: RX_READABLE and/or RX_WRITABLE, only bits you asked
 * for. arg: what you gave rx_add. The callback may call any rx_ function, including
 * rx_del(rx, fd) and close(fd) of its own fd, and rx_add of a new fd. */
typedef void rx_io_cb(struct rx *rx, int fd, unsigned events, void *arg);

/* Called when a timer is due. id: what rx_timer_add returned. A repeating timer may
 * cancel itself with rx_timer_del(rx, id); a one-shot timer is already gone. */
typedef void rx_timer_cb(struct rx *rx, int64_t id, void *arg);

/* One registered fd; rx->io[fd]. */
struct rx_io {
    rx_io_cb *cb;     /* NULL: this fd is not registered */
    void *arg;        /* handed back to cb untouched; the reactor never frees it */
    unsigned events;  /* RX_READABLE | RX_WRITABLE: what the caller currently wants */
    uint32_t gen;     /* bumped by every rx_add of this fd number: an event that the kernel
                         queued for an earlier fd with the same number (closed and reused
                         by accept within one round) is recognised and dropped */
};

/* One timer. They sit in one singly linked list sorted by deadline, soonest first:
 * finding the next deadline is O(1), adding or cancelling a timer is O(n) (walk the
 * list). Fine for the tens of timers of a lab; a server with 100,000 connection
 * timeouts would use a binary heap (libuv: O(log n)) or a timer wheel (the Linux
 * kernel: O(1)). */
struct rx_timer {
    int64_t id;              /* > 0, unique for the life of the reactor */
    uint64_t when_ms;        /* deadline on the CLOCK_MONOTONIC clock, in ms */
    uint64_t interval_ms;    /* 0: one-shot; else fire again every interval_ms */
    rx_timer_cb *cb;         /* what to call */
    void *arg;               /* handed back to cb untouched */
    struct rx_timer *next;   /* the next later (or equal) deadline; NULL at the end */
};

/* The reactor. Use the functions below rather than the fields; the fields are here so
 * that you can see (and the debugger can show) the whole state. */
struct rx {
    int epfd;                     /* from epoll_create1(EPOLL_CLOEXEC) */
    struct rx_io *io;             /* registrations, indexed by fd; grown on demand */
    int io_cap;                   /* length of io[] (fds 0 .. io_cap-1 fit) */
    int nfds;                     /* how many fds are registered now */
    struct rx_timer *timers;      /* pending timers, soonest deadline first */
    int64_t next_timer_id;        /* the id the next rx_timer_add hands out */
    struct rx_timer *running;     /* the timer whose callback runs now (it is off the list) */
    bool running_cancelled;       /* rx_timer_del was called on `running` from its callback */
    bool stop;                    /* rx_stop was called: rx_run returns after this round */
    struct epoll_event events[RX_MAX_EVENTS]; /* filled by epoll_wait */
};

/* Create a reactor in *out. 0, or -errno (-ENOMEM, -EMFILE: no fd left for the epoll
 * instance). The caller owns it and frees it with rx_destroy. */
int rx_create(struct rx **out);

/* Free the reactor: its epoll fd, its registrations, its pending timers. The fds you
 * registered stay open (they are yours: close them yourself) and no callback is
 * called. Never call it from a callback. NULL is allowed. */
void rx_destroy(struct rx *rx);

/* Register fd: call cb(rx, fd, events, arg) whenever fd is ready for something in
 * `events` (RX_READABLE, RX_WRITABLE or both; not 0: epoll reports a hang-up even to an
 * fd that asked for nothing, and nobody would be called to deal with it; to pause an
 * fd, rx_del it and rx_add it again later). The fd should be non-blocking
 * (O_NONBLOCK), or one callback can stall the whole loop. Returns 0, or -EEXIST (fd
 * already registered), -EINVAL (events 0 or unknown bits, cb NULL), -EBADF (fd not
 * open), -EPERM (fd is a regular file or a directory: epoll cannot watch it), -ENOMEM,
 * or another -errno from epoll_ctl. */
int rx_add(struct rx *rx, int fd, unsigned events, rx_io_cb *cb, void *arg);

/* Change what a registered fd is watched for (same bits as rx_add, not 0; the
 * callback and arg stay). A cheap way to say "stop reading" or "wake me when I can write". Returns
 * 0, or -ENOENT (fd not registered), -EINVAL, or -errno from epoll_ctl. */
int rx_mod(struct rx *rx, int fd, unsigned events);

/* Unregister fd. Call it BEFORE close(fd): after close the kernel may hand the same
 * number to the next accept, and a late rx_del would remove the wrong fd. Safe from any
 * callback, including fd's own: an event already fetched for fd in this round is
 * dropped. Returns 0, or -ENOENT (not registered), or -errno from epoll_ctl. */
int rx_del(struct rx *rx, int fd);

/* Call cb(rx, id, arg) once after delay_ms (interval_ms == 0), or after delay_ms and
 * then every interval_ms until cancelled. delay_ms may be 0: "on the next round, after
 * the I/O callbacks". Returns the timer's id (> 0), or -EINVAL (cb NULL), -ENOMEM. */
int64_t rx_timer_add(struct rx *rx, uint64_t delay_ms, uint64_t interval_ms, rx_timer_cb *cb, void *arg);

/* Cancel a timer: its callback will not be called again. Safe from any callback,
 * including the timer's own. Returns 0, or -ENOENT (no such timer, or a one-shot
 * timer that already fired). */
int rx_timer_del(struct rx *rx, int64_t id);

/* One round of the loop: wait until an fd is ready or the soonest timer is due, but at
 * most timeout_ms (-1: no limit beyond the timers; 0: do not wait at all); call the
 * callbacks of the ready fds, then of the due timers. Returns how many callbacks ran
 * (0 when the wait timed out or was interrupted by a signal), or -errno from
 * epoll_wait. */
int rx_run_once(struct rx *rx, int timeout_ms);

/* Run rounds until rx_stop is called or nothing is left to wait for (no fd registered
 * and no timer pending). Returns 0, or the -errno of a failed round. */
int rx_run(struct rx *rx);

/* Ask rx_run to return once the current round is over. Call it from a callback. */
void rx_stop(struct rx *rx);

#endif
