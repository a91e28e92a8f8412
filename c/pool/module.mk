# Lab 3: the thread pool (tp.c, the learner's file) on the lab-2 reactor, a "looks async" file
# reader, the pool's self-test and its stress test (`make tsan` builds them with ThreadSanitizer).
TP_SRC := pool/tp.c pool/tp.h reactor/rx.c reactor/rx.h
PROGRAMS += $(O)/tp_cat $(O)/tp_selftest $(O)/tp_stress
$(O)/tp_cat: pool/tp_cat.c $(TP_SRC) common/args.c common/args.h
$(O)/tp_selftest: pool/tp_selftest.c pool/tp_selftest_jobs.c pool/tp_selftest.h common/st.c common/st.h $(TP_SRC)
$(O)/tp_stress: pool/tp_stress.c $(TP_SRC) common/args.c common/args.h
