/* tp_cat: read a file "asynchronously" — preads on pool workers, completions on the loop — and print its CRC-32. */
/*
 * Usage: tp_cat FILE [--workers N] [--block BYTES] [--inflight K] [--delay-ms MS]
 *
 * Reads FILE in blocks of BYTES (default 65536), K of them in flight at once (default:
 * two per worker), each with a pread on a worker of a pool of N threads (default 4).
 * The loop thread never reads the file: it sleeps in epoll_wait, and each finished block
 * comes back to it through the pool's eventfd as a done callback. Blocks finish out of
 * order; a window of K slots puts them back in file order before they go into the
 * CRC-32 (the same as Python's zlib.crc32). It prints
 *
 *     tp_cat: 4 workers, 128 blocks of 65536 bytes, 8 in flight     first, as soon as the pool runs
 *     bytes 8388608 crc32 1f2e3d4c                                  the result
 *     loop: 41 wake-ups for 128 blocks; 9 heartbeats, longest gap 11 ms
 *
 * The last line is how the loop fared: how many times the eventfd woke it (fewer than
 * blocks when completions were coalesced), and a 10 ms heartbeat timer on the loop:
 * its longest gap is the longest time the loop could not run anything else.
 *
 * --delay-ms MS: each worker sleeps MS ms after each pread, like a slow disk. A file in
 * the page cache is read in microseconds; with a delay you have time to look:
 *     build/bin/tp_cat big.bin --workers 3 --delay-ms 20 &   ls /proc/$!/task     (4 threads)
 *     strace -f -e trace=pread64,epoll_wait,read,write build/bin/tp_cat big.bin  (who reads what)
 *
 * The talk's "Looks asynchronous! Except... it's not!": the loop never waits for the
 * disk, yet every byte was read by a blocking pread, on a thread. That is what aiofiles,
 * asyncio.to_thread, run_in_executor and libuv's uv_fs_read do.
 */
#include "tp.h"
#include "../common/args.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_MS 10   /* the loop's heartbeat: how often it proves it is free */
#define STALL_LIMIT_S 10  /* no block finished for this long: give up (an unfinished pool?) */

struct cat;

/* One slot of the window: a block being read, or read and waiting for its turn. */
struct slot {
    struct cat *cat;
    off_t offset;      /* where this block starts in the file */
    size_t want;       /* its length: the block size, less for the last block */
    ssize_t got;       /* set by the worker: bytes read, or -errno */
    bool done;         /* its done callback ran; it waits to be folded in, in order */
    char *buf;         /* the block's bytes, `want` of room */
};

struct cat {
    struct tp *pool;
    int fd;              /* the file, O_RDONLY */
    off_t size;          /* its size when we started */
    long delay_ms;       /* the worker sleeps this long after each pread (a slow disk) */
    size_t block;        /* block size */
    int inflight;        /* slots in the window */
    struct slot *slots;  /* block b lives in slots[b % inflight] */
    int64_t nblocks;     /* blocks in the file */
    int64_t next_submit; /* the next block to hand to the pool */
    int64_t next_fold;   /* the next block to fold into the CRC (file order) */
    uint64_t bytes;      /* folded so far */
    uint32_t crc;        /* CRC-32 of the first `bytes` bytes, not yet inverted */
    uint64_t round;      /* rounds of the loop so far */
    uint64_t last_wake;  /* the round in which a done callback last ran */
    uint64_t wakeups;    /* rounds in which at least one done callback ran */
    double last_beat;    /* when the heartbeat last ran */
    double longest_gap;  /* the longest time between two heartbeats, in s */
    uint64_t beats;      /* heartbeats so far */
    double last_progress; /* when a block last finished */
    bool stopping;       /* finished or failed: submit nothing more */
    int error;           /* the first -errno that went wrong, 0 if none */
    char what[96];       /* which step went wrong */
};

static uint32_t crc_table[256];

/* The table of the CRC-32 used by zlib, gzip, PNG and Ethernet (polynomial 0xEDB88320). */
static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* " (not written yet: lab 3, tp.c)" after the message of a -ENOSYS from a starter stub. */
static const char *todo_note(int err)
{
    return err == -ENOSYS ? " (not written yet: lab 3, tp.c)" : "";
}

/* Remember the first thing that went wrong, and stop submitting. */
static void fail(struct cat *cat, int err, const char *what)
{
    if (cat->error == 0) {
        cat->error = err;
        snprintf(cat->what, sizeof(cat->what), "%s", what);
    }
    cat->stopping = true;
}

/* The job's work, on a worker thread: read the whole block with blocking preads (a
 * pread may return less than asked; only 0 means end of file). */
static void read_block(void *arg)
{
    struct slot *s = arg;
    size_t have = 0;
    while (have < s->want) {
        ssize_t n = pread(s->cat->fd, s->buf + have, s->want - have, s->offset + (off_t)have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s->got = -errno;
            return;
        }
        if (n == 0)
            break; /* the file is shorter than it was: the done callback says so */
        have += (size_t)n;
    }
    s->got = (ssize_t)have;
    if (s->cat->delay_ms > 0) { /* a slow disk: this worker waits, nobody else does */
        struct timespec pause = { s->cat->delay_ms / 1000, (s->cat->delay_ms % 1000) * 1000000 };
        nanosleep(&pause, NULL);
    }
}

static void block_done(void *arg, int status);

/* Hand block b to the pool, in its slot. */
static void submit_block(struct cat *cat, int64_t b)
{
    struct slot *s = &cat->slots[b % cat->inflight];
    s->offset = (off_t)b * (off_t)cat->block;
    off_t left = cat->size - s->offset;
    s->want = left < (off_t)cat->block ? (size_t)left : cat->block;
    s->got = 0;
    s->done = false;
    int64_t id = tp_submit(cat->pool, read_block, block_done, s);
    if (id < 0)
        fail(cat, (int)id, "tp_submit");
}

/* The job's done callback, on the loop thread: fold every block that is now next in
 * file order into the CRC, and reuse its slot for the next block to read. */
static void block_done(void *arg, int status)
{
    struct slot *s = arg;
    struct cat *cat = s->cat;
    if (cat->last_wake != cat->round) { /* the first completion of this round */
        cat->last_wake = cat->round;
        cat->wakeups++;
    }
    cat->last_progress = now_s();
    s->done = true;
    if (status < 0) {
        fail(cat, status, "a read was cancelled");
        return;
    }
    while (!cat->stopping && cat->next_fold < cat->nblocks) {
        struct slot *next = &cat->slots[cat->next_fold % cat->inflight];
        if (!next->done)
            break; /* an earlier block is still being read */
        if (next->got < 0) {
            char what[64];
            snprintf(what, sizeof(what), "pread at offset %lld", (long long)next->offset);
            fail(cat, (int)next->got, what);
            return;
        }
        if ((size_t)next->got != next->want) {
            fail(cat, -EIO, "the file became shorter while it was read");
            return;
        }
        cat->crc = crc_update(cat->crc, (const unsigned char *)next->buf, next->want);
        cat->bytes += next->want;
        cat->next_fold++;
        if (cat->next_submit < cat->nblocks)
            submit_block(cat, cat->next_submit++); /* into the slot just freed */
    }
    if (cat->next_fold == cat->nblocks)
        cat->stopping = true; /* all read: main's loop ends */
}

/* Every HEARTBEAT_MS on the loop: note how long since the last beat (a stalled loop
 * shows a long gap), and give up if no block finished for STALL_LIMIT_S. */
static void heartbeat(struct rx *rx, int64_t id, void *arg)
{
    struct cat *cat = arg;
    (void)rx;
    (void)id;
    double now = now_s();
    if (now - cat->last_beat > cat->longest_gap)
        cat->longest_gap = now - cat->last_beat;
    cat->last_beat = now;
    cat->beats++;
    if (now - cat->last_progress > STALL_LIMIT_S)
        fail(cat, -ETIMEDOUT, "no block finished for 10 s (do the workers run jobs? does the "
             "eventfd wake the loop?)");
}

/* SIGALRM: tp_destroy did not return in time (main arms the alarm just before it). */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "tp_cat: tp_destroy did not return: is every worker woken "
                              "(pthread_cond_broadcast) and joined?\n";
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
        _exit(2);
    _exit(1);
}

static const char USAGE[] = "tp_cat FILE [--workers N] [--block BYTES] [--inflight K] [--delay-ms MS]";

struct options {
    const char *path;   /* FILE */
    int workers;        /* threads of the pool */
    long block;         /* bytes per pread job */
    int inflight;       /* blocks in flight; 0 before parse_options ends: two per worker */
    long delay_ms;      /* see cat.delay_ms */
};

/* Fill *opt from argv. 0, or -1 after saying what is wrong and the usage line. */
static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        { "workers", required_argument, NULL, 'w' },
        { "block", required_argument, NULL, 'b' },
        { "inflight", required_argument, NULL, 'i' },
        { "delay-ms", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct options){ .workers = 4, .block = 65536, .inflight = 0, .delay_ms = 0 };
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'w': bad = args_int("tp_cat", "--workers", optarg, 1, TP_MAX_WORKERS, &opt->workers); break;
        case 'b': bad = args_long("tp_cat", "--block", optarg, 1, 64L << 20, &opt->block); break;
        case 'i': bad = args_int("tp_cat", "--inflight", optarg, 1, 1024, &opt->inflight); break;
        case 'd': bad = args_long("tp_cat", "--delay-ms", optarg, 0, 10000, &opt->delay_ms); break;
        default: bad = -1; /* getopt_long said what */
        }
    }
    if (!bad && optind < argc)
        opt->path = argv[optind++];   /* the one operand (getopt_long moved it after the options) */
    if (!bad && opt->path == NULL)
        bad = args_missing("tp_cat", "FILE");
    if (opt->inflight == 0)
        opt->inflight = 2 * opt->workers;
    return args_end("tp_cat", bad, argc, argv, USAGE);
}

/* Open the file, and make the window: `inflight` slots of one block each. 0, or -1 after
 * saying what failed (what was made is in cat, for finish to free). */
static int open_file(struct cat *cat, const struct options *opt)
{
    cat->fd = open(opt->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (cat->fd < 0 || fstat(cat->fd, &st) < 0) {
        fprintf(stderr, "tp_cat: %s: %s\n", opt->path, strerror(errno));
        return -1;
    }
    cat->size = st.st_size;
    cat->nblocks = ((int64_t)st.st_size + opt->block - 1) / opt->block;
    cat->slots = calloc((size_t)cat->inflight, sizeof(*cat->slots));
    for (int i = 0; cat->slots != NULL && i < cat->inflight; i++) {
        cat->slots[i].cat = cat;
        cat->slots[i].buf = malloc(cat->block);
        if (cat->slots[i].buf == NULL)
            break;
    }
    if (cat->slots == NULL || cat->slots[cat->inflight - 1].buf == NULL) {
        fprintf(stderr, "tp_cat: out of memory for %d blocks of %zu bytes\n", cat->inflight, cat->block);
        return -1;
    }
    return 0;
}

/* The loop and the pool on it; the first line of the report. 0, or -1 after saying what failed. */
static int start_pool(struct cat *cat, struct rx **rx, int workers)
{
    int ret = rx_create(rx);
    if (ret < 0) {
        fprintf(stderr, "tp_cat: rx_create: %s\n", strerror(-ret));
        return -1;
    }
    ret = tp_create(&cat->pool, *rx, workers);
    if (ret < 0) {
        fprintf(stderr, "tp_cat: tp_create: %s%s\n", strerror(-ret), todo_note(ret));
        return -1;
    }
    printf("tp_cat: %d workers, %lld blocks of %zu bytes, %d in flight\n", workers,
           (long long)cat->nblocks, cat->block, cat->inflight);
    fflush(stdout); /* a test waits for this line, then looks at /proc */
    return 0;
}

/* Fill the window, then run the loop until every block is folded in (or something failed):
 * the loop thread sleeps in epoll_wait while the workers read. */
static void read_all(struct cat *cat, struct rx *rx)
{
    cat->last_beat = cat->last_progress = now_s();
    int64_t beat = rx_timer_add(rx, HEARTBEAT_MS, HEARTBEAT_MS, heartbeat, cat);
    if (beat < 0)
        fail(cat, (int)beat, "rx_timer_add");
    while (cat->next_submit < cat->nblocks && cat->next_submit < cat->inflight && !cat->stopping)
        submit_block(cat, cat->next_submit++);
    if (cat->nblocks == 0)
        cat->stopping = true;
    while (!cat->stopping) {
        cat->round++;
        int ret = rx_run_once(rx, -1);
        if (ret < 0)
            fail(cat, ret, "rx_run_once");
    }
}

/* The result and how the loop fared; or what went wrong. The exit status: 0 or 1. */
static int report(const struct cat *cat)
{
    if (cat->error < 0) {
        fprintf(stderr, "tp_cat: %s: %s%s\n", cat->what, strerror(-cat->error), todo_note(cat->error));
        return 1;
    }
    printf("bytes %llu crc32 %08x\n", (unsigned long long)cat->bytes, cat->crc ^ 0xFFFFFFFFu);
    printf("loop: %llu wake-ups for %lld blocks; %llu heartbeats, longest gap %.0f ms\n",
           (unsigned long long)cat->wakeups, (long long)cat->nblocks, (unsigned long long)cat->beats,
           cat->longest_gap * 1000);
    return 0;
}

/* Stop the pool (it waits for the reads still in flight after an error), then free the rest. */
static void finish(struct cat *cat, struct rx *rx, const struct options *opt)
{
    cat->stopping = true;
    /* Give tp_destroy time for the reads in flight, plus 10 s, then give up loudly rather than hang. */
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(10 + (opt->inflight / opt->workers + 1) * opt->delay_ms / 1000));
    tp_destroy(cat->pool);
    alarm(0);
    rx_destroy(rx);
    for (int i = 0; cat->slots != NULL && i < cat->inflight; i++)
        free(cat->slots[i].buf);
    free(cat->slots);
    if (cat->fd >= 0)
        close(cat->fd);
}

int main(int argc, char **argv)
{
    struct options opt;
    if (parse_options(argc, argv, &opt) < 0)
        return 2;   /* a usage error */
    crc_init();
    struct cat cat = { .fd = -1, .delay_ms = opt.delay_ms, .block = (size_t)opt.block, .inflight = opt.inflight,
                       .crc = 0xFFFFFFFFu };
    struct rx *rx = NULL;
    int status = 1;
    if (open_file(&cat, &opt) == 0 && start_pool(&cat, &rx, opt.workers) == 0) {
        read_all(&cat, rx);
        status = report(&cat);
    }
    finish(&cat, rx, &opt);
    return status;
}
