/* args.h: the command-line numbers of every C program here, read one way.
 *
 * Each program parses its options with getopt_long(3) (a `static const struct option` table,
 * a `struct options` it fills, and a usage line), and turns each number through these helpers.
 * Why not atoi/atol: they read "8k" as 8 and "x" as 0, so a typo runs the program with a value
 * nobody asked for. Here a bad number is refused with the option's name and its range.
 */
#ifndef COMMON_ARGS_H
#define COMMON_ARGS_H

/* Read `text` (optarg of `option`, e.g. "--depth") as a whole number in [min, max] into *out.
 * Decimal, or 0x-prefixed hex. 0, or -1 after printing "PROG: --depth wants a whole number
 * from 1 to 4096, not '8k'" to stderr. */
int args_long(const char *prog, const char *option, const char *text, long min, long max, long *out);

/* The same for an int. */
int args_int(const char *prog, const char *option, const char *text, int min, int max, int *out);

#endif
