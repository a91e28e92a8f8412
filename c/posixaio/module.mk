# Lab 4: POSIX aio.h. pa.c is the learner's file; aio_cat reads a file with it (and the lab-2
# reactor for --notify reactor), one idea a file (aio_cat.h lists them); aio_spy.so counts aio.h
# calls (LD_PRELOAD);
# aio_layout prints struct aiocb's layout for the Python binding to check against.
PROGRAMS += $(O)/aio_cat $(O)/aio_layout $(O)/aio_spy.so
AIO_CAT_SRC := posixaio/aio_cat.c posixaio/aio_cat_options.c posixaio/aio_cat_notify.c posixaio/aio_cat_run.c \
               posixaio/aio_cat_report.c posixaio/aio_cat.h
$(O)/aio_cat: $(AIO_CAT_SRC) posixaio/pa.c posixaio/pa.h common/look.c common/look.h common/args.c common/args.h \
              reactor/rx.c reactor/rx.h
# glibc >= 2.34 has aio in libc itself; before that it lived in librt (harmless now).
LDLIBS_aio_cat := -lrt
$(O)/aio_layout: posixaio/aio_layout.c
# A shared object, not a program: -shared -fPIC; dlsym(RTLD_NEXT) is in libc (-ldl for older glibc).
$(O)/aio_spy.so: posixaio/aio_spy.c
LDLIBS_aio_spy.so := -shared -fPIC -ldl
