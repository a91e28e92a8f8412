/* look: what a program can see of itself — its threads in /proc, a CRC of its data, errno names. */
#include "look.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int look_threads(pid_t main_tid, char *line, size_t size)
{
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL)
        return 0;
    size_t len = 0;
    int count = 0;
    line[0] = '\0';
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        count++;
        int tid = atoi(e->d_name);
        char path[64], name[32] = "?";
        snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
        FILE *f = fopen(path, "re");
        if (f != NULL) { /* it may have exited since readdir: then it stays "?" */
            if (fgets(name, sizeof(name), f) != NULL)
                name[strcspn(name, "\n")] = '\0';
            fclose(f);
        }
        if (len + 64 < size)
            len += (size_t)snprintf(line + len, size - len, " %d (%s%s)", tid, name, tid == main_tid ? ", main" : "");
    }
    closedir(dir);
    return count;
}

uint32_t look_crc32(const unsigned char *p, size_t n)
{
    /* The table-driven CRC-32 of zlib, PNG and Ethernet: polynomial 0xEDB88320 (reflected). */
    static uint32_t table[256];
    if (table[1] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

const char *look_errno_name(int err, const char *lab)
{
    static char note[96];
    switch (err) {
    case EBADF: return " (EBADF)";
    case EINVAL: return " (EINVAL)";
    case EAGAIN: return " (EAGAIN)";
    case EIO: return " (EIO)";
    case ECANCELED: return " (ECANCELED)";
    case EINPROGRESS: return " (EINPROGRESS)";
    case ESPIPE: return " (ESPIPE)";
    case ETIMEDOUT: return " (ETIMEDOUT)";
    case ENOSYS:
        snprintf(note, sizeof(note), " (ENOSYS: not written yet, %s)", lab);
        return note;
    default: return "";
    }
}
