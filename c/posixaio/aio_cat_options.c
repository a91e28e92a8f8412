/* aio_cat_options.c: aio_cat's command line into `cat` (getopt_long, numbers by args_*). */
#include "aio_cat.h"
#include "../common/args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char USAGE[] = "aio_cat FILE|--bad-fd [--notify suspend|thread|reactor] [--depth N] [--batch N]\n"
                            "               [--chunk BYTES] [--fds K] [--copy OUT]";

/* --notify suspend|thread|reactor into cat.mode. 0, or -1 after saying what is wrong. */
static int parse_notify(const char *text)
{
    static const char *const names[] = { [SUSPEND] = "suspend", [THREAD] = "thread", [REACTOR] = "reactor" };
    for (int m = SUSPEND; m <= REACTOR; m++) {
        if (strcmp(text, names[m]) == 0) {
            cat.mode = (enum mode)m;
            return 0;
        }
    }
    fprintf(stderr, "aio_cat: --notify wants suspend, thread or reactor, not '%s'\n", text);
    return -1;
}

int parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "notify", required_argument, NULL, 'n' }, { "depth", required_argument, NULL, 'd' },
        { "batch", required_argument, NULL, 'b' },  { "chunk", required_argument, NULL, 'c' },
        { "fds", required_argument, NULL, 'f' },    { "copy", required_argument, NULL, 'o' },
        { "bad-fd", no_argument, NULL, 'x' },       { NULL, 0, NULL, 0 },
    };
    long chunk = 64 * 1024;
    int c, bad = 0;
    cat.depth = 4;
    cat.nfds = 1;
    while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': bad = parse_notify(optarg); break;
        case 'd': bad = args_int("aio_cat", "--depth", optarg, 1, MAX_SLOTS, &cat.depth); break;
        case 'b': bad = args_int("aio_cat", "--batch", optarg, 1, MAX_SLOTS, &cat.batch); break;
        case 'c': bad = args_long("aio_cat", "--chunk", optarg, 512, 16L << 20, &chunk); break;
        case 'f': bad = args_int("aio_cat", "--fds", optarg, 1, MAX_FDS, &cat.nfds); break;
        case 'o': cat.out_name = optarg; break;
        case 'x': cat.bad_fd = 1; break;
        default: bad = -1; /* getopt_long said what */
        }
    }
    cat.chunk = (size_t)chunk;
    for (int i = 0; i < MAX_FDS; i++)
        cat.fds[i] = -1;
    if (!bad && optind < argc && !cat.bad_fd)
        cat.file = argv[optind++];   /* the one operand (getopt_long moved it after the options) */
    if (!bad && cat.file == NULL && !cat.bad_fd)
        bad = args_missing("aio_cat", "FILE (or --bad-fd)");
    if (cat.batch > 0)
        cat.depth = cat.batch; /* a batch at a time: its N requests are the ones in flight */
    return args_end("aio_cat", bad, argc, argv, USAGE);
}
