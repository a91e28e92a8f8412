/* reader_args.c: see reader_args.h. */
#include "reader_args.h"
#include "args.h"

#include <limits.h>
#include <stdlib.h>

void reader_defaults(struct reader_options *r)
{
    *r = (struct reader_options){ .api = "raw", .direct = 1, .depth = 8, .batch = 4, .block = 64 * 1024 };
}

int reader_option(struct reader_options *r, const char *prog, int c)
{
    int ret = 0;
    switch (c) {
    case READER_API: r->api = optarg; break;
    case READER_DIRECT: r->direct = 1; break;
    case READER_BUFFERED: r->direct = 0; break;
    case READER_DEPTH: ret = args_int(prog, "--depth", optarg, 1, READER_MAX_DEPTH, &r->depth); break;
    case READER_BATCH: ret = args_int(prog, "--batch", optarg, 1, READER_MAX_DEPTH, &r->batch); break;
    case READER_BLOCK: ret = args_long(prog, "--block", optarg, 1, READER_MAX_BLOCK, &r->block); break;
    case READER_REACTOR: r->reactor = 1; break;
    case READER_UNCHECKED: r->unchecked = 1; break;
    case READER_PAUSE: r->pause = 1; break;
    case READER_OFFSET: ret = args_long(prog, "--offset", optarg, 0, LONG_MAX, &r->offset); break;
    case READER_BUFFER_OFFSET:
        ret = args_long(prog, "--buffer-offset", optarg, 0, READER_MAX_SHIFT, &r->buffer_offset);
        break;
    default: return 0;
    }
    return ret < 0 ? -1 : 1;
}

const char *reader_file(int bad, int argc, char **argv, void (*usage)(void))
{
    if (bad)
        exit(2);
    if (optind != argc - 1)
        usage(); /* one FILE, no more */
    return argv[optind];
}
