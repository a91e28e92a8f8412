/* rx_selftest.h: what the files of rx_selftest share — the harness (st.h), reactor helpers, the checks. */
#ifndef RX_SELFTEST_H
#define RX_SELFTEST_H

#include "rx.h"
#include "../common/st.h" /* st_fail, st_res, st_now, st_main: shared with the other self-tests */

/* Write one byte to fd, to make a pipe or socket readable. */
void st_poke(int fd);

/* A new reactor, or NULL with the failure recorded (rx_create's error). */
struct rx *st_new_rx(void);

/* What the I/O callbacks saw. */
struct st_seen {
    int calls;          /* how many times the callback ran */
    int fd;             /* the fd of the last call */
    unsigned events;    /* the events of the last call */
    void *arg;          /* the arg of the last call */
    int other_fd;       /* for callbacks that act on another fd (-1: none) */
    int reused_fd;      /* fd_reuse: the new fd that took other_fd's number */
};

/* An rx_io_cb that records its call in the struct st_seen given as arg. */
void st_note_io(struct rx *rx, int fd, unsigned events, void *arg);

/* A non-blocking, close-on-exec pipe in p. false after st_fail("setup: pipe2: ..."), p = {-1, -1}. */
bool st_pipe(int p[2]);

/* Close the ends of p still open (>= 0), and mark them closed (-1). */
void st_close_pipe(int p[2]);

/* rx_add, expected to succeed: false after st_fail("rx_add of fd N returned ...") otherwise. */
bool st_add(struct rx *rx, int fd, unsigned events, rx_io_cb *cb, void *arg);

/* What many checks start from: a new reactor watching the read end of a new, empty pipe. */
struct st_piped {
    struct rx *rx;
    int p[2];              /* the pipe: p[0] is registered (RX_READABLE); st_poke(p[1]) makes it readable */
    struct st_seen seen;   /* what st_note_io, p[0]'s callback, saw */
};

/* Set *f up. false after st_fail, with nothing left to free. */
bool st_piped_open(struct st_piped *f);

/* Close what is still open of the pipe, and destroy the reactor. */
void st_piped_close(struct st_piped *f);

/* The checks on fds (rx_selftest_io.c). Each returns true, or false after st_fail(). */
bool check_create(void);
bool check_errors(void);
bool check_del_after_close(void);
bool check_readable(void);
bool check_writable(void);
bool check_hangup(void);
bool check_del_in_callback(void);
bool check_fd_reuse(void);
bool check_many_fds(void);

#endif
