# Lab 7: io_uring. uring_raw.c (the rings by hand), uring_liburing.c (liburing) and uring_cat.c (the
# batching loop, the drain) are the learner's files; uring.c and uring_cat_*.c (the requests, the
# reactor callback, the command line and report) are given. uring_cat reuses lab 5's O_DIRECT
# alignment check (kaio/ka.c), common/look.c, common/args.c and the lab-2 reactor. uring_lab.so is
# the same ring code as a shared object, for Python through ctypes (make reveal's io_uring rows).
UR_SRC := uring/uring.c uring/uring_raw.c uring/uring_liburing.c uring/uring.h
PROGRAMS += $(O)/uring_cat $(O)/uring_lab.so
URCAT_SRC := uring/uring_cat.c uring/uring_cat.h uring/uring_cat_requests.c uring/uring_cat_reactor.c \
             uring/uring_cat_setup.c
$(O)/uring_cat: $(URCAT_SRC) $(UR_SRC) kaio/ka.c kaio/ka.h common/look.c common/look.h \
                common/args.c common/args.h common/reader_args.c common/reader_args.h reactor/rx.c reactor/rx.h
LDLIBS_uring_cat := -luring
$(O)/uring_lab.so: $(UR_SRC)
LDLIBS_uring_lab.so := -shared -fPIC -luring
