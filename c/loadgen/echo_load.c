/* echo_load: one thread, one epoll instance, N echo clients — the load `make bench` puts on every echo server. */
/*
 * Usage: echo_load --port P [--host ADDR] [--connections N] [--size BYTES]
 *                  [--rounds R | --total T] [--warmup W] [--timeout S] [--sync]
 *
 * Opens N connections (default 100) to an echo server and waits until all are
 * established. Then each connection, on its own, sends one message of BYTES bytes
 * (default 64), waits for the whole echo, checks every byte of it, and sends the next:
 * R round trips per connection (default 100), or T in all shared out among them. One
 * message in flight per connection, so the server always has N requests to serve: the
 * rate measured is how fast it turns them around, not how fast we can send.
 *
 * Before the timed round trips, every connection makes W (default 1) that are not
 * counted: the server may accept lazily, or start a thread per client on its first
 * message; that is set-up, not the steady state being measured. Latency is from the
 * first byte of a message handed to send() to the last byte of its echo received,
 * CLOCK_MONOTONIC.
 *
 * --sync: after the `warm-up:` line, and again after the last line of the report (the
 * connections still open), wait for a line on stdin. The caller can then read the
 * server's /proc files (CPU time, threads) at exactly those two points: bench/echo.py
 * does, so the server's CPU time covers the timed round trips and nothing else.
 *
 * Prints `key: value` lines (what grading.programs.parse_report reads):
 *
 *     echo_load: 127.0.0.1:7000, 100 connections, 64-byte messages, 100 round trips each, 1 warm-up
 *     connected: 100 connections in 0.004 s
 *     warm-up: 100 round trips in 0.003 s
 *     requests: 10000 in 0.180412 s, 55428.7 per second
 *     latency: p50 1712.4 us, p90 2101.0 us, p99 3020.9 us, max 4211.7 us
 *     verified: 640000 bytes echoed intact
 *     cpu: user 0.031 s, system 0.120 s, waited 0.002 s for a CPU   (ours, timed round trips)
 *
 * Exit status: 0 when every echo came back intact; 1 when the server misbehaved (closed
 * a connection, changed a byte, sent more than it got, went silent for --timeout
 * seconds, 30 by default): one line on stderr names the connection, the round trip and
 * what was wrong; 2 for a usage error or when the connections cannot be opened (too
 * few file descriptors, connection refused).
 *
 * Why C, one thread, epoll: every server must get exactly the same load, and the load
 * must cost less than the fastest server, or the benchmark measures the load generator.
 * The engine (connections, round trips, checks) is el.c; this file is the command line
 * and the report.
 * Try:   build/bin/rx_echo --port 7000 &
 *        build/bin/echo_load --port 7000 --connections 1000 --size 4096 --rounds 20
 */
#include "el.h"
#include "../common/args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_CONNECTIONS 100000    /* far more than one loopback address has ports for */

/* CPU time this process has used so far, in seconds: in user space, or in the kernel (system). */
static double cpu_seconds(bool system)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct timeval tv = system ? ru.ru_stime : ru.ru_utime;
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Seconds this thread has waited for a CPU while runnable (the second number of
 * /proc/thread-self/schedstat): time other programs took from the load. 0 if unknown. */
static double waited_seconds(void)
{
    unsigned long long ran = 0, waited = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "re");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &ran, &waited) != 2)
        waited = 0;
    fclose(f);
    return (double)waited / 1e9;
}

/* What the options cannot say one by one: the host is an address, --rounds and --total are
 * not both given, --total is at least one round trip per connection. 0, or -1 after saying
 * what is wrong. */
static int check_settings(struct el_load *ld, const char *host)
{
    if (inet_pton(AF_INET, host, &ld->addr.sin_addr) != 1) {
        fprintf(stderr, "echo_load: --host wants an IPv4 address like 127.0.0.1, not '%s'\n", host);
        return -1;
    }
    if (ld->rounds && ld->total) {
        fprintf(stderr, "echo_load: --rounds and --total are two ways to say how many: give one\n");
        return -1;
    }
    if (ld->rounds == 0 && ld->total == 0)
        ld->rounds = 100;
    if (ld->total != 0 && ld->total < ld->connections) {
        fprintf(stderr, "echo_load: --total %ld is fewer than one round trip per connection (%d)\n", ld->total,
                ld->connections);
        return -1;
    }
    return 0;
}

/* --sync: block until the caller sends a line on stdin (or closes it). 0 or -errno. */
static int wait_for_go(void)
{
    char ch = 0;
    while (ch != '\n') {
        ssize_t n = read(STDIN_FILENO, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;   /* end of file: go on as well */
    }
    return 0;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The value below which `fraction` of the sorted values lie (nearest rank), in µs. */
static double percentile_us(const uint64_t *sorted, long n, double fraction)
{
    long rank = (long)(fraction * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return (double)sorted[(rank > n ? n : rank) - 1] / 1e3;
}

static const char USAGE[] = "echo_load --port P [--host ADDR] [--connections N] [--size BYTES]\n"
                            "                 [--rounds R | --total T] [--warmup W] [--timeout S] [--sync]";

/* The options are el_load's settings (the engine's own struct: its first block of fields),
 * and --sync. The address is checked here; the numbers by args_*. 0, or -1 after saying
 * what is wrong and the usage line. */
static int parse_options(int argc, char **argv, struct el_load *ld, bool *sync)
{
    static const struct option longopts[] = {
        { "host", required_argument, NULL, 'h' },    { "port", required_argument, NULL, 'p' },
        { "connections", required_argument, NULL, 'n' }, { "size", required_argument, NULL, 's' },
        { "rounds", required_argument, NULL, 'r' },  { "total", required_argument, NULL, 't' },
        { "warmup", required_argument, NULL, 'w' },  { "timeout", required_argument, NULL, 'T' },
        { "sync", no_argument, NULL, 'S' },          { NULL, 0, NULL, 0 },
    };
    const char *host = "127.0.0.1";
    long port = -1, size = (long)ld->size;
    int c, bad = 0, timeout_s = ld->timeout_ms / 1000;
    while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': host = optarg; break;
        case 'p': bad = args_long("echo_load", "--port", optarg, 1, 65535, &port); break;
        case 'n': bad = args_int("echo_load", "--connections", optarg, 1, MAX_CONNECTIONS, &ld->connections); break;
        case 's': bad = args_long("echo_load", "--size", optarg, 1, EL_MAX_SIZE, &size); break;
        case 'r': bad = args_long("echo_load", "--rounds", optarg, 1, 100000000, &ld->rounds); break;
        case 't': bad = args_long("echo_load", "--total", optarg, 1, 100000000, &ld->total); break;
        case 'w': bad = args_long("echo_load", "--warmup", optarg, 0, 1000, &ld->warmup); break;
        case 'T': bad = args_int("echo_load", "--timeout", optarg, 1, 3600, &timeout_s); break;
        case 'S': *sync = true; break;
        default: bad = -1; /* getopt_long said what */
        }
    }
    ld->size = (size_t)size;
    ld->timeout_ms = timeout_s * 1000;
    ld->addr.sin_family = AF_INET;
    ld->addr.sin_port = htons((uint16_t)port);
    if (!bad && port < 0)
        bad = args_missing("echo_load", "--port");
    if (!bad)
        bad = check_settings(ld, host);
    return args_end("echo_load", bad, argc, argv, USAGE);
}

/* The timed round trips' lines of the report, sorting the latencies first. */
static void report(struct el_load *ld, double seconds)
{
    qsort(ld->latency_ns, (size_t)ld->latencies, sizeof(*ld->latency_ns), compare_u64);
    printf("requests: %ld in %.6f s, %.1f per second\n", ld->latencies, seconds, (double)ld->latencies / seconds);
    printf("latency: p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us\n",
           percentile_us(ld->latency_ns, ld->latencies, 0.50), percentile_us(ld->latency_ns, ld->latencies, 0.90),
           percentile_us(ld->latency_ns, ld->latencies, 0.99), percentile_us(ld->latency_ns, ld->latencies, 1.0));
    printf("verified: %llu bytes echoed intact\n",
           (unsigned long long)(ld->latencies + ld->warmup * ld->connections) * ld->size);
}

/* The first line: what load is about to be put on which server. */
static void announce(const struct el_load *ld)
{
    char where[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ld->addr.sin_addr, where, sizeof(where));
    printf("echo_load: %s:%d, %d connections, %zu-byte messages, ", where, ntohs(ld->addr.sin_port), ld->connections,
           ld->size);
    if (ld->total)
        printf("%ld round trips in all, %ld warm-up each\n", ld->total, ld->warmup);
    else
        printf("%ld round trips each, %ld warm-up\n", ld->rounds, ld->warmup);
}

/* Connect, warm up, run the timed round trips, report. The exit status: 0; 1 when the
 * server misbehaved; 2 when no load could be put on it. ld->why says what went wrong. */
static int run(struct el_load *ld, bool sync)
{
    if (el_init(ld) < 0)
        return 2;
    announce(ld);
    uint64_t t0 = el_now_ns();
    if (el_connect_all(ld) < 0)
        return 2;   /* no load was put on the server: a set-up problem, not the server's fault */
    printf("connected: %d connections in %.3f s\n", ld->connections, (double)(el_now_ns() - t0) / 1e9);
    t0 = el_now_ns();
    if (el_run_phase(ld, false, "warm-up") < 0)
        return 1;
    printf("warm-up: %ld round trips in %.3f s\n", ld->warmup * ld->connections, (double)(el_now_ns() - t0) / 1e9);
    if (sync && wait_for_go() < 0)
        return 1;
    double user0 = cpu_seconds(false), system0 = cpu_seconds(true), waited0 = waited_seconds();
    t0 = el_now_ns();
    if (el_run_phase(ld, true, "timed round trips") < 0)
        return 1;
    report(ld, (double)(el_now_ns() - t0) / 1e9);
    /* Ours, during the timed round trips: near `seconds`, the load generator was the limit. */
    printf("cpu: user %.3f s, system %.3f s, waited %.3f s for a CPU\n", cpu_seconds(false) - user0,
           cpu_seconds(true) - system0, waited_seconds() - waited0);
    if (sync && wait_for_go() < 0)
        return 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct el_load ld = { .connections = 100, .size = 64, .warmup = 1, .timeout_ms = 30000, .epfd = -1 };
    bool sync = false;
    if (parse_options(argc, argv, &ld, &sync) < 0)
        return 2;   /* a usage error */
    setvbuf(stdout, NULL, _IOLBF, 0);   /* one line at a time, even into a pipe */
    int status = run(&ld, sync);
    if (status != 0)
        fprintf(stderr, "echo_load: %s\n", ld.why[0] ? ld.why : "--sync: reading stdin failed");
    el_free(&ld);
    return status;
}
