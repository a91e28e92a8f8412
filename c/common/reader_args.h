/* reader_args.h: the flags the O_DIRECT file readers share — kaio_cat (lab 5) and uring_cat (lab 7).
 *
 * Lab 7's reader is lab 5's on io_uring, so the two take the same flags with the same
 * meaning, defaults and ranges; they are read here once. Each program lists READER_OPTIONS
 * in its own getopt_long table beside its own flags, and gives each answer of getopt_long
 * to reader_option first:
 *
 *     static const struct option options[] = { READER_OPTIONS, { "ctx", ... }, { NULL, 0, NULL, 0 } };
 *     while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
 *         int ret = reader_option(&opt->r, "kaio_cat", c);   1: a reader flag, read; 0: not one
 *         ...                                                -1: its number was refused (said)
 *     }
 *     opt->name = reader_file(bad, argc, argv, usage);
 */
#ifndef COMMON_READER_ARGS_H
#define COMMON_READER_ARGS_H

#include <getopt.h>

#define READER_MAX_DEPTH 1024   /* --depth and --batch: KA_MAX_SLOTS and UR_MAX_DEPTH */
#define READER_MAX_BLOCK (1L << 30) /* --block: a request's length fits 32 bits */
#define READER_MAX_SHIFT 4096   /* --buffer-offset: within the 4096 bytes the buffer is given extra */

struct reader_options {
    const char *api;    /* --api NAME ("raw"): the program looks its backend up */
    int direct;         /* --direct (1, the default) or --buffered (0) */
    int depth;          /* --depth N (8): requests in flight at most */
    int batch;          /* --batch B (4): requests per submit (lab 5) or completions per wait (lab 7) */
    long block;         /* --block BYTES (65536): bytes per request */
    int reactor;        /* --reactor: completions through an eventfd in the lab-2 reactor */
    int unchecked;      /* --unchecked: no O_DIRECT alignment check before a request is queued */
    int pause;          /* --pause: stop once for a look at /proc (where: the program says) */
    long offset;        /* --offset O (0): where in the file to start */
    long buffer_offset; /* --buffer-offset K (0): read into memory K bytes past an aligned address */
};

/* getopt_long's answers for the reader flags: above any character a program uses. */
enum {
    READER_API = 256, READER_DIRECT, READER_BUFFERED, READER_DEPTH, READER_BATCH, READER_BLOCK,
    READER_REACTOR, READER_UNCHECKED, READER_PAUSE, READER_OFFSET, READER_BUFFER_OFFSET,
};

#define READER_OPTIONS                                                                                        \
    { "api", required_argument, NULL, READER_API }, { "direct", no_argument, NULL, READER_DIRECT },            \
    { "buffered", no_argument, NULL, READER_BUFFERED }, { "depth", required_argument, NULL, READER_DEPTH },     \
    { "batch", required_argument, NULL, READER_BATCH }, { "block", required_argument, NULL, READER_BLOCK },     \
    { "reactor", no_argument, NULL, READER_REACTOR }, { "unchecked", no_argument, NULL, READER_UNCHECKED },    \
    { "pause", no_argument, NULL, READER_PAUSE }, { "offset", required_argument, NULL, READER_OFFSET },        \
    { "buffer-offset", required_argument, NULL, READER_BUFFER_OFFSET }

/* The defaults above. */
void reader_defaults(struct reader_options *r);

/* c is getopt_long's answer (optarg its argument): 1 if it was a reader flag, now in *r;
 * 0 if it was not; -1 if its number was refused (args_long printed why, naming prog). */
int reader_option(struct reader_options *r, const char *prog, int c);

/* After the getopt_long loop: exit 2 if a number was refused (bad), call usage() (which
 * exits) unless exactly one operand is left, and return it: the file a reader reads. */
const char *reader_file(int bad, int argc, char **argv, void (*usage)(void));

#endif
