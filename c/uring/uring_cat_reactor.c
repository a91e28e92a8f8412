/* uring_cat_reactor: uring_cat --reactor — completions bump an eventfd that sits in the lab-2 reactor.
 *
 * Given code of lab 7 (read it beside run_wait in uring_cat.c: the same fill, submit, reap,
 * but the thread sleeps in epoll_wait, never in io_uring_enter).
 */
#include "uring_cat.h"
#include "../reactor/rx.h"

#include <errno.h>

/* The eventfd is readable: CQEs arrived. Reap them, refill, submit without waiting. */
static void on_cqes(struct rx *rx, int fd, unsigned events, void *arg)
{
    (void)rx;
    (void)fd;
    (void)events;
    (void)arg;
    cat.wakeups++;
    /* The eventfd's count does not matter (the kernel may bump it once for several CQEs):
     * the CQ ring says what finished. Reaping is a read of shared memory, not a system
     * call; the submit hands the refilled slots over WITHOUT waiting, since in the
     * reactor the one place to sleep is epoll_wait. */
    cat.where = "reading the eventfd (ur_eventfd_drain)";
    long n = ur_eventfd_drain(cat.u);
    int ret = n < 0 ? (int)n : reap_all();
    if (ret >= 0)
        ret = fill();
    if (ret >= 0) {
        cat.where = "submitting (ur_submit, ops->submit)";
        ret = ur_submit(cat.u, 0);
    }
    if (ret < 0)
        cat.error = ret;
}

int run_reactor(void)
{
    int ret;
    if (cat.rx == NULL) {
        cat.where = "registering an eventfd with the ring (ur_use_eventfd, ops->register_eventfd)";
        int efd = ur_use_eventfd(cat.u);
        if (efd < 0)
            return efd;
        cat.where = "creating the reactor";
        if ((ret = rx_create(&cat.rx)) < 0 || (ret = rx_add(cat.rx, efd, RX_READABLE, on_cqes, NULL)) < 0)
            return ret;
    }
    ret = fill();
    if (ret >= 0) {
        cat.where = "submitting (ur_submit, ops->submit)";
        ret = ur_submit(cat.u, 0);
    }
    double quiet = ka_now();
    while (ret >= 0 && cat.error == 0 && busy()) {
        long before = cat.u->st.reaped;
        ret = rx_run_once(cat.rx, 1000); /* the one place this thread sleeps: epoll_wait */
        if (cat.u->st.reaped != before)
            quiet = ka_now();
        else if (ka_now() - quiet > 10) {
            cat.where = "waiting 10 s for the eventfd (registered with the ring? CQEs reaped?)";
            ret = -ETIMEDOUT;
        }
    }
    return ret < 0 ? ret : cat.error;
}
