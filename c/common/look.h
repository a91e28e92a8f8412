/* look: what a program can see of itself — its threads in /proc, a CRC of its data, errno names. */
#ifndef LOOK_H
#define LOOK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Count the threads of this process (/proc/self/task) and describe them in line[0..size):
 * " 4242 (aio_cat, main) 4243 (aio_cat)" (a thread's name is its comm; main_tid is marked).
 * Returns the count (0 if /proc cannot be read). Any thread may call it. */
int look_threads(pid_t main_tid, char *line, size_t size);

/* CRC-32 of p[0..n), the same number as Python's zlib.crc32, so a test can check the bytes. */
uint32_t look_crc32(const unsigned char *p, size_t n);

/* " (EBADF)" for the errnos a learner meets in these labs ("" for the others); ENOSYS says
 * "not written yet" and names lab, e.g. look_errno_name(ENOSYS, "lab 4, pa.c"). */
const char *look_errno_name(int err, const char *lab);

#endif
