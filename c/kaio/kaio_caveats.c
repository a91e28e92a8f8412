/* kaio_caveats: the talk's three caveats of kernel AIO, each measured on this machine. */
/*
 * Usage: kaio_caveats FILE [--api raw|libaio] [--repeat N]
 *
 * FILE: at least 4 MiB, on a filesystem that takes O_DIRECT (ext4, xfs, btrfs; not tmpfs).
 * Caveat 2 creates (and removes) scratch files next to it. Each number is the median
 * of N (5) runs; the machine is noisy, the medians are not.
 *
 * 1. "You should always use O_DIRECT or it defeats the purpose." The time spent INSIDE
 *    io_submit, cache cold (posix_fadvise DONTNEED first): one 4 MiB read, then 64
 *    reads of 64 KiB in one io_submit, buffered and O_DIRECT. Buffered, io_submit
 *    returns only once the data has been read: the caller was blocked all along.
 * 2. "Minimize the file system metadata operations that can block." open(O_CREAT) of a
 *    new file, and an O_DIRECT write of 1 MiB into it, which grows the file: ext4 completes
 *    such a write, data included, before io_submit returns; the same write over blocks
 *    that now exist only queues. All on the one thread that would be the event loop.
 * 3. "You need to figure out the best way to schedule all of the disk I/O." A context
 *    made for 1 event and 256 reads asked at once: the kernel takes some, then says
 *    EAGAIN; it is our job to keep the rest and retry after reaping.
 */
#include "ka.h"
#include "../common/args.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define MAX_REPEAT 21
#define LOOP_WAIT_MS 10000

static const struct ka_ops *ops = &ka_raw_ops;
static long short_write = -1; /* the res of a write that came back short, for the message */

static int fail(const char *what, int err)
{
    fprintf(stderr, "kaio_caveats: %s: %s%s\n", what, strerror(-err),
            err == -ENOSYS ? " (ENOSYS: not written yet, lab 5: ka.c, ka_raw.c, ka_libaio.c)" : "");
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
    return v[n / 2];
}

/* Submit n requests of len bytes (write: from buf, else into buf) at 0, len, 2*len...
 * of fd, all in ONE io_submit, and wait for them. *submit_s: the time inside io_submit;
 * *done_s (if not NULL): from the start of the submission to the last completion.
 * 0 or -errno. */
static int one_round(int fd, int write, char *buf, size_t len, int n, double *submit_s, double *done_s)
{
    struct ka *k = NULL;
    struct ka_done done[64];
    int ret = ka_create(&k, ops, fd, n, n, n, n);
    if (ret < 0)
        return ret;
    for (int i = 0; i < n && ret == 0; i++)
        ret = ka_queue(k, i, write, buf + (size_t)i * len, (off_t)i * (off_t)len, len);
    if (ret < 0)
        goto out;
    double t0 = ka_now();
    ret = ka_submit(k);
    *submit_s = k->st.submit_seconds;
    if (ret >= 0 && ret < n)
        ret = -EAGAIN; /* a context of n events takes n requests: this should not happen */
    for (long got = 0; ret >= 0 && got < n;) {
        ret = ka_reap(k, 1, done, 64, LOOP_WAIT_MS);
        if (ret == 0)
            ret = -ETIMEDOUT;
        for (int i = 0; i < ret; i++) {
            if (done[i].res >= 0 && write && (size_t)done[i].res != len) {
                /* Every byte of a write lands (a read of a new file would find 0). */
                short_write = done[i].res;
                done[i].res = -EIO;
            }
            if (done[i].res < 0)
                ret = (int)done[i].res;
        }
        got += ret > 0 ? ret : 0;
    }
    if (done_s != NULL)
        *done_s = ka_now() - t0;
    ret = ret < 0 ? ret : 0;
out:
    ka_destroy(k);
    return ret;
}

/* Drop FILE's pages from the page cache, so that the next buffered read goes to disk. */
static void cold(int fd)
{
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

static int caveat1(const char *name, char *buf, int repeat)
{
    int bfd = open(name, O_RDONLY | O_CLOEXEC), dfd = open(name, O_RDONLY | O_CLOEXEC | O_DIRECT), ret = 0;
    if (bfd < 0 || dfd < 0) {
        ret = fail("open (buffered and O_DIRECT)", -errno);
        goto out;
    }
    /* index: 0 single buffered, 1 single direct, 2 batch buffered, 3 batch direct, 4 direct done */
    double t[5][MAX_REPEAT];
    for (int r = 0; r < repeat; r++) {
        int err;
        cold(bfd);
        if ((err = one_round(bfd, 0, buf, 4 * MIB, 1, &t[0][r], NULL)) < 0 ||
            (cold(bfd), err = one_round(dfd, 0, buf, 4 * MIB, 1, &t[1][r], &t[4][r])) < 0 ||
            (cold(bfd), err = one_round(bfd, 0, buf, 64 * 1024, 64, &t[2][r], NULL)) < 0 ||
            (cold(bfd), err = one_round(dfd, 0, buf, 64 * 1024, 64, &t[3][r], NULL)) < 0) {
            ret = fail("caveat 1: a read", err);
            goto out;
        }
    }
    double sb = median(t[0], repeat), sd = median(t[1], repeat), bb = median(t[2], repeat), bd = median(t[3], repeat);
    printf("caveat 1 single: buffered io_submit %.6f s, O_DIRECT io_submit %.6f s, ratio %.1f "
           "(one read of 4 MiB, cache cold; the O_DIRECT read completed %.6f s after submission)\n",
           sb, sd, sb / sd, median(t[4], repeat));
    printf("caveat 1 batch: buffered io_submit %.6f s, O_DIRECT io_submit %.6f s, ratio %.1f "
           "(64 reads of 64 KiB in one io_submit, cache cold)\n", bb, bd, bb / bd);
out:
    if (bfd >= 0)
        close(bfd);
    if (dfd >= 0)
        close(dfd);
    return ret;
}

static int caveat2(const char *name, char *buf, int repeat)
{
    char path[4096];
    const char *slash = strrchr(name, '/');
    int dirlen = slash ? (int)(slash - name + 1) : 0;
    double topen[MAX_REPEAT], talloc[MAX_REPEAT], tover[MAX_REPEAT];
    memset(buf, 'k', MIB);
    for (int r = 0; r < repeat; r++) {
        snprintf(path, sizeof(path), "%.*skaio-caveat2-%d-%d.tmp", dirlen, name, (int)getpid(), r);
        double t0 = ka_now();
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
        topen[r] = ka_now() - t0;
        if (fd < 0)
            return fail("caveat 2: open(O_CREAT | O_DIRECT) of a scratch file", -errno);
        /* The first write moves the end of the file, so ext4 finishes it (the data too)
         * inside io_submit; the second moves nothing and only queues the data transfer. */
        int err = one_round(fd, 1, buf, MIB, 1, &talloc[r], NULL);
        if (err == 0)
            err = one_round(fd, 1, buf, MIB, 1, &tover[r], NULL);
        close(fd);
        unlink(path);
        if (err < 0 && short_write >= 0) {
            fprintf(stderr, "kaio_caveats: caveat 2: a write of 1 MiB completed with res %ld: was it prepared as a "
                    "write (IOCB_CMD_PWRITE, io_prep_pwrite) when ka_queue's write is set?\n", short_write);
            return 1;
        }
        if (err < 0)
            return fail("caveat 2: an O_DIRECT write", err);
    }
    double o = median(topen, repeat), a = median(talloc, repeat), w = median(tover, repeat);
    printf("caveat 2: open(O_CREAT) %.6f s, io_submit of a 1 MiB O_DIRECT write into a new file (allocates, "
           "extends) %.6f s, the same write over allocated blocks %.6f s, ratio %.1f\n", o, a, w, a / w);
    return 0;
}

static int caveat3(const char *name, char *buf)
{
    int fd = open(name, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0)
        return fail("open O_DIRECT", -errno);
    struct ka *k = NULL;
    struct ka_done done[256];
    int ret = ka_create(&k, ops, fd, 1, 256, 256, 256);
    for (int i = 0; ret == 0 && i < 256; i++)
        ret = ka_queue(k, i, 0, buf + (size_t)i * 4096, (off_t)i * 4096, 4096);
    int first = ret == 0 ? ka_submit(k) : ret;
    int second = first >= 0 ? ka_submit(k) : first;
    long eagain_after_two = k ? k->st.eagain : 0, partial = k ? k->st.partial : 0;
    /* Now behave: reap, submit the rest, until every read is done. */
    long reaped = 0;
    ret = second < 0 ? second : 0;
    while (ret >= 0 && reaped < 256) {
        ret = ka_reap(k, 1, done, 256, LOOP_WAIT_MS);
        reaped += ret > 0 ? ret : 0;
        if (ret == 0)
            ret = -ETIMEDOUT;
        if (ret > 0)
            ret = ka_submit(k);
    }
    if (ret < 0) {
        fail("caveat 3: reading through a tiny context", ret);
    } else {
        printf("caveat 3: io_setup(1) then 256 reads: the first io_submit took %d, the next %s; partial %ld, "
               "eagain %ld; after reaping and requeueing: %ld of 256 done in %ld io_submit calls, eagain %ld\n",
               first, second == 0 ? "none (EAGAIN)" : "more", partial, eagain_after_two, reaped,
               k->st.submit_calls, k->st.eagain);
    }
    ka_destroy(k);
    close(fd);
    return ret < 0 ? 1 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: kaio_caveats FILE [--api raw|libaio] [--repeat N (1..%d)]\n", MAX_REPEAT);
    exit(2);
}

/* The command line: FILE's name, ops and *repeat set; exits 2 when it is wrong. */
static const char *parse_options(int argc, char **argv, int *repeat)
{
    static const struct option options[] = {
        { "api", required_argument, NULL, 'a' },
        { "repeat", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (c == 'a') {
            ops = !strcmp(optarg, "libaio") ? &ka_libaio_ops : !strcmp(optarg, "raw") ? &ka_raw_ops : NULL;
            if (ops == NULL) {
                fprintf(stderr, "kaio_caveats: --api wants raw or libaio, not '%s'\n", optarg);
                exit(2);
            }
        } else if (c == 'r') {
            if (args_int("kaio_caveats", "--repeat", optarg, 1, MAX_REPEAT, repeat) < 0)
                exit(2);
        } else {
            usage();
        }
    }
    if (optind != argc - 1)
        usage(); /* one FILE, no more */
    return argv[optind];
}

int main(int argc, char **argv)
{
    int repeat = 5;
    const char *name = parse_options(argc, argv, &repeat);
    struct stat st;
    if (stat(name, &st) < 0 || st.st_size < 4 * MIB) {
        fprintf(stderr, "kaio_caveats: %s: need a file of at least 4 MiB\n", name);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 4 * MIB) != 0)
        return 1;
    printf("kaio_caveats: api %s, median of %d runs\n", ops->name, repeat);
    int status = caveat1(name, buf, repeat);
    if (status == 0)
        status = caveat2(name, buf, repeat);
    if (status == 0)
        status = caveat3(name, buf);
    free(buf);
    return status;
}
