/* st.h: the harness every C self-test shares — named checks, failure reports, a watchdog, main. */
#ifndef ST_H
#define ST_H

#include <stdbool.h>

/* One named check of a self-test program. */
struct st_check {
    const char *name;   /* what `PROGRAM list` prints and `PROGRAM NAME` runs */
    bool (*run)(void);  /* the check: true if it passed, or false after st_fail() */
};

/* Record why the running check failed (printf-style), for its "not ok NAME: why" line.
 * Returns false, so a check can end with `return st_fail(...)`. Main thread only. */
bool st_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "-9 (Bad file descriptor)" for a -errno, "3" for anything else. The string is static:
 * valid for the next three calls (so up to four fit in one st_fail). Main thread only. */
const char *st_res(long ret);

/* Seconds on CLOCK_MONOTONIC. Any thread. */
double st_now(void);

/* Sleep ms milliseconds (the thread, not a loop). Any thread. */
void st_sleep_ms(long ms);

/* The watchdog ends a check still running after 5 s with the line
 *     not ok NAME: still running after 5 s: MEANING
 * and exit status 1. MEANING is the program's default hang meaning, set once with
 * st_hang_default() before st_main(), unless the check said more with st_hang_during().
 * The strings are not copied: pass string literals. */

/* What a hang means in this program when the check said nothing more (the likely bug). */
void st_hang_default(const char *meaning);

/* What a hang would be stuck in from now on, until st_hang_during(NULL) (back to the
 * default; st_main also goes back to it before each check). Main thread only. */
void st_hang_during(const char *meaning);

/* The whole program: `PROGRAM` runs the n checks in order, `PROGRAM NAME...` those named
 * (in the table's order), `PROGRAM list` prints their names. Each check prints "ok NAME" or
 * "not ok NAME: why"; an unknown name prints "not ok NAME: no such check (...)". The program
 * name in messages is argv[0] without its directory. Returns main's exit status: 0 when every
 * check run passed (and every name was known), 1 otherwise. */
int st_main(int argc, char **argv, const struct st_check *checks, int n);

#endif
