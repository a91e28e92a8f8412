/* slow_server.c — a deliberately slow echo server: small buffers, small pieces, a delayed reply (lab 1). */
#include "../common/args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Usage: slow_server --port PORT [--delay-ms MS] [--chunk BYTES] [--bufsize BYTES] [--once]
 *
 * For each connection, one after the other: read everything until the client
 * shuts down its sending side, sleep --delay-ms, send it all back, close.
 *
 * It is slow on purpose, so that a client meets every case a non-blocking
 * socket has:
 *   - small socket buffers (SO_RCVBUF / SO_SNDBUF = --bufsize) and reads of
 *     --chunk bytes keep the TCP window small: the client's send buffer fills
 *     up, so its send() returns EAGAIN or sends only part of what it was given;
 *   - the delay before the reply: the client's recv() has nothing to return
 *     (EAGAIN) for --delay-ms, which is the time a client should spend asleep;
 *   - the reply written in --chunk pieces arrives in several parts.
 *
 * This server itself is plain blocking code: it is the other side, not the
 * subject. First stdout line: "listening on 127.0.0.1:PORT" (with --port 0 the
 * kernel picks a free port). Stop it with Ctrl-C, or use --once.
 */

#define MAX_MESSAGE (256u << 20)   /* refuse to buffer more than this per connection */

struct options {
    int port;          /* TCP port to listen on; 0 = any free port */
    int delay_ms;      /* how long to wait before replying */
    size_t chunk;      /* bytes per read and per write */
    int bufsize;       /* SO_RCVBUF and SO_SNDBUF of the connections */
    int once;          /* 1: exit after the first connection */
};

static const char USAGE[] = "slow_server --port PORT [--delay-ms MS] [--chunk BYTES]"
                            " [--bufsize BYTES] [--once]";

/* Fill *opt from argv. 0, or -1 after saying what is wrong, and the usage line. */
static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        { "port", required_argument, NULL, 'p' },
        { "delay-ms", required_argument, NULL, 'd' },
        { "chunk", required_argument, NULL, 'c' },
        { "bufsize", required_argument, NULL, 'b' },
        { "once", no_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct options){ .port = -1, .delay_ms = 1000, .chunk = 1024, .bufsize = 4096, .once = 0 };
    long chunk = (long)opt->chunk;
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': bad = args_int("slow_server", "--port", optarg, 0, 65535, &opt->port); break;
        case 'd': bad = args_int("slow_server", "--delay-ms", optarg, 0, 3600 * 1000, &opt->delay_ms); break;
        case 'c': bad = args_long("slow_server", "--chunk", optarg, 1, MAX_MESSAGE, &chunk); break;
        case 'b': bad = args_int("slow_server", "--bufsize", optarg, 1, 64 << 20, &opt->bufsize); break;
        case 'o': opt->once = 1; break;
        default: bad = -1; /* getopt_long said what */
        }
    }
    opt->chunk = (size_t)chunk;
    if (!bad && opt->port < 0)
        bad = args_missing("slow_server", "--port");
    return args_end("slow_server", bad, argc, argv, USAGE);
}

/* Sleep ms milliseconds, sleeping again for the rest when a signal interrupts. */
static void sleep_ms(int ms)
{
    struct timespec left = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

/* A listening socket on 127.0.0.1:port, or -errno. */
static int listen_on(int port, int bufsize)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1, err;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Set on the listening socket, the buffer sizes are inherited by every accepted
     * connection, early enough to shape the TCP window it announces. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize) < 0
        || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize) < 0
        || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0
        || listen(fd, 16) < 0) {
        err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* Read everything the client sends, --chunk bytes at a time, until it shuts down its
 * sending side. *data (malloc'd, the caller frees it) and *len; 0 or -errno. */
static int receive_all(int conn, const struct options *opt, unsigned char **data, size_t *len)
{
    size_t cap = 0, reads = 0;
    *data = NULL;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            size_t ncap = cap ? cap * 2 : 1u << 20;
            if (ncap > MAX_MESSAGE)
                return -EMSGSIZE;
            unsigned char *bigger = realloc(*data, ncap);
            if (bigger == NULL)
                return -ENOMEM;
            *data = bigger;
            cap = ncap;
        }
        size_t room = cap - *len;
        ssize_t n = recv(conn, *data + *len, room < opt->chunk ? room : opt->chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;   /* the client shut down its sending side: the message is complete */
        *len += (size_t)n;
        reads++;
    }
    printf("received %zu bytes in %zu reads; replying in %d ms\n", *len, reads, opt->delay_ms);
    return 0;
}

/* Send data[0..len) back, --chunk bytes at a time. 0 or -errno. */
static int send_back(int conn, const struct options *opt, const unsigned char *data, size_t len)
{
    size_t writes = 0;
    for (size_t off = 0; off < len;) {
        size_t piece = len - off < opt->chunk ? len - off : opt->chunk;
        ssize_t n = send(conn, data + off, piece, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        off += (size_t)n;
        writes++;
    }
    printf("sent %zu bytes back in %zu writes\n", len, writes);
    return 0;
}

/* Serve one connection: read all, wait, echo all. Returns 0 or -errno. Closes nothing. */
static int serve(int conn, const struct options *opt)
{
    unsigned char *data;
    size_t len;
    int ret = receive_all(conn, opt, &data, &len);
    if (ret == 0) {
        sleep_ms(opt->delay_ms);
        ret = send_back(conn, opt, data, len);
    }
    free(data);
    return ret;
}

int main(int argc, char **argv)
{
    struct options opt;

    setvbuf(stdout, NULL, _IOLBF, 0);   /* one line at a time, even into a pipe */
    if (parse_options(argc, argv, &opt) < 0)
        return 2;   /* a usage error */
    int lfd = listen_on(opt.port, opt.bufsize);
    if (lfd < 0) {
        fprintf(stderr, "slow_server: cannot listen on port %d: %s\n", opt.port, strerror(-lfd));
        return 1;
    }
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (getsockname(lfd, (struct sockaddr *)&bound, &blen) < 0) {
        perror("slow_server: getsockname");
        close(lfd);
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));

    for (;;) {
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("slow_server: accept4");
            close(lfd);
            return 1;
        }
        int r = serve(conn, &opt);
        if (r < 0)   /* a client that went away is its problem, not the server's */
            printf("connection failed: %s\n", strerror(-r));
        close(conn);
        if (opt.once)
            break;
    }
    close(lfd);
    return 0;
}
