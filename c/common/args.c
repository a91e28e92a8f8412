/* args.c: see args.h. */
#include "args.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

int args_long(const char *prog, const char *option, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 0);
    /* Refuse the empty string, trailing letters ("8k"), overflow (ERANGE) and the range. */
    if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max) {
        fprintf(stderr, "%s: %s wants a whole number from %ld to %ld, not '%s'\n", prog, option, min, max, text);
        return -1;
    }
    *out = value;
    return 0;
}

int args_int(const char *prog, const char *option, const char *text, int min, int max, int *out)
{
    long value;
    if (args_long(prog, option, text, min, max, &value) < 0)
        return -1;
    *out = (int)value;
    return 0;
}

int args_end(const char *prog, int bad, int argc, char **argv, const char *usage)
{
    if (bad == 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        bad = -1;
    }
    if (bad != 0)
        fprintf(stderr, "usage: %s\n", usage);
    return bad != 0 ? -1 : 0;
}

int args_missing(const char *prog, const char *option)
{
    fprintf(stderr, "%s: %s is required\n", prog, option);
    return -1;
}
