/* Your copy of c/reactor/rx.c: edit it, then run `make lab2`. (Generated; see docs/ARCHITECTURE.md.) */
/* rx: the epoll reactor — registrations in an array indexed by fd, timers in a sorted list. */
#include "rx.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Now, in ms, on CLOCK_MONOTONIC: the clock that `date` and NTP never move backwards,
 * so a deadline stays a deadline. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Make room in rx->io[] for fd. 0 or -ENOMEM. The array only grows (doubling), so a
 * pointer into it is valid only until the next rx_add: callbacks may call rx_add, so
 * the dispatch loop must look rx->io[fd] up again after each callback. */
static int io_reserve(struct rx *rx, int fd)
{
    if (fd < rx->io_cap)
        return 0;
    int cap = rx->io_cap ? rx->io_cap : 64;
    while (cap <= fd)
        cap *= 2;
    struct rx_io *io = realloc(rx->io, (size_t)cap * sizeof(*io));
    if (io == NULL)
        return -ENOMEM;
    memset(io + rx->io_cap, 0, (size_t)(cap - rx->io_cap) * sizeof(*io));
    rx->io = io;
    rx->io_cap = cap;
    return 0;
}

/* Put t into the sorted timer list, after every timer due at the same time or earlier,
 * so timers with equal deadlines fire in the order they were added. O(n). */
static void timer_insert(struct rx *rx, struct rx_timer *t)
{
    struct rx_timer **link = &rx->timers;
    while (*link != NULL && (*link)->when_ms <= t->when_ms)
        link = &(*link)->next;
    t->next = *link;
    *link = t;
}

/* TODO(lab2): Two small translators between our bits and epoll's, used by rx_add/rx_mod and
 * the dispatch loop in rx_run_once:
 * to_epoll(events): RX_READABLE -> EPOLLIN, RX_WRITABLE -> EPOLLOUT.
 * from_epoll(got, wanted): EPOLLIN -> RX_READABLE, EPOLLOUT -> RX_WRITABLE,
 * EPOLLERR/EPOLLHUP -> everything in `wanted` (the callback's next read or
 * write will see the error); the result is masked with `wanted`.
 * And a 64-bit key for epoll_event.data that says which registration an event
 * belongs to: the fd in the low 32 bits, rx->io[fd].gen in the high 32 bits. */

int rx_create(struct rx **out)
{
    struct rx *rx = calloc(1, sizeof(*rx));
    if (rx == NULL)
        return -ENOMEM;
    rx->next_timer_id = 1;
    /* TODO(lab2): create the epoll instance with epoll_create1 (close-on-exec, like every fd
     * we open) into rx->epfd. If it fails, free rx and return -errno; else hand
     * rx to the caller through *out and return 0. */
    free(rx);
    (void)out;
    return -ENOSYS;
}

void rx_destroy(struct rx *rx)
{
    if (rx == NULL)
        return;
    while (rx->timers != NULL) {
        struct rx_timer *t = rx->timers;
        rx->timers = t->next;
        free(t);
    }
    close(rx->epfd);
    free(rx->io);
    free(rx);
}

int rx_add(struct rx *rx, int fd, unsigned events, rx_io_cb *cb, void *arg)
{
    if (fd < 0)
        return -EBADF;
    if (cb == NULL || events == 0 || (events & ~(unsigned)(RX_READABLE | RX_WRITABLE)))
        return -EINVAL;
    int ret = io_reserve(rx, fd);
    if (ret < 0)
        return ret;
    if (rx->io[fd].cb != NULL)
        return -EEXIST;
    /* TODO(lab2): Bump rx->io[fd].gen (a new registration of this fd number), then ask the
     * kernel to watch fd: epoll_ctl(rx->epfd, EPOLL_CTL_ADD, fd, &ev) where
     * ev.events = to_epoll(events) and ev.data.u64 = event_key(fd, gen).
     * On failure return -errno (the kernel's EBADF, EPERM... are the answer).
     * Then fill in cb, arg, events, and count the fd in rx->nfds. */
    (void)arg;
    return -ENOSYS;
}

int rx_mod(struct rx *rx, int fd, unsigned events)
{
    if (events == 0 || (events & ~(unsigned)(RX_READABLE | RX_WRITABLE)))
        return -EINVAL;
    if (fd < 0 || fd >= rx->io_cap || rx->io[fd].cb == NULL)
        return -ENOENT;
    /* TODO(lab2): epoll_ctl(EPOLL_CTL_MOD) with the new events and the same key as rx_add
     * used (the gen does not change); -errno on failure; remember the new events. */
    return -ENOSYS;
}

int rx_del(struct rx *rx, int fd)
{
    if (fd < 0 || fd >= rx->io_cap || rx->io[fd].cb == NULL)
        return -ENOENT;
    /* TODO(lab2): epoll_ctl(EPOLL_CTL_DEL), and forget the registration (cb = NULL, one fd
     * fewer in rx->nfds) EVEN IF epoll_ctl failed: a caller who closed the fd
     * first gets EBADF, but the kernel has already dropped a closed fd from the
     * epoll set, and our table must not keep a ghost that makes the next rx_add of
     * this number fail with EEXIST. Return 0 or -errno. */
    return -ENOSYS;
}

int64_t rx_timer_add(struct rx *rx, uint64_t delay_ms, uint64_t interval_ms, rx_timer_cb *cb, void *arg)
{
    if (cb == NULL)
        return -EINVAL;
    struct rx_timer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->id = rx->next_timer_id++;
    t->when_ms = now_ms() + delay_ms;
    t->interval_ms = interval_ms;
    t->cb = cb;
    t->arg = arg;
    timer_insert(rx, t);
    return t->id;
}

int rx_timer_del(struct rx *rx, int64_t id)
{
    /* The timer whose callback is running is off the list: flag it, run_timers frees it. */
    if (rx->running != NULL && rx->running->id == id) {
        if (rx->running->interval_ms == 0 || rx->running_cancelled)
            return -ENOENT; /* a one-shot timer is gone once it fires */
        rx->running_cancelled = true;
        return 0;
    }
    for (struct rx_timer **link = &rx->timers; *link != NULL; link = &(*link)->next) {
        if ((*link)->id == id) {
            struct rx_timer *t = *link;
            *link = t->next;
            free(t);
            return 0;
        }
    }
    return -ENOENT;
}

/* TODO(lab2): Two helpers for rx_run_once.
 * wait_ms(rx, timeout_ms): how long epoll_wait may sleep. Start from timeout_ms
 * (-1 = forever); if a timer is pending, sleep no longer than until the soonest
 * deadline (the list head): deadline - now, 0 if already due, at most INT_MAX.
 * Why rounding matters: times are whole ms and epoll_wait never wakes early, so
 * after sleeping (deadline - now) ms the timer is due; a timeout of 0 while a
 * timer is "almost due" would spin the CPU.
 * run_timers(rx): call the callbacks of every timer already due now, soonest
 * first; return how many ran. Take each timer off the list head before its
 * callback and note it in rx->running (rx_timer_del looks there). Afterwards
 * free a one-shot or cancelled timer; put a repeating one back, one interval
 * later (if that is already past, skip the missed ticks: now + interval).
 * Timers added by the callbacks themselves (id >= the rx->next_timer_id you saw
 * on entry) wait for the next round, so a callback that re-adds a 0 ms timer
 * cannot keep this loop going forever. */

int rx_run_once(struct rx *rx, int timeout_ms)
{
    /* TODO(lab2): 1. n = epoll_wait(rx->epfd, rx->events, RX_MAX_EVENTS, wait_ms(rx, timeout_ms)).
     * EINTR (a signal arrived) is not an error: treat it as "nothing ready"
     * (rx_run calls us again, with a fresh timeout). Other errors: -errno.
     * 2. For each event: split data.u64 into fd and gen. Skip it if rx->io[fd] is
     * no longer registered or has another gen (an earlier callback in this
     * round unregistered it, maybe closed it and got the number back from
     * accept). Translate with from_epoll(); skip if nothing is left; call
     * cb(rx, fd, events, arg). Do not keep a pointer into rx->io across the
     * call: the callback may rx_add and make the array move.
     * 3. run_timers(). Return the number of callbacks called. */
    (void)rx;
    (void)timeout_ms;
    return -ENOSYS;
}

int rx_run(struct rx *rx)
{
    rx->stop = false;
    while (!rx->stop && (rx->nfds > 0 || rx->timers != NULL)) {
        int ret = rx_run_once(rx, -1);
        if (ret < 0)
            return ret;
    }
    return 0;
}

void rx_stop(struct rx *rx)
{
    rx->stop = true;
}
