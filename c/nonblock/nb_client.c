/* nb_client.c — send a large message on a non-blocking socket, read the echo back, check every byte (lab 1). */
#include "nb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Usage: nb_client --port PORT [--host ADDR] [--wait spin|poll] [--size BYTES]
 *                  [--sndbuf BYTES] [--timeout-ms MS]
 *
 * The client connects to slow_server (or any server that echoes everything it
 * received once the client has shut down its sending side), makes the socket
 * non-blocking with nb_set_nonblocking, sends --size bytes, reads the reply
 * until the end of stream and compares it with what it sent.
 *
 * Its send buffer is kept small (--sndbuf, 64 KiB by default; 0 leaves the
 * kernel's self-tuning alone), as if the network were slow: one send() can then
 * take only a piece of the message (a partial write) or nothing at all (EAGAIN).
 *
 *   --wait spin   uses nb_send_all_spin / nb_recv_some_spin (the busy loop)
 *   --wait poll   uses nb_send_all / nb_recv_some (try first, then poll)
 *
 * It prints one line when it starts waiting for the reply ("sent N bytes;
 * waiting for the reply"), so a grader or a curious human knows when to look
 * at /proc/PID. Exit status: 0 when every byte came back intact, 1 otherwise,
 * 2 for a usage error.
 *
 * Try it:   slow_server --port 0 --delay-ms 2000 &     (prints its port)
 *           nb_client --port PORT --wait spin    then --wait poll, and compare
 *           the CPU time each one reports (or watch them in top).
 */

#define RECV_CHUNK (64 * 1024)   /* how much one nb_recv_some call may return */

struct options {
    const char *host;   /* the server's IPv4 address, dotted */
    int port;           /* the server's TCP port */
    int spin;           /* 1: the busy-loop functions; 0: the poll ones */
    size_t size;        /* how many bytes to send (and expect back) */
    int sndbuf;         /* SO_SNDBUF to ask for; 0: the kernel's default */
    int timeout_ms;     /* the longest one wait may last (poll version only) */
};

/* Print what failed; ENOSYS is how an unwritten lab function answers. */
static void report(const char *what, long err)
{
    if (err == -ENOSYS)
        fprintf(stderr, "nb_client: %s: not implemented yet (lab1: write it in nb.c)\n", what);
    else
        fprintf(stderr, "nb_client: %s: %s\n", what, strerror((int)-err));
}

/* The byte at offset i of the message: a pattern that never repeats with a short
 * period, so lost, duplicated or reordered pieces all show up as a mismatch. */
static unsigned char pattern(size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u;
    x ^= x >> 15;
    return (unsigned char)(x ^ (i >> 16));
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time (user + system) this process has used so far, in seconds. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        { "host", required_argument, NULL, 'h' },
        { "port", required_argument, NULL, 'p' },
        { "wait", required_argument, NULL, 'w' },
        { "size", required_argument, NULL, 's' },
        { "sndbuf", required_argument, NULL, 'b' },
        { "timeout-ms", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct options){ .host = "127.0.0.1", .port = -1, .spin = 0,
                             .size = 4u << 20, .sndbuf = 64 * 1024, .timeout_ms = 10000 };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': opt->host = optarg; break;
        case 'p': opt->port = atoi(optarg); break;
        case 's': opt->size = strtoull(optarg, NULL, 0); break;
        case 'b': opt->sndbuf = atoi(optarg); break;
        case 't': opt->timeout_ms = atoi(optarg); break;
        case 'w':
            if (strcmp(optarg, "spin") == 0)
                opt->spin = 1;
            else if (strcmp(optarg, "poll") == 0)
                opt->spin = 0;
            else
                return -1;
            break;
        default:
            return -1;
        }
    }
    if (opt->port <= 0 || opt->port > 65535 || opt->size == 0 || opt->sndbuf < 0 || optind != argc)
        return -1;
    return 0;
}

/* A connected TCP socket (blocking: on loopback connect answers at once), or -errno.
 * sndbuf > 0 fixes its send buffer size (before connect, as TCP wants). */
static int connect_to(const char *host, int port, int sndbuf)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    /* No signal handler is installed, so connect cannot be interrupted (no EINTR). */
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct options opt;
    unsigned char *msg = NULL, *got = NULL;
    int fd = -1, status = 1;
    long r;

    setvbuf(stdout, NULL, _IOLBF, 0);   /* one line at a time, even into a pipe */
    if (parse_options(argc, argv, &opt) < 0) {
        fprintf(stderr, "usage: nb_client --port PORT [--host ADDR] [--wait spin|poll]"
                        " [--size BYTES] [--sndbuf BYTES] [--timeout-ms MS]\n");
        return 2;
    }
    /* got has one spare byte, so a server that sends too much is caught too. */
    msg = malloc(opt.size);
    got = malloc(opt.size + 1);
    if (msg == NULL || got == NULL) {
        report("malloc", -ENOMEM);
        goto out;
    }
    for (size_t i = 0; i < opt.size; i++)
        msg[i] = pattern(i);

    fd = connect_to(opt.host, opt.port, opt.sndbuf);
    if (fd < 0) {
        report("connect", fd);
        goto out;
    }
    r = nb_set_nonblocking(fd);
    if (r < 0) {
        report("nb_set_nonblocking", r);
        goto out;
    }
    printf("connected to %s:%d; fd %d is non-blocking; waiting with %s\n",
           opt.host, opt.port, fd, opt.spin ? "a busy loop (spin)" : "poll(2)");

    r = opt.spin ? nb_send_all_spin(fd, msg, opt.size)
                 : nb_send_all(fd, msg, opt.size, opt.timeout_ms);
    if (r < 0) {
        report(opt.spin ? "nb_send_all_spin" : "nb_send_all", r);
        goto out;
    }
    if ((size_t)r != opt.size) {
        fprintf(stderr, "nb_client: the send function returned %ld, but the message has %zu bytes\n",
                r, opt.size);
        goto out;
    }
    /* Half-close: "I have sent everything", so the server knows when to reply. */
    if (shutdown(fd, SHUT_WR) < 0) {
        report("shutdown", -errno);
        goto out;
    }
    printf("sent %zu bytes; waiting for the reply\n", opt.size);

    double wall0 = now_seconds(), cpu0 = cpu_seconds();
    size_t total = 0;
    for (;;) {
        size_t room = opt.size + 1 - total;
        size_t cap = room < RECV_CHUNK ? room : RECV_CHUNK;
        r = opt.spin ? nb_recv_some_spin(fd, got + total, cap)
                     : nb_recv_some(fd, got + total, cap, opt.timeout_ms);
        if (r < 0) {
            report(opt.spin ? "nb_recv_some_spin" : "nb_recv_some", r);
            goto out;
        }
        if (r == 0)
            break;   /* the server closed: that was the whole reply */
        if ((size_t)r > cap) {
            fprintf(stderr, "nb_client: the receive function returned %ld bytes, more than the %zu asked for\n",
                    r, cap);
            goto out;
        }
        total += (size_t)r;
        if (total > opt.size) {
            fprintf(stderr, "nb_client: received more bytes than were sent (%zu)\n", opt.size);
            goto out;
        }
    }
    double wall = now_seconds() - wall0, cpu = cpu_seconds() - cpu0;
    printf("received %zu bytes in %.2f s, using %.2f s of CPU meanwhile\n", total, wall, cpu);

    if (total != opt.size) {
        fprintf(stderr, "nb_client: MISMATCH: sent %zu bytes but only %zu came back\n", opt.size, total);
        goto out;
    }
    for (size_t i = 0; i < opt.size; i++) {
        if (got[i] != msg[i]) {
            fprintf(stderr, "nb_client: MISMATCH at byte %zu: sent 0x%02x, got back 0x%02x"
                            " (a lost or repeated piece of a partial write?)\n", i, msg[i], got[i]);
            goto out;
        }
    }
    printf("echo verified: all %zu bytes came back intact\n", opt.size);
    status = 0;
out:
    if (fd >= 0)
        close(fd);
    free(msg);
    free(got);
    return status;
}
