/* rx_echo: an echo server on the rx reactor — one thread, a thousand clients, no call that blocks. */
/*
 * Usage: rx_echo [--port N] [--stall-timeout-ms MS]
 *        N = 0 (the default) lets the kernel pick a free port; MS (default 30000, 0: never)
 *        is how long a client may leave its echo unread before it is dropped.
 * Prints "listening on 127.0.0.1:PORT" and echoes every byte back until killed. By hand:
 *     build/bin/rx_echo --port 7000 &
 *     nc 127.0.0.1 7000              (type lines; each comes back)
 *
 * The lesson is what can go wrong with real clients, and what the loop does about it:
 *   - a client that never reads: our send() takes only part of the echo. We keep the
 *     rest, ask for RX_WRITABLE, and stop reading from that client until it drains
 *     (backpressure: one client's backlog never grows without bound).
 *   - a client that vanishes (RST): send() fails with ECONNRESET or EPIPE. MSG_NOSIGNAL
 *     keeps the kernel from killing the whole server with SIGPIPE for it.
 *   - more clients than file descriptors: accept() fails with EMFILE, the listening
 *     socket stays readable, and a naive loop spins at 100% CPU. We refuse politely.
 *   - many clients that send and never read: backpressure bounds OUR memory (16 KiB each),
 *     but not the kernel's: each such connection keeps its socket buffers full (megabytes
 *     each; an audit saw 300 of them drive the kernel's TCP memory to its tcp_mem limit and
 *     slow every other connection down). A client whose echo has waited unread for the stall
 *     timeout is dropped, which gives that memory back.
 */
#include "rx.h"
#include "../common/args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384   /* per client: the most echo we hold for a client that does not read */
#define ACCEPT_BATCH 64  /* accepts per wake-up, so a flood of newcomers cannot starve the others */
#define PAUSE_MS 100     /* how long we stop accepting when we cannot even refuse a newcomer */

struct server {
    struct rx *rx;
    uint64_t stall_ms;  /* drop a client whose echo has waited this long unread; 0: never */
    int lfd;            /* the listening socket (non-blocking) */
    int spare;          /* /dev/null held in reserve, spent to refuse a newcomer on EMFILE; -1 if lost */
    int error;          /* the -errno that stopped the server; 0 while all is well */
    const char *where;  /* which step failed with `error` */
};

struct client {
    struct server *srv;
    int fd;             /* the connection (non-blocking) */
    unsigned events;    /* what we asked the reactor for: RX_READABLE, or RX_WRITABLE while echo is pending */
    size_t off, len;    /* buf[off..len) is echo the kernel has not taken yet */
    int64_t stall;      /* the stall timer's id while echo is pending; 0: none */
    char buf[BUF_SIZE];
};

/* What a client handler tells on_client. A negative value (-errno) stops the server. */
enum { KEEP = 0, DROP = 1 };

/* " (lab 2: ...)" after the message of a -ENOSYS: a starter stub not written yet. */
static const char *todo_note(int err, const char *file)
{
    static char note[64];
    if (err != -ENOSYS)
        return "";
    snprintf(note, sizeof(note), " (not written yet: lab 2, %s)", file);
    return note;
}

/* Stop the whole server with err (a -errno), remembering where; main prints it. */
static void fail(struct server *srv, int err, const char *where)
{
    if (srv->error == 0) {
        srv->error = err;
        srv->where = where;
    }
    rx_stop(srv->rx);
}

/* Forget a client: unregister, close, free. Called from the client's own callback. */
static void client_close(struct client *c)
{
    if (c->stall > 0)
        rx_timer_del(c->srv->rx, c->stall);
    rx_del(c->srv->rx, c->fd); /* before close: the fd number is reused at once by accept */
    close(c->fd);
    free(c);
}

/* Send the pending echo, buf[off..len). KEEP, DROP (the client is gone), or -errno. */
static int client_flush(struct client *c)
{
    /* BEGIN SOLUTION lab2
     * TODO: send() what is pending with MSG_NOSIGNAL until it is all gone or send would
     *       block (EAGAIN); retry EINTR; any other error (ECONNRESET, EPIPE) means the
     *       client is gone: DROP.
     *       Something left over (a partial write): ask the reactor for RX_WRITABLE only
     *       (rx_mod), so that it wakes us when there is room, and so that we read
     *       nothing more from this client meanwhile (backpressure).
     *       All sent: empty the buffer and go back to RX_READABLE.
     *       Call rx_mod only when c->events changes (each call is a syscall). KEEP.
     *       Why MSG_NOSIGNAL: sending on a connection the peer has reset raises SIGPIPE,
     *       whose default action kills the process: every client would lose its server.
     * STUB: (void)c;
     * STUB: return -ENOSYS;
     */
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break; /* the socket's send buffer is full: the client is not reading */
            return DROP; /* ECONNRESET, EPIPE: the client is gone */
        }
        c->off += (size_t)n;
    }
    unsigned want = RX_READABLE;
    if (c->off < c->len)
        want = RX_WRITABLE; /* wake us when there is room; read nothing more meanwhile */
    else
        c->off = c->len = 0;
    if (want != c->events) {
        if (rx_mod(c->srv->rx, c->fd, want) < 0)
            return DROP;
        c->events = want;
    }
    return KEEP;
    /* END SOLUTION */
}

/* RX_READABLE: read what the client sent and echo it. KEEP, DROP, or -errno. */
static int client_read(struct client *c)
{
    /* BEGIN SOLUTION lab2
     * TODO: recv() into c->buf (the buffer is empty: we only read while nothing is
     *       pending); retry EINTR. EAGAIN: a spurious wake-up, KEEP. 0 (end of file)
     *       or an error (ECONNRESET): DROP. Data: it becomes buf[0..n), then
     *       return client_flush(c).
     * STUB: (void)c;
     * STUB: return -ENOSYS;
     */
    ssize_t n;
    do
        n = recv(c->fd, c->buf, sizeof(c->buf), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? KEEP : DROP;
    if (n == 0)
        return DROP; /* the client closed its side, and everything it sent was echoed */
    c->off = 0;
    c->len = (size_t)n;
    return client_flush(c);
    /* END SOLUTION */
}

/* The stall timer: the client left its echo unread for srv->stall_ms. Drop it: its socket
 * buffers, full in both directions, are kernel memory every other connection needs. */
static void on_stalled(struct rx *rx, int64_t id, void *arg)
{
    struct client *c = arg;
    (void)rx;
    (void)id;
    c->stall = 0; /* a one-shot timer is gone once it fires */
    client_close(c);
}

/* Arm the stall timer while echo is pending (RX_WRITABLE), disarm it once it has drained. */
static int watch_stall(struct client *c)
{
    struct server *srv = c->srv;
    if ((c->events & RX_WRITABLE) && c->stall == 0 && srv->stall_ms > 0) {
        int64_t id = rx_timer_add(srv->rx, srv->stall_ms, 0, on_stalled, c);
        if (id < 0)
            return (int)id;
        c->stall = id;
    }
    else if (!(c->events & RX_WRITABLE) && c->stall > 0) {
        rx_timer_del(srv->rx, c->stall);
        c->stall = 0;
    }
    return 0;
}

/* The reactor's callback for every client fd. */
static void on_client(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct client *c = arg;
    (void)rx;
    (void)fd;
    int verdict;
    const char *where;
    if (events & RX_WRITABLE) { /* we only ask for it while echo is pending */
        verdict = client_flush(c);
        where = "client_flush";
    } else {
        verdict = client_read(c);
        where = "client_read";
    }
    if (verdict == KEEP && (verdict = watch_stall(c)) < 0)
        where = "rx_timer_add(stall)";
    if (verdict < 0)
        fail(c->srv, verdict, where);
    else if (verdict == DROP)
        client_close(c);
}

/* A new connection: a client struct, watched for RX_READABLE. 0 or -errno (the caller
 * closes fd). */
static int client_new(struct server *srv, int fd)
{
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->srv = srv;
    c->fd = fd;
    c->events = RX_READABLE;
    int ret = rx_add(srv->rx, fd, RX_READABLE, on_client, c);
    if (ret < 0)
        free(c);
    return ret;
}

static void on_accept(struct rx *rx, int lfd, unsigned events, void *arg);

/* The pause is over: listen again, and try to get the spare fd back. */
static void resume_accepting(struct rx *rx, int64_t id, void *arg)
{
    struct server *srv = arg;
    (void)id;
    if (srv->spare < 0)
        srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int ret = rx_add(rx, srv->lfd, RX_READABLE, on_accept, srv);
    if (ret < 0)
        fail(srv, ret, "rx_add(listening socket)");
}

/* Stop watching the listening socket for PAUSE_MS: the newcomers wait in the kernel's
 * backlog instead of waking us in a loop. The last resort when we cannot refuse. */
static void pause_accepting(struct server *srv)
{
    rx_del(srv->rx, srv->lfd);
    int64_t id = rx_timer_add(srv->rx, PAUSE_MS, 0, resume_accepting, srv);
    if (id < 0)
        fail(srv, (int)id, "rx_timer_add");
}

/* BEGIN SOLUTION lab2
 * TODO: refuse_one(srv), for accept's EMFILE/ENFILE: every fd we may have is in use,
 *       so accept cannot hand us the newcomer, and the listening socket stays readable
 *       (level-triggered): return now and epoll_wait wakes us again at once, forever.
 *       The spare-fd trick: close srv->spare, accept the newcomer on the fd that frees,
 *       close it at once (the client sees end of file: refused, not ignored), then
 *       open /dev/null as the spare again.
 *       Return 1 when a newcomer was refused, 0 when nobody was waiting (accept said
 *       EAGAIN: the kernel checks for a free fd BEFORE it looks at the backlog, so
 *       EMFILE does not mean anyone is there), or -EMFILE when there is no spare to
 *       spend (then the caller pauses accepting for a while).
 */
static int refuse_one(struct server *srv)
{
    if (srv->spare < 0)
        return -EMFILE;
    close(srv->spare);
    srv->spare = -1;
    int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
    int err = errno;
    if (fd >= 0)
        close(fd);
    srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (srv->spare < 0)
        return -errno;
    return fd >= 0 || err == ECONNABORTED ? 1 : 0;
}
/* END SOLUTION */

/* The listening socket is readable: newcomers wait in the backlog. */
static void on_accept(struct rx *rx, int lfd, unsigned events, void *arg)
{
    struct server *srv = arg;
    (void)rx;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the backlog is empty */
            if (errno == EINTR || errno == ECONNABORTED)
                continue; /* that newcomer gave up before we got to it */
            if (errno == EMFILE || errno == ENFILE) {
                /* BEGIN SOLUTION lab2
                 * TODO: out of fds: refuse this newcomer with refuse_one(). Refused: go
                 *       on with the loop (more may wait). Nobody there: return (epoll
                 *       will tell us about the next one). No spare: pause_accepting(), return.
                 * STUB: fail(srv, -ENOSYS, "refusing a newcomer on EMFILE (refuse_one)");
                 * STUB: return;
                 */
                int refused = refuse_one(srv);
                if (refused > 0)
                    continue;
                if (refused < 0)
                    pause_accepting(srv);
                return;
                /* END SOLUTION */
            }
            /* ENOBUFS, ENOMEM: the kernel is short of memory; give it a moment. */
            pause_accepting(srv);
            return;
        }
        if (client_new(srv, fd) < 0)
            close(fd); /* no memory for it: the client sees end of file */
    }
}

/* A non-blocking TCP socket listening on 127.0.0.1:port. The fd, or -errno. */
static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, SOMAXCONN) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

static const char USAGE[] = "rx_echo [--port N] [--stall-timeout-ms MS]";

struct options {
    int port;           /* 0: the kernel picks a free one */
    long stall_ms;      /* see server.stall_ms */
};

/* Fill *opt from argv. 0, or -1 after saying what is wrong and the usage line. */
static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        { "port", required_argument, NULL, 'p' },
        { "stall-timeout-ms", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    *opt = (struct options){ .port = 0, .stall_ms = 30000 };
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': bad = args_int("rx_echo", "--port", optarg, 0, 65535, &opt->port); break;
        case 's': bad = args_long("rx_echo", "--stall-timeout-ms", optarg, 0, 24L * 3600 * 1000, &opt->stall_ms); break;
        default: bad = -1; /* getopt_long said what */
        }
    }
    return args_end("rx_echo", bad, argc, argv, USAGE);
}

/* The listening socket, the spare fd, the reactor watching them. 0, or -1 after saying
 * what failed (what was made is left in srv for main to free). */
static int start_server(struct server *srv, int port)
{
    int ret = rx_create(&srv->rx);
    if (ret < 0) {
        fprintf(stderr, "rx_echo: rx_create: %s%s\n", strerror(-ret), todo_note(ret, "rx.c"));
        return -1;
    }
    srv->lfd = listen_on(port);
    if (srv->lfd < 0) {
        fprintf(stderr, "rx_echo: listen on 127.0.0.1:%d: %s\n", port, strerror(-srv->lfd));
        return -1;
    }
    srv->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ret = rx_add(srv->rx, srv->lfd, RX_READABLE, on_accept, srv);
    if (ret < 0) {
        fprintf(stderr, "rx_echo: rx_add(listening socket): %s%s\n", strerror(-ret), todo_note(ret, "rx.c"));
        return -1;
    }
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    getsockname(srv->lfd, (struct sockaddr *)&addr, &len);
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout); /* stdout is a pipe when a test starts us: push the line out now */
    return 0;
}

/* Serve until stopped. The exit status: 0, or 1 after saying what stopped the server. */
static int serve(struct server *srv)
{
    int ret = rx_run(srv->rx);
    if (ret < 0)
        fprintf(stderr, "rx_echo: rx_run: %s%s\n", strerror(-ret), todo_note(ret, "rx.c"));
    else if (srv->error < 0)
        fprintf(stderr, "rx_echo: %s: %s%s\n", srv->where, strerror(-srv->error),
                todo_note(srv->error, "rx_echo.c"));
    return ret < 0 || srv->error < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct options opt;
    if (parse_options(argc, argv, &opt) < 0)
        return 2;   /* a usage error */
    struct server srv = { .lfd = -1, .spare = -1, .stall_ms = (uint64_t)opt.stall_ms };
    int status = start_server(&srv, opt.port) < 0 ? 1 : serve(&srv);
    /* Clients still connected are left to the kernel: exit closes their fds. */
    if (srv.spare >= 0)
        close(srv.spare);
    if (srv.lfd >= 0)
        close(srv.lfd);
    rx_destroy(srv.rx);
    return status;
}
