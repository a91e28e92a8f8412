/* args.h: the command-line numbers of every C program here, read one way.
 *
 * Each program parses its options with getopt_long(3) (a `static const struct option` table,
 * a `struct options` it fills, and a usage line), and turns each number through these helpers.
 * Why not atoi/atol: they read "8k" as 8 and "x" as 0, so a typo runs the program with a value
 * nobody asked for. Here a bad number is refused with the option's name and its range.
 *
 * The shape of every parse_options (main exits with status 2 when it returns -1):
 *
 *     int c, bad = 0;
 *     while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
 *         switch (c) {
 *         case 'd': bad = args_int("prog", "--depth", optarg, 1, 64, &opt->depth); break;
 *         default: bad = -1;   (getopt_long has said what)
 *         }
 *     }
 *     return args_end("prog", bad, argc, argv, USAGE);
 *
 * `--depth 8` and `--depth=8` both work (getopt_long), and so do operands among the options.
 */
#ifndef COMMON_ARGS_H
#define COMMON_ARGS_H

/* Read `text` (optarg of `option`, e.g. "--depth") as a whole number in [min, max] into *out.
 * Decimal, or 0x-prefixed hex. 0, or -1 after printing "PROG: --depth wants a whole number
 * from 1 to 4096, not '8k'" to stderr. */
int args_long(const char *prog, const char *option, const char *text, long min, long max, long *out);

/* The same for an int. */
int args_int(const char *prog, const char *option, const char *text, int min, int max, int *out);

/* The end of a parse_options, after its getopt_long loop (optind is where it stopped):
 * refuse the words left over ("PROG: unexpected argument 'x'"), and when that or `bad`
 * (the loop's verdict, -1 after getopt_long or args_* said why) says the command line is
 * wrong, print "usage: USAGE" on stderr. 0, or -1 (the caller exits with status 2). */
int args_end(const char *prog, int bad, int argc, char **argv, const char *usage);

/* "PROG: --port is required" on stderr. Returns -1, for `return args_missing(...)`. */
int args_missing(const char *prog, const char *option);

#endif
