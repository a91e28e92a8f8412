/* aio_cat_notify.c: how glibc tells aio_cat a request is done — the three --notify modes.
 *
 *   suspend   no notification: the main thread sleeps in aio_suspend on the requests in flight
 *   thread    SIGEV_THREAD: glibc calls on_done on a thread it starts for that one notification
 *   reactor   SIGEV_SIGNAL: SIGRTMIN, kept blocked and read from a signalfd in the lab-2 reactor
 */
#include "aio_cat.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

/* SIGEV_THREAD: glibc runs this on a thread it created for this one notification. */
static void on_done(union sigval value)
{
    struct cat *c = value.sival_ptr;
    pid_t tid = gettid();
    int i = atomic_fetch_add(&c->callbacks, 1);
    if (i < MAX_TIDS)
        c->cb_tids[i] = tid;
    if (tid == c->main_tid)
        atomic_fetch_add(&c->on_main, 1);
    sem_post(&c->sem); /* async-signal-safe and cheap: wakes the main thread */
}

/* The reactor saw the signalfd readable: take every pending SIGRTMIN. */
static void on_signal(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct cat *c = arg;
    (void)events;
    c->wakeups++;
    int n = pa_signal_drain(fd, NULL, 0);
    if (n < 0) {
        c->error = n;
        rx_stop(rx);
        return;
    }
    c->signals += n;
    c->notes_seen += n;
}

/* Wait for one notification (thread and reactor modes). 0, or -errno (-ETIMEDOUT). */
int wait_note(void)
{
    if (cat.mode == THREAD) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += WAIT_MS / 1000;
        while (sem_timedwait(&cat.sem, &ts) < 0) {
            if (errno != EINTR)
                return -errno;
        }
        cat.notes_seen++;
        return 0;
    }
    int ret = rx_run_once(cat.rx, WAIT_MS);
    if (ret < 0)
        return ret;
    if (cat.error < 0)
        return cat.error;
    return ret == 0 ? -ETIMEDOUT : 0;
}

/* Sleep until something may be done. 0, or -errno. */
int wait_some(void)
{
    if (cat.mode != SUSPEND)
        return wait_note();
    const struct aiocb *list[MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < cat.depth; i++)
        if (cat.slots[i].state != IDLE)
            list[n++] = &cat.slots[i].cb;
    cat.waits++;
    int ret = pa_wait(list, n, WAIT_MS);
    return ret == -EAGAIN ? -ETIMEDOUT : ret;
}

/* The notification every request (or batch) asks for. 0 or -errno. */
int set_up_notify(void)
{
    if (cat.mode == SUSPEND)
        return pa_notify_none(&cat.notify);
    if (cat.mode == THREAD) {
        if (sem_init(&cat.sem, 0, 0) < 0)
            return -errno;
        return pa_notify_thread(&cat.notify, on_done, &cat);
    }
    /* REACTOR: block SIGRTMIN first (before glibc starts a thread), then wait for it
     * in the reactor through a signalfd. */
    cat.sfd = pa_signal_fd(SIGRTMIN);
    if (cat.sfd < 0)
        return cat.sfd;
    int ret = rx_create(&cat.rx);
    if (ret < 0)
        return ret;
    ret = rx_add(cat.rx, cat.sfd, RX_READABLE, on_signal, &cat);
    if (ret < 0)
        return ret;
    return pa_notify_signal(&cat.notify, SIGRTMIN, &cat);
}

