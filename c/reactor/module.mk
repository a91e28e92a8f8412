# Lab 2: the epoll reactor (rx.c), an echo server on it, and the reactor's self-test.
PROGRAMS += $(O)/rx_echo $(O)/rx_selftest
$(O)/rx_echo: reactor/rx_echo.c reactor/rx.c reactor/rx.h common/args.c common/args.h
$(O)/rx_selftest: reactor/rx_selftest.c reactor/rx_selftest_io.c reactor/rx_selftest.h common/st.c common/st.h reactor/rx.c reactor/rx.h
