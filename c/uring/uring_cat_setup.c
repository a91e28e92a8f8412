/* uring_cat_setup: uring_cat's command line, its file, ring and buffer, its report, its clean-up.
 *
 * Given code of lab 7: everything around the lesson (uring_cat.c). Nothing here is
 * io_uring's idea; it is what any reader needs to open a file, size a buffer and say what
 * happened in `key: value` lines that the graders and notebooks read.
 */
#include "uring_cat.h"
#include "../common/args.h"
#include "../common/look.h"
#include "../reactor/rx.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SIZE (256L << 20) /* the whole file is kept in memory: 256 MiB at most */
_Static_assert(READER_MAX_DEPTH <= UR_MAX_DEPTH, "--depth and --batch must fit a ring");

static int fds[2] = { -1, -1 }; /* FILE, and --write's OUT */
static void *mem;               /* the buffer (cat.data is --buffer-offset into it) */
static size_t room;             /* its size */
static off_t file_size;         /* FILE's size */

static void usage(void)
{
    fprintf(stderr, "usage: uring_cat FILE [--api raw|liburing] [--direct|--buffered] [--depth N] [--batch B]\n"
                    "                      [--block BYTES] [--reactor] [--sqpoll] [--sq-idle-ms MS] [--write OUT]\n"
                    "                      [--fixed] [--offset O] [--buffer-offset K] [--unchecked] [--pause]\n"
                    "                      [--stop-after N]\n");
    exit(2);
}

void cat_options(struct cat_options *opt, int argc, char **argv)
{
    static const struct option options[] = {
        READER_OPTIONS,
        { "sqpoll", no_argument, NULL, 's' },
        { "sq-idle-ms", required_argument, NULL, 'i' },
        { "write", required_argument, NULL, 'w' },
        { "fixed", no_argument, NULL, 'f' },
        { "stop-after", required_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct cat_options){ .idle_ms = 2000 };
    reader_defaults(&opt->r);
    int c, bad = 0; /* bad: a number was refused (args.c said which) */
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int ret = reader_option(&opt->r, "uring_cat", c);
        if (c == 's')
            opt->flags |= UR_SQPOLL;
        else if (c == 'i')
            ret = args_long("uring_cat", "--sq-idle-ms", optarg, 0, UINT_MAX, &opt->idle_ms);
        else if (c == 'w')
            opt->out_name = optarg;
        else if (c == 'f')
            opt->flags |= UR_FIXED;
        else if (c == 'S')
            ret = args_long("uring_cat", "--stop-after", optarg, 0, LONG_MAX, &opt->stop_after);
        else if (ret == 0)
            usage(); /* an unknown flag (getopt_long said which), or one without its argument */
        bad |= ret < 0;
    }
    opt->name = reader_file(bad, argc, argv, usage);
    if ((opt->ops = ur_ops_named(opt->r.api)) == NULL) {
        fprintf(stderr, "uring_cat: --api wants raw or liburing, not '%s'\n", opt->r.api);
        exit(2);
    }
    if (opt->out_name != NULL && opt->r.offset != 0) {
        fprintf(stderr, "uring_cat: --write copies the whole file: it does not go with --offset\n");
        exit(2);
    }
}

/* SIGALRM: the program has run STUCK_S seconds. */
static void on_stuck(int sig)
{
    (void)sig;
    static const char msg[] = "uring_cat: no end after 20 s: something waits for what never comes (was the SQ "
                              "tail published before io_uring_enter? is the eventfd registered? are CQEs reaped?)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) { /* nothing more to do: we are leaving */ }
    _exit(1);
}

/* io_uring_setup refused: the machine's doing, or the learner's? */
static int ring_refused(const struct cat_options *opt, int ret)
{
    /* The stub of lab 7 says ENOSYS too: ask the kernel directly before blaming it. */
    int probe = ret == -EPERM || ret == -EACCES || ret == -ENOSYS ? ur_probe() : 0;
    if (probe == 0)
        return cat_fail(opt->ops == &ur_raw_ops ? "creating the ring (raw_open and raw_map in uring_raw.c)"
                                                : "creating the ring (lib_open in uring_liburing.c)", ret);
    fprintf(stderr, "uring_cat: io_uring_setup: %s: io_uring is blocked on this machine. Docker's default "
            "seccomp profile forbids it (run the container with --security-opt seccomp=unconfined), or the "
            "kernel turns it off (sysctl kernel.io_uring_disabled=0 turns it back on). `make doctor` checks "
            "it; lab 7 cannot run here.\n", strerror(-probe));
    return 3;
}

/* The first report lines: how uring_cat runs, what io_uring_setup made, what O_DIRECT needs. */
static void say_ring(const struct cat_options *opt)
{
    char line[256];
    struct ur_info *ri = &cat.u->info;
    printf("uring_cat: api %s, %s, depth %d, batch %u, block %zu%s%s%s, pid %d\n", opt->ops->name,
           cat.direct ? "O_DIRECT" : "buffered", opt->r.depth, cat.batch, cat.block, opt->r.reactor ? ", reactor" : "",
           (opt->flags & UR_SQPOLL) ? ", sqpoll" : "", (opt->flags & UR_FIXED) ? ", fixed" : "", (int)getpid());
    if (ri->cq_ring_bytes == 0)
        snprintf(line, sizeof(line), "SQ and CQ rings %zu bytes (one mapping: IORING_FEAT_SINGLE_MMAP)",
                 ri->sq_ring_bytes);
    else
        snprintf(line, sizeof(line), "SQ ring %zu bytes, CQ ring %zu bytes", ri->sq_ring_bytes, ri->cq_ring_bytes);
    printf("ring: fd %d, SQ %u entries, CQ %u entries; mmaps: %s, SQEs %zu bytes; setup flags 0x%x, "
           "features 0x%x\n", ri->ring_fd, ri->sq_entries, ri->cq_entries, line, ri->sqes_bytes, ri->setup_flags,
           ri->features);
    printf("alignment: memory %zu, offset %zu (%s)\n", cat.al.mem, cat.al.off, cat.al.source);
}

/* The buffer, --write's file, and with --fixed both registered with the ring. 0 or 1. */
static int buffers_and_files(const struct cat_options *opt)
{
    /* Whole blocks past the end (reads ask for full blocks), aligned for O_DIRECT. */
    size_t span = file_size > opt->r.offset ? (size_t)(file_size - opt->r.offset) : 0;
    room = (span / cat.block + 1) * cat.block + READER_MAX_SHIFT;
    if (posix_memalign(&mem, 4096, room) != 0) {
        mem = NULL;
        fprintf(stderr, "uring_cat: out of memory\n");
        return 1;
    }
    memset(mem, 0, room);
    cat.data = (char *)mem + opt->r.buffer_offset;
    if (opt->out_name != NULL) {
        fds[1] = open(opt->out_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (cat.direct ? O_DIRECT : 0), 0644);
        if (fds[1] < 0)
            return cat_fail(opt->out_name, -errno);
    }
    int ret;
    if ((opt->flags & UR_FIXED) && (ret = ur_register_fixed(cat.u, mem, room, fds, opt->out_name ? 2 : 1)) < 0)
        return cat_fail("registering the buffer and files (ops->register_fixed)", ret);
    return 0;
}

int cat_open(const struct cat_options *opt)
{
    cat.direct = opt->r.direct;
    cat.unchecked = opt->r.unchecked;
    cat.batch = (unsigned)opt->r.batch;
    cat.block = (size_t)opt->r.block;
    cat.stop_after = opt->stop_after;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction stuck = { .sa_handler = on_stuck };
    sigaction(SIGALRM, &stuck, NULL);

    fds[0] = open(opt->name, O_RDONLY | O_CLOEXEC | (cat.direct ? O_DIRECT : 0));
    if (fds[0] < 0)
        return cat_fail(cat.direct ? "open with O_DIRECT (tmpfs refuses it: use a directory on ext4/xfs)" : "open",
                        -errno);
    struct stat st;
    if (fstat(fds[0], &st) < 0 || st.st_size > MAX_SIZE) {
        fprintf(stderr, "uring_cat: %s: not a readable file of at most %ld bytes\n", opt->name, MAX_SIZE);
        return 1;
    }
    file_size = st.st_size;
    int ret = ka_alignment(fds[0], &cat.al);
    if (ret < 0)
        return cat_fail("statx (what does O_DIRECT need here?)", ret);
    ret = ur_create(&cat.u, opt->ops, opt->r.depth, opt->flags, (unsigned)opt->idle_ms);
    if (ret < 0)
        return ring_refused(opt, ret);
    say_ring(opt);
    return buffers_and_files(opt);
}

/* A phase ended with ret < 0: the exit status, and the message if none was printed. */
static int phase_failed(int ret)
{
    if (cat.refused)
        return 2;
    if (cat.where != NULL)
        cat_fail(cat.where, ret);
    return 1;
}

int cat_transfer(const struct cat_options *opt)
{
    int fixed = (opt->flags & UR_FIXED) != 0; /* then requests name files by index: 0 and 1 */
    alarm(STUCK_S);
    double t0 = ka_now();
    int ret = cat_phase(opt->r.reactor, 0, fixed ? 0 : fds[0], (uint64_t)opt->r.offset, (uint64_t)file_size);
    double t1 = ka_now();
    if (ret < 0)
        return phase_failed(ret);
    long total = cat.bytes;
    printf("read: %ld bytes in %.6f s, crc32 %08x\n", total, t1 - t0,
           look_crc32((unsigned char *)cat.data, (size_t)total));
    if (opt->out_name != NULL) {
        ret = cat_phase(opt->r.reactor, 1, fixed ? 1 : fds[1], 0, (uint64_t)total);
        if (ret < 0)
            return phase_failed(ret);
        /* O_DIRECT wrote whole blocks: cut the file back to the bytes that were read. */
        if (ftruncate(fds[1], total) < 0)
            return cat_fail("ftruncate", -errno);
        printf("write: %ld bytes in %.6f s to %s\n", total, ka_now() - t1, opt->out_name);
    }
    alarm(0);
    return 0;
}

void cat_report(const struct cat_options *opt)
{
    char line[512];
    struct ur_stats *s = &cat.u->st;
    printf("submit: %ld calls, %ld SQEs, largest batch %d, max in flight %d (depth %d)\n", s->submit_calls,
           s->submitted, s->max_batch, s->max_in_flight, opt->r.depth);
    printf("completions: %ld CQEs, short reads at eof %ld, resubmitted %ld\n", s->reaped, cat.short_eof,
           cat.resubmitted);
    if (opt->r.reactor)
        printf("reactor: %ld wakeups, %ld eventfd reads\n", cat.wakeups, s->eventfd_reads);
    int n = look_threads(getpid(), line, sizeof(line));
    printf("threads: %d:%s\n", n, line);
    if (opt->r.pause) {
        /* The ring is still open: its kernel threads are still there to be seen. */
        printf("paused: pid %d; look at /proc/%d/task/*/comm, then press Enter\n", (int)getpid(), (int)getpid());
        while (fgets(line, sizeof(line), stdin) != NULL && strchr(line, '\n') == NULL)
            continue;
    }
}

void cat_close(void)
{
    alarm(0);
    rx_destroy(cat.rx);
    ur_destroy(cat.u);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(mem);
}
