/* kaio_cat: read a file with Linux kernel AIO (io_submit), O_DIRECT, one thread, and report how. */
/*
 * Usage: kaio_cat FILE [--api raw|libaio] [--direct|--buffered] [--depth N] [--batch B]
 *                      [--block BYTES] [--ctx N] [--slots N] [--reactor] [--offset O]
 *                      [--buffer-offset K] [--unchecked] [--pause]
 *
 * Reads FILE into memory with up to --depth (8) requests of --block (64 KiB) bytes in
 * flight, at most --batch (4) iocbs per io_submit, and prints its CRC-32 (the number
 * Python's zlib.crc32 gives) and how the I/O was scheduled. No thread is created.
 *
 *   --api raw|libaio    ka_raw.c (syscall(2)) or ka_libaio.c (libaio): the same calls
 *   --direct            O_DIRECT (the default): the disk DMAs into our aligned buffers
 *   --buffered          through the page cache: io_submit then does the read itself
 *   --ctx N             io_setup(N): the context's size (default: depth). A tiny context
 *                       with a big depth shows io_submit taking fewer than asked, then EAGAIN
 *   --slots N           requests prepared at once, queued or in flight (default: depth).
 *                       More slots than --depth: ka_submit alone keeps the depth bound
 *   --reactor           completions bump an eventfd that sits in the lab-2 reactor: the
 *                       thread sleeps in epoll_wait and reaps with io_getevents(min_nr=0)
 *   --offset O          start reading at O (not a multiple of the alignment: refused)
 *   --buffer-offset K   read into memory K bytes past an aligned address (refused if K is
 *                       not a multiple of the memory alignment)
 *   --unchecked         skip ka_check: a misaligned request goes to the kernel, whose only
 *                       answer is EINVAL in the request's io_event (exit status 1)
 *   --pause             once the first requests are in flight, print "paused: ..." and wait
 *                       for a line on stdin: time to look at /proc/PID/fdinfo
 *
 * A request whose offset, length or buffer breaks the O_DIRECT alignment is refused
 * here, before any io_submit, with exit status 2 and the rule it breaks.
 *
 * Try:  cd build/data && ../bin/kaio_cat kaio-lab5.bin --reactor
 *       strace -f -e trace=io_setup,io_submit,io_getevents,epoll_wait,read ../bin/kaio_cat kaio-lab5.bin --reactor
 */
#include "ka.h"
#include "../common/args.h"
#include "../common/reader_args.h"
#include "../common/look.h"
#include "../reactor/rx.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SIZE (256L << 20) /* the whole file is kept in memory: 256 MiB at most */
_Static_assert(READER_MAX_DEPTH <= KA_MAX_SLOTS, "--depth and --batch must fit a struct ka");
#define MAX_CTX 65536         /* io_setup's events: /proc/sys/fs/aio-max-nr's default for the whole machine */
#define WAIT_MS 10000         /* no completion for this long: something is wrong, stop */
#define LAB "lab 5: ka.c, ka_raw.c, ka_libaio.c"

struct chunk {
    off_t off;   /* where in the file */
    size_t len;  /* bytes asked */
};

struct cat {
    struct ka *k;
    struct ka_align al;
    int direct;
    const char *name;
    off_t size;                     /* the file's size */
    off_t next;                     /* the next offset to read */
    size_t block;
    char *data;                     /* the file in memory; data[i] is byte start+i */
    off_t start;                    /* --offset */
    struct chunk chunks[KA_MAX_SLOTS]; /* what each slot is reading */
    long bytes;                     /* bytes read, in all */
    long short_eof, resubmitted;    /* short reads at end of file; middle short reads resubmitted */
    long wakeups;                   /* reactor callbacks */
    int error;                      /* a -errno met in a reactor callback */
    int refused;                    /* ka_check said no: the message is printed */
    int unchecked;                  /* --unchecked: ka_check is not asked */
    int pause;                      /* --pause: stop once, with requests in flight */
    const char *where;              /* the step that failed, for the message */
};

static struct cat cat;

static int fail(const char *what, int err)
{
    fprintf(stderr, "kaio_cat: %s: %s%s\n", what, strerror(-err), look_errno_name(-err, LAB));
    return 1;
}

/* Queue one read of len bytes at off in slot, after the alignment check. 0 or -errno. */
static int queue(int slot, off_t off, size_t len)
{
    char why[256];
    void *buf = cat.data + (off - cat.start);
    cat.where = "checking alignment (ka_check in ka.c)";
    int ret = cat.unchecked ? 0 : ka_check(&cat.al, cat.direct, buf, off, len, why, sizeof(why));
    if (ret == -EINVAL) {
        fprintf(stderr, "kaio_cat: refused before io_submit: %s\n", why);
        cat.refused = 1;
        return ret;
    }
    if (ret < 0)
        return ret;
    cat.where = "preparing an iocb (ka_queue, ops->prep)";
    ret = ka_queue(cat.k, slot, 0, buf, off, len);
    if (ret < 0)
        return ret;
    cat.chunks[slot] = (struct chunk){ off, len };
    return 0;
}

/* Fill every free slot with the next block, and submit what is queued. 0 or -errno. */
static int refill(void)
{
    struct ka *k = cat.k;
    for (int s = 0; s < k->nslots && cat.next < cat.size; s++) {
        if (k->state[s] != KA_FREE)
            continue;
        /* Always ask for a whole block, even past the end: O_DIRECT lengths must be
         * aligned, and the kernel simply stops at end of file (a short read). */
        int ret = queue(s, cat.next, cat.block);
        if (ret < 0)
            return ret;
        cat.next += (off_t)cat.block;
    }
    cat.where = "submitting (ka_submit, ops->submit)";
    int ret = ka_submit(k);
    if (ret < 0)
        return ret;
    if (k->in_flight == 0 && k->nqueued > 0)
        return -EAGAIN; /* nothing in flight and the kernel takes nothing: no completion will ever make room */
    return 0;
}

/* One finished request: count its bytes; a short read at end of file ends the chunk, a
 * short read elsewhere is resubmitted for the rest. 0 or -errno. */
static int settle(const struct ka_done *d)
{
    struct chunk c = cat.chunks[d->slot];
    if (d->res < 0) {
        char what[128];
        snprintf(what, sizeof(what), "read of %zu bytes at offset %lld", c.len, (long long)c.off);
        cat.where = NULL;
        fail(what, (int)d->res);
        return (int)d->res;
    }
    size_t got = (size_t)d->res;
    if (got > c.len) {
        /* The kernel never returns more than asked: a -errno was turned into a count. */
        fprintf(stderr, "kaio_cat: a read of %zu bytes at offset %lld came back with res %ld, more than asked: "
                "a -errno kept in an unsigned variable?\n", c.len, (long long)c.off, d->res);
        cat.where = NULL;
        return -EIO;
    }
    cat.bytes += (long)got;
    if (got == c.len)
        return 0;
    if (c.off + (off_t)got >= cat.size) {
        cat.short_eof++; /* the end of the file: this chunk is complete */
        return 0;
    }
    if (got == 0) {
        fprintf(stderr, "kaio_cat: read at offset %lld returned 0 before the end (%lld): did the file shrink?\n",
                (long long)c.off, (long long)cat.size);
        cat.where = NULL;
        return -EIO;
    }
    cat.resubmitted++; /* a short read in the middle: ask again for the rest */
    return queue(d->slot, c.off + (off_t)got, c.len - got);
}

/* Reap what is finished (waiting for at least min_nr) and settle each. count or -errno. */
static int reap(int min_nr, int timeout_ms)
{
    struct ka_done done[KA_MAX_SLOTS];
    cat.where = "reaping (ka_reap, ops->reap)";
    int got = ka_reap(cat.k, min_nr, done, KA_MAX_SLOTS, timeout_ms);
    if (got < 0)
        return got;
    for (int i = 0; i < got; i++) {
        int ret = settle(&done[i]);
        if (ret < 0)
            return ret;
    }
    return got;
}

/* --pause: the first time requests are in flight, say so and wait for a line on stdin,
 * while a grader looks at /proc/PID/fdinfo (the file's flags, the eventfd's). */
static void pause_in_flight(void)
{
    char line[64];
    if (!cat.pause || cat.k->in_flight == 0)
        return;
    cat.pause = 0;
    printf("paused: pid %d, %d requests in flight; look at /proc/%d/fdinfo, then press Enter\n", (int)getpid(),
           cat.k->in_flight, (int)getpid());
    while (fgets(line, sizeof(line), stdin) != NULL && strchr(line, '\n') == NULL)
        continue;
}

static int busy(void)
{
    return cat.next < cat.size || cat.k->in_flight > 0 || cat.k->nqueued > 0;
}

/* The eventfd is readable: some requests completed. Reap without waiting, refill. */
static void on_completion(struct rx *rx, int fd, unsigned events, void *arg)
{
    (void)fd;
    (void)events;
    (void)arg;
    cat.wakeups++;
    cat.where = "reading the eventfd (ka_eventfd_drain: an eventfd is read 8 bytes at a time, a uint64_t)";
    long n = ka_eventfd_drain(cat.k);
    int ret = n < 0 ? (int)n : 0;
    /* min_nr 0: only what is done now; never sleep in io_getevents inside a callback. */
    while (ret == 0 && n > 0) {
        ret = reap(0, 0);
        if (ret > 0)
            n -= ret;
        else if (ret == 0)
            break; /* the counter ran ahead of the ring: the rest comes with the next wake-up */
        ret = ret < 0 ? ret : 0;
    }
    if (ret == 0)
        ret = refill();
    if (ret < 0) {
        cat.error = ret;
        rx_stop(rx);
    } else if (!busy()) {
        rx_stop(rx);
    }
}

/* ka_reap(min_nr 1, WAIT_MS) returned none after `waited` seconds: say why it cannot be. */
static int nothing_reaped(double waited)
{
    static char where[240];
    if (waited < WAIT_MS / 2000.0)
        /* Asked to wait, it did not: a poll. */
        snprintf(where, sizeof(where), "io_getevents returned no event after %.6f s, although asked to wait up to "
                 "%d s for at least 1 (min_nr or the timeout did not reach it)", waited, WAIT_MS / 1000);
    else
        /* Nothing in WAIT_MS although ka.c counts requests in flight. */
        snprintf(where, sizeof(where), "io_getevents waited %d s for one of the %d requests ka.c counts in flight, "
                 "and none came: counted in flight but never taken by io_submit, or reaped and not subtracted?",
                 WAIT_MS / 1000, cat.k->in_flight);
    cat.where = where;
    return -ETIMEDOUT;
}

static int run_blocking(void)
{
    while (busy()) {
        int ret = refill();
        if (ret < 0)
            return ret;
        pause_in_flight();
        if (cat.k->in_flight == 0)
            continue;
        double t0 = ka_now();
        ret = reap(1, WAIT_MS);
        if (ret < 0)
            return ret;
        if (ret == 0)
            return nothing_reaped(ka_now() - t0);
    }
    return 0;
}

static int run_reactor(void)
{
    struct rx *rx = NULL;
    cat.where = "creating the eventfd (ka_use_eventfd)";
    int ret = ka_use_eventfd(cat.k);
    if (ret < 0)
        return ret;
    int efd = ret;
    cat.where = "creating the reactor";
    ret = rx_create(&rx);
    if (ret < 0)
        return ret;
    ret = rx_add(rx, efd, RX_READABLE, on_completion, NULL);
    if (ret < 0)
        goto out;
    ret = refill();
    if (ret == 0)
        pause_in_flight();
    while (ret == 0 && busy()) {
        ret = rx_run_once(rx, WAIT_MS); /* the one place this thread sleeps: epoll_wait */
        if (ret == 0) {
            cat.where = "waiting for the eventfd (IOCB_FLAG_RESFD / io_set_eventfd set in prep?)";
            ret = -ETIMEDOUT;
        } else if (ret > 0) {
            ret = cat.error;
        }
    }
out:
    rx_destroy(rx);
    return ret;
}

/* What the command line asked for: the readers' flags (common/reader_args.h), and kaio_cat's own. */
struct options {
    const char *name;         /* FILE */
    struct reader_options r;  /* --api, --direct|--buffered, --depth, --batch, --block, --reactor, ... */
    const struct ka_ops *ops; /* --api raw|libaio */
    int nr_events;            /* --ctx: io_setup's size (default: depth) */
    int slots;                /* --slots: requests prepared at once, queued or in flight (default: depth) */
};

static void usage(void)
{
    fprintf(stderr, "usage: kaio_cat FILE [--api raw|libaio] [--direct|--buffered] [--depth N] [--batch B]\n"
                    "                     [--block BYTES] [--ctx N] [--slots N] [--reactor] [--offset O]\n"
                    "                     [--buffer-offset K] [--unchecked] [--pause]\n");
    exit(2);
}

/* The command line into *opt; exits 2 when it is wrong. */
static void parse_options(struct options *opt, int argc, char **argv)
{
    static const struct option options[] = {
        READER_OPTIONS,
        { "ctx", required_argument, NULL, 'c' },
        { "slots", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct options){ .nr_events = 0 };
    reader_defaults(&opt->r);
    int c, bad = 0; /* bad: a number was refused (args.c said which) */
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int ret = reader_option(&opt->r, "kaio_cat", c);
        if (c == 'c')
            ret = args_int("kaio_cat", "--ctx", optarg, 1, MAX_CTX, &opt->nr_events);
        else if (c == 's')
            ret = args_int("kaio_cat", "--slots", optarg, 1, KA_MAX_SLOTS, &opt->slots);
        else if (ret == 0)
            usage(); /* an unknown flag (getopt_long said which), or one without its argument */
        bad |= ret < 0;
    }
    opt->name = reader_file(bad, argc, argv, usage);
    opt->ops = !strcmp(opt->r.api, "libaio") ? &ka_libaio_ops : !strcmp(opt->r.api, "raw") ? &ka_raw_ops : NULL;
    if (opt->ops == NULL) {
        fprintf(stderr, "kaio_cat: --api wants raw or libaio, not '%s'\n", opt->r.api);
        exit(2);
    }
    if (opt->slots == 0)
        opt->slots = opt->r.depth;
    if (opt->nr_events == 0)
        opt->nr_events = opt->r.depth;
    if (opt->slots < opt->r.depth) {
        fprintf(stderr, "kaio_cat: --slots %d is fewer than --depth %d: the depth is requests in slots\n",
                opt->slots, opt->r.depth);
        exit(2);
    }
}

/* Open FILE, learn its alignment, make the buffer and the context; print the first
 * report lines. Sets *fd (-1 if not opened) and *mem. 0, or 1 (the message is printed). */
static int setup(const struct options *opt, int *fd, void **mem)
{
    cat.name = opt->name;
    cat.direct = opt->r.direct;
    cat.unchecked = opt->r.unchecked;
    cat.pause = opt->r.pause;
    cat.block = (size_t)opt->r.block;
    cat.start = (off_t)opt->r.offset;
    *fd = open(cat.name, O_RDONLY | O_CLOEXEC | (cat.direct ? O_DIRECT : 0));
    if (*fd < 0)
        return fail(cat.direct ? "open with O_DIRECT (tmpfs refuses it: use a directory on ext4/xfs)" : "open", -errno);
    struct stat st;
    if (fstat(*fd, &st) < 0 || st.st_size > MAX_SIZE) {
        fprintf(stderr, "kaio_cat: %s: not a readable file of at most %ld bytes\n", cat.name, MAX_SIZE);
        return 1;
    }
    cat.size = st.st_size;
    cat.next = cat.start;
    int ret = ka_alignment(*fd, &cat.al);
    if (ret < 0)
        return fail("statx (what does O_DIRECT need here?)", ret);
    printf("kaio_cat: api %s, %s, depth %d, batch %d, block %zu, context %d, slots %d%s\n", opt->ops->name,
           cat.direct ? "O_DIRECT" : "buffered", opt->r.depth, opt->r.batch, cat.block, opt->nr_events, opt->slots,
           opt->r.reactor ? ", reactor" : "");
    printf("alignment: memory %zu, offset %zu (%s)\n", cat.al.mem, cat.al.off, cat.al.source);
    /* Room for whole blocks past the end (each read asks for a full block), aligned for
     * O_DIRECT: posix_memalign, since malloc only promises 16 bytes. */
    size_t span = cat.size > cat.start ? (size_t)(cat.size - cat.start) : 0;
    size_t room = (span / cat.block + 1) * cat.block + READER_MAX_SHIFT;
    if (posix_memalign(mem, 4096, room) != 0) {
        *mem = NULL;
        fprintf(stderr, "kaio_cat: out of memory\n");
        return 1;
    }
    cat.data = (char *)*mem + opt->r.buffer_offset;
    ret = ka_create(&cat.k, opt->ops, *fd, opt->nr_events, opt->slots, opt->r.depth, opt->r.batch);
    if (ret < 0)
        return fail(opt->ops == &ka_raw_ops ? "io_setup (ka_create, raw_open in ka_raw.c)"
                                            : "io_setup (ka_create, lib_open in ka_libaio.c)", ret);
    return 0;
}

/* Read the whole file, waiting in io_getevents or in the reactor. 0, or the exit status. */
static int run(const struct options *opt, double *took)
{
    double t0 = ka_now();
    int ret = opt->r.reactor ? run_reactor() : run_blocking();
    *took = ka_now() - t0;
    if (ret == 0)
        return 0;
    if (cat.refused)
        return 2;
    if (cat.where != NULL)
        fail(cat.where, ret);
    return 1;
}

/* The report's `key: value` lines: what was read, and how it was scheduled. */
static void report(const struct options *opt, double took)
{
    struct ka_stats *s = &cat.k->st;
    printf("read: %ld bytes in %.6f s, crc32 %08x\n", cat.bytes, took, look_crc32((unsigned char *)cat.data, (size_t)cat.bytes));
    printf("io_submit: %ld calls, %ld requests, total %.6f s, longest %.6f s\n", s->submit_calls, s->submitted,
           s->submit_seconds, s->submit_max);
    printf("scheduling: max in flight %d (depth %d), batch %d, partial %ld, eagain %ld, short reads at eof %ld, "
           "resubmitted %ld\n", s->max_in_flight, opt->r.depth, opt->r.batch, s->partial, s->eagain, cat.short_eof,
           cat.resubmitted);
    if (opt->r.reactor)
        printf("reactor: %ld wakeups, %ld eventfd reads, %ld completions\n", cat.wakeups, s->eventfd_reads, s->reaped);
}

int main(int argc, char **argv)
{
    struct options opt;
    int fd = -1;
    void *mem = NULL;
    double took = 0;
    parse_options(&opt, argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int status = setup(&opt, &fd, &mem);
    if (status == 0)
        status = run(&opt, &took);
    if (status == 0)
        report(&opt, took);
    ka_destroy(cat.k); /* io_destroy waits for requests still in flight: then mem may go */
    if (fd >= 0)
        close(fd);
    free(mem);
    return status;
}
