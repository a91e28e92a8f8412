/* aio_layout: print where glibc's <aio.h> puts each field, for the Python binding to check against. */
/*
 * Usage: aio_layout
 * Prints one line per field, "struct.field offset size", e.g. "aiocb.aio_offset 128 8".
 * py/posixaio/libc.py describes the same structs with ctypes, by hand; the lab's tests
 * compare its offsets with these, so a machine whose glibc lays them out differently is
 * caught before Python hands glibc a wrong pointer.
 */
#include <aio.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>

/* One line: the field's offset and size inside its struct. */
#define FIELD(type, field) \
    printf("%s.%s %zu %zu\n", #type, #field, offsetof(struct type, field), sizeof(((struct type *)0)->field))

int main(void)
{
    printf("aiocb %d %zu\n", 0, sizeof(struct aiocb));
    FIELD(aiocb, aio_fildes);
    FIELD(aiocb, aio_lio_opcode);
    FIELD(aiocb, aio_reqprio);
    FIELD(aiocb, aio_buf);
    FIELD(aiocb, aio_nbytes);
    FIELD(aiocb, aio_sigevent);
    FIELD(aiocb, aio_offset);
    printf("sigevent %d %zu\n", 0, sizeof(struct sigevent));
    FIELD(sigevent, sigev_value);
    FIELD(sigevent, sigev_signo);
    FIELD(sigevent, sigev_notify);
    FIELD(sigevent, sigev_notify_function);
    FIELD(sigevent, sigev_notify_attributes);
    printf("const SIGEV_NONE %d\nconst SIGEV_SIGNAL %d\nconst SIGEV_THREAD %d\n", SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD);
    printf("const LIO_READ %d\nconst LIO_WRITE %d\nconst LIO_NOP %d\n", LIO_READ, LIO_WRITE, LIO_NOP);
    printf("const AIO_CANCELED %d\nconst AIO_NOTCANCELED %d\nconst AIO_ALLDONE %d\n", AIO_CANCELED, AIO_NOTCANCELED,
           AIO_ALLDONE);
    return 0;
}
