/* uring_cat: read a file (and copy it) with io_uring — raw rings or liburing, in batches, or in the reactor. */
/*
 * Usage: uring_cat FILE [--api raw|liburing] [--direct|--buffered] [--depth N] [--batch B]
 *                       [--block BYTES] [--reactor] [--sqpoll] [--sq-idle-ms MS] [--write OUT]
 *                       [--fixed] [--offset O] [--buffer-offset K] [--unchecked] [--pause]
 *                       [--stop-after N]
 *
 * Reads FILE into memory with up to --depth (8) requests of --block (64 KiB) bytes in
 * flight and prints its CRC-32 (the number Python's zlib.crc32 gives). No thread of ours
 * is created; whatever threads /proc shows besides the main one are the kernel's.
 *
 *   --api raw|liburing  uring_raw.c (syscall(2) and the mmapped rings) or uring_liburing.c
 *   --direct            O_DIRECT (the default); --buffered: through the page cache
 *   --batch B           wait for B completions per io_uring_enter (default 4): one system
 *                       call hands over every new SQE and collects a batch of CQEs
 *   --reactor           completions bump an eventfd registered with the ring, in the lab-2
 *                       reactor: the thread sleeps in epoll_wait, reaps the CQ ring from
 *                       memory, and io_uring_enter never waits
 *   --sqpoll            IORING_SETUP_SQPOLL: the kernel's iou-sqp-PID thread takes the SQEs;
 *                       with --reactor, no io_uring_enter at all. It polls for --sq-idle-ms
 *                       (2000) after the last request before it sleeps: a CPU spent spinning
 *   --write OUT         then write the bytes to OUT with io_uring writes (a copy). Buffered
 *                       writes that would block go to the kernel's iou-wrk-PID workers
 *   --fixed             extension: register the buffer and the files once (READ_FIXED)
 *   --offset O, --buffer-offset K   start at O / read into memory K bytes past an aligned
 *                       address: with O_DIRECT both must be aligned, or it is refused here
 *                       (exit 2) before any request is queued
 *   --unchecked         skip that check: the kernel's answer then comes back in the CQE
 *   --stop-after N      stop at the copy's Nth write completion, as a failed request would,
 *                       with the others still in flight: drain() must wait for them before
 *                       the ring is closed and the buffer freed
 *   --pause             at the end, before the ring is closed, print "paused: ..." and wait
 *                       for a line on stdin: time to look at /proc/PID/task
 *
 * Exit status: 0 done, 1 failed, 2 refused (or usage), 3 io_uring is blocked on this machine.
 *
 * This file is lab 7's: how the reader waits for the kernel. The rest is given, in
 * c/uring/uring_cat_requests.c (fill, reap_all: the requests), c/uring/uring_cat_reactor.c
 * (--reactor) and c/uring/uring_cat_setup.c (the command line, the ring, the report);
 * c/uring/uring_cat.h says who does what.
 *
 * Try (make lab7 builds your code into build/grade/lab7; build/bin holds the reference's):
 *       cd build/data && ../grade/lab7/build/bin/uring_cat uring-lab7.bin --buffered --write copy.bin --pause
 *       strace -f -e trace=io_uring_setup,io_uring_enter,io_uring_register,clone3 \
 *           ../grade/lab7/build/bin/uring_cat uring-lab7.bin
 */
#include "uring_cat.h"

#include <errno.h>
#include <unistd.h>

/* Without the reactor: the thread waits inside io_uring_enter. 0 or -errno. */
int run_wait(void)
{
    /* BEGIN SOLUTION lab7
     * TODO: The batching loop. While busy(): fill() the free slots (SQEs only, no system
     *       call), then ONE ur_submit(cat.u, cat.batch) that hands every new SQE to the
     *       kernel AND waits for a batch of completions (ur_submit waits for no more than
     *       are in flight), then reap_all() (it reads the CQEs from memory and settles
     *       each: bytes counted, slot freed or queued again), and go round. Before the
     *       submit set cat.where = "submitting (ur_submit, ops->submit)" for the error
     *       message. Return 0 at the end, or the first -errno.
     * STUB: return -ENOSYS;
     */
    while (busy()) {
        int ret = fill();
        if (ret >= 0) {
            cat.where = "submitting (ur_submit, ops->submit)";
            ret = ur_submit(cat.u, cat.batch);
        }
        if (ret >= 0)
            ret = reap_all();
        if (ret < 0)
            return ret;
    }
    return 0;
    /* END SOLUTION */
}

/* Before the ring and the buffer go: wait until the kernel is done with every request
 * still in flight (after an error, or a stop). 0 or -errno. */
int drain(void)
{
    struct ur_done done[64];
    /* BEGIN SOLUTION lab7
     * TODO: Closing the ring's fd does NOT wait for its requests: the kernel tears the
     *       ring down later, in a worker of its own, and a read still in flight may
     *       write into cat.data after main has freed it (a write may read freed memory).
     *       So wait for them first: while cat.u->in_flight > 0, ur_submit(cat.u,
     *       cat.u->in_flight) (one io_uring_enter that waits for all of them; ur_submit
     *       never waits for more than are in flight), then ur_reap(cat.u, done, 64) until
     *       it returns 0: their results no longer matter, but the reap is what counts
     *       them out of in_flight. Return 0, or the first -errno.
     * STUB: (void)done;
     * STUB: return -ENOSYS;
     */
    while (cat.u->in_flight > 0) {
        int ret = ur_submit(cat.u, (unsigned)cat.u->in_flight);
        while (ret >= 0 && (ret = ur_reap(cat.u, done, 64)) > 0)
            continue;
        if (ret < 0)
            return ret;
    }
    return 0;
    /* END SOLUTION */
}

int main(int argc, char **argv)
{
    struct cat_options opt;
    cat_options(&opt, argc, argv);
    int status = cat_open(&opt); /* the file, the ring (your raw_open or lib_open), the buffer */
    if (status == 0)
        status = cat_transfer(&opt); /* the read, then --write's copy: run_wait, or the reactor */
    if (status == 0)
        cat_report(&opt);
    /* Requests still in flight (an error stopped the loop) own their part of the buffer
     * until their CQEs come: closing the ring does not wait for them. If the wait fails,
     * leak the ring and the buffer rather than free memory the kernel may still write into. */
    if (cat.u != NULL && cat.u->in_flight > 0) {
        alarm(STUCK_S);
        int ret = drain();
        if (ret < 0)
            return cat_fail("waiting for the requests in flight (drain in uring_cat.c); the ring and buffer are "
                            "leaked", ret);
    }
    cat_close();
    return status;
}
