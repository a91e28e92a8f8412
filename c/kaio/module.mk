# Lab 5: Linux kernel AIO. ka.c (the scheduler), ka_raw.c (syscall(2)) and ka_libaio.c (libaio)
# are the learner's files; kaio_cat reads a file with them (and the lab-2 reactor for --reactor);
# kaio_caveats measures the talk's three caveats.
KA_SRC := kaio/ka.c kaio/ka_raw.c kaio/ka_libaio.c kaio/ka.h common/look.c common/look.h common/args.c common/args.h \
          common/reader_args.c common/reader_args.h
PROGRAMS += $(O)/kaio_cat $(O)/kaio_caveats
$(O)/kaio_cat: kaio/kaio_cat.c $(KA_SRC) reactor/rx.c reactor/rx.h
LDLIBS_kaio_cat := -laio
$(O)/kaio_caveats: kaio/kaio_caveats.c $(KA_SRC)
LDLIBS_kaio_caveats := -laio
