/* st.c: the self-test harness (st.h) — failure reports, the 5 s watchdog, and main's loop over the checks. */
#include "st.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char why[512];               /* the failure message of the running check */
static const char *current = "";    /* the running check's name, for the watchdog */

/* What a hang means (st_hang_default, st_hang_during). volatile: the signal handler reads them,
 * so every store must really happen before the code that could hang. */
static const char *volatile hang_default = "";
static const char *volatile hang_during = NULL;

bool st_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return false;
}

const char *st_res(long ret)
{
    static char bufs[4][80];
    static int next;
    char *b = bufs[next++ % 4];
    if (ret < 0)
        snprintf(b, sizeof(bufs[0]), "%ld (%s)", ret, strerror((int)-ret));
    else
        snprintf(b, sizeof(bufs[0]), "%ld", ret);
    return b;
}

double st_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void st_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

void st_hang_default(const char *meaning)
{
    hang_default = meaning;
}

void st_hang_during(const char *meaning)
{
    hang_during = meaning;
}

/* A watchdog's last words: the check is stuck. Runs as the SIGALRM handler, so it writes
 * with write(2), not printf (the check may be stopped inside stdio), and leaves with _exit. */
static void on_alarm(int sig)
{
    (void)sig;
    char msg[600];
    int n = snprintf(msg, sizeof(msg), "not ok %s: still running after 5 s: %s\n", current,
                     hang_during != NULL ? hang_during : hang_default);
    if (n >= (int)sizeof(msg))
        n = (int)sizeof(msg) - 1; /* cut short, rather than write past the buffer */
    if (write(STDOUT_FILENO, msg, (size_t)n) < 0)
        _exit(2);
    _exit(1);
}

/* Run one check under the watchdog and print its line. True if it passed. */
static bool run_check(const struct st_check *check)
{
    current = check->name;
    why[0] = '\0';
    hang_during = NULL;
    alarm(5);
    bool ok = check->run();
    alarm(0);
    if (ok)
        printf("ok %s\n", current);
    else
        printf("not ok %s: %s\n", current, why);
    fflush(stdout); /* now: if a later check hangs, the watchdog's _exit drops what stdio still holds */
    return ok;
}

int st_main(int argc, char **argv, const struct st_check *checks, int n)
{
    signal(SIGALRM, on_alarm);
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (int i = 0; i < n; i++)
            printf("%s\n", checks[i].name);
        return 0;
    }
    bool all_ok = true;
    for (int i = 0; i < n; i++) {
        bool wanted = argc == 1;
        for (int a = 1; a < argc; a++)
            wanted = wanted || strcmp(argv[a], checks[i].name) == 0;
        if (wanted)
            all_ok = run_check(&checks[i]) && all_ok;
    }
    for (int a = 1; a < argc; a++) {
        bool known = false;
        for (int i = 0; i < n; i++)
            known = known || strcmp(argv[a], checks[i].name) == 0;
        if (!known) {
            const char *slash = strrchr(argv[0], '/'); /* the program's name, without its directory */
            printf("not ok %s: no such check (try `%s list`)\n", argv[a], slash != NULL ? slash + 1 : argv[0]);
            all_ok = false;
        }
    }
    return all_ok ? 0 : 1;
}
