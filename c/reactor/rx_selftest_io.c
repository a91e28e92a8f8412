/* rx_selftest_io.c: the checks of rx_selftest on fds — errors, dispatch, unregistering mid-round. */
#include "rx_selftest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool check_create(void)
{
    struct rx *rx = st_new_rx();
    if (rx == NULL)
        return false;
    bool ok = true;
    char link[64] = "", path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", rx->epfd);
    if (readlink(path, link, sizeof(link) - 1) < 0 || strcmp(link, "anon_inode:[eventpoll]") != 0)
        ok = st_fail("rx->epfd = %d is not an epoll instance (it points at '%s'): use epoll_create1",
                     rx->epfd, link);
    else if (!(fcntl(rx->epfd, F_GETFD) & FD_CLOEXEC))
        ok = st_fail("the epoll fd is not close-on-exec: pass EPOLL_CLOEXEC to epoll_create1");
    rx_destroy(rx);
    return ok;
}

bool check_errors(void)
{
    struct rx *rx = st_new_rx();
    if (rx == NULL)
        return false;
    struct st_seen s = { 0 };
    int p[2] = { -1, -1 }, ret;
    bool ok = false;
    int file = open("/proc/self/stat", O_RDONLY | O_CLOEXEC); /* any regular file will do */
    if (file < 0) {
        st_fail("setup: open /proc/self/stat: %s", strerror(errno));
        goto out;
    }
    if (!st_pipe(p))
        goto out;
    if ((ret = rx_add(rx, 1000, RX_READABLE, st_note_io, &s)) != -EBADF) {
        st_fail("rx_add of fd 1000 (not open) returned %s, expected -EBADF from epoll_ctl", st_res(ret));
        goto out;
    }
    ret = rx_add(rx, file, RX_READABLE, st_note_io, &s);
    if (ret != -EPERM) {
        st_fail("rx_add of a regular file returned %s, expected -EPERM (epoll cannot watch files)", st_res(ret));
        goto out;
    }
    if ((ret = rx_add(rx, p[0], RX_READABLE, st_note_io, &s)) != 0) {
        st_fail("rx_add of a pipe returned %s, expected 0", st_res(ret));
        goto out;
    }
    if ((ret = rx_add(rx, p[0], RX_READABLE, st_note_io, &s)) != -EEXIST) {
        st_fail("a second rx_add of the same fd returned %s, expected -EEXIST", st_res(ret));
        goto out;
    }
    if ((ret = rx_mod(rx, p[1], RX_WRITABLE)) != -ENOENT || (ret = rx_del(rx, p[1])) != -ENOENT) {
        st_fail("rx_mod/rx_del of an fd never added returned %s, expected -ENOENT", st_res(ret));
        goto out;
    }
    if ((ret = rx_del(rx, p[0])) != 0 || (ret = rx_del(rx, p[0])) != -ENOENT) {
        st_fail("rx_del, then rx_del again: the second returned %s, expected -ENOENT", st_res(ret));
        goto out;
    }
    if (rx->nfds != 0) {
        st_fail("after adding and removing one fd, rx->nfds = %d, expected 0", rx->nfds);
        goto out;
    }
    ok = true;
out:
    st_close_pipe(p);
    if (file >= 0)
        close(file);
    rx_destroy(rx);
    return ok;
}

/* The fd is closed before rx_del: EBADF, but no ghost left behind. */
bool check_del_after_close(void)
{
    struct st_piped f;
    if (!st_piped_open(&f))
        return false;
    bool ok = false;
    int number = f.p[0];
    st_close_pipe(f.p);
    int ret = rx_del(f.rx, number);
    if (ret != -EBADF && ret != -ENOENT && ret != 0) {
        st_fail("rx_del of an fd already closed returned %s, expected -EBADF", st_res(ret));
        goto out;
    }
    if (!st_pipe(f.p))
        goto out;
    if (f.p[0] == number && (ret = rx_add(f.rx, f.p[0], RX_READABLE, st_note_io, &f.seen)) != 0) {
        st_fail("rx_del after close, then rx_add of a new fd with the same number returned %s, expected "
                "0: rx_del must forget the fd even when epoll_ctl fails", st_res(ret));
        goto out;
    }
    ok = true;
out:
    st_piped_close(&f);
    return ok;
}

bool check_readable(void)
{
    struct st_piped f;
    if (!st_piped_open(&f))
        return false;
    struct st_seen *s = &f.seen, quiet = { 0 };
    int q[2] = { -1, -1 }, ret;
    bool ok = false;
    if (!st_pipe(q) || !st_add(f.rx, q[0], RX_READABLE, st_note_io, &quiet))
        goto out;
    st_poke(f.p[1]);
    ret = rx_run_once(f.rx, 1000);
    if (ret != 1 || s->calls != 1) {
        st_fail("one pipe has data: rx_run_once returned %s and called its callback %d times, expected 1 and 1",
                st_res(ret), s->calls);
        goto out;
    }
    if (s->fd != f.p[0] || s->events != RX_READABLE || s->arg != s) {
        st_fail("callback got fd=%d events=%#x arg=%p, expected fd=%d events=RX_READABLE arg=%p",
                s->fd, s->events, s->arg, f.p[0], (void *)s);
        goto out;
    }
    if (quiet.calls != 0) {
        st_fail("the callback of an empty pipe was called");
        goto out;
    }
    /* Level-triggered: the byte is still there, so the fd is reported again. */
    ret = rx_run_once(f.rx, 1000);
    if (ret != 1 || s->calls != 2) {
        st_fail("nobody read the byte, so the pipe is still readable: the second rx_run_once returned %s "
                "and called back %d times in all, expected 1 and 2 (level-triggered)", st_res(ret), s->calls);
        goto out;
    }
    ok = true;
out:
    st_close_pipe(q);
    st_piped_close(&f);
    return ok;
}

bool check_writable(void)
{
    struct rx *rx = st_new_rx();
    if (rx == NULL)
        return false;
    struct st_seen s = { 0 };
    int sv[2] = { -1, -1 }, ret;
    bool ok = false;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        st_fail("setup: socketpair: %s", strerror(errno));
        goto out;
    }
    if (!st_add(rx, sv[0], RX_READABLE | RX_WRITABLE, st_note_io, &s))
        goto out;
    ret = rx_run_once(rx, 1000);
    if (ret != 1 || s.events != RX_WRITABLE) {
        st_fail("an idle socket has room to write and nothing to read: rx_run_once returned %s, events "
                "%#x, expected 1 and RX_WRITABLE only (EPOLLOUT -> RX_WRITABLE)", st_res(ret), s.events);
        goto out;
    }
    if ((ret = rx_mod(rx, sv[0], RX_READABLE)) != 0) {
        st_fail("rx_mod(RX_READABLE) returned %s", st_res(ret));
        goto out;
    }
    ret = rx_run_once(rx, 50);
    if (ret != 0 || s.calls != 1) {
        st_fail("after rx_mod(RX_READABLE) on a socket with nothing to read, rx_run_once(50 ms) returned %s"
                " (callback called %d times in all), expected 0 and 1: is rx_mod changing the epoll set?",
                st_res(ret), s.calls);
        goto out;
    }
    st_poke(sv[1]);
    ret = rx_run_once(rx, 1000);
    if (ret != 1 || s.events != RX_READABLE) {
        st_fail("the peer wrote a byte: rx_run_once returned %s, events %#x, expected 1 and RX_READABLE",
                st_res(ret), s.events);
        goto out;
    }
    ok = true;
out:
    close(sv[0]);
    close(sv[1]);
    rx_destroy(rx);
    return ok;
}

bool check_hangup(void)
{
    struct st_piped f;
    if (!st_piped_open(&f))
        return false;
    close(f.p[1]); /* the writer is gone: the reader's next read returns 0 (end of file) */
    f.p[1] = -1;
    int ret = rx_run_once(f.rx, 1000);
    bool ok = ret == 1 && f.seen.events == RX_READABLE;
    if (!ok)
        st_fail("the pipe's writer closed (EPOLLHUP): rx_run_once returned %s, events %#x, expected 1 and "
                "RX_READABLE, so that the callback's read sees the end of file", st_res(ret), f.seen.events);
    st_piped_close(&f);
    return ok;
}

/* A's callback unregisters B (and closes it): B's event of the same round must be dropped. */
static void del_other(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct st_seen *s = arg;
    st_note_io(rx, fd, events, arg);
    if (s->other_fd >= 0) {
        rx_del(rx, s->other_fd);
        close(s->other_fd);
        s->other_fd = -1;
    }
}

/* Unregisters and closes its own fd. */
static void del_self(struct rx *rx, int fd, unsigned events, void *arg)
{
    st_note_io(rx, fd, events, arg);
    rx_del(rx, fd);
    close(fd);
}

bool check_del_in_callback(void)
{
    struct rx *rx = st_new_rx();
    if (rx == NULL)
        return false;
    struct st_seen a = { .other_fd = -1 }, b = { .other_fd = -1 }, c = { .other_fd = -1 };
    int pa[2] = { -1, -1 }, pb[2] = { -1, -1 }, pc[2] = { -1, -1 }, ret;
    bool ok = false;
    if (!st_pipe(pa) || !st_pipe(pb) || !st_pipe(pc))
        goto out;
    a.other_fd = pb[0];
    if (!st_add(rx, pa[0], RX_READABLE, del_other, &a) || !st_add(rx, pb[0], RX_READABLE, st_note_io, &b))
        goto out;
    st_poke(pa[1]); /* A becomes ready first, so epoll reports it first */
    st_poke(pb[1]);
    ret = rx_run_once(rx, 1000);
    pb[0] = -1; /* closed by del_other */
    if (a.calls != 1 || b.calls != 0 || ret != 1) {
        st_fail("A's callback unregistered B, whose event was already fetched in the same round: A was "
                "called %d times, B %d times, rx_run_once returned %s; expected 1, 0, 1 (skip events of fds "
                "unregistered earlier in the round)", a.calls, b.calls, st_res(ret));
        goto out;
    }
    if (!st_add(rx, pc[0], RX_READABLE, del_self, &c))
        goto out;
    st_poke(pc[1]);
    rx_run_once(rx, 1000);
    int fd_c = pc[0];
    pc[0] = -1; /* closed by del_self */
    if (c.calls != 1 || c.fd != fd_c) {
        st_fail("a callback that unregisters and closes its own fd: called %d times, expected 1", c.calls);
        goto out;
    }
    if (rx->nfds != 1) {
        st_fail("rx->nfds = %d after two of three fds were unregistered, expected 1", rx->nfds);
        goto out;
    }
    ok = true;
out:
    st_close_pipe(pa);
    st_close_pipe(pb);
    st_close_pipe(pc);
    rx_destroy(rx);
    return ok;
}

/* A's callback closes B and registers a NEW empty pipe that gets B's fd number. */
static struct st_seen reuse_new;
static void del_and_reuse(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct st_seen *s = arg;
    st_note_io(rx, fd, events, arg);
    int q[2];
    rx_del(rx, s->other_fd);
    close(s->other_fd);
    if (pipe2(q, O_CLOEXEC | O_NONBLOCK) == 0) {
        s->reused_fd = q[0];
        s->other_fd = q[1];
        rx_add(rx, q[0], RX_READABLE, st_note_io, &reuse_new);
    }
}

bool check_fd_reuse(void)
{
    struct rx *rx = st_new_rx();
    if (rx == NULL)
        return false;
    struct st_seen a = { .other_fd = -1, .reused_fd = -1 }, b = { 0 };
    int pa[2] = { -1, -1 }, pb[2] = { -1, -1 };
    bool ok = false;
    memset(&reuse_new, 0, sizeof(reuse_new));
    if (!st_pipe(pa) || !st_pipe(pb))
        goto out;
    int old_b = pb[0];
    a.other_fd = pb[0];
    if (!st_add(rx, pa[0], RX_READABLE, del_and_reuse, &a) || !st_add(rx, pb[0], RX_READABLE, st_note_io, &b))
        goto out;
    st_poke(pa[1]);
    st_poke(pb[1]);
    rx_run_once(rx, 1000);
    pb[0] = a.reused_fd;
    close(pb[1]);
    pb[1] = a.other_fd;
    if (a.reused_fd != old_b) {
        st_fail("setup: the new pipe got fd %d, not the closed fd %d", a.reused_fd, old_b);
        goto out;
    }
    if (b.calls != 0 || reuse_new.calls != 0) {
        st_fail("A's callback closed B (fd %d, readable) and registered a new, EMPTY pipe that got the same "
                "number; in that same round the new pipe's callback was called %d times, expected 0: the "
                "event was the old fd's. Keep a generation number in epoll_event.data",
                old_b, reuse_new.calls + b.calls);
        goto out;
    }
    ok = true;
out:
    st_close_pipe(pa);
    st_close_pipe(pb);
    rx_destroy(rx);
    return ok;
}

/* More ready fds than RX_MAX_EVENTS, and fd numbers that make rx->io[] grow mid-round. */
static void add_more(struct rx *rx, int fd, unsigned events, void *arg)
{
    struct st_seen *s = arg;
    st_note_io(rx, fd, events, arg);
    char c;
    if (read(fd, &c, 1) != 1) /* drained: not reported again */
        s->calls += 100;      /* shows up as "called back 101 times" */
    if (s->other_fd >= 0) { /* the first callback opens pipes until an fd number passes 600 */
        int q[2];
        s->other_fd = -1;
        while (pipe2(q, O_CLOEXEC | O_NONBLOCK) == 0) {
            if (q[0] >= 600) {
                s->reused_fd = q[0];
                st_poke(q[1]);
                rx_add(rx, q[0], RX_READABLE, st_note_io, &reuse_new);
                break;
            }
        }
    }
}

bool check_many_fds(void)
{
    enum { N = 200 };
    struct rx *rx = st_new_rx();
    if (rx == NULL)
        return false;
    static struct st_seen s[N];
    static int p[N][2];
    bool ok = false;
    memset(&reuse_new, 0, sizeof(reuse_new));
    for (int i = 0; i < N; i++) {
        s[i] = (struct st_seen){ .other_fd = i == 0 ? 0 : -1 };
        if (!st_pipe(p[i]) || !st_add(rx, p[i][0], RX_READABLE, add_more, &s[i]))
            goto out;
        st_poke(p[i][1]);
    }
    int rounds = 0;
    for (; rounds < 20 && reuse_new.calls == 0; rounds++)
        if (rx_run_once(rx, 1000) < 0)
            break;
    for (int i = 0; i < N; i++) {
        if (s[i].calls != 1) {
            st_fail("%d pipes with data (more than RX_MAX_EVENTS = %d, so it takes several rounds): pipe %d "
                    "(fd %d) was called back %d times, expected once", N, RX_MAX_EVENTS, i, p[i][0], s[i].calls);
            goto out;
        }
    }
    if (reuse_new.calls != 1) {
        st_fail("a callback registered fd %d (the table of registrations had to grow): its callback ran %d "
                "times, expected 1", s[0].reused_fd, reuse_new.calls);
        goto out;
    }
    ok = true;
out:
    rx_destroy(rx);
    return ok; /* the process exits right after: its fds go with it */
}
